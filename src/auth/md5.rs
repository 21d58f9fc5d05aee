//! PostgreSQL md5 password authentication, both sides, sans-IO.
//!
//! Stored form: `"md5" + hex(md5(password + user))`. On the wire the client
//! answers AuthenticationMD5Password(salt) with
//! `"md5" + hex(md5(hex(md5(password + user)) + salt))`, so a server only
//! needs the stored hash to check it.

use md5::{Digest, Md5};
use subtle::ConstantTimeEq;

const PREFIX: &str = "md5";
/// Length of a stored hash: "md5" + 32 hex digits.
const STORED_LEN: usize = 35;

fn md5_hex(parts: &[&[u8]]) -> String {
    let mut hasher = Md5::new();
    for part in parts {
        hasher.update(part);
    }
    let digest: [u8; 16] = hasher.finalize().into();
    let mut out = String::with_capacity(32);
    for byte in digest {
        for nibble in [byte >> 4, byte & 0x0f] {
            out.push(char::from(b"0123456789abcdef"[usize::from(nibble)]));
        }
    }
    out
}

/// `"md5" + hex(md5(password + user))`: the stored form PostgreSQL uses.
/// The password's raw bytes are used: PostgreSQL does not SASLprep md5 passwords.
pub fn md5_stored_hash(user: &str, password: impl AsRef<[u8]>) -> String {
    format!("{PREFIX}{}", md5_hex(&[password.as_ref(), user.as_bytes()]))
}

/// Is `s` a stored md5 hash ("md5" + 32 lowercase hex digits)?
pub fn is_md5_hash(s: &str) -> bool {
    // Same test as PostgreSQL's isMD5(): lowercase hex only.
    s.len() == STORED_LEN
        && s.strip_prefix(PREFIX)
            .is_some_and(|hex| hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

/// Response to AuthenticationMD5Password: `"md5" + hex(md5(hex(md5(password + user)) + salt))`.
pub fn md5_response(user: &str, password: &str, salt: [u8; 4]) -> String {
    // The stored form is a password equivalent for md5 logins: wiped after use.
    let stored = zeroize::Zeroizing::new(md5_stored_hash(user, password));
    response_from_stored(&stored, salt)
}

/// The expected response given a stored hash (which must be valid).
fn response_from_stored(stored: &str, salt: [u8; 4]) -> String {
    let inner = stored.strip_prefix(PREFIX).unwrap_or(stored);
    format!("{PREFIX}{}", md5_hex(&[inner.as_bytes(), &salt]))
}

/// Server-side check of a PasswordMessage body (without its NUL) against a
/// stored md5 hash; constant-time. False if `stored` is not an md5 hash.
pub fn md5_verify(stored: &str, salt: [u8; 4], response: &[u8]) -> bool {
    if !is_md5_hash(stored) {
        return false;
    }
    let expected = response_from_stored(stored, salt);
    bool::from(expected.as_bytes().ct_eq(response))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Vectors from Python: "md5" + hashlib.md5(b"pencil" + b"user").hexdigest(), and
    // "md5" + hashlib.md5(inner_hex.encode() + bytes([1, 2, 3, 4])).hexdigest().
    const STORED: &str = "md520c46e3762c864548e296b33c3406aa9";
    const RESPONSE: &str = "md54376eb6913b38f9aaff38dc7cf19ca76";
    const SALT: [u8; 4] = [1, 2, 3, 4];
    /// rolpassword of `CREATE ROLE u3 PASSWORD 'pencil'` on PostgreSQL 15 with md5 encryption.
    const PG_STORED_U3: &str = "md59be8ca6530942872ce7292e98ad64683";

    #[test]
    fn stored_hash_vectors() {
        assert_eq!(md5_stored_hash("user", "pencil"), STORED);
        assert_eq!(md5_stored_hash("u3", "pencil"), PG_STORED_U3);
        assert!(is_md5_hash(STORED));
        assert!(is_md5_hash(PG_STORED_U3));
    }

    #[test]
    fn is_md5_hash_rejects_others() {
        for s in [
            "",
            "md5",
            "md520c46e3762c864548e296b33c3406aa",
            "md520c46e3762c864548e296b33c3406aa90",
            "md520C46E3762C864548E296B33C3406AA9",
            "MD520c46e3762c864548e296b33c3406aa9",
            "md520c46e3762c864548e296b33c3406aag",
            "xyz20c46e3762c864548e296b33c3406aa9",
            "SCRAM-SHA-256$4096:c2FsdA==$a:b",
            "md520c46e3762c864548e296b33c3406é",
        ] {
            assert!(!is_md5_hash(s), "{s}");
        }
    }

    #[test]
    fn response_and_verify() {
        assert_eq!(md5_response("user", "pencil", SALT), RESPONSE);
        assert!(md5_verify(STORED, SALT, RESPONSE.as_bytes()));
        assert!(!md5_verify(STORED, [1, 2, 3, 5], RESPONSE.as_bytes()));
        assert!(!md5_verify(
            STORED,
            SALT,
            md5_response("user", "pencil2", SALT).as_bytes()
        ));
        assert!(!md5_verify(
            STORED,
            SALT,
            md5_response("user2", "pencil", SALT).as_bytes()
        ));
        assert!(!md5_verify(STORED, SALT, &RESPONSE.as_bytes()[..34]));
        assert!(!md5_verify(
            STORED,
            SALT,
            format!("{RESPONSE}\0").as_bytes()
        ));
        assert!(!md5_verify(STORED, SALT, b""));
        assert!(!md5_verify(
            STORED,
            SALT,
            RESPONSE.to_uppercase().as_bytes()
        ));
        // A cleartext password is never accepted as a stored hash.
        assert!(!md5_verify(
            "pencil",
            SALT,
            md5_response("user", "pencil", SALT).as_bytes()
        ));
        assert!(!md5_verify("", SALT, b""));
        // PostgreSQL-produced stored hash works end to end.
        let resp = md5_response("u3", "pencil", [0xde, 0xad, 0xbe, 0xef]);
        assert!(md5_verify(
            PG_STORED_U3,
            [0xde, 0xad, 0xbe, 0xef],
            resp.as_bytes()
        ));
    }
}
