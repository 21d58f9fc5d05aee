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
    /// Its text may change session state (SET, DISCARD…): noted at every execution.
    pub touches_state: bool,
}

impl Statement {
    /// A statement whose Parse body after the name is `rest` (query text, parameter types).
    pub fn new(id: u64, rest: &[u8]) -> Self {
        let name = format!("lakepool_{id}");
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
            touches_state: crate::proto::sql::needs_attention(rest),
        }
    }

    /// The query text.
    pub fn query(&self) -> &[u8] {
        let body = &self.parse[5 + self.name.len() + 1..];
        let end = body.iter().position(|&b| b == 0).unwrap_or(body.len());
        &body[..end]
    }
}

/// The statements one server connection has prepared, least recently used evicted first.
#[derive(Debug, Default)]
pub struct PreparedCache {
    entries: HashMap<u64, (Arc<Statement>, u64)>,
    clock: u64,
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

    /// Records that `stmt` is being prepared. When the cache already holds `cap` statements,
    /// the least recently used one is removed and returned: the caller closes it on the server.
    pub fn insert(&mut self, stmt: Arc<Statement>, cap: usize) -> Option<Arc<Statement>> {
        let mut evicted = None;
        if self.entries.len() >= cap.max(1) {
            // O(n) only on eviction, with n bounded by `cap`.
            if let Some(&oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(id, _)| id)
            {
                evicted = self.entries.remove(&oldest).map(|(s, _)| s);
            }
        }
        self.clock += 1;
        self.entries.insert(stmt.id, (stmt, self.clock));
        evicted
    }

    /// Puts back a statement whose eviction Close the server never ran (it is still prepared).
    pub fn restore(&mut self, stmt: Arc<Statement>) {
        self.clock += 1;
        self.entries.insert(stmt.id, (stmt, self.clock));
    }

    /// Forgets `id` (a Parse that failed or was skipped, or a statement closed on the server).
    pub fn remove(&mut self, id: u64) {
        self.entries.remove(&id);
    }

    /// Forgets everything (DISCARD ALL, DEALLOCATE ALL).
    pub fn clear(&mut self) {
        self.entries.clear();
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
        let s = Statement::new(7, b"select $1\0\0\x01\0\0\0\x17");
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
            .map(|i| Arc::new(Statement::new(i, b"x\0\0\0")))
            .collect();
        assert!(c.insert(s[0].clone(), 2).is_none());
        assert!(c.insert(s[1].clone(), 2).is_none());
        assert!(c.touch(&s[0]));
        let out = c.insert(s[2].clone(), 2).unwrap();
        assert_eq!(out.id, 1);
        assert!(c.touch(&s[0]) && c.touch(&s[2]) && !c.touch(&s[1]));
        c.remove(0);
        assert_eq!(c.len(), 1);
        c.clear();
        assert!(c.is_empty());
    }
}
