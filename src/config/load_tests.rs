//! Tests of config loading: defaults, overrides, and errors that name the key.

use super::*;
use crate::config::{AuthMethod, ClientTls, PoolSettings};
use secrecy::ExposeSecret;

const BASE: &str = r#"
[server]
listen = "127.0.0.1:0"

[[users]]
name = "app"
password = "pw"

[[databases]]
name = "app"
host = "127.0.0.1"
user = "owner"
tls = "disable"
"#;

#[test]
fn loads_minimal_with_defaults() {
    let c = load_str(BASE, Path::new(".")).unwrap();
    assert_eq!(c.databases[0].dbname, "app");
    assert_eq!(c.databases[0].port, 5432);
    assert_eq!(c.databases[0].pool, PoolSettings::default());
    assert_eq!(c.users[0].password.expose_secret(), "pw");
    assert_eq!(c.server.auth, AuthMethod::ScramSha256);
    assert_eq!(c.databases[0].auth, AuthMethod::ScramSha256);
    assert_eq!(c.server.client_tls, ClientTls::Disable);
}

#[test]
fn tcp_defer_accept_defaults_to_pgbouncers_and_is_bounded() {
    let with = |v: &str| {
        let text = BASE.replace(
            "listen = \"127.0.0.1:0\"\n",
            &format!("listen = \"127.0.0.1:0\"\ntcp_defer_accept = {v}\n"),
        );
        load_str(&text, Path::new("."))
    };
    let c = load_str(BASE, Path::new(".")).unwrap();
    let default = if cfg!(target_os = "linux") { 45 } else { 0 };
    assert_eq!(c.server.tcp_defer_accept, Duration::from_secs(default));
    assert_eq!(with("0").unwrap().server.tcp_defer_accept, Duration::ZERO);
    assert_eq!(
        with("3600").unwrap().server.tcp_defer_accept,
        Duration::from_secs(3600)
    );
    let e = with("3601").unwrap_err().to_string();
    assert!(
        e.contains("server.tcp_defer_accept") && e.contains("3600"),
        "{e}"
    );
    assert!(with("-1").is_err());
}

#[test]
fn unix_socket_keys() {
    let c = load_str(BASE, Path::new(".")).unwrap();
    assert_eq!(c.server.unix_socket_dir, None, "no socket unless asked for");
    assert_eq!(c.server.unix_socket_mode, 0o777);
    let with = |extra: &str| {
        let text = BASE.replace(
            "listen = \"127.0.0.1:0\"\n",
            &format!("listen = \"127.0.0.1:0\"\n{extra}\n"),
        );
        load_str(&text, Path::new("/etc/lakepool"))
    };
    let c = with("unix_socket_dir = \"run\"\nunix_socket_mode = 0o770").unwrap();
    assert_eq!(
        c.server.unix_socket_dir.as_deref(),
        Some(Path::new("/etc/lakepool/run"))
    );
    assert_eq!(c.server.unix_socket_mode, 0o770);
    // Empty: off, as PgBouncer's empty unix_socket_dir.
    let c = with("unix_socket_dir = \"\"").unwrap();
    assert_eq!(c.server.unix_socket_dir, None);
    // A socket path has at most 107 bytes.
    let long = format!("unix_socket_dir = \"/{}\"", "d".repeat(92));
    let e = with(&long).unwrap_err().to_string();
    assert!(
        e.contains("server.unix_socket_dir") && e.contains("too long"),
        "{e}"
    );
    assert!(with(&format!("unix_socket_dir = \"/{}\"", "d".repeat(91))).is_ok());
    // 770 in decimal is not the mode anyone meant.
    let e = with("unix_socket_mode = 770").unwrap_err().to_string();
    assert!(
        e.contains("server.unix_socket_mode") && e.contains("octal"),
        "{e}"
    );
}

#[test]
fn pool_defaults_and_overrides() {
    let text = format!(
        "{BASE}pool_size = 3\n[pool]\npool_mode = \"transaction\"\nquery_wait_timeout = 0.5\n"
    );
    let c = load_str(&text, Path::new(".")).unwrap();
    assert_eq!(c.databases[0].pool.size, 3);
    assert_eq!(
        c.databases[0].pool.mode,
        super::super::PoolMode::Transaction
    );
    assert_eq!(
        c.databases[0].pool.query_wait_timeout,
        Duration::from_millis(500)
    );
}

#[test]
fn errors_name_the_key() {
    let e = load_str(&format!("{BASE}pool_size = 0\n"), Path::new("."))
        .unwrap_err()
        .to_string();
    assert!(e.contains("databases[0].pool_size"), "{e}");
    let e = load_str(&format!("{BASE}bogus = 1\n"), Path::new("."))
        .unwrap_err()
        .to_string();
    assert!(e.contains("databases[0]") && e.contains("bogus"), "{e}");
    let e = load_str(
        &BASE.replace("tls = \"disable\"", "tls = \"maybe\""),
        Path::new("."),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("databases[0]"), "{e}");
    let e = load_str(
        &format!("{BASE}password = \"a\"\npassword_env = \"B\"\n"),
        Path::new("."),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("databases[0].password"), "{e}");
}

#[test]
fn limit_and_health_keys_have_pgbouncer_defaults() {
    let p = load_str(BASE, Path::new(".")).unwrap().databases[0]
        .pool
        .clone();
    assert_eq!(p.max_db_connections, 0);
    assert_eq!(p.max_user_connections, 0);
    assert_eq!(p.max_db_client_connections, 0);
    assert_eq!(p.max_user_client_connections, 0);
    assert_eq!(p.min_pool_size, 0);
    assert_eq!(p.reserve_pool_size, 0);
    assert_eq!(p.reserve_pool_timeout, Duration::from_secs(5));
    assert_eq!(p.server_login_retry, Duration::from_secs(15));
    assert_eq!(p.client_idle_timeout, Duration::ZERO);
    assert_eq!(p.idle_transaction_timeout, Duration::from_secs(600));
    assert_eq!(p.server_check_delay, Duration::from_secs(30));
    assert_eq!(p.server_check_query, "");
}

#[test]
fn every_limit_key_is_parsed() {
    let text = format!(
        "{BASE}\n[pool]\nmax_db_connections = 7\nmax_user_connections = 8\n\
         max_db_client_connections = 9\nmax_user_client_connections = 10\n\
         min_pool_size = 2\nreserve_pool_size = 3\nreserve_pool_timeout = 0.25\n\
         server_login_retry = 1.5\nclient_idle_timeout = 60\n\
         idle_transaction_timeout = 30\nserver_check_delay = 0\n\
         server_check_query = \"select 1\"\n"
    );
    let p = load_str(&text, Path::new(".")).unwrap().databases[0]
        .pool
        .clone();
    assert_eq!(p.max_db_connections, 7);
    assert_eq!(p.max_user_connections, 8);
    assert_eq!(p.max_db_client_connections, 9);
    assert_eq!(p.max_user_client_connections, 10);
    assert_eq!(p.min_pool_size, 2);
    assert_eq!(p.reserve_pool_size, 3);
    assert_eq!(p.reserve_pool_timeout, Duration::from_millis(250));
    assert_eq!(p.server_login_retry, Duration::from_millis(1500));
    assert_eq!(p.client_idle_timeout, Duration::from_secs(60));
    assert_eq!(p.idle_transaction_timeout, Duration::from_secs(30));
    assert_eq!(p.server_check_delay, Duration::ZERO);
    assert_eq!(p.server_check_query, "select 1");
}

#[test]
fn admin_flag_and_reserved_database_name() {
    let base = "[server]\nlisten = \"127.0.0.1:0\"\n\
        [[users]]\nname = \"a\"\npassword = \"pw\"\nadmin = true\n\
        [[users]]\nname = \"b\"\npassword = \"pw\"\n";
    let ok = format!("{base}[[databases]]\nname = \"d\"\nhost = \"h\"\nuser = \"u\"\n");
    let c = load_str(&ok, Path::new(".")).unwrap();
    assert!(c.users[0].admin);
    assert!(!c.users[1].admin);
    let bad = format!("{base}[[databases]]\nname = \"lakepool\"\nhost = \"h\"\nuser = \"u\"\n");
    let e = load_str(&bad, Path::new(".")).unwrap_err().to_string();
    assert!(
        e.contains("databases[0].name") && e.contains("admin console"),
        "{e}"
    );
    let typo = format!("{base}admin = \"yes\"\n[[databases]]\nname = \"d\"\nhost = \"h\"\n");
    assert!(load_str(&typo, Path::new(".")).is_err());
}

#[test]
fn user_keys_override_database_keys_override_pool() {
    let text = "[server]\nlisten = \"127.0.0.1:0\"\n\
        [pool]\nmin_pool_size = 1\nreserve_pool_size = 1\nclient_idle_timeout = 5\n\
        [[users]]\nname = \"a\"\npassword = \"pw\"\nmin_pool_size = 3\n\
        max_user_connections = 4\n\
        [[users]]\nname = \"b\"\npassword = \"pw\"\n\
        [[databases]]\nname = \"d\"\nhost = \"h\"\nuser = \"u\"\n\
        min_pool_size = 2\nreserve_pool_size = 2\n";
    let c = load_str(text, Path::new(".")).unwrap();
    let db = &c.databases[0].pool;
    let a = c.users[0].pool.apply(db);
    let b = c.users[1].pool.apply(db);
    // user > database
    assert_eq!(a.min_pool_size, 3);
    assert_eq!(a.max_user_connections, 4);
    // database > [pool]
    assert_eq!(a.reserve_pool_size, 2);
    assert_eq!(b.min_pool_size, 2);
    // [pool] where nobody overrides
    assert_eq!(a.client_idle_timeout, Duration::from_secs(5));
    assert_eq!(b.max_user_connections, 0);
    assert_eq!(&b, db);
}

#[test]
fn invalid_limit_values_name_the_key() {
    for (line, key) in [
        ("max_db_connections = -1", "max_db_connections"),
        ("max_user_connections = 2000000", "max_user_connections"),
        ("min_pool_size = 20000", "min_pool_size"),
        ("reserve_pool_size = 10001", "reserve_pool_size"),
        ("reserve_pool_timeout = -1", "reserve_pool_timeout"),
        ("server_login_retry = -0.5", "server_login_retry"),
        ("client_idle_timeout = -3", "client_idle_timeout"),
        (
            "idle_transaction_timeout = 1e12",
            "idle_transaction_timeout",
        ),
        ("server_check_delay = -1", "server_check_delay"),
        ("server_check_query = \"a\\u0000b\"", "server_check_query"),
        (
            "max_db_client_connections = \"x\"",
            "max_db_client_connections",
        ),
    ] {
        let e = load_str(&format!("{BASE}\n[pool]\n{line}\n"), Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(e.contains(key), "{line}: {e}");
        let e = load_str(&format!("{BASE}{line}\n"), Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(e.contains("databases[0]") && e.contains(key), "{line}: {e}");
        let user = BASE.replace(
            "password = \"pw\"\n",
            &format!("password = \"pw\"\n{line}\n"),
        );
        let e = load_str(&user, Path::new(".")).unwrap_err().to_string();
        assert!(e.contains("users[0]") && e.contains(key), "{line}: {e}");
    }
    // Unknown keys on a user are still rejected, naming the user.
    let user = BASE.replace("password = \"pw\"\n", "password = \"pw\"\nbogus = 1\n");
    let e = load_str(&user, Path::new(".")).unwrap_err().to_string();
    assert!(e.contains("users[0]") && e.contains("bogus"), "{e}");
}

#[test]
fn secret_from_env_and_missing_env() {
    // SAFETY-free: unique variable names per test avoid races with other tests.
    let text = BASE.replace(
        "password = \"pw\"",
        "password_env = \"LAKEPOOL_TEST_UNSET_VAR_X\"",
    );
    let e = load_str(&text, Path::new(".")).unwrap_err().to_string();
    assert!(e.contains("users[0].password_env"), "{e}");
    assert!(e.contains("LAKEPOOL_TEST_UNSET_VAR_X"), "{e}");
}

#[test]
fn secret_from_file_trims_newline() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pw.txt"), "s3cret\n").unwrap();
    let text = BASE.replace("password = \"pw\"", "password_file = \"pw.txt\"");
    let c = load_str(&text, dir.path()).unwrap();
    assert_eq!(c.users[0].password.expose_secret(), "s3cret");
}

#[test]
fn client_tls_needs_cert() {
    let text = BASE.replace(
        "listen = \"127.0.0.1:0\"",
        "listen = \"127.0.0.1:0\"\nclient_tls = \"require\"",
    );
    let e = load_str(&text, Path::new(".")).unwrap_err().to_string();
    assert!(e.contains("server.client_tls"), "{e}");
}

/// A config error as shown anywhere (stderr, the reload log line, the console's RELOAD reply).
fn error_of(text: &str) -> String {
    load_str(text, Path::new(".")).unwrap_err().to_string()
}

#[test]
fn syntax_errors_give_the_line_and_never_the_text() {
    let text = BASE.replace("password = \"pw\"", "password = \"x_S3CR3T");
    let e = error_of(&text);
    assert!(e.starts_with("line 7: not valid TOML"), "{e}");
    assert!(!e.contains("S3CR3T"), "{e}");
    // Unquoted, and followed by junk: the value never appears either.
    for line in ["password = x_S3CR3T", "password = \"x_S3CR3T\" junk"] {
        let e = error_of(&BASE.replace("password = \"pw\"", line));
        assert!(e.starts_with("line 7:") && !e.contains("S3CR3T"), "{e}");
    }
}

#[test]
fn type_errors_are_plain_words_without_the_value() {
    let e = error_of(&BASE.replace("password = \"pw\"", "password = 99887766"));
    assert_eq!(e, "line 7: users[0].password: must be a string in quotes");
    let e = error_of(&BASE.replace("tls = \"disable\"", "tls = \"x_S3CR3T\""));
    assert!(
        e.starts_with("line 13: databases[0].tls: must be one of `disable`"),
        "{e}"
    );
    assert!(!e.contains("S3CR3T"), "{e}");
    let e = error_of(&format!("{BASE}pool_size = true\n"));
    assert_eq!(
        e,
        "line 14: databases[0].pool_size: must be a whole number, 0 or more"
    );
    let e = error_of(&BASE.replace("[[users]]", "[[users]]\nadmin = \"x_S3CR3T\""));
    assert_eq!(e, "line 6: users[0].admin: must be true or false");
    let e = error_of(&format!("{BASE}x_S3CR3T = 1\n"));
    assert_eq!(e, "line 14: databases[0].x_S3CR3T: unknown key `x_S3CR3T`");
    let e = error_of(&BASE.replace("name = \"app\"\npassword", "password"));
    assert_eq!(e, "line 5: users[0].name: is required");
}

#[test]
fn ports_out_of_range_say_so_with_the_line() {
    let e = error_of(&format!("{BASE}port = 99999\n"));
    assert_eq!(e, "line 14: databases[0].port: must be between 1 and 65535");
    let e = error_of(&format!("{BASE}port = 0\n"));
    assert_eq!(e, "line 14: databases[0].port: must be between 1 and 65535");
    let e = error_of(&BASE.replace("127.0.0.1:0", "127.0.0.1:99999"));
    assert_eq!(e, "line 3: server.listen: port must be between 0 and 65535");
}

#[test]
fn validation_errors_get_the_line_of_their_key() {
    let e = error_of(&format!("{BASE}pool_size = 0\n"));
    assert_eq!(
        e,
        "line 14: databases[0].pool_size: must be between 1 and 10000"
    );
    // An error found after loading (e.g. by the user store) is located through the config.
    let c = load_str(BASE, Path::new(".")).unwrap();
    let e = c.locate(invalid("users[0].password", "not a valid verifier"));
    assert_eq!(
        e.to_string(),
        "line 7: users[0].password: not a valid verifier"
    );
}

#[test]
fn empty_secrets_are_refused_in_every_form() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("newline.txt"), "\n").unwrap();
    std::fs::write(dir.path().join("blank.txt"), "  \r\n").unwrap();
    // (An environment variable set to "" is tested end to end: tests cannot set variables.)
    let user_forms = [
        ("password = \"\"", "users[0].password: is empty"),
        ("password = \"   \"", "users[0].password: is empty"),
        ("password_file = \"newline.txt\"", "users[0].password_file:"),
        ("password_file = \"blank.txt\"", "users[0].password_file:"),
    ];
    for (line, expected) in user_forms {
        let text = BASE.replace("password = \"pw\"", line);
        let e = load_str(&text, dir.path()).unwrap_err().to_string();
        assert!(e.contains(expected) && e.contains("empty"), "{line}: {e}");
        assert!(e.starts_with("line 7: "), "{line}: {e}");
        // The same forms for an upstream password.
        let text = format!("{BASE}{line}\n");
        let e = load_str(&text, dir.path()).unwrap_err().to_string();
        let expected = expected.replace("users[0]", "databases[0]");
        assert!(e.contains(&expected) && e.contains("empty"), "{line}: {e}");
    }
    for key in ["token", "client_secret"] {
        let text = format!("{BASE}[workspace]\n{key} = \"\"\n");
        let e = load_str(&text, dir.path()).unwrap_err().to_string();
        assert!(e.contains(&format!("workspace.{key}: is empty")), "{e}");
    }
}

#[test]
fn auth_is_a_database_property_never_a_user_one() {
    let text = BASE.replace(
        "listen = \"127.0.0.1:0\"",
        "listen = \"127.0.0.1:0\"\nauth = \"md5\"",
    );
    let c = load_str(
        &format!(
            "{text}[[databases]]\nname = \"b\"\nhost = \"h\"\nuser = \"u\"\nauth = \"cleartext\"\n"
        ),
        Path::new("."),
    )
    .unwrap();
    assert_eq!(c.server.auth, AuthMethod::Md5);
    assert_eq!(c.databases[0].auth, AuthMethod::Md5);
    assert_eq!(c.databases[1].auth, AuthMethod::Cleartext);
    let e = error_of(&BASE.replace("password = \"pw\"", "password = \"pw\"\nauth = \"md5\""));
    assert!(
        e.starts_with("line 8: users[0].auth: the authentication method is set per database"),
        "{e}"
    );
}

#[test]
fn names_with_control_characters_are_refused() {
    let e = error_of(&BASE.replace("name = \"app\"\npassword", "name = \"a\\nb\"\npassword"));
    assert!(e.contains("users[0].name") && e.contains("control"), "{e}");
    let e = error_of(&BASE.replace("name = \"app\"\nhost", "name = \"a\\tb\"\nhost"));
    assert!(
        e.contains("databases[0].name") && e.contains("control"),
        "{e}"
    );
}

#[test]
fn secret_files_others_can_read_are_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pw.txt");
    std::fs::write(&file, "s3cret\n").unwrap();
    let text = BASE.replace("password = \"pw\"", "password_file = \"pw.txt\"");
    let mode = |m: u32| std::fs::set_permissions(&file, std::fs::Permissions::from_mode(m));
    mode(0o600).unwrap();
    assert!(load_str(&text, dir.path()).unwrap().warnings.is_empty());
    // 0640 is fine for a root-owned file only (as PostgreSQL allows for its key).
    mode(0o640).unwrap();
    let root_owned = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&file).unwrap()) == 0;
    let warned = !load_str(&text, dir.path()).unwrap().warnings.is_empty();
    assert_eq!(warned, !root_owned);
    for m in [0o604, 0o644, 0o660] {
        mode(m).unwrap();
        let c = load_str(&text, dir.path()).unwrap();
        assert_eq!(c.warnings.len(), 1, "{m:o}: {:?}", c.warnings);
        let w = &c.warnings[0];
        assert!(
            w.starts_with("line 7: users[0].password_file:") && w.contains(&format!("{m:03o}")),
            "{w}"
        );
        assert!(!w.contains("s3cret"), "{w}");
    }
    // A private key too; the certificate may be public.
    std::fs::write(dir.path().join("k.pem"), "key").unwrap();
    std::fs::write(dir.path().join("c.pem"), "cert").unwrap();
    let tls = text.replace(
        "listen = \"127.0.0.1:0\"",
        "listen = \"127.0.0.1:0\"\ntls_cert_file = \"c.pem\"\ntls_key_file = \"k.pem\"",
    );
    mode(0o600).unwrap();
    let key = dir.path().join("k.pem");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(
        dir.path().join("c.pem"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let c = load_str(&tls, dir.path()).unwrap();
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    assert!(
        c.warnings[0].contains("server.tls_key_file"),
        "{:?}",
        c.warnings
    );
}

const LAKEBASE: &str = r#"
[server]
listen = "127.0.0.1:0"

[workspace]
host = "https://ws.example"
token = "t"

[[users]]
name = "app"
password = "pw"

[[databases]]
name = "app"
"#;

#[test]
fn lakebase_databases_default_to_databricks_postgres() {
    let c = load_str(&format!("{LAKEBASE}instance = \"i\"\n"), Path::new(".")).unwrap();
    assert_eq!(c.databases[0].dbname, "databricks_postgres");
    let ep = "endpoint = \"projects/p/branches/b/endpoints/e\"\n";
    let c = load_str(&format!("{LAKEBASE}{ep}"), Path::new(".")).unwrap();
    assert_eq!(c.databases[0].dbname, "databricks_postgres");
    let c = load_str(
        &format!("{LAKEBASE}instance = \"i\"\ndbname = \"mine\"\n"),
        Path::new("."),
    )
    .unwrap();
    assert_eq!(c.databases[0].dbname, "mine");
    // A static upstream keeps the entry's name.
    assert_eq!(
        load_str(BASE, Path::new(".")).unwrap().databases[0].dbname,
        "app"
    );
}

#[test]
fn refresh_margin_is_at_most_half_the_lifetime() {
    let inst = format!("{LAKEBASE}instance = \"i\"\n");
    let ok = load_str(
        &format!("{inst}credential_refresh_margin = 1800\n"),
        Path::new("."),
    );
    assert_eq!(
        ok.unwrap().databases[0].refresh_margin,
        Some(Duration::from_secs(1800))
    );
    let e = load_str(
        &format!("{inst}credential_refresh_margin = 3600\n"),
        Path::new("."),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("databases[0].credential_refresh_margin") && e.contains("at most 1800"),
        "{e}"
    );
    let ep = format!("{LAKEBASE}endpoint = \"projects/p/branches/b/endpoints/e\"\nttl = 600\n");
    let e = load_str(
        &format!("{ep}credential_refresh_margin = 301\n"),
        Path::new("."),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("at most 300"), "{e}");
    assert!(
        load_str(
            &format!("{ep}credential_refresh_margin = 300\n"),
            Path::new(".")
        )
        .is_ok()
    );
}

#[test]
fn workspace_auth_attributes_under_their_sdk_names() {
    let ws = |lines: &str| {
        load_str(
            &format!("{BASE}\n[workspace]\nhost = \"https://ws.example\"\n{lines}\n"),
            Path::new("."),
        )
    };
    let c = ws(
        "auth_type = \"file-oidc\"\noidc_token_filepath = \"/var/run/token\"\n\
                azure_use_msi = true\nazure_client_secret = \"s\"",
    )
    .unwrap();
    let sdk = &c.workspace.sdk;
    assert_eq!(
        sdk.oidc_token_filepath.as_deref(),
        Some(Path::new("/var/run/token"))
    );
    assert_eq!(sdk.azure_use_msi, Some(true));
    assert_eq!(
        sdk.azure_client_secret.as_ref().unwrap().expose_secret(),
        "s"
    );
    let e = ws("auth_type = \"azure-cli\"").unwrap_err().to_string();
    assert!(
        e.contains("workspace.auth_type") && e.contains("databricks-cli"),
        "{e}"
    );
    let e = ws("metadata_service_url = \"localhost:9\"")
        .unwrap_err()
        .to_string();
    assert!(e.contains("workspace.metadata_service_url"), "{e}");
    let e = ws("azure_client_secret = \"a\"\nazure_client_secret_env = \"B\"")
        .unwrap_err()
        .to_string();
    assert!(e.contains("workspace.azure_client_secret"), "{e}");
}

#[test]
fn environment_variables_in_string_values() {
    let env = |k: &str| match k {
        "PGHOST" => Some("instance-1.database.example".to_owned()),
        "PGUSER" => Some("6f1c2a9e-app".to_owned()),
        "APP_PW" => Some("pw-from-env".to_owned()),
        _ => None,
    };
    let text = "[server]\nlisten = \"127.0.0.1:0\"\n\
        [[users]]\nname = \"app\"\npassword = \"${APP_PW}\"\n\
        [[databases]]\nname = \"app\"\nhost = \"${PGHOST}\"\nuser = \"${PGUSER}\"\n\
        server_reset_query = \"SELECT '$${not_a_var}'\"\n";
    let c = load_str_with_env(text, Path::new("."), &env).unwrap();
    assert_eq!(
        c.databases[0].host.as_deref(),
        Some("instance-1.database.example")
    );
    assert_eq!(c.databases[0].user.as_deref(), Some("6f1c2a9e-app"));
    assert_eq!(c.users[0].password.expose_secret(), "pw-from-env");
    assert_eq!(
        c.databases[0].pool.server_reset_query,
        "SELECT '${not_a_var}'"
    );
    // A missing variable names itself and the key, never the value around it.
    let text = text.replace("${APP_PW}", "hunter2-${NOT_SET}");
    let e = load_str_with_env(&text, Path::new("."), &env)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("users[0].password") && e.contains("NOT_SET") && !e.contains("hunter2"),
        "{e}"
    );
}
