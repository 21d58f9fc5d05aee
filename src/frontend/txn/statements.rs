//! Transaction mode, statement mapping: with it on, Parse, Bind, Describe and Close of named
//! statements are rewritten to the statement's server-side name (see
//! [`crate::upstream::prepared`]): a statement the server lacks is prepared first, one it
//! already has is not prepared again, a client's Close leaves it prepared for other clients,
//! and a name the client never prepared is refused as PostgreSQL would refuse it, never passed
//! to the server where it could reach lakepool's own statements.

use std::sync::Arc;

use bytes::BytesMut;

use super::client::{Step, Whole, whole};
use super::replay::{Replay, ReplayState};
use super::replies::{Expect, Synth, Undo};
use super::{Attached, TxnClient};
use crate::error::ClientError;
use crate::frontend::pipe::Pipe;
use crate::frontend::tracker::Tracker;
use crate::proto::frame::{HEADER_LEN, Header, split_cstr};
use crate::proto::frontend;
use crate::proto::sqlstate::SqlState;
use crate::upstream::prepared::Statement;

/// The statement names of a Bind must be within this many bytes of its start; a Bind larger
/// than the hold limit streams after them.
const MAX_BIND_NAMES: usize = 4096;

/// A Parse too large to hold whose statement name has not all arrived yet (and may still:
/// names are short). Without statement mapping lakepool needs the name before it passes the
/// message on, so such a Parse is not a request that can go yet.
pub(super) fn parse_name_pending(up: &Pipe) -> bool {
    let unread = up.unread();
    unread.len() < MAX_BIND_NAMES && split_cstr(&unread[HEADER_LEN.min(unread.len())..]).is_none()
}

/// A Bind too large to hold whose portal and statement names have not both arrived yet (and
/// may still). With statement mapping lakepool needs the statement name before it passes the
/// message on, so such a Bind is not a request that can go yet.
pub(super) fn bind_names_pending(up: &Pipe) -> bool {
    let unread = up.unread();
    unread.len() < MAX_BIND_NAMES
        && split_cstr(&unread[HEADER_LEN.min(unread.len())..])
            .and_then(|(_, rest)| split_cstr(rest))
            .is_none()
}

impl TxnClient {
    /// A Parse: one too large to hold, one looked at in place (unnamed, or mapping off), or a
    /// named one mapped to a pool statement.
    pub(super) fn parse(
        &mut self,
        h: Header,
        up: &mut Pipe,
        at: &mut Attached<'_>,
        t: &mut Tracker,
    ) -> Step {
        let mapping = at.limits.mapping();
        let too_big = match whole(up, h, at.limits.hold_limit) {
            Whole::Wait => return Step::NeedMore,
            Whole::TooBig => true,
            Whole::Ready => false,
        };
        if too_big {
            return self.parse_too_big(h, up, at, t);
        }
        let name_len = {
            let msg = up.whole(h).unwrap_or_default();
            match split_cstr(&msg[HEADER_LEN..]) {
                Some((n, _)) => n.len(),
                // Malformed: the server says so.
                None => return self.pass(h, up, at, t),
            }
        };
        if name_len == 0 || !mapping {
            return self.parse_in_place(h, name_len, up, at, t);
        }
        self.parse_named(h, name_len, up, at, t)
    }

    /// A Parse larger than the hold limit: passed on (its effect read back afterwards) where
    /// it can be, refused where a name would have to be mapped.
    fn parse_too_big(
        &mut self,
        h: Header,
        up: &mut Pipe,
        at: &mut Attached<'_>,
        t: &mut Tracker,
    ) -> Step {
        let mapping = at.limits.mapping();
        // The name is at the start of the body; the text is not inspected.
        let name = split_cstr(&up.unread()[HEADER_LEN..]).map(|(n, _)| n.to_vec());
        match name {
            Some(n) if n.is_empty() => {
                self.changes.all = true;
                self.pass(h, up, at, t)
            }
            Some(n) if !mapping => {
                self.changes.all = true;
                self.changes.deallocate_later(&String::from_utf8_lossy(&n));
                self.pass(h, up, at, t)
            }
            _ if !mapping => {
                // Not even the name arrived yet: wait for it (it is short).
                if parse_name_pending(up) {
                    return Step::NeedMore;
                }
                self.refuse(h, up, at, statement_too_large(h, at.limits.hold_limit))
            }
            _ => self.refuse(h, up, at, statement_too_large(h, at.limits.hold_limit)),
        }
    }

    /// An unnamed statement runs right after: what it does is noted now. Without mapping a
    /// named one is the client's own on this server only. Looked at in place.
    fn parse_in_place(
        &mut self,
        h: Header,
        name_len: usize,
        up: &mut Pipe,
        at: &mut Attached<'_>,
        t: &mut Tracker,
    ) -> Step {
        let mapping = at.limits.mapping();
        let (plan, name) = {
            let msg = up.whole(h).unwrap_or_default();
            let name = &msg[HEADER_LEN..HEADER_LEN + name_len];
            let rest = &msg[HEADER_LEN + name_len + 1..];
            let text = split_cstr(rest).map_or(rest, |(t, _)| t);
            let plan = self.inspect_sql(text, false, at);
            (
                plan,
                (name_len > 0).then(|| String::from_utf8_lossy(name).into_owned()),
            )
        };
        if let Some(n) = plan.reserved {
            return self.refuse(h, up, at, reserved_error(&n));
        }
        if let Some(err) = plan.over_limit {
            return self.refuse(h, up, at, err);
        }
        if let Some(name) = name {
            self.changes.deallocate_later(&name);
        } else if plan.catalog && mapping {
            return self.parse_catalog_query(h, up, at, t);
        }
        self.pass(h, up, at, t)
    }

    /// A named Parse with mapping on: the client's name maps to the pool's statement for the
    /// text, prepared on this server unless it already is.
    fn parse_named(
        &mut self,
        h: Header,
        name_len: usize,
        up: &mut Pipe,
        at: &mut Attached<'_>,
        t: &mut Tracker,
    ) -> Step {
        let (name, rest) = {
            let msg = up.whole(h).unwrap_or_default();
            let body = &msg[HEADER_LEN..];
            (body[..name_len].to_vec(), body[name_len + 1..].to_vec())
        };
        if let Some(err) = self.parse_refusal(&name, rest.len(), at) {
            return self.refuse(h, up, at, err);
        }
        up.consume(h);
        if let Some(s) = &t.stats {
            s.record_client_parse();
        }
        let stmt = at.registry.intern(&rest);
        self.statements
            .insert(name.clone().into(), Arc::clone(&stmt));
        // Undone if the server skips this Parse (an earlier error) or it fails: PostgreSQL
        // would not have created the name.
        if at.cache.touch(&stmt) {
            // The server's copy was planned earlier: should it turn out stale, the rest of this
            // batch is replayed against a fresh one (see `replay`).
            self.replay = (self.replay.is_none()).then(|| {
                Box::new(Replay {
                    name: name.clone().into(),
                    tail: BytesMut::new(),
                    state: ReplayState::Recording,
                })
            });
            if self.replay.is_some() {
                at.queue.mark_batch();
            }
            let undo = Undo::Unmap(name.into(), stmt);
            at.queue
                .push(Expect::Synth(Synth::ParseComplete, Some(undo)));
        } else {
            prepare(&stmt, true, Some(name.into()), up, at, t);
        }
        Step::Done
    }

    /// Why PostgreSQL (a name the client already has) or lakepool (the client's statement
    /// budget) refuses a named Parse whose text and types are `rest_len` bytes.
    fn parse_refusal(
        &self,
        name: &[u8],
        rest_len: usize,
        at: &Attached<'_>,
    ) -> Option<ClientError> {
        if self.statements.contains(name) {
            let n = String::from_utf8_lossy(name);
            return Some(ClientError::error(
                SqlState::DUPLICATE_PREPARED_STATEMENT,
                format!("prepared statement \"{n}\" already exists"),
            ));
        }
        // A name whose Close the server may still skip comes back then while this Parse stays
        // (an earlier exchange): it still counts. The queue is scanned only when not empty.
        let (names, bytes) = self.prepared_footprint();
        let bytes = bytes + rest_len;
        let (max, max_bytes) = (at.limits.max_statements, at.limits.max_statement_bytes);
        let over = |n: usize, b: usize| n >= max || b > max_bytes;
        let at_limit = over(names, bytes)
            || (!at.queue.is_empty() && {
                let (n, b) = at.queue.pending_remaps();
                (n > 0) && over(names + n, bytes + b)
            });
        if at_limit {
            return Some(self.too_many_statements(at.limits));
        }
        None
    }

    pub(super) fn bind(
        &mut self,
        h: Header,
        up: &mut Pipe,
        at: &mut Attached<'_>,
        t: &mut Tracker,
    ) -> Step {
        let streamed = match whole(up, h, at.limits.hold_limit) {
            Whole::Wait => return Step::NeedMore,
            Whole::TooBig => true,
            Whole::Ready => false,
        };
        // The portal and statement names' lengths: the names themselves stay in the buffer.
        let lens = {
            let bytes = up.whole(h).unwrap_or_else(|| up.unread());
            let body = &bytes[HEADER_LEN..];
            split_cstr(body)
                .and_then(|(portal, rest)| Some((portal.len(), split_cstr(rest)?.0.len())))
        };
        let Some((portal_len, name_len)) = lens else {
            if streamed && up.unread().len() < MAX_BIND_NAMES {
                return Step::NeedMore;
            }
            // Malformed (or names too long to be real): the server says so.
            return self.pass(h, up, at, t);
        };
        if name_len == 0 {
            return self.pass(h, up, at, t);
        }
        let name_at = HEADER_LEN + portal_len + 1;
        let stmt = {
            let bytes = up.whole(h).unwrap_or_else(|| up.unread());
            let name = &bytes[name_at..name_at + name_len];
            match self.mapped(name, at) {
                Some(s) => s,
                None => {
                    let err = no_such_statement(name);
                    return self.refuse(h, up, at, err);
                }
            }
        };
        if let Some(s) = &t.stats {
            s.record_bind();
        }
        if stmt.touches_state {
            // A statement that sets things is noted at each execution.
            let plan = self.inspect_sql(stmt.query(), false, at);
            if let Some(err) = plan.over_limit {
                return self.refuse(h, up, at, err);
            }
        }
        ensure_prepared(&stmt, up, at, t);
        let head = name_at + name_len + 1;
        let rest_len = h.total() - head;
        up.rewrite_head(h, head, |old, out| {
            frontend::bind_head(
                out,
                &old[HEADER_LEN..HEADER_LEN + portal_len],
                stmt.name.as_bytes(),
                rest_len,
            );
        });
        at.queue.push(Expect::Bind(Some(stmt)));
        t.client_sent(b'B');
        Step::Done
    }

    pub(super) fn describe_or_close(
        &mut self,
        h: Header,
        up: &mut Pipe,
        at: &mut Attached<'_>,
        t: &mut Tracker,
    ) -> Step {
        match whole(up, h, at.limits.hold_limit) {
            Whole::Wait => return Step::NeedMore,
            // Names are short: a huge Describe or Close is the server's to refuse.
            Whole::TooBig => return self.pass(h, up, at, t),
            Whole::Ready => {}
        }
        let target = {
            let msg = up.whole(h).unwrap_or_default();
            match msg[HEADER_LEN..].split_first() {
                Some((&b'S', rest)) => split_cstr(rest)
                    .map(|(n, _)| n.to_vec())
                    .filter(|n| !n.is_empty()),
                _ => None,
            }
        };
        let Some(name) = target else {
            return self.pass(h, up, at, t);
        };
        up.consume(h);
        if h.tag == b'C' {
            // The statement stays prepared on the server for other clients. PostgreSQL
            // answers a Close of a name it does not know with CloseComplete too.
            let undo = self
                .statements
                .remove(&name[..])
                .map(|s| Undo::Remap(name.into(), s));
            at.queue.push(Expect::Synth(Synth::CloseComplete, undo));
            return Step::Done;
        }
        let Some(stmt) = self.mapped(&name, at) else {
            at.queue.push(Expect::Synth(
                Synth::Error(Box::new(no_such_statement(&name))),
                None,
            ));
            self.discarding = true;
            return Step::Done;
        };
        ensure_prepared(&stmt, up, at, t);
        frontend::describe(up.emit(), b'S', stmt.name.as_bytes());
        at.queue.push(Expect::Describe(Some(stmt)));
        t.client_sent(b'D');
        Step::Done
    }

    /// The statement the client's `name` maps to. A statement a server found stale is replaced
    /// by one prepared afresh (same text and types, a new server-side name), as the client's
    /// own statement would be re-planned on a direct connection.
    pub(super) fn mapped(&mut self, name: &[u8], at: &Attached<'_>) -> Option<Arc<Statement>> {
        let stmt = self.statements.get(name)?;
        if !stmt.stale.load(std::sync::atomic::Ordering::Relaxed) {
            return Some(stmt);
        }
        let fresh = at.registry.intern(stmt.rest());
        self.statements.insert(name.into(), Arc::clone(&fresh));
        Some(fresh)
    }

    /// Undoes a name change the server made void.
    pub(super) fn apply_undo(&mut self, undo: Undo) {
        match undo {
            Undo::Unmap(name, stmt) => {
                if self
                    .statements
                    .get(&name)
                    .is_some_and(|s| Arc::ptr_eq(&s, &stmt))
                {
                    self.statements.remove(&name);
                }
            }
            Undo::Remap(name, stmt) => {
                if !self.statements.contains(&name) {
                    self.statements.insert(name, stmt);
                }
            }
            Undo::NotOnServer(name) => self.sql_on_server.retain(|n| **n != *name),
            Undo::SqlPrepared(name, text) => {
                self.sql_prepared.entry(name.into()).or_insert(text);
            }
        }
    }
}

/// Makes sure the server has `stmt` before a message that uses it.
pub(super) fn ensure_prepared(
    stmt: &Arc<Statement>,
    up: &mut Pipe,
    at: &mut Attached<'_>,
    t: &mut Tracker,
) {
    if !at.cache.touch(stmt) {
        prepare(stmt, false, None, up, at, t);
    } else if at.cache.owes_closes() {
        // A client that only binds statements the server has still gets the server back
        // within its statement cap (fifth review of finding 10).
        close_owed(up, at, t, 2);
    }
}

/// Sends up to `max` Closes the server's cache owes (statements it may still have, see
/// [`crate::upstream::prepared::PreparedCache`]): a few in front of each Parse lakepool sends,
/// more in front of a simple query (with a Sync).
pub(super) fn close_owed(up: &mut Pipe, at: &mut Attached<'_>, t: &mut Tracker, max: usize) {
    let out = up.emit();
    for old in at.cache.take_owed(max) {
        frontend::close(out, b'S', old.name.as_bytes());
        at.queue.push(Expect::Close {
            forward: false,
            evicted: Some(old),
        });
        t.client_sent(b'C');
    }
}

/// Sends the Parse for `stmt` (closing the least recently used statement if the cache is
/// full) and records it as prepared; a failure un-records it.
fn prepare(
    stmt: &Arc<Statement>,
    forward: bool,
    mapped: Option<Box<[u8]>>,
    up: &mut Pipe,
    at: &mut Attached<'_>,
    t: &mut Tracker,
) {
    // The server may have it: a Close of it was skipped or is still unanswered (which the
    // server may yet skip), or a Parse of it was skipped after one.
    let maybe_there = at.cache.is_owed(stmt) || at.queue.evicting(stmt.id);
    // Inserted first: no longer owed, so not closed twice below.
    let evicted = at.cache.insert(Arc::clone(stmt), at.limits.cache_cap);
    // Two per Parse: owed Closes drain as fast as skipped exchanges can add them.
    close_owed(up, at, t, 2);
    let out = up.emit();
    for old in evicted {
        frontend::close(out, b'S', old.name.as_bytes());
        at.queue.push(Expect::Close {
            forward: false,
            evicted: Some(old),
        });
        t.client_sent(b'C');
    }
    if maybe_there {
        // Closed first, or the Parse would fail with "already exists" (a Close of a
        // statement that does not exist is no error).
        frontend::close(out, b'S', stmt.name.as_bytes());
        at.queue.push(Expect::Close {
            forward: false,
            evicted: None,
        });
        t.client_sent(b'C');
    }
    out.extend_from_slice(&stmt.parse);
    if let Some(s) = &t.stats {
        s.record_server_parse();
    }
    at.queue.push(Expect::Parse {
        forward,
        stmt: Some(Arc::clone(stmt)),
        mapped,
        closed_first: maybe_there,
    });
    t.client_sent(b'P');
}

fn no_such_statement(name: &[u8]) -> ClientError {
    ClientError::error(
        SqlState::INVALID_SQL_STATEMENT_NAME,
        format!(
            "prepared statement \"{}\" does not exist",
            String::from_utf8_lossy(name)
        ),
    )
}

fn statement_too_large(h: Header, limit: usize) -> ClientError {
    ClientError::error(
        SqlState::PROGRAM_LIMIT_EXCEEDED,
        format!(
            "lakepool: a named prepared statement of {} bytes is over max_held_message_size ({limit} bytes)",
            h.total()
        ),
    )
}

pub(super) fn reserved_error(name: &str) -> ClientError {
    ClientError::error(
        SqlState::RESERVED_NAME,
        format!(
            "prepared statement name \"{name}\" is reserved: names starting with \"{}\" are lakepool's",
            crate::upstream::prepared::NAME_PREFIX
        ),
    )
}
