//! Which profile of the config file is read, and when the file is skipped.

use super::*;

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
