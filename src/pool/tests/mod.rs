//! Unit tests of the pools, the limits across pools and the registry, against a scripted
//! [`FakeUpstream`] on a paused tokio clock: timeouts and lifetimes are exact and instant.

mod checkout;
mod control;
mod idle;
mod limits;
mod maintenance;
mod passthrough;
mod registry;
mod waiting;
mod waking;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use tokio::task::JoinHandle;

use super::fake::FakeUpstream;
use super::registry::{Database, Registry};
use super::{Checkout, Connector, Pool, PoolError};
use crate::config::PoolSettings;
use crate::upstream::Upstream;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// `[pool]` defaults, but idle connections are never health-checked (a check needs a server
/// that answers queries; the e2e tests cover it).
fn settings() -> PoolSettings {
    PoolSettings {
        server_check_delay: secs(86_400),
        ..PoolSettings::default()
    }
}

/// One connection, `reserve` more for clients that waited 1 s, and 10 s to wait in all.
fn one_plus_reserve(reserve: usize) -> PoolSettings {
    PoolSettings {
        size: 1,
        reserve_pool_size: reserve,
        reserve_pool_timeout: secs(1),
        query_wait_timeout: secs(10),
        ..settings()
    }
}

/// An upstream the fake stands in for (never contacted).
fn upstream() -> Arc<Upstream> {
    Upstream::never_contacted()
}

fn database(name: &str, upstream: &Arc<Upstream>, settings: PoolSettings) -> Database {
    Database {
        name: name.to_owned(),
        upstream: Arc::clone(upstream),
        settings,
        fingerprint: [0; 32],
        passthrough: None,
    }
}

/// A registry of `databases` whose pools connect to `fake`.
fn registry(fake: &Arc<FakeUpstream>, databases: Vec<Database>) -> Registry {
    Registry::new(databases, HashMap::new()).with_connector(Connector::Fake(Arc::clone(fake)))
}

/// The pool of user `u` on database `db` (one database), and the fake behind it.
fn one_pool(settings: PoolSettings) -> (Arc<FakeUpstream>, Pool) {
    let fake = FakeUpstream::new();
    let reg = registry(&fake, vec![database("db", &upstream(), settings)]);
    let pool = reg.current_pool("db", "u").expect("database db");
    (fake, pool)
}

/// Lets every task that can make progress run (the paused clock moves on by 1 ms).
async fn settle() {
    tokio::time::sleep(ms(1)).await;
}

/// A checkout running in a task of its own.
fn spawn_checkout(pool: &Pool) -> JoinHandle<Result<Checkout, PoolError>> {
    let pool = pool.clone();
    tokio::spawn(async move { pool.checkout().await })
}

/// The connection id of a successful checkout.
fn id(c: &Checkout) -> u64 {
    c.conn_ref().id
}

/// Awaits a spawned checkout that must have succeeded.
async fn joined(h: JoinHandle<Result<Checkout, PoolError>>) -> Checkout {
    match h.await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => panic!("checkout failed: {e}"),
        Err(e) => panic!("checkout task: {e}"),
    }
}
