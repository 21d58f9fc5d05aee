//! HTTP calls to the workspace with the retry rules of the Databricks SDKs: 429, 5xx and
//! connection errors are retried with exponential backoff and jitter (honouring `Retry-After`)
//! within a total time budget; other errors are final and name the host, the endpoint and the
//! workspace's `error_code`/`message`.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use reqwest::StatusCode;
use reqwest::header::{DATE, HeaderMap, RETRY_AFTER};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::auth::{TokenError, TokenSource};
use super::transport::{backoff, transport_reason};

/// A workspace API call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// The workspace answered with an error status.
    #[error("{method} {host}{path} returned HTTP {status}{}", describe(.error_code, .message))]
    Status {
        /// HTTP method.
        method: &'static str,
        /// Workspace URL.
        host: String,
        /// Endpoint path.
        path: String,
        /// HTTP status.
        status: u16,
        /// Workspace `error_code`, when the body had one.
        error_code: Option<String>,
        /// Workspace `message`, when the body had one.
        message: Option<String>,
        /// `Retry-After`, when the workspace sent one.
        retry_after: Option<Duration>,
    },
    /// The request did not get an answer (connection refused, reset, timeout…).
    #[error("{method} {host}{path} failed: {reason}")]
    Transport {
        /// HTTP method.
        method: &'static str,
        /// Workspace URL.
        host: String,
        /// Endpoint path.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The answer was not the JSON expected.
    #[error("{host}{path} returned an unexpected response: {reason}")]
    Decode {
        /// Workspace URL.
        host: String,
        /// Endpoint path.
        path: String,
        /// What was wrong.
        reason: String,
    },
    /// No workspace access token could be had.
    #[error(transparent)]
    Token(#[from] TokenError),
}

fn describe(code: &Option<String>, message: &Option<String>) -> String {
    match (code, message) {
        (Some(c), Some(m)) => format!(": {c}: {m}"),
        (Some(c), None) => format!(": {c}"),
        (None, Some(m)) => format!(": {m}"),
        (None, None) => String::new(),
    }
}

impl ApiError {
    /// The workspace's `Retry-After`, if this is an error answer that carried one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// A short class for metrics and status views: `http_4xx`, `http_5xx`, `transport`, …
    pub fn class(&self) -> &'static str {
        match self {
            ApiError::Status { status, .. } if *status == 429 => "rate_limited",
            ApiError::Status { status, .. } if *status >= 500 => "http_5xx",
            ApiError::Status { status, .. } if *status == 401 || *status == 403 => "auth",
            ApiError::Status { .. } => "http_4xx",
            ApiError::Transport { .. } => "transport",
            ApiError::Decode { .. } => "decode",
            ApiError::Token(_) => "workspace_auth",
        }
    }
}

/// The error body shape of the workspace API.
#[derive(Deserialize, Default)]
struct ErrorBody {
    error_code: Option<String>,
    message: Option<String>,
    // OAuth endpoints use these instead.
    error: Option<String>,
    error_description: Option<String>,
}

/// A workspace API client: base URL, authentication and retry budget.
#[derive(Debug)]
pub struct ApiClient {
    http: reqwest::Client,
    host: String,
    token: Arc<TokenSource>,
    retry_budget: Duration,
    /// The newest failed attempt, even one still being retried, so a status view can say why
    /// a call is taking long.
    last_failure: parking_lot::Mutex<Option<String>>,
}

/// Outcome of one attempt.
enum Attempt<T> {
    /// The answer and the server's `Date`.
    Done(T, Option<SystemTime>),
    Retry(ApiError, Option<Duration>),
    Fail(ApiError),
}

impl ApiClient {
    /// A client for the workspace at `host` (normalised URL, no trailing slash).
    pub fn new(
        http: reqwest::Client,
        host: String,
        token: Arc<TokenSource>,
        retry_budget: Duration,
    ) -> Self {
        Self {
            http,
            host,
            token,
            retry_budget,
            last_failure: parking_lot::Mutex::new(None),
        }
    }

    /// A client for the same workspace and identity with its own failure record (one per
    /// credential, so a status view shows each credential's own last error).
    pub fn sibling(&self) -> ApiClient {
        ApiClient::new(
            self.http.clone(),
            self.host.clone(),
            Arc::clone(&self.token),
            self.retry_budget,
        )
    }

    /// Why the newest attempt failed, if it did (cleared by a success).
    pub fn last_failure(&self) -> Option<String> {
        self.last_failure.lock().clone()
    }

    /// Workspace URL.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The token source (for status views).
    pub fn token_source(&self) -> &TokenSource {
        &self.token
    }

    /// `GET path`, JSON response.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiError> {
        Ok(self.call("GET", path, None).await?.0)
    }

    /// `POST path` with a JSON body, JSON response.
    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<T, ApiError> {
        Ok(self.call("POST", path, Some(body)).await?.0)
    }

    /// Like [`ApiClient::post`], with the workspace's clock at the time it answered (its
    /// `Date` header), so lifetimes given as absolute times can be measured without the
    /// local clock's skew.
    pub async fn post_dated<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<(T, Option<SystemTime>), ApiError> {
        self.call("POST", path, Some(body)).await
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: &'static str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(T, Option<SystemTime>), ApiError> {
        let deadline = Instant::now() + self.retry_budget;
        let mut attempt = 0u32;
        let mut reauthenticated = false;
        loop {
            attempt += 1;
            match self.attempt(method, path, body, &mut reauthenticated).await {
                Attempt::Done(v, date) => {
                    *self.last_failure.lock() = None;
                    return Ok((v, date));
                }
                Attempt::Fail(e) => {
                    *self.last_failure.lock() = Some(e.to_string());
                    return Err(e);
                }
                Attempt::Retry(e, retry_after) => {
                    *self.last_failure.lock() = Some(e.to_string());
                    let delay = backoff(attempt).max(retry_after.unwrap_or_default());
                    if Instant::now() + delay > deadline {
                        return Err(e);
                    }
                    tracing::debug!(error = %e, delay_ms = delay.as_millis() as u64, "retrying workspace API call");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    async fn attempt<T: DeserializeOwned>(
        &self,
        method: &'static str,
        path: &str,
        body: Option<&serde_json::Value>,
        reauthenticated: &mut bool,
    ) -> Attempt<T> {
        let url = format!("{}{}", self.host, path);
        let bearer = match self.token.bearer().await {
            Ok(t) => t,
            Err(e) if e.is_transient() => return Attempt::Retry(e.into(), None),
            Err(e) => return Attempt::Fail(e.into()),
        };
        let mut req = match method {
            "POST" => self.http.post(&url),
            _ => self.http.get(&url),
        }
        .header("Accept", "application/json");
        req = bearer.apply(req);
        if let Some(b) = body {
            req = req.json(b);
        }
        let transport = |e: reqwest::Error| {
            Attempt::Retry(
                ApiError::Transport {
                    method,
                    host: self.host.clone(),
                    path: path.to_owned(),
                    reason: transport_reason(&e),
                },
                None,
            )
        };
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => return transport(e),
        };
        let status = resp.status();
        let date = server_date(resp.headers());
        let retry_after = retry_after(resp.headers(), date);
        let bytes = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => return transport(e),
        };
        if status.is_success() {
            return match serde_json::from_slice(&bytes) {
                Ok(v) => Attempt::Done(v, date),
                Err(e) => Attempt::Fail(ApiError::Decode {
                    host: self.host.clone(),
                    path: path.to_owned(),
                    reason: e.to_string(),
                }),
            };
        }
        let parsed: ErrorBody = serde_json::from_slice(&bytes).unwrap_or_default();
        let err = ApiError::Status {
            method,
            host: self.host.clone(),
            path: path.to_owned(),
            status: status.as_u16(),
            error_code: parsed.error_code.or(parsed.error),
            message: parsed.message.or(parsed.error_description),
            retry_after,
        };
        if status == StatusCode::UNAUTHORIZED && !*reauthenticated && self.token.can_refresh() {
            // An OAuth access token can be revoked or expire early: get a new one, once.
            *reauthenticated = true;
            self.token.invalidate();
            return Attempt::Retry(err, Some(Duration::ZERO));
        }
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            Attempt::Retry(err, retry_after)
        } else {
            Attempt::Fail(err)
        }
    }
}

/// The server's clock when it answered: its `Date` header.
pub fn server_date(headers: &HeaderMap) -> Option<SystemTime> {
    httpdate::parse_http_date(headers.get(DATE)?.to_str().ok()?.trim()).ok()
}

/// `Retry-After` as seconds or an HTTP date; a date counts from the server's own `Date` when
/// it sent one (so a skewed local clock does not stretch or skip the wait).
fn retry_after(headers: &HeaderMap, server_now: Option<SystemTime>) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs.min(3600)));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    let now = server_now.unwrap_or_else(SystemTime::now);
    Some(
        when.duration_since(now)
            .unwrap_or_default()
            .min(Duration::from_secs(3600)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_parses_seconds_and_dates() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&h, None), Some(Duration::from_secs(7)));
        let future = std::time::SystemTime::now() + Duration::from_secs(120);
        h.insert(
            RETRY_AFTER,
            httpdate::fmt_http_date(future).parse().unwrap(),
        );
        let d = retry_after(&h, None).unwrap();
        assert!(
            d > Duration::from_secs(100) && d <= Duration::from_secs(120),
            "{d:?}"
        );
        h.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h, None), None);
        // A date counts from the server's clock, not the local one.
        let server_now = future - Duration::from_secs(30);
        h.insert(
            RETRY_AFTER,
            httpdate::fmt_http_date(future).parse().unwrap(),
        );
        let d = retry_after(&h, Some(server_now)).unwrap();
        assert!(
            d <= Duration::from_secs(30) && d >= Duration::from_secs(29),
            "{d:?}"
        );
    }

    #[test]
    fn status_error_names_host_endpoint_and_code() {
        let e = ApiError::Status {
            method: "POST",
            host: "https://ws.example".into(),
            path: "/api/2.0/database/credentials".into(),
            status: 403,
            error_code: Some("PERMISSION_DENIED".into()),
            message: Some("no access".into()),
            retry_after: None,
        };
        let s = e.to_string();
        assert!(
            s.contains("https://ws.example/api/2.0/database/credentials"),
            "{s}"
        );
        assert!(
            s.contains("403") && s.contains("PERMISSION_DENIED") && s.contains("no access"),
            "{s}"
        );
        assert_eq!(e.class(), "auth");
    }
}
