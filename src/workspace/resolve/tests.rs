//! Tests for `resolve.rs` (kept apart because of their size).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};

use super::*;

mod host;
mod methods;
mod netrc;
mod pat_m2m;
mod profiles;

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
