//! Background upkeep the maintenance task runs on every pool each round: closing idle
//! connections that aged out (keeping `min_pool_size`), opening connections up to
//! `min_pool_size`, and making room for clients that wait under a database or user limit.

use std::sync::Arc;

use super::accounting::Ledger;
use super::checkout::Grant;
use super::{Pool, Shared, now};

impl Pool {
    /// Closes idle connections past server_idle_timeout (keeping min_pool_size) or
    /// server_lifetime, disturbed while idle, or RECONNECTed (one a check-in put back while
    /// RECONNECT ran). Called periodically by the maintenance task.
    pub(crate) fn sweep(&self) {
        let s = &self.shared.settings;
        let now = now();
        let mut closing = Vec::new();
        {
            let mut st = Ledger::lock(&self.shared);
            let keep_min = s.min_pool_size.min(s.size);
            let mut total = st.total();
            let idle = self.shared.idle.take_all_oldest_first();
            let mut kept = Vec::with_capacity(idle.len());
            // Oldest first, so min_pool_size keeps the most recently used.
            for (list, conn) in idle {
                let idle_too_long =
                    now.duration_since(conn.last_used) >= s.server_idle_timeout && total > keep_min;
                if idle_too_long
                    || now.duration_since(conn.created) >= s.server_lifetime
                    || !conn.is_quiet()
                    || self.shared.is_stale(&conn)
                {
                    total -= 1;
                    closing.push(conn);
                } else {
                    kept.push((list, conn));
                }
            }
            self.shared.idle.put_back(kept);
            st.uncount(closing.len());
        }
        for conn in closing {
            self.shared.retire(conn);
        }
        self.shared.statements.sweep();
    }

    /// Opens connections in the background until the pool has min_pool_size (at most
    /// pool_size, within the database and user limits, not while server_login_retry runs).
    /// Called periodically by the maintenance task.
    pub(crate) fn fill_to_min(&self) {
        let shared = &self.shared;
        let s = &shared.settings;
        let want = s.min_pool_size.min(s.size);
        if want == 0 {
            return;
        }
        let mut opening = 0;
        {
            let mut st = Ledger::lock(shared);
            if shared.is_closed() || st.retry_pending(now()).is_some() {
                return;
            }
            while st.total() < want && st.take(shared, s, false).is_ok() {
                opening += 1;
            }
        }
        for _ in 0..opening {
            let pool = self.clone();
            tokio::spawn(async move {
                // One attempt: no client waits for it, and the next round tries again.
                match pool.connect_in_slot(None).await {
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
    pub(crate) fn relieve(&self) {
        Pool::relieve_shared(&self.shared);
    }

    pub(super) fn relieve_shared(shared: &Arc<Shared>) {
        {
            let mut st = Ledger::lock(shared);
            // Clients that gave up leave their sender behind; they wait for nothing.
            st.waiters.drop_gone();
            if shared.is_closed() || st.waiters.is_empty() || st.total() >= shared.settings.size {
                return;
            }
        }
        match shared.counters.blocked_by(&shared.settings) {
            Some(limit) => shared.counters.evict_idle_elsewhere(shared, limit),
            None => Pool::offer_slots(shared),
        }
    }

    /// Offers slots to this pool's waiters that wait for a database or user limit (called
    /// when such a limit may have room again); re-registers the pool if some still wait.
    pub(super) fn offer_slots(shared: &Arc<Shared>) {
        let s = &shared.settings;
        let mut st = Ledger::lock(shared);
        while !shared.is_closed() && !st.waiters.is_empty() && st.total() < s.size {
            if st.take(shared, s, true).is_err() {
                break;
            }
            if st.waiters.hand(Grant::Slot).is_some() {
                // Every waiter had given up: the room goes back once the lock is released.
                st.uncount(1);
            }
        }
    }

    /// Closes this pool's least recently used idle connection, if it has one; true if it did.
    pub(super) fn evict_one_idle(shared: &Shared) -> bool {
        let mut st = Ledger::lock(shared);
        let Some(conn) = shared.idle.pop_oldest() else {
            return false;
        };
        st.uncount(1);
        drop(st);
        tracing::debug!(server = conn.id, database = %shared.database, user = %shared.user,
            "idle server connection closed to make room under a database/user limit");
        shared.retire(conn);
        true
    }
}
