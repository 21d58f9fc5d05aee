//! Lakebase database credentials: minted through the workspace API and rotated in the
//! background before they expire.
//!
//! One refresher task per credential is the only caller of the API (single flight: any number
//! of waiting clients cause at most one call per refresh). Sessions read the newest credential
//! with one atomic load. A refresh is due when min(half the lifetime, 20 min) remains (or the
//! configured margin), with jitter; a failed refresh keeps the current credential in use until
//! it expires, retrying with backoff and warning with the time left. Once expired, new server
//! connections fail fast with the reason, and the pool recovers when the API answers again.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use parking_lot::Mutex;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::credential::{Credential, CredentialError, CredentialSource, RefreshFuture};
use crate::workspace::http::{ApiClient, ApiError, backoff};

/// Longest refresh margin by default (as the Databricks SDKs: min(TTL/2, 20 min)).
const DEFAULT_MARGIN_CAP: Duration = Duration::from_secs(20 * 60);
/// Longest wait between attempts while refreshing fails.
const RETRY_CAP: Duration = Duration::from_secs(30);
/// How long a login rejected with 28P01 waits for the refresher.
const REJECTION_WAIT: Duration = Duration::from_secs(30);
/// At most one rejection-triggered refresh this often: if the server keeps rejecting fresh
/// credentials (role missing), logins fail instead of minting one credential per attempt.
const REJECTION_REFRESH_INTERVAL: Duration = Duration::from_secs(10);
/// Longest a login waits for the very first credential after startup.
const FIRST_CREDENTIAL_WAIT: Duration = Duration::from_secs(10);
/// Shortest wait between two successful refreshes, whatever the lifetimes and margins say.
const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(1);

/// What the credential is minted for.
#[derive(Debug, Clone)]
pub enum LakebaseTarget {
    /// A provisioned instance.
    Instance(String),
    /// An autoscaling endpoint, with an optional requested lifetime.
    Endpoint {
        /// Resource name.
        name: String,
        /// Requested lifetime.
        ttl: Option<Duration>,
    },
}

impl LakebaseTarget {
    fn describe(&self) -> String {
        match self {
            LakebaseTarget::Instance(n) => format!("instance {n}"),
            LakebaseTarget::Endpoint { name, .. } => format!("endpoint {name}"),
        }
    }
}

/// State for status views and readiness.
#[derive(Debug, Clone, Default)]
pub struct RefreshStatus {
    /// Successful refreshes.
    pub refreshes: u64,
    /// Failed refresh attempts.
    pub failures: u64,
    /// When the last refresh succeeded.
    pub last_refresh: Option<SystemTime>,
    /// The last failure, without secrets.
    pub last_error: Option<String>,
    /// Class of the last failure (`http_5xx`, `auth`, `transport`, `not_available`…).
    pub last_error_class: Option<&'static str>,
    /// Identity the credential is for, once known.
    pub identity: Option<String>,
    /// Host the credential is for, once known.
    pub host: Option<String>,
}

/// A rotating Lakebase credential.
#[derive(Debug)]
pub struct LakebaseCredential {
    target: LakebaseTarget,
    api: Arc<ApiClient>,
    /// Host from the config (wins over the looked-up one).
    configured_host: Option<String>,
    /// Role from the config (wins over the workspace identity).
    configured_user: Option<String>,
    margin: Option<Duration>,
    current: ArcSwapOption<Credential>,
    status: Mutex<RefreshStatus>,
    wake: Notify,
    generation: watch::Sender<u64>,
    last_rejection_refresh: Mutex<Option<std::time::Instant>>,
}

/// Refresh failed.
#[derive(Debug, thiserror::Error)]
enum RefreshError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("{0} is not available yet (state {1}); retrying")]
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

impl LakebaseCredential {
    /// A credential source for `target`; call [`LakebaseCredential::spawn`] to start rotating.
    pub fn new(
        target: LakebaseTarget,
        api: Arc<ApiClient>,
        configured_host: Option<String>,
        configured_user: Option<String>,
        margin: Option<Duration>,
    ) -> Self {
        Self {
            target,
            api,
            configured_host,
            configured_user,
            margin,
            current: ArcSwapOption::empty(),
            status: Mutex::new(RefreshStatus::default()),
            wake: Notify::new(),
            generation: watch::Sender::new(0),
            last_rejection_refresh: Mutex::new(None),
        }
    }

    /// A snapshot of the refresh status.
    pub fn status(&self) -> RefreshStatus {
        self.status.lock().clone()
    }

    /// Expiry of the newest credential.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.current.load().as_ref().and_then(|c| c.expires_at)
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

    async fn run(&self) {
        let mut failures = 0u32;
        let mut hinted: Option<Duration> = None;
        loop {
            let wait = match (failures, self.current.load_full()) {
                (0, Some(c)) => self.until_refresh(&c).max(MIN_REFRESH_INTERVAL),
                (0, None) => Duration::ZERO,
                (n, current) => {
                    // The workspace's Retry-After wins over our own backoff when longer.
                    let mut d = backoff(n + 1)
                        .min(RETRY_CAP)
                        .max(hinted.take().unwrap_or_default());
                    // Never sleep past the expiry of a credential still in use.
                    if let Some(left) = current
                        .and_then(|c| c.expires_at)
                        .and_then(|e| e.duration_since(SystemTime::now()).ok())
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
                Ok(cred) => {
                    failures = 0;
                    let expires_in = cred
                        .expires_at
                        .and_then(|e| e.duration_since(SystemTime::now()).ok())
                        .unwrap_or_default();
                    tracing::info!(target = %self.target.describe(), expires_in_s = expires_in.as_secs(), "database credential refreshed");
                    self.current.store(Some(Arc::new(cred)));
                    let mut st = self.status.lock();
                    st.refreshes += 1;
                    st.last_refresh = Some(SystemTime::now());
                    st.last_error = None;
                    st.last_error_class = None;
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    hinted = e.retry_after();
                    let left = self
                        .expires_at()
                        .and_then(|x| x.duration_since(SystemTime::now()).ok());
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
            }
            self.generation.send_modify(|g| *g = g.wrapping_add(1));
        }
    }

    /// Time until the credential is due for refresh: margin before expiry, minus jitter.
    fn until_refresh(&self, c: &Credential) -> Duration {
        let Some(expires) = c.expires_at else {
            return Duration::from_secs(3600);
        };
        let now = SystemTime::now();
        let left = expires.duration_since(now).unwrap_or_default();
        let lifetime = c
            .issued_at
            .and_then(|i| expires.duration_since(i).ok())
            .unwrap_or(left);
        let margin = self
            .margin
            .unwrap_or_else(|| (lifetime / 2).min(DEFAULT_MARGIN_CAP));
        // Up to 10 % of the margin earlier, so many lakepools do not refresh in lockstep.
        let jitter = margin.mul_f64(rand::random::<f64>() * 0.1);
        left.saturating_sub(margin + jitter)
    }

    async fn refresh_once(&self) -> Result<Credential, RefreshError> {
        let host = match &self.configured_host {
            Some(h) => h.clone(),
            None => self.lookup_host().await?,
        };
        let user = match &self.configured_user {
            Some(u) => u.clone(),
            None => {
                let known = self.status.lock().identity.clone();
                match known {
                    Some(u) => u,
                    None => self.api.current_user().await?,
                }
            }
        };
        let issued = SystemTime::now();
        let minted = match &self.target {
            LakebaseTarget::Instance(name) => self.api.instance_credential(name).await?,
            LakebaseTarget::Endpoint { name, ttl } => {
                self.api.endpoint_credential(name, *ttl).await?
            }
        };
        {
            let mut st = self.status.lock();
            st.identity = Some(user.clone());
            st.host = Some(host.clone());
        }
        Ok(Credential {
            password: minted.token,
            expires_at: Some(minted.expires_at),
            issued_at: Some(issued),
            host: Some(host.into()),
            user: Some(user.into()),
        })
    }

    async fn lookup_host(&self) -> Result<String, RefreshError> {
        match &self.target {
            LakebaseTarget::Instance(name) => {
                let inst = self.api.instance(name).await?;
                let state = inst.state.unwrap_or_else(|| "UNKNOWN".to_owned());
                if state != "AVAILABLE" {
                    return Err(RefreshError::NotAvailable(
                        format!("instance {name}"),
                        state,
                    ));
                }
                inst.read_write_dns
                    .filter(|h| !h.is_empty())
                    .ok_or_else(|| RefreshError::NoHost(format!("instance {name}")))
            }
            LakebaseTarget::Endpoint { name, .. } => {
                let ep = self.api.endpoint(name).await?;
                if let Some(state) = &ep.state
                    && !matches!(state.as_str(), "ACTIVE" | "IDLE")
                {
                    return Err(RefreshError::NotAvailable(
                        format!("endpoint {name}"),
                        state.clone(),
                    ));
                }
                ep.host
                    .filter(|h| !h.is_empty())
                    .ok_or_else(|| RefreshError::NoHost(format!("endpoint {name}")))
            }
        }
    }

    fn unavailable(&self) -> CredentialError {
        let st = self.status.lock();
        // A refresh still retrying inside the API client has not failed yet, but its newest
        // attempt says why it is slow.
        let last_error = st.last_error.clone().or_else(|| self.api.last_failure());
        let reason = match (&last_error, self.current.load().is_some()) {
            (Some(e), true) => format!(
                "the credential for {} expired and refreshing it fails: {e}",
                self.target.describe()
            ),
            (Some(e), false) => format!("no credential for {} yet: {e}", self.target.describe()),
            (None, true) => format!(
                "the credential for {} expired; a refresh is under way",
                self.target.describe()
            ),
            (None, false) => format!(
                "no credential for {} yet; the first one is being fetched",
                self.target.describe()
            ),
        };
        CredentialError { reason }
    }
}

impl CredentialSource for LakebaseCredential {
    fn current(&self) -> Result<Option<Arc<Credential>>, CredentialError> {
        match self.current.load_full() {
            Some(c) if c.expires_at.is_none_or(|e| e > SystemTime::now()) => Ok(Some(c)),
            _ => Err(self.unavailable()),
        }
    }

    fn refresh_after_rejection<'a>(&'a self, rejected: &'a Credential) -> RefreshFuture<'a> {
        Box::pin(async move {
            let newer = |me: &Self| {
                me.current
                    .load_full()
                    .filter(|c| !std::ptr::eq(Arc::as_ptr(c), rejected))
                    .filter(|c| c.issued_at > rejected.issued_at)
            };
            if let Some(c) = newer(self) {
                return Ok(Some(c));
            }
            {
                let mut last = self.last_rejection_refresh.lock();
                let now = std::time::Instant::now();
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

    fn current_or_first<'a>(&'a self) -> RefreshFuture<'a> {
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

    fn kind(&self) -> &'static str {
        match self.target {
            LakebaseTarget::Instance(_) => "instance",
            LakebaseTarget::Endpoint { .. } => "endpoint",
        }
    }

    fn expiry(&self) -> Option<SystemTime> {
        self.expires_at()
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
            "lakebase {} via {} ({}){}",
            self.target.describe(),
            self.api.host(),
            self.api.token_source().kind(),
            st.identity
                .as_deref()
                .map(|i| format!(" as {i}"))
                .unwrap_or_default()
        )
    }
}
