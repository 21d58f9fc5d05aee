//! The configuration file as written: serde types, unknown keys rejected.

use std::path::PathBuf;

use serde::Deserialize;

/// Top level of the TOML file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub server: RawServer,
    #[serde(default)]
    pub pool: RawPool,
    pub workspace: Option<RawWorkspace>,
    // `[[users]]` and `[[databases]]` are taken out of the document first and read table by
    // table (their keys split into own and pool keys).
}

/// `listen` as one address or several.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Listen {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Listen,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    pub client_tls: Option<ClientTls>,
    pub admin_listen: Option<String>,
    pub admin_token: Option<String>,
    pub admin_token_file: Option<PathBuf>,
    pub admin_token_env: Option<String>,
    pub workers: Option<usize>,
    pub max_client_conn: Option<usize>,
    pub handshake_timeout: Option<f64>,
    pub allow_cleartext_without_tls: Option<bool>,
    pub auth: Option<AuthMethod>,
    pub max_message_size: Option<u64>,
    pub max_held_message_size: Option<u64>,
    pub shutdown_timeout: Option<f64>,
    pub log_format: Option<LogFormat>,
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
pub struct RawPool {
    pub pool_mode: Option<PoolMode>,
    pub pool_size: Option<usize>,
    pub server_lifetime: Option<f64>,
    pub server_idle_timeout: Option<f64>,
    pub query_wait_timeout: Option<f64>,
    pub server_connect_timeout: Option<f64>,
    pub server_reset_query: Option<String>,
    pub max_prepared_statements: Option<usize>,
    pub max_client_prepared_statements: Option<usize>,
    pub max_client_prepared_bytes: Option<u64>,
    pub track_extra_parameters: Option<Vec<String>>,
    pub max_db_connections: Option<usize>,
    pub max_user_connections: Option<usize>,
    pub max_db_client_connections: Option<usize>,
    pub max_user_client_connections: Option<usize>,
    pub min_pool_size: Option<usize>,
    pub reserve_pool_size: Option<usize>,
    pub reserve_pool_timeout: Option<f64>,
    pub server_login_retry: Option<f64>,
    pub client_idle_timeout: Option<f64>,
    pub idle_transaction_timeout: Option<f64>,
    pub server_check_delay: Option<f64>,
    pub server_check_query: Option<String>,
}

/// `[workspace]`: the Databricks workspace whose API mints Lakebase credentials.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWorkspace {
    pub host: Option<String>,
    pub profile: Option<String>,
    pub config_file: Option<PathBuf>,
    pub auth_type: Option<String>,
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
    pub token_env: Option<String>,
    pub client_id: Option<String>,
    pub client_id_file: Option<PathBuf>,
    pub client_id_env: Option<String>,
    pub client_secret: Option<String>,
    pub client_secret_file: Option<PathBuf>,
    pub client_secret_env: Option<String>,
    pub http_timeout: Option<f64>,
    pub retry_timeout: Option<f64>,
    // The Databricks SDKs' other auth attributes, under their SDK names.
    pub azure_client_id: Option<String>,
    pub azure_client_secret: Option<String>,
    pub azure_client_secret_file: Option<PathBuf>,
    pub azure_client_secret_env: Option<String>,
    pub azure_tenant_id: Option<String>,
    pub azure_use_msi: Option<bool>,
    pub azure_workspace_resource_id: Option<String>,
    pub azure_environment: Option<String>,
    pub azure_login_endpoint: Option<String>,
    pub azure_msi_endpoint: Option<String>,
    pub databricks_cli_path: Option<String>,
    pub metadata_service_url: Option<String>,
    pub oidc_token_env: Option<String>,
    pub oidc_token_filepath: Option<PathBuf>,
    // Per-identity pass-through: how long a checked client token is trusted, and how many.
    pub passthrough_cache_ttl: Option<f64>,
    pub passthrough_cache_size: Option<usize>,
}

/// The non-pool keys of a `[[users]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUser {
    pub name: String,
    pub password: Option<String>,
    pub password_file: Option<PathBuf>,
    pub password_env: Option<String>,
    /// Refused with an explanation: the method is set per database.
    pub auth: Option<AuthMethod>,
    pub admin: Option<bool>,
}

/// The non-pool keys of a `[[databases]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDatabase {
    pub name: String,
    pub host: Option<String>,
    /// Wider than a port so a wrong value gets lakepool's own message, not serde's.
    pub port: Option<i64>,
    pub dbname: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub password_file: Option<PathBuf>,
    pub password_env: Option<String>,
    pub tls: Option<UpstreamTls>,
    pub ca_file: Option<PathBuf>,
    pub instance: Option<String>,
    pub endpoint: Option<String>,
    pub ttl: Option<f64>,
    pub credential_refresh_margin: Option<f64>,
    pub auth: Option<AuthMethod>,
    pub send_cleartext_password_without_tls: Option<bool>,
    pub passthrough: Option<bool>,
}

/// Names of `RawDatabase` fields, to split a database table into its own and pool keys.
pub const DATABASE_KEYS: &[&str] = &[
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
pub const USER_KEYS: &[&str] = &[
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
pub enum ClientTls {
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
pub enum AuthMethod {
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
pub enum PoolMode {
    /// A client keeps its server connection until it disconnects.
    Session,
    /// A client holds a server connection only for the length of a transaction.
    Transaction,
}
