//! Lakebase database credentials: minted through the workspace API and rotated in the
//! background before they expire.
//!
//! One refresher task per credential is the only caller of the API (single flight: any number
//! of waiting clients cause at most one call per refresh). Sessions read the newest credential
//! with one atomic load. A refresh is due when min(half the lifetime, 20 min) remains (or the
//! configured margin, capped at half the lifetime), with jitter; a failed refresh keeps the
//! current credential in use until it expires, retrying with backoff and warning with the time
//! left. Once expired, new server connections fail fast with the reason, and the pool recovers
//! when the API answers again. All times are local monotonic instants: a credential's expiry is
//! its local receive time plus the lifetime measured against the workspace's clock.

pub mod api;
mod refresher;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use parking_lot::Mutex;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::source::{Credential, CredentialError, CredentialFuture, CredentialSource, Pinned};
use super::status::RefreshStatus;
use api::{LakebaseApi, LakebaseTarget};

/// How long a login rejected with 28P01 waits for the refresher.
const REJECTION_WAIT: Duration = Duration::from_secs(30);
/// At most one rejection-triggered refresh this often: if the server keeps rejecting fresh
/// credentials (role missing), logins fail instead of minting one credential per attempt.
const REJECTION_REFRESH_INTERVAL: Duration = Duration::from_secs(10);
/// Longest a login waits for the very first credential after startup.
const FIRST_CREDENTIAL_WAIT: Duration = Duration::from_secs(10);

/// Host and identity the workspace reported, kept across refreshes.
#[derive(Debug, Default)]
struct LookedUp {
    host: Option<Arc<str>>,
    user: Option<Arc<str>>,
}

/// A rotating Lakebase credential.
#[derive(Debug)]
pub struct LakebaseCredential {
    target: LakebaseTarget,
    api: Arc<dyn LakebaseApi>,
    pinned: Pinned,
    margin: Option<Duration>,
    current: ArcSwapOption<Credential>,
    looked_up: Mutex<LookedUp>,
    status: Mutex<RefreshStatus>,
    wake: Notify,
    generation: watch::Sender<u64>,
    last_rejection_refresh: Mutex<Option<Instant>>,
    /// Fraction in [0, 1) of the 10 % jitter to use next; random, fixed in tests.
    jitter: fn() -> f64,
}

impl LakebaseCredential {
    /// A credential source for `target`; call [`LakebaseCredential::spawn`] to start rotating.
    /// `pinned` is the configured host and role, `margin` the configured refresh margin.
    pub fn new(
        target: LakebaseTarget,
        api: Arc<dyn LakebaseApi>,
        pinned: Pinned,
        margin: Option<Duration>,
    ) -> Self {
        let status = RefreshStatus {
            host: pinned.host(None).map(|h| h.to_string()),
            identity: pinned.user(None).map(|u| u.to_string()),
            ..RefreshStatus::default()
        };
        Self {
            target,
            api,
            pinned,
            margin,
            current: ArcSwapOption::empty(),
            looked_up: Mutex::new(LookedUp::default()),
            status: Mutex::new(status),
            wake: Notify::new(),
            generation: watch::Sender::new(0),
            last_rejection_refresh: Mutex::new(None),
            jitter: rand::random::<f64>,
        }
    }

    /// A snapshot of the refresh status.
    pub fn status(&self) -> RefreshStatus {
        self.status.lock().clone()
    }

    /// Starts the refresher; it stops when `shutdown` is cancelled.
    pub fn spawn(self: &Arc<Self>, shutdown: CancellationToken) {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            tokio::select! {
                () = me.run() => {}
                () = shutdown.cancelled() => {}
            }
        });
    }

    /// Asks the refresher for a new credential now (admin `REFRESH CREDENTIALS`, 28P01).
    pub fn refresh_now(&self) {
        self.wake.notify_one();
    }

    fn unavailable(&self) -> CredentialError {
        let st = self.status.lock();
        // A refresh still retrying inside the API client has not failed yet, but its newest
        // attempt says why it is slow.
        let last_error = st.last_error.clone().or_else(|| self.api.last_failure());
        let what = self.target.describe();
        let reason = match (&last_error, self.current.load().is_some()) {
            (Some(e), true) => {
                format!("the credential for {what} expired and refreshing it fails: {e}")
            }
            (Some(e), false) => format!("no credential for {what} yet: {e}"),
            (None, true) => format!("the credential for {what} expired; a refresh is under way"),
            (None, false) => {
                format!("no credential for {what} yet; the first one is being fetched")
            }
        };
        CredentialError { reason }
    }
}

impl CredentialSource for LakebaseCredential {
    fn current(&self) -> Result<Arc<Credential>, CredentialError> {
        match self.current.load_full() {
            Some(c) if c.valid_at(Instant::now()) => Ok(c),
            _ => Err(self.unavailable()),
        }
    }

    fn refresh_after_rejection<'a>(
        &'a self,
        rejected: &'a Credential,
    ) -> CredentialFuture<'a, Option<Arc<Credential>>> {
        Box::pin(async move {
            let newer = |me: &Self| {
                me.current
                    .load_full()
                    .filter(|c| !std::ptr::eq(Arc::as_ptr(c), rejected))
                    .filter(|c| c.valid_at(Instant::now()))
            };
            if let Some(c) = newer(self) {
                return Ok(Some(c));
            }
            {
                let mut last = self.last_rejection_refresh.lock();
                let now = Instant::now();
                if last.is_some_and(|t| now.duration_since(t) < REJECTION_REFRESH_INTERVAL) {
                    return Ok(None);
                }
                *last = Some(now);
            }
            // One refresh for all rejected logins: wake the refresher and wait for its next round.
            let mut rx = self.generation.subscribe();
            rx.mark_unchanged();
            tracing::info!(target = %self.target.describe(), "server rejected the credential (28P01); refreshing now");
            self.wake.notify_one();
            let _ = tokio::time::timeout(REJECTION_WAIT, rx.changed()).await;
            Ok(newer(self))
        })
    }

    fn current_or_first(&self) -> CredentialFuture<'_, Arc<Credential>> {
        Box::pin(async move {
            // Subscribe before looking, so the first round cannot finish unseen in between.
            let mut rx = self.generation.subscribe();
            let first_pending = {
                let st = self.status.lock();
                st.refreshes == 0 && st.failures == 0
            };
            if first_pending && self.current.load().is_none() {
                // Started moments ago: wait for the first attempt rather than fail a client
                // that connected together with lakepool (a sidecar starting next to its app).
                let _ = tokio::time::timeout(FIRST_CREDENTIAL_WAIT, rx.changed()).await;
            }
            self.current()
        })
    }

    fn target(&self) -> (Option<Arc<str>>, Option<Arc<str>>) {
        if let Some(c) = self.current.load_full() {
            return (Some(Arc::clone(&c.host)), Some(Arc::clone(&c.user)));
        }
        let seen = self.looked_up.lock();
        (
            self.pinned.host(seen.host.as_ref()),
            self.pinned.user(seen.user.as_ref()),
        )
    }

    fn kind(&self) -> &'static str {
        match self.target {
            LakebaseTarget::Instance(_) => "instance",
            LakebaseTarget::Endpoint { .. } => "endpoint",
        }
    }

    fn expiry(&self) -> Option<SystemTime> {
        self.current.load().as_ref().and_then(|c| c.expires_wall())
    }

    fn refresh_status(&self) -> Option<RefreshStatus> {
        Some(self.status())
    }

    fn force_refresh(&self) -> bool {
        self.refresh_now();
        true
    }

    fn describe(&self) -> String {
        let st = self.status.lock();
        format!(
            "lakebase {} via {}{}",
            self.target.describe(),
            self.api.describe(),
            st.identity
                .as_deref()
                .map(|i| format!(" as {i}"))
                .unwrap_or_default()
        )
    }
}
