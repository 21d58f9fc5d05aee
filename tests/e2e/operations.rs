//! Operations: `/metrics`, and the admin console over the PostgreSQL protocol (SHOW…, PAUSE,
//! RESUME, RECONNECT, REFRESH CREDENTIALS, RELOAD, SHUTDOWN).

use std::time::{Duration, Instant};

use crate::fixtures::{self, APP, MD5_USER, OWNER_PW_ENV, Opts};
use crate::support::standin::{CLIENT_ID, CLIENT_SECRET, INSTANCE, Standin};
use crate::support::{
    APP_DB, APP_OWNER, Lakepool, connect, ok_stdout, pg, pgbench, pgbench_init, psql,
};

/// The admin console login.
const ADMIN: (&str, &str) = ("opsadmin", "ops_admin_pw_s3cret");
/// Environment variable with the SP secret (never in the config file).
const SECRET_ENV: &str = "LAKEPOOL_TEST_OPS_SP_SECRET";

fn admin_user() -> String {
    format!(
        "\n[[users]]\nname = \"{}\"\npassword = \"{}\"\nadmin = true\n",
        ADMIN.0, ADMIN.1
    )
}

/// The shared test config plus an admin user and the HTTP admin listener.
fn start(mode: &str) -> Lakepool {
    let opts = Opts {
        mode,
        server_extra: "admin_listen = \"127.0.0.1:0\"",
        ..Opts::default()
    };
    let text = format!("{}{}", fixtures::config(&opts), admin_user());
    Lakepool::start(&text, &[(OWNER_PW_ENV, APP_OWNER.1)])
}

fn scrape(lp: &Lakepool) -> String {
    let (status, ctype, body) = lp.admin_get("/metrics");
    assert_eq!(status, 200, "{body}");
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
    body
}

/// The value of the sample `name{labels}` (labels exactly as rendered), if present.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

fn pool_metric(text: &str, name: &str) -> f64 {
    metric(text, &format!("{name}{{database=\"app\",user=\"app\"}}")).unwrap_or(0.0)
}

async fn console(port: u16) -> tokio_postgres::Client {
    connect(port, ADMIN.0, ADMIN.1, "lakepool", false)
        .await
        .expect("admin console login")
}

/// Rows of a console command as maps column → value.
async fn rows(
    c: &tokio_postgres::Client,
    sql: &str,
) -> Vec<std::collections::HashMap<String, Option<String>>> {
    use tokio_postgres::SimpleQueryMessage;
    c.simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(
                r.columns()
                    .iter()
                    .enumerate()
                    .map(|(i, col)| (col.name().to_owned(), r.get(i).map(str::to_owned)))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

fn all_text(rows: &[std::collections::HashMap<String, Option<String>>]) -> String {
    rows.iter()
        .flat_map(|r| r.values().flatten().cloned())
        .collect::<Vec<_>>()
        .join("\n")
}

fn code(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.code().code().to_owned())
        .unwrap_or_else(|| format!("{e:?}"))
}

#[tokio::test]
async fn metrics_move_with_pgbench_traffic() {
    pgbench_init(APP_DB, 1);
    let lp = start("transaction");
    let before = scrape(&lp);
    assert!(
        before.contains("# TYPE lakepool_wait_seconds histogram\n"),
        "{before}"
    );
    assert!(before.contains("lakepool_info{version=\""));
    assert!(metric(&before, "process_resident_memory_bytes").unwrap() > 0.0);
    assert!(metric(&before, "process_open_fds").unwrap() > 0.0);
    assert!(metric(&before, "process_start_time_seconds").unwrap() > 1.6e9);
    assert!(metric(&before, "process_cpu_seconds_total").is_some());
    let port = lp.port();
    let out = tokio::task::spawn_blocking(move || {
        pgbench(
            port,
            APP.0,
            APP.1,
            "app",
            &["-n", "-S", "-c", "2", "-j", "1", "-t", "50"],
        )
    })
    .await
    .unwrap();
    ok_stdout("pgbench through lakepool", &out);
    let after = scrape(&lp);
    let delta = |name: &str| pool_metric(&after, name) - pool_metric(&before, name);
    assert!(delta("lakepool_transactions_total") >= 100.0, "{after}");
    assert!(delta("lakepool_queries_total") >= 100.0, "{after}");
    assert!(
        delta("lakepool_client_bytes_received_total") > 1000.0,
        "{after}"
    );
    assert!(
        delta("lakepool_client_bytes_sent_total") > 1000.0,
        "{after}"
    );
    assert!(delta("lakepool_wait_seconds_count") >= 100.0, "{after}");
    assert!(
        delta("lakepool_server_connections_opened_total") >= 1.0,
        "{after}"
    );
    let inf = metric(
        &after,
        "lakepool_wait_seconds_bucket{database=\"app\",user=\"app\",le=\"+Inf\"}",
    )
    .unwrap();
    assert_eq!(inf, pool_metric(&after, "lakepool_wait_seconds_count"));
    assert!(metric(&after, "lakepool_clients_connected").is_some());
    // pgbench's two clients said goodbye with Terminate.
    let ended = |text: &str| {
        metric(
            text,
            "lakepool_client_sessions_ended_total{reason=\"client_terminated\"}",
        )
        .unwrap_or(0.0)
    };
    assert!(ended(&after) - ended(&before) >= 2.0, "{after}");
    // A server error is counted by class.
    let c = connect(lp.port(), APP.0, APP.1, "app", false)
        .await
        .unwrap();
    let e = c
        .simple_query("select * from no_such_table")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "42P01");
    let text = scrape(&lp);
    assert!(
        metric(
            &text,
            "lakepool_errors_total{database=\"app\",user=\"app\",class=\"42\"}"
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{text}"
    );
}

/// Two workers on one pool smaller than its clients: connections move between the workers'
/// idle lists and their queue, and the counters each worker keeps add up to exactly what ran.
#[tokio::test]
async fn two_workers_share_one_pool_and_their_counters_add_up() {
    const CLIENTS: usize = 12;
    const QUERIES: usize = 100;
    let opts = Opts {
        size: 3,
        server_extra: "admin_listen = \"127.0.0.1:0\"\nworkers = 2",
        ..Opts::default()
    };
    let text = format!("{}{}", fixtures::config(&opts), admin_user());
    let lp = Lakepool::start(&text, &[(OWNER_PW_ENV, APP_OWNER.1)]);
    assert!(lp.logs().contains("workers=2"), "{}", lp.logs());
    let port = lp.port();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            tokio::spawn(async move {
                let c = connect(port, APP.0, APP.1, "app", false).await.unwrap();
                for i in 0..QUERIES {
                    let msgs = c.simple_query(&format!("select {i}")).await.unwrap();
                    let value = msgs.iter().find_map(|m| match m {
                        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
                        _ => None,
                    });
                    assert_eq!(value, Some(i.to_string()), "its own answer");
                }
            })
        })
        .collect();
    for c in clients {
        c.await.unwrap();
    }
    let m = scrape(&lp);
    let n = (CLIENTS * QUERIES) as f64;
    assert_eq!(pool_metric(&m, "lakepool_transactions_total"), n, "{m}");
    assert_eq!(pool_metric(&m, "lakepool_queries_total"), n, "{m}");
    assert!(pool_metric(&m, "lakepool_wait_seconds_count") >= n, "{m}");
    let opened = pool_metric(&m, "lakepool_server_connections_opened_total");
    assert!(
        (1.0..=3.0).contains(&opened),
        "no connection lost and replaced: {m}"
    );
    let c = console(port).await;
    let pools = rows(&c, "SHOW POOLS").await;
    let p = pools
        .iter()
        .find(|r| r["database"].as_deref() == Some("app"))
        .unwrap_or_else(|| panic!("{pools:?}"));
    assert_eq!(p["cl_waiting"].as_deref(), Some("0"), "{p:?}");
    assert_eq!(p["sv_active"].as_deref(), Some("0"), "{p:?}");
    let idle: f64 = p["sv_idle"].as_deref().unwrap().parse().unwrap();
    assert_eq!(idle, opened, "every connection opened is idle again: {p:?}");
    let stats = rows(&c, "SHOW STATS").await;
    let s = stats
        .iter()
        .find(|r| r["database"].as_deref() == Some("app"))
        .unwrap_or_else(|| panic!("{stats:?}"));
    assert_eq!(
        s["total_xact_count"].as_deref(),
        Some(n.to_string().as_str())
    );
}

#[tokio::test]
async fn console_show_commands_and_secrets() {
    let lp = start("transaction");
    let port = lp.port();
    let app = connect(port, APP.0, APP.1, "app", false).await.unwrap();
    app.simple_query("select 1").await.unwrap();

    // psql works against the console.
    let out = tokio::task::spawn_blocking(move || {
        psql(port, ADMIN.0, ADMIN.1, "lakepool", "disable", "SHOW POOLS")
    })
    .await
    .unwrap();
    let text = ok_stdout("psql SHOW POOLS", &out);
    assert!(text.contains("app|app|"), "{text}");

    let c = console(port).await;
    let pools = rows(&c, "show pools;").await;
    let p = pools
        .iter()
        .find(|r| r["database"].as_deref() == Some("app"))
        .unwrap();
    assert_eq!(p["user"].as_deref(), Some("app"));
    assert_eq!(p["pool_mode"].as_deref(), Some("transaction"));
    assert_eq!(p["cl_active"].as_deref(), Some("1"));
    assert_eq!(p["sv_idle"].as_deref(), Some("1"));

    let clients = rows(&c, "SHOW CLIENTS").await;
    assert!(
        clients
            .iter()
            .any(|r| r["database"].as_deref() == Some("app") && r["state"].is_some()),
        "{clients:?}"
    );
    assert!(
        clients
            .iter()
            .any(|r| r["database"].as_deref() == Some("lakepool")
                && r["user"].as_deref() == Some(ADMIN.0))
    );
    let servers = rows(&c, "SHOW SERVERS").await;
    let idle = servers
        .iter()
        .find(|r| r["state"].as_deref() == Some("idle"))
        .unwrap_or_else(|| panic!("{servers:?}"));
    assert!(
        idle["remote_pid"]
            .as_deref()
            .unwrap()
            .parse::<u32>()
            .unwrap()
            > 0
    );
    let stats = rows(&c, "SHOW STATS").await;
    let s = stats
        .iter()
        .find(|r| r["database"].as_deref() == Some("app"))
        .unwrap();
    assert!(
        s["total_query_count"]
            .as_deref()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    let dbs = rows(&c, "SHOW DATABASES").await;
    assert_eq!(dbs.len(), 1);
    assert_eq!(dbs[0]["database"].as_deref(), Some(APP_DB));
    assert_eq!(dbs[0]["force_user"].as_deref(), Some(APP_OWNER.0));
    assert_eq!(dbs[0]["pool_mode"].as_deref(), Some("transaction"));

    let config = rows(&c, "SHOW CONFIG").await;
    let creds = rows(&c, "SHOW CREDENTIALS").await;
    assert!(config.iter().any(|r| {
        r["key"].as_deref() == Some("databases.app.pool_size") && r["value"].as_deref() == Some("4")
    }));
    assert!(config.iter().any(|r| {
        r["key"].as_deref() == Some(&format!("users.{}.admin", ADMIN.0)[..])
            && r["value"].as_deref() == Some("true")
    }));
    assert_eq!(creds[0]["source"].as_deref(), Some("password"));
    assert_eq!(creds[0]["identity"].as_deref(), Some(APP_OWNER.0));
    let shown = format!("{}\n{}", all_text(&config), all_text(&creds));
    for secret in [ADMIN.1, APP.1, APP_OWNER.1] {
        assert!(!shown.contains(secret), "secret {secret:?} shown:\n{shown}");
    }
    assert!(rows(&c, "show help").await.len() >= 10);
    assert!(all_text(&rows(&c, "SHOW VERSION").await).starts_with("lakepool "));

    // Unknown command: 42601 with the list; extended protocol: 0A000; the session goes on.
    let e = c.simple_query("SELECT 1").await.unwrap_err();
    assert_eq!(code(&e), "42601");
    assert!(e.as_db_error().unwrap().message().contains("SHOW POOLS"));
    let e = c.query("SHOW POOLS", &[]).await.unwrap_err();
    assert_eq!(code(&e), "0A000", "{e:?}");
    assert!(!rows(&c, "SHOW POOLS").await.is_empty());

    // A non-admin user is refused.
    let Err(e) = connect(port, APP.0, APP.1, "lakepool", false).await else {
        panic!("non-admin logged in to the console");
    };
    assert_eq!(code(&e), "42501");
    assert_eq!(
        e.as_db_error().unwrap().message(),
        "permission denied for the admin console"
    );
}

#[tokio::test]
async fn pause_holds_new_queries_until_resume() {
    let lp = start("transaction");
    let port = lp.port();
    let app = connect(port, APP.0, APP.1, "app", false).await.unwrap();
    app.simple_query("select 1").await.unwrap();
    let c = console(port).await;
    c.simple_query("PAUSE app").await.unwrap();
    let pools = rows(&c, "SHOW POOLS").await;
    assert_eq!(pools[0]["paused"].as_deref(), Some("yes"));
    let q = tokio::spawn(async move {
        let r = app.simple_query("select 2").await;
        (r.is_ok(), app)
    });
    // A pool first used after the PAUSE (another user) starts paused too.
    let other = tokio::spawn(async move {
        let c = connect(port, MD5_USER.0, MD5_USER.1, "app", false).await?;
        c.simple_query("select 3").await.map(|_| ())
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!q.is_finished(), "a query went through a paused pool");
    assert!(
        !other.is_finished(),
        "a new pool of a paused database was not paused"
    );
    let waiting = rows(&c, "SHOW POOLS").await;
    assert_eq!(
        waiting[0]["cl_waiting"].as_deref(),
        Some("1"),
        "{waiting:?}"
    );
    c.simple_query("RESUME app").await.unwrap();
    let (ok, _app) = tokio::time::timeout(Duration::from_secs(10), q)
        .await
        .expect("query finished after RESUME")
        .unwrap();
    assert!(ok);
    tokio::time::timeout(Duration::from_secs(10), other)
        .await
        .expect("new user's query finished after RESUME")
        .unwrap()
        .unwrap();
    // Unknown database.
    let e = c.simple_query("PAUSE nosuchdb").await.unwrap_err();
    assert_eq!(code(&e), "3D000");
}

#[tokio::test]
async fn reconnect_replaces_idle_and_busy_servers() {
    let lp = start("transaction");
    let port = lp.port();
    let app = connect(port, APP.0, APP.1, "app", false).await.unwrap();
    let pid = |c: tokio_postgres::Client| async move {
        let r = c.query_one("select pg_backend_pid()", &[]).await.unwrap();
        (r.get::<_, i32>(0), c)
    };
    let (first, app) = pid(app).await;
    let (again, app) = pid(app).await;
    assert_eq!(first, again, "an idle server is reused");
    let c = console(port).await;
    c.simple_query("RECONNECT").await.unwrap();
    let (second, app) = pid(app).await;
    assert_ne!(first, second, "RECONNECT closed the idle server");
    // A server in use when RECONNECT runs finishes its transaction, then is replaced.
    app.batch_execute("begin").await.unwrap();
    let (in_tx, app) = pid(app).await;
    c.simple_query("RECONNECT app").await.unwrap();
    let (still, app) = pid(app).await;
    assert_eq!(in_tx, still, "the transaction keeps its server");
    app.batch_execute("commit").await.unwrap();
    let (third, _app) = pid(app).await;
    assert_ne!(third, still, "the busy server was closed at release");
}

#[tokio::test]
async fn reload_from_the_console_keeps_clients_working() {
    let lp = start("transaction");
    let port = lp.port();
    let app = connect(port, APP.0, APP.1, "app", false).await.unwrap();
    app.simple_query("select 1").await.unwrap();
    let c = console(port).await;
    let r = c.simple_query("RELOAD").await;
    assert!(r.is_ok(), "RELOAD with an unchanged config: {r:?}");
    app.simple_query("select 2").await.unwrap();
    let fresh = connect(port, APP.0, APP.1, "app", false).await.unwrap();
    fresh.simple_query("select 3").await.unwrap();
}

#[tokio::test]
async fn shutdown_from_the_console_stops_lakepool() {
    let mut lp = start("transaction");
    let c = console(lp.port()).await;
    let _ = c.simple_query("SHUTDOWN").await;
    assert!(
        lp.wait_exit(Duration::from_secs(15)).is_some(),
        "lakepool still running after SHUTDOWN"
    );
}

fn lakebase_config(standin: &Standin) -> String {
    let pg = pg();
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\n\
         [pool]\npool_mode = \"transaction\"\npool_size = 2\nquery_wait_timeout = 20\n\n\
         [workspace]\nhost = \"{url}\"\nclient_id = \"{CLIENT_ID}\"\n\
         client_secret_env = \"{SECRET_ENV}\"\n\n\
         [[users]]\nname = \"{user}\"\npassword = \"{pw}\"\n{admin}\n\
         [[databases]]\nname = \"app\"\ninstance = \"{INSTANCE}\"\nport = {port}\n\
         dbname = \"{db}\"\ntls = \"verify-full\"\nca_file = \"{ca}\"\n",
        url = standin.url(),
        user = APP.0,
        pw = APP.1,
        admin = admin_user(),
        port = pg.port,
        db = APP_DB,
        ca = pg.ca_file.display(),
    )
}

#[tokio::test]
async fn credential_metrics_and_refresh_credentials() {
    let standin = Standin::start("ops_refresh_credentials", 3600);
    let lp = Lakepool::start(&lakebase_config(&standin), &[(SECRET_ENV, CLIENT_SECRET)]);
    let port = lp.port();
    let deadline = Instant::now() + Duration::from_secs(20);
    let app = loop {
        if let Ok(c) = connect(port, APP.0, APP.1, "app", false).await
            && c.simple_query("select 1").await.is_ok()
        {
            break c;
        }
        assert!(Instant::now() < deadline, "no working credential");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let text = scrape(&lp);
    let left = metric(
        &text,
        "lakepool_credential_expiry_seconds{database=\"app\"}",
    )
    .unwrap();
    assert!(left > 0.0 && left <= 3600.0, "{text}");
    let refreshes = metric(
        &text,
        "lakepool_credential_refreshes_total{database=\"app\"}",
    )
    .unwrap();
    assert!(refreshes >= 1.0, "{text}");
    assert_eq!(
        metric(
            &text,
            "lakepool_credential_refresh_failures_total{database=\"app\"}"
        ),
        Some(0.0)
    );
    assert!(!text.contains(CLIENT_SECRET));

    let c = console(port).await;
    let minted = standin.stat("credentials_minted");
    c.simple_query("REFRESH CREDENTIALS app").await.unwrap();
    assert_eq!(standin.stat("credentials_minted"), minted + 1);
    let creds = rows(&c, "SHOW CREDENTIALS").await;
    assert_eq!(creds[0]["source"].as_deref(), Some("instance"));
    assert_eq!(
        creds[0]["identity"].as_deref(),
        Some(&standin.sp_user()[..])
    );
    assert!(
        creds[0]["seconds_left"]
            .as_deref()
            .unwrap()
            .parse::<i64>()
            .unwrap()
            > 0
    );
    assert!(
        creds[0]["refreshes"]
            .as_deref()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 2
    );
    let config = rows(&c, "SHOW CONFIG").await;
    let shown = format!("{}\n{}", all_text(&creds), all_text(&config));
    for secret in [CLIENT_SECRET, ADMIN.1, APP.1] {
        assert!(!shown.contains(secret), "secret {secret:?} shown:\n{shown}");
    }
    // The new credential works.
    app.simple_query("select 2").await.unwrap();
    let scraped = scrape(&lp);
    assert!(
        metric(
            &scraped,
            "lakepool_credential_refreshes_total{database=\"app\"}"
        )
        .unwrap()
            >= refreshes + 1.0
    );
}
