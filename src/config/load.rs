//! Loading: parse, resolve secrets, apply defaults, validate.

use std::collections::HashSet;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::ops::Range;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::databases::{database, users};
use super::locate::{self, KeyLines};
use super::passthrough;
use super::pool::pool_settings;
use super::raw::RawConfig;
use super::secret::permission_warnings;
use super::server::server;
use super::workspace::workspace;
use super::{Config, PoolSettings};

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

pub(super) fn line_prefix(line: Option<usize>) -> String {
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
pub(crate) const ADMIN_DATABASE: &str = "lakepool";
/// Another name of the admin console, the one PgBouncer's tools (exporters, dashboards) use.
pub(crate) const ADMIN_DATABASE_ALIAS: &str = "pgbouncer";

/// True for the names of the admin console's database.
pub(crate) fn is_admin_database(name: &str) -> bool {
    name == ADMIN_DATABASE || name == ADMIN_DATABASE_ALIAS
}

/// Loads and validates config text; `base` resolves relative file paths. Errors give the line
/// and the key, never a value from the file.
pub(crate) fn load_str(text: &str, base: &Path) -> Result<Config, ConfigError> {
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
pub(super) fn from_table<T: DeserializeOwned>(
    table: DeTable<'_>,
    span: Range<usize>,
    lines: &KeyLines,
    key: &str,
) -> Result<T, ConfigError> {
    T::deserialize(toml::de::Deserializer::from(Spanned::new(span, table)))
        .map_err(|e| lines.serde_error(&e, key))
}

/// The tables of an array of tables (`[[users]]`, `[[databases]]`) with their spans.
pub(super) fn array_of_tables<'i>(
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

pub(super) fn seconds(
    key: &str,
    v: Option<f64>,
    default: Duration,
) -> Result<Duration, ConfigError> {
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
pub(super) fn positive_seconds(
    key: &str,
    v: Option<f64>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    let d = seconds(key, v, default)?;
    if d.is_zero() {
        return Err(invalid(key, "must be above 0"));
    }
    Ok(d)
}

pub(super) fn addr(key: &str, s: &str) -> Result<SocketAddr, ConfigError> {
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

#[cfg(test)]
#[path = "load_tests.rs"]
mod tests;
