//! Graceful shutdown: SIGTERM stops new work, lets transactions in flight finish, tells idle
//! clients with 57P01, and exits 0.

use std::time::{Duration, Instant};

use crate::fixtures::{self, APP, MD5_USER, Opts};
use crate::support::connect;
use crate::support::wire::RawConn;

#[tokio::test]
async fn sigterm_under_load_cuts_no_started_transaction() {
    let mut lp = fixtures::start(&Opts {
        size: 2,
        server_extra: "shutdown_timeout = 10",
        ..Opts::default()
    });
    let port = lp.port();
    let commits = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let commits = std::sync::Arc::clone(&commits);
        tasks.push(tokio::spawn(async move {
            let c = connect(port, APP.0, APP.1, "app", false).await.unwrap();
            let mut committed = 0u32;
            loop {
                // The only acceptable failure: lakepool refusing to start a new transaction.
                if let Err(e) = c.batch_execute("begin").await {
                    let why = match e.code() {
                        Some(code) => code.code().to_owned(),
                        None => format!("{e:?}"),
                    };
                    return (committed, why);
                }
                c.execute("select pg_sleep(0.2)", &[])
                    .await
                    .expect("a started transaction runs to its end");
                c.batch_execute("commit")
                    .await
                    .expect("a started transaction commits");
                committed += 1;
                commits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }));
    }
    // Signal once traffic flows (event, not a fixed delay: logins are slow on a busy machine).
    let deadline = Instant::now() + Duration::from_secs(30);
    while commits.load(std::sync::atomic::Ordering::Relaxed) < 6 {
        assert!(Instant::now() < deadline, "no traffic: {}", lp.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let signalled = Instant::now();
    lp.sigterm();
    let mut total = 0;
    for t in tasks {
        let (committed, why) = t.await.expect("no transaction was cut");
        assert!(why == "57P01" || why.contains("Closed"), "{why}");
        total += committed;
    }
    assert!(
        total > 0,
        "no transaction committed before the signal: {}",
        lp.logs()
    );
    let status = tokio::task::spawn_blocking(move || {
        let s = lp.wait_exit(Duration::from_secs(15));
        (s, lp.logs())
    })
    .await
    .unwrap();
    assert_eq!(status.0.map(|s| s.code()), Some(Some(0)), "{}", status.1);
    assert!(
        signalled.elapsed() < Duration::from_secs(10),
        "drained before shutdown_timeout"
    );
}

#[test]
fn session_mode_idle_client_is_told_at_once() {
    let mut lp = fixtures::start(&Opts {
        mode: "session",
        size: 2,
        server_extra: "shutdown_timeout = 30",
        ..Opts::default()
    });
    let mut idle = RawConn::login_password(lp.port(), MD5_USER.0, MD5_USER.1, "app");
    idle.simple_query("select 1");
    lp.sigterm();
    idle.set_read_timeout(Duration::from_secs(10));
    idle.expect_error_or_close(&["57P01"], "idle session client at shutdown")
        .expect("an ErrorResponse before the close");
    let status = lp.wait_exit(Duration::from_secs(10));
    assert_eq!(
        status.map(|s| s.code()),
        Some(Some(0)),
        "exits well before shutdown_timeout once no client is left: {}",
        lp.logs()
    );
}
