//! The client listeners' sockets, with their options set before they listen: set once on the
//! listening socket instead of on every connection.
//!
//! - Linux copies a listener's `TCP_NODELAY` and `SO_KEEPALIVE` into each socket `accept`
//!   returns, so a login makes no `setsockopt` call of its own (PgBouncer makes two). They are
//!   set before `listen`, so no early connection goes without them.
//! - `TCP_DEFER_ACCEPT` (`[server] tcp_defer_accept`): the kernel hands over a connection only
//!   once its first bytes have arrived. lakepool's first read then finds the startup packet,
//!   instead of finding nothing and waiting for another turn of the event loop; and a
//!   connection that never speaks holds no descriptor and no task, only a place in the
//!   kernel's queue of pending connections (the listen backlog). Linux counts the time in
//!   SYN-ACK resends: 45 s becomes about 63 s, after which a silent connection is handed over
//!   (if its client still answers) and `handshake_timeout` applies. No safe crate sets it
//!   (socket2, rustix and nix do not), hence the crate's one `unsafe` call.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;

/// Pending connections the kernel queues for `accept` (tokio's `TcpListener::bind` uses the
/// same).
const BACKLOG: i32 = 1024;

/// A client listener on `addr`, its options set before it listens. The flag is true when its
/// accepted sockets carry `TCP_NODELAY` and `SO_KEEPALIVE` already (Linux), so accepting need
/// not set them again.
pub(crate) fn bind(addr: SocketAddr, defer_accept: Duration) -> io::Result<(TcpListener, bool)> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    // As tokio's bind: a restart can listen again while old connections are in TIME_WAIT.
    socket.set_reuse_address(true)?;
    let inherited = cfg!(target_os = "linux")
        && socket.set_tcp_nodelay(true).is_ok()
        && socket.set_keepalive(true).is_ok();
    if !defer_accept.is_zero()
        && let Err(e) = set_defer_accept(&socket, defer_accept)
    {
        tracing::warn!(error = %e, "cannot defer accepting connections until they send (tcp_defer_accept); accepting them at once");
    }
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    let listener = TcpListener::from_std(std::net::TcpListener::from(socket))?;
    Ok((listener, inherited))
}

/// Whole seconds for `TCP_DEFER_ACCEPT` (at least 1: 0 would turn it off).
#[cfg(any(target_os = "linux", test))]
fn defer_seconds(d: Duration) -> libc::c_int {
    libc::c_int::try_from(d.as_secs().max(1)).unwrap_or(libc::c_int::MAX)
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn set_defer_accept(socket: &Socket, d: Duration) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let secs = defer_seconds(d);
    let len =
        libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>()).map_err(io::Error::other)?;
    // SAFETY: the descriptor is the socket's own, open for the duration of the call (the
    // borrow keeps the socket alive), and the option value points at a live c_int of the
    // length passed.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
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
fn set_defer_accept(_: &Socket, _: Duration) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "TCP_DEFER_ACCEPT is Linux's",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn loopback() -> SocketAddr {
        "127.0.0.1:0".parse().unwrap()
    }

    #[tokio::test]
    async fn accepted_sockets_inherit_nodelay_and_keepalive() {
        let (listener, inherited) = bind(loopback(), Duration::ZERO).unwrap();
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
        let (listener, _) = bind(loopback(), Duration::from_secs(30)).unwrap();
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

    /// `lib.rs` denies unsafe code; this is the one place allowed to opt out. A second one
    /// needs a decision, not just an attribute.
    #[test]
    fn no_other_module_allows_unsafe_code() {
        fn walk(dir: &std::path::Path, found: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, found);
                } else if path.extension().is_some_and(|e| e == "rs")
                    && !path.ends_with("net/listen.rs")
                    && std::fs::read_to_string(&path)
                        .unwrap()
                        .contains(concat!("allow(", "unsafe_code)"))
                {
                    found.push(path.display().to_string());
                }
            }
        }
        let mut found = Vec::new();
        walk(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut found,
        );
        assert!(found.is_empty(), "unsafe code allowed in {found:?}");
    }
}
