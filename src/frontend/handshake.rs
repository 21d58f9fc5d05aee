//! The startup phase: SSLRequest / GSSENCRequest / CancelRequest / StartupMessage.

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsAcceptor;

use crate::config::ClientTls;
use crate::error::{ClientError, ClientFacing};
use crate::net::Stream;
use crate::proto::sqlstate::SqlState;
use crate::proto::startup::{self, StartupError, StartupPacket};
use crate::proto::write;
use crate::shared::Shared;

/// What a successful startup phase produced.
#[derive(Debug)]
pub(crate) enum Startup {
    /// A login to continue with.
    Login {
        /// The (maybe TLS) client stream.
        stream: Stream,
        /// Startup parameters.
        params: Vec<(String, String)>,
        /// Bytes the client sent after its startup packet (normally none), with room for the
        /// login's reads.
        buf: BytesMut,
    },
    /// The connection was a cancel request and has been handled.
    Cancelled,
}

/// The startup phase failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HandshakeError {
    /// Socket error or the client went away (no reply is possible).
    #[error("client I/O error during startup: {0}")]
    Io(#[from] std::io::Error),
    /// A malformed packet.
    #[error(transparent)]
    Packet(#[from] StartupError),
    /// SSLRequest/GSSENCRequest repeated or after TLS was set up.
    #[error("unexpected {0}: encryption was already negotiated")]
    OutOfOrder(&'static str),
    /// Bytes came after SSLRequest/GSSENCRequest before the answer to it (as PostgreSQL
    /// says, CVE-2021-23214).
    #[error("received unencrypted data after {0}")]
    DataAfterRequest(&'static str),
    /// The TLS handshake failed (no reply possible).
    #[error("TLS handshake failed: {0}")]
    Tls(std::io::Error),
    /// A protocol version other than 3.x.
    #[error("unsupported frontend protocol {0}.{1}: server supports 3.0 to 3.0")]
    Version(u16, u16),
}

impl HandshakeError {
    /// Whether a reply can still be sent in the clear or over the negotiated stream.
    pub(crate) fn can_reply(&self) -> bool {
        !matches!(self, HandshakeError::Io(_) | HandshakeError::Tls(_))
    }
}

impl ClientFacing for HandshakeError {
    fn sqlstate(&self) -> SqlState {
        match self {
            HandshakeError::Version(..) => SqlState::FEATURE_NOT_SUPPORTED,
            _ => SqlState::PROTOCOL_VIOLATION,
        }
    }
    fn client_message(&self) -> String {
        self.to_string()
    }
}

/// Runs the startup phase on a new connection. A packet is read with one `recv` when it
/// arrived whole. Bytes a client sent after SSLRequest or GSSENCRequest, before it had the
/// answer, are refused as PostgreSQL refuses them, never taken as plaintext later
/// (CVE-2021-23214).
// Long on purpose (about 90 lines): one loop over the packets a connection may send before
// its startup packet (SSLRequest, GSSENCRequest, CancelRequest).
pub(crate) async fn startup(
    fe: &Shared,
    mut stream: Stream,
) -> Result<Startup, (Option<Stream>, HandshakeError)> {
    // Each negotiation may happen once, as in PostgreSQL: a repeated request (even after an
    // `N`) is a protocol violation, and nothing may follow a completed TLS handshake but startup.
    let (mut ssl_done, mut gss_done) = (false, false);
    // The startup packet is about 100 bytes; the login reads its next messages into the same
    // buffer.
    let mut buf = BytesMut::with_capacity(512);
    loop {
        let packet = match read_packet(&mut stream, &mut buf).await {
            Ok(p) => p,
            Err(e) => return Err((Some(stream), e)),
        };
        match packet {
            StartupPacket::SslRequest => {
                if ssl_done {
                    return Err((Some(stream), HandshakeError::OutOfOrder("SSLRequest")));
                }
                if !buf.is_empty() {
                    return Err((Some(stream), HandshakeError::DataAfterRequest("SSLRequest")));
                }
                ssl_done = true;
                let live = fe.live();
                // Not on the Unix-domain socket, as PostgreSQL and PgBouncer: nothing there
                // crosses a network.
                let tls = live.tls.as_ref().filter(|_| {
                    fe.server.client_tls != ClientTls::Disable
                        && !matches!(stream, Stream::Local(_))
                });
                let Some(tls) = tls else {
                    if let Err(e) = stream.write_all(b"N").await {
                        return Err((None, e.into()));
                    }
                    continue;
                };
                let Stream::Plain(mut tcp) = stream else {
                    return Err((None, HandshakeError::OutOfOrder("SSLRequest")));
                };
                if let Err(e) = tcp.write_all(b"S").await {
                    return Err((None, e.into()));
                }
                let acceptor = TlsAcceptor::from(tls.config.clone());
                match acceptor.accept(tcp).await {
                    Ok(t) => stream = Stream::ServerTls(Box::new(t)),
                    Err(e) => return Err((None, HandshakeError::Tls(e))),
                }
                gss_done = true;
            }
            StartupPacket::GssEncRequest => {
                if gss_done {
                    return Err((Some(stream), HandshakeError::OutOfOrder("GSSENCRequest")));
                }
                if !buf.is_empty() {
                    let e = HandshakeError::DataAfterRequest("GSSENCRequest");
                    return Err((Some(stream), e));
                }
                gss_done = true;
                if let Err(e) = stream.write_all(b"N").await {
                    return Err((None, e.into()));
                }
            }
            StartupPacket::Cancel { pid, secret } => {
                fe.cancels.cancel(pid, secret).await;
                return Ok(Startup::Cancelled);
            }
            StartupPacket::Startup {
                major,
                minor,
                params,
            } => {
                if major != 3 {
                    return Err((Some(stream), HandshakeError::Version(major, minor)));
                }
                let unrecognized: Vec<&str> = params
                    .iter()
                    .filter(|(k, _)| k.starts_with("_pq_."))
                    .map(|(k, _)| k.as_str())
                    .collect();
                if minor > 0 || !unrecognized.is_empty() {
                    // As PostgreSQL does: carry on with 3.0 and tell the client what we took.
                    let mut out = BytesMut::new();
                    write::negotiate_protocol_version(
                        &mut out,
                        crate::proto::PROTOCOL_3_0,
                        &unrecognized,
                    );
                    if let Err(e) = stream.write_all(&out).await {
                        return Err((None, e.into()));
                    }
                }
                return Ok(Startup::Login {
                    stream,
                    params,
                    buf,
                });
            }
        }
    }
}

/// Reads one startup-phase packet into `buf` (bytes after it stay there). The declared
/// length is checked before room is made for the rest.
async fn read_packet(
    stream: &mut Stream,
    buf: &mut BytesMut,
) -> Result<StartupPacket, HandshakeError> {
    loop {
        let missing = match buf.first_chunk::<4>() {
            Some(len) => {
                let len = startup::check_length(u32::from_be_bytes(*len))?;
                if buf.len() >= len {
                    let packet = startup::parse(&buf[4..len]);
                    buf.advance(len);
                    return Ok(packet?);
                }
                len - buf.len()
            }
            None => 4 - buf.len(),
        };
        // Room for at least what is missing, so a read of 0 bytes means end of stream.
        buf.reserve(missing);
        if stream.read_buf(buf).await? == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
    }
}

/// The error for a plaintext client when TLS is required.
pub(crate) fn tls_required() -> ClientError {
    ClientError::fatal(
        SqlState::INVALID_AUTHORIZATION,
        "lakepool requires TLS for client connections (client_tls = \"require\")",
    )
}
