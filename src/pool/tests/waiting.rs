//! The wait queue's order and its one watchdog task per pool: exact query_wait_timeout for
//! waiters queued in any order and after the queue emptied, reserve slots oldest first, and
//! the task ending with its pool.

use std::sync::Arc;

use tokio::sync::oneshot;

use super::*;
use crate::config::PoolSettings;
use crate::pool::checkout::Grant;

/// Queues a waiter whose checkout started at `since`, as a checkout would.
fn queue(pool: &Pool, since: tokio::time::Instant) -> oneshot::Receiver<Grant> {
    let shared = &pool.shared;
    // Through the ledger, which keeps the pool's `waiting` flag in step with the queue.
    crate::pool::accounting::Ledger::lock(shared)
        .waiters
        .push(shared, since.into_std())
}

fn timed_out(rx: &mut oneshot::Receiver<Grant>) -> bool {
    matches!(rx.try_recv(), Ok(Grant::TimedOut))
}

#[tokio::test(start_paused = true)]
async fn an_older_checkout_queued_later_times_out_at_its_own_deadline() {
    let (_fake, pool) = one_pool(PoolSettings {
        size: 1,
        query_wait_timeout: secs(10),
        ..settings()
    });
    let _held = pool.checkout().await.unwrap();
    let t0 = tokio::time::Instant::now();
    let mut newer = queue(&pool, t0);
    settle().await;
    // Started 6 s before the first waiter (it waited for RESUME, say): it goes first, and its
    // deadline comes 6 s before the one the watchdog sleeps to.
    let mut older = queue(&pool, t0 - secs(6));
    assert_eq!(pool.counts(), (0, 1, 2));
    tokio::time::sleep_until(t0 + secs(4) - ms(1)).await;
    assert!(!timed_out(&mut older), "not before its 10 s");
    tokio::time::sleep_until(t0 + secs(4)).await;
    settle().await;
    assert!(timed_out(&mut older), "at 10 s after it started");
    assert!(!timed_out(&mut newer));
    tokio::time::sleep_until(t0 + secs(10)).await;
    settle().await;
    assert!(timed_out(&mut newer));
    assert_eq!(pool.counts(), (0, 1, 0));
}

#[tokio::test(start_paused = true)]
async fn a_waiter_after_the_queue_emptied_still_times_out_exactly() {
    let (_fake, pool) = one_pool(PoolSettings {
        size: 1,
        query_wait_timeout: secs(2),
        ..settings()
    });
    let held = pool.checkout().await.unwrap();
    let first = spawn_checkout(&pool);
    settle().await;
    held.release();
    let first = joined(first).await;
    // The watchdog wakes at the gone waiter's deadline, finds no one and parks.
    tokio::time::sleep(secs(3)).await;
    let started = tokio::time::Instant::now();
    let err = pool.checkout().await.unwrap_err();
    assert!(matches!(err, PoolError::WaitTimeout(_)), "{err}");
    assert_eq!(started.elapsed(), secs(2));
    first.release();
    assert_eq!(pool.counts(), (1, 1, 0));
}

#[tokio::test(start_paused = true)]
async fn reserve_slots_go_to_the_oldest_waiters_each_at_its_reserve_pool_timeout() {
    let (fake, pool) = one_pool(one_plus_reserve(2));
    let _held = pool.checkout().await.unwrap();
    let t0 = tokio::time::Instant::now();
    let b = spawn_checkout(&pool);
    tokio::time::sleep(ms(500)).await;
    let c = spawn_checkout(&pool);
    tokio::time::sleep_until(t0 + ms(999)).await;
    assert_eq!(fake.attempts(), 1, "no reserve before reserve_pool_timeout");
    tokio::time::sleep_until(t0 + ms(1001)).await;
    let _b = joined(b).await;
    assert_eq!(fake.attempts(), 2);
    assert!(
        !c.is_finished(),
        "the younger waiter's turn comes at its own timeout"
    );
    tokio::time::sleep_until(t0 + ms(1501)).await;
    let _c = joined(c).await;
    assert_eq!(fake.attempts(), 3);
    assert_eq!(pool.counts(), (0, 3, 0));
}

#[tokio::test(start_paused = true)]
async fn the_watchdog_ends_with_its_pool() {
    let (_fake, pool) = one_pool(PoolSettings {
        size: 1,
        ..settings()
    });
    let held = pool.checkout().await.unwrap();
    let waiter = spawn_checkout(&pool);
    settle().await;
    let wake = Arc::clone(&pool.shared.wait_watch);
    assert_eq!(
        Arc::strong_count(&wake),
        3,
        "the pool's, the watchdog's and this one"
    );
    held.release();
    joined(waiter).await.release();
    drop(pool);
    settle().await;
    assert_eq!(Arc::strong_count(&wake), 1, "the watchdog task ended");
}

#[tokio::test(start_paused = true)]
async fn no_reserve_login_while_paused_and_the_reserve_turn_comes_at_resume() {
    let (fake, pool) = one_pool(one_plus_reserve(1));
    let _held = pool.checkout().await.unwrap();
    let waiter = spawn_checkout(&pool);
    settle().await;
    pool.pause();
    tokio::time::sleep(secs(2)).await;
    assert_eq!(fake.attempts(), 1, "no server login while paused");
    assert!(!waiter.is_finished());
    pool.resume();
    let _w = joined(waiter).await;
    assert_eq!(fake.attempts(), 2, "the reserve connection, at RESUME");
    assert_eq!(pool.counts(), (0, 2, 0));
}
