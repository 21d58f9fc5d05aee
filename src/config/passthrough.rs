//! Per-identity pass-through keys: `passthrough = true` on a `[[databases]]` entry, and the
//! client-token cache settings of `[workspace]`.

use super::load::invalid;
use super::{ClientTls, ConfigError, DatabaseConfig, ServerConfig};

/// Default `workspace.passthrough_cache_size`.
const CACHE_SIZE: usize = 10_000;

/// `passthrough = true` needs a Lakebase target, and leaves the role and the client
/// authentication to each client's identity and token.
pub(super) fn check_database(
    key: &str,
    passthrough: bool,
    rotating: bool,
    user: Option<&str>,
    auth: bool,
) -> Result<(), ConfigError> {
    if !passthrough {
        return Ok(());
    }
    let problem = if !rotating {
        Some((
            "passthrough",
            "needs a Lakebase database (instance or endpoint): the credential is minted with \
             each client's own Databricks token",
        ))
    } else if user.is_some_and(|u| !u.is_empty()) {
        Some((
            "user",
            "cannot be combined with passthrough = true: the upstream role is each client's \
             own Databricks identity",
        ))
    } else if auth {
        Some((
            "auth",
            "does not apply with passthrough = true: clients send their Databricks token as a \
             cleartext password over TLS",
        ))
    } else {
        None
    };
    match problem {
        Some((k, p)) => Err(invalid(format!("{key}.{k}"), p)),
        None => Ok(()),
    }
}

/// Pass-through clients send a token as a cleartext password: refused without client TLS or
/// the Unix socket (which TCP clients without TLS still cannot use for it).
pub(super) fn check_client_tls(
    server: &ServerConfig,
    databases: &[DatabaseConfig],
) -> Result<(), ConfigError> {
    match databases.iter().position(|d| d.passthrough) {
        Some(i)
            if (server.tls.is_none() || server.client_tls == ClientTls::Disable)
                && server.unix_socket_dir.is_none() =>
        {
            Err(invalid(
                format!("databases[{i}].passthrough"),
                "pass-through clients send a Databricks token, which lakepool accepts over TLS \
                 or its Unix socket only: set server.tls_cert_file and server.tls_key_file \
                 (client_tls prefer or require), or server.unix_socket_dir",
            ))
        }
        _ => Ok(()),
    }
}

/// `workspace.passthrough_cache_size`: at least 1.
pub(super) fn cache_size(raw: Option<usize>) -> Result<usize, ConfigError> {
    match raw.unwrap_or(CACHE_SIZE) {
        0 => Err(invalid(
            "workspace.passthrough_cache_size",
            "must be at least 1",
        )),
        n => Ok(n),
    }
}

#[cfg(test)]
#[path = "passthrough_tests.rs"]
mod tests;
