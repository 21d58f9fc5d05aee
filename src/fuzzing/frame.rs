//! Target `frame`: the message header parse, the message builders, and the login phases'
//! whole-message reads over a reader that returns the input in pieces.
//!
//! Input: a 2-byte body limit, a 1-byte read size (the reader hands out at most that many
//! bytes per read, at least one), then the bytes the peer sends.

use std::future::Future;
use std::pin::{Pin, pin};
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::io::{AsyncRead, ReadBuf};

use super::input::Input;
use crate::net::framed::{self, read_message};
use crate::proto::frame::{
    FrameError, HEADER_LEN, Header, begin, finish, parse_header, put_cstr, put_header, split_cstr,
};

/// One fuzz input.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let max = usize::from(input.u16());
    let step = usize::from(input.byte()).max(1);
    let bytes = input.take(usize::MAX);
    for at in 0..bytes.len().min(8) {
        check_header(&bytes[at..], max);
    }
    check_builders(bytes);
    check_reads(bytes, max, step);
}

/// `parse_header` against the protocol's rule, written out once more.
fn check_header(b: &[u8], max: usize) {
    let got = parse_header(b, max);
    let Some(h) = b.first_chunk::<HEADER_LEN>() else {
        assert_eq!(got, Ok(None));
        return;
    };
    let len = u32::from_be_bytes([h[1], h[2], h[3], h[4]]);
    match got {
        Ok(Some(Header { tag, body_len })) => {
            assert!(len >= 4 && (len - 4) as usize <= max);
            assert_eq!(tag, h[0]);
            assert_eq!(body_len, (len - 4) as usize);
        }
        Err(FrameError::BadLength { tag, len: l }) => {
            assert!(len < 4);
            assert_eq!((tag, l), (char::from(h[0]), len));
        }
        Err(FrameError::TooLarge { len: l, max: m, .. }) => {
            assert!(len >= 4 && (len - 4) as usize > max);
            assert_eq!((l, m), (len, max));
        }
        Ok(None) => panic!("five bytes and no header"),
    }
}

/// What the builders write frames back to what was written.
fn check_builders(b: &[u8]) {
    let tag = b.first().copied().unwrap_or(b'Q');
    let mut out = BytesMut::new();
    put_header(&mut out, tag, b.len());
    out.extend_from_slice(b);
    let h = parse_header(&out, usize::MAX).unwrap().unwrap();
    assert_eq!((h.tag, h.total()), (tag, out.len()));

    let mut out = BytesMut::new();
    let at = begin(&mut out, tag);
    put_cstr(&mut out, b);
    put_cstr(&mut out, b"");
    finish(&mut out, at);
    let h = parse_header(&out, usize::MAX).unwrap().unwrap();
    assert_eq!(h.total(), out.len());
    // A string with inner NULs is written without them, and reads back as one field.
    let (s, rest) = split_cstr(&out[HEADER_LEN..]).unwrap();
    let without: Vec<u8> = b.iter().copied().filter(|&c| c != 0).collect();
    assert_eq!(s, &without[..]);
    assert_eq!(rest, b"\0");
    match split_cstr(b) {
        Some((s, rest)) => {
            assert!(!s.contains(&0));
            assert_eq!(s.len() + 1 + rest.len(), b.len());
        }
        None => assert!(!b.contains(&0)),
    }
}

/// A reader handing out at most `step` bytes per read.
struct Pieces<'a> {
    data: &'a [u8],
    step: usize,
}

impl AsyncRead for Pieces<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = self.step.min(buf.remaining()).min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        buf.put_slice(head);
        self.data = rest;
        Poll::Ready(Ok(()))
    }
}

/// Polls a future whose I/O is always ready.
fn now<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("an in-memory read is never pending"),
    }
}

/// `read_message` returns exactly the messages a plain walk over the bytes finds, then the
/// same error.
fn check_reads(bytes: &[u8], max: usize, step: usize) {
    let mut reader = Pieces { data: bytes, step };
    let mut buf = BytesMut::new();
    let mut pos = 0;
    loop {
        let got = now(read_message(&mut reader, &mut buf, max));
        let want = parse_header(&bytes[pos..], max);
        match (got, want) {
            (Ok((tag, body)), Ok(Some(h))) => {
                assert!(pos + h.total() <= bytes.len());
                assert_eq!(tag, h.tag);
                assert_eq!(&body[..], &bytes[pos + HEADER_LEN..pos + h.total()]);
                // The declared length is checked before anything is reserved for it.
                assert!(buf.capacity() <= 2 * (max + HEADER_LEN) + 1024);
                pos += h.total();
            }
            (Err(framed::FrameError::Eof), Ok(h)) => {
                assert!(h.is_none_or(|h| pos + h.total() > bytes.len()));
                return;
            }
            (Err(framed::FrameError::Framing(e)), Err(w)) => {
                assert_eq!(e, w);
                return;
            }
            (got, want) => panic!("read_message gave {got:?} where the bytes hold {want:?}"),
        }
    }
}
