//! One direction of the data path: a fixed read buffer, framed once, and the output built from
//! it.
//!
//! Bytes are read into one buffer of [`buffer::BUF_SIZE`] bytes and framed in place. A message
//! passed unchanged is not copied: the output is a range of the read buffer. Only when a
//! message is rewritten, dropped or made up does the output switch to a second buffer, into
//! which the rest of that round is copied, so one round is always one write. A message larger
//! than the read buffer streams through it piece by piece; nothing is held whole unless the
//! caller must inspect it, and then only up to the hold limit (the side buffer [`Held`]).
//!
//! The read buffer is never grown: what a peer declares cannot make lakepool reserve memory,
//! and a direction reads again only once its output is written (backpressure).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::io::poll_read_buf;

use crate::net::buffer;
use crate::proto::frame::{FrameError, HEADER_LEN, Header, parse_header};

/// A message body still to come through the read buffer.
#[derive(Debug, Clone, Copy)]
struct Streaming {
    /// Body bytes not seen yet.
    remaining: usize,
    /// They go out (true) or are dropped (false).
    forward: bool,
}

/// A message too large for the read buffer that the caller needs whole.
#[derive(Debug)]
struct Held {
    /// The message as received so far, header included.
    msg: BytesMut,
    /// Its full length, header included.
    total: usize,
}

/// What [`Pipe::next`] found at the framing position.
#[derive(Debug)]
pub(crate) enum Next {
    /// More bytes are needed (a header or a message the caller wants whole is incomplete).
    NeedMore,
    /// A message header; the caller decides what to do with the message.
    Message(Header),
}

/// One direction's buffers.
#[derive(Debug, Default)]
pub(crate) struct Pipe {
    /// Read buffer: `buf[pos..]` is not framed yet.
    buf: BytesMut,
    pos: usize,
    /// Zero-copy output: `buf[zc_from..zc_to]`.
    zc_from: usize,
    zc_to: usize,
    /// Output in copy mode (used once anything in the round was not passed unchanged).
    made: BytesMut,
    copying: bool,
    /// Bytes of the current output already written.
    written: usize,
    /// Everything was written but the flush (TLS records) has not completed yet.
    flushing: bool,
    streaming: Option<Streaming>,
    /// Boxed: rare (a message larger than the read buffer that is needed whole), and every
    /// idle client carries this struct.
    held: Option<Box<Held>>,
}

impl Pipe {
    /// A pipe whose read buffer starts with `bytes` (what arrived behind the login).
    pub(crate) fn with_input(bytes: &[u8]) -> Self {
        let mut p = Self::default();
        if !bytes.is_empty() {
            p.ensure_buffer();
            p.buf.extend_from_slice(bytes);
        }
        p
    }

    /// A pipe reading into `buf` (a server connection's own buffer, kept with it).
    pub(crate) fn over(buf: BytesMut) -> Self {
        let mut p = Self::default();
        p.buf = buf;
        p
    }

    /// Gives the read buffer back (with any unread bytes), leaving the pipe empty.
    pub(crate) fn into_buffer(mut self) -> BytesMut {
        if self.pos > 0 {
            self.compact();
        }
        if self.made.capacity() > 0 {
            buffer::give(std::mem::take(&mut self.made));
        }
        std::mem::take(&mut self.buf)
    }

    fn ensure_buffer(&mut self) {
        if self.buf.capacity() == 0 {
            self.buf = buffer::take();
        } else if self.buf.capacity() < buffer::BUF_SIZE {
            // A buffer from elsewhere (a server connection's login reads): the framing
            // counts on BUF_SIZE of room.
            self.buf.reserve(buffer::BUF_SIZE - self.buf.len());
        }
    }

    /// Nothing read and not handled, nothing to write, no message half through: the pipe
    /// holds no state, and its buffers can go back to the per-thread pool.
    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
            && !self.has_output()
            && self.streaming.is_none()
            && self.held.is_none()
    }

    /// Empty and holding no buffer: equal to a new pipe.
    pub(crate) fn is_pristine(&self) -> bool {
        self.is_empty() && self.buf.capacity() == 0 && self.made.capacity() == 0 && self.pos == 0
    }

    /// Returns the buffers to the per-thread pool when the pipe is empty (an idle client holds
    /// none).
    pub(crate) fn release_buffers(&mut self) {
        if !self.is_empty() {
            return;
        }
        if self.buf.capacity() > 0 {
            buffer::give(std::mem::take(&mut self.buf));
        }
        if self.made.capacity() > 0 {
            buffer::give(std::mem::take(&mut self.made));
        }
        self.pos = 0;
        self.zc_from = 0;
        self.zc_to = 0;
    }

    /// Appends input as if read from the socket (tests and the fuzz harnesses drive the
    /// framing without sockets).
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn feed(&mut self, bytes: &[u8]) {
        self.ensure_buffer();
        if !self.has_output() {
            self.compact();
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Takes the output as if written to a socket.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn drain(&mut self) -> Vec<u8> {
        let mut sink = Vec::new();
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match self.poll_write_out(&mut cx, &mut sink) {
            Poll::Ready(Ok(())) => sink,
            other => panic!("{other:?}"),
        }
    }

    /// Drops everything read and not framed (input lakepool answered itself).
    pub(crate) fn discard_unread(&mut self) {
        self.pos = self.buf.len();
        if !self.has_output() {
            self.compact();
        }
    }

    /// Unframed bytes at the framing position.
    pub(crate) fn unread(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Bytes waiting to be written.
    pub(crate) fn output_len(&self) -> usize {
        if self.copying {
            self.made.len() - self.written
        } else {
            self.zc_to - self.zc_from - self.written
        }
    }

    /// Something is waiting to be written or flushed.
    pub(crate) fn has_output(&self) -> bool {
        self.flushing || self.output_len() > 0
    }

    /// A message body is partly through: the peer on the other side is mid-message.
    pub(crate) fn is_streaming(&self) -> bool {
        self.streaming.is_some()
    }

    /// A message is being collected in the side buffer.
    pub(crate) fn is_holding(&self) -> bool {
        self.held.is_some()
    }

    /// Frames the next message: its header when at a boundary, or `NeedMore`. While a body
    /// streams, that body is moved first (pass or drop), and `NeedMore` returned until it ends.
    #[inline]
    pub(crate) fn next(&mut self, max_body: usize) -> Result<Next, FrameError> {
        // The framing loops ask again after every read and write: most asks find less than a
        // header and nothing held or streaming, which needs no call.
        if self.buf.len() - self.pos < HEADER_LEN && self.held.is_none() && self.streaming.is_none()
        {
            return Ok(Next::NeedMore);
        }
        self.next_slow(max_body)
    }

    fn next_slow(&mut self, max_body: usize) -> Result<Next, FrameError> {
        if let Some(held) = self.held.as_mut() {
            let n = (held.total - held.msg.len()).min(self.buf.len() - self.pos);
            held.msg
                .extend_from_slice(&self.buf[self.pos..self.pos + n]);
            self.pos += n;
            if held.msg.len() < held.total {
                return Ok(Next::NeedMore);
            }
            // Complete: framed again from the side buffer, which `whole` and the others use.
            return Ok(match parse_header(&held.msg, usize::MAX)? {
                Some(h) => Next::Message(h),
                None => Next::NeedMore,
            });
        }
        if let Some(s) = self.streaming {
            let n = s.remaining.min(self.buf.len() - self.pos);
            if s.forward {
                self.pass(n);
            } else {
                self.skip(n);
            }
            let remaining = s.remaining - n;
            if remaining > 0 {
                self.streaming = Some(Streaming { remaining, ..s });
                return Ok(Next::NeedMore);
            }
            self.streaming = None;
        }
        match parse_header(self.unread(), max_body)? {
            Some(h) => Ok(Next::Message(h)),
            None => Ok(Next::NeedMore),
        }
    }

    /// The whole message at the framing position when it has arrived (in the read buffer, or
    /// in the side buffer for a held one).
    pub(crate) fn whole(&self, h: Header) -> Option<&[u8]> {
        match &self.held {
            Some(held) => (held.msg.len() == h.total()).then_some(&held.msg[..]),
            None => self.unread().get(..h.total()),
        }
    }

    /// Whether the message could ever be whole in the read buffer.
    pub(crate) fn fits(&self, h: Header) -> bool {
        h.total() <= buffer::BUF_SIZE
    }

    /// Passes the message at the framing position unchanged. Its body may still be arriving;
    /// the rest streams through as it comes.
    pub(crate) fn pass_message(&mut self, h: Header) {
        if let Some(held) = self.held.take() {
            self.start_copying();
            self.made.extend_from_slice(&held.msg);
            return;
        }
        self.move_message(h, true);
    }

    /// Drops the message at the framing position, including any part still to arrive.
    pub(crate) fn drop_message(&mut self, h: Header) {
        if self.held.take().is_some() {
            return;
        }
        self.move_message(h, false);
    }

    fn move_message(&mut self, h: Header, forward: bool) {
        let n = h.total().min(self.buf.len() - self.pos);
        if forward {
            self.pass(n);
        } else {
            self.skip(n);
        }
        if n < h.total() {
            self.streaming = Some(Streaming {
                remaining: h.total() - n,
                forward,
            });
        }
    }

    /// Consumes the first `n` bytes of the message at the framing position without output;
    /// the remaining `h.total() - n` bytes are passed unchanged as they come (a rewritten head
    /// followed by the original tail, e.g. a Bind with large parameters).
    pub(crate) fn replace_head(&mut self, h: Header, n: usize) {
        self.skip(n);
        let rest = h.total() - n;
        let here = rest.min(self.buf.len() - self.pos);
        self.pass(here);
        if here < rest {
            self.streaming = Some(Streaming {
                remaining: rest - here,
                forward: true,
            });
        }
    }

    /// Replaces the first `n` bytes of the message at the framing position with what `f` writes
    /// (given those bytes), and passes the rest unchanged as it comes.
    pub(crate) fn rewrite_head(
        &mut self,
        h: Header,
        n: usize,
        f: impl FnOnce(&[u8], &mut BytesMut),
    ) {
        self.start_copying();
        if let Some(held) = self.held.take() {
            f(&held.msg[..n], &mut self.made);
            self.made.extend_from_slice(&held.msg[n..]);
            return;
        }
        f(&self.buf[self.pos..self.pos + n], &mut self.made);
        self.replace_head(h, n);
    }

    /// Starts collecting the message at the framing position in the side buffer (it is larger
    /// than the read buffer and within the hold limit the caller checked). The memory is
    /// reserved as the bytes arrive, never ahead of them.
    pub(crate) fn start_holding(&mut self, h: Header) {
        let n = self.buf.len() - self.pos;
        let mut msg = BytesMut::with_capacity(n.max(buffer::BUF_SIZE));
        msg.extend_from_slice(&self.buf[self.pos..]);
        self.skip(n);
        self.held = Some(Box::new(Held {
            msg,
            total: h.total(),
        }));
    }

    /// Consumes the whole message at the framing position without output (it was rewritten
    /// or answered by the caller).
    pub(crate) fn consume(&mut self, h: Header) {
        if self.held.take().is_none() {
            self.skip(h.total());
        }
    }

    /// Moves this pipe's pending output to the end of `other`'s.
    pub(crate) fn move_output_into(&mut self, other: &mut Pipe) {
        let out = if self.copying {
            &self.made[self.written..]
        } else {
            &self.buf[self.zc_from + self.written..self.zc_to]
        };
        if !out.is_empty() {
            other.emit().extend_from_slice(out);
        }
        self.written = 0;
        self.made.clear();
        self.copying = false;
        self.zc_from = self.pos;
        self.zc_to = self.pos;
    }

    /// Output buffer for rewritten or made-up bytes, in order after what is already queued.
    pub(crate) fn emit(&mut self) -> &mut BytesMut {
        self.start_copying();
        &mut self.made
    }

    fn pass(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        if !self.copying && self.zc_to == self.pos {
            self.zc_to += n;
        } else if !self.copying && self.zc_from == self.zc_to {
            self.zc_from = self.pos;
            self.zc_to = self.pos + n;
        } else {
            self.start_copying();
            self.made
                .extend_from_slice(&self.buf[self.pos..self.pos + n]);
        }
        self.pos += n;
    }

    fn skip(&mut self, n: usize) {
        self.pos += n;
    }

    fn start_copying(&mut self) {
        if self.copying {
            return;
        }
        if self.made.capacity() == 0 {
            self.made = buffer::take();
        }
        self.made
            .extend_from_slice(&self.buf[self.zc_from + self.written..self.zc_to]);
        self.written = 0;
        self.zc_from = self.zc_to;
        self.copying = true;
    }

    /// Writes the output to `dst` and flushes. Ready(Ok) once nothing is left to write.
    pub(crate) fn poll_write_out<W: AsyncWrite + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        dst: &mut W,
    ) -> Poll<io::Result<()>> {
        loop {
            let out = if self.copying {
                &self.made[self.written..]
            } else {
                &self.buf[self.zc_from + self.written..self.zc_to]
            };
            if out.is_empty() {
                break;
            }
            let n = ready!(Pin::new(&mut *dst).poll_write(cx, out))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
            self.flushing = true;
        }
        // Written: the ranges are free for the next round even while a flush is pending.
        self.written = 0;
        if self.copying {
            self.made.clear();
            self.copying = false;
        }
        self.zc_from = self.pos;
        self.zc_to = self.pos;
        if self.flushing {
            ready!(Pin::new(&mut *dst).poll_flush(cx))?;
            self.flushing = false;
        }
        Poll::Ready(Ok(()))
    }

    /// Reads more from `src` once everything framed so far is written. Ready(Ok(0)) at EOF.
    pub(crate) fn poll_fill<R: AsyncRead + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        src: &mut R,
    ) -> Poll<io::Result<usize>> {
        self.ensure_buffer();
        if !self.has_output() {
            self.compact();
        }
        if self.buf.len() == self.buf.capacity() {
            // Only a partial header or a message waiting to be whole can be left, and both fit
            // (`fits` is checked before waiting): compacting made room unless output is pending,
            // which the caller writes before reading.
            return Poll::Ready(Err(io::Error::other("read buffer full")));
        }
        poll_read_buf(Pin::new(src), cx, &mut self.buf)
    }

    /// Moves unframed bytes to the front of the read buffer (no output refers to it).
    fn compact(&mut self) {
        if self.pos == 0 {
            return;
        }
        let rest = self.buf.len() - self.pos;
        if rest > 0 {
            self.buf.copy_within(self.pos.., 0);
        }
        self.buf.truncate(rest);
        self.pos = 0;
        self.zc_from = 0;
        self.zc_to = 0;
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        if self.buf.capacity() > 0 {
            buffer::give(std::mem::take(&mut self.buf));
        }
        if self.made.capacity() > 0 {
            buffer::give(std::mem::take(&mut self.made));
        }
    }
}

#[cfg(test)]
#[path = "pipe_tests.rs"]
mod tests;
