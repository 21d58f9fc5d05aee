//! PostgreSQL wire protocol codec: no I/O, no tokio.
//!
//! Only what a protocol-transparent pooler needs: startup-phase packets, the few backend messages
//! lakepool writes itself (authentication, errors, ReadyForQuery…), frontend messages it writes to
//! the upstream during login, and a streaming scanner that finds message boundaries in forwarded
//! bytes without copying them. Reference: <https://www.postgresql.org/docs/current/protocol-message-formats.html>.

pub(crate) mod backend;
pub(crate) mod frame;
pub(crate) mod frontend;
/// Lexer-level SQL classifier: spots statements that change session state (transaction pooling).
pub(crate) mod sql;
pub(crate) mod sqlstate;
pub(crate) mod startup;
pub(crate) mod write;

/// Protocol version 3.0 as sent in a StartupMessage.
pub(crate) const PROTOCOL_3_0: u32 = 196_608;
/// `SSLRequest` magic code.
pub(crate) const SSL_REQUEST_CODE: u32 = 80_877_103;
/// `GSSENCRequest` magic code.
pub(crate) const GSSENC_REQUEST_CODE: u32 = 80_877_104;
/// `CancelRequest` magic code.
pub(crate) const CANCEL_REQUEST_CODE: u32 = 80_877_102;

/// Reads a NUL-terminated string at the start of `buf`; returns it and the rest after the NUL.
pub(crate) fn read_cstr(buf: &[u8]) -> Option<(&str, &[u8])> {
    let nul = memchr::memchr(0, buf)?;
    let s = std::str::from_utf8(&buf[..nul]).ok()?;
    Some((s, &buf[nul + 1..]))
}

/// Reads a big-endian i32 at the start of `buf`.
pub(crate) fn read_i32(buf: &[u8]) -> Option<(i32, &[u8])> {
    let (head, rest) = buf.split_first_chunk::<4>()?;
    Some((i32::from_be_bytes(*head), rest))
}
