//! The registry: pools created on first use, reload (kept and retired pools, counts carried
//! over) and PAUSE/RESUME by database.

use super::*;

#[tokio::test(start_paused = true)]
async fn reload_keeps_unchanged_pools_and_retires_changed_ones() {
    let fake = FakeUpstream::new();
    let up = upstream();
    let old = registry(
        &fake,
        vec![
            database("d1", &up, settings()),
            database("d2", &up, settings()),
        ],
    );
    let kept = old.current_pool("d1", "u").unwrap();
    let changed = old.current_pool("d2", "u").unwrap();
    assert!(
        kept.same_as(&old.current_pool("d1", "u").unwrap()),
        "one pool per key"
    );
    kept.checkout().await.unwrap().release();
    let busy = changed.checkout().await.unwrap();
    changed.checkout().await.unwrap().release();

    let new = Registry::reloaded(
        &old,
        vec![
            database("d1", &up, settings()),
            database(
                "d2",
                &up,
                PoolSettings {
                    size: 5,
                    ..settings()
                },
            ),
        ],
        HashMap::new(),
    );
    let now_d1 = new.current_pool("d1", "u").unwrap();
    assert!(
        now_d1.same_as(&kept),
        "unchanged: moved over with its connections"
    );
    assert_eq!(now_d1.counts(), (1, 1, 0));
    assert_eq!(new.database_servers("d1"), 1, "counts carried over");

    assert!(changed.is_retired());
    assert_eq!(changed.counts(), (0, 1, 0), "idle ones closed at once");
    let now_d2 = new.current_pool("d2", "u").unwrap();
    assert!(!now_d2.same_as(&changed) && !now_d2.is_retired());
    assert_eq!(now_d2.settings().size, 5);
    // A retired pool still serves what it has, and closes connections at release.
    busy.release();
    assert_eq!(changed.counts(), (0, 0, 0));
    assert_eq!(new.database_servers("d2"), 0);
    let _c = now_d2.checkout().await.unwrap();
    assert_eq!(new.database_servers("d2"), 1);
}

#[tokio::test(start_paused = true)]
async fn reload_with_a_new_upstream_retires_the_pool() {
    let fake = FakeUpstream::new();
    let old = registry(&fake, vec![database("d1", &upstream(), settings())]);
    let pool = old.current_pool("d1", "u").unwrap();
    let new = Registry::reloaded(
        &old,
        vec![database("d1", &upstream(), settings())],
        HashMap::new(),
    );
    assert!(pool.is_retired());
    assert!(!new.current_pool("d1", "u").unwrap().same_as(&pool));
    let gone = Registry::reloaded(&new, Vec::new(), HashMap::new());
    assert!(gone.current_pool("d1", "u").is_none(), "database removed");
}

#[tokio::test(start_paused = true)]
async fn pause_by_database_covers_later_pools_and_outlives_a_reload() {
    let fake = FakeUpstream::new();
    let up = upstream();
    let dbs = || {
        vec![
            database("d1", &up, settings()),
            database("d2", &up, settings()),
        ]
    };
    let reg = registry(&fake, dbs());
    let early = reg.current_pool("d1", "a").unwrap();
    let paused = reg.pause(Some("d1"));
    assert_eq!(paused.len(), 1);
    assert!(early.is_paused());
    assert!(
        reg.current_pool("d1", "b").unwrap().is_paused(),
        "created after PAUSE"
    );
    assert!(!reg.current_pool("d2", "a").unwrap().is_paused());

    let reg = Registry::reloaded(&reg, dbs(), HashMap::new());
    assert!(
        reg.current_pool("d1", "c").unwrap().is_paused(),
        "PAUSE outlives a reload"
    );
    // RESUME of another database leaves d1 paused; RESUME without a name resumes all.
    reg.resume(Some("d2"));
    assert!(early.is_paused());
    reg.resume(None);
    assert!(!early.is_paused());
    assert!(!reg.current_pool("d1", "d").unwrap().is_paused());
}

#[tokio::test(start_paused = true)]
async fn client_waiting_for_resume_in_a_retired_pool_goes_on() {
    let fake = FakeUpstream::new();
    let up = upstream();
    let reg = registry(&fake, vec![database("d1", &up, settings())]);
    let pool = reg.current_pool("d1", "u").unwrap();
    reg.pause(None);
    let waiting = spawn_checkout(&pool);
    settle().await;
    let new = Registry::reloaded(
        &reg,
        vec![database(
            "d1",
            &up,
            PoolSettings {
                size: 3,
                ..settings()
            },
        )],
        HashMap::new(),
    );
    // Its pool was replaced: the client is served once by the retired pool, whose
    // connection then closes at release; the new pool starts paused.
    let c = joined(waiting).await;
    c.release();
    assert_eq!(pool.counts(), (0, 0, 0));
    assert!(new.current_pool("d1", "u").unwrap().is_paused());
    assert_eq!(fake.attempts(), 1);
}
