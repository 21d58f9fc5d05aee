//! Limits, timeouts and server health: max_db/user_connections across pools, client caps
//! (53300), min_pool_size, the reserve pool, client_idle_timeout (57P05), health checks of
//! idle servers after their backend died, and server_login_retry.
//!
//! Each test logs in upstream as its own role, so counting that role's backends in
//! pg_stat_activity (as the superuser) counts exactly this test's server connections, and
//! terminating them touches no other test.

use std::time::{Duration, Instant};

use crate::support::wire::RawConn;
use crate::support::{APP_DB, Lakepool, connect, pg};

/// Password of every test role (upstream) and client login.
const PW: &str = "limits_pw";

/// Creates upstream role `role` (idempotent) with password [`PW`].
fn create_role(role: &str) {
    pg().exec_sql(&format!(
        "DO $$ BEGIN CREATE ROLE {role} LOGIN PASSWORD '{PW}'; \
         EXCEPTION WHEN duplicate_object THEN ALTER ROLE {role} PASSWORD '{PW}'; END $$;"
    ));
}

/// A config: `[pool]` in transaction mode with `pool` lines; client users `u1` and `u2`
/// (`user_extra` lines after u1's); databases `d1` and `d2` both → appdb as `role`, with
/// `db_extra` lines on d1.
fn config(role: &str, pool: &str, user_extra: &str, db_extra: &str) -> String {
    let pg = pg();
    let db = |name: &str, extra: &str| {
        format!(
            "[[databases]]\nname = \"{name}\"\nhost = \"{host}\"\nport = {port}\n\
             dbname = \"{APP_DB}\"\nuser = \"{role}\"\npassword = \"{PW}\"\ntls = \"disable\"\n{extra}\n",
            host = pg.host,
            port = pg.port,
        )
    };
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nhandshake_timeout = 5\n\n\
         [pool]\npool_mode = \"transaction\"\n{wait}{pool}\n\n\
         [[users]]\nname = \"u1\"\npassword = \"{PW}\"\n{user_extra}\n\n\
         [[users]]\nname = \"u2\"\npassword = \"{PW}\"\n\n\
         {d1}{d2}",
        wait = if pool.contains("query_wait_timeout") {
            ""
        } else {
            "query_wait_timeout = 10\n"
        },
        d1 = db("d1", db_extra),
        d2 = db("d2", ""),
    )
}

fn start(role: &str, pool: &str, user_extra: &str, db_extra: &str) -> Lakepool {
    create_role(role);
    Lakepool::start(&config(role, pool, user_extra, db_extra), &[])
}

async fn client(lp: &Lakepool, user: &str, db: &str) -> tokio_postgres::Client {
    connect(lp.port(), user, PW, db, false)
        .await
        .unwrap_or_else(|e| panic!("login {user}@{db}: {e}"))
}

/// This role's backends, as the superuser `su` sees them (one superuser connection per
/// test, so polling costs no logins).
async fn backends(su: &tokio_postgres::Client, role: &str) -> i64 {
    su.query_one(
        "select count(*) from pg_stat_activity where usename = $1",
        &[&role],
    )
    .await
    .unwrap()
    .get(0)
}

/// Polls until `role` has `want` backends; panics with the last count after `timeout`.
async fn wait_for_backends(su: &tokio_postgres::Client, role: &str, want: i64, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let n = backends(su, role).await;
        if n == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{role}: {n} backends, expected {want}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn pid(c: &tokio_postgres::Client) -> i32 {
    c.query_one("select pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn max_db_connections_caps_servers_across_users() {
    let su = pg().connect_superuser().await;
    let role = "limits_dbcap";
    let lp = start(
        role,
        "pool_size = 5",
        "",
        "max_db_connections = 2\nserver_idle_timeout = 60",
    );
    let a = client(&lp, "u1", "d1").await;
    let b = client(&lp, "u2", "d1").await;
    a.batch_execute("begin; select 1").await.unwrap();
    b.batch_execute("begin; select 1").await.unwrap();
    let c = client(&lp, "u2", "d1").await;
    let waiting = tokio::spawn(async move {
        c.batch_execute("select 1").await.unwrap();
        c
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!waiting.is_finished(), "a third server was opened");
    assert_eq!(backends(&su, role).await, 2);
    // u1's server goes idle in u1's pool; u2's waiting client gets room by lakepool closing
    // it (not by exceeding the cap).
    a.batch_execute("commit").await.unwrap();
    let c = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the waiting client got a server")
        .unwrap();
    assert!(backends(&su, role).await <= 2);
    // The other database is not capped by d1's limit.
    let d = client(&lp, "u1", "d2").await;
    d.batch_execute("begin; select 1").await.unwrap();
    b.batch_execute("commit").await.unwrap();
    drop(c);
}

#[tokio::test]
async fn max_user_connections_caps_servers_across_databases() {
    let su = pg().connect_superuser().await;
    let role = "limits_usercap";
    // Set on the user entry: user keys override [pool] and database keys.
    let lp = start(role, "pool_size = 5", "max_user_connections = 1", "");
    let a = client(&lp, "u1", "d1").await;
    a.batch_execute("begin; select 1").await.unwrap();
    // u1's pool on d2 needs a server already for the login greeting: it waits for one.
    let port = lp.port();
    let waiting = tokio::spawn(async move {
        let c = connect(port, "u1", PW, "d2", false).await.unwrap();
        c.batch_execute("select 1").await.unwrap();
        c
    });
    // u2 is not limited.
    let other = client(&lp, "u2", "d2").await;
    other.batch_execute("begin; select 1").await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!waiting.is_finished(), "u1 got a second server");
    assert_eq!(backends(&su, role).await, 2, "one for u1, one for u2");
    a.batch_execute("commit").await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("u1's waiting client got a server")
        .unwrap();
    other.batch_execute("commit").await.unwrap();
}

#[tokio::test]
async fn client_caps_refuse_with_53300() {
    let role = "limits_clientcap";
    let lp = start(
        role,
        "pool_size = 2",
        "max_user_client_connections = 1",
        "max_db_client_connections = 2",
    );
    let first = client(&lp, "u2", "d1").await;
    let second = client(&lp, "u2", "d1").await;
    let err = connect(lp.port(), "u2", PW, "d1", false)
        .await
        .expect_err("a third client of d1");
    let db = err.as_db_error().expect("an ErrorResponse");
    assert_eq!(db.code().code(), "53300");
    assert!(
        db.message()
            .contains("too many client connections for database \"d1\""),
        "{}",
        db.message()
    );
    // d2 has no client limit.
    let _d2 = client(&lp, "u2", "d2").await;
    // u1 may have one client.
    let u1 = client(&lp, "u1", "d2").await;
    let err = connect(lp.port(), "u1", PW, "d2", false)
        .await
        .expect_err("a second client of u1");
    let db = err.as_db_error().expect("an ErrorResponse");
    assert_eq!(db.code().code(), "53300");
    assert!(
        db.message()
            .contains("too many client connections for user \"u1\""),
        "{}",
        db.message()
    );
    // A client leaving frees its place.
    drop(first);
    drop(u1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let again = client(&lp, "u2", "d1").await;
    again.batch_execute("select 1").await.unwrap();
    client(&lp, "u1", "d2").await;
    drop(second);
}

#[tokio::test]
async fn min_pool_size_opens_idle_servers() {
    let su = pg().connect_superuser().await;
    let role = "limits_minpool";
    let lp = start(role, "pool_size = 5\nmin_pool_size = 3", "", "");
    // Pools exist once a client has logged in; the maintenance task then fills this one.
    let c = client(&lp, "u1", "d1").await;
    c.batch_execute("select 1").await.unwrap();
    wait_for_backends(&su, role, 3, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(backends(&su, role).await, 3, "no more than min_pool_size");
}

#[tokio::test]
async fn reserve_pool_serves_a_client_that_waited() {
    let su = pg().connect_superuser().await;
    let role = "limits_reserve";
    let lp = start(
        role,
        "pool_size = 1\nreserve_pool_size = 1\nreserve_pool_timeout = 0.3\nquery_wait_timeout = 1.5",
        "",
        "",
    );
    let a = client(&lp, "u1", "d1").await;
    a.batch_execute("begin; select 1").await.unwrap();
    // The only server is in a's transaction: b gets a reserve connection after 0.3 s.
    let b = client(&lp, "u1", "d1").await;
    b.batch_execute("begin; select 1").await.unwrap();
    assert_eq!(backends(&su, role).await, 2);
    // The reserve is used up too: a third client times out in the queue.
    let c = client(&lp, "u1", "d1").await;
    let err = c.batch_execute("select 1").await.unwrap_err();
    assert_eq!(err.as_db_error().map(|e| e.code().code()), Some("57014"));
    assert_eq!(backends(&su, role).await, 2);
    a.batch_execute("commit").await.unwrap();
    b.batch_execute("commit").await.unwrap();
}

#[test]
fn client_idle_timeout_closes_idle_clients_with_57p05() {
    let role = "limits_clientidle";
    let lp = start(role, "pool_size = 2\nclient_idle_timeout = 0.5", "", "");
    let mut idle = RawConn::login_password(lp.port(), "u1", PW, "d1");
    idle.simple_query("select 1");
    // A client inside a transaction holds a server and is not "idle" for this timeout.
    let mut busy = RawConn::login_password(lp.port(), "u1", PW, "d1");
    busy.simple_query("begin");
    idle.set_read_timeout(Duration::from_secs(5));
    let err = idle
        .expect_error_or_close(&["57P05"], "idle client")
        .expect("an ErrorResponse before the close");
    assert!(
        err.message()
            .unwrap_or_default()
            .contains("client_idle_timeout"),
        "{:?}",
        err.fields()
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(busy.simple_query("select 2"), vec![Some("2".to_owned())]);
    busy.simple_query("commit");
}

#[tokio::test]
async fn idle_servers_whose_backends_died_are_replaced_silently() {
    let su = pg().connect_superuser().await;
    // The same as a PostgreSQL restart for idle connections: every backend goes away. With
    // server_check_delay = 0 every checkout of an idle server runs the health check too.
    let role = "limits_health";
    let lp = start(role, "pool_size = 3\nserver_check_delay = 0", "", "");
    let clients = [
        client(&lp, "u1", "d1").await,
        client(&lp, "u1", "d1").await,
        client(&lp, "u1", "d1").await,
    ];
    for c in &clients {
        c.batch_execute("begin; select 1").await.unwrap();
    }
    let mut before = Vec::new();
    for c in &clients {
        before.push(pid(c).await);
    }
    for c in &clients {
        c.batch_execute("commit").await.unwrap();
    }
    // A healthy idle server passes the check and is reused.
    assert!(before.contains(&pid(&clients[0]).await));
    wait_for_backends(&su, role, 3, Duration::from_secs(2)).await;
    pg().exec_sql(&format!(
        "select pg_terminate_backend(pid) from pg_stat_activity where usename = '{role}'"
    ));
    wait_for_backends(&su, role, 0, Duration::from_secs(5)).await;
    for c in &clients {
        c.batch_execute("begin")
            .await
            .expect("no error for a dead idle server");
        let p = pid(c).await;
        assert!(!before.contains(&p), "a dead server was handed out");
        c.batch_execute("commit").await.unwrap();
    }
}

#[tokio::test]
async fn server_login_retry_fails_fast_then_recovers() {
    let role = "limits_loginretry";
    create_role(role);
    let lp = Lakepool::start(
        &config(role, "pool_size = 2\nserver_login_retry = 1.5", "", "").replacen(
            &format!("password = \"{PW}\"\ntls"),
            "password = \"wrong\"\ntls",
            1,
        ),
        &[],
    );
    // The first client's attempt is rejected by the server.
    let err = connect(lp.port(), "u1", PW, "d1", false)
        .await
        .expect_err("wrong upstream password");
    let db = err.as_db_error().expect("an ErrorResponse");
    assert_eq!(db.code().code(), "08001");
    assert!(
        db.message().contains("server rejected login"),
        "{}",
        db.message()
    );
    assert!(
        !db.message().contains("server_login_retry"),
        "{}",
        db.message()
    );
    let failures = || {
        pg().log()
            .matches(&format!(
                "password authentication failed for user \"{role}\""
            ))
            .count()
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let attempts = failures();
    assert!(attempts >= 1, "the server saw the failed login");
    // The next one is not tried against the server: it gets the reason and the pause.
    let err = connect(lp.port(), "u1", PW, "d1", false)
        .await
        .expect_err("during server_login_retry");
    let db = err.as_db_error().expect("an ErrorResponse");
    assert_eq!(db.code().code(), "08001");
    assert!(
        db.message().contains("server rejected login")
            && db.message().contains("server_login_retry"),
        "{}",
        db.message()
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        failures(),
        attempts,
        "no new attempt during server_login_retry"
    );
    // Fixed upstream (the password now matches the config): after the pause, logins work.
    pg().exec_sql(&format!("ALTER ROLE {role} PASSWORD 'wrong'"));
    tokio::time::sleep(Duration::from_millis(1700)).await;
    let c = client(&lp, "u1", "d1").await;
    c.batch_execute("select 1").await.unwrap();
}

#[test]
fn idle_transaction_timeout_ends_the_client_and_rolls_back() {
    let role = "limits_idletx";
    let lp = start(
        role,
        "pool_size = 1\nidle_transaction_timeout = 0.5",
        "",
        "",
    );
    let mut idle = RawConn::login_password(lp.port(), "u1", PW, "d1");
    idle.simple_query("begin");
    let xid = idle.simple_query("select txid_current()")[0]
        .clone()
        .expect("a transaction id");
    idle.set_read_timeout(Duration::from_secs(5));
    let err = idle
        .expect_error_or_close(&["25P03"], "client idle in transaction")
        .expect("an ErrorResponse before the close");
    assert!(
        err.message()
            .unwrap_or_default()
            .contains("idle_transaction_timeout"),
        "{:?}",
        err.fields()
    );
    // The one server was rolled back and serves the next client.
    let mut next = RawConn::login_password(lp.port(), "u1", PW, "d1");
    assert_eq!(
        next.simple_query(&format!("select txid_status({xid})")),
        vec![Some("aborted".to_owned())]
    );
}

#[test]
fn session_mode_client_idle_timeout_applies_while_holding_a_server() {
    let role = "limits_sessionidle";
    let lp = start(
        role,
        "pool_size = 1\nclient_idle_timeout = 0.5",
        "",
        "pool_mode = \"session\"",
    );
    let mut idle = RawConn::login_password(lp.port(), "u1", PW, "d1");
    idle.simple_query("select 1");
    idle.set_read_timeout(Duration::from_secs(5));
    idle.expect_error_or_close(&["57P05"], "idle session client")
        .expect("an ErrorResponse before the close");
    // Its server went back to the pool (reset) and serves the next client.
    let mut next = RawConn::login_password(lp.port(), "u1", PW, "d1");
    assert_eq!(next.simple_query("select 2"), vec![Some("2".to_owned())]);
}
