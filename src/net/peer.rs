//! Who is at the other end of a client connection: a TCP address, or a local process on the
//! Unix-domain socket.

use std::fmt;
use std::net::SocketAddr;

/// A client's address, as logs and `SHOW CLIENTS` show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Peer {
    /// A TCP client.
    Tcp(SocketAddr),
    /// A process on this machine, through the Unix-domain socket (its address is unnamed).
    Local,
}

impl Peer {
    /// The address column of `SHOW CLIENTS` (PgBouncer shows `unix` for socket clients).
    pub(crate) fn host(&self) -> String {
        match self {
            Peer::Tcp(a) => a.ip().to_string(),
            Peer::Local => "unix".to_owned(),
        }
    }

    /// The port column of `SHOW CLIENTS`; none for socket clients.
    pub(crate) fn port(&self) -> Option<u16> {
        match self {
            Peer::Tcp(a) => Some(a.port()),
            Peer::Local => None,
        }
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Tcp(a) => a.fmt(f),
            Peer::Local => f.write_str("unix socket"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_is_no_larger_than_a_socket_address() {
        // Every idle client's list entry holds one.
        assert_eq!(
            std::mem::size_of::<Peer>(),
            std::mem::size_of::<SocketAddr>()
        );
    }

    #[test]
    fn columns_and_log_form() {
        let tcp = Peer::Tcp("127.0.0.1:5432".parse().unwrap());
        assert_eq!(
            (tcp.host(), tcp.port()),
            ("127.0.0.1".to_owned(), Some(5432))
        );
        assert_eq!(tcp.to_string(), "127.0.0.1:5432");
        assert_eq!(
            (Peer::Local.host(), Peer::Local.port()),
            ("unix".to_owned(), None)
        );
        assert_eq!(Peer::Local.to_string(), "unix socket");
    }
}
