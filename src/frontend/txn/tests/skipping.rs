//! A server skipping to Sync after an error in an extended exchange ignores simple queries
//! too: no ReadyForQuery comes for them, and the pair must not wait for one.

use super::*;

fn with_a() -> Rig {
    let mut r = Rig::new();
    r.send(&[parse("a", "select 1"), sync()].concat());
    r.reply(&server_msgs("1Z"));
    r
}

#[test]
fn a_query_pipelined_after_a_failing_bind_is_not_waited_for() {
    let mut r = with_a();
    let out = r.send(&[bind("a"), query("select 42"), sync()].concat());
    assert_eq!(tags(&out), "BQS");
    // The Bind fails; the Query is skipped; the Sync's ReadyForQuery ends it all.
    assert_eq!(tags(&r.reply(&server_msgs("EZ"))), "EZ");
    assert_eq!(r.tracker.pending, 0);
    assert!(r.queue.is_empty());
    assert!(r.idle(), "the server goes back to the pool");
}

#[test]
fn a_query_sent_while_the_server_skips_is_not_sent() {
    let mut r = with_a();
    assert_eq!(tags(&r.send(&[bind("a"), exec()].concat())), "BE");
    assert_eq!(tags(&r.reply(&server_msgs("E"))), "E");
    assert!(
        r.send(&query("select 42")).is_empty(),
        "ignored by the server"
    );
    assert_eq!(tags(&r.send(&sync())), "S");
    assert_eq!(tags(&r.reply(&server_msgs("Z"))), "Z");
    assert_eq!(r.tracker.pending, 0);
    assert!(r.idle());
}

#[test]
fn a_query_inside_an_exchange_that_succeeds_gets_its_replies() {
    let mut r = with_a();
    let out = r.send(&[bind("a"), exec(), query("select 42"), sync()].concat());
    assert_eq!(tags(&out), "BEQS");
    assert_eq!(tags(&r.reply(&server_msgs("2CCZZ"))), "2CCZZ");
    assert_eq!(r.tracker.pending, 0);
    assert!(r.idle());
    // Its own error skips nothing: the Sync after it is answered as usual.
    let out = r.send(&[bind("a"), exec(), query("selec"), sync()].concat());
    assert_eq!(tags(&out), "BEQS");
    assert_eq!(tags(&r.reply(&server_msgs("2CEZZ"))), "2CEZZ");
    assert!(r.idle());
}

/// A COPY FROM STDIN the server fails on a bad row while the client still streams: the
/// client's CopyDone comes after the ReadyForQuery, and PostgreSQL ignores it. A later simple
/// query's own error must skip nothing (PG 15: `E Z T D C Z` for `selec` + `select 1`).
#[test]
fn a_query_error_after_a_stray_copy_done_skips_nothing() {
    let mut r = Rig::new();
    assert_eq!(tags(&r.send(&query("copy t from stdin"))), "Q");
    assert_eq!(tags(&r.reply(&server_msgs("G"))), "G");
    assert_eq!(tags(&r.send(&msg(b'd', b"x\n"))), "d");
    assert_eq!(tags(&r.reply(&server_msgs("EZ"))), "EZ");
    assert_eq!(tags(&r.send(&msg(b'c', b""))), "c");
    let out = r.send(&[query("selec"), query("select 1")].concat());
    assert_eq!(tags(&out), "QQ");
    assert_eq!(tags(&r.reply(&server_msgs("EZ"))), "EZ");
    assert_eq!(r.tracker.pending, 1, "select 1's ReadyForQuery is owed");
    assert!(!r.idle(), "the server must not go back to the pool");
    assert_eq!(tags(&r.reply(&server_msgs("TDCZ"))), "TDCZ");
    assert!(r.idle());
}

/// Same, the next query sent after the error arrived and before its ReadyForQuery: it is
/// dropped as if the server were skipping, and the client waits for it forever.
#[test]
fn a_query_after_a_stray_copy_done_and_an_error_is_not_dropped() {
    let mut r = Rig::new();
    r.send(&query("copy t from stdin"));
    r.reply(&server_msgs("G"));
    r.send(&msg(b'd', b"x\n"));
    r.reply(&server_msgs("EZ"));
    r.send(&msg(b'c', b""));
    assert_eq!(tags(&r.send(&query("selec"))), "Q");
    assert_eq!(tags(&r.reply(&server_msgs("E"))), "E");
    assert_eq!(
        tags(&r.send(&query("select 1"))),
        "Q",
        "not skipped by PostgreSQL"
    );
}

/// Same root cause, Execute-started COPY that fails before CopyInResponse (PG 15:
/// `1 2 E Z | E Z | T D C Z`).
#[test]
fn a_query_error_after_a_failed_pipelined_extended_copy_skips_nothing() {
    let mut r = Rig::new();
    let out = r.send(
        &[
            parse("", "copy nosuch from stdin"),
            bind(""),
            exec(),
            sync(),
            msg(b'd', b"1\n"),
            msg(b'c', b""),
            query("selec"),
            query("select 1"),
        ]
        .concat(),
    );
    assert_eq!(tags(&out), "PBESdcQQ");
    assert_eq!(tags(&r.reply(&server_msgs("12EZ"))), "12EZ");
    assert_eq!(tags(&r.reply(&server_msgs("EZ"))), "EZ");
    assert_eq!(r.tracker.pending, 1, "select 1's ReadyForQuery is owed");
    assert!(!r.idle());
}

/// Statement mapping off (`max_prepared_statements = 0`): the reply queue is kept all the same.
#[test]
fn without_mapping_a_query_after_a_failing_bind_is_not_waited_for() {
    let mut r = Rig::new();
    r.limits.cache_cap = 0;
    r.send(&[parse("a", "select 1"), sync()].concat());
    r.reply(&server_msgs("1Z"));
    assert_eq!(
        tags(&r.send(&[bind("a"), query("select 42"), sync()].concat())),
        "BQS"
    );
    assert_eq!(tags(&r.reply(&server_msgs("EZ"))), "EZ");
    assert_eq!(r.tracker.pending, 0);
    assert!(r.idle(), "the server goes back to the pool");
}

/// FunctionCall pipelined after a failing Bind: skipped like a Query.
#[test]
fn a_function_call_after_a_failing_bind_is_skipped_like_a_query() {
    let mut r = with_a();
    let f = msg(b'F', b"\0\0\x05\x25\0\0\0\0\0\0");
    let out = r.send(&[bind("a"), f.clone(), sync()].concat());
    assert_eq!(tags(&out), "BFS");
    assert_eq!(tags(&r.reply(&server_msgs("EZ"))), "EZ");
    assert!(r.idle());
    // While skipping: dropped.
    assert_eq!(tags(&r.send(&[bind("a"), exec()].concat())), "BE");
    r.reply(&server_msgs("E"));
    assert!(r.send(&f).is_empty());
    assert_eq!(tags(&r.send(&sync())), "S");
    assert_eq!(tags(&r.reply(&server_msgs("Z"))), "Z");
    assert!(r.idle());
}

/// A SQL PREPARE lakepool sends ahead of the client's EXECUTE, skipped with the EXECUTE after a
/// failing Bind: the server does not have it, so the next EXECUTE must prepare it again.
#[test]
fn a_skipped_prepare_of_lakepools_is_not_on_the_server() {
    let mut r = with_a();
    r.send(&query("PREPARE p AS select 1"));
    r.reply(&server_msgs("CZ"));
    assert!(r.idle());
    r.client.detached();
    r.client.changes = Default::default();
    let out = r.send(&[bind("a"), query("EXECUTE p"), sync()].concat());
    assert_eq!(tags(&out), "BQQS", "PREPARE p goes first");
    assert_eq!(tags(&r.reply(&server_msgs("EZ"))), "EZ");
    assert_eq!(r.tracker.pending, 0);
    let out = r.send(&query("EXECUTE p"));
    assert_eq!(
        tags(&out),
        "QQ",
        "p prepared again: the server skipped the PREPARE"
    );
}

/// `DEALLOCATE a` lakepool answers itself, skipped by the server after a failing Bind: the
/// client keeps `a` (PostgreSQL never ran the DEALLOCATE).
#[test]
fn a_skipped_deallocate_keeps_the_name() {
    let mut r = with_a();
    r.send(&[parse("b", "select 2"), sync()].concat());
    r.reply(&server_msgs("1Z"));
    let out = r.send(
        &[
            bind("b"),
            msg(b'B', b"\0b\0\0\0\0\x01\0\0\0\x011\0\0"),
            query("DEALLOCATE a"),
            sync(),
        ]
        .concat(),
    );
    assert_eq!(tags(&out), "BBS");
    assert_eq!(tags(&r.reply(&server_msgs("2EZ"))), "2EZ");
    assert_eq!(
        r.client.statement_count(),
        2,
        "a still exists on a direct connection"
    );
}

/// A cached Parse's batch with a Query inside, replayed after a stale plan: the skipped Query
/// is not waited for, the replayed one is.
#[test]
fn a_replayed_batch_with_a_query_waits_only_for_the_replayed_one() {
    let mut r = Rig::new();
    r.send(&[parse("a", "select 1"), sync()].concat());
    r.reply(&server_msgs("1Z"));
    let out = r.send(
        &[
            parse("b", "select 1"),
            bind("b"),
            exec(),
            query("select 2"),
            sync(),
        ]
        .concat(),
    );
    assert_eq!(tags(&out), "BEQS");
    let mut stale = msg(
        b'E',
        b"SERROR\0VERROR\0C0A000\0Mcached plan must not change result type\0\0",
    );
    stale.extend(server_msgs("Z"));
    assert_eq!(
        tags(&r.reply(&stale)),
        "1",
        "only the made-up ParseComplete"
    );
    assert_eq!(r.tracker.pending, 2);
    assert_eq!(tags(&r.up.drain()), "PBEQS", "replayed with a fresh Parse");
    assert_eq!(tags(&r.reply(&server_msgs("12CCZZ"))), "2CCZZ");
    assert!(r.idle());
}
