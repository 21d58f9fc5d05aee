//! Transaction mode with statement mapping, issue 11's bounds at the protocol's edges: what
//! the server skips after an error (statement names, lakepool's own evictions, simple
//! queries) and pipelined COPY leave neither a name over a client's limit, a server past its
//! statement cap, nor a server held for good. Real PostgreSQL, raw-socket clients; the
//! module's lakepool and helpers are `bounded.rs`'s.

use std::time::Duration;

use crate::bounded::{login, login_with_a, run_named, start};
use crate::support::wire::{self, frontend_msg};

/// Fuzz finding 7: at `max_client_prepared_statements`, "failing Bind, Close b, Sync" then
/// "Parse c, Sync" ended with both `b` (the server skipped its Close) and `c`: one name over
/// the limit per round. The Parse is refused while that Close may still be skipped, and `b`
/// stays usable, as on a direct connection.
#[test]
fn a_close_the_server_may_skip_keeps_its_name_counted() {
    let lp = start("max_client_prepared_statements = 1\n");
    let mut c = login(&lp, "one");
    let mut m = wire::parse("b", "select 1");
    m.extend_from_slice(&wire::sync());
    c.send(&m).expect("send Parse");
    assert!(c.read_until_ready("Parse b").error.is_none());
    let mut m = wire::bind("", "b", &[Some("1")]);
    m.extend_from_slice(&wire::execute(""));
    m.extend_from_slice(&wire::target(b'C', b'S', "b"));
    m.extend_from_slice(&wire::sync());
    m.extend_from_slice(&wire::parse("c", "select 2"));
    m.extend_from_slice(&wire::sync());
    c.send(&m).expect("send both exchanges");
    let first = c.read_until_ready("the failing exchange");
    assert_eq!(
        first.error.as_ref().and_then(|e| e.sqlstate()).as_deref(),
        Some("08P01")
    );
    let second = c.read_until_ready("Parse c");
    assert_eq!(
        second.error.as_ref().and_then(|e| e.sqlstate()).as_deref(),
        Some("54000"),
        "Parse c at the limit: {:?}",
        second.error.map(|e| e.fields())
    );
    let r = run_named(&mut c, "b");
    assert_eq!(r.rows, vec![vec![Some("1".into())]]);
}

/// Fuzz finding 8: with `max_prepared_statements = 1`, a batch whose Bind fails makes the
/// server skip the "Close 1, Parse 2, Close 2, Parse 3" lakepool queued for two new
/// statements. Undone oldest first, statement 2 was put back in the server's cache though the
/// server never prepared it: the next client's Parse of the same text was answered from that
/// cache and its Bind failed with "prepared statement ... does not exist".
#[test]
fn statements_skipped_after_an_error_are_not_believed_prepared() {
    let lp = start("max_prepared_statements = 1\n");
    let mut first = login_with_a(&lp);
    // One parameter too many: the Bind fails, the Parses after it are skipped.
    let mut m = wire::bind("", "a", &[Some("1")]);
    m.extend_from_slice(&wire::execute(""));
    m.extend_from_slice(&wire::parse("b", "select 2"));
    m.extend_from_slice(&wire::parse("c", "select 3"));
    m.extend_from_slice(&wire::sync());
    first.send(&m).expect("send the failing batch");
    let r = first.read_until_ready("the failing batch");
    assert_eq!(
        r.error.as_ref().and_then(|e| e.sqlstate()).as_deref(),
        Some("08P01"),
        "{:?}",
        r.error.map(|e| e.fields())
    );
    first.terminate();

    let mut second = login(&lp, "one");
    let mut m = wire::parse("d", "select 2");
    m.extend_from_slice(&wire::bind("", "d", &[]));
    m.extend_from_slice(&wire::execute(""));
    m.extend_from_slice(&wire::sync());
    second.send(&m).expect("send Parse/Bind/Execute");
    let r = second.read_until_ready("select 2 on the same server");
    assert!(r.error.is_none(), "{:?}", r.error.map(|e| e.fields()));
    assert_eq!(r.rows, vec![vec![Some("2".into())]]);
}

/// Fuzz finding 10: an eviction Close the server skips (an error earlier in its exchange)
/// leaves the statement prepared after a pipelined exchange already took its place, one past
/// `max_prepared_statements`. It is closed in front of the next request, not left there.
#[test]
fn skipped_evictions_do_not_leave_a_server_past_its_statement_cap() {
    let lp = start("max_prepared_statements = 1\n");
    let mut c = login_with_a(&lp);
    // The Bind fails (one parameter too many): the Close of `a` that makes room for `b` is
    // skipped, and the pipelined exchange after it has already closed `b` for `c`.
    let mut m = wire::bind("", "a", &[Some("1")]);
    m.extend_from_slice(&wire::parse("b", "select 2"));
    m.extend_from_slice(&wire::sync());
    m.extend_from_slice(&wire::parse("c", "select 3"));
    m.extend_from_slice(&wire::sync());
    c.send(&m).expect("send the two exchanges");
    let r = c.read_until_ready("the failing exchange");
    assert_eq!(
        r.error.as_ref().and_then(|e| e.sqlstate()).as_deref(),
        Some("08P01"),
        "{:?}",
        r.error.map(|e| e.fields())
    );
    let r = c.read_until_ready("Parse c");
    assert!(r.error.is_none(), "{:?}", r.error.map(|e| e.fields()));
    // What the server connection has prepared (the function behind the view, which lakepool
    // leaves alone): `c` only.
    let r = c.query("select count(*) from pg_catalog.pg_prepared_statement()");
    assert!(r.error.is_none(), "{:?}", r.error.map(|e| e.fields()));
    assert_eq!(r.rows, vec![vec![Some("1".into())]]);
    // Those Closes left nothing unsettled: the server went back to the pool at the query's
    // ReadyForQuery, another client gets it, and `c` is not taken for a client stuck
    // mid-exchange (`idle_transaction_timeout` would close it while the other one waits).
    let mut other = login(&lp, "one");
    let r = other.query("select 'other'");
    assert!(r.error.is_none(), "{:?}", r.error.map(|e| e.fields()));
    assert_eq!(r.rows, vec![vec![Some("other".into())]]);
    other.terminate();
    // `a` still works: prepared afresh.
    let r = run_named(&mut c, "a");
    assert_eq!(r.rows, vec![vec![Some("1".into())]]);
}

/// An eviction Close the server skips leaves the statement prepared; a pipelined exchange
/// that needs the statement again must not Parse it on top of itself ("prepared statement
/// already exists" for a request that should succeed).
#[test]
fn a_statement_whose_eviction_was_skipped_is_not_parsed_over_itself() {
    let lp = start("max_prepared_statements = 1\n");
    let mut c = login_with_a(&lp);
    // The Bind fails (one parameter too many), so the Close of `a` that makes room for `b`
    // is skipped; the next exchange, already sent, binds `a` again.
    let mut m = wire::bind("", "a", &[Some("1")]);
    m.extend_from_slice(&wire::parse("b", "select 2"));
    m.extend_from_slice(&wire::sync());
    m.extend_from_slice(&wire::bind("", "a", &[]));
    m.extend_from_slice(&wire::execute(""));
    m.extend_from_slice(&wire::sync());
    c.send(&m).expect("send the two exchanges");
    let r = c.read_until_ready("the failing exchange");
    assert_eq!(
        r.error.as_ref().and_then(|e| e.sqlstate()).as_deref(),
        Some("08P01"),
        "{:?}",
        r.error.map(|e| e.fields())
    );
    let r = c.read_until_ready("select 1 after the failing exchange");
    assert!(r.error.is_none(), "{:?}", r.error.map(|e| e.fields()));
    assert_eq!(r.rows, vec![vec![Some("1".into())]]);
}

/// A simple query sent after an extended exchange that fails, before its Sync, is ignored by
/// PostgreSQL (it skips everything up to Sync). lakepool counted on its ReadyForQuery and kept
/// the server for that client for good: the next client of the one-server pool waited past
/// `idle_transaction_timeout`. Now the server goes back to the pool at the Sync's
/// ReadyForQuery, and the client's next query gets its own reply.
#[test]
fn a_query_the_server_skips_after_an_error_does_not_keep_the_server() {
    // With statement mapping the Bind fails for one parameter too many; without it, `a` was
    // deallocated when its transaction ended.
    for (extra, code) in [("", "08P01"), ("max_prepared_statements = 0\n", "26000")] {
        let lp = start(extra);
        let mut c = login_with_a(&lp);
        let mut m = wire::bind("", "a", &[Some("1")]);
        m.extend_from_slice(&frontend_msg(b'Q', b"select 42\0"));
        m.extend_from_slice(&wire::sync());
        c.send(&m).expect("send Bind, Query, Sync");
        let r = c.read_until_ready("the failing exchange");
        assert_eq!(
            r.error.as_ref().and_then(|e| e.sqlstate()).as_deref(),
            Some(code),
            "{extra}{:?}",
            r.error.map(|e| e.fields())
        );
        assert!(
            r.rows.is_empty(),
            "the skipped query sent rows: {:?}",
            r.rows
        );
        let mut other = login(&lp, "one");
        other.set_read_timeout(Duration::from_secs(3));
        assert_eq!(
            other.simple_query("select 'other'"),
            [Some("other".into())],
            "{extra}"
        );
        other.terminate();
        c.set_read_timeout(Duration::from_secs(3));
        assert_eq!(c.simple_query("select 7"), [Some("7".into())], "{extra}");
    }
}

/// A COPY FROM STDIN whose data and CopyDone are sent with the query, before the server's
/// CopyInResponse (pgx's `CopyFrom` works this way): the COPY ends at its CopyDone and the
/// server goes back to the pool at the ReadyForQuery. Before, the tracker kept the COPY open
/// for good: the next client of the one-server pool waited until `idle_transaction_timeout`
/// cut the first one off.
#[test]
fn a_copy_sent_whole_before_copy_in_response_releases_the_server() {
    for extra in ["", "max_prepared_statements = 0\n"] {
        let lp = start(extra);
        let mut c = login(&lp, "one");
        c.simple_query("create table if not exists copy_pipelined (a int)");
        let mut m = frontend_msg(b'Q', b"copy copy_pipelined from stdin\0");
        m.extend_from_slice(&frontend_msg(b'd', b"1\n2\n"));
        m.extend_from_slice(&frontend_msg(b'c', b""));
        c.send(&m).expect("send Query, CopyData, CopyDone");
        let r = c.read_until_ready("the pipelined COPY");
        assert!(
            r.error.is_none(),
            "{extra}{:?}",
            r.error.map(|e| e.fields())
        );
        let mut other = login(&lp, "one");
        other.set_read_timeout(Duration::from_secs(3));
        let enough = other.simple_query("select count(*) >= 2 from copy_pipelined");
        assert_eq!(enough, [Some("t".into())], "{extra}");
        other.terminate();
    }
}
