//! Named prepared statements as lakepool prepares them on server connections.
//!
//! In transaction mode a client's statement may be bound on any server connection. lakepool
//! gives each distinct statement (query text plus parameter types) one server-side name,
//! `lakepool_<id>`, and each server connection remembers which of them it has prepared, in a
//! bounded LRU cache; a statement is prepared on a server the first time a client uses it there.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use bytes::{BufMut, Bytes, BytesMut};

/// Prefix of the statement names lakepool uses on server connections.
pub const NAME_PREFIX: &str = "lakepool_";

/// Most bytes of statement text one server connection keeps prepared; beyond it the least
/// recently used statements are closed, whatever the count.
const MAX_CACHE_BYTES: usize = 16 << 20;

/// One distinct statement, shared by every client that prepared the same text and types.
#[derive(Debug)]
pub struct Statement {
    /// Unique within its pool.
    pub id: u64,
    /// The server-side name, `lakepool_<id>`.
    pub name: Box<str>,
    /// A complete Parse message preparing it under `name`, ready to send.
    pub parse: Bytes,
    /// Some server accepted it: a client preparing it again needs no server to be told so.
    pub accepted: AtomicBool,
    /// A server found it planned against objects that have changed (a stale plan): clients
    /// move their names to a statement prepared afresh, and server copies of this one go
    /// unused until evicted.
    pub stale: AtomicBool,
    /// Its text may change session state (SET, DISCARD…): noted at every execution.
    pub touches_state: bool,
    /// The pool's schema generation when it was interned: a statement from before a DDL
    /// statement is prepared afresh for clients that prepare it after.
    pub generation: u64,
}

impl Statement {
    /// A statement whose Parse body after the name is `rest` (query text, parameter types).
    pub fn new(id: u64, rest: &[u8], generation: u64) -> Self {
        let name = format!("{NAME_PREFIX}{id}");
        let mut m = BytesMut::with_capacity(6 + name.len() + rest.len());
        m.put_u8(b'P');
        m.put_u32(u32::try_from(4 + name.len() + 1 + rest.len()).unwrap_or(u32::MAX));
        m.put_slice(name.as_bytes());
        m.put_u8(0);
        m.put_slice(rest);
        Self {
            id,
            name: name.into_boxed_str(),
            parse: m.freeze(),
            accepted: AtomicBool::new(false),
            stale: AtomicBool::new(false),
            touches_state: crate::proto::sql::needs_attention(rest),
            generation,
        }
    }

    /// Bytes of the Parse body after the name: what a client's name for it costs.
    pub fn rest_len(&self) -> usize {
        self.parse.len() - 5 - self.name.len() - 1
    }

    /// The Parse body after the name: query text and parameter types, as the client sent them.
    pub fn rest(&self) -> &[u8] {
        &self.parse[5 + self.name.len() + 1..]
    }

    /// The query text.
    pub fn query(&self) -> &[u8] {
        let body = &self.parse[5 + self.name.len() + 1..];
        let end = body.iter().position(|&b| b == 0).unwrap_or(body.len());
        &body[..end]
    }
}

/// Hashes lakepool's own statement ids (not client data, so no need for a keyed hash): one
/// multiplication spreads sequential ids over the table.
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// The statements one server connection has prepared, least recently used evicted first.
#[derive(Debug, Default)]
pub struct PreparedCache {
    entries: HashMap<u64, (Arc<Statement>, u64), std::hash::BuildHasherDefault<IdHasher>>,
    clock: u64,
    bytes: usize,
}

impl PreparedCache {
    /// Whether the server has `stmt` prepared; marks it as just used.
    pub fn touch(&mut self, stmt: &Statement) -> bool {
        self.clock += 1;
        match self.entries.get_mut(&stmt.id) {
            Some(e) => {
                e.1 = self.clock;
                true
            }
            None => false,
        }
    }

    /// Whether the server has `stmt` prepared (without marking it used).
    pub fn contains(&self, stmt: &Statement) -> bool {
        self.entries.contains_key(&stmt.id)
    }

    /// Records that `stmt` is being prepared. When the cache already holds `cap` statements
    /// (or its statements' text would pass 16 MiB), the least recently used ones are removed
    /// and returned: the caller closes them on the server.
    pub fn insert(&mut self, stmt: Arc<Statement>, cap: usize) -> Vec<Arc<Statement>> {
        let mut evicted = Vec::new();
        while !self.entries.is_empty()
            && (self.entries.len() >= cap.max(1) || self.bytes + stmt.parse.len() > MAX_CACHE_BYTES)
        {
            // O(n) only on eviction, with n bounded by `cap`.
            let Some(&oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(id, _)| id)
            else {
                break;
            };
            if let Some((s, _)) = self.entries.remove(&oldest) {
                self.bytes -= s.parse.len();
                evicted.push(s);
            }
        }
        self.restore(stmt);
        evicted
    }

    /// Puts back a statement whose eviction Close the server never ran (it is still prepared).
    pub fn restore(&mut self, stmt: Arc<Statement>) {
        self.clock += 1;
        self.bytes += stmt.parse.len();
        if let Some((old, _)) = self.entries.insert(stmt.id, (stmt, self.clock)) {
            self.bytes -= old.parse.len();
        }
    }

    /// Forgets `id` (a Parse that failed or was skipped, or a statement closed on the server).
    pub fn remove(&mut self, id: u64) {
        if let Some((s, _)) = self.entries.remove(&id) {
            self.bytes -= s.parse.len();
        }
    }

    /// Forgets everything (DISCARD ALL, DEALLOCATE ALL).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    /// Statements prepared.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is prepared.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_message_names_the_statement() {
        let s = Statement::new(7, b"select $1\0\0\x01\0\0\0\x17", 0);
        assert_eq!(&*s.name, "lakepool_7");
        assert_eq!(s.parse[0], b'P');
        let len = u32::from_be_bytes([s.parse[1], s.parse[2], s.parse[3], s.parse[4]]) as usize;
        assert_eq!(len + 1, s.parse.len());
        assert!(s.parse[5..].starts_with(b"lakepool_7\0select $1\0"));
    }

    #[test]
    fn lru_evicts_least_recently_used() {
        let mut c = PreparedCache::default();
        let s: Vec<_> = (0..3)
            .map(|i| Arc::new(Statement::new(i, b"x\0\0\0", 0)))
            .collect();
        assert!(c.insert(s[0].clone(), 2).is_empty());
        assert!(c.insert(s[1].clone(), 2).is_empty());
        assert!(c.touch(&s[0]));
        let out = c.insert(s[2].clone(), 2);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].id, 1);
        assert_eq!(s[0].rest_len(), 4);
        assert!(c.touch(&s[0]) && c.touch(&s[2]) && !c.touch(&s[1]));
        c.remove(0);
        assert_eq!(c.len(), 1);
        c.clear();
        assert!(c.is_empty());
    }
}
