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
//! and its user, and [`accounting`]'s ledger is the only code that changes either. Only
//! opening or closing a connection touches those counts, never a checkout of an idle one.
//!
//! Idle connections are kept per worker thread, outside that mutex ([`idle`]): a checkout that
//! finds one on its worker's list and a check-in with no client waiting take only that list's
//! lock, so with several workers a warm pool's transactions share no lock and no counter.
//!
//! Files by job: `checkout.rs` (checkout, waiters, check-in), `idle.rs` (the idle lists),
//! `open.rs` (opening connections,
//! server_login_retry, waking endpoints), `maintenance.rs` (sweep, min_pool_size, limits
//! relief), `control.rs` (PAUSE/RESUME/RECONNECT, retirement, close), `error.rs`.

mod accounting;
mod checkout;
mod connector;
mod control;
mod error;
#[cfg(test)]
mod fake;
mod idle;
pub(crate) mod limits;
mod maintenance;
mod open;
pub(crate) mod registry;
pub(crate) mod statements;
pub(crate) mod stats;
#[cfg(test)]
mod tests;
mod waiting;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Instant;

use arc_swap::ArcSwapOption;
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::config::PoolSettings;
use crate::upstream::Upstream;
use crate::upstream::reported::ReportedParams;
use crate::upstream::server::ServerConn;
use accounting::{Ledger, Slots};
pub(crate) use checkout::Checkout;
pub(crate) use connector::Connector;
pub(crate) use error::PoolError;
use limits::{ClientAdmission, Counters};
use open::LoginFailure;

/// A server connection as the pool holds and hands it out: boxed, so that moving it between
/// the idle list, a waiter and a checkout (several moves per transaction) copies a pointer,
/// not the connection's 170 bytes.
type PooledConn = Box<Pooled>;

/// A server connection and the pool it belongs to. The pool is held weakly, from the
/// connection's opening to its closing: a [`Checkout`] reaches its pool through it without
/// taking a reference per transaction (a reference count is a cache line every worker using
/// the pool would write), and an idle connection does not keep its pool alive.
pub(crate) struct Pooled {
    conn: ServerConn,
    pool: Weak<Shared>,
}

impl std::ops::Deref for Pooled {
    type Target = ServerConn;

    fn deref(&self) -> &ServerConn {
        &self.conn
    }
}

impl std::ops::DerefMut for Pooled {
    fn deref_mut(&mut self) -> &mut ServerConn {
        &mut self.conn
    }
}

impl std::fmt::Debug for Pooled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.conn.fmt(f)
    }
}

/// An idle server connection as `SHOW SERVERS` lists it.
#[derive(Debug, Clone)]
pub(crate) struct IdleServer {
    /// lakepool's connection id.
    pub(crate) id: u64,
    /// The server's process id (BackendKeyData).
    pub(crate) backend_pid: u32,
    /// Host it is connected to.
    pub(crate) host: Arc<str>,
    /// When it was opened.
    pub(crate) created: Instant,
    /// When a client last released it.
    pub(crate) last_used: Instant,
}

#[derive(Default)]
struct State {
    /// Connections that exist or are being opened: idle + checked out + connecting.
    slots: Slots,
    /// Clients waiting for a connection, and the task that ends their waits.
    waiters: waiting::WaitQueue,
    /// Set after a failed server login; new connections are not attempted until it passes.
    login_failure: Option<LoginFailure>,
}

#[repr(align(128))]
struct Shared {
    database: Arc<str>,
    user: Arc<str>,
    settings: PoolSettings,
    upstream: Arc<Upstream>,
    /// Opens server connections (to `upstream`, except in unit tests).
    connector: Connector,
    /// Only locked through [`Ledger::lock`].
    state: Mutex<State>,
    /// Idle connections, one list per worker (outside `state`: see the module's doc).
    idle: idle::IdleLists,
    /// Whether clients are queued in `state.waiters`, readable without the lock: a check-in
    /// that sees none puts its connection on its worker's idle list. Set under the lock before
    /// a checkout looks at the idle lists, and made to match the queue whenever the lock is
    /// released ([`Ledger`]).
    waiting: AtomicBool,
    /// Closed at shutdown: no checkouts, connections close as they come back. Set under the
    /// lock; read without it by the fast paths.
    closed: AtomicBool,
    /// RECONNECT: connections opened at or before this instant are closed instead of reused.
    stale_before: StaleMark,
    ids: Arc<AtomicU64>,
    /// ParameterStatus values of the newest server connection, replayed to logging-in clients.
    params: ArcSwapOption<ReportedParams>,
    /// Named statements clients of this pool prepared (transaction mode).
    statements: statements::StatementRegistry,
    /// How the pool's servers spell the values clients give at startup.
    spellings: crate::upstream::params::Spellings,
    /// A reload replaced this pool: connections close as they are released.
    retired: AtomicBool,
    /// Server and client counts of this pool's database and user.
    counters: Counters,
    /// Traffic counters (`/metrics`, `SHOW STATS`).
    stats: Arc<stats::PoolStats>,
    /// PAUSE: no checkouts until RESUME.
    paused: AtomicBool,
    /// Wakes clients waiting for RESUME.
    resumed: Notify,
    /// Wakes the task that ends waits (see `waiting.rs`).
    wait_watch: Arc<Notify>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The wait watchdog holds the pool weakly: wake it to see the pool is gone.
        self.wait_watch.notify_one();
        // Connections still counted (checked out ones hold the pool only weakly) stop
        // counting for the database and user with the pool.
        accounting::give_back_all(self.state.get_mut(), &self.counters);
    }
}

impl Shared {
    /// Closes a connection that left the pool's accounting (its slot is already handled).
    #[allow(
        clippy::boxed_local,
        reason = "connections live boxed in the pool; unboxing here copies one only on close"
    )]
    fn retire(&self, conn: PooledConn) {
        self.stats
            .local()
            .servers_closed
            .fetch_add(1, Ordering::Relaxed);
        tokio::spawn(conn.conn.terminate());
    }

    /// True when RECONNECT asked for connections as old as `conn` to be replaced.
    fn is_stale(&self, conn: &ServerConn) -> bool {
        self.stale_before.covers(conn.created)
    }

    /// Whether the pool was closed.
    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Whether an idle connection may be handed out at `now`: alive and undisturbed, younger
    /// than server_lifetime, not RECONNECTed.
    fn is_reusable(&self, conn: &ServerConn, now: Instant) -> bool {
        conn.is_quiet()
            && now.duration_since(conn.created) < self.settings.server_lifetime
            && !self.is_stale(conn)
    }
}

/// An instant kept in an atomic, readable without a lock: nanoseconds since the pool was made,
/// plus one (zero: not set).
struct StaleMark {
    epoch: Instant,
    mark: AtomicU64,
}

impl StaleMark {
    fn new() -> Self {
        Self {
            epoch: now(),
            mark: AtomicU64::new(0),
        }
    }

    fn encode(&self, t: Instant) -> u64 {
        let ns = t.saturating_duration_since(self.epoch).as_nanos();
        u64::try_from(ns).unwrap_or(u64::MAX - 1) + 1
    }

    /// Marks every instant up to `t`.
    fn set(&self, t: Instant) {
        self.mark.store(self.encode(t), Ordering::Relaxed);
    }

    /// Whether `t` is at or before the mark.
    fn covers(&self, t: Instant) -> bool {
        let mark = self.mark.load(Ordering::Relaxed);
        mark != 0 && self.encode(t) <= mark
    }
}

/// The pools' clock: tokio's, so unit tests can run on a paused clock. Without tokio's
/// `test-util` feature (every build but `cargo test`) this is `std::time::Instant::now()`.
/// The data path reads it once when a request starts and hands that instant to the checkout
/// (and the client's wait state), and the last ReadyForQuery's to the check-in: three reads
/// per transaction fewer than each part reading its own.
pub(crate) fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// A pool handle; cheap to clone.
#[derive(Clone)]
pub(crate) struct Pool {
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

impl Pool {
    /// [`Pool::new`] with the connector that opens its server connections.
    pub(crate) fn with_connector(
        database: String,
        user: String,
        settings: PoolSettings,
        upstream: Arc<Upstream>,
        ids: Arc<AtomicU64>,
        counters: Counters,
        connector: Connector,
    ) -> Self {
        let pool = Self {
            shared: Arc::new(Shared {
                database: Arc::from(database),
                user: Arc::from(user),
                settings,
                upstream,
                connector,
                state: Mutex::new(State::default()),
                idle: idle::IdleLists::default(),
                waiting: AtomicBool::new(false),
                closed: AtomicBool::new(false),
                stale_before: StaleMark::new(),
                ids,
                params: ArcSwapOption::empty(),
                statements: statements::StatementRegistry::default(),
                spellings: Default::default(),
                retired: AtomicBool::new(false),
                counters,
                stats: Arc::default(),
                paused: AtomicBool::new(false),
                resumed: Notify::new(),
                wait_watch: Arc::new(Notify::new()),
            }),
        };
        pool.shared.counters.register(&pool.shared);
        pool
    }

    /// Pool settings.
    pub(crate) fn settings(&self) -> &PoolSettings {
        &self.shared.settings
    }

    /// The upstream this pool connects to.
    pub(crate) fn upstream(&self) -> &Arc<Upstream> {
        &self.shared.upstream
    }

    /// Database name clients use.
    pub(crate) fn database(&self) -> &str {
        &self.shared.database
    }

    /// Pool user name.
    pub(crate) fn user(&self) -> &str {
        &self.shared.user
    }

    /// The database and user names, for a client's own references (shared, not copied per
    /// client).
    pub(crate) fn names(&self) -> (&Arc<str>, &Arc<str>) {
        (&self.shared.database, &self.shared.user)
    }

    /// Named statements prepared by this pool's clients.
    pub(crate) fn statements(&self) -> &statements::StatementRegistry {
        &self.shared.statements
    }

    /// How this pool's servers spell the values clients give at startup.
    pub(crate) fn spellings(&self) -> &crate::upstream::params::Spellings {
        &self.shared.spellings
    }

    /// Server parameters from the newest server connection, if one was ever opened.
    pub(crate) fn cached_params(&self) -> Option<Arc<ReportedParams>> {
        self.shared.params.load_full()
    }

    /// Counts a logging-in client for max_db_client_connections / max_user_client_connections;
    /// the returned guard uncounts it when dropped (at disconnect).
    pub(crate) fn admit_client(&self) -> Result<ClientAdmission, PoolError> {
        let s = &self.shared;
        s.counters.admit_client(&s.settings, &s.database, &s.user)
    }

    /// Whether `self` and `other` are the same pool.
    pub(crate) fn same_as(&self, other: &Pool) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// Whether a reload replaced this pool.
    pub(crate) fn is_retired(&self) -> bool {
        self.shared.retired.load(Ordering::Relaxed)
    }

    /// (idle, total, waiting) counts, for stats. Clients that gave up waiting (timed out,
    /// left, or took a reserve slot) leave a closed entry in the queue until it is next
    /// popped: they are not counted.
    pub(crate) fn counts(&self) -> (usize, usize, usize) {
        let st = Ledger::lock(&self.shared);
        let waiting = st.waiters.live();
        (self.shared.idle.len(), st.total(), waiting)
    }

    /// Connections checked out (or being opened) now.
    pub(crate) fn active(&self) -> usize {
        let st = Ledger::lock(&self.shared);
        st.total().saturating_sub(self.shared.idle.len())
    }

    /// Traffic counters.
    pub(crate) fn stats(&self) -> &Arc<stats::PoolStats> {
        &self.shared.stats
    }

    /// The idle connections now, for `SHOW SERVERS`.
    pub(crate) fn idle_servers(&self) -> Vec<IdleServer> {
        let mut out = Vec::new();
        self.shared.idle.for_each(|c| {
            out.push(IdleServer {
                id: c.id,
                backend_pid: c.key.0,
                host: Arc::clone(&c.host),
                created: c.created,
                last_used: c.last_used,
            })
        });
        out
    }
}
