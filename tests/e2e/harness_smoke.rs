//! Checks the harness on its own, against PostgreSQL directly: if these
//! fail, lakepool's end-to-end failures mean nothing.

use std::time::Duration;

use crate::support::certs::{TestCa, client_tls_config};
use crate::support::lakepool::{parse_listening, strip_ansi};
use crate::support::wire::{self, AUTH_CLEARTEXT, AUTH_MD5, AUTH_SASL, RawConn, Reply};
use crate::support::{
    self, APP_DB, APP_OWNER, MD5_OWNER, PLAIN_OWNER, connect, ok_stdout, pg, pgbench, pgbench_init,
    psql,
};

#[test]
fn roles_and_database_exist() {
    let pg = pg();
    let roles = pg.exec_sql(
        "SELECT rolname || ':' || left(rolpassword, 3) FROM pg_authid \
         WHERE rolname IN ('app_owner', 'md5_owner', 'plain_owner') ORDER BY 1",
    );
    // md5_owner must really be stored as MD5, the others as SCRAM.
    assert_eq!(roles, "app_owner:SCR\nmd5_owner:md5\nplain_owner:SCR");
    let owner = pg.exec_sql(&format!(
        "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{APP_DB}'"
    ));
    assert_eq!(owner, APP_OWNER.0);
    assert!(pg.log_file.exists(), "server log missing");
}

#[tokio::test]
async fn tls_to_postgres_verifies_against_test_ca() {
    let pg = pg();
    let client = connect(pg.port, APP_OWNER.0, APP_OWNER.1, APP_DB, true)
        .await
        .expect("TLS connect as app_owner");
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .expect("query pg_stat_ssl");
    assert!(row.get::<_, bool>(0), "connection is not encrypted");

    // A CA that did not sign the server certificate must be rejected, or
    // the TLS tests built on this harness would prove nothing.
    let dir = tempfile::tempdir_in(support::scratch_dir()).expect("tempdir");
    let other = TestCa::new("unrelated CA");
    let other_file = dir.path().join("other-ca.crt");
    other.write_ca(&other_file);
    let mut cfg = tokio_postgres::Config::new();
    cfg.host(pg.host)
        .port(pg.port)
        .user(APP_OWNER.0)
        .password(APP_OWNER.1)
        .dbname(APP_DB)
        .ssl_mode(tokio_postgres::config::SslMode::Require);
    let tls = tokio_postgres_rustls::MakeRustlsConnect::new(client_tls_config(&other_file));
    let err = cfg.connect(tls).await.err().expect("unknown CA accepted");
    assert!(
        format!("{err:?}").contains("UnknownIssuer"),
        "unexpected error: {err:?}"
    );
}

#[tokio::test]
async fn superuser_client_works() {
    let client = pg().connect_superuser().await;
    let row = client
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), pg().superuser);
}

#[test]
fn psql_helper_with_verify_full() {
    let pg = pg();
    let out = psql(
        pg.port,
        APP_OWNER.0,
        APP_OWNER.1,
        APP_DB,
        "verify-full",
        "SELECT 1",
    );
    assert_eq!(ok_stdout("psql verify-full", &out), "1");
}

#[test]
fn md5_and_cleartext_roles_log_in() {
    let pg = pg();
    for ((user, password), code) in [(MD5_OWNER, AUTH_MD5), (PLAIN_OWNER, AUTH_CLEARTEXT)] {
        // The raw client checks which method PostgreSQL actually asked for.
        let mut raw = RawConn::connect(pg.port);
        raw.send(&wire::startup(
            wire::PROTOCOL_3_0,
            &[("user", user), ("database", APP_DB)],
        ))
        .unwrap();
        let req = raw.skip_until(b'R', "auth request");
        assert_eq!(req.auth_code(), Some(code), "{user}: wrong auth method");
        drop(raw);

        let mut raw = RawConn::login_password(pg.port, user, password, APP_DB);
        assert_eq!(
            raw.simple_query("SELECT current_user"),
            vec![Some(user.to_string())]
        );
        raw.terminate();

        let out = psql(pg.port, user, password, APP_DB, "disable", "SELECT 2");
        assert_eq!(ok_stdout(user, &out), "2");
    }
}

#[test]
fn raw_protocol_codec_against_postgres() {
    let port = pg().port;

    // 3.5 with an unknown protocol option: NegotiateProtocolVersion, then auth.
    let mut raw = RawConn::connect(port);
    raw.send(&wire::startup(
        (3 << 16) | 5,
        &[
            ("user", APP_OWNER.0),
            ("database", APP_DB),
            ("_pq_.harness_test", "1"),
        ],
    ))
    .unwrap();
    let v = raw.expect_msg("NegotiateProtocolVersion");
    let (version, unknown) = v.negotiate_protocol().expect("'v' message");
    assert_eq!(version, wire::PROTOCOL_3_0, "PostgreSQL 15 speaks 3.0 only");
    assert_eq!(unknown, vec!["_pq_.harness_test".to_string()]);
    let auth = raw.expect_msg("auth request");
    assert_eq!(auth.auth_code(), Some(AUTH_SASL));
    assert!(
        auth.sasl_mechanisms()
            .contains(&"SCRAM-SHA-256".to_string())
    );

    // GSSENCRequest gets one byte: Debian's build has GSSAPI, so 'G'
    // (lakepool answers 'N'; see bad_input.rs).
    let mut raw = RawConn::connect(port);
    raw.send(&wire::special_request(wire::GSSENC_REQUEST))
        .unwrap();
    let answer = raw.read_byte().ok();
    assert!(
        matches!(answer, Some(b'G' | b'N')),
        "GSSENCRequest answer {answer:?}"
    );

    // SSLRequest is accepted ('S') because the cluster has ssl=on.
    let mut raw = RawConn::connect(port);
    raw.send(&wire::special_request(wire::SSL_REQUEST)).unwrap();
    assert_eq!(raw.read_byte().ok(), Some(b'S'));

    // A startup length below 8 is rejected (PostgreSQL just closes).
    let mut raw = RawConn::connect(port);
    raw.send(&[0, 0, 0, 4, 0, 3, 0, 0]).unwrap();
    raw.expect_error_or_close(&["08P01"], "short startup");

    // Unknown and wrong-password users get the same SQLSTATE from PostgreSQL.
    let mut raw = RawConn::connect(port);
    raw.set_read_timeout(Duration::from_millis(500));
    raw.send(&wire::startup(
        wire::PROTOCOL_3_0,
        &[("user", "no_such_role")],
    ))
    .unwrap();
    assert_eq!(raw.skip_until(b'R', "auth").auth_code(), Some(AUTH_SASL));
    assert!(
        matches!(raw.read_msg(), Reply::TimedOut),
        "server should await SASL"
    );
}

#[test]
fn pgbench_init_and_run() {
    pgbench_init(APP_DB, 1);
    pgbench_init(APP_DB, 1); // second call is a no-op
    let out = pgbench(
        pg().port,
        MD5_OWNER.0,
        MD5_OWNER.1,
        APP_DB,
        &["-n", "-c", "2", "-t", "20", "-S"],
    );
    let text = ok_stdout("pgbench", &out);
    assert!(text.contains("number of failed transactions: 0"), "{text}");
}

#[test]
fn listening_line_parsing() {
    let line = "\u{1b}[2m2026-01-01T00:00:00Z\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m lakepool: \
                listening \u{1b}[3maddr\u{1b}[0m\u{1b}[2m=\u{1b}[0m127.0.0.1:40001";
    let clean = strip_ansi(line);
    assert!(clean.ends_with("listening addr=127.0.0.1:40001"), "{clean}");
    assert_eq!(parse_listening(&clean).map(|a| a.port()), Some(40001));
    assert_eq!(
        parse_listening("INFO listening addr=\"127.0.0.1:7\" workers=2").map(|a| a.port()),
        Some(7)
    );
    assert_eq!(parse_listening("INFO starting"), None);
}
