//! The configuration file as written: serde types, unknown keys rejected.

use std::path::PathBuf;

use serde::Deserialize;

/// Top level of the TOML file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub(crate) server: RawServer,
    #[serde(default)]
    pub(crate) pool: RawPool,
    pub(crate) workspace: Option<RawWorkspace>,
    // `[[users]]` and `[[databases]]` are taken out of the document first and read table by
    // table (their keys split into own and pool keys).
}

/// `listen` as one address or several.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Listen {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    pub(crate) listen: Listen,
    pub(crate) tls_cert_file: Option<PathBuf>,
    pub(crate) tls_key_file: Option<PathBuf>,
    pub(crate) client_tls: Option<ClientTls>,
    pub(crate) admin_listen: Option<String>,
    pub(crate) unix_socket_dir: Option<PathBuf>,
    pub(crate) unix_socket_mode: Option<u32>,
    pub(crate) admin_token: Option<String>,
    pub(crate) admin_token_file: Option<PathBuf>,
    pub(crate) admin_token_env: Option<String>,
    pub(crate) workers: Option<usize>,
    pub(crate) max_client_conn: Option<usize>,
    pub(crate) handshake_timeout: Option<f64>,
    pub(crate) tcp_defer_accept: Option<f64>,
    pub(crate) allow_cleartext_without_tls: Option<bool>,
    pub(crate) auth: Option<AuthMethod>,
    pub(crate) max_message_size: Option<u64>,
    pub(crate) max_held_message_size: Option<u64>,
    pub(crate) shutdown_timeout: Option<f64>,
    pub(crate) log_format: Option<LogFormat>,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Pool settings: `[pool]`, and the pool keys of a `[[databases]]` or `[[users]]` entry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPool {
    pub(crate) pool_mode: Option<PoolMode>,
    pub(crate) pool_size: Option<usize>,
    pub(crate) server_lifetime: Option<f64>,
    pub(crate) server_idle_timeout: Option<f64>,
    pub(crate) query_wait_timeout: Option<f64>,
    pub(crate) server_connect_timeout: Option<f64>,
    pub(crate) server_reset_query: Option<String>,
    pub(crate) max_prepared_statements: Option<usize>,
    pub(crate) max_client_prepared_statements: Option<usize>,
    pub(crate) max_client_prepared_bytes: Option<u64>,
    pub(crate) track_extra_parameters: Option<Vec<String>>,
    pub(crate) max_db_connections: Option<usize>,
    pub(crate) max_user_connections: Option<usize>,
    pub(crate) max_db_client_connections: Option<usize>,
    pub(crate) max_user_client_connections: Option<usize>,
    pub(crate) min_pool_size: Option<usize>,
    pub(crate) reserve_pool_size: Option<usize>,
    pub(crate) reserve_pool_timeout: Option<f64>,
    pub(crate) server_login_retry: Option<f64>,
    pub(crate) client_idle_timeout: Option<f64>,
    pub(crate) idle_transaction_timeout: Option<f64>,
    pub(crate) server_check_delay: Option<f64>,
    pub(crate) server_check_query: Option<String>,
}

/// `[workspace]`: the Databricks workspace whose API mints Lakebase credentials.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWorkspace {
    pub(crate) host: Option<String>,
    pub(crate) profile: Option<String>,
    pub(crate) config_file: Option<PathBuf>,
    pub(crate) auth_type: Option<String>,
    pub(crate) token: Option<String>,
    pub(crate) token_file: Option<PathBuf>,
    pub(crate) token_env: Option<String>,
    pub(crate) client_id: Option<String>,
    pub(crate) client_id_file: Option<PathBuf>,
    pub(crate) client_id_env: Option<String>,
    pub(crate) client_secret: Option<String>,
    pub(crate) client_secret_file: Option<PathBuf>,
    pub(crate) client_secret_env: Option<String>,
    pub(crate) http_timeout: Option<f64>,
    pub(crate) retry_timeout: Option<f64>,
    // The Databricks SDKs' other auth attributes, under their SDK names.
    pub(crate) azure_client_id: Option<String>,
    pub(crate) azure_client_secret: Option<String>,
    pub(crate) azure_client_secret_file: Option<PathBuf>,
    pub(crate) azure_client_secret_env: Option<String>,
    pub(crate) azure_tenant_id: Option<String>,
    pub(crate) azure_use_msi: Option<bool>,
    pub(crate) azure_workspace_resource_id: Option<String>,
    pub(crate) azure_environment: Option<String>,
    pub(crate) azure_login_endpoint: Option<String>,
    pub(crate) azure_msi_endpoint: Option<String>,
    pub(crate) databricks_cli_path: Option<String>,
    pub(crate) metadata_service_url: Option<String>,
    pub(crate) oidc_token_env: Option<String>,
    pub(crate) oidc_token_filepath: Option<PathBuf>,
    // Per-identity pass-through: how long a checked client token is trusted, and how many.
    pub(crate) passthrough_cache_ttl: Option<f64>,
    pub(crate) passthrough_cache_size: Option<usize>,
}

/// The non-pool keys of a `[[users]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUser {
    pub(crate) name: String,
    pub(crate) password: Option<String>,
    pub(crate) password_file: Option<PathBuf>,
    pub(crate) password_env: Option<String>,
    /// Refused with an explanation: the method is set per database.
    pub(crate) auth: Option<AuthMethod>,
    pub(crate) admin: Option<bool>,
}

/// The non-pool keys of a `[[databases]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDatabase {
    pub(crate) name: String,
    pub(crate) host: Option<String>,
    /// Wider than a port so a wrong value gets lakepool's own message, not serde's.
    pub(crate) port: Option<i64>,
    pub(crate) dbname: Option<String>,
    pub(crate) user: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) password_file: Option<PathBuf>,
    pub(crate) password_env: Option<String>,
    pub(crate) tls: Option<UpstreamTls>,
    pub(crate) ca_file: Option<PathBuf>,
    pub(crate) instance: Option<String>,
    pub(crate) endpoint: Option<String>,
    pub(crate) ttl: Option<f64>,
    pub(crate) credential_refresh_margin: Option<f64>,
    pub(crate) auth: Option<AuthMethod>,
    pub(crate) send_cleartext_password_without_tls: Option<bool>,
    pub(crate) passthrough: Option<bool>,
}

/// Names of `RawDatabase` fields, to split a database table into its own and pool keys.
pub(crate) const DATABASE_KEYS: &[&str] = &[
    "name",
    "host",
    "port",
    "dbname",
    "user",
    "password",
    "password_file",
    "password_env",
    "tls",
    "ca_file",
    "instance",
    "endpoint",
    "ttl",
    "credential_refresh_margin",
    "auth",
    "send_cleartext_password_without_tls",
    "passthrough",
];

/// Names of `RawUser` fields, to split a user table into its own and pool keys.
pub(crate) const USER_KEYS: &[&str] = &[
    "name",
    "password",
    "password_file",
    "password_env",
    "auth",
    "admin",
];

/// Client-facing TLS policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ClientTls {
    /// Answer `N` to SSLRequest.
    Disable,
    /// Offer TLS, accept plain connections too.
    Prefer,
    /// Refuse clients that do not use TLS.
    Require,
}

/// Upstream TLS mode, as libpq's sslmode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpstreamTls {
    /// Plain TCP.
    Disable,
    /// TLS without certificate verification.
    Require,
    /// TLS, certificate chain verified, host name not checked.
    VerifyCa,
    /// TLS, chain and host name verified.
    VerifyFull,
}

/// How clients authenticate to lakepool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum AuthMethod {
    /// SCRAM-SHA-256 (with channel binding when the client uses TLS). Spelled as PostgreSQL
    /// spells it; kebab-case alone would make it `scram-sha256`.
    #[serde(rename = "scram-sha-256")]
    ScramSha256,
    /// md5 challenge-response.
    Md5,
    /// Cleartext password (TLS only unless `allow_cleartext_without_tls`).
    Cleartext,
}

/// Pooling mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum PoolMode {
    /// A client keeps its server connection until it disconnects.
    Session,
    /// A client holds a server connection only for the length of a transaction.
    Transaction,
}
