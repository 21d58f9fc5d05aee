//! The refresher task of a Lakebase credential: when to refresh, and one refresh.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::LakebaseCredential;
use crate::credentials::source::Credential;
use crate::workspace::http::ApiError;
use crate::workspace::transport::backoff;

/// Longest refresh margin by default (as the Databricks SDKs: min(TTL/2, 20 min);
/// go `config/experimental/auth/cache.go` `maxAsyncRefreshLeadTime`).
const DEFAULT_MARGIN_CAP: Duration = Duration::from_secs(20 * 60);
/// Jitter: up to this fraction of the margin earlier, so many lakepools do not refresh in
/// lockstep.
const JITTER: f64 = 0.1;
/// Longest wait between attempts while refreshing fails.
const RETRY_CAP: Duration = Duration::from_secs(30);
/// Shortest wait between two successful refreshes, whatever the lifetimes and margins say.
const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(1);

/// Refresh failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum RefreshError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("{0} is not available yet (state {1}) and no host is known yet; retrying")]
    NotAvailable(String, String),
    #[error("{0} has no host in the workspace's answer")]
    NoHost(String),
}

impl RefreshError {
    /// The server's `Retry-After`, when it gave one.
    fn retry_after(&self) -> Option<Duration> {
        match self {
            RefreshError::Api(e) => e.retry_after(),
            _ => None,
        }
    }

    fn class(&self) -> &'static str {
        match self {
            RefreshError::Api(e) => e.class(),
            RefreshError::NotAvailable(..) => "not_available",
            RefreshError::NoHost(_) => "no_host",
        }
    }
}

/// The margin to refresh with: the configured one capped at half the lifetime (the SDKs'
/// rule; a margin at or above the lifetime would refresh in a loop), else min(half the
/// lifetime, 20 min). The bool says the configured margin was capped.
pub(super) fn margin(lifetime: Duration, configured: Option<Duration>) -> (Duration, bool) {
    let half = lifetime / 2;
    match configured {
        Some(m) if m > half => (half, true),
        Some(m) => (m, false),
        None => (half.min(DEFAULT_MARGIN_CAP), false),
    }
}

/// Delay from receiving a credential that lives `lifetime` to refreshing it: the margin
/// before expiry plus `jitter` (in [0, 1)) times 10 % of the margin, never under 1 s.
pub(super) fn refresh_delay(lifetime: Duration, margin: Duration, jitter: f64) -> Duration {
    let early = margin + margin.mul_f64(jitter.clamp(0.0, 1.0) * JITTER);
    lifetime.saturating_sub(early).max(MIN_REFRESH_INTERVAL)
}

/// A successful refresh: the credential and a warning to report, if any.
pub(super) struct Refreshed {
    credential: Credential,
    lifetime: Duration,
    warning: Option<String>,
}

impl LakebaseCredential {
    /// The refresher loop: refresh when due (or when woken), back off while failing.
    pub(super) async fn run(&self) {
        let mut failures = 0u32;
        let mut hinted: Option<Duration> = None;
        let mut due: Option<Instant> = None;
        loop {
            let now = Instant::now();
            let wait = match (failures, due) {
                (0, Some(at)) => at.saturating_duration_since(now),
                (0, None) => Duration::ZERO,
                (n, _) => {
                    // The workspace's Retry-After wins over our own backoff when longer.
                    let mut d = backoff(n + 1)
                        .min(RETRY_CAP)
                        .max(hinted.take().unwrap_or_default());
                    // Never sleep past the expiry of a credential still in use.
                    if let Some(left) = self
                        .current
                        .load()
                        .as_ref()
                        .and_then(|c| c.expires_at)
                        .map(|e| e.saturating_duration_since(now))
                        .filter(|l| !l.is_zero())
                    {
                        d = d.min(left.max(Duration::from_secs(1)));
                    }
                    d
                }
            };
            if !wait.is_zero() {
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = self.wake.notified() => {}
                }
            }
            match self.refresh_once().await {
                Ok(r) => {
                    failures = 0;
                    due = Some(Instant::now() + self.schedule(r.lifetime));
                    self.installed(r);
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    hinted = e.retry_after();
                    self.failed(&e);
                }
            }
            self.generation.send_modify(|g| *g = g.wrapping_add(1));
        }
    }

    /// Time from now (the credential just arrived) to its refresh.
    fn schedule(&self, lifetime: Duration) -> Duration {
        let (margin, capped) = margin(lifetime, self.margin);
        if capped {
            tracing::warn!(target = %self.target.describe(),
                configured_s = self.margin.unwrap_or_default().as_secs_f64(),
                lifetime_s = lifetime.as_secs_f64(),
                used_s = margin.as_secs_f64(),
                "credential_refresh_margin is more than half the credential's lifetime; using half the lifetime");
        }
        refresh_delay(lifetime, margin, (self.jitter)())
    }

    fn installed(&self, r: Refreshed) {
        let c = r.credential;
        tracing::info!(target = %self.target.describe(), host = %c.host, user = %c.user,
            expires_in_s = r.lifetime.as_secs(), "database credential refreshed");
        if let Some(w) = &r.warning {
            tracing::warn!(target = %self.target.describe(), "{w}");
        }
        let mut st = self.status.lock();
        st.refreshes += 1;
        st.last_refresh = Some(SystemTime::now());
        st.last_error = None;
        st.last_error_class = None;
        st.last_warning = r.warning;
        st.identity = Some(c.user.to_string());
        st.host = Some(c.host.to_string());
        drop(st);
        self.current.store(Some(Arc::new(c)));
    }

    fn failed(&self, e: &RefreshError) {
        let now = Instant::now();
        let left = self
            .current
            .load()
            .as_ref()
            .and_then(|c| c.expires_at)
            .map(|x| x.saturating_duration_since(now))
            .filter(|l| !l.is_zero());
        match left {
            Some(left) => tracing::warn!(target = %self.target.describe(), error = %e,
                valid_for_s = left.as_secs(), "database credential refresh failed; the current one stays in use"),
            None => tracing::warn!(target = %self.target.describe(), error = %e,
                "database credential refresh failed; no valid credential, new server connections fail until it succeeds"),
        }
        let mut st = self.status.lock();
        st.failures += 1;
        st.last_error = Some(e.to_string());
        st.last_error_class = Some(e.class());
    }

    /// One refresh: host (configured, or looked up), role (configured, or the workspace
    /// identity), then a new credential.
    async fn refresh_once(&self) -> Result<Refreshed, RefreshError> {
        let (looked_up_host, warning) = if self.pinned.needs_host() {
            let (h, w) = self.lookup_host().await?;
            (Some(h), w)
        } else {
            (None, None)
        };
        let looked_up_user = if self.pinned.needs_user() {
            Some(self.identity().await?)
        } else {
            None
        };
        let minted = self.api.mint(&self.target).await?;
        // The local receive time: the lifetime counts from here.
        let received = Instant::now();
        let (Some(host), Some(user)) = (
            self.pinned.host(looked_up_host.as_ref()),
            self.pinned.user(looked_up_user.as_ref()),
        ) else {
            // Unreachable: a missing pinned value was looked up above.
            return Err(RefreshError::NoHost(self.target.describe()));
        };
        Ok(Refreshed {
            credential: Credential {
                host,
                user,
                password: Some(minted.token),
                expires_at: Some(received + minted.lifetime),
            },
            lifetime: minted.lifetime,
            warning,
        })
    }

    /// The workspace identity, asked once and then remembered.
    async fn identity(&self) -> Result<Arc<str>, RefreshError> {
        if let Some(u) = self.looked_up.lock().user.clone() {
            return Ok(u);
        }
        let u: Arc<str> = Arc::from(self.api.identity().await?);
        self.looked_up.lock().user = Some(Arc::clone(&u));
        Ok(u)
    }

    /// The host to connect to. Only a ready instance or endpoint (the CLI's rule) gives a new
    /// host; otherwise, or when the lookup fails, the last known host stays in use with a
    /// warning, so a credential is minted whatever the state (during `UPDATING` or a
    /// failover the old host keeps serving, and the credential API has no state
    /// requirement). Without a known host the refresh fails.
    async fn lookup_host(&self) -> Result<(Arc<str>, Option<String>), RefreshError> {
        let what = self.target.describe();
        let last = self.looked_up.lock().host.clone();
        let keep = |why: String| match &last {
            Some(h) => Ok((
                Arc::clone(h),
                Some(format!("{why}; keeping the last known host {h}")),
            )),
            None => Err(why),
        };
        match self.api.locate(&self.target).await {
            Ok(loc) if self.target.ready(loc.state.as_deref()) => {
                match loc.host.filter(|h| !h.is_empty()) {
                    Some(h) => {
                        let h: Arc<str> = Arc::from(h);
                        self.looked_up.lock().host = Some(Arc::clone(&h));
                        Ok((h, None))
                    }
                    None => keep(format!("{what} has no host in the workspace's answer"))
                        .map_err(|_| RefreshError::NoHost(what.clone())),
                }
            }
            Ok(loc) => {
                let state = loc.state.unwrap_or_else(|| "UNKNOWN".to_owned());
                keep(format!("{what} is in state {state}"))
                    .map_err(|_| RefreshError::NotAvailable(what.clone(), state.clone()))
            }
            Err(e) => keep(format!("looking up {what} failed: {e}")).map_err(|_| e.into()),
        }
    }
}
