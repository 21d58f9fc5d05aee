//! A model of what one PostgreSQL server connection has prepared, for the `txn` target: it
//! pairs what lakepool writes to the server with what the (fuzzed) server answers, as
//! PostgreSQL's extended protocol would, and checks lakepool's use of its own statements
//! (`lakepool_<n>`, statement mapping on):
//!
//! - lakepool never sends a Parse of a statement the server has (PostgreSQL: 42P05 "already
//!   exists", an error for a request the client made correctly);
//! - lakepool never binds or describes a statement after its own Close of it ran (26000
//!   "does not exist": the client never closed it, a direct connection would still have it).
//!
//! The fuzzed server answers anything; once an answer is one PostgreSQL could not have given
//! at that point (or a COPY or function call starts, which the model does not follow), the
//! model stops checking that connection.

use std::collections::{HashMap, VecDeque};

use crate::proto::frame::HEADER_LEN;

/// Body bytes kept per message: enough for the names and command tags looked at.
const KEEP: usize = 128;

/// Splits a byte stream into messages, keeping the tag and the start of each body.
#[derive(Default)]
struct Framer {
    head: Vec<u8>,
    body: Vec<u8>,
    left: usize,
}

impl Framer {
    /// No message is partly in.
    fn is_idle(&self) -> bool {
        self.head.is_empty()
    }

    /// Feeds bytes; calls `each` with (tag, body start) for every message completed.
    fn feed(&mut self, mut b: &[u8], mut each: impl FnMut(u8, &[u8])) {
        while !b.is_empty() {
            if self.head.len() < HEADER_LEN {
                let n = (HEADER_LEN - self.head.len()).min(b.len());
                self.head.extend_from_slice(&b[..n]);
                b = &b[n..];
                if self.head.len() < HEADER_LEN {
                    return;
                }
                let len =
                    u32::from_be_bytes([self.head[1], self.head[2], self.head[3], self.head[4]]);
                // StreamCheck rejects lengths below 4 on lakepool's side; the server's may be
                // anything, and what follows a bad one means nothing.
                self.left = (len as usize).saturating_sub(4);
                self.body.clear();
            }
            let n = self.left.min(b.len());
            let keep = n.min(KEEP.saturating_sub(self.body.len()));
            self.body.extend_from_slice(&b[..keep]);
            self.left -= n;
            b = &b[n..];
            if self.left == 0 {
                each(self.head[0], &self.body);
                self.head.clear();
            }
        }
    }
}

/// A request the server has received and not answered yet, with the `lakepool_` statement
/// it names, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Req {
    Parse,
    Bind,
    /// Describe of a statement (ParameterDescription comes first) or of a portal.
    Describe {
        statement: bool,
    },
    Close,
    Execute,
    Sync,
    /// A simple query; `copy` when it is a `COPY … FROM STDIN`.
    Query {
        copy: Option<CopyIn>,
    },
}

/// A `COPY … FROM STDIN` simple query as the server goes through it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CopyIn {
    /// Its CopyInResponse was sent.
    started: bool,
    /// lakepool sent CopyDone (`Some(false)`) or CopyFail (`Some(true)`): the data is all in.
    end: Option<bool>,
}

/// What the server did last with one of lakepool's statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stmt {
    Prepared,
    /// A Close of lakepool's ran.
    Closed,
}

/// One server connection as the model sees it.
pub(super) struct ServerModel {
    /// The server's answers still made sense, and statement mapping is on (`lakepool_` names
    /// are lakepool's alone; without it they are the client's, whatever it does with them).
    valid: bool,
    sent: Framer,
    received: Framer,
    pending: VecDeque<(Req, Option<Vec<u8>>)>,
    /// After an error in an extended exchange: everything up to Sync is ignored.
    skipping: bool,
    /// Extended-protocol requests were received since the last Sync.
    unsynced: bool,
    /// Transaction status of the last ReadyForQuery.
    status: u8,
    stmts: HashMap<Vec<u8>, Stmt>,
}

/// The command tag PostgreSQL gives a simple query (the two lakepool acts on, or one it does
/// not).
fn command_tag(text: &[u8]) -> &'static [u8] {
    let t = text.trim_ascii_start();
    let starts = |p: &[u8]| t.len() >= p.len() && t[..p.len()].eq_ignore_ascii_case(p);
    if starts(b"discard all") {
        b"DISCARD ALL\0"
    } else if starts(b"deallocate all") {
        b"DEALLOCATE ALL\0"
    } else {
        b"SELECT 1\0"
    }
}

/// Whether a simple query is a lone `COPY … FROM STDIN` (one statement).
fn is_copy_in(body: &[u8]) -> bool {
    let text = body.split(|&b| b == 0).next().unwrap_or_default();
    let lower = text.trim_ascii().to_ascii_lowercase();
    lower.starts_with(b"copy ") && lower.ends_with(b"from stdin") && !lower.contains(&b';')
}

/// A `lakepool_` statement name at the start of `body`, if it is one.
fn own_name(body: &[u8], skip: usize) -> Option<Vec<u8>> {
    let rest = body.get(skip..)?;
    let end = memchr::memchr(0, rest)?;
    let name = &rest[..end];
    name.starts_with(b"lakepool_").then(|| name.to_vec())
}

impl ServerModel {
    pub(super) fn new(mapping: bool) -> Self {
        Self {
            valid: mapping,
            sent: Framer::default(),
            received: Framer::default(),
            pending: VecDeque::new(),
            skipping: false,
            unsynced: false,
            status: b'I',
            stmts: HashMap::new(),
        }
    }

    /// Bytes lakepool wrote to this server.
    pub(super) fn sent(&mut self, b: &[u8]) {
        let mut msgs = Vec::new();
        self.sent
            .feed(b, |tag, body| msgs.push((tag, body.to_vec())));
        for (tag, body) in msgs {
            self.request(tag, &body);
        }
    }

    /// Bytes the server sent, as lakepool reads them.
    pub(super) fn received(&mut self, b: &[u8]) {
        let mut msgs = Vec::new();
        self.received
            .feed(b, |tag, body| msgs.push((tag, body.to_vec())));
        for (tag, body) in msgs {
            if self.valid {
                self.reply(tag, &body);
            }
        }
    }

    fn request(&mut self, tag: u8, body: &[u8]) {
        let req = match tag {
            b'P' => (Req::Parse, own_name(body, 0)),
            b'B' => {
                // Portal name, then the statement's.
                let Some(portal_end) = memchr::memchr(0, body) else {
                    return self.invalid();
                };
                (Req::Bind, own_name(body, portal_end + 1))
            }
            b'D' => {
                let statement = body.first() == Some(&b'S');
                (
                    Req::Describe { statement },
                    own_name(body, 1).filter(|_| statement),
                )
            }
            b'C' => (
                Req::Close,
                own_name(body, 1).filter(|_| body.first() == Some(&b'S')),
            ),
            b'E' => (Req::Execute, None),
            b'S' => (Req::Sync, None),
            // The start of its text, for the command tag of the answer.
            b'Q' => {
                let copy = is_copy_in(body).then_some(CopyIn {
                    started: false,
                    end: None,
                });
                (Req::Query { copy }, Some(body.to_vec()))
            }
            b'H' | b'X' => return,
            // COPY data and ends belong to a COPY the server is in, or will be in when it
            // reads them (a COPY query before them not yet ended); elsewhere PostgreSQL
            // ignores them.
            b'd' | b'c' | b'f' => {
                if tag != b'd'
                    && let Some(copy) = self.open_copy()
                {
                    copy.end = Some(tag == b'f');
                }
                return;
            }
            // Function calls: not followed.
            _ => return self.invalid(),
        };
        if self.open_copy().is_some() {
            // Anything else while the server is in COPY: not followed (Sync and Flush are
            // ignored there, the rest fails the COPY).
            return self.invalid();
        }
        self.unsynced = !matches!(req.0, Req::Sync | Req::Query { .. })
            || (self.unsynced && matches!(req.0, Req::Query { .. }));
        if req.0 == Req::Sync {
            self.skipping = false;
        } else if self.skipping {
            self.skipped(&req);
            return;
        }
        self.pending.push_back(req);
    }

    /// The COPY the server is in, or enters before it reads what comes next. Always the last
    /// request received: anything but COPY data after an open one stops the model.
    fn open_copy(&mut self) -> Option<&mut CopyIn> {
        match self.pending.back_mut() {
            Some((
                Req::Query {
                    copy: Some(c @ CopyIn { end: None, .. }),
                },
                _,
            )) => Some(c),
            _ => None,
        }
    }

    fn invalid(&mut self) {
        self.valid = false;
    }

    fn reply(&mut self, tag: u8, body: &[u8]) {
        if matches!(tag, b'N' | b'S' | b'A') {
            return;
        }
        if tag == b'Z' {
            self.status = body.first().copied().unwrap_or(b'I');
        }
        if tag == b'C'
            && (body.starts_with(b"DISCARD ALL\0") || body.starts_with(b"DEALLOCATE ALL\0"))
        {
            // lakepool forgets its statements on this tag, whatever the query was.
            self.stmts.clear();
        }
        let Some((req, name)) = self.pending.front().cloned() else {
            return self.invalid();
        };
        let own =
            |stmts: &HashMap<Vec<u8>, Stmt>| name.as_ref().and_then(|n| stmts.get(n).copied());
        match (req, tag) {
            (Req::Parse, b'1' | b'E') => {
                assert!(
                    own(&self.stmts) != Some(Stmt::Prepared),
                    "lakepool sent a Parse of {}, which the server has",
                    String::from_utf8_lossy(name.as_deref().unwrap_or_default())
                );
                // A failed Parse leaves the name unknown: a Bind of it after fails on a direct
                // connection too.
                if let Some(n) = name {
                    if tag == b'1' {
                        self.stmts.insert(n, Stmt::Prepared);
                    } else {
                        self.forget_closed(&n);
                    }
                }
                self.done(tag == b'E');
            }
            (Req::Bind | Req::Describe { .. }, b'2' | b't' | b'T' | b'n' | b'E') => {
                assert!(
                    own(&self.stmts) != Some(Stmt::Closed),
                    "lakepool used {} after its own Close of it ran",
                    String::from_utf8_lossy(name.as_deref().unwrap_or_default())
                );
                match (req, tag) {
                    (Req::Bind, b'2' | b'E') | (Req::Describe { .. }, b'T' | b'n' | b'E') => {
                        self.done(tag == b'E');
                    }
                    // ParameterDescription: the row description follows.
                    (Req::Describe { statement: true }, b't') => {}
                    _ => self.invalid(),
                }
            }
            (Req::Close, b'3' | b'E') => {
                if let (Some(n), b'3') = (name, tag)
                    && self.stmts.contains_key(&n)
                {
                    self.stmts.insert(n, Stmt::Closed);
                }
                self.done(tag == b'E');
            }
            (Req::Execute, b'D') => {}
            (Req::Execute, b'C' | b'I' | b's' | b'E') => self.done(tag == b'E'),
            // In COPY the server ends the query only after the client's CopyDone/CopyFail or
            // its own error.
            (
                Req::Query {
                    copy:
                        Some(CopyIn {
                            started: true,
                            end: None,
                        }),
                },
                b'Z' | b'C',
            ) => self.invalid(),
            (
                Req::Query {
                    copy: Some(CopyIn { end: None, .. }),
                },
                b'E',
            ) => {
                // The COPY is over for the server: what the client still sends for it is
                // ignored.
                if let Some((Req::Query { copy: Some(c) }, _)) = self.pending.front_mut() {
                    c.end = Some(true);
                }
            }
            (Req::Sync | Req::Query { .. }, b'Z') => {
                self.pending.pop_front();
            }
            (
                Req::Query {
                    copy: Some(CopyIn { started: false, .. }),
                },
                b'G',
            ) => {
                if let Some((Req::Query { copy: Some(c) }, _)) = self.pending.front_mut() {
                    c.started = true;
                }
            }
            (Req::Query { .. }, b'T' | b'D' | b'C' | b'I' | b'E') => {}
            _ => self.invalid(),
        }
    }

    /// What PostgreSQL would answer to the requests received and not answered yet (nothing
    /// once the model stopped following): everything succeeds, except the request at
    /// `error_at` which gets `error` (an ErrorResponse body), the rest of its exchange being
    /// skipped as PostgreSQL skips it.
    pub(super) fn answers(&self, error_at: Option<usize>, error: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        if !self.valid {
            return out;
        }
        let mut put = |tag: u8, body: &[u8]| {
            out.push(tag);
            out.extend_from_slice(
                &u32::try_from(body.len() + 4)
                    .unwrap_or(u32::MAX)
                    .to_be_bytes(),
            );
            out.extend_from_slice(body);
        };
        let mut skipping = false;
        for (i, (req, text)) in self.pending.iter().enumerate() {
            if skipping && *req != Req::Sync {
                continue;
            }
            if error_at == Some(i) && *req != Req::Sync {
                // "Does not exist" names the statement, as PostgreSQL's does.
                let named;
                let error = match text {
                    Some(n) if error.windows(7).any(|w| w == b"C26000\0") => {
                        named = [
                            &b"SERROR\0VERROR\0C26000\0Mprepared statement \""[..],
                            n,
                            b"\" does not exist\0\0",
                        ]
                        .concat();
                        &named[..]
                    }
                    _ => error,
                };
                put(b'E', error);
                if matches!(req, Req::Query { .. }) {
                    put(b'Z', b"I");
                } else {
                    skipping = true;
                }
                continue;
            }
            match req {
                Req::Parse => put(b'1', b""),
                Req::Bind => put(b'2', b""),
                Req::Describe { statement } => {
                    if *statement {
                        put(b't', b"\0\0");
                    }
                    put(b'n', b"");
                }
                Req::Close => put(b'3', b""),
                Req::Execute => put(b'C', b"SELECT 1\0"),
                Req::Sync => {
                    skipping = false;
                    put(b'Z', b"I");
                }
                Req::Query { copy: Some(c) } => {
                    if !c.started {
                        // Text format, no columns.
                        put(b'G', b"\0\0\0");
                    }
                    match c.end {
                        // The server waits for the rest of the data.
                        None => break,
                        Some(false) => put(b'C', b"COPY 1\0"),
                        Some(true) => {
                            put(b'E', b"SERROR\0VERROR\0C57014\0MCOPY from stdin failed\0\0")
                        }
                    }
                    put(b'Z', b"I");
                }
                Req::Query { copy: None } => {
                    put(b'C', command_tag(text.as_deref().unwrap_or_default()));
                    put(b'Z', b"I");
                }
            }
        }
        out
    }

    /// The server is between transactions: everything answered, no exchange open, status
    /// idle (as far as the model follows it). A pooler has no reason to keep it from the pool.
    pub(super) fn between_transactions(&self) -> bool {
        self.valid
            && self.pending.is_empty()
            && !self.skipping
            && !self.unsynced
            && self.status == b'I'
            && self.sent.is_idle()
            && self.received.is_idle()
    }

    /// Nothing sent is unanswered and no exchange is open (or the model stopped following):
    /// the server may go to another client.
    pub(super) fn owes_nothing(&self) -> bool {
        !self.valid || (self.pending.is_empty() && !self.skipping && self.sent.is_idle())
    }

    /// Ids of the `lakepool_` statements the server has prepared, once it has answered
    /// everything it was sent (and the model still follows it).
    pub(super) fn prepared_ids(&self) -> Option<Vec<u64>> {
        if !self.valid || self.skipping || !self.pending.is_empty() || !self.sent.is_idle() {
            return None;
        }
        Some(
            self.stmts
                .iter()
                .filter(|(_, s)| **s == Stmt::Prepared)
                .filter_map(|(n, _)| std::str::from_utf8(&n[b"lakepool_".len()..]).ok())
                .filter_map(|id| id.parse().ok())
                .collect(),
        )
    }

    /// The request at the front is answered; after an error the server skips the rest of
    /// its exchange.
    fn done(&mut self, error: bool) {
        self.pending.pop_front();
        if !error {
            return;
        }
        while let Some((r, _)) = self.pending.front() {
            if *r == Req::Sync {
                return;
            }
            if let Some(req) = self.pending.pop_front() {
                self.skipped(&req);
            }
        }
        self.skipping = true;
    }

    /// A request the server skips: a skipped Parse, as a failed one, leaves the server as it
    /// was.
    fn skipped(&mut self, req: &(Req, Option<Vec<u8>>)) {
        if let (Req::Parse, Some(n)) = req {
            self.forget_closed(n);
        }
    }

    /// After a Parse of a closed statement that did not run, a Bind of it fails on a direct
    /// connection too (the client's Parse did not run either): no longer checked. A prepared
    /// one stays prepared (a second Parse of it would still be lakepool's mistake).
    fn forget_closed(&mut self, name: &[u8]) {
        if self.stmts.get(name) == Some(&Stmt::Closed) {
            self.stmts.remove(name);
        }
    }
}
