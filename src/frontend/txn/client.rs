//! Transaction mode, client → server: each client message is framed once by the pipe and
//! handled here.
//!
//! SQL (simple queries, Parse) is inspected for what it does to session state. With statement
//! mapping on, Parse, Bind, Describe and Close of named statements are rewritten to the
//! statement's server-side name (see [`crate::upstream::prepared`]): a statement the server
//! lacks is prepared first, one it already has is not prepared again, a client's Close leaves
//! it prepared for other clients, and a name the client never prepared is refused as
//! PostgreSQL would refuse it, never passed to the server where it could reach lakepool's own
//! statements. Everything else passes unchanged; large messages (COPY data, big Binds) stream
//! through without being held whole.

use std::sync::Arc;

use bytes::{BufMut, BytesMut};

use super::replies::{Expect, Synth, Undo};
use super::{Attached, Limitation, TxnClient, catalog, is_reserved};
use crate::error::ClientError;
use crate::frontend::pipe::Pipe;
use crate::frontend::tracker::Tracker;
use crate::proto::frame::{FrameError, HEADER_LEN, Header, parse_header, put_header, split_cstr};
use crate::proto::sql::{self, Command, SetConfigCalls};
use crate::proto::sqlstate::SqlState;
use crate::proto::{frontend, write};
use crate::upstream::prepared::Statement;

/// Most entries the reply queue may hold before lakepool stops reading the client: a client
/// that pipelines requests without reading replies is held back, not buffered.
pub const MAX_QUEUED: usize = 4096;

/// The statement names of a Bind must be within this many bytes of its start; a Bind larger
/// than the hold limit streams after them.
const MAX_BIND_NAMES: usize = 4096;

/// What handling the message at the framing position came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Handled; go on with the next message.
    Done,
    /// More bytes are needed first.
    NeedMore,
}

/// A whole message, or why there is none yet.
enum Whole {
    Ready,
    Wait,
    TooBig,
}

/// Makes the message at the framing position whole if it can be: in the read buffer, or in
/// the side buffer up to the hold limit.
fn whole(up: &mut Pipe, h: Header, hold_limit: usize) -> Whole {
    if up.whole(h).is_some() {
        Whole::Ready
    } else if up.fits(h) {
        Whole::Wait
    } else if h.total() <= hold_limit && !up.is_holding() {
        up.start_holding(h);
        Whole::Wait
    } else if up.is_holding() {
        Whole::Wait
    } else {
        Whole::TooBig
    }
}

/// Whether lakepool must see the whole message: SQL it inspects, statement names it maps.
pub fn inspected(tag: u8, mapping: bool) -> bool {
    matches!(tag, b'Q' | b'P') || (mapping && matches!(tag, b'B' | b'D' | b'C'))
}

/// Before a server is attached: whether the client's next request is ready to go (a whole
/// message, or one that must stream), holding an inspected message that is larger than the read
/// buffer until it is whole. Only a client with a request ready gets a server, so a client that
/// stops half-way through a message holds no server.
pub fn request_ready(up: &mut Pipe, limits: &super::TxnLimits) -> Result<bool, FrameError> {
    match up.next(limits.max_message)? {
        crate::frontend::pipe::Next::NeedMore => Ok(false),
        crate::frontend::pipe::Next::Message(h) => {
            if up.whole(h).is_some() {
                return Ok(true);
            }
            if up.fits(h) {
                return Ok(false);
            }
            if inspected(h.tag, limits.mapping()) {
                return Ok(!matches!(whole(up, h, limits.hold_limit), Whole::Wait));
            }
            Ok(true)
        }
    }
}

impl TxnClient {
    /// Handles the client message whose header is at the framing position of `up`.
    pub fn on_message(
        &mut self,
        h: Header,
        up: &mut Pipe,
        at: &mut Attached<'_>,
        tracker: &mut Tracker,
    ) -> Step {
        let mapping = at.limits.mapping();
        if self.discarding {
            if h.tag != b'S' {
                up.drop_message(h);
                return Step::Done;
            }
            self.discarding = false;
        }
        if let Some(r) = self.replay.as_mut()
            && r.state == ReplayState::Recording
        {
            r.record(h, up);
        }
        if mapping && at.queue.skipping() {
            // The server ignores everything up to Sync: pass it untouched.
            return self.pass(h, up, at, tracker);
        }
        match h.tag {
            b'Q' => self.query(h, up, at, tracker),
            b'P' => self.parse(h, up, at, tracker),
            b'B' if mapping => self.bind(h, up, at, tracker),
            b'D' | b'C' if mapping => self.describe_or_close(h, up, at, tracker),
            _ => self.pass(h, up, at, tracker),
        }
    }

    /// Passes a message unchanged: once it is whole if it fits the read buffer (so a server is
    /// never left holding half a message lakepool could have kept), streaming otherwise.
    fn pass(&mut self, h: Header, up: &mut Pipe, at: &mut Attached<'_>, t: &mut Tracker) -> Step {
        if up.whole(h).is_none() && up.fits(h) {
            return Step::NeedMore;
        }
        expect_for(h.tag, at);
        t.client_sent(h.tag);
        up.pass_message(h);
        Step::Done
    }

    /// A lakepool-made error in place of a client message; later messages are dropped up to
    /// Sync, as the server skips them after an error.
    fn refuse(
        &mut self,
        h: Header,
        up: &mut Pipe,
        at: &mut Attached<'_>,
        err: ClientError,
    ) -> Step {
        up.drop_message(h);
        at.queue
            .push(Expect::Synth(Synth::Error(Box::new(err)), None));
        self.discarding = true;
        Step::Done
    }

    fn query(&mut self, h: Header, up: &mut Pipe, at: &mut Attached<'_>, t: &mut Tracker) -> Step {
        match whole(up, h, at.limits.hold_limit) {
            Whole::Wait => return Step::NeedMore,
            Whole::TooBig => {
                // Too large to inspect: whatever it does to session state is read back after.
                self.changes.all = true;
                return self.pass(h, up, at, t);
            }
            Whole::Ready => {}
        }
        let mapping = at.limits.mapping();
        let mut plan = {
            let msg = up.whole(h).unwrap_or_default();
            let body = &msg[HEADER_LEN..];
            let text = split_cstr(body).map_or(body, |(t, _)| t);
            self.inspect_sql(text, true, mapping)
        };
        if let Some(reply) = plan.reply {
            up.consume(h);
            at.queue.push(Expect::Synth(reply, None));
            return Step::Done;
        }
        if plan.catalog {
            // The client's SQL-level statements are in the view it reads.
            for n in self.sql_prepared.keys() {
                if !self.sql_on_server.contains(n) && !plan.prepare_first.contains(n) {
                    plan.prepare_first.push(n.clone());
                }
            }
        }
        self.prepare_sql_first(&plan.prepare_first, up, at, t);
        if plan.catalog && mapping {
            let text = {
                let msg = up.whole(h).unwrap_or_default();
                let body = &msg[HEADER_LEN..];
                let text = split_cstr(body).map_or(body, |(t, _)| t);
                std::str::from_utf8(text).ok().map(str::to_owned)
            };
            if let Some(text) = text {
                self.ensure_all_prepared(up, at, t);
                let sql = catalog::rewrite(&text, &self.mapped_names(at));
                up.consume(h);
                frontend::query(up.emit(), &sql);
                expect_for(b'Q', at);
                t.client_sent(b'Q');
                return Step::Done;
            }
        }
        expect_for(b'Q', at);
        t.client_sent(b'Q');
        up.pass_message(h);
        Step::Done
    }

    fn parse(&mut self, h: Header, up: &mut Pipe, at: &mut Attached<'_>, t: &mut Tracker) -> Step {
        let mapping = at.limits.mapping();
        let too_big = match whole(up, h, at.limits.hold_limit) {
            Whole::Wait => return Step::NeedMore,
            Whole::TooBig => true,
            Whole::Ready => false,
        };
        if too_big {
            // The name is at the start of the body; the text is not inspected.
            let name = split_cstr(&up.unread()[HEADER_LEN..]).map(|(n, _)| n.to_vec());
            return match name {
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
                    if up.unread().len() < MAX_BIND_NAMES {
                        return Step::NeedMore;
                    }
                    self.refuse(h, up, at, statement_too_large(h, at.limits.hold_limit))
                }
                _ => self.refuse(h, up, at, statement_too_large(h, at.limits.hold_limit)),
            };
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
            // An unnamed statement runs right after: what it does is noted now. Without
            // mapping a named one is the client's own on this server only. Looked at in place.
            let (plan, name) = {
                let msg = up.whole(h).unwrap_or_default();
                let name = &msg[HEADER_LEN..HEADER_LEN + name_len];
                let rest = &msg[HEADER_LEN + name_len + 1..];
                let text = split_cstr(rest).map_or(rest, |(t, _)| t);
                let plan = self.inspect_sql(text, false, mapping);
                (
                    plan,
                    (name_len > 0).then(|| String::from_utf8_lossy(name).into_owned()),
                )
            };
            if let Some(n) = plan.reserved {
                return self.refuse(h, up, at, reserved_error(&n));
            }
            if let Some(name) = name {
                self.changes.deallocate_later(&name);
            } else if plan.catalog && mapping {
                return self.parse_catalog_query(h, up, at, t);
            }
            return self.pass(h, up, at, t);
        }
        let (name, rest) = {
            let msg = up.whole(h).unwrap_or_default();
            let body = &msg[HEADER_LEN..];
            (body[..name_len].to_vec(), body[name_len + 1..].to_vec())
        };
        if self.statements.contains(&name[..]) {
            let n = String::from_utf8_lossy(&name);
            let err = ClientError::error(
                SqlState::DUPLICATE_PREPARED_STATEMENT,
                format!("prepared statement \"{n}\" already exists"),
            );
            return self.refuse(h, up, at, err);
        }
        if self.statements.len() >= at.limits.max_statements
            || self.statements.bytes() + rest.len() > at.limits.max_statement_bytes
        {
            let err = ClientError::error(
                SqlState::PROGRAM_LIMIT_EXCEEDED,
                format!(
                    "lakepool: too many prepared statements for this client ({} statements, {} bytes; the limits are max_client_prepared_statements = {} and max_client_prepared_bytes = {})",
                    self.statements.len(),
                    self.statements.bytes(),
                    at.limits.max_statements,
                    at.limits.max_statement_bytes
                ),
            );
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
            let undo = Undo::Unmap(name.into(), stmt);
            at.queue
                .push(Expect::Synth(Synth::ParseComplete, Some(undo)));
        } else {
            prepare(&stmt, true, Some(name.into()), up, at, t);
        }
        Step::Done
    }

    fn bind(&mut self, h: Header, up: &mut Pipe, at: &mut Attached<'_>, t: &mut Tracker) -> Step {
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
            self.inspect_sql(stmt.query(), false, true);
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

    fn describe_or_close(
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

    /// After the server found a statement lakepool had answered a Parse with stale: the
    /// client's name moves to a statement prepared afresh and the batch is handled again, its
    /// output queued for the server.
    pub fn replay_batch(&mut self, up: &mut Pipe, at: &mut Attached<'_>, t: &mut Tracker) {
        let Some(r) = self.replay.take() else {
            return;
        };
        if let Some(old) = self.statements.get(&r.name) {
            old.stale.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        at.registry.schema_changed();
        let _ = self.mapped(&r.name, at);
        let mut batch = Pipe::with_input(&r.tail);
        while let Ok(crate::frontend::pipe::Next::Message(h)) = batch.next(usize::MAX) {
            if self.on_message(h, &mut batch, at, t) == Step::NeedMore {
                break;
            }
        }
        batch.move_output_into(up);
    }

    /// The statement the client's `name` maps to. A statement a server found stale is replaced
    /// by one prepared afresh (same text and types, a new server-side name), as the client's
    /// own statement would be re-planned on a direct connection.
    fn mapped(&mut self, name: &[u8], at: &Attached<'_>) -> Option<Arc<Statement>> {
        let stmt = self.statements.get(name)?;
        if !stmt.stale.load(std::sync::atomic::Ordering::Relaxed) {
            return Some(stmt);
        }
        let fresh = at.registry.intern(stmt.rest());
        self.statements.insert(name.into(), Arc::clone(&fresh));
        Some(fresh)
    }

    /// The client's names mapped on this server, for `pg_prepared_statements`.
    fn mapped_names<'s>(&'s self, at: &Attached<'_>) -> Vec<(&'s [u8], &'s str)> {
        let mut v: Vec<_> = self
            .statements
            .iter()
            .filter(|(_, s)| at.cache.contains(s))
            .map(|(n, s)| (n, &*s.name))
            .collect();
        v.sort_unstable();
        v
    }

    /// Prepares every statement of the client on this server (up to its cache size), so that
    /// a look at `pg_prepared_statements` shows all of them.
    fn ensure_all_prepared(&mut self, up: &mut Pipe, at: &mut Attached<'_>, t: &mut Tracker) {
        let mut all: Vec<Arc<Statement>> =
            self.statements.iter().map(|(_, s)| Arc::clone(s)).collect();
        all.sort_unstable_by_key(|s| s.id);
        let missing: Vec<_> = all
            .iter()
            .take(at.limits.cache_cap)
            .filter(|s| !at.cache.contains(s))
            .cloned()
            .collect();
        if missing.is_empty() {
            return;
        }
        for s in &missing {
            ensure_prepared(s, up, at, t);
        }
        // A simple query right after Parse messages would be skipped if one failed: close the
        // extended exchange with a Sync of lakepool's own.
        frontend::sync(up.emit());
        at.queue.push(Expect::Injected);
        t.client_sent(b'S');
    }

    /// The client's SQL `PREPARE`s of `names`, sent ahead on this server (their replies are
    /// lakepool's; the statements are deallocated before another client).
    fn prepare_sql_first(
        &mut self,
        names: &[String],
        up: &mut Pipe,
        at: &mut Attached<'_>,
        t: &mut Tracker,
    ) {
        for name in names {
            if let Some(text) = self.sql_prepared.get(name) {
                frontend::query(up.emit(), text);
                at.queue.push(Expect::Injected);
                t.client_sent(b'Q');
                self.sql_on_server.push(name.clone());
            }
        }
    }

    /// An unnamed statement that reads `pg_prepared_statements`: rewritten, as a simple query
    /// is, for the client's names on this server. (A named one would keep one moment's names
    /// for every later execution; it goes to the server as it is.)
    fn parse_catalog_query(
        &mut self,
        h: Header,
        up: &mut Pipe,
        at: &mut Attached<'_>,
        t: &mut Tracker,
    ) -> Step {
        let parts = {
            let msg = up.whole(h).unwrap_or_default();
            let rest = &msg[HEADER_LEN + 1..];
            split_cstr(rest).and_then(|(text, types)| {
                Some((std::str::from_utf8(text).ok()?.to_owned(), types.to_vec()))
            })
        };
        let Some((text, types)) = parts else {
            return self.pass(h, up, at, t);
        };
        if !t.unsynced {
            // First of its batch: the client's SQL-level statements go ahead of it as their
            // own simple queries (not within the batch's implicit transaction).
            let names: Vec<String> = self
                .sql_prepared
                .keys()
                .filter(|n| !self.sql_on_server.contains(n))
                .cloned()
                .collect();
            self.prepare_sql_first(&names, up, at, t);
        }
        self.ensure_all_prepared(up, at, t);
        let sql = catalog::rewrite(&text, &self.mapped_names(at));
        up.consume(h);
        let mut rest = Vec::with_capacity(sql.len() + 1 + types.len());
        rest.extend_from_slice(sql.as_bytes());
        rest.push(0);
        rest.extend_from_slice(&types);
        frontend::parse(up.emit(), b"", &rest);
        expect_for(b'P', at);
        t.client_sent(b'P');
        Step::Done
    }

    /// Looks at SQL the client sends: notes what it may change in the session, warns about
    /// what does not outlive a transaction, and answers what lakepool must answer itself.
    fn inspect_sql(&mut self, text: &[u8], simple: bool, mapping: bool) -> SqlPlan {
        let mut plan = SqlPlan::default();
        if !sql::needs_attention(text) {
            return plan;
        }
        let Ok(text) = std::str::from_utf8(text) else {
            // Not UTF-8 (another client_encoding): read everything back afterwards.
            self.changes.all = true;
            return plan;
        };
        let stmts = sql::statements(text);
        let lone = simple && stmts.len() == 1;
        plan.catalog = !sql::prepared_statements_refs(text).is_empty();
        for st in &stmts {
            match &st.set_config {
                SetConfigCalls::None => {}
                SetConfigCalls::Names(names) => names.iter().for_each(|n| self.changes.set(n)),
                SetConfigCalls::Unknown => self.changes.all = true,
            }
            if st.calls_unknown {
                self.changes.opaque();
            }
            let how = (simple, lone, mapping);
            if let Some(reply) = self.note_command(&st.command, st.text, how, &mut plan) {
                plan.reply = Some(reply);
            }
        }
        if let Some(name) = &plan.reserved {
            // A reserved name anywhere refuses the whole query: nothing of it runs.
            plan.reply = Some(reserved(name));
            plan.prepare_first.clear();
        }
        plan
    }

    fn note_command(
        &mut self,
        command: &Command,
        text: &str,
        (simple, lone, mapping): (bool, bool, bool),
        plan: &mut SqlPlan,
    ) -> Option<Synth> {
        let limitation = match command {
            Command::Reset { name } => {
                self.changes.reset(name);
                return None;
            }
            Command::Set { name } => {
                self.changes.set(name);
                return None;
            }
            Command::SessionCharacteristics { names } => {
                names.iter().for_each(|n| self.changes.set(n));
                return None;
            }
            Command::ResetAll | Command::DiscardAll => {
                self.changes.all = true;
                return None;
            }
            Command::Opaque => {
                self.changes.opaque();
                return None;
            }
            Command::Deallocate { name }
            | Command::Execute { name }
            | Command::Prepare { name }
                if mapping && is_reserved(name) =>
            {
                plan.reserved = Some(name.clone());
                return None;
            }
            Command::Deallocate { name } => {
                return self.deallocate(name, (simple, lone), mapping, plan);
            }
            Command::DeallocateAll => {
                self.sql_prepared.clear();
                return None;
            }
            Command::Prepare { name } if mapping => {
                self.sql_prepared.insert(name.clone(), Arc::from(text));
                self.sql_on_server.push(name.clone());
                return None;
            }
            Command::Prepare { name } => {
                self.changes.deallocate_later(name);
                Limitation::SqlPrepare
            }
            Command::Execute { name } => {
                if simple {
                    self.prepare_first(name, plan);
                }
                return None;
            }
            Command::Listen => {
                self.changes.unlisten = true;
                Limitation::Listen
            }
            Command::AdvisoryLock => {
                self.changes.unlock = true;
                Limitation::AdvisoryLock
            }
            Command::CursorWithHold => {
                self.changes.close_cursors = true;
                Limitation::HoldCursor
            }
            Command::CreateTemp => {
                self.changes.discard_temp = true;
                Limitation::TempTable
            }
            Command::SetLocal { .. } | Command::DiscardOther | Command::Other => return None,
        };
        if !self.notices.contains(&limitation) {
            self.notices.push(limitation);
        }
        None
    }

    /// SQL `DEALLOCATE name`: of a protocol-level statement lakepool mapped (the server knows
    /// it by another name), or of a SQL-level one that is not on this server.
    fn deallocate(
        &mut self,
        name: &str,
        (simple, lone): (bool, bool),
        mapping: bool,
        plan: &mut SqlPlan,
    ) -> Option<Synth> {
        if !mapping || !simple {
            return None;
        }
        if lone && self.statements.remove(name.as_bytes()).is_some() {
            return Some(Synth::Command("DEALLOCATE"));
        }
        if self.sql_prepared.contains_key(name) {
            if self.sql_on_server.iter().any(|n| n == name) {
                self.sql_prepared.remove(name);
                self.sql_on_server.retain(|n| n != name);
                return None;
            }
            if lone {
                self.sql_prepared.remove(name);
                return Some(Synth::Command("DEALLOCATE"));
            }
            // In a longer query: prepare it here first so the server's DEALLOCATE finds it.
            self.prepare_first(name, plan);
            self.sql_prepared.remove(name);
        }
        None
    }

    /// A SQL-level statement of this client that this server lacks is prepared before the
    /// query that names it.
    fn prepare_first(&mut self, name: &str, plan: &mut SqlPlan) {
        if self.sql_prepared.contains_key(name)
            && !self.sql_on_server.iter().any(|n| n == name)
            && !plan.prepare_first.iter().any(|n| n == name)
        {
            plan.prepare_first.push(name.to_owned());
        }
    }

    /// Answers, without a server, input that only prepares statements some server already
    /// accepted or closes statements, ending in Sync: what drivers send to prepare before
    /// executing (pgbench, psycopg). Such a client then needs a server only to execute, so
    /// preparing never waits behind busy servers. Returns the replies, or None (nothing
    /// changed) when the input needs a server.
    pub fn answer_without_server(
        &mut self,
        up: &mut Pipe,
        at: &super::TxnLimits,
        registry: &crate::pool::statements::StatementRegistry,
        stats: Option<&crate::pool::stats::PoolStats>,
    ) -> Option<BytesMut> {
        if !at.mapping() || self.discarding {
            return None;
        }
        let buf = up.unread();
        let mut pos = 0;
        let mut plan: Vec<(&[u8], Option<Arc<Statement>>)> = Vec::new();
        let mut bytes = self.statements.bytes();
        loop {
            let h = parse_header(&buf[pos..], at.max_message).ok()??;
            let body = buf.get(pos + HEADER_LEN..pos + h.total())?;
            pos += h.total();
            match h.tag {
                b'P' => {
                    let (name, rest) = split_cstr(body)?;
                    let (text, _) = split_cstr(rest)?;
                    if name.is_empty()
                        || self.statements.contains(name)
                        || plan.iter().any(|(n, _)| *n == name)
                        || sql::needs_attention(text)
                        || self.statements.len() + plan.len() >= at.max_statements
                    {
                        return None;
                    }
                    bytes += rest.len();
                    if bytes > at.max_statement_bytes {
                        return None;
                    }
                    plan.push((name, Some(registry.accepted(rest)?)));
                }
                b'C' => match body.split_first() {
                    Some((&b'S', rest)) => plan.push((split_cstr(rest)?.0, None)),
                    _ => return None,
                },
                b'H' => {}
                b'S' if pos == buf.len() => break,
                _ => return None,
            }
        }
        let mut reply = BytesMut::with_capacity(plan.len() * 5 + 6);
        let owned: Vec<_> = plan
            .into_iter()
            .map(|(n, s)| (Box::<[u8]>::from(n), s))
            .collect();
        for (name, stmt) in owned {
            match stmt {
                Some(s) => {
                    self.statements.insert(name, s);
                    write::parse_complete(&mut reply);
                    if let Some(st) = stats {
                        st.record_client_parse();
                    }
                }
                None => {
                    self.statements.remove(&name);
                    write::close_complete(&mut reply);
                }
            }
        }
        write::ready_for_query(&mut reply, b'I');
        up.discard_unread();
        Some(reply)
    }

    /// Undoes a name change the server made void.
    pub fn apply_undo(&mut self, undo: Undo) {
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
        }
    }
}

/// Most bytes of a batch kept to replay it after a stale statement.
const MAX_REPLAY: usize = 64 * 1024;

/// A batch whose Parse lakepool answered from a server's copy of the statement. If the server
/// finds that copy stale (the objects it was planned against changed) before any reply of the
/// batch has reached the client, lakepool drops the error, prepares the statement afresh and
/// sends the rest of the batch again: the client sees what a direct connection, which would
/// have parsed its statement now, would have sent.
#[derive(Debug)]
pub struct Replay {
    /// The client's name for the statement.
    pub name: Box<[u8]>,
    /// The client's messages after the Parse, as it sent them, up to its Sync.
    pub tail: BytesMut,
    /// Where it stands.
    pub state: ReplayState,
}

/// Where a [`Replay`] stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayState {
    /// Recording the client's messages up to Sync.
    Recording,
    /// The batch is complete; waiting for the server's first reply.
    Armed,
    /// The server found the statement stale: its error was dropped, the ReadyForQuery that
    /// ends the skipped batch will be too.
    Retrying,
    /// The stale attempt's replies are all in: the batch is sent again.
    Ready,
    /// Something reached the client, or the batch could not be kept: no replay.
    Off,
}

impl Replay {
    /// Keeps the client message at the framing position (once it is whole; a message that
    /// must stream, or too much, ends the replay).
    fn record(&mut self, h: Header, up: &Pipe) {
        match up.whole(h) {
            Some(m) if self.tail.len() + m.len() <= MAX_REPLAY && h.tag != b'd' => {
                self.tail.extend_from_slice(m);
                if h.tag == b'S' {
                    self.state = ReplayState::Armed;
                }
            }
            None if up.fits(h) => {}
            _ => self.state = ReplayState::Off,
        }
    }
}

/// What inspecting one SQL text decided.
#[derive(Debug, Default)]
struct SqlPlan {
    /// lakepool answers the query itself.
    reply: Option<Synth>,
    /// SQL-level statements of the client to prepare on this server first.
    prepare_first: Vec<String>,
    /// The query reads `pg_prepared_statements`.
    catalog: bool,
    /// A statement names one of lakepool's server-side statements.
    reserved: Option<String>,
}

/// The reply entry for a message passed unchanged (statement mapping on).
fn expect_for(tag: u8, at: &mut Attached<'_>) {
    if !at.limits.mapping() {
        return;
    }
    let e = match tag {
        b'P' => Expect::Parse {
            forward: true,
            stmt: None,
            mapped: None,
        },
        b'B' => Expect::Bind(None),
        b'D' => Expect::Describe(None),
        b'E' => Expect::Execute,
        b'C' => Expect::Close {
            forward: true,
            evicted: None,
        },
        b'S' | b'Q' | b'F' => Expect::Sync,
        b'c' | b'f' => Expect::CopyEnd,
        _ => return,
    };
    at.queue.push(e);
}

/// Makes sure the server has `stmt` before a message that uses it.
fn ensure_prepared(stmt: &Arc<Statement>, up: &mut Pipe, at: &mut Attached<'_>, t: &mut Tracker) {
    if !at.cache.touch(stmt) {
        prepare(stmt, false, None, up, at, t);
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
    let out = up.emit();
    for old in at.cache.insert(Arc::clone(stmt), at.limits.cache_cap) {
        frontend::close(out, b'S', old.name.as_bytes());
        at.queue.push(Expect::Close {
            forward: false,
            evicted: Some(old),
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

fn reserved_error(name: &str) -> ClientError {
    ClientError::error(
        SqlState::RESERVED_NAME,
        format!(
            "prepared statement name \"{name}\" is reserved: names starting with \"{}\" are lakepool's",
            crate::upstream::prepared::NAME_PREFIX
        ),
    )
}

fn reserved(name: &str) -> Synth {
    Synth::QueryError(Box::new(reserved_error(name)))
}

/// Writes a made-up reply; `status` is the transaction status at this point of the stream.
pub fn write_synth(s: &Synth, out: &mut BytesMut, status: u8) {
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
pub fn write_notice(l: Limitation, out: &mut BytesMut) {
    let (message, hint) = l.text();
    write::warning(out, SqlState::WARNING, message, Some(hint));
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
