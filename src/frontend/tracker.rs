//! What a client/server pair owes each other, message by message: the ReadyForQuery replies
//! the server still owes (one per Query, Sync, FunctionCall), the last transaction status,
//! whether extended-protocol messages await a Sync, and COPY FROM STDIN. Transaction pooling
//! releases the server only when nothing is owed.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::pool::stats::{PoolStats, QueryClock, error_code};

/// A COPY the client ended (CopyDone/CopyFail) before the server said CopyInResponse.
#[derive(Debug, Clone, Copy)]
struct ClosedWindow {
    /// Syncs sent since the Execute that starts it: the server ignores them.
    syncs: u32,
    /// ReadyForQuery messages before which its CopyInResponse must come; after them the
    /// window lapses (a COPY that never started cannot close a later one).
    ready_left: u32,
}

/// Protocol state of a client/server pair, carried across transactions.
#[derive(Debug)]
pub(crate) struct Tracker {
    /// ReadyForQuery messages the server still owes.
    pub(crate) pending: u32,
    /// Status byte of the last ReadyForQuery (`I`, `T`, `E`).
    pub(crate) status: u8,
    /// Extended-protocol messages were sent since the last Sync.
    pub(crate) unsynced: bool,
    /// The server is in COPY FROM STDIN (CopyInResponse seen, CopyDone/CopyFail not yet sent).
    pub(crate) copy_in: bool,
    /// Syncs counted since the last Execute, while no CopyDone/CopyFail has closed that window:
    /// if the Execute turns out to start a COPY FROM STDIN, the server ignores them.
    exec_window: Option<u32>,
    /// Windows closed by the client's CopyDone/CopyFail before the server's CopyInResponse
    /// arrived (pipelined COPY), oldest first. Boxed: rare, and every idle client carries
    /// this struct.
    #[allow(
        clippy::box_collection,
        reason = "8 bytes inline instead of 32 in every idle client's state"
    )]
    closed_windows: Option<Box<VecDeque<ClosedWindow>>>,
    /// Server bytes were read but never delivered to the client, or replies are still owed.
    pub(crate) undelivered: bool,
    /// The server's last error was FATAL or PANIC: it closes the connection next, and the
    /// client has its own reason already.
    pub(crate) server_fatal: bool,
    /// The client sent Sync during the COPY IN in progress (the server ignores those).
    synced_in_copy: bool,
    /// That COPY failed: the server answers the Syncs it reads after the failure, and no one
    /// can tell how many it had read (and ignored) before. The count of ReadyForQuery owed is
    /// unknown, so the server must not go to another client (see [`Self::take_uncertain`]).
    uncertain: bool,
    /// The pool's counters (queries, transactions, errors), when counting.
    pub(crate) stats: Option<Arc<PoolStats>>,
    /// When the query and the transaction in flight started (query and transaction times).
    pub(crate) clock: QueryClock,
}

impl Default for Tracker {
    fn default() -> Self {
        Self {
            pending: 0,
            status: b'I',
            unsynced: false,
            copy_in: false,
            exec_window: None,
            closed_windows: None,
            undelivered: false,
            server_fatal: false,
            synced_in_copy: false,
            uncertain: false,
            stats: None,
            clock: QueryClock::default(),
        }
    }
}

impl Tracker {
    /// True when the server is between transactions with nothing owed.
    pub(crate) fn server_idle(&self) -> bool {
        self.pending == 0 && self.status == b'I' && !self.unsynced && !self.copy_in
    }

    /// Holds nothing a new tracker would not: the server is idle, nothing is owed, no COPY
    /// window or query clock is open (the pool's counters aside).
    pub(crate) fn is_pristine(&self) -> bool {
        self.server_idle()
            && self.exec_window.is_none()
            && self.closed_windows.is_none()
            && !self.undelivered
            && !self.server_fatal
            && !self.synced_in_copy
            && !self.uncertain
            && self.clock.is_stopped()
    }

    /// True when the client owes the next move: every request answered, none in COPY.
    pub(crate) fn waiting_on_client(&self) -> bool {
        self.pending == 0 && !self.copy_in
    }

    /// A message with tag `tag` went to the server.
    pub(crate) fn client_sent(&mut self, tag: u8) {
        match tag {
            b'Q' | b'F' => {
                self.pending += 1;
                self.exec_window = None;
                self.clock.request();
            }
            // The server ignores Sync (and Flush) while in COPY FROM STDIN: no reply owed,
            // unless the COPY fails first.
            b'S' if self.copy_in => self.synced_in_copy = true,
            b'S' => {
                self.pending += 1;
                self.clock.request();
                self.unsynced = false;
                if let Some(w) = self.exec_window.as_mut() {
                    *w += 1;
                }
            }
            b'E' => {
                self.unsynced = true;
                self.exec_window = Some(0);
            }
            b'c' | b'f' => {
                if self.copy_in {
                    self.copy_in = false;
                    self.synced_in_copy = false;
                } else if self.exec_window.is_some() || self.pending > 0 {
                    // CopyDone before the server said CopyInResponse: a pipelined COPY,
                    // started by an Execute (its window counts the Syncs since) or by one of
                    // the simple queries unanswered now (no Syncs to count; its CopyInResponse
                    // comes before their ReadyForQuery messages). Without the window a COPY
                    // of a simple query looked open for good (review of b9f7ea3).
                    let window = match self.exec_window.take() {
                        Some(syncs) => ClosedWindow {
                            syncs,
                            // Lapses at the ReadyForQuery of the first Sync after the
                            // Execute (its CopyInResponse would come before it).
                            ready_left: self.pending.saturating_sub(syncs).saturating_add(1),
                        },
                        None => ClosedWindow {
                            syncs: 0,
                            ready_left: self.pending,
                        },
                    };
                    self.closed_windows
                        .get_or_insert_with(Box::default)
                        .push_back(window);
                }
                // Otherwise nothing sent could start a COPY: the server ignores it.
            }
            b'P' | b'B' | b'D' | b'C' => self.unsynced = true,
            // Flush asks for what is pending; alone it opens no exchange (P/B/E before it
            // already did).
            b'H' => {}
            // CopyData needs no reply. Anything else is not a request the server takes after
            // login: it answers with an error and closes, so the pair waits for that.
            b'd' => {}
            _ => self.unsynced = true,
        }
    }

    /// Whether the count of replies owed became unknown (a COPY IN with Syncs sent during it
    /// failed): the server is then closed at release, not pooled, so no stray ReadyForQuery
    /// reaches another client. Cleared for the next server.
    pub(crate) fn take_uncertain(&mut self) -> bool {
        std::mem::take(&mut self.uncertain)
    }

    /// `n` simple queries sent were ignored by the server (sent after an error in an extended
    /// exchange, before its Sync): their ReadyForQuery never comes.
    pub(crate) fn replies_skipped(&mut self, n: u32) {
        self.pending = self.pending.saturating_sub(n);
    }

    /// A message with tag `tag` came from the server; `body` for ReadyForQuery and
    /// ErrorResponse (None when it was too large to look at).
    pub(crate) fn server_sent(&mut self, tag: u8, body: Option<&[u8]>) {
        match tag {
            b'Z' => {
                self.pending = self.pending.saturating_sub(1);
                // The server says ReadyForQuery only outside COPY (one that failed mid-stream
                // is over although the client sent no CopyDone; fourth review).
                self.copy_in = false;
                self.synced_in_copy = false;
                // The first Sync after the last Execute is answered: it started no COPY.
                if self.exec_window.is_some_and(|w| w > self.pending) {
                    self.exec_window = None;
                }
                self.status = body.and_then(|b| b.first().copied()).unwrap_or(b'I');
                if let Some(s) = &self.stats {
                    s.record_ready(self.status);
                    s.record_ready_time(&mut self.clock, self.status, self.pending == 0);
                }
                if let Some(windows) = self.closed_windows.as_mut() {
                    // A window of a simple query's COPY that is not its CopyInResponse's by
                    // now never will be: a stray CopyDone cannot close a later COPY.
                    windows.retain_mut(|w| {
                        w.ready_left = w.ready_left.saturating_sub(1);
                        w.ready_left > 0
                    });
                }
                if self.pending == 0 {
                    self.closed_windows = None;
                    // Every Sync after the last Execute is answered: it started no COPY. An
                    // Execute not synced yet may still start one.
                    if !self.unsynced && !self.copy_in {
                        self.exec_window = None;
                    }
                }
            }
            // CopyInResponse: Syncs the client sent after the Execute that started this COPY
            // are ignored by the server, and so are any until CopyDone/CopyFail.
            b'G' => match self.closed_windows.as_mut().and_then(|q| q.pop_front()) {
                Some(w) => self.pending = self.pending.saturating_sub(w.syncs),
                None => {
                    if let Some(w) = self.exec_window.take() {
                        self.pending = self.pending.saturating_sub(w);
                    }
                    self.copy_in = true;
                }
            },
            b'E' => {
                if let Some(s) = &self.stats {
                    s.record_error(body.and_then(error_code).unwrap_or(b"XX"));
                }
                self.server_fatal = body.is_some_and(is_fatal);
                if self.copy_in && self.synced_in_copy {
                    self.uncertain = true;
                }
            }
            _ => {}
        }
    }
}

/// Whether an ErrorResponse body has severity FATAL or PANIC (the server ends the session).
pub(crate) fn is_fatal(body: &[u8]) -> bool {
    let mut rest = body;
    while let Some((&kind, tail)) = rest.split_first() {
        if kind == 0 {
            break;
        }
        let Some(end) = tail.iter().position(|&b| b == 0) else {
            return false;
        };
        if kind == b'V' || kind == b'S' {
            return matches!(&tail[..end], b"FATAL" | b"PANIC");
        }
        rest = tail.get(end + 1..).unwrap_or_default();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(t: &mut Tracker, tags: &[u8]) {
        for &tag in tags {
            t.client_sent(tag);
        }
    }

    fn server(t: &mut Tracker, msgs: &[(u8, &[u8])]) {
        for (tag, body) in msgs {
            t.server_sent(*tag, Some(body));
        }
    }

    /// A COPY of a simple query ended before its CopyInResponse is over at its CopyDone; a
    /// stray CopyDone (while another query runs) cannot close a COPY started after that
    /// query's ReadyForQuery, which then stays open until its own CopyDone (so a client
    /// stalling in it is still timed out).
    #[test]
    fn a_pipelined_simple_copy_ends_and_a_stray_copy_done_closes_nothing_later() {
        let mut t = Tracker::default();
        client(&mut t, b"Qdc");
        server(
            &mut t,
            &[(b'G', b"\0\0\0"), (b'C', b"COPY 1\0"), (b'Z', b"I")],
        );
        assert!(!t.copy_in && t.server_idle());
        // Two queries pipelined, the stray CopyDone after them: the first one's
        // ReadyForQuery does not end the window (the second may be the COPY)…
        client(&mut t, b"QQc");
        server(&mut t, &[(b'C', b"SELECT 1\0"), (b'Z', b"I")]);
        server(&mut t, &[(b'C', b"SELECT 1\0")]);
        // …a third query, sent before the second one's ReadyForQuery, is a COPY.
        client(&mut t, b"Q");
        server(&mut t, &[(b'Z', b"I"), (b'G', b"\0\0\0")]);
        assert!(
            t.copy_in,
            "the stray CopyDone closed a COPY started after it"
        );
        client(&mut t, b"dc");
        server(&mut t, &[(b'C', b"COPY 1\0"), (b'Z', b"I")]);
        assert!(!t.copy_in && t.server_idle());
    }

    /// Syncs sent during a COPY IN that then fails are answered only if the server read them
    /// after the failure: the replies owed are unknown, and the server is not pooled again.
    #[test]
    fn a_failed_copy_with_syncs_inside_leaves_the_count_uncertain() {
        let mut t = Tracker::default();
        client(&mut t, b"Q");
        server(&mut t, &[(b'G', b"\0\0\0")]);
        client(&mut t, b"dSd");
        server(
            &mut t,
            &[(b'E', b"SERROR\0VERROR\0C22P04\0Mbad\0\0"), (b'Z', b"I")],
        );
        assert!(t.take_uncertain());
        assert!(!t.take_uncertain(), "cleared for the next server");
        // Without Syncs inside, or ended by the client, nothing is uncertain.
        client(&mut t, b"Q");
        server(&mut t, &[(b'G', b"\0\0\0")]);
        client(&mut t, b"dSdc");
        server(&mut t, &[(b'C', b"COPY 2\0"), (b'Z', b"I")]);
        assert!(!t.take_uncertain());
        client(&mut t, b"Q");
        server(&mut t, &[(b'G', b"\0\0\0")]);
        client(&mut t, b"d");
        server(
            &mut t,
            &[(b'E', b"SERROR\0VERROR\0C22P04\0Mbad\0\0"), (b'Z', b"I")],
        );
        assert!(!t.take_uncertain());
    }

    /// A lone Flush opens no exchange: nothing waits for a Sync (found by the fuzz
    /// harness's release check).
    #[test]
    fn a_lone_flush_keeps_the_server_idle() {
        let mut t = Tracker::default();
        client(&mut t, b"H");
        assert!(t.server_idle());
        client(&mut t, b"PBEH");
        assert!(!t.server_idle(), "P/B/E still need their Sync");
    }

    #[test]
    fn simple_and_extended_queries_release_at_idle() {
        let mut t = Tracker::default();
        client(&mut t, b"Q");
        assert!(!t.server_idle());
        server(
            &mut t,
            &[(b'T', b""), (b'D', b""), (b'C', b""), (b'Z', b"I")],
        );
        assert!(t.server_idle());
        client(&mut t, b"PBDES");
        server(
            &mut t,
            &[(b'1', b""), (b'2', b""), (b'C', b""), (b'Z', b"T")],
        );
        assert!(!t.server_idle(), "inside a transaction");
        client(&mut t, b"Q");
        server(&mut t, &[(b'C', b""), (b'Z', b"I")]);
        assert!(t.server_idle());
    }

    #[test]
    fn an_answered_extended_exchange_leaves_nothing_behind() {
        let mut t = Tracker {
            stats: Some(Arc::new(PoolStats::default())),
            ..Tracker::default()
        };
        client(&mut t, b"PBES");
        server(
            &mut t,
            &[(b'1', b""), (b'2', b""), (b'C', b""), (b'Z', b"I")],
        );
        // An idle client's state can be parked (freed) between transactions.
        assert!(t.is_pristine());
        client(&mut t, b"BES");
        client(&mut t, b"BE");
        server(&mut t, &[(b'2', b""), (b'C', b""), (b'Z', b"I")]);
        assert!(
            !t.is_pristine(),
            "the unsynced Execute may still start a COPY"
        );
        client(&mut t, b"S");
        server(&mut t, &[(b'2', b""), (b'G', b"")]);
        assert!(
            t.copy_in,
            "the Execute's CopyInResponse is still recognised"
        );
    }

    #[test]
    fn pipelined_batches_and_flush_without_sync_hold_the_server() {
        let mut t = Tracker::default();
        client(&mut t, b"BESBESBES");
        server(&mut t, &[(b'Z', b"I"), (b'Z', b"I")]);
        assert!(!t.server_idle(), "one reply still owed");
        server(&mut t, &[(b'Z', b"I")]);
        assert!(t.server_idle());
        client(&mut t, b"PBEH");
        server(&mut t, &[(b'1', b""), (b'2', b""), (b'C', b"")]);
        assert!(!t.server_idle(), "extended messages await a Sync");
    }

    #[test]
    fn extended_copy_in_ignores_syncs_during_copy() {
        let mut t = Tracker::default();
        client(&mut t, b"BES");
        server(&mut t, &[(b'2', b""), (b'G', b"")]);
        assert!(!t.server_idle(), "in COPY");
        client(&mut t, b"ddc");
        client(&mut t, b"S");
        server(&mut t, &[(b'C', b""), (b'Z', b"I")]);
        assert!(t.server_idle(), "{t:?}");
    }

    #[test]
    fn fully_pipelined_copy_in() {
        let mut t = Tracker::default();
        client(&mut t, b"BESddcS");
        server(&mut t, &[(b'2', b""), (b'G', b"")]);
        assert!(!t.server_idle());
        server(&mut t, &[(b'C', b""), (b'Z', b"I")]);
        assert!(t.server_idle(), "{t:?}");
    }

    #[test]
    fn copy_in_response_before_the_sync() {
        let mut t = Tracker::default();
        client(&mut t, b"BEH");
        server(&mut t, &[(b'2', b""), (b'G', b"")]);
        client(&mut t, b"Sddc");
        assert!(!t.server_idle());
        client(&mut t, b"S");
        server(&mut t, &[(b'C', b""), (b'Z', b"I")]);
        assert!(t.server_idle(), "{t:?}");
    }

    #[test]
    fn simple_copy_in() {
        let mut t = Tracker::default();
        client(&mut t, b"Q");
        server(&mut t, &[(b'G', b"")]);
        client(&mut t, b"dddc");
        assert!(!t.server_idle());
        server(&mut t, &[(b'C', b""), (b'Z', b"I")]);
        assert!(t.server_idle());
    }

    #[test]
    fn error_mid_pipeline_still_one_reply_per_sync() {
        let mut t = Tracker::default();
        client(&mut t, b"PBESPBES");
        server(&mut t, &[(b'E', b""), (b'Z', b"I")]);
        assert!(!t.server_idle());
        server(
            &mut t,
            &[(b'1', b""), (b'2', b""), (b'C', b""), (b'Z', b"I")],
        );
        assert!(t.server_idle());
    }

    #[test]
    fn query_and_transaction_time_span_request_to_ready() {
        let mut t = Tracker::default();
        let stats = Arc::new(PoolStats::default());
        t.stats = Some(Arc::clone(&stats));
        // A pipeline of two batches is one query span, ended by the second ReadyForQuery.
        client(&mut t, b"BESBES");
        std::thread::sleep(std::time::Duration::from_millis(2));
        server(&mut t, &[(b'2', b""), (b'C', b""), (b'Z', b"T")]);
        assert_eq!(stats.sum(|c| &c.query_us), 0, "a reply is still owed");
        server(&mut t, &[(b'2', b""), (b'C', b""), (b'Z', b"T")]);
        let query = stats.sum(|c| &c.query_us);
        assert!(query >= 2000, "{query}");
        assert_eq!(stats.sum(|c| &c.xact_us), 0, "inside a transaction");
        client(&mut t, b"Q");
        server(&mut t, &[(b'C', b""), (b'Z', b"I")]);
        assert!(stats.sum(|c| &c.xact_us) >= query);
        assert_eq!(stats.sum(|c| &c.queries), 3);
        assert_eq!(stats.sum(|c| &c.xacts), 1);
    }

    #[test]
    fn fatal_errors_are_noticed() {
        let mut t = Tracker::default();
        t.server_sent(b'E', Some(b"SFATAL\0VFATAL\0C57P01\0Mterminating\0\0"));
        assert!(t.server_fatal);
        t.server_sent(b'E', Some(b"SERROR\0VERROR\0C42P01\0Mno\0\0"));
        assert!(!t.server_fatal);
        t.server_sent(b'E', Some(b"SFATAL"));
        assert!(!t.server_fatal, "malformed body");
    }

    const ERR: &[u8] = b"SERROR\0VERROR\0C42P01\0Mrelation \"nope\" does not exist\0\0";

    /// An extended COPY that fails before CopyInResponse (P B E S d c, table
    /// missing) leaves an Execute window that never lapses; a later simple COPY's
    /// CopyInResponse pops it: its Syncs are subtracted again and copy_in is never set.
    #[test]
    fn a_failed_extended_copy_window_does_not_close_a_later_simple_copy() {
        let mut t = Tracker::default();
        client(&mut t, b"PBES"); // COPY nope FROM STDIN, synced at once
        client(&mut t, b"dc"); // data sent ahead; the server skips it (error mode)
        client(&mut t, b"Q"); // COPY ok FROM STDIN, pipelined
        // Server: the Execute fails, the Sync is answered, then the query's COPY starts.
        server(
            &mut t,
            &[(b'1', b""), (b'2', b""), (b'E', ERR), (b'Z', b"I")],
        );
        server(&mut t, &[(b'G', b"\0\0\0")]);
        // The client now owes the COPY's data; the query's CommandComplete/ReadyForQuery are owed.
        assert_eq!(t.pending, 1, "pending miscounted");
        assert!(t.copy_in, "COPY open but not tracked");
        assert!(!t.server_idle(), "server released mid-COPY");
    }

    /// Same without the Sync ahead of the data: no miscount, but copy_in is never set, so a
    /// client stalling in the second COPY is never timed out.
    #[test]
    fn a_failed_extended_copy_window_does_not_hide_a_later_copy() {
        let mut t = Tracker::default();
        client(&mut t, b"PBEdcS");
        client(&mut t, b"Q");
        server(
            &mut t,
            &[(b'1', b""), (b'2', b""), (b'E', ERR), (b'Z', b"I")],
        );
        server(&mut t, &[(b'G', b"\0\0\0")]);
        assert!(t.copy_in, "COPY open but not tracked");
    }

    /// A simple COPY failing mid-stream: ErrorResponse, ReadyForQuery; the server
    /// is out of COPY and ignores a later CopyDone. A client that moves on without one leaves
    /// copy_in set for good: the server is never released.
    #[test]
    fn a_copy_failed_mid_stream_ends_at_ready_for_query() {
        let mut t = Tracker::default();
        client(&mut t, b"Q");
        server(&mut t, &[(b'G', b"\0\0\0")]);
        client(&mut t, b"d");
        server(
            &mut t,
            &[(b'E', b"SERROR\0VERROR\0C22P04\0Mbad\0\0"), (b'Z', b"I")],
        );
        client(&mut t, b"Q");
        server(&mut t, &[(b'C', b"SELECT 1\0"), (b'Z', b"I")]);
        assert!(t.server_idle(), "nothing owed, yet not idle: {t:?}");
    }

    /// An Execute window left when a Sync'd Execute's ReadyForQuery arrives with
    /// Parse/Bind pending (unsynced): a stray CopyDone then closes the next Execute's COPY
    /// and its Sync is subtracted twice.
    #[test]
    fn an_execute_window_ends_when_its_sync_is_answered() {
        let mut t = Tracker::default();
        client(&mut t, b"PBES"); // SELECT
        client(&mut t, b"PB"); // next exchange begun
        server(
            &mut t,
            &[
                (b'1', b""),
                (b'2', b""),
                (b'C', b"SELECT 1\0"),
                (b'Z', b"I"),
            ],
        );
        client(&mut t, b"c"); // stray: the server ignores it
        client(&mut t, b"ES"); // COPY ok FROM STDIN
        server(&mut t, &[(b'1', b""), (b'2', b""), (b'G', b"\0\0\0")]);
        assert!(t.copy_in, "COPY open but not tracked");
        assert!(!t.server_idle(), "server released mid-COPY");
    }
}
