//! Why getting a server connection (or admitting a client) failed, and what a client is told.

use std::sync::Arc;
use std::time::Duration;

use crate::error::ClientFacing;
use crate::proto::sqlstate::SqlState;
use crate::upstream::connect::UpstreamError;

/// Getting a server connection failed.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// No connection became available within query_wait_timeout.
    #[error("query_wait_timeout: no server connection became available within {0:?}")]
    WaitTimeout(Duration),
    /// Opening a new connection failed.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// A recent attempt to open a server connection failed; the pool waits server_login_retry
    /// before the next one.
    #[error(
        "{message}; lakepool will try to connect again in {:.1} s (server_login_retry)",
        .retry_in.as_secs_f64()
    )]
    LoginRetry {
        /// SQLSTATE of the original failure.
        code: SqlState,
        /// The original failure, as a client saw it.
        message: Arc<str>,
        /// Time left until the next attempt.
        retry_in: Duration,
    },
    /// max_db_client_connections or max_user_client_connections reached.
    #[error("too many client connections for {kind} \"{name}\" ({key})")]
    TooManyClients {
        /// `database` or `user`.
        kind: &'static str,
        /// Its name.
        name: String,
        /// The config key.
        key: &'static str,
    },
    /// The pool is shutting down or was replaced.
    #[error("the pool is closed")]
    Closed,
}

impl ClientFacing for PoolError {
    fn sqlstate(&self) -> SqlState {
        match self {
            PoolError::WaitTimeout(_) => SqlState::QUERY_CANCELED,
            PoolError::Upstream(e) => e.sqlstate(),
            PoolError::LoginRetry { code, .. } => *code,
            PoolError::TooManyClients { .. } => SqlState::TOO_MANY_CONNECTIONS,
            PoolError::Closed => SqlState::ADMIN_SHUTDOWN,
        }
    }

    fn client_message(&self) -> String {
        match self {
            PoolError::Upstream(e) => e.client_message(),
            other => other.to_string(),
        }
    }
}
