//! Azure Databricks with Microsoft Entra ID tokens.
//!
//! - `azure-client-secret` (go `config/auth_azure_client_secret.go`, py
//!   `credentials_provider.py` `azure_service_principal`): client credentials at
//!   `{login}{tenant}/oauth2/token` with `resource` set, client id and secret in the form (py
//!   `use_params=True`). Without a tenant id, it is read from where the workspace's
//!   `/aad/auth` redirects to (py `config.py` `load_azure_tenant_id`).
//! - `azure-msi` (go `config/auth_azure_msi.go`): the instance metadata service,
//!   `GET {imds}/identity/oauth2/token?api-version=2018-02-01&resource=…[&client_id=…]` with
//!   `Metadata: true`.
//!
//! Both send a token for the Azure Databricks application as the bearer and one for Azure
//! service management in `X-Databricks-Azure-SP-Management-Token`, plus
//! `X-Databricks-Azure-Workspace-Resource-Id` when the workspace's resource id is known (go
//! `config/oauth_visitors.go`). Tokens are treated as expiring 40 s early: Azure Databricks
//! rejects tokens with 30 s or less left (go `azureReuseTokenSource`).

use std::time::Duration;

use secrecy::SecretString;
use serde_json::Value;

use super::oauth::{error_reason, token_request};
use super::{Bearer, Fetched, TokenError, form, seconds, until_epoch};
use crate::workspace::methods::AzureCloud;
use crate::workspace::transport::transport_reason;

/// Azure rejects tokens with <= 30 s left; refresh with 10 s to spare.
const EARLY: Duration = Duration::from_secs(40);
/// Header with the service-management token.
const MANAGEMENT_HEADER: &str = "X-Databricks-Azure-SP-Management-Token";
/// Header with the workspace's Azure resource id.
const RESOURCE_ID_HEADER: &str = "X-Databricks-Azure-Workspace-Resource-Id";

/// The bearer with the management token and resource id headers.
fn bearer(cloud: &AzureCloud, inner: SecretString, management: SecretString) -> Bearer {
    let mut extra = vec![(MANAGEMENT_HEADER, management)];
    if let Some(id) = &cloud.workspace_resource_id {
        extra.push((RESOURCE_ID_HEADER, SecretString::from(id.clone())));
    }
    Bearer {
        token: inner,
        extra,
    }
}

/// A service principal with a client secret.
pub(super) struct ClientSecret {
    http: reqwest::Client,
    host: String,
    client_id: String,
    client_secret: SecretString,
    tenant: tokio::sync::OnceCell<String>,
    cloud: AzureCloud,
}

impl ClientSecret {
    pub(super) fn new(
        http: reqwest::Client,
        host: String,
        client_id: String,
        client_secret: SecretString,
        tenant_id: Option<String>,
        cloud: AzureCloud,
    ) -> Self {
        let tenant = tokio::sync::OnceCell::new_with(tenant_id);
        Self {
            http,
            host,
            client_id,
            client_secret,
            tenant,
            cloud,
        }
    }

    pub(super) async fn fetch(&self) -> Result<Fetched, TokenError> {
        let tenant = self
            .tenant
            .get_or_try_init(|| load_tenant_id(&self.host))
            .await?;
        let url = format!("{}{tenant}/oauth2/token", self.cloud.login_endpoint);
        let token = |resource: &'static str| {
            let pairs = [
                ("grant_type", "client_credentials"),
                ("client_id", self.client_id.as_str()),
                (
                    "client_secret",
                    secrecy::ExposeSecret::expose_secret(&self.client_secret),
                ),
                ("resource", resource),
            ];
            let url = url.clone();
            async move { token_request(&self.http, &url, &pairs, None).await }
        };
        let (inner, inner_life) = token(self.cloud.app_id).await?;
        let (management, management_life) = token(self.cloud.management_resource).await?;
        Ok(Fetched {
            bearer: bearer(&self.cloud, inner, management),
            lifetime: inner_life.min(management_life).saturating_sub(EARLY),
        })
    }
}

/// The tenant id from where `{host}/aad/auth` redirects:
/// `https://login.microsoftonline.com/<tenant>/oauth2/authorize?…`.
async fn load_tenant_id(host: &str) -> Result<String, TokenError> {
    let url = format!("{host}/aad/auth");
    let error = |reason: String| TokenError::Source {
        method: "azure-client-secret",
        reason: format!("load tenant id from {url}: {reason}; set azure_tenant_id (ARM_TENANT_ID)"),
    };
    let http = crate::workspace::transport::http_client_without_redirects(
        Duration::from_secs(10),
        host.starts_with("https://"),
    )
    .map_err(error)?;
    let resp = http
        .get(&url)
        .send()
        .await
        .map_err(|e| error(transport_reason(&e)))?;
    if !resp.status().is_redirection() {
        return Err(error(format!(
            "expected a redirect, got HTTP {}",
            resp.status()
        )));
    }
    let location = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| error("no Location in the redirect".to_owned()))?;
    let path = location
        .split_once("://")
        .map_or(location, |(_, rest)| rest)
        .split_once('/')
        .map_or("", |(_, path)| path);
    let tenant = path.split('/').next().unwrap_or_default();
    if tenant.is_empty() {
        return Err(error("no tenant in the redirect".to_owned()));
    }
    tracing::debug!(%tenant, "loaded the Azure tenant id from the workspace");
    Ok(tenant.to_owned())
}

/// A managed identity (the system-assigned one, or a user-assigned one by client id).
pub(super) struct Msi {
    http: reqwest::Client,
    client_id: Option<String>,
    cloud: AzureCloud,
    endpoint: String,
}

impl Msi {
    pub(super) fn new(
        http: reqwest::Client,
        client_id: Option<String>,
        cloud: AzureCloud,
        endpoint: String,
    ) -> Self {
        Self {
            http,
            client_id,
            cloud,
            endpoint: endpoint.trim_end_matches('/').to_owned(),
        }
    }

    pub(super) async fn fetch(&self) -> Result<Fetched, TokenError> {
        let (inner, inner_life) = self.token(self.cloud.app_id).await?;
        let (management, management_life) = self.token(self.cloud.management_resource).await?;
        Ok(Fetched {
            bearer: bearer(&self.cloud, inner, management),
            lifetime: inner_life.min(management_life).saturating_sub(EARLY),
        })
    }

    async fn token(&self, resource: &str) -> Result<(SecretString, Duration), TokenError> {
        let endpoint = format!("{}/identity/oauth2/token", self.endpoint);
        let mut query = vec![("api-version", "2018-02-01"), ("resource", resource)];
        if let Some(id) = &self.client_id {
            query.push(("client_id", id));
        }
        let url = format!("{endpoint}?{}", form(&query));
        let unavailable = |e: reqwest::Error| TokenError::Unavailable {
            endpoint: endpoint.clone(),
            reason: transport_reason(&e),
        };
        let resp = self
            .http
            .get(&url)
            .header("Metadata", "true")
            .send()
            .await
            .map_err(unavailable)?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(unavailable)?;
        if !status.is_success() {
            let reason = error_reason(&body);
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
        let bad = |what: &str| TokenError::Source {
            method: "azure-msi",
            reason: format!("token parse: {what}"),
        };
        let v: Value = serde_json::from_slice(&body).map_err(|_| bad("not JSON"))?;
        let token = v
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| bad("invalid token"))?;
        // expires_in is relative (no clock involved); expires_on is what go reads.
        let lifetime = match seconds(v.get("expires_in")) {
            Some(s) => Duration::from_secs(s),
            None => until_epoch(
                seconds(v.get("expires_on")).ok_or_else(|| bad("invalid token expiry"))?,
            ),
        };
        Ok((SecretString::from(token.to_owned()), lifetime))
    }
}
