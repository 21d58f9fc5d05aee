//! A socket that is plain TCP, TLS in either role, or a local Unix-domain socket.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
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
    /// pooled socket received anything. Uses the runtime's cached readiness; only when that says
    /// "readable" does it peek at the socket.
    pub(crate) fn idle_state(&self) -> IdleState {
        let mut cx = Context::from_waker(Waker::noop());
        let mut probe = [0u8; 1];
        let mut buf = ReadBuf::new(&mut probe);
        let tcp = match self {
            Stream::Plain(s) => s,
            Stream::ServerTls(s) => s.get_ref().0,
            Stream::ClientTls(s) => s.get_ref().0,
            // Server connections are TCP; a socket client is never pooled. Readable here
            // means the same: something arrived.
            Stream::Local(s) => {
                return match s.poll_read_ready(&mut cx) {
                    Poll::Pending => IdleState::Quiet,
                    Poll::Ready(_) => IdleState::Disturbed,
                };
            }
        };
        match tcp.poll_peek(&mut cx, &mut buf) {
            Poll::Pending => IdleState::Quiet,
            Poll::Ready(_) => IdleState::Disturbed,
        }
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
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Local(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
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
