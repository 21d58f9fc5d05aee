//! Lakebase credentials against the workspace stand-in and the real cluster: minting, rotation
//! under load, outages, rate limiting, single flight, 28P01 recovery, and secrets.

use std::time::{Duration, Instant};

use crate::fixtures::APP;
use crate::support::standin::{CLIENT_ID, CLIENT_SECRET, ENDPOINT, INSTANCE, PAT, Standin};
use crate::support::{APP_DB, Lakepool, connect, ok_stdout, pg, pgbench, pgbench_init, psql};

/// Environment variable with the SP secret (never in the config file).
pub(crate) const SECRET_ENV: &str = "LAKEPOOL_TEST_SP_SECRET";

/// A lakepool in front of the stand-in's instance or endpoint (shared with the auth-method
/// tests in `workspace_auth.rs`).
pub(crate) struct Setup<'a> {
    /// `instance = …` or `endpoint = …` line.
    pub target: String,
    /// `[workspace]` auth lines.
    pub auth: String,
    pub pool_size: usize,
    pub server_lifetime: f64,
    pub extra_db: &'a str,
    /// `dbname`; None leaves it to the default.
    pub dbname: Option<&'a str>,
    /// `tls`/`ca_file` lines; None: verify-full against the test CA.
    pub tls: Option<&'a str>,
}

impl Default for Setup<'_> {
    fn default() -> Self {
        Self {
            target: format!("instance = \"{INSTANCE}\""),
            auth: format!("client_id = \"{CLIENT_ID}\"\nclient_secret_env = \"{SECRET_ENV}\""),
            pool_size: 5,
            server_lifetime: 3600.0,
            extra_db: "",
            dbname: Some(APP_DB),
            tls: None,
        }
    }
}

pub(crate) fn config(standin: &Standin, s: &Setup<'_>) -> String {
    let pg = pg();
    let dbname = s
        .dbname
        .map(|d| format!("dbname = \"{d}\"\n"))
        .unwrap_or_default();
    let tls = s.tls.map_or_else(
        || {
            format!(
                "tls = \"verify-full\"\nca_file = \"{}\"",
                pg.ca_file.display()
            )
        },
        str::to_owned,
    );
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
         admin_token = \"e2e-admin-token\"\n\n\
         [pool]\npool_mode = \"transaction\"\npool_size = {size}\nserver_lifetime = {life}\n\
         query_wait_timeout = 20\n\n\
         [workspace]\nhost = \"{url}\"\n{auth}\n\n\
         [[users]]\nname = \"{user}\"\npassword = \"{pw}\"\n\n\
         [[databases]]\nname = \"app\"\n{target}\nport = {port}\n{dbname}\
         {tls}\n{extra}\n",
        size = s.pool_size,
        life = s.server_lifetime,
        url = standin.url(),
        auth = s.auth,
        user = APP.0,
        pw = APP.1,
        target = s.target,
        port = pg.port,
        extra = s.extra_db,
    )
}

fn start(standin: &Standin, s: &Setup<'_>) -> Lakepool {
    Lakepool::start(&config(standin, s), &[(SECRET_ENV, CLIENT_SECRET)])
}

pub(crate) async fn wait_until_query_works(port: u16, timeout: Duration) -> tokio_postgres::Client {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(c) = connect(port, APP.0, APP.1, "app", false).await
            && c.batch_execute("select 1").await.is_ok()
        {
            return c;
        }
        assert!(
            Instant::now() < deadline,
            "lakepool never got a working credential"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn service_principal_instance_credential_logs_in_as_the_identity() {
    let standin = Standin::start("service_principal_instan", 3600);
    let lp = start(&standin, &Setup::default());
    let c = wait_until_query_works(lp.port(), Duration::from_secs(20)).await;
    let (user, ssl): (String, bool) = {
        let r = c
            .query_one(
                "select current_user::text, (select ssl from pg_stat_ssl where pid = pg_backend_pid())",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(
        user,
        standin.sp_user(),
        "upstream user defaults to the workspace identity"
    );
    assert!(ssl, "token logins go over TLS");
    assert!(standin.stat("credentials_minted") >= 1);
    assert!(lp.wait_for_log("database credential refreshed", Duration::from_secs(5)));
    let (status, _, body) = lp.admin_get_authorized("/readyz");
    assert_eq!((status, body.trim()), (200, "ready"));
    assert_eq!(lp.admin_get("/healthz").0, 200);
}

#[tokio::test]
async fn pat_and_endpoint_credentials_work() {
    let standin = Standin::start("pat_and_endpoint_credent", 3600);
    let auth = format!("token = \"{PAT}\"");
    let target = format!("endpoint = \"{ENDPOINT}\"\nttl = 900");
    let lp = start(
        &standin,
        &Setup {
            target,
            auth,
            ..Setup::default()
        },
    );
    let c = wait_until_query_works(lp.port(), Duration::from_secs(20)).await;
    let user: String = c
        .query_one("select current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(user, standin.pat_user());
    assert!(!lp.logs().contains(PAT), "the PAT reached the logs");
}

#[test]
fn rotation_under_load_loses_no_transaction() {
    pgbench_init(APP_DB, 1);
    let standin = Standin::start("rotation_under_load_lose", 15);
    let lp = start(
        &standin,
        &Setup {
            server_lifetime: 2.0,
            ..Setup::default()
        },
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(wait_until_query_works(lp.port(), Duration::from_secs(20)));
    let minted_before = standin.stat("credentials_minted");
    let out = pgbench(
        lp.port(),
        APP.0,
        APP.1,
        "app",
        &[
            "-n", "-S", "-c", "20", "-j", "2", "-T", "60", "-M", "extended",
        ],
    );
    let text = ok_stdout("pgbench under rotation", &out);
    let failed = text
        .lines()
        .find(|l| l.starts_with("number of failed transactions"))
        .unwrap_or("");
    assert!(failed.contains(": 0 "), "{text}");
    let minted = standin.stat("credentials_minted") - minted_before;
    assert!(
        minted >= 3,
        "only {minted} credentials minted in 60 s with a 15 s lifetime"
    );
    let reopened = lp.logs().matches("database credential refreshed").count();
    eprintln!(
        "rotation under load: {minted} credentials minted during the run, {reopened} refreshes logged\n{text}"
    );
}

#[tokio::test]
async fn api_outage_shorter_than_the_lifetime_is_invisible() {
    let standin = Standin::start("api_outage_shorter_than_", 20);
    let lp = start(
        &standin,
        &Setup {
            server_lifetime: 0.5,
            ..Setup::default()
        },
    );
    wait_until_query_works(lp.port(), Duration::from_secs(20)).await;
    standin.control("/__standin/outage", r#"{"on": true}"#);
    // A fixed number of rounds, not a time budget: on a loaded machine each login is slower,
    // and the outage simply lasts longer (still well inside the 20 s lifetime).
    for _ in 0..12 {
        // New clients, and new server connections (server_lifetime 0.5 s), during the outage.
        let c = connect(lp.port(), APP.0, APP.1, "app", false)
            .await
            .unwrap();
        c.batch_execute("select 1").await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    standin.control("/__standin/outage", r#"{"on": false}"#);
}

#[tokio::test]
async fn outage_past_expiry_fails_clearly_then_recovers() {
    let standin = Standin::start("outage_past_expiry_fails", 6);
    let lp = start(
        &standin,
        &Setup {
            server_lifetime: 0.5,
            ..Setup::default()
        },
    );
    wait_until_query_works(lp.port(), Duration::from_secs(20)).await;
    standin.control("/__standin/outage", r#"{"on": true}"#);
    tokio::time::sleep(Duration::from_secs(8)).await;
    let c = connect(lp.port(), APP.0, APP.1, "app", false)
        .await
        .unwrap();
    let err = c.batch_execute("select 1").await.unwrap_err();
    let db = err.as_db_error().expect("an ErrorResponse");
    assert_eq!(db.code().code(), "08001");
    assert!(
        db.message().contains("upstream credential unavailable"),
        "{}",
        db.message()
    );
    assert!(
        db.message().contains("503") || db.message().contains("TEMPORARILY_UNAVAILABLE"),
        "{}",
        db.message()
    );
    standin.control("/__standin/outage", r#"{"on": false}"#);
    // No restart: the refresher's next attempt succeeds and new clients work.
    wait_until_query_works(lp.port(), Duration::from_secs(40)).await;
}

#[tokio::test]
async fn rate_limit_retry_after_is_honoured() {
    let standin = Standin::start("rate_limit_retry_after_i", 3600);
    standin.control(
        "/__standin/fail",
        r#"{"status": 429, "count": 1, "retry_after": 3, "path_prefix": "/api/2.0/database/credentials"}"#,
    );
    let started = Instant::now();
    let lp = start(&standin, &Setup::default());
    wait_until_query_works(lp.port(), Duration::from_secs(30)).await;
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "retried before Retry-After"
    );
    assert_eq!(standin.stat("credentials_minted"), 1);
}

#[tokio::test]
async fn many_waiting_clients_cause_one_api_call() {
    let standin = Standin::start("many_waiting_clients_cau", 3600);
    // Hold the first credential back a little so clients pile up waiting for it.
    standin.control(
        "/__standin/fail",
        r#"{"status": 503, "count": 1, "retry_after": 1, "path_prefix": "/api/2.0/database/credentials"}"#,
    );
    let lp = start(&standin, &Setup::default());
    let port = lp.port();
    let mut tasks = Vec::new();
    for _ in 0..50 {
        // One attempt each: clients connecting together with lakepool wait for its first
        // credential instead of failing.
        tasks.push(tokio::spawn(async move {
            let c = connect(port, APP.0, APP.1, "app", false).await.unwrap();
            c.batch_execute("select 1").await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // One failed call plus one success: the 50 clients never called the API themselves.
    assert_eq!(
        standin.stat("credential_requests"),
        2,
        "{:?}",
        standin.stats()
    );
}

#[tokio::test]
async fn rejected_login_triggers_one_refresh_and_a_retry() {
    let standin = Standin::start("rejected_login_triggers_", 3600);
    let lp = start(
        &standin,
        &Setup {
            server_lifetime: 0.2,
            ..Setup::default()
        },
    );
    wait_until_query_works(lp.port(), Duration::from_secs(20)).await;
    let minted = standin.stat("credentials_minted");
    // Invalidate the token behind lakepool's back, as a revoked credential would.
    pg().exec_sql(&format!(
        "ALTER ROLE \"{}\" PASSWORD 'revoked'",
        standin.sp_user()
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let c = connect(lp.port(), APP.0, APP.1, "app", false)
        .await
        .unwrap();
    c.batch_execute("select 1")
        .await
        .expect("one refresh and one retry hide the rejection");
    assert_eq!(standin.stat("credentials_minted"), minted + 1);
}

#[test]
fn wrong_client_secret_is_reported_without_the_secret() {
    let standin = Standin::start("wrong_client_secret_is_r", 3600);
    let text = config(&standin, &Setup::default());
    let lp = Lakepool::start(&text, &[(SECRET_ENV, "definitely-wrong-secret-42")]);
    assert!(
        lp.wait_for_log("refresh failed", Duration::from_secs(15)),
        "{}",
        lp.logs()
    );
    let out = psql(lp.port(), APP.0, APP.1, "app", "disable", "select 1");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("invalid_client") || err.contains("refused"),
        "{err}"
    );
    let logs = lp.logs();
    assert!(logs.contains("invalid_client"), "{logs}");
    assert!(!logs.contains("definitely-wrong-secret-42"));
    // Readiness counts the databases without a credential (names and reasons need the admin
    // token), never showing the secret.
    let (status, _, body) = lp.admin_get_authorized("/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("1 of 1 databases"), "{body}");
    assert!(!body.contains("definitely-wrong-secret-42"));
    assert_eq!(lp.admin_get("/healthz").0, 200, "alive even when not ready");
    assert!(!err.contains("definitely-wrong-secret-42"));
}

#[test]
fn secrets_and_tokens_never_reach_trace_logs() {
    let standin = Standin::start("secrets_and_tokens_never", 5);
    let text = config(&standin, &Setup::default());
    let lp = Lakepool::start(&text, &[(SECRET_ENV, CLIENT_SECRET), ("RUST_LOG", "trace")]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(wait_until_query_works(lp.port(), Duration::from_secs(20)));
    // Let a few rotations happen, including a failure and a retry.
    standin.control("/__standin/fail", r#"{"status": 500, "count": 1}"#);
    std::thread::sleep(Duration::from_secs(7));
    ok_stdout(
        "query",
        &psql(lp.port(), APP.0, APP.1, "app", "disable", "select 1"),
    );
    let logs = lp.logs();
    assert!(
        logs.contains("TRACE") || logs.contains("DEBUG"),
        "trace logging was on"
    );
    assert!(!logs.contains(CLIENT_SECRET), "client secret in logs");
    assert!(!logs.contains(PAT));
    assert!(!logs.contains(APP.1));
    let tokens = standin.stats()["tokens"].clone();
    let tokens: Vec<String> = serde_json::from_value(tokens).unwrap_or_default();
    assert!(!tokens.is_empty(), "stand-in reports the tokens it minted");
    for t in tokens {
        assert!(!logs.contains(&t), "a database token reached the logs");
    }
}

/// A fresh session on the pooler that must run a query, after a few tries at most (the
/// first login may wait for a credential).
async fn query_ok(port: u16) {
    let c = connect(port, APP.0, APP.1, "app", false)
        .await
        .expect("login to lakepool");
    c.batch_execute("select 1").await.expect("query");
}

#[tokio::test]
async fn lakebase_databases_default_to_databricks_postgres() {
    let pg = pg();
    if pg
        .exec_sql("SELECT 1 FROM pg_database WHERE datname = 'databricks_postgres'")
        .trim()
        .is_empty()
    {
        pg.exec_sql("CREATE DATABASE databricks_postgres");
    }
    let standin = Standin::start("lakebase_databases_defaul", 3600);
    let lp = start(
        &standin,
        &Setup {
            dbname: None,
            ..Setup::default()
        },
    );
    let c = wait_until_query_works(lp.port(), Duration::from_secs(20)).await;
    let db: String = c
        .query_one("select current_database()::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(db, "databricks_postgres");
}

#[tokio::test]
async fn untrusted_lakebase_certificate_names_the_require_fallback() {
    let standin = Standin::start("untrusted_lakebase_certif", 3600);
    // verify-full against the system roots: the test cluster's CA is not among them.
    let lp = start(
        &standin,
        &Setup {
            tls: Some("tls = \"verify-full\""),
            ..Setup::default()
        },
    );
    // The login itself fails when the pool never connected (its greeting needs a server).
    let err = match connect(lp.port(), APP.0, APP.1, "app", false).await {
        Err(e) => e,
        Ok(c) => c.batch_execute("select 1").await.unwrap_err(),
    };
    let msg = err
        .as_db_error()
        .expect("an ErrorResponse")
        .message()
        .to_owned();
    assert!(
        msg.contains("does not trust") && msg.contains("tls = \"require\""),
        "{msg}"
    );
    // The fallback it names works.
    let lp = start(
        &standin,
        &Setup {
            tls: Some("tls = \"require\""),
            ..Setup::default()
        },
    );
    wait_until_query_works(lp.port(), Duration::from_secs(20)).await;
}

#[tokio::test]
async fn credentials_are_minted_while_the_instance_is_updating() {
    let standin = Standin::start("credentials_are_minted_w", 6);
    let lp = start(
        &standin,
        &Setup {
            server_lifetime: 0.5,
            ..Setup::default()
        },
    );
    wait_until_query_works(lp.port(), Duration::from_secs(20)).await;
    standin.control(
        "/__standin/instance-state",
        &format!(r#"{{"name": "{INSTANCE}", "state": "UPDATING"}}"#),
    );
    let minted = standin.stat("credentials_minted");
    // Past two lifetimes of 6 s: every new server connection needs a newer credential.
    let until = Instant::now() + Duration::from_secs(13);
    while Instant::now() < until {
        query_ok(lp.port()).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(standin.stat("credentials_minted") >= minted + 2);
    assert!(
        lp.logs().contains("keeping the last known host"),
        "{}",
        lp.logs()
    );
}

#[tokio::test]
async fn a_workspace_clock_behind_causes_no_refresh_loop() {
    let standin = Standin::start("a_workspace_clock_behind", 3600);
    // The workspace's clock two hours behind: by the local clock every credential it mints
    // expired an hour ago.
    standin.control("/__standin/clock", r#"{"skew_seconds": -7200}"#);
    let lp = start(&standin, &Setup::default());
    wait_until_query_works(lp.port(), Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    query_ok(lp.port()).await;
    assert_eq!(
        standin.stat("credential_requests"),
        1,
        "{:?}",
        standin.stats()
    );
}

#[tokio::test]
async fn a_workspace_clock_ahead_does_not_delay_the_refresh() {
    let standin = Standin::start("a_workspace_clock_ahead_", 8);
    // Two hours ahead: by the local clock every 8 s credential would live two hours.
    standin.control("/__standin/clock", r#"{"skew_seconds": 7200}"#);
    let lp = start(
        &standin,
        &Setup {
            server_lifetime: 0.2,
            ..Setup::default()
        },
    );
    wait_until_query_works(lp.port(), Duration::from_secs(20)).await;
    let until = Instant::now() + Duration::from_secs(18);
    while Instant::now() < until {
        query_ok(lp.port()).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(
        standin.stat("credentials_minted") >= 3,
        "{:?}",
        standin.stats()
    );
}
