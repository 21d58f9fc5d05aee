//! Where the workspace URL and credentials come from: Databricks unified auth, as the SDKs
//! resolve it.
//!
//! Order per attribute: lakepool's `[workspace]` settings, then the SDKs' environment variables
//! (`DATABRICKS_*`, `ARM_*`, …), then one profile of `~/.databrickscfg` (which never overrides a
//! value already set), then `.netrc` as the last source of a personal access token. Which auth
//! method the attributes select is decided in [`method`]; the attribute table is in [`attrs`].
//! Pure logic: the environment and the home directory are passed in so tests never touch the
//! process state; only the `databricks` CLI's presence is checked on disk.
//!
//! Values are trimmed, and empty or whitespace-only values count as unset (a stray newline in
//! `DATABRICKS_TOKEN` would otherwise become a confusing 401 much later).
//!
//! Secrets (token, client secrets, .netrc passwords) never appear in errors, `Debug` or
//! `source`.

mod attrs;
mod method;

use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};

use super::host::{InvalidHost, host_name, normalize_host};
use super::ini::{self, IniError, IniFile, SETTINGS_SECTION};
use super::methods::WorkspaceAuth;
use super::netrc::{self, NetrcError};
use attrs::{Attrs, Found, Origin};

const ENV_PROFILE: &str = "DATABRICKS_CONFIG_PROFILE";
const ENV_CONFIG_FILE: &str = "DATABRICKS_CONFIG_FILE";
const ENV_NETRC: &str = "NETRC";

/// The profile the SDKs read when none is chosen.
const DEFAULT_PROFILE: &str = "DEFAULT";

/// Where the SDKs' error messages send users (go `config/auth_default.go` `authDocURL`).
const AUTH_DOC_URL: &str =
    "https://docs.databricks.com/en/dev-tools/auth.html#databricks-client-unified-authentication";

/// `[workspace]` values from lakepool's config, already read from inline/_file/_env (None = not
/// set); the config type itself, so the two cannot drift apart.
pub type WorkspaceSettings = crate::config::WorkspaceConfig;

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
    #[error(transparent)]
    InvalidHost(#[from] InvalidHost),
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
        "auth_type {auth_type:?} (from {from}) is not supported; lakepool supports {}",
        crate::config::AUTH_TYPES.join(", ")
    )]
    UnsupportedAuthType {
        /// The value (shown only when it looks like a method name).
        auth_type: String,
        /// Where it came from.
        from: String,
    },
    /// Google Cloud authentication was asked for.
    #[error(
        "{what} (from {from}) asks for Google Cloud authentication (google-credentials, \
         google-id), which lakepool does not implement; on GCP use a Databricks service \
         principal (oauth-m2m) or workload identity federation (env-oidc, file-oidc); lakepool \
         supports {}",
        crate::config::AUTH_TYPES.join(", ")
    )]
    GcpUnsupported {
        /// The attribute or auth_type.
        what: String,
        /// Where it came from.
        from: String,
    },
    /// `auth_type` forces a method whose attributes are not all set.
    #[error("auth_type {auth_type:?} (from {from}) needs {missing}, which is not set")]
    MissingForAuthType {
        /// The method.
        auth_type: &'static str,
        /// Where `auth_type` came from.
        from: String,
        /// The missing attribute(s).
        missing: &'static str,
    },
    /// Attributes of two methods are set and `auth_type` does not pick one (Python SDK rule).
    #[error("more than one authorization method configured: {names} ({details}); set auth_type")]
    MoreThanOneMethod {
        /// The methods, e.g. "pat and oauth-m2m".
        names: String,
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
    /// Azure attributes without a complete method.
    #[error(
        "incomplete Azure credentials: {present} is set (from {from}); azure-client-secret \
         needs azure_client_id and azure_client_secret (ARM_CLIENT_ID, ARM_CLIENT_SECRET), \
         azure-msi needs azure_use_msi = true (ARM_USE_MSI)"
    )]
    IncompleteAzure {
        /// An attribute that is set.
        present: &'static str,
        /// Where it came from.
        from: String,
    },
    /// A boolean attribute is not a boolean.
    #[error("{name} (from {from}) is not a boolean (true or false)")]
    NotABoolean {
        /// The attribute.
        name: &'static str,
        /// Where it came from.
        from: String,
    },
    /// `databricks-cli`: no CLI (go `config/cli_token_source.go` `ErrCliNotFound`).
    #[error(
        "databricks-cli: databricks CLI not found (set databricks_cli_path or \
         DATABRICKS_CLI_PATH, or put databricks on PATH)"
    )]
    CliNotFound,
    /// `databricks-cli`: only the legacy Python CLI was found.
    #[error(
        "databricks-cli: {} is the legacy databricks CLI (version < 0.100.0); upgrade to >= 0.100.0",
        path.display()
    )]
    LegacyCli {
        /// The file found.
        path: PathBuf,
    },
    /// `metadata-service`: an unusable URL (go `config/auth_metadata_service.go`).
    #[error("metadata-service: {0}")]
    MetadataUrl(&'static str),
    /// `env-oidc` / `file-oidc` cannot start.
    #[error("{0}")]
    Oidc(String),
    /// No credentials anywhere.
    #[error(
        "no workspace credentials for {host}: cannot configure default credentials, please \
         check {AUTH_DOC_URL} to configure credentials for your preferred authentication \
         method (lakepool supports {}); looked at: {looked_at}",
        crate::config::AUTH_TYPES.join(", ")
    )]
    NoCredentials {
        /// The resolved host.
        host: String,
        /// Each place looked at and what was found there.
        looked_at: String,
    },
}

/// Resolves like the Databricks SDKs: explicit settings, then environment variables, then one
/// profile of the config file, then .netrc (PAT by host) last. `env` looks up environment
/// variables (injected so tests do not touch the process env); `home` is the home directory
/// (None = unknown).
pub fn resolve(
    explicit: &WorkspaceSettings,
    env: &dyn Fn(&str) -> Option<String>,
    home: Option<&Path>,
) -> Result<ResolvedWorkspace, ResolveError> {
    let mut attrs = Attrs::explicit_then_env(explicit, env);
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
        "[workspace] (no credentials)".to_owned(),
        "environment: DATABRICKS_TOKEN, DATABRICKS_CLIENT_ID/SECRET, ARM_*, \
         DATABRICKS_OIDC_TOKEN*, DATABRICKS_METADATA_SERVICE_URL (not set)"
            .to_owned(),
    ];
    apply_config_file(
        &mut attrs,
        profile.as_ref(),
        config_path.as_deref(),
        &mut looked_at,
    )?;

    let host_found = attrs.plain("host").ok_or(ResolveError::NoHost)?;
    let host = normalize_host(&host_found.value)?;

    let mut netrc = || from_netrc(&host, env, home, &mut looked_at);
    let chosen = method::choose(method::Inputs {
        attrs: &mut attrs,
        host: &host,
        profile: profile.as_ref(),
        env,
        settings: explicit,
        netrc: &mut netrc,
    });
    let (auth, used) = match chosen {
        Ok(c) => c,
        Err(ResolveError::NoCredentials { host, .. }) => {
            looked_at.push("databricks CLI (not found)".to_owned());
            return Err(ResolveError::NoCredentials {
                host,
                looked_at: looked_at.join("; "),
            });
        }
        Err(e) => return Err(e),
    };
    let mut all = vec![("host", host_found.origin)];
    all.extend(used);
    Ok(ResolvedWorkspace {
        host,
        auth,
        source: describe(&all),
    })
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
    if profile.is_none() && (attrs.has("host") || attrs.any_auth()) {
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
    // A file value never overrides one already set.
    attrs.fill(&|key| section.get(key).map(str::to_owned), &origin);
    looked_at.push(format!("{origin} (no credentials)"));
    Ok(())
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

/// `~` or `~/…` relative to the home directory, as the SDKs expand `config_file`.
fn expand_tilde(path: &Path, home: Option<&Path>) -> PathBuf {
    match (path.strip_prefix("~"), home) {
        (Ok(rest), Some(h)) => h.join(rest),
        _ => path.to_path_buf(),
    }
}

#[cfg(test)]
mod tests;
