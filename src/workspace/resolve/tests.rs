//! Tests for `resolve.rs` (kept apart because of their size).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};

use super::*;

mod methods;

const SECRET: &str = "dapiSECRET123";

/// A temporary home directory with optional `.databrickscfg` and `.netrc`.
struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Self {
        Home {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn cfg_path(&self) -> PathBuf {
        self.path().join(".databrickscfg")
    }

    fn netrc_path(&self) -> PathBuf {
        self.path().join(".netrc")
    }

    fn cfg(self, text: &str) -> Self {
        std::fs::write(self.cfg_path(), text).unwrap();
        self
    }

    fn netrc(self, text: &str) -> Self {
        std::fs::write(self.netrc_path(), text).unwrap();
        self
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

fn run(
    s: &WorkspaceSettings,
    vars: &[(&str, &str)],
    home: &Home,
) -> Result<ResolvedWorkspace, ResolveError> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    resolve(s, &move |k| map.get(k).cloned(), Some(home.path()))
}

fn ok(s: &WorkspaceSettings, vars: &[(&str, &str)], home: &Home) -> ResolvedWorkspace {
    match run(s, vars, home) {
        Ok(r) => r,
        Err(e) => panic!("unexpected error: {e}"),
    }
}

fn err(s: &WorkspaceSettings, vars: &[(&str, &str)], home: &Home) -> ResolveError {
    match run(s, vars, home) {
        Ok(r) => panic!("unexpected success: {r:?}"),
        Err(e) => e,
    }
}

fn secret(s: &str) -> Option<SecretString> {
    Some(SecretString::from(s.to_owned()))
}

fn some(s: &str) -> Option<String> {
    Some(s.to_owned())
}

fn pat(r: &ResolvedWorkspace) -> &str {
    match &r.auth {
        WorkspaceAuth::Pat(t) => t.expose_secret(),
        other => panic!("expected pat, got {other:?}"),
    }
}

fn m2m(r: &ResolvedWorkspace) -> (&str, &str) {
    match &r.auth {
        WorkspaceAuth::OAuthM2m {
            client_id,
            client_secret,
        } => (client_id.as_str(), client_secret.expose_secret()),
        other => panic!("expected oauth-m2m, got {other:?}"),
    }
}

fn host_token(host: &str, token: &str) -> WorkspaceSettings {
    WorkspaceSettings {
        host: some(host),
        token: secret(token),
        ..Default::default()
    }
}

// ---- each source alone ----

#[test]
fn explicit_settings_alone() {
    let home = Home::new();
    let r = ok(
        &host_token("dbc-1.cloud.databricks.com/", "t-explicit"),
        &[],
        &home,
    );
    assert_eq!(r.host, "https://dbc-1.cloud.databricks.com");
    assert_eq!(pat(&r), "t-explicit");
    assert_eq!(r.source, "host and token from config");
}

#[test]
fn environment_alone() {
    let home = Home::new();
    let r = ok(
        &WorkspaceSettings::default(),
        &[
            ("DATABRICKS_HOST", "https://env.example"),
            ("DATABRICKS_TOKEN", "t-env"),
        ],
        &home,
    );
    assert_eq!(r.host, "https://env.example");
    assert_eq!(pat(&r), "t-env");
    assert_eq!(
        r.source,
        "host from DATABRICKS_HOST, token from DATABRICKS_TOKEN"
    );
}

#[test]
fn environment_oauth_m2m_alone() {
    let home = Home::new();
    let r = ok(
        &WorkspaceSettings::default(),
        &[
            ("DATABRICKS_HOST", "env.example"),
            ("DATABRICKS_CLIENT_ID", "sp-id"),
            ("DATABRICKS_CLIENT_SECRET", "sp-secret"),
        ],
        &home,
    );
    assert_eq!(m2m(&r), ("sp-id", "sp-secret"));
    assert_eq!(
        r.source,
        "host from DATABRICKS_HOST, client_id from DATABRICKS_CLIENT_ID, client_secret from DATABRICKS_CLIENT_SECRET"
    );
}

#[test]
fn config_file_default_profile_alone() {
    let home = Home::new().cfg("[DEFAULT]\nhost = https://file.example\ntoken = t-file\n");
    let r = ok(&WorkspaceSettings::default(), &[], &home);
    assert_eq!(r.host, "https://file.example");
    assert_eq!(pat(&r), "t-file");
    assert_eq!(
        r.source,
        format!("profile \"DEFAULT\" in {}", home.cfg_path().display())
    );
}

#[test]
fn config_file_oauth_m2m_profile() {
    let home = Home::new()
        .cfg("[sp]\nhost = https://file.example\nclient_id = id-file\nclient_secret = s-file\n");
    let s = WorkspaceSettings {
        profile: some("sp"),
        ..Default::default()
    };
    let r = ok(&s, &[], &home);
    assert_eq!(m2m(&r), ("id-file", "s-file"));
}

#[test]
fn netrc_alone_for_the_token() {
    let home = Home::new().netrc("machine env.example login token password t-netrc\n");
    let r = ok(
        &WorkspaceSettings::default(),
        &[("DATABRICKS_HOST", "https://env.example")],
        &home,
    );
    assert_eq!(pat(&r), "t-netrc");
    assert_eq!(
        r.source,
        format!(
            "host from DATABRICKS_HOST, token from .netrc ({})",
            home.netrc_path().display()
        )
    );
}

#[test]
fn netrc_with_host_from_profile() {
    let home = Home::new()
        .cfg("[DEFAULT]\nhost = https://file.example\n")
        .netrc("machine file.example login token password t-netrc\n");
    let r = ok(&WorkspaceSettings::default(), &[], &home);
    assert_eq!(pat(&r), "t-netrc");
    assert_eq!(
        r.source,
        format!(
            "host from profile \"DEFAULT\" in {}, token from .netrc ({})",
            home.cfg_path().display(),
            home.netrc_path().display()
        )
    );
}

// ---- precedence ----

#[test]
fn explicit_beats_environment_for_every_attribute() {
    let home = Home::new();
    let other = home.write("other.cfg", "[p1]\nhost = https://p1.example\n");
    let s = WorkspaceSettings {
        host: some("https://explicit.example"),
        profile: some("p1"),
        config_file: Some(other),
        auth_type: some("oauth-m2m"),
        token: None,
        client_id: some("id-explicit"),
        client_secret: secret("s-explicit"),
        ..Default::default()
    };
    let r = ok(
        &s,
        &[
            ("DATABRICKS_HOST", "https://env.example"),
            ("DATABRICKS_CONFIG_PROFILE", "nope"),
            ("DATABRICKS_CONFIG_FILE", "/nonexistent/cfg"),
            ("DATABRICKS_AUTH_TYPE", "pat"),
            ("DATABRICKS_CLIENT_ID", "id-env"),
            ("DATABRICKS_CLIENT_SECRET", "s-env"),
        ],
        &home,
    );
    assert_eq!(r.host, "https://explicit.example");
    assert_eq!(m2m(&r), ("id-explicit", "s-explicit"));
    assert_eq!(
        r.source,
        "host, client_id, client_secret and auth_type from config"
    );

    let r = ok(
        &host_token("https://explicit.example", "t-explicit"),
        &[("DATABRICKS_TOKEN", "t-env")],
        &home,
    );
    assert_eq!(pat(&r), "t-explicit");
}

#[test]
fn environment_beats_file_and_file_never_overrides() {
    let home = Home::new().cfg(
        "[prod]\nhost = https://file.example\ntoken = t-file\nclient_id = id-file\nclient_secret = s-file\nauth_type = oauth-m2m\n",
    );
    let r = ok(
        &WorkspaceSettings::default(),
        &[
            ("DATABRICKS_CONFIG_PROFILE", "prod"),
            ("DATABRICKS_TOKEN", "t-env"),
            ("DATABRICKS_AUTH_TYPE", "pat"),
        ],
        &home,
    );
    // token and auth_type from env; host filled from the file.
    assert_eq!(pat(&r), "t-env");
    assert_eq!(r.host, "https://file.example");
    assert_eq!(
        r.source,
        format!(
            "host from profile \"prod\" in {}, token from DATABRICKS_TOKEN, auth_type from DATABRICKS_AUTH_TYPE",
            home.cfg_path().display()
        )
    );
}

#[test]
fn explicit_beats_file() {
    let home = Home::new()
        .cfg("[prod]\nhost = https://file.example\nclient_id = id-file\nclient_secret = s-file\n");
    let s = WorkspaceSettings {
        host: some("https://explicit.example"),
        profile: some("prod"),
        client_secret: secret("s-explicit"),
        ..Default::default()
    };
    let r = ok(&s, &[], &home);
    assert_eq!(r.host, "https://explicit.example");
    assert_eq!(m2m(&r), ("id-file", "s-explicit"));
}

#[test]
fn file_beats_netrc() {
    let home = Home::new()
        .cfg("[DEFAULT]\nhost = https://h.example\ntoken = t-file\n")
        .netrc("machine h.example login token password t-netrc\n");
    assert_eq!(
        pat(&ok(&WorkspaceSettings::default(), &[], &home)),
        "t-file"
    );
}

#[test]
fn explicit_and_env_beat_netrc_which_is_not_even_read() {
    // A malformed .netrc would fail resolution if it were read.
    let home = Home::new().netrc("login token garbage\n");
    let r = ok(&host_token("h.example", "t-explicit"), &[], &home);
    assert_eq!(pat(&r), "t-explicit");
    let r = ok(
        &WorkspaceSettings::default(),
        &[
            ("DATABRICKS_HOST", "h.example"),
            ("DATABRICKS_TOKEN", "t-env"),
        ],
        &home,
    );
    assert_eq!(pat(&r), "t-env");
    // ... but it is read (and its error reported) when it is needed.
    let e = err(
        &WorkspaceSettings::default(),
        &[("DATABRICKS_HOST", "h.example")],
        &home,
    );
    assert!(matches!(e, ResolveError::Netrc(_)), "{e}");
    assert!(
        e.to_string()
            .contains(&home.netrc_path().display().to_string())
    );
}

#[test]
fn empty_values_count_as_unset() {
    let home = Home::new().cfg("[DEFAULT]\nhost = https://file.example\ntoken = t-file\n");
    let s = WorkspaceSettings {
        host: some(""),
        token: secret("  "),
        profile: some(""),
        ..Default::default()
    };
    let r = ok(
        &s,
        &[("DATABRICKS_HOST", ""), ("DATABRICKS_TOKEN", "")],
        &home,
    );
    assert_eq!(r.host, "https://file.example");
    assert_eq!(pat(&r), "t-file");
    // An empty file value does not count either: the token falls through to .netrc.
    let home = Home::new()
        .cfg("[DEFAULT]\nhost = https://h.example\ntoken =\n")
        .netrc("machine h.example login token password t-netrc\n");
    assert_eq!(
        pat(&ok(&WorkspaceSettings::default(), &[], &home)),
        "t-netrc"
    );
}

#[test]
fn values_are_trimmed() {
    let home = Home::new();
    let r = ok(
        &WorkspaceSettings::default(),
        &[
            ("DATABRICKS_HOST", " https://h.example \n"),
            ("DATABRICKS_TOKEN", "t-env\n"),
        ],
        &home,
    );
    assert_eq!(r.host, "https://h.example");
    assert_eq!(pat(&r), "t-env");
}

// ---- profile selection ----

const PROFILES: &str = "[DEFAULT]\nhost = https://default.example\ntoken = t-default\n\
                        [prod]\nhost = https://prod.example\ntoken = t-prod\n\
                        [dev]\nhost = https://dev.example\ntoken = t-dev\n";

#[test]
fn explicit_profile() {
    let home = Home::new().cfg(PROFILES);
    let s = WorkspaceSettings {
        profile: some("prod"),
        ..Default::default()
    };
    let r = ok(&s, &[("DATABRICKS_CONFIG_PROFILE", "dev")], &home);
    assert_eq!(pat(&r), "t-prod");
    assert_eq!(
        r.source,
        format!("profile \"prod\" in {}", home.cfg_path().display())
    );
}

#[test]
fn env_profile() {
    let home = Home::new().cfg(PROFILES);
    let r = ok(
        &WorkspaceSettings::default(),
        &[("DATABRICKS_CONFIG_PROFILE", "dev")],
        &home,
    );
    assert_eq!(pat(&r), "t-dev");
    assert_eq!(r.host, "https://dev.example");
}

#[test]
fn settings_default_profile() {
    let home = Home::new().cfg(&format!(
        "[__settings__]\ndefault_profile = dev\n{PROFILES}"
    ));
    let r = ok(&WorkspaceSettings::default(), &[], &home);
    assert_eq!(pat(&r), "t-dev");
    // An explicit request still wins over default_profile.
    let r = ok(
        &WorkspaceSettings::default(),
        &[("DATABRICKS_CONFIG_PROFILE", "prod")],
        &home,
    );
    assert_eq!(pat(&r), "t-prod");
}

#[test]
fn default_profile_when_none_requested() {
    let home = Home::new().cfg(PROFILES);
    assert_eq!(
        pat(&ok(&WorkspaceSettings::default(), &[], &home)),
        "t-default"
    );
}

#[test]
fn missing_requested_profile_is_an_error() {
    let home = Home::new().cfg(PROFILES);
    let s = WorkspaceSettings {
        profile: some("staging"),
        ..Default::default()
    };
    let e = err(&s, &[], &home);
    assert!(matches!(e, ResolveError::ProfileNotFound { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("\"staging\""), "{msg}");
    assert!(
        msg.contains(&home.cfg_path().display().to_string()),
        "{msg}"
    );
    assert!(msg.contains("\"prod\""), "{msg}");
}

#[test]
fn missing_default_profile_named_in_settings_is_an_error() {
    let home = Home::new().cfg("[__settings__]\ndefault_profile = gone\n[prod]\nhost = h\n");
    let e = err(&WorkspaceSettings::default(), &[], &home);
    assert!(matches!(e, ResolveError::ProfileNotFound { .. }), "{e:?}");
    assert!(e.to_string().contains("default_profile"), "{e}");
}

#[test]
fn settings_section_is_never_a_profile() {
    let home = Home::new().cfg("[__settings__]\nhost = https://h.example\ntoken = t\n");
    let s = WorkspaceSettings {
        profile: some("__settings__"),
        ..Default::default()
    };
    assert!(matches!(
        err(&s, &[], &home),
        ResolveError::ProfileNotFound { .. }
    ));
}

#[test]
fn default_keys_not_merged_into_requested_profile() {
    let home =
        Home::new().cfg("[DEFAULT]\ntoken = t-default\n[prod]\nhost = https://prod.example\n");
    let s = WorkspaceSettings {
        profile: some("prod"),
        ..Default::default()
    };
    let e = err(&s, &[], &home);
    assert!(matches!(e, ResolveError::NoCredentials { .. }), "{e:?}");
}

#[test]
fn missing_default_profile_is_skipped() {
    let home = Home::new().cfg("[prod]\nhost = https://prod.example\ntoken = t\n");
    let e = err(&WorkspaceSettings::default(), &[], &home);
    assert!(matches!(e, ResolveError::NoHost), "{e:?}");
}

#[test]
fn missing_file_skipped_unless_profile_requested() {
    let home = Home::new();
    let e = err(
        &WorkspaceSettings::default(),
        &[("DATABRICKS_AUTH_TYPE", "pat")],
        &home,
    );
    assert!(matches!(e, ResolveError::NoHost), "{e:?}");
    assert_eq!(
        e.to_string(),
        "no workspace host: set [workspace] host, DATABRICKS_HOST or a profile's host"
    );

    let s = WorkspaceSettings {
        host: some("h.example"),
        profile: some("prod"),
        ..Default::default()
    };
    let e = err(&s, &[], &home);
    assert!(matches!(e, ResolveError::ConfigFileMissing { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("\"prod\"") && msg.contains(".databrickscfg"),
        "{msg}"
    );
}

#[test]
fn config_file_setting_env_and_tilde() {
    let home = Home::new().cfg("[DEFAULT]\nhost = https://wrong.example\ntoken = wrong\n");
    let custom = home.write(
        "custom.cfg",
        "[DEFAULT]\nhost = https://custom.example\ntoken = t-custom\n",
    );
    let s = WorkspaceSettings {
        config_file: Some(custom.clone()),
        ..Default::default()
    };
    assert_eq!(pat(&ok(&s, &[], &home)), "t-custom");
    let r = ok(
        &WorkspaceSettings::default(),
        &[("DATABRICKS_CONFIG_FILE", custom.to_str().unwrap())],
        &home,
    );
    assert_eq!(pat(&r), "t-custom");
    let s = WorkspaceSettings {
        config_file: Some(PathBuf::from("~/custom.cfg")),
        ..Default::default()
    };
    let r = ok(&s, &[], &home);
    assert_eq!(pat(&r), "t-custom");
    assert!(
        r.source.contains(&custom.display().to_string()),
        "{}",
        r.source
    );
}

#[test]
fn unknown_home() {
    let e = resolve(
        &WorkspaceSettings {
            profile: some("prod"),
            ..Default::default()
        },
        &|_| None,
        None,
    )
    .unwrap_err();
    assert!(matches!(e, ResolveError::ConfigFileUnknown { .. }), "{e:?}");
    let e = resolve(
        &WorkspaceSettings {
            host: some("h.example"),
            ..Default::default()
        },
        &|_| None,
        None,
    )
    .unwrap_err();
    assert!(matches!(e, ResolveError::NoCredentials { .. }), "{e:?}");
}

// ---- file skipped (databricks-sdk-go #304) ----

#[test]
fn file_skipped_when_host_set_without_profile() {
    let home = Home::new().cfg("[DEFAULT]\nhost = https://file.example\ntoken = t-file\n");
    let e = err(
        &WorkspaceSettings::default(),
        &[("DATABRICKS_HOST", "https://env.example")],
        &home,
    );
    assert!(matches!(e, ResolveError::NoCredentials { .. }), "{e:?}");
    assert!(e.to_string().contains("skipped"), "{e}");
}

#[test]
fn file_skipped_when_any_auth_attribute_set_without_profile() {
    let home = Home::new().cfg("[DEFAULT]\nhost = https://file.example\ntoken = t-file\n");
    for (var, value) in [
        ("DATABRICKS_TOKEN", "t-env"),
        ("DATABRICKS_CLIENT_ID", "id"),
        ("DATABRICKS_CLIENT_SECRET", "s"),
    ] {
        let e = err(&WorkspaceSettings::default(), &[(var, value)], &home);
        assert!(matches!(e, ResolveError::NoHost), "{var}: {e:?}");
    }
}

#[test]
fn skipped_file_is_not_even_parsed() {
    let home = Home::new().cfg("this is not ini\n");
    let r = ok(&host_token("h.example", "t"), &[], &home);
    assert_eq!(pat(&r), "t");
}

#[test]
fn file_read_when_profile_requested_even_if_host_set() {
    let home = Home::new().cfg("[prod]\nhost = https://file.example\ntoken = t-file\n");
    let s = WorkspaceSettings {
        host: some("https://explicit.example"),
        profile: some("prod"),
        ..Default::default()
    };
    let r = ok(&s, &[], &home);
    assert_eq!(r.host, "https://explicit.example");
    assert_eq!(pat(&r), "t-file");
}

// ---- config file syntax through resolve ----

#[test]
fn malformed_config_file_names_file_and_line() {
    let home = Home::new().cfg("[DEFAULT]\nhost = https://h.example\ndapiSECRET123\n");
    let e = err(&WorkspaceSettings::default(), &[], &home);
    assert!(matches!(e, ResolveError::ConfigFile(_)), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("{}:3", home.cfg_path().display())),
        "{msg}"
    );
    assert!(
        !msg.contains(SECRET) && !format!("{e:?}").contains(SECRET),
        "{msg}"
    );

    let home = Home::new().cfg("no equals sign here\n[DEFAULT]\n");
    let msg = err(&WorkspaceSettings::default(), &[], &home).to_string();
    assert!(msg.contains(".databrickscfg:1"), "{msg}");
}

#[test]
fn inline_comments_in_tokens() {
    let home =
        Home::new().cfg("[DEFAULT]\nhost = https://h.example # workspace\ntoken = abc#def\n");
    let r = ok(&WorkspaceSettings::default(), &[], &home);
    assert_eq!(pat(&r), "abc#def");
    assert_eq!(r.host, "https://h.example");
    let home = Home::new().cfg("[DEFAULT]\nhost = https://h.example\ntoken = abc # comment\n");
    assert_eq!(pat(&ok(&WorkspaceSettings::default(), &[], &home)), "abc");
}

// ---- .netrc ----

#[test]
fn netrc_lookup_by_host_name_without_scheme_and_port() {
    let home = Home::new().netrc(
        "machine a.example login token password pA\n\
         machine h.example login token password pH\n",
    );
    let r = ok(
        &WorkspaceSettings::default(),
        &[("DATABRICKS_HOST", "https://H.example:8443/some/path")],
        &home,
    );
    assert_eq!(r.host, "https://h.example:8443");
    assert_eq!(pat(&r), "pH");
}

#[test]
fn netrc_default_entry() {
    let home = Home::new()
        .netrc("machine a.example login token password pA\ndefault login token password pD\n");
    let r = ok(
        &WorkspaceSettings::default(),
        &[("DATABRICKS_HOST", "z.example")],
        &home,
    );
    assert_eq!(pat(&r), "pD");
}

#[test]
fn netrc_macdef_body_is_skipped() {
    let home = Home::new().netrc(
        "macdef init\nmachine h.example login token password pMacro\n\n\
         machine other.example login token password pO\n",
    );
    let e = err(
        &WorkspaceSettings::default(),
        &[("DATABRICKS_HOST", "h.example")],
        &home,
    );
    assert!(matches!(e, ResolveError::NoCredentials { .. }), "{e:?}");
    assert!(e.to_string().contains("no entry for h.example"), "{e}");
}

#[test]
fn netrc_only_login_token_counts() {
    let home = Home::new().netrc(
        "machine h.example login alice password pw-alice\ndefault login token password pD\n",
    );
    // The basic-auth entry for the host is passed over; default with login token applies.
    let r = ok(
        &WorkspaceSettings::default(),
        &[("DATABRICKS_HOST", "h.example")],
        &home,
    );
    assert_eq!(pat(&r), "pD");

    let home = Home::new().netrc("machine h.example login alice password pw-alice\n");
    let e = err(
        &WorkspaceSettings::default(),
        &[("DATABRICKS_HOST", "h.example")],
        &home,
    );
    let msg = e.to_string();
    assert!(msg.contains("login token"), "{msg}");
    assert!(!msg.contains("pw-alice"), "{msg}");
}

#[test]
fn netrc_env_var_path() {
    let home = Home::new().netrc("machine h.example login token password p-home\n");
    let other = home.write("my-netrc", "machine h.example login token password p-env\n");
    let r = ok(
        &WorkspaceSettings::default(),
        &[
            ("DATABRICKS_HOST", "h.example"),
            ("NETRC", other.to_str().unwrap()),
        ],
        &home,
    );
    assert_eq!(pat(&r), "p-env");
    assert!(r.source.contains("my-netrc"), "{}", r.source);
}

// ---- methods ----

#[test]
fn more_than_one_method_is_an_error() {
    let home = Home::new();
    let s = WorkspaceSettings {
        host: some("h.example"),
        client_id: some("id"),
        ..Default::default()
    };
    let e = err(&s, &[("DATABRICKS_TOKEN", SECRET)], &home);
    assert!(matches!(e, ResolveError::MoreThanOneMethod { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.starts_with("more than one authorization method configured: pat and oauth-m2m"),
        "{msg}"
    );
    assert!(msg.contains("set auth_type"), "{msg}");
    assert!(
        msg.contains("DATABRICKS_TOKEN") && msg.contains("client_id from config"),
        "{msg}"
    );
    assert!(!msg.contains(SECRET) && !format!("{e:?}").contains(SECRET));

    // Token + client_secret alone counts too; so does a token from the profile.
    let s = host_token("h.example", "t");
    let e = err(&s, &[("DATABRICKS_CLIENT_SECRET", SECRET)], &home);
    assert!(matches!(e, ResolveError::MoreThanOneMethod { .. }), "{e:?}");
    let home = Home::new().cfg("[p]\ntoken = t\n");
    let s = WorkspaceSettings {
        host: some("h.example"),
        profile: some("p"),
        client_id: some("id"),
        client_secret: secret("s"),
        ..Default::default()
    };
    assert!(matches!(
        err(&s, &[], &home),
        ResolveError::MoreThanOneMethod { .. }
    ));
}

#[test]
fn auth_type_forces_one_method() {
    let home = Home::new();
    let both = WorkspaceSettings {
        host: some("h.example"),
        token: secret("t"),
        client_id: some("id"),
        client_secret: secret("s"),
        ..Default::default()
    };
    let r = ok(
        &WorkspaceSettings {
            auth_type: some("pat"),
            ..both.clone()
        },
        &[],
        &home,
    );
    assert_eq!(pat(&r), "t");
    let r = ok(&both, &[("DATABRICKS_AUTH_TYPE", "oauth-m2m")], &home);
    assert_eq!(m2m(&r), ("id", "s"));
    assert!(
        r.source.contains("auth_type from DATABRICKS_AUTH_TYPE"),
        "{}",
        r.source
    );
}

#[test]
fn auth_type_with_missing_attributes() {
    let home = Home::new();
    let s = WorkspaceSettings {
        host: some("h.example"),
        auth_type: some("oauth-m2m"),
        client_id: some("id"),
        token: secret(SECRET),
        ..Default::default()
    };
    let e = err(&s, &[], &home);
    assert!(
        matches!(
            e,
            ResolveError::MissingForAuthType {
                missing: "client_secret",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("client_secret"));
    assert!(!e.to_string().contains(SECRET));

    let s = WorkspaceSettings {
        host: some("h.example"),
        auth_type: some("oauth-m2m"),
        ..Default::default()
    };
    let e = err(&s, &[], &home);
    assert!(matches!(
        e,
        ResolveError::MissingForAuthType {
            missing: "client_id and client_secret",
            ..
        }
    ));

    let s = WorkspaceSettings {
        host: some("h.example"),
        auth_type: some("pat"),
        client_id: some("id"),
        client_secret: secret("s"),
        ..Default::default()
    };
    let e = err(&s, &[], &home);
    assert!(
        matches!(
            e,
            ResolveError::MissingForAuthType {
                auth_type: "pat",
                missing: "token",
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn auth_type_pat_may_use_netrc() {
    let home = Home::new().netrc("machine h.example login token password t-netrc\n");
    let s = WorkspaceSettings {
        host: some("h.example"),
        auth_type: some("pat"),
        ..Default::default()
    };
    assert_eq!(pat(&ok(&s, &[], &home)), "t-netrc");
}

#[test]
fn unsupported_auth_type_names_its_source() {
    let home = Home::new().cfg("[DEFAULT]\nhost = https://h.example\nauth_type = azure-cli\n");
    let e = err(&WorkspaceSettings::default(), &[], &home);
    assert!(
        matches!(e, ResolveError::UnsupportedAuthType { .. }),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("azure-cli") && msg.contains("profile \"DEFAULT\""),
        "{msg}"
    );
    // The message lists what is supported.
    assert!(
        msg.contains("databricks-cli") && msg.contains("file-oidc"),
        "{msg}"
    );

    let s = WorkspaceSettings {
        host: some("h.example"),
        auth_type: some("dapiSECRET123 oops"),
        ..Default::default()
    };
    let e = err(&s, &[], &home);
    assert!(!e.to_string().contains(SECRET), "{e}");
}

#[test]
fn incomplete_client_credentials() {
    let home = Home::new();
    let s = WorkspaceSettings {
        host: some("h.example"),
        client_id: some("id"),
        ..Default::default()
    };
    let e = err(&s, &[], &home);
    assert!(
        matches!(
            e,
            ResolveError::IncompleteOAuthM2m {
                missing: "client_secret",
                ..
            }
        ),
        "{e:?}"
    );
    let e = err(
        &WorkspaceSettings {
            host: some("h.example"),
            ..Default::default()
        },
        &[("DATABRICKS_CLIENT_SECRET", SECRET)],
        &home,
    );
    assert!(
        matches!(
            e,
            ResolveError::IncompleteOAuthM2m {
                missing: "client_id",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("DATABRICKS_CLIENT_SECRET"));
    assert!(!e.to_string().contains(SECRET));
}

#[test]
fn no_credentials_lists_places_looked_at() {
    let home = Home::new().cfg("[DEFAULT]\nhost = https://h.example\n");
    let e = err(&WorkspaceSettings::default(), &[], &home);
    let msg = e.to_string();
    assert!(msg.contains("https://h.example"), "{msg}");
    assert!(msg.contains("DATABRICKS_TOKEN"), "{msg}");
    assert!(msg.contains("profile \"DEFAULT\""), "{msg}");
    assert!(msg.contains(".netrc") && msg.contains("not found"), "{msg}");
}

// ---- host normalisation ----

#[test]
fn normalize_host_cases() {
    let good = [
        (
            "dbc-123.cloud.databricks.com",
            "https://dbc-123.cloud.databricks.com",
        ),
        (
            "https://dbc-123.cloud.databricks.com/",
            "https://dbc-123.cloud.databricks.com",
        ),
        (
            "HTTPS://Adb-1.2.AzureDatabricks.NET",
            "https://adb-1.2.azuredatabricks.net",
        ),
        ("https://h.example/?o=123#x", "https://h.example"),
        ("https://h.example/some/path/", "https://h.example"),
        ("h.example:8443", "https://h.example:8443"),
        ("  https://h.example  ", "https://h.example"),
        ("http://localhost:8080/", "http://localhost:8080"),
        ("http://127.0.0.1:9000", "http://127.0.0.1:9000"),
        ("http://127.1.2.3", "http://127.1.2.3"),
        ("http://[::1]:9000/x", "http://[::1]:9000"),
        ("https://[2001:db8::1]", "https://[2001:db8::1]"),
    ];
    for (input, want) in good {
        match normalize_host(input) {
            Ok(got) => assert_eq!(got, want, "{input}"),
            Err(e) => panic!("{input}: {e}"),
        }
    }
    let bad = [
        "",
        "   ",
        "https://",
        "https:///path",
        "ftp://h.example",
        "://h.example",
        "http://h.example",
        "http://10.0.0.1",
        "http://localhost.evil.example",
        "h ex ample",
        "https://h..example",
        "https://h.example:",
        "https://h.example:0",
        "https://h.example:65536",
        "https://h.example:80x",
        "https://[::1",
        "https://[nonsense]",
        "::1",
        "https://user:pw@h.example",
    ];
    for input in bad {
        assert!(
            matches!(normalize_host(input), Err(InvalidHost { .. })),
            "{input:?} accepted"
        );
    }
}

#[test]
fn invalid_host_never_shows_user_info() {
    let e = normalize_host("https://token:dapiSECRET123@h.example").unwrap_err();
    assert!(!e.to_string().contains(SECRET), "{e}");
    assert!(!format!("{e:?}").contains(SECRET), "{e:?}");
}

#[test]
fn invalid_host_from_resolve_names_the_value() {
    let home = Home::new();
    let e = err(&host_token("http://h.example", "t"), &[], &home);
    assert!(e.to_string().contains("h.example"), "{e}");
    assert!(e.to_string().contains("https"), "{e}");
}

// ---- secrets never leak ----

#[test]
fn debug_and_source_never_show_secrets() {
    let home = Home::new();
    let s = WorkspaceSettings {
        host: some("h.example"),
        token: secret(SECRET),
        client_secret: secret(SECRET),
        auth_type: some("pat"),
        ..Default::default()
    };
    assert!(!format!("{s:?}").contains(SECRET));
    let r = ok(&s, &[], &home);
    assert_eq!(pat(&r), SECRET);
    let dbg = format!("{r:?}");
    assert!(!dbg.contains(SECRET), "{dbg}");
    assert!(dbg.contains("REDACTED"), "{dbg}");
    assert!(!r.source.contains(SECRET));

    let r = ok(
        &WorkspaceSettings::default(),
        &[
            ("DATABRICKS_HOST", "h.example"),
            ("DATABRICKS_CLIENT_ID", "id"),
            ("DATABRICKS_CLIENT_SECRET", SECRET),
        ],
        &home,
    );
    assert_eq!(m2m(&r).1, SECRET);
    assert!(!format!("{r:?} {:?} {}", r.auth, r.source).contains(SECRET));

    let home = Home::new()
        .cfg(&format!(
            "[DEFAULT]\nhost = https://h.example\ntoken = {SECRET}\n"
        ))
        .netrc(&format!(
            "machine h.example login token password {SECRET}\n"
        ));
    let r = ok(&WorkspaceSettings::default(), &[], &home);
    assert!(!format!("{r:?} {}", r.source).contains(SECRET));
}
