//! Choosing the auth method from the attributes found, as the SDKs' credential chains do.
//!
//! With `auth_type` set, only that method is tried and its missing attributes are named. Without
//! it, attributes of two methods are refused (py `config.py` `_validate`), and the one method
//! whose attributes are set is used; with none, `DATABRICKS_OIDC_TOKEN` (py
//! `credentials_provider.py` `env_oidc` needs only the host), then a `.netrc` token, then an
//! installed `databricks` CLI (go `config/auth_default.go` tries it after OAuth M2M) are
//! looked for. Methods are chosen from attributes alone: nothing here calls a service or runs
//! a program, so a method that cannot get a token fails at its first use with its own error.

use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};

use super::ResolveError;
use super::attrs::{self, Attrs, Found, Origin};
use crate::workspace::host::host_name;
use crate::workspace::methods::{AzureCloud, IMDS_ENDPOINT, IdTokenSource, WorkspaceAuth};

/// The environment variable `env-oidc` reads by default (go `config/auth_oidc.go` `envOIDC`).
pub(super) const DEFAULT_OIDC_TOKEN_ENV: &str = "DATABRICKS_OIDC_TOKEN";

/// The new Go CLI is a single binary over 1 MiB; smaller files named `databricks` are the
/// legacy Python CLI (go `config/cli_token_source.go` `databricksCliMinSize`, py
/// `DatabricksCliTokenSource._find_executable`).
const CLI_MIN_SIZE: u64 = 1024 * 1024;

/// `auth_type` values lakepool does not implement that the SDKs define for Google Cloud.
const GCP_AUTH_TYPES: &[&str] = &["google-credentials", "google-id"];

/// What the method choice needs besides the attributes.
pub(super) struct Inputs<'a> {
    pub attrs: &'a mut Attrs,
    pub host: &'a str,
    pub profile: Option<&'a Found<String>>,
    pub env: &'a dyn Fn(&str) -> Option<String>,
    pub settings: &'a super::WorkspaceSettings,
    /// A `.netrc` token for the host, looked up only when asked.
    pub netrc: &'a mut dyn FnMut() -> Result<Option<Found<SecretString>>, ResolveError>,
}

/// The method and the attributes it used (name, origin) for the `source` description.
pub(super) type Chosen = (WorkspaceAuth, Vec<(&'static str, Origin)>);

/// Picks the method: forced by `auth_type`, else by the attributes set.
pub(super) fn choose(mut i: Inputs<'_>) -> Result<Chosen, ResolveError> {
    if let Some(forced) = i.attrs.plain("auth_type") {
        let name = supported(&forced)?;
        let (auth, mut used) = build(name, &mut i, Some(&forced))?;
        used.push(("auth_type", forced.origin));
        return Ok((auth, used));
    }
    let groups = i.attrs.groups();
    if groups.len() > 1 {
        let names: Vec<&str> = groups.iter().map(|(g, _)| *g).collect();
        let details: Vec<String> = groups.into_iter().flat_map(|(_, d)| d).collect();
        return Err(ResolveError::MoreThanOneMethod {
            names: names.join(" and "),
            details: details.join(", "),
        });
    }
    let name = match groups.first().map(|(g, _)| *g) {
        Some(attrs::PAT) => "pat",
        Some(attrs::OAUTH) => "oauth-m2m",
        Some(attrs::METADATA) => "metadata-service",
        Some(attrs::ENV_OIDC) => "env-oidc",
        Some(attrs::FILE_OIDC) => "file-oidc",
        Some(attrs::AZURE) => azure_method(i.attrs)?,
        Some(_) => return Err(gcp_unsupported(i.attrs)),
        None => return fallback(&mut i),
    };
    build(name, &mut i, None)
}

/// With no method's attributes set: an OIDC token in `DATABRICKS_OIDC_TOKEN`, a `.netrc`
/// token, an installed CLI, in that order.
fn fallback(i: &mut Inputs<'_>) -> Result<Chosen, ResolveError> {
    if (i.env)(DEFAULT_OIDC_TOKEN_ENV).is_some_and(|v| !v.trim().is_empty()) {
        return build("env-oidc", i, None);
    }
    if let Some(t) = (i.netrc)()? {
        return Ok((WorkspaceAuth::Pat(t.value), vec![("token", t.origin)]));
    }
    if let Ok(cli) = find_cli(i.attrs.plain("databricks_cli_path").as_ref(), i.env) {
        let mut used = Vec::new();
        return Ok((cli_auth(cli, i, &mut used), used));
    }
    Err(ResolveError::NoCredentials {
        host: i.host.to_owned(),
        looked_at: String::new(),
    })
}

/// Azure attributes without `auth_type`: managed identity when `azure_use_msi` is true, a
/// service principal when its id and secret are set.
fn azure_method(a: &Attrs) -> Result<&'static str, ResolveError> {
    if use_msi(a)? {
        return Ok("azure-msi");
    }
    match (a.plain("azure_client_id"), a.secret("azure_client_secret")) {
        (Some(_), Some(_)) => Ok("azure-client-secret"),
        (id, secret) => {
            let (present, from) = match (id, secret, a.plain("azure_tenant_id")) {
                (Some(f), _, _) => ("azure_client_id", f.origin),
                (_, Some(f), _) => ("azure_client_secret", f.origin),
                (_, _, Some(f)) => ("azure_tenant_id", f.origin),
                _ => (
                    "azure_workspace_resource_id",
                    a.origin("azure_workspace_resource_id")
                        .cloned()
                        .unwrap_or(Origin::Config),
                ),
            };
            Err(ResolveError::IncompleteAzure {
                present,
                from: from.to_string(),
            })
        }
    }
}

fn use_msi(a: &Attrs) -> Result<bool, ResolveError> {
    match a.plain("azure_use_msi") {
        None => Ok(false),
        Some(f) => attrs::parse_bool(&f.value).ok_or(ResolveError::NotABoolean {
            name: "azure_use_msi",
            from: f.origin.to_string(),
        }),
    }
}

/// The `auth_type` as a supported method name, or why not.
fn supported(forced: &Found<String>) -> Result<&'static str, ResolveError> {
    if let Some(name) = crate::config::AUTH_TYPES
        .iter()
        .find(|t| **t == forced.value)
    {
        return Ok(name);
    }
    if GCP_AUTH_TYPES.contains(&forced.value.as_str()) {
        return Err(ResolveError::GcpUnsupported {
            what: format!("auth_type {:?}", forced.value),
            from: forced.origin.to_string(),
        });
    }
    Err(ResolveError::UnsupportedAuthType {
        auth_type: shown_auth_type(&forced.value),
        from: forced.origin.to_string(),
    })
}

/// Google attributes are set: name one and where it came from.
fn gcp_unsupported(a: &Attrs) -> ResolveError {
    let (name, origin) = ["google_credentials", "google_service_account"]
        .into_iter()
        .find_map(|n| a.origin(n).map(|o| (n, o.to_string())))
        .unwrap_or(("google_credentials", "config".to_owned()));
    ResolveError::GcpUnsupported {
        what: name.to_owned(),
        from: origin,
    }
}

/// The method `name` from the attributes, or which of its attributes are missing.
fn build(
    name: &'static str,
    i: &mut Inputs<'_>,
    forced: Option<&Found<String>>,
) -> Result<Chosen, ResolveError> {
    let mut b = Build {
        a: &*i.attrs,
        name,
        forced,
        used: Vec::new(),
    };
    let auth = match name {
        "pat" => match b.secret("token") {
            Some(t) => WorkspaceAuth::Pat(t),
            None => match (i.netrc)()? {
                Some(t) => {
                    b.used.push(("token", t.origin));
                    WorkspaceAuth::Pat(t.value)
                }
                None => return Err(b.missing("token")),
            },
        },
        "oauth-m2m" => b.oauth_m2m()?,
        "metadata-service" => {
            let url = b
                .secret("metadata_service_url")
                .ok_or_else(|| b.missing("metadata_service_url"))?;
            check_metadata_url(url.expose_secret())?;
            WorkspaceAuth::MetadataService { url }
        }
        "env-oidc" => {
            let var = b
                .take("oidc_token_env")
                .unwrap_or_else(|| DEFAULT_OIDC_TOKEN_ENV.to_owned());
            if (i.env)(&var).is_none_or(|v| v.trim().is_empty()) {
                // go `config/experimental/auth/oidc/oidc.go` NewEnvIDTokenSource.
                return Err(ResolveError::Oidc(format!("missing env var {var:?}")));
            }
            WorkspaceAuth::Oidc {
                source: IdTokenSource::Env(var),
                client_id: b.take("client_id"),
            }
        }
        "file-oidc" => {
            let path = b
                .take("oidc_token_filepath")
                .ok_or_else(|| b.missing("oidc_token_filepath"))?;
            WorkspaceAuth::Oidc {
                source: IdTokenSource::File(PathBuf::from(path)),
                client_id: b.take("client_id"),
            }
        }
        "databricks-cli" => {
            let cli = find_cli(b.a.plain("databricks_cli_path").as_ref(), i.env)?;
            let mut used = b.used;
            return Ok((cli_auth(cli, i, &mut used), used));
        }
        "azure-client-secret" => {
            let (Some(client_id), Some(client_secret)) =
                (b.take("azure_client_id"), b.secret("azure_client_secret"))
            else {
                return Err(b.missing("azure_client_id and azure_client_secret"));
            };
            WorkspaceAuth::AzureClientSecret {
                client_id,
                client_secret,
                tenant_id: b.take("azure_tenant_id"),
                cloud: b.azure_cloud(i.host, i.settings),
            }
        }
        "azure-msi" => WorkspaceAuth::AzureMsi {
            client_id: b.take("azure_client_id"),
            cloud: b.azure_cloud(i.host, i.settings),
            endpoint: i
                .settings
                .sdk
                .azure_msi_endpoint
                .clone()
                .unwrap_or_else(|| IMDS_ENDPOINT.to_owned()),
        },
        _ => {
            return Err(ResolveError::UnsupportedAuthType {
                auth_type: name.to_owned(),
                from: String::new(),
            });
        }
    };
    Ok((auth, b.used))
}

/// Building one method: the attributes, the ones used so far, and how to name a missing one.
struct Build<'a> {
    a: &'a Attrs,
    name: &'static str,
    forced: Option<&'a Found<String>>,
    used: Vec<(&'static str, Origin)>,
}

impl Build<'_> {
    /// A non-secret attribute, recorded as used.
    fn take(&mut self, name: &'static str) -> Option<String> {
        take(self.a, &mut self.used, name)
    }

    /// A secret attribute, recorded as used.
    fn secret(&mut self, name: &'static str) -> Option<SecretString> {
        let f = self.a.secret(name)?;
        self.used.push((name, f.origin));
        Some(f.value)
    }

    /// `missing` is not set: named against `auth_type` when forced. Without `auth_type` only
    /// half of OAuth M2M's pair can be missing (other methods are chosen by their attributes).
    fn missing(&self, missing: &'static str) -> ResolveError {
        match self.forced {
            Some(f) => ResolveError::MissingForAuthType {
                auth_type: self.name,
                from: f.origin.to_string(),
                missing,
            },
            None => ResolveError::IncompleteOAuthM2m {
                present: if missing == "client_id" {
                    "client_secret"
                } else {
                    "client_id"
                },
                from: self
                    .a
                    .origin("client_id")
                    .or_else(|| self.a.origin("client_secret"))
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                missing,
            },
        }
    }

    fn oauth_m2m(&mut self) -> Result<WorkspaceAuth, ResolveError> {
        match (self.take("client_id"), self.secret("client_secret")) {
            (Some(client_id), Some(client_secret)) => Ok(WorkspaceAuth::OAuthM2m {
                client_id,
                client_secret,
            }),
            (Some(_), None) => Err(self.missing("client_secret")),
            (None, Some(_)) => Err(self.missing("client_id")),
            (None, None) => Err(self.missing("client_id and client_secret")),
        }
    }

    fn azure_cloud(&mut self, host: &str, settings: &super::WorkspaceSettings) -> AzureCloud {
        azure_cloud(host, self.a, &mut self.used, settings)
    }
}

/// The Azure cloud: from `azure_environment`/`ARM_ENVIRONMENT`, else the host's DNS zone; a
/// configured `azure_login_endpoint` replaces its Entra ID endpoint.
fn azure_cloud(
    host: &str,
    a: &Attrs,
    used: &mut Vec<(&'static str, Origin)>,
    settings: &super::WorkspaceSettings,
) -> AzureCloud {
    let env = take(a, used, "azure_environment");
    let mut cloud = AzureCloud::for_workspace(host_name(host), env.as_deref());
    if let Some(e) = &settings.sdk.azure_login_endpoint {
        cloud.login_endpoint = format!("{}/", e.trim_end_matches('/'));
    }
    cloud.workspace_resource_id = take(a, used, "azure_workspace_resource_id");
    cloud
}

/// A non-secret attribute's value, recorded as used.
fn take(a: &Attrs, used: &mut Vec<(&'static str, Origin)>, name: &'static str) -> Option<String> {
    let f = a.plain(name)?;
    used.push((name, f.origin));
    Some(f.value)
}

fn cli_auth(cli: PathBuf, i: &Inputs<'_>, used: &mut Vec<(&'static str, Origin)>) -> WorkspaceAuth {
    if let Some(f) = i.attrs.origin("databricks_cli_path") {
        used.push(("databricks_cli_path", f.clone()));
    }
    WorkspaceAuth::DatabricksCli {
        cli,
        profile: i.profile.map(|p| p.value.clone()),
    }
}

/// The `databricks` CLI: `databricks_cli_path` (a bare name is looked up in `PATH`) or
/// `databricks` in `PATH`; files under 1 MiB are the legacy Python CLI and are skipped.
pub(super) fn find_cli(
    configured: Option<&Found<String>>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<PathBuf, ResolveError> {
    let name = configured.map_or("databricks", |f| f.value.as_str());
    if name.contains('/') {
        return check_cli(Path::new(name));
    }
    let mut last = ResolveError::CliNotFound;
    for dir in env("PATH").unwrap_or_default().split(':') {
        if dir.is_empty() {
            continue;
        }
        match check_cli(&Path::new(dir).join(name)) {
            Ok(p) => return Ok(p),
            Err(e @ ResolveError::LegacyCli { .. }) => last = e,
            Err(_) => {}
        }
    }
    Err(last)
}

fn check_cli(path: &Path) -> Result<PathBuf, ResolveError> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() && m.len() >= CLI_MIN_SIZE => Ok(path.to_path_buf()),
        Ok(m) if m.is_file() => Err(ResolveError::LegacyCli {
            path: path.to_path_buf(),
        }),
        _ => Err(ResolveError::CliNotFound),
    }
}

/// The metadata service must be on this machine (go `config/auth_metadata_service.go`:
/// only `localhost` and `127.0.0.1`).
fn check_metadata_url(url: &str) -> Result<(), ResolveError> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or(ResolveError::MetadataUrl("invalid auth server URL"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
    if host.contains('@') {
        return Err(ResolveError::MetadataUrl("invalid auth server URL"));
    }
    if host != "localhost" && host != "127.0.0.1" {
        return Err(ResolveError::MetadataUrl("only localhost URLs are allowed"));
    }
    Ok(())
}

/// An unsupported `auth_type` is shown only when it looks like a method name, in case a secret
/// was pasted into the wrong setting.
pub(super) fn shown_auth_type(value: &str) -> String {
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
