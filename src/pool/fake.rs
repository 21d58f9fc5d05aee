//! A scripted stand-in for an upstream server, for the pools' unit tests.
//!
//! Each successful "login" is a real loopback TCP connection (a [`ServerConn`] needs a socket)
//! whose server end the fake keeps, so the connection stays quiet while idle until a test
//! drops that end. Sockets are made with blocking std calls, which complete at once on
//! loopback: nothing here awaits I/O, so a paused tokio clock cannot jump ahead meanwhile.
//! Failures are the errors the real connector returns for the same situations.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use parking_lot::Mutex;

use super::now;
use crate::net::Stream;
use crate::net::framed::FrameError;
use crate::upstream::connect::UpstreamError;
use crate::upstream::params::ParamMap;
use crate::upstream::server::ServerConn;

/// How one login attempt fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fail {
    /// TCP connection refused (nothing listening yet).
    Refused,
    /// The server closed the connection during login.
    Reset,
    /// No answer: the attempt runs into its time limit.
    Silent,
    /// `57P03` the database system is starting up.
    Starting,
    /// `XX000` from the proxy in front of a compute that is not up.
    ComputeUnreachable,
    /// `28P01` password authentication failed.
    PasswordRejected,
    /// The database does not exist (`3D000`): a configuration error, not a waking server.
    NoDatabase,
}

impl Fail {
    fn error(self) -> UpstreamError {
        let rejected = |code: &str, message: &str| UpstreamError::Rejected {
            code: code.to_owned(),
            message: message.to_owned(),
        };
        match self {
            Fail::Refused => UpstreamError::Connect {
                addr: "fake:5432".to_owned(),
                source: io::ErrorKind::ConnectionRefused.into(),
            },
            Fail::Reset => UpstreamError::Protocol(FrameError::Eof),
            Fail::Silent => UpstreamError::Timeout,
            Fail::Starting => rejected("57P03", "the database system is starting up"),
            Fail::ComputeUnreachable => rejected(
                "XX000",
                "Couldn't connect to compute node: connection refused",
            ),
            Fail::PasswordRejected => {
                rejected("28P01", "password authentication failed for user \"u\"")
            }
            Fail::NoDatabase => rejected("3D000", "database \"nope\" does not exist"),
        }
    }
}

/// A fake upstream: scripted failures, a refusal window, a login time, and the server ends
/// of the connections it accepted.
#[derive(Debug)]
pub(crate) struct FakeUpstream {
    listener: std::net::TcpListener,
    state: Mutex<FakeState>,
    /// The host every connection records, shared as a credential's is.
    host: Arc<str>,
}

#[derive(Debug, Default)]
struct FakeState {
    /// How the next attempts fail, in order; once empty, attempts succeed.
    script: VecDeque<Fail>,
    /// Attempts before this instant are refused (an endpoint waking from scale to zero).
    down_until: Option<Instant>,
    /// How long a login takes.
    login_time: Duration,
    /// Login attempts so far.
    attempts: usize,
    /// Server ends of the connections accepted, by connection id.
    peers: Vec<(u64, std::net::TcpStream)>,
}

impl FakeUpstream {
    /// A fake that accepts every login at once.
    pub(crate) fn new() -> Arc<Self> {
        let listener = match std::net::TcpListener::bind("127.0.0.1:0") {
            Ok(l) => l,
            Err(e) => panic!("fake upstream: bind: {e}"),
        };
        Arc::new(Self {
            listener,
            state: Mutex::new(FakeState::default()),
            host: Arc::from("fake"),
        })
    }

    /// The next attempts fail as listed, in order.
    pub(crate) fn fail_next(&self, fails: &[Fail]) {
        self.state.lock().script.extend(fails.iter().copied());
    }

    /// Attempts in the next `d` are refused (none after that).
    pub(crate) fn down_for(&self, d: Duration) {
        self.state.lock().down_until = Some(now() + d);
    }

    /// Every login takes `d`.
    pub(crate) fn set_login_time(&self, d: Duration) {
        self.state.lock().login_time = d;
    }

    /// Login attempts so far.
    pub(crate) fn attempts(&self) -> usize {
        self.state.lock().attempts
    }

    /// The server closes connection `id` (as if its backend was terminated).
    pub(crate) fn kill(&self, id: u64) {
        self.state.lock().peers.retain(|(i, _)| *i != id);
    }

    /// One login attempt, as [`crate::upstream::connect::connect_within`] makes it.
    pub(super) async fn connect(
        &self,
        id: u64,
        limit: Duration,
    ) -> Result<ServerConn, UpstreamError> {
        let (fail, login_time) = {
            let mut st = self.state.lock();
            st.attempts += 1;
            let refused = st.down_until.is_some_and(|t| now() < t);
            let fail = st.script.pop_front().or(refused.then_some(Fail::Refused));
            (fail, st.login_time)
        };
        let attempt = async {
            if !login_time.is_zero() {
                tokio::time::sleep(login_time).await;
            }
            match fail {
                Some(Fail::Silent) => std::future::pending().await,
                Some(f) => Err(f.error()),
                None => self.accept(id),
            }
        };
        tokio::time::timeout(limit, attempt)
            .await
            .unwrap_or(Err(UpstreamError::Timeout))
    }

    /// A logged-in connection over a fresh loopback socket.
    fn accept(&self, id: u64) -> Result<ServerConn, UpstreamError> {
        let io_err = |source: io::Error| UpstreamError::Connect {
            addr: "fake:5432".to_owned(),
            source,
        };
        let addr = self.listener.local_addr().map_err(io_err)?;
        let client = std::net::TcpStream::connect(addr).map_err(io_err)?;
        let (server, _) = self.listener.accept().map_err(io_err)?;
        client.set_nonblocking(true).map_err(io_err)?;
        let stream = tokio::net::TcpStream::from_std(client).map_err(io_err)?;
        self.state.lock().peers.push((id, server));
        let at = now();
        let mut conn = ServerConn::new(
            Stream::Plain(stream),
            BytesMut::new(),
            ParamMap::new(),
            (u32::try_from(id).unwrap_or(u32::MAX), 0),
            Arc::clone(&self.host),
            id,
        );
        // The pool's clock, which tests pause.
        conn.created = at;
        conn.last_used = at;
        Ok(conn)
    }
}
