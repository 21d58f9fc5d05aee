//! Socket options of the client listeners, set once on the listening socket instead of on
//! every connection.
//!
//! - Linux copies a listener's `TCP_NODELAY` and `SO_KEEPALIVE` into each socket `accept`
//!   returns, so a login makes no `setsockopt` call of its own (PgBouncer makes two).
//! - `TCP_DEFER_ACCEPT` (`[server] tcp_defer_accept`, as PgBouncer's): the kernel hands over
//!   a connection only once its first bytes have arrived. lakepool's first read then finds the
//!   startup packet, instead of finding nothing and waiting for another turn of the event
//!   loop; and a connection that never speaks holds no descriptor and no task. After the
//!   deferral the kernel hands it over anyway, and `handshake_timeout` applies from there.
//!   No safe crate sets it (socket2 and rustix do not have it), hence the one `unsafe` call.

use std::io;
use std::time::Duration;

use tokio::net::TcpListener;

/// Sets the listener's options. True when its accepted sockets carry `TCP_NODELAY` and
/// `SO_KEEPALIVE` already (Linux), so accepting need not set them again.
pub(crate) fn prepare(listener: &TcpListener, defer_accept: Duration) -> bool {
    let sock = socket2::SockRef::from(listener);
    let inherited = cfg!(target_os = "linux")
        && sock.set_tcp_nodelay(true).is_ok()
        && sock.set_keepalive(true).is_ok();
    if !defer_accept.is_zero()
        && let Err(e) = set_defer_accept(listener, defer_accept)
    {
        tracing::warn!(error = %e, "cannot defer accepting connections until they send (tcp_defer_accept); accepting them at once");
    }
    inherited
}

/// Whole seconds for `TCP_DEFER_ACCEPT` (at least 1: 0 would turn it off).
fn defer_seconds(d: Duration) -> libc::c_int {
    libc::c_int::try_from(d.as_secs().max(1)).unwrap_or(libc::c_int::MAX)
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn set_defer_accept(listener: &TcpListener, d: Duration) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let secs = defer_seconds(d);
    let len =
        libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>()).map_err(io::Error::other)?;
    // SAFETY: the descriptor is the listener's own, open for the duration of the call (the
    // borrow keeps the listener alive), and the option value points at a live c_int of the
    // length passed.
    let rc = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            std::ptr::from_ref(&secs).cast(),
            len,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn set_defer_accept(_: &TcpListener, _: Duration) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "TCP_DEFER_ACCEPT is Linux's",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn accepted_sockets_inherit_nodelay_and_keepalive() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let inherited = prepare(&listener, Duration::ZERO);
        assert_eq!(inherited, cfg!(target_os = "linux"));
        let addr = listener.local_addr().unwrap();
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        if inherited {
            let s = socket2::SockRef::from(&accepted);
            assert!(s.tcp_nodelay().unwrap(), "TCP_NODELAY not inherited");
            assert!(s.keepalive().unwrap(), "SO_KEEPALIVE not inherited");
        }
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_deferred_connection_is_accepted_once_it_sends() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        prepare(&listener, Duration::from_secs(30));
        let addr = listener.local_addr().unwrap();
        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        // Connected (the handshake is done), but silent: not handed over.
        let early = tokio::time::timeout(Duration::from_millis(500), listener.accept()).await;
        assert!(early.is_err(), "a silent connection was accepted");
        client.write_all(&[0, 0, 0, 8]).await.unwrap();
        let accepted = tokio::time::timeout(Duration::from_secs(10), listener.accept()).await;
        assert!(
            accepted.is_ok(),
            "the connection was not accepted once it sent"
        );
    }

    #[test]
    fn deferral_seconds_are_whole_and_at_least_one() {
        assert_eq!(defer_seconds(Duration::from_millis(200)), 1);
        assert_eq!(defer_seconds(Duration::from_secs(45)), 45);
        assert_eq!(
            defer_seconds(Duration::from_secs(u64::MAX)),
            libc::c_int::MAX
        );
    }
}
