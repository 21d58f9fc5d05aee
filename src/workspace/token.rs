//! Workspace API authentication: a personal access token, or service-principal OAuth M2M
//! (client credentials) whose access token is cached and refreshed ahead of its expiry.

use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::transport::transport_reason;

/// Refresh an access token when this fraction of its lifetime is left, capped (as the SDKs do:
/// min(TTL/2, 20 min) before expiry).
const REFRESH_CAP: Duration = Duration::from_secs(20 * 60);

/// Getting a workspace access token failed. Never carries a secret.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TokenError {
    /// The token endpoint refused the client credentials (wrong id or secret, disabled SP…).
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
    /// The workspace does not support OAuth (discovery answered 404) or answered nonsense.
    #[error("OAuth discovery at {endpoint} failed: {reason}")]
    Discovery {
        /// URL.
        endpoint: String,
        /// What went wrong.
        reason: String,
    },
}

impl TokenError {
    /// Worth retrying later (network, 5xx, 429) rather than a configuration problem.
    pub fn is_transient(&self) -> bool {
        matches!(self, TokenError::Unavailable { .. })
    }
}

/// A bearer token for one request.
pub struct Bearer(SecretString);

impl Bearer {
    /// The token text (for the Authorization header only).
    pub fn as_str(&self) -> &str {
        self.0.expose_secret()
    }
}

struct Cached {
    token: SecretString,
    refresh_at: Instant,
    expires_at: Instant,
}

/// Service-principal client credentials and the cached access token.
pub struct M2m {
    http: reqwest::Client,
    host: String,
    client_id: String,
    client_secret: SecretString,
    token_endpoint: tokio::sync::OnceCell<String>,
    cache: parking_lot::Mutex<Option<Cached>>,
    /// Single flight: one token request at a time.
    fetching: tokio::sync::Mutex<()>,
}

/// How requests to the workspace are authenticated.
pub enum TokenSource {
    /// `Authorization: Bearer <PAT>`.
    Pat(SecretString),
    /// OAuth M2M.
    M2m(Box<M2m>),
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenSource::Pat(_) => f.write_str("TokenSource::Pat([REDACTED])"),
            TokenSource::M2m(m) => f
                .debug_struct("TokenSource::M2m")
                .field("client_id", &m.client_id)
                .finish_non_exhaustive(),
        }
    }
}

#[derive(Deserialize)]
struct Discovery {
    token_endpoint: String,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: Option<u64>,
}

#[derive(Deserialize, Default)]
struct OAuthError {
    error: Option<String>,
    error_description: Option<String>,
}

impl TokenSource {
    /// OAuth M2M for `client_id` against the workspace at `host`.
    pub fn m2m(
        http: reqwest::Client,
        host: String,
        client_id: String,
        client_secret: SecretString,
    ) -> Self {
        TokenSource::M2m(Box::new(M2m {
            http,
            host,
            client_id,
            client_secret,
            token_endpoint: tokio::sync::OnceCell::new(),
            cache: parking_lot::Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
        }))
    }

    /// Auth method name as the SDKs call it.
    pub fn kind(&self) -> &'static str {
        match self {
            TokenSource::Pat(_) => "pat",
            TokenSource::M2m(_) => "oauth-m2m",
        }
    }

    /// Whether a fresh token can be had by asking again (OAuth) — a PAT cannot.
    pub fn can_refresh(&self) -> bool {
        matches!(self, TokenSource::M2m(_))
    }

    /// Drops a cached access token the workspace rejected.
    pub fn invalidate(&self) {
        if let TokenSource::M2m(m) = self {
            *m.cache.lock() = None;
        }
    }

    /// A token for the next request. OAuth tokens are reused until their refresh point; past
    /// it one caller fetches a new one while a still-valid old one is served if fetching fails.
    pub async fn bearer(&self) -> Result<Bearer, TokenError> {
        let m = match self {
            TokenSource::Pat(t) => return Ok(Bearer(t.clone())),
            TokenSource::M2m(m) => m,
        };
        if let Some(t) = m.fresh(Instant::now()) {
            return Ok(t);
        }
        let _flight = m.fetching.lock().await;
        // Someone else may have fetched while we waited.
        if let Some(t) = m.fresh(Instant::now()) {
            return Ok(t);
        }
        match m.fetch().await {
            Ok(t) => Ok(t),
            Err(e) => {
                let now = Instant::now();
                let stale = m
                    .cache
                    .lock()
                    .as_ref()
                    .and_then(|c| (c.expires_at > now).then(|| Bearer(c.token.clone())));
                match stale {
                    Some(t) => {
                        tracing::warn!(error = %e, "workspace OAuth token refresh failed; using the current token until it expires");
                        Ok(t)
                    }
                    None => Err(e),
                }
            }
        }
    }
}

impl M2m {
    fn fresh(&self, now: Instant) -> Option<Bearer> {
        self.cache
            .lock()
            .as_ref()
            .filter(|c| c.refresh_at > now)
            .map(|c| Bearer(c.token.clone()))
    }

    async fn endpoint(&self) -> Result<&str, TokenError> {
        self.token_endpoint
            .get_or_try_init(|| async {
                let url = format!("{}/oidc/.well-known/oauth-authorization-server", self.host);
                let resp =
                    self.http
                        .get(&url)
                        .send()
                        .await
                        .map_err(|e| TokenError::Unavailable {
                            endpoint: url.clone(),
                            reason: transport_reason(&e),
                        })?;
                let status = resp.status();
                if status.is_server_error() || status.as_u16() == 429 {
                    return Err(TokenError::Unavailable {
                        endpoint: url,
                        reason: format!("HTTP {status}"),
                    });
                }
                if !status.is_success() {
                    return Err(TokenError::Discovery {
                        endpoint: url,
                        reason: format!("HTTP {status}: the workspace does not offer OAuth"),
                    });
                }
                let d: Discovery = resp.json().await.map_err(|e| TokenError::Discovery {
                    endpoint: url.clone(),
                    reason: e.to_string(),
                })?;
                Ok(d.token_endpoint)
            })
            .await
            .map(String::as_str)
    }

    async fn fetch(&self) -> Result<Bearer, TokenError> {
        let endpoint = self.endpoint().await?.to_owned();
        let started = Instant::now();
        let resp = self
            .http
            .post(&endpoint)
            .basic_auth(&self.client_id, Some(self.client_secret.expose_secret()))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("Accept", "application/json")
            .body("grant_type=client_credentials&scope=all-apis")
            .send()
            .await
            .map_err(|e| TokenError::Unavailable {
                endpoint: endpoint.clone(),
                reason: transport_reason(&e),
            })?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| TokenError::Unavailable {
            endpoint: endpoint.clone(),
            reason: transport_reason(&e),
        })?;
        if !status.is_success() {
            let err: OAuthError = serde_json::from_slice(&body).unwrap_or_default();
            let reason = [err.error, err.error_description]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(": ");
            let reason = if reason.is_empty() {
                "no details".to_owned()
            } else {
                reason
            };
            return Err(if status.is_server_error() || status.as_u16() == 429 {
                TokenError::Unavailable { endpoint, reason }
            } else {
                TokenError::Refused {
                    endpoint,
                    status: status.as_u16(),
                    reason,
                }
            });
        }
        let t: TokenResponse =
            serde_json::from_slice(&body).map_err(|e| TokenError::Discovery {
                endpoint: endpoint.clone(),
                reason: format!("bad token response: {e}"),
            })?;
        // Clamped: a nonsense expires_in must not overflow Instant arithmetic.
        let lifetime = Duration::from_secs(t.expires_in.unwrap_or(3600).clamp(1, 24 * 3600));
        let margin = (lifetime / 2).min(REFRESH_CAP);
        let token = SecretString::from(t.access_token);
        *self.cache.lock() = Some(Cached {
            token: token.clone(),
            refresh_at: started + lifetime - margin,
            expires_at: started + lifetime,
        });
        tracing::debug!(
            expires_in_s = lifetime.as_secs(),
            "workspace OAuth token obtained"
        );
        Ok(Bearer(token))
    }
}
