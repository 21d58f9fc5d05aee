//! Scale to zero: connections to an endpoint that is waking up are retried with backoff
//! within the client's query_wait_timeout and never pause the pool; other login failures
//! are not retried and start server_login_retry.

use std::io;

use tokio::time::Instant as Clock;

use super::*;
use crate::error::ClientFacing;
use crate::net::framed::FrameError;
use crate::pool::fake::Fail;
use crate::pool::open::is_waking;
use crate::proto::sqlstate::SqlState;
use crate::upstream::connect::UpstreamError;

fn waking_settings() -> PoolSettings {
    PoolSettings {
        query_wait_timeout: secs(20),
        server_connect_timeout: secs(2),
        server_login_retry: secs(15),
        ..settings()
    }
}

#[tokio::test(start_paused = true)]
async fn clients_arriving_while_the_endpoint_wakes_all_get_a_connection() {
    let (fake, pool) = one_pool(PoolSettings {
        size: 2,
        ..waking_settings()
    });
    fake.down_for(secs(3));
    let started = Clock::now();
    let clients: Vec<_> = (0..5).map(|_| spawn_checkout(&pool)).collect();
    for c in clients {
        let c = joined(c).await;
        assert!(
            started.elapsed() >= secs(3),
            "not before the endpoint is up"
        );
        tokio::time::sleep(ms(10)).await;
        c.release();
    }
    assert!(fake.attempts() > 2, "retried: {}", fake.attempts());
    assert_eq!(pool.counts(), (2, 2, 0));
}

#[tokio::test(start_paused = true)]
async fn backoff_doubles_from_100_ms_up_to_1_s() {
    let (fake, pool) = one_pool(waking_settings());
    fake.down_for(secs(10));
    let started = Clock::now();
    let _c = pool.checkout().await.unwrap();
    // Attempts at 0, 0.1, 0.3, 0.7, 1.5, then every second: 2.5 … 9.5 refused, 10.5 in.
    assert_eq!(started.elapsed(), ms(10_500));
    assert_eq!(fake.attempts(), 14);
}

#[tokio::test(start_paused = true)]
async fn every_waking_failure_is_retried() {
    for fail in [
        Fail::Refused,
        Fail::Reset,
        Fail::Silent,
        Fail::Starting,
        Fail::ComputeUnreachable,
    ] {
        let (fake, pool) = one_pool(waking_settings());
        fake.fail_next(&[fail, fail]);
        let c = pool.checkout().await;
        assert!(c.is_ok(), "{fail:?}: {}", c.unwrap_err());
        assert_eq!(fake.attempts(), 3, "{fail:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_server_down_past_query_wait_timeout_fails_that_client_without_pausing_the_pool() {
    let (fake, pool) = one_pool(PoolSettings {
        query_wait_timeout: secs(5),
        ..waking_settings()
    });
    fake.down_for(secs(60));
    let started = Clock::now();
    let err = pool.checkout().await.unwrap_err();
    assert!(started.elapsed() <= secs(5), "within query_wait_timeout");
    assert!(
        matches!(&err, PoolError::Upstream(UpstreamError::Connect { .. })),
        "{err}"
    );
    assert_eq!(err.sqlstate(), SqlState::CONNECTION_FAILURE);
    assert_eq!(pool.counts(), (0, 0, 0), "the slot is freed");
    // No server_login_retry: once the endpoint is up, the next client connects at once.
    fake.down_for(Duration::ZERO);
    let attempts = fake.attempts();
    let _c = pool.checkout().await.unwrap();
    assert_eq!(fake.attempts(), attempts + 1);
}

#[tokio::test(start_paused = true)]
async fn a_retry_never_outlasts_the_clients_wait() {
    let (fake, pool) = one_pool(PoolSettings {
        query_wait_timeout: secs(3),
        server_connect_timeout: secs(15),
        ..waking_settings()
    });
    // Refused, then a server that never answers: the second attempt is cut at the deadline
    // instead of running for server_connect_timeout.
    fake.fail_next(&[Fail::Refused, Fail::Silent]);
    let started = Clock::now();
    let err = pool.checkout().await.unwrap_err();
    assert!(
        matches!(err, PoolError::Upstream(UpstreamError::Timeout)),
        "{err}"
    );
    assert_eq!(started.elapsed(), secs(3));
    assert_eq!(fake.attempts(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_rejected_password_is_not_retried_and_pauses_new_attempts() {
    let (fake, pool) = one_pool(waking_settings());
    fake.down_for(secs(1));
    fake.fail_next(&[Fail::PasswordRejected]);
    let started = Clock::now();
    let err = pool.checkout().await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::ZERO, "failed at once");
    assert!(
        matches!(&err, PoolError::Upstream(e) if e.is_auth_rejection()),
        "{err}"
    );
    assert_eq!(fake.attempts(), 1);
    let err = pool.checkout().await.unwrap_err();
    assert!(matches!(err, PoolError::LoginRetry { .. }), "{err}");
    assert_eq!(fake.attempts(), 1);
}

#[tokio::test(start_paused = true)]
async fn clients_queued_behind_a_waking_connection_are_served_in_order() {
    let (fake, pool) = one_pool(PoolSettings {
        size: 1,
        ..waking_settings()
    });
    fake.down_for(secs(2));
    let first = spawn_checkout(&pool);
    settle().await;
    let second = spawn_checkout(&pool);
    settle().await;
    assert_eq!(pool.counts(), (0, 1, 1));
    let first = joined(first).await;
    let first_id = id(&first);
    first.release();
    let second = joined(second).await;
    assert_eq!(id(&second), first_id, "the woken connection is passed on");
}

#[tokio::test(start_paused = true)]
async fn min_pool_size_failing_on_a_waking_endpoint_does_not_fail_clients() {
    let (fake, pool) = one_pool(PoolSettings {
        min_pool_size: 1,
        ..waking_settings()
    });
    fake.down_for(secs(2));
    pool.fill_to_min();
    settle().await;
    assert_eq!(fake.attempts(), 1, "one attempt per maintenance round");
    assert_eq!(pool.counts(), (0, 0, 0));
    let _c = pool.checkout().await.unwrap();
}

#[test]
fn waking_failures_are_told_apart_from_configuration_errors() {
    let io = |kind: io::ErrorKind| io::Error::from(kind);
    let connect = |kind| UpstreamError::Connect {
        addr: "h:5432".to_owned(),
        source: io(kind),
    };
    let tls = |kind| UpstreamError::Tls {
        addr: "h:5432".to_owned(),
        source: io(kind),
    };
    let rejected = |code: &str, message: &str| UpstreamError::Rejected {
        code: code.to_owned(),
        message: message.to_owned(),
    };
    for e in [
        connect(io::ErrorKind::ConnectionRefused),
        connect(io::ErrorKind::TimedOut),
        tls(io::ErrorKind::UnexpectedEof),
        tls(io::ErrorKind::ConnectionReset),
        UpstreamError::Protocol(FrameError::Eof),
        UpstreamError::Protocol(FrameError::Io(io(io::ErrorKind::ConnectionReset))),
        UpstreamError::Timeout,
        rejected(
            "57P03",
            "the database system is not yet accepting connections",
        ),
        rejected("XX000", "Couldn't connect to compute node"),
    ] {
        assert!(is_waking(&e), "{e}");
    }
    for e in [
        connect(io::ErrorKind::PermissionDenied),
        // A certificate problem is how rustls reports an untrusted server.
        tls(io::ErrorKind::InvalidData),
        UpstreamError::TlsRefused("h:5432".to_owned()),
        rejected("28P01", "password authentication failed for user \"u\""),
        rejected("3D000", "database \"x\" does not exist"),
        rejected("XX000", "internal error"),
        UpstreamError::Protocol(FrameError::Framing(
            crate::proto::frame::FrameError::BadLength { tag: 'R', len: 2 },
        )),
        UpstreamError::CredentialTimeout,
        UpstreamError::UnsupportedAuth(7),
    ] {
        assert!(!is_waking(&e), "{e}");
    }
}

#[tokio::test(start_paused = true)]
async fn closing_the_pool_ends_a_waking_retry() {
    let (fake, pool) = one_pool(waking_settings());
    fake.down_for(secs(60));
    let started = Clock::now();
    let waiting = spawn_checkout(&pool);
    tokio::time::sleep(secs(3)).await;
    pool.close();
    assert!(matches!(waiting.await.unwrap(), Err(PoolError::Closed)));
    assert!(started.elapsed() < secs(5), "stopped at the next attempt");
    assert_eq!(pool.counts(), (0, 0, 0));
}
