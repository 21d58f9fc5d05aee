//! Configuration: TOML file → validated, resolved [`Config`].
//!
//! `raw` mirrors the file (serde, unknown keys rejected); `interpolate` replaces `${VAR}` in
//! string values with environment variables; `load` parses the document, resolves secrets and
//! hands each section to the module that checks it (`server`, `pool`, `databases` for users and
//! databases, `workspace`), producing errors that name the key and the problem.

mod databases;
mod interpolate;
mod load;
mod locate;
mod passthrough;
mod pool;
mod raw;
mod secret;
mod server;
mod workspace;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;

#[cfg(test)]
pub(crate) use load::load_str;
pub(crate) use load::{ADMIN_DATABASE, is_admin_database};
pub use load::{ConfigError, load_file};
pub(crate) use locate::KeyLines;
pub(crate) use raw::{AuthMethod, ClientTls, PoolMode};
pub use raw::{LogFormat, UpstreamTls};

/// The `auth_type` values lakepool implements, as the Databricks SDKs name them.
pub(crate) const AUTH_TYPES: &[&str] = &[
    "pat",
    "oauth-m2m",
    "databricks-cli",
    "metadata-service",
    "env-oidc",
    "file-oidc",
    "azure-msi",
    "azure-client-secret",
];

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `[server]`.
    pub server: ServerConfig,
    /// `[workspace]`: how to reach the Databricks workspace API (Lakebase credentials).
    pub(crate) workspace: WorkspaceConfig,
    /// `[[users]]`: client-facing logins.
    pub(crate) users: Vec<UserConfig>,
    /// `[[databases]]`: what clients may connect to, and where it lives upstream.
    pub(crate) databases: Vec<DatabaseConfig>,
    /// `[pool]`: the settings every database starts from.
    pub(crate) pool: PoolSettings,
    /// Where each key is in the file, to give the line of errors found later (e.g. a
    /// password that is not a valid verifier).
    pub(crate) lines: Arc<KeyLines>,
    /// Problems that do not stop lakepool (secret files others can read), for the caller to
    /// log or print.
    pub warnings: Vec<String>,
}

impl Config {
    /// Adds the line of the key an error names, when it has none yet.
    pub(crate) fn locate(&self, e: ConfigError) -> ConfigError {
        self.lines.locate(e)
    }
}

/// `[server]`: listeners, client TLS, global limits.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Addresses to accept clients on.
    pub(crate) listen: Vec<SocketAddr>,
    /// Certificate chain and key for client-facing TLS.
    pub(crate) tls: Option<TlsFiles>,
    /// Whether clients may, must or cannot use TLS.
    pub(crate) client_tls: ClientTls,
    /// Directory of the Unix-domain socket for local clients (`.s.PGSQL.<port>`, the port
    /// of the first `listen` address); none: no socket.
    pub(crate) unix_socket_dir: Option<PathBuf>,
    /// Permission bits of the socket file.
    pub(crate) unix_socket_mode: u32,
    /// HTTP endpoints address (metrics, health).
    pub(crate) admin_listen: Option<SocketAddr>,
    /// Bearer token `/metrics` requires (and that shows `/readyz`'s details), when set.
    pub(crate) admin_token: Option<SecretString>,
    /// Tokio worker threads (1 = a current-thread runtime).
    pub workers: usize,
    /// Most client connections at once, over all pools.
    pub(crate) max_client_conn: usize,
    /// Time a client has to finish TLS, startup and authentication.
    pub(crate) handshake_timeout: Duration,
    /// `TCP_DEFER_ACCEPT` of the client listeners (Linux): a connection is handed over once
    /// it sent something, or after this long. Zero: off.
    pub(crate) tcp_defer_accept: Duration,
    /// Allow cleartext logins (`auth = "cleartext"` databases) without TLS.
    pub(crate) allow_cleartext_without_tls: bool,
    /// Authentication method of databases that set none, and of the admin console.
    pub(crate) auth: AuthMethod,
    /// Largest message a client or server may send after login, in bytes.
    pub(crate) max_message_size: usize,
    /// Largest client message lakepool holds whole to inspect or rewrite (a named statement's
    /// text); larger ones stream through uninspected, or are refused where they must be held.
    pub(crate) max_held_message_size: usize,
    /// On SIGTERM, how long clients still in a session get before lakepool exits.
    pub(crate) shutdown_timeout: Duration,
    /// Log line format (`LAKEPOOL_LOG_FORMAT` overrides it).
    pub log_format: LogFormat,
}

/// PEM files for a TLS identity.
#[derive(Debug, Clone)]
pub(crate) struct TlsFiles {
    /// Certificate chain (leaf first).
    pub(crate) cert_file: PathBuf,
    /// Private key.
    pub(crate) key_file: PathBuf,
}

/// One `[[users]]` entry.
#[derive(Debug, Clone)]
pub(crate) struct UserConfig {
    /// Login name.
    pub(crate) name: String,
    /// Plaintext, SCRAM verifier or md5 hash, as configured.
    pub(crate) password: SecretString,
    /// May log in to the admin console (database `lakepool`).
    pub(crate) admin: bool,
    /// Pool keys set on this user; they override `[pool]` and the database's own keys for
    /// this user's pools.
    pub(crate) pool: PoolOverrides,
}

/// Pool keys set on a `[[users]]` entry (already validated), applied over a database's
/// settings: precedence user > database > `[pool]`.
#[derive(Debug, Clone, Default)]
pub(crate) struct PoolOverrides(raw::RawPool);

impl PoolOverrides {
    /// The settings for this user's pool on a database whose settings are `base`.
    pub(crate) fn apply(&self, base: &PoolSettings) -> PoolSettings {
        // Every key was validated on its own at load and no check spans two keys, so applying
        // the same keys over any valid base cannot fail.
        pool::pool_settings(&self.0, base, "users").unwrap_or_else(|_| base.clone())
    }

    /// `pool_size`, when set on the user.
    pub(crate) fn pool_size(&self) -> Option<usize> {
        self.0.pool_size
    }

    /// `reserve_pool_size`, when set on the user.
    pub(crate) fn reserve_pool_size(&self) -> Option<usize> {
        self.0.reserve_pool_size
    }

    /// `pool_mode`, when set on the user.
    pub(crate) fn pool_mode(&self) -> Option<PoolMode> {
        self.0.pool_mode
    }
}

/// `[workspace]` as configured; the rest (env, profile, .netrc) is resolved at startup.
#[derive(Debug, Clone, Default)]
pub(crate) struct WorkspaceConfig {
    /// Workspace URL.
    pub(crate) host: Option<String>,
    /// `~/.databrickscfg` profile.
    pub(crate) profile: Option<String>,
    /// Config file instead of `~/.databrickscfg`.
    pub(crate) config_file: Option<PathBuf>,
    /// Force one auth method ([`AUTH_TYPES`]).
    pub(crate) auth_type: Option<String>,
    /// Personal access token.
    pub(crate) token: Option<SecretString>,
    /// Service principal application id.
    pub(crate) client_id: Option<String>,
    /// Service principal OAuth secret.
    pub(crate) client_secret: Option<SecretString>,
    /// Limit on one HTTP request to the workspace.
    pub(crate) http_timeout: Duration,
    /// Limit on one API call including its retries.
    pub(crate) retry_timeout: Duration,
    /// The SDKs' other auth attributes (Azure, OIDC federation, CLI, metadata service).
    pub(crate) sdk: SdkAuthConfig,
    /// Pass-through: how long the workspace's answer about a client's token is trusted
    /// without asking again (and how long an identity without clients keeps its pool).
    pub(crate) passthrough_cache_ttl: Duration,
    /// Pass-through: most client tokens whose check is remembered at once.
    pub(crate) passthrough_cache_size: usize,
}

/// `[workspace]` auth attributes of the Databricks SDKs beyond PAT and OAuth M2M, under their
/// SDK names; environment variables and profiles fill the rest at startup.
#[derive(Debug, Clone, Default)]
pub(crate) struct SdkAuthConfig {
    /// Azure service principal or managed identity application id.
    pub(crate) azure_client_id: Option<String>,
    /// Azure service principal secret.
    pub(crate) azure_client_secret: Option<SecretString>,
    /// Azure tenant (directory) id.
    pub(crate) azure_tenant_id: Option<String>,
    /// Use the Azure managed identity.
    pub(crate) azure_use_msi: Option<bool>,
    /// Azure resource id of the workspace.
    pub(crate) azure_workspace_resource_id: Option<String>,
    /// Azure cloud: PUBLIC, USGOVERNMENT, CHINA.
    pub(crate) azure_environment: Option<String>,
    /// Microsoft Entra ID login endpoint instead of the cloud's (private clouds, tests).
    pub(crate) azure_login_endpoint: Option<String>,
    /// Instance metadata endpoint instead of http://169.254.169.254/metadata (tests).
    pub(crate) azure_msi_endpoint: Option<String>,
    /// The `databricks` CLI to run for `databricks-cli` auth.
    pub(crate) databricks_cli_path: Option<String>,
    /// Local metadata service URL for `metadata-service` auth.
    pub(crate) metadata_service_url: Option<String>,
    /// Environment variable holding the OIDC token for `env-oidc`.
    pub(crate) oidc_token_env: Option<String>,
    /// File holding the OIDC token for `file-oidc`.
    pub(crate) oidc_token_filepath: Option<PathBuf>,
}

/// Where a database's upstream password comes from.
#[derive(Debug, Clone)]
pub(crate) enum CredentialConfig {
    /// A static password for a native role (or none).
    Password(Option<SecretString>),
    /// Lakebase provisioned instance: credentials from `/api/2.0/database/credentials`.
    Instance(String),
    /// Lakebase autoscaling endpoint: credentials from `/api/2.0/postgres/credentials`.
    Endpoint {
        /// `projects/…/branches/…/endpoints/…`.
        name: String,
        /// Requested credential lifetime.
        ttl: Option<Duration>,
    },
}

/// One `[[databases]]` entry.
#[derive(Debug, Clone)]
pub(crate) struct DatabaseConfig {
    /// Database name clients ask for.
    pub(crate) name: String,
    /// Upstream host (looked up from the instance or endpoint when None).
    pub(crate) host: Option<String>,
    /// Upstream port.
    pub(crate) port: u16,
    /// Upstream database name.
    pub(crate) dbname: String,
    /// Upstream role (the workspace identity when None).
    pub(crate) user: Option<String>,
    /// Upstream credential source.
    pub(crate) credential: CredentialConfig,
    /// Refresh rotating credentials when this much lifetime remains (default: min(half, 20 min)).
    pub(crate) refresh_margin: Option<Duration>,
    /// Upstream TLS mode.
    pub(crate) tls: UpstreamTls,
    /// CA bundle for verify-ca / verify-full (system roots when None).
    pub(crate) ca_file: Option<PathBuf>,
    /// Pool settings after `[pool]` defaults and per-database overrides.
    pub(crate) pool: PoolSettings,
    /// Authentication method every client of this database must use (whatever its user
    /// name, so that a probe cannot tell which users exist).
    pub(crate) auth: AuthMethod,
    /// Send the upstream password (or token) in cleartext when the server asks for it over a
    /// connection without TLS; refused by default.
    pub(crate) send_cleartext_password_without_tls: bool,
    /// Per-identity pass-through: each client logs in with its own Databricks identity and
    /// token, and lakepool logs in upstream as that identity (Lakebase databases only).
    pub(crate) passthrough: bool,
}

/// Pool behaviour, set in `[pool]` and overridable per database and per user.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PoolSettings {
    /// Session or transaction pooling.
    pub(crate) mode: PoolMode,
    /// Most server connections per (database, user) pool.
    pub(crate) size: usize,
    /// Server connections older than this are closed when idle.
    pub(crate) server_lifetime: Duration,
    /// Idle server connections unused for this long are closed.
    pub(crate) server_idle_timeout: Duration,
    /// Longest a client waits in the queue for a server connection.
    pub(crate) query_wait_timeout: Duration,
    /// Longest a new server connection (TCP, TLS, login) may take.
    pub(crate) server_connect_timeout: Duration,
    /// Query run on a server connection before another client gets it (session mode).
    pub(crate) server_reset_query: String,
    /// Transaction mode: named prepared statements each server connection keeps (LRU); 0 turns
    /// prepared-statement mapping off (statements pass through unchanged).
    pub(crate) max_prepared_statements: usize,
    /// Transaction mode with mapping: named prepared statements one client may have.
    pub(crate) max_client_prepared_statements: usize,
    /// Transaction mode with mapping: bytes of statement text one client's names may refer to.
    pub(crate) max_client_prepared_bytes: usize,
    /// Accepted for compatibility and shown by SHOW CONFIG; no longer needed, since every
    /// parameter a client changes follows it (lowercase names).
    pub(crate) track_extra_parameters: Vec<String>,
    /// Most server connections to this database over all its users' pools (0 = unlimited).
    pub(crate) max_db_connections: usize,
    /// Most server connections for this user over all databases (0 = unlimited).
    pub(crate) max_user_connections: usize,
    /// Most client connections to this database (0 = unlimited).
    pub(crate) max_db_client_connections: usize,
    /// Most client connections of this user (0 = unlimited).
    pub(crate) max_user_client_connections: usize,
    /// Server connections the maintenance task keeps open in each pool (capped at `size`).
    pub(crate) min_pool_size: usize,
    /// Extra connections beyond `size` for clients that waited `reserve_pool_timeout`.
    pub(crate) reserve_pool_size: usize,
    /// How long a client waits before it may use the reserve pool.
    pub(crate) reserve_pool_timeout: Duration,
    /// After a failed server login, how long before the pool tries again; meanwhile clients
    /// needing a new connection fail at once (0 = retry at once).
    pub(crate) server_login_retry: Duration,
    /// A client holding no server and idle this long is closed (0 = off).
    pub(crate) client_idle_timeout: Duration,
    /// A client holding a server without sending or reading (inside a transaction, half-way
    /// through a message, in COPY, or not reading its results) this long is closed (0 = off).
    pub(crate) idle_transaction_timeout: Duration,
    /// Idle server connections unused for longer than this are checked before reuse (0 =
    /// check at every checkout).
    pub(crate) server_check_delay: Duration,
    /// Query of the health check; empty = an empty query (cheapest round trip).
    pub(crate) server_check_query: String,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            mode: PoolMode::Session,
            size: 20,
            server_lifetime: Duration::from_secs(3600),
            server_idle_timeout: Duration::from_secs(600),
            query_wait_timeout: Duration::from_secs(120),
            server_connect_timeout: Duration::from_secs(15),
            server_reset_query: "DISCARD ALL".to_owned(),
            max_prepared_statements: 200,
            max_client_prepared_statements: 10_000,
            max_client_prepared_bytes: 16 << 20,
            track_extra_parameters: Vec::new(),
            max_db_connections: 0,
            max_user_connections: 0,
            max_db_client_connections: 0,
            max_user_client_connections: 0,
            min_pool_size: 0,
            reserve_pool_size: 0,
            reserve_pool_timeout: Duration::from_secs(5),
            server_login_retry: Duration::from_secs(15),
            client_idle_timeout: Duration::ZERO,
            idle_transaction_timeout: Duration::from_secs(600),
            server_check_delay: Duration::from_secs(30),
            server_check_query: String::new(),
        }
    }
}
