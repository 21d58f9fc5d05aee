//! What else the protocol carries, in transaction mode with statement mapping on: notices,
//! notifications, empty queries, multi-statement simple queries, warnings about session-only
//! features, and the idle limits.

use crate::fixtures::{self, APP, Opts};
use crate::support::{connect, ok_stdout, psql};

#[test]
fn notices_notifications_and_warnings_reach_psql() {
    let lp = fixtures::start(&Opts {
        size: 2,
        ..Opts::default()
    });
    let run = |sql: &str| psql(lp.port(), APP.0, APP.1, "app", "require", sql);
    let out = run("do $$ begin raise notice 'hello from plpgsql'; end $$");
    ok_stdout("notice", &out);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("NOTICE:  hello from plpgsql"),
        "{out:?}"
    );
    // A notification sent and received inside one transaction (the only way LISTEN can work
    // in transaction mode), plus lakepool's warning that LISTEN does not outlive it.
    let out = run("begin; listen proto_ch; notify proto_ch, 'payload'; commit");
    ok_stdout("notify", &out);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("Asynchronous notification \"proto_ch\" with payload \"payload\""),
        "{text}"
    );
    assert!(
        text.contains("WARNING:  lakepool: LISTEN lasts only until the end of the transaction"),
        "{text}"
    );
    // Session-level advisory locks and temporary tables are pointed out, not refused.
    let out = run("select pg_advisory_lock(42); select pg_advisory_unlock(42)");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("session-level advisory lock"),
        "{out:?}"
    );
    let out = run("create temp table proto_tmp (a int); drop table proto_tmp");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("temporary object"),
        "{out:?}"
    );
}

#[tokio::test]
async fn empty_and_multi_statement_queries() {
    let lp = fixtures::start(&Opts {
        size: 1,
        ..Opts::default()
    });
    let c = connect(lp.port(), APP.0, APP.1, "app", false)
        .await
        .unwrap();
    let msgs = c.simple_query("").await.unwrap();
    assert!(
        msgs.iter()
            .all(|m| !matches!(m, tokio_postgres::SimpleQueryMessage::Row(_))),
        "empty query returns no rows"
    );
    let msgs = c
        .simple_query("select 1; select 2 union all select 3; ; select 4")
        .await
        .unwrap();
    let rows: Vec<String> = msgs
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .collect();
    assert_eq!(rows, ["1", "2", "3", "4"]);
    // An error in the middle of a multi-statement query aborts it all; the client goes on.
    let err = c
        .simple_query("select 1; select 1/0; select 2")
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::DIVISION_BY_ZERO)
    );
    let v: i32 = c.query_one("select 5", &[]).await.unwrap().get(0);
    assert_eq!(v, 5);
}

#[tokio::test]
async fn server_killed_mid_transaction_gives_a_clear_error_then_recovers() {
    let lp = fixtures::start(&Opts {
        size: 1,
        ..Opts::default()
    });
    let su = crate::support::pg().connect_superuser().await;
    let c = connect(lp.port(), APP.0, APP.1, "app", false)
        .await
        .unwrap();
    c.batch_execute("begin").await.unwrap();
    let pid: i32 = c
        .query_one("select pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    su.execute("select pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    // The client learns at its next statement, with PostgreSQL's 57P01 or lakepool's 08006.
    let err = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        c.query_one("select 1", &[]),
    )
    .await
    .expect("an answer, not a hang")
    .unwrap_err();
    let code = err.code().map(|s| s.code().to_owned());
    assert!(
        matches!(code.as_deref(), Some("57P01") | Some("08006")) || err.is_closed(),
        "{err:?}"
    );
    // The pool replaces the server: the next client works at once.
    let next = connect(lp.port(), APP.0, APP.1, "app", false)
        .await
        .unwrap();
    let v: i32 = next.query_one("select 3", &[]).await.unwrap().get(0);
    assert_eq!(v, 3);
}
