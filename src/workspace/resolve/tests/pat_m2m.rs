//! PAT and OAuth M2M: the one-method rule, `auth_type`, incomplete credentials.

use super::*;

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
