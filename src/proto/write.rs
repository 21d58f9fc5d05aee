//! Writers for the backend messages lakepool sends to clients itself.
//!
//! Everything appends to a caller-supplied `BytesMut`, so nothing allocates behind the caller's back.

use bytes::{BufMut, BytesMut};

use super::frame::{begin, finish, put_cstr, put_header};
use super::sqlstate::SqlState;

/// `AuthenticationOk`.
pub(crate) fn auth_ok(buf: &mut BytesMut) {
    let at = begin(buf, b'R');
    buf.put_i32(0);
    finish(buf, at);
}

/// `AuthenticationCleartextPassword`.
pub(crate) fn auth_cleartext(buf: &mut BytesMut) {
    let at = begin(buf, b'R');
    buf.put_i32(3);
    finish(buf, at);
}

/// `AuthenticationMD5Password` with its salt.
pub(crate) fn auth_md5(buf: &mut BytesMut, salt: [u8; 4]) {
    let at = begin(buf, b'R');
    buf.put_i32(5);
    buf.put_slice(&salt);
    finish(buf, at);
}

/// `AuthenticationSASL` listing mechanisms.
pub(crate) fn auth_sasl(buf: &mut BytesMut, mechanisms: &[&str]) {
    let at = begin(buf, b'R');
    buf.put_i32(10);
    for m in mechanisms {
        put_cstr(buf, m.as_bytes());
    }
    buf.put_u8(0);
    finish(buf, at);
}

/// `AuthenticationSASLContinue`.
pub(crate) fn auth_sasl_continue(buf: &mut BytesMut, data: &[u8]) {
    let at = begin(buf, b'R');
    buf.put_i32(11);
    buf.put_slice(data);
    finish(buf, at);
}

/// `AuthenticationSASLFinal`.
pub(crate) fn auth_sasl_final(buf: &mut BytesMut, data: &[u8]) {
    let at = begin(buf, b'R');
    buf.put_i32(12);
    buf.put_slice(data);
    finish(buf, at);
}

/// `ParameterStatus`.
pub(crate) fn parameter_status(buf: &mut BytesMut, name: &str, value: &str) {
    let at = begin(buf, b'S');
    put_cstr(buf, name.as_bytes());
    put_cstr(buf, value.as_bytes());
    finish(buf, at);
}

/// `BackendKeyData` (protocol 3.0: 4-byte secret).
pub(crate) fn backend_key_data(buf: &mut BytesMut, pid: u32, secret: u32) {
    let at = begin(buf, b'K');
    buf.put_u32(pid);
    buf.put_u32(secret);
    finish(buf, at);
}

/// `ReadyForQuery` with a transaction status byte (`I`, `T` or `E`).
pub(crate) fn ready_for_query(buf: &mut BytesMut, status: u8) {
    let at = begin(buf, b'Z');
    buf.put_u8(status);
    finish(buf, at);
}

/// `ParseComplete`.
pub(crate) fn parse_complete(buf: &mut BytesMut) {
    put_header(buf, b'1', 0);
}

/// `CloseComplete`.
pub(crate) fn close_complete(buf: &mut BytesMut) {
    put_header(buf, b'3', 0);
}

/// `NegotiateProtocolVersion`: the newest version we support for the requested major version
/// (sent as the full `major << 16 | minor` number, as PostgreSQL and libpq do), plus the
/// options we did not recognise.
pub(crate) fn negotiate_protocol_version(buf: &mut BytesMut, version: u32, unrecognized: &[&str]) {
    let at = begin(buf, b'v');
    buf.put_u32(version);
    buf.put_u32(u32::try_from(unrecognized.len()).unwrap_or(u32::MAX));
    for o in unrecognized {
        put_cstr(buf, o.as_bytes());
    }
    finish(buf, at);
}

/// `RowDescription` of text-format columns: (name, type oid). Type sizes follow the oid
/// (`int8` 8 bytes, others variable).
pub(crate) fn row_description(buf: &mut BytesMut, columns: &[(&str, u32)]) {
    let at = begin(buf, b'T');
    buf.put_i16(i16::try_from(columns.len()).unwrap_or(i16::MAX));
    for (name, oid) in columns {
        put_cstr(buf, name.as_bytes());
        buf.put_i32(0); // table oid
        buf.put_i16(0); // column number
        buf.put_u32(*oid);
        buf.put_i16(if *oid == 20 { 8 } else { -1 });
        buf.put_i32(-1); // type modifier
        buf.put_i16(0); // text format
    }
    finish(buf, at);
}

/// `DataRow` of text values (None is NULL).
pub(crate) fn data_row(buf: &mut BytesMut, values: &[Option<&str>]) {
    let at = begin(buf, b'D');
    buf.put_i16(i16::try_from(values.len()).unwrap_or(i16::MAX));
    for v in values {
        match v {
            Some(v) => {
                buf.put_i32(i32::try_from(v.len()).unwrap_or(i32::MAX));
                buf.extend_from_slice(v.as_bytes());
            }
            None => buf.put_i32(-1),
        }
    }
    finish(buf, at);
}

/// `CommandComplete` with its tag (`SHOW`, `PAUSE`…).
pub(crate) fn command_complete(buf: &mut BytesMut, tag: &str) {
    let at = begin(buf, b'C');
    put_cstr(buf, tag.as_bytes());
    finish(buf, at);
}

/// `EmptyQueryResponse`.
pub(crate) fn empty_query(buf: &mut BytesMut) {
    let at = begin(buf, b'I');
    finish(buf, at);
}

/// `NoticeResponse` with severity NOTICE (code 00000).
pub(crate) fn notice(buf: &mut BytesMut, message: &str) {
    let at = begin(buf, b'N');
    for (k, v) in [
        (b'S', "NOTICE"),
        (b'V', "NOTICE"),
        (b'C', "00000"),
        (b'M', message),
    ] {
        buf.put_u8(k);
        put_cstr(buf, v.as_bytes());
    }
    buf.put_u8(0);
    finish(buf, at);
}

/// Severity of an ErrorResponse lakepool writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Severity {
    /// A NoticeResponse: something the client should know; nothing failed.
    Warning,
    /// The statement failed; the session goes on.
    Error,
    /// The session ends.
    Fatal,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "WARNING",
            Severity::Error => "ERROR",
            Severity::Fatal => "FATAL",
        }
    }
}

/// `NoticeResponse` with severity WARNING.
pub(crate) fn warning(buf: &mut BytesMut, code: SqlState, message: &str, hint: Option<&str>) {
    let at = buf.len();
    error_response(buf, Severity::Warning, code, message, None, hint);
    buf[at] = b'N';
}

/// `ErrorResponse` with severity, SQLSTATE, message and optional detail/hint.
pub(crate) fn error_response(
    buf: &mut BytesMut,
    severity: Severity,
    code: SqlState,
    message: &str,
    detail: Option<&str>,
    hint: Option<&str>,
) {
    let at = begin(buf, b'E');
    buf.put_u8(b'S');
    put_cstr(buf, severity.as_str().as_bytes());
    buf.put_u8(b'V');
    put_cstr(buf, severity.as_str().as_bytes());
    buf.put_u8(b'C');
    put_cstr(buf, code.as_str().as_bytes());
    buf.put_u8(b'M');
    put_cstr(buf, message.as_bytes());
    if let Some(d) = detail {
        buf.put_u8(b'D');
        put_cstr(buf, d.as_bytes());
    }
    if let Some(h) = hint {
        buf.put_u8(b'H');
        put_cstr(buf, h.as_bytes());
    }
    buf.put_u8(0);
    finish(buf, at);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_for_query_bytes() {
        let mut b = BytesMut::new();
        ready_for_query(&mut b, b'I');
        assert_eq!(&b[..], b"Z\0\0\0\x05I");
    }

    #[test]
    fn error_response_layout() {
        let mut b = BytesMut::new();
        error_response(
            &mut b,
            Severity::Fatal,
            SqlState::INVALID_PASSWORD,
            "bad",
            None,
            None,
        );
        assert_eq!(b[0], b'E');
        let len = i32::from_be_bytes([b[1], b[2], b[3], b[4]]) as usize;
        assert_eq!(len + 1, b.len());
        let body = &b[5..];
        assert!(body.windows(6).any(|w| w == b"C28P01"));
        assert_eq!(*body.last().unwrap(), 0);
    }

    #[test]
    fn auth_sasl_layout() {
        let mut b = BytesMut::new();
        auth_sasl(&mut b, &["SCRAM-SHA-256"]);
        assert_eq!(&b[..], b"R\0\0\0\x17\0\0\0\x0aSCRAM-SHA-256\0\0");
    }
}
