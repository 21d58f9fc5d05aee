//! A transaction-mode client's own statement names and what they cost it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::upstream::prepared::Statement;

/// The client's named (protocol-level) statements, by the client's name, with the bytes of
/// statement text they refer to (the client's budget) and the last name looked up (most
/// clients execute one statement over and over: that lookup then costs a comparison, not a
/// hash).
#[derive(Debug, Default)]
pub(crate) struct ClientNames {
    map: HashMap<Box<[u8]>, Arc<Statement>>,
    bytes: usize,
    last: Option<(Box<[u8]>, Arc<Statement>)>,
}

impl ClientNames {
    /// Names held.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// No names.
    pub(crate) fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Equal to a new one, capacity included.
    pub(crate) fn is_bare(&self) -> bool {
        self.map.capacity() == 0 && self.bytes == 0 && self.last.is_none()
    }

    /// Bytes of statement text the names refer to.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether `name` exists.
    pub(crate) fn contains(&self, name: &[u8]) -> bool {
        self.map.contains_key(name)
    }

    /// The statement `name` maps to.
    pub(crate) fn get(&mut self, name: &[u8]) -> Option<Arc<Statement>> {
        if let Some((n, s)) = &self.last
            && **n == *name
        {
            return Some(Arc::clone(s));
        }
        let s = self.map.get(name)?;
        if !s.stale.load(Ordering::Relaxed) {
            self.last = Some((name.into(), Arc::clone(s)));
        }
        Some(Arc::clone(s))
    }

    /// Maps `name` to `stmt` (replacing what it mapped to).
    pub(crate) fn insert(&mut self, name: Box<[u8]>, stmt: Arc<Statement>) {
        self.bytes += stmt.rest_len();
        if let Some(old) = self.map.insert(name, stmt) {
            self.bytes = self.bytes.saturating_sub(old.rest_len());
        }
        self.last = None;
    }

    /// Removes `name`.
    pub(crate) fn remove(&mut self, name: &[u8]) -> Option<Arc<Statement>> {
        let s = self.map.remove(name)?;
        self.bytes = self.bytes.saturating_sub(s.rest_len());
        self.last = None;
        Some(s)
    }

    /// (name, statement) pairs.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&[u8], &Arc<Statement>)> {
        self.map.iter().map(|(n, s)| (&n[..], s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_follow_the_names_and_lookups_see_changes() {
        let a = Arc::new(Statement::new(1, b"select 1\0\0\0", 0));
        let b = Arc::new(Statement::new(2, b"select 22\0\0\0", 0));
        let mut n = ClientNames::default();
        n.insert(b"x".to_vec().into(), Arc::clone(&a));
        assert_eq!(n.bytes(), a.rest_len());
        assert!(Arc::ptr_eq(&n.get(b"x").unwrap(), &a));
        assert!(
            Arc::ptr_eq(&n.get(b"x").unwrap(), &a),
            "from the last lookup"
        );
        n.insert(b"x".to_vec().into(), Arc::clone(&b));
        assert!(
            Arc::ptr_eq(&n.get(b"x").unwrap(), &b),
            "not the stale last lookup"
        );
        assert_eq!(n.bytes(), b.rest_len());
        n.remove(b"x");
        assert!(n.get(b"x").is_none());
        assert_eq!((n.len(), n.bytes()), (0, 0));
    }
}
