//! The maintenance round: sweep (server_idle_timeout, server_lifetime, min_pool_size kept)
//! and fill_to_min.

use super::*;
use crate::pool::fake::Fail;

/// Checks out `n` connections at once and releases them all.
async fn open_idle(pool: &Pool, n: usize) {
    let mut held = Vec::new();
    for _ in 0..n {
        held.push(pool.checkout().await.unwrap());
    }
    for c in held {
        c.release();
    }
}

#[tokio::test(start_paused = true)]
async fn sweep_closes_connections_idle_past_server_idle_timeout_keeping_min_pool_size() {
    let (_fake, pool) = one_pool(PoolSettings {
        min_pool_size: 2,
        server_idle_timeout: secs(60),
        ..settings()
    });
    open_idle(&pool, 4).await;
    tokio::time::sleep(secs(59)).await;
    pool.sweep();
    assert_eq!(pool.counts(), (4, 4, 0), "not idle long enough yet");
    tokio::time::sleep(secs(1)).await;
    pool.sweep();
    assert_eq!(pool.counts(), (2, 2, 0), "min_pool_size stays");
}

#[tokio::test(start_paused = true)]
async fn sweep_closes_connections_past_server_lifetime_even_below_min_pool_size() {
    let (fake, pool) = one_pool(PoolSettings {
        min_pool_size: 1,
        server_lifetime: secs(100),
        ..settings()
    });
    pool.fill_to_min();
    settle().await;
    assert_eq!(pool.counts(), (1, 1, 0));
    tokio::time::sleep(secs(100)).await;
    pool.sweep();
    assert_eq!(pool.counts(), (0, 0, 0));
    pool.fill_to_min();
    settle().await;
    assert_eq!(pool.counts(), (1, 1, 0));
    assert_eq!(fake.attempts(), 2);
}

#[tokio::test(start_paused = true)]
async fn fill_to_min_stops_at_pool_size_and_at_database_limits() {
    let (fake, pool) = one_pool(PoolSettings {
        size: 2,
        min_pool_size: 5,
        ..settings()
    });
    pool.fill_to_min();
    settle().await;
    assert_eq!(pool.counts(), (2, 2, 0));
    pool.fill_to_min();
    settle().await;
    assert_eq!(
        fake.attempts(),
        2,
        "already at min_pool_size (capped at pool_size)"
    );

    let (_fake, limited) = one_pool(PoolSettings {
        min_pool_size: 3,
        max_db_connections: 1,
        ..settings()
    });
    limited.fill_to_min();
    settle().await;
    assert_eq!(limited.counts(), (1, 1, 0));
}

#[tokio::test(start_paused = true)]
async fn fill_to_min_waits_out_server_login_retry() {
    let (fake, pool) = one_pool(PoolSettings {
        min_pool_size: 1,
        server_login_retry: secs(15),
        ..settings()
    });
    fake.fail_next(&[Fail::PasswordRejected]);
    pool.fill_to_min();
    settle().await;
    assert_eq!(pool.counts(), (0, 0, 0));
    pool.fill_to_min();
    settle().await;
    assert_eq!(fake.attempts(), 1, "no attempt during server_login_retry");
    tokio::time::sleep(secs(15)).await;
    pool.fill_to_min();
    settle().await;
    assert_eq!(pool.counts(), (1, 1, 0));
    // A client takes the connection min_pool_size opened, without a login of its own.
    let _c = pool.checkout().await.unwrap();
    assert_eq!(fake.attempts(), 2);
}

#[tokio::test(start_paused = true)]
async fn fill_to_min_hands_a_new_connection_to_a_waiting_client() {
    let (fake, pool) = one_pool(PoolSettings {
        size: 1,
        min_pool_size: 1,
        ..settings()
    });
    fake.set_login_time(secs(2));
    pool.fill_to_min();
    settle().await;
    // The only slot is being filled: a client waits for that connection.
    let c = spawn_checkout(&pool);
    settle().await;
    assert_eq!(pool.counts(), (0, 1, 1));
    let c = joined(c).await;
    assert_eq!(fake.attempts(), 1);
    c.release();
}
