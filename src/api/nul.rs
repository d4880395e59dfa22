//! The character U+0000 is refused anywhere in a request: PostgreSQL cannot keep it in a
//! text column, and no id, name or comment needs it. Refusing it at the door gives the same
//! answer on every store (422 `nul-character`: the request is well-formed, its content is
//! what cannot be taken), where it would otherwise be stored by SQLite and fail as a
//! database error on PostgreSQL.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};

use super::problem::Problem;

/// Middleware: an address whose path or query holds `%00` (decoded, U+0000) is refused.
pub(crate) async fn refuse_in_address(req: Request, next: Next) -> Response {
    let uri = req.uri();
    let raw = [uri.path(), uri.query().unwrap_or("")];
    if raw.iter().any(|part| part.contains("%00")) {
        return Problem::new(
            "nul-character",
            "the address contains %00 (U+0000), which opsflow refuses in any text",
        )
        .into_response();
    }
    next.run(req).await
}

/// Whether a JSON text holds the escape `\u0000` in a string. A raw U+0000 is not valid
/// JSON and is refused by the parser; an escaped backslash (`\\u0000`) is not the escape.
pub(crate) fn json_has_nul(text: &[u8]) -> bool {
    let mut i = 0;
    while let Some(at) = text[i..].iter().position(|&b| b == b'\\') {
        let escape = i + at + 1;
        if text[escape..].starts_with(b"u0000") {
            return true;
        }
        // Skip the escaped character, so that `\\` is one escape.
        i = escape + 1;
        if i >= text.len() {
            return false;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::json_has_nul;

    #[test]
    fn only_the_escape_of_u_0000_counts_as_nul() {
        assert!(json_has_nul(br#"{"comment":"a\u0000b"}"#));
        assert!(json_has_nul(br#"{"a":"\\\u0000"}"#));
        assert!(json_has_nul(br#"{"k\u0000":1}"#));
        assert!(!json_has_nul(br#"{"comment":"a\\u0000b"}"#));
        assert!(json_has_nul(br#"{"comment":"\u00001"}"#));
        assert!(!json_has_nul(br#"{"comment":"\u0001"}"#));
        assert!(!json_has_nul(br#"{"a":"\\"}"#));
        assert!(!json_has_nul(b"\\"));
        assert!(!json_has_nul(b""));
    }
}
