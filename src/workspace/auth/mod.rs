//! Workspace API authentication: every method lakepool implements, each as the Databricks
//! SDKs do it, behind one [`TokenSource`].
//!
//! A personal access token is sent as is. Every other method fetches an access token that
//! expires; it is cached and fetched again when min(half its lifetime, 20 min) is left (go
//! `config/experimental/auth/cache.go`), by one caller at a time, and while fetching fails a
//! token not yet expired stays in use. Method by method:
//!
//! - `oauth-m2m` ([`oauth`]): client credentials at the workspace's token endpoint.
//! - `env-oidc`, `file-oidc` ([`oidc`]): workload identity federation, an OIDC token exchanged
//!   at the workspace's token endpoint (RFC 8693), read again at every exchange.
//! - `databricks-cli` ([`cli`]): `databricks auth token`.
//! - `azure-client-secret`, `azure-msi` ([`azure`]): Microsoft Entra ID tokens.
//! - `metadata-service` ([`metadata`]): a local token server.

pub(crate) mod azure;
pub(crate) mod cli;
mod discovery;
mod metadata;
mod oauth;
mod oidc;
mod program;

use std::time::Duration;

use reqwest::RequestBuilder;
use secrecy::{ExposeSecret, SecretString};
use tokio::time::Instant;

pub(crate) use super::methods::IdTokenSource;
use super::methods::WorkspaceAuth;
use discovery::Discovery;

/// Longest refresh-ahead margin (the SDKs: min(TTL/2, 20 min)).
const REFRESH_CAP: Duration = Duration::from_secs(20 * 60);
/// Longest lifetime believed.
const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// Getting a workspace access token failed. Never carries a secret.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum TokenError {
    /// The token endpoint refused the credentials (wrong id or secret, disabled SP…).
    #[error("OAuth token request to {endpoint} was refused (HTTP {status}): {reason}")]
    Refused {
        /// Token endpoint URL.
        endpoint: String,
        /// HTTP status.
        status: u16,
        /// `error`/`error_description` from the response.
        reason: String,
    },
    /// The token endpoint or discovery could not be reached, or answered 5xx/429.
    #[error("OAuth token request to {endpoint} failed: {reason}")]
    Unavailable {
        /// URL.
        endpoint: String,
        /// What went wrong.
        reason: String,
    },
    /// The workspace does not support OAuth (discovery answered 404), answered nonsense, or
    /// named a token endpoint credentials must not be sent to.
    #[error("OAuth discovery at {endpoint} failed: {reason}")]
    Discovery {
        /// URL.
        endpoint: String,
        /// What went wrong.
        reason: String,
    },
    /// A method's own source of tokens failed (the CLI, the OIDC token, the metadata service).
    #[error("{method}: {reason}")]
    Source {
        /// The SDK name of the method.
        method: &'static str,
        /// What went wrong (never a secret).
        reason: String,
    },
}

impl TokenError {
    /// Worth retrying later (network, 5xx, 429) rather than a configuration problem.
    pub(crate) fn is_transient(&self) -> bool {
        matches!(self, TokenError::Unavailable { .. })
    }
}

/// A token for one request, with the extra headers some methods send (Azure).
#[derive(Clone)]
pub(crate) struct Bearer {
    token: SecretString,
    extra: Vec<(&'static str, SecretString)>,
}

impl Bearer {
    fn plain(token: SecretString) -> Self {
        Self {
            token,
            extra: Vec::new(),
        }
    }

    /// Adds `Authorization: Bearer …` and the extra headers to a request.
    pub(crate) fn apply(&self, req: RequestBuilder) -> RequestBuilder {
        let mut req = req.bearer_auth(self.token.expose_secret());
        for (name, value) in &self.extra {
            req = req.header(*name, value.expose_secret());
        }
        req
    }
}

/// A fetched access token and how long it lives from when it arrived.
pub(crate) struct Fetched {
    bearer: Bearer,
    lifetime: Duration,
}

struct Cached {
    bearer: Bearer,
    refresh_at: Instant,
    expires_at: Instant,
}

/// A method whose tokens expire.
enum Method {
    M2m(oauth::M2m),
    Oidc(oidc::Oidc),
    Cli(cli::Cli),
    AzureSecret(azure::ClientSecret),
    AzureMsi(azure::Msi),
    Metadata(metadata::Metadata),
}

impl Method {
    async fn fetch(&self) -> Result<Fetched, TokenError> {
        match self {
            Method::M2m(m) => m.fetch().await,
            Method::Oidc(m) => m.fetch().await,
            Method::Cli(m) => m.fetch().await,
            Method::AzureSecret(m) => m.fetch().await,
            Method::AzureMsi(m) => m.fetch().await,
            Method::Metadata(m) => m.fetch().await,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Method::M2m(_) => "oauth-m2m",
            Method::Oidc(m) => m.kind(),
            Method::Cli(_) => "databricks-cli",
            Method::AzureSecret(_) => "azure-client-secret",
            Method::AzureMsi(_) => "azure-msi",
            Method::Metadata(_) => "metadata-service",
        }
    }
}

/// A method with expiring tokens and its cache.
pub(crate) struct Refreshing {
    method: Method,
    cache: parking_lot::Mutex<Option<Cached>>,
    /// Single flight: one token request at a time.
    fetching: tokio::sync::Mutex<()>,
}

/// How requests to the workspace are authenticated.
pub(crate) enum TokenSource {
    /// `Authorization: Bearer <PAT>`.
    Pat(SecretString),
    /// A method whose tokens expire.
    Refreshing(Box<Refreshing>),
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenSource({}, [REDACTED])", self.kind())
    }
}

impl TokenSource {
    /// The token source for a resolved method, against the workspace at `host`.
    pub(crate) fn new(auth: WorkspaceAuth, http: reqwest::Client, host: String) -> Self {
        let discovery = || Discovery::new(http.clone(), host.clone());
        let method = match auth {
            WorkspaceAuth::Pat(t) => return TokenSource::Pat(t),
            WorkspaceAuth::OAuthM2m {
                client_id,
                client_secret,
            } => Method::M2m(oauth::M2m::new(
                http.clone(),
                discovery(),
                client_id,
                client_secret,
            )),
            WorkspaceAuth::Oidc { source, client_id } => Method::Oidc(oidc::Oidc::new(
                http.clone(),
                discovery(),
                source,
                client_id,
            )),
            WorkspaceAuth::DatabricksCli { cli, profile } => {
                Method::Cli(cli::Cli::new(cli, profile, host.clone()))
            }
            WorkspaceAuth::MetadataService { url } => {
                Method::Metadata(metadata::Metadata::new(http.clone(), url, host.clone()))
            }
            WorkspaceAuth::AzureClientSecret {
                client_id,
                client_secret,
                tenant_id,
                cloud,
            } => Method::AzureSecret(azure::ClientSecret::new(
                http.clone(),
                host.clone(),
                client_id,
                client_secret,
                tenant_id,
                cloud,
            )),
            WorkspaceAuth::AzureMsi {
                client_id,
                cloud,
                endpoint,
            } => Method::AzureMsi(azure::Msi::new(http.clone(), client_id, cloud, endpoint)),
        };
        TokenSource::Refreshing(Box::new(Refreshing {
            method,
            cache: parking_lot::Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
        }))
    }

    /// Auth method name as the SDKs call it.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            TokenSource::Pat(_) => "pat",
            TokenSource::Refreshing(r) => r.method.kind(),
        }
    }

    /// Whether a fresh token can be had by asking again — a PAT cannot.
    pub(crate) fn can_refresh(&self) -> bool {
        matches!(self, TokenSource::Refreshing(_))
    }

    /// Drops a cached access token the workspace rejected.
    pub(crate) fn invalidate(&self) {
        if let TokenSource::Refreshing(r) = self {
            *r.cache.lock() = None;
        }
    }

    /// A token for the next request. Expiring tokens are reused until their refresh point;
    /// past it one caller fetches a new one while a still-valid old one is served if fetching
    /// fails.
    pub(crate) async fn bearer(&self) -> Result<Bearer, TokenError> {
        let r = match self {
            TokenSource::Pat(t) => return Ok(Bearer::plain(t.clone())),
            TokenSource::Refreshing(r) => r,
        };
        if let Some(t) = r.fresh(Instant::now()) {
            return Ok(t);
        }
        let _flight = r.fetching.lock().await;
        // Someone else may have fetched while we waited.
        if let Some(t) = r.fresh(Instant::now()) {
            return Ok(t);
        }
        match r.method.fetch().await {
            Ok(f) => Ok(r.store(f)),
            Err(e) => {
                let now = Instant::now();
                let stale = r
                    .cache
                    .lock()
                    .as_ref()
                    .and_then(|c| (c.expires_at > now).then(|| c.bearer.clone()));
                match stale {
                    Some(t) => {
                        tracing::warn!(error = %e, "workspace token refresh failed; using the current token until it expires");
                        Ok(t)
                    }
                    None => Err(e),
                }
            }
        }
    }
}

impl Refreshing {
    fn fresh(&self, now: Instant) -> Option<Bearer> {
        self.cache
            .lock()
            .as_ref()
            .filter(|c| c.refresh_at > now)
            .map(|c| c.bearer.clone())
    }

    fn store(&self, f: Fetched) -> Bearer {
        let now = Instant::now();
        let lifetime = f.lifetime.min(MAX_LIFETIME);
        let margin = (lifetime / 2).min(REFRESH_CAP);
        *self.cache.lock() = Some(Cached {
            bearer: f.bearer.clone(),
            refresh_at: now + (lifetime - margin),
            expires_at: now + lifetime,
        });
        tracing::debug!(
            method = self.method.kind(),
            expires_in_s = lifetime.as_secs(),
            "workspace access token obtained"
        );
        f.bearer
    }
}

/// `application/x-www-form-urlencoded` body from pairs.
pub(crate) fn form(pairs: &[(&str, &str)]) -> String {
    fn enc(s: &str, out: &mut String) {
        for b in s.bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    out.push(char::from(b));
                }
                b' ' => out.push('+'),
                _ => out.push_str(&format!("%{b:02X}")),
            }
        }
    }
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        enc(k, &mut out);
        out.push('=');
        enc(v, &mut out);
    }
    out
}

/// A lifetime in seconds from a JSON number or numeric string (Entra ID's v1 endpoint sends
/// `"expires_in": "3599"`).
pub(crate) fn seconds(v: Option<&serde_json::Value>) -> Option<u64> {
    match v? {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Seconds until the Unix time `epoch`, by the local clock (for tokens from this machine:
/// the CLI, the metadata service, the instance metadata service).
pub(crate) fn until_epoch(epoch: u64) -> Duration {
    let at = std::time::UNIX_EPOCH + Duration::from_secs(epoch);
    at.duration_since(std::time::SystemTime::now())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding() {
        assert_eq!(
            form(&[("grant_type", "client_credentials"), ("scope", "all-apis")]),
            "grant_type=client_credentials&scope=all-apis"
        );
        assert_eq!(form(&[("a b", "x+y/=&")]), "a+b=x%2By%2F%3D%26");
    }

    #[test]
    fn seconds_from_numbers_and_strings() {
        use serde_json::json;
        assert_eq!(seconds(Some(&json!(3599))), Some(3599));
        assert_eq!(seconds(Some(&json!("3599"))), Some(3599));
        assert_eq!(seconds(Some(&json!("soon"))), None);
        assert_eq!(seconds(None), None);
    }

    #[tokio::test(start_paused = true)]
    async fn tokens_are_cached_until_their_refresh_point() {
        let r = Refreshing {
            method: Method::Metadata(metadata::Metadata::new(
                crate::workspace::transport::http_client(Duration::from_secs(1), false).unwrap(),
                SecretString::from("http://127.0.0.1:1/none"),
                "http://127.0.0.1:2".into(),
            )),
            cache: parking_lot::Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
        };
        r.store(Fetched {
            bearer: Bearer::plain(SecretString::from("t1")),
            lifetime: Duration::from_secs(3600),
        });
        let now = Instant::now();
        assert!(r.fresh(now).is_some());
        // 20 min before expiry it is due.
        assert!(r.fresh(now + Duration::from_secs(2399)).is_some());
        assert!(r.fresh(now + Duration::from_secs(2400)).is_none());
    }
}
