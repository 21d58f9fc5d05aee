//! The queue of clients waiting for a server connection, and the one task per pool that ends
//! waits: a waiter still queued at query_wait_timeout is told to give up, and waiters that
//! waited reserve_pool_timeout get reserve slots, oldest first (PgBouncer's janitor does both,
//! every third of a second).
//!
//! Why one task and not a timer per waiter: in a busy pool most checkouts wait (50 clients on
//! 20 servers), and a tokio timer per wait costs inserting it into and removing it from the
//! timer wheel, plus clock reads, in nearly every transaction. The queue is ordered by when each
//! checkout started, so its front always has the nearest query_wait_timeout and the task sleeps
//! until exactly then: deadlines stay exact, and a wait costs no timer. The task only needs
//! waking when a new waiter's deadline comes before the one it sleeps to (the first waiter
//! after the queue was empty, or one queued out of order; with `reserve_pool_timeout = 0`,
//! every waiter, as its reserve turn comes at once), and at RESUME.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, oneshot};

use super::accounting::Ledger;
use super::checkout::Grant;
use super::{Shared, now};

/// A client waiting for a server connection.
struct Waiter {
    tx: oneshot::Sender<Grant>,
    /// When its checkout started: query_wait_timeout and reserve_pool_timeout count from it.
    since: Instant,
}

/// What the pool's wait watchdog is doing (kept under the pool lock).
#[derive(Debug, Default, Clone, Copy)]
enum Watchdog {
    /// No client ever waited in this pool: there is no task yet.
    #[default]
    NotStarted,
    /// Asleep until woken: no one waits.
    Parked,
    /// Asleep until this instant.
    Until(Instant),
}

/// Waiting clients, oldest checkout first.
#[derive(Default)]
pub(super) struct WaitQueue {
    waiters: VecDeque<Waiter>,
    watchdog: Watchdog,
}

/// What the watchdog does after a look at the queue.
enum Next {
    /// Sleep until this instant (or until woken).
    At(Instant),
    /// Sleep until woken.
    Park,
    /// The pool is closed.
    Stop,
}

impl WaitQueue {
    /// Queues a checkout of `pool` (whose lock the caller holds) that started at `since`;
    /// starts or wakes the watchdog when this waiter's first deadline comes before the one it
    /// sleeps to.
    pub(super) fn push(&mut self, pool: &Arc<Shared>, since: Instant) -> oneshot::Receiver<Grant> {
        let (tx, rx) = oneshot::channel();
        // On one worker checkouts almost always queue in the order they started; one that
        // waited for RESUME or looked again after a failed health check may be older than the
        // last, and with several workers two checkouts may take the lock in the other order.
        // Either way it goes in near the back.
        let at = match self.waiters.back() {
            Some(last) if last.since > since => self.waiters.partition_point(|w| w.since <= since),
            _ => self.waiters.len(),
        };
        self.waiters.insert(at, Waiter { tx, since });
        let first_deadline = since + first_timeout(&pool.settings);
        match self.watchdog {
            Watchdog::Until(t) if t <= first_deadline => {}
            Watchdog::NotStarted => {
                self.watchdog = Watchdog::Until(first_deadline);
                tokio::spawn(watch(Arc::downgrade(pool), Arc::clone(&pool.wait_watch)));
            }
            Watchdog::Parked | Watchdog::Until(_) => {
                self.watchdog = Watchdog::Until(first_deadline);
                pool.wait_watch.notify_one();
            }
        }
        rx
    }

    /// Hands `grant` to the first waiter still waiting; gives it back when there is none.
    #[must_use]
    pub(super) fn hand(&mut self, mut grant: Grant) -> Option<Grant> {
        while let Some(w) = self.waiters.pop_front() {
            match w.tx.send(grant) {
                Ok(()) => return None,
                Err(back) => grant = back,
            }
        }
        Some(grant)
    }

    /// Forgets waiters that gave up (their checkout was dropped).
    pub(super) fn drop_gone(&mut self) {
        self.waiters.retain(|w| !w.tx.is_closed());
    }

    /// Lets go of every waiter: their checkouts fail as the pool being closed.
    pub(super) fn clear(&mut self) {
        self.waiters.clear();
    }

    /// Whether no one is queued (gone waiters count until [`WaitQueue::drop_gone`]).
    pub(super) fn is_empty(&self) -> bool {
        self.waiters.is_empty()
    }

    /// Clients waiting now.
    pub(super) fn live(&self) -> usize {
        self.waiters.iter().filter(|w| !w.tx.is_closed()).count()
    }

    /// Removes gone waiters from the front; the first live one.
    fn front_live(&mut self) -> Option<&Waiter> {
        while self.waiters.front().is_some_and(|w| w.tx.is_closed()) {
            self.waiters.pop_front();
        }
        self.waiters.front()
    }
}

/// The deadline the watchdog first has to act on for a waiter: reserve_pool_timeout when the
/// pool has a reserve that comes into play before query_wait_timeout, else query_wait_timeout.
fn first_timeout(s: &crate::config::PoolSettings) -> Duration {
    if has_reserve(s) {
        s.reserve_pool_timeout
    } else {
        s.query_wait_timeout
    }
}

fn has_reserve(s: &crate::config::PoolSettings) -> bool {
    s.reserve_pool_size > 0 && s.reserve_pool_timeout < s.query_wait_timeout
}

/// The watchdog task of one pool. It holds the pool weakly: the pool's drop wakes it to end.
async fn watch(pool: Weak<Shared>, wake: Arc<Notify>) {
    loop {
        let notified = wake.notified();
        tokio::pin!(notified);
        // Registered before the look, so a wake-up sent while it looks is not lost.
        notified.as_mut().enable();
        let next = match pool.upgrade() {
            Some(shared) => end_due_waits(&shared, now()),
            None => return,
        };
        match next {
            Next::Stop => return,
            Next::Park => notified.await,
            Next::At(t) => {
                tokio::select! {
                    biased;
                    _ = &mut notified => {}
                    _ = tokio::time::sleep_until(t.into()) => {}
                }
            }
        }
    }
}

/// Ends the waits that are due at `now`: query_wait_timeout, then reserve slots for the
/// oldest waiters past reserve_pool_timeout while the reserve has room. Returns when to look
/// again.
fn end_due_waits(shared: &Arc<Shared>, now: Instant) -> Next {
    let s = &shared.settings;
    let mut st = Ledger::lock(shared);
    if shared.is_closed() {
        return Next::Stop;
    }
    let wait = s.query_wait_timeout;
    while st
        .waiters
        .front_live()
        .is_some_and(|w| now.saturating_duration_since(w.since) >= wait)
    {
        if let Some(w) = st.waiters.waiters.pop_front() {
            // Gone meanwhile: nothing was handed to it.
            let _ = w.tx.send(Grant::TimedOut);
        }
    }
    let mut next_reserve = None;
    if has_reserve(s) {
        let due = |w: &Waiter| now.saturating_duration_since(w.since) >= s.reserve_pool_timeout;
        // Not while PAUSEd: no new server logins then (RESUME hands out the idle ones).
        while !shared.paused.load(Ordering::Relaxed) && st.waiters.front_live().is_some_and(due) {
            if st.total() >= s.size + s.reserve_pool_size
                || st.retry_pending(now).is_some()
                || st.take(shared, s, false).is_err()
            {
                break;
            }
            if st.total() > s.size {
                tracing::info!(database = %shared.database, user = %shared.user,
                    total = st.total(), "reserve pool used (a client waited reserve_pool_timeout)");
            }
            // To the waiter just checked: front_live() left it at the front.
            let handed = st
                .waiters
                .waiters
                .pop_front()
                .is_some_and(|w| w.tx.send(Grant::Slot).is_ok());
            if !handed {
                st.uncount(1);
            }
        }
        // Waiters past their reserve_pool_timeout that found no room try again when the next
        // one reaches its own (each waiter gets at least one try, as with a timer each).
        let q = &st.waiters.waiters;
        next_reserve = q
            .get(q.partition_point(due))
            .map(|w| w.since + s.reserve_pool_timeout);
    }
    let Some(front) = st.waiters.front_live() else {
        st.waiters.watchdog = Watchdog::Parked;
        return Next::Park;
    };
    let mut next = front.since + wait;
    if let Some(r) = next_reserve {
        next = next.min(r);
    }
    st.waiters.watchdog = Watchdog::Until(next);
    Next::At(next)
}
