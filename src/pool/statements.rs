//! The statements clients of one pool have prepared, interned by text and parameter types so
//! that every client preparing the same statement shares one server-side name.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::upstream::prepared::Statement;

/// Interned statements of one pool. Locked once per client Parse of a named statement (not
/// per Bind), never across an `.await`.
#[derive(Debug, Default)]
pub(crate) struct StatementRegistry {
    inner: Mutex<Inner>,
    /// Bumped when a client's DDL (`DROP`, `ALTER`) went through, or a statement turned out
    /// stale: statements interned before are prepared afresh for clients that prepare them
    /// after, since the objects they were planned against may have changed.
    generation: AtomicU64,
}

#[derive(Debug, Default)]
struct Inner {
    by_text: HashMap<Box<[u8]>, Arc<Statement>>,
}

/// Statement ids are unique in the process, not just the pool: after a reload a client may
/// take statements from an old pool to a new pool's servers, whose caches are keyed by id.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl StatementRegistry {
    /// The statement for a Parse body whose part after the name is `rest`, created on first use.
    pub(crate) fn intern(&self, rest: &[u8]) -> Arc<Statement> {
        let generation = self.generation.load(Ordering::Relaxed);
        let mut inner = self.inner.lock();
        if let Some(s) = inner.by_text.get(rest)
            && s.generation == generation
        {
            return Arc::clone(s);
        }
        let s = Arc::new(Statement::new(
            NEXT_ID.fetch_add(1, Ordering::Relaxed),
            rest,
            generation,
        ));
        inner.by_text.insert(rest.into(), Arc::clone(&s));
        s
    }

    /// The statement for `rest` if some server has accepted it since the last schema change.
    pub(crate) fn accepted(&self, rest: &[u8]) -> Option<Arc<Statement>> {
        let generation = self.generation.load(Ordering::Relaxed);
        let inner = self.inner.lock();
        let s = inner.by_text.get(rest)?;
        (s.accepted.load(Ordering::Relaxed) && s.generation == generation).then(|| Arc::clone(s))
    }

    /// Objects statements depend on may have changed (see `generation`).
    pub(crate) fn schema_changed(&self) {
        self.generation.fetch_add(1, Ordering::Relaxed);
    }

    /// Drops statements no client and no server connection refers to any more.
    pub(crate) fn sweep(&self) {
        self.inner
            .lock()
            .by_text
            .retain(|_, s| Arc::strong_count(s) > 1);
    }

    /// Distinct statements known.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.inner.lock().by_text.len()
    }

    /// True when no statement is known.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_text_same_statement_and_sweep() {
        let r = StatementRegistry::default();
        let a = r.intern(b"select 1\0\0\0");
        let b = r.intern(b"select 1\0\0\0");
        let c = r.intern(b"select 1\0\0\x01\0\0\0\x17");
        assert!(Arc::ptr_eq(&a, &b));
        assert_ne!(a.id, c.id);
        drop(c);
        r.sweep();
        assert_eq!(r.len(), 1);
        drop((a, b));
        r.sweep();
        assert!(r.is_empty());
    }

    #[test]
    fn a_schema_change_interns_statements_afresh() {
        let r = StatementRegistry::default();
        let a = r.intern(b"select 1\0\0\0");
        a.accepted.store(true, Ordering::Relaxed);
        assert!(r.accepted(b"select 1\0\0\0").is_some());
        r.schema_changed();
        assert!(
            r.accepted(b"select 1\0\0\0").is_none(),
            "not since the change"
        );
        let fresh = r.intern(b"select 1\0\0\0");
        assert_ne!(fresh.id, a.id);
        assert!(Arc::ptr_eq(&fresh, &r.intern(b"select 1\0\0\0")));
    }
}
