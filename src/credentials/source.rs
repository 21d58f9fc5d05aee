//! What a credential is, and the trait every source of upstream credentials implements.
//!
//! The pool asks a [`CredentialSource`] for the current credential every time it opens a
//! server connection, never caching it itself, so a source can rotate credentials (Lakebase
//! OAuth tokens live one hour) without the pool knowing. A credential says where to log in
//! and as whom as well as with what password, so "a configured host or user wins over the
//! one the API reports" is decided once, by [`Pinned`], inside the source.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use secrecy::SecretString;
use tokio::time::Instant;

use super::status::RefreshStatus;
use crate::error::ClientFacing;
use crate::proto::sqlstate::SqlState;

/// What a server login needs: host, role, password, and when the password stops working.
#[derive(Debug)]
pub struct Credential {
    /// Server host name or address.
    pub host: Arc<str>,
    /// Role to log in as.
    pub user: Arc<str>,
    /// The secret sent as the password; None when none is configured (trust/peer upstreams).
    pub password: Option<SecretString>,
    /// Local (monotonic) time the password stops working for new logins; None when it does
    /// not expire. Computed from the local receive time plus the lifetime the API gave, so a
    /// skewed wall clock cannot make it look expired or fresh.
    pub expires_at: Option<Instant>,
}

impl Credential {
    /// Whether the password still works for a new login at `now`.
    pub fn valid_at(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|e| e > now)
    }

    /// The expiry as a wall-clock time, for status views.
    pub fn expires_wall(&self) -> Option<SystemTime> {
        let at = self.expires_at?;
        let now = Instant::now();
        Some(if at >= now {
            SystemTime::now() + (at - now)
        } else {
            SystemTime::now() - (now - at)
        })
    }
}

/// Host and role the configuration pins for a database. The one place where "a configured
/// host/user wins over what the workspace reports" is decided: sources call
/// [`Pinned::host`] and [`Pinned::user`] with what they looked up, and look nothing up when
/// the configuration already decides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pinned {
    host: Option<Arc<str>>,
    user: Option<Arc<str>>,
}

impl Pinned {
    /// The configured host and role, if any.
    pub fn new(host: Option<&str>, user: Option<&str>) -> Self {
        let keep = |v: Option<&str>| v.filter(|s| !s.is_empty()).map(Arc::from);
        Self {
            host: keep(host),
            user: keep(user),
        }
    }

    /// Whether the host must come from the workspace.
    pub fn needs_host(&self) -> bool {
        self.host.is_none()
    }

    /// Whether the role must come from the workspace identity.
    pub fn needs_user(&self) -> bool {
        self.user.is_none()
    }

    /// The host to log in to: the configured one, else `looked_up`.
    pub fn host(&self, looked_up: Option<&Arc<str>>) -> Option<Arc<str>> {
        self.host.as_ref().or(looked_up).cloned()
    }

    /// The role to log in as: the configured one, else `looked_up`.
    pub fn user(&self, looked_up: Option<&Arc<str>>) -> Option<Arc<str>> {
        self.user.as_ref().or(looked_up).cloned()
    }
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

/// Future returned by the asynchronous [`CredentialSource`] methods.
pub type CredentialFuture<'a, T> =
    Pin<Box<dyn Future<Output = Result<T, CredentialError>> + Send + 'a>>;

/// A source of upstream credentials.
pub trait CredentialSource: Send + Sync + std::fmt::Debug {
    /// The newest valid credential, or why there is none.
    fn current(&self) -> Result<Arc<Credential>, CredentialError>;

    /// Called once when the server rejected `rejected` with 28P01. Returns a newer credential
    /// to retry with, or `Ok(None)` when there is none (then the login fails without a retry).
    fn refresh_after_rejection<'a>(
        &'a self,
        rejected: &'a Credential,
    ) -> CredentialFuture<'a, Option<Arc<Credential>>>;

    /// Like [`CredentialSource::current`], but while the very first credential is still being
    /// fetched (lakepool just started), waits for that attempt instead of failing at once. The
    /// caller bounds the wait (server_connect_timeout).
    fn current_or_first(&self) -> CredentialFuture<'_, Arc<Credential>> {
        Box::pin(async move { self.current() })
    }

    /// Host and role of the newest credential, or the configured ones while there is none,
    /// for status views (not for logging in: use [`CredentialSource::current`]).
    fn target(&self) -> (Option<Arc<str>>, Option<Arc<str>>);

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
    fn refresh_status(&self) -> Option<RefreshStatus> {
        None
    }

    /// Asks for a new credential now (admin `REFRESH CREDENTIALS`); false when the source
    /// has nothing to refresh (a static password).
    fn force_refresh(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_values_win_over_looked_up_ones() {
        let looked_up: Arc<str> = Arc::from("api-host");
        let pinned = Pinned::new(Some("cfg-host"), None);
        assert_eq!(pinned.host(Some(&looked_up)).as_deref(), Some("cfg-host"));
        assert!(!pinned.needs_host());
        assert!(pinned.needs_user());
        let who: Arc<str> = Arc::from("sp-uuid");
        assert_eq!(pinned.user(Some(&who)).as_deref(), Some("sp-uuid"));
        assert_eq!(pinned.user(None), None);
        // An empty configured value counts as unset.
        let empty = Pinned::new(Some(""), Some(""));
        assert!(empty.needs_host() && empty.needs_user());
        assert_eq!(empty.host(Some(&looked_up)).as_deref(), Some("api-host"));
    }

    #[tokio::test(start_paused = true)]
    async fn validity_and_wall_expiry_follow_the_local_clock() {
        let now = Instant::now();
        let c = Credential {
            host: Arc::from("h"),
            user: Arc::from("u"),
            password: None,
            expires_at: Some(now + std::time::Duration::from_secs(60)),
        };
        assert!(c.valid_at(now));
        assert!(!c.valid_at(now + std::time::Duration::from_secs(60)));
        let wall = c.expires_wall().unwrap();
        let left = wall.duration_since(SystemTime::now()).unwrap();
        assert!(
            left <= std::time::Duration::from_secs(60) && left > std::time::Duration::from_secs(55)
        );
    }
}
