//! Checking a server connection out of a pool and back in: the RAII [`Checkout`], the FIFO
//! queue of waiting clients (cancel safe), the reserve pool, and handing a released connection
//! or a freed slot straight to the first waiter.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::accounting::Ledger;
use super::limits::Blocked;
use super::{Pool, PoolError, PooledConn, Shared, now};
use crate::upstream::server::ServerConn;

/// Longest a health check of an idle server connection may take.
const MAX_CHECK_TIME: Duration = Duration::from_secs(5);

/// What a waiter is given.
pub(super) enum Grant {
    /// A ready connection.
    Conn(PooledConn),
    /// Permission to open a new connection (a slot was freed, or a reserve slot taken).
    Slot,
    /// query_wait_timeout passed.
    TimedOut,
}

/// A checked-out server connection. Release it with [`Checkout::release_to`] (or
/// [`Checkout::release`]) when it is clean; dropping it closes the connection and frees its
/// slot. It reaches its pool through the connection's weak reference: checking out and in takes
/// no reference to the pool. If the pool is gone, the connection closes and nothing is counted
/// (the pool gave its counts back when it was dropped).
pub(crate) struct Checkout {
    conn: Option<PooledConn>,
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
    pub(crate) fn conn(&mut self) -> &mut ServerConn {
        // INVARIANT: `conn` is Some until release/drop consume the Checkout.
        match self.conn.as_mut() {
            Some(c) => c,
            None => unreachable!("checkout used after release"),
        }
    }

    /// Read-only access to the connection.
    pub(crate) fn conn_ref(&self) -> &ServerConn {
        match self.conn.as_ref() {
            Some(c) => c,
            None => unreachable!("checkout used after release"),
        }
    }

    /// Returns a clean connection (idle, no transaction, nothing in flight) to the pool, or
    /// closes it gracefully if the pool is gone.
    pub(crate) fn release(mut self) {
        if let Some(conn) = self.conn.take() {
            match conn.pool.upgrade() {
                Some(pool) => Pool::checkin(&pool, conn),
                None => drop(tokio::spawn(conn.conn.terminate())),
            }
        }
    }

    /// [`Checkout::release`] through `pool`, the handle the caller holds of the pool the
    /// connection came from: no reference to the pool is taken (the data path's check-in).
    pub(crate) fn release_to(self, pool: &Pool) {
        self.release_to_at(pool, now());
    }

    /// [`Checkout::release_to`] with the time of the connection's last use, read by the
    /// caller (no clock read here).
    pub(crate) fn release_to_at(mut self, pool: &Pool, used: Instant) {
        match self.conn.take() {
            Some(conn) if std::ptr::eq(conn.pool.as_ptr(), Arc::as_ptr(&pool.shared)) => {
                Pool::checkin_at(&pool.shared, conn, used);
            }
            conn => {
                self.conn = conn;
                self.release();
            }
        }
    }

    /// Closes the connection gracefully (Terminate) in the background and frees its slot.
    pub(crate) fn close(mut self) {
        if let Some(conn) = self.conn.take() {
            match conn.pool.upgrade() {
                Some(pool) => {
                    Pool::slot_freed(&pool);
                    pool.retire(conn);
                }
                None => drop(tokio::spawn(conn.conn.terminate())),
            }
        }
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take()
            && let Some(pool) = conn.pool.upgrade()
        {
            pool.stats
                .local()
                .servers_closed
                .fetch_add(1, Ordering::Relaxed);
            Pool::slot_freed(&pool);
        }
    }
}

/// A checkout step that must wait: a health check, a new connection, or a queue.
type SlowStep<'a> = Pin<Box<dyn Future<Output = Result<Option<Checkout>, PoolError>> + Send + 'a>>;

/// What a checkout found under the lock.
enum Step {
    /// An idle connection; `check` when it sat unused longer than server_check_delay.
    Idle { conn: PooledConn, check: bool },
    /// A slot was taken: open a new connection.
    Open,
    /// Queued; `blocked` when a database or user limit (not pool_size) is what is full.
    Wait {
        rx: oneshot::Receiver<Grant>,
        blocked: Option<Blocked>,
    },
}

impl Pool {
    /// Gets a server connection: an idle one (health-checked first when it sat unused longer
    /// than server_check_delay), a new one if under pool_size and the database and user
    /// limits, or waits in FIFO order up to query_wait_timeout (after reserve_pool_timeout it
    /// may open one of reserve_pool_size extra connections).
    ///
    /// # Cancel safety
    /// Cancel safe: a grant arriving after cancellation is returned to the pool, and a
    /// connection being checked is closed and its slot freed.
    pub(crate) async fn checkout(&self) -> Result<Checkout, PoolError> {
        self.checkout_at(now()).await
    }

    /// [`Pool::checkout`] for a request that arrived at `started` (read from [`super::now`]
    /// by the caller, microseconds ago at most): query_wait_timeout and the wait statistics
    /// count from it.
    pub(crate) async fn checkout_at(&self, started: Instant) -> Result<Checkout, PoolError> {
        let r = self.checkout_inner(started).await;
        if let Ok((_, waited)) = &r {
            match waited {
                // Taken at once: no second clock read for a wait that did not happen.
                false => self.shared.stats.record_no_wait(),
                true => self
                    .shared
                    .stats
                    .record_wait(now().saturating_duration_since(started)),
            }
        }
        r.map(|(c, _)| c)
    }

    /// The checkout, and whether it had to wait (anything but an idle connection at once).
    async fn checkout_inner(&self, started: Instant) -> Result<(Checkout, bool), PoolError> {
        if self.shared.paused.load(Ordering::Relaxed) {
            // Boxed: rare, and its state would otherwise sit in every session future.
            Box::pin(self.wait_resumed(started)).await?;
        }
        loop {
            // Everything but an idle connection at once is boxed: rare once the pool is warm,
            // and their states would otherwise be part of every transaction's state (which is
            // allocated and moved per transaction). Only the wait is awaited inside the match:
            // its future is small, and the match holds nothing else across that await.
            let slow: SlowStep<'_> = match self.step(started)? {
                Step::Idle { conn, check: false } => return Ok((self.wrap(conn), false)),
                Step::Idle { conn, check: true } => Box::pin(self.checked(self.wrap(conn))),
                Step::Open => {
                    let deadline = self.deadline(started);
                    Box::pin(async move { self.open(deadline).await.map(Some) })
                }
                // Not boxed: waiting is common in a busy pool, and this part of it is small.
                Step::Wait { rx, blocked } => match self.wait(rx, blocked).await? {
                    Some(conn) => return Ok((conn, true)),
                    None => {
                        let deadline = self.deadline(started);
                        Box::pin(async move { self.open(deadline).await.map(Some) })
                    }
                },
            };
            if let Some(c) = slow.await? {
                return Ok((c, true));
            }
        }
    }

    /// Health-checks an idle connection that sat unused longer than server_check_delay. None
    /// when it failed (it is closed and its slot freed: look again).
    async fn checked(&self, mut out: Checkout) -> Result<Option<Checkout>, PoolError> {
        let s = &self.shared.settings;
        let limit = s.server_connect_timeout.min(MAX_CHECK_TIME);
        if out.conn().check(&s.server_check_query, limit).await {
            return Ok(Some(out));
        }
        tracing::info!(server = out.conn_ref().id, database = %self.shared.database,
            "idle server connection failed its health check; closed");
        Ok(None)
    }

    /// Until when a checkout that started at `started` may wait (query_wait_timeout).
    fn deadline(&self, started: Instant) -> Instant {
        started + self.shared.settings.query_wait_timeout
    }

    /// What a checkout does next; `now` is when the checkout started (microseconds ago at
    /// most: one clock read per checkout). First this worker's idle list, without the pool
    /// lock; then, under the lock, the other workers' lists, a new connection or the queue.
    fn step(&self, now: Instant) -> Result<Step, PoolError> {
        let shared = &self.shared;
        if shared.is_closed() {
            return Err(PoolError::Closed);
        }
        // With clients queued, connections go to them as they come back: the idle lists are
        // empty, and this checkout queues behind them (under the lock, which looks again).
        if shared.waiting.load(Ordering::Relaxed) {
            return self.step_locked(now, None);
        }
        let unusable = match shared.idle.pop_local() {
            Some(conn) if shared.is_reusable(&conn, now) => return Ok(self.idle_step(conn, now)),
            other => other,
        };
        self.step_locked(now, unusable)
    }

    fn idle_step(&self, conn: PooledConn, now: Instant) -> Step {
        let check = now.duration_since(conn.last_used) >= self.shared.settings.server_check_delay;
        Step::Idle { conn, check }
    }

    /// The locked part of a checkout; `unusable` is an idle connection the unlocked part took
    /// and found dead, disturbed, too old or RECONNECTed (closed here).
    fn step_locked(&self, now: Instant, unusable: Option<PooledConn>) -> Result<Step, PoolError> {
        let shared = &self.shared;
        let s = &shared.settings;
        let mut st = Ledger::lock(shared);
        if let Some(conn) = unusable {
            st.uncount(1);
            shared.retire(conn);
        }
        if shared.is_closed() {
            return Err(PoolError::Closed);
        }
        // With clients queued already, connections go to them as they come back, so the idle
        // lists are empty (but for a PAUSE, whose RESUME hands them out, and connections whose
        // check-in is about to hand them over, having seen `waiting`): this checkout queues
        // behind them without looking at other workers' lists.
        if st.waiters.is_empty() {
            st.mark_waiting();
            while let Some(conn) = shared.idle.pop_any() {
                if shared.is_reusable(&conn, now) {
                    return Ok(self.idle_step(conn, now));
                }
                // Dead, disturbed while idle, too old or RECONNECTed: close it, look further.
                st.uncount(1);
                shared.retire(conn);
            }
        }
        #[cfg(test)]
        race::reached(race::Point::CheckoutAfterIdleScan);
        if st.total() >= s.size {
            let rx = st.waiters.push(shared, now);
            return Ok(Step::Wait { rx, blocked: None });
        }
        if let Some(err) = st.retry_pending(now) {
            return Err(err);
        }
        match st.take(shared, s, true) {
            Ok(()) => Ok(Step::Open),
            Err(blocked) => {
                // A database or user limit is reached: this pool is now registered to be
                // offered the next slot under it.
                let rx = st.waiters.push(shared, now);
                Ok(Step::Wait {
                    rx,
                    blocked: Some(blocked),
                })
            }
        }
    }

    /// Waits for a grant: a connection (Some), or a slot to open one in (None). The pool's
    /// wait watchdog ends the wait at query_wait_timeout and hands out reserve slots (see
    /// `waiting.rs`): no timer here.
    async fn wait(
        &self,
        rx: oneshot::Receiver<Grant>,
        blocked: Option<Blocked>,
    ) -> Result<Option<Checkout>, PoolError> {
        let shared = &self.shared;
        let mut rx = WaitGuard { rx, pool: shared };
        if let Some(limit) = blocked {
            // PgBouncer's answer to a full database or user: close an idle connection another
            // pool of it holds. Its slot goes to the first pool waiting under the limit.
            shared.counters.evict_idle_elsewhere(shared, limit);
        }
        match (&mut rx.rx).await {
            Ok(Grant::Conn(conn)) => Ok(Some(self.wrap(conn))),
            Ok(Grant::Slot) => {
                let pending = Ledger::lock(shared).retry_pending(now());
                if let Some(err) = pending {
                    // Do not attempt while server_login_retry runs: pass the slot on (the next
                    // waiter fails fast the same way) and tell this client why.
                    Pool::slot_freed(shared);
                    return Err(err);
                }
                Ok(None)
            }
            Ok(Grant::TimedOut) => Err(PoolError::WaitTimeout(shared.settings.query_wait_timeout)),
            Err(_) => Err(PoolError::Closed),
        }
    }

    pub(super) fn wrap(&self, conn: PooledConn) -> Checkout {
        Checkout { conn: Some(conn) }
    }

    /// Takes back a connection a client released (or one just opened for no one): it goes to
    /// the first waiter, else to this worker's idle list; closed when too old, RECONNECTed,
    /// retired or the pool closed. With no one queued it takes only the idle list's lock.
    pub(super) fn checkin(shared: &Arc<Shared>, conn: PooledConn) {
        Self::checkin_at(shared, conn, now());
    }

    /// [`Pool::checkin`] of a connection last used at `now`.
    pub(super) fn checkin_at(shared: &Arc<Shared>, mut conn: PooledConn, now: Instant) {
        conn.last_used = now;
        if now.duration_since(conn.created) >= shared.settings.server_lifetime
            || shared.retired.load(Ordering::Relaxed)
        {
            Pool::slot_freed(shared);
            shared.retire(conn);
            return;
        }
        if !shared.waiting.load(Ordering::SeqCst) && !shared.is_closed() && !shared.is_stale(&conn)
        {
            #[cfg(test)]
            race::reached(race::Point::CheckinBetweenLookAndPush);
            let created = conn.created;
            shared.idle.push_local(conn);
            // A checkout marks `waiting` before it looks at the idle lists, and closing,
            // retiring and RECONNECT mark the pool before they empty them: if any of that
            // happened after the loads above, the loads below see it, and the connection is
            // handed over or closed under the lock.
            if shared.waiting.load(Ordering::SeqCst)
                || shared.is_closed()
                || shared.retired.load(Ordering::SeqCst)
                || shared.stale_before.covers(created)
            {
                Pool::settle(shared);
            }
            shared.counters.relieve_waiting_siblings();
            return;
        }
        let mut st = Ledger::lock(shared);
        if shared.is_closed() || shared.is_stale(&conn) {
            // Its slot goes to the first waiter (counted out when the pool is closed).
            shared.retire(conn);
            Pool::slot_freed_locked(shared, &mut st);
            return;
        }
        if shared.paused.load(Ordering::Relaxed) {
            // PAUSE: waiters stay waiting; RESUME hands idle connections to them.
            shared.idle.push_local(conn);
            return;
        }
        if let Some(Grant::Conn(conn)) = st.waiters.hand(Grant::Conn(conn)) {
            shared.idle.push_local(conn);
            drop(st);
            shared.counters.relieve_waiting_siblings();
        }
    }

    /// Under the pool lock, after a check-in raced with a client queueing, the pool closing,
    /// retiring or a RECONNECT: every idle connection that may not be reused closes (when the
    /// pool closed or retired, all of them), its slot going to the first waiter; the others go
    /// to waiters, most recently used first (not while PAUSEd: RESUME does that), and the rest
    /// back to their lists.
    fn settle(shared: &Shared) {
        let mut st = Ledger::lock(shared);
        let closing = shared.is_closed() || shared.retired.load(Ordering::Relaxed);
        let paused = shared.paused.load(Ordering::Relaxed);
        let now = now();
        let mut kept = Vec::new();
        for (list, conn) in shared.idle.take_all_oldest_first().into_iter().rev() {
            if closing || !shared.is_reusable(&conn, now) {
                shared.retire(conn);
                Pool::slot_freed_locked(shared, &mut st);
                continue;
            }
            if paused || st.waiters.is_empty() {
                kept.push((list, conn));
                continue;
            }
            if let Some(Grant::Conn(conn)) = st.waiters.hand(Grant::Conn(conn)) {
                // Everyone queued had given up.
                kept.push((list, conn));
            }
        }
        kept.reverse();
        shared.idle.put_back(kept);
    }

    /// A connection stopped existing: give its slot to the first waiter, or uncount it (which
    /// may let another pool under the same database or user limit open one).
    pub(super) fn slot_freed(shared: &Shared) {
        let mut st = Ledger::lock(shared);
        Pool::slot_freed_locked(shared, &mut st);
    }

    /// [`Pool::slot_freed`] under the pool lock.
    pub(super) fn slot_freed_locked(shared: &Shared, st: &mut Ledger<'_>) {
        // A reserve connection's slot is not handed on: the pool shrinks back to pool_size.
        if !shared.is_closed()
            && st.total() <= shared.settings.size
            && st.waiters.hand(Grant::Slot).is_none()
        {
            return;
        }
        st.uncount(1);
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
            Ok(Grant::TimedOut) | Err(_) => {}
        }
    }
}

/// The two windows where a check-in and a checkout on other workers race, for tests to run
/// the other side in: a check-in between its look at `waiting` and its push to an idle list,
/// and a checkout between its look at the idle lists and queueing.
#[cfg(test)]
mod race {
    use std::cell::{Cell, RefCell};

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(super) enum Point {
        CheckinBetweenLookAndPush,
        CheckoutAfterIdleScan,
    }

    thread_local! {
        /// Where the hook waits, checked first: the benchmark in `pool/tests/idle.rs` runs
        /// through these points millions of times.
        static ARMED: Cell<Option<Point>> = const { Cell::new(None) };
        static HOOK: RefCell<Option<Box<dyn FnOnce()>>> = const { RefCell::new(None) };
    }

    /// Runs `f` once, the next time this thread reaches `at`.
    pub(super) fn set(at: Point, f: impl FnOnce() + 'static) {
        HOOK.with(|h| *h.borrow_mut() = Some(Box::new(f)));
        ARMED.with(|a| a.set(Some(at)));
    }

    #[inline]
    pub(super) fn reached(at: Point) {
        if ARMED.with(Cell::get) != Some(at) {
            return;
        }
        ARMED.with(|a| a.set(None));
        if let Some(f) = HOOK.with(|h| h.borrow_mut().take()) {
            f();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::*;
    use crate::config::PoolSettings;
    use crate::pool::Connector;
    use crate::pool::fake::FakeUpstream;
    use crate::pool::registry::{Database, Registry};
    use crate::upstream::Upstream;
    use crate::worker::{set_count_for_this_thread, set_current};

    /// A client that queues on worker 1 while a check-in on worker 0 is between its look at
    /// `waiting` (nobody) and its push: the check-in's second look sees the client and hands it
    /// the connection, which would otherwise sit idle while the client waits.
    /// A pool of one connection for two workers, used from worker 0.
    fn two_worker_pool() -> Pool {
        set_count_for_this_thread(2);
        set_current(0);
        let fake = FakeUpstream::new();
        let db = Database {
            name: "db".to_owned(),
            upstream: Upstream::never_contacted(),
            settings: PoolSettings {
                size: 1,
                server_check_delay: Duration::from_secs(3600),
                ..PoolSettings::default()
            },
            fingerprint: [0; 32],
            passthrough: None,
        };
        let reg = Registry::new(vec![db], Default::default())
            .with_connector(Connector::Fake(Arc::clone(&fake)));
        reg.current_pool("db", "u").unwrap()
    }

    /// What a queued checkout was handed so far.
    fn grant(step: Option<Result<Step, PoolError>>) -> Option<Grant> {
        let Some(Ok(Step::Wait { mut rx, .. })) = step else {
            panic!("the checkout should have queued: nothing was idle yet");
        };
        rx.try_recv().ok()
    }

    /// The connection a queued checkout was handed, if any.
    fn handed(step: Option<Result<Step, PoolError>>) -> Option<u64> {
        match grant(step) {
            Some(Grant::Conn(c)) => Some(c.id),
            _ => None,
        }
    }

    /// Arranges for a checkout on worker 1, then `then`, to run inside the next check-in's
    /// window (on worker 0); the checkout's step is left in the returned cell.
    fn queue_during_next_checkin(
        pool: &Pool,
        then: impl FnOnce(&Pool) + 'static,
    ) -> Rc<RefCell<Option<Result<Step, PoolError>>>> {
        let queued = Rc::new(RefCell::new(None));
        let (p, q) = (pool.clone(), Rc::clone(&queued));
        race::set(race::Point::CheckinBetweenLookAndPush, move || {
            set_current(1);
            *q.borrow_mut() = Some(p.step(now()));
            set_current(0);
            then(&p);
        });
        queued
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_queueing_during_a_checkin_gets_the_connection() {
        let pool = two_worker_pool();
        let held = pool.checkout().await.unwrap();
        let held_id = held.conn_ref().id;
        let queued = queue_during_next_checkin(&pool, |_| {});
        held.release();
        let step = queued.borrow_mut().take();
        assert_eq!(handed(step), Some(held_id), "handed to the queued client");
        assert_eq!(pool.counts(), (0, 1, 0));
    }

    /// A reload retires the pool while a check-in is between its look and its push, with a
    /// client queued meanwhile: the connection closes, and its slot goes to the client, which
    /// would otherwise wait with no connection left to come back.
    #[tokio::test(start_paused = true)]
    async fn a_retire_during_a_checkin_hands_the_slot_to_the_queued_client() {
        let pool = two_worker_pool();
        let held = pool.checkout().await.unwrap();
        let queued = queue_during_next_checkin(&pool, Pool::retire);
        held.release();
        assert!(
            matches!(grant(queued.borrow_mut().take()), Some(Grant::Slot)),
            "the queued client may open a connection"
        );
        assert_eq!(pool.counts(), (0, 1, 0), "the slot is the client's now");
    }

    /// RECONNECT runs while a check-in is between its look and its push: the connection,
    /// opened before RECONNECT, does not stay idle.
    #[tokio::test(start_paused = true)]
    async fn a_reconnect_during_a_checkin_closes_the_connection() {
        let pool = two_worker_pool();
        let held = pool.checkout().await.unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
        let p = pool.clone();
        race::set(race::Point::CheckinBetweenLookAndPush, move || {
            p.reconnect()
        });
        held.release();
        assert_eq!(pool.counts(), (0, 0, 0));
        assert!(pool.idle_servers().is_empty());
    }

    /// The other order: a check-in on another thread while a checkout, holding the pool lock,
    /// has found the idle lists empty and not queued yet. The checkout marked `waiting` before
    /// it looked, so the check-in does not put the connection on an idle list behind its back:
    /// it waits for the lock and hands it over.
    #[tokio::test]
    async fn a_checkin_while_a_client_is_about_to_queue_hands_it_the_connection() {
        let pool = two_worker_pool();
        let held = pool.checkout().await.unwrap();
        let held_id = held.conn_ref().id;
        let releaser = Rc::new(RefCell::new(None));
        let r = Rc::clone(&releaser);
        race::set(race::Point::CheckoutAfterIdleScan, move || {
            let t = std::thread::spawn(move || held.release());
            // Long enough for an unlocked check-in to finish; a correct one blocks on the lock
            // this thread holds until the checkout has queued.
            std::thread::sleep(Duration::from_millis(50));
            *r.borrow_mut() = Some(t);
        });
        set_current(1);
        let step = Some(pool.step(now()));
        set_current(0);
        let t = releaser.borrow_mut().take().expect("the hook ran");
        t.join().unwrap();
        assert_eq!(handed(step), Some(held_id), "handed to the queued client");
        assert_eq!(pool.counts(), (0, 1, 0));
    }

    /// The data path checks a server in with the time of its last reply: that instant, not
    /// the check-in's, decides whether the next checkout health-checks it.
    #[tokio::test(start_paused = true)]
    async fn a_checkin_keeps_the_last_use_it_is_given() {
        let pool = two_worker_pool();
        let delay = Duration::from_secs(3600);
        let long_ago = now()
            .checked_sub(2 * delay)
            .expect("the clock is past two hours");
        pool.checkout()
            .await
            .unwrap()
            .release_to_at(&pool, long_ago);
        let Ok(Step::Idle { check, conn }) = pool.step(now()) else {
            panic!("the released connection should be idle");
        };
        assert!(
            check,
            "unused for longer than server_check_delay: checked first"
        );
        pool.wrap(conn).release_to_at(&pool, now());
        let Ok(Step::Idle { check, .. }) = pool.step(now()) else {
            panic!("the released connection should be idle");
        };
        assert!(!check, "just used: handed out without a check");
    }
}
