//! Per-pool traffic counters, cheap enough for the data path: plain atomics updated with
//! `Relaxed` ordering, no lock and no allocation. Readers (`/metrics`, `SHOW STATS`) load them
//! one by one, so a scrape may see counters a few operations apart: fine for monitoring.
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

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the wait-time histogram buckets, in seconds (the `+Inf` bucket is the count).
pub const WAIT_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0,
];

/// SQLSTATE classes counted on their own; everything else is `other`.
pub const ERROR_CLASSES: [&str; 10] = ["08", "22", "23", "25", "28", "40", "42", "53", "57", "XX"];

/// Counters of one (database, user) pool.
#[derive(Debug, Default)]
pub struct PoolStats {
    /// Transactions (ReadyForQuery `I`).
    pub xacts: AtomicU64,
    /// Queries (every ReadyForQuery).
    pub queries: AtomicU64,
    /// Bytes read from clients.
    pub received: AtomicU64,
    /// Bytes read from servers for clients.
    pub sent: AtomicU64,
    /// Successful checkouts.
    pub wait_count: AtomicU64,
    /// Sum of checkout waits, in microseconds.
    pub wait_us: AtomicU64,
    /// Longest single checkout wait so far, in microseconds.
    pub wait_max_us: AtomicU64,
    /// Checkouts per histogram bucket (not cumulative; index `WAIT_BUCKETS.len()` is `+Inf`).
    pub wait_buckets: [AtomicU64; WAIT_BUCKETS.len() + 1],
    /// Server connections opened.
    pub servers_opened: AtomicU64,
    /// Server connections closed (or lost).
    pub servers_closed: AtomicU64,
    /// Errors sent to clients per class of [`ERROR_CLASSES`], then `other`.
    pub errors: [AtomicU64; ERROR_CLASSES.len() + 1],
}

impl PoolStats {
    /// Records a successful checkout that took `d`.
    pub fn record_wait(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = WAIT_BUCKETS
            .iter()
            .position(|&le| secs <= le)
            .unwrap_or(WAIT_BUCKETS.len());
        self.wait_buckets[i].fetch_add(1, Ordering::Relaxed);
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.wait_us.fetch_add(us, Ordering::Relaxed);
        self.wait_max_us.fetch_max(us, Ordering::Relaxed);
        self.wait_count.fetch_add(1, Ordering::Relaxed);
    }

    /// Records a ReadyForQuery with transaction status `status`.
    pub fn record_ready(&self, status: u8) {
        self.queries.fetch_add(1, Ordering::Relaxed);
        if status == b'I' {
            self.xacts.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records an error sent to a client with SQLSTATE `code` (only its class is kept).
    pub fn record_error(&self, code: &[u8]) {
        self.errors[error_class_index(code)].fetch_add(1, Ordering::Relaxed);
    }

    /// Cumulative bucket counts (`le` order, `+Inf` last) and the count, for rendering.
    pub fn wait_histogram(&self) -> ([u64; WAIT_BUCKETS.len() + 1], u64) {
        let mut out = [0; WAIT_BUCKETS.len() + 1];
        let mut acc = 0;
        for (o, b) in out.iter_mut().zip(&self.wait_buckets) {
            acc += b.load(Ordering::Relaxed);
            *o = acc;
        }
        (out, acc)
    }
}

/// Index into [`PoolStats::errors`] for a SQLSTATE (or its first two bytes).
pub fn error_class_index(code: &[u8]) -> usize {
    let class = code.get(..2).unwrap_or(b"");
    ERROR_CLASSES
        .iter()
        .position(|c| c.as_bytes() == class)
        .unwrap_or(ERROR_CLASSES.len())
}

/// Label of an index of [`PoolStats::errors`].
pub fn error_class_label(i: usize) -> &'static str {
    ERROR_CLASSES.get(i).copied().unwrap_or("other")
}

/// The SQLSTATE (`C` field) of an ErrorResponse body, if present.
pub fn error_code(body: &[u8]) -> Option<&[u8]> {
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
        assert_eq!(s.wait_max_us.load(Ordering::Relaxed), 100_000_000);
    }

    #[test]
    fn ready_for_query_counts() {
        let s = PoolStats::default();
        for st in *b"TTIEIII" {
            s.record_ready(st);
        }
        assert_eq!(s.queries.load(Ordering::Relaxed), 7);
        assert_eq!(s.xacts.load(Ordering::Relaxed), 4);
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
        assert_eq!(
            s.errors[error_class_index(b"42")].load(Ordering::Relaxed),
            1
        );
        assert_eq!(s.errors[ERROR_CLASSES.len()].load(Ordering::Relaxed), 1);
        assert_eq!(error_class_label(ERROR_CLASSES.len()), "other");
    }
}
