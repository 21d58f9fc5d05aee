//! Opening a server connection: TCP, optional TLS, StartupMessage, authentication with the
//! current credential, and the server's ParameterStatus/BackendKeyData up to ReadyForQuery.

use std::sync::Arc;

use bytes::BytesMut;
use rustls::pki_types::ServerName;
use secrecy::ExposeSecret;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use zeroize::{Zeroize, Zeroizing};

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
    /// lakepool refused to go on with a login that could hand out the password or skip the
    /// server's proof (a downgrade by the server or by someone in between).
    #[error("refused to log in to server {addr}: {reason}")]
    Refused {
        /// host:port.
        addr: String,
        /// Why.
        reason: &'static str,
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
    pub(crate) fn is_auth_rejection(&self) -> bool {
        matches!(self, UpstreamError::Rejected { code, .. } if code == "28P01")
    }

    /// Whether the server itself failed (TCP, TLS, login rejected, protocol, timeout), as
    /// opposed to the credential source having nothing to log in with. Only server failures
    /// start the pool's `server_login_retry` pause: a credential source that cannot deliver
    /// fails fast by itself without contacting any server, runs its own single-flight retry
    /// with backoff, and should let the pool recover the moment it has a credential.
    pub(crate) fn is_server_failure(&self) -> bool {
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
            | UpstreamError::Refused { .. }
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
pub(crate) async fn connect_within(
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
pub(crate) async fn open_stream(up: &Upstream, host: &str) -> Result<Stream, UpstreamError> {
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
    let mut auth = AuthExchange {
        up,
        addr: format!("{host}:{}", up.port),
        user,
        cred,
        scram: None,
        scram_done: false,
    };
    let mut params = ParamMap::new();
    let mut key = (0, 0);
    loop {
        let (tag, body) = read_message(&mut stream, &mut buf, MAX_LOGIN_MESSAGE).await?;
        out.clear();
        match tag {
            b'R' => {
                let req = parse_auth(&body).ok_or(UpstreamError::Unexpected('R'))?;
                if auth.answer(&stream, req, &mut out).await? {
                    let sent = stream.write_all(&out).await;
                    // It may hold the password (cleartext request) or its md5 form.
                    out.as_mut().zeroize();
                    sent.map_err(FrameError::Io)?;
                }
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
                auth.finished()?;
                // The credential's host, shared by every connection opened with it: a client's
                // cancel slot then records a change of host only when there is one.
                let host = Arc::clone(&cred.host);
                return Ok(ServerConn::new(stream, buf, params, key, host, id));
            }
            // NoticeResponse, NegotiateProtocolVersion: nothing to do.
            b'N' | b'v' => {}
            other => return Err(UpstreamError::Unexpected(char::from(other))),
        }
    }
}

/// The authentication part of a login. It refuses what would give the password away or let a
/// server (or someone in between) skip proving it knows it: AuthenticationOk (or the end of the
/// login) before a SCRAM exchange lakepool started has checked the server's signature, another
/// method asked for in the middle of SCRAM, and a cleartext password over a connection without
/// TLS unless the database allows it (`send_cleartext_password_without_tls`).
struct AuthExchange<'a> {
    up: &'a Upstream,
    addr: String,
    user: &'a str,
    cred: &'a Credential,
    scram: Option<ScramClient>,
    /// The server's SCRAM signature checked out.
    scram_done: bool,
}

impl AuthExchange<'_> {
    fn refuse(&self, reason: &'static str) -> UpstreamError {
        tracing::warn!(server = %self.addr, user = self.user, reason,
            "refused to log in to the server");
        UpstreamError::Refused {
            addr: self.addr.clone(),
            reason,
        }
    }

    fn password(&self) -> Result<&secrecy::SecretString, UpstreamError> {
        self.cred.password.as_ref().ok_or(UpstreamError::NoPassword)
    }

    /// Whether the login may end now (ReadyForQuery, or AuthenticationOk).
    fn finished(&self) -> Result<(), UpstreamError> {
        if self.scram.is_some() && !self.scram_done {
            return Err(self.refuse(
                "it ended authentication before the SCRAM exchange lakepool started had \
                 finished (its proof of the password was never checked)",
            ));
        }
        Ok(())
    }

    /// Handles an authentication request; true when `out` holds a reply to send.
    async fn answer(
        &mut self,
        stream: &Stream,
        req: AuthRequest<'_>,
        out: &mut BytesMut,
    ) -> Result<bool, UpstreamError> {
        let in_scram = self.scram.is_some();
        match req {
            AuthRequest::Ok => {
                self.finished()?;
                return Ok(false);
            }
            AuthRequest::SaslContinue(data) => return self.scram_continue(data, out).await,
            AuthRequest::SaslFinal(data) => {
                let client = self.scram.as_ref().ok_or(UpstreamError::Unexpected('R'))?;
                client.server_final(data)?;
                self.scram_done = true;
                return Ok(false);
            }
            _ if in_scram => {
                return Err(self
                    .refuse("it asked for another authentication method in the middle of SCRAM"));
            }
            AuthRequest::Cleartext => {
                if !stream.is_tls() && !self.up.cleartext_without_tls {
                    return Err(self.refuse(
                        "it asked for the password in cleartext over a connection without TLS \
                         (set send_cleartext_password_without_tls = true on the database to \
                         allow it)",
                    ));
                }
                frontend::password_message(out, self.password()?.expose_secret());
            }
            AuthRequest::Md5(salt) => {
                let pw = self.password()?.expose_secret();
                frontend::password_message(out, &md5_response(self.user, pw, salt));
            }
            AuthRequest::Sasl(mechs) => {
                let client = start_scram(stream, &mechs, self.password()?)?;
                frontend::sasl_initial_response(out, client.mechanism(), &client.client_first());
                self.scram = Some(client);
            }
            AuthRequest::Unsupported(code) => return Err(UpstreamError::UnsupportedAuth(code)),
        }
        Ok(true)
    }

    /// Answers the server-first-message with the client proof; PBKDF2 runs off the I/O threads
    /// unless the salted password is cached.
    async fn scram_continue(
        &mut self,
        data: &[u8],
        out: &mut BytesMut,
    ) -> Result<bool, UpstreamError> {
        let cache = &self.up.salted_cache;
        let client = self.scram.as_mut().ok_or(UpstreamError::Unexpected('R'))?;
        let salt = client.server_first(data)?;
        let salted = match cache.get(client.password(), &salt) {
            Some(s) => s,
            None => {
                let pw = Zeroizing::new(client.password().to_owned());
                let params = salt.clone();
                let s = tokio::task::spawn_blocking(move || salted_password(&pw, &params))
                    .await
                    .map_err(|e| FrameError::Io(std::io::Error::other(e)))?;
                cache.insert(client.password(), &salt, &s);
                s
            }
        };
        let fin = client.client_final(&salted)?;
        frontend::sasl_response(out, &fin);
        Ok(true)
    }
}

/// Picks SCRAM-SHA-256-PLUS when the connection is TLS and the server offers it (binding to
/// the server's certificate, as libpq's channel_binding=prefer does), else SCRAM-SHA-256.
fn start_scram(
    stream: &Stream,
    mechs: &[&str],
    password: &secrecy::SecretString,
) -> Result<ScramClient, UpstreamError> {
    let password = password.expose_secret();
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
#[path = "connect_tests.rs"]
mod downgrade_tests;

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
