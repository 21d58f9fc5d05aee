//! Checkout, check-in, FIFO waiters, query_wait_timeout, the reserve pool, server_lifetime
//! and server_login_retry of one pool.

use std::time::Duration;

use tokio::sync::mpsc;

use super::*;
use crate::config::PoolSettings;
use crate::error::ClientFacing;
use crate::pool::fake::Fail;
use crate::proto::sqlstate::SqlState;

#[tokio::test(start_paused = true)]
async fn released_connection_is_reused_most_recent_first() {
    let (fake, pool) = one_pool(settings());
    let a = pool.checkout().await.unwrap();
    let b = pool.checkout().await.unwrap();
    let (ida, idb) = (id(&a), id(&b));
    assert_ne!(ida, idb);
    a.release();
    b.release();
    assert_eq!(pool.counts(), (2, 2, 0));
    let again = pool.checkout().await.unwrap();
    assert_eq!(id(&again), idb, "the most recently released one");
    assert_eq!(fake.attempts(), 2, "no new login for an idle connection");
    assert_eq!(pool.active(), 1);
}

#[tokio::test(start_paused = true)]
async fn waiters_are_served_in_fifo_order() {
    let (fake, pool) = one_pool(PoolSettings {
        size: 1,
        ..settings()
    });
    let first = pool.checkout().await.unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    for n in 0..3 {
        let (pool, tx) = (pool.clone(), tx.clone());
        tokio::spawn(async move {
            let c = pool.checkout().await.unwrap();
            tx.send(n).unwrap();
            // Hold it a moment so the next one really has to wait for this release.
            tokio::time::sleep(ms(10)).await;
            c.release();
        });
        settle().await;
    }
    assert_eq!(pool.counts(), (0, 1, 3));
    first.release();
    let mut order = Vec::new();
    for _ in 0..3 {
        order.push(rx.recv().await.unwrap());
    }
    assert_eq!(order, [0, 1, 2]);
    assert_eq!(fake.attempts(), 1, "one connection served everyone");
}

#[tokio::test(start_paused = true)]
async fn waiter_fails_after_query_wait_timeout_and_the_connection_is_not_lost() {
    let (_fake, pool) = one_pool(PoolSettings {
        size: 1,
        query_wait_timeout: secs(2),
        ..settings()
    });
    let held = pool.checkout().await.unwrap();
    let started = tokio::time::Instant::now();
    let err = pool.checkout().await.unwrap_err();
    assert!(matches!(err, PoolError::WaitTimeout(_)), "{err}");
    assert_eq!(err.sqlstate(), SqlState::QUERY_CANCELED);
    assert_eq!(started.elapsed(), secs(2));
    held.release();
    assert_eq!(
        pool.counts(),
        (1, 1, 0),
        "released to idle, not to the gone waiter"
    );
}

#[tokio::test(start_paused = true)]
async fn cancelled_waiter_hands_a_raced_grant_back() {
    let (fake, pool) = one_pool(PoolSettings {
        size: 1,
        ..settings()
    });
    let held = pool.checkout().await.unwrap();
    let held_id = id(&held);
    let waiter = spawn_checkout(&pool);
    settle().await;
    // The grant is sent to the waiter, which is cancelled before it runs again.
    held.release();
    waiter.abort();
    assert!(waiter.await.unwrap_err().is_cancelled());
    assert_eq!(pool.counts(), (1, 1, 0), "the connection went back to idle");
    let again = pool.checkout().await.unwrap();
    assert_eq!(id(&again), held_id);
    assert_eq!(fake.attempts(), 1);
}

#[tokio::test(start_paused = true)]
async fn dropped_checkout_closes_the_connection_and_hands_the_slot_on() {
    let (fake, pool) = one_pool(PoolSettings {
        size: 1,
        ..settings()
    });
    let dirty = pool.checkout().await.unwrap();
    let dirty_id = id(&dirty);
    let waiter = spawn_checkout(&pool);
    settle().await;
    drop(dirty);
    let c = joined(waiter).await;
    assert_ne!(id(&c), dirty_id, "a dropped connection is never reused");
    assert_eq!(fake.attempts(), 2);
    assert_eq!(pool.counts(), (0, 1, 0));
    c.close();
    assert_eq!(pool.counts(), (0, 0, 0));
    assert_eq!(pool.stats().sum(|c| &c.servers_closed), 2);
}

#[tokio::test(start_paused = true)]
async fn reserve_pool_opens_one_extra_connection_after_reserve_pool_timeout() {
    let (fake, pool) = one_pool(one_plus_reserve(1));
    let _a = pool.checkout().await.unwrap();
    let b = spawn_checkout(&pool);
    tokio::time::sleep(ms(900)).await;
    assert!(
        !b.is_finished(),
        "no reserve connection before reserve_pool_timeout"
    );
    let b = joined(b).await;
    assert_eq!(fake.attempts(), 2);
    assert_eq!(pool.counts(), (0, 2, 0));
    // The reserve is used up: a third client waits out query_wait_timeout.
    let started = tokio::time::Instant::now();
    let err = pool.checkout().await.unwrap_err();
    assert!(matches!(err, PoolError::WaitTimeout(_)), "{err}");
    assert_eq!(started.elapsed(), secs(10));
    // A closed reserve connection's slot is not handed on: the pool shrinks to pool_size.
    let c = spawn_checkout(&pool);
    settle().await;
    b.close();
    settle().await;
    assert!(!c.is_finished(), "a reserve slot is not passed to a waiter");
    assert_eq!(pool.counts(), (0, 1, 1));
}

#[tokio::test(start_paused = true)]
async fn server_lifetime_closes_old_connections_at_release_and_at_checkout() {
    let (fake, pool) = one_pool(PoolSettings {
        server_lifetime: secs(60),
        ..settings()
    });
    let old = pool.checkout().await.unwrap();
    tokio::time::sleep(secs(61)).await;
    old.release();
    assert_eq!(pool.counts(), (0, 0, 0), "too old at release: closed");

    let c = pool.checkout().await.unwrap();
    let first = id(&c);
    c.release();
    tokio::time::sleep(secs(30)).await;
    let c = pool.checkout().await.unwrap();
    assert_eq!(id(&c), first, "still young enough");
    c.release();
    tokio::time::sleep(secs(31)).await;
    let c = pool.checkout().await.unwrap();
    assert_ne!(id(&c), first, "too old at checkout: replaced");
    assert_eq!(fake.attempts(), 3);
    assert_eq!(pool.counts(), (0, 1, 0));
}

#[tokio::test(start_paused = true)]
async fn idle_connection_the_server_closed_is_replaced() {
    let (fake, pool) = one_pool(settings());
    let c = pool.checkout().await.unwrap();
    let dead = id(&c);
    c.release();
    fake.kill(dead);
    // Let the runtime see the socket's end.
    for _ in 0..100 {
        settle().await;
    }
    let c = pool.checkout().await.unwrap();
    assert_ne!(id(&c), dead);
    assert_eq!(pool.counts(), (0, 1, 0));
}

#[tokio::test(start_paused = true)]
async fn failed_login_pauses_new_connections_for_server_login_retry() {
    let (fake, pool) = one_pool(PoolSettings {
        server_login_retry: secs(15),
        ..settings()
    });
    let idle = pool.checkout().await.unwrap();
    fake.fail_next(&[Fail::PasswordRejected]);
    let busy = pool.checkout().await.unwrap_err();
    assert!(
        matches!(&busy, PoolError::Upstream(e) if e.is_auth_rejection()),
        "{busy}"
    );
    assert_eq!(fake.attempts(), 2);
    assert_eq!(
        pool.counts(),
        (0, 1, 0),
        "the failed attempt's slot is freed"
    );

    tokio::time::sleep(secs(10)).await;
    let err = pool.checkout().await.unwrap_err();
    let PoolError::LoginRetry { retry_in, .. } = &err else {
        panic!("expected LoginRetry, got {err}");
    };
    assert_eq!(*retry_in, secs(5));
    assert_eq!(err.sqlstate(), SqlState::UNABLE_TO_CONNECT);
    assert!(
        err.client_message()
            .contains("password authentication failed")
    );
    assert_eq!(fake.attempts(), 2, "no attempt during server_login_retry");

    // Idle connections are still handed out meanwhile.
    let idle_id = id(&idle);
    idle.release();
    let c = pool.checkout().await.unwrap();
    assert_eq!(id(&c), idle_id);

    tokio::time::sleep(secs(5)).await;
    let _new = pool.checkout().await.unwrap();
    assert_eq!(fake.attempts(), 3);
}

#[tokio::test(start_paused = true)]
async fn waiter_given_a_freed_slot_logs_in_itself_and_gets_the_failure() {
    let (fake, pool) = one_pool(PoolSettings {
        size: 1,
        server_login_retry: Duration::ZERO,
        ..settings()
    });
    let held = pool.checkout().await.unwrap();
    let waiting = spawn_checkout(&pool);
    settle().await;
    fake.fail_next(&[Fail::NoDatabase]);
    drop(held);
    let err = waiting.await.unwrap().unwrap_err();
    assert!(err.client_message().contains("does not exist"), "{err}");
    assert_eq!(
        pool.counts(),
        (0, 0, 0),
        "the failed attempt's slot is uncounted"
    );
    // server_login_retry = 0: the next client tries again at once.
    let _c = pool.checkout().await.unwrap();
    assert_eq!(fake.attempts(), 3);
}
