//! OAuth token requests (form-encoded `POST`, JSON answer), and OAuth M2M: a service
//! principal's client credentials at the workspace's token endpoint (go
//! `config/auth_m2m.go`: HTTP Basic client authentication, `scope=all-apis`).

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::discovery::Discovery;
use super::{Bearer, Fetched, TokenError, form, seconds};
use crate::workspace::transport::transport_reason;

/// Lifetime assumed when a token answer has no `expires_in`.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

/// One token request: `form` posted to `endpoint`, with client id and secret as HTTP Basic
/// auth when `basic` is given. Answers 429/5xx are [`TokenError::Unavailable`], other errors
/// [`TokenError::Refused`] with the endpoint's `error`/`error_description`.
pub(super) async fn token_request(
    http: &reqwest::Client,
    endpoint: &str,
    form_pairs: &[(&str, &str)],
    basic: Option<(&str, &SecretString)>,
) -> Result<(SecretString, Duration), TokenError> {
    let mut req = http
        .post(endpoint)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("Accept", "application/json")
        .body(form(form_pairs));
    if let Some((id, secret)) = basic {
        req = req.basic_auth(id, Some(secret.expose_secret()));
    }
    let unavailable = |e: reqwest::Error| TokenError::Unavailable {
        endpoint: endpoint.to_owned(),
        reason: transport_reason(&e),
    };
    let resp = req.send().await.map_err(unavailable)?;
    let status = resp.status();
    let body = resp.bytes().await.map_err(unavailable)?;
    if !status.is_success() {
        let reason = error_reason(&body);
        return Err(if status.is_server_error() || status.as_u16() == 429 {
            TokenError::Unavailable {
                endpoint: endpoint.to_owned(),
                reason,
            }
        } else {
            TokenError::Refused {
                endpoint: endpoint.to_owned(),
                status: status.as_u16(),
                reason,
            }
        });
    }
    let v: Value = serde_json::from_slice(&body).map_err(|e| TokenError::Discovery {
        endpoint: endpoint.to_owned(),
        reason: format!("bad token response: {e}"),
    })?;
    let token = v
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| TokenError::Discovery {
            endpoint: endpoint.to_owned(),
            reason: "bad token response: no access_token".to_owned(),
        })?;
    let lifetime = seconds(v.get("expires_in")).map_or(DEFAULT_LIFETIME, Duration::from_secs);
    Ok((SecretString::from(token.to_owned()), lifetime))
}

/// The reason in an OAuth error answer: `error: error_description` (RFC 6749), Entra ID's
/// description up to its trace ids plus its `error_uri` (go `config/azure.go`
/// `mapAzureActiveDirectoryError`), or Okta-style `errorCode: errorSummary`.
pub(super) fn error_reason(body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let text = |k: &str| v.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
    let description = text("error_description")
        .map(|d| {
            d.split(". Trace ID")
                .next()
                .unwrap_or(d)
                .trim_end_matches('.')
        })
        .or_else(|| text("errorSummary"));
    let mut reason = [text("error").or_else(|| text("errorCode")), description]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(": ");
    if let Some(uri) = text("error_uri") {
        reason.push_str(&format!(". See {uri}"));
    }
    if reason.is_empty() {
        "no details".to_owned()
    } else {
        reason
    }
}

/// Service-principal client credentials.
pub(super) struct M2m {
    http: reqwest::Client,
    discovery: Discovery,
    client_id: String,
    client_secret: SecretString,
}

impl M2m {
    pub(super) fn new(
        http: reqwest::Client,
        discovery: Discovery,
        client_id: String,
        client_secret: SecretString,
    ) -> Self {
        Self {
            http,
            discovery,
            client_id,
            client_secret,
        }
    }

    pub(super) async fn fetch(&self) -> Result<Fetched, TokenError> {
        let endpoint = self.discovery.token_endpoint().await?;
        let (token, lifetime) = token_request(
            &self.http,
            endpoint,
            &[("grant_type", "client_credentials"), ("scope", "all-apis")],
            Some((&self.client_id, &self.client_secret)),
        )
        .await?;
        Ok(Fetched {
            bearer: Bearer::plain(token),
            lifetime,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_reasons() {
        assert_eq!(
            error_reason(
                br#"{"error":"invalid_client","error_description":"Client authentication failed"}"#
            ),
            "invalid_client: Client authentication failed"
        );
        let aad = br#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided. Trace ID: 1 Correlation ID: 2","error_codes":[7000215],"error_uri":"https://login.microsoftonline.com/error?code=7000215"}"#;
        assert_eq!(
            error_reason(aad),
            "invalid_client: AADSTS7000215: Invalid client secret provided. See \
             https://login.microsoftonline.com/error?code=7000215"
        );
        assert_eq!(error_reason(b"not json"), "no details");
    }
}
