//! Pools of server connections, one per (database, user).
//!
//! A pool's state sits behind a `parking_lot::Mutex` that is only held for a few pointer moves,
//! never across an `.await`. Clients that find no idle connection and no free slot wait in a
//! FIFO queue; a released connection (or a freed slot) is handed straight to the first waiter,
//! so waiting is fair and wake-ups are exact. A checked-out connection is an RAII [`Checkout`]:
//! if the session holding it ends without releasing it, the slot is freed and the connection
//! closed, so a dirty connection can never return to the pool by accident.
//!
//! Limits across pools (`max_db_connections`, `max_user_connections`) are counted in
//! [`limits`]: every connection counted in a pool's `total` is also counted for its database
//! and its user. Only opening or closing a connection touches those counts, never a checkout
//! of an idle one.

pub mod limits;
pub mod registry;
pub mod statements;
pub mod stats;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use parking_lot::Mutex;
use tokio::sync::{Notify, oneshot};

use crate::config::PoolSettings;
use crate::error::ClientFacing;
use crate::proto::sqlstate::SqlState;
use crate::upstream::Upstream;
use crate::upstream::connect::{UpstreamError, connect_within};
use crate::upstream::params::ParamMap;
use crate::upstream::server::ServerConn;
use limits::{Blocked, ClientAdmission, Counters};

/// Longest a health check of an idle server connection may take.
const MAX_CHECK_TIME: Duration = Duration::from_secs(5);

/// Getting a server connection failed.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// No connection became available within query_wait_timeout.
    #[error("query_wait_timeout: no server connection became available within {0:?}")]
    WaitTimeout(std::time::Duration),
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

/// An idle server connection as `SHOW SERVERS` lists it.
#[derive(Debug, Clone)]
pub struct IdleServer {
    /// lakepool's connection id.
    pub id: u64,
    /// The server's process id (BackendKeyData).
    pub backend_pid: u32,
    /// Host it is connected to.
    pub host: Arc<String>,
    /// When it was opened.
    pub created: Instant,
    /// When a client last released it.
    pub last_used: Instant,
}

/// What a waiter is given.
enum Grant {
    /// A ready connection.
    Conn(ServerConn),
    /// Permission to open a new connection (a slot was freed).
    Slot,
}

/// The last failed attempt to open a server connection, while server_login_retry runs.
struct LoginFailure {
    until: Instant,
    code: SqlState,
    message: Arc<str>,
}

#[derive(Default)]
struct State {
    /// Idle connections, most recently used last (reused first: warm caches, and the others age
    /// out through server_idle_timeout).
    idle: Vec<ServerConn>,
    /// Connections that exist or are being opened: idle + checked out + connecting.
    total: usize,
    waiters: VecDeque<oneshot::Sender<Grant>>,
    /// Set after a failed server login; new connections are not attempted until it passes.
    login_failure: Option<LoginFailure>,
    closed: bool,
    /// RECONNECT: connections opened at or before this instant are closed instead of reused.
    stale_before: Option<Instant>,
}

impl State {
    /// The error for a client needing a new connection while server_login_retry runs.
    fn retry_pending(&self, now: Instant) -> Option<PoolError> {
        let f = self.login_failure.as_ref()?;
        (f.until > now).then(|| PoolError::LoginRetry {
            code: f.code,
            message: Arc::clone(&f.message),
            retry_in: f.until - now,
        })
    }
}

struct Shared {
    database: String,
    user: String,
    settings: PoolSettings,
    upstream: Arc<Upstream>,
    state: Mutex<State>,
    ids: Arc<AtomicU64>,
    /// ParameterStatus values of the newest server connection, replayed to logging-in clients.
    params: ArcSwapOption<ParamMap>,
    /// Named statements clients of this pool prepared (transaction mode).
    statements: statements::StatementRegistry,
    /// A reload replaced this pool: connections close as they are released.
    retired: std::sync::atomic::AtomicBool,
    /// Server and client counts of this pool's database and user.
    counters: Counters,
    /// Traffic counters (`/metrics`, `SHOW STATS`).
    stats: Arc<stats::PoolStats>,
    /// PAUSE: no checkouts until RESUME.
    paused: AtomicBool,
    /// Wakes clients waiting for RESUME.
    resumed: Notify,
}

impl Shared {
    /// Closes a connection that left the pool's accounting (its slot is already handled).
    fn retire(&self, conn: ServerConn) {
        self.stats.servers_closed.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(conn.terminate());
    }

    /// True when RECONNECT asked for connections as old as `conn` to be replaced.
    fn is_stale(st: &State, conn: &ServerConn) -> bool {
        st.stale_before.is_some_and(|t| conn.created <= t)
    }
}

/// A pool handle; cheap to clone.
#[derive(Clone)]
pub struct Pool {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("database", &self.shared.database)
            .field("user", &self.shared.user)
            .finish_non_exhaustive()
    }
}

/// A checked-out server connection. Release it with [`Checkout::release`] when it is clean;
/// dropping it closes the connection and frees its slot.
pub struct Checkout {
    conn: Option<ServerConn>,
    pool: Arc<Shared>,
}

impl std::fmt::Debug for Checkout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkout")
            .field("conn", &self.conn)
            .finish()
    }
}

impl Checkout {
    /// The connection.
    pub fn conn(&mut self) -> &mut ServerConn {
        // INVARIANT: `conn` is Some until release/drop consume the Checkout.
        match self.conn.as_mut() {
            Some(c) => c,
            None => unreachable!("checkout used after release"),
        }
    }

    /// Read-only access to the connection.
    pub fn conn_ref(&self) -> &ServerConn {
        match self.conn.as_ref() {
            Some(c) => c,
            None => unreachable!("checkout used after release"),
        }
    }

    /// Returns a clean connection (idle, no transaction, nothing in flight) to the pool.
    pub fn release(mut self) {
        if let Some(conn) = self.conn.take() {
            Pool::checkin(&self.pool, conn);
        }
    }

    /// Closes the connection gracefully (Terminate) in the background and frees its slot.
    pub fn close(mut self) {
        if let Some(conn) = self.conn.take() {
            Pool::slot_freed(&self.pool);
            self.pool.retire(conn);
        }
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        if self.conn.take().is_some() {
            self.pool
                .stats
                .servers_closed
                .fetch_add(1, Ordering::Relaxed);
            Pool::slot_freed(&self.pool);
        }
    }
}

/// What a checkout found under the lock.
enum Step {
    /// An idle connection; `check` when it sat unused longer than server_check_delay.
    Idle { conn: ServerConn, check: bool },
    /// A slot was taken: open a new connection.
    Open,
    /// Queued; `blocked` when a database or user limit (not pool_size) is what is full.
    Wait {
        rx: oneshot::Receiver<Grant>,
        blocked: Option<Blocked>,
    },
}

impl Pool {
    /// A new, empty pool counted under `counters`.
    pub fn new(
        database: String,
        user: String,
        settings: PoolSettings,
        upstream: Arc<Upstream>,
        ids: Arc<AtomicU64>,
        counters: Counters,
    ) -> Self {
        let pool = Self {
            shared: Arc::new(Shared {
                database,
                user,
                settings,
                upstream,
                state: Mutex::new(State::default()),
                ids,
                params: ArcSwapOption::empty(),
                statements: statements::StatementRegistry::default(),
                retired: std::sync::atomic::AtomicBool::new(false),
                counters,
                stats: Arc::default(),
                paused: AtomicBool::new(false),
                resumed: Notify::new(),
            }),
        };
        pool.shared.counters.register(&pool.shared);
        pool
    }

    /// Pool settings.
    pub fn settings(&self) -> &PoolSettings {
        &self.shared.settings
    }

    /// The upstream this pool connects to.
    pub fn upstream(&self) -> &Arc<Upstream> {
        &self.shared.upstream
    }

    /// Database name clients use.
    pub fn database(&self) -> &str {
        &self.shared.database
    }

    /// Named statements prepared by this pool's clients.
    pub fn statements(&self) -> &statements::StatementRegistry {
        &self.shared.statements
    }

    /// Server parameters from the newest server connection, if one was ever opened.
    pub fn cached_params(&self) -> Option<Arc<ParamMap>> {
        self.shared.params.load_full()
    }

    /// Counts a logging-in client for max_db_client_connections / max_user_client_connections;
    /// the returned guard uncounts it when dropped (at disconnect).
    pub fn admit_client(&self) -> Result<ClientAdmission, PoolError> {
        let s = &self.shared;
        s.counters.admit_client(&s.settings, &s.database, &s.user)
    }

    /// Gets a server connection: an idle one (health-checked first when it sat unused longer
    /// than server_check_delay), a new one if under pool_size and the database and user
    /// limits, or waits in FIFO order up to query_wait_timeout (after reserve_pool_timeout it
    /// may open one of reserve_pool_size extra connections).
    ///
    /// # Cancel safety
    /// Cancel safe: a grant arriving after cancellation is returned to the pool, and a
    /// connection being checked is closed and its slot freed.
    pub async fn checkout(&self) -> Result<Checkout, PoolError> {
        let started = Instant::now();
        let r = self.checkout_inner(started).await;
        if r.is_ok() {
            self.shared.stats.record_wait(started.elapsed());
        }
        r
    }

    async fn checkout_inner(&self, started: Instant) -> Result<Checkout, PoolError> {
        if self.shared.paused.load(Ordering::Relaxed) {
            // Boxed: rare, and its state would otherwise sit in every session future.
            Box::pin(self.wait_resumed(started)).await?;
        }
        loop {
            match self.step()? {
                Step::Idle { conn, check: false } => return Ok(self.wrap(conn)),
                Step::Idle { conn, check: true } => {
                    let mut out = self.wrap(conn);
                    let s = &self.shared.settings;
                    let limit = s.server_connect_timeout.min(MAX_CHECK_TIME);
                    // Boxed: rare, and its state would otherwise sit in every session future.
                    if Box::pin(out.conn().check(&s.server_check_query, limit)).await {
                        return Ok(out);
                    }
                    tracing::info!(server = out.conn_ref().id, database = %self.shared.database,
                        "idle server connection failed its health check; closed");
                    // Dropping frees its slot; look again (next idle one, or a new one).
                    drop(out);
                }
                Step::Open => return self.open().await,
                // Boxed: only when the pool is exhausted, and the wait's timers and grant
                // handling would otherwise sit in every session future.
                Step::Wait { rx, blocked } => return Box::pin(self.wait(rx, blocked)).await,
            }
        }
    }

    /// The locked part of a checkout.
    fn step(&self) -> Result<Step, PoolError> {
        let shared = &self.shared;
        let s = &shared.settings;
        let mut freed = 0;
        let step = {
            let mut st = shared.state.lock();
            if st.closed {
                return Err(PoolError::Closed);
            }
            let now = Instant::now();
            let mut found = None;
            while let Some(conn) = st.idle.pop() {
                if conn.is_quiet()
                    && now.duration_since(conn.created) < s.server_lifetime
                    && !Shared::is_stale(&st, &conn)
                {
                    found = Some(conn);
                    break;
                }
                // Dead, disturbed while idle, too old or RECONNECTed: close it, look further.
                st.total -= 1;
                freed += 1;
                shared.retire(conn);
            }
            if let Some(conn) = found {
                let check = now.duration_since(conn.last_used) >= s.server_check_delay;
                Step::Idle { conn, check }
            } else if st.total < s.size {
                if let Some(err) = st.retry_pending(now) {
                    drop(st);
                    shared.counters.give_back(freed);
                    return Err(err);
                }
                match shared.counters.take(shared, s, true) {
                    Ok(()) => {
                        st.total += 1;
                        Step::Open
                    }
                    Err(blocked) => {
                        // A database or user limit is reached: this pool is now registered to
                        // be offered the next slot under it.
                        let (tx, rx) = oneshot::channel();
                        st.waiters.push_back(tx);
                        Step::Wait {
                            rx,
                            blocked: Some(blocked),
                        }
                    }
                }
            } else {
                let (tx, rx) = oneshot::channel();
                st.waiters.push_back(tx);
                Step::Wait { rx, blocked: None }
            }
        };
        shared.counters.give_back(freed);
        Ok(step)
    }

    /// Waits for a grant; after reserve_pool_timeout, takes a reserve slot when there is one.
    async fn wait(
        &self,
        rx: oneshot::Receiver<Grant>,
        blocked: Option<Blocked>,
    ) -> Result<Checkout, PoolError> {
        let shared = &self.shared;
        let s = &shared.settings;
        let mut rx = WaitGuard { rx, pool: shared };
        if let Some(limit) = blocked {
            // PgBouncer's answer to a full database or user: close an idle connection another
            // pool of it holds. Its slot goes to the first pool waiting under the limit.
            shared.counters.evict_idle_elsewhere(shared, limit);
        }
        let wait = s.query_wait_timeout;
        let started = Instant::now();
        if s.reserve_pool_size > 0 && s.reserve_pool_timeout < wait {
            if let Ok(r) = tokio::time::timeout(s.reserve_pool_timeout, &mut rx.rx).await {
                return self.granted(r).await;
            }
            if self.take_reserve_slot() {
                rx.rx.close();
                return match rx.rx.try_recv() {
                    Ok(grant) => {
                        // A grant raced in: use it, and give the reserve slot back.
                        Pool::slot_freed(shared);
                        self.granted(Ok(grant)).await
                    }
                    Err(_) => self.open().await,
                };
            }
        }
        let left = wait.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, &mut rx.rx).await {
            Ok(r) => self.granted(r).await,
            Err(_) => Err(PoolError::WaitTimeout(wait)),
        }
    }

    /// Takes one of reserve_pool_size slots beyond pool_size, if free and within the limits.
    fn take_reserve_slot(&self) -> bool {
        let shared = &self.shared;
        let s = &shared.settings;
        let mut st = shared.state.lock();
        if st.closed
            || st.total >= s.size + s.reserve_pool_size
            || st.retry_pending(Instant::now()).is_some()
            || shared.counters.take(shared, s, false).is_err()
        {
            return false;
        }
        st.total += 1;
        tracing::info!(database = %shared.database, user = %shared.user, total = st.total,
            "reserve pool used (a client waited reserve_pool_timeout)");
        true
    }

    async fn granted(
        &self,
        r: Result<Grant, oneshot::error::RecvError>,
    ) -> Result<Checkout, PoolError> {
        match r {
            Ok(Grant::Conn(conn)) => Ok(self.wrap(conn)),
            Ok(Grant::Slot) => {
                let pending = self.shared.state.lock().retry_pending(Instant::now());
                if let Some(err) = pending {
                    // Do not attempt while server_login_retry runs: pass the slot on (the next
                    // waiter fails fast the same way) and tell this client why.
                    Pool::slot_freed(&self.shared);
                    return Err(err);
                }
                self.open().await
            }
            Err(_) => Err(PoolError::Closed),
        }
    }

    fn wrap(&self, conn: ServerConn) -> Checkout {
        Checkout {
            conn: Some(conn),
            pool: Arc::clone(&self.shared),
        }
    }

    /// Opens a new connection in a slot already counted in `total`.
    async fn open(&self) -> Result<Checkout, PoolError> {
        let conn = self.connect_in_slot().await?;
        Ok(self.wrap(conn))
    }

    /// Connects in a slot already counted; on failure frees the slot and, for a server
    /// failure, starts the server_login_retry pause.
    async fn connect_in_slot(&self) -> Result<ServerConn, PoolError> {
        let shared = &self.shared;
        let id = shared.ids.fetch_add(1, Ordering::Relaxed);
        // Boxed: opening a connection is rare, and its large state would otherwise sit in
        // every session future for its whole life.
        let limit = shared.settings.server_connect_timeout;
        match Box::pin(connect_within(&shared.upstream, id, limit)).await {
            Ok(conn) => {
                shared.stats.servers_opened.fetch_add(1, Ordering::Relaxed);
                shared.params.store(Some(Arc::new(conn.params.clone())));
                shared.state.lock().login_failure = None;
                tracing::debug!(server = id, database = %shared.database, "server connection opened");
                Ok(conn)
            }
            Err(e) => {
                shared.stats.record_connect_failure();
                let retry = shared.settings.server_login_retry;
                if e.is_server_failure() && !retry.is_zero() {
                    tracing::warn!(database = %shared.database, user = %shared.user, error = %e,
                        retry_in_s = retry.as_secs_f64(),
                        "server connection failed; new attempts paused (server_login_retry)");
                    shared.state.lock().login_failure = Some(LoginFailure {
                        until: Instant::now() + retry,
                        code: e.sqlstate(),
                        message: e.client_message().into(),
                    });
                } else {
                    // Every failed upstream login or connect is an operator's problem: WARN.
                    tracing::warn!(database = %shared.database, user = %shared.user, error = %e,
                        "server connection failed");
                }
                Pool::slot_freed(shared);
                Err(e.into())
            }
        }
    }

    fn checkin(shared: &Arc<Shared>, mut conn: ServerConn) {
        let now = Instant::now();
        conn.last_used = now;
        if now.duration_since(conn.created) >= shared.settings.server_lifetime
            || shared.retired.load(Ordering::Relaxed)
        {
            Pool::slot_freed(shared);
            shared.retire(conn);
            return;
        }
        let mut st = shared.state.lock();
        if st.closed || Shared::is_stale(&st, &conn) {
            st.total -= 1;
            drop(st);
            shared.counters.give_back(1);
            shared.retire(conn);
            return;
        }
        if shared.paused.load(Ordering::Relaxed) {
            // PAUSE: waiters stay waiting; RESUME hands idle connections to them.
            st.idle.push(conn);
            return;
        }
        let mut grant = Grant::Conn(conn);
        while let Some(w) = st.waiters.pop_front() {
            match w.send(grant) {
                Ok(()) => return,
                Err(back) => grant = back,
            }
        }
        if let Grant::Conn(conn) = grant {
            st.idle.push(conn);
            drop(st);
            shared.counters.relieve_waiting_siblings();
        }
    }

    /// A connection stopped existing: give its slot to the first waiter, or shrink `total`
    /// (and the database and user counts, which may let another pool open one).
    fn slot_freed(shared: &Shared) {
        {
            let mut st = shared.state.lock();
            // A reserve connection's slot is not handed on: the pool shrinks back to pool_size.
            if !st.closed && st.total <= shared.settings.size {
                while let Some(w) = st.waiters.pop_front() {
                    if w.send(Grant::Slot).is_ok() {
                        return;
                    }
                }
            }
            st.total -= 1;
        }
        shared.counters.give_back(1);
    }

    /// Offers slots to this pool's waiters that wait for a database or user limit (called
    /// when such a limit may have room again); re-registers the pool if some still wait.
    fn offer_slots(shared: &Arc<Shared>) {
        let s = &shared.settings;
        let mut unused = 0;
        {
            let mut st = shared.state.lock();
            while !st.closed && !st.waiters.is_empty() && st.total < s.size {
                if shared.counters.take(shared, s, true).is_err() {
                    break;
                }
                let mut sent = false;
                while let Some(w) = st.waiters.pop_front() {
                    if w.send(Grant::Slot).is_ok() {
                        sent = true;
                        break;
                    }
                }
                if sent {
                    st.total += 1;
                } else {
                    unused += 1;
                }
            }
        }
        shared.counters.give_back(unused);
    }

    /// Closes idle connections past server_idle_timeout (keeping min_pool_size) or
    /// server_lifetime, or disturbed while idle. Called periodically by the maintenance task.
    pub fn sweep(&self) {
        let s = &self.shared.settings;
        let now = Instant::now();
        let mut closing = Vec::new();
        {
            let mut st = self.shared.state.lock();
            let keep_min = s.min_pool_size.min(s.size);
            let mut total = st.total;
            let before = st.idle.len();
            let mut kept = Vec::with_capacity(before);
            // Oldest first, so min_pool_size keeps the most recently used.
            for conn in st.idle.drain(..) {
                let idle_too_long =
                    now.duration_since(conn.last_used) >= s.server_idle_timeout && total > keep_min;
                if idle_too_long
                    || now.duration_since(conn.created) >= s.server_lifetime
                    || !conn.is_quiet()
                {
                    total -= 1;
                    closing.push(conn);
                } else {
                    kept.push(conn);
                }
            }
            st.idle = kept;
            st.total = total;
        }
        self.shared.counters.give_back(closing.len());
        for conn in closing {
            self.shared.retire(conn);
        }
        self.shared.statements.sweep();
    }

    /// Opens connections in the background until the pool has min_pool_size (at most
    /// pool_size, within the database and user limits, not while server_login_retry runs).
    /// Called periodically by the maintenance task.
    pub fn fill_to_min(&self) {
        let shared = &self.shared;
        let s = &shared.settings;
        let want = s.min_pool_size.min(s.size);
        if want == 0 {
            return;
        }
        let mut opening = 0;
        {
            let mut st = shared.state.lock();
            if st.closed || st.retry_pending(Instant::now()).is_some() {
                return;
            }
            while st.total < want && shared.counters.take(shared, s, false).is_ok() {
                st.total += 1;
                opening += 1;
            }
        }
        for _ in 0..opening {
            let pool = self.clone();
            tokio::spawn(async move {
                match pool.connect_in_slot().await {
                    Ok(conn) => Pool::checkin(&pool.shared, conn),
                    Err(e) => tracing::debug!(database = %pool.shared.database, error = %e,
                        "min_pool_size: opening a server connection failed"),
                }
            });
        }
    }

    /// For clients waiting because a database or user limit is reached: closes an idle
    /// connection of another pool under that limit (one that went idle after they started
    /// waiting), or offers them a slot if the limit has room. Called periodically by the
    /// maintenance task.
    pub fn relieve(&self) {
        Pool::relieve_shared(&self.shared);
    }

    fn relieve_shared(shared: &Arc<Shared>) {
        {
            let mut st = shared.state.lock();
            // Clients that gave up leave their sender behind; they wait for nothing.
            st.waiters.retain(|w| !w.is_closed());
            if st.closed || st.waiters.is_empty() || st.total >= shared.settings.size {
                return;
            }
        }
        match shared.counters.blocked_by(&shared.settings) {
            Some(limit) => shared.counters.evict_idle_elsewhere(shared, limit),
            None => Pool::offer_slots(shared),
        }
    }

    /// A reload replaced this pool (its settings or upstream changed): its clients move to the
    /// new pool at their next checkout, its idle connections close now and the others as they
    /// are released. Unlike [`Pool::close`], checkouts still work meanwhile.
    pub fn retire(&self) {
        self.shared.retired.store(true, Ordering::Relaxed);
        let idle = {
            let mut st = self.shared.state.lock();
            st.total -= st.idle.len();
            std::mem::take(&mut st.idle)
        };
        self.shared.counters.give_back(idle.len());
        for conn in idle {
            self.shared.retire(conn);
        }
    }

    /// Whether `self` and `other` are the same pool.
    pub fn same_as(&self, other: &Pool) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// Whether a reload replaced this pool.
    pub fn is_retired(&self) -> bool {
        self.shared.retired.load(Ordering::Relaxed)
    }

    /// Pool user name.
    pub fn user(&self) -> &str {
        &self.shared.user
    }

    /// Stops handing out connections and closes the idle ones; checked-out ones close on release.
    pub fn close(&self) {
        let idle = {
            let mut st = self.shared.state.lock();
            st.closed = true;
            st.waiters.clear();
            // Clients waiting for RESUME learn the pool is closed.
            self.shared.resumed.notify_waiters();
            st.total -= st.idle.len();
            std::mem::take(&mut st.idle)
        };
        self.shared.counters.give_back(idle.len());
        for conn in idle {
            self.shared.retire(conn);
        }
    }

    /// (idle, total, waiting) counts, for stats.
    pub fn counts(&self) -> (usize, usize, usize) {
        let st = self.shared.state.lock();
        (st.idle.len(), st.total, st.waiters.len())
    }

    /// Traffic counters.
    pub fn stats(&self) -> &Arc<stats::PoolStats> {
        &self.shared.stats
    }

    /// The idle connections now, for `SHOW SERVERS`.
    pub fn idle_servers(&self) -> Vec<IdleServer> {
        let st = self.shared.state.lock();
        st.idle
            .iter()
            .map(|c| IdleServer {
                id: c.id,
                backend_pid: c.key.0,
                host: Arc::clone(&c.host),
                created: c.created,
                last_used: c.last_used,
            })
            .collect()
    }

    /// PAUSE: no new checkouts (clients wait, within query_wait_timeout); checked-out
    /// connections finish what they do and come back idle.
    pub fn pause(&self) {
        self.shared.paused.store(true, Ordering::Relaxed);
    }

    /// RESUME: checkouts go on; idle connections go to clients that queued meanwhile.
    pub fn resume(&self) {
        let shared = &self.shared;
        shared.paused.store(false, Ordering::Relaxed);
        shared.resumed.notify_waiters();
        let idle = std::mem::take(&mut shared.state.lock().idle);
        // Through checkin: the first waiters get them, the rest go back to idle.
        for conn in idle {
            Pool::checkin(shared, conn);
        }
    }

    /// Whether the pool is paused.
    pub fn is_paused(&self) -> bool {
        self.shared.paused.load(Ordering::Relaxed)
    }

    /// Connections checked out (or being opened) now.
    pub fn active(&self) -> usize {
        let st = self.shared.state.lock();
        st.total - st.idle.len()
    }

    /// RECONNECT: closes the idle connections now; the ones in use close when released, so
    /// every later checkout gets a connection opened after this call.
    pub fn reconnect(&self) {
        let idle = {
            let mut st = self.shared.state.lock();
            st.stale_before = Some(Instant::now());
            std::mem::take(&mut st.idle)
        };
        // Each freed slot goes to the first waiter, if any.
        for conn in idle {
            Pool::slot_freed(&self.shared);
            self.shared.retire(conn);
        }
    }

    /// Waits until RESUME, within query_wait_timeout.
    async fn wait_resumed(&self, started: Instant) -> Result<(), PoolError> {
        let wait = self.shared.settings.query_wait_timeout;
        let resumed = async {
            loop {
                let notified = self.shared.resumed.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if !self.shared.paused.load(Ordering::Relaxed) || self.shared.state.lock().closed {
                    return;
                }
                notified.await;
            }
        };
        let left = wait.saturating_sub(started.elapsed());
        tokio::time::timeout(left, resumed)
            .await
            .map_err(|_| PoolError::WaitTimeout(wait))
    }

    /// Closes this pool's least recently used idle connection, if it has one; true if it did.
    fn evict_one_idle(shared: &Shared) -> bool {
        let conn = {
            let mut st = shared.state.lock();
            if st.idle.is_empty() {
                return false;
            }
            st.total -= 1;
            st.idle.remove(0)
        };
        tracing::debug!(server = conn.id, database = %shared.database, user = %shared.user,
            "idle server connection closed to make room under a database/user limit");
        shared.retire(conn);
        shared.counters.give_back(1);
        true
    }
}

/// Returns a grant that raced with the waiter giving up, so no connection or slot leaks.
struct WaitGuard<'a> {
    rx: oneshot::Receiver<Grant>,
    pool: &'a Arc<Shared>,
}

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        self.rx.close();
        match self.rx.try_recv() {
            Ok(Grant::Conn(conn)) => Pool::checkin(self.pool, conn),
            Ok(Grant::Slot) => Pool::slot_freed(self.pool),
            Err(_) => {}
        }
    }
}
