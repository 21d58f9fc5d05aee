//! Client authentication through lakepool with real clients: SCRAM, SCRAM-PLUS, md5,
//! cleartext over TLS, failures, and secrets staying out of the logs.

use crate::fixtures::{
    self, APP, CLEAR_DB, CLEAR_USER, MD5_DB, MD5_USER, OWNER_PW_ENV, Opts, VERIFIER_USER,
};
use crate::support::{APP_OWNER, ok_stdout, psql};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn start_with_methods() -> crate::support::Lakepool {
    crate::support::Lakepool::start(
        &fixtures::config_with_methods(&Opts::default()),
        &[(OWNER_PW_ENV, APP_OWNER.1)],
    )
}

#[test]
fn scram_md5_cleartext_and_verifier_logins_work() {
    let lp = start_with_methods();
    let port = lp.port();
    // SCRAM over plain TCP and over TLS.
    assert_eq!(
        ok_stdout(
            "scram plain",
            &psql(port, APP.0, APP.1, "app", "disable", "select 1")
        ),
        "1"
    );
    assert_eq!(
        ok_stdout(
            "scram tls",
            &psql(port, APP.0, APP.1, "app", "require", "select 2")
        ),
        "2"
    );
    // A stored SCRAM verifier (no plaintext in the config).
    let out = psql(
        port,
        VERIFIER_USER.0,
        VERIFIER_USER.1,
        "app",
        "disable",
        "select 3",
    );
    assert_eq!(ok_stdout("verifier", &out), "3");
    // md5.
    let out = psql(
        port,
        MD5_USER.0,
        MD5_USER.1,
        MD5_DB,
        "disable",
        "select current_user",
    );
    assert_eq!(
        ok_stdout("md5", &out),
        APP_OWNER.0,
        "queries run as the upstream role"
    );
    // Cleartext over TLS works; without TLS it is refused with 28000.
    let out = psql(
        port,
        CLEAR_USER.0,
        CLEAR_USER.1,
        CLEAR_DB,
        "require",
        "select 4",
    );
    assert_eq!(ok_stdout("cleartext tls", &out), "4");
    let out = psql(
        port,
        CLEAR_USER.0,
        CLEAR_USER.1,
        CLEAR_DB,
        "disable",
        "select 5",
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("requires TLS"), "{}", stderr(&out));
}

#[test]
fn scram_plus_channel_binding_over_tls() {
    let lp = fixtures::start(&Opts::default());
    let port = lp.port();
    let mut cmd = std::process::Command::new(crate::support::pg_bin_dir().join("psql"));
    crate::support::scrub_pg_env(&mut cmd);
    let conninfo = format!(
        "host=127.0.0.1 port={port} user={} dbname=app sslmode=verify-full channel_binding=require",
        APP.0
    );
    let out = cmd
        .env("PGPASSWORD", APP.1)
        .env("PGSSLROOTCERT", &crate::support::pg().ca_file)
        .args(["-X", "-At", "-d", &conninfo, "-c", "select 'bound'"])
        .output()
        .unwrap();
    assert_eq!(ok_stdout("channel_binding=require", &out), "bound");
}

#[tokio::test]
async fn wrong_password_and_unknown_user_look_the_same() {
    let lp = start_with_methods();
    let port = lp.port();
    let wrong = crate::support::connect(port, APP.0, "not-the-password", "app", false)
        .await
        .unwrap_err();
    let unknown = crate::support::connect(port, "nobody", "whatever", "app", false)
        .await
        .unwrap_err();
    let (w, u) = (wrong.as_db_error().unwrap(), unknown.as_db_error().unwrap());
    assert_eq!(w.code().code(), "28P01");
    assert_eq!(u.code().code(), "28P01");
    assert_eq!(
        w.message(),
        "password authentication failed for user \"app\""
    );
    assert_eq!(
        u.message(),
        "password authentication failed for user \"nobody\""
    );
    // md5 with a wrong password, and over TLS.
    let out = psql(port, MD5_USER.0, "bad", MD5_DB, "require", "select 1");
    assert!(
        stderr(&out).contains("password authentication failed"),
        "{}",
        stderr(&out)
    );
    // Everything still works for others.
    let c = crate::support::connect(port, APP.0, APP.1, "app", true)
        .await
        .unwrap();
    assert_eq!(
        c.query_one("select 1", &[]).await.unwrap().get::<_, i32>(0),
        1
    );
}

#[tokio::test]
async fn unknown_database_is_3d000() {
    let lp = fixtures::start(&Opts::default());
    let err = crate::support::connect(lp.port(), APP.0, APP.1, "nosuchdb", false)
        .await
        .unwrap_err();
    let db = err.as_db_error().unwrap();
    assert_eq!(db.code().code(), "3D000");
}

#[test]
fn client_tls_require_refuses_plaintext() {
    let text = fixtures::config(&Opts::default())
        .replace("client_tls = \"prefer\"", "client_tls = \"require\"");
    let lp = crate::support::Lakepool::start(&text, &[(fixtures::OWNER_PW_ENV, APP_OWNER.1)]);
    let out = psql(lp.port(), APP.0, APP.1, "app", "disable", "select 1");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("requires TLS"), "{}", stderr(&out));
    let out = psql(lp.port(), APP.0, APP.1, "app", "require", "select 1");
    assert_eq!(ok_stdout("tls", &out), "1");
}

#[test]
fn secrets_never_reach_the_logs() {
    let text = fixtures::config_with_methods(&Opts::default());
    let lp = crate::support::Lakepool::start(
        &text,
        &[(fixtures::OWNER_PW_ENV, APP_OWNER.1), ("RUST_LOG", "trace")],
    );
    let port = lp.port();
    ok_stdout(
        "login",
        &psql(port, APP.0, APP.1, "app", "require", "select 1"),
    );
    ok_stdout(
        "md5",
        &psql(port, MD5_USER.0, MD5_USER.1, MD5_DB, "disable", "select 1"),
    );
    ok_stdout(
        "clear",
        &psql(
            port,
            CLEAR_USER.0,
            CLEAR_USER.1,
            CLEAR_DB,
            "require",
            "select 1",
        ),
    );
    let _ = psql(
        port,
        APP.0,
        "wrong-secret-xyz",
        "app",
        "disable",
        "select 1",
    );
    let logs = lp.logs();
    assert!(
        logs.contains("client logged in"),
        "trace logs were captured"
    );
    for secret in [
        APP.1,
        MD5_USER.1,
        CLEAR_USER.1,
        APP_OWNER.1,
        "wrong-secret-xyz",
    ] {
        assert!(!logs.contains(secret), "secret {secret:?} found in logs");
    }
}

/// lakepool holds SASL's final message and AuthenticationOk back to send them with the
/// greeting, or with the error that ends a login after the password checked out, in one
/// write. The client still sees every message, in PostgreSQL's order.
#[test]
fn authentication_ok_comes_before_the_greeting_and_before_a_later_error() {
    use crate::support::wire::{AUTH_SASL, PROTOCOL_3_0, RawConn, startup};
    let lp = start_with_methods();
    let port = lp.port();
    // The password checks out, then the login fails with `code`: SASLFinal and
    // AuthenticationOk come first (`scram_exchange` asserts both as the next two messages),
    // then the error, then the connection closes.
    let refused_after_scram = |database: &str, code: &str| {
        let mut c = RawConn::connect(port);
        c.send(&startup(
            PROTOCOL_3_0,
            &[("user", APP.0), ("database", database)],
        ))
        .expect("send startup");
        let req = c.expect_msg("auth request");
        assert_eq!(req.auth_code(), Some(AUTH_SASL), "{:?}", req.fields());
        c.scram_exchange(APP.1);
        let err = c.expect_error_or_close(&[code], database);
        assert!(err.is_some(), "{database}: the client must hear why");
        c.expect_closed(database);
    };
    // A database lakepool does not serve.
    refused_after_scram("no_such_db", "3D000");
    // The admin console, for a user who is not an admin.
    refused_after_scram("lakepool", "42501");
    // A login that succeeds: AuthenticationOk (read inside), then ParameterStatus messages,
    // BackendKeyData and ReadyForQuery.
    let mut c = RawConn::login_password(port, APP.0, APP.1, "app");
    assert!(c.parameter("server_version").is_some(), "{:?}", c.greeting);
    assert!(c.backend_pid().is_some(), "BackendKeyData missing");
    assert_eq!(c.simple_query("select 7"), vec![Some("7".to_owned())]);
    c.terminate();
}
