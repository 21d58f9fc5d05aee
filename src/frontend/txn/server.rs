//! Transaction mode, server → client: replies to what lakepool added are dropped, replies to
//! what it answered itself are made up in the place the server would have put them, and what
//! the server says about prepared statements is applied to the caches.

use bytes::{BufMut, BytesMut};

use std::sync::atomic::Ordering;

use super::replay::ReplayState;
use super::replies::Synth;
use super::{Attached, Limitation, TxnClient};
use crate::error::ClientError;
use crate::pool::stats::error_code;
use crate::proto::frame::put_header;
use crate::proto::sqlstate::SqlState;
use crate::proto::write;

impl TxnClient {
    /// Accounts for one server message (`body` when it was small enough to look at, for the
    /// tags the pump inspects); returns whether it goes to the client.
    pub(crate) fn on_server_message(
        &mut self,
        tag: u8,
        body: Option<&[u8]>,
        at: &mut Attached<'_>,
    ) -> bool {
        // A FATAL error ends the connection: the client hears it even when it answers a
        // request of lakepool's own or comes during a replay (reviews of b9f7ea3 and 995f7a6:
        // it went unheard, then the socket closed without a word).
        let forward = self.on_mapped_server_message(tag, body, at)
            || (tag == b'E' && body.is_some_and(crate::frontend::tracker::is_fatal));
        // Nothing owed any more: a batch waiting for its replies got them or was skipped (or
        // the server broke the protocol); it is not replayed, and nothing waits for it.
        if at.queue.is_empty()
            && self.replay.as_ref().is_some_and(|r| {
                // Not Off: it ends at ReadyForQuery, and until then keeps a later cached
                // Parse of the same exchange from starting a replay of its own.
                matches!(r.state, ReplayState::Armed | ReplayState::Retrying)
            })
        {
            self.replay = None;
        }
        forward
    }

    fn on_mapped_server_message(
        &mut self,
        tag: u8,
        body: Option<&[u8]>,
        at: &mut Attached<'_>,
    ) -> bool {
        // Replies to requests queued before a replayable batch (an earlier exchange, a query
        // lakepool added) say nothing about it.
        let before_batch = self.replay.is_some() && !at.queue.batch_reached();
        if !before_batch && let Some(forward) = self.replaying(tag, body, at) {
            return forward;
        }
        if let (b'C', Some(b)) = (tag, body) {
            if b.starts_with(b"DISCARD ALL\0") || b.starts_with(b"DEALLOCATE ALL\0") {
                // What was prepared is gone; what requests queued after it prepare or name is
                // not (a pipelined Parse runs after the DISCARD).
                let (ops, names) = at.queue.prepared_later();
                at.cache.clear();
                for (s, parse) in ops {
                    if parse {
                        at.cache.reinsert(s, at.limits.cache_cap);
                    } else {
                        at.cache.closing(s.id);
                    }
                }
                self.forget_statements_except(&names);
            } else if b.starts_with(b"DROP ") || b.starts_with(b"ALTER ") {
                // Statements prepared before may depend on what changed.
                at.registry.schema_changed();
            }
        }
        let forward = self.account(tag, at);
        self.note_failed_statement(tag, body, at);
        match self.replay.as_mut() {
            _ if before_batch => {}
            Some(_) if tag == b'Z' => self.replay = None,
            Some(r) if forward => r.state = ReplayState::Off,
            _ => {}
        }
        forward
    }

    /// What an error to a Bind or Describe of a mapped statement says about it. A stale plan
    /// (planned against objects that changed): clients move to a fresh statement. "Does not
    /// exist": something lakepool did not see (a `DEALLOCATE` in a function or `DO` block)
    /// dropped it, so this server stops trusting it and the next use prepares it again,
    /// instead of every client failing until it is evicted.
    fn note_failed_statement(&mut self, tag: u8, body: Option<&[u8]>, at: &mut Attached<'_>) {
        let Some(body) = body.filter(|_| tag == b'E') else {
            return;
        };
        if is_stale_plan(body) {
            if let Some(s) = at.queue.take_failed() {
                s.stale.store(true, Ordering::Relaxed);
            }
            at.registry.schema_changed();
        } else if error_code(body) == Some(SqlState::INVALID_SQL_STATEMENT_NAME.as_str().as_bytes())
            && let Some(s) = at.queue.take_failed()
            // About this statement (not one a function evaluated at Bind time names).
            && names_statement(body, &s.name)
            // A later Parse of it, still unanswered, decides what the server has.
            && !at.queue.parsing(s.id)
        {
            at.cache.distrust(&s);
        }
    }

    /// The reply queue's part, with the name changes it undoes applied.
    fn account(&mut self, tag: u8, at: &mut Attached<'_>) -> bool {
        let forward = at.queue.on_server(tag, at.cache);
        if let Some(undo) = at.queue.take_undo() {
            let undo: Vec<_> = undo.collect();
            for u in undo {
                self.apply_undo(u);
            }
        }
        forward
    }

    /// A batch being replayed (see [`super::client::Replay`]): Some(false) for the server's
    /// replies to the stale attempt, which the client never sees.
    fn replaying(&mut self, tag: u8, body: Option<&[u8]>, at: &mut Attached<'_>) -> Option<bool> {
        let state = self.replay.as_ref()?.state;
        match (state, tag) {
            (ReplayState::Armed, b'E')
                if body.is_some_and(is_stale_plan) && at.queue.batch_reached() =>
            {
                self.account(tag, at);
                let _ = at.queue.take_failed();
                if let Some(r) = self.replay.as_mut() {
                    r.state = ReplayState::Retrying;
                }
                Some(false)
            }
            (ReplayState::Retrying, b'Z') => {
                self.account(tag, at);
                if let Some(r) = self.replay.as_mut() {
                    r.state = ReplayState::Ready;
                }
                Some(false)
            }
            (ReplayState::Retrying, _) => {
                self.account(tag, at);
                Some(false)
            }
            _ => None,
        }
    }

    /// A batch that may be replayed has been sent whole and its fate is not known yet: the
    /// client's next messages wait, or they would reach the server before the replayed batch
    /// (their replies in its place), or be cut by it mid-message.
    pub(crate) fn replay_pending(&self) -> bool {
        self.replay.as_ref().is_some_and(|r| {
            matches!(
                r.state,
                ReplayState::Armed | ReplayState::Retrying | ReplayState::Ready
            )
        })
    }

    /// A stale batch's replies are all in: it is to be sent again now.
    pub(crate) fn replay_due(&self) -> bool {
        self.replay
            .as_ref()
            .is_some_and(|r| r.state == ReplayState::Ready)
    }

    /// Whether something is ready to be written at the next boundary of the server's stream.
    pub(crate) fn has_due(&self, at: &Attached<'_>) -> bool {
        !self.notices.is_empty() || at.queue.synth_due()
    }

    /// Writes what [`Self::has_due`] reported into `out`; `status` is the transaction status
    /// at this point of the stream.
    pub(crate) fn write_due(&mut self, at: &mut Attached<'_>, status: u8, out: &mut BytesMut) {
        for n in self.notices.drain(..) {
            write_notice(n, out);
        }
        while let Some((s, undo)) = at.queue.pop_synth() {
            // In a failed transaction the server would have refused the command: what
            // lakepool changed for it is undone (the client keeps its statement).
            if matches!(s, Synth::Command(_))
                && status == b'E'
                && let Some(u) = undo
            {
                self.apply_undo(u);
            }
            write_synth(&s, out, status);
        }
    }
}

/// Errors that mean a prepared statement was planned against objects that have since changed:
/// a type it uses was dropped (`cache lookup failed for type`), or its result type changed.
/// Whether an error's message names the statement `name`, quoted as the server's language
/// quotes it (`"…"`, `»…«`, `« … »`, `„…“`, `「…」`): the name alone between quotes, not
/// the start of a longer quoted name.
fn names_statement(body: &[u8], name: &str) -> bool {
    let message = crate::proto::backend::parse_error(body).message;
    let quote = |c: Option<char>| {
        c.is_some_and(|c| {
            matches!(
                c,
                '"' | '\''
                    | '»'
                    | '«'
                    | '“'
                    | '”'
                    | '„'
                    | '「'
                    | '」'
                    | ' '
                    | '\u{a0}'
                    | '\u{202f}'
            )
        })
    };
    message.match_indices(name).any(|(i, _)| {
        quote(message[..i].chars().next_back()) && quote(message[i + name.len()..].chars().next())
    })
}

fn is_stale_plan(body: &[u8]) -> bool {
    let f = crate::proto::backend::parse_error(body);
    (f.code == "XX000" && f.message.starts_with("cache lookup failed for type"))
        || (f.code == "0A000"
            && f.message
                .starts_with("cached plan must not change result type"))
}

/// Writes a made-up reply; `status` is the transaction status at this point of the stream.
fn write_synth(s: &Synth, out: &mut BytesMut, status: u8) {
    match s {
        Synth::ParseComplete => write::parse_complete(out),
        Synth::CloseComplete => write::close_complete(out),
        Synth::Command(_) if status == b'E' => {
            ClientError::error(
                SqlState::IN_FAILED_SQL_TRANSACTION,
                "current transaction is aborted, commands ignored until end of transaction block",
            )
            .write(out);
            write::ready_for_query(out, status);
        }
        Synth::Command(tag) => {
            put_header(out, b'C', tag.len() + 1);
            out.put_slice(tag.as_bytes());
            out.put_u8(0);
            write::ready_for_query(out, status);
        }
        Synth::Error(e) => e.write(out),
        Synth::QueryError(e) => {
            e.write(out);
            write::ready_for_query(out, if status == b'T' { b'E' } else { status });
        }
    }
}

/// Writes a warning about a session feature that does not outlive the transaction.
fn write_notice(l: Limitation, out: &mut BytesMut) {
    let (message, hint) = l.text();
    write::warning(out, SqlState::WARNING, message, Some(hint));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_plan_errors_are_recognised() {
        assert!(is_stale_plan(
            b"SERROR\0VERROR\0CXX000\0Mcache lookup failed for type 16390\0\0"
        ));
        assert!(is_stale_plan(
            b"SERROR\0VERROR\0C0A000\0Mcached plan must not change result type\0\0"
        ));
        assert!(!is_stale_plan(
            b"SERROR\0VERROR\0C42P01\0Mno such table\0\0"
        ));
    }

    /// A statement whose quoted name only starts with lakepool's name (a SQL-level
    /// one a function used, "lakepool_1-old") is taken for lakepool_1.
    #[test]
    fn a_longer_quoted_name_is_not_the_statement() {
        let body =
            b"SERROR\0VERROR\0C26000\0Mprepared statement \"lakepool_1-old\" does not exist\0\0";
        assert!(!names_statement(body, "lakepool_1"));
        // French quoting, spaces inside the guillemets.
        let body = "SERREUR\0VERROR\0C26000\0Minstruction préparée « lakepool_1 » inexistante\0\0";
        assert!(names_statement(body.as_bytes(), "lakepool_1"));
    }
}
