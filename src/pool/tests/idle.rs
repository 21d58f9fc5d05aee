//! Idle connections kept per worker: checkouts find connections other workers released, waiters
//! get connections released on any worker, and the pool's upkeep sees every list. Workers are
//! played by one thread switching its worker index, except in the stress test, which runs real
//! threads.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::worker::{set_count_for_this_thread, set_current};

/// A pool with idle lists for three workers, used from worker 0.
fn three_worker_pool(settings: PoolSettings) -> (Arc<FakeUpstream>, Pool) {
    set_count_for_this_thread(3);
    set_current(0);
    one_pool(settings)
}

#[tokio::test(start_paused = true)]
async fn a_checkout_takes_a_connection_another_worker_released() {
    let (fake, pool) = three_worker_pool(settings());
    let c = pool.checkout().await.unwrap();
    let first = id(&c);
    c.release();
    set_current(1);
    let c = pool.checkout().await.unwrap();
    assert_eq!(id(&c), first, "worker 1 found worker 0's idle connection");
    assert_eq!(fake.attempts(), 1, "no new login");
    set_current(2);
    c.release();
    set_current(0);
    assert_eq!(pool.counts(), (1, 1, 0));
    assert_eq!(pool.idle_servers().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn each_worker_reuses_its_own_most_recent_connection_first() {
    let (fake, pool) = three_worker_pool(settings());
    let a = pool.checkout().await.unwrap();
    let b = pool.checkout().await.unwrap();
    let (ida, idb) = (id(&a), id(&b));
    a.release();
    set_current(1);
    b.release();
    // Worker 1 takes what it released, worker 0 what it did.
    let c1 = pool.checkout().await.unwrap();
    set_current(0);
    let c0 = pool.checkout().await.unwrap();
    assert_eq!((id(&c0), id(&c1)), (ida, idb));
    assert_eq!(fake.attempts(), 2);
    assert_eq!(pool.counts(), (0, 2, 0));
    assert_eq!(pool.active(), 2);
}

/// A pool of one connection for three workers: its connection checked out on worker 0, and a
/// client queued for it on worker 1.
async fn one_held_one_queued() -> (
    Arc<FakeUpstream>,
    Pool,
    Checkout,
    JoinHandle<Result<Checkout, PoolError>>,
) {
    let (fake, pool) = three_worker_pool(PoolSettings {
        size: 1,
        ..settings()
    });
    let held = pool.checkout().await.unwrap();
    set_current(1);
    let waiting = spawn_checkout(&pool);
    settle().await;
    assert_eq!(pool.counts(), (0, 1, 1));
    (fake, pool, held, waiting)
}

#[tokio::test(start_paused = true)]
async fn a_waiter_gets_a_connection_released_on_another_worker() {
    let (fake, pool, held, waiting) = one_held_one_queued().await;
    let held_id = id(&held);
    set_current(2);
    held.release();
    let c = joined(waiting).await;
    assert_eq!(id(&c), held_id);
    assert_eq!(fake.attempts(), 1);
    c.release();
    assert_eq!(
        pool.counts(),
        (1, 1, 0),
        "no one waits: back to an idle list"
    );
}

#[tokio::test(start_paused = true)]
async fn resume_hands_a_connection_released_on_another_worker_to_a_queued_client() {
    let (fake, pool, held, waiting) = one_held_one_queued().await;
    let held_id = id(&held);
    // Queued before the PAUSE.
    pool.pause();
    set_current(2);
    held.release();
    assert_eq!(
        pool.counts(),
        (1, 1, 1),
        "PAUSEd: kept idle on worker 2's list"
    );
    set_current(0);
    pool.resume();
    let c = joined(waiting).await;
    assert_eq!(id(&c), held_id);
    assert_eq!(fake.attempts(), 1);
}

#[tokio::test(start_paused = true)]
async fn close_reconnect_and_resume_see_every_workers_list() {
    let (fake, pool) = three_worker_pool(settings());
    let held: Vec<_> = futures_join(&pool, 3).await;
    let ids: Vec<u64> = held.iter().map(id).collect();
    for (w, c) in held.into_iter().enumerate() {
        set_current(w);
        c.release();
    }
    set_current(0);
    assert_eq!(pool.counts(), (3, 3, 0));
    // RECONNECT closes the idle connections of every worker.
    pool.reconnect();
    assert_eq!(pool.counts(), (0, 0, 0));
    // Later than RECONNECT: a connection opened at its very instant counts as replaced.
    settle().await;
    let c = pool.checkout().await.unwrap();
    assert!(!ids.contains(&id(&c)));
    // PAUSE keeps released connections; RESUME hands them to whoever queued meanwhile.
    pool.pause();
    set_current(2);
    c.release();
    set_current(1);
    let waiting = spawn_checkout(&pool);
    settle().await;
    pool.resume();
    let c = joined(waiting).await;
    assert_eq!(fake.attempts(), 4);
    set_current(2);
    c.release();
    set_current(0);
    pool.close();
    assert_eq!(
        pool.counts(),
        (0, 0, 0),
        "closing took worker 2's idle connection"
    );
}

#[tokio::test(start_paused = true)]
async fn sweep_keeps_the_most_recently_used_across_workers() {
    let (_fake, pool) = three_worker_pool(PoolSettings {
        min_pool_size: 2,
        server_idle_timeout: secs(60),
        ..settings()
    });
    let held: Vec<_> = futures_join(&pool, 4).await;
    let ids: Vec<u64> = held.iter().map(id).collect();
    // Released one second apart, on workers 2, 1, 0, 2: the last two released stay.
    for (c, w) in held.into_iter().zip([2, 1, 0, 2]) {
        set_current(w);
        c.release();
        tokio::time::sleep(secs(1)).await;
    }
    set_current(0);
    tokio::time::sleep(secs(60)).await;
    pool.sweep();
    let mut kept: Vec<u64> = pool.idle_servers().iter().map(|s| s.id).collect();
    kept.sort_unstable();
    assert_eq!(kept, [ids[2], ids[3]]);
    assert_eq!(pool.counts(), (2, 2, 0));
    // Each stayed on its worker's list: worker 2 gets its own back without looking elsewhere.
    set_current(2);
    let c = pool.checkout().await.unwrap();
    assert_eq!(id(&c), ids[3]);
}

/// `n` checkouts held at once.
async fn futures_join(pool: &Pool, n: usize) -> Vec<Checkout> {
    let mut held = Vec::new();
    for _ in 0..n {
        held.push(pool.checkout().await.unwrap());
    }
    held
}

/// A multi-thread runtime whose `workers` threads number themselves 0, 1, … as lakepool's do.
fn numbered_runtime(workers: usize) -> tokio::runtime::Runtime {
    let numbered = Arc::new(AtomicUsize::new(0));
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .on_thread_start(move || set_current(numbered.fetch_add(1, Ordering::Relaxed)))
        .enable_all()
        .build()
        .unwrap()
}

/// Real threads on a runtime with four workers check out and release as fast as they can from
/// a pool of two connections, so the lock-free paths and the locked ones run at once: every
/// checkout succeeds, no connection is lost or replaced, and a deadlock between the pool lock
/// and the idle lists' locks fails the test at its time limit. (The exact interleavings a
/// check-in and a queueing client can take are forced one by one in `checkout.rs`'s tests; here
/// a missed hand-over would be rescued by the next check-in.)
#[test]
fn workers_releasing_and_queueing_at_once_lose_no_connection() {
    const WORKERS: usize = 4;
    const TASKS: usize = 8;
    const ROUNDS: usize = 2_000;
    set_count_for_this_thread(WORKERS);
    let rt = numbered_runtime(WORKERS);
    let (fake, pool) = rt.block_on(async {
        one_pool(PoolSettings {
            size: 2,
            query_wait_timeout: secs(20),
            ..settings()
        })
    });
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let failures = Arc::new(AtomicUsize::new(0));
    for _ in 0..TASKS {
        let (pool, failures, done) = (pool.clone(), Arc::clone(&failures), done_tx.clone());
        rt.spawn(async move {
            for n in 0..ROUNDS {
                match pool.checkout().await {
                    Ok(c) => {
                        if n % 7 == 0 {
                            tokio::task::yield_now().await;
                        }
                        c.release();
                    }
                    Err(e) => {
                        failures.fetch_add(1, Ordering::Relaxed);
                        eprintln!("checkout failed: {e}");
                    }
                }
            }
            let _ = done.send(());
        });
    }
    for _ in 0..TASKS {
        done_rx
            .recv_timeout(Duration::from_secs(120))
            .expect("every task finishes");
    }
    assert_eq!(failures.load(Ordering::Relaxed), 0);
    let (idle, total, waiting) = pool.counts();
    assert_eq!((idle, waiting), (total, 0), "every connection back idle");
    assert!((1..=2).contains(&total), "{total}");
    assert_eq!(
        fake.attempts(),
        total,
        "no connection was lost and replaced"
    );
}

/// Not a test: a benchmark of checkout + release on a pool of four connections, from one and
/// from two worker threads of a multi-thread runtime: warm (one task per thread, so a connection
/// is always idle) and saturated (16 tasks that hold their connection across a yield, so most
/// checkouts queue). Prints nanoseconds of wall time per checkout and release, all tasks
/// together. Two threads on one pool is where a
/// pool-wide lock and shared counters cost. Run by hand:
/// `cargo test --release --lib -- --ignored --nocapture checkout_release_rate`.
#[test]
#[ignore = "a benchmark, run by hand (benches/README.md)"]
fn checkout_release_rate() {
    const OPS: usize = 4_000_000;
    set_count_for_this_thread(2);
    for (threads, tasks) in [(1, 1), (2, 2), (2, 16)] {
        let rt = numbered_runtime(threads);
        let (_fake, pool) = rt.block_on(async {
            let (fake, pool) = one_pool(PoolSettings {
                size: 4,
                ..settings()
            });
            let warm = futures_join(&pool, 4).await;
            warm.into_iter().for_each(Checkout::release);
            (fake, pool)
        });
        let started = std::time::Instant::now();
        let handles: Vec<_> = (0..tasks)
            .map(|_| {
                let pool = pool.clone();
                rt.spawn(async move {
                    for _ in 0..OPS / tasks {
                        let c = pool.checkout().await.unwrap();
                        if tasks > threads {
                            tokio::task::yield_now().await;
                        }
                        // As the session releases: through its own handle of the pool.
                        c.release_to(&pool);
                    }
                })
            })
            .collect();
        rt.block_on(async {
            for h in handles {
                h.await.unwrap();
            }
        });
        let ns = started.elapsed().as_nanos() as f64 / OPS as f64;
        println!(
            "checkout_release_rate: {threads} thread(s), {tasks} task(s): {ns:.1} ns per checkout and release"
        );
    }
}
