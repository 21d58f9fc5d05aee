//! What each workspace auth method needs, as resolution found it: the link between
//! `resolve` (which picks a method) and `auth` (which gets its tokens), a leaf so neither
//! imports the other.

use std::path::PathBuf;

use secrecy::SecretString;

/// The instance metadata service (go `config/auth_azure_msi.go` `instanceMetadataPrefix`).
pub const IMDS_ENDPOINT: &str = "http://169.254.169.254/metadata";
/// Azure Databricks' application id (go `common/environment/environments.go`).
const DATABRICKS_APP_ID: &str = "2ff814a6-3304-4ab8-85cb-cd0e6f879c1d";

/// Where an OIDC token for workload identity federation is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdTokenSource {
    /// An environment variable (`env-oidc`).
    Env(String),
    /// A file, e.g. a Kubernetes projected service-account token (`file-oidc`).
    File(PathBuf),
}

/// How lakepool authenticates to the workspace API.
#[derive(Debug)] // Debug must print secrets as [REDACTED] (SecretString does)
pub enum WorkspaceAuth {
    /// Personal access token, sent as `Authorization: Bearer`.
    Pat(SecretString),
    /// Service principal OAuth M2M (client credentials).
    OAuthM2m {
        /// Service principal application id.
        client_id: String,
        /// Service principal OAuth secret.
        client_secret: SecretString,
    },
    /// The token `databricks auth login` stored, from `databricks auth token`.
    DatabricksCli {
        /// The CLI binary.
        cli: PathBuf,
        /// The profile asked for (`--profile`), else the host is passed (`--host`).
        profile: Option<String>,
    },
    /// A token from a local metadata service.
    MetadataService {
        /// Its URL (may hold a session secret).
        url: SecretString,
    },
    /// Workload identity federation: an OIDC token exchanged for a workspace token.
    Oidc {
        /// Where the OIDC token is read.
        source: IdTokenSource,
        /// The service principal's application id (none: account-wide federation).
        client_id: Option<String>,
    },
    /// Microsoft Entra ID service principal with a client secret.
    AzureClientSecret {
        /// Application (client) id.
        client_id: String,
        /// Client secret.
        client_secret: SecretString,
        /// Tenant id (looked up from the workspace when None).
        tenant_id: Option<String>,
        /// Azure cloud endpoints.
        cloud: AzureCloud,
    },
    /// Azure managed identity through the instance metadata service.
    AzureMsi {
        /// User-assigned identity's client id (none: the system-assigned identity).
        client_id: Option<String>,
        /// Azure cloud endpoints.
        cloud: AzureCloud,
        /// Instance metadata service base URL.
        endpoint: String,
    },
}

impl WorkspaceAuth {
    /// The SDK name of the method.
    pub fn kind(&self) -> &'static str {
        match self {
            WorkspaceAuth::Pat(_) => "pat",
            WorkspaceAuth::OAuthM2m { .. } => "oauth-m2m",
            WorkspaceAuth::DatabricksCli { .. } => "databricks-cli",
            WorkspaceAuth::MetadataService { .. } => "metadata-service",
            WorkspaceAuth::Oidc {
                source: IdTokenSource::Env(_),
                ..
            } => "env-oidc",
            WorkspaceAuth::Oidc { .. } => "file-oidc",
            WorkspaceAuth::AzureClientSecret { .. } => "azure-client-secret",
            WorkspaceAuth::AzureMsi { .. } => "azure-msi",
        }
    }
}

/// The endpoints of one Azure cloud.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureCloud {
    /// Entra ID login endpoint, ending in `/`.
    pub login_endpoint: String,
    /// Resource id of Azure Databricks in this cloud.
    pub app_id: &'static str,
    /// Service management resource.
    pub management_resource: &'static str,
    /// The workspace's Azure resource id, when configured.
    pub workspace_resource_id: Option<String>,
}

/// (name, login endpoint, service management endpoint), from py `environments.py`.
const CLOUDS: &[(&str, &str, &str)] = &[
    (
        "PUBLIC",
        "https://login.microsoftonline.com/",
        "https://management.core.windows.net/",
    ),
    (
        "USGOVERNMENT",
        "https://login.microsoftonline.us/",
        "https://management.core.usgovcloudapi.net/",
    ),
    (
        "CHINA",
        "https://login.chinacloudapi.cn/",
        "https://management.core.chinacloudapi.cn/",
    ),
];

impl AzureCloud {
    /// The cloud named by `environment` (`ARM_ENVIRONMENT`: `PUBLIC`, `USGOVERNMENT`, `CHINA`,
    /// or `AzureUSGovernmentCloud`-style names), else the one the workspace host's DNS zone
    /// belongs to, else the public cloud.
    pub fn for_workspace(host_name: &str, environment: Option<&str>) -> Self {
        let by_zone = if host_name.ends_with(".databricks.azure.us") {
            "USGOVERNMENT"
        } else if host_name.ends_with(".databricks.azure.cn") {
            "CHINA"
        } else {
            "PUBLIC"
        };
        let name = environment.map_or(by_zone.to_owned(), |e| {
            // py `config.py` `_get_azure_environment_name`.
            let e = e.trim().to_ascii_uppercase();
            let e = e.strip_prefix("AZURE").unwrap_or(&e);
            e.strip_suffix("CLOUD").unwrap_or(e).to_owned()
        });
        let (_, login, management) = CLOUDS
            .iter()
            .find(|(n, _, _)| *n == name)
            .copied()
            .unwrap_or_else(|| {
                tracing::warn!(environment = %name, "unknown Azure environment; using the public cloud");
                CLOUDS[0]
            });
        // Dev and staging workspaces use other application ids.
        let app_id = if host_name.ends_with(".dev.azuredatabricks.net") {
            "62a912ac-b58e-4c1d-89ea-b2dbfc7358fc"
        } else if host_name.ends_with(".staging.azuredatabricks.net") {
            "4a67d088-db5c-48f1-9ff2-0aace800ae68"
        } else {
            DATABRICKS_APP_ID
        };
        Self {
            login_endpoint: login.to_owned(),
            app_id,
            management_resource: management,
            workspace_resource_id: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clouds_by_environment_and_zone() {
        let c = AzureCloud::for_workspace("adb-1.2.azuredatabricks.net", None);
        assert_eq!(c.login_endpoint, "https://login.microsoftonline.com/");
        assert_eq!(c.app_id, DATABRICKS_APP_ID);
        let c = AzureCloud::for_workspace("adb-1.2.databricks.azure.us", None);
        assert_eq!(c.login_endpoint, "https://login.microsoftonline.us/");
        let c = AzureCloud::for_workspace("127.0.0.1", Some("AzureChinaCloud"));
        assert_eq!(c.login_endpoint, "https://login.chinacloudapi.cn/");
        assert_eq!(
            c.management_resource,
            "https://management.core.chinacloudapi.cn/"
        );
        let c = AzureCloud::for_workspace("adb-1.dev.azuredatabricks.net", Some("PUBLIC"));
        assert_eq!(c.app_id, "62a912ac-b58e-4c1d-89ea-b2dbfc7358fc");
    }
}
