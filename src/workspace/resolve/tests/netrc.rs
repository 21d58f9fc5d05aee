//! `.netrc` as the last source of a personal access token.

use super::*;

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
