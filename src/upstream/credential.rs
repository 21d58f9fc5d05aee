//! Where upstream passwords come from.
//!
//! The pool asks a [`CredentialSource`] for the current password every time it opens a server
//! connection, never caching it itself, so a source can rotate credentials (Lakebase OAuth
//! tokens live one hour) without the pool knowing. Static native-role passwords are one source.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use secrecy::SecretString;

use crate::error::ClientFacing;
use crate::proto::sqlstate::SqlState;

/// A password and when it stops working.
#[derive(Debug)]
pub struct Credential {
    /// The secret sent as the upstream password.
    pub password: SecretString,
    /// Expiry, for rotating credentials; None for static ones.
    pub expires_at: Option<SystemTime>,
    /// When it was requested, for rotating credentials.
    pub issued_at: Option<SystemTime>,
    /// Server host looked up with the credential (Lakebase instance or endpoint), if any.
    pub host: Option<Arc<str>>,
    /// Role the credential is for (the workspace identity), if looked up.
    pub user: Option<Arc<str>>,
}

/// The current credential cannot be had.
#[derive(Debug, Clone, thiserror::Error)]
#[error("upstream credential unavailable: {reason}")]
pub struct CredentialError {
    /// Why, safe to show a client (never contains a secret).
    pub reason: String,
}

impl ClientFacing for CredentialError {
    fn sqlstate(&self) -> SqlState {
        SqlState::UNABLE_TO_CONNECT
    }
    fn client_message(&self) -> String {
        self.to_string()
    }
}

/// Future returned by [`CredentialSource::refresh_after_rejection`].
pub type RefreshFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Option<Arc<Credential>>, CredentialError>> + Send + 'a>>;

/// A source of upstream passwords.
pub trait CredentialSource: Send + Sync + std::fmt::Debug {
    /// The newest valid credential; `Ok(None)` when no password is configured at all.
    fn current(&self) -> Result<Option<Arc<Credential>>, CredentialError>;

    /// Called once when the server rejected `rejected` with 28P01. Returns a newer credential
    /// to retry with, or `Ok(None)` when there is none (then the login fails without a retry).
    fn refresh_after_rejection<'a>(&'a self, rejected: &'a Credential) -> RefreshFuture<'a>;

    /// Like [`CredentialSource::current`], but while the very first credential is still being
    /// fetched (lakepool just started), waits for that attempt instead of failing at once. The
    /// caller bounds the wait (server_connect_timeout).
    fn current_or_first<'a>(&'a self) -> RefreshFuture<'a> {
        Box::pin(async move { self.current() })
    }

    /// Short description for logs and admin views (kind and identity, never the secret).
    fn describe(&self) -> String;

    /// Where the credential comes from, for admin views: `password`, `instance`, `endpoint`.
    fn kind(&self) -> &'static str {
        "password"
    }

    /// Expiry of the newest credential (even an expired one), for rotating credentials.
    fn expiry(&self) -> Option<SystemTime> {
        None
    }

    /// Refresh counters, for rotating credentials.
    fn refresh_status(&self) -> Option<super::lakebase::RefreshStatus> {
        None
    }

    /// Asks for a new credential now (admin `REFRESH CREDENTIALS`); false when the source
    /// has nothing to refresh (a static password).
    fn force_refresh(&self) -> bool {
        false
    }
}

/// A fixed password for a native PostgreSQL role.
#[derive(Debug)]
pub struct StaticCredential {
    credential: Option<Arc<Credential>>,
}

impl StaticCredential {
    /// Wraps a configured password (or none).
    pub fn new(password: Option<SecretString>) -> Self {
        Self {
            credential: password.map(|password| {
                Arc::new(Credential {
                    password,
                    expires_at: None,
                    issued_at: None,
                    host: None,
                    user: None,
                })
            }),
        }
    }
}

impl CredentialSource for StaticCredential {
    fn current(&self) -> Result<Option<Arc<Credential>>, CredentialError> {
        Ok(self.credential.clone())
    }

    fn refresh_after_rejection<'a>(&'a self, _rejected: &'a Credential) -> RefreshFuture<'a> {
        // A static password does not change by asking again: no retry.
        Box::pin(async { Ok(None) })
    }

    fn describe(&self) -> String {
        if self.credential.is_some() {
            "static password".to_owned()
        } else {
            "no password".to_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_debug_is_redacted() {
        let s = StaticCredential::new(Some(SecretString::from("hunter2".to_owned())));
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
    }
}
