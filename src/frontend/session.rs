//! A client session after login: the loop that gets a server connection, forwards traffic, and
//! gives the server back (at each transaction end in transaction mode, at disconnect in
//! session mode), plus the clean-up of servers a client left in an unknown state.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::clients::{ClientHandle, ClientState};
use super::login::{LoggedIn, Login, LoginEnd, SessionInfo, login, sync_settings};
use super::pump::{Flow, IdleLimits, Mapping, Pump, PumpEnd, Tracker};
use super::replies::ReplyQueue;
use super::rewrite::{ClientSide, ServerSide};
use super::settings::follow_settings;
use super::{ClientCount, Frontend, send_error_and_close};
use crate::config::PoolMode;
use crate::error::{ClientError, ClientFacing};
use crate::net::{Stream, buffer};
use crate::pool::Checkout;
use crate::proto::sqlstate::SqlState;

/// Longest lakepool spends rolling back or resetting a server a client left behind.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves one accepted client connection from startup to close.
pub async fn serve_client(fe: Arc<Frontend>, tcp: TcpStream, peer: SocketAddr) {
    let (_count, admitted) = ClientCount::enter(&fe.clients, fe.server.max_client_conn);
    // Boxed: the login state machine is large and only needed once; an idle session should
    // not carry its space for its whole life.
    let logged = match Box::pin(login(&fe, tcp, admitted)).await {
        Ok(Login::Session(l)) => l,
        Ok(Login::Console(c)) => {
            tracing::info!(client = %peer, user = %c.user, "admin console login");
            let client = fe.sessions.register(
                &c.user,
                crate::config::ADMIN_DATABASE,
                peer,
                c.stream.is_tls(),
            );
            let end = Box::pin(crate::admin::console::serve(&fe, c)).await;
            drop(client);
            tracing::info!(client = %peer, reason = %end, "admin console disconnected");
            return;
        }
        Err(LoginEnd::Cancelled) => return,
        Err(LoginEnd::Failed(e)) => {
            // 08: lakepool could not get a server for the client (an upstream failure, for the
            // operator); anything else is the client's own doing.
            if e.code.as_str().starts_with("08") {
                tracing::warn!(client = %peer, code = %e.code, error = %e.message, "login failed");
            } else {
                tracing::info!(client = %peer, code = %e.code, error = %e.message, "login failed");
            }
            return;
        }
        Err(LoginEnd::Dropped(why)) => {
            tracing::debug!(client = %peer, reason = %why, "connection dropped during startup");
            return;
        }
        Err(LoginEnd::TimedOut) => {
            tracing::info!(client = %peer, "login timed out (handshake_timeout)");
            return;
        }
    };
    let LoggedIn { stream, session } = logged;
    tracing::info!(client = %peer, user = %session.user, database = %session.database,
        tls = stream.is_tls(), "client logged in");
    let (user, database) = (session.user.clone(), session.database.clone());
    let client = fe
        .sessions
        .register(&user, &database, peer, stream.is_tls());
    let end = Session::new(&fe, stream, session, client).run().await;
    tracing::info!(client = %peer, user = %user, database = %database, reason = %end, "client disconnected");
}

/// One logged-in client.
struct Session<'a> {
    fe: &'a Frontend,
    client: Stream,
    info: SessionInfo,
    up: Flow,
    tracker: Tracker,
    /// Transaction mode with prepared-statement mapping on.
    mapped: Option<Box<Mapped>>,
    /// This client's entry in the client list (state for SHOW CLIENTS / POOLS).
    entry: ClientHandle,
}

/// Message-level state of a transaction-mode client whose statements are mapped. Boxed in the
/// session: only such clients pay for it.
#[derive(Debug, Default)]
struct Mapped {
    client: ClientSide,
    queue: ReplyQueue,
    server: ServerSide,
}

impl<'a> Session<'a> {
    fn new(fe: &'a Frontend, client: Stream, mut info: SessionInfo, entry: ClientHandle) -> Self {
        let leftover = std::mem::take(&mut info.leftover);
        let mut tracker = Tracker::new(fe.server.max_message_size);
        tracker.stats = Some(std::sync::Arc::clone(info.pool.stats()));
        let mut up = Flow::default();
        let settings = info.pool.settings();
        if settings.mode == PoolMode::Transaction && settings.max_prepared_statements > 0 {
            let mut mapped = Box::<Mapped>::default();
            if !leftover.is_empty() {
                // Handled message by message once a server is attached.
                mapped.client.inbuf = buffer::take();
                mapped.client.inbuf.extend_from_slice(&leftover);
            }
            return Self {
                fe,
                client,
                info,
                up,
                tracker,
                mapped: Some(mapped),
                entry,
            };
        }
        // Bytes that arrived right behind the login are the first request: count them (a
        // Terminate among them is cut off like any other; a framing error surfaces when the
        // pump scans the client again, as an 08P01).
        if !leftover.is_empty() {
            let keep = match tracker.scan_client(&leftover) {
                Ok((keep, _)) => keep,
                Err(_) => leftover.len(),
            };
            let mut buf = buffer::take();
            buf.extend_from_slice(&leftover[..keep]);
            up = Flow::with(buf);
        }
        Self {
            fe,
            client,
            info,
            up,
            tracker,
            mapped: None,
            entry,
        }
    }

    async fn run(mut self) -> String {
        let end = self.serve().await;
        if self.up.buf.capacity() > 0 {
            buffer::give(std::mem::take(&mut self.up.buf));
        }
        if let Some(m) = self.mapped.as_mut()
            && m.client.inbuf.capacity() > 0
        {
            buffer::give(std::mem::take(&mut m.client.inbuf));
        }
        end
    }

    /// The session loop. A client gets a server at its first request; transaction mode gives
    /// it back at every idle point, session mode keeps it until the client leaves.
    async fn serve(&mut self) -> String {
        let release_when_idle = self.info.pool.settings().mode == PoolMode::Transaction;
        loop {
            if self.no_input()
                && let Err(reason) = self.wait_for_request().await
            {
                return reason;
            }
            let terminated = match &self.mapped {
                Some(m) => m.client.terminates_next(),
                None => self.tracker.terminated && self.up.buf.is_empty(),
            };
            if terminated {
                return "client terminated".to_owned();
            }
            if let Some(m) = self.mapped.as_mut()
                && let Some(reply) = m.client.answer_without_server(
                    self.info.pool.statements(),
                    Some(self.info.pool.stats()),
                )
            {
                // Answered here: no query ran.
                self.tracker.clock.reset();
                let sent = async {
                    self.client.write_all(&reply).await?;
                    self.client.flush().await
                };
                if let Err(e) = sent.await {
                    return format!("client I/O error: {e}");
                }
                continue;
            }
            self.entry.set(ClientState::Waiting);
            let mut server = match self.checkout().await {
                Ok(s) => {
                    self.entry.set(ClientState::Active);
                    s
                }
                Err(e) => {
                    self.info
                        .pool
                        .stats()
                        .record_error(e.code.as_str().as_bytes());
                    tracing::warn!(user = %self.info.user, database = %self.info.database,
                        code = %e.code, error = %e.message, "no server connection for client");
                    Box::pin(send_error_and_close(&mut self.client, &e)).await;
                    return format!("error: {}", e.message);
                }
            };
            let conn = server.conn_ref();
            self.info.cancel.slot.attach(conn.key, &conn.host);
            let end = self.forward(&mut server, release_when_idle).await;
            self.info.cancel.slot.detach().await;
            if matches!(end, PumpEnd::Idle) && !release_when_idle {
                // Session mode stops at an idle point only when lakepool shuts down: the
                // server is reset off the client's path, the client told why it goes.
                let reset = Some(self.info.pool.settings().server_reset_query.clone());
                tokio::spawn(cleanup(server, self.left_state(), reset));
                return Box::pin(self.shutting_down()).await;
            }
            if matches!(end, PumpEnd::Idle) {
                if let Some(m) = self.mapped.as_mut()
                    && (!m.client.touched.is_empty() || m.client.touched_all)
                {
                    let extra = &self.info.pool.settings().track_extra_parameters;
                    let conn = server.conn();
                    if let Err(e) = Box::pin(follow_settings(
                        conn,
                        &mut m.client,
                        &mut self.info.settings,
                        extra,
                    ))
                    .await
                    {
                        tracing::debug!(error = %e, "reading back session settings failed; closing the server");
                        server.close();
                        continue;
                    }
                }
                server.release();
                self.entry.set(ClientState::Idle);
                if self.client.can_wait_without_buffer() && self.up.buf.is_empty() {
                    // Idle clients hold no buffer.
                    buffer::give(std::mem::take(&mut self.up.buf));
                    if let Some(m) = self.mapped.as_mut()
                        && m.client.inbuf.is_empty()
                    {
                        buffer::give(std::mem::take(&mut m.client.inbuf));
                    }
                }
                continue;
            }
            return Box::pin(self.finish(server, end)).await;
        }
    }

    /// Nothing the client sent is waiting to be handled.
    fn no_input(&self) -> bool {
        match &self.mapped {
            Some(m) => m.client.inbuf.is_empty(),
            None => self.up.buf.is_empty(),
        }
    }

    /// Waits for the client to send something while no server is attached, then reads it.
    async fn wait_for_request(&mut self) -> Result<(), String> {
        let shutdown = self.fe.shutdown.clone();
        let idle = idle_limit(self.info.pool.settings().client_idle_timeout);
        tokio::pin!(idle);
        if self.client.can_wait_without_buffer() {
            tokio::select! {
                r = self.client.readable() => r.map_err(|e| format!("client I/O error: {e}"))?,
                () = shutdown.cancelled() => return Err(Box::pin(self.shutting_down()).await),
                () = &mut idle => return Err(Box::pin(self.idle_timed_out()).await),
            }
        }
        if let Some(m) = self.mapped.as_mut() {
            // Mapped clients' messages are handled once a server is attached.
            if m.client.inbuf.capacity() == 0 {
                m.client.inbuf = buffer::take();
            }
            let n = tokio::select! {
                r = self.client.read_buf(&mut m.client.inbuf) => r.map_err(|e| format!("client I/O error: {e}"))?,
                () = shutdown.cancelled() => return Err(Box::pin(self.shutting_down()).await),
            };
            if n == 0 {
                return Err("client closed the connection".to_owned());
            }
            // Query time counts from the request, waiting for a server included.
            self.tracker.clock.request();
            return Ok(());
        }
        if self.up.buf.capacity() == 0 {
            self.up.buf = buffer::take();
        }
        let n = tokio::select! {
            r = self.client.read_buf(&mut self.up.buf) => r.map_err(|e| format!("client I/O error: {e}"))?,
            () = shutdown.cancelled() => return Err(Box::pin(self.shutting_down()).await),
            () = &mut idle => return Err(Box::pin(self.idle_timed_out()).await),
        };
        if n == 0 {
            return Err("client closed the connection".to_owned());
        }
        match self.tracker.scan_client(&self.up.buf) {
            Ok((keep, _)) => {
                self.up.buf.truncate(keep);
                Ok(())
            }
            Err(e) => {
                let err = ClientError::fatal(SqlState::PROTOCOL_VIOLATION, e.to_string());
                Box::pin(send_error_and_close(&mut self.client, &err)).await;
                Err(format!("protocol violation: {e}"))
            }
        }
    }

    async fn shutting_down(&mut self) -> String {
        let err = ClientError::fatal(SqlState::ADMIN_SHUTDOWN, "lakepool is shutting down");
        Box::pin(send_error_and_close(&mut self.client, &err)).await;
        "shutdown".to_owned()
    }

    async fn idle_timed_out(&mut self) -> String {
        let err = ClientError::fatal(
            SqlState::IDLE_SESSION_TIMEOUT,
            "client_idle_timeout: closing idle client connection",
        );
        Box::pin(send_error_and_close(&mut self.client, &err)).await;
        "client_idle_timeout".to_owned()
    }

    /// Gets a server and brings its session settings in line with the client's.
    async fn checkout(&mut self) -> Result<Checkout, ClientError> {
        if self.info.pool.is_retired() {
            // A reload replaced the pool: move to the current one (same database and user),
            // unless the database is gone, in which case the old pool serves until we leave.
            let live = self.fe.live();
            if let Some(p) = live
                .registry
                .current_pool(&self.info.database, &self.info.user)
            {
                self.info.pool = p;
                self.tracker.stats = Some(Arc::clone(self.info.pool.stats()));
            }
        }
        let mut server = self
            .info
            .pool
            .checkout()
            .await
            .map_err(|e| e.to_client_error())?;
        // Boxed: settings rarely differ, and the exchange's state is large.
        Box::pin(sync_settings(&mut server, &mut self.info.settings)).await?;
        Ok(server)
    }

    async fn forward(&mut self, server: &mut Checkout, release_when_idle: bool) -> PumpEnd {
        if self.up.buf.capacity() == 0 {
            self.up.buf = buffer::take();
        }
        let limits = self.idle_limits();
        let registry = self.info.pool.statements();
        let cap = self.info.pool.settings().max_prepared_statements;
        let extra_tracked = &self.info.pool.settings().track_extra_parameters;
        let conn = server.conn();
        // Mapped clients read server bytes into the connection's buffer and pass them on
        // through a second one; the others forward from the connection's buffer directly.
        let mapped = self.mapped.is_some();
        let mut rx = if mapped {
            std::mem::take(&mut conn.buf)
        } else {
            BytesMut::new()
        };
        let mut down = Flow::with(if mapped {
            buffer::take()
        } else {
            std::mem::take(&mut conn.buf)
        });
        let end = Pump {
            client: &mut self.client,
            server: &mut conn.stream,
            up: &mut self.up,
            down: &mut down,
            tracker: &mut self.tracker,
            client_params: &mut self.info.settings,
            server_params: &mut conn.params,
            release_when_idle,
            limits,
            mapping: self.mapped.as_mut().map(|m| Mapping {
                client: &mut m.client,
                server: &mut m.server,
                queue: &mut m.queue,
                cache: &mut conn.prepared,
                registry,
                cap,
                extra_tracked,
                rx: &mut rx,
            }),
        }
        .run_until_shutdown(&self.fe.shutdown)
        .await;
        let owed = self
            .mapped
            .as_ref()
            .is_some_and(|m| !rx.is_empty() || !m.queue.is_empty() || !m.server.at_boundary());
        if !down.is_drained() || owed {
            // Server bytes this client never received (it left or failed mid-write), or
            // requests still owed: the server's state is unknown and it must not serve anyone
            // else, so it counts as dirty and will be closed.
            self.tracker.undelivered = true;
            down.buf.clear();
            rx.clear();
        }
        if let Some(m) = self.mapped.as_mut() {
            if !matches!(end, PumpEnd::Idle) {
                m.queue = ReplyQueue::default();
                m.server = ServerSide::default();
            }
            down.buf.clear();
            buffer::give(down.buf);
            conn.buf = rx;
        } else {
            conn.buf = down.buf;
        }
        end
    }

    /// What this client leaves its server in.
    fn left_state(&self) -> LeftState {
        let mut left = LeftState::of(&self.tracker);
        left.settings_unknown = self
            .mapped
            .as_ref()
            .is_some_and(|m| !m.client.touched.is_empty() || m.client.touched_all);
        left
    }

    /// Idle limits for the pump, from the pool settings.
    fn idle_limits(&self) -> IdleLimits {
        let s = self.info.pool.settings();
        // Transaction mode releases the server between transactions: an idle client is then
        // timed by wait_for_request, not here.
        let between = match s.mode {
            PoolMode::Session => s.client_idle_timeout,
            PoolMode::Transaction => std::time::Duration::ZERO,
        };
        IdleLimits::new(s.idle_transaction_timeout, between)
    }

    /// Ends the session: tells the client why when it is still there, and cleans the server up
    /// off the client's path.
    async fn finish(&mut self, server: Checkout, end: PumpEnd) -> String {
        let reason = match &end {
            PumpEnd::Idle => "idle".to_owned(),
            PumpEnd::ClientTerminated => "client terminated".to_owned(),
            PumpEnd::ClientClosed => "client closed the connection".to_owned(),
            PumpEnd::ClientIo(e) => format!("client I/O error: {e}"),
            PumpEnd::ClientProtocol(e) => format!("protocol violation: {e}"),
            PumpEnd::ServerClosed => "server closed the connection".to_owned(),
            PumpEnd::ServerIo(e) => format!("server I/O error: {e}"),
            PumpEnd::ServerProtocol(e) => format!("server protocol error: {e}"),
            PumpEnd::IdleInTransaction => "idle_transaction_timeout".to_owned(),
            PumpEnd::ClientIdle => "client_idle_timeout".to_owned(),
        };
        match end {
            PumpEnd::IdleInTransaction | PumpEnd::ClientIdle => {
                let err = match end {
                    PumpEnd::IdleInTransaction => ClientError::fatal(
                        SqlState::IDLE_IN_TRANSACTION_TIMEOUT,
                        "idle_transaction_timeout: closing client connection idle in transaction",
                    ),
                    _ => ClientError::fatal(
                        SqlState::IDLE_SESSION_TIMEOUT,
                        "client_idle_timeout: closing idle client connection",
                    ),
                };
                Box::pin(send_error_and_close(&mut self.client, &err)).await;
                // Not a broken server: roll back the open transaction and reuse it.
                let reset = (self.info.pool.settings().mode == PoolMode::Session)
                    .then(|| self.info.pool.settings().server_reset_query.clone());
                tokio::spawn(cleanup(server, self.left_state(), reset));
            }
            PumpEnd::ClientProtocol(e) => {
                let err = ClientError::fatal(SqlState::PROTOCOL_VIOLATION, e.to_string());
                Box::pin(send_error_and_close(&mut self.client, &err)).await;
                server.close();
            }
            PumpEnd::ServerClosed | PumpEnd::ServerIo(_) | PumpEnd::ServerProtocol(_) => {
                let err = ClientError::fatal(
                    SqlState::CONNECTION_FAILURE,
                    "server connection lost: the server closed the connection unexpectedly",
                );
                Box::pin(send_error_and_close(&mut self.client, &err)).await;
                drop(server);
            }
            PumpEnd::Idle
            | PumpEnd::ClientTerminated
            | PumpEnd::ClientClosed
            | PumpEnd::ClientIo(_) => {
                let reset = (self.info.pool.settings().mode == PoolMode::Session)
                    .then(|| self.info.pool.settings().server_reset_query.clone());
                let state = self.left_state();
                tokio::spawn(cleanup(server, state, reset));
            }
        }
        reason
    }
}

/// Completes after `limit` (client_idle_timeout); never when it is zero (off).
async fn idle_limit(limit: Duration) {
    if limit.is_zero() {
        std::future::pending::<()>().await;
    }
    tokio::time::sleep(limit).await;
}

/// What a departing client left the server in.
#[derive(Debug, Clone, Copy)]
struct LeftState {
    /// No request in flight, at message boundaries in both directions.
    quiescent: bool,
    /// Last transaction status.
    status: u8,
    /// The client changed session parameters that were not read back yet (transaction
    /// mode): a ROLLBACK does not undo a committed SET, so the server must be closed.
    settings_unknown: bool,
}

impl LeftState {
    fn of(t: &Tracker) -> Self {
        Self {
            quiescent: t.pending == 0
                && !t.unsynced
                && !t.partial_terminate
                && !t.undelivered
                && !t.copy_in
                && t.client_scan.at_boundary()
                && t.server_scan.at_boundary(),
            status: t.status,
            settings_unknown: false,
        }
    }
}

/// Makes a server a client left behind reusable, or closes it: a server with requests in
/// flight is closed (its state is unknowable); an open transaction is rolled back; session
/// mode runs the reset query. Never returns a dirty server to the pool.
async fn cleanup(mut server: Checkout, left: LeftState, reset: Option<String>) {
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
            conn.forget_unreported();
        }
        true
    };
    match tokio::time::timeout(CLEANUP_TIMEOUT, work).await {
        Ok(true) => server.release(),
        _ => server.close(),
    }
}

impl std::fmt::Display for PumpEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

#[cfg(test)]
mod tests {
    /// Every idle client costs one task holding this future: keep it small (the idle-memory
    /// budget is 8 KiB per client, and PgBouncer holds about 1 KiB).
    #[test]
    fn session_future_stays_small() {
        fn size<F: std::future::Future>(_: &F) -> usize {
            std::mem::size_of::<F>()
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let a = l.local_addr().unwrap();
            let c = tokio::net::TcpStream::connect(a).await.unwrap();
            let text = "[server]\nlisten=\"127.0.0.1:0\"\n[[users]]\nname=\"a\"\npassword=\"b\"\n\
                        [[databases]]\nname=\"d\"\nhost=\"127.0.0.1\"\nuser=\"u\"\ntls=\"disable\"\n";
            let cfg = crate::config::load_str(text, std::path::Path::new(".")).unwrap();
            let token = tokio_util::sync::CancellationToken::new();
            let fe = std::sync::Arc::new(crate::app::build(&cfg, token).unwrap().frontend);
            let f = super::serve_client(fe, c, a);
            let n = size(&f);
            assert!(n <= 3 * 1024, "serve_client future is {n} bytes");
        });
    }
}
