//! The edge between typed errors and what a client sees.
//!
//! Every layer has its own `thiserror` enum; those a client may see implement [`ClientFacing`],
//! which gives the SQLSTATE and a message safe to show (no secrets, no internal detail).
//! [`ClientError::write`] is the one place an ErrorResponse is rendered from an error.

use bytes::BytesMut;

use crate::proto::sqlstate::SqlState;
use crate::proto::write::{self, Severity};

/// An error as a client will receive it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClientError {
    /// ERROR or FATAL.
    pub(crate) severity: Severity,
    /// SQLSTATE.
    pub(crate) code: SqlState,
    /// Primary message.
    pub(crate) message: String,
    /// Optional detail line.
    pub(crate) detail: Option<String>,
}

impl ClientError {
    /// A FATAL error: the connection closes after it.
    pub(crate) fn fatal(code: SqlState, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Fatal,
            code,
            message: message.into(),
            detail: None,
        }
    }

    /// Adds a detail line.
    /// An error that fails the current statement; the session goes on.
    pub(crate) fn error(code: SqlState, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            code,
            message: message.into(),
            detail: None,
        }
    }

    /// lakepool is draining: the client is told before its connection closes.
    pub(crate) fn shutting_down() -> Self {
        Self::fatal(SqlState::ADMIN_SHUTDOWN, "lakepool is shutting down")
    }

    /// `client_idle_timeout` ended an idle client.
    pub(crate) fn client_idle_timeout() -> Self {
        Self::fatal(
            SqlState::IDLE_SESSION_TIMEOUT,
            "client_idle_timeout: closing idle client connection",
        )
    }

    /// `idle_transaction_timeout` ended a client that held a server without moving.
    pub(crate) fn idle_transaction_timeout() -> Self {
        Self::fatal(
            SqlState::IDLE_IN_TRANSACTION_TIMEOUT,
            "idle_transaction_timeout: closing a client that held a server connection without sending or reading anything",
        )
    }

    /// The server connection broke under the client without saying why.
    pub(crate) fn server_connection_lost() -> Self {
        Self::fatal(
            SqlState::CONNECTION_FAILURE,
            "server connection lost: the server closed the connection unexpectedly",
        )
    }

    /// A framing error in what the client sent.
    pub(crate) fn protocol_violation(message: impl Into<String>) -> Self {
        Self::fatal(SqlState::PROTOCOL_VIOLATION, message)
    }

    /// Appends the ErrorResponse to `buf`.
    pub(crate) fn write(&self, buf: &mut BytesMut) {
        write::error_response(
            buf,
            self.severity,
            self.code,
            &self.message,
            self.detail.as_deref(),
            None,
        );
    }
}

/// Implemented by errors a client can be told about.
pub(crate) trait ClientFacing {
    /// The SQLSTATE to report.
    fn sqlstate(&self) -> SqlState;
    /// A message safe to show a client.
    fn client_message(&self) -> String;
    /// As a FATAL [`ClientError`].
    fn to_client_error(&self) -> ClientError {
        ClientError::fatal(self.sqlstate(), self.client_message())
    }
}
