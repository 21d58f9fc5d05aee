//! The one place a pool counts and uncounts its server connections.
//!
//! A connection (open, checked out or being opened) is counted twice: in its pool's `total`
//! (under the pool lock) and in its database's and its user's server counts (under the
//! registry-wide limits lock, see [`super::limits`]). Both change together, here and nowhere
//! else. Uncounting has an ordering rule: giving room back to the database and user counts
//! offers it to pools waiting under those limits, which locks them (possibly this very pool),
//! so it must happen after the pool lock is released. [`Ledger`] holds the pool lock, records
//! what was uncounted, and gives it back when it is dropped, after unlocking: no caller can get
//! the order wrong or forget the second half.
//!
//! The ledger also keeps the pool's `waiting` flag (read without the lock by check-ins) equal to
//! whether its queue holds anyone, each time the lock is released: no code that queues or
//! unqueues a client has to remember it.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::MutexGuard;

use super::limits::{Blocked, Counters};
use super::{Shared, State};
use crate::config::PoolSettings;

/// A pool's count of its server connections: idle + checked out + being opened. Only a
/// [`Ledger`] changes it.
#[derive(Debug, Default)]
pub(super) struct Slots {
    total: usize,
}

/// A pool's state, locked, together with its database's and user's server counts.
pub(super) struct Ledger<'a> {
    // INVARIANT: declared before `give_back`, so it is dropped first: the pool lock is
    // released before the uncounted room is given back (which may lock this pool again).
    state: MutexGuard<'a, State>,
    give_back: GiveBack<'a>,
    waiting: &'a AtomicBool,
}

impl Drop for Ledger<'_> {
    fn drop(&mut self) {
        // Before the lock is released (fields drop after this), so these stores happen in the
        // order the lock was held.
        let queued = !self.state.waiters.is_empty();
        if self.waiting.load(Ordering::Relaxed) != queued {
            self.waiting.store(queued, Ordering::SeqCst);
        }
    }
}

/// Room uncounted under the pool lock, given back to the database and user when dropped.
struct GiveBack<'a> {
    counters: &'a Counters,
    n: usize,
}

impl Drop for GiveBack<'_> {
    fn drop(&mut self) {
        self.counters.give_back(self.n);
    }
}

impl<'a> Ledger<'a> {
    /// Locks `pool`'s state.
    pub(super) fn lock(pool: &'a Shared) -> Self {
        Self {
            state: pool.state.lock(),
            give_back: GiveBack {
                counters: &pool.counters,
                n: 0,
            },
            waiting: &pool.waiting,
        }
    }

    /// Marks the pool as having clients queued, before a checkout looks at the idle lists:
    /// a check-in that puts a connection on a list after that look sees the mark (and hands
    /// the connection over under the lock); one that did it before, the look finds.
    pub(super) fn mark_waiting(&self) {
        if !self.waiting.load(Ordering::Relaxed) {
            self.waiting.store(true, Ordering::SeqCst);
        }
    }

    /// Counts one more connection for `pool` (whose lock this is) and for its database and
    /// user, unless a limit in `s` is reached; then, with `wait`, `pool` is queued to be
    /// offered the next room under that limit.
    pub(super) fn take(
        &mut self,
        pool: &Arc<Shared>,
        s: &PoolSettings,
        wait: bool,
    ) -> Result<(), Blocked> {
        self.give_back.counters.take(pool, s, wait)?;
        self.state.slots.total += 1;
        Ok(())
    }

    /// `n` counted connections stopped existing (or counted room went unused): uncounted in
    /// the pool now, and for the database and user once the lock is released.
    pub(super) fn uncount(&mut self, n: usize) {
        self.state.slots.total -= n;
        self.give_back.n += n;
    }

    /// Connections this pool counts now.
    pub(super) fn total(&self) -> usize {
        self.state.slots.total
    }
}

/// When a pool is dropped: gives back to its database and user every connection it still
/// counts (a checkout that outlives its pool closes its connection uncounted).
pub(super) fn give_back_all(state: &mut State, counters: &Counters) {
    counters.give_back(std::mem::take(&mut state.slots.total));
}

impl Deref for Ledger<'_> {
    type Target = State;

    fn deref(&self) -> &State {
        &self.state
    }
}

impl DerefMut for Ledger<'_> {
    fn deref_mut(&mut self) -> &mut State {
        &mut self.state
    }
}
