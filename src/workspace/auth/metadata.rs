//! `metadata-service`: a token from a server on this machine (go
//! `config/auth_metadata_service.go`, py `credentials_provider.py`
//! `MetadataServiceTokenSource`): `GET <metadata_service_url>` with
//! `X-Databricks-Metadata-Version: 1` and `X-Databricks-Host: <workspace>`, answered with
//! `{"access_token", "token_type", "expires_on": <Unix time>}`.

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::oauth::error_reason;
use super::{Bearer, Fetched, TokenError, seconds, until_epoch};
use crate::workspace::transport::transport_reason;

const VERSION_HEADER: &str = "X-Databricks-Metadata-Version";
const HOST_HEADER: &str = "X-Databricks-Host";

/// The metadata service for one workspace.
pub(super) struct Metadata {
    http: reqwest::Client,
    url: SecretString,
    host: String,
}

impl Metadata {
    pub(super) fn new(http: reqwest::Client, url: SecretString, host: String) -> Self {
        Self { http, url, host }
    }

    fn error(reason: String) -> TokenError {
        TokenError::Source {
            method: "metadata-service",
            reason,
        }
    }

    pub(super) async fn fetch(&self) -> Result<Fetched, TokenError> {
        // The URL may carry a session secret in its path: errors do not quote it.
        let resp = self
            .http
            .get(self.url.expose_secret())
            .header(VERSION_HEADER, "1")
            .header(HOST_HEADER, &self.host)
            .send()
            .await
            .map_err(|e| Self::error(format!("token request: {}", transport_reason(&e))))?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| Self::error(format!("token request: {}", transport_reason(&e))))?;
        if !status.is_success() {
            return Err(Self::error(format!(
                "token request: HTTP {status}: {}",
                error_reason(&body)
            )));
        }
        let v: Value =
            serde_json::from_slice(&body).map_err(|e| Self::error(format!("token parse: {e}")))?;
        let token = v
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Self::error("Metadata Service returned empty token".to_owned()))?;
        let expires_on = seconds(v.get("expires_on"))
            .ok_or_else(|| Self::error("Metadata Service returned invalid expiry".to_owned()))?;
        Ok(Fetched {
            bearer: Bearer::plain(SecretString::from(token.to_owned())),
            lifetime: until_epoch(expires_on),
        })
    }
}
