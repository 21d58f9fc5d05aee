//! Statement mapping: named Parse, Bind, Describe and Close on per-pool server-side
//! statements; the cache, the per-client limits, undoing skipped changes, stale statements.

use super::*;

/// A rig whose server keeps one statement, with the client's `a` (`select 1`) prepared on it.
fn with_a_prepared() -> Rig {
    let mut r = Rig::new();
    r.limits.cache_cap = 1;
    r.send(&[parse("a", "select 1"), sync()].concat());
    r.reply(&server_msgs("1Z"));
    r
}

#[test]
fn first_parse_is_renamed_and_its_reply_passes() {
    let mut r = Rig::new();
    let out = r.send(&[parse("S_1", "select 1"), sync()].concat());
    let m = messages(&out);
    assert_eq!(tags(&out), "PS");
    let first = String::from_utf8_lossy(&m[0].1).into_owned();
    assert!(
        first.starts_with("lakepool_") && first.contains("\0select 1\0"),
        "{first:?}"
    );
    assert_eq!(tags(&r.reply(&server_msgs("1Z"))), "1Z");
    assert!(r.queue.is_empty());
    assert!(r.idle());
    // Bind and Execute use the server-side name.
    let out = r.send(&[bind("S_1"), exec(), sync()].concat());
    assert_eq!(tags(&out), "BES");
    assert!(messages(&out)[0].1.starts_with(b"\0lakepool_"));
    assert!(!r.idle());
    assert_eq!(tags(&r.reply(&server_msgs("2CZ"))), "2CZ");
    assert!(r.idle());
}

#[test]
fn statement_already_on_the_server_is_not_prepared_again() {
    let mut r = Rig::new();
    r.send(&[parse("a", "select 1"), sync()].concat());
    r.reply(&server_msgs("1Z"));
    // A second client (same pool, same server) prepares the same text under another name.
    r.client = TxnClient::default();
    let out = r.send(&[parse("b", "select 1"), bind("b"), exec(), sync()].concat());
    assert_eq!(tags(&out), "BES", "no Parse sent");
    assert_eq!(tags(&r.due()), "1", "ParseComplete made up at once");
    assert_eq!(tags(&r.reply(&server_msgs("2CZ"))), "2CZ");
    assert!(r.queue.is_empty());
}

#[test]
fn statement_missing_on_this_server_is_prepared_transparently() {
    let mut r = Rig::new();
    r.send(&[parse("a", "select 1"), sync()].concat());
    r.reply(&server_msgs("1Z"));
    // Same client, next transaction on a server that never saw the statement.
    r.cache = PreparedCache::default();
    let out = r.send(&[bind("a"), exec(), sync()].concat());
    assert_eq!(tags(&out), "PBES");
    assert_eq!(
        tags(&r.reply(&server_msgs("12CZ"))),
        "2CZ",
        "injected ParseComplete dropped"
    );
}

#[test]
fn close_keeps_the_server_statement_and_is_answered_in_order() {
    let mut r = Rig::new();
    r.send(&[parse("a", "select 1"), sync()].concat());
    r.reply(&server_msgs("1Z"));
    let out = r.send(&[bind("a"), exec(), close("a"), sync()].concat());
    assert_eq!(tags(&out), "BES", "Close not sent");
    assert_eq!(
        tags(&r.due()),
        "",
        "CloseComplete waits for earlier replies"
    );
    assert_eq!(tags(&r.reply(&server_msgs("2CZ"))), "2C3Z");
    // Binding the closed name fails as in PostgreSQL, without reaching the server (where the
    // shared statement still exists under lakepool's name).
    let out = r.send(&[bind("a"), exec(), sync()].concat());
    assert_eq!(tags(&out), "S", "only the Sync goes on");
    let back = r.due();
    assert_eq!(error_code(&back).as_deref(), Some("26000"));
    assert_eq!(tags(&r.reply(&server_msgs("Z"))), "Z");
    assert!(r.idle());
}

#[test]
fn names_the_client_never_prepared_never_reach_the_server() {
    let mut r = Rig::new();
    r.send(&[parse("a", "select 1"), sync()].concat());
    let server_name = {
        let m = messages(&r.send(&[]));
        m.first().map(|(_, b)| b.clone())
    };
    drop(server_name);
    r.reply(&server_msgs("1Z"));
    // Another client tries lakepool's own name for the statement.
    r.client = TxnClient::default();
    for input in [
        [describe("lakepool_1"), sync()].concat(),
        [bind("lakepool_1"), exec(), sync()].concat(),
    ] {
        let out = r.send(&input);
        assert_eq!(tags(&out), "S", "refused by lakepool");
        let back = r.reply(&server_msgs("Z"));
        assert_eq!(tags(&back), "EZ");
        assert_eq!(error_code(&back).as_deref(), Some("26000"));
    }
    // Close of an unknown name succeeds without touching the server, as in PostgreSQL.
    assert_eq!(tags(&r.send(&[close("lakepool_1"), sync()].concat())), "S");
    assert_eq!(tags(&r.reply(&server_msgs("Z"))), "3Z");
    // SQL naming lakepool's statements is refused whole.
    let out = r.send(&query("select 1; DEALLOCATE lakepool_1"));
    assert!(out.is_empty());
    let back = r.due();
    assert_eq!(tags(&back), "EZ");
    assert_eq!(error_code(&back).as_deref(), Some("42939"));
    assert_eq!(r.cache.len(), 1, "the shared statement is intact");
}

#[test]
fn full_cache_closes_least_recently_used() {
    let mut r = Rig::new();
    r.limits.cache_cap = 1;
    let first = r.send(&[parse("a", "select 1"), sync()].concat());
    r.reply(&server_msgs("1Z"));
    let a_name = messages(&first)[0]
        .1
        .split(|&b| b == 0)
        .next()
        .unwrap()
        .to_vec();
    let out = r.send(&[parse("b", "select 2"), sync()].concat());
    assert_eq!(tags(&out), "CPS");
    assert_eq!(messages(&out)[0].1, [&b"S"[..], &a_name, b"\0"].concat());
    assert_eq!(tags(&r.reply(&server_msgs("31Z"))), "1Z");
    // `a` is gone from the server; binding it prepares it again.
    let out = r.send(&[bind("a"), exec(), sync()].concat());
    assert_eq!(tags(&out), "CPBES");
}

#[test]
fn statement_names_per_client_are_bounded() {
    let mut r = Rig::new();
    r.limits.max_statements = 3;
    for i in 0..3 {
        let out = r.send(&[parse(&format!("s{i}"), &format!("select {i}")), sync()].concat());
        assert_eq!(tags(&out), "PS");
        r.reply(&server_msgs("1Z"));
    }
    let out = r.send(&[parse("s3", "select 3"), bind("s3"), exec(), sync()].concat());
    assert_eq!(tags(&out), "S", "the Parse and what follows it are refused");
    let back = r.reply(&server_msgs("Z"));
    assert_eq!(tags(&back), "EZ");
    assert_eq!(error_code(&back).as_deref(), Some("54000"));
    assert_eq!(r.client.statement_count(), 3);
    // Closing one makes room.
    r.send(&[close("s0"), sync()].concat());
    r.reply(&server_msgs("Z"));
    assert_eq!(
        tags(&r.send(&[parse("s3", "select 3"), sync()].concat())),
        "PS"
    );
}

#[test]
fn duplicate_names_are_refused_as_postgresql_does() {
    let mut r = Rig::new();
    r.send(&[parse("a", "select 1"), sync()].concat());
    r.reply(&server_msgs("1Z"));
    let out = r.send(&[parse("a", "select 2"), sync()].concat());
    assert_eq!(tags(&out), "S");
    let back = r.reply(&server_msgs("Z"));
    assert_eq!(error_code(&back).as_deref(), Some("42P05"));
}

#[test]
fn many_binds_before_one_sync_on_a_fresh_server() {
    // pgjdbc batches: Parse once, then Bind/Execute many times, one Sync at the end; the
    // next batch runs on a server that has never seen the statements.
    let mut r = Rig::new();
    let mut batch = vec![parse("S_1", "insert 1"), parse("S_2", "insert 2")];
    for _ in 0..50 {
        batch.extend([bind("S_1"), exec(), bind("S_2"), exec()]);
    }
    batch.push(sync());
    let out = r.send(&batch.concat());
    assert_eq!(tags(&out).len(), 2 + 50 * 4 + 1);
    let mut replies = String::from("11");
    for _ in 0..50 {
        replies.push_str("2C2C");
    }
    replies.push('Z');
    assert_eq!(tags(&r.reply(&server_msgs(&replies))), replies);
    assert!(r.queue.is_empty());
    // Fresh server: each statement is prepared once, before its first Bind only.
    r.cache = PreparedCache::default();
    let mut batch = Vec::new();
    for _ in 0..50 {
        batch.extend([bind("S_1"), exec(), bind("S_2"), exec()]);
    }
    batch.push(sync());
    let out = r.send(&batch.concat());
    let t = tags(&out);
    assert_eq!(t.matches('P').count(), 2, "{t}");
    assert!(t.starts_with("PBEPBE"), "{t}");
    let mut server = String::from("12C12C");
    let mut client = String::from("2C2C");
    for _ in 1..50 {
        server.push_str("2C2C");
        client.push_str("2C2C");
    }
    server.push('Z');
    client.push('Z');
    assert_eq!(tags(&r.reply(&server_msgs(&server))), client);
    assert!(r.queue.is_empty());
}

#[test]
fn a_failed_parse_leaves_no_name_behind() {
    let mut r = Rig::new();
    r.send(&[parse("a", "selec 1"), sync()].concat());
    assert_eq!(tags(&r.reply(&server_msgs("EZ"))), "EZ");
    assert_eq!(
        r.client.statement_count(),
        0,
        "PostgreSQL did not create it"
    );
    // The client retries under the same name: a plain Parse, not "already exists".
    let out = r.send(&[parse("a", "select 1"), sync()].concat());
    assert_eq!(tags(&out), "PS");
    assert_eq!(tags(&r.reply(&server_msgs("1Z"))), "1Z");
    assert_eq!(r.client.statement_count(), 1);
}

#[test]
fn names_changed_in_a_skipped_part_of_a_batch_are_restored() {
    let mut r = Rig::new();
    r.send(&[parse("a", "select 1"), sync()].concat());
    r.reply(&server_msgs("1Z"));
    r.send(&[parse("x", "select 2"), sync()].concat());
    r.reply(&server_msgs("1Z"));
    // Bind fails at the server; the Close of `a` and the Parse of `b` (already on the server)
    // after it are skipped by PostgreSQL, so `a` must still exist and `b` must not.
    let out = r.send(
        &[
            bind("a"),
            exec(),
            close("a"),
            parse("b", "select 2"),
            sync(),
        ]
        .concat(),
    );
    assert_eq!(tags(&out), "BES");
    assert_eq!(tags(&r.reply(&server_msgs("EZ"))), "EZ");
    assert_eq!(r.client.statement_count(), 2, "a and x");
    let out = r.send(&[bind("a"), exec(), sync()].concat());
    assert!(
        messages(&out)[0].1.starts_with(b"\0lakepool_"),
        "a is still mapped"
    );
}

#[test]
fn an_eviction_skipped_by_an_error_is_closed_before_the_statement_is_prepared_again() {
    let mut r = with_a_prepared();
    // The unnamed Parse fails first; the eviction Close of `a` queued after it is skipped, so
    // the server still has `a`'s statement. lakepool does not trust it back into the cache (a
    // pipelined later exchange may have closed or prepared it again, fuzz finding 10): it is
    // owed a Close, and a Bind of it gets one, then a fresh Parse (not "already exists").
    let out = r.send(&[parse("", "selec"), parse("b", "select 2"), sync()].concat());
    assert_eq!(tags(&out), "PCPS");
    assert_eq!(tags(&r.reply(&server_msgs("EZ"))), "EZ");
    assert_eq!((r.cache.len(), r.cache.owed_len()), (0, 1));
    let out = r.send(&[bind("a"), exec(), sync()].concat());
    assert_eq!(tags(&out), "CPBES");
    assert_eq!(tags(&r.reply(&server_msgs("312CZ"))), "2CZ");
    assert_eq!((r.cache.len(), r.cache.owed_len()), (1, 0));
}

#[test]
fn after_ddl_a_statement_is_prepared_afresh_for_new_names() {
    let mut r = Rig::new();
    r.send(&[parse("a", "select 1"), sync()].concat());
    r.reply(&server_msgs("1Z"));
    let mut ddl = msg(b'C', b"DROP TYPE\0");
    ddl.extend(msg(b'Z', b"I"));
    r.send(&query("DROP TYPE t"));
    r.reply(&ddl);
    // Another client prepares the same text: planned anew, not the copy from before the DDL.
    r.client = TxnClient::default();
    let out = r.send(&[parse("b", "select 1"), sync()].concat());
    assert_eq!(tags(&out), "PS");
}

#[test]
fn a_stale_shared_statement_is_prepared_afresh_and_the_batch_replayed() {
    let mut r = Rig::new();
    r.send(&[parse("a", "select $1::t"), sync()].concat());
    r.reply(&server_msgs("1Z"));
    // Another client prepares the same text; the server's copy is stale (its type was dropped
    // and created again where lakepool did not see it).
    r.client = TxnClient::default();
    let out = r.send(&[parse("b", "select $1::t"), bind("b"), exec(), sync()].concat());
    assert_eq!(tags(&out), "BES");
    assert_eq!(tags(&r.due()), "1");
    let stale = stale_then_ready();
    assert_eq!(
        tags(&r.reply(&stale)),
        "",
        "the stale attempt never reaches the client"
    );
    let again = r.up.drain();
    assert_eq!(
        tags(&again),
        "PBES",
        "prepared afresh, then the batch again"
    );
    let fresh = messages(&again)[0].1.clone();
    assert!(
        !fresh.starts_with(b"lakepool_1\0"),
        "a new server-side name"
    );
    assert_eq!(tags(&r.reply(&server_msgs("12CZ"))), "2CZ");
    assert!(r.idle());
    // The first client's statement moves to the fresh one at its next use too.
    r.client = TxnClient::default();
    let out = r.send(&[parse("c", "select $1::t"), sync()].concat());
    assert_eq!(tags(&out), "S", "the fresh statement is on this server");
}

/// A Close the server may still skip (an earlier error in its exchange) gives its name back,
/// as PostgreSQL would have kept it: until its reply, the name still counts against
/// `max_client_prepared_statements`. Before, a client pipelining "failing Bind, Close, Sync"
/// then "Parse, Sync" gained one name over the limit per round (fuzz finding 7).
#[test]
fn a_name_whose_close_may_be_skipped_still_counts_against_the_limit() {
    let mut r = Rig::new();
    r.limits.max_statements = 1;
    r.send(&[parse("b", "select 1"), sync()].concat());
    r.reply(&server_msgs("1Z"));
    let out = r.send(
        &[
            bind("b"),
            exec(),
            close("b"),
            sync(),
            parse("c", "select 2"),
            sync(),
        ]
        .concat(),
    );
    assert_eq!(tags(&out), "BESS", "the Parse of c is refused, not sent");
    // The Bind fails: the server skips the Close, so `b` stays, as on a direct connection.
    let replies = r.reply(&server_msgs("EZZ"));
    assert_eq!(tags(&replies), "EZEZ");
    assert_eq!(r.client.statement_count(), 1);
    let out = r.send(&[bind("b"), exec(), sync()].concat());
    assert_eq!(tags(&out), "BES", "b is still there");
}

/// A batch the server skips after an error is undone newest first: with a cache of one, "Parse
/// b, Parse c" queued "Close 1, Parse 2, Close 2, Parse 3"; undone oldest first, the eviction
/// of 2 was restored after 2's own Parse was undone, leaving a statement lakepool thought
/// prepared on a server that never had it (its next use failed there) and a cache over its
/// cap (fuzz finding 8).
#[test]
fn a_skipped_batch_is_undone_newest_first() {
    let mut r = with_a_prepared();
    let out = r.send(
        &[
            bind("a"),
            exec(),
            parse("b", "select 2"),
            parse("c", "select 3"),
            sync(),
        ]
        .concat(),
    );
    assert_eq!(tags(&out), "BECPCPS");
    assert_eq!(tags(&r.reply(&server_msgs("EZ"))), "EZ");
    assert_eq!(
        r.client.statement_count(),
        1,
        "only a: b and c were skipped"
    );
    // `a` (still there) is owed a Close; `select 2` is not, although its eviction Close was
    // skipped too: its Parse was skipped, so the server never had it. Nothing is trusted,
    // and the cache never passes its cap.
    assert_eq!((r.cache.len(), r.cache.owed_len()), (0, 1));
    // Another client's Parse of `select 2`: the owed Close of `a`, then its Parse.
    r.client = TxnClient::default();
    let out = r.send(&[parse("d", "select 2"), bind("d"), exec(), sync()].concat());
    assert_eq!(tags(&out), "CPBES");
}

/// A skipped eviction Close while later exchanges, already sent, prepare the statement again
/// and evict it once more: the statement is never trusted back (the second eviction closed
/// it; a Bind without a Parse would get "does not exist"), and its Parse is closed first (the
/// first Close may have been skipped: "already exists").
#[test]
fn a_statement_evicted_twice_around_a_skipped_close_is_prepared_again() {
    let mut r = with_a_prepared();
    let out = r.send(
        &[
            // Fails: its eviction Close of `a` is skipped.
            bind("a"),
            exec(),
            parse("b", "select 2"),
            sync(),
            // `a` again: `b` evicted, `a` closed (it may still be there), then parsed.
            bind("a"),
            exec(),
            sync(),
            // `a` evicted once more.
            parse("c", "select 3"),
            sync(),
        ]
        .concat(),
    );
    assert_eq!(tags(&out), "BECPS".to_owned() + "CCPBES" + "CPS");
    assert_eq!(
        tags(&r.reply(&server_msgs(&["EZ", "3312CZ", "31Z"].concat()))),
        "EZ2CZ1Z"
    );
    assert_eq!(r.cache.len(), 1);
    let out = r.send(&[bind("a"), exec(), sync()].concat());
    assert_eq!(
        tags(&out),
        "CCPBES",
        "closed (`c` evicted, `a` owed), then parsed"
    );
}

/// Two failing exchanges in a row, the second preparing a statement whose eviction the first
/// skipped: nothing skipped is trusted (the server kept `a` and never made `b`).
#[test]
fn two_failing_exchanges_leave_nothing_trusted_that_the_server_lacks() {
    let mut r = with_a_prepared();
    let out = r.send(
        &[
            bind("a"),
            exec(),
            parse("b", "select 2"),
            sync(),
            bind("b"),
            exec(),
            bind("a"),
            exec(),
            sync(),
        ]
        .concat(),
    );
    assert_eq!(tags(&out), "BECPS".to_owned() + "BECCPBES");
    // Both Binds fail (the second because `b` was never made).
    assert_eq!(tags(&r.reply(&server_msgs("EZEZ"))), "EZEZ");
    // Only `a` is owed a Close: `b`'s Parse was skipped, so its eviction Close (skipped as
    // well) leaves nothing to close.
    assert_eq!((r.cache.len(), r.cache.owed_len()), (0, 1));
    let out = r.send(&[bind("a"), exec(), sync()].concat());
    assert_eq!(tags(&out), "CPBES", "`a` closed first, then parsed");
}

/// Owed Closes go in front of a simple query with a Sync of lakepool's: their replies (even an
/// error) and its ReadyForQuery stay away from the client, and nothing is left unsynced.
#[test]
fn owed_closes_go_before_a_simple_query_with_a_sync_of_their_own() {
    for (server, what) in [("3Z", "answered"), ("EZ", "failed")] {
        let mut r = with_a_prepared();
        r.send(&[parse("", "selec"), parse("b", "select 2"), sync()].concat());
        r.reply(&server_msgs("EZ"));
        assert_eq!(r.cache.owed_len(), 1);
        let out = r.send(&query("select 1"));
        assert_eq!(tags(&out), "CSQ", "{what}");
        assert!(!r.tracker.unsynced, "{what}");
        let back = r.reply(&server_msgs(&format!("{server}CZ")));
        assert_eq!(tags(&back), "CZ", "{what}");
        assert!(r.queue.is_empty(), "{what}");
    }
}

/// A failed Parse does not take the cache entry of a later Parse of the same statement, which
/// the server then runs (else the next Parse of it would get "already exists").
#[test]
fn a_failed_parse_leaves_a_later_parse_of_the_statement_cached() {
    let mut r = Rig::new();
    r.limits.cache_cap = 1;
    let out = r.send(
        &[
            parse("a", "select 1"),
            sync(),
            parse("b", "select 2"),
            sync(),
            bind("a"),
            exec(),
            sync(),
        ]
        .concat(),
    );
    assert_eq!(tags(&out), "PS".to_owned() + "CPS" + "CCPBES");
    assert_eq!(
        tags(&r.reply(&server_msgs(&["EZ", "31Z", "3312CZ"].concat()))),
        "EZ1Z2CZ"
    );
    assert_eq!(r.cache.len(), 1, "the server has `select 1`");
    r.client = TxnClient::default();
    let out = r.send(&[parse("x", "select 1"), bind("x"), exec(), sync()].concat());
    assert_eq!(tags(&out), "BES", "prepared already");
}

/// DISCARD ALL clears what was prepared before it, not what a Parse pipelined after it
/// prepares (else the next use gets "already exists" or a name the client has is gone).
#[test]
fn a_parse_pipelined_after_discard_all_stays_prepared() {
    let mut r = Rig::new();
    let out = r.send(&[query("DISCARD ALL"), parse("a", "select 1"), sync()].concat());
    assert_eq!(tags(&out), "QPS");
    let mut back = msg(b'C', b"DISCARD ALL\0");
    back.extend(server_msgs("Z1Z"));
    assert_eq!(tags(&r.reply(&back)), "CZ1Z");
    assert_eq!(r.cache.len(), 1);
    assert_eq!(r.client.statement_count(), 1);
    let out = r.send(&[bind("a"), exec(), sync()].concat());
    assert_eq!(tags(&out), "BES", "no second Parse");
}

/// After DISCARD ALL the requests pipelined behind it are replayed on the cache in order:
/// an eviction Close among them still closes its statement.
#[test]
fn requests_pipelined_after_discard_all_are_replayed_in_order() {
    let mut r = Rig::new();
    r.limits.cache_cap = 2;
    let out = r.send(
        &[
            query("DISCARD ALL"),
            parse("a", "select 1"),
            parse("b", "select 2"),
            bind("a"),
            exec(),
            parse("c", "select 3"),
            sync(),
        ]
        .concat(),
    );
    assert_eq!(
        tags(&out),
        "QPPBECPS",
        "`b`, least recently used, evicted for `c`"
    );
    let mut back = msg(b'C', b"DISCARD ALL\0");
    back.extend(server_msgs("Z112C31Z"));
    assert_eq!(tags(&r.reply(&back)), "CZ112C1Z");
    assert_eq!(r.cache.len(), 2);
    let out = r.send(&[bind("b"), exec(), sync()].concat());
    assert_eq!(tags(&out), "CPBES", "`b` was closed: prepared again");
}

/// The same for the client's names: a Parse and a Close of one name in a skipped exchange
/// leave no name behind.
#[test]
fn a_skipped_parse_then_close_leaves_no_name() {
    let mut r = Rig::new();
    r.send(&[parse("a", "select 1"), sync()].concat());
    r.reply(&server_msgs("1Z"));
    let out = r.send(
        &[
            bind("a"),
            exec(),
            parse("n", "select 1"),
            close("n"),
            sync(),
        ]
        .concat(),
    );
    assert_eq!(tags(&out), "BES");
    assert_eq!(tags(&r.reply(&server_msgs("EZ"))), "EZ");
    assert_eq!(r.client.statement_count(), 1, "only a: n was never created");
}

/// In the same exchange a closed name makes room at once: should the server skip the Close,
/// it skips the Parse after it too.
#[test]
fn a_close_makes_room_for_a_parse_in_the_same_exchange() {
    let mut r = Rig::new();
    r.limits.max_statements = 1;
    r.send(&[parse("b", "select 1"), sync()].concat());
    r.reply(&server_msgs("1Z"));
    let out = r.send(
        &[
            bind("b"),
            exec(),
            close("b"),
            parse("c", "select 2"),
            sync(),
        ]
        .concat(),
    );
    assert_eq!(tags(&out), "BEPS");
    let replies = r.reply(&server_msgs("EZ"));
    assert_eq!(tags(&replies), "EZ");
    assert_eq!(r.client.statement_count(), 1, "b is back, c never was");
    let out = r.send(&[bind("b"), exec(), sync()].concat());
    assert_eq!(tags(&out), "BES");
}

/// A batch that may be replayed holds the client's next messages back until its first reply:
/// sent at once, they would reach the server before the replayed batch (their replies in the
/// batch's place), and a message streaming through would have the replay written into its
/// middle (fuzz finding 6).
#[test]
fn messages_after_a_replayable_batch_wait_for_its_first_reply() {
    let mut r = Rig::new();
    r.send(&[parse("a", "select $1::t"), sync()].concat());
    r.reply(&server_msgs("1Z"));
    r.client = TxnClient::default();
    let out = r.send(
        &[
            parse("b", "select $1::t"),
            bind("b"),
            exec(),
            sync(),
            query("select 2"),
        ]
        .concat(),
    );
    assert_eq!(
        tags(&out),
        "BES",
        "the Query waits for the batch's first reply"
    );
    assert_eq!(tags(&r.due()), "1");
    let stale = stale_then_ready();
    assert_eq!(tags(&r.reply(&stale)), "");
    assert_eq!(
        tags(&r.up.drain()),
        "PBES",
        "the batch again, before the Query"
    );
    // The replay is not replayed again: the Query may follow it at once, in order.
    assert_eq!(tags(&r.send(&[])), "Q");
    assert_eq!(tags(&r.reply(&server_msgs("12CZ"))), "2CZ");
    assert_eq!(tags(&r.reply(&server_msgs("CZ"))), "CZ");
}

/// A stale-plan error to a request queued before a replayable batch (an earlier exchange) is
/// that request's: it reaches the client, and the batch is neither replayed nor answered twice
/// (fuzz finding 9).
#[test]
fn a_stale_error_before_a_replayable_batch_is_not_the_batchs() {
    let mut r = Rig::new();
    r.send(&[parse("a", "select $1::t"), sync()].concat());
    r.reply(&server_msgs("1Z"));
    r.client = TxnClient::default();
    let out = r.send(
        &[
            query("select * from v"),
            parse("b", "select $1::t"),
            bind("b"),
            exec(),
            sync(),
        ]
        .concat(),
    );
    assert_eq!(tags(&out), "QBES");
    let stale = stale_then_ready();
    let mut seen = tags(&r.reply(&stale));
    seen.push_str(&tags(&r.due()));
    assert_eq!(seen, "EZ1", "the error is the Query's");
    assert_eq!(tags(&r.up.drain()), "", "nothing sent again");
    assert_eq!(tags(&r.reply(&server_msgs("2CZ"))), "2CZ");
    assert!(r.queue.is_empty());
}

/// The stale-plan error PostgreSQL sends when a type a statement uses was dropped, and the
/// ReadyForQuery after it.
fn stale_then_ready() -> Vec<u8> {
    let mut m = msg(
        b'E',
        b"SERROR\0VERROR\0CXX000\0Mcache lookup failed for type 16390\0\0",
    );
    m.extend(msg(b'Z', b"I"));
    m
}

/// A stale error after replies to requests of the batch's own exchange reached the client: the
/// server rolled those back with the error, so the error reaches the client and nothing is
/// sent again (review of finding 9's fix: the INSERT's CommandComplete stood, then the batch
/// was replayed without it).
#[test]
fn a_stale_error_after_replies_of_its_own_exchange_is_not_replayed() {
    let mut r = Rig::new();
    r.send(&[parse("a", "select $1::t"), sync()].concat());
    r.reply(&server_msgs("1Z"));
    r.client = TxnClient::default();
    r.send(
        &[
            parse("", "insert into t values (1)"),
            bind(""),
            exec(),
            parse("b", "select $1::t"),
            bind("b"),
            exec(),
            sync(),
        ]
        .concat(),
    );
    let mut seen = tags(&r.reply(&server_msgs("12C")));
    seen.push_str(&tags(&r.due()));
    seen.push_str(&tags(&r.reply(&stale_then_ready())));
    assert_eq!(seen, "12C1EZ", "the error reaches the client");
    assert_eq!(tags(&r.up.drain()), "", "nothing sent again");
}

/// The same after the replies came in while the client was still sending its exchange: a
/// switched-off replay stays off until ReadyForQuery, so a second cached Parse of the
/// exchange does not start a replay of its own.
#[test]
fn a_switched_off_replay_stays_off_until_ready_for_query() {
    let mut r = Rig::new();
    r.send(
        &[
            parse("a", "select $1::t"),
            parse("i", "insert into t values (1)"),
            sync(),
        ]
        .concat(),
    );
    r.reply(&server_msgs("11Z"));
    r.client = TxnClient::default();
    r.send(&[parse("i2", "insert into t values (1)"), bind("i2"), exec()].concat());
    let mut seen = tags(&r.due());
    seen.push_str(&tags(&r.reply(&server_msgs("2C"))));
    r.send(&[parse("b", "select $1::t"), bind("b"), exec(), sync()].concat());
    seen.push_str(&tags(&r.reply(&stale_then_ready())));
    seen.push_str(&tags(&r.due()));
    assert!(seen.contains("EZ"), "the error reaches the client: {seen}");
    assert_eq!(tags(&r.up.drain()), "", "nothing sent again");
}

/// Without a stale error the held messages go as soon as the batch's first reply arrives.
#[test]
fn a_batch_that_is_not_stale_releases_the_next_messages_at_its_first_reply() {
    let mut r = Rig::new();
    r.send(&[parse("a", "select 1"), sync()].concat());
    r.reply(&server_msgs("1Z"));
    r.client = TxnClient::default();
    let out = r.send(
        &[
            parse("b", "select 1"),
            bind("b"),
            exec(),
            sync(),
            query("x"),
        ]
        .concat(),
    );
    assert_eq!(tags(&out), "BES");
    assert_eq!(tags(&r.reply(&server_msgs("2"))), "12");
    assert_eq!(tags(&r.send(&[])), "Q");
}

#[test]
fn a_stale_statement_whose_batch_already_answered_passes_the_error() {
    let mut r = Rig::new();
    r.send(&[parse("a", "select $1::t"), sync()].concat());
    r.reply(&server_msgs("1Z"));
    // The client's own statement from before: a direct connection would fail too.
    let out = r.send(&[bind("a"), exec(), sync()].concat());
    assert_eq!(tags(&out), "BES");
    let stale = stale_then_ready();
    assert_eq!(tags(&r.reply(&stale)), "EZ");
    // Its next use goes to a statement prepared afresh.
    let out = r.send(&[bind("a"), exec(), sync()].concat());
    assert_eq!(tags(&out), "PBES");
}

/// PgBouncer's counts with prepared statements on: client Parses of named statements, the
/// Parses sent to servers for them, Binds of named statements; unnamed ones are not counted.
#[test]
fn named_parses_and_binds_are_counted() {
    use std::sync::atomic::Ordering::Relaxed;
    let mut r = Rig::new();
    let stats = std::sync::Arc::new(crate::pool::stats::PoolStats::default());
    r.tracker.stats = Some(std::sync::Arc::clone(&stats));
    let counts = || {
        let t = stats.totals();
        (t.client_parses, t.server_parses, t.binds)
    };
    r.send(&[parse("a", "select 1"), bind("a"), exec(), sync()].concat());
    r.reply(&server_msgs("12CZ"));
    assert_eq!(counts(), (1, 1, 1));
    // Already prepared on this server: a Bind, no Parse.
    r.send(&[bind("a"), exec(), sync()].concat());
    r.reply(&server_msgs("2CZ"));
    assert_eq!(counts(), (1, 1, 2));
    // Another server: prepared again for the Bind.
    r.cache = PreparedCache::default();
    r.send(&[bind("a"), exec(), sync()].concat());
    r.reply(&server_msgs("12CZ"));
    assert_eq!(counts(), (1, 2, 3));
    // Unnamed statements pass uncounted.
    r.send(&[parse("", "select 2"), bind(""), exec(), sync()].concat());
    r.reply(&server_msgs("12CZ"));
    assert_eq!(counts(), (1, 2, 3));
    // A prepare answered without a server is a client Parse.
    let mut c = TxnClient::default();
    let mut up = Pipe::default();
    up.feed(&[parse("b", "select 1"), sync()].concat());
    r.registry
        .intern(b"select 1\0\0\0")
        .accepted
        .store(true, Relaxed);
    assert!(
        c.answer_without_server(&mut up, &r.limits, &r.registry, Some(&stats))
            .is_some()
    );
    assert_eq!(counts(), (2, 2, 3));
}
