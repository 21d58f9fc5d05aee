//! Whole-message reads for the login phases, where messages are few, small and bounded.

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Reading a framed message failed.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The socket failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The peer closed the connection.
    #[error("connection closed by peer")]
    Eof,
    /// The declared length is below the protocol minimum.
    #[error("invalid message length {0}")]
    BadLength(u32),
    /// The declared length is over the limit for this phase.
    #[error("message of {len} bytes is over the limit of {max} bytes for this phase")]
    TooLarge {
        /// Declared length.
        len: u32,
        /// Allowed maximum.
        max: usize,
    },
}

/// Reads one tagged message (`tag`, `len`, body) from `stream`, using `buf` for read-ahead:
/// bytes after the message stay in `buf` for the next call. The length is checked against
/// `max` before any memory is reserved for the body.
///
/// # Cancel safety
/// Cancel safe: partial data stays in `buf`.
pub async fn read_message<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    max: usize,
) -> Result<(u8, BytesMut), FrameError> {
    loop {
        if let Some(header) = buf.first_chunk::<5>() {
            let tag = header[0];
            let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
            if len < 4 {
                return Err(FrameError::BadLength(len));
            }
            let body_len = (len - 4) as usize;
            if body_len > max {
                return Err(FrameError::TooLarge { len, max });
            }
            if buf.len() >= 5 + body_len {
                buf.advance(5);
                let body = buf.split_to(body_len);
                return Ok((tag, body));
            }
            buf.reserve(5 + body_len - buf.len());
        } else {
            buf.reserve(512);
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
            Err(FrameError::TooLarge { .. })
        ));
        let mut src: &[u8] = b"p\0\0\0\x01";
        let mut buf = BytesMut::new();
        assert!(matches!(
            read_message(&mut src, &mut buf, 1000).await,
            Err(FrameError::BadLength(1))
        ));
    }
}
