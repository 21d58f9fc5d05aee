//! Opening a server connection: TCP, optional TLS, StartupMessage, authentication with the
//! current credential, and the server's ParameterStatus/BackendKeyData up to ReadyForQuery.

use std::sync::Arc;

use bytes::BytesMut;
use rustls::pki_types::ServerName;
use secrecy::ExposeSecret;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::Upstream;
use super::params::ParamMap;
use super::server::ServerConn;
use crate::auth::channel_binding::tls_server_end_point;
use crate::auth::md5::md5_response;
use crate::auth::scram::{SCRAM_SHA_256, SCRAM_SHA_256_PLUS, ScramClient, salted_password};
use crate::credentials::source::{Credential, CredentialError};
use crate::error::ClientFacing;
use crate::net::framed::{FrameError, read_message};
use crate::net::{Stream, buffer, tune};
use crate::proto::backend::{
    AuthRequest, parse_auth, parse_backend_key, parse_error, parse_parameter_status,
};
use crate::proto::frontend;
use crate::proto::sqlstate::SqlState;

/// Largest message accepted from a server during login.
const MAX_LOGIN_MESSAGE: usize = 1 << 20;

/// Opening a server connection failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// TCP connect failed.
    #[error("cannot connect to server {addr}: {source}")]
    Connect {
        /// host:port.
        addr: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The server refused TLS while the configuration requires it.
    #[error("server {0} does not accept TLS, but tls is required by the configuration")]
    TlsRefused(String),
    /// The TLS handshake failed (certificate not trusted, name mismatch…).
    #[error("TLS handshake with server {addr} failed: {source}")]
    Tls {
        /// host:port.
        addr: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The server's certificate was not trusted (unknown issuer, wrong name, expired…).
    #[error("TLS handshake with server {addr} failed: {what}{hint}")]
    Untrusted {
        /// host:port.
        addr: String,
        /// What was not trusted, in words.
        what: String,
        /// For a Lakebase host: the documented fallback.
        hint: &'static str,
    },
    /// The server answered the login with an error.
    #[error("server rejected login: {message} (SQLSTATE {code})")]
    Rejected {
        /// SQLSTATE from the server.
        code: String,
        /// Server's message.
        message: String,
    },
    /// The server asked for a password and none is configured.
    #[error("server asked for a password, but none is configured for this database")]
    NoPassword,
    /// The server asked for an authentication method lakepool does not speak.
    #[error("server requested unsupported authentication method {0}")]
    UnsupportedAuth(i32),
    /// SCRAM with the server failed (bad server signature…).
    #[error("SCRAM authentication with server failed: {0}")]
    Scram(#[from] crate::auth::scram::ScramError),
    /// The server broke the protocol or closed.
    #[error("server connection failed during login: {0}")]
    Protocol(#[from] FrameError),
    /// Unexpected message during login.
    #[error("unexpected message {0:?} from server during login")]
    Unexpected(char),
    /// The password source has nothing valid.
    #[error(transparent)]
    Credential(#[from] CredentialError),
    /// Login took longer than server_connect_timeout.
    #[error("timed out connecting to server")]
    Timeout,
    /// server_connect_timeout passed while waiting for the first upstream credential (the
    /// server was never contacted).
    #[error("timed out waiting for the first upstream credential")]
    CredentialTimeout,
}

impl UpstreamError {
    /// The server said the password is wrong (or expired).
    pub fn is_auth_rejection(&self) -> bool {
        matches!(self, UpstreamError::Rejected { code, .. } if code == "28P01")
    }

    /// Whether the server itself failed (TCP, TLS, login rejected, protocol, timeout), as
    /// opposed to the credential source having nothing to log in with. Only server failures
    /// start the pool's `server_login_retry` pause: a credential source that cannot deliver
    /// fails fast by itself without contacting any server, runs its own single-flight retry
    /// with backoff, and should let the pool recover the moment it has a credential.
    pub fn is_server_failure(&self) -> bool {
        !matches!(
            self,
            UpstreamError::Credential(_) | UpstreamError::CredentialTimeout
        )
    }
}

impl ClientFacing for UpstreamError {
    fn sqlstate(&self) -> SqlState {
        match self {
            UpstreamError::Rejected { .. }
            | UpstreamError::NoPassword
            | UpstreamError::UnsupportedAuth(_)
            | UpstreamError::Scram(_)
            | UpstreamError::Credential(_)
            | UpstreamError::CredentialTimeout => SqlState::UNABLE_TO_CONNECT,
            _ => SqlState::CONNECTION_FAILURE,
        }
    }

    fn client_message(&self) -> String {
        format!("lakepool could not open a server connection: {self}")
    }
}

/// Opens and logs in a new server connection, within the configured connect timeout. A login
/// rejected with 28P01 asks the credential source for a newer credential and retries once.
pub async fn connect(up: &Upstream, id: u64) -> Result<ServerConn, UpstreamError> {
    connect_within(up, id, up.connect_timeout).await
}

/// [`connect`] with a timeout other than the upstream's (a user's own server_connect_timeout).
pub async fn connect_within(
    up: &Upstream,
    id: u64,
    limit: std::time::Duration,
) -> Result<ServerConn, UpstreamError> {
    let mut have_credential = false;
    let attempt = tokio::time::timeout(limit, async {
        let cred = up.credential.current_or_first().await?;
        have_credential = true;
        match login(up, &cred, id).await {
            Err(e) if e.is_auth_rejection() => {
                match up.credential.refresh_after_rejection(&cred).await? {
                    Some(newer) => login(up, &newer, id).await,
                    None => Err(e),
                }
            }
            other => other,
        }
    })
    .await;
    match attempt {
        Ok(result) => result,
        Err(_) if have_credential => Err(UpstreamError::Timeout),
        Err(_) => Err(UpstreamError::CredentialTimeout),
    }
}

/// TCP connection to the upstream `host`, with TLS negotiated when configured.
pub async fn open_stream(up: &Upstream, host: &str) -> Result<Stream, UpstreamError> {
    let addr = format!("{host}:{}", up.port);
    let mut tcp = TcpStream::connect((host, up.port))
        .await
        .map_err(|source| UpstreamError::Connect {
            addr: addr.clone(),
            source,
        })?;
    tune(&tcp);
    let Some(tls) = &up.tls else {
        return Ok(Stream::Plain(tcp));
    };
    let mut req = BytesMut::with_capacity(8);
    frontend::ssl_request(&mut req);
    tcp.write_all(&req).await.map_err(FrameError::Io)?;
    let answer = tcp.read_u8().await.map_err(FrameError::Io)?;
    if answer != b'S' {
        return Err(UpstreamError::TlsRefused(addr));
    }
    let server_name = ServerName::try_from(host.to_owned()).map_err(|e| UpstreamError::Tls {
        addr: addr.clone(),
        source: std::io::Error::other(e),
    })?;
    let tls = TlsConnector::from(Arc::clone(tls))
        .connect(server_name, tcp)
        .await
        .map_err(|source| match untrusted(&source, host) {
            Some(what) => UpstreamError::Untrusted {
                addr: addr.clone(),
                what,
                // Lakebase credentials are minted (instance/endpoint), static ones are not.
                hint: if up.credential.kind() == "password" {
                    ""
                } else {
                    LAKEBASE_TLS_HINT
                },
            },
            None => UpstreamError::Tls { addr, source },
        })?;
    Ok(Stream::ClientTls(Box::new(tls)))
}

/// Databricks documents `sslmode=require` for Lakebase (docs.databricks.com oltp/oauth); lakepool
/// verifies by default, so a verification failure names the documented fallback.
const LAKEBASE_TLS_HINT: &str = "; Databricks documents sslmode=require for Lakebase: set \
    tls = \"require\" on this database to encrypt without verifying the certificate, or \
    ca_file to trust the CA that signed it";

/// What about the server's certificate was not trusted, when that is why the handshake failed.
fn untrusted(e: &std::io::Error, host: &str) -> Option<String> {
    use rustls::CertificateError as C;
    let rustls::Error::InvalidCertificate(c) = e.get_ref()?.downcast_ref::<rustls::Error>()? else {
        return None;
    };
    Some(match c {
        C::UnknownIssuer => format!(
            "the certificate of {host} is signed by a certificate authority lakepool does not \
             trust (it is neither in the system roots nor in ca_file)"
        ),
        C::NotValidForName | C::NotValidForNameContext { .. } => {
            format!("the certificate presented is not valid for the name {host}")
        }
        C::Expired | C::ExpiredContext { .. } => format!("the certificate of {host} has expired"),
        C::NotValidYet | C::NotValidYetContext { .. } => {
            format!("the certificate of {host} is not valid yet")
        }
        other => format!("the certificate of {host} was not accepted ({other:?})"),
    })
}

async fn login(up: &Upstream, cred: &Credential, id: u64) -> Result<ServerConn, UpstreamError> {
    let (host, user) = (&*cred.host, &*cred.user);
    let mut stream = open_stream(up, host).await?;
    let mut out = BytesMut::with_capacity(256);
    frontend::startup_message(&mut out, [("user", user), ("database", up.dbname.as_str())]);
    stream.write_all(&out).await.map_err(FrameError::Io)?;
    let mut buf = buffer::take();
    let mut scram: Option<ScramClient> = None;
    let mut params = ParamMap::new();
    let mut key = (0, 0);
    loop {
        let (tag, body) = read_message(&mut stream, &mut buf, MAX_LOGIN_MESSAGE).await?;
        out.clear();
        match tag {
            b'R' => {
                let req = parse_auth(&body).ok_or(UpstreamError::Unexpected('R'))?;
                match req {
                    AuthRequest::Ok => continue,
                    AuthRequest::Cleartext => {
                        let pw = cred.password.as_ref().ok_or(UpstreamError::NoPassword)?;
                        frontend::password_message(&mut out, pw.expose_secret());
                    }
                    AuthRequest::Md5(salt) => {
                        let pw = cred.password.as_ref().ok_or(UpstreamError::NoPassword)?;
                        let resp = md5_response(user, pw.expose_secret(), salt);
                        frontend::password_message(&mut out, &resp);
                    }
                    AuthRequest::Sasl(mechs) => {
                        let pw = cred.password.as_ref().ok_or(UpstreamError::NoPassword)?;
                        let client = start_scram(&stream, &mechs, pw.expose_secret())?;
                        frontend::sasl_initial_response(
                            &mut out,
                            client.mechanism(),
                            &client.client_first(),
                        );
                        scram = Some(client);
                    }
                    AuthRequest::SaslContinue(data) => {
                        let client = scram.as_mut().ok_or(UpstreamError::Unexpected('R'))?;
                        let salt = client.server_first(data)?;
                        let salted = match up.salted_cache.get(client.password(), &salt) {
                            Some(s) => s,
                            None => {
                                // PBKDF2 is milliseconds of CPU: keep it off the I/O threads.
                                let pw = client.password().to_owned();
                                let params = salt.clone();
                                let s = tokio::task::spawn_blocking(move || {
                                    salted_password(&pw, &params)
                                })
                                .await
                                .map_err(|e| FrameError::Io(std::io::Error::other(e)))?;
                                up.salted_cache.insert(client.password(), &salt, s);
                                s
                            }
                        };
                        let fin = client.client_final(&salted)?;
                        frontend::sasl_response(&mut out, &fin);
                    }
                    AuthRequest::SaslFinal(data) => {
                        let client = scram.as_ref().ok_or(UpstreamError::Unexpected('R'))?;
                        client.server_final(data)?;
                        continue;
                    }
                    AuthRequest::Unsupported(code) => {
                        return Err(UpstreamError::UnsupportedAuth(code));
                    }
                }
                stream.write_all(&out).await.map_err(FrameError::Io)?;
            }
            b'S' => {
                if let Some((k, v)) = parse_parameter_status(&body) {
                    params.set(k, v);
                }
            }
            b'K' => key = parse_backend_key(&body).ok_or(UpstreamError::Unexpected('K'))?,
            b'E' => {
                let f = parse_error(&body);
                return Err(UpstreamError::Rejected {
                    code: f.code,
                    message: f.message,
                });
            }
            b'Z' => {
                return Ok(ServerConn::new(stream, buf, params, key, host, id));
            }
            // NoticeResponse, NegotiateProtocolVersion: nothing to do.
            b'N' | b'v' => {}
            other => return Err(UpstreamError::Unexpected(char::from(other))),
        }
    }
}

/// Picks SCRAM-SHA-256-PLUS when the connection is TLS and the server offers it (binding to
/// the server's certificate, as libpq's channel_binding=prefer does), else SCRAM-SHA-256.
fn start_scram(
    stream: &Stream,
    mechs: &[&str],
    password: &str,
) -> Result<ScramClient, UpstreamError> {
    let end_point = match stream {
        Stream::ClientTls(tls) if mechs.contains(&SCRAM_SHA_256_PLUS) => tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .and_then(|c| tls_server_end_point(c.as_ref()).ok()),
        _ => None,
    };
    if end_point.is_none() && !mechs.contains(&SCRAM_SHA_256) {
        return Err(UpstreamError::UnsupportedAuth(10));
    }
    Ok(ScramClient::new(password, end_point, stream.is_tls()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handshake_error(e: rustls::CertificateError) -> std::io::Error {
        // How tokio-rustls reports a rejected certificate.
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(e),
        )
    }

    #[test]
    fn untrusted_certificates_say_what_was_not_trusted() {
        let issuer = untrusted(
            &handshake_error(rustls::CertificateError::UnknownIssuer),
            "h.x",
        );
        assert!(
            issuer.as_deref().unwrap_or("").contains("not trust"),
            "{issuer:?}"
        );
        let name = untrusted(
            &handshake_error(rustls::CertificateError::NotValidForName),
            "h.x",
        );
        assert!(name.unwrap().contains("not valid for the name h.x"));
        let expired = untrusted(&handshake_error(rustls::CertificateError::Expired), "h.x");
        assert!(expired.unwrap().contains("expired"));
        // Not a certificate problem: no claim about trust.
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(untrusted(&reset, "h.x").is_none());
        let e = UpstreamError::Untrusted {
            addr: "h.x:5432".into(),
            what: "w".into(),
            hint: LAKEBASE_TLS_HINT,
        };
        assert!(e.to_string().contains("tls = \"require\""), "{e}");
    }
}
