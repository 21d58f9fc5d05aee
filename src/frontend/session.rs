//! A client session after login: the loop that gets a server connection, forwards traffic, and
//! gives the server back (at each transaction end in transaction mode, at disconnect in
//! session mode), plus the clean-up of servers a client left in an unknown state.

use std::future::{Future, poll_fn};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use super::client_path::{self, ClientPath};
use super::login::{LoggedIn, SessionInfo, settings_in_sync, sync_settings};
use super::pipe::Pipe;
use super::pump::{Core, IdleLimits, Pump, PumpEnd, TxnPart, Wait};
use super::txn::Attached;
use super::txn::client::request_ready;
use super::txn::parked::{TxnSession, park, txn_limits, unpark};
use super::txn::replies::ReplyQueue;
use super::txn::state::follow_changes;
use crate::config::PoolMode;
use crate::error::{ClientError, ClientFacing};
use crate::logsafe::LogSafe;
use crate::net::{ReadArmed, Stream};
use crate::pool::stats::PoolStats;
use crate::pool::{Checkout, Pool};
use crate::proto::sqlstate::SqlState;
use crate::shared::clients::{ClientHandle, ClientState};
use crate::shared::ends::EndReason;
use crate::shared::{Shared, send_error_and_close};

/// Longest lakepool spends rolling back or resetting a server a client left behind.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves a logged-in client of a pool until it leaves.
///
/// A plain fn returning the future: an idle client's whole state is its task's future, so the
/// session is built before it (its parts are not kept next to it) and the future holds only the
/// session and the wait for the next request (the transaction part is boxed inside, for its
/// length only).
pub(crate) fn serve(fe: &Shared, logged: Box<LoggedIn>) -> impl Future<Output = ()> + Send + '_ {
    let mut session = Session::start(fe, logged);
    async move {
        // No value kept across the awaits below (a match on `server.take()` would keep the
        // scrutinee in every idle client's task).
        let end = if session.info.server.is_some() {
            // Boxed: only session-mode clients pay for its state.
            Box::pin(session.serve_session()).await
        } else {
            // The loop is here, not in a method: an awaited `&mut self` method keeps its
            // receiver twice in the task's state.
            loop {
                if let Err(end) = session.next_request().await {
                    break end;
                }
                // Boxed: an idle client's task then holds only what waiting for a request
                // needs (the checkout, data path and follow-up states live for the
                // transaction only).
                if let Some(end) = Box::pin(session.transaction()).await {
                    break end;
                }
            }
        };
        session.fe.ends.record(end.reason());
        tracing::info!(client = %session.entry.addr(), user = %LogSafe(&session.info.user),
            database = %LogSafe(&session.info.database), reason = %end, "client disconnected");
    }
}

/// Why a session ended.
#[derive(Debug)]
pub(crate) enum SessionEnd {
    /// The forwarding run ended.
    Pump(PumpEnd),
    /// The client sent Terminate while it held no server.
    Terminated,
    /// The client closed its socket while it held no server.
    Closed,
    /// The client socket failed while it held no server.
    Io(std::io::Error),
    /// lakepool told the client why it ends the session (the error's message).
    Told(ClientError),
}

impl SessionEnd {
    /// Why, for `/metrics`.
    pub(crate) fn reason(&self) -> EndReason {
        match self {
            SessionEnd::Pump(e) => e.reason(),
            SessionEnd::Terminated => EndReason::ClientTerminated,
            SessionEnd::Closed => EndReason::ClientClosed,
            SessionEnd::Io(_) => EndReason::ClientIo,
            SessionEnd::Told(e) => match e.code {
                SqlState::ADMIN_SHUTDOWN => EndReason::Shutdown,
                SqlState::IDLE_SESSION_TIMEOUT => EndReason::ClientIdleTimeout,
                SqlState::IDLE_IN_TRANSACTION_TIMEOUT => EndReason::IdleTransactionTimeout,
                SqlState::PROTOCOL_VIOLATION => EndReason::ClientProtocol,
                SqlState::CONNECTION_FAILURE => EndReason::Server,
                _ => EndReason::Error,
            },
        }
    }
}

impl std::fmt::Display for SessionEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionEnd::Pump(e) => e.fmt(f),
            SessionEnd::Terminated => f.write_str("client terminated"),
            SessionEnd::Closed => f.write_str("client closed the connection"),
            SessionEnd::Io(e) => write!(f, "client I/O error: {e}"),
            SessionEnd::Told(e) => write!(f, "{} ({})", e.message, e.code),
        }
    }
}

/// What ended a wait for the client's next request.
enum Woke {
    /// Bytes read from the client (0: it closed), or a socket error.
    Client(std::io::Result<usize>),
    /// lakepool is shutting down.
    Shutdown,
    /// The client kept lakepool waiting past its limit.
    Expired,
}

/// One logged-in client.
struct Session<'a> {
    fe: &'a Shared,
    client: Stream,
    info: SessionInfo,
    /// The client's pipe and protocol state, while it sends a request or holds a server;
    /// parked (per thread) while a transaction-mode client is idle with nothing in it.
    path: Option<Box<ClientPath>>,
    limits: IdleLimits,
    transaction_mode: bool,
    /// The last forwarding run's last read of the client said Pending: its waker is still
    /// registered, and the wait for the next request need not register it again (see
    /// [`ReadArmed`]).
    client_read_armed: bool,
    /// Transaction mode: the client's state, while it holds anything or a request is under
    /// way; parked (per thread) while the client is idle with nothing in it.
    txn: Option<Box<TxnSession>>,
    /// This client's entry in the client list (state for SHOW CLIENTS / POOLS).
    entry: ClientHandle,
}

impl<'a> Session<'a> {
    /// A session for a client that just logged in, registered in the client list.
    fn start(fe: &'a Shared, logged: Box<LoggedIn>) -> Self {
        let LoggedIn {
            stream,
            session,
            leftover,
            peer,
        } = *logged;
        tracing::info!(client = %peer, user = %LogSafe(&session.user),
            database = %LogSafe(&session.database), tls = stream.is_tls(), "client logged in");
        let entry = fe.sessions.register(
            Arc::clone(&session.user),
            Arc::clone(&session.database),
            peer,
            stream.is_tls(),
        );
        Self::new(fe, stream, session, &leftover, entry)
    }

    fn new(
        fe: &'a Shared,
        client: Stream,
        info: SessionInfo,
        leftover: &[u8],
        entry: ClientHandle,
    ) -> Self {
        let path = (!leftover.is_empty()).then(|| {
            let mut p = client_path::take(info.pool.stats());
            p.up = Pipe::with_input(leftover);
            p
        });
        let s = info.pool.settings();
        let limits = IdleLimits::new(s.idle_transaction_timeout, s.client_idle_timeout);
        let transaction_mode = s.mode == PoolMode::Transaction;
        Self {
            fe,
            client,
            info,
            path,
            limits,
            transaction_mode,
            client_read_armed: false,
            txn: None,
            entry,
        }
    }

    /// Session mode: the server checked out at login serves the client until it leaves.
    async fn serve_session(&mut self) -> SessionEnd {
        let Some(mut server) = self.info.server.take().map(|s| *s) else {
            // Not reached: `serve` calls this only when the login checked a server out.
            return self
                .tell(ClientError::fatal(
                    SqlState::INTERNAL_ERROR,
                    "no server for the session",
                ))
                .await;
        };
        self.entry.set(ClientState::Active);
        let conn = server.conn_ref();
        self.info.cancel.slot.attach(conn.key, &conn.host);
        let end = self.forward(&mut server).await;
        self.info.cancel.slot.detach().await;
        if matches!(end, PumpEnd::Idle) {
            // Session mode stops at an idle point only when lakepool shuts down: the server
            // is reset off the client's path, the client told why it goes.
            tokio::spawn(cleanup(
                self.info.pool.clone(),
                server,
                self.left_state(),
                self.reset_query(),
            ));
            return self.tell(ClientError::shutting_down()).await;
        }
        Box::pin(self.finish(server, end)).await
    }

    /// One request's server: checkout, forwarding until the server is idle, the follow-up,
    /// release. Some(end) when the session ends.
    async fn transaction(&mut self) -> Option<SessionEnd> {
        // One clock read for the request's start, its wait for a server and its checkout.
        // Query time counts from the request, waiting for a server included.
        let started = crate::pool::now();
        if let Some(p) = self.path.as_mut() {
            p.tracker.clock.request_at(started);
        }
        self.entry.set_waiting_since(started);
        let mut server = match self.checkout(started).await {
            Ok(s) => s,
            Err(e) => {
                self.info
                    .pool
                    .stats()
                    .record_error(e.code.as_str().as_bytes());
                tracing::warn!(user = %self.info.user, database = %self.info.database,
                    code = %e.code, error = %e.message, "no server connection for client");
                return Some(self.tell(e).await);
            }
        };
        self.entry.set(ClientState::Active);
        let conn = server.conn_ref();
        self.info.cancel.slot.attach(conn.key, &conn.host);
        let end = self.forward(&mut server).await;
        self.info.cancel.slot.detach().await;
        if !matches!(end, PumpEnd::Idle) {
            // Boxed: the session ends here (rare); its state would be in every transaction's.
            return Some(Box::pin(self.finish(server, end)).await);
        }
        // Replies owed unknown (a COPY with Syncs sent during it failed): a stray
        // ReadyForQuery must not reach another client.
        let uncertain = self
            .path
            .as_mut()
            .is_some_and(|p| p.tracker.take_uncertain());
        // Taken on both branches: a path parked with it would not equal a new one.
        let settled_at = self
            .path
            .as_mut()
            .and_then(|p| p.tracker.clock.take_settled_at());
        if !self.follow_up(&mut server).await || uncertain {
            server.close();
        } else {
            // Last used when its last reply came (no clock read when the tracker has it): a
            // follow-up's round trip or a client slow to read the reply is not counted, so
            // server_check_delay errs toward one more check, and a server past its lifetime
            // by that much is closed at its next checkout instead.
            let used = settled_at.unwrap_or_else(crate::pool::now);
            server.release_to_at(&self.info.pool, used);
        }
        self.entry.set(ClientState::Idle);
        if self.client.can_wait_without_buffer()
            && let Some(p) = self.path.as_mut()
        {
            // Idle clients hold no buffer.
            p.up.release_buffers();
        }
        None
    }

    /// After a transaction: what the client changed in the session is read back and what
    /// cannot follow it undone. False when the server's state is unknown (it must be closed).
    async fn follow_up(&mut self, server: &mut Checkout) -> bool {
        let Some(t) = self.txn.as_mut() else {
            return true;
        };
        t.client.detached();
        if !t.client.needs_follow_up() {
            return true;
        }
        let conn = server.conn();
        match Box::pin(follow_changes(
            conn,
            &mut t.client.changes,
            &mut self.info.settings,
        ))
        .await
        {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(error = %e, "reading back session settings failed; closing the server");
                false
            }
        }
    }

    /// Transaction mode, no server held: waits until the client's next request is ready to
    /// go (a whole message, or one that must stream), answering what needs no server. A client
    /// that stops half-way through a message never gets a server, and is cut off after
    /// `idle_transaction_timeout`; an idle one after `client_idle_timeout`.
    async fn next_request(&mut self) -> Result<(), SessionEnd> {
        if !self.transaction_mode {
            return Ok(());
        }
        loop {
            let (pool, server) = (&self.info.pool, &self.fe.server);
            let t = self
                .txn
                .get_or_insert_with(|| unpark(txn_limits(pool.settings(), server)));
            let p = client_path::get(&mut self.path, pool.stats());
            match request_ready(&mut p.up, &t.limits) {
                Ok(true) => {
                    if p.up.unread().first() == Some(&b'X') {
                        return Err(SessionEnd::Terminated);
                    }
                    let registry = self.info.pool.statements();
                    let stats = Some(&**self.info.pool.stats());
                    let Some(reply) = t
                        .client
                        .answer_without_server(&mut p.up, &t.limits, registry, stats)
                    else {
                        // The request's clock starts in `transaction`.
                        return Ok(());
                    };
                    // Boxed, with the reply: rare, and its state would otherwise be part of
                    // every idle client's.
                    let client = &mut self.client;
                    let sent = Box::pin(async move {
                        client.write_all(&reply).await?;
                        client.flush().await
                    });
                    if let Err(e) = sent.await {
                        return Err(SessionEnd::Io(e));
                    }
                    self.limits.progress();
                    continue;
                }
                Ok(false) => {}
                Err(e) => {
                    let err = ClientError::protocol_violation(e.to_string());
                    return Err(Box::pin(self.tell(err)).await);
                }
            }
            let wait = if p.up.is_empty() {
                Wait::Idle
            } else {
                Wait::Stalled
            };
            // One combined poll instead of `select!` over futures: this is where an idle
            // client's task sleeps, and the stored futures would be part of every idle
            // client's memory. Only the shutdown future is kept (it must be registered).
            let idle = wait == Wait::Idle && self.client.can_wait_without_buffer();
            if idle {
                // Idle with nothing in its state: the client holds none while it waits (and no
                // buffer, after a request answered without a server).
                if let Some(p) = self.path.as_mut() {
                    p.up.release_buffers();
                }
                self.park_txn();
                client_path::park(&mut self.path);
            }
            let (path, client, limits) = (&mut self.path, &mut self.client, &mut self.limits);
            let stats = self.info.pool.stats();
            let armed = std::mem::take(&mut self.client_read_armed);
            let woke = wait_for_client(
                &self.entry,
                path,
                stats,
                (client, armed),
                limits,
                wait,
                idle,
            )
            .await;
            let n = match woke {
                Woke::Client(Ok(n)) => n,
                Woke::Client(Err(e)) => return Err(SessionEnd::Io(e)),
                Woke::Shutdown => {
                    return Err(Box::pin(self.tell(ClientError::shutting_down())).await);
                }
                Woke::Expired => {
                    let err = match wait {
                        Wait::Idle => ClientError::client_idle_timeout(),
                        _ => ClientError::idle_transaction_timeout(),
                    };
                    return Err(Box::pin(self.tell(err)).await);
                }
            };
            if n == 0 {
                return Err(SessionEnd::Closed);
            }
            self.limits.progress();
            self.info
                .pool
                .stats()
                .local()
                .received
                .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Parks the transaction-mode state when it holds nothing (it equals a new one then).
    fn park_txn(&mut self) {
        if self.txn.as_ref().is_some_and(|t| t.is_pristine())
            && let Some(t) = self.txn.take()
        {
            park(t);
        }
    }

    /// Sends `err` to the client and closes its connection.
    async fn tell(&mut self, err: ClientError) -> SessionEnd {
        Box::pin(send_error_and_close(&mut self.client, &err)).await;
        SessionEnd::Told(err)
    }

    /// Gets a server and brings its session settings in line with the client's.
    async fn checkout(&mut self, started: std::time::Instant) -> Result<Checkout, ClientError> {
        if self.info.pool.is_retired() {
            // A reload replaced the pool: move to the current one (same database and user),
            // unless the database is gone, in which case the old pool serves until we leave.
            let live = self.fe.live();
            if let Some(p) = live
                .registry
                .current_pool(&self.info.database, &self.info.user)
            {
                self.info.pool = p;
                if let Some(path) = self.path.as_mut() {
                    path.tracker.stats = Some(Arc::clone(self.info.pool.stats()));
                }
            }
        }
        let mut server = self
            .info
            .pool
            .checkout_at(started)
            .await
            .map_err(|e| e.to_client_error())?;
        if !settings_in_sync(&mut server, &self.info.settings) {
            // Boxed: settings rarely differ, and the exchange's state is large.
            Box::pin(sync_settings(
                &mut server,
                &mut self.info.settings,
                self.info.pool.spellings(),
            ))
            .await?;
        }
        Ok(server)
    }

    /// Runs the data path with `server` until the pump stops.
    async fn forward(&mut self, server: &mut Checkout) -> PumpEnd {
        let registry = self.info.pool.statements();
        let path = client_path::get(&mut self.path, self.info.pool.stats());
        let conn = server.conn();
        let mut down = Pipe::over(std::mem::take(&mut conn.buf));
        let txn = self.txn.as_mut().map(|t| TxnPart {
            client: &mut t.client,
            at: Attached {
                queue: &mut t.queue,
                cache: &mut conn.prepared,
                registry,
                limits: &t.limits,
            },
        });
        let core = Core {
            up: &mut path.up,
            down: &mut down,
            tracker: &mut path.tracker,
            server_params: &mut conn.params,
            release_when_idle: self.transaction_mode,
            txn,
            limits: &mut self.limits,
            max_message: self.fe.server.max_message_size,
            terminated: false,
            client_moved: false,
        };
        let mut pump = Pump::new(&mut self.client, &mut conn.stream, core);
        let end = pump.run_until_shutdown(&self.entry).await;
        let armed = pump.client_read_armed();
        self.client_read_armed = armed;
        if !down.is_empty() {
            // Server bytes this client never received (it left or failed mid-write): the
            // server's state is unknown and it must not serve anyone else.
            path.tracker.undelivered = true;
        }
        let queue_owed = self.txn.as_ref().is_some_and(|t| !t.queue.is_empty());
        if queue_owed {
            path.tracker.undelivered = true;
        }
        if !matches!(end, PumpEnd::Idle)
            && let Some(t) = self.txn.as_mut()
        {
            t.queue = ReplyQueue::default();
        }
        let mut buf = down.into_buffer();
        buf.clear();
        conn.buf = buf;
        end
    }

    /// What this client leaves its server in.
    fn left_state(&self) -> LeftState {
        // No path: the client held nothing (a parked path is a pristine one).
        let (quiescent, status) = self.path.as_ref().map_or((true, b'I'), |p| {
            let t = &p.tracker;
            let quiescent = t.pending == 0
                && !t.unsynced
                && !t.undelivered
                && !t.copy_in
                && !p.up.is_streaming();
            (quiescent, t.status)
        });
        LeftState {
            quiescent,
            status,
            // A ROLLBACK does not undo a committed SET: changes not read back close the server.
            settings_unknown: self
                .txn
                .as_ref()
                .is_some_and(|t| t.client.needs_follow_up()),
        }
    }

    /// The reset a session-mode server gets before its next client.
    fn reset_query(&self) -> Option<String> {
        let s = self.info.pool.settings();
        (s.mode == PoolMode::Session).then(|| s.server_reset_query.clone())
    }

    /// Ends the session: tells the client why when it is still there, and cleans the server up
    /// off the client's path.
    async fn finish(&mut self, server: Checkout, end: PumpEnd) -> SessionEnd {
        match end {
            PumpEnd::IdleInTransaction | PumpEnd::ClientIdle => {
                let err = match end {
                    PumpEnd::IdleInTransaction => ClientError::idle_transaction_timeout(),
                    _ => ClientError::client_idle_timeout(),
                };
                Box::pin(send_error_and_close(&mut self.client, &err)).await;
                // Not a broken server: roll back the open transaction and reuse it.
                tokio::spawn(cleanup(
                    self.info.pool.clone(),
                    server,
                    self.left_state(),
                    self.reset_query(),
                ));
            }
            PumpEnd::ClientProtocol(ref e) => {
                let err = ClientError::protocol_violation(e.to_string());
                Box::pin(send_error_and_close(&mut self.client, &err)).await;
                server.close();
            }
            PumpEnd::ServerClosed | PumpEnd::ServerIo(_) | PumpEnd::ServerProtocol(_) => {
                if self.path.as_ref().is_some_and(|p| p.tracker.server_fatal) {
                    // The client has the server's own reason (57P01 and friends): nothing
                    // made up after it, just the close, as from a direct connection.
                    let _ =
                        tokio::time::timeout(Duration::from_secs(2), self.client.shutdown()).await;
                } else {
                    let err = ClientError::server_connection_lost();
                    Box::pin(send_error_and_close(&mut self.client, &err)).await;
                }
                drop(server);
            }
            PumpEnd::Idle
            | PumpEnd::ClientTerminated
            | PumpEnd::ClientClosed
            | PumpEnd::ClientIo(_) => {
                tokio::spawn(cleanup(
                    self.info.pool.clone(),
                    server,
                    self.left_state(),
                    self.reset_query(),
                ));
            }
        }
        SessionEnd::Pump(end)
    }
}

/// What a departing client left the server in.
#[derive(Debug, Clone, Copy)]
struct LeftState {
    /// No request in flight, at message boundaries in both directions.
    quiescent: bool,
    /// Last transaction status.
    status: u8,
    /// The client changed session state that was not read back yet (transaction mode).
    settings_unknown: bool,
}

/// Makes a server a client left behind reusable, or closes it: a server with requests in
/// flight is closed (its state is unknowable); an open transaction is rolled back; session
/// mode runs the reset query. Never returns a dirty server to the pool. Holds `pool`, the
/// server's pool, until it is done: a checkout does not keep its pool alive, and the server
/// counts under the pool's database and user limits until it is released or closed.
async fn cleanup(pool: Pool, mut server: Checkout, left: LeftState, reset: Option<String>) {
    if !left.quiescent || left.settings_unknown {
        server.close();
        return;
    }
    let work = async {
        let conn = server.conn();
        if left.status != b'I' && conn.run_control_query("ROLLBACK").await.ok() != Some(b'I') {
            return false;
        }
        if let Some(q) = reset.filter(|q| !q.trim().is_empty()) {
            if conn.run_control_query(&q).await.ok() != Some(b'I') {
                return false;
            }
            if q.trim().eq_ignore_ascii_case("DISCARD ALL") {
                conn.forget_session();
                conn.prepared.clear();
            } else {
                // Another reset query: what is set now is not known; ask.
                let mut changes = super::txn::state::Changes::default();
                changes.all = true;
                let mut settings = super::txn::state::ClientSettings::default();
                if follow_changes(conn, &mut changes, &mut settings)
                    .await
                    .is_err()
                {
                    return false;
                }
            }
        }
        true
    };
    match tokio::time::timeout(CLEANUP_TIMEOUT, work).await {
        Ok(true) => server.release_to(&pool),
        _ => server.close(),
    }
}

/// Waits until the client sent something (`idle`: until its socket is readable, so an idle
/// client holds no read buffer), lakepool starts draining, or the client's limit for `wait`
/// passes. One combined poll instead of `select!` over futures: this is where an idle client's
/// task sleeps, and stored futures would add to every idle client's memory.
fn wait_for_client<'w>(
    entry: &'w ClientHandle,
    path: &'w mut Option<Box<ClientPath>>,
    stats: &'w Arc<PoolStats>,
    (client, mut armed): (&'w mut Stream, bool),
    limits: &'w mut IdleLimits,
    wait: Wait,
    idle: bool,
) -> impl Future<Output = Woke> + 'w {
    poll_fn(move |cx| {
        if entry.poll_draining(cx).is_ready() {
            return Poll::Ready(Woke::Shutdown);
        }
        let mut read = ReadArmed::new(armed);
        let moved = read.poll(client, |client| {
            let ready = if idle {
                client.poll_read_ready(cx)
            } else {
                Poll::Ready(Ok(()))
            };
            match ready {
                // The path is taken only now: an idle client waits without one.
                Poll::Ready(Ok(())) => client_path::get(path, stats).up.poll_fill(cx, client),
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            }
        });
        armed = read.is_armed();
        if let Poll::Ready(r) = moved {
            return Poll::Ready(Woke::Client(r));
        }
        limits.poll_expired(cx, wait).map(|()| Woke::Expired)
    })
}
