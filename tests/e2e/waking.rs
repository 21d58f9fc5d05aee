//! Scale to zero: an upstream that refuses connections, then accepts and drops them, then
//! works (an endpoint waking up) costs clients that connect meanwhile a wait, not an error.
//!
//! The outage is driven by the test, not by timers: the proxy refuses until lakepool logged
//! that it is retrying, drops connections until it dropped one, then forwards.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use crate::support::{APP_DB, APP_OWNER, HOST, Lakepool, connect, free_port, pg};

/// Password of the client login.
const PW: &str = "waking_pw";

const REFUSING: u8 = 0;
const DROPPING: u8 = 1;
const FORWARDING: u8 = 2;

/// A loopback TCP forwarder to the test PostgreSQL playing an endpoint that wakes up.
struct WakingProxy {
    port: u16,
    phase: Arc<AtomicU8>,
    dropped: Arc<AtomicUsize>,
}

impl WakingProxy {
    /// A proxy that refuses connections (nothing listens on its port yet).
    fn refusing() -> Self {
        Self {
            port: free_port(),
            phase: Arc::new(AtomicU8::new(REFUSING)),
            dropped: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Starts listening: connections are accepted and closed at once.
    async fn drop_connections(&self) {
        let listener = TcpListener::bind((HOST, self.port))
            .await
            .unwrap_or_else(|e| panic!("rebind proxy port {}: {e}", self.port));
        self.phase.store(DROPPING, Ordering::SeqCst);
        let (phase, dropped) = (Arc::clone(&self.phase), Arc::clone(&self.dropped));
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if phase.load(Ordering::SeqCst) == DROPPING {
                    dropped.fetch_add(1, Ordering::SeqCst);
                    drop(client);
                    continue;
                }
                tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect((HOST, pg().port)).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
    }

    /// From now on connections reach PostgreSQL.
    fn forward(&self) {
        self.phase.store(FORWARDING, Ordering::SeqCst);
    }

    fn dropped(&self) -> usize {
        self.dropped.load(Ordering::SeqCst)
    }
}

fn config(port: u16) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n\
         [pool]\npool_mode = \"transaction\"\npool_size = 2\nquery_wait_timeout = 60\n\
         server_login_retry = 15\n\n\
         [[users]]\nname = \"u\"\npassword = \"{PW}\"\n\n\
         [[databases]]\nname = \"app\"\nhost = \"{HOST}\"\nport = {port}\ndbname = \"{APP_DB}\"\n\
         user = \"{}\"\npassword = \"{}\"\ntls = \"disable\"\n",
        APP_OWNER.0, APP_OWNER.1,
    )
}

/// Polls `done` (without blocking the runtime the clients run on) for up to 30 s.
async fn eventually(done: impl Fn() -> bool) -> bool {
    for _ in 0..600 {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    done()
}

#[tokio::test]
async fn clients_connecting_while_the_upstream_wakes_up_get_no_error() {
    let proxy = WakingProxy::refusing();
    let lp = Lakepool::start(&config(proxy.port), &[]);
    let port = lp.port();
    // Logging in needs a server (the pool never connected), so logins wait out the outage.
    let clients: Vec<_> = (0..4)
        .map(|n| {
            tokio::spawn(async move {
                let c = connect(port, "u", PW, "app", false)
                    .await
                    .map_err(|e| format!("client {n} login: {e}"))?;
                let rows = c
                    .simple_query("select 1")
                    .await
                    .map_err(|e| format!("client {n} query: {e}"))?;
                Ok::<usize, String>(rows.len())
            })
        })
        .collect();

    // Connections refused: lakepool retries instead of failing the clients.
    let retrying = || lp.logs().contains("server not accepting connections yet");
    assert!(
        eventually(retrying).await,
        "no retry logged:\n{}",
        lp.logs()
    );
    // Connections accepted and dropped during login: retried as well.
    proxy.drop_connections().await;
    let came_back = eventually(|| proxy.dropped() > 0).await;
    assert!(came_back, "lakepool never came back:\n{}", lp.logs());
    assert!(
        clients.iter().all(|c| !c.is_finished()),
        "a client gave up during the outage"
    );
    proxy.forward();

    for c in clients {
        let rows = c
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{e}\n{}", lp.logs()));
        assert!(rows > 0);
    }
    assert!(
        !lp.logs().contains("server_login_retry"),
        "the pool was paused:\n{}",
        lp.logs()
    );
    // And the pool keeps working normally afterwards.
    let c = connect(port, "u", PW, "app", false).await.unwrap();
    c.simple_query("select 1").await.unwrap();
}
