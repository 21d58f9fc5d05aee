//! PAUSE/RESUME, RECONNECT and close of one pool.

use super::*;

#[tokio::test(start_paused = true)]
async fn pause_holds_checkouts_until_resume() {
    let (fake, pool) = one_pool(settings());
    pool.pause();
    assert!(pool.is_paused());
    let waiting = spawn_checkout(&pool);
    tokio::time::sleep(secs(30)).await;
    assert!(!waiting.is_finished());
    assert_eq!(fake.attempts(), 0, "nothing is opened while paused");
    pool.resume();
    let _c = joined(waiting).await;
    assert_eq!(fake.attempts(), 1);
}

#[tokio::test(start_paused = true)]
async fn paused_checkout_fails_after_query_wait_timeout() {
    let (_fake, pool) = one_pool(PoolSettings {
        query_wait_timeout: secs(5),
        ..settings()
    });
    pool.pause();
    let started = tokio::time::Instant::now();
    let err = pool.checkout().await.unwrap_err();
    assert!(matches!(err, PoolError::WaitTimeout(_)), "{err}");
    assert_eq!(started.elapsed(), secs(5));
}

#[tokio::test(start_paused = true)]
async fn connections_released_during_pause_go_to_waiters_at_resume() {
    let (fake, pool) = one_pool(PoolSettings {
        size: 1,
        ..settings()
    });
    let held = pool.checkout().await.unwrap();
    let held_id = id(&held);
    let waiting = spawn_checkout(&pool);
    settle().await;
    pool.pause();
    held.release();
    settle().await;
    assert!(
        !waiting.is_finished(),
        "a paused pool keeps released connections idle"
    );
    assert_eq!(pool.counts(), (1, 1, 1));
    pool.resume();
    let c = joined(waiting).await;
    assert_eq!(id(&c), held_id);
    assert_eq!(fake.attempts(), 1);
}

#[tokio::test(start_paused = true)]
async fn reconnect_replaces_idle_connections_now_and_busy_ones_at_release() {
    let (fake, pool) = one_pool(settings());
    let busy = pool.checkout().await.unwrap();
    let idle = pool.checkout().await.unwrap();
    let before = [id(&busy), id(&idle)];
    idle.release();
    settle().await;
    pool.reconnect();
    assert_eq!(pool.counts(), (0, 1, 0), "the idle one closed at once");
    busy.release();
    assert_eq!(pool.counts(), (0, 0, 0), "the busy one closed at release");
    let c = pool.checkout().await.unwrap();
    assert!(!before.contains(&id(&c)));
    assert_eq!(fake.attempts(), 3);
}

#[tokio::test(start_paused = true)]
async fn reconnect_hands_freed_slots_to_waiters() {
    let (_fake, pool) = one_pool(PoolSettings {
        size: 1,
        ..settings()
    });
    let c = pool.checkout().await.unwrap();
    let old = id(&c);
    // Idle again, but a paused pool keeps it for RESUME while a client queues.
    pool.pause();
    c.release();
    let waiting = spawn_checkout(&pool);
    settle().await;
    pool.resume();
    let c = joined(waiting).await;
    assert_eq!(id(&c), old);
    c.release();
    pool.reconnect();
    let c = pool.checkout().await.unwrap();
    assert_ne!(id(&c), old);
}

#[tokio::test(start_paused = true)]
async fn close_fails_waiters_and_later_checkouts() {
    let (_fake, pool) = one_pool(PoolSettings {
        size: 1,
        ..settings()
    });
    let held = pool.checkout().await.unwrap();
    let waiting = spawn_checkout(&pool);
    settle().await;
    pool.close();
    assert!(matches!(waiting.await.unwrap(), Err(PoolError::Closed)));
    assert!(matches!(pool.checkout().await, Err(PoolError::Closed)));
    held.release();
    assert_eq!(
        pool.counts(),
        (0, 0, 0),
        "released into a closed pool: closed"
    );
}

#[tokio::test(start_paused = true)]
async fn close_wakes_clients_waiting_for_resume() {
    let (_fake, pool) = one_pool(settings());
    pool.pause();
    let waiting = spawn_checkout(&pool);
    settle().await;
    pool.close();
    assert!(matches!(waiting.await.unwrap(), Err(PoolError::Closed)));
}
