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
