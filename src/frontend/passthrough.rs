//! Client authentication on a pass-through database: the client's Databricks token (a PAT or
//! an OAuth access token) as a cleartext password, over TLS (or the local Unix-domain socket) only, checked with the workspace.
//!
//! The user name must be the identity the token authenticates. There is no other way to
//! receive a bearer token than a cleartext password, so a client without TLS is refused
//! before it is asked for one. The token is taken byte for byte (no SASLprep: tokens are
//! ASCII), kept as a `SecretString` and wiped when dropped; it is never logged or echoed.

use bytes::BytesMut;
use secrecy::SecretString;

use super::auth::{AuthError, read_password_message, send};
use crate::credentials::passthrough::check::Verdict;
use crate::error::ClientFacing;
use crate::logsafe::LogSafe;
use crate::net::Stream;
use crate::pool::registry::Database;
use crate::proto::frontend::parse_password;
use crate::proto::sqlstate::SqlState;
use crate::proto::write;
use crate::shared::Shared;
use crate::upstream::passthrough::IdentityLease;

/// A pass-through login failed.
#[derive(Debug, thiserror::Error)]
pub enum PassthroughError {
    /// The client did not use TLS.
    #[error(
        "user \"{}\" must use TLS: this database takes a Databricks token as the password",
        LogSafe(.0)
    )]
    NeedsTls(String),
    /// Wrong, revoked or expired token, or a token of another identity (one message for all).
    #[error("password authentication failed for user \"{}\"", LogSafe(.0))]
    Failed(String),
    /// The workspace could not be asked; the token may be valid.
    #[error(
        "could not check the Databricks token of user \"{}\" with the workspace: {reason}",
        LogSafe(.user)
    )]
    Unchecked {
        /// The login name.
        user: String,
        /// Why (never the token).
        reason: String,
    },
    /// The exchange itself failed.
    #[error(transparent)]
    Auth(#[from] AuthError),
}

impl ClientFacing for PassthroughError {
    fn sqlstate(&self) -> SqlState {
        match self {
            PassthroughError::NeedsTls(_) => SqlState::INVALID_AUTHORIZATION,
            // Not a verdict on the token: drivers treat 08001 as worth retrying, 28xxx not.
            PassthroughError::Unchecked { .. } => SqlState::UNABLE_TO_CONNECT,
            PassthroughError::Failed(_) => SqlState::INVALID_PASSWORD,
            PassthroughError::Auth(e) => e.sqlstate(),
        }
    }
    fn client_message(&self) -> String {
        self.to_string()
    }
}

/// Authenticates `user` on pass-through database `db` with its Databricks token. On success
/// AuthenticationOk is in `greeting` (unsent, see [`super::auth::authenticate`]) and the
/// returned lease keeps the identity (its pool and credential) while the client is connected.
/// `buf` keeps any bytes the client sent beyond its password message.
pub async fn authenticate(
    fe: &Shared,
    stream: &mut Stream,
    buf: &mut BytesMut,
    user: &str,
    db: &Database,
    greeting: &mut BytesMut,
) -> Result<IdentityLease, PassthroughError> {
    let Some(passthrough) = &db.passthrough else {
        return Err(PassthroughError::Failed(user.to_owned()));
    };
    if !stream.is_private() {
        return Err(PassthroughError::NeedsTls(user.to_owned()));
    }
    let mut out = BytesMut::with_capacity(16);
    write::auth_cleartext(&mut out);
    send(stream, &mut out).await?;
    let token = {
        let body = read_password_message(stream, buf).await?;
        let pw = parse_password(&body)
            .ok_or_else(|| AuthError::Protocol("malformed password message".into()))?;
        // Taken as sent: a token is ASCII, and anything else is simply not a token.
        match std::str::from_utf8(pw) {
            Ok(t) if !t.is_empty() => SecretString::from(t),
            _ => return Err(PassthroughError::Failed(user.to_owned())),
        }
    };
    let checked = passthrough.check().check(&token).await.map_err(|e| {
        tracing::warn!(user = %LogSafe(user), database = %db.name, error = %e,
            "could not check a pass-through token with the workspace");
        PassthroughError::Unchecked {
            user: user.to_owned(),
            reason: e.to_string(),
        }
    })?;
    match &checked.verdict {
        v if v.is_identity(user) => {}
        Verdict::Refused => {
            tracing::info!(user = %LogSafe(user), database = %db.name,
                "pass-through login refused: the workspace refused the token");
            // If it is the token the identity's credential is refreshed with, the identity
            // goes now: its idle servers close.
            fe.live().registry.token_refused(db, user, checked.hash);
            return Err(PassthroughError::Failed(user.to_owned()));
        }
        Verdict::Valid(_) => {
            tracing::info!(user = %LogSafe(user), database = %db.name,
                "pass-through login refused: the token belongs to another identity");
            return Err(PassthroughError::Failed(user.to_owned()));
        }
    }
    let lease = passthrough.login(user, token, checked.hash);
    write::auth_ok(greeting);
    Ok(lease)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_have_their_sqlstates_and_name_only_the_user() {
        let tls = PassthroughError::NeedsTls("alice@example.com".into());
        assert_eq!(tls.sqlstate(), SqlState::INVALID_AUTHORIZATION);
        assert!(tls.client_message().contains("must use TLS"));
        let failed = PassthroughError::Failed("alice@example.com".into());
        assert_eq!(failed.sqlstate(), SqlState::INVALID_PASSWORD);
        assert_eq!(
            failed.client_message(),
            "password authentication failed for user \"alice@example.com\""
        );
        let unchecked = PassthroughError::Unchecked {
            user: "alice@example.com".into(),
            reason: "HTTP 503".into(),
        };
        assert_eq!(unchecked.sqlstate(), SqlState::UNABLE_TO_CONNECT);
        assert!(unchecked.client_message().contains("could not check"));
    }
}
