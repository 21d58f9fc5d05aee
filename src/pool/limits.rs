//! Counts that span pools: server connections per database and per user
//! (`max_db_connections`, `max_user_connections`) and client connections
//! (`max_db_client_connections`, `max_user_client_connections`).
//!
//! Server counts change only when a connection is opened or closed, never on a checkout of an
//! idle one. They sit behind one registry-wide lock, which also holds the FIFO of pools whose
//! clients wait for a limit to have room. Lock order: a pool's lock may be held while taking
//! this one, never the reverse; giving slots back (which offers them to waiting pools, so
//! locks those pools) happens with no pool lock held. Pools change these counts only through
//! their [`Ledger`](super::accounting::Ledger), which keeps that order.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use super::{Pool, PoolError, Shared};
use crate::config::PoolSettings;

/// The registry-wide lock over server counts, and the pools waiting under a limit.
#[derive(Default)]
pub(crate) struct Limits {
    /// Pools with clients waiting because a database or user limit is reached, oldest first.
    blocked: Mutex<VecDeque<Weak<Shared>>>,
    /// Length of `blocked`, read without the lock on every check-in to idle.
    blocked_len: AtomicUsize,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits").finish_non_exhaustive()
    }
}

/// Connection counts of one database or one user, over all its pools.
#[derive(Default)]
pub(crate) struct Counter {
    /// Server connections (open or opening); changed only under the [`Limits`] lock.
    servers: AtomicUsize,
    /// Client connections logged in.
    clients: AtomicUsize,
    /// Pools counted here (for closing an idle connection of another pool).
    pools: Mutex<Vec<Weak<Shared>>>,
}

impl std::fmt::Debug for Counter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counter")
            .field("servers", &self.servers.load(Ordering::Relaxed))
            .field("clients", &self.clients.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Counter {
    /// Server connections counted now.
    pub(crate) fn servers(&self) -> usize {
        self.servers.load(Ordering::Relaxed)
    }
}

/// Which limit keeps a pool from opening a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Blocked {
    /// max_db_connections.
    Database,
    /// max_user_connections.
    User,
}

/// A pool's database and user counters.
#[derive(Debug, Clone)]
pub(crate) struct Counters {
    limits: Arc<Limits>,
    db: Arc<Counter>,
    user: Arc<Counter>,
}

impl Counters {
    /// Counters of one (database, user) pool.
    pub(crate) fn new(limits: Arc<Limits>, db: Arc<Counter>, user: Arc<Counter>) -> Self {
        Self { limits, db, user }
    }

    pub(super) fn register(&self, pool: &Arc<Shared>) {
        for c in [&self.db, &self.user] {
            let mut pools = c.pools.lock();
            pools.retain(|w| w.strong_count() > 0);
            pools.push(Arc::downgrade(pool));
        }
    }

    /// Counts one more server connection for the database and the user, unless a limit in
    /// `s` is reached; then, with `wait`, `pool` is queued to be offered the next free one.
    pub(super) fn take(
        &self,
        pool: &Arc<Shared>,
        s: &PoolSettings,
        wait: bool,
    ) -> Result<(), Blocked> {
        let mut blocked = self.limits.blocked.lock();
        let full = |c: &Counter, max: usize| max > 0 && c.servers.load(Ordering::Relaxed) >= max;
        let result = if full(&self.db, s.max_db_connections) {
            Err(Blocked::Database)
        } else if full(&self.user, s.max_user_connections) {
            Err(Blocked::User)
        } else {
            self.db.servers.fetch_add(1, Ordering::Relaxed);
            self.user.servers.fetch_add(1, Ordering::Relaxed);
            Ok(())
        };
        if result.is_err()
            && wait
            && !blocked
                .iter()
                .any(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(pool)))
        {
            blocked.push_back(Arc::downgrade(pool));
            self.limits
                .blocked_len
                .store(blocked.len(), Ordering::Relaxed);
        }
        result
    }

    /// Which limit in `s` is reached now, if any.
    pub(super) fn blocked_by(&self, s: &PoolSettings) -> Option<Blocked> {
        let _counts = self.limits.blocked.lock();
        let full = |c: &Counter, max: usize| max > 0 && c.servers.load(Ordering::Relaxed) >= max;
        if full(&self.db, s.max_db_connections) {
            Some(Blocked::Database)
        } else if full(&self.user, s.max_user_connections) {
            Some(Blocked::User)
        } else {
            None
        }
    }

    /// Uncounts `n` server connections and offers the room to waiting pools, oldest first.
    /// Must be called with no pool lock held.
    pub(super) fn give_back(&self, n: usize) {
        if n == 0 {
            return;
        }
        let waiting = {
            let mut blocked = self.limits.blocked.lock();
            self.db.servers.fetch_sub(n, Ordering::Relaxed);
            self.user.servers.fetch_sub(n, Ordering::Relaxed);
            self.limits.blocked_len.store(0, Ordering::Relaxed);
            std::mem::take(&mut *blocked)
        };
        // Each pool takes what it can and queues itself again if clients still wait; the
        // queue was emptied under the same lock the counts changed under, so no wake-up is
        // lost.
        for w in waiting {
            if let Some(pool) = w.upgrade() {
                Pool::offer_slots(&pool);
            }
        }
    }

    /// After a connection of this pool went idle: pools waiting under this database's or
    /// user's limit get room at once (by closing an idle connection, this one included)
    /// instead of at the next maintenance round. One atomic load when nobody waits.
    pub(super) fn relieve_waiting_siblings(&self) {
        if self.limits.blocked_len.load(Ordering::Relaxed) == 0 {
            return;
        }
        let blocked: Vec<Arc<Shared>> = self
            .limits
            .blocked
            .lock()
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        // Filtered (and the others dropped) after that lock is released: dropping a pool's last
        // reference gives its room back, which takes the same lock.
        for pool in blocked.iter().filter(|p| {
            Arc::ptr_eq(&p.counters.db, &self.db) || Arc::ptr_eq(&p.counters.user, &self.user)
        }) {
            Pool::relieve_shared(pool);
        }
    }

    /// Closes one idle connection of another pool counted under `limit`, if there is one.
    pub(super) fn evict_idle_elsewhere(&self, me: &Arc<Shared>, limit: Blocked) {
        let counter = match limit {
            Blocked::Database => &self.db,
            Blocked::User => &self.user,
        };
        let pools: Vec<Arc<Shared>> = counter
            .pools
            .lock()
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        for pool in pools {
            if !Arc::ptr_eq(&pool, me) && Pool::evict_one_idle(&pool) {
                return;
            }
        }
    }

    /// Counts a client for the database and the user; fails over their client limits.
    pub(super) fn admit_client(
        &self,
        s: &PoolSettings,
        database: &str,
        user: &str,
    ) -> Result<ClientAdmission, PoolError> {
        let db_before = self.db.clients.fetch_add(1, Ordering::Relaxed);
        let user_before = self.user.clients.fetch_add(1, Ordering::Relaxed);
        // Uncounts both when dropped, including on the error paths below.
        let admission = ClientAdmission {
            db: Arc::clone(&self.db),
            user: Arc::clone(&self.user),
        };
        if s.max_db_client_connections > 0 && db_before >= s.max_db_client_connections {
            return Err(PoolError::TooManyClients {
                kind: "database",
                name: database.to_owned(),
                key: "max_db_client_connections",
            });
        }
        if s.max_user_client_connections > 0 && user_before >= s.max_user_client_connections {
            return Err(PoolError::TooManyClients {
                kind: "user",
                name: user.to_owned(),
                key: "max_user_client_connections",
            });
        }
        Ok(admission)
    }
}

/// A client counted for its database and user; uncounted when dropped.
pub(crate) struct ClientAdmission {
    db: Arc<Counter>,
    user: Arc<Counter>,
}

impl std::fmt::Debug for ClientAdmission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientAdmission").finish_non_exhaustive()
    }
}

impl Drop for ClientAdmission {
    fn drop(&mut self) {
        self.db.clients.fetch_sub(1, Ordering::Relaxed);
        self.user.clients.fetch_sub(1, Ordering::Relaxed);
    }
}
