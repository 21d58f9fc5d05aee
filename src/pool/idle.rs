//! A pool's idle server connections: one list per worker thread.
//!
//! A transaction takes a connection from its worker's list and gives it back there, so with
//! several workers a busy pool's checkouts and check-ins do not all lock one mutex (whose cache
//! line would move between cores on every transaction). Each list has its own lock, taken by
//! other workers only on slow paths: a checkout that found its own list empty looks at the
//! others before it opens a connection or queues, and the pool's upkeep (sweep, RESUME, close)
//! goes over all of them.
//!
//! Lock order: the pool lock, then a list's lock; never the other way round (the fast paths
//! take a list's lock alone).
//!
//! Each list is ordered by release, most recent last: the most recently used connection is
//! reused first (warm caches), and the others age out through server_idle_timeout.

use parking_lot::Mutex;

use super::PooledConn;
use crate::worker::PerWorker;

/// The idle lists of one pool.
#[derive(Default)]
pub(super) struct IdleLists {
    lists: PerWorker<Mutex<Vec<PooledConn>>>,
}

impl IdleLists {
    /// The calling worker's most recently released connection.
    #[inline]
    pub(super) fn pop_local(&self) -> Option<PooledConn> {
        self.lists.local().lock().pop()
    }

    /// Puts a released connection on the calling worker's list.
    #[inline]
    pub(super) fn push_local(&self, conn: PooledConn) {
        self.lists.local().lock().push(conn);
    }

    /// The most recently released connection of the first list that has one, the calling
    /// worker's first.
    pub(super) fn pop_any(&self) -> Option<PooledConn> {
        self.lists.from_local().find_map(|l| l.lock().pop())
    }

    /// Takes every idle connection.
    pub(super) fn take_all(&self) -> Vec<PooledConn> {
        let mut all = Vec::new();
        for l in self.lists.iter() {
            all.append(&mut l.lock());
        }
        all
    }

    /// How many connections are idle.
    pub(super) fn len(&self) -> usize {
        self.lists.iter().map(|l| l.lock().len()).sum()
    }

    /// Calls `f` on each idle connection.
    pub(super) fn for_each(&self, mut f: impl FnMut(&PooledConn)) {
        for l in self.lists.iter() {
            l.lock().iter().for_each(&mut f);
        }
    }

    /// Takes every idle connection with the index of its list, least recently released first.
    pub(super) fn take_all_oldest_first(&self) -> Vec<(usize, PooledConn)> {
        let mut all = Vec::new();
        for (i, l) in self.lists.iter().enumerate() {
            all.extend(l.lock().drain(..).map(|c| (i, c)));
        }
        // Stable: each list is already in release order.
        all.sort_by_key(|(_, c)| c.last_used);
        all
    }

    /// Puts back what [`Self::take_all_oldest_first`] took (oldest first, so each list stays
    /// in release order).
    pub(super) fn put_back(&self, conns: Vec<(usize, PooledConn)>) {
        let lists: Vec<_> = self.lists.iter().collect();
        for (i, c) in conns {
            // Connections released meanwhile were more recent: they stay last.
            let mut l = lists[i].lock();
            let at = l.partition_point(|o| o.last_used <= c.last_used);
            l.insert(at, c);
        }
    }

    /// Takes the least recently released idle connection.
    pub(super) fn pop_oldest(&self) -> Option<PooledConn> {
        let mut guards: Vec<_> = self.lists.iter().map(|l| l.lock()).collect();
        let oldest = guards
            .iter()
            .enumerate()
            .filter_map(|(i, l)| l.first().map(|c| (i, c.last_used)))
            .min_by_key(|&(_, t)| t)?
            .0;
        Some(guards[oldest].remove(0))
    }
}
