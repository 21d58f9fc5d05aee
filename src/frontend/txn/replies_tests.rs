//! Unit tests of the reply queue (`replies.rs`).

use super::*;

fn stmt(id: u64) -> Arc<Statement> {
    Arc::new(Statement::new(id, b"select 1\0\0\0", 0))
}

fn run(q: &mut ReplyQueue, cache: &mut PreparedCache, tags: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for &t in tags {
        while let Some((s, _)) = q.pop_synth() {
            out.push(match s {
                Synth::ParseComplete => b'1',
                Synth::CloseComplete => b'3',
                _ => b'c',
            });
        }
        if q.on_server(t, cache) {
            out.push(t);
        }
    }
    while let Some((s, _)) = q.pop_synth() {
        out.push(match s {
            Synth::ParseComplete => b'1',
            Synth::CloseComplete => b'3',
            _ => b'c',
        });
    }
    out
}

#[test]
fn injected_parse_reply_dropped_skipped_parse_made_up() {
    let mut q = ReplyQueue::default();
    let mut c = PreparedCache::default();
    // Client: Parse(S_1, already on server), Bind, Execute, Sync.
    q.push(Expect::Synth(Synth::ParseComplete, None));
    q.push(Expect::Bind(None));
    q.push(Expect::Execute);
    q.push(Expect::Sync);
    assert_eq!(run(&mut q, &mut c, b"2DCZ"), b"12DCZ");
    assert!(q.is_empty());
    // Client: Bind(S_2, not on server: lakepool adds a Parse), Execute, Sync.
    q.push(Expect::Parse {
        forward: false,
        stmt: Some(stmt(2)),
        mapped: None,
        closed_first: false,
    });
    q.push(Expect::Bind(None));
    q.push(Expect::Execute);
    q.push(Expect::Sync);
    assert_eq!(run(&mut q, &mut c, b"12CZ"), b"2CZ");
}

#[test]
fn error_skips_to_sync_and_forgets_unprepared() {
    let mut q = ReplyQueue::default();
    let mut c = PreparedCache::default();
    let s = stmt(5);
    c.insert(s.clone(), 10);
    q.push(Expect::Bind(None));
    q.push(Expect::Execute);
    q.push(Expect::Parse {
        forward: true,
        stmt: Some(s.clone()),
        mapped: None,
        closed_first: false,
    });
    q.push(Expect::Synth(Synth::ParseComplete, None));
    q.push(Expect::Sync);
    assert_eq!(run(&mut q, &mut c, b"EZ"), b"EZ");
    assert!(!c.touch(&s), "the skipped Parse never prepared it");
    assert!(q.is_empty());
    // Error with no Sync queued yet: later requests are ignored until Sync.
    q.push(Expect::Bind(None));
    assert_eq!(run(&mut q, &mut c, b"E"), b"E");
    assert!(q.skipping());
    q.push(Expect::Synth(Synth::ParseComplete, None));
    q.push(Expect::Execute);
    q.push(Expect::Sync);
    assert!(!q.skipping());
    assert_eq!(run(&mut q, &mut c, b"Z"), b"Z");
    assert!(q.is_empty());
}

#[test]
fn simple_query_error_keeps_waiting_for_ready() {
    let mut q = ReplyQueue::default();
    let mut c = PreparedCache::default();
    q.push(Expect::Sync);
    assert_eq!(run(&mut q, &mut c, b"TDEZ"), b"TDEZ");
    assert!(q.is_empty() && !q.skipping());
}

#[test]
fn extended_copy_in_drops_ignored_syncs() {
    let mut q = ReplyQueue::default();
    let mut c = PreparedCache::default();
    // Fully pipelined: Bind, Execute, Sync, CopyData…, CopyDone, Sync.
    q.push(Expect::Bind(None));
    q.push(Expect::Execute);
    q.push(Expect::Sync);
    q.push(Expect::CopyEnd);
    q.push(Expect::Sync);
    assert_eq!(run(&mut q, &mut c, b"2GCZ"), b"2GCZ");
    assert!(q.is_empty());
    // CopyInResponse first, then the client's Syncs and CopyDone.
    q.push(Expect::Bind(None));
    q.push(Expect::Execute);
    assert_eq!(run(&mut q, &mut c, b"2G"), b"2G");
    q.push(Expect::Sync);
    q.push(Expect::CopyEnd);
    q.push(Expect::Sync);
    assert_eq!(run(&mut q, &mut c, b"CZ"), b"CZ");
    assert!(q.is_empty());
}

#[test]
fn an_eviction_close_counts_until_answered_or_skipped() {
    let mut q = ReplyQueue::default();
    let mut cache = PreparedCache::default();
    let evict = |id| Expect::Close {
        forward: false,
        evicted: Some(stmt(id)),
    };
    q.push(evict(1));
    q.push(evict(1));
    q.push(Expect::Sync);
    assert!(q.evicting(1) && !q.evicting(2));
    assert_eq!(run(&mut q, &mut cache, b"3"), b"");
    assert!(q.evicting(1), "one of the two is still unanswered");
    run(&mut q, &mut cache, b"3Z");
    assert!(!q.evicting(1) && q.is_pristine());
    // Skipped after an error: no longer in the queue, so no longer counted.
    q.push(Expect::Bind(None));
    q.push(evict(2));
    q.push(Expect::Sync);
    assert!(q.evicting(2));
    run(&mut q, &mut cache, b"EZ");
    assert!(!q.evicting(2) && q.is_pristine());
}

#[test]
fn evicting_close_reply_dropped_client_close_made_up() {
    let mut q = ReplyQueue::default();
    let mut c = PreparedCache::default();
    q.push(Expect::Close {
        forward: false,
        evicted: None,
    });
    q.push(Expect::Parse {
        forward: true,
        stmt: Some(stmt(1)),
        mapped: None,
        closed_first: false,
    });
    q.push(Expect::Synth(Synth::CloseComplete, None));
    q.push(Expect::Sync);
    assert_eq!(run(&mut q, &mut c, b"31Z"), b"13Z");
}

/// A queue reused by the next client keeps room for a few entries (no allocation per
/// transaction for a client that parks between them), never what one client grew.
#[test]
fn a_reused_queue_keeps_a_little_room_and_frees_the_rest() {
    let mut q = ReplyQueue::default();
    let mut c = PreparedCache::default();
    q.push(Expect::Query);
    assert_eq!(run(&mut q, &mut c, b"TDCZ"), b"TDCZ");
    assert!(q.is_pristine());
    q.reset_for_reuse();
    let kept = q.q.capacity();
    assert!(kept > 0 && kept <= KEPT_CAPACITY, "kept {kept}");
    for _ in 0..1000 {
        q.push(Expect::Query);
    }
    assert_eq!(run(&mut q, &mut c, &[b'Z'; 1000]), [b'Z'; 1000]);
    q.reset_for_reuse();
    assert_eq!(q.q.capacity(), 0, "a grown queue is freed");
    assert!(q.is_pristine());
}
