//! A socket that is plain TCP, TLS in either role, or a local Unix-domain socket.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::AsFd;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

/// Plain TCP, client-facing TLS, upstream TLS, or a local client's Unix-domain socket.
#[derive(Debug)]
pub(crate) enum Stream {
    /// No encryption.
    Plain(TcpStream),
    /// A client on this machine, through the Unix-domain socket: no network to protect.
    /// Boxed like the TLS variants, so that a `Stream`, which every idle client holds,
    /// stays the size of a TCP socket.
    Local(Box<UnixStream>),
    /// TLS where lakepool is the server (client side of lakepool).
    ServerTls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    /// TLS where lakepool is the client (upstream side).
    ClientTls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// What a pooled, idle server socket has seen since it was last used.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum IdleState {
    /// Nothing: safe to reuse.
    Quiet,
    /// The peer closed or sent something unsolicited (an error before closing, usually).
    Disturbed,
}

impl Stream {
    /// Whether the stream is encrypted.
    pub(crate) fn is_tls(&self) -> bool {
        matches!(self, Stream::ServerTls(_) | Stream::ClientTls(_))
    }

    /// Whether what crosses it stays off the network: TLS, or a local Unix-domain socket.
    /// Passwords may be sent in the clear over such a stream, and `client_tls = "require"`
    /// is met by it (as in PgBouncer, which neither offers nor requires TLS on its socket).
    pub(crate) fn is_private(&self) -> bool {
        !matches!(self, Stream::Plain(_))
    }

    /// Whether readiness can be awaited without a read buffer. TLS streams may hold decrypted
    /// bytes inside rustls that socket readiness does not show, so they must be read instead.
    pub(crate) fn can_wait_without_buffer(&self) -> bool {
        matches!(self, Stream::Plain(_) | Stream::Local(_))
    }

    /// False only when the runtime knows that this plain or local socket has had nothing to
    /// read since a read last found it empty: then a waker registered by that read is still
    /// in place, and polling again would only register it again. One load, without the
    /// budget and waker bookkeeping of a poll. Always true for TLS, whose streams may hold
    /// decrypted bytes that the socket does not show.
    pub(crate) fn may_be_readable(&self) -> bool {
        // An `Ok` from the closure leaves the readiness as it is (an error would clear it).
        let probe = || Ok(());
        match self {
            Stream::Plain(s) => s.try_io(Interest::READABLE, probe).is_ok(),
            Stream::Local(s) => s.try_io(Interest::READABLE, probe).is_ok(),
            Stream::ServerTls(_) | Stream::ClientTls(_) => true,
        }
    }

    /// Ready when a plain socket has something to read (data, EOF or an error). A poll, not a
    /// future: an idle client's task waits here, and a stored readiness future would add its
    /// size to every idle client's state. Nothing is consumed.
    pub(crate) fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Stream::Plain(s) => s.poll_read_ready(cx),
            Stream::Local(s) => s.poll_read_ready(cx),
            Stream::ServerTls(s) => s.get_ref().0.poll_read_ready(cx),
            Stream::ClientTls(s) => s.get_ref().0.poll_read_ready(cx),
        }
    }

    /// Checks, without blocking and without a syscall in the common case, whether an idle
    /// pooled socket received anything. Uses the runtime's cached readiness (`try_io` reads it
    /// without the budget and waker bookkeeping of a poll: this runs at every checkout); only
    /// when that says "readable" does it peek at the socket.
    pub(crate) fn idle_state(&self) -> IdleState {
        let tcp = match self {
            Stream::Plain(s) => s,
            Stream::ServerTls(s) => s.get_ref().0,
            Stream::ClientTls(s) => s.get_ref().0,
            // Server connections are TCP; a socket client is never pooled.
            Stream::Local(s) => {
                return idle_state(s.try_io(Interest::READABLE, || peek(&**s)));
            }
        };
        idle_state(tcp.try_io(Interest::READABLE, || peek(tcp)))
    }
}

/// One byte peeked at, as `try_io` wants it: WouldBlock when nothing is there.
fn peek(socket: impl AsFd) -> io::Result<usize> {
    let mut probe = [MaybeUninit::<u8>::uninit(); 1];
    socket2::SockRef::from(&socket).peek(&mut probe)
}

/// Quiet only when the socket has nothing to read: data, EOF or an error all disturb it.
fn idle_state(peeked: io::Result<usize>) -> IdleState {
    match peeked {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => IdleState::Quiet,
        _ => IdleState::Disturbed,
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Local(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::ServerTls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::ClientTls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        // A plain socket is tried first: it almost always has room, and `try_write` then
        // writes without the budget and readiness bookkeeping of a poll (twice per
        // transaction). Out of room, the poll registers the waker. The cost: a write that
        // filled the socket leaves its readiness set, so the next try finds out with one
        // failed `send` (only under backpressure).
        match self.get_mut() {
            Stream::Plain(s) => match s.try_write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Pin::new(s).poll_write(cx, buf),
                r => Poll::Ready(r),
            },
            Stream::Local(s) => match s.try_write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    Pin::new(s.as_mut()).poll_write(cx, buf)
                }
                r => Poll::Ready(r),
            },
            Stream::ServerTls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::ClientTls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Local(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::ServerTls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::ClientTls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Local(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::ServerTls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::ClientTls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Whether a read of a socket said Pending, which registered the task's waker with it: until
/// the socket becomes readable it need not be polled again (see [`Stream::may_be_readable`]).
/// A Pending that tokio's task budget caused registers nothing and does not arm.
/// Kept by a forwarding run for its client socket, and handed by the session to the wait for
/// the next request: saves a poll of the client in each wake-up the server causes, and the
/// waker's registration when the wait starts.
#[derive(Debug, Default)]
pub(crate) struct ReadArmed(bool);

impl ReadArmed {
    /// Armed or not, as a read that said Pending left it.
    pub(crate) fn new(armed: bool) -> Self {
        Self(armed)
    }

    /// Whether the last read said Pending.
    pub(crate) fn is_armed(&self) -> bool {
        self.0
    }

    /// Polls `read` unless the last read said Pending and `stream` has not become readable
    /// since (Pending at once then: the waker is in place). `read` must read `stream`, or
    /// poll its read readiness, with the waker of the task that always polls it: its Pending
    /// is what leaves that waker registered.
    pub(crate) fn poll<T>(
        &mut self,
        stream: &mut Stream,
        read: impl FnOnce(&mut Stream) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if self.0 && !stream.may_be_readable() {
            return Poll::Pending;
        }
        let r = read(stream);
        // A Pending from tokio's per-task budget registers no waker on the socket (the task
        // is only scheduled again), and leaves the budget spent; a Pending from the socket
        // gives its budget unit back. Only the second arms.
        self.0 = r.is_pending() && tokio::task::coop::has_budget_remaining();
        r
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;
    use std::time::Duration;

    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    use super::*;

    /// A connected pair: lakepool's side as a `Stream`, and the peer.
    async fn pair() -> (Stream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ours = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (peer, _) = l.accept().await.unwrap();
        (Stream::Plain(ours), peer)
    }

    /// Polls one read of `s` into `buf`: the bytes read.
    fn read_into(s: &mut Stream, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let mut rb = ReadBuf::new(buf);
        Pin::new(s)
            .poll_read(cx, &mut rb)
            .map_ok(|()| rb.filled().len())
    }

    /// Lets the runtime turn its I/O driver until `f` holds (two seconds at most).
    async fn eventually(mut f: impl FnMut() -> bool) -> bool {
        for _ in 0..200 {
            if f() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    #[tokio::test]
    async fn an_idle_socket_is_disturbed_by_data_and_by_a_close() {
        let (ours, mut peer) = pair().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(ours.idle_state(), IdleState::Quiet);
        peer.write_all(b"E").await.unwrap();
        assert!(eventually(|| ours.idle_state() == IdleState::Disturbed).await);
        // Peeked, not consumed: still disturbed.
        assert_eq!(ours.idle_state(), IdleState::Disturbed);

        let (ours, peer) = pair().await;
        drop(peer);
        assert!(eventually(|| ours.idle_state() == IdleState::Disturbed).await);
    }

    /// Writes that fill the socket (the peer reads nothing yet) wait, and are woken to go on
    /// once the peer reads: the write tried first without a poll must not lose the wake-up.
    #[tokio::test]
    async fn a_write_that_fills_the_socket_waits_for_the_peer_and_goes_on() {
        use tokio::io::AsyncReadExt;
        let (mut ours, mut peer) = pair().await;
        let total = 8 << 20;
        let writer = tokio::spawn(async move {
            let chunk = vec![7u8; 64 << 10];
            let mut sent = 0;
            while sent < total {
                sent += chunk.len();
                ours.write_all(&chunk).await.unwrap();
            }
            ours.flush().await.unwrap();
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            !writer.is_finished(),
            "8 MiB cannot fit in the socket buffers"
        );
        let mut got = 0;
        let mut buf = vec![0u8; 64 << 10];
        let read_all = async {
            while got < total {
                let n = peer.read(&mut buf).await.unwrap();
                assert!(n > 0);
                got += n;
            }
        };
        tokio::time::timeout(Duration::from_secs(20), read_all)
            .await
            .expect("the writer stalled");
        tokio::time::timeout(Duration::from_secs(5), writer)
            .await
            .expect("the writer did not finish")
            .unwrap();
    }

    /// A read that said Pending only because the task's budget was spent registered no
    /// waker: it must not arm, or the next bytes would wake no one (review of 979921c).
    #[tokio::test]
    async fn a_pending_from_the_budget_does_not_arm() {
        let (mut ours, mut peer) = pair().await;
        let mut armed = ReadArmed::default();
        let mut buf = [0u8; 16];
        // A short read first: tokio clears the socket's readiness after it.
        peer.write_all(b"x").await.unwrap();
        let n = poll_fn(|cx| read_into(&mut ours, cx, &mut buf))
            .await
            .unwrap();
        assert_eq!(n, 1);
        // In one poll: spend the task's budget, then read.
        let budget_pending = poll_fn(|cx| {
            loop {
                let spend = std::pin::pin!(tokio::task::coop::consume_budget());
                if spend.poll(cx).is_pending() {
                    break;
                }
            }
            Poll::Ready(armed.poll(&mut ours, |s| read_into(s, cx, &mut buf)))
        })
        .await;
        assert!(budget_pending.is_pending());
        assert!(!armed.is_armed(), "armed without a waker on the socket");
        // The next bytes are read: the read was not skipped.
        let later = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            peer.write_all(b"hello").await.unwrap();
            peer
        });
        let n = tokio::time::timeout(
            Duration::from_secs(5),
            poll_fn(|cx| armed.poll(&mut ours, |s| read_into(s, cx, &mut buf))),
        )
        .await
        .expect("the client's bytes woke no one")
        .unwrap();
        assert_eq!(n, 5);
        drop(later.await.unwrap());
    }

    #[tokio::test]
    async fn an_armed_read_is_not_polled_again_until_the_socket_is_readable() {
        let (mut ours, mut peer) = pair().await;
        let mut armed = ReadArmed::default();
        let mut polls = 0;
        let mut buf = [0u8; 16];
        // The first poll reads (Pending: nothing sent), which registers the task's waker.
        let first = poll_fn(|cx| {
            Poll::Ready(armed.poll(&mut ours, |s| {
                polls += 1;
                read_into(s, cx, &mut buf)
            }))
        })
        .await;
        assert!(first.is_pending());
        assert_eq!(polls, 1);
        assert!(!ours.may_be_readable());
        // Armed and not readable: Pending without reading.
        let again = armed.poll(&mut ours, |_| -> Poll<io::Result<usize>> {
            panic!("polled while armed")
        });
        assert!(again.is_pending());
        // Data arrives: the socket turns readable and the read goes ahead.
        peer.write_all(b"hello").await.unwrap();
        assert!(eventually(|| ours.may_be_readable()).await);
        let n = poll_fn(|cx| {
            Poll::Ready(armed.poll(&mut ours, |s| {
                polls += 1;
                read_into(s, cx, &mut buf)
            }))
        })
        .await;
        assert!(matches!(n, Poll::Ready(Ok(5))), "{n:?}");
        assert_eq!(polls, 2);
    }
}
