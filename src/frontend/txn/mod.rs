//! Transaction pooling: what a client keeps between the transactions it runs on whatever
//! server it gets, and the message-level work that makes that look like one session.
//!
//! - [`client`]: client → server messages: framing, dispatch by kind, messages passed or
//!   refused, lakepool's own replies queued.
//! - [`inspect`]: SQL inspected for session state; SQL-level prepared statements followed.
//! - [`statements`]: named prepared statements mapped to per-pool server-side statements.
//! - [`names`]: a client's statement names and their budget.
//! - [`catalog`]: `pg_prepared_statements` showing the client's own statements.
//! - [`replay`]: a batch sent again after a stale shared statement.
//! - [`without_server`]: prepare-only input answered before a server is attached.
//! - [`server`]: server → client messages: replies to what lakepool added dropped, replies to
//!   what it answered itself made up, in order.
//! - [`replies`]: the queue of replies owed.
//! - [`state`]: session settings read back after a transaction and restored before the next.

mod catalog;
pub(crate) mod client;
mod inspect;
mod names;
pub(crate) mod parked;
mod replay;
pub(crate) mod replies;
mod server;
pub(crate) mod state;
mod statements;
mod without_server;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;

use crate::error::ClientError;
use crate::pool::statements::StatementRegistry;
use crate::proto::sqlstate::SqlState;
use crate::upstream::prepared::PreparedCache;
use replies::ReplyQueue;
use state::Changes;

/// Limits and switches for one pool's transaction-mode clients.
#[derive(Debug, Clone)]
pub(crate) struct TxnLimits {
    /// Statements prepared per server connection; 0 turns statement mapping off.
    pub(crate) cache_cap: usize,
    /// Named prepared statements one client may have.
    pub(crate) max_statements: usize,
    /// Bytes of statement text one client's names may refer to.
    pub(crate) max_statement_bytes: usize,
    /// Largest client message lakepool holds whole to inspect or rewrite.
    pub(crate) hold_limit: usize,
    /// Largest client message accepted at all.
    pub(crate) max_message: usize,
}

impl TxnLimits {
    /// Statement mapping is on.
    pub(crate) fn mapping(&self) -> bool {
        self.cache_cap > 0
    }
}

/// Session features that do not outlive a transaction in transaction pooling mode: the client
/// is warned, and lakepool undoes them before the server serves another client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Limitation {
    /// LISTEN.
    Listen,
    /// Session-level advisory locks.
    AdvisoryLock,
    /// Cursors WITH HOLD.
    HoldCursor,
    /// Temporary tables, views, sequences.
    TempTable,
    /// SQL `PREPARE` while statement mapping is off.
    SqlPrepare,
}

impl Limitation {
    /// The warning's message and hint.
    fn text(self) -> (&'static str, &'static str) {
        match self {
            Limitation::Listen => (
                "lakepool: LISTEN lasts only until the end of the transaction in transaction pooling mode (lakepool runs UNLISTEN before the server connection serves another client)",
                "use a database in session pooling mode for LISTEN",
            ),
            Limitation::AdvisoryLock => (
                "lakepool: a session-level advisory lock lasts only until the end of the transaction in transaction pooling mode (lakepool releases it before the server connection serves another client)",
                "use pg_advisory_xact_lock, or session pooling mode",
            ),
            Limitation::HoldCursor => (
                "lakepool: a cursor WITH HOLD lasts only until the end of the transaction in transaction pooling mode (lakepool closes it before the server connection serves another client)",
                "close the cursor before the transaction ends, or use session pooling mode",
            ),
            Limitation::TempTable => (
                "lakepool: a temporary object lasts only until the end of the transaction in transaction pooling mode (lakepool drops it before the server connection serves another client)",
                "create it ON COMMIT DROP, or use session pooling mode",
            ),
            Limitation::SqlPrepare => (
                "lakepool: SQL PREPARE lasts only until the end of the transaction when max_prepared_statements = 0",
                "use protocol-level prepared statements, set max_prepared_statements above 0, or use session pooling mode",
            ),
        }
    }
}

/// What a transaction-mode client keeps between transactions.
#[derive(Debug, Default)]
pub(crate) struct TxnClient {
    /// The client's named (protocol-level) statements, by the client's name.
    statements: names::ClientNames,
    /// SQL-level prepared statements: name → the `PREPARE` statement's text.
    sql_prepared: HashMap<String, Arc<str>>,
    /// SQL-level prepared statements present on the server attached now.
    sql_on_server: Vec<String>,
    /// Session state touched since the last read back.
    pub(crate) changes: Changes,
    /// Warnings not yet sent.
    pub(crate) notices: Vec<Limitation>,
    /// lakepool answered a message with an error: client messages are dropped up to Sync, as
    /// the server would skip them.
    discarding: bool,
    /// A batch that may have to be sent again (see [`replay::Replay`]).
    replay: Option<Box<replay::Replay>>,
}

impl TxnClient {
    /// Holds nothing: equal to a new one. Every field is named, so a new field must be
    /// considered here.
    pub(crate) fn is_pristine(&self) -> bool {
        let Self {
            statements,
            sql_prepared,
            sql_on_server,
            changes,
            notices,
            discarding,
            replay,
        } = self;
        statements.is_empty()
            && sql_prepared.is_empty()
            && sql_on_server.is_empty()
            && changes.is_empty()
            && notices.is_empty()
            && !*discarding
            && replay.is_none()
    }

    /// Equal to a new one, capacity included: parking it then needs no reset. Every field is
    /// named, as in [`Self::is_pristine`].
    pub(crate) fn is_bare(&self) -> bool {
        let Self {
            statements,
            sql_prepared,
            sql_on_server,
            changes,
            notices,
            discarding,
            replay,
        } = self;
        statements.is_bare()
            && sql_prepared.capacity() == 0
            && sql_on_server.capacity() == 0
            && changes.is_bare()
            && notices.capacity() == 0
            && !*discarding
            && replay.is_none()
    }

    /// Named statements the client has (the tests and the fuzz harness check it).
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn statement_count(&self) -> usize {
        self.statements.len()
    }

    /// Statements of both kinds the client has, as its budget counts them.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn budgeted_statements(&self) -> usize {
        self.prepared_footprint().0
    }

    /// What the client's prepared statements take in lakepool, protocol-level and SQL-level
    /// (`PREPARE`) together: names, and bytes of statement text. One budget bounds both.
    fn prepared_footprint(&self) -> (usize, usize) {
        let sql_bytes: usize = self.sql_prepared.values().map(|t| t.len()).sum();
        (
            self.statements.len() + self.sql_prepared.len(),
            self.statements.bytes() + sql_bytes,
        )
    }

    /// The error for a statement past the client's budget.
    fn too_many_statements(&self, limits: &TxnLimits) -> ClientError {
        let (names, bytes) = self.prepared_footprint();
        ClientError::error(
            SqlState::PROGRAM_LIMIT_EXCEEDED,
            format!(
                "lakepool: too many prepared statements for this client ({names} statements, {bytes} bytes; the limits are max_client_prepared_statements = {} and max_client_prepared_bytes = {})",
                limits.max_statements, limits.max_statement_bytes
            ),
        )
    }

    /// Forgets every protocol-level prepared statement of the client (`DISCARD ALL`,
    /// `DEALLOCATE ALL`): all are gone from the server, but for the client names requests
    /// queued after it create.
    fn forget_statements_except(&mut self, keep: &[Box<[u8]>]) {
        let gone: Vec<Box<[u8]>> = self
            .statements
            .iter()
            .filter(|(n, _)| !keep.iter().any(|k| **k == **n))
            .map(|(n, _)| n.into())
            .collect();
        for n in gone {
            self.statements.remove(&n);
        }
        // SQL-level statements were dropped when the command was sent
        // (`sql_statements_gone`), in order with the PREPAREs after it.
    }

    /// The server is being released: SQL-level statements on it are deallocated by the
    /// cleanup, so none is on the next server.
    pub(crate) fn detached(&mut self) {
        // A batch is replayed only on the server that ran it.
        self.replay = None;
        for n in std::mem::take(&mut self.sql_on_server) {
            self.changes.deallocate_later(&n);
        }
    }

    /// Whether lakepool must look at the server before the server goes back to the pool.
    pub(crate) fn needs_follow_up(&self) -> bool {
        !self.changes.is_empty() || !self.sql_on_server.is_empty()
    }
}

/// What the client side works against while attached to one server.
pub(crate) struct Attached<'a> {
    /// Requests awaiting replies (statement mapping on).
    pub(crate) queue: &'a mut ReplyQueue,
    /// The server's prepared statements.
    pub(crate) cache: &'a mut PreparedCache,
    /// The pool's interned statements.
    pub(crate) registry: &'a StatementRegistry,
    /// Limits.
    pub(crate) limits: &'a TxnLimits,
}

/// Statement names lakepool uses on server connections; a client may not name them in SQL.
fn is_reserved(name: &str) -> bool {
    name.starts_with(crate::upstream::prepared::NAME_PREFIX)
}

#[cfg(test)]
mod pristine_tests {
    use super::TxnClient;
    use super::replies::ReplyQueue;

    /// An idle client's state is parked only when it equals a new one.
    #[test]
    fn a_new_state_is_pristine_and_one_holding_something_is_not() {
        let mut c = TxnClient::default();
        assert!(c.is_pristine());
        c.changes.set("work_mem");
        assert!(!c.is_pristine(), "a change not read back yet");
        let mut c = TxnClient::default();
        c.notices.push(super::Limitation::Listen);
        assert!(!c.is_pristine(), "a warning not sent yet");
        let c = TxnClient {
            discarding: true,
            ..TxnClient::default()
        };
        assert!(!c.is_pristine(), "dropping messages up to Sync");
        assert!(ReplyQueue::default().is_pristine());
    }
}
