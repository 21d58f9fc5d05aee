//! What the admin console and reloads do to a pool as a whole: PAUSE/RESUME, RECONNECT,
//! retirement after a reload, and closing at shutdown.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::accounting::Ledger;
use super::{Pool, PoolError, now};

impl Pool {
    /// PAUSE: no new checkouts (clients wait, within query_wait_timeout); checked-out
    /// connections finish what they do and come back idle.
    pub(crate) fn pause(&self) {
        self.shared.paused.store(true, Ordering::Relaxed);
    }

    /// RESUME: checkouts go on; idle connections go to clients that queued meanwhile.
    pub(crate) fn resume(&self) {
        let shared = &self.shared;
        shared.paused.store(false, Ordering::Relaxed);
        shared.resumed.notify_waiters();
        // Waiters past reserve_pool_timeout were not given reserve slots while paused.
        shared.wait_watch.notify_one();
        let idle = {
            let _st = Ledger::lock(shared);
            shared.idle.take_all()
        };
        // Through checkin: the first waiters get them, the rest go back to idle.
        for conn in idle {
            Pool::checkin(shared, conn);
        }
    }

    /// Whether the pool is paused.
    pub(crate) fn is_paused(&self) -> bool {
        self.shared.paused.load(Ordering::Relaxed)
    }

    /// Waits until RESUME, within query_wait_timeout.
    pub(super) async fn wait_resumed(&self, started: Instant) -> Result<(), PoolError> {
        let wait = self.shared.settings.query_wait_timeout;
        let resumed = async {
            loop {
                let notified = self.shared.resumed.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if !self.shared.paused.load(Ordering::Relaxed) || self.shared.is_closed() {
                    return;
                }
                notified.await;
            }
        };
        let left = wait.saturating_sub(now().saturating_duration_since(started));
        tokio::time::timeout(left, resumed)
            .await
            .map_err(|_| PoolError::WaitTimeout(wait))
    }

    /// RECONNECT: closes the idle connections now; the ones in use close when released, so
    /// every later checkout gets a connection opened after this call.
    pub(crate) fn reconnect(&self) {
        let idle = {
            let _st = Ledger::lock(&self.shared);
            self.shared.stale_before.set(now());
            self.shared.idle.take_all()
        };
        // Each freed slot goes to the first waiter, if any.
        for conn in idle {
            Pool::slot_freed(&self.shared);
            self.shared.retire(conn);
        }
    }

    /// A reload replaced this pool (its settings or upstream changed): its clients move to the
    /// new pool at their next checkout, its idle connections close now and the others as they
    /// are released. Unlike [`Pool::close`], checkouts still work meanwhile.
    pub(crate) fn retire(&self) {
        self.shared.retired.store(true, Ordering::Relaxed);
        self.close_idle(false);
    }

    /// Stops handing out connections and closes the idle ones; checked-out ones close on release.
    pub(crate) fn close(&self) {
        self.close_idle(true);
    }

    /// Closes every idle connection; with `close`, also marks the pool closed and lets go of
    /// its waiters (clients waiting for RESUME learn it too).
    fn close_idle(&self, close: bool) {
        let idle = {
            let mut st = Ledger::lock(&self.shared);
            if close {
                // Before the idle lists are emptied: see `Pool::checkin`.
                self.shared.closed.store(true, Ordering::SeqCst);
                st.waiters.clear();
                self.shared.resumed.notify_waiters();
                self.shared.wait_watch.notify_one();
            }
            let idle = self.shared.idle.take_all();
            st.uncount(idle.len());
            idle
        };
        for conn in idle {
            self.shared.retire(conn);
        }
    }
}
