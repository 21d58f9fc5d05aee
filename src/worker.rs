//! Which worker thread is running, and state kept once per worker.
//!
//! With `workers` > 1, what a transaction changes must not be one memory location every worker
//! writes: a cache line written by two cores moves between them on every write, and on a many-core
//! machine that traffic, not lakepool's own work, would bound a busy pool. So the data that a
//! transaction changes (a pool's idle connections, its traffic counters) is kept in a
//! [`PerWorker`]: one slot per worker, each on its own cache lines, and a transaction writes only
//! the slot of the worker it runs on. Readers that need the whole (`SHOW STATS`, `/metrics`,
//! `SHOW POOLS`) go over every slot.
//!
//! Worker threads number themselves as the runtime starts them ([`on_thread_start`]); any other
//! thread, and everything in a one-worker process, is worker 0. Tasks may move between workers
//! (tokio's work stealing), so a slot is not owned by one thread: slots are still locked or
//! atomic, but in the common case only one core touches each.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Worker count the process runs with (`[server] workers`); 1 until [`set_count`].
static COUNT: AtomicUsize = AtomicUsize::new(1);

/// Next index [`on_thread_start`] hands out.
static NEXT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static CURRENT: Cell<usize> = const { Cell::new(0) };
    /// Unit tests run side by side in one process: a test that needs several workers sets the
    /// count for its own thread.
    #[cfg(test)]
    static TEST_COUNT: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Sets how many workers the process runs (at startup, before any pool exists; `workers` needs a
/// restart to change).
pub fn set_count(n: usize) {
    COUNT.store(n.max(1), Ordering::Relaxed);
}

/// The worker count set at startup.
pub fn count() -> usize {
    #[cfg(test)]
    if let Some(n) = TEST_COUNT.with(Cell::get) {
        return n;
    }
    COUNT.load(Ordering::Relaxed)
}

/// Sets the worker count seen by [`count`] on the calling thread only (unit tests).
#[cfg(test)]
pub(crate) fn set_count_for_this_thread(n: usize) {
    TEST_COUNT.with(|c| c.set(Some(n)));
}

/// Numbers the calling thread: the runtime's `on_thread_start` hook. Threads that are not
/// workers (tokio's blocking pool) are numbered too; they share the workers' slots round-robin,
/// which is correct (slots are synchronised) and rare (they do not run sessions).
pub fn on_thread_start() {
    set_current(NEXT.fetch_add(1, Ordering::Relaxed) % count());
}

/// Sets the calling thread's worker index (tests use it to act as another worker).
pub fn set_current(i: usize) {
    CURRENT.with(|c| c.set(i));
}

/// The calling thread's worker index (0 unless numbered).
pub fn current() -> usize {
    CURRENT.with(Cell::get)
}

/// One cache-line-aligned slot: two 64-byte lines, because x86's adjacent-line prefetcher pulls
/// lines in pairs.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Slot<T>(T);

/// A `T` per worker.
#[derive(Debug)]
pub struct PerWorker<T> {
    slots: Box<[Slot<T>]>,
}

impl<T: Default> Default for PerWorker<T> {
    /// One slot per worker of this process.
    fn default() -> Self {
        Self::with_slots(count())
    }
}

impl<T: Default> PerWorker<T> {
    /// `n` slots (at least one).
    pub fn with_slots(n: usize) -> Self {
        Self {
            slots: (0..n.max(1)).map(|_| Slot::default()).collect(),
        }
    }
}

impl<T> PerWorker<T> {
    /// The calling worker's slot. One worker: the only slot, with no thread-local read.
    #[inline]
    pub fn local(&self) -> &T {
        &self.slots[self.local_index()].0
    }

    /// Index of the calling worker's slot.
    #[inline]
    pub fn local_index(&self) -> usize {
        match self.slots.len() {
            1 => 0,
            // Indexes are below the worker count, which is the slot count but in tests: no
            // division on the common path.
            n => match current() {
                i if i < n => i,
                i => i % n,
            },
        }
    }

    /// Every slot, the calling worker's first, then the others in order after it (so workers
    /// looking at the others' slots do not all start at the same one).
    pub fn from_local(&self) -> impl Iterator<Item = &T> {
        let n = self.slots.len();
        let first = self.local_index();
        (0..n).map(move |k| &self.slots[(first + k) % n].0)
    }

    /// Every slot, in index order.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().map(|s| &s.0)
    }

    /// How many slots there are.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Never true: there is always a slot.
    pub fn is_empty(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_uses_its_own_slot_and_readers_see_all() {
        let p: PerWorker<AtomicUsize> = PerWorker::with_slots(3);
        assert_eq!(std::mem::align_of_val(&p.slots[0]), 128);
        for w in 0..5 {
            set_current(w);
            p.local().fetch_add(1, Ordering::Relaxed);
            assert_eq!(p.local_index(), w % 3);
            let order: Vec<usize> = p
                .from_local()
                .map(|s| s as *const _ as usize)
                .map(|a| p.iter().position(|s| s as *const _ as usize == a).unwrap())
                .collect();
            assert_eq!(order, (0..3).map(|k| (w + k) % 3).collect::<Vec<_>>());
        }
        let per_slot: Vec<usize> = p.iter().map(|a| a.load(Ordering::Relaxed)).collect();
        assert_eq!(per_slot, [2, 2, 1]);
        set_current(0);
    }

    #[test]
    fn one_slot_ignores_the_thread_index() {
        let p: PerWorker<AtomicUsize> = PerWorker::with_slots(1);
        set_current(7);
        assert_eq!(p.local_index(), 0);
        set_current(0);
        assert_eq!(PerWorker::<u8>::with_slots(0).len(), 1);
    }
}
