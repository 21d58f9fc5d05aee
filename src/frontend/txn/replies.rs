//! Transaction mode: what the server owes for each request lakepool sent it, in order.
//!
//! When lakepool maps prepared statements it sends Parse and Close messages the client never
//! wrote (their replies must not reach the client) and skips Parse and Close messages the
//! client did write (their replies must be made up, in the place PostgreSQL would have put
//! them). Each request that produces a reply gets an [`Expect`] entry; server messages pop the
//! entries they complete. After an error in an extended-protocol exchange the server ignores
//! everything up to the next Sync, so the entries it will never answer are dropped then.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::error::ClientError;
use crate::upstream::prepared::{PreparedCache, Statement};

/// One request awaiting its reply.
#[derive(Debug)]
pub(crate) enum Expect {
    /// Parse. `forward` is false for a Parse lakepool added; `stmt` is removed from the server's
    /// cache if the server never completes it.
    Parse {
        /// The client sent this Parse (its ParseComplete goes to the client).
        forward: bool,
        /// The mapped statement it prepares, if named.
        stmt: Option<Arc<Statement>>,
        /// The client name this Parse mapped, undone if the Parse never succeeds.
        mapped: Option<Box<[u8]>>,
        /// A Close of the statement went just before it (the server may have had a copy): if
        /// both are skipped, that copy may still be there.
        closed_first: bool,
    },
    /// Bind, of the mapped statement when it names one.
    Bind(Option<Arc<Statement>>),
    /// Describe (answered by RowDescription or NoData), of the mapped statement when it names
    /// one.
    Describe(Option<Arc<Statement>>),
    /// Execute (answered by CommandComplete, EmptyQueryResponse, PortalSuspended or an error).
    Execute,
    /// Close. `forward` is false for a Close lakepool added (cache eviction).
    Close {
        /// The client sent this Close.
        forward: bool,
        /// The statement lakepool evicted from its cache to send this Close: back in the cache
        /// if the server never runs the Close.
        evicted: Option<Arc<Statement>>,
    },
    /// Sync: answered by ReadyForQuery, and ends the skipping after an error.
    Sync,
    /// Simple Query or FunctionCall: answered by ReadyForQuery, but ignored like any other
    /// message by a server skipping to Sync after an error in an extended exchange.
    Query,
    /// CopyDone/CopyFail sent before the server's CopyInResponse (pipelined COPY).
    CopyEnd,
    /// A reply lakepool makes up, sent once everything before it has been answered; with the
    /// change to the client's statement names to undo if the server skips past it.
    Synth(Synth, Option<Undo>),
    /// A simple query lakepool added before the client's (a SQL `PREPARE` the client ran on
    /// another server, of the statement named): all its replies, ReadyForQuery included, are
    /// dropped.
    Injected(Box<str>),
    /// A Sync lakepool added to end requests of its own (owed Closes, statements prepared for
    /// a query reading `pg_prepared_statements`) before a client's simple query: its
    /// ReadyForQuery is dropped, and an error before it is lakepool's, not the client's.
    OwnSync,
}

/// Statements and whether a Parse (true) or an eviction Close (false) of lakepool's touches
/// each, in queue order ([`ReplyQueue::prepared_later`]).
pub(crate) type StatementOps = Vec<(Arc<Statement>, bool)>;

/// A change to a client's statement names made when a request was queued, to be undone when
/// the server ignores that request (an earlier error in the same exchange), as PostgreSQL
/// would never have made it.
#[derive(Debug, Clone)]
pub(crate) enum Undo {
    /// The client's Parse created this name.
    Unmap(Box<[u8]>, Arc<Statement>),
    /// The client's Close (or a `DEALLOCATE` lakepool answered) removed this name.
    Remap(Box<[u8]>, Arc<Statement>),
    /// lakepool's own `PREPARE` of this SQL-level statement did not run: not on the server.
    NotOnServer(Box<str>),
    /// A `DEALLOCATE` lakepool answered removed this SQL-level statement (name, `PREPARE`
    /// text).
    SqlPrepared(Box<str>, Arc<str>),
}

/// A reply lakepool makes up for a request it did not need to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Synth {
    /// The statement was already prepared on this server.
    ParseComplete,
    /// The client closed a statement lakepool keeps prepared on the server.
    CloseComplete,
    /// A simple query lakepool answered itself: CommandComplete with this tag, then
    /// ReadyForQuery with the transaction status at that point. In a failed transaction the
    /// server would have refused it: then the error PostgreSQL sends instead.
    Command(&'static str),
    /// An error lakepool raised for a client's extended-protocol message, in the place the
    /// server would have put it; lakepool drops the client's messages up to Sync as the server
    /// would skip them.
    Error(Box<ClientError>),
    /// An error lakepool raised for a whole simple query: ErrorResponse, then ReadyForQuery.
    QueryError(Box<ClientError>),
}

/// Entries a reused queue keeps room for ([`ReplyQueue::reset_for_reuse`]): a pipelined
/// extended query (Parse, Bind, Describe, Execute, Sync) and a little more.
const KEPT_CAPACITY: usize = 8;

/// The entries of one client/server pairing.
#[derive(Debug, Default)]
pub(crate) struct ReplyQueue {
    q: VecDeque<Expect>,
    /// The server hit an error in an extended exchange and ignores messages until Sync.
    skipping: bool,
    /// The server is in COPY FROM STDIN: it ignores Sync until CopyDone/CopyFail.
    copy_in: bool,
    /// Name changes to undo, collected for the client side to apply.
    undo: Vec<Undo>,
    /// Simple queries the server skipped (sent after an error in an extended exchange, before
    /// its Sync): they get no ReadyForQuery, which the caller's tracker must stop waiting for.
    skipped_queries: u32,
    /// The mapped statement of the request the last ErrorResponse answered.
    failed: Option<Arc<Statement>>,
    /// Entries of earlier exchanges queued before a batch that may be replayed
    /// ([`Self::mark_batch`]): the replies are the batch's exchange's once none is left.
    ahead_of_batch: usize,
    /// Statements (by id) with lakepool's Closes (evictions) and Parses in the queue, and
    /// how many of each: the server may still skip them ([`Self::evicting`],
    /// [`Self::parsing`]).
    in_flight: HashMap<u64, (u32, u32)>,
}

impl ReplyQueue {
    /// Holds nothing: equal to a new one. Every field is named, so a new field must be
    /// considered here.
    pub(crate) fn is_pristine(&self) -> bool {
        let Self {
            q,
            skipping,
            copy_in,
            undo,
            skipped_queries,
            failed,
            ahead_of_batch,
            in_flight,
        } = self;
        q.is_empty()
            && !*skipping
            && !*copy_in
            && undo.is_empty()
            && *skipped_queries == 0
            && failed.is_none()
            && *ahead_of_batch == 0
            && in_flight.is_empty()
    }

    /// An empty queue made ready for reuse by another client: capacity the last one grew
    /// beyond a few entries is freed; a few entries' worth is kept, so a client running one
    /// request at a time does not allocate the queue again for every transaction.
    pub(crate) fn reset_for_reuse(&mut self) {
        if self.is_pristine()
            && self.q.capacity() <= KEPT_CAPACITY
            && self.undo.capacity() == 0
            && self.in_flight.capacity() == 0
        {
            // The common case, a client that ran simple requests: nothing to free or reset.
            return;
        }
        let mut q = std::mem::take(&mut self.q);
        *self = Self::default();
        if q.capacity() <= KEPT_CAPACITY {
            q.clear();
            self.q = q;
        }
    }

    /// True when nothing is owed.
    pub(crate) fn is_empty(&self) -> bool {
        self.q.is_empty()
    }

    /// Entries waiting: bounded by the caller, which stops reading the client beyond a limit.
    pub(crate) fn len(&self) -> usize {
        self.q.len()
    }

    /// Closes of earlier exchanges (their Sync is queued) whose name comes back should the
    /// server skip them ([`Undo::Remap`]): how many names the client may still have, and their
    /// statement text's bytes. A Close in the current exchange is left out: should the server
    /// skip it, it skips every later message of the exchange too, and their names go. A
    /// `DEALLOCATE` lakepool answers always counts, of a protocol-level or a SQL-level
    /// statement: in a failed transaction it is refused on its own, and a `ROLLBACK` after it
    /// lets later Parses and `PREPARE`s succeed (fuzzing finding 13).
    pub(crate) fn pending_remaps(&self) -> (usize, usize) {
        let (mut done, mut open) = ((0, 0), (0, 0));
        for e in &self.q {
            match e {
                Expect::Synth(Synth::Command(_), Some(Undo::Remap(_, s))) => {
                    done = (done.0 + 1, done.1 + s.rest_len());
                }
                Expect::Synth(Synth::Command(_), Some(Undo::SqlPrepared(_, text))) => {
                    done = (done.0 + 1, done.1 + text.len());
                }
                Expect::Synth(_, Some(Undo::Remap(_, s))) => {
                    open = (open.0 + 1, open.1 + s.rest_len());
                }
                Expect::Sync => {
                    done = (done.0 + open.0, done.1 + open.1);
                    open = (0, 0);
                }
                _ => {}
            }
        }
        done
    }

    /// The next entry is the first of a batch that may be replayed: from here on
    /// [`Self::batch_reached`] says whether the server's replies are still to earlier requests.
    pub(crate) fn mark_batch(&mut self) {
        // Only earlier exchanges (up to the last Sync or added query) are ahead: requests of
        // the batch's own exchange are part of its fate (an error rolls them back with it).
        self.ahead_of_batch = self
            .q
            .iter()
            .rposition(|e| {
                matches!(
                    e,
                    Expect::Sync | Expect::Query | Expect::Injected(_) | Expect::OwnSync
                )
            })
            .map_or(0, |i| i + 1);
    }

    /// Every request queued before the marked batch has been answered: what the server sends
    /// now is the batch's (or later). A stale-plan error to an earlier request (a query
    /// lakepool added, an earlier exchange) is not the batch's (fuzz finding 9).
    pub(crate) fn batch_reached(&self) -> bool {
        self.ahead_of_batch == 0
    }

    /// Whether a Close lakepool sent to evict statement `id` is still unanswered: should the
    /// server skip it (an error earlier in its exchange), the statement is still prepared
    /// there, and a Parse of it would fail with "already exists".
    pub(crate) fn evicting(&self, id: u64) -> bool {
        self.in_flight.get(&id).is_some_and(|n| n.0 > 0)
    }

    /// Whether a Parse lakepool sent of statement `id` is still unanswered.
    pub(crate) fn parsing(&self, id: u64) -> bool {
        self.in_flight.get(&id).is_some_and(|n| n.1 > 0)
    }

    /// A Parse of statement `id` sent with nothing in front of it (the server had none) was
    /// skipped, and no later Parse of it is queued: eviction Closes of it queued since close
    /// nothing, so the server skipping them leaves nothing to close either.
    fn never_prepared(&mut self, id: u64) {
        if !self.evicting(id) {
            return;
        }
        for e in &mut self.q {
            if let Expect::Close { evicted, .. } = e
                && evicted.as_ref().is_some_and(|s| s.id == id)
            {
                *evicted = None;
            }
        }
        self.in_flight.remove(&id);
    }

    /// The statement a Close (eviction) or Parse of lakepool's names, and which of the two.
    fn tracked(e: &Expect) -> Option<(u64, bool)> {
        match e {
            Expect::Close {
                evicted: Some(s), ..
            } => Some((s.id, true)),
            Expect::Parse { stmt: Some(s), .. } => Some((s.id, false)),
            _ => None,
        }
    }

    /// Removes the head entry.
    fn pop_front(&mut self) -> Option<Expect> {
        self.ahead_of_batch = self.ahead_of_batch.saturating_sub(1);
        let e = self.q.pop_front();
        if let Some(e) = &e {
            self.forget(e);
        }
        self.drop_dead_copy_ends();
        e
    }

    /// A CopyDone/CopyFail at the head has nothing before it that could still start its COPY
    /// (the COPY failed before it began): PostgreSQL ignores it, and so does the queue. Left
    /// there, it would take the next error for one in an extended exchange (review of 61a3618).
    fn drop_dead_copy_ends(&mut self) {
        while matches!(self.q.front(), Some(Expect::CopyEnd)) {
            self.ahead_of_batch = self.ahead_of_batch.saturating_sub(1);
            self.q.pop_front();
        }
    }

    /// Removes the entry at `i`.
    fn remove(&mut self, i: usize) {
        if i < self.ahead_of_batch {
            self.ahead_of_batch -= 1;
        }
        if let Some(e) = self.q.remove(i) {
            self.forget(&e);
        }
    }

    /// Bookkeeping for an entry leaving the queue.
    fn forget(&mut self, e: &Expect) {
        if let Some((id, close)) = Self::tracked(e)
            && let Some(n) = self.in_flight.get_mut(&id)
        {
            let count = if close { &mut n.0 } else { &mut n.1 };
            *count = count.saturating_sub(1);
            if *n == (0, 0) {
                self.in_flight.remove(&id);
            }
        }
    }

    /// What the requests after the head (queued after the one being answered) do to the
    /// server's statements, in order (a statement and whether it is a Parse or an eviction
    /// Close), and the client names they create.
    pub(crate) fn prepared_later(&self) -> (StatementOps, Vec<Box<[u8]>>) {
        let mut ops = Vec::new();
        let mut names = Vec::new();
        for e in self.q.iter().skip(1) {
            match e {
                Expect::Parse { stmt, mapped, .. } => {
                    ops.extend(stmt.iter().map(|s| (Arc::clone(s), true)));
                    names.extend(mapped.iter().cloned());
                }
                Expect::Close {
                    evicted: Some(s), ..
                } => ops.push((Arc::clone(s), false)),
                Expect::Synth(_, Some(Undo::Unmap(n, _))) => names.push(n.clone()),
                _ => {}
            }
        }
        (ops, names)
    }

    /// ReadyForQuery messages owed for lakepool's own requests (its Syncs and added queries),
    /// which leave the client's transaction status as it was.
    pub(crate) fn own_ready_owed(&self) -> u32 {
        let own = self
            .q
            .iter()
            .filter(|e| matches!(e, Expect::OwnSync | Expect::Injected(_)))
            .count();
        u32::try_from(own).unwrap_or(u32::MAX)
    }

    /// The server ignores requests until the next Sync: forward them untouched and expect
    /// nothing.
    pub(crate) fn skipping(&self) -> bool {
        self.skipping
    }

    /// Records a request just queued for the server (or a made-up reply).
    pub(crate) fn push(&mut self, e: Expect) {
        match e {
            Expect::Sync | Expect::Query if self.copy_in => {}
            Expect::Sync | Expect::OwnSync => {
                self.skipping = false;
                self.q.push_back(e);
            }
            // Ignored by the server until the Sync: no ReadyForQuery comes for it.
            Expect::Query if self.skipping => self.skipped_queries += 1,
            Expect::Injected(name) if self.skipping => {
                self.skipped_queries += 1;
                self.undo.push(Undo::NotOnServer(name));
            }
            Expect::CopyEnd if self.copy_in => self.copy_in = false,
            // Nothing before it can start a COPY: ignored, as PostgreSQL ignores it.
            Expect::CopyEnd if self.q.is_empty() => {}
            _ if self.skipping => {}
            e => {
                if let Some((id, close)) = Self::tracked(&e) {
                    let n = self.in_flight.entry(id).or_default();
                    if close {
                        n.0 += 1;
                    } else {
                        n.1 += 1;
                    }
                }
                self.q.push_back(e);
            }
        }
    }

    /// The head is a made-up reply: it is due now.
    pub(crate) fn synth_due(&self) -> bool {
        matches!(self.q.front(), Some(Expect::Synth(..)))
    }

    /// The made-up reply at the head, if the head is one: it is due now. With it, the change
    /// to undo should the reply turn out to be an error (a command refused in a failed
    /// transaction).
    pub(crate) fn pop_synth(&mut self) -> Option<(Synth, Option<Undo>)> {
        if !matches!(self.q.front(), Some(Expect::Synth(..))) {
            return None;
        }
        match self.pop_front() {
            Some(Expect::Synth(s, u)) => Some((s, u)),
            _ => None,
        }
    }

    /// The mapped statement whose Bind or Describe the last ErrorResponse answered.
    pub(crate) fn take_failed(&mut self) -> Option<Arc<Statement>> {
        self.failed.take()
    }

    /// Name changes the server made void (see [`Undo`]); empty almost always.
    pub(crate) fn take_undo(&mut self) -> Option<std::vec::Drain<'_, Undo>> {
        (!self.undo.is_empty()).then(|| self.undo.drain(..))
    }

    /// A request the server will never answer: its effects are undone.
    fn unanswered(&mut self, e: Expect, cache: &mut PreparedCache) {
        match e {
            Expect::Parse {
                stmt,
                mapped,
                closed_first,
                ..
            } => {
                // A later Parse of it, still unanswered, decides what the server has.
                if let Some(s) = &stmt
                    && !self.parsing(s.id)
                {
                    cache.parse_skipped(Arc::clone(s), closed_first);
                    if !closed_first {
                        self.never_prepared(s.id);
                    }
                }
                if let (Some(n), Some(s)) = (mapped, stmt) {
                    self.undo.push(Undo::Unmap(n, s));
                }
            }
            Expect::Close {
                evicted: Some(s), ..
            } => cache.close_skipped(s),
            Expect::Synth(_, Some(u)) => self.undo.push(u),
            Expect::Query => self.skipped_queries += 1,
            Expect::Injected(name) => {
                self.skipped_queries += 1;
                self.undo.push(Undo::NotOnServer(name));
            }
            _ => {}
        }
    }

    /// How many simple queries the server skipped since the last call (see
    /// [`Self::skipped_queries`]); the caller's tracker stops waiting for their replies.
    pub(crate) fn take_skipped_queries(&mut self) -> u32 {
        std::mem::take(&mut self.skipped_queries)
    }

    /// Accounts for one server message with tag `tag`; returns whether it goes to the client.
    pub(crate) fn on_server(&mut self, tag: u8, cache: &mut PreparedCache) -> bool {
        if tag == b'E' {
            // Set again below when the error answers a Bind/Describe of a mapped statement.
            self.failed = None;
        }
        if matches!(self.q.front(), Some(Expect::OwnSync)) {
            if tag == b'Z' {
                self.pop_front();
                self.skipping = false;
                self.copy_in = false;
            }
            return false;
        }
        if matches!(self.q.front(), Some(Expect::Injected(_))) {
            if tag == b'Z' {
                self.pop_front();
            }
            return false;
        }
        match tag {
            b'1' => match self.q.front() {
                Some(Expect::Parse { forward, stmt, .. }) => {
                    if let Some(s) = stmt {
                        s.accepted.store(true, Ordering::Relaxed);
                    }
                    let f = *forward;
                    self.pop_front();
                    f
                }
                _ => true,
            },
            b'3' => match self.q.front() {
                Some(Expect::Close { forward, .. }) => {
                    let f = *forward;
                    self.pop_front();
                    f
                }
                _ => true,
            },
            b'2' => {
                self.pop_if(|e| matches!(e, Expect::Bind(_)));
                true
            }
            b'T' | b'n' => {
                self.pop_if(|e| matches!(e, Expect::Describe(_)));
                true
            }
            b'C' | b'I' | b's' => {
                self.pop_if(|e| matches!(e, Expect::Execute));
                true
            }
            b'G' => {
                self.copy_in_started();
                true
            }
            b'E' => self.error(cache),
            b'Z' => {
                self.unanswered_to_ready(cache);
                // Lakepool's own (reached only past requests the server left unanswered).
                let own = matches!(self.q.front(), Some(Expect::Injected(_) | Expect::OwnSync));
                self.pop_if(|e| {
                    matches!(
                        e,
                        Expect::Sync | Expect::Query | Expect::Injected(_) | Expect::OwnSync
                    )
                });
                self.skipping = false;
                self.copy_in = false;
                !own
            }
            _ => true,
        }
    }

    fn pop_if(&mut self, pred: impl Fn(&Expect) -> bool) {
        if self.q.front().is_some_and(pred) {
            self.pop_front();
        }
    }

    /// CopyInResponse: the server now ignores Syncs until the client's CopyDone/CopyFail.
    fn copy_in_started(&mut self) {
        let mut i = 1;
        while i < self.q.len() {
            match self.q[i] {
                Expect::Sync | Expect::Query => {
                    self.remove(i);
                }
                Expect::CopyEnd => {
                    self.remove(i);
                    return;
                }
                _ => i += 1,
            }
        }
        self.copy_in = true;
    }

    /// ErrorResponse. In a simple query the ReadyForQuery still follows; in an extended
    /// exchange the failed request and everything up to the next Sync go unanswered. Whether
    /// it goes to the client: not when it ends requests of lakepool's own ([`Expect::OwnSync`]).
    fn error(&mut self, cache: &mut PreparedCache) -> bool {
        self.copy_in = false;
        self.failed = match self.q.front() {
            Some(Expect::Bind(s) | Expect::Describe(s)) => s.clone(),
            _ => None,
        };
        match self.q.front() {
            // A simple query's own error: its ReadyForQuery follows, nothing is skipped.
            None | Some(Expect::Sync | Expect::Query) => return true,
            Some(Expect::OwnSync) => return false,
            Some(_) => {}
        }
        let own = self
            .q
            .iter()
            .find(|e| matches!(e, Expect::Sync | Expect::OwnSync))
            .is_some_and(|e| matches!(e, Expect::OwnSync));
        if !self.unanswered_to_sync(cache) {
            self.skipping = true;
        }
        !own
    }

    /// Undoes the requests before the next Sync (left in place), which the server never ran
    /// (simple queries among them included: a server skipping to Sync ignores them too);
    /// true when there is such a Sync.
    fn unanswered_to_sync(&mut self, cache: &mut PreparedCache) -> bool {
        let sync = self
            .q
            .iter()
            .position(|e| matches!(e, Expect::Sync | Expect::OwnSync));
        self.unanswered_first(sync.unwrap_or(self.q.len()), cache);
        sync.is_some()
    }

    /// A ReadyForQuery: it answers the first Sync or simple query; requests before it that
    /// got no reply are undone.
    fn unanswered_to_ready(&mut self, cache: &mut PreparedCache) {
        let ready = self.q.iter().position(|e| {
            matches!(
                e,
                Expect::Sync | Expect::Query | Expect::Injected(_) | Expect::OwnSync
            )
        });
        self.unanswered_first(ready.unwrap_or(self.q.len()), cache);
    }

    /// Undoes the first `n` requests, which the server never ran. Newest first, as any undo
    /// log: a statement evicted to make room for a Parse that was skipped too is restored only
    /// after that Parse is undone, and a name closed after its skipped Parse is not brought
    /// back (fuzz finding 8).
    fn unanswered_first(&mut self, n: usize, cache: &mut PreparedCache) {
        // Usually none: every ReadyForQuery runs this.
        if n > 0 {
            self.ahead_of_batch = self.ahead_of_batch.saturating_sub(n);
            let skipped: Vec<Expect> = self.q.drain(..n).collect();
            for e in skipped.into_iter().rev() {
                self.forget(&e);
                self.unanswered(e, cache);
            }
        }
        self.drop_dead_copy_ends();
    }
}

#[cfg(test)]
#[path = "replies_tests.rs"]
mod tests;
