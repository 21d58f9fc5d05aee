//! The client's side of the data path (its pipe toward the server and the protocol state of
//! the pair), and the per-thread list where idle clients' empty ones wait for the next client
//! that needs one: an idle transaction-mode client holds none, and a busy one never allocates
//! one per transaction.

use std::cell::RefCell;
use std::sync::Arc;

use super::pipe::Pipe;
use super::tracker::Tracker;
use crate::pool::stats::PoolStats;

/// What a client needs while it sends a request or holds a server: boxed (not part of every
/// idle client's task) and parked per thread when it holds nothing.
#[derive(Debug, Default)]
pub(crate) struct ClientPath {
    /// Client to server.
    pub(crate) up: Pipe,
    /// Protocol state of the client and its server.
    pub(crate) tracker: Tracker,
}

impl ClientPath {
    /// Holds nothing: equal to a new one (the pool's counters aside).
    pub(crate) fn is_pristine(&self) -> bool {
        self.up.is_pristine() && self.tracker.is_pristine()
    }
}

/// Paths parked per thread; beyond that, parked paths are freed.
const PARKED_PER_THREAD: usize = 256;

/// Parked paths [`take`] looks through for one already counting into the client's pool.
const SAME_POOL_SCAN: usize = 8;

thread_local! {
    #[allow(clippy::vec_box, reason = "the boxes are what is reused: taking one allocates nothing")]
    static PARKED: RefCell<Vec<Box<ClientPath>>> = const { RefCell::new(Vec::new()) };
}

/// An empty path counting into `stats`, parked or new. A parked path already counting into
/// the same pool keeps its reference: no shared reference count changes per transaction.
pub(crate) fn take(stats: &Arc<PoolStats>) -> Box<ClientPath> {
    let mut p = PARKED
        .with(|p| {
            let mut parked = p.borrow_mut();
            // Where pools share a thread, a path of the same pool among the last few parked
            // saves two atomic updates of a reference count every client of the pool shares.
            let from = parked.len().saturating_sub(SAME_POOL_SCAN);
            let same = parked[from..].iter().rposition(|q| {
                q.tracker
                    .stats
                    .as_ref()
                    .is_some_and(|s| Arc::ptr_eq(s, stats))
            });
            match same {
                Some(i) => Some(parked.swap_remove(from + i)),
                None => parked.pop(),
            }
        })
        .unwrap_or_default();
    if !p
        .tracker
        .stats
        .as_ref()
        .is_some_and(|s| Arc::ptr_eq(s, stats))
    {
        p.tracker.stats = Some(Arc::clone(stats));
    }
    p
}

/// The client's path, taken when it has none.
pub(crate) fn get<'a>(
    path: &'a mut Option<Box<ClientPath>>,
    stats: &Arc<PoolStats>,
) -> &'a mut ClientPath {
    path.get_or_insert_with(|| take(stats))
}

/// Parks the client's path when it holds nothing (it equals a new one then).
pub(crate) fn park(path: &mut Option<Box<ClientPath>>) {
    if path.as_ref().is_some_and(|p| p.is_pristine())
        && let Some(p) = path.take()
    {
        PARKED.with(|parked| {
            let mut parked = parked.borrow_mut();
            if parked.len() < PARKED_PER_THREAD {
                parked.push(p);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parked_path_is_reused_and_one_in_use_is_not_parked() {
        let stats = Arc::new(PoolStats::default());
        let mut path = Some(take(&stats));
        get(&mut path, &stats).up.feed(b"Q");
        park(&mut path);
        assert!(path.is_some(), "unread input: not parked");
        drop(path);
        let mut path = Some(take(&stats));
        let at: *const ClientPath = &**path.as_ref().unwrap();
        park(&mut path);
        assert!(path.is_none());
        let other = Arc::new(PoolStats::default());
        let again = take(&other);
        assert_eq!(&*again as *const ClientPath, at, "the same allocation");
        assert!(
            Arc::ptr_eq(again.tracker.stats.as_ref().unwrap(), &other),
            "counts into the new pool"
        );
    }

    #[test]
    fn a_path_of_the_same_pool_is_taken_first() {
        let (a, b) = (
            Arc::new(PoolStats::default()),
            Arc::new(PoolStats::default()),
        );
        let mut of_a = Some(take(&a));
        let mut of_b = Some(take(&b));
        let at_a: *const ClientPath = &**of_a.as_ref().unwrap();
        park(&mut of_a);
        park(&mut of_b);
        let again = take(&a);
        assert_eq!(
            &*again as *const ClientPath, at_a,
            "not the newest parked, of pool b"
        );
        assert_eq!(
            Arc::strong_count(&a),
            2,
            "the path's reference kept, none added"
        );
    }
}
