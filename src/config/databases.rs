//! `[[users]]` and `[[databases]]`: names, logins, upstream targets and credentials, checked.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use std::ops::Range;

use toml::de::DeTable;

use super::locate::KeyLines;
use super::raw::{DATABASE_KEYS, RawDatabase, RawPool, RawUser, USER_KEYS};
use super::secret::secret;
use super::{
    AuthMethod, CredentialConfig, DatabaseConfig, PoolOverrides, PoolSettings, UpstreamTls,
    UserConfig,
};

use super::load::{ConfigError, from_table, invalid, resolve_path, seconds};
use super::pool::pool_settings;

/// What user and database names may hold: no control characters, so a configured name is
/// always safe to put in a log line.
pub(super) const NAME_RULE: &str = "must be a non-empty name without control characters";

pub(super) fn is_name(s: &str) -> bool {
    !s.is_empty() && !s.contains(char::is_control)
}

/// Splits a `[[databases]]` or `[[users]]` table into its own keys (`own`) and pool keys.
pub(super) fn split_pool_keys<'i>(table: DeTable<'i>, own: &[&str]) -> (DeTable<'i>, DeTable<'i>) {
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

pub(super) fn users(
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

// Long on purpose (about 135 lines): the `[[databases]]` keys in file order, each checked where
// it is read; the credential, TLS and dbname rules need the keys read before them.
pub(super) fn database(
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
    super::passthrough::check_database(
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

/// The database on a Lakebase instance or endpoint when `dbname` is not set.
pub(super) const LAKEBASE_DBNAME: &str = "databricks_postgres";

/// A refresh margin must leave at least half the credential's lifetime (the Databricks SDKs
/// cap it at half): Lakebase credentials live at most an hour, an endpoint's `ttl` when set.
/// The refresher also caps it at half of the lifetime each credential really has.
pub(super) fn check_refresh_margin(
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
