//! Transaction mode with prepared-statement mapping: the messages between a client and the
//! server it holds for one transaction, taken message by message.
//!
//! Client → server: Parse, Bind, Describe and Close of named statements are rewritten to the
//! statement's server-side name (see [`crate::upstream::prepared`]); a statement the server
//! lacks is prepared first, one it already has is not prepared again, and a client's Close
//! leaves it prepared for other clients. Other messages pass unchanged, large ones (COPY data)
//! streamed through without being held whole. Server → client: replies to what lakepool added
//! are dropped and replies to what it skipped are made up, in order ([`ReplyQueue`]).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{Buf, BufMut, BytesMut};

use super::replies::{Expect, Limitation, ReplyQueue, Synth, Undo};
use crate::pool::statements::StatementRegistry;
use crate::pool::stats::PoolStats;
use crate::proto::scan::ScanError;
use crate::proto::sql::{self, Command};
use crate::proto::sqlstate::SqlState;
use crate::proto::write;
use crate::upstream::prepared::{PreparedCache, Statement};

/// Client messages held until complete because lakepool may rewrite them or must read them.
fn held(tag: u8) -> bool {
    matches!(tag, b'P' | b'B' | b'D' | b'C' | b'Q')
}

/// Server messages whose body lakepool reads (CommandComplete: DISCARD ALL, DEALLOCATE ALL).
fn server_held(tag: u8) -> bool {
    tag == b'C'
}

/// A framing header: tag and body length, checked against the limit.
fn header(buf: &[u8], max: usize) -> Result<Option<(u8, usize)>, ScanError> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let tag = buf[0];
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
    if len < 4 {
        return Err(ScanError::BadLength {
            tag: char::from(tag),
            len,
        });
    }
    let body = (len - 4) as usize;
    if body > max {
        return Err(ScanError::TooLarge {
            tag: char::from(tag),
            len,
            max,
        });
    }
    Ok(Some((tag, body)))
}

/// A C string at the start of `b`: (the string, the rest after its NUL).
fn cstr(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = b.iter().position(|&c| c == 0)?;
    Some((&b[..end], &b[end + 1..]))
}

/// After consuming from the front of a read buffer: `advance` gives up the consumed capacity,
/// so without this the buffer would shrink until reads come in 64-byte slices. Reserving
/// moves what is left (a partial message, usually nothing) back to the start of the same
/// allocation; it does not allocate.
fn reclaim(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < crate::net::buffer::BUF_SIZE / 2 {
        buf.reserve(crate::net::buffer::BUF_SIZE / 2);
    }
}

fn put_header(out: &mut BytesMut, tag: u8, body_len: usize) {
    out.put_u8(tag);
    out.put_u32(u32::try_from(body_len + 4).unwrap_or(u32::MAX));
}

/// What a client session keeps between transactions.
#[derive(Debug, Default)]
pub struct ClientSide {
    /// Client bytes read and not yet handled (a partial message).
    pub inbuf: BytesMut,
    /// Body bytes of a streamed client message still to pass.
    streaming: usize,
    /// The client's named statements, by the client's name.
    statements: HashMap<Box<[u8]>, Arc<Statement>>,
    /// Parameters the client SET or RESET since lakepool last read them back.
    pub touched: Vec<String>,
    /// The client ran RESET ALL or DISCARD ALL since then.
    pub touched_all: bool,
    /// Bytes still missing from a held message at the end of `inbuf`.
    wanted: Option<usize>,
}

/// What the client side works against while attached to one server.
pub struct Attached<'a> {
    /// Requests awaiting replies.
    pub queue: &'a mut ReplyQueue,
    /// The server's prepared statements.
    pub cache: &'a mut PreparedCache,
    /// The pool's interned statements.
    pub registry: &'a StatementRegistry,
    /// Most statements prepared per server.
    pub cap: usize,
    /// Largest client message accepted.
    pub max_message: usize,
    /// Status of the last ReadyForQuery.
    pub status: u8,
    /// Parameters tracked besides the built-in ones (lowercase).
    pub extra_tracked: &'a [String],
    /// The pool's counters (parses and binds), when counting.
    pub stats: Option<&'a PoolStats>,
}

/// Result of handling client input.
#[derive(Debug, PartialEq, Eq)]
pub enum ClientInput {
    /// Everything complete was handled.
    Done,
    /// The client sent Terminate: everything before it was handled.
    Terminated,
}

impl ClientSide {
    /// True when a complete Terminate is the next thing in `inbuf` (nothing to send first).
    pub fn terminates_next(&self) -> bool {
        self.streaming == 0 && self.inbuf.len() >= 5 && self.inbuf[0] == b'X'
    }

    /// Moves what can be sent from `inbuf` to `out`, rewriting statement names.
    pub fn handle(
        &mut self,
        out: &mut BytesMut,
        at: &mut Attached<'_>,
    ) -> Result<ClientInput, ScanError> {
        // Taken out so messages can be read from it while the rest of `self` changes.
        let mut inbuf = std::mem::take(&mut self.inbuf);
        let result = self.handle_buffered(&inbuf, out, at);
        if let Ok((pos, _)) = &result {
            inbuf.advance(*pos);
        }
        reclaim(&mut inbuf);
        self.inbuf = inbuf;
        let (_, input) = result?;
        if let Some(more) = self.wanted.take() {
            self.inbuf.reserve(more);
        }
        Ok(input)
    }

    fn handle_buffered(
        &mut self,
        inbuf: &[u8],
        out: &mut BytesMut,
        at: &mut Attached<'_>,
    ) -> Result<(usize, ClientInput), ScanError> {
        let mut pos = 0;
        let input = loop {
            let avail = &inbuf[pos..];
            if self.streaming > 0 {
                let n = self.streaming.min(avail.len());
                out.extend_from_slice(&avail[..n]);
                self.streaming -= n;
                pos += n;
                if self.streaming > 0 {
                    break ClientInput::Done;
                }
                continue;
            }
            let Some((tag, body_len)) = header(avail, at.max_message)? else {
                break ClientInput::Done;
            };
            if tag == b'X' {
                break ClientInput::Terminated;
            }
            let total = 5 + body_len;
            if avail.len() < total {
                if held(tag) {
                    // Wait for the rest, with room for it made in one go.
                    self.wanted = Some(total - avail.len());
                    break ClientInput::Done;
                }
                self.push_expect(tag, at);
                out.extend_from_slice(avail);
                self.streaming = total - avail.len();
                pos += avail.len();
                break ClientInput::Done;
            }
            let msg = &avail[..total];
            if held(tag) && !at.queue.skipping() {
                self.rewrite(tag, msg, out, at);
            } else {
                self.push_expect(tag, at);
                out.extend_from_slice(msg);
            }
            pos += total;
        };
        Ok((pos, input))
    }

    /// The reply entry for a message passed unchanged.
    fn push_expect(&self, tag: u8, at: &mut Attached<'_>) {
        let e = match tag {
            b'P' => Expect::Parse {
                forward: true,
                stmt: None,
                mapped: None,
            },
            b'B' => Expect::Bind,
            b'D' => Expect::Describe,
            b'E' => Expect::Execute,
            b'C' => Expect::Close {
                forward: true,
                evicted: None,
            },
            b'S' | b'Q' | b'F' => Expect::Sync,
            b'c' | b'f' => Expect::CopyEnd,
            _ => return,
        };
        if !at.queue.skipping() || tag == b'S' {
            at.queue.push(e);
        }
    }

    fn rewrite(&mut self, tag: u8, msg: &[u8], out: &mut BytesMut, at: &mut Attached<'_>) {
        let body = &msg[5..];
        match tag {
            b'P' => self.parse(msg, out, at),
            b'B' => match cstr(body).and_then(|(portal, rest)| Some((portal, cstr(rest)?))) {
                Some((portal, (name, rest))) if !name.is_empty() => {
                    match self.statements.get(name).cloned() {
                        Some(stmt) => {
                            if let Some(s) = at.stats {
                                s.record_bind();
                            }
                            if stmt.touches_state {
                                self.note_sql(stmt.query(), false, at);
                            }
                            ensure_prepared(&stmt, out, at);
                            put_header(out, b'B', portal.len() + stmt.name.len() + 2 + rest.len());
                            out.put_slice(portal);
                            out.put_u8(0);
                            out.put_slice(stmt.name.as_bytes());
                            out.put_u8(0);
                            out.put_slice(rest);
                            at.queue.push(Expect::Bind);
                        }
                        // Unknown: the server answers with PostgreSQL's own error.
                        None => self.pass(tag, msg, out, at),
                    }
                }
                _ => self.pass(tag, msg, out, at),
            },
            b'D' | b'C' => match body.split_first() {
                Some((&b'S', rest)) if cstr(rest).is_some_and(|(n, _)| !n.is_empty()) => {
                    let (name, _) = cstr(rest).unwrap_or_default();
                    if tag == b'C' {
                        // The statement stays prepared on the server for other clients.
                        let undo = self
                            .statements
                            .remove(name)
                            .map(|s| Undo::Remap(name.into(), s));
                        at.queue.push(Expect::Synth(Synth::CloseComplete, undo));
                        return;
                    }
                    match self.statements.get(name).cloned() {
                        Some(stmt) => {
                            ensure_prepared(&stmt, out, at);
                            put_header(out, b'D', 1 + stmt.name.len() + 1);
                            out.put_u8(b'S');
                            out.put_slice(stmt.name.as_bytes());
                            out.put_u8(0);
                            at.queue.push(Expect::Describe);
                        }
                        None => self.pass(tag, msg, out, at),
                    }
                }
                _ => self.pass(tag, msg, out, at),
            },
            b'Q' => {
                let text = cstr(body).map_or(body, |(t, _)| t);
                match self.note_sql(text, true, at) {
                    Some(reply) => at.queue.push(Expect::Synth(reply, None)),
                    None => self.pass(tag, msg, out, at),
                }
            }
            _ => self.pass(tag, msg, out, at),
        }
    }

    fn pass(&self, tag: u8, msg: &[u8], out: &mut BytesMut, at: &mut Attached<'_>) {
        self.push_expect(tag, at);
        out.extend_from_slice(msg);
    }

    fn parse(&mut self, msg: &[u8], out: &mut BytesMut, at: &mut Attached<'_>) {
        let Some((name, rest)) = cstr(&msg[5..]) else {
            // Malformed: the server says so.
            return self.pass(b'P', msg, out, at);
        };
        if name.is_empty() {
            // An unnamed statement is executed right after: what it does is noted now. Named
            // ones are noted at each Bind.
            if let Some((text, _)) = cstr(rest) {
                self.note_sql(text, false, at);
            }
            return self.pass(b'P', msg, out, at);
        }
        if let Some(s) = at.stats {
            s.record_client_parse();
        }
        if let Some(existing) = self.statements.get(name).cloned() {
            // PostgreSQL refuses to prepare a name twice: let the server say so, by preparing
            // the already-mapped server name again where it certainly exists.
            ensure_prepared(&existing, out, at);
            out.extend_from_slice(&existing.parse);
            at.queue.push(Expect::Parse {
                forward: true,
                stmt: None,
                mapped: None,
            });
            return;
        }
        let stmt = at.registry.intern(rest);
        self.statements.insert(name.into(), Arc::clone(&stmt));
        // Undone if the server skips this Parse (an earlier error) or it fails: PostgreSQL
        // would not have created the name.
        if at.cache.touch(&stmt) {
            let undo = Undo::Unmap(name.into(), Arc::clone(&stmt));
            at.queue
                .push(Expect::Synth(Synth::ParseComplete, Some(undo)));
        } else {
            prepare(&stmt, true, Some(name.into()), out, at);
        }
    }

    /// Looks at SQL the client sends: notes the parameters it sets or resets (read back after
    /// the transaction), warns about what does not outlive a transaction in this mode, and
    /// answers a lone `DEALLOCATE` of a mapped statement itself (the server knows the statement
    /// by another name). Returns that made-up reply.
    fn note_sql(&mut self, text: &[u8], simple: bool, at: &mut Attached<'_>) -> Option<Synth> {
        if !sql::needs_attention(text) {
            return None;
        }
        let text = std::str::from_utf8(text).ok()?;
        let stmts = sql::statements(text);
        let lone = simple && stmts.len() == 1;
        let mut reply = None;
        for st in stmts {
            let limit = match st.command {
                Command::Set { name } | Command::Reset { name } => {
                    if !is_tracked(&name, at.extra_tracked) {
                        at.queue
                            .push(Expect::Synth(Synth::Untracked(name.as_str().into()), None));
                    }
                    if !self.touched.contains(&name) {
                        self.touched.push(name);
                    }
                    continue;
                }
                Command::ResetAll | Command::DiscardAll => {
                    self.touched_all = true;
                    continue;
                }
                Command::Deallocate { name } if lone && at.status != b'E' => {
                    if self.statements.remove(name.as_bytes()).is_some() {
                        reply = Some(Synth::Command("DEALLOCATE"));
                    }
                    continue;
                }
                Command::Listen => Limitation::Listen,
                Command::AdvisoryLock => Limitation::AdvisoryLock,
                Command::CursorWithHold => Limitation::HoldCursor,
                Command::CreateTemp => Limitation::TempTable,
                Command::Prepare { .. } => Limitation::SqlPrepare,
                _ => continue,
            };
            at.queue.push(Expect::Synth(Synth::Warn(limit), None));
        }
        reply
    }

    /// Answers, without a server, input that only prepares statements some server already
    /// accepted or closes statements, ending in Sync: what drivers send to prepare before
    /// executing (pgbench, psycopg). Such a client then needs a server only to execute, so
    /// preparing never waits behind busy servers. Returns the replies, or None (nothing
    /// changed) when the input needs a server.
    pub fn answer_without_server(
        &mut self,
        registry: &StatementRegistry,
        stats: Option<&PoolStats>,
    ) -> Option<BytesMut> {
        let mut pos = 0;
        let mut plan = Vec::new();
        let buf = &self.inbuf[..];
        loop {
            let (tag, body_len) = header(&buf[pos..], usize::MAX).ok()??;
            let body = buf.get(pos + 5..pos + 5 + body_len)?;
            pos += 5 + body_len;
            match tag {
                b'P' => {
                    let (name, rest) = cstr(body)?;
                    let (text, _) = cstr(rest)?;
                    if name.is_empty()
                        || self.statements.contains_key(name)
                        || plan.iter().any(|(n, _)| *n == name)
                        || sql::needs_attention(text)
                    {
                        return None;
                    }
                    plan.push((name, Some(registry.accepted(rest)?)));
                }
                b'C' => match body.split_first() {
                    Some((&b'S', rest)) => plan.push((cstr(rest)?.0, None)),
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
                    put_header(&mut reply, b'1', 0);
                    if let Some(st) = stats {
                        st.record_client_parse();
                    }
                }
                None => {
                    self.statements.remove(&name);
                    put_header(&mut reply, b'3', 0);
                }
            }
        }
        put_header(&mut reply, b'Z', 1);
        reply.put_u8(b'I');
        self.inbuf.clear();
        Some(reply)
    }

    /// Undoes a name change the server made void.
    pub fn apply_undo(&mut self, undo: Undo) {
        match undo {
            Undo::Unmap(name, stmt) => {
                if self
                    .statements
                    .get(&name)
                    .is_some_and(|s| Arc::ptr_eq(s, &stmt))
                {
                    self.statements.remove(&name);
                }
            }
            Undo::Remap(name, stmt) => {
                self.statements.entry(name).or_insert(stmt);
            }
        }
    }

    /// Forgets every statement the client prepared (DISCARD ALL, DEALLOCATE ALL).
    pub fn forget_statements(&mut self) {
        self.statements.clear();
    }

    /// Forgets one statement by the client's name (SQL DEALLOCATE).
    pub fn forget_statement(&mut self, name: &[u8]) -> Option<Arc<Statement>> {
        self.statements.remove(name)
    }

    /// Named statements the client has.
    pub fn statement_count(&self) -> usize {
        self.statements.len()
    }
}

/// Parameters whose values follow a client from server to server in transaction mode, besides
/// `track_extra_parameters` (lowercase).
pub const TRACKED: [&str; 10] = [
    "application_name",
    "client_encoding",
    "datestyle",
    "intervalstyle",
    "timezone",
    "standard_conforming_strings",
    "search_path",
    "statement_timeout",
    "lock_timeout",
    "idle_in_transaction_session_timeout",
];

/// Whether `name` (as the SQL classifier reports it) is tracked.
pub fn is_tracked(name: &str, extra: &[String]) -> bool {
    TRACKED.iter().any(|t| t.eq_ignore_ascii_case(name))
        || extra.iter().any(|t| t.eq_ignore_ascii_case(name))
}

/// Makes sure the server has `stmt` before a message that uses it.
fn ensure_prepared(stmt: &Arc<Statement>, out: &mut BytesMut, at: &mut Attached<'_>) {
    if !at.cache.touch(stmt) {
        prepare(stmt, false, None, out, at);
    }
}

/// Sends the Parse for `stmt` (closing the least recently used statement if the cache is
/// full) and records it as prepared; a failure un-records it.
fn prepare(
    stmt: &Arc<Statement>,
    forward: bool,
    mapped: Option<Box<[u8]>>,
    out: &mut BytesMut,
    at: &mut Attached<'_>,
) {
    if let Some(old) = at.cache.insert(Arc::clone(stmt), at.cap) {
        put_header(out, b'C', 1 + old.name.len() + 1);
        out.put_u8(b'S');
        out.put_slice(old.name.as_bytes());
        out.put_u8(0);
        at.queue.push(Expect::Close {
            forward: false,
            evicted: Some(old),
        });
    }
    out.extend_from_slice(&stmt.parse);
    if let Some(s) = at.stats {
        s.record_server_parse();
    }
    at.queue.push(Expect::Parse {
        forward,
        stmt: Some(Arc::clone(stmt)),
        mapped,
    });
}

/// The server → client side of one attachment.
#[derive(Debug, Default)]
pub struct ServerSide {
    /// Body bytes of a streamed server message still to pass (or drop).
    streaming: usize,
    /// The streamed message is being dropped.
    dropping: bool,
}

impl ServerSide {
    /// True when no server message is partly passed.
    pub fn at_boundary(&self) -> bool {
        self.streaming == 0
    }

    /// Moves server messages from `rx` to `out`: made-up replies inserted where due, replies
    /// to lakepool's own requests dropped. `status` is the last transaction status.
    pub fn handle(
        &mut self,
        rx: &mut BytesMut,
        out: &mut BytesMut,
        queue: &mut ReplyQueue,
        cache: &mut PreparedCache,
        client: &mut ClientSide,
        status: u8,
    ) {
        let mut pos = 0;
        loop {
            let avail = &rx[pos..];
            if self.streaming > 0 {
                let n = self.streaming.min(avail.len());
                if !self.dropping {
                    out.extend_from_slice(&avail[..n]);
                }
                self.streaming -= n;
                pos += n;
                if self.streaming > 0 {
                    break;
                }
                continue;
            }
            emit_due(queue, out, status);
            // The server's framing was already checked by the tracker's scanner.
            let Ok(Some((tag, body_len))) = header(avail, usize::MAX) else {
                break;
            };
            let total = 5 + body_len;
            if avail.len() < total && server_held(tag) {
                rx.reserve(total - avail.len());
                break;
            }
            if tag == b'C' {
                let body = &avail[5..total];
                if body.starts_with(b"DISCARD ALL\0") || body.starts_with(b"DEALLOCATE ALL\0") {
                    cache.clear();
                    client.forget_statements();
                }
            }
            let forward = queue.on_server(tag, cache);
            if let Some(undo) = queue.take_undo() {
                for u in undo {
                    client.apply_undo(u);
                }
            }
            let n = total.min(avail.len());
            if forward {
                out.extend_from_slice(&avail[..n]);
            }
            self.streaming = total - n;
            self.dropping = !forward;
            pos += n;
        }
        emit_due(queue, out, status);
        rx.advance(pos);
        reclaim(rx);
    }

    /// Emits made-up replies that are due while the server is silent.
    pub fn flush_due(&self, queue: &mut ReplyQueue, out: &mut BytesMut, status: u8) {
        if self.streaming == 0 {
            emit_due(queue, out, status);
        }
    }
}

fn emit_due(queue: &mut ReplyQueue, out: &mut BytesMut, status: u8) {
    while let Some(s) = queue.pop_synth() {
        match s {
            Synth::ParseComplete => put_header(out, b'1', 0),
            Synth::CloseComplete => put_header(out, b'3', 0),
            Synth::Command(tag) => {
                put_header(out, b'C', tag.len() + 1);
                out.put_slice(tag.as_bytes());
                out.put_u8(0);
                put_header(out, b'Z', 1);
                out.put_u8(status);
            }
            Synth::Warn(limit) => {
                let (message, hint) = limit.text();
                write::warning(out, SqlState::WARNING, message, Some(hint));
            }
            Synth::Untracked(name) => write::warning(
                out,
                SqlState::WARNING,
                &format!(
                    "lakepool: parameter \"{name}\" is not tracked in transaction pooling mode; it is reset when the transaction ends"
                ),
                Some("add it to [pool] track_extra_parameters to keep its value for the session"),
            ),
        }
    }
}

#[cfg(test)]
#[path = "rewrite_tests.rs"]
mod tests;
