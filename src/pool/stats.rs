//! Per-pool traffic counters, cheap enough for the data path: plain atomics updated with
//! `Relaxed` ordering, no lock and no allocation, one set per worker thread
//! ([`crate::worker::PerWorker`]) so that workers do not write the same cache lines on every
//! transaction. Readers (`/metrics`, `SHOW STATS`) sum the workers' counters one by one, so a
//! scrape may see counters a few operations apart: fine for monitoring.
//!
//! Definitions:
//! - **query**: one ReadyForQuery the server sent a client (one per simple Query, per Sync of
//!   an extended-protocol batch, per FunctionCall). An approximation: a multi-statement simple
//!   query counts once, a pipeline of N batches counts N times.
//! - **transaction**: one ReadyForQuery with status `I` (idle) the server sent a client. An
//!   autocommit statement is a transaction, an explicit `BEGIN … COMMIT` block is one (its
//!   inner ReadyForQuery replies say `T`), and a failed block ends as one at its `ROLLBACK`.
//!   The same definition in session and transaction mode; in transaction mode it matches the
//!   points where the server could be released.
//! - **bytes**: what lakepool read from the client (received) and from the server for the
//!   client (sent), counted per read; in transaction mode with statement mapping, client bytes
//!   are counted after rewriting.
//! - **wait**: time from asking the pool for a server to getting one (idle, new, or after
//!   queueing or a PAUSE), for successful checkouts.
//! - **errors**: ErrorResponse messages servers sent to clients, plus errors lakepool itself
//!   sent when no server could be had, by SQLSTATE class.
//! - **query time**: from the client's request with nothing else in flight to the
//!   ReadyForQuery that leaves nothing owed, waiting for a server included, as in PgBouncer.
//!   **Transaction time**: from the first request of a transaction to the ReadyForQuery with
//!   status `I` that ends it. Kept per client in a [`QueryClock`] and added here when a span
//!   ends; a request lakepool answers without a server (a prepare of a known statement) is
//!   not timed.
//! - **parses and binds** (transaction mode with statement mapping, as PgBouncer counts them
//!   with `max_prepared_statements`): Parse messages of named statements from clients, Parse
//!   messages lakepool sent servers for them, and Bind messages of named statements.
//! - **server connect failures**: attempts to open a server connection that failed (TCP, TLS,
//!   the server refusing the login, no upstream credential).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::worker::PerWorker;

/// Upper bounds of the wait-time histogram buckets, in seconds (the `+Inf` bucket is the count).
pub(crate) const WAIT_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0,
];

/// SQLSTATE classes counted on their own; everything else is `other`.
pub(crate) const ERROR_CLASSES: [&str; 10] =
    ["08", "22", "23", "25", "28", "40", "42", "53", "57", "XX"];

/// Counters of one (database, user) pool.
#[derive(Debug, Default)]
pub(crate) struct PoolStats {
    /// One set of counters per worker; a worker adds to its own.
    per_worker: PerWorker<StatCounters>,
    /// The two snapshots `SHOW STATS` averages over; only readers lock it.
    window: Mutex<Window>,
}

/// One worker's counters of a pool.
#[derive(Debug, Default)]
pub(crate) struct StatCounters {
    /// Transactions (ReadyForQuery `I`).
    pub(crate) xacts: AtomicU64,
    /// Queries (every ReadyForQuery).
    pub(crate) queries: AtomicU64,
    /// Bytes read from clients.
    pub(crate) received: AtomicU64,
    /// Bytes read from servers for clients.
    pub(crate) sent: AtomicU64,
    /// Successful checkouts.
    pub(crate) wait_count: AtomicU64,
    /// Sum of checkout waits, in microseconds.
    pub(crate) wait_us: AtomicU64,
    /// Longest single checkout wait so far, in microseconds.
    pub(crate) wait_max_us: AtomicU64,
    /// Checkouts per histogram bucket (not cumulative; index `WAIT_BUCKETS.len()` is `+Inf`).
    pub(crate) wait_buckets: [AtomicU64; WAIT_BUCKETS.len() + 1],
    /// Server connections opened.
    pub(crate) servers_opened: AtomicU64,
    /// Server connections closed (or lost).
    pub(crate) servers_closed: AtomicU64,
    /// Errors sent to clients per class of [`ERROR_CLASSES`], then `other`.
    pub(crate) errors: [AtomicU64; ERROR_CLASSES.len() + 1],
    /// Time spent in transactions, in microseconds.
    pub(crate) xact_us: AtomicU64,
    /// Time spent in queries, in microseconds.
    pub(crate) query_us: AtomicU64,
    /// Parse messages of named statements from clients (statement mapping).
    pub(crate) client_parses: AtomicU64,
    /// Parse messages sent to servers for clients' named statements (statement mapping).
    pub(crate) server_parses: AtomicU64,
    /// Bind messages of named statements (statement mapping).
    pub(crate) binds: AtomicU64,
    /// Failed attempts to open a server connection.
    pub(crate) connect_failures: AtomicU64,
}

/// How long `SHOW STATS_AVERAGES` averages over at least (PgBouncer's `stats_period`).
pub(crate) const STATS_PERIOD: Duration = Duration::from_secs(60);

/// The PgBouncer-style totals of one pool at one moment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Totals {
    /// Server connections handed to clients (successful checkouts).
    pub(crate) server_assignments: u64,
    /// Transactions.
    pub(crate) xacts: u64,
    /// Queries.
    pub(crate) queries: u64,
    /// Bytes received from clients.
    pub(crate) received: u64,
    /// Bytes sent to clients.
    pub(crate) sent: u64,
    /// Microseconds in transactions.
    pub(crate) xact_us: u64,
    /// Microseconds in queries.
    pub(crate) query_us: u64,
    /// Microseconds clients waited for a server.
    pub(crate) wait_us: u64,
    /// Client Parse messages of named statements.
    pub(crate) client_parses: u64,
    /// Parse messages sent to servers for them.
    pub(crate) server_parses: u64,
    /// Bind messages of named statements.
    pub(crate) binds: u64,
}

impl Totals {
    /// `self - earlier`, field by field (never below zero).
    pub(crate) fn since(&self, earlier: &Totals) -> Totals {
        Totals {
            server_assignments: self
                .server_assignments
                .saturating_sub(earlier.server_assignments),
            xacts: self.xacts.saturating_sub(earlier.xacts),
            queries: self.queries.saturating_sub(earlier.queries),
            received: self.received.saturating_sub(earlier.received),
            sent: self.sent.saturating_sub(earlier.sent),
            xact_us: self.xact_us.saturating_sub(earlier.xact_us),
            query_us: self.query_us.saturating_sub(earlier.query_us),
            wait_us: self.wait_us.saturating_sub(earlier.wait_us),
            client_parses: self.client_parses.saturating_sub(earlier.client_parses),
            server_parses: self.server_parses.saturating_sub(earlier.server_parses),
            binds: self.binds.saturating_sub(earlier.binds),
        }
    }

    /// Adds `other` field by field.
    pub(crate) fn add(&mut self, other: &Totals) {
        self.server_assignments += other.server_assignments;
        self.xacts += other.xacts;
        self.queries += other.queries;
        self.received += other.received;
        self.sent += other.sent;
        self.xact_us += other.xact_us;
        self.query_us += other.query_us;
        self.wait_us += other.wait_us;
        self.client_parses += other.client_parses;
        self.server_parses += other.server_parses;
        self.binds += other.binds;
    }
}

/// Snapshots of the totals: averages cover `[older, now]`, which spans at least
/// [`STATS_PERIOD`] once the window has turned over.
#[derive(Debug, Default)]
struct Window {
    older: Option<(Instant, Totals)>,
    newer: Option<(Instant, Totals)>,
}

/// What changed over an averaging window: the deltas and the window's length.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Delta {
    /// Totals now minus totals at the window's start.
    pub(crate) totals: Totals,
    /// The window's length (zero on the first look).
    pub(crate) elapsed: Duration,
}

/// Per-client clock of the request in flight and of the transaction it belongs to, kept by the
/// data path next to its protocol state (one per client: no sharing, no lock).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct QueryClock {
    query_start: Option<Instant>,
    xact_start: Option<Instant>,
    /// When the last ReadyForQuery that ended a query arrived: the server's last use, for
    /// its check-in (which then reads no clock).
    settled_at: Option<Instant>,
}

impl QueryClock {
    /// No query and no transaction is being timed.
    pub(crate) fn is_stopped(&self) -> bool {
        self.query_start.is_none() && self.xact_start.is_none()
    }

    /// A request that gets a ReadyForQuery (Query, Sync, FunctionCall) was sent: starts the
    /// query (and the transaction) unless one is already running. Reads the clock only then.
    pub(crate) fn request(&mut self) {
        if self.query_start.is_none() {
            self.request_at(super::now());
        }
    }

    /// [`Self::request`] with the clock read by the caller: a request that arrived at `now`.
    pub(crate) fn request_at(&mut self, now: Instant) {
        // A stale end never reaches the next check-in (a parked clock may carry one).
        self.settled_at = None;
        if self.query_start.is_none() {
            self.query_start = Some(now);
            if self.xact_start.is_none() {
                self.xact_start = Some(now);
            }
        }
    }

    /// When the last query ended (taken: each instant is handed out once).
    pub(crate) fn take_settled_at(&mut self) -> Option<Instant> {
        self.settled_at.take()
    }
}

impl PoolStats {
    /// Records a checkout that found an idle connection at once: what [`Self::record_wait`]
    /// records for a zero wait, with two counters instead of four.
    pub(crate) fn record_no_wait(&self) {
        let c = self.local();
        c.wait_buckets[0].fetch_add(1, Ordering::Relaxed);
        c.wait_count.fetch_add(1, Ordering::Relaxed);
    }

    /// Records a successful checkout that took `d`.
    pub(crate) fn record_wait(&self, d: Duration) {
        let c = self.local();
        let secs = d.as_secs_f64();
        let i = WAIT_BUCKETS
            .iter()
            .position(|&le| secs <= le)
            .unwrap_or(WAIT_BUCKETS.len());
        c.wait_buckets[i].fetch_add(1, Ordering::Relaxed);
        let us = micros(d);
        c.wait_us.fetch_add(us, Ordering::Relaxed);
        c.wait_max_us.fetch_max(us, Ordering::Relaxed);
        c.wait_count.fetch_add(1, Ordering::Relaxed);
    }

    /// Records a ReadyForQuery with transaction status `status`.
    pub(crate) fn record_ready(&self, status: u8) {
        let c = self.local();
        c.queries.fetch_add(1, Ordering::Relaxed);
        if status == b'I' {
            c.xacts.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Ends what a ReadyForQuery with `status` ends: the query when no reply is still owed
    /// (`settled`), the transaction when the status is idle; adds their times.
    pub(crate) fn record_ready_time(&self, clock: &mut QueryClock, status: u8, settled: bool) {
        if !settled {
            return;
        }
        // The pools' clock: the instant becomes the server's `last_used`.
        let now = super::now();
        clock.settled_at = Some(now);
        let c = self.local();
        let query = clock
            .query_start
            .take()
            .map(|start| (start, micros(now - start)));
        if let Some((_, us)) = query {
            c.query_us.fetch_add(us, Ordering::Relaxed);
        }
        if status == b'I'
            && let Some(start) = clock.xact_start.take()
        {
            // A one-statement transaction started with its query: one subtraction, not two.
            let us = match query {
                Some((query_start, us)) if query_start == start => us,
                _ => micros(now - start),
            };
            c.xact_us.fetch_add(us, Ordering::Relaxed);
        }
    }

    /// Records a client's Parse of a named statement.
    pub(crate) fn record_client_parse(&self) {
        let c = self.local();
        c.client_parses.fetch_add(1, Ordering::Relaxed);
    }

    /// Records a Parse lakepool sent a server for a client's named statement.
    pub(crate) fn record_server_parse(&self) {
        let c = self.local();
        c.server_parses.fetch_add(1, Ordering::Relaxed);
    }

    /// Records a Bind of a named statement.
    pub(crate) fn record_bind(&self) {
        let c = self.local();
        c.binds.fetch_add(1, Ordering::Relaxed);
    }

    /// Records a failed attempt to open a server connection.
    pub(crate) fn record_connect_failure(&self) {
        let c = self.local();
        c.connect_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// The totals now.
    pub(crate) fn totals(&self) -> Totals {
        let l = |f: fn(&StatCounters) -> &AtomicU64| self.sum(f);
        Totals {
            server_assignments: l(|c| &c.wait_count),
            xacts: l(|c| &c.xacts),
            queries: l(|c| &c.queries),
            received: l(|c| &c.received),
            sent: l(|c| &c.sent),
            xact_us: l(|c| &c.xact_us),
            query_us: l(|c| &c.query_us),
            wait_us: l(|c| &c.wait_us),
            client_parses: l(|c| &c.client_parses),
            server_parses: l(|c| &c.server_parses),
            binds: l(|c| &c.binds),
        }
    }

    /// The calling worker's counters, to add to.
    #[inline]
    pub(crate) fn local(&self) -> &StatCounters {
        self.per_worker.local()
    }

    /// One counter summed over the workers.
    pub(crate) fn sum(&self, counter: impl Fn(&StatCounters) -> &AtomicU64) -> u64 {
        self.per_worker
            .iter()
            .map(|c| counter(c).load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }

    /// Longest single checkout wait so far, in microseconds.
    pub(crate) fn wait_max_us(&self) -> u64 {
        self.per_worker
            .iter()
            .map(|c| c.wait_max_us.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0)
    }

    /// Errors per class of [`ERROR_CLASSES`], then `other`.
    pub(crate) fn errors(&self) -> [u64; ERROR_CLASSES.len() + 1] {
        std::array::from_fn(|i| self.sum(|c| &c.errors[i]))
    }

    /// What changed since the start of the averaging window, which turns over when its newer
    /// snapshot is [`STATS_PERIOD`] old: read at least once a period, it spans one to two
    /// periods (longer when read less often). The first look starts it and shows nothing.
    pub(crate) fn delta(&self, now: Instant) -> Delta {
        let current = self.totals();
        let mut w = self.window.lock();
        let newer = *w.newer.get_or_insert((now, current));
        let older = *w.older.get_or_insert(newer);
        if now.saturating_duration_since(newer.0) >= STATS_PERIOD {
            w.older = Some(newer);
            w.newer = Some((now, current));
        }
        let from = w.older.unwrap_or(older);
        Delta {
            totals: current.since(&from.1),
            elapsed: now.saturating_duration_since(from.0),
        }
    }

    /// Records an error sent to a client with SQLSTATE `code` (only its class is kept).
    pub(crate) fn record_error(&self, code: &[u8]) {
        let c = self.local();
        c.errors[error_class_index(code)].fetch_add(1, Ordering::Relaxed);
    }

    /// Cumulative bucket counts (`le` order, `+Inf` last) and the count, for rendering.
    pub(crate) fn wait_histogram(&self) -> ([u64; WAIT_BUCKETS.len() + 1], u64) {
        let mut out = [0; WAIT_BUCKETS.len() + 1];
        let mut acc = 0;
        for (i, o) in out.iter_mut().enumerate() {
            acc += self.sum(|c| &c.wait_buckets[i]);
            *o = acc;
        }
        (out, acc)
    }
}

/// Whole microseconds of `d`, saturating.
fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Index into [`StatCounters::errors`] for a SQLSTATE (or its first two bytes).
pub(crate) fn error_class_index(code: &[u8]) -> usize {
    let class = code.get(..2).unwrap_or(b"");
    ERROR_CLASSES
        .iter()
        .position(|c| c.as_bytes() == class)
        .unwrap_or(ERROR_CLASSES.len())
}

/// Label of an index of [`StatCounters::errors`].
pub(crate) fn error_class_label(i: usize) -> &'static str {
    ERROR_CLASSES.get(i).copied().unwrap_or("other")
}

/// The SQLSTATE (`C` field) of an ErrorResponse body, if present.
pub(crate) fn error_code(body: &[u8]) -> Option<&[u8]> {
    let mut rest = body;
    while let Some((&kind, tail)) = rest.split_first() {
        if kind == 0 {
            return None;
        }
        let end = tail.iter().position(|&b| b == 0)?;
        if kind == b'C' {
            return Some(&tail[..end]);
        }
        rest = &tail[end + 1..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The end of a query is handed out once, for one check-in; a new request forgets an end
    /// left over, so a stale one never becomes a server's last use.
    #[test]
    fn the_query_clock_hands_out_its_end_once() {
        let s = PoolStats::default();
        let mut clock = QueryClock::default();
        let start = super::super::now();
        clock.request_at(start);
        s.record_ready_time(&mut clock, b'I', false);
        assert_eq!(
            clock.take_settled_at(),
            None,
            "a reply still owed: not over"
        );
        s.record_ready_time(&mut clock, b'I', true);
        assert!(clock.is_stopped());
        let end = clock.take_settled_at().expect("the query ended");
        assert!(end >= start);
        assert_eq!(clock.take_settled_at(), None, "taken once");
        s.record_ready_time(&mut clock, b'I', true);
        clock.request_at(super::super::now());
        assert_eq!(
            clock.take_settled_at(),
            None,
            "a new request forgets the last end"
        );
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let s = PoolStats::default();
        s.record_wait(Duration::from_micros(100));
        s.record_wait(Duration::from_millis(3));
        s.record_wait(Duration::from_secs(100));
        let (b, n) = s.wait_histogram();
        assert_eq!(n, 3);
        assert_eq!(b[0], 1); // ≤ 0.5 ms
        assert_eq!(b[2], 2); // ≤ 5 ms
        assert_eq!(b[WAIT_BUCKETS.len() - 1], 2); // ≤ 60 s
        assert_eq!(b[WAIT_BUCKETS.len()], 3); // +Inf
        assert_eq!(s.wait_max_us(), 100_000_000);
    }

    #[test]
    fn a_checkout_without_a_wait_counts_as_a_zero_wait() {
        let (zero, none) = (PoolStats::default(), PoolStats::default());
        zero.record_wait(Duration::ZERO);
        none.record_no_wait();
        assert_eq!(zero.wait_histogram(), none.wait_histogram());
        assert_eq!(none.wait_histogram().1, 1);
        for s in [&zero, &none] {
            assert_eq!(s.sum(|c| &c.wait_us), 0);
            assert_eq!(s.wait_max_us(), 0);
        }
    }

    #[test]
    fn workers_add_to_their_own_counters_and_readers_sum_them() {
        crate::worker::set_count_for_this_thread(3);
        let s = PoolStats::default();
        for w in 0..3 {
            crate::worker::set_current(w);
            s.record_ready(b'I');
            s.record_wait(Duration::from_millis(w as u64 + 1));
            s.record_error(b"42P01");
            s.local().received.fetch_add(10, Ordering::Relaxed);
        }
        crate::worker::set_current(0);
        let per: Vec<u64> = s
            .per_worker
            .iter()
            .map(|c| c.xacts.load(Ordering::Relaxed))
            .collect();
        assert_eq!(per, [1, 1, 1], "each worker wrote its own slot");
        let t = s.totals();
        assert_eq!((t.xacts, t.queries, t.received), (3, 3, 30));
        assert_eq!((t.server_assignments, t.wait_us), (3, 6_000));
        assert_eq!(s.wait_max_us(), 3_000);
        assert_eq!(s.wait_histogram().1, 3);
        assert_eq!(s.errors()[error_class_index(b"42")], 3);
    }

    #[test]
    fn ready_for_query_counts() {
        let s = PoolStats::default();
        for st in *b"TTIEIII" {
            s.record_ready(st);
        }
        assert_eq!(s.sum(|c| &c.queries), 7);
        assert_eq!(s.sum(|c| &c.xacts), 4);
    }

    #[test]
    fn query_and_transaction_times() {
        let s = PoolStats::default();
        let mut clock = QueryClock::default();
        // Not started: a ReadyForQuery adds nothing.
        s.record_ready_time(&mut clock, b'I', true);
        assert_eq!(s.sum(|c| &c.query_us), 0);
        // BEGIN; SELECT; COMMIT as three requests.
        clock.request();
        let begun = clock.xact_start.unwrap();
        std::thread::sleep(Duration::from_millis(2));
        s.record_ready_time(&mut clock, b'T', true);
        let q1 = s.sum(|c| &c.query_us);
        assert!(q1 >= 2000, "{q1}");
        assert_eq!(s.sum(|c| &c.xact_us), 0, "transaction still open");
        clock.request();
        assert_eq!(clock.xact_start, Some(begun), "same transaction");
        // A reply while another is still owed (pipeline) does not end the query.
        s.record_ready_time(&mut clock, b'I', false);
        assert!(clock.query_start.is_some());
        std::thread::sleep(Duration::from_millis(2));
        s.record_ready_time(&mut clock, b'I', true);
        let xact = s.sum(|c| &c.xact_us);
        assert!(xact >= 4000 && xact >= s.sum(|c| &c.query_us), "{xact}");
        assert!(clock.query_start.is_none() && clock.xact_start.is_none());

        // A one-statement transaction: its query's time is its transaction's.
        let s = PoolStats::default();
        clock.request();
        std::thread::sleep(Duration::from_millis(2));
        s.record_ready_time(&mut clock, b'I', true);
        let (query, xact) = (s.sum(|c| &c.query_us), s.sum(|c| &c.xact_us));
        assert!(query >= 2000 && xact == query, "{query} {xact}");
    }

    #[test]
    fn averaging_window_turns_over() {
        let s = PoolStats::default();
        let t0 = Instant::now();
        s.local().xacts.fetch_add(5, Ordering::Relaxed);
        // The first look starts the window.
        assert_eq!(s.delta(t0), Delta::default());
        s.local().xacts.fetch_add(10, Ordering::Relaxed);
        s.record_client_parse();
        let d = s.delta(t0 + Duration::from_secs(15));
        assert_eq!((d.totals.xacts, d.totals.client_parses), (10, 1));
        assert_eq!(d.elapsed, Duration::from_secs(15));
        // A period after the newer snapshot, the window moves on: [t0, t0+70] now, then
        // [t0+70, t0+140] once the snapshot of t0+70 is a period old.
        let d = s.delta(t0 + Duration::from_secs(70));
        assert_eq!((d.totals.xacts, d.elapsed), (10, Duration::from_secs(70)));
        s.local().xacts.fetch_add(3, Ordering::Relaxed);
        let d = s.delta(t0 + Duration::from_secs(140));
        assert_eq!((d.totals.xacts, d.elapsed), (3, Duration::from_secs(70)));
        assert_eq!(s.totals().xacts, 18);
    }

    #[test]
    fn error_classes() {
        assert_eq!(
            error_code(b"SERROR\0VERROR\0C42P01\0Mno\0\0"),
            Some(&b"42P01"[..])
        );
        assert_eq!(error_code(b"SERROR\0Mno\0\0"), None);
        assert_eq!(error_code(b"SERR"), None);
        let s = PoolStats::default();
        s.record_error(b"42P01");
        s.record_error(b"0A000");
        assert_eq!(s.errors()[error_class_index(b"42")], 1);
        assert_eq!(s.errors()[ERROR_CLASSES.len()], 1);
        assert_eq!(error_class_label(ERROR_CLASSES.len()), "other");
    }
}
