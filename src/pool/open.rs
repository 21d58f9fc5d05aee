//! Opening server connections in slots already counted: login through the pool's connector,
//! retries while an endpoint wakes up, and `server_login_retry` after a server refused a
//! login.
//!
//! Lakebase Autoscaling suspends an idle compute (scale to zero) and wakes it when a
//! connection arrives, "within a few hundred milliseconds" (docs.databricks.com
//! oltp/projects/scale-to-zero); meanwhile connections are refused, dropped or time out, or
//! the proxy in front answers "Couldn't connect to compute node" (Neon's proxy wording,
//! neondatabase/neon `proxy/src/compute.rs`) and PostgreSQL itself "the database system is
//! starting up" (57P03). Such a failure is retried with capped exponential backoff for as long
//! as the client that needs the connection would wait anyway (its query_wait_timeout), and
//! never pauses the pool. Any other server failure (a rejected password after the
//! credential's one refresh, an unknown database, a TLS certificate problem) pauses new
//! attempts for server_login_retry, as before.

use std::io::ErrorKind;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::accounting::Ledger;
use super::{Checkout, Pool, PoolError, PooledConn, State, now};
use crate::error::ClientFacing;
use crate::net::framed::FrameError;
use crate::proto::sqlstate::SqlState;
use crate::upstream::connect::UpstreamError;
use crate::upstream::reported::ReportedParams;
use crate::upstream::server::ServerConn;

/// Wait before the second attempt at a waking endpoint; doubled after each failure.
const WAKE_FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait between attempts at a waking endpoint.
const WAKE_MAX_BACKOFF: Duration = Duration::from_secs(1);
/// SQLSTATE `57P03` cannot_connect_now: "the database system is starting up".
const CANNOT_CONNECT_NOW: &str = "57P03";

/// The last failed attempt to open a server connection, while server_login_retry runs.
pub(super) struct LoginFailure {
    until: Instant,
    code: SqlState,
    message: Arc<str>,
}

impl State {
    /// The error for a client needing a new connection while server_login_retry runs.
    pub(super) fn retry_pending(&self, now: Instant) -> Option<PoolError> {
        let f = self.login_failure.as_ref()?;
        (f.until > now).then(|| PoolError::LoginRetry {
            code: f.code,
            message: Arc::clone(&f.message),
            retry_in: f.until - now,
        })
    }
}

/// Whether `e` is how a server that is not up yet fails a login: nothing listening, the
/// connection dropped or reset during login or the TLS handshake, no answer in time, or the
/// server or its proxy saying it is starting. Errors not listed (including any added later)
/// are not retried.
pub(super) fn is_waking(e: &UpstreamError) -> bool {
    let dropped = |kind: ErrorKind| {
        matches!(
            kind,
            ErrorKind::ConnectionRefused
                | ErrorKind::ConnectionReset
                | ErrorKind::ConnectionAborted
                | ErrorKind::BrokenPipe
                | ErrorKind::UnexpectedEof
                | ErrorKind::TimedOut
                | ErrorKind::HostUnreachable
        )
    };
    match e {
        UpstreamError::Connect { source, .. } | UpstreamError::Tls { source, .. } => {
            dropped(source.kind())
        }
        UpstreamError::Protocol(FrameError::Eof) | UpstreamError::Timeout => true,
        UpstreamError::Protocol(FrameError::Io(source)) => dropped(source.kind()),
        UpstreamError::Rejected { code, message } => {
            code == CANNOT_CONNECT_NOW || message.contains("Couldn't connect to compute node")
        }
        _ => false,
    }
}

impl Pool {
    /// Opens a new connection in a slot already counted in `total`, for a client that waits
    /// until `deadline` at most.
    pub(super) async fn open(&self, deadline: Instant) -> Result<Checkout, PoolError> {
        // Boxed: opening a connection is rare, and its large state (login, retries) would
        // otherwise sit in every session future for its whole life.
        let conn = Box::pin(self.connect_in_slot(Some(deadline))).await?;
        Ok(self.wrap(conn))
    }

    /// Connects in a slot already counted. While the endpoint looks like it is waking up,
    /// tries again with backoff until `deadline` (once when there is none: no client waits).
    /// On failure frees the slot and, for a server failure other than waking, starts the
    /// server_login_retry pause.
    pub(super) async fn connect_in_slot(
        &self,
        deadline: Option<Instant>,
    ) -> Result<PooledConn, PoolError> {
        let shared = &self.shared;
        let s = &shared.settings;
        let id = shared.ids.fetch_add(1, Ordering::Relaxed);
        let mut limit = s.server_connect_timeout;
        let mut backoff = WAKE_FIRST_BACKOFF;
        let mut attempts = 1u32;
        loop {
            let e = match shared.connector.connect(&shared.upstream, id, limit).await {
                Ok(conn) => return Ok(self.opened(conn)),
                Err(e) => e,
            };
            let retry_at = now() + backoff;
            match deadline {
                Some(d) if retry_at < d && is_waking(&e) => {
                    if attempts == 1 {
                        tracing::info!(database = %shared.database, user = %shared.user,
                            error = %e, "server not accepting connections yet (endpoint \
                            waking up?); retrying within query_wait_timeout");
                    } else {
                        tracing::debug!(database = %shared.database, error = %e, attempts,
                            "server still not accepting connections");
                    }
                    tokio::time::sleep(backoff).await;
                    if shared.is_closed() {
                        // Shutting down: the client is told so rather than kept waiting.
                        Pool::slot_freed(shared);
                        return Err(PoolError::Closed);
                    }
                    backoff = (backoff * 2).min(WAKE_MAX_BACKOFF);
                    // A retry never outlasts the client's wait.
                    limit = s
                        .server_connect_timeout
                        .min(d.saturating_duration_since(now()));
                    attempts += 1;
                }
                _ => return Err(self.failed(e, attempts)),
            }
        }
    }

    /// Bookkeeping for a connection just opened.
    fn opened(&self, conn: ServerConn) -> PooledConn {
        let shared = &self.shared;
        shared
            .stats
            .local()
            .servers_opened
            .fetch_add(1, Ordering::Relaxed);
        shared
            .params
            .store(Some(Arc::new(ReportedParams::new(conn.params.clone()))));
        Ledger::lock(shared).login_failure = None;
        tracing::debug!(server = conn.id, database = %shared.database, "server connection opened");
        Box::new(super::Pooled {
            conn,
            pool: Arc::downgrade(shared),
        })
    }

    /// Bookkeeping for a connection that could not be opened: frees its slot and, for a
    /// server failure other than a waking endpoint, starts server_login_retry.
    fn failed(&self, e: UpstreamError, attempts: u32) -> PoolError {
        let shared = &self.shared;
        shared.stats.record_connect_failure();
        let retry = shared.settings.server_login_retry;
        if is_waking(&e) {
            // Every failed upstream connection is the operator's problem: WARN.
            tracing::warn!(database = %shared.database, user = %shared.user, error = %e,
                attempts, "server did not accept a connection within query_wait_timeout");
        } else if e.is_server_failure() && !retry.is_zero() {
            tracing::warn!(database = %shared.database, user = %shared.user, error = %e,
                retry_in_s = retry.as_secs_f64(),
                "server connection failed; new attempts paused (server_login_retry)");
            Ledger::lock(shared).login_failure = Some(LoginFailure {
                until: now() + retry,
                code: e.sqlstate(),
                message: e.client_message().into(),
            });
        } else {
            tracing::warn!(database = %shared.database, user = %shared.user, error = %e,
                "server connection failed");
        }
        Pool::slot_freed(shared);
        e.into()
    }
}
