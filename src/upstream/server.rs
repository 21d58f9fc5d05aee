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
    pub(crate) stream: Stream,
    /// Read buffer for server→client traffic, kept with the connection so it is reused.
    pub(crate) buf: BytesMut,
    /// The values of the parameters the server reports (ParameterStatus), as it last did.
    pub(crate) params: ParamMap,
    /// What is set at session level on this connection (boxed: rarely touched, and the
    /// connection moves between the pool and sessions by value).
    pub(crate) session: Box<ServerSession>,
    /// The server's BackendKeyData (pid, secret), for cancel requests.
    pub(crate) key: (u32, u32),
    /// The host it is connected to (where its cancel requests go).
    pub(crate) host: std::sync::Arc<str>,
    /// Connection id, for logs.
    pub(crate) id: u64,
    /// When the connection was opened.
    pub(crate) created: Instant,
    /// When a client last released it.
    pub(crate) last_used: Instant,
    /// Named statements lakepool prepared on it (transaction mode).
    pub(crate) prepared: Box<super::prepared::PreparedCache>,
}

impl ServerConn {
    /// A connection that just logged in: `params` is what the server reported.
    pub(crate) fn new(
        stream: Stream,
        buf: BytesMut,
        params: ParamMap,
        key: (u32, u32),
        host: std::sync::Arc<str>,
        id: u64,
    ) -> Self {
        let now = Instant::now();
        let login_user = params
            .get(super::params::SESSION_AUTHORIZATION)
            .unwrap_or_default()
            .to_owned();
        Self {
            stream,
            buf,
            params,
            session: Box::new(ServerSession {
                settings: ParamMap::new(),
                login_user,
                in_sync: None,
            }),
            key,
            host,
            id,
            created: now,
            last_used: now,
            prepared: Default::default(),
        }
    }
}

/// Session-level state of a server connection.
#[derive(Debug, Default)]
pub(crate) struct ServerSession {
    /// Parameters set at session level (by lakepool for a client, or by a client as read back
    /// after its transaction): what the next client's checkout compares with its own.
    pub(crate) settings: ParamMap,
    /// The role lakepool logged in as (the session authorization a reset returns to).
    pub(crate) login_user: String,
    /// The last checkout's settings left nothing to set (see `SyncKey`).
    pub(crate) in_sync: Option<super::params::SyncKey>,
}

/// A DataRow's values as text (lossy for non-UTF-8), NULL as None.
fn parse_data_row(body: &[u8]) -> Vec<Option<String>> {
    let mut out = Vec::new();
    let Some(n) = body.get(..2) else {
        return out;
    };
    let mut rest = &body[2..];
    for _ in 0..u16::from_be_bytes([n[0], n[1]]) {
        let Some(len) = rest.get(..4) else {
            break;
        };
        let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
        rest = &rest[4..];
        if len < 0 {
            out.push(None);
            continue;
        }
        let len = (len as usize).min(rest.len());
        out.push(Some(String::from_utf8_lossy(&rest[..len]).into_owned()));
        rest = &rest[len..];
    }
    out
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
        self.control_exchange(sql, None).await
    }

    /// Like [`Self::run_control_query`], also returning every row of every result, values as
    /// text (NULL as None), for queries such as `SELECT current_setting(…)`.
    pub(crate) async fn control_query_rows(
        &mut self,
        sql: &str,
    ) -> Result<Vec<Vec<Option<String>>>, ControlError> {
        let mut rows = Vec::new();
        self.control_exchange(sql, Some(&mut rows)).await?;
        Ok(rows)
    }

    async fn control_exchange(
        &mut self,
        sql: &str,
        mut rows: Option<&mut Vec<Vec<Option<String>>>>,
    ) -> Result<u8, ControlError> {
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
                b'D' => {
                    if let Some(rows) = rows.as_mut() {
                        rows.push(parse_data_row(&body));
                    }
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
    pub(crate) async fn check(&mut self, query: &str, limit: std::time::Duration) -> bool {
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

    /// Forgets the session-level settings after a `DISCARD ALL` put them back to defaults.
    pub(crate) fn forget_session(&mut self) {
        self.session.settings = ParamMap::new();
    }

    /// Whether an idle connection may be handed to a client: nothing arrived while idle
    /// (no EOF, no unsolicited error), checked without a syscall in the common case.
    pub(crate) fn is_quiet(&self) -> bool {
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    /// A connection to a fake server that reads one message and answers with `reply`
    /// (nothing at all when None, like a host that vanished without a FIN).
    async fn conn_to_fake(reply: Option<&'static [u8]>) -> ServerConn {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = [0u8; 64];
            let _ = s.read(&mut buf).await;
            if let Some(r) = reply {
                s.write_all(r).await.unwrap();
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
        ServerConn::new(
            Stream::Plain(TcpStream::connect(addr).await.unwrap()),
            BytesMut::new(),
            ParamMap::new(),
            (0, 0),
            "127.0.0.1".into(),
            1,
        )
    }

    #[tokio::test]
    async fn health_check_passes_on_empty_query_answer() {
        // EmptyQueryResponse + ReadyForQuery(I).
        let mut c = conn_to_fake(Some(b"I\0\0\0\x04Z\0\0\0\x05I")).await;
        assert!(c.check("", Duration::from_secs(2)).await);
    }

    #[tokio::test]
    async fn health_check_fails_on_silence_and_inside_a_transaction() {
        let mut silent = conn_to_fake(None).await;
        assert!(!silent.check("", Duration::from_millis(200)).await);
        let mut in_tx = conn_to_fake(Some(b"I\0\0\0\x04Z\0\0\0\x05T")).await;
        assert!(!in_tx.check("", Duration::from_secs(2)).await);
    }
}
