//! max_db_connections and max_user_connections across pools, and the client limits.

use super::*;
use crate::error::ClientFacing;
use crate::proto::sqlstate::SqlState;

/// Pools (db, u1) and (db, u2) of one database, or (d1, u) and (d2, u) of one user.
fn two_pools(
    settings: PoolSettings,
    same_database: bool,
) -> (Arc<FakeUpstream>, Registry, Pool, Pool) {
    let fake = FakeUpstream::new();
    let up = upstream();
    let reg = registry(
        &fake,
        vec![
            database("d1", &up, settings.clone()),
            database("d2", &up, settings),
        ],
    );
    let (a, b) = if same_database {
        (reg.current_pool("d1", "u1"), reg.current_pool("d1", "u2"))
    } else {
        (reg.current_pool("d1", "u"), reg.current_pool("d2", "u"))
    };
    (fake, reg, a.unwrap(), b.unwrap())
}

/// Pools (d1, u1) and (d1, u2) under `max_db_connections = 1`.
fn two_users_one_db_connection() -> (Arc<FakeUpstream>, Registry, Pool, Pool) {
    two_pools(
        PoolSettings {
            max_db_connections: 1,
            ..settings()
        },
        true,
    )
}

/// A checkout holds its pool only weakly (no reference taken per transaction): a pool dropped
/// while one of its connections is checked out gives that connection's room back to the
/// database at once, and the checkout, released later, closes its connection uncounted.
#[tokio::test(start_paused = true)]
async fn a_pool_dropped_under_a_checkout_gives_the_room_back() {
    let (fake, reg, u1, u2) = two_users_one_db_connection();
    let held = u1.checkout().await.unwrap();
    assert_eq!(reg.database_servers("d1"), 1);
    // The registry and the handle held the pool; the checkout does not keep it.
    drop(reg);
    drop(u1);
    let c = tokio::time::timeout(secs(1), u2.checkout())
        .await
        .expect("the database has room again")
        .unwrap();
    // Released after its pool is gone: closed, and not counted a second time.
    held.release();
    let waiting = spawn_checkout(&u2);
    settle().await;
    assert!(
        !waiting.is_finished(),
        "the database is full again: u2's one connection"
    );
    assert_eq!(u2.counts(), (0, 1, 1));
    c.release();
    let c = joined(waiting).await;
    assert_eq!(u2.counts(), (0, 1, 0));
    c.release();
    assert_eq!(fake.attempts(), 2);
}

/// `release_to` given another pool's handle still returns the connection to its own pool.
#[tokio::test(start_paused = true)]
async fn a_release_through_the_wrong_handle_goes_to_the_connections_pool() {
    let (_fake, _reg, u1, u2) = two_pools(settings(), true);
    u1.checkout().await.unwrap().release_to(&u2);
    assert_eq!(u1.counts(), (1, 1, 0));
    assert_eq!(u2.counts(), (0, 0, 0));
    u1.checkout().await.unwrap().release_to(&u1);
    assert_eq!(u1.counts(), (1, 1, 0));
}

#[tokio::test(start_paused = true)]
async fn max_db_connections_spans_users_and_a_release_hands_the_room_over() {
    let (fake, reg, u1, u2) = two_users_one_db_connection();
    let held = u1.checkout().await.unwrap();
    let waiting = spawn_checkout(&u2);
    settle().await;
    assert!(!waiting.is_finished(), "the database is full");
    assert_eq!(reg.database_servers("d1"), 1);
    assert_eq!(u2.counts(), (0, 0, 1));
    // Released to idle, then closed at once to make room for the other user's client.
    held.release();
    let c = joined(waiting).await;
    assert_eq!(u1.counts(), (0, 0, 0));
    assert_eq!(u2.counts(), (0, 1, 0));
    assert_eq!(reg.database_servers("d1"), 1);
    assert_eq!(fake.attempts(), 2);
    c.release();
}

#[tokio::test(start_paused = true)]
async fn max_user_connections_spans_databases_and_a_close_hands_the_room_over() {
    let (fake, reg, d1, d2) = two_pools(
        PoolSettings {
            max_user_connections: 1,
            ..settings()
        },
        false,
    );
    let held = d1.checkout().await.unwrap();
    let waiting = spawn_checkout(&d2);
    settle().await;
    assert!(!waiting.is_finished(), "the user is at its limit");
    held.close();
    let c = joined(waiting).await;
    assert_eq!(d1.counts(), (0, 0, 0));
    assert_eq!(d2.counts(), (0, 1, 0));
    assert_eq!(reg.database_servers("d1") + reg.database_servers("d2"), 1);
    assert_eq!(fake.attempts(), 2);
    drop(c);
    assert_eq!(
        reg.database_servers("d2"),
        0,
        "a dropped checkout is uncounted"
    );
}

#[tokio::test(start_paused = true)]
async fn an_idle_connection_of_another_pool_is_closed_for_a_blocked_client() {
    let (fake, reg, u1, u2) = two_pools(
        PoolSettings {
            max_db_connections: 2,
            ..settings()
        },
        true,
    );
    let a = u1.checkout().await.unwrap();
    let b = u1.checkout().await.unwrap();
    a.release();
    b.release();
    assert_eq!(u1.counts(), (2, 2, 0));
    // u2 finds the database full of u1's idle connections: one is closed for it.
    let c = u2.checkout().await.unwrap();
    assert_eq!(u1.counts(), (1, 1, 0));
    assert_eq!(reg.database_servers("d1"), 2);
    assert_eq!(fake.attempts(), 3);
    c.release();
}

#[tokio::test(start_paused = true)]
async fn a_blocked_waiter_still_times_out_when_no_room_comes() {
    let (_fake, _reg, u1, u2) = two_pools(
        PoolSettings {
            max_db_connections: 1,
            query_wait_timeout: secs(3),
            ..settings()
        },
        true,
    );
    let _held = u1.checkout().await.unwrap();
    let err = u2.checkout().await.unwrap_err();
    assert!(matches!(err, PoolError::WaitTimeout(_)), "{err}");
    // The maintenance round's relief finds nothing to do and breaks nothing.
    u2.relieve();
    assert_eq!(u2.counts(), (0, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn client_limits_count_per_database_and_per_user() {
    let (_fake, _reg, u1, u2) = two_pools(
        PoolSettings {
            max_db_client_connections: 2,
            max_user_client_connections: 1,
            ..settings()
        },
        true,
    );
    let first = u1.admit_client().unwrap();
    let err = u1.admit_client().unwrap_err();
    assert!(
        matches!(err, PoolError::TooManyClients { kind: "user", .. }),
        "{err}"
    );
    assert_eq!(err.sqlstate(), SqlState::TOO_MANY_CONNECTIONS);
    // Admitted: the refused client was uncounted, so the database has 2, not 3.
    let second = u2.admit_client().unwrap();
    drop(first);
    let third = u1.admit_client().unwrap();
    drop((second, third));
    let _again = u2.admit_client().unwrap();
}

#[tokio::test(start_paused = true)]
async fn max_db_client_connections_refuses_the_next_client() {
    let (_fake, _reg, u1, u2) = two_pools(
        PoolSettings {
            max_db_client_connections: 1,
            ..settings()
        },
        true,
    );
    let _first = u1.admit_client().unwrap();
    let err = u2.admit_client().unwrap_err();
    assert!(
        matches!(
            err,
            PoolError::TooManyClients {
                kind: "database",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.client_message().contains("max_db_client_connections"));
}
