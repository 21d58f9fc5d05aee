//! Pool settings: `[pool]` and the per-database and per-user layers over it, each key checked.

use super::PoolSettings;
use super::raw::RawPool;

use super::load::{ConfigError, invalid, positive_seconds, seconds};

/// `raw`'s keys over `defaults`. Each key is checked on its own (no rule spans two keys), so
/// a layer valid over `[pool]` is valid over any database's settings too.
// Long on purpose (about 175 lines): one check per `[pool]` key, in PoolSettings' order. The
// keys are independent, so pieces would only split one table across functions.
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
