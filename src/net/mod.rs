//! Sockets: the plain/TLS/Unix-socket stream, the client's peer address, TLS configuration,
//! pooled I/O buffers, framed reads for the login phases, the accept backoff of every listener.

pub(crate) mod accept;
pub(crate) mod buffer;
pub(crate) mod framed;
pub(crate) mod listen;
pub(crate) mod peer;
pub(crate) mod stream;
pub mod tls;
pub(crate) mod unix;

pub(crate) use peer::Peer;
pub(crate) use stream::{ReadArmed, Stream};

/// Applies the socket options every lakepool connection wants.
pub(crate) fn tune(tcp: &tokio::net::TcpStream) {
    // Small request/response messages: Nagle would add up to 40 ms per round trip.
    let _ = tcp.set_nodelay(true);
    let sock = socket2::SockRef::from(tcp);
    let _ = sock.set_keepalive(true);
}
