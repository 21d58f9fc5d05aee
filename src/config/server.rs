//! `[server]`: listeners, client TLS, client-side limits and timeouts, checked.

use std::path::Path;
use std::time::Duration;

use super::raw::{Listen, RawServer};
use super::secret::secret;
use super::{AuthMethod, ClientTls, ServerConfig, TlsFiles};

use super::load::{ConfigError, addr, invalid, positive_seconds, resolve_path, seconds};

/// PgBouncer's `tcp_defer_accept` on Linux (where the option exists; off elsewhere).
const DEFAULT_TCP_DEFER_ACCEPT: Duration = if cfg!(target_os = "linux") {
    Duration::from_secs(45)
} else {
    Duration::ZERO
};
/// Longest `tcp_defer_accept`: a silent connection keeps its place in the listen backlog that
/// long (the kernel's own cap is 255 SYN-ACK resends, hours).
const MAX_TCP_DEFER_ACCEPT: Duration = Duration::from_secs(3600);

// Long on purpose (about 110 lines): one check per `[server]` key, in ServerConfig's order;
// the keys are independent, so pieces would only split one table across functions.
pub(super) fn server(raw: RawServer, base: &Path) -> Result<ServerConfig, ConfigError> {
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
    let unix_socket_dir = raw
        .unix_socket_dir
        .filter(|d| !d.as_os_str().is_empty())
        .map(|d| resolve_path(base, d));
    // A socket's path has at most 107 bytes (sun_path); the longest name is .s.PGSQL.65535.
    if let Some(d) = &unix_socket_dir
        && d.as_os_str().len() + "/.s.PGSQL.65535".len() > 107
    {
        return Err(invalid(
            "server.unix_socket_dir",
            format!(
                "{} is too long for a socket path (at most 92 bytes)",
                d.display()
            ),
        ));
    }
    let unix_socket_mode = raw.unix_socket_mode.unwrap_or(0o777);
    if unix_socket_mode > 0o777 {
        return Err(invalid(
            "server.unix_socket_mode",
            format!("{unix_socket_mode} is not a permission mode: write it in octal, e.g. 0o770"),
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
        unix_socket_dir,
        unix_socket_mode,
        admin_listen,
        admin_token,
        workers,
        max_client_conn,
        handshake_timeout: positive_seconds(
            "server.handshake_timeout",
            raw.handshake_timeout,
            Duration::from_secs(30),
        )?,
        tcp_defer_accept: at_most(
            "server.tcp_defer_accept",
            seconds(
                "server.tcp_defer_accept",
                raw.tcp_defer_accept,
                DEFAULT_TCP_DEFER_ACCEPT,
            )?,
            MAX_TCP_DEFER_ACCEPT,
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

/// `d`, or an error naming `key` when it is above `max`.
fn at_most(key: &str, d: Duration, max: Duration) -> Result<Duration, ConfigError> {
    if d > max {
        return Err(invalid(
            key,
            format!("must be at most {} seconds", max.as_secs()),
        ));
    }
    Ok(d)
}
