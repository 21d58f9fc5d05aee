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
pub(crate) const NAME_PREFIX: &str = "lakepool_";

/// Most bytes of statement text one server connection keeps prepared; beyond it the least
/// recently used statements are closed, whatever the count.
const MAX_CACHE_BYTES: usize = 16 << 20;

/// One distinct statement, shared by every client that prepared the same text and types.
#[derive(Debug)]
pub(crate) struct Statement {
    /// Unique within its pool.
    pub(crate) id: u64,
    /// The server-side name, `lakepool_<id>`.
    pub(crate) name: Box<str>,
    /// A complete Parse message preparing it under `name`, ready to send.
    pub(crate) parse: Bytes,
    /// Some server accepted it: a client preparing it again needs no server to be told so.
    pub(crate) accepted: AtomicBool,
    /// A server found it planned against objects that have changed (a stale plan): clients
    /// move their names to a statement prepared afresh, and server copies of this one go
    /// unused until evicted.
    pub(crate) stale: AtomicBool,
    /// Its text may change session state (SET, DISCARD…): noted at every execution.
    pub(crate) touches_state: bool,
    /// The pool's schema generation when it was interned: a statement from before a DDL
    /// statement is prepared afresh for clients that prepare it after.
    pub(crate) generation: u64,
}

impl Statement {
    /// A statement whose Parse body after the name is `rest` (query text, parameter types).
    pub(crate) fn new(id: u64, rest: &[u8], generation: u64) -> Self {
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
    pub(crate) fn rest_len(&self) -> usize {
        self.parse.len() - 5 - self.name.len() - 1
    }

    /// The Parse body after the name: query text and parameter types, as the client sent them.
    pub(crate) fn rest(&self) -> &[u8] {
        &self.parse[5 + self.name.len() + 1..]
    }

    /// The query text.
    pub(crate) fn query(&self) -> &[u8] {
        let body = &self.parse[5 + self.name.len() + 1..];
        let end = memchr::memchr(0, body).unwrap_or(body.len());
        &body[..end]
    }
}

/// Hashes lakepool's own statement ids (not client data, so no need for a keyed hash): one
/// multiplication spreads sequential ids over the table.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

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
///
/// Pipelined exchanges are queued before the server has answered the earlier ones, and an
/// error makes the server skip the rest of its exchange: a skipped eviction Close leaves a
/// statement prepared that later exchanges may already have counted as gone, a skipped Parse
/// leaves whatever was there before. Such statements are *maybe prepared*: never trusted (a
/// Bind of one gets a fresh Parse, preceded by a Close of it so that the Parse cannot fail
/// with "already exists") and owed a Close, which goes out a few at a time in front of the
/// next Parses and simple queries lakepool sends that server ([`Self::take_owed`]). The cache
/// itself never holds more than its cap (fuzz finding 10: restoring them into it let a server
/// pass `max_prepared_statements`, and the next Parse closed them all at once).
#[derive(Debug, Default)]
pub(crate) struct PreparedCache {
    entries: HashMap<u64, (Arc<Statement>, u64), std::hash::BuildHasherDefault<IdHasher>>,
    clock: u64,
    bytes: usize,
    /// Maybe prepared on the server, not in the cache: to be closed.
    owed: Vec<Arc<Statement>>,
}

impl PreparedCache {
    /// Whether the server has `stmt` prepared; marks it as just used.
    pub(crate) fn touch(&mut self, stmt: &Statement) -> bool {
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
    pub(crate) fn contains(&self, stmt: &Statement) -> bool {
        self.entries.contains_key(&stmt.id)
    }

    /// Whether `stmt` may be prepared on the server without being in the cache.
    pub(crate) fn is_owed(&self, stmt: &Statement) -> bool {
        !self.owed.is_empty() && self.owed.iter().any(|s| s.id == stmt.id)
    }

    /// Records that `stmt` is being prepared. When the cache already holds `cap` statements
    /// (or its statements' text would pass 16 MiB), the least recently used ones are removed
    /// and returned: the caller closes them on the server.
    pub(crate) fn insert(&mut self, stmt: Arc<Statement>, cap: usize) -> Vec<Arc<Statement>> {
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
        // The caller closes it first if it was owed a Close.
        self.owed.retain(|s| s.id != stmt.id);
        self.clock += 1;
        self.bytes += stmt.parse.len();
        if let Some((old, _)) = self.entries.insert(stmt.id, (stmt, self.clock)) {
            self.bytes -= old.parse.len();
        }
        evicted
    }

    /// The server may still have `stmt`: its eviction Close was skipped. Unless a later Parse
    /// of it is already in the cache (that Parse, closing it first, decides), it is owed a
    /// Close.
    pub(crate) fn close_skipped(&mut self, stmt: Arc<Statement>) {
        if !self.entries.contains_key(&stmt.id) {
            self.owe(stmt);
        }
    }

    /// A Parse of `stmt` was skipped (or failed): it is not in the cache. If a Close of it went
    /// just before (`closed_first`: the server may have had a copy), that Close may have been
    /// skipped too, and the copy is owed a Close; otherwise the server had none (nothing said
    /// it might when the Parse was sent), and has none now: a Close owed since is dropped, so
    /// that statements really left on the server do not wait behind it.
    pub(crate) fn parse_skipped(&mut self, stmt: Arc<Statement>, closed_first: bool) {
        if let Some((s, _)) = self.entries.remove(&stmt.id) {
            self.bytes -= s.parse.len();
        }
        if closed_first {
            self.owe(stmt);
        } else {
            self.owed.retain(|s| s.id != stmt.id);
        }
    }

    /// The server said it does not have `stmt` although the cache did (something lakepool
    /// does not see dropped it): out of the cache, and owed a Close rather than forgotten (a
    /// Close of nothing is no error), which keeps the cache on the safe side whatever the
    /// server did.
    pub(crate) fn distrust(&mut self, stmt: &Arc<Statement>) {
        if let Some((s, _)) = self.entries.remove(&stmt.id) {
            self.bytes -= s.parse.len();
            self.owe(s);
        }
    }

    fn owe(&mut self, stmt: Arc<Statement>) {
        if !self.is_owed(&stmt) {
            self.owed.push(stmt);
        }
    }

    /// Puts back a statement whose Parse is still to run after the cache was cleared; what it
    /// pushes out is owed a Close.
    pub(crate) fn reinsert(&mut self, stmt: Arc<Statement>, cap: usize) {
        for old in self.insert(stmt, cap) {
            self.owe(old);
        }
    }

    /// An eviction Close of `id` is on its way (replaying the queue after the cache was
    /// cleared): out of the cache, and not owed (that Close closes it).
    pub(crate) fn closing(&mut self, id: u64) {
        if let Some((s, _)) = self.entries.remove(&id) {
            self.bytes -= s.parse.len();
        }
        self.owed.retain(|s| s.id != id);
    }

    /// Up to `max` statements owed a Close; the caller sends the Closes (and hands a statement
    /// back through [`Self::close_skipped`] if the server skips its Close).
    pub(crate) fn take_owed(&mut self, max: usize) -> std::vec::Drain<'_, Arc<Statement>> {
        let n = max.min(self.owed.len());
        self.owed.drain(..n)
    }

    /// Whether statements are owed a Close.
    pub(crate) fn owes_closes(&self) -> bool {
        !self.owed.is_empty()
    }

    /// Forgets everything (DISCARD ALL, DEALLOCATE ALL).
    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.owed.clear();
        self.bytes = 0;
    }

    /// Statements prepared and in the cache (not those owed a Close).
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Statements owed a Close.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn owed_len(&self) -> usize {
        self.owed.len()
    }

    /// Ids of the statements cached and of those owed a Close.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn ids(&self) -> (Vec<u64>, Vec<u64>) {
        (
            self.entries.keys().copied().collect(),
            self.owed.iter().map(|s| s.id).collect(),
        )
    }

    /// True when nothing is prepared.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.owed.is_empty()
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
        c.parse_skipped(s[0].clone(), false);
        assert_eq!((c.len(), c.owed_len()), (1, 0));
        c.clear();
        assert!(c.is_empty());
    }

    #[test]
    fn skipped_statements_are_owed_a_close_and_never_trusted() {
        let mut c = PreparedCache::default();
        let s: Vec<_> = (0..4)
            .map(|i| Arc::new(Statement::new(i, b"x\0\0\0", 0)))
            .collect();
        assert!(c.insert(s[0].clone(), 1).is_empty());
        // 1 evicts 0, 2 evicts 1; then the server skips the Close of 0 and 1's Parse.
        assert_eq!(c.insert(s[1].clone(), 1)[0].id, 0);
        assert_eq!(c.insert(s[2].clone(), 1)[0].id, 1);
        c.parse_skipped(s[1].clone(), true);
        c.close_skipped(s[0].clone());
        assert_eq!((c.len(), c.owed_len()), (1, 2));
        assert!(c.is_owed(&s[0]) && c.is_owed(&s[1]) && !c.is_owed(&s[2]));
        // Maybe prepared is not prepared: a Bind of 0 gets a Parse (closing it first).
        assert!(!c.touch(&s[0]) && !c.contains(&s[0]));
        assert_eq!(c.insert(s[0].clone(), 1)[0].id, 2);
        assert!(!c.is_owed(&s[0]) && c.touch(&s[0]));
        // A skipped eviction Close of a statement a later Parse put back changes nothing.
        c.close_skipped(s[0].clone());
        assert!(!c.is_owed(&s[0]));
        let owed: Vec<_> = c.take_owed(8).map(|s| s.id).collect();
        assert_eq!(owed, [1]);
        assert!(!c.owes_closes());
        c.close_skipped(s[3].clone());
        c.clear();
        assert!(c.is_empty());
    }

    #[test]
    fn a_parse_skipped_with_nothing_in_front_leaves_nothing_owed() {
        let mut c = PreparedCache::default();
        let s = Arc::new(Statement::new(0, b"x\0\0\0", 0));
        c.close_skipped(s.clone());
        assert!(c.is_owed(&s));
        c.parse_skipped(s.clone(), false);
        assert!(!c.is_owed(&s) && c.is_empty());
        c.close_skipped(s.clone());
        c.parse_skipped(s.clone(), true);
        assert!(c.is_owed(&s));
    }
}
