//! Frontend messages: the ones lakepool writes to an upstream server while logging in or
//! cleaning up a connection, and the few it parses from clients during authentication.

use bytes::{BufMut, BytesMut};

use super::frame::{begin, finish, put_cstr, put_header};
use super::{CANCEL_REQUEST_CODE, PROTOCOL_3_0, SSL_REQUEST_CODE, read_cstr, read_i32};

/// `SSLRequest`.
pub(crate) fn ssl_request(buf: &mut BytesMut) {
    buf.put_i32(8);
    buf.put_u32(SSL_REQUEST_CODE);
}

/// `StartupMessage` for protocol 3.0.
pub(crate) fn startup_message<'a>(
    buf: &mut BytesMut,
    params: impl IntoIterator<Item = (&'a str, &'a str)>,
) {
    let at = buf.len();
    buf.put_i32(0);
    buf.put_u32(PROTOCOL_3_0);
    for (k, v) in params {
        put_cstr(buf, k.as_bytes());
        put_cstr(buf, v.as_bytes());
    }
    buf.put_u8(0);
    let len = i32::try_from(buf.len() - at).unwrap_or(i32::MAX);
    buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

/// `PasswordMessage` (cleartext or md5 response).
pub(crate) fn password_message(buf: &mut BytesMut, password: &str) {
    let at = begin(buf, b'p');
    put_cstr(buf, password.as_bytes());
    finish(buf, at);
}

/// `SASLInitialResponse`.
pub(crate) fn sasl_initial_response(buf: &mut BytesMut, mechanism: &str, data: &[u8]) {
    let at = begin(buf, b'p');
    put_cstr(buf, mechanism.as_bytes());
    buf.put_i32(i32::try_from(data.len()).unwrap_or(i32::MAX));
    buf.put_slice(data);
    finish(buf, at);
}

/// `SASLResponse`.
pub(crate) fn sasl_response(buf: &mut BytesMut, data: &[u8]) {
    let at = begin(buf, b'p');
    buf.put_slice(data);
    finish(buf, at);
}

/// Simple `Query`.
pub(crate) fn query(buf: &mut BytesMut, sql: &str) {
    let at = begin(buf, b'Q');
    put_cstr(buf, sql.as_bytes());
    finish(buf, at);
}

/// A `Parse`: the statement name, then `rest` (query text, its NUL, parameter types) as is.
pub(crate) fn parse(buf: &mut BytesMut, name: &[u8], rest: &[u8]) {
    put_header(buf, b'P', name.len() + 1 + rest.len());
    put_cstr(buf, name);
    buf.put_slice(rest);
}

/// The start of a `Bind` whose statement is renamed: header, portal and statement names. The
/// caller appends `rest_len` bytes of the original body after its statement name (formats,
/// parameters, result formats), which may stream in later.
pub(crate) fn bind_head(buf: &mut BytesMut, portal: &[u8], statement: &[u8], rest_len: usize) {
    put_header(buf, b'B', portal.len() + statement.len() + 2 + rest_len);
    put_cstr(buf, portal);
    put_cstr(buf, statement);
}

/// `Describe` (`S` statement or `P` portal) of `name`.
pub(crate) fn describe(buf: &mut BytesMut, kind: u8, name: &[u8]) {
    put_header(buf, b'D', 1 + name.len() + 1);
    buf.put_u8(kind);
    put_cstr(buf, name);
}

/// `Close` (`S` statement or `P` portal) of `name`.
pub(crate) fn close(buf: &mut BytesMut, kind: u8, name: &[u8]) {
    put_header(buf, b'C', 1 + name.len() + 1);
    buf.put_u8(kind);
    put_cstr(buf, name);
}

/// `Sync`.
pub(crate) fn sync(buf: &mut BytesMut) {
    put_header(buf, b'S', 0);
}

/// `Terminate`.
pub(crate) fn terminate(buf: &mut BytesMut) {
    put_header(buf, b'X', 0);
}

/// `CancelRequest` (protocol 3.0 key).
pub(crate) fn cancel_request(buf: &mut BytesMut, pid: u32, secret: u32) {
    buf.put_i32(16);
    buf.put_u32(CANCEL_REQUEST_CODE);
    buf.put_u32(pid);
    buf.put_u32(secret);
}

/// A parsed `SASLInitialResponse` body.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct SaslInitial<'a> {
    /// Chosen mechanism name.
    pub(crate) mechanism: &'a str,
    /// Client-first-message (empty if the client sent length -1).
    pub(crate) data: &'a [u8],
}

/// Parses a `SASLInitialResponse` body (after tag and length).
pub(crate) fn parse_sasl_initial(body: &[u8]) -> Option<SaslInitial<'_>> {
    let (mechanism, rest) = read_cstr(body)?;
    let (len, rest) = read_i32(rest)?;
    let data = match len {
        -1 => &[][..],
        n if usize::try_from(n).ok() == Some(rest.len()) => rest,
        _ => return None,
    };
    Some(SaslInitial { mechanism, data })
}

/// Parses a `PasswordMessage` body: the password without its trailing NUL.
pub(crate) fn parse_password(body: &[u8]) -> Option<&[u8]> {
    match body.split_last() {
        Some((0, pw)) if !pw.contains(&0) => Some(pw),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sasl_initial_roundtrip() {
        let mut b = BytesMut::new();
        sasl_initial_response(&mut b, "SCRAM-SHA-256", b"n,,n=,r=abc");
        let p = parse_sasl_initial(&b[5..]).unwrap();
        assert_eq!(p.mechanism, "SCRAM-SHA-256");
        assert_eq!(p.data, b"n,,n=,r=abc");
        assert!(parse_sasl_initial(&b[5..b.len() - 1]).is_none());
    }

    #[test]
    fn password_parse() {
        assert_eq!(parse_password(b"pw\0"), Some(&b"pw"[..]));
        assert_eq!(parse_password(b"pw"), None);
        assert_eq!(parse_password(b"p\0w\0"), None);
    }

    #[test]
    fn startup_message_length() {
        let mut b = BytesMut::new();
        startup_message(&mut b, [("user", "u"), ("database", "d")]);
        let len = i32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
        assert_eq!(len, b.len());
    }
}
