//! A transaction-mode client's state between requests, and the per-thread list where idle
//! clients' empty states wait for the next client that needs one: an idle client holds none,
//! and a busy one never allocates one per transaction.

use std::cell::RefCell;

use super::replies::ReplyQueue;
use super::{TxnClient, TxnLimits};
use crate::config::{PoolSettings, ServerConfig};

/// Transaction-mode state of a session: taken when a request arrives, parked when the client
/// is idle holding nothing in it. Session-mode clients never have one.
#[derive(Debug)]
pub(crate) struct TxnSession {
    pub(crate) client: TxnClient,
    pub(crate) queue: ReplyQueue,
    pub(crate) limits: TxnLimits,
}

impl TxnSession {
    /// Holds nothing: equal to a new one.
    pub(crate) fn is_pristine(&self) -> bool {
        self.client.is_pristine() && self.queue.is_pristine()
    }
}

/// Transaction-mode states parked per thread; beyond that, parked states are freed.
const PARKED_PER_THREAD: usize = 256;

thread_local! {
    /// Idle clients' empty transaction-mode states, for the next client that needs one: an
    /// idle client holds none, and a busy one never allocates one per transaction.
    #[allow(clippy::vec_box, reason = "the boxes are what is reused: taking one allocates nothing")]
    static PARKED: RefCell<Vec<Box<TxnSession>>> = const { RefCell::new(Vec::new()) };
}

/// The limits a transaction-mode client works under (its pool's, which a reload may change).
pub(crate) fn txn_limits(s: &PoolSettings, server: &ServerConfig) -> TxnLimits {
    TxnLimits {
        cache_cap: s.max_prepared_statements,
        max_statements: s.max_client_prepared_statements,
        max_statement_bytes: s.max_client_prepared_bytes,
        hold_limit: server.max_held_message_size,
        max_message: server.max_message_size,
    }
}

/// An empty transaction-mode state, parked or new.
pub(crate) fn unpark(limits: TxnLimits) -> Box<TxnSession> {
    match PARKED.with(|p| p.borrow_mut().pop()) {
        Some(mut t) => {
            t.limits = limits;
            t
        }
        None => Box::new(TxnSession {
            client: TxnClient::default(),
            queue: ReplyQueue::default(),
            limits,
        }),
    }
}

/// Parks an empty transaction-mode state. Its collections that allocated are replaced by new
/// (unallocated) ones, except the reply queue's room for a few entries: a parked state keeps
/// no capacity a client grew, and a client that parks between transactions does not allocate
/// its queue again in each one. A state still equal to a new one (a client that ran simple
/// requests) is parked as it is: this runs once per transaction.
pub(crate) fn park(mut t: Box<TxnSession>) {
    if !t.client.is_bare() {
        t.client = TxnClient::default();
    }
    t.queue.reset_for_reuse();
    PARKED.with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < PARKED_PER_THREAD {
            p.push(t);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(cache_cap: usize) -> TxnLimits {
        TxnLimits {
            cache_cap,
            max_statements: 1,
            max_statement_bytes: 1,
            hold_limit: 1,
            max_message: 1,
        }
    }

    #[test]
    fn a_parked_state_is_reused_with_the_new_limits_and_nothing_it_held() {
        let mut t = unpark(limits(1));
        t.client.changes.set("work_mem");
        assert!(!t.is_pristine());
        t.client = TxnClient::default();
        assert!(t.is_pristine());
        let at: *const TxnSession = &*t;
        park(t);
        let again = unpark(limits(7));
        assert_eq!(&*again as *const TxnSession, at, "the same allocation");
        assert_eq!(again.limits.cache_cap, 7, "the limits of the pool now");
        assert!(again.is_pristine());
    }

    #[test]
    fn a_parked_state_keeps_no_capacity_its_client_grew() {
        let mut t = unpark(limits(1));
        assert!(t.client.is_bare());
        t.client
            .notices
            .extend([super::super::Limitation::Listen; 64]);
        t.client.notices.clear();
        assert!(t.is_pristine() && !t.client.is_bare());
        park(t);
        let again = unpark(limits(1));
        assert!(again.client.is_bare(), "the grown collection was replaced");
        assert_eq!(again.client.notices.capacity(), 0);
    }
}
