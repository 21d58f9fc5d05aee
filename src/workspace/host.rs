//! The workspace URL: validation and normalisation, its host name, loopback checks.

use std::net::{Ipv4Addr, Ipv6Addr};

/// The host is not a usable workspace URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid workspace host {host:?}: {reason}")]
pub struct InvalidHost {
    /// The host part as given (replaced by a placeholder if it carries user info).
    pub host: String,
    /// What is wrong.
    pub reason: &'static str,
}

/// Validates and normalises a host: adds `https://` when no scheme; only `https://` allowed, except `http://` for loopback hosts (127.0.0.0/8, ::1, localhost) used by tests; strips trailing slash and any path; rejects empty/garbage.
pub fn normalize_host(host: &str) -> Result<String, InvalidHost> {
    let input = host.trim();
    let (scheme, rest) = match input.split_once("://") {
        Some((s, r)) => (s.to_ascii_lowercase(), r),
        None => ("https".to_owned(), input),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    // User info may be a password: never echo it.
    let shown = if authority.contains('@') {
        "(not shown: contains user info)".to_owned()
    } else {
        authority.to_owned()
    };
    let invalid = |reason: &'static str| InvalidHost {
        host: shown.clone(),
        reason,
    };
    if input.is_empty() {
        return Err(invalid("empty"));
    }
    if scheme != "https" && scheme != "http" {
        return Err(invalid("the scheme must be https://"));
    }
    if authority.is_empty() {
        return Err(invalid("no host name"));
    }
    if authority.contains('@') {
        return Err(invalid("user info (user:password@) is not allowed"));
    }

    let (name, port, loopback) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (addr, after) = bracketed
            .split_once(']')
            .ok_or_else(|| invalid("IPv6 address without closing `]`"))?;
        let addr: Ipv6Addr = addr.parse().map_err(|_| invalid("invalid IPv6 address"))?;
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| invalid("unexpected text after IPv6 address"))?,
            ),
        };
        (format!("[{addr}]"), port, addr.is_loopback())
    } else {
        let (name, port) = match authority.split_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (authority, None),
        };
        if port.is_some_and(|p| p.contains(':')) {
            return Err(invalid("IPv6 addresses must be in brackets"));
        }
        let name = name.to_ascii_lowercase();
        let valid = !name.is_empty()
            && name.len() <= 253
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            });
        if !valid {
            return Err(invalid("not a valid host name"));
        }
        let loopback =
            name == "localhost" || name.parse::<Ipv4Addr>().is_ok_and(|a| a.is_loopback());
        (name, port, loopback)
    };
    let port = match port {
        None => String::new(),
        Some(p) => {
            let n: u16 = if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) {
                p.parse().map_err(|_| invalid("invalid port"))?
            } else {
                return Err(invalid("invalid port"));
            };
            if n == 0 {
                return Err(invalid("invalid port"));
            }
            format!(":{n}")
        }
    };
    if scheme == "http" && !loopback {
        return Err(invalid(
            "http:// is only allowed for loopback hosts; use https://",
        ));
    }
    Ok(format!("{scheme}://{name}{port}"))
}

/// The host name of a normalised URL: no scheme, no port, no IPv6 brackets.
pub fn host_name(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    if let Some(v6) = rest.strip_prefix('[') {
        return v6.split(']').next().unwrap_or(v6);
    }
    rest.split(':').next().unwrap_or(rest)
}

/// Whether a host name (no brackets) is a loopback name or address, where tests may use
/// plain `http://`.
pub fn is_loopback(name: &str) -> bool {
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<Ipv4Addr>().is_ok_and(|a| a.is_loopback())
        || name.parse::<Ipv6Addr>().is_ok_and(|a| a.is_loopback())
}
