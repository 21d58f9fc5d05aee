//! Pooling behaviour with tokio-postgres as the client: transaction isolation, session reset,
//! queue timeout, cancel, parameter tracking, clean-up after vanished clients.

use std::time::{Duration, Instant};

use crate::fixtures::{self, APP, Opts};
use crate::support::connect;

async fn app(port: u16) -> tokio_postgres::Client {
    connect(port, APP.0, APP.1, "app", false)
        .await
        .expect("login through lakepool")
}

/// Logs in as `app` with an application name and `-c` options.
async fn app_with(port: u16, name: Option<&str>, options: Option<&str>) -> tokio_postgres::Client {
    let mut cfg = tokio_postgres::Config::new();
    cfg.host("127.0.0.1")
        .port(port)
        .user(APP.0)
        .password(APP.1)
        .dbname("app");
    if let Some(n) = name {
        cfg.application_name(n);
    }
    if let Some(o) = options {
        cfg.options(o);
    }
    crate::support::connect_config(cfg, false).await.unwrap()
}

async fn backend_pid(c: &tokio_postgres::Client) -> i32 {
    c.query_one("select pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn transactions_are_never_interleaved() {
    // Two servers, eight clients, each running transactions that check they stay on one
    // backend from BEGIN to COMMIT and see only their own uncommitted rows.
    let lp = fixtures::start(&Opts {
        size: 2,
        ..Opts::default()
    });
    let port = lp.port();
    let setup = app(port).await;
    setup
        .batch_execute("create table if not exists tx_isolation (client int, n int)")
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for client in 0..8i32 {
        tasks.push(tokio::spawn(async move {
            let c = app(port).await;
            for n in 0..15i32 {
                c.batch_execute("begin").await.unwrap();
                let pid = backend_pid(&c).await;
                c.execute("insert into tx_isolation values ($1, $2)", &[&client, &n])
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(2)).await;
                let mine: i64 = c
                    .query_one(
                        "select count(*) from tx_isolation where client = $1 and n = $2",
                        &[&client, &n],
                    )
                    .await
                    .unwrap()
                    .get(0);
                assert_eq!(mine, 1);
                assert_eq!(
                    backend_pid(&c).await,
                    pid,
                    "a transaction moved between servers"
                );
                c.batch_execute("rollback").await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let rows: i64 = setup
        .query_one("select count(*) from tx_isolation", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        rows, 0,
        "every transaction was rolled back on its own server"
    );
}

#[tokio::test]
async fn transaction_mode_shares_servers_between_clients() {
    let lp = fixtures::start(&Opts {
        size: 1,
        ..Opts::default()
    });
    let a = app(lp.port()).await;
    let b = app(lp.port()).await;
    assert_eq!(
        backend_pid(&a).await,
        backend_pid(&b).await,
        "one server serves both"
    );
}

#[tokio::test]
async fn session_mode_resets_servers_between_clients() {
    let lp = fixtures::start(&Opts {
        mode: "session",
        size: 1,
        ..Opts::default()
    });
    let a = app(lp.port()).await;
    a.batch_execute("set work_mem = '7MB'; create temp table leftover (x int)")
        .await
        .unwrap();
    let pid = backend_pid(&a).await;
    drop(a);
    // The reset runs in the background once the client is gone; the pool hands the server on
    // only after it.
    let b = app(lp.port()).await;
    assert_eq!(backend_pid(&b).await, pid, "same server reused");
    let wm: String = b.query_one("show work_mem", &[]).await.unwrap().get(0);
    assert_eq!(wm, "4MB", "DISCARD ALL reset the setting");
    let temp: i64 = b
        .query_one(
            "select count(*) from pg_class where relname = 'leftover'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(temp, 0, "temp table dropped by the reset");
}

#[tokio::test]
async fn queue_wait_timeout_gives_57014() {
    let lp = fixtures::start(&Opts {
        size: 1,
        wait: 0.5,
        ..Opts::default()
    });
    let holder = app(lp.port()).await;
    holder.batch_execute("begin; select 1").await.unwrap();
    let waiter = app(lp.port()).await;
    let started = Instant::now();
    let err = waiter.batch_execute("select 1").await.unwrap_err();
    let db = err
        .as_db_error()
        .expect("an ErrorResponse, not a dropped socket");
    assert_eq!(db.code().code(), "57014");
    assert!(
        db.message().contains("query_wait_timeout"),
        "{}",
        db.message()
    );
    assert!(started.elapsed() >= Duration::from_millis(450));
    // The holder is unaffected.
    holder.batch_execute("commit").await.unwrap();
    let c = app(lp.port()).await;
    c.batch_execute("select 1").await.unwrap();
}

#[tokio::test]
async fn cancel_reaches_the_right_server() {
    let lp = fixtures::start(&Opts {
        size: 2,
        ..Opts::default()
    });
    let c = app(lp.port()).await;
    let token = c.cancel_token();
    let sleeper = tokio::spawn(async move { c.batch_execute("select pg_sleep(20)").await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let err = sleeper.await.unwrap().unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "57014");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn cancel_with_a_wrong_key_or_idle_client_does_nothing() {
    let lp = fixtures::start(&Opts {
        size: 1,
        ..Opts::default()
    });
    // An idle transaction-mode client holds no server: its cancel must not hit anyone.
    let idle = app(lp.port()).await;
    let busy = app(lp.port()).await;
    let idle_token = idle.cancel_token();
    let work = tokio::spawn(async move { busy.query_one("select pg_sleep(1), 42", &[]).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    idle_token
        .cancel_query(tokio_postgres::NoTls)
        .await
        .unwrap();
    // A forged key.
    let mut raw = tokio::net::TcpStream::connect(lp.addr()).await.unwrap();
    use tokio::io::AsyncWriteExt;
    let mut pkt = Vec::new();
    pkt.extend_from_slice(&16u32.to_be_bytes());
    pkt.extend_from_slice(&80_877_102u32.to_be_bytes());
    pkt.extend_from_slice(&1234u32.to_be_bytes());
    pkt.extend_from_slice(&5678u32.to_be_bytes());
    raw.write_all(&pkt).await.unwrap();
    let row = work.await.unwrap().expect("query was not cancelled");
    assert_eq!(row.get::<_, i32>(1), 42);
}

#[tokio::test]
async fn client_vanishing_mid_transaction_leaves_no_dirty_server() {
    let lp = fixtures::start(&Opts {
        size: 1,
        ..Opts::default()
    });
    let setup = app(lp.port()).await;
    setup
        .batch_execute("create table if not exists vanish_lock (x int)")
        .await
        .unwrap();
    drop(setup);
    let a = app(lp.port()).await;
    a.batch_execute("begin; lock table vanish_lock in access exclusive mode")
        .await
        .unwrap();
    drop(a); // socket closes mid-transaction
    let b = app(lp.port()).await;
    let status: String = tokio::time::timeout(
        Duration::from_secs(10),
        b.query_one(
            "select coalesce((select 'locked' from pg_locks l join pg_class c on c.oid = l.relation \
             where c.relname = 'vanish_lock' and l.mode = 'AccessExclusiveLock' limit 1), 'free')",
            &[],
        ),
    )
    .await
    .expect("the next client got a server")
    .unwrap()
    .get(0);
    assert_eq!(status, "free", "the abandoned transaction was rolled back");
    b.batch_execute("begin; lock table vanish_lock in access exclusive mode nowait; commit")
        .await
        .unwrap();
}

#[tokio::test]
async fn startup_parameters_follow_the_client_across_servers() {
    let lp = fixtures::start(&Opts {
        size: 1,
        ..Opts::default()
    });
    let a = app_with(lp.port(), Some("client_a"), Some("-c DateStyle=SQL,DMY")).await;
    let b = app_with(lp.port(), Some("client_b"), None).await;
    for _ in 0..3 {
        let (name, style): (String, String) = {
            let r = a
                .query_one(
                    "select current_setting('application_name'), current_setting('DateStyle')",
                    &[],
                )
                .await
                .unwrap();
            (r.get(0), r.get(1))
        };
        assert_eq!((name.as_str(), style.as_str()), ("client_a", "SQL, DMY"));
        let r = b
            .query_one(
                "select current_setting('application_name'), current_setting('DateStyle')",
                &[],
            )
            .await
            .unwrap();
        let (name, style): (String, String) = (r.get(0), r.get(1));
        assert_eq!(name, "client_b");
        assert_eq!(
            style, "ISO, MDY",
            "b gets the server default, not a's setting"
        );
    }
    // A SET made by the client is kept across transactions too (reported parameter).
    a.batch_execute("set application_name = 'renamed'")
        .await
        .unwrap();
    b.batch_execute("select 1").await.unwrap();
    let name: String = a
        .query_one("select current_setting('application_name')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(name, "renamed");
}

#[tokio::test]
async fn server_restart_is_survived() {
    // A server connection killed while idle in the pool is replaced without the next client
    // seeing an error; one killed mid-query gives that client 57P01/08006, never a hang.
    let lp = fixtures::start(&Opts {
        size: 1,
        ..Opts::default()
    });
    let c = app(lp.port()).await;
    let pid = backend_pid(&c).await;
    let admin = crate::support::pg().connect_superuser().await;
    admin
        .execute("select pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let c2 = app(lp.port()).await;
    let pid2 = backend_pid(&c2).await;
    assert_ne!(pid, pid2, "a fresh server connection was opened");
    let sleeper = tokio::spawn(async move { c2.batch_execute("select pg_sleep(10)").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    admin
        .execute("select pg_terminate_backend($1)", &[&pid2])
        .await
        .unwrap();
    let err = tokio::time::timeout(Duration::from_secs(5), sleeper)
        .await
        .expect("no hang")
        .unwrap()
        .unwrap_err();
    let code = err.as_db_error().map(|d| d.code().code().to_owned());
    assert!(
        matches!(code.as_deref(), Some("57P01" | "08006")),
        "got {err:?}"
    );
    // And the pool recovers.
    let c3 = app(lp.port()).await;
    c3.batch_execute("select 1").await.unwrap();
}

#[tokio::test]
async fn unreported_startup_settings_do_not_leak_and_lists_keep_their_meaning() {
    let lp = fixtures::start(&Opts {
        size: 1,
        ..Opts::default()
    });
    let a = app_with(
        lp.port(),
        None,
        Some("-c statement_timeout=1234 -c search_path=pg_catalog,public"),
    )
    .await;
    let b = app(lp.port()).await;
    for _ in 0..2 {
        let r = a
            .query_one(
                "select current_setting('statement_timeout'), array_length(current_schemas(false), 1)",
                &[],
            )
            .await
            .unwrap();
        let (timeout, schemas): (String, i32) = (r.get(0), r.get(1));
        assert_eq!(timeout, "1234ms");
        assert_eq!(
            schemas, 2,
            "search_path is a list of two schemas, not one odd name"
        );
        let t: String = b
            .query_one("select current_setting('statement_timeout')", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(t, "0", "a's statement_timeout leaked to b");
    }
}
