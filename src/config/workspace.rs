//! `[workspace]`: the Databricks workspace and its auth attributes, as the SDKs name them.

use std::path::Path;
use std::time::Duration;

use secrecy::ExposeSecret;

use super::WorkspaceConfig;
use super::raw::RawWorkspace;
use super::secret::secret;

use super::load::{ConfigError, invalid, positive_seconds, resolve_path};

/// The `[workspace]` auth attributes beyond PAT and OAuth M2M.
pub(super) fn sdk_auth(
    raw: &mut RawWorkspace,
    base: &Path,
) -> Result<super::SdkAuthConfig, ConfigError> {
    let azure_client_secret = secret(
        "workspace.azure_client_secret",
        raw.azure_client_secret.take(),
        raw.azure_client_secret_file.take(),
        raw.azure_client_secret_env.take(),
        base,
    )?;
    for (key, url) in [
        ("azure_login_endpoint", &raw.azure_login_endpoint),
        ("azure_msi_endpoint", &raw.azure_msi_endpoint),
        ("metadata_service_url", &raw.metadata_service_url),
    ] {
        if let Some(u) = url
            && !(u.starts_with("https://") || u.starts_with("http://"))
        {
            return Err(invalid(
                format!("workspace.{key}"),
                "must be an http:// or https:// URL",
            ));
        }
    }
    Ok(super::SdkAuthConfig {
        azure_client_id: raw.azure_client_id.take(),
        azure_client_secret,
        azure_tenant_id: raw.azure_tenant_id.take(),
        azure_use_msi: raw.azure_use_msi,
        azure_workspace_resource_id: raw.azure_workspace_resource_id.take(),
        azure_environment: raw.azure_environment.take(),
        azure_login_endpoint: raw.azure_login_endpoint.take(),
        azure_msi_endpoint: raw.azure_msi_endpoint.take(),
        databricks_cli_path: raw.databricks_cli_path.take(),
        metadata_service_url: raw.metadata_service_url.take(),
        oidc_token_env: raw.oidc_token_env.take(),
        oidc_token_filepath: raw
            .oidc_token_filepath
            .take()
            .map(|p| resolve_path(base, p)),
    })
}

pub(super) fn workspace(
    raw: Option<RawWorkspace>,
    base: &Path,
) -> Result<WorkspaceConfig, ConfigError> {
    let mut raw = raw.unwrap_or_default();
    let sdk = sdk_auth(&mut raw, base)?;
    let token = secret(
        "workspace.token",
        raw.token,
        raw.token_file,
        raw.token_env,
        base,
    )?;
    let client_secret = secret(
        "workspace.client_secret",
        raw.client_secret,
        raw.client_secret_file,
        raw.client_secret_env,
        base,
    )?;
    let client_id = secret(
        "workspace.client_id",
        raw.client_id,
        raw.client_id_file,
        raw.client_id_env,
        base,
    )?
    .map(|s| s.expose_secret().to_owned());
    if let Some(t) = raw.auth_type.as_deref()
        && !super::AUTH_TYPES.contains(&t)
    {
        return Err(invalid(
            "workspace.auth_type",
            format!(
                "{t:?} is not supported; lakepool supports {}",
                super::AUTH_TYPES.join(", ")
            ),
        ));
    }
    Ok(WorkspaceConfig {
        sdk,
        host: raw.host,
        profile: raw.profile,
        config_file: raw.config_file.map(|p| resolve_path(base, p)),
        auth_type: raw.auth_type,
        token,
        client_id,
        client_secret,
        http_timeout: positive_seconds(
            "workspace.http_timeout",
            raw.http_timeout,
            Duration::from_secs(10),
        )?,
        // Short on purpose: a failing refresh attempt should be reported (status, warning)
        // promptly; the refresher itself goes on retrying with backoff for as long as needed.
        retry_timeout: positive_seconds(
            "workspace.retry_timeout",
            raw.retry_timeout,
            Duration::from_secs(15),
        )?,
        passthrough_cache_ttl: positive_seconds(
            "workspace.passthrough_cache_ttl",
            raw.passthrough_cache_ttl,
            Duration::from_secs(60),
        )?,
        passthrough_cache_size: super::passthrough::cache_size(raw.passthrough_cache_size)?,
    })
}
