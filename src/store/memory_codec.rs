//! The byte form the in-memory store keeps its records in: numbers as varints (signed ones
//! zigzagged), texts either inline (length and bytes) or, where a [`Texts`] table is
//! given, as their number in it; JSON values tagged by kind; a SHA-256 in hex as its 32
//! bytes. [`Writer`] writes it and [`Reader`] reads it back, field for field.

use std::sync::Arc;

use serde_json::{Map, Number, Value};

/// Texts kept once for all the records that share the table (a trace shard's), named by
/// number. It only grows, as those records do: it never holds a text that none of them
/// holds.
#[derive(Debug)]
pub(super) struct Texts {
    ids: foldhash::HashMap<Arc<str>, u64>,
    all: Vec<Arc<str>>,
    /// The number of a text met lately, by a cheap digest of the text ([`slot`]); one
    /// more than the number, 0 for none. A record names thirty texts or so, nearly all of
    /// them met before; most are found here with one comparison, without hashing the
    /// text and probing `ids`.
    recent: Box<[u32; RECENT]>,
}

impl Default for Texts {
    fn default() -> Self {
        Self {
            ids: foldhash::HashMap::default(),
            all: Vec::new(),
            recent: Box::new([0; RECENT]),
        }
    }
}

/// Slots of [`Texts::recent`].
const RECENT: usize = 256;

/// The slot of `s` in [`Texts::recent`]: its length and three of its bytes, which tell
/// apart the short names and the hex hashes a trace repeats.
fn slot(s: &[u8]) -> usize {
    let (Some(&first), Some(&last)) = (s.first(), s.last()) else {
        return 0;
    };
    let mid = s[s.len() / 2];
    let mixed = s
        .len()
        .wrapping_mul(31)
        .wrapping_add(usize::from(first))
        .wrapping_add(usize::from(mid).wrapping_mul(7))
        .wrapping_add(usize::from(last).wrapping_mul(131));
    mixed % RECENT
}

impl Texts {
    pub(super) fn id(&mut self, s: &str) -> u64 {
        let slot = &mut self.recent[slot(s.as_bytes())];
        if let Some(text) = (*slot as usize)
            .checked_sub(1)
            .and_then(|i| self.all.get(i))
            && **text == *s
        {
            return u64::from(*slot) - 1;
        }
        let id = match self.ids.get(s) {
            Some(&id) => id,
            None => {
                let id = self.all.len() as u64;
                let text: Arc<str> = Arc::from(s);
                self.ids.insert(text.clone(), id);
                self.all.push(text);
                id
            }
        };
        // Numbers past u32 are not remembered (a table that large is not a trace shard's).
        if let Ok(n) = u32::try_from(id + 1) {
            *slot = n;
        }
        id
    }

    pub(super) fn get(&self, id: u64) -> Option<&str> {
        self.all.get(usize::try_from(id).ok()?).map(|t| &**t)
    }

    /// Every text, by number.
    #[cfg(test)]
    pub(super) fn all(&self) -> impl Iterator<Item = &str> {
        self.all.iter().map(|t| &**t)
    }
}

pub(super) fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Tags of the kept forms of a hash and of a JSON value.
pub(super) mod tag {
    pub(in crate::store) const SHA256: u8 = 0;
    pub(in crate::store) const TEXT: u8 = 1;
    /// `prev_hash` only: the hash of the instance's record before.
    pub(in crate::store) const CHAINED: u8 = 2;

    pub(in crate::store) const NULL: u8 = 0;
    pub(in crate::store) const FALSE: u8 = 1;
    pub(in crate::store) const TRUE: u8 = 2;
    pub(in crate::store) const INT: u8 = 3;
    pub(in crate::store) const UINT: u8 = 4;
    pub(in crate::store) const FLOAT: u8 = 5;
    pub(in crate::store) const STRING: u8 = 6;
    pub(in crate::store) const ARRAY: u8 = 7;
    pub(in crate::store) const OBJECT: u8 = 8;
}

/// Writes values in the kept form, texts by number when it has a table.
pub(super) struct Writer<'a> {
    pub(super) out: &'a mut Vec<u8>,
    pub(super) texts: Option<&'a mut Texts>,
}

impl Writer<'_> {
    pub(super) fn uint(&mut self, n: usize) {
        put_varint(self.out, n as u64);
    }

    /// Zigzag, so that small negative numbers stay short.
    pub(super) fn int(&mut self, n: i64) {
        put_varint(self.out, ((n << 1) ^ (n >> 63)) as u64);
    }

    /// A text: its number in the table, or inline without one.
    pub(super) fn text(&mut self, s: &str) {
        match &mut self.texts {
            Some(texts) => put_varint(self.out, texts.id(s)),
            None => self.bytes(s),
        }
    }

    /// A text or none: 0 for none, else one more than [`Self::text`]'s number or length.
    pub(super) fn opt_text(&mut self, s: Option<&str>) {
        match (s, &mut self.texts) {
            (None, _) => self.out.push(0),
            (Some(s), Some(texts)) => put_varint(self.out, texts.id(s) + 1),
            (Some(s), None) => {
                put_varint(self.out, s.len() as u64 + 1);
                self.out.extend_from_slice(s.as_bytes());
            }
        }
    }

    /// A number or none: 0 for none, else 1 and the number.
    pub(super) fn opt_int(&mut self, n: Option<i64>) {
        match n {
            None => self.out.push(0),
            Some(n) => {
                self.out.push(1);
                self.int(n);
            }
        }
    }

    pub(super) fn bytes(&mut self, s: &str) {
        self.uint(s.len());
        self.out.extend_from_slice(s.as_bytes());
    }

    /// A hash: its 32 bytes when it is a SHA-256 in lowercase hex (then `true`), else its
    /// text.
    pub(super) fn hash(&mut self, h: &str) -> bool {
        match super::hex_digest::sha256(h) {
            Some(bytes) => {
                self.out.push(tag::SHA256);
                self.out.extend_from_slice(&bytes);
                true
            }
            None => {
                self.out.push(tag::TEXT);
                self.bytes(h);
                false
            }
        }
    }

    pub(super) fn object(&mut self, map: &Map<String, Value>) {
        self.uint(map.len());
        for (k, v) in map {
            self.text(k);
            self.value(v);
        }
    }

    pub(super) fn value(&mut self, v: &Value) {
        match v {
            Value::Null => self.out.push(tag::NULL),
            Value::Bool(false) => self.out.push(tag::FALSE),
            Value::Bool(true) => self.out.push(tag::TRUE),
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    self.out.push(tag::INT);
                    self.int(i);
                } else if let Some(u) = n.as_u64() {
                    self.out.push(tag::UINT);
                    put_varint(self.out, u);
                } else {
                    self.out.push(tag::FLOAT);
                    let f = n.as_f64().unwrap_or_default();
                    self.out.extend_from_slice(&f.to_le_bytes());
                }
            }
            Value::String(s) => {
                self.out.push(tag::STRING);
                self.bytes(s);
            }
            Value::Array(items) => {
                self.out.push(tag::ARRAY);
                self.uint(items.len());
                for item in items {
                    self.value(item);
                }
            }
            Value::Object(map) => {
                self.out.push(tag::OBJECT);
                self.object(map);
            }
        }
    }
}

/// Reads values back; `None` where the bytes are not what [`Writer`] wrote (with the same
/// table, if any).
pub(super) struct Reader<'a> {
    pub(super) bytes: &'a [u8],
    pub(super) at: usize,
    pub(super) texts: Option<&'a Texts>,
}

impl<'a> Reader<'a> {
    pub(super) fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    pub(super) fn byte(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.at += 1;
        Some(b)
    }

    pub(super) fn varint(&mut self) -> Option<u64> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            n |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Some(n);
            }
        }
        None
    }

    pub(super) fn len(&mut self) -> Option<usize> {
        usize::try_from(self.varint()?).ok()
    }

    pub(super) fn int(&mut self) -> Option<i64> {
        let z = self.varint()?;
        Some(((z >> 1) as i64) ^ -((z & 1) as i64))
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let bytes = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(bytes)
    }

    fn str_ref(&mut self, n: usize) -> Option<&'a str> {
        std::str::from_utf8(self.take(n)?).ok()
    }

    pub(super) fn str(&mut self, n: usize) -> Option<String> {
        self.str_ref(n).map(str::to_owned)
    }

    /// A text written by [`Writer::text`], borrowed from the table or the bytes.
    pub(super) fn text_ref(&mut self) -> Option<&'a str> {
        let n = self.varint()?;
        self.text_at(n)
    }

    /// The text whose number in the table, or whose length inline, is `n`.
    fn text_at(&mut self, n: u64) -> Option<&'a str> {
        match self.texts {
            Some(texts) => texts.get(n),
            None => self.str_ref(usize::try_from(n).ok()?),
        }
    }

    pub(super) fn text(&mut self) -> Option<String> {
        self.text_ref().map(str::to_owned)
    }

    /// A text or none written by [`Writer::opt_text`].
    pub(super) fn opt_text(&mut self) -> Option<Option<String>> {
        match self.varint()?.checked_sub(1) {
            None => Some(None),
            Some(n) => Some(Some(self.text_at(n)?.to_owned())),
        }
    }

    pub(super) fn opt_int(&mut self) -> Option<Option<i64>> {
        match self.byte()? {
            0 => Some(None),
            1 => self.int().map(Some),
            _ => None,
        }
    }

    pub(super) fn hash(&mut self) -> Option<String> {
        match self.byte()? {
            tag::SHA256 => Some(super::hex_digest::lower_hex(self.take(32)?)),
            tag::TEXT => {
                let n = self.len()?;
                self.str(n)
            }
            _ => None,
        }
    }

    /// A count, then that many items each read by `item`.
    pub(super) fn list<T>(
        &mut self,
        mut item: impl FnMut(&mut Self) -> Option<T>,
    ) -> Option<Vec<T>> {
        let n = self.len()?;
        (0..n).map(|_| item(self)).collect()
    }

    pub(super) fn object(&mut self) -> Option<Map<String, Value>> {
        let n = self.len()?;
        let mut map = Map::with_capacity(n);
        for _ in 0..n {
            let key = self.text()?;
            map.insert(key, self.value()?);
        }
        Some(map)
    }

    pub(super) fn value(&mut self) -> Option<Value> {
        Some(match self.byte()? {
            tag::NULL => Value::Null,
            tag::FALSE => Value::Bool(false),
            tag::TRUE => Value::Bool(true),
            tag::INT => Value::from(self.int()?),
            tag::UINT => Value::from(self.varint()?),
            tag::FLOAT => {
                let bytes: [u8; 8] = self.take(8)?.try_into().ok()?;
                Value::Number(Number::from_f64(f64::from_le_bytes(bytes))?)
            }
            tag::STRING => {
                let n = self.len()?;
                Value::String(self.str(n)?)
            }
            tag::ARRAY => Value::Array(self.list(Self::value)?),
            tag::OBJECT => Value::Object(self.object()?),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_that_share_a_recent_slot_keep_their_own_numbers() {
        // Same length, same first, middle and last bytes: the same slot.
        let (a, b) = ("axbxc", "aybzc");
        assert_eq!(slot(a.as_bytes()), slot(b.as_bytes()));
        let mut texts = Texts::default();
        let (ia, ib) = (texts.id(a), texts.id(b));
        assert_ne!(ia, ib);
        for _ in 0..3 {
            assert_eq!((texts.id(a), texts.id(b), texts.id("")), (ia, ib, 2));
        }
        assert_eq!((texts.get(ia), texts.get(ib)), (Some(a), Some(b)));
        assert_eq!(texts.all().count(), 3);
    }
}
