//! Loading: parse, resolve secrets, apply defaults, validate.

use std::collections::HashSet;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::ops::Range;
use std::sync::Arc;

use secrecy::ExposeSecret;
use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::locate::{self, KeyLines};
use super::passthrough;
use super::raw::{
    DATABASE_KEYS, Listen, RawConfig, RawDatabase, RawPool, RawServer, RawUser, RawWorkspace,
    USER_KEYS,
};
use super::secret::{permission_warnings, secret};
use super::{
    AuthMethod, ClientTls, Config, CredentialConfig, DatabaseConfig, PoolOverrides, PoolSettings,
    ServerConfig, TlsFiles, UpstreamTls, UserConfig, WorkspaceConfig,
};

/// A configuration problem, naming the line and the key it concerns. Never carries a value
/// from the file (see [`super::locate`]).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// File path.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("line {line}: not valid TOML: {message}")]
    Syntax {
        /// 1-based line of the error.
        line: usize,
        /// What the parser expected (never the file's text).
        message: String,
    },
    /// A key is missing, unknown, or has a value lakepool cannot use.
    #[error("{}{key}: {problem}", line_prefix(*.line))]
    Invalid {
        /// Dotted key path, e.g. `databases[0].pool_size`.
        key: String,
        /// What is wrong, in plain words.
        problem: String,
        /// 1-based line of the key (or of its table), when known.
        line: Option<usize>,
    },
}

fn line_prefix(line: Option<usize>) -> String {
    line.map(|l| format!("line {l}: ")).unwrap_or_default()
}

pub(super) fn invalid(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        problem: problem.into(),
        line: None,
    }
}

/// Loads and validates a config file. Relative paths inside it are taken relative to its directory.
pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    // Inline secrets are in the text: wiped once loaded.
    let text = std::fs::read_to_string(path)
        .map(zeroize::Zeroizing::new)
        .map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
    let base = path.parent().unwrap_or(Path::new("."));
    load_str(&text, base)
}

/// The virtual database of the admin console; no configured database may use the name.
pub const ADMIN_DATABASE: &str = "lakepool";
/// Another name of the admin console, the one PgBouncer's tools (exporters, dashboards) use.
pub const ADMIN_DATABASE_ALIAS: &str = "pgbouncer";

/// True for the names of the admin console's database.
pub fn is_admin_database(name: &str) -> bool {
    name == ADMIN_DATABASE || name == ADMIN_DATABASE_ALIAS
}

/// Loads and validates config text; `base` resolves relative file paths. Errors give the line
/// and the key, never a value from the file.
pub fn load_str(text: &str, base: &Path) -> Result<Config, ConfigError> {
    load_str_with_env(text, base, &|k| std::env::var(k).ok())
}

/// [`load_str`] with `${VAR}` looked up by `env` (tests pass their own).
pub(crate) fn load_str_with_env(
    text: &str,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let mut doc = DeTable::parse(text).map_err(|e| locate::syntax_error(text, &e))?;
    let lines = KeyLines::new(text, doc.get_ref());
    super::interpolate::interpolate_document(doc.get_mut(), env).map_err(|e| lines.locate(e))?;
    let warnings = permission_warnings(doc.get_ref(), base, &lines);
    let mut config = load_document(doc, base, &lines).map_err(|e| lines.locate(e))?;
    config.lines = Arc::new(lines);
    config.warnings = warnings;
    Ok(config)
}

/// Deserializes a spanned table as `T`; errors are located and in plain words.
fn from_table<T: DeserializeOwned>(
    table: DeTable<'_>,
    span: Range<usize>,
    lines: &KeyLines,
    key: &str,
) -> Result<T, ConfigError> {
    T::deserialize(toml::de::Deserializer::from(Spanned::new(span, table)))
        .map_err(|e| lines.serde_error(&e, key))
}

/// The tables of an array of tables (`[[users]]`, `[[databases]]`) with their spans.
fn array_of_tables<'i>(
    value: Option<Spanned<DeValue<'i>>>,
    key: &str,
) -> Result<Vec<(DeTable<'i>, Range<usize>)>, ConfigError> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let DeValue::Array(items) = value.into_inner() else {
        return Err(invalid(key, format!("must be a list of [[{key}]] tables")));
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let span = item.span();
            match item.into_inner() {
                DeValue::Table(t) => Ok((t, span)),
                _ => Err(invalid(format!("{key}[{i}]"), "must be a table")),
            }
        })
        .collect()
}

fn load_document(
    doc: Spanned<DeTable<'_>>,
    base: &Path,
    lines: &KeyLines,
) -> Result<Config, ConfigError> {
    let span = doc.span();
    let mut root = doc.into_inner();
    let raw_users = array_of_tables(root.remove("users"), "users")?;
    let raw_databases = array_of_tables(root.remove("databases"), "databases")?;
    let raw: RawConfig = from_table(root, span, lines, "")?;
    let server = server(raw.server, base)?;
    let defaults = pool_settings(&raw.pool, &PoolSettings::default(), "pool")?;
    let users = users(raw_users, &defaults, base, lines)?;
    let workspace = workspace(raw.workspace, base)?;
    let mut databases = Vec::with_capacity(raw_databases.len());
    let mut names = HashSet::new();
    for (i, (table, span)) in raw_databases.into_iter().enumerate() {
        let db = database(table, span, i, &defaults, server.auth, base, lines)?;
        if is_admin_database(&db.name) {
            let name = &db.name;
            return Err(invalid(
                format!("databases[{i}].name"),
                format!(
                    "\"{name}\" is the admin console's database name; \
                     give this database another name (clients can still reach a server \
                     database called {name} through dbname = \"{name}\")"
                ),
            ));
        }
        if !names.insert(db.name.clone()) {
            return Err(invalid(
                format!("databases[{i}].name"),
                format!("database {:?} is defined twice", db.name),
            ));
        }
        databases.push(db);
    }
    if databases.is_empty() {
        return Err(invalid(
            "databases",
            "at least one [[databases]] entry is needed",
        ));
    }
    if users.is_empty() && !databases.iter().any(|d| d.passthrough) {
        return Err(invalid("users", "at least one [[users]] entry is needed"));
    }
    passthrough::check_client_tls(&server, &databases)?;
    Ok(Config {
        server,
        workspace,
        users,
        databases,
        lines: Arc::default(),
        warnings: Vec::new(),
        pool: defaults,
    })
}

pub(super) fn resolve_path(base: &Path, p: PathBuf) -> PathBuf {
    if p.is_relative() { base.join(p) } else { p }
}

fn seconds(key: &str, v: Option<f64>, default: Duration) -> Result<Duration, ConfigError> {
    match v {
        None => Ok(default),
        Some(s) if (0.0..1e9).contains(&s) => Ok(Duration::from_secs_f64(s)),
        Some(s) => Err(invalid(
            key,
            format!("{s} is not a valid number of seconds"),
        )),
    }
}

/// Like [`seconds`], but 0 is refused: for these keys 0 would mean "never works".
fn positive_seconds(key: &str, v: Option<f64>, default: Duration) -> Result<Duration, ConfigError> {
    let d = seconds(key, v, default)?;
    if d.is_zero() {
        return Err(invalid(key, "must be above 0"));
    }
    Ok(d)
}

fn addr(key: &str, s: &str) -> Result<SocketAddr, ConfigError> {
    // Checked first: the resolver's own message for it is "invalid port value".
    if let Some((_, port)) = s.rsplit_once(':')
        && port.parse::<u16>().is_err()
    {
        return Err(invalid(key, "port must be between 0 and 65535"));
    }
    s.to_socket_addrs()
        .map_err(|e| invalid(key, format!("{s:?} is not a host:port address ({e})")))?
        .next()
        .ok_or_else(|| invalid(key, format!("{s:?} resolves to no address")))
}

fn server(raw: RawServer, base: &Path) -> Result<ServerConfig, ConfigError> {
    let listen_strs = match raw.listen {
        Listen::One(s) => vec![s],
        Listen::Many(v) => v,
    };
    if listen_strs.is_empty() {
        return Err(invalid("server.listen", "no address given"));
    }
    let listen = listen_strs
        .iter()
        .map(|s| addr("server.listen", s))
        .collect::<Result<Vec<_>, _>>()?;
    let tls = match (raw.tls_cert_file, raw.tls_key_file) {
        (Some(c), Some(k)) => Some(TlsFiles {
            cert_file: resolve_path(base, c),
            key_file: resolve_path(base, k),
        }),
        (None, None) => None,
        (Some(_), None) => {
            return Err(invalid(
                "server.tls_key_file",
                "missing (tls_cert_file is set)",
            ));
        }
        (None, Some(_)) => {
            return Err(invalid(
                "server.tls_cert_file",
                "missing (tls_key_file is set)",
            ));
        }
    };
    let client_tls = raw.client_tls.unwrap_or(if tls.is_some() {
        ClientTls::Prefer
    } else {
        ClientTls::Disable
    });
    if client_tls != ClientTls::Disable && tls.is_none() {
        return Err(invalid(
            "server.client_tls",
            "client TLS needs server.tls_cert_file and server.tls_key_file",
        ));
    }
    let admin_listen = raw
        .admin_listen
        .map(|s| addr("server.admin_listen", &s))
        .transpose()?;
    let admin_token = secret(
        "server.admin_token",
        raw.admin_token,
        raw.admin_token_file,
        raw.admin_token_env,
        base,
    )?;
    let workers = match raw.workers {
        // One thread per four cores: PostgreSQL and the clients need the rest, and a single
        // current-thread runtime is the cheapest per transaction (see benches/README.md).
        None | Some(0) => std::thread::available_parallelism().map_or(1, |n| (n.get() / 4).max(1)),
        Some(n) if n <= 256 => n,
        Some(n) => return Err(invalid("server.workers", format!("{n} is more than 256"))),
    };
    let max_client_conn = raw.max_client_conn.unwrap_or(5000);
    if max_client_conn == 0 {
        return Err(invalid("server.max_client_conn", "must be at least 1"));
    }
    let max_message_size = raw.max_message_size.unwrap_or(1 << 30);
    if !(1024..=(1 << 30)).contains(&max_message_size) {
        return Err(invalid(
            "server.max_message_size",
            "must be between 1024 and 1073741824 bytes",
        ));
    }
    let max_held_message_size = raw
        .max_held_message_size
        .unwrap_or((4 << 20).min(max_message_size));
    if raw.max_held_message_size.is_some()
        && !(16_384..=max_message_size).contains(&max_held_message_size)
    {
        return Err(invalid(
            "server.max_held_message_size",
            "must be between 16384 bytes and max_message_size",
        ));
    }
    if max_message_size < 16_384 && raw.max_held_message_size.is_some() {
        return Err(invalid(
            "server.max_held_message_size",
            "cannot be set when max_message_size is below 16384 bytes",
        ));
    }
    Ok(ServerConfig {
        listen,
        tls,
        client_tls,
        admin_listen,
        admin_token,
        workers,
        max_client_conn,
        handshake_timeout: positive_seconds(
            "server.handshake_timeout",
            raw.handshake_timeout,
            Duration::from_secs(30),
        )?,
        allow_cleartext_without_tls: raw.allow_cleartext_without_tls.unwrap_or(false),
        auth: raw.auth.unwrap_or(AuthMethod::ScramSha256),
        max_message_size: usize::try_from(max_message_size).unwrap_or(usize::MAX),
        max_held_message_size: usize::try_from(max_held_message_size).unwrap_or(usize::MAX),
        log_format: raw.log_format.unwrap_or(super::LogFormat::Text),
        shutdown_timeout: seconds(
            "server.shutdown_timeout",
            raw.shutdown_timeout,
            Duration::from_secs(30),
        )?,
    })
}

/// `raw`'s keys over `defaults`. Each key is checked on its own (no rule spans two keys), so
/// a layer valid over `[pool]` is valid over any database's settings too.
pub(super) fn pool_settings(
    raw: &RawPool,
    defaults: &PoolSettings,
    prefix: &str,
) -> Result<PoolSettings, ConfigError> {
    let key = |k: &str| format!("{prefix}.{k}");
    let size = raw.pool_size.unwrap_or(defaults.size);
    if size == 0 || size > 10_000 {
        return Err(invalid(key("pool_size"), "must be between 1 and 10000"));
    }
    let server_reset_query = raw
        .server_reset_query
        .clone()
        .unwrap_or_else(|| defaults.server_reset_query.clone());
    if server_reset_query.contains('\0') {
        return Err(invalid(key("server_reset_query"), "contains a NUL byte"));
    }
    let connect = seconds(
        &key("server_connect_timeout"),
        raw.server_connect_timeout,
        defaults.server_connect_timeout,
    )?;
    if connect.is_zero() {
        return Err(invalid(key("server_connect_timeout"), "must be above 0"));
    }
    let max_prepared_statements = raw
        .max_prepared_statements
        .unwrap_or(defaults.max_prepared_statements);
    if max_prepared_statements > 100_000 {
        return Err(invalid(
            key("max_prepared_statements"),
            "must be between 0 and 100000",
        ));
    }
    let max_client_prepared_statements = raw
        .max_client_prepared_statements
        .unwrap_or(defaults.max_client_prepared_statements);
    if !(1..=10_000_000).contains(&max_client_prepared_statements) {
        return Err(invalid(
            key("max_client_prepared_statements"),
            "must be between 1 and 10000000",
        ));
    }
    let max_client_prepared_bytes = match raw.max_client_prepared_bytes {
        None => defaults.max_client_prepared_bytes,
        Some(n) if (1024..=1 << 40).contains(&n) => usize::try_from(n).unwrap_or(usize::MAX),
        Some(_) => {
            return Err(invalid(
                key("max_client_prepared_bytes"),
                "must be between 1024 and 1099511627776 bytes",
            ));
        }
    };
    let track_extra_parameters = match &raw.track_extra_parameters {
        None => defaults.track_extra_parameters.clone(),
        Some(names) => {
            let mut out = Vec::with_capacity(names.len());
            for n in names {
                let ok = !n.is_empty()
                    && n.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.');
                if !ok {
                    return Err(invalid(
                        key("track_extra_parameters"),
                        format!("{n:?} is not a parameter name"),
                    ));
                }
                out.push(n.to_ascii_lowercase());
            }
            out
        }
    };
    let count = |k: &str, v: Option<usize>, default: usize| -> Result<usize, ConfigError> {
        let n = v.unwrap_or(default);
        if n > 1_000_000 {
            return Err(invalid(key(k), "must be between 0 and 1000000"));
        }
        Ok(n)
    };
    let secs = |k: &str, v: Option<f64>, default| seconds(&key(k), v, default);
    let server_check_query = raw
        .server_check_query
        .clone()
        .unwrap_or_else(|| defaults.server_check_query.clone());
    if server_check_query.contains('\0') {
        return Err(invalid(key("server_check_query"), "contains a NUL byte"));
    }
    let min_pool_size = count("min_pool_size", raw.min_pool_size, defaults.min_pool_size)?;
    if min_pool_size > 10_000 {
        return Err(invalid(key("min_pool_size"), "must be between 0 and 10000"));
    }
    let reserve_pool_size = count(
        "reserve_pool_size",
        raw.reserve_pool_size,
        defaults.reserve_pool_size,
    )?;
    if reserve_pool_size > 10_000 {
        return Err(invalid(
            key("reserve_pool_size"),
            "must be between 0 and 10000",
        ));
    }
    Ok(PoolSettings {
        max_db_connections: count(
            "max_db_connections",
            raw.max_db_connections,
            defaults.max_db_connections,
        )?,
        max_user_connections: count(
            "max_user_connections",
            raw.max_user_connections,
            defaults.max_user_connections,
        )?,
        max_db_client_connections: count(
            "max_db_client_connections",
            raw.max_db_client_connections,
            defaults.max_db_client_connections,
        )?,
        max_user_client_connections: count(
            "max_user_client_connections",
            raw.max_user_client_connections,
            defaults.max_user_client_connections,
        )?,
        min_pool_size,
        reserve_pool_size,
        reserve_pool_timeout: secs(
            "reserve_pool_timeout",
            raw.reserve_pool_timeout,
            defaults.reserve_pool_timeout,
        )?,
        server_login_retry: secs(
            "server_login_retry",
            raw.server_login_retry,
            defaults.server_login_retry,
        )?,
        client_idle_timeout: secs(
            "client_idle_timeout",
            raw.client_idle_timeout,
            defaults.client_idle_timeout,
        )?,
        idle_transaction_timeout: secs(
            "idle_transaction_timeout",
            raw.idle_transaction_timeout,
            defaults.idle_transaction_timeout,
        )?,
        server_check_delay: secs(
            "server_check_delay",
            raw.server_check_delay,
            defaults.server_check_delay,
        )?,
        server_check_query,
        mode: raw.pool_mode.unwrap_or(defaults.mode),
        max_prepared_statements,
        max_client_prepared_statements,
        max_client_prepared_bytes,
        track_extra_parameters,
        size,
        server_lifetime: positive_seconds(
            &key("server_lifetime"),
            raw.server_lifetime,
            defaults.server_lifetime,
        )?,
        server_idle_timeout: positive_seconds(
            &key("server_idle_timeout"),
            raw.server_idle_timeout,
            defaults.server_idle_timeout,
        )?,
        query_wait_timeout: positive_seconds(
            &key("query_wait_timeout"),
            raw.query_wait_timeout,
            defaults.query_wait_timeout,
        )?,
        server_connect_timeout: connect,
        server_reset_query,
    })
}

/// What user and database names may hold: no control characters, so a configured name is
/// always safe to put in a log line.
const NAME_RULE: &str = "must be a non-empty name without control characters";

fn is_name(s: &str) -> bool {
    !s.is_empty() && !s.contains(char::is_control)
}

/// Splits a `[[databases]]` or `[[users]]` table into its own keys (`own`) and pool keys.
fn split_pool_keys<'i>(table: DeTable<'i>, own: &[&str]) -> (DeTable<'i>, DeTable<'i>) {
    let mut mine = DeTable::new();
    let mut pool_table = DeTable::new();
    for (k, v) in table {
        if own.contains(&k.get_ref().as_ref()) {
            mine.insert(k, v);
        } else {
            pool_table.insert(k, v);
        }
    }
    (mine, pool_table)
}

fn users(
    raw: Vec<(DeTable<'_>, Range<usize>)>,
    defaults: &PoolSettings,
    base: &Path,
    lines: &KeyLines,
) -> Result<Vec<UserConfig>, ConfigError> {
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, (table, span)) in raw.into_iter().enumerate() {
        let key = format!("users[{i}]");
        let (own, pool_table) = split_pool_keys(table, USER_KEYS);
        let u: RawUser = from_table(own, span.clone(), lines, &key)?;
        let raw_pool: RawPool = from_table(pool_table, span, lines, &key)?;
        // Validated here so errors name the user's key; applied per database later.
        pool_settings(&raw_pool, defaults, &key)?;
        if !is_name(&u.name) {
            return Err(invalid(format!("{key}.name"), NAME_RULE));
        }
        if !seen.insert(u.name.clone()) {
            return Err(invalid(
                format!("{key}.name"),
                format!("user {:?} is defined twice", u.name),
            ));
        }
        let password = secret(
            &format!("{key}.password"),
            u.password,
            u.password_file,
            u.password_env,
            base,
        )?
        .ok_or_else(|| invalid(format!("{key}.password"), "a password is required"))?;
        if u.auth.is_some() {
            return Err(invalid(
                format!("{key}.auth"),
                "the authentication method is set per database (`auth` in [server] for all, \
                 or on a [[databases]] entry), never per user, so that a probe cannot tell \
                 which user names exist: remove it here",
            ));
        }
        out.push(UserConfig {
            name: u.name,
            password,
            admin: u.admin.unwrap_or(false),
            pool: PoolOverrides(raw_pool),
        });
    }
    Ok(out)
}

fn database(
    table: DeTable<'_>,
    span: Range<usize>,
    i: usize,
    defaults: &PoolSettings,
    default_auth: AuthMethod,
    base: &Path,
    lines: &KeyLines,
) -> Result<DatabaseConfig, ConfigError> {
    let key = format!("databases[{i}]");
    let (own, pool_table) = split_pool_keys(table, DATABASE_KEYS);
    let raw: RawDatabase = from_table(own, span.clone(), lines, &key)?;
    let raw_pool: RawPool = from_table(pool_table, span, lines, &key)?;
    if !is_name(&raw.name) {
        return Err(invalid(format!("{key}.name"), NAME_RULE));
    }
    let password = secret(
        &format!("{key}.password"),
        raw.password,
        raw.password_file,
        raw.password_env,
        base,
    )?;
    let ttl = seconds(&format!("{key}.ttl"), raw.ttl, Duration::ZERO)?;
    let credential = match (raw.instance, raw.endpoint) {
        (Some(_), Some(_)) => {
            return Err(invalid(key, "give either instance or endpoint, not both"));
        }
        (Some(name), None) | (None, Some(name)) if password.is_some() => {
            let _ = name;
            return Err(invalid(
                format!("{key}.password"),
                "a password cannot be combined with instance/endpoint (the credential is minted)",
            ));
        }
        (Some(name), None) => {
            if name.is_empty() {
                return Err(invalid(format!("{key}.instance"), "must not be empty"));
            }
            CredentialConfig::Instance(name)
        }
        (None, Some(name)) => {
            let parts: Vec<&str> = name.split('/').collect();
            let well_formed = parts.len() == 6
                && parts[0] == "projects"
                && parts[2] == "branches"
                && parts[4] == "endpoints"
                && parts.iter().all(|p| !p.is_empty());
            if !well_formed {
                return Err(invalid(
                    format!("{key}.endpoint"),
                    "expected projects/<project>/branches/<branch>/endpoints/<endpoint>",
                ));
            }
            if raw.ttl.is_some() && !(300.0..=3600.0).contains(&ttl.as_secs_f64()) {
                return Err(invalid(
                    format!("{key}.ttl"),
                    "must be between 300 and 3600 seconds",
                ));
            }
            CredentialConfig::Endpoint {
                name,
                ttl: raw.ttl.map(|_| ttl),
            }
        }
        (None, None) => CredentialConfig::Password(password),
    };
    if raw.ttl.is_some() && !matches!(credential, CredentialConfig::Endpoint { .. }) {
        return Err(invalid(format!("{key}.ttl"), "only applies to an endpoint"));
    }
    let rotating = !matches!(credential, CredentialConfig::Password(_));
    let passthrough = raw.passthrough.unwrap_or(false);
    passthrough::check_database(
        &key,
        passthrough,
        rotating,
        raw.user.as_deref(),
        raw.auth.is_some(),
    )?;
    let host = raw.host.filter(|h| !h.is_empty());
    if host.is_none() && !rotating {
        return Err(invalid(
            format!("{key}.host"),
            "an upstream host is required",
        ));
    }
    let user = raw.user.filter(|u| !u.is_empty());
    if user.is_none() && !rotating {
        return Err(invalid(
            format!("{key}.user"),
            "an upstream user is required",
        ));
    }
    let port = match raw.port {
        None => 5432,
        Some(p) => u16::try_from(p)
            .ok()
            .filter(|&p| p > 0)
            .ok_or_else(|| invalid(format!("{key}.port"), "must be between 1 and 65535"))?,
    };
    let tls = raw.tls.unwrap_or(UpstreamTls::VerifyFull);
    let ca_file = raw.ca_file.map(|p| resolve_path(base, p));
    if let Some(ca) = &ca_file
        && !ca.exists()
    {
        return Err(invalid(
            format!("{key}.ca_file"),
            format!("{} does not exist", ca.display()),
        ));
    }
    let refresh_margin = raw
        .credential_refresh_margin
        .map(|m| {
            seconds(
                &format!("{key}.credential_refresh_margin"),
                Some(m),
                Duration::ZERO,
            )
        })
        .transpose()?;
    check_refresh_margin(&key, refresh_margin, &credential)?;
    // Lakebase's database is `databricks_postgres` (what the Databricks CLI connects to);
    // a native upstream keeps the database named like the entry.
    let default_dbname = if rotating {
        LAKEBASE_DBNAME.to_owned()
    } else {
        raw.name.clone()
    };
    Ok(DatabaseConfig {
        auth: raw.auth.unwrap_or(default_auth),
        send_cleartext_password_without_tls: raw
            .send_cleartext_password_without_tls
            .unwrap_or(false),
        passthrough,
        dbname: raw.dbname.unwrap_or(default_dbname),
        name: raw.name,
        host,
        port,
        user,
        credential,
        refresh_margin,
        tls,
        ca_file,
        pool: pool_settings(&raw_pool, defaults, &key)?,
    })
}

/// The `[workspace]` auth attributes beyond PAT and OAuth M2M.
fn sdk_auth(raw: &mut RawWorkspace, base: &Path) -> Result<super::SdkAuthConfig, ConfigError> {
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

/// The database on a Lakebase instance or endpoint when `dbname` is not set.
const LAKEBASE_DBNAME: &str = "databricks_postgres";

/// A refresh margin must leave at least half the credential's lifetime (the Databricks SDKs
/// cap it at half): Lakebase credentials live at most an hour, an endpoint's `ttl` when set.
/// The refresher also caps it at half of the lifetime each credential really has.
fn check_refresh_margin(
    key: &str,
    margin: Option<Duration>,
    credential: &CredentialConfig,
) -> Result<(), ConfigError> {
    let Some(margin) = margin else { return Ok(()) };
    let lifetime = match credential {
        CredentialConfig::Endpoint { ttl: Some(t), .. } => *t,
        _ => Duration::from_secs(3600),
    };
    if margin > lifetime / 2 {
        return Err(invalid(
            format!("{key}.credential_refresh_margin"),
            format!(
                "{} s is more than half the credential's lifetime ({} s); use at most {} s",
                margin.as_secs_f64(),
                lifetime.as_secs(),
                (lifetime / 2).as_secs()
            ),
        ));
    }
    Ok(())
}

fn workspace(raw: Option<RawWorkspace>, base: &Path) -> Result<WorkspaceConfig, ConfigError> {
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
        passthrough_cache_size: passthrough::cache_size(raw.passthrough_cache_size)?,
    })
}

#[cfg(test)]
#[path = "load_tests.rs"]
mod tests;

#[cfg(test)]
mod lakebase_tests {
    use super::*;

    const BASE: &str = r#"
[server]
listen = "127.0.0.1:0"

[[users]]
name = "app"
password = "pw"

[[databases]]
name = "app"
host = "127.0.0.1"
user = "owner"
tls = "disable"
"#;

    #[test]
    fn loads_minimal_with_defaults() {
        let c = load_str(BASE, Path::new(".")).unwrap();
        assert_eq!(c.databases[0].dbname, "app");
        assert_eq!(c.databases[0].port, 5432);
        assert_eq!(c.databases[0].pool, PoolSettings::default());
        assert_eq!(c.users[0].password.expose_secret(), "pw");
        assert_eq!(c.server.auth, AuthMethod::ScramSha256);
        assert_eq!(c.server.client_tls, ClientTls::Disable);
    }

    #[test]
    fn pool_defaults_and_overrides() {
        let text = format!(
            "{BASE}pool_size = 3\n[pool]\npool_mode = \"transaction\"\nquery_wait_timeout = 0.5\n"
        );
        let c = load_str(&text, Path::new(".")).unwrap();
        assert_eq!(c.databases[0].pool.size, 3);
        assert_eq!(
            c.databases[0].pool.mode,
            super::super::PoolMode::Transaction
        );
        assert_eq!(
            c.databases[0].pool.query_wait_timeout,
            Duration::from_millis(500)
        );
    }

    #[test]
    fn errors_name_the_key() {
        let e = load_str(&format!("{BASE}pool_size = 0\n"), Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(e.contains("databases[0].pool_size"), "{e}");
        let e = load_str(&format!("{BASE}bogus = 1\n"), Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(e.contains("databases[0]") && e.contains("bogus"), "{e}");
        let e = load_str(
            &BASE.replace("tls = \"disable\"", "tls = \"maybe\""),
            Path::new("."),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("databases[0]"), "{e}");
        let e = load_str(
            &format!("{BASE}password = \"a\"\npassword_env = \"B\"\n"),
            Path::new("."),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("databases[0].password"), "{e}");
    }

    #[test]
    fn limit_and_health_keys_have_pgbouncer_defaults() {
        let p = load_str(BASE, Path::new(".")).unwrap().databases[0]
            .pool
            .clone();
        assert_eq!(p.max_db_connections, 0);
        assert_eq!(p.max_user_connections, 0);
        assert_eq!(p.max_db_client_connections, 0);
        assert_eq!(p.max_user_client_connections, 0);
        assert_eq!(p.min_pool_size, 0);
        assert_eq!(p.reserve_pool_size, 0);
        assert_eq!(p.reserve_pool_timeout, Duration::from_secs(5));
        assert_eq!(p.server_login_retry, Duration::from_secs(15));
        assert_eq!(p.client_idle_timeout, Duration::ZERO);
        assert_eq!(p.idle_transaction_timeout, Duration::from_secs(600));
        assert_eq!(p.server_check_delay, Duration::from_secs(30));
        assert_eq!(p.server_check_query, "");
    }

    #[test]
    fn every_limit_key_is_parsed() {
        let text = format!(
            "{BASE}\n[pool]\nmax_db_connections = 7\nmax_user_connections = 8\n\
             max_db_client_connections = 9\nmax_user_client_connections = 10\n\
             min_pool_size = 2\nreserve_pool_size = 3\nreserve_pool_timeout = 0.25\n\
             server_login_retry = 1.5\nclient_idle_timeout = 60\n\
             idle_transaction_timeout = 30\nserver_check_delay = 0\n\
             server_check_query = \"select 1\"\n"
        );
        let p = load_str(&text, Path::new(".")).unwrap().databases[0]
            .pool
            .clone();
        assert_eq!(p.max_db_connections, 7);
        assert_eq!(p.max_user_connections, 8);
        assert_eq!(p.max_db_client_connections, 9);
        assert_eq!(p.max_user_client_connections, 10);
        assert_eq!(p.min_pool_size, 2);
        assert_eq!(p.reserve_pool_size, 3);
        assert_eq!(p.reserve_pool_timeout, Duration::from_millis(250));
        assert_eq!(p.server_login_retry, Duration::from_millis(1500));
        assert_eq!(p.client_idle_timeout, Duration::from_secs(60));
        assert_eq!(p.idle_transaction_timeout, Duration::from_secs(30));
        assert_eq!(p.server_check_delay, Duration::ZERO);
        assert_eq!(p.server_check_query, "select 1");
    }

    #[test]
    fn admin_flag_and_reserved_database_name() {
        let base = "[server]\nlisten = \"127.0.0.1:0\"\n\
            [[users]]\nname = \"a\"\npassword = \"pw\"\nadmin = true\n\
            [[users]]\nname = \"b\"\npassword = \"pw\"\n";
        let ok = format!("{base}[[databases]]\nname = \"d\"\nhost = \"h\"\nuser = \"u\"\n");
        let c = load_str(&ok, Path::new(".")).unwrap();
        assert!(c.users[0].admin);
        assert!(!c.users[1].admin);
        let bad = format!("{base}[[databases]]\nname = \"lakepool\"\nhost = \"h\"\nuser = \"u\"\n");
        let e = load_str(&bad, Path::new(".")).unwrap_err().to_string();
        assert!(
            e.contains("databases[0].name") && e.contains("admin console"),
            "{e}"
        );
        let typo = format!("{base}admin = \"yes\"\n[[databases]]\nname = \"d\"\nhost = \"h\"\n");
        assert!(load_str(&typo, Path::new(".")).is_err());
    }

    #[test]
    fn user_keys_override_database_keys_override_pool() {
        let text = "[server]\nlisten = \"127.0.0.1:0\"\n\
            [pool]\nmin_pool_size = 1\nreserve_pool_size = 1\nclient_idle_timeout = 5\n\
            [[users]]\nname = \"a\"\npassword = \"pw\"\nmin_pool_size = 3\n\
            max_user_connections = 4\n\
            [[users]]\nname = \"b\"\npassword = \"pw\"\n\
            [[databases]]\nname = \"d\"\nhost = \"h\"\nuser = \"u\"\n\
            min_pool_size = 2\nreserve_pool_size = 2\n";
        let c = load_str(text, Path::new(".")).unwrap();
        let db = &c.databases[0].pool;
        let a = c.users[0].pool.apply(db);
        let b = c.users[1].pool.apply(db);
        // user > database
        assert_eq!(a.min_pool_size, 3);
        assert_eq!(a.max_user_connections, 4);
        // database > [pool]
        assert_eq!(a.reserve_pool_size, 2);
        assert_eq!(b.min_pool_size, 2);
        // [pool] where nobody overrides
        assert_eq!(a.client_idle_timeout, Duration::from_secs(5));
        assert_eq!(b.max_user_connections, 0);
        assert_eq!(&b, db);
    }

    #[test]
    fn invalid_limit_values_name_the_key() {
        for (line, key) in [
            ("max_db_connections = -1", "max_db_connections"),
            ("max_user_connections = 2000000", "max_user_connections"),
            ("min_pool_size = 20000", "min_pool_size"),
            ("reserve_pool_size = 10001", "reserve_pool_size"),
            ("reserve_pool_timeout = -1", "reserve_pool_timeout"),
            ("server_login_retry = -0.5", "server_login_retry"),
            ("client_idle_timeout = -3", "client_idle_timeout"),
            (
                "idle_transaction_timeout = 1e12",
                "idle_transaction_timeout",
            ),
            ("server_check_delay = -1", "server_check_delay"),
            ("server_check_query = \"a\\u0000b\"", "server_check_query"),
            (
                "max_db_client_connections = \"x\"",
                "max_db_client_connections",
            ),
        ] {
            let e = load_str(&format!("{BASE}\n[pool]\n{line}\n"), Path::new("."))
                .unwrap_err()
                .to_string();
            assert!(e.contains(key), "{line}: {e}");
            let e = load_str(&format!("{BASE}{line}\n"), Path::new("."))
                .unwrap_err()
                .to_string();
            assert!(e.contains("databases[0]") && e.contains(key), "{line}: {e}");
            let user = BASE.replace(
                "password = \"pw\"\n",
                &format!("password = \"pw\"\n{line}\n"),
            );
            let e = load_str(&user, Path::new(".")).unwrap_err().to_string();
            assert!(e.contains("users[0]") && e.contains(key), "{line}: {e}");
        }
        // Unknown keys on a user are still rejected, naming the user.
        let user = BASE.replace("password = \"pw\"\n", "password = \"pw\"\nbogus = 1\n");
        let e = load_str(&user, Path::new(".")).unwrap_err().to_string();
        assert!(e.contains("users[0]") && e.contains("bogus"), "{e}");
    }

    #[test]
    fn secret_from_env_and_missing_env() {
        // SAFETY-free: unique variable names per test avoid races with other tests.
        let text = BASE.replace(
            "password = \"pw\"",
            "password_env = \"LAKEPOOL_TEST_UNSET_VAR_X\"",
        );
        let e = load_str(&text, Path::new(".")).unwrap_err().to_string();
        assert!(e.contains("users[0].password_env"), "{e}");
        assert!(e.contains("LAKEPOOL_TEST_UNSET_VAR_X"), "{e}");
    }

    #[test]
    fn secret_from_file_trims_newline() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw.txt"), "s3cret\n").unwrap();
        let text = BASE.replace("password = \"pw\"", "password_file = \"pw.txt\"");
        let c = load_str(&text, dir.path()).unwrap();
        assert_eq!(c.users[0].password.expose_secret(), "s3cret");
    }

    const LAKEBASE: &str = r#"
[server]
listen = "127.0.0.1:0"

[workspace]
host = "https://ws.example"
token = "t"

[[users]]
name = "app"
password = "pw"

[[databases]]
name = "app"
"#;

    #[test]
    fn lakebase_databases_default_to_databricks_postgres() {
        let c = load_str(&format!("{LAKEBASE}instance = \"i\"\n"), Path::new(".")).unwrap();
        assert_eq!(c.databases[0].dbname, "databricks_postgres");
        let ep = "endpoint = \"projects/p/branches/b/endpoints/e\"\n";
        let c = load_str(&format!("{LAKEBASE}{ep}"), Path::new(".")).unwrap();
        assert_eq!(c.databases[0].dbname, "databricks_postgres");
        let c = load_str(
            &format!("{LAKEBASE}instance = \"i\"\ndbname = \"mine\"\n"),
            Path::new("."),
        )
        .unwrap();
        assert_eq!(c.databases[0].dbname, "mine");
        // A static upstream keeps the entry's name.
        assert_eq!(
            load_str(BASE, Path::new(".")).unwrap().databases[0].dbname,
            "app"
        );
    }

    #[test]
    fn refresh_margin_is_at_most_half_the_lifetime() {
        let inst = format!("{LAKEBASE}instance = \"i\"\n");
        let ok = load_str(
            &format!("{inst}credential_refresh_margin = 1800\n"),
            Path::new("."),
        );
        assert_eq!(
            ok.unwrap().databases[0].refresh_margin,
            Some(Duration::from_secs(1800))
        );
        let e = load_str(
            &format!("{inst}credential_refresh_margin = 3600\n"),
            Path::new("."),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("databases[0].credential_refresh_margin") && e.contains("at most 1800"),
            "{e}"
        );
        let ep = format!("{LAKEBASE}endpoint = \"projects/p/branches/b/endpoints/e\"\nttl = 600\n");
        let e = load_str(
            &format!("{ep}credential_refresh_margin = 301\n"),
            Path::new("."),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("at most 300"), "{e}");
        assert!(
            load_str(
                &format!("{ep}credential_refresh_margin = 300\n"),
                Path::new(".")
            )
            .is_ok()
        );
    }

    #[test]
    fn workspace_auth_attributes_under_their_sdk_names() {
        let ws = |lines: &str| {
            load_str(
                &format!("{BASE}\n[workspace]\nhost = \"https://ws.example\"\n{lines}\n"),
                Path::new("."),
            )
        };
        let c = ws(
            "auth_type = \"file-oidc\"\noidc_token_filepath = \"/var/run/token\"\n\
                    azure_use_msi = true\nazure_client_secret = \"s\"",
        )
        .unwrap();
        let sdk = &c.workspace.sdk;
        assert_eq!(
            sdk.oidc_token_filepath.as_deref(),
            Some(Path::new("/var/run/token"))
        );
        assert_eq!(sdk.azure_use_msi, Some(true));
        assert_eq!(
            sdk.azure_client_secret.as_ref().unwrap().expose_secret(),
            "s"
        );
        let e = ws("auth_type = \"azure-cli\"").unwrap_err().to_string();
        assert!(
            e.contains("workspace.auth_type") && e.contains("databricks-cli"),
            "{e}"
        );
        let e = ws("metadata_service_url = \"localhost:9\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("workspace.metadata_service_url"), "{e}");
        let e = ws("azure_client_secret = \"a\"\nazure_client_secret_env = \"B\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("workspace.azure_client_secret"), "{e}");
    }

    #[test]
    fn environment_variables_in_string_values() {
        let env = |k: &str| match k {
            "PGHOST" => Some("instance-1.database.example".to_owned()),
            "PGUSER" => Some("6f1c2a9e-app".to_owned()),
            "APP_PW" => Some("pw-from-env".to_owned()),
            _ => None,
        };
        let text = "[server]\nlisten = \"127.0.0.1:0\"\n\
            [[users]]\nname = \"app\"\npassword = \"${APP_PW}\"\n\
            [[databases]]\nname = \"app\"\nhost = \"${PGHOST}\"\nuser = \"${PGUSER}\"\n\
            server_reset_query = \"SELECT '$${not_a_var}'\"\n";
        let c = load_str_with_env(text, Path::new("."), &env).unwrap();
        assert_eq!(
            c.databases[0].host.as_deref(),
            Some("instance-1.database.example")
        );
        assert_eq!(c.databases[0].user.as_deref(), Some("6f1c2a9e-app"));
        assert_eq!(c.users[0].password.expose_secret(), "pw-from-env");
        assert_eq!(
            c.databases[0].pool.server_reset_query,
            "SELECT '${not_a_var}'"
        );
        // A missing variable names itself and the key, never the value around it.
        let text = text.replace("${APP_PW}", "hunter2-${NOT_SET}");
        let e = load_str_with_env(&text, Path::new("."), &env)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("users[0].password") && e.contains("NOT_SET") && !e.contains("hunter2"),
            "{e}"
        );
    }

    #[test]
    fn client_tls_needs_cert() {
        let text = BASE.replace(
            "listen = \"127.0.0.1:0\"",
            "listen = \"127.0.0.1:0\"\nclient_tls = \"require\"",
        );
        let e = load_str(&text, Path::new(".")).unwrap_err().to_string();
        assert!(e.contains("server.client_tls"), "{e}");
    }
}
