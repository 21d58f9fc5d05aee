//! SASLprep (RFC 4013) as PostgreSQL applies it to SCRAM passwords (`src/common/saslprep.c`):
//! a password that is not valid UTF-8, or whose prepared form would contain a prohibited
//! character, is used as its raw bytes instead of being refused. So `IX-Ⅸ` (Roman numeral nine)
//! and `IX-IX` are the same SCRAM password, as they are for PostgreSQL, libpq and node-postgres.
//!
//! PostgreSQL does not normalize md5 passwords (md5 hashes the raw bytes), and neither does
//! lakepool.

use std::borrow::Cow;

/// The bytes PBKDF2 runs on for `password`.
pub fn saslprep(password: &[u8]) -> Cow<'_, [u8]> {
    let Ok(text) = std::str::from_utf8(password) else {
        return Cow::Borrowed(password);
    };
    match stringprep::saslprep(text) {
        Ok(Cow::Borrowed(s)) => Cow::Borrowed(s.as_bytes()),
        Ok(Cow::Owned(s)) => Cow::Owned(s.into_bytes()),
        Err(_) => Cow::Borrowed(password),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prep(s: &str) -> String {
        String::from_utf8(saslprep(s.as_bytes()).into_owned()).unwrap()
    }

    /// RFC 4013 section 3's examples; the two the RFC calls errors keep their raw bytes, as
    /// PostgreSQL does.
    #[test]
    fn rfc_4013_examples() {
        assert_eq!(prep("I\u{00AD}X"), "IX"); // soft hyphen mapped to nothing
        assert_eq!(prep("user"), "user");
        assert_eq!(prep("USER"), "USER");
        assert_eq!(prep("\u{00AA}"), "a"); // NFKC
        assert_eq!(prep("\u{2168}"), "IX"); // NFKC
        assert_eq!(prep("\u{0007}"), "\u{0007}"); // prohibited: raw
        assert_eq!(prep("\u{0627}\u{0031}"), "\u{0627}\u{0031}"); // bidi rule: raw
    }

    #[test]
    fn spaces_and_invalid_utf8() {
        // Non-ASCII spaces map to SPACE.
        assert_eq!(prep("a\u{00A0}b"), "a b");
        assert_eq!(prep("IX-\u{2168}"), "IX-IX");
        let raw = [0xff, 0xfe, b'a'];
        assert_eq!(&*saslprep(&raw), &raw);
    }
}
