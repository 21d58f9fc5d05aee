//! The workspace's OAuth token endpoint, from OIDC discovery (go
//! `credentials/u2m/endpoint_supplier.go`: `GET {host}/oidc/.well-known/oauth-authorization-server`,
//! `token_endpoint`).
//!
//! The endpoint discovery names receives client secrets and OIDC tokens, so it must be
//! `https://` on the workspace's own host and port (plain `http://` only on a loopback host,
//! for tests); anything else is refused before a secret is sent.

use serde::Deserialize;
use tokio::sync::OnceCell;

use super::TokenError;
use crate::workspace::host::is_loopback;
use crate::workspace::transport::transport_reason;

/// The discovery document's field lakepool needs.
#[derive(Deserialize)]
struct Document {
    token_endpoint: String,
}

/// The token endpoint of one workspace, discovered once.
pub(super) struct Discovery {
    http: reqwest::Client,
    host: String,
    endpoint: OnceCell<String>,
}

impl Discovery {
    pub(super) fn new(http: reqwest::Client, host: String) -> Self {
        Self {
            http,
            host,
            endpoint: OnceCell::new(),
        }
    }

    /// The token endpoint, checked to be on the workspace host.
    pub(super) async fn token_endpoint(&self) -> Result<&str, TokenError> {
        self.endpoint
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
                let d: Document = resp.json().await.map_err(|e| TokenError::Discovery {
                    endpoint: url.clone(),
                    reason: e.to_string(),
                })?;
                check_endpoint(&self.host, &d.token_endpoint).map_err(|reason| {
                    TokenError::Discovery {
                        endpoint: url,
                        reason,
                    }
                })?;
                Ok(d.token_endpoint)
            })
            .await
            .map(String::as_str)
    }
}

/// Splits `scheme://authority/…` into the lowercase scheme and authority with an explicit port.
fn origin(url: &str) -> Option<(String, String, String)> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let authority = rest.split(['/', '?', '#']).next()?.to_ascii_lowercase();
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (addr, after) = v6.split_once(']')?;
            (format!("[{addr}]"), after.strip_prefix(':'))
        }
        None => match authority.split_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (authority.clone(), None),
        },
    };
    let port = match port {
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => p.to_owned(),
        Some(_) => return None,
        None => default_port(&scheme).to_owned(),
    };
    Some((scheme, host, port))
}

fn default_port(scheme: &str) -> &'static str {
    if scheme == "http" { "80" } else { "443" }
}

/// Refuses a token endpoint that is not `https://` on the workspace's host and port (or
/// `http://` there when the host is loopback).
pub(super) fn check_endpoint(workspace: &str, endpoint: &str) -> Result<(), String> {
    let refuse = || {
        format!(
            "refusing to send credentials to the token endpoint {endpoint:?} it names: the \
             token endpoint must be https:// on the workspace host {workspace}"
        )
    };
    let (ws_scheme, ws_host, ws_port) = origin(workspace).ok_or_else(refuse)?;
    let (scheme, host, port) = origin(endpoint).ok_or_else(refuse)?;
    let scheme_ok = scheme == "https" || (scheme == "http" && is_loopback(&host));
    if !scheme_ok || host != ws_host || port != ws_port || (scheme == "http" && ws_scheme != "http")
    {
        return Err(refuse());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_endpoint_must_be_https_on_the_workspace_host() {
        let ws = "https://dbc-1.cloud.databricks.com";
        assert!(check_endpoint(ws, "https://dbc-1.cloud.databricks.com/oidc/v1/token").is_ok());
        assert!(check_endpoint(ws, "https://DBC-1.cloud.databricks.com:443/oidc/v1/token").is_ok());
        for bad in [
            "http://dbc-1.cloud.databricks.com/oidc/v1/token",
            "https://evil.example/oidc/v1/token",
            "https://dbc-1.cloud.databricks.com.evil.example/oidc/v1/token",
            "https://dbc-1.cloud.databricks.com:8443/oidc/v1/token",
            "https://user@dbc-1.cloud.databricks.com/oidc/v1/token",
            "/oidc/v1/token",
            "",
        ] {
            let e = check_endpoint(ws, bad).unwrap_err();
            assert!(e.contains("refusing to send credentials"), "{bad}: {e}");
        }
        // Tests: plain http on loopback, same port only.
        let local = "http://127.0.0.1:4000";
        assert!(check_endpoint(local, "http://127.0.0.1:4000/oidc/v1/token").is_ok());
        assert!(check_endpoint(local, "http://127.0.0.1:4001/oidc/v1/token").is_err());
        assert!(check_endpoint(local, "http://localhost:4000/oidc/v1/token").is_err());
    }
}
