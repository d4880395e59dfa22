//! SHA-256 digests as lowercase hex text and back. Every step writes the hex of a few
//! (each trace record's hash) and the in-memory store keeps each as its 32 bytes, so both
//! ways work on a machine word at a time: four bytes to eight digits, eight digits to four
//! bytes.

/// Each byte 0x01.
const ONES: u64 = u64::from_le_bytes([1; 8]);
/// Each byte 0x80.
const HIGHS: u64 = ONES * 0x80;
/// Each byte 0x0f.
const LOW_NIBBLES: u64 = ONES * 0x0f;

/// `bytes` as lowercase hex.
pub(super) fn lower_hex(bytes: &[u8]) -> String {
    let mut out = vec![0; bytes.len() * 2];
    let mut words = bytes.chunks_exact(4);
    let mut digits = out.chunks_exact_mut(8);
    for (word, eight) in (&mut words).zip(&mut digits) {
        let w = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
        eight.copy_from_slice(&hex_digits(w).to_le_bytes());
    }
    let rest = bytes.len() - words.remainder().len();
    for (i, &b) in words.remainder().iter().enumerate() {
        let d = hex_digits(u32::from(b)).to_le_bytes();
        out[(rest + i) * 2..(rest + i) * 2 + 2].copy_from_slice(&d[..2]);
    }
    // Only ASCII digits and letters were written.
    String::from_utf8(out).unwrap_or_default()
}

/// The eight hex digits of the four bytes of `w` (in memory order), as the bytes of a word
/// in memory order.
fn hex_digits(w: u32) -> u64 {
    // Byte i of `w` to byte 2i.
    let mut x = u64::from(w);
    x = (x | (x << 16)) & 0x0000_ffff_0000_ffff;
    x = (x | (x << 8)) & 0x00ff_00ff_00ff_00ff;
    // Its high nibble to byte 2i, its low nibble to byte 2i + 1.
    let nibbles = ((x >> 4) & LOW_NIBBLES) | ((x & LOW_NIBBLES) << 8);
    // '0' + n, and 'a' - '0' - 10 more where n is 10 or over (n + 6 carries into bit 4).
    let letters = ((nibbles + ONES * 6) >> 4) & ONES;
    nibbles + ONES * u64::from(b'0') + letters * u64::from(b'a' - b'0' - 10)
}

/// The bytes of `s` if it is a SHA-256 in lowercase hex.
pub(super) fn sha256(s: &str) -> Option<[u8; 32]> {
    let digits = s.as_bytes();
    if digits.len() != 64 {
        return None;
    }
    let mut bytes = [0u8; 32];
    // A high bit set in any byte of `bad` marks a byte that is not a lowercase hex digit.
    let mut bad = 0;
    for (four, d) in bytes.chunks_exact_mut(4).zip(digits.chunks_exact(8)) {
        let w = u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]);
        bad |= not_lower_hex(w);
        // '0' – '9' carry their value in the low nibble; 'a' – 'f' carry it less 9, and
        // only they have bit 6 set.
        let n = (w & LOW_NIBBLES) + ((w >> 6) & ONES) * 9;
        // Byte 2i: the high nibble of byte i of the result, then its low one.
        let pairs = ((n << 4) | (n >> 8)) & 0x00ff_00ff_00ff_00ff;
        let pairs = (pairs | (pairs >> 8)) & 0x0000_ffff_0000_ffff;
        let packed = (pairs | (pairs >> 16)) as u32;
        four.copy_from_slice(&packed.to_le_bytes());
    }
    (bad == 0).then_some(bytes)
}

/// The high bit of each byte of `w` that is not '0' – '9' or 'a' – 'f'; 0 if all are.
fn not_lower_hex(w: u64) -> u64 {
    // With every high bit clear, adding 0x80 - lo to a byte sets its high bit exactly when
    // the byte is at least `lo`, and carries into no other byte.
    let ascii = w & !HIGHS;
    let at_least = |lo: u8| (ascii + ONES * u64::from(0x80 - lo)) & HIGHS;
    let digit = at_least(b'0') & !at_least(b'9' + 1);
    let letter = at_least(b'a') & !at_least(b'f' + 1);
    (w & HIGHS) | (!(digit | letter) & HIGHS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_is_written_as_hex_encode_writes_it() {
        let all: Vec<u8> = (0..=255).collect();
        for len in [0, 1, 3, 4, 5, 32, 255, 256] {
            assert_eq!(
                lower_hex(&all[..len]),
                hex::encode(&all[..len]),
                "{len} bytes"
            );
        }
        let reversed: Vec<u8> = all.iter().rev().copied().collect();
        assert_eq!(lower_hex(&reversed), hex::encode(&reversed));
    }

    #[test]
    fn a_digest_read_back_from_its_hex_is_the_same_digest() {
        for seed in 0u8..=255 {
            let digest: [u8; 32] = std::array::from_fn(|i| {
                seed.wrapping_mul(31)
                    .wrapping_add((i as u8).wrapping_mul(97))
            });
            assert_eq!(sha256(&lower_hex(&digest)), Some(digest), "seed {seed}");
        }
    }

    #[test]
    fn only_sixty_four_lowercase_hex_digits_are_read_as_a_digest() {
        let good = "0123456789abcdef".repeat(4);
        assert!(sha256(&good).is_some());
        assert_eq!(sha256(&good[..62]), None);
        assert_eq!(sha256(&format!("{good}00")), None);
        // Each position, with each byte that is not a lowercase hex digit.
        for at in 0..64 {
            for b in 0u8..=127 {
                if b.is_ascii_digit() || (b'a'..=b'f').contains(&b) {
                    continue;
                }
                let mut text = good.clone().into_bytes();
                text[at] = b;
                let text = String::from_utf8(text).unwrap();
                assert_eq!(sha256(&text), None, "{b:#04x} at {at}");
            }
        }
        let wide = format!("é{}", &good[2..]);
        assert_eq!(sha256(&wide), None);
    }
}
