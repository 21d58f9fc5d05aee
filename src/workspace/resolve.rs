//! Where the workspace URL and credentials come from: Databricks unified auth, as the SDKs
//! resolve it, limited to the two methods lakepool speaks (`pat`, `oauth-m2m`).
//!
//! Order per attribute: lakepool's `[workspace]` settings, then `DATABRICKS_*` environment
//! variables, then one profile of `~/.databrickscfg` (which never overrides a value already set),
//! then `.netrc` as the last source of a personal access token. Pure logic: the environment and
//! the home directory are passed in so tests never touch the process state.
//!
//! Values are trimmed, and empty or whitespace-only values count as unset (a stray newline in
//! `DATABRICKS_TOKEN` would otherwise become a confusing 401 much later).
//!
//! Secrets (token, client secret, .netrc passwords) never appear in errors, `Debug` or `source`.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};

use super::ini::{self, IniError, IniFile, SETTINGS_SECTION};
use super::netrc::{self, NetrcError};

const ENV_HOST: &str = "DATABRICKS_HOST";
const ENV_TOKEN: &str = "DATABRICKS_TOKEN";
const ENV_CLIENT_ID: &str = "DATABRICKS_CLIENT_ID";
const ENV_CLIENT_SECRET: &str = "DATABRICKS_CLIENT_SECRET";
const ENV_AUTH_TYPE: &str = "DATABRICKS_AUTH_TYPE";
const ENV_PROFILE: &str = "DATABRICKS_CONFIG_PROFILE";
const ENV_CONFIG_FILE: &str = "DATABRICKS_CONFIG_FILE";
const ENV_NETRC: &str = "NETRC";

/// The profile the SDKs read when none is chosen.
const DEFAULT_PROFILE: &str = "DEFAULT";

/// `auth_type` of a personal access token (SDK name).
const AUTH_PAT: &str = "pat";
/// `auth_type` of service-principal client credentials (SDK name).
const AUTH_M2M: &str = "oauth-m2m";

/// `[workspace]` values from lakepool's config, already read from inline/_file/_env (None = not
/// set); the config type itself, so the two cannot drift apart.
pub type WorkspaceSettings = crate::config::WorkspaceConfig;

/// How lakepool authenticates to the workspace API.
#[derive(Debug)] // Debug must print secrets as [REDACTED] (SecretString does)
pub enum WorkspaceAuth {
    /// Personal access token, sent as `Authorization: Bearer`.
    Pat(SecretString),
    /// Service principal OAuth M2M (client credentials).
    OAuthM2m {
        /// Service principal application id.
        client_id: String,
        /// Service principal OAuth secret.
        client_secret: SecretString,
    },
}

/// The workspace URL and credentials, with where they came from.
#[derive(Debug)]
pub struct ResolvedWorkspace {
    /// Normalised base URL: scheme + host [+ port], no trailing slash, e.g. "https://dbc-123.cloud.databricks.com".
    pub host: String,
    /// The credentials.
    pub auth: WorkspaceAuth,
    /// Where each piece came from, for logs and `SHOW CREDENTIALS`, e.g. "host from config, token from DATABRICKS_TOKEN" / "profile \"prod\" in /root/.databrickscfg" / ".netrc (/root/.netrc)". Never contains a secret.
    pub source: String,
}

/// Resolving the workspace failed. Messages name the setting, file or profile, never a secret.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The host is not a usable workspace URL.
    #[error("invalid workspace host {host:?}: {reason}")]
    InvalidHost {
        /// The host part as given (replaced by a placeholder if it carries user info).
        host: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// No host anywhere.
    #[error("no workspace host: set [workspace] host, DATABRICKS_HOST or a profile's host")]
    NoHost,
    /// The config file could not be read or parsed.
    #[error("Databricks config file: {0}")]
    ConfigFile(IniError),
    /// The `.netrc` could not be read or parsed.
    #[error(".netrc: {0}")]
    Netrc(NetrcError),
    /// A profile was requested but there is no home directory to find `~/.databrickscfg` in.
    #[error(
        "profile {profile:?} was requested ({requested_by}) but the config file location is \
         unknown (no home directory); set [workspace] config_file or DATABRICKS_CONFIG_FILE"
    )]
    ConfigFileUnknown {
        /// The requested profile.
        profile: String,
        /// Which setting requested it.
        requested_by: String,
    },
    /// A profile was requested but the config file does not exist.
    #[error("profile {profile:?} was requested ({requested_by}) but {} does not exist", path.display())]
    ConfigFileMissing {
        /// The requested profile.
        profile: String,
        /// Which setting requested it.
        requested_by: String,
        /// The config file.
        path: PathBuf,
    },
    /// The requested profile is not in the config file.
    #[error(
        "profile {profile:?} (requested by {requested_by}) not found in {}; profiles there: {available}",
        path.display()
    )]
    ProfileNotFound {
        /// The requested profile.
        profile: String,
        /// Which setting requested it.
        requested_by: String,
        /// The config file.
        path: PathBuf,
        /// The profiles the file does have.
        available: String,
    },
    /// `auth_type` names a method lakepool does not implement.
    #[error(
        "auth_type {auth_type:?} (from {from}) is not supported; lakepool supports \"pat\" and \
         \"oauth-m2m\""
    )]
    UnsupportedAuthType {
        /// The value (shown only when it looks like a method name).
        auth_type: String,
        /// Where it came from.
        from: String,
    },
    /// `auth_type` forces a method whose attributes are not all set.
    #[error("auth_type {auth_type:?} (from {from}) needs {missing}, which is not set")]
    MissingForAuthType {
        /// `pat` or `oauth-m2m`.
        auth_type: &'static str,
        /// Where `auth_type` came from.
        from: String,
        /// The missing attribute(s).
        missing: &'static str,
    },
    /// Attributes of both methods are set and `auth_type` does not pick one (Python SDK rule).
    #[error(
        "more than one authorization method configured: pat and oauth-m2m ({details}); set auth_type"
    )]
    MoreThanOneMethod {
        /// Which attributes came from where.
        details: String,
    },
    /// Only half of the client credentials are set.
    #[error(
        "incomplete oauth-m2m credentials: {present} is set (from {from}) but {missing} is not"
    )]
    IncompleteOAuthM2m {
        /// The attribute that is set.
        present: &'static str,
        /// Where it came from.
        from: String,
        /// The attribute that is missing.
        missing: &'static str,
    },
    /// No credentials anywhere.
    #[error(
        "no workspace credentials for {host}: set [workspace] token or client_id + client_secret, \
         or DATABRICKS_TOKEN or DATABRICKS_CLIENT_ID + DATABRICKS_CLIENT_SECRET; looked at: {looked_at}"
    )]
    NoCredentials {
        /// The resolved host.
        host: String,
        /// Each place looked at and what was found there.
        looked_at: String,
    },
}

/// Where one attribute came from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Origin {
    Config,
    Env(&'static str),
    Profile { name: String, path: PathBuf },
    Netrc(PathBuf),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Config => f.write_str("config"),
            Origin::Env(var) => f.write_str(var),
            Origin::Profile { name, path } => write!(f, "profile {name:?} in {}", path.display()),
            Origin::Netrc(path) => write!(f, ".netrc ({})", path.display()),
        }
    }
}

/// A value and where it came from.
struct Found<T> {
    value: T,
    origin: Origin,
}

/// The attributes that the config file may still fill.
#[derive(Default)]
struct Attrs {
    host: Option<Found<String>>,
    token: Option<Found<SecretString>>,
    client_id: Option<Found<String>>,
    client_secret: Option<Found<SecretString>>,
    auth_type: Option<Found<String>>,
}

impl Attrs {
    fn any_auth(&self) -> bool {
        self.token.is_some() || self.client_id.is_some() || self.client_secret.is_some()
    }
}

/// The method the credentials are for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Method {
    Pat,
    OAuthM2m,
}

/// Resolves like the Databricks SDKs: explicit settings, then DATABRICKS_* environment variables, then one profile of the config file, then .netrc (PAT by host) last.
/// `env` looks up environment variables (injected so tests do not touch the process env); `home` is the home directory (None = unknown).
pub fn resolve(
    explicit: &WorkspaceSettings,
    env: &dyn Fn(&str) -> Option<String>,
    home: Option<&Path>,
) -> Result<ResolvedWorkspace, ResolveError> {
    let mut attrs = Attrs {
        host: pick(explicit.host.as_deref(), env, ENV_HOST),
        token: pick_secret(explicit.token.as_ref(), env, ENV_TOKEN),
        client_id: pick(explicit.client_id.as_deref(), env, ENV_CLIENT_ID),
        client_secret: pick_secret(explicit.client_secret.as_ref(), env, ENV_CLIENT_SECRET),
        auth_type: pick(explicit.auth_type.as_deref(), env, ENV_AUTH_TYPE),
    };
    let profile = pick(explicit.profile.as_deref(), env, ENV_PROFILE);
    let config_path = match explicit
        .config_file
        .as_deref()
        .filter(|p| !p.as_os_str().is_empty())
    {
        Some(p) => Some(expand_tilde(p, home)),
        None => match env(ENV_CONFIG_FILE).filter(|v| !v.trim().is_empty()) {
            Some(v) => Some(expand_tilde(Path::new(v.trim()), home)),
            None => home.map(|h| h.join(".databrickscfg")),
        },
    };

    // Notes for the "no credentials" error: each place looked at and what it had.
    let mut looked_at = vec![
        "[workspace] token/client_id/client_secret (not set)".to_owned(),
        format!("{ENV_TOKEN}/{ENV_CLIENT_ID}/{ENV_CLIENT_SECRET} (not set)"),
    ];
    apply_config_file(
        &mut attrs,
        profile.as_ref(),
        config_path.as_deref(),
        &mut looked_at,
    )?;

    let host_found = attrs.host.take().ok_or(ResolveError::NoHost)?;
    let host = normalize_host(&host_found.value)?;

    let forced = match &attrs.auth_type {
        None => None,
        Some(f) => Some(match f.value.as_str() {
            AUTH_PAT => Method::Pat,
            AUTH_M2M => Method::OAuthM2m,
            other => {
                return Err(ResolveError::UnsupportedAuthType {
                    auth_type: shown_auth_type(other),
                    from: f.origin.to_string(),
                });
            }
        }),
    };

    let method = match forced {
        Some(m) => m,
        None => {
            let pat = attrs.token.is_some();
            let m2m = attrs.client_id.is_some() || attrs.client_secret.is_some();
            if pat && m2m {
                let mut parts = Vec::new();
                if let Some(t) = &attrs.token {
                    parts.push(format!("token from {}", t.origin));
                }
                if let Some(c) = &attrs.client_id {
                    parts.push(format!("client_id from {}", c.origin));
                }
                if let Some(c) = &attrs.client_secret {
                    parts.push(format!("client_secret from {}", c.origin));
                }
                return Err(ResolveError::MoreThanOneMethod {
                    details: parts.join(", "),
                });
            }
            if m2m { Method::OAuthM2m } else { Method::Pat }
        }
    };
    let forced_from = || {
        attrs
            .auth_type
            .as_ref()
            .map(|f| f.origin.to_string())
            .unwrap_or_default()
    };

    // (attribute name, origin) of everything used, for `source`.
    let mut used: Vec<(&'static str, Origin)> = vec![("host", host_found.origin)];
    let auth = match method {
        Method::OAuthM2m => match (attrs.client_id.take(), attrs.client_secret.take()) {
            (Some(id), Some(secret)) => {
                used.push(("client_id", id.origin));
                used.push(("client_secret", secret.origin));
                WorkspaceAuth::OAuthM2m {
                    client_id: id.value,
                    client_secret: secret.value,
                }
            }
            (id, secret) => {
                if forced.is_some() {
                    return Err(ResolveError::MissingForAuthType {
                        auth_type: AUTH_M2M,
                        from: forced_from(),
                        missing: match (id.is_some(), secret.is_some()) {
                            (true, _) => "client_secret",
                            (false, true) => "client_id",
                            (false, false) => "client_id and client_secret",
                        },
                    });
                }
                return Err(match (id, secret) {
                    (Some(id), _) => ResolveError::IncompleteOAuthM2m {
                        present: "client_id",
                        from: id.origin.to_string(),
                        missing: "client_secret",
                    },
                    (None, Some(secret)) => ResolveError::IncompleteOAuthM2m {
                        present: "client_secret",
                        from: secret.origin.to_string(),
                        missing: "client_id",
                    },
                    // Unreachable: without either attribute the method would be pat.
                    (None, None) => ResolveError::NoCredentials {
                        host,
                        looked_at: looked_at.join("; "),
                    },
                });
            }
        },
        Method::Pat => {
            let token = match attrs.token.take() {
                Some(t) => Some(t),
                None => from_netrc(&host, env, home, &mut looked_at)?,
            };
            match token {
                Some(t) => {
                    used.push(("token", t.origin));
                    WorkspaceAuth::Pat(t.value)
                }
                None if forced.is_some() => {
                    return Err(ResolveError::MissingForAuthType {
                        auth_type: AUTH_PAT,
                        from: forced_from(),
                        missing: "token",
                    });
                }
                None => {
                    return Err(ResolveError::NoCredentials {
                        host,
                        looked_at: looked_at.join("; "),
                    });
                }
            }
        }
    };
    if let Some(f) = attrs.auth_type.take() {
        used.push(("auth_type", f.origin));
    }

    Ok(ResolvedWorkspace {
        host,
        auth,
        source: describe(&used),
    })
}

/// Reads one profile of the config file into the attributes still unset, following the SDKs'
/// rules on when the file is skipped and which profile is read.
fn apply_config_file(
    attrs: &mut Attrs,
    profile: Option<&Found<String>>,
    path: Option<&Path>,
    looked_at: &mut Vec<String>,
) -> Result<(), ResolveError> {
    let shown_path = path.map_or_else(
        || "~/.databrickscfg".to_owned(),
        |p| p.display().to_string(),
    );
    // databricks-sdk-go #304: settings given directly win over a DEFAULT profile that happens to
    // exist, unless a profile is asked for.
    if profile.is_none() && (attrs.host.is_some() || attrs.any_auth()) {
        looked_at.push(format!(
            "config file {shown_path} (skipped: host or credentials already set and no profile requested)"
        ));
        return Ok(());
    }
    let Some(path) = path else {
        if let Some(p) = profile {
            return Err(ResolveError::ConfigFileUnknown {
                profile: p.value.clone(),
                requested_by: p.origin.to_string(),
            });
        }
        looked_at.push("config file ~/.databrickscfg (home directory unknown)".to_owned());
        return Ok(());
    };
    let Some(file) = ini::read(path).map_err(ResolveError::ConfigFile)? else {
        if let Some(p) = profile {
            return Err(ResolveError::ConfigFileMissing {
                profile: p.value.clone(),
                requested_by: p.origin.to_string(),
                path: path.to_path_buf(),
            });
        }
        looked_at.push(format!("config file {shown_path} (not found)"));
        return Ok(());
    };

    let (name, requested_by) = match profile {
        Some(p) => (p.value.clone(), Some(p.origin.to_string())),
        None => match file.default_profile() {
            Some(d) => (
                d.to_owned(),
                Some(format!("default_profile in [{SETTINGS_SECTION}]")),
            ),
            None => (DEFAULT_PROFILE.to_owned(), None),
        },
    };
    let Some(section) = file.profile(&name) else {
        if let Some(requested_by) = requested_by {
            return Err(ResolveError::ProfileNotFound {
                profile: name,
                requested_by,
                path: path.to_path_buf(),
                available: profile_list(&file),
            });
        }
        looked_at.push(format!(
            "config file {shown_path} (no {DEFAULT_PROFILE} profile)"
        ));
        return Ok(());
    };

    let origin = Origin::Profile {
        name: name.clone(),
        path: path.to_path_buf(),
    };
    let value = |key: &str| {
        section
            .get(key)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    // A file value never overrides one already set.
    fill(&mut attrs.host, value("host"), &origin);
    fill(&mut attrs.client_id, value("client_id"), &origin);
    fill(&mut attrs.auth_type, value("auth_type"), &origin);
    fill(
        &mut attrs.token,
        value("token").map(SecretString::from),
        &origin,
    );
    fill(
        &mut attrs.client_secret,
        value("client_secret").map(SecretString::from),
        &origin,
    );
    looked_at.push(format!("{origin} (no token or client_id/client_secret)"));
    Ok(())
}

/// Sets `slot` from the file when still unset.
fn fill<T>(slot: &mut Option<Found<T>>, value: Option<T>, origin: &Origin) {
    if slot.is_none() {
        *slot = value.map(|value| Found {
            value,
            origin: origin.clone(),
        });
    }
}

/// The config file's profiles for an error message.
fn profile_list(file: &IniFile) -> String {
    let names: Vec<String> = file.profile_names().map(|n| format!("{n:?}")).collect();
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

/// A PAT from `.netrc`: the first entry for the host (a `machine` entry, else `default`) with
/// `login token` and a password. Only the literal login `token` counts, as Databricks documents
/// it, so entries holding other credentials for the same host (e.g. a user's basic-auth
/// password) are never sent as a bearer token.
fn from_netrc(
    host_url: &str,
    env: &dyn Fn(&str) -> Option<String>,
    home: Option<&Path>,
    looked_at: &mut Vec<String>,
) -> Result<Option<Found<SecretString>>, ResolveError> {
    let path = match env(ENV_NETRC).filter(|v| !v.trim().is_empty()) {
        Some(v) => PathBuf::from(v.trim()),
        None => match home {
            Some(h) => h.join(".netrc"),
            None => {
                looked_at.push(".netrc (home directory unknown)".to_owned());
                return Ok(None);
            }
        },
    };
    let Some(file) = netrc::read(&path).map_err(ResolveError::Netrc)? else {
        looked_at.push(format!(".netrc {} (not found)", path.display()));
        return Ok(None);
    };
    let name = host_name(host_url);
    let mut any = false;
    for entry in file.entries_for(name) {
        any = true;
        let Some(password) = &entry.password else {
            continue;
        };
        if entry.login.as_deref() == Some("token") && !password.expose_secret().is_empty() {
            return Ok(Some(Found {
                value: password.clone(),
                origin: Origin::Netrc(path),
            }));
        }
    }
    looked_at.push(if any {
        format!(
            ".netrc {} (entry for {name} has no `login token` with a password)",
            path.display()
        )
    } else {
        format!(".netrc {} (no entry for {name})", path.display())
    });
    Ok(None)
}

/// The host name of a normalised URL: no scheme, no port, no IPv6 brackets.
fn host_name(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    if let Some(v6) = rest.strip_prefix('[') {
        return v6.split(']').next().unwrap_or(v6);
    }
    rest.split(':').next().unwrap_or(rest)
}

/// "host from config, token from DATABRICKS_TOKEN"; a single file profile or .netrc as the only
/// source is named alone.
fn describe(used: &[(&'static str, Origin)]) -> String {
    let mut groups: Vec<(&Origin, Vec<&str>)> = Vec::new();
    for (name, origin) in used {
        match groups.iter_mut().find(|(o, _)| *o == origin) {
            Some((_, names)) => names.push(name),
            None => groups.push((origin, vec![name])),
        }
    }
    if let [(origin @ (Origin::Profile { .. } | Origin::Netrc(_)), _)] = groups.as_slice() {
        return origin.to_string();
    }
    groups
        .iter()
        .map(|(origin, names)| format!("{} from {origin}", join_and(names)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// "a", "a and b", "a, b and c".
fn join_and(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// Explicit setting if non-empty, else the environment variable if non-empty.
fn pick(
    explicit: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
    var: &'static str,
) -> Option<Found<String>> {
    if let Some(v) = explicit.map(str::trim).filter(|v| !v.is_empty()) {
        return Some(Found {
            value: v.to_owned(),
            origin: Origin::Config,
        });
    }
    let v = env(var)?;
    let v = v.trim();
    (!v.is_empty()).then(|| Found {
        value: v.to_owned(),
        origin: Origin::Env(var),
    })
}

/// `pick` for secrets, so the value never sits in a plain `String` longer than needed.
fn pick_secret(
    explicit: Option<&SecretString>,
    env: &dyn Fn(&str) -> Option<String>,
    var: &'static str,
) -> Option<Found<SecretString>> {
    if let Some(s) = explicit {
        let v = s.expose_secret().trim();
        if !v.is_empty() {
            return Some(Found {
                value: SecretString::from(v.to_owned()),
                origin: Origin::Config,
            });
        }
    }
    let v = SecretString::from(env(var)?);
    let trimmed = v.expose_secret().trim();
    (!trimmed.is_empty()).then(|| Found {
        value: SecretString::from(trimmed.to_owned()),
        origin: Origin::Env(var),
    })
}

/// `~` or `~/…` relative to the home directory, as the SDKs expand `config_file`.
fn expand_tilde(path: &Path, home: Option<&Path>) -> PathBuf {
    match (path.strip_prefix("~"), home) {
        (Ok(rest), Some(h)) => h.join(rest),
        _ => path.to_path_buf(),
    }
}

/// An unsupported `auth_type` is shown only when it looks like a method name, in case a secret
/// was pasted into the wrong setting.
fn shown_auth_type(value: &str) -> String {
    let plausible = value.len() <= 40
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if plausible {
        value.to_owned()
    } else {
        "(not shown)".to_owned()
    }
}

/// Validates and normalises a host: adds `https://` when no scheme; only `https://` allowed, except `http://` for loopback hosts (127.0.0.0/8, ::1, localhost) used by tests; strips trailing slash and any path; rejects empty/garbage.
pub fn normalize_host(host: &str) -> Result<String, ResolveError> {
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
    let invalid = |reason: &'static str| ResolveError::InvalidHost {
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

#[cfg(test)]
#[path = "resolve_tests.rs"]
mod tests;
