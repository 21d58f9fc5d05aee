//! Frontend messages: the ones lakepool writes to an upstream server while logging in or
//! cleaning up a connection, and the few it parses from clients during authentication.

use bytes::{BufMut, BytesMut};

use super::{CANCEL_REQUEST_CODE, PROTOCOL_3_0, SSL_REQUEST_CODE, read_cstr, read_i32};

fn begin(buf: &mut BytesMut, tag: u8) -> usize {
    buf.put_u8(tag);
    let at = buf.len();
    buf.put_i32(0);
    at
}

fn finish(buf: &mut BytesMut, at: usize) {
    let len = i32::try_from(buf.len() - at).unwrap_or(i32::MAX);
    buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

fn put_cstr(buf: &mut BytesMut, s: &str) {
    buf.extend(s.bytes().filter(|&b| b != 0));
    buf.put_u8(0);
}

/// `SSLRequest`.
pub fn ssl_request(buf: &mut BytesMut) {
    buf.put_i32(8);
    buf.put_u32(SSL_REQUEST_CODE);
}

/// `StartupMessage` for protocol 3.0.
pub fn startup_message<'a>(
    buf: &mut BytesMut,
    params: impl IntoIterator<Item = (&'a str, &'a str)>,
) {
    let at = buf.len();
    buf.put_i32(0);
    buf.put_u32(PROTOCOL_3_0);
    for (k, v) in params {
        put_cstr(buf, k);
        put_cstr(buf, v);
    }
    buf.put_u8(0);
    let len = i32::try_from(buf.len() - at).unwrap_or(i32::MAX);
    buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

/// `PasswordMessage` (cleartext or md5 response).
pub fn password_message(buf: &mut BytesMut, password: &str) {
    let at = begin(buf, b'p');
    put_cstr(buf, password);
    finish(buf, at);
}

/// `SASLInitialResponse`.
pub fn sasl_initial_response(buf: &mut BytesMut, mechanism: &str, data: &[u8]) {
    let at = begin(buf, b'p');
    put_cstr(buf, mechanism);
    buf.put_i32(i32::try_from(data.len()).unwrap_or(i32::MAX));
    buf.put_slice(data);
    finish(buf, at);
}

/// `SASLResponse`.
pub fn sasl_response(buf: &mut BytesMut, data: &[u8]) {
    let at = begin(buf, b'p');
    buf.put_slice(data);
    finish(buf, at);
}

/// Simple `Query`.
pub fn query(buf: &mut BytesMut, sql: &str) {
    let at = begin(buf, b'Q');
    put_cstr(buf, sql);
    finish(buf, at);
}

/// `Terminate`.
pub fn terminate(buf: &mut BytesMut) {
    buf.put_u8(b'X');
    buf.put_i32(4);
}

/// `CancelRequest` (protocol 3.0 key).
pub fn cancel_request(buf: &mut BytesMut, pid: u32, secret: u32) {
    buf.put_i32(16);
    buf.put_u32(CANCEL_REQUEST_CODE);
    buf.put_u32(pid);
    buf.put_u32(secret);
}

/// A parsed `SASLInitialResponse` body.
#[derive(Debug, PartialEq, Eq)]
pub struct SaslInitial<'a> {
    /// Chosen mechanism name.
    pub mechanism: &'a str,
    /// Client-first-message (empty if the client sent length -1).
    pub data: &'a [u8],
}

/// Parses a `SASLInitialResponse` body (after tag and length).
pub fn parse_sasl_initial(body: &[u8]) -> Option<SaslInitial<'_>> {
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
pub fn parse_password(body: &[u8]) -> Option<&[u8]> {
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
