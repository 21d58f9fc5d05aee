//! Transaction mode with named prepared statements: statements follow clients from server to
//! server, replies the client did not cause never reach it, errors mid-pipeline stay exact.

use std::time::Duration;

use crate::fixtures::{self, APP, Opts};
use crate::support::connect;

async fn app(port: u16) -> tokio_postgres::Client {
    connect(port, APP.0, APP.1, "app", false)
        .await
        .expect("login through lakepool")
}

/// Fails the test instead of hanging when lakepool loses track of a reply.
async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within 20 s"))
}

#[tokio::test]
async fn statements_follow_clients_across_servers() {
    let lp = fixtures::start(&Opts {
        size: 2,
        ..Opts::default()
    });
    let port = lp.port();
    let mut tasks = Vec::new();
    for client in 0..6i32 {
        tasks.push(tokio::spawn(async move {
            let c = app(port).await;
            // The same text in every client (shared server-side name) and one of its own.
            let shared = c.prepare("select $1::int + 1").await.unwrap();
            let own = c
                .prepare(&format!("select $1::int * {}", client + 2))
                .await
                .unwrap();
            let mut pids = std::collections::HashSet::new();
            for i in 0..40i32 {
                let row = within("shared", c.query_one(&shared, &[&i])).await.unwrap();
                assert_eq!(row.get::<_, i32>(0), i + 1);
                let row = within("own", c.query_one(&own, &[&i])).await.unwrap();
                assert_eq!(row.get::<_, i32>(0), i * (client + 2));
                let pid: i32 = within("pid", c.query_one("select pg_backend_pid()", &[]))
                    .await
                    .unwrap()
                    .get(0);
                pids.insert(pid);
            }
            pids.len()
        }));
    }
    let mut spread = 0;
    for t in tasks {
        spread = spread.max(t.await.unwrap());
    }
    assert!(spread >= 2, "statements never moved between servers");
}

#[tokio::test]
async fn one_server_prepares_a_shared_statement_once() {
    let lp = fixtures::start(&Opts {
        size: 1,
        ..Opts::default()
    });
    let port = lp.port();
    let text = "select $1::int + 100 as shared_once";
    let (a, b) = (app(port).await, app(port).await);
    for c in [&a, &b] {
        let st = c.prepare(text).await.unwrap();
        for i in 0..5i32 {
            let row = within("execute", c.query_one(&st, &[&i])).await.unwrap();
            assert_eq!(row.get::<_, i32>(0), i + 100);
        }
    }
    // Both clients ran on the one server: it holds the statement once, under lakepool's name.
    let rows = a
        .query(
            "select name from pg_prepared_statements where statement = $1",
            &[&text],
        )
        .await
        .unwrap();
    let names: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(names[0].starts_with("lakepool_"), "{names:?}");
    // DISCARD ALL drops the server's statements and the client's, as PostgreSQL does.
    let st = a.prepare("select 7").await.unwrap();
    a.batch_execute("DISCARD ALL").await.unwrap();
    let err = a.query_one(&st, &[]).await.unwrap_err();
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::INVALID_SQL_STATEMENT_NAME),
        "{err}"
    );
    let left: i64 = b
        .query_one(
            "select count(*) from pg_prepared_statements where name like 'lakepool_%' and statement = $1",
            &[&text],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
}

#[tokio::test]
async fn pipelined_error_in_the_middle_keeps_later_replies_in_order() {
    let lp = fixtures::start(&Opts {
        size: 1,
        ..Opts::default()
    });
    let port = lp.port();
    let (a, b) = (app(port).await, app(port).await);
    let div = a.prepare("select 10 / $1::int").await.unwrap();
    // The other client keeps the one server busy between a's pipelines, so each of a's
    // statements is found or prepared again as needed.
    let noise = tokio::spawn(async move {
        for _ in 0..30 {
            b.query_one("select 1", &[]).await.unwrap();
        }
    });
    for _ in 0..10 {
        let (x, y, z) = within(
            "pipeline",
            futures_util::future::join3(
                a.query_one(&div, &[&2i32]),
                a.query_one(&div, &[&0i32]),
                a.query_one(&div, &[&5i32]),
            ),
        )
        .await;
        assert_eq!(x.unwrap().get::<_, i32>(0), 5);
        let err = y.unwrap_err();
        assert_eq!(
            err.code(),
            Some(&tokio_postgres::error::SqlState::DIVISION_BY_ZERO)
        );
        assert_eq!(z.unwrap().get::<_, i32>(0), 2);
    }
    noise.await.unwrap();
}

#[tokio::test]
async fn set_values_follow_the_client_and_do_not_leak() {
    let lp = fixtures::start(&Opts {
        size: 2,
        ..Opts::default()
    });
    let port = lp.port();
    let a = app(port).await;
    a.batch_execute("SET search_path TO pg_catalog, public; SET statement_timeout = '7s'")
        .await
        .unwrap();
    // Inside a rolled-back transaction the SET does not stick, as in PostgreSQL.
    a.batch_execute("BEGIN; SET lock_timeout = '3s'; ROLLBACK")
        .await
        .unwrap();
    let others: Vec<_> = futures_util::future::join_all((0..4).map(|_| app(port))).await;
    for round in 0..10 {
        for o in &others {
            let row = o
                .query_one(
                    "select current_setting('search_path'), current_setting('statement_timeout')",
                    &[],
                )
                .await
                .unwrap();
            assert_eq!(
                row.get::<_, String>(0),
                "\"$user\", public",
                "round {round}"
            );
            assert_eq!(row.get::<_, String>(1), "0", "round {round}");
        }
        let row = a
            .query_one(
                "select current_setting('search_path'), current_setting('statement_timeout'), current_setting('lock_timeout')",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(
            row.get::<_, String>(0),
            "pg_catalog, public",
            "round {round}"
        );
        assert_eq!(row.get::<_, String>(1), "7s");
        assert_eq!(row.get::<_, String>(2), "0");
    }
}

/// A `DEALLOCATE ALL` run inside a `DO` block drops the server's statements where lakepool
/// cannot see it. The next use of a statement fails once (as it would on a direct connection)
/// and lakepool stops trusting that server's copy: the use after prepares it again, instead
/// of failing on that server until the statement is evicted.
#[tokio::test]
async fn a_statement_deallocated_inside_a_do_block_is_prepared_again() {
    let lp = fixtures::start(&Opts {
        size: 1,
        ..Opts::default()
    });
    let c = app(lp.port()).await;
    let s = c.prepare("select $1::int + 1").await.unwrap();
    let row = within("first use", c.query_one(&s, &[&1i32]))
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 2);
    within(
        "DO",
        c.batch_execute("DO $$ begin execute 'DEALLOCATE ALL'; end $$"),
    )
    .await
    .unwrap();
    let err = within("use after", c.query_one(&s, &[&1i32]))
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::INVALID_SQL_STATEMENT_NAME),
        "{err}"
    );
    for i in 0..3i32 {
        let row = within("prepared again", c.query_one(&s, &[&i]))
            .await
            .unwrap_or_else(|e| panic!("use {i} after the failure: {e}"));
        assert_eq!(row.get::<_, i32>(0), i + 1);
    }
}
