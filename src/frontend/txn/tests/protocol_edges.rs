//! Edges found by the third review of the reply queue in both modes: COPY started by a simple
//! query or an Execute (pipelined, failing, CopyFail), FunctionCall, Flush, FATAL errors during
//! lakepool's own requests, translated 26000 messages, refused DEALLOCATE; with and without
//! statement mapping.

use super::*;

fn without_mapping() -> Rig {
    let mut r = Rig::new();
    r.limits.cache_cap = 0;
    r
}

fn g() -> Vec<u8> {
    msg(b'G', b"\0\0\0")
}

fn h_out() -> Vec<u8> {
    msg(b'H', b"\0\0\0")
}

fn z(s: u8) -> Vec<u8> {
    msg(b'Z', &[s])
}

fn err(code: &str, m: &str) -> Vec<u8> {
    msg(
        b'E',
        format!("SERROR\0VERROR\0C{code}\0M{m}\0\0").as_bytes(),
    )
}

#[test]
fn without_mapping_simple_copy_in() {
    let mut r = without_mapping();
    assert_eq!(tags(&r.send(&query("copy t from stdin"))), "Q");
    assert_eq!(tags(&r.reply(&g())), "G");
    assert_eq!(
        tags(&r.send(&[msg(b'd', b"1\n"), msg(b'c', b"")].concat())),
        "dc"
    );
    assert_eq!(tags(&r.reply(&server_msgs("CZ"))), "CZ");
    assert!(r.idle(), "{:?} {:?}", r.tracker, r.queue);
}

/// A simple COPY whose data and CopyDone go before CopyInResponse (pgx's CopyFrom streams
/// without waiting for it) ends at its CopyDone, with mapping on and off.
#[test]
fn a_simple_copy_in_pipelined_ends_in_both_modes() {
    for cache_cap in [0, 10] {
        let mut r = Rig::new();
        r.limits.cache_cap = cache_cap;
        let out = r.send(
            &[
                query("copy t from stdin"),
                msg(b'd', b"1\n"),
                msg(b'c', b""),
            ]
            .concat(),
        );
        assert_eq!(tags(&out), "Qdc");
        assert_eq!(tags(&r.reply(&[g(), server_msgs("CZ")].concat())), "GCZ");
        assert!(r.idle(), "cap {cache_cap}: {:?} {:?}", r.tracker, r.queue);
    }
}

#[test]
fn without_mapping_extended_copy_in_pipelined() {
    let mut r = without_mapping();
    let out = r.send(
        &[
            parse("", "copy t from stdin"),
            bind(""),
            exec(),
            sync(),
            msg(b'd', b"1\n"),
            msg(b'c', b""),
            sync(),
        ]
        .concat(),
    );
    assert_eq!(tags(&out), "PBESdcS");
    assert_eq!(
        tags(&r.reply(&[server_msgs("12"), g(), server_msgs("CZ")].concat())),
        "12GCZ"
    );
    assert!(r.idle(), "{:?} {:?}", r.tracker, r.queue);
}

#[test]
fn without_mapping_extended_copy_in_fails_mid_stream() {
    let mut r = without_mapping();
    r.send(&[parse("", "copy t from stdin"), bind(""), exec(), sync()].concat());
    r.reply(&[server_msgs("12"), g()].concat());
    r.send(&msg(b'd', b"x\n"));
    r.reply(&err("22P02", "bad"));
    r.send(&[msg(b'd', b"1\n"), msg(b'c', b""), sync()].concat());
    assert_eq!(tags(&r.reply(&server_msgs("Z"))), "Z");
    assert!(r.idle(), "{:?} {:?}", r.tracker, r.queue);
}

#[test]
fn without_mapping_copy_fail_simple_and_extended() {
    let mut r = without_mapping();
    r.send(&query("copy t from stdin"));
    r.reply(&g());
    r.send(&msg(b'f', b"no\0"));
    assert_eq!(
        tags(&r.reply(&[err("57014", "COPY from stdin failed"), z(b'I')].concat())),
        "EZ"
    );
    assert!(r.idle(), "{:?} {:?}", r.tracker, r.queue);
    r.send(&[bind("x"), exec(), sync()].concat());
    r.reply(&[server_msgs("2"), g()].concat());
    r.send(&[msg(b'f', b"no\0"), sync()].concat());
    assert_eq!(
        tags(&r.reply(&[err("57014", "COPY from stdin failed"), z(b'I')].concat())),
        "EZ"
    );
    assert!(r.idle(), "{:?} {:?}", r.tracker, r.queue);
}

#[test]
fn without_mapping_copy_out() {
    let mut r = without_mapping();
    r.send(&query("copy t to stdout"));
    assert_eq!(
        tags(
            &r.reply(
                &[
                    h_out(),
                    msg(b'd', b"1\n"),
                    msg(b'c', b""),
                    server_msgs("CZ")
                ]
                .concat()
            )
        ),
        "HdcCZ"
    );
    assert!(r.idle(), "{:?} {:?}", r.tracker, r.queue);
    r.send(&[parse("", "copy t to stdout"), bind(""), exec(), sync()].concat());
    assert_eq!(
        tags(
            &r.reply(
                &[
                    server_msgs("12"),
                    h_out(),
                    msg(b'd', b"1\n"),
                    msg(b'c', b""),
                    server_msgs("CZ")
                ]
                .concat()
            )
        ),
        "12HdcCZ"
    );
    assert!(r.idle(), "{:?} {:?}", r.tracker, r.queue);
}

#[test]
fn without_mapping_function_call_flush_empty_suspended_notices() {
    let mut r = without_mapping();
    let f = msg(b'F', b"\0\0\x05\x25\0\0\0\0\0\0");
    r.send(&f);
    assert_eq!(tags(&r.reply(&server_msgs("VZ"))), "VZ");
    assert!(r.idle());
    r.send(
        &[
            parse("", "select 1"),
            bind(""),
            describe(""),
            exec(),
            msg(b'H', b""),
        ]
        .concat(),
    );
    r.reply(&server_msgs("12TDC"));
    assert!(!r.idle());
    r.send(&sync());
    r.reply(&server_msgs("Z"));
    assert!(r.idle(), "{:?} {:?}", r.tracker, r.queue);
    r.send(&query(""));
    r.reply(&server_msgs("IZ"));
    assert!(r.idle());
    r.send(
        &[
            parse("", "select 1"),
            bind(""),
            msg(b'E', b"\0\0\0\0\x01"),
            exec(),
            sync(),
        ]
        .concat(),
    );
    r.reply(&server_msgs("12DsDCZ"));
    assert!(r.idle(), "{:?} {:?}", r.tracker, r.queue);
    r.send(&query("select 1"));
    let mut back = msg(b'N', b"SNOTICE\0\0");
    back.extend(msg(b'S', b"application_name\0x\0"));
    back.extend(msg(b'A', b"\0\0\0\x01c\0p\0"));
    back.extend(server_msgs("TDCZ"));
    assert_eq!(tags(&r.reply(&back)), "NSATDCZ");
    assert!(r.idle());
}

/// Two COPY FROM STDIN in one query, all pipelined.
#[test]
fn without_mapping_two_copies_one_query_pipelined() {
    let mut r = without_mapping();
    r.send(
        &[
            query("copy a from stdin; copy b from stdin"),
            msg(b'd', b"1\n"),
            msg(b'c', b""),
            msg(b'd', b"1\n"),
            msg(b'c', b""),
        ]
        .concat(),
    );
    r.reply(&[g(), server_msgs("C"), g(), server_msgs("CZ")].concat());
    assert!(r.idle(), "{:?} {:?}", r.tracker, r.queue);
}

/// Extended exchange error with the FATAL severity.
#[test]
fn without_mapping_fatal() {
    let mut r = without_mapping();
    r.send(&[parse("", "select 1"), bind(""), exec(), sync()].concat());
    let back = r.reply(
        &[
            server_msgs("12"),
            msg(b'E', b"SFATAL\0VFATAL\0C57P01\0Mterminating\0\0"),
        ]
        .concat(),
    );
    assert_eq!(tags(&back), "12E");
    assert!(r.tracker.server_fatal);
}

/// DISCARD ALL refused by the server (inside a transaction block): the client's SQL-level
/// statements still exist (PG 15: EXECUTE p works after ROLLBACK).
/// `DEALLOCATE ALL; selec`: a syntax error, nothing runs (PG 15: EXECUTE p still works).
/// DEALLOCATE ALL pipelined after a failing Bind: skipped by the server (PG 15: EXECUTE p works).
/// lakepool's PREPARE p skipped with a failing Bind's exchange; an EXECUTE p pipelined in the
/// next exchange (PG 15 direct: p exists, EXECUTE works).
/// A lone `DEALLOCATE a` lakepool answers itself inside a failed transaction: it writes the
/// 25P02 error PostgreSQL would, but the name is gone all the same (PG 15: after ROLLBACK,
/// Bind a still works).
#[test]
fn a_refused_deallocate_in_a_failed_transaction_keeps_the_name() {
    let mut r = Rig::new();
    r.send(&[parse("a", "select 1"), sync()].concat());
    r.reply(&server_msgs("1Z"));
    r.send(&query("BEGIN"));
    r.reply(&[msg(b'C', b"BEGIN\0"), z(b'T')].concat());
    r.send(&query("selec"));
    r.reply(&[err("42601", "syntax error"), z(b'E')].concat());
    assert!(r.send(&query("DEALLOCATE a")).is_empty());
    let back = r.due();
    assert_eq!(error_code(&back).as_deref(), Some("25P02"));
    r.send(&query("ROLLBACK"));
    r.reply(&[msg(b'C', b"ROLLBACK\0"), z(b'I')].concat());
    assert_eq!(
        r.client.statement_count(),
        1,
        "a still exists on a direct connection"
    );
}

/// The same for a SQL-level statement not on this server.
#[test]
fn a_refused_sql_deallocate_in_a_failed_transaction_keeps_the_statement() {
    let mut r = Rig::new();
    r.send(&query("PREPARE p AS select 1"));
    r.reply(&[msg(b'C', b"PREPARE\0"), z(b'I')].concat());
    r.client.detached();
    r.client.changes = Default::default();
    r.send(&query("BEGIN"));
    r.reply(&[msg(b'C', b"BEGIN\0"), z(b'T')].concat());
    r.send(&query("selec"));
    r.reply(&[err("42601", "syntax error"), z(b'E')].concat());
    assert!(r.send(&query("DEALLOCATE p")).is_empty());
    assert_eq!(error_code(&r.due()).as_deref(), Some("25P02"));
    r.send(&query("ROLLBACK"));
    r.reply(&[msg(b'C', b"ROLLBACK\0"), z(b'I')].concat());
    assert_eq!(
        tags(&r.send(&query("EXECUTE p"))),
        "QQ",
        "PREPARE p sent ahead of EXECUTE p"
    );
}

/// DISCARD ALL pipelined after a failing Bind: skipped by the server.
/// `PREPARE p AS select 2` while p exists fails (42P05); p is still `select 1`.
#[test]
fn without_mapping_error_flows() {
    let mut r = without_mapping();
    // Error at Sync (deferred constraint at the implicit commit), then a pipelined exchange.
    r.send(
        &[
            bind(""),
            exec(),
            sync(),
            query("select 1"),
            bind(""),
            exec(),
            sync(),
        ]
        .concat(),
    );
    let back = r.reply(
        &[
            server_msgs("2C"),
            err("23505", "dup"),
            z(b'I'),
            server_msgs("TDCZ2CZ"),
        ]
        .concat(),
    );
    assert_eq!(tags(&back), "2CEZTDCZ2CZ");
    assert!(r.idle(), "{:?} {:?}", r.tracker, r.queue);
    // Error mid pipeline: Parse fails, everything up to Sync skipped incl. Q and F.
    let f = msg(b'F', b"\0\0\x05\x25\0\0\0\0\0\0");
    let out = r.send(
        &[
            parse("", "selec"),
            bind(""),
            exec(),
            query("select 2"),
            f.clone(),
            sync(),
            query("select 3"),
        ]
        .concat(),
    );
    assert_eq!(tags(&out), "PBEQFSQ");
    let back = r.reply(&[err("42601", "syntax"), z(b'I'), server_msgs("TDCZ")].concat());
    assert_eq!(tags(&back), "EZTDCZ");
    assert!(r.idle(), "{:?} {:?}", r.tracker, r.queue);
    // Error with a Flush, no Sync yet.
    r.send(&[parse("", "selec"), msg(b'H', b"")].concat());
    r.reply(&err("42601", "syntax"));
    assert!(r.send(&f).is_empty());
    assert_eq!(tags(&r.send(&[bind(""), exec(), sync()].concat())), "BES");
    r.reply(&z(b'I'));
    assert!(r.idle(), "{:?} {:?}", r.tracker, r.queue);
}

/// A 26000 from a server with a translated lc_messages (PG 15 de: `vorbereitete Anweisung
/// »%s« existiert nicht`) about lakepool's own statement.
#[test]
fn a_translated_26000_still_distrusts_the_statement() {
    let mut r = Rig::new();
    r.send(&[parse("a", "select 1"), sync()].concat());
    r.reply(&server_msgs("1Z"));
    assert_eq!(tags(&r.send(&[bind("a"), exec(), sync()].concat())), "BES");
    let a = r.registry.intern(b"select 1\0\0\0");
    let text = format!(
        "SFEHLER\0VERROR\0C26000\0Mvorbereitete Anweisung \u{bb}{}\u{ab} existiert nicht\0\0",
        a.name
    );
    let mut m = msg(b'E', text.as_bytes());
    m.extend(z(b'I'));
    assert_eq!(tags(&r.reply(&m)), "EZ");
    assert_eq!(
        (r.cache.len(), r.cache.owed_len()),
        (0, 1),
        "the server's copy is no longer trusted"
    );
}

/// The server is terminated (57P01 FATAL) while lakepool's own PREPARE, sent ahead of the
/// client's EXECUTE, is the head of the queue: the client must get the server's reason.
#[test]
fn a_fatal_error_during_lakepools_own_prepare_reaches_the_client() {
    let mut r = Rig::new();
    r.send(&query("PREPARE p AS select 1"));
    r.reply(&server_msgs("CZ"));
    r.client.detached();
    r.client.changes = Default::default();
    assert_eq!(tags(&r.send(&query("EXECUTE p"))), "QQ");
    let fatal = msg(
        b'E',
        b"SFATAL\0VFATAL\0C57P01\0Mterminating connection due to administrator command\0\0",
    );
    assert_eq!(
        tags(&r.reply(&fatal)),
        "E",
        "the server's reason, then the close"
    );
    assert!(r.tracker.server_fatal);
}

/// An extended COPY failing before CopyInResponse (Sync sent at once,
/// data pipelined) then a simple COPY: the server is taken as idle mid-COPY.
#[test]
fn a_failed_extended_copy_does_not_close_a_later_simple_copy() {
    let mut r = without_mapping();
    r.send(
        &[
            parse("", "copy nope from stdin"),
            bind(""),
            exec(),
            sync(),
            msg(b'd', b"1\n"),
            msg(b'c', b""),
            query("copy t from stdin"),
        ]
        .concat(),
    );
    let out = r.reply(
        &[
            server_msgs("12"),
            err("42P01", "relation \"nope\" does not exist"),
            z(b'I'),
            g(),
        ]
        .concat(),
    );
    assert_eq!(tags(&out), "12EZG");
    assert!(r.tracker.copy_in, "{:?} {:?}", r.tracker, r.queue);
    assert!(
        !r.idle(),
        "released mid-COPY: {:?} {:?}",
        r.tracker,
        r.queue
    );
}

/// A simple COPY failing mid-stream, the client moving on without
/// CopyDone (the server ignores one anyway): the server is never idle again.
#[test]
fn a_copy_failed_mid_stream_is_over_at_ready_for_query() {
    let mut r = without_mapping();
    r.send(&query("copy t from stdin"));
    r.reply(&g());
    r.send(&msg(b'd', b"x\n"));
    assert_eq!(
        tags(&r.reply(&[err("22P02", "bad"), z(b'I')].concat())),
        "EZ"
    );
    r.send(&query("select 1"));
    assert_eq!(tags(&r.reply(&server_msgs("CZ"))), "CZ");
    assert!(r.idle(), "{:?} {:?}", r.tracker, r.queue);
}

/// Fuzzing finding 12: the start of a message the server sends after its ReadyForQuery (an
/// asynchronous ParameterStatus, a FATAL error) keeps the server until the message is whole
/// and forwarded. Released with it unread, the bytes went with the buffer and the server's
/// next client framed the rest of the message as a new one.
#[test]
fn a_server_message_half_read_after_ready_for_query_keeps_the_server() {
    for mut r in [Rig::new(), without_mapping()] {
        assert_eq!(tags(&r.send(&query("select 1"))), "Q");
        let status = msg(b'S', b"TimeZone\0UTC\0");
        let replies = [server_msgs("CZ"), status[..7].to_vec()].concat();
        assert_eq!(tags(&r.reply(&replies)), "CZ");
        assert!(!r.idle(), "released with a message half read");
        assert_eq!(tags(&r.reply(&status[7..])), "S");
        assert!(r.idle());
    }
}
