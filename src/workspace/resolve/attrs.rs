//! The unified-auth attributes: their SDK names, environment variables, the method each
//! belongs to, and where each value was found.
//!
//! Names and variables follow the SDKs' attribute tables: go `config/config.go` (struct tags
//! `name:"…" env:"…" auth:"…"`) and py `databricks/sdk/config.py` (`ConfigAttribute(env=…,
//! auth=…)`). The `group` is the SDKs' `auth` tag: attributes of two groups set at once
//! without an `auth_type` are refused (py `config.py` `_validate`).

use std::fmt;
use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};

use super::WorkspaceSettings;

/// One attribute as the SDKs define it.
pub(super) struct Attr {
    /// Name in lakepool's `[workspace]`, in `~/.databrickscfg` and in the SDKs.
    pub name: &'static str,
    /// Environment variables, the first one preferred (later ones are the SDKs' aliases).
    pub env: &'static [&'static str],
    /// The auth method family it configures (the SDKs' `auth` tag), if any.
    pub group: Option<&'static str>,
}

const fn attr(
    name: &'static str,
    env: &'static [&'static str],
    group: Option<&'static str>,
) -> Attr {
    Attr { name, env, group }
}

/// Method families, in the order errors name them.
pub(super) const PAT: &str = "pat";
pub(super) const OAUTH: &str = "oauth-m2m";
pub(super) const AZURE: &str = "azure";
pub(super) const METADATA: &str = "metadata-service";
pub(super) const ENV_OIDC: &str = "env-oidc";
pub(super) const FILE_OIDC: &str = "file-oidc";
pub(super) const GOOGLE: &str = "google";
const GROUP_ORDER: &[&str] = &[PAT, OAUTH, METADATA, ENV_OIDC, FILE_OIDC, AZURE, GOOGLE];

/// Every attribute lakepool reads from the environment and from a profile. Secrets among
/// them: `token`, `client_secret`, `azure_client_secret`, `metadata_service_url` (may hold a
/// session secret in its path) and `google_credentials`.
pub(super) const ATTRS: &[Attr] = &[
    attr("host", &["DATABRICKS_HOST"], None),
    attr("token", &["DATABRICKS_TOKEN"], Some(PAT)),
    attr("client_id", &["DATABRICKS_CLIENT_ID"], Some(OAUTH)),
    attr("client_secret", &["DATABRICKS_CLIENT_SECRET"], Some(OAUTH)),
    attr("auth_type", &["DATABRICKS_AUTH_TYPE"], None),
    attr("azure_client_id", &["ARM_CLIENT_ID"], Some(AZURE)),
    attr("azure_client_secret", &["ARM_CLIENT_SECRET"], Some(AZURE)),
    attr("azure_tenant_id", &["ARM_TENANT_ID"], Some(AZURE)),
    attr("azure_use_msi", &["ARM_USE_MSI"], Some(AZURE)),
    attr(
        "azure_workspace_resource_id",
        &["DATABRICKS_AZURE_RESOURCE_ID"],
        Some(AZURE),
    ),
    attr("azure_environment", &["ARM_ENVIRONMENT"], None),
    attr("databricks_cli_path", &["DATABRICKS_CLI_PATH"], None),
    // Sensitive in the Python SDK: the URL may carry a session secret in its path.
    attr(
        "metadata_service_url",
        &["DATABRICKS_METADATA_SERVICE_URL"],
        Some(METADATA),
    ),
    attr(
        "oidc_token_env",
        &["DATABRICKS_OIDC_TOKEN_ENV"],
        Some(ENV_OIDC),
    ),
    attr(
        "oidc_token_filepath",
        &[
            "DATABRICKS_OIDC_TOKEN_FILEPATH",
            "DATABRICKS_OIDC_TOKEN_FILE",
        ],
        Some(FILE_OIDC),
    ),
    attr(
        "google_service_account",
        &["DATABRICKS_GOOGLE_SERVICE_ACCOUNT"],
        Some(GOOGLE),
    ),
    attr("google_credentials", &["GOOGLE_CREDENTIALS"], Some(GOOGLE)),
];

fn def(name: &str) -> Option<&'static Attr> {
    ATTRS.iter().find(|a| a.name == name)
}

/// Where one attribute came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Origin {
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
#[derive(Debug, Clone)]
pub(super) struct Found<T> {
    pub value: T,
    pub origin: Origin,
}

/// The attributes found so far (each at most once: the first source to set one wins). Every
/// value is kept as a secret, so none can reach a `Debug` or log line by mistake.
#[derive(Default)]
pub(super) struct Attrs {
    found: Vec<(&'static str, Found<SecretString>)>,
}

impl Attrs {
    /// Explicit `[workspace]` settings, then the environment, for every attribute.
    pub fn explicit_then_env(
        explicit: &WorkspaceSettings,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Self {
        let mut attrs = Attrs::default();
        for a in ATTRS {
            let from_config = explicit_value(explicit, a.name)
                .map(|v| trimmed(v.expose_secret()))
                .filter(|v| !v.is_empty());
            if let Some(v) = from_config {
                attrs.set(a.name, SecretString::from(v), Origin::Config);
                continue;
            }
            for var in a.env {
                if let Some(v) = env(var).map(|v| trimmed(&v)).filter(|v| !v.is_empty()) {
                    attrs.set(a.name, SecretString::from(v), Origin::Env(var));
                    break;
                }
            }
        }
        attrs
    }

    fn set(&mut self, name: &'static str, value: SecretString, origin: Origin) {
        self.found.push((name, Found { value, origin }));
    }

    /// Fills the attributes still unset from a profile (`get` reads one of its keys).
    pub fn fill(&mut self, get: &dyn Fn(&str) -> Option<String>, origin: &Origin) {
        for a in ATTRS {
            if self.has(a.name) {
                continue;
            }
            if let Some(v) = get(a.name).map(|v| trimmed(&v)).filter(|v| !v.is_empty()) {
                self.set(a.name, SecretString::from(v), origin.clone());
            }
        }
    }

    /// Whether `name` is set.
    pub fn has(&self, name: &str) -> bool {
        self.found.iter().any(|(n, _)| *n == name)
    }

    /// A non-secret attribute's value.
    pub fn plain(&self, name: &str) -> Option<Found<String>> {
        self.raw(name).map(|f| Found {
            value: f.value.expose_secret().to_owned(),
            origin: f.origin.clone(),
        })
    }

    /// A secret attribute's value.
    pub fn secret(&self, name: &str) -> Option<Found<SecretString>> {
        self.raw(name).cloned()
    }

    /// Where `name` came from, if set.
    pub fn origin(&self, name: &str) -> Option<&Origin> {
        self.raw(name).map(|f| &f.origin)
    }

    fn raw(&self, name: &str) -> Option<&Found<SecretString>> {
        self.found.iter().find(|(n, _)| *n == name).map(|(_, f)| f)
    }

    /// Whether any attribute of an auth method is set (go issue #304: then the config file's
    /// DEFAULT profile is not read unless a profile is asked for).
    pub fn any_auth(&self) -> bool {
        self.found
            .iter()
            .any(|(n, _)| def(n).is_some_and(|a| a.group.is_some()))
    }

    /// The method families with attributes set, in [`GROUP_ORDER`], each with "name from
    /// origin" of its attributes.
    pub fn groups(&self) -> Vec<(&'static str, Vec<String>)> {
        let mut out: Vec<(&'static str, Vec<String>)> = Vec::new();
        for g in GROUP_ORDER {
            let names: Vec<String> = self
                .found
                .iter()
                .filter(|(n, _)| def(n).and_then(|a| a.group) == Some(g))
                .map(|(n, f)| format!("{n} from {}", f.origin))
                .collect();
            if !names.is_empty() {
                out.push((g, names));
            }
        }
        out
    }
}

/// A setting's value as configured in `[workspace]`, by SDK name.
fn explicit_value(s: &WorkspaceSettings, name: &str) -> Option<SecretString> {
    let plain = |v: &Option<String>| v.as_ref().map(|v| SecretString::from(v.clone()));
    let x = &s.sdk;
    match name {
        "host" => plain(&s.host),
        "token" => s.token.clone(),
        "client_id" => plain(&s.client_id),
        "client_secret" => s.client_secret.clone(),
        "auth_type" => plain(&s.auth_type),
        "azure_client_id" => plain(&x.azure_client_id),
        "azure_client_secret" => x.azure_client_secret.clone(),
        "azure_tenant_id" => plain(&x.azure_tenant_id),
        "azure_use_msi" => x.azure_use_msi.map(|b| SecretString::from(b.to_string())),
        "azure_workspace_resource_id" => plain(&x.azure_workspace_resource_id),
        "azure_environment" => plain(&x.azure_environment),
        "databricks_cli_path" => plain(&x.databricks_cli_path),
        "metadata_service_url" => plain(&x.metadata_service_url),
        "oidc_token_env" => plain(&x.oidc_token_env),
        "oidc_token_filepath" => x
            .oidc_token_filepath
            .as_ref()
            .map(|p| SecretString::from(p.display().to_string())),
        _ => None,
    }
}

fn trimmed(v: &str) -> String {
    v.trim().to_owned()
}

/// A boolean as the Go SDK parses it (`strconv.ParseBool`).
pub(super) fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}
