//! Unit tests of the transaction-mode data path: one client and one server connection driven
//! through the pump's framing without sockets, by subject.

mod framing;
mod mapping;
mod owed;
mod protocol_edges;
mod skipping;
mod sql;

use super::replies::ReplyQueue;
use super::{Attached, TxnClient, TxnLimits};
use crate::frontend::pipe::Pipe;
use crate::frontend::pump::{Core, IdleLimits, TxnPart};
use crate::frontend::tracker::Tracker;
use crate::pool::statements::StatementRegistry;
use crate::upstream::params::ParamMap;
use crate::upstream::prepared::PreparedCache;

fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    v.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    v.extend_from_slice(body);
    v
}

fn parse(name: &str, sql: &str) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(name.as_bytes());
    b.push(0);
    b.extend_from_slice(sql.as_bytes());
    b.extend_from_slice(&[0, 0, 0]);
    msg(b'P', &b)
}

fn bind(stmt: &str) -> Vec<u8> {
    let mut b = vec![0];
    b.extend_from_slice(stmt.as_bytes());
    b.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0]);
    msg(b'B', &b)
}

fn close(stmt: &str) -> Vec<u8> {
    let mut b = vec![b'S'];
    b.extend_from_slice(stmt.as_bytes());
    b.push(0);
    msg(b'C', &b)
}

fn describe(stmt: &str) -> Vec<u8> {
    let mut b = vec![b'S'];
    b.extend_from_slice(stmt.as_bytes());
    b.push(0);
    msg(b'D', &b)
}

fn query(sql: &str) -> Vec<u8> {
    let mut b = sql.as_bytes().to_vec();
    b.push(0);
    msg(b'Q', &b)
}

fn exec() -> Vec<u8> {
    msg(b'E', b"\0\0\0\0\0")
}

fn sync() -> Vec<u8> {
    msg(b'S', b"")
}

/// Splits a byte stream into (tag, body) pairs.
fn messages(mut b: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while b.len() >= 5 {
        let len = u32::from_be_bytes([b[1], b[2], b[3], b[4]]) as usize;
        out.push((b[0], b[5..1 + len].to_vec()));
        b = &b[1 + len..];
    }
    out
}

fn tags(b: &[u8]) -> String {
    messages(b).iter().map(|(t, _)| char::from(*t)).collect()
}

fn error_code(b: &[u8]) -> Option<String> {
    messages(b)
        .into_iter()
        .find(|(t, _)| *t == b'E')
        .map(|(_, body)| crate::proto::backend::parse_error(&body).code)
}

/// One client and one server connection of one pool, driven through the pump's framing
/// without sockets.
struct Rig {
    client: TxnClient,
    queue: ReplyQueue,
    cache: PreparedCache,
    registry: StatementRegistry,
    limits: TxnLimits,
    tracker: Tracker,
    up: Pipe,
    down: Pipe,
    params: ParamMap,
    idle: IdleLimits,
}

impl Rig {
    fn new() -> Self {
        Self {
            client: TxnClient::default(),
            queue: ReplyQueue::default(),
            cache: PreparedCache::default(),
            registry: StatementRegistry::default(),
            limits: TxnLimits {
                cache_cap: 10,
                max_statements: 1000,
                max_statement_bytes: 1 << 20,
                hold_limit: 1 << 20,
                max_message: 1 << 24,
            },
            tracker: Tracker::default(),
            up: Pipe::default(),
            down: Pipe::default(),
            params: ParamMap::new(),
            idle: IdleLimits::default(),
        }
    }

    fn run<R>(&mut self, f: impl FnOnce(&mut Core<'_>) -> R) -> R {
        let mut core = Core {
            up: &mut self.up,
            down: &mut self.down,
            tracker: &mut self.tracker,
            server_params: &mut self.params,
            txn: Some(TxnPart {
                client: &mut self.client,
                at: Attached {
                    queue: &mut self.queue,
                    cache: &mut self.cache,
                    registry: &self.registry,
                    limits: &self.limits,
                },
            }),
            release_when_idle: true,
            limits: &mut self.idle,
            max_message: 1 << 24,
            terminated: false,
            client_moved: false,
        };
        f(&mut core)
    }

    /// Client bytes in; what goes to the server out.
    fn send(&mut self, bytes: &[u8]) -> Vec<u8> {
        self.up.feed(bytes);
        self.run(|c| c.frame_up()).unwrap();
        self.up.drain()
    }

    /// Server bytes in; what goes to the client out.
    fn reply(&mut self, bytes: &[u8]) -> Vec<u8> {
        self.down.feed(bytes);
        self.run(|c| c.frame_down()).unwrap();
        self.down.drain()
    }

    /// Made-up replies due while the server says nothing.
    fn due(&mut self) -> Vec<u8> {
        self.reply(&[])
    }

    fn idle(&mut self) -> bool {
        self.run(|c| c.idle_now())
    }
}

fn server_msgs(tags: &str) -> Vec<u8> {
    tags.bytes()
        .flat_map(|t| match t {
            b'Z' => msg(b'Z', b"I"),
            b'C' => msg(b'C', b"SELECT 1\0"),
            b'E' => msg(b'E', b"SERROR\0VERROR\0C42P01\0Mno\0\0"),
            t => msg(t, b""),
        })
        .collect()
}
