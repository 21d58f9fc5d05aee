//! Workspace auth methods end to end against the stand-in, which serves each flow as the real
//! service documents it: `databricks-cli` (a fake `databricks` on disk), Azure service
//! principal and managed identity (Entra ID and IMDS shapes), `metadata-service`, workload
//! identity federation (`file-oidc`, `env-oidc`), each with its failure message; and the OAuth
//! token endpoint from discovery refused when it is not on the workspace host.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::lakebase::{SECRET_ENV, Setup, config, wait_until_query_works};
use crate::support::standin::{CLIENT_ID, CLIENT_SECRET, Extra, Standin};
use crate::support::{Lakepool, scratch_dir};

/// A fresh directory for a test's files.
fn test_dir(tag: &str) -> PathBuf {
    tempfile::Builder::new()
        .prefix(&format!("wsauth-{tag}-"))
        .tempdir_in(scratch_dir())
        .unwrap()
        .keep()
}

/// Starts lakepool with `auth` as its `[workspace]` auth lines.
fn start(standin: &Standin, auth: String, env: &[(&str, &str)]) -> Lakepool {
    let setup = Setup {
        auth,
        ..Setup::default()
    };
    Lakepool::start(&config(standin, &setup), env)
}

/// The current user over lakepool, once a credential works.
async fn current_user(lp: &Lakepool) -> String {
    let c = wait_until_query_works(lp.port(), Duration::from_secs(30)).await;
    c.query_one("select current_user::text", &[])
        .await
        .unwrap()
        .get(0)
}

/// Waits until `/readyz` reports a problem containing `needle`; returns the body.
fn not_ready_with(lp: &Lakepool, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, _, body) = lp.admin_get_authorized("/readyz");
        if status == 503 && body.contains(needle) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "readyz never said {needle:?}; last: {status} {body}\n{}",
            lp.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A fake `databricks` CLI: a shell script that logs its arguments to `log` and answers
/// `version` and `auth token` (the token read from `token_file`, expiring in `expiry_s`; or
/// failing with `fail` on stderr). Padded past 1 MiB: smaller files are taken for the legacy
/// Python CLI, as the SDKs do.
fn fake_cli(dir: &Path, token_file: &Path, expiry_s: u64, fail: Option<&str>) -> PathBuf {
    let log = dir.join("cli.log");
    let auth = match fail {
        Some(msg) => format!("echo '{msg}' >&2; exit 1"),
        None => format!(
            "exp=$(date -u -d '+{expiry_s} seconds' +%Y-%m-%dT%H:%M:%S.000000000Z); \
             printf '{{\"access_token\":\"%s\",\"token_type\":\"Bearer\",\"expiry\":\"%s\"}}' \
             \"$(cat '{}')\" \"$exp\"",
            token_file.display()
        ),
    };
    let script = format!(
        "#!/bin/sh\necho \"$@\" >> '{}'\ncase \"$1\" in\n\
         version) echo '{{\"Version\":\"0.296.0\",\"Major\":0,\"Minor\":296,\"Patch\":0}}' ;;\n\
         auth) {auth} ;;\n\
         *) echo \"unknown command $1\" >&2; exit 2 ;;\nesac\nexit 0\n",
        log.display()
    );
    let path = dir.join("databricks");
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(script.as_bytes()).unwrap();
    // Padding after `exit 0`: never run, only makes the file look like the Go CLI.
    let pad = format!("# {}\n", "x".repeat(1024 * 1024));
    f.write_all(pad.as_bytes()).unwrap();
    drop(f);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[tokio::test]
async fn databricks_cli_token_is_used_and_refreshed_before_expiry() {
    let tag = "databricks_cli_token_is";
    let cli_token = format!("cli-oauth-token-{tag}");
    let user = format!("cli-{tag}");
    let standin = Standin::start_with(
        tag,
        6,
        &Extra {
            args: vec!["--pat".into(), format!("{cli_token}={user}")],
            roles: vec![user.clone()],
        },
    );
    let dir = test_dir(tag);
    let token_file = dir.join("token");
    std::fs::write(&token_file, &cli_token).unwrap();
    let cli = fake_cli(&dir, &token_file, 8, None);
    let lp = start(
        &standin,
        format!(
            "auth_type = \"databricks-cli\"\ndatabricks_cli_path = \"{}\"",
            cli.display()
        ),
        &[],
    );
    assert_eq!(current_user(&lp).await, user);
    // Database credentials live 6 s, the CLI's token 8 s: the token is fetched again at its
    // refresh point (half its lifetime), before it expires.
    tokio::time::sleep(Duration::from_secs(10)).await;
    wait_until_query_works(lp.port(), Duration::from_secs(10)).await;
    let log = std::fs::read_to_string(dir.join("cli.log")).unwrap();
    let expected = format!("auth token --host {} --force-refresh", standin.url());
    let runs = log.lines().filter(|l| *l == expected).count();
    assert!(runs >= 2, "expected repeated `{expected}`:\n{log}");
    assert!(log.lines().any(|l| l == "version --output json"), "{log}");
    assert!(
        !lp.logs().contains(&cli_token),
        "the CLI's token reached the logs"
    );
}

#[test]
fn databricks_cli_failure_is_reported_with_its_message() {
    let tag = "databricks_cli_failure_i";
    let standin = Standin::start(tag, 3600);
    let dir = test_dir(tag);
    let cli = fake_cli(
        &dir,
        &dir.join("none"),
        0,
        Some("Error: refresh token is invalid. Please run `databricks auth login`"),
    );
    let lp = start(
        &standin,
        format!(
            "auth_type = \"databricks-cli\"\ndatabricks_cli_path = \"{}\"",
            cli.display()
        ),
        &[],
    );
    let body = not_ready_with(&lp, "databricks-cli: cannot get access token");
    assert!(
        body.contains("refresh token is invalid") && body.contains("exit status 1"),
        "{body}"
    );
}

/// Azure: a tenant, a service principal and a managed identity.
fn azure_standin(tag: &str) -> (Standin, String, String) {
    let (sp_user, msi_user) = (format!("azsp-{tag}"), format!("azmsi-{tag}"));
    let standin = Standin::start_with(
        tag,
        3600,
        &Extra {
            args: vec![
                "--azure-tenant".into(),
                format!("tenant-{tag}"),
                "--azure-sp".into(),
                format!("app-{tag}:{CLIENT_SECRET}={sp_user}"),
                "--azure-msi".into(),
                format!("msi-{tag}={msi_user}"),
            ],
            roles: vec![sp_user.clone(), msi_user.clone()],
        },
    );
    (standin, sp_user, msi_user)
}

#[tokio::test]
async fn azure_service_principal_with_a_client_secret() {
    let tag = "azure_service_principal_";
    let (standin, sp_user, _) = azure_standin(tag);
    // No tenant configured: it is read from the workspace's /aad/auth redirect.
    let lp = start(
        &standin,
        format!(
            "azure_client_id = \"app-{tag}\"\nazure_client_secret_env = \"{SECRET_ENV}\"\n\
             azure_login_endpoint = \"{}\"",
            standin.url()
        ),
        &[(SECRET_ENV, CLIENT_SECRET)],
    );
    assert_eq!(current_user(&lp).await, sp_user);
    assert!(
        standin.stat("management_tokens") >= 1,
        "no X-Databricks-Azure-SP-Management-Token sent: {:?}",
        standin.stats()
    );
    assert!(!lp.logs().contains(CLIENT_SECRET));
}

#[test]
fn azure_wrong_secret_from_arm_variables_says_what_entra_id_said() {
    let tag = "azure_wrong_secret_from_";
    let (standin, _, _) = azure_standin(tag);
    let lp = start(
        &standin,
        format!("azure_login_endpoint = \"{}\"", standin.url()),
        &[
            ("ARM_CLIENT_ID", &format!("app-{tag}")),
            ("ARM_CLIENT_SECRET", "wrong-secret-7"),
            ("ARM_TENANT_ID", &format!("tenant-{tag}")),
        ],
    );
    let body = not_ready_with(&lp, "AADSTS7000215");
    assert!(
        body.contains("invalid_client")
            && body.contains("See https://login.microsoftonline.com/error?code=7000215")
            && !body.contains("Trace ID"),
        "{body}"
    );
    assert!(!body.contains("wrong-secret-7") && !lp.logs().contains("wrong-secret-7"));
}

#[tokio::test]
async fn azure_managed_identity() {
    let tag = "azure_managed_identity";
    let (standin, _, msi_user) = azure_standin(tag);
    let lp = start(
        &standin,
        format!("azure_msi_endpoint = \"{}/metadata\"", standin.url()),
        &[("ARM_USE_MSI", "true")],
    );
    assert_eq!(current_user(&lp).await, msi_user);
    assert!(standin.stat("management_tokens") >= 1);
}

#[test]
fn azure_managed_identity_unknown_client_id() {
    let tag = "azure_managed_identity_u";
    let (standin, _, _) = azure_standin(tag);
    let lp = start(
        &standin,
        format!(
            "azure_use_msi = true\nazure_client_id = \"not-mine\"\n\
             azure_msi_endpoint = \"{}/metadata\"",
            standin.url()
        ),
        &[],
    );
    let body = not_ready_with(&lp, "Identity not found");
    assert!(body.contains("/metadata/identity/oauth2/token"), "{body}");
}

#[tokio::test]
async fn metadata_service() {
    let tag = "metadata_service";
    let user = format!("md-{tag}");
    let standin = Standin::start_with(
        tag,
        3600,
        &Extra {
            args: vec!["--metadata-identity".into(), user.clone()],
            roles: vec![user.clone()],
        },
    );
    let lp = start(
        &standin,
        format!(
            "metadata_service_url = \"{}/metadata-service/session-1\"",
            standin.url()
        ),
        &[],
    );
    assert_eq!(current_user(&lp).await, user);
}

#[test]
fn metadata_service_must_be_local_and_gcp_is_refused() {
    let text = |auth: &str| {
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[workspace]\nhost = \"https://ws.example\"\n{auth}\n\
             [[users]]\nname = \"u\"\npassword = \"p\"\n\
             [[databases]]\nname = \"d\"\ninstance = \"i\"\n"
        )
    };
    let (ok, out) = Lakepool::check(&text(
        "metadata_service_url = \"http://10.1.2.3:9000/token\"",
    ));
    assert!(
        !ok && out.contains("only localhost URLs are allowed"),
        "{out}"
    );
    let (ok, out) = Lakepool::check_with_env(&text(""), &[("GOOGLE_CREDENTIALS", "{\"k\":1}")]);
    assert!(
        !ok && out.contains("Google Cloud") && out.contains("file-oidc"),
        "{out}"
    );
}

/// A JWT as a Kubernetes projected service-account token looks (unsigned: the stand-in reads
/// claims only).
fn jwt(issuer: &str, subject: &str, audience: &str, jti: &str) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","kid":"k1","typ":"JWT"}"#);
    let claims = serde_json::json!({
        "iss": issuer, "sub": subject, "aud": [audience], "exp": exp, "jti": jti,
    });
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{header}.{payload}.c2lnbmF0dXJl")
}

const ISSUER: &str = "https://kubernetes.default.svc";

/// The stand-in with a federation policy for `subject`; workspace tokens and database
/// credentials live `lifetime_s`.
fn federation_standin(
    tag: &str,
    subject: &str,
    client_id: Option<&str>,
    lifetime_s: u64,
) -> (Standin, String) {
    let user = format!("wif-{tag}");
    let mut policy = format!("issuer={ISSUER},subject={subject},user={user}");
    if let Some(c) = client_id {
        policy.push_str(&format!(",client_id={c}"));
    }
    let standin = Standin::start_with(
        tag,
        lifetime_s,
        &Extra {
            args: vec![
                "--federation".into(),
                policy,
                "--oauth-lifetime".into(),
                lifetime_s.to_string(),
            ],
            roles: vec![user.clone()],
        },
    );
    (standin, user)
}

#[tokio::test]
async fn file_oidc_exchanges_the_projected_token_and_rereads_it_when_it_rotates() {
    let tag = "file_oidc_exchanges_the_";
    let subject = format!("system:serviceaccount:apps:{tag}");
    let client_id = format!("sp-wif-{tag}");
    let (standin, user) = federation_standin(tag, &subject, Some(&client_id), 4);
    let audience = format!("{}/oidc/v1/token", standin.url());
    let dir = test_dir(tag);
    let token = dir.join("token");
    std::fs::write(&token, jwt(ISSUER, &subject, &audience, "jti-one")).unwrap();
    let lp = start(
        &standin,
        format!(
            "auth_type = \"file-oidc\"\nclient_id = \"{client_id}\"\noidc_token_filepath = \"{}\"",
            token.display()
        ),
        &[],
    );
    assert_eq!(current_user(&lp).await, user);
    // The kubelet rotates the token; the next exchange (workspace tokens live 4 s, and the
    // database credentials refreshed every 2 s need one) reads it.
    std::fs::write(&token, jwt(ISSUER, &subject, &audience, "jti-two")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let exchanged: Vec<String> =
            serde_json::from_value(standin.stats()["exchanged"].clone()).unwrap_or_default();
        if exchanged.iter().any(|j| j == "jti-two") {
            assert_eq!(exchanged.first().map(String::as_str), Some("jti-one"));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "rotated token never exchanged: {exchanged:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    wait_until_query_works(lp.port(), Duration::from_secs(20)).await;
}

#[test]
fn file_oidc_token_without_a_policy_is_refused_clearly() {
    let tag = "file_oidc_token_without_";
    let (standin, _) =
        federation_standin(tag, "system:serviceaccount:apps:other", Some("sp-x"), 3600);
    let audience = format!("{}/oidc/v1/token", standin.url());
    let dir = test_dir(tag);
    let token = dir.join("token");
    let subject = format!("system:serviceaccount:apps:{tag}");
    std::fs::write(&token, jwt(ISSUER, &subject, &audience, "j")).unwrap();
    let lp = start(
        &standin,
        format!(
            "auth_type = \"file-oidc\"\nclient_id = \"sp-x\"\noidc_token_filepath = \"{}\"",
            token.display()
        ),
        &[],
    );
    let body = not_ready_with(&lp, "no federation policy");
    assert!(
        body.contains("invalid_grant") && body.contains(&subject),
        "{body}"
    );
    // A missing file is named as the SDKs name it.
    let lp = start(
        &standin,
        format!(
            "auth_type = \"file-oidc\"\noidc_token_filepath = \"{}\"",
            dir.join("absent").display()
        ),
        &[],
    );
    not_ready_with(&lp, "does not exist");
}

#[tokio::test]
async fn env_oidc_with_account_wide_federation() {
    let tag = "env_oidc_with_account_wi";
    let subject = format!("repo:lakepool/{tag}:ref:refs/heads/main");
    let (standin, user) = federation_standin(tag, &subject, None, 3600);
    let audience = format!("{}/oidc/v1/token", standin.url());
    let token = jwt(ISSUER, &subject, &audience, "env-1");
    let lp = start(
        &standin,
        String::new(),
        &[("DATABRICKS_OIDC_TOKEN", &token)],
    );
    assert_eq!(current_user(&lp).await, user);
    assert!(!lp.logs().contains(&token));
}

#[test]
fn token_endpoint_on_another_port_gets_no_secret() {
    let tag = "token_endpoint_on_anothe";
    let standin = Standin::start(tag, 3600);
    let trap = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    trap.set_nonblocking(true).unwrap();
    let elsewhere = format!("http://{}/oidc/v1/token", trap.local_addr().unwrap());
    standin.control(
        "/__standin/discovery",
        &format!(r#"{{"token_endpoint": "{elsewhere}"}}"#),
    );
    let lp = start(
        &standin,
        format!("client_id = \"{CLIENT_ID}\"\nclient_secret_env = \"{SECRET_ENV}\""),
        &[(SECRET_ENV, CLIENT_SECRET)],
    );
    let body = not_ready_with(&lp, "refusing to send credentials");
    assert!(
        body.contains(&elsewhere) && body.contains("https://"),
        "{body}"
    );
    assert!(
        trap.accept().is_err(),
        "lakepool connected to the token endpoint on the other port"
    );
}

/// Reads an example config shipped under `config/`.
fn example(path: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn example_configs_check_with_the_environment_they_document() {
    // What Databricks Apps sets for the app's service principal and database resource, plus
    // what app.yaml adds.
    let app_env = [
        (
            "DATABRICKS_HOST",
            "adb-1234567890123456.7.azuredatabricks.net",
        ),
        (
            "DATABRICKS_CLIENT_ID",
            "6f1c2a9e-3b7d-4c55-9a01-000000000001",
        ),
        ("DATABRICKS_CLIENT_SECRET", "dose-example"),
        ("PGHOST", "instance-1234.database.azuredatabricks.net"),
        ("PGPORT", "5432"),
        ("PGDATABASE", "databricks_postgres"),
        ("PGUSER", "6f1c2a9e-3b7d-4c55-9a01-000000000001"),
        ("PGSSLMODE", "require"),
        ("PGAPPNAME", "orders"),
        ("LAKEBASE_INSTANCE", "my-lakebase-instance"),
        ("LAKEPOOL_APP_PASSWORD", "app-password"),
    ];
    let app = example("config/databricks-app/lakepool.toml");
    let (ok, out) = Lakepool::check_with_env(&app, &app_env);
    assert!(ok, "{out}");
    // Without the database resource, the error names the missing variable.
    let without: Vec<_> = app_env
        .iter()
        .copied()
        .filter(|(k, _)| *k != "PGHOST")
        .collect();
    let (ok, out) = Lakepool::check_with_env(&app, &without);
    assert!(
        !ok && out.contains("PGHOST") && out.contains("databases[0].host"),
        "{out}"
    );

    let dir = test_dir("example_configs");
    let pod_env = [
        (
            "DATABRICKS_HOST",
            "https://dbc-00000000-0000.cloud.databricks.com",
        ),
        (
            "DATABRICKS_CLIENT_ID",
            "6f1c2a9e-3b7d-4c55-9a01-000000000002",
        ),
        ("LAKEBASE_INSTANCE", "my-lakebase-instance"),
        ("LAKEPOOL_APP_PASSWORD_SCRAM", "app-password"),
        // No Databricks secret in the pod: the projected token file is the credential.
        ("HOME", dir.to_str().unwrap()),
    ];
    let (ok, out) =
        Lakepool::check_with_env(&example("config/wif-sidecar/lakepool.toml"), &pod_env);
    assert!(ok, "{out}");
}
