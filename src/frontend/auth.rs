//! Client authentication: SCRAM-SHA-256(-PLUS), md5 or cleartext against `[[users]]`.

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

use crate::auth::md5::md5_verify;
use crate::auth::scram::ScramServer;
use crate::auth::users::{CleartextCheck, UserEntry};
use crate::config::AuthMethod;
use crate::error::ClientFacing;
use crate::logsafe::LogSafe;
use crate::net::Stream;
use crate::net::framed::{FrameError, read_message};
use crate::proto::frontend::{parse_password, parse_sasl_initial};
use crate::proto::sqlstate::SqlState;
use crate::proto::write;
use crate::shared::Shared;
use zeroize::{Zeroize, Zeroizing};

/// Longest authentication message accepted from a client.
const MAX_AUTH_MESSAGE: usize = 8 * 1024;

/// Client authentication failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AuthError {
    /// Wrong password or unknown user (indistinguishable on purpose). The name is the
    /// client's: escaped, since the message is also logged.
    #[error("password authentication failed for user \"{}\"", LogSafe(.0))]
    Failed(String),
    /// Cleartext login attempted without TLS.
    #[error("cleartext password authentication for user \"{}\" requires TLS", LogSafe(.0))]
    NeedsTls(String),
    /// The client broke the authentication protocol.
    #[error("invalid authentication message: {0}")]
    Protocol(String),
    /// The socket failed or closed.
    #[error("client connection failed during authentication: {0}")]
    Io(#[from] FrameError),
}

impl ClientFacing for AuthError {
    fn sqlstate(&self) -> SqlState {
        match self {
            AuthError::Failed(_) => SqlState::INVALID_PASSWORD,
            AuthError::NeedsTls(_) => SqlState::INVALID_AUTHORIZATION,
            AuthError::Protocol(_) | AuthError::Io(_) => SqlState::PROTOCOL_VIOLATION,
        }
    }
    fn client_message(&self) -> String {
        self.to_string()
    }
}

pub(super) async fn send(stream: &mut Stream, out: &mut BytesMut) -> Result<(), AuthError> {
    stream.write_all(out).await.map_err(FrameError::Io)?;
    stream.flush().await.map_err(FrameError::Io)?;
    out.clear();
    Ok(())
}

/// A password message's body, wiped when dropped: it may hold a cleartext password.
pub(super) struct PasswordBody(BytesMut);

impl std::ops::Deref for PasswordBody {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for PasswordBody {
    fn drop(&mut self) {
        self.0.as_mut().zeroize();
    }
}

pub(super) async fn read_password_message(
    stream: &mut Stream,
    buf: &mut BytesMut,
) -> Result<PasswordBody, AuthError> {
    let (tag, body) = read_message(stream, buf, MAX_AUTH_MESSAGE).await?;
    let body = PasswordBody(body);
    if tag != b'p' {
        return Err(AuthError::Protocol(format!(
            "expected a password message, got message type {:?}",
            char::from(tag)
        )));
    }
    Ok(body)
}

/// Authenticates `user` for `database`. On success AuthenticationOk has been sent. `buf` keeps
/// any bytes the client sent beyond its last authentication message.
///
/// Everything before the password is checked depends on the database and the connection only,
/// never on whether `user` exists: the method is the database's, an unknown user's SCRAM
/// exchange runs against a fake verifier shaped like a real one, and the TLS rule for
/// cleartext applies to every name. Failures look the same for a wrong password and an unknown
/// user.
///
/// On success `greeting` holds the messages that end authentication (SASL's final message,
/// AuthenticationOk), unsent: the caller sends them with the rest of its greeting (or the error
/// that ends the login) in one write, so the client wakes once instead of three times.
pub(crate) async fn authenticate(
    fe: &Shared,
    stream: &mut Stream,
    buf: &mut BytesMut,
    user: &str,
    database: &str,
    greeting: &mut BytesMut,
) -> Result<(), AuthError> {
    let live = fe.live();
    let entry = live.users.get(user);
    let method = live.users.method_for(database);
    let unusable = |what: &str| {
        // Only the operator sees this: a known user whose stored password cannot serve the
        // database's method fails exactly as a wrong password does.
        tracing::info!(user, database = %LogSafe(database), method = ?method,
            "user's password is stored as {what}, which cannot serve this database's method");
    };
    match method {
        AuthMethod::ScramSha256 => {
            let verifier = match entry.map(|e| e.scram.clone()) {
                Some(Some(v)) => v,
                known => {
                    if known.is_some() {
                        unusable("an md5 hash");
                    }
                    live.users.mock_verifier(user)
                }
            };
            let end_point = match stream {
                Stream::ServerTls(_) => live.tls.as_ref().map(|t| t.end_point.to_vec()),
                _ => None,
            };
            scram(
                stream,
                buf,
                user,
                ScramServer::new(verifier, end_point),
                greeting,
            )
            .await?;
        }
        AuthMethod::Md5 => {
            let salt: [u8; 4] = rand::random();
            let mut out = BytesMut::with_capacity(16);
            write::auth_md5(&mut out, salt);
            send(stream, &mut out).await?;
            let body = read_password_message(stream, buf).await?;
            let pw = parse_password(&body)
                .ok_or_else(|| AuthError::Protocol("malformed password message".into()))?;
            let stored = entry.and_then(|e| e.md5.as_deref());
            if entry.is_some() && stored.is_none() {
                unusable("a SCRAM verifier");
            }
            if !stored.is_some_and(|stored| md5_verify(stored, salt, pw)) {
                return Err(AuthError::Failed(user.to_owned()));
            }
        }
        AuthMethod::Cleartext => {
            if !stream.is_private() && !fe.server.allow_cleartext_without_tls {
                return Err(AuthError::NeedsTls(user.to_owned()));
            }
            let mut out = BytesMut::with_capacity(16);
            write::auth_cleartext(&mut out);
            send(stream, &mut out).await?;
            let body = read_password_message(stream, buf).await?;
            // Any bytes: as in PostgreSQL, a password that is not UTF-8 is used as it is.
            let pw = parse_password(&body)
                .ok_or_else(|| AuthError::Protocol("malformed password message".into()))?;
            // As PostgreSQL: an empty password never matches, whatever is stored.
            let ok = match entry.filter(|_| !pw.is_empty()) {
                Some(e) => check_cleartext(e, pw).await,
                None => false,
            };
            if !ok {
                return Err(AuthError::Failed(user.to_owned()));
            }
        }
    }
    write::auth_ok(greeting);
    Ok(())
}

/// At most this many PBKDF2 runs for cleartext logins at once: failed attempts against
/// verifier-stored users cannot take more of the machine than this.
static PBKDF2_SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// Checks a cleartext password for a known user; PBKDF2, when needed, runs on a blocking
/// thread, one at a time, and its result is remembered.
async fn check_cleartext(entry: &UserEntry, password: &[u8]) -> bool {
    let check = match entry.check_cleartext(password) {
        CleartextCheck::Matches(ok) => return ok,
        CleartextCheck::Pbkdf2(check) => check,
    };
    let Ok(_slot) = PBKDF2_SLOTS.acquire().await else {
        return false;
    };
    let digest = check.digest;
    let password = Zeroizing::new(password.to_vec());
    let ok = tokio::task::spawn_blocking(move || check.run(&password))
        .await
        .unwrap_or(false);
    entry.remember(digest, ok);
    ok
}

/// The SCRAM exchange; its final server message goes into `greeting`, unsent.
async fn scram(
    stream: &mut Stream,
    buf: &mut BytesMut,
    user: &str,
    mut server: ScramServer,
    greeting: &mut BytesMut,
) -> Result<(), AuthError> {
    let mut out = BytesMut::with_capacity(128);
    write::auth_sasl(&mut out, server.mechanisms());
    send(stream, &mut out).await?;
    let body = read_password_message(stream, buf).await?;
    let initial = parse_sasl_initial(&body)
        .ok_or_else(|| AuthError::Protocol("malformed SASLInitialResponse".into()))?;
    let first = server
        .client_first(initial.mechanism, initial.data)
        .map_err(|e| AuthError::Protocol(e.to_string()))?;
    write::auth_sasl_continue(&mut out, &first);
    send(stream, &mut out).await?;
    let body = read_password_message(stream, buf).await?;
    match server.client_final(&body) {
        Ok(fin) => {
            write::auth_sasl_final(greeting, &fin);
            Ok(())
        }
        Err(e) if e.is_invalid_password() => Err(AuthError::Failed(user.to_owned())),
        Err(e) => Err(AuthError::Protocol(e.to_string())),
    }
}
