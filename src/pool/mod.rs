//! Pools of server connections, one per (database, user).
//!
//! A pool's state sits behind a `parking_lot::Mutex` that is only held for a few pointer moves,
//! never across an `.await`. Clients that find no idle connection and no free slot wait in a
//! FIFO queue; a released connection (or a freed slot) is handed straight to the first waiter,
//! so waiting is fair and wake-ups are exact. A checked-out connection is an RAII [`Checkout`]:
//! if the session holding it ends without releasing it, the slot is freed and the connection
//! closed, so a dirty connection can never return to the pool by accident.

pub mod registry;
pub mod statements;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use arc_swap::ArcSwapOption;
use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::config::PoolSettings;
use crate::error::ClientFacing;
use crate::proto::sqlstate::SqlState;
use crate::upstream::Upstream;
use crate::upstream::connect::{UpstreamError, connect};
use crate::upstream::params::ParamMap;
use crate::upstream::server::ServerConn;

/// Getting a server connection failed.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// No connection became available within query_wait_timeout.
    #[error("query_wait_timeout: no server connection became available within {0:?}")]
    WaitTimeout(std::time::Duration),
    /// Opening a new connection failed.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The pool is shutting down or was replaced.
    #[error("the pool is closed")]
    Closed,
}

impl ClientFacing for PoolError {
    fn sqlstate(&self) -> SqlState {
        match self {
            PoolError::WaitTimeout(_) => SqlState::QUERY_CANCELED,
            PoolError::Upstream(e) => e.sqlstate(),
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

/// What a waiter is given.
// Unboxed on purpose: a grant only passes through a oneshot, and boxing would allocate per
// hand-over.
#[allow(clippy::large_enum_variant)]
enum Grant {
    /// A ready connection.
    Conn(ServerConn),
    /// Permission to open a new connection (a slot was freed).
    Slot,
}

#[derive(Default)]
struct State {
    /// Idle connections, most recently used last (reused first: warm caches, and the others age
    /// out through server_idle_timeout).
    idle: Vec<ServerConn>,
    /// Connections that exist or are being opened: idle + checked out + connecting.
    total: usize,
    waiters: VecDeque<oneshot::Sender<Grant>>,
    closed: bool,
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
            tokio::spawn(conn.terminate());
        }
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        if self.conn.take().is_some() {
            Pool::slot_freed(&self.pool);
        }
    }
}

impl Pool {
    /// A new, empty pool.
    pub fn new(
        database: String,
        user: String,
        settings: PoolSettings,
        upstream: Arc<Upstream>,
        ids: Arc<AtomicU64>,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                database,
                user,
                settings,
                upstream,
                state: Mutex::new(State::default()),
                ids,
                params: ArcSwapOption::empty(),
                statements: statements::StatementRegistry::default(),
            }),
        }
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

    /// Gets a server connection: an idle one, a new one if under pool_size, or waits in FIFO
    /// order up to query_wait_timeout.
    ///
    /// # Cancel safety
    /// Cancel safe: a grant arriving after cancellation is returned to the pool.
    pub async fn checkout(&self) -> Result<Checkout, PoolError> {
        let shared = &self.shared;
        let rx = {
            let mut st = shared.state.lock();
            if st.closed {
                return Err(PoolError::Closed);
            }
            let now = Instant::now();
            let mut found = None;
            while let Some(conn) = st.idle.pop() {
                if conn.is_quiet()
                    && now.duration_since(conn.created) < shared.settings.server_lifetime
                {
                    found = Some(conn);
                    break;
                }
                // Dead, disturbed while idle, or too old: close it and look further.
                st.total -= 1;
                tokio::spawn(conn.terminate());
            }
            if let Some(conn) = found {
                return Ok(self.wrap(conn));
            }
            if st.total < shared.settings.size {
                st.total += 1;
                None
            } else {
                let (tx, rx) = oneshot::channel();
                st.waiters.push_back(tx);
                Some(rx)
            }
        };
        let Some(rx) = rx else {
            return self.open().await;
        };
        let wait = shared.settings.query_wait_timeout;
        let mut rx = WaitGuard { rx, pool: shared };
        match tokio::time::timeout(wait, &mut rx.rx).await {
            Ok(Ok(Grant::Conn(conn))) => Ok(self.wrap(conn)),
            Ok(Ok(Grant::Slot)) => self.open().await,
            Ok(Err(_)) => Err(PoolError::Closed),
            Err(_) => Err(PoolError::WaitTimeout(wait)),
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
        let id = self.shared.ids.fetch_add(1, Ordering::Relaxed);
        // Boxed: opening a connection is rare, and its large state would otherwise sit in
        // every session future for its whole life.
        match Box::pin(connect(&self.shared.upstream, id)).await {
            Ok(conn) => {
                self.shared
                    .params
                    .store(Some(Arc::new(conn.params.clone())));
                tracing::debug!(server = id, database = %self.shared.database, "server connection opened");
                Ok(self.wrap(conn))
            }
            Err(e) => {
                Pool::slot_freed(&self.shared);
                Err(e.into())
            }
        }
    }

    fn checkin(shared: &Arc<Shared>, mut conn: ServerConn) {
        let now = Instant::now();
        conn.last_used = now;
        if now.duration_since(conn.created) >= shared.settings.server_lifetime {
            Pool::slot_freed(shared);
            tokio::spawn(conn.terminate());
            return;
        }
        let mut st = shared.state.lock();
        if st.closed {
            st.total -= 1;
            drop(st);
            tokio::spawn(conn.terminate());
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
        }
    }

    /// A connection stopped existing: give its slot to the first waiter, or shrink `total`.
    fn slot_freed(shared: &Shared) {
        let mut st = shared.state.lock();
        if !st.closed {
            while let Some(w) = st.waiters.pop_front() {
                if w.send(Grant::Slot).is_ok() {
                    return;
                }
            }
        }
        st.total -= 1;
    }

    /// Closes idle connections past server_idle_timeout or server_lifetime, or disturbed while
    /// idle. Called periodically by the maintenance task.
    pub fn sweep(&self) {
        let s = &self.shared.settings;
        let now = Instant::now();
        let mut closing = Vec::new();
        {
            let mut st = self.shared.state.lock();
            let before = st.idle.len();
            let mut kept = Vec::with_capacity(before);
            for conn in st.idle.drain(..) {
                if now.duration_since(conn.last_used) >= s.server_idle_timeout
                    || now.duration_since(conn.created) >= s.server_lifetime
                    || !conn.is_quiet()
                {
                    closing.push(conn);
                } else {
                    kept.push(conn);
                }
            }
            st.idle = kept;
            st.total -= closing.len();
        }
        for conn in closing {
            tokio::spawn(conn.terminate());
        }
        self.shared.statements.sweep();
    }

    /// Stops handing out connections and closes the idle ones; checked-out ones close on release.
    pub fn close(&self) {
        let idle = {
            let mut st = self.shared.state.lock();
            st.closed = true;
            st.waiters.clear();
            st.total -= st.idle.len();
            std::mem::take(&mut st.idle)
        };
        for conn in idle {
            tokio::spawn(conn.terminate());
        }
    }

    /// (idle, total, waiting) counts, for stats.
    pub fn counts(&self) -> (usize, usize, usize) {
        let st = self.shared.state.lock();
        (st.idle.len(), st.total, st.waiters.len())
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
