//! Message framing: the one place that reads a message header, and the primitives every message
//! builder uses.
//!
//! After the startup packet every message is a tag byte, a big-endian `u32` length that counts
//! itself but not the tag, and a body. A peer's length is checked against a limit before
//! anything is reserved for the body: that is what keeps a client from making lakepool hold
//! memory it declared but never sent. Reference:
//! <https://www.postgresql.org/docs/current/protocol-overview.html#PROTOCOL-MESSAGE-CONCEPTS>.

use bytes::{BufMut, BytesMut};

/// Tag plus length field.
pub(crate) const HEADER_LEN: usize = 5;

/// A message header: its tag and the length of its body (the length field minus its own 4 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    /// Message tag.
    pub(crate) tag: u8,
    /// Body length in bytes.
    pub(crate) body_len: usize,
}

impl Header {
    /// Length of the whole message, header included.
    pub(crate) fn total(self) -> usize {
        HEADER_LEN + self.body_len
    }
}

/// A peer's length field cannot be honoured.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// Length field below 4.
    #[error("invalid message length {len} for message type {tag:?}")]
    BadLength {
        /// Tag as a char.
        tag: char,
        /// Declared length.
        len: u32,
    },
    /// Length above the limit that applies.
    #[error("message of type {tag:?} is {len} bytes, over the limit of {max} bytes")]
    TooLarge {
        /// Tag as a char.
        tag: char,
        /// Declared length.
        len: u32,
        /// Largest body accepted.
        max: usize,
    },
}

/// Parses the header at the start of `bytes`, rejecting a body longer than `max_body`. None when
/// fewer than [`HEADER_LEN`] bytes are there yet.
pub(crate) fn parse_header(bytes: &[u8], max_body: usize) -> Result<Option<Header>, FrameError> {
    let Some(h) = bytes.first_chunk::<HEADER_LEN>() else {
        return Ok(None);
    };
    let tag = h[0];
    let len = u32::from_be_bytes([h[1], h[2], h[3], h[4]]);
    if len < 4 {
        return Err(FrameError::BadLength {
            tag: char::from(tag),
            len,
        });
    }
    let body_len = (len - 4) as usize;
    if body_len > max_body {
        return Err(FrameError::TooLarge {
            tag: char::from(tag),
            len,
            max: max_body,
        });
    }
    Ok(Some(Header { tag, body_len }))
}

/// Writes a header for a body of `body_len` bytes that the caller appends next.
pub(crate) fn put_header(buf: &mut BytesMut, tag: u8, body_len: usize) {
    buf.put_u8(tag);
    buf.put_u32(u32::try_from(body_len + 4).unwrap_or(u32::MAX));
}

/// Starts a message whose length is not known yet; returns the offset [`finish`] patches.
pub(crate) fn begin(buf: &mut BytesMut, tag: u8) -> usize {
    buf.put_u8(tag);
    let at = buf.len();
    buf.put_u32(0);
    at
}

/// Patches the length of a message started with [`begin`].
pub(crate) fn finish(buf: &mut BytesMut, at: usize) {
    let len = u32::try_from(buf.len() - at).unwrap_or(u32::MAX);
    buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

/// Appends a NUL-terminated string. A NUL inside would end the field early and shift every
/// later field, so inner NULs are dropped (PostgreSQL strings never carry one).
pub(crate) fn put_cstr(buf: &mut BytesMut, s: &[u8]) {
    // memchr, not `contains`: a login writes over a dozen strings, and memchr's word-at-a-time
    // scan takes a fraction of contains' instructions.
    if memchr::memchr(0, s).is_some() {
        buf.extend(s.iter().copied().filter(|&b| b != 0));
    } else {
        buf.put_slice(s);
    }
    buf.put_u8(0);
}

/// Splits a NUL-terminated string off the start of `b`: (the string, the rest after its NUL).
pub(crate) fn split_cstr(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = memchr::memchr(0, b)?;
    Some((&b[..end], &b[end + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_needs_five_bytes_and_checks_the_length() {
        assert_eq!(parse_header(b"Q\0\0\0", 10), Ok(None));
        assert_eq!(
            parse_header(b"Q\0\0\0\x09sel", 10),
            Ok(Some(Header {
                tag: b'Q',
                body_len: 5
            }))
        );
        assert!(matches!(
            parse_header(b"Q\0\0\0\x03", 10),
            Err(FrameError::BadLength { len: 3, .. })
        ));
        assert!(matches!(
            parse_header(b"Q\x40\0\0\0", 1 << 20),
            Err(FrameError::TooLarge { .. })
        ));
        // The largest length a u32 holds is still checked, not wrapped.
        assert!(parse_header(b"Q\xff\xff\xff\xff", usize::MAX).is_ok());
    }

    #[test]
    fn begin_finish_and_put_header_agree() {
        let mut a = BytesMut::new();
        let at = begin(&mut a, b'C');
        put_cstr(&mut a, b"SELECT 1");
        finish(&mut a, at);
        let mut b = BytesMut::new();
        put_header(&mut b, b'C', 9);
        put_cstr(&mut b, b"SEL\0ECT 1");
        assert_eq!(a, b);
        let h = parse_header(&a, 100).unwrap().unwrap();
        assert_eq!(h.total(), a.len());
    }

    #[test]
    fn split_cstr_finds_the_terminator() {
        assert_eq!(split_cstr(b"ab\0cd"), Some((&b"ab"[..], &b"cd"[..])));
        assert_eq!(split_cstr(b"ab"), None);
    }
}
