//! Opening server connections in slots already counted: login through the upstream, and
//! `server_login_retry` after a server refused or failed a login.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::accounting::Ledger;
use super::{Checkout, Pool, PoolError, State, now};
use crate::error::ClientFacing;
use crate::proto::sqlstate::SqlState;
use crate::upstream::server::ServerConn;

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

impl Pool {
    /// Opens a new connection in a slot already counted in `total`.
    pub(super) async fn open(&self) -> Result<Checkout, PoolError> {
        let conn = self.connect_in_slot().await?;
        Ok(self.wrap(conn))
    }

    /// Connects in a slot already counted; on failure frees the slot and, for a server
    /// failure, starts the server_login_retry pause.
    pub(super) async fn connect_in_slot(&self) -> Result<ServerConn, PoolError> {
        let shared = &self.shared;
        let id = shared.ids.fetch_add(1, Ordering::Relaxed);
        // Boxed: opening a connection is rare, and its large state would otherwise sit in
        // every session future for its whole life.
        let limit = shared.settings.server_connect_timeout;
        let connect = shared.connector.connect(&shared.upstream, id, limit);
        match Box::pin(connect).await {
            Ok(conn) => {
                shared.stats.servers_opened.fetch_add(1, Ordering::Relaxed);
                shared.params.store(Some(Arc::new(conn.params.clone())));
                Ledger::lock(shared).login_failure = None;
                tracing::debug!(server = id, database = %shared.database, "server connection opened");
                Ok(conn)
            }
            Err(e) => {
                let retry = shared.settings.server_login_retry;
                if e.is_server_failure() && !retry.is_zero() {
                    tracing::warn!(database = %shared.database, user = %shared.user, error = %e,
                        retry_in_s = retry.as_secs_f64(),
                        "server connection failed; new attempts paused (server_login_retry)");
                    Ledger::lock(shared).login_failure = Some(LoginFailure {
                        until: now() + retry,
                        code: e.sqlstate(),
                        message: e.client_message().into(),
                    });
                }
                Pool::slot_freed(shared);
                Err(e.into())
            }
        }
    }
}
