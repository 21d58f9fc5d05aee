//! The methods beyond PAT and OAuth M2M: attribute and variable names, the one-method rule,
//! forced methods and their missing attributes, and the errors for what is not supported.

use super::*;
use crate::config::SdkAuthConfig;
use crate::workspace::methods::{IdTokenSource, WorkspaceAuth};

fn host(h: &str) -> WorkspaceSettings {
    WorkspaceSettings {
        host: some(h),
        ..Default::default()
    }
}

/// A `databricks` of `size` bytes in a fresh directory, for PATH.
fn fake_cli(home: &Home, size: usize) -> std::path::PathBuf {
    let dir = home.path().join("bin");
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("databricks");
    std::fs::write(&p, vec![b'#'; size]).unwrap();
    p
}

#[test]
fn azure_client_secret_from_arm_variables() {
    let home = Home::new();
    let r = ok(
        &host("adb-123.4.azuredatabricks.net"),
        &[
            ("ARM_CLIENT_ID", "app-id"),
            ("ARM_CLIENT_SECRET", SECRET),
            ("ARM_TENANT_ID", "tenant-1"),
        ],
        &home,
    );
    match &r.auth {
        WorkspaceAuth::AzureClientSecret {
            client_id,
            client_secret,
            tenant_id,
            cloud,
        } => {
            assert_eq!(client_id, "app-id");
            assert_eq!(client_secret.expose_secret(), SECRET);
            assert_eq!(tenant_id.as_deref(), Some("tenant-1"));
            assert_eq!(cloud.login_endpoint, "https://login.microsoftonline.com/");
        }
        other => panic!("{other:?}"),
    }
    assert!(r.source.contains("ARM_CLIENT_SECRET"), "{}", r.source);
    assert!(!format!("{r:?} {}", r.source).contains(SECRET));
}

#[test]
fn azure_settings_and_login_endpoint_override() {
    let home = Home::new();
    let s = WorkspaceSettings {
        host: some("http://127.0.0.1:4000"),
        sdk: SdkAuthConfig {
            azure_client_id: some("app-id"),
            azure_client_secret: secret(SECRET),
            azure_login_endpoint: some("http://127.0.0.1:4000/aad"),
            azure_workspace_resource_id: some("/subscriptions/s/resourceGroups/g"),
            ..Default::default()
        },
        ..Default::default()
    };
    match ok(&s, &[], &home).auth {
        WorkspaceAuth::AzureClientSecret {
            tenant_id, cloud, ..
        } => {
            assert_eq!(tenant_id, None, "looked up from the workspace later");
            assert_eq!(cloud.login_endpoint, "http://127.0.0.1:4000/aad/");
            assert_eq!(
                cloud.workspace_resource_id.as_deref(),
                Some("/subscriptions/s/resourceGroups/g")
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn azure_msi_when_arm_use_msi_is_true() {
    let home = Home::new();
    let h = host("adb-1.2.azuredatabricks.net");
    let r = ok(
        &h,
        &[("ARM_USE_MSI", "true"), ("ARM_CLIENT_ID", "uami")],
        &home,
    );
    match &r.auth {
        WorkspaceAuth::AzureMsi {
            client_id,
            endpoint,
            ..
        } => {
            assert_eq!(client_id.as_deref(), Some("uami"));
            assert_eq!(endpoint, "http://169.254.169.254/metadata");
        }
        other => panic!("{other:?}"),
    }
    let e = err(&h, &[("ARM_USE_MSI", "yes please")], &home);
    assert!(
        matches!(
            e,
            ResolveError::NotABoolean {
                name: "azure_use_msi",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("ARM_USE_MSI"), "{e}");
}

#[test]
fn incomplete_azure_names_what_each_method_needs() {
    let home = Home::new();
    let e = err(
        &host("adb-1.2.azuredatabricks.net"),
        &[("ARM_CLIENT_ID", "id")],
        &home,
    );
    let msg = e.to_string();
    assert!(
        msg.contains("azure_client_id is set (from ARM_CLIENT_ID)")
            && msg.contains("azure_client_secret")
            && msg.contains("azure_use_msi"),
        "{msg}"
    );
}

#[test]
fn federation_needs_auth_type_with_a_client_id() {
    let home = Home::new();
    let token_file = home.write("token", "eyJ.x.y");
    let vars = [
        (
            "DATABRICKS_OIDC_TOKEN_FILEPATH",
            token_file.to_str().unwrap(),
        ),
        ("DATABRICKS_CLIENT_ID", "sp-app-id"),
    ];
    // Two method families (the Python SDK's rule): refused without auth_type.
    let e = err(&host("h.example"), &vars, &home);
    assert!(
        e.to_string()
            .starts_with("more than one authorization method configured: oauth-m2m and file-oidc"),
        "{e}"
    );
    let mut with_type = vars.to_vec();
    with_type.push(("DATABRICKS_AUTH_TYPE", "file-oidc"));
    let r = ok(&host("h.example"), &with_type, &home);
    match &r.auth {
        WorkspaceAuth::Oidc { source, client_id } => {
            assert_eq!(source, &IdTokenSource::File(token_file.clone()));
            assert_eq!(client_id.as_deref(), Some("sp-app-id"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(r.auth.kind(), "file-oidc");
    // The old variable name is an alias.
    let r = ok(
        &host("h.example"),
        &[("DATABRICKS_OIDC_TOKEN_FILE", token_file.to_str().unwrap())],
        &home,
    );
    assert_eq!(r.auth.kind(), "file-oidc");
}

#[test]
fn env_oidc_reads_databricks_oidc_token_or_the_named_variable() {
    let home = Home::new();
    let r = ok(
        &host("h.example"),
        &[("DATABRICKS_OIDC_TOKEN", "eyJ.a.b")],
        &home,
    );
    assert!(matches!(
        &r.auth,
        WorkspaceAuth::Oidc { source: IdTokenSource::Env(v), client_id: None } if v == "DATABRICKS_OIDC_TOKEN"
    ));
    let r = ok(
        &host("h.example"),
        &[
            ("DATABRICKS_OIDC_TOKEN_ENV", "MY_TOKEN"),
            ("MY_TOKEN", "eyJ.a.b"),
        ],
        &home,
    );
    assert!(
        matches!(&r.auth, WorkspaceAuth::Oidc { source: IdTokenSource::Env(v), .. } if v == "MY_TOKEN")
    );
    let e = err(
        &host("h.example"),
        &[("DATABRICKS_OIDC_TOKEN_ENV", "MY_TOKEN")],
        &home,
    );
    assert_eq!(e.to_string(), "missing env var \"MY_TOKEN\"");
}

#[test]
fn metadata_service_must_be_local() {
    let home = Home::new();
    let r = ok(
        &host("h.example"),
        &[(
            "DATABRICKS_METADATA_SERVICE_URL",
            "http://127.0.0.1:9000/secret-path",
        )],
        &home,
    );
    assert_eq!(r.auth.kind(), "metadata-service");
    assert!(!r.source.contains("secret-path") && !format!("{r:?}").contains("secret-path"));
    let e = err(
        &host("h.example"),
        &[("DATABRICKS_METADATA_SERVICE_URL", "http://10.0.0.1:9000/t")],
        &home,
    );
    assert_eq!(
        e.to_string(),
        "metadata-service: only localhost URLs are allowed"
    );
}

#[test]
fn databricks_cli_from_a_profile_written_by_auth_login() {
    let home = Home::new().cfg("[dev]\nhost = https://h.example\nauth_type = databricks-cli\n");
    let cli = fake_cli(&home, 1024 * 1024 + 1);
    let path = cli.parent().unwrap().to_str().unwrap().to_owned();
    let r = ok(
        &WorkspaceSettings::default(),
        &[("DATABRICKS_CONFIG_PROFILE", "dev"), ("PATH", &path)],
        &home,
    );
    match &r.auth {
        WorkspaceAuth::DatabricksCli { cli: c, profile } => {
            assert_eq!(c, &cli);
            assert_eq!(profile.as_deref(), Some("dev"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn databricks_cli_errors_follow_the_sdks() {
    let home = Home::new();
    let s = WorkspaceSettings {
        host: some("h.example"),
        auth_type: some("databricks-cli"),
        ..Default::default()
    };
    let e = err(&s, &[("PATH", "/nonexistent")], &home);
    assert!(e.to_string().contains("databricks CLI not found"), "{e}");
    let legacy = fake_cli(&home, 10);
    let e = err(
        &s,
        &[("PATH", legacy.parent().unwrap().to_str().unwrap())],
        &home,
    );
    assert!(
        e.to_string().contains("legacy databricks CLI") && e.to_string().contains(">= 0.100.0"),
        "{e}"
    );
    // A configured path is used as is.
    let big = fake_cli(&home, 1024 * 1024);
    let r = ok(
        &s,
        &[("DATABRICKS_CLI_PATH", big.to_str().unwrap()), ("PATH", "")],
        &home,
    );
    assert!(matches!(&r.auth, WorkspaceAuth::DatabricksCli { cli, profile: None } if cli == &big));
}

#[test]
fn an_installed_cli_is_the_last_resort() {
    let home = Home::new();
    let cli = fake_cli(&home, 1024 * 1024);
    let path = cli.parent().unwrap().to_str().unwrap().to_owned();
    let r = ok(&host("h.example"), &[("PATH", &path)], &home);
    assert_eq!(r.auth.kind(), "databricks-cli");
    // A .netrc token comes first.
    let home = Home::new().netrc("machine h.example login token password t\n");
    let cli = fake_cli(&home, 1024 * 1024);
    let path = cli.parent().unwrap().to_str().unwrap().to_owned();
    assert_eq!(pat(&ok(&host("h.example"), &[("PATH", &path)], &home)), "t");
}

#[test]
fn gcp_is_refused_clearly() {
    let home = Home::new();
    let e = err(
        &host("h.gcp.databricks.com"),
        &[("GOOGLE_CREDENTIALS", SECRET)],
        &home,
    );
    let msg = e.to_string();
    assert!(
        matches!(e, ResolveError::GcpUnsupported { .. })
            && msg.contains("google_credentials (from GOOGLE_CREDENTIALS)")
            && msg.contains("oauth-m2m")
            && msg.contains("env-oidc"),
        "{msg}"
    );
    assert!(!msg.contains(SECRET));
    let s = WorkspaceSettings {
        host: some("h.gcp.databricks.com"),
        auth_type: some("google-id"),
        ..Default::default()
    };
    let e = err(&s, &[], &home);
    assert!(matches!(e, ResolveError::GcpUnsupported { .. }), "{e:?}");
}

#[test]
fn forced_methods_name_their_missing_attributes() {
    let home = Home::new();
    for (auth_type, missing) in [
        ("file-oidc", "oidc_token_filepath"),
        ("metadata-service", "metadata_service_url"),
        (
            "azure-client-secret",
            "azure_client_id and azure_client_secret",
        ),
    ] {
        let s = WorkspaceSettings {
            host: some("h.example"),
            auth_type: some(auth_type),
            ..Default::default()
        };
        let e = err(&s, &[], &home);
        assert!(
            matches!(e, ResolveError::MissingForAuthType { missing: m, .. } if m == missing),
            "{auth_type}: {e:?}"
        );
    }
}
