//! Real clients end to end: psql (plain and TLS), pgbench in both pool modes and protocols,
//! upstream TLS modes and upstream auth methods, COPY and large results.

use crate::fixtures::{self, APP, OWNER_PW_ENV, Opts};
use crate::support::lakepool::database_toml;
use crate::support::{
    APP_DB, APP_OWNER, Lakepool, MD5_OWNER, PLAIN_OWNER, failed_transactions, ok_stdout, pgbench,
    pgbench_init, psql,
};

fn processed(out: &str) -> u64 {
    out.lines()
        .find(|l| l.starts_with("number of transactions actually processed:"))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|v| v.split('/').next())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn run_pgbench(port: u16, args: &[&str]) -> String {
    let out = pgbench(port, APP.0, APP.1, "app", args);
    let text = ok_stdout(&format!("pgbench {args:?}"), &out);
    assert_eq!(failed_transactions(&text), Some(0), "{text}");
    text
}

#[test]
fn pgbench_transaction_and_session_modes() {
    pgbench_init(APP_DB, 1);
    for mode in ["transaction", "session"] {
        // Session mode gives each client its server at login (so it sees the server's own
        // pid): every pgbench client needs one before any runs.
        let size = if mode == "session" { 8 } else { 3 };
        let lp = fixtures::start(&Opts {
            mode,
            size,
            ..Opts::default()
        });
        for proto in ["simple", "extended", "prepared"] {
            // -M prepared: pgbench prepares with a blocking call that stalls every client of
            // its thread, so with fewer threads than clients its own clients, holding all
            // servers mid-transaction, can wait on each other. One thread per client.
            let threads = if proto == "prepared" { "8" } else { "2" };
            let text = run_pgbench(
                lp.port(),
                &["-n", "-c", "8", "-j", threads, "-t", "150", "-M", proto],
            );
            assert_eq!(processed(&text), 8 * 150, "{mode}/{proto}: {text}");
        }
        // Select-only with connection churn (-C): every transaction logs in anew.
        let text = run_pgbench(
            lp.port(),
            &["-n", "-S", "-C", "-c", "4", "-j", "2", "-t", "20"],
        );
        assert_eq!(processed(&text), 80, "{mode}/-C: {text}");
    }
}

#[test]
fn psql_plain_and_tls_with_copy_and_large_results() {
    let lp = fixtures::start(&Opts::default());
    let port = lp.port();
    for sslmode in ["disable", "require"] {
        let out = psql(
            port,
            APP.0,
            APP.1,
            "app",
            sslmode,
            "select count(*) from generate_series(1, 200000)",
        );
        assert_eq!(ok_stdout(sslmode, &out), "200000");
    }
    // A result much larger than any buffer streams through.
    let out = psql(
        port,
        APP.0,
        APP.1,
        "app",
        "require",
        "select repeat('x', 1000) from generate_series(1, 20000)",
    );
    let text = ok_stdout("large result", &out);
    assert_eq!(text.lines().count(), 20000);
    // COPY out streams too.
    let out = psql(
        port,
        APP.0,
        APP.1,
        "app",
        "disable",
        "copy (select g, md5(g::text) from generate_series(1, 50000) g) to stdout",
    );
    assert_eq!(ok_stdout("copy out", &out).lines().count(), 50000);
}

#[tokio::test]
async fn copy_in_streams_through_and_releases_the_server() {
    // One server: if lakepool miscounted the replies owed after an extended-protocol COPY
    // (the server ignores the Sync sent with the Execute), it would never release it and the
    // second client would wait forever.
    let lp = fixtures::start(&Opts {
        size: 1,
        wait: 5.0,
        ..Opts::default()
    });
    let c = crate::support::connect(lp.port(), APP.0, APP.1, "app", false)
        .await
        .unwrap();
    c.batch_execute("create table if not exists copy_in_e2e (a int, b text); truncate copy_in_e2e")
        .await
        .unwrap();
    let sink = c
        .copy_in::<_, bytes::Bytes>("copy copy_in_e2e from stdin")
        .await
        .unwrap();
    use futures_util::SinkExt;
    let mut sink = Box::pin(sink);
    let mut chunk = String::new();
    for i in 0..100_000 {
        chunk.push_str(&format!("{i}\trow {i}\n"));
        if chunk.len() > 64 * 1024 {
            sink.send(bytes::Bytes::from(std::mem::take(&mut chunk)))
                .await
                .unwrap();
        }
    }
    sink.send(bytes::Bytes::from(chunk)).await.unwrap();
    let n = sink.as_mut().finish().await.unwrap();
    assert_eq!(n, 100_000);
    let other = crate::support::connect(lp.port(), APP.0, APP.1, "app", false)
        .await
        .unwrap();
    let count: i64 = other
        .query_one("select count(*) from copy_in_e2e", &[])
        .await
        .expect("the server was released after the COPY")
        .get(0);
    assert_eq!(count, 100_000);
}

/// lakepool logs in upstream with md5 and cleartext as the server asks, and over each TLS mode.
#[test]
fn upstream_auth_methods_and_tls_modes() {
    let variants = [
        (APP_OWNER, "verify-full", "scram over verify-full"),
        (APP_OWNER, "verify-ca", "scram over verify-ca"),
        (APP_OWNER, "require", "scram over require"),
        (APP_OWNER, "disable", "scram over plain TCP"),
        (MD5_OWNER, "verify-full", "md5"),
        (PLAIN_OWNER, "verify-full", "cleartext"),
    ];
    for ((role, pw), tls, what) in variants {
        let text = fixtures::config(&Opts::default());
        let db_start = text.find("[[databases]]").unwrap();
        let text = format!(
            "{}{}",
            &text[..db_start],
            database_toml("app", APP_DB, role, OWNER_PW_ENV, tls)
        );
        let lp = Lakepool::start(&text, &[(OWNER_PW_ENV, pw)]);
        let out = psql(
            lp.port(),
            APP.0,
            APP.1,
            "app",
            "disable",
            "select current_user",
        );
        assert_eq!(ok_stdout(what, &out), role, "{what}");
    }
}

#[tokio::test]
async fn upstream_certificate_from_an_untrusted_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let other = crate::support::certs::TestCa::new("not-the-server-ca");
    let other_ca = dir.path().join("other-ca.pem");
    other.write_ca(&other_ca);
    let text = fixtures::config(&Opts::default());
    let db_start = text.find("[[databases]]").unwrap();
    let db = database_toml("app", APP_DB, APP_OWNER.0, OWNER_PW_ENV, "verify-full").replace(
        &format!("ca_file = \"{}\"", crate::support::pg().ca_file.display()),
        &format!("ca_file = \"{}\"", other_ca.display()),
    );
    let lp = Lakepool::start(
        &format!("{}{}", &text[..db_start], db),
        &[(OWNER_PW_ENV, APP_OWNER.1)],
    );
    let err = crate::support::connect(lp.port(), APP.0, APP.1, "app", false)
        .await
        .unwrap_err();
    let db = err
        .as_db_error()
        .expect("a clear error, not a dropped socket");
    assert_eq!(db.code().code(), "08006");
    assert!(db.message().contains("TLS handshake"), "{}", db.message());
}
