//! Whole-message reads for the login phases, where messages are few, small and bounded.

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::proto::frame::{HEADER_LEN, parse_header};

/// Reading a framed message failed.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The socket failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The peer closed the connection.
    #[error("connection closed by peer")]
    Eof,
    /// The peer's length field cannot be honoured in this phase.
    #[error(transparent)]
    Framing(#[from] crate::proto::frame::FrameError),
}

/// Reads one tagged message (`tag`, body) from `stream`, using `buf` for read-ahead: bytes after
/// the message stay in `buf` for the next call. The length is checked against `max` before any
/// memory is reserved for the body.
///
/// # Cancel safety
/// Cancel safe: partial data stays in `buf`.
pub(crate) async fn read_message<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    max: usize,
) -> Result<(u8, BytesMut), FrameError> {
    loop {
        match parse_header(buf, max)? {
            Some(h) if buf.len() >= h.total() => {
                buf.advance(HEADER_LEN);
                return Ok((h.tag, buf.split_to(h.body_len)));
            }
            Some(h) => buf.reserve(h.total() - buf.len()),
            None => buf.reserve(512),
        }
        if stream.read_buf(buf).await? == 0 {
            return Err(FrameError::Eof);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_messages_and_keeps_rest() {
        let data: &[u8] = b"R\0\0\0\x08\0\0\0\0Z\0\0\0\x05I";
        let mut src = data;
        let mut buf = BytesMut::new();
        let (t, b) = read_message(&mut src, &mut buf, 100).await.unwrap();
        assert_eq!((t, &b[..]), (b'R', &[0, 0, 0, 0][..]));
        let (t, b) = read_message(&mut src, &mut buf, 100).await.unwrap();
        assert_eq!((t, &b[..]), (b'Z', &b"I"[..]));
        assert!(matches!(
            read_message(&mut src, &mut buf, 100).await,
            Err(FrameError::Eof)
        ));
    }

    #[tokio::test]
    async fn rejects_lengths() {
        let mut src: &[u8] = b"p\xff\xff\xff\xff";
        let mut buf = BytesMut::new();
        assert!(matches!(
            read_message(&mut src, &mut buf, 1000).await,
            Err(FrameError::Framing(
                crate::proto::frame::FrameError::TooLarge { .. }
            ))
        ));
        let mut src: &[u8] = b"p\0\0\0\x01";
        let mut buf = BytesMut::new();
        assert!(matches!(
            read_message(&mut src, &mut buf, 1000).await,
            Err(FrameError::Framing(
                crate::proto::frame::FrameError::BadLength { len: 1, .. }
            ))
        ));
    }
}
