//! A logged-in server connection and the small exchanges lakepool runs on it by itself
//! (parameter sync, reset, rollback) outside any client's traffic.

use std::time::Instant;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

use super::params::ParamMap;
use crate::net::framed::{FrameError, read_message};
use crate::net::stream::IdleState;
use crate::net::{Stream, buffer};
use crate::proto::backend::{ErrorFields, parse_error, parse_parameter_status};
use crate::proto::frontend;

/// Largest message accepted while lakepool itself talks to a server (login, SET, reset).
const MAX_CONTROL_MESSAGE: usize = 1 << 20;

/// One server connection, owned by the pool when idle and by one client session when in use.
#[derive(Debug)]
pub struct ServerConn {
    /// The socket.
    pub stream: Stream,
    /// Read buffer for server→client traffic, kept with the connection so it is reused.
    pub buf: BytesMut,
    /// Session parameters the server has, as far as lakepool knows.
    pub params: ParamMap,
    /// How many of `params` the server reported at login (the GUC_REPORT ones).
    pub reported: usize,
    /// The server's BackendKeyData (pid, secret), for cancel requests.
    pub key: (u32, u32),
    /// The host it is connected to (where its cancel requests go).
    pub host: std::sync::Arc<String>,
    /// Connection id, for logs.
    pub id: u64,
    /// When the connection was opened.
    pub created: Instant,
    /// When a client last released it.
    pub last_used: Instant,
}

/// A lakepool-initiated exchange with the server failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The server answered with an error; the connection is still usable.
    #[error("server error {}: {}", .0.code, .0.message)]
    Server(ErrorFields, BytesMut),
    /// The connection broke or spoke nonsense; it must be closed.
    #[error("server connection failed: {0}")]
    Broken(#[from] FrameError),
}

impl ServerConn {
    /// Runs a simple query lakepool needs (SET batch, reset, rollback) and waits for
    /// ReadyForQuery, recording ParameterStatus changes. Returns the transaction status byte.
    /// A server error is returned with the raw ErrorResponse message so it can be forwarded.
    pub async fn run_control_query(&mut self, sql: &str) -> Result<u8, ControlError> {
        let mut out = BytesMut::with_capacity(sql.len() + 6);
        frontend::query(&mut out, sql);
        self.stream.write_all(&out).await.map_err(FrameError::Io)?;
        let mut error = None;
        loop {
            let (tag, body) =
                read_message(&mut self.stream, &mut self.buf, MAX_CONTROL_MESSAGE).await?;
            match tag {
                b'S' => {
                    if let Some((k, v)) = parse_parameter_status(&body) {
                        self.params.set(k, v);
                    }
                }
                b'E' => {
                    let mut raw = BytesMut::with_capacity(body.len() + 5);
                    raw.extend_from_slice(b"E");
                    raw.extend_from_slice(
                        &u32::try_from(body.len() + 4)
                            .unwrap_or(u32::MAX)
                            .to_be_bytes(),
                    );
                    raw.extend_from_slice(&body);
                    error = Some((parse_error(&body), raw));
                }
                b'Z' => {
                    let status = body.first().copied().unwrap_or(b'I');
                    return match error {
                        Some((fields, raw)) => Err(ControlError::Server(fields, raw)),
                        None => Ok(status),
                    };
                }
                // CommandComplete, notices, empty query, NotificationResponse: nothing to track.
                _ => {}
            }
        }
    }

    /// Health check of a connection that sat idle a while (`server_check_query`; an empty
    /// query costs one round trip: EmptyQueryResponse + ReadyForQuery). False when the
    /// connection is broken, does not answer within `limit`, or is left inside a transaction;
    /// a server error for the query itself (a mistyped check query) still proves it alive.
    pub async fn check(&mut self, query: &str, limit: std::time::Duration) -> bool {
        match tokio::time::timeout(limit, self.run_control_query(query)).await {
            Ok(Ok(status)) => status == b'I',
            Ok(Err(ControlError::Server(fields, _))) => {
                tracing::warn!(server = self.id, code = %fields.code, error = %fields.message,
                    "server_check_query failed (the connection is alive)");
                true
            }
            Ok(Err(ControlError::Broken(_))) | Err(_) => false,
        }
    }

    /// Forgets settings lakepool applied that the server does not report, after a reset
    /// (DISCARD ALL / RESET ALL) put them back to defaults.
    pub fn forget_unreported(&mut self) {
        self.params.truncate(self.reported);
    }

    /// Whether an idle connection may be handed to a client: nothing arrived while idle
    /// (no EOF, no unsolicited error), checked without a syscall in the common case.
    pub fn is_quiet(&self) -> bool {
        self.stream.idle_state() == IdleState::Quiet
    }

    /// Sends Terminate and closes, best effort.
    pub async fn terminate(mut self) {
        let mut out = BytesMut::with_capacity(5);
        frontend::terminate(&mut out);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
            let _ = self.stream.write_all(&out).await;
            let _ = self.stream.shutdown().await;
        })
        .await;
        buffer::give(std::mem::take(&mut self.buf));
    }
}
