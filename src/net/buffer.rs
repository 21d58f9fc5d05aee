//! Per-thread pool of I/O buffers.
//!
//! An idle client holds no buffer: it waits for socket readiness, takes a buffer to read its
//! request, and gives it back when its transaction is done. That keeps memory per idle client
//! to a few hundred bytes while a busy client never allocates per message. The pool is
//! thread-local, so taking and returning a buffer costs no lock.

use std::cell::RefCell;

use bytes::BytesMut;

/// Size of a pooled buffer: one read of this size covers typical queries and result chunks.
pub(crate) const BUF_SIZE: usize = 16 * 1024;
/// Buffers kept per thread; beyond that returned buffers are freed.
const KEEP_PER_THREAD: usize = 256;

thread_local! {
    static FREE: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}

/// Takes an empty buffer with at least [`BUF_SIZE`] capacity.
pub(crate) fn take() -> BytesMut {
    FREE.with(|f| f.borrow_mut().pop())
        .unwrap_or_else(|| BytesMut::with_capacity(BUF_SIZE))
}

/// Returns a buffer for reuse. Buffers that grew far past the standard size (a huge message
/// went through) are dropped rather than kept.
pub(crate) fn give(mut buf: BytesMut) {
    if buf.capacity() > 4 * BUF_SIZE {
        return;
    }
    buf.clear();
    // A buffer read from the front (`advance`) reports less capacity than it owns; reserving
    // takes the front back without allocating when the allocation is large enough.
    if buf.capacity() < BUF_SIZE {
        buf.reserve(BUF_SIZE);
        // Reserving may have taken back a large allocation: keep only standard ones.
        if buf.capacity() < BUF_SIZE || buf.capacity() > 4 * BUF_SIZE {
            return;
        }
    }
    FREE.with(|f| {
        let mut f = f.borrow_mut();
        if f.len() < KEEP_PER_THREAD {
            f.push(buf);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_buffers() {
        let mut b = take();
        b.extend_from_slice(b"abc");
        let ptr = b.as_ptr();
        give(b);
        let b2 = take();
        assert!(b2.is_empty());
        assert_eq!(b2.as_ptr(), ptr);
    }

    #[test]
    fn a_buffer_consumed_from_the_front_is_kept_whole() {
        use bytes::Buf;
        let mut b = take();
        let ptr = b.as_ptr();
        b.extend_from_slice(&[1; 100]);
        b.advance(100);
        assert!(b.capacity() < BUF_SIZE);
        give(b);
        let b2 = take();
        assert_eq!(b2.as_ptr(), ptr, "same allocation, not a new one");
        assert!(b2.capacity() >= BUF_SIZE);
    }
}
