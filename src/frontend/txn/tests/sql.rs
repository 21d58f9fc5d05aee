//! SQL inspection: session changes noted and warned about, SQL `DEALLOCATE` and `DISCARD ALL`,
//! `pg_prepared_statements`, prepare-only input answered without a server.

use super::*;
use crate::upstream::prepared::PreparedCache;

#[test]
fn lone_deallocate_of_a_mapped_statement_is_answered_locally() {
    let mut r = Rig::new();
    r.send(&[parse("S_1", "select 1"), sync()].concat());
    r.reply(&server_msgs("1Z"));
    let out = r.send(&query("DEALLOCATE \"S_1\""));
    assert!(out.is_empty(), "nothing for the server");
    let back = r.due();
    assert_eq!(tags(&back), "CZ");
    assert_eq!(&messages(&back)[0].1, b"DEALLOCATE\0");
    assert_eq!(r.client.statement_count(), 0);
    // Unknown names go to the server, which answers as PostgreSQL does.
    assert_eq!(tags(&r.send(&query("DEALLOCATE nope"))), "Q");
}

#[test]
fn pipelined_deallocate_gets_the_status_of_its_place_in_the_stream() {
    let mut r = Rig::new();
    r.send(&[parse("S_1", "select 1"), sync()].concat());
    r.reply(&server_msgs("1Z"));
    // BEGIN, then DEALLOCATE, pipelined: the made-up ReadyForQuery follows BEGIN's.
    let out = r.send(&[query("BEGIN"), query("DEALLOCATE \"S_1\""), query("COMMIT")].concat());
    assert_eq!(tags(&out), "QQ");
    let mut reply = msg(b'C', b"BEGIN\0");
    reply.extend(msg(b'Z', b"T"));
    reply.extend(msg(b'C', b"COMMIT\0"));
    reply.extend(msg(b'Z', b"I"));
    let back = messages(&r.reply(&reply));
    let statuses: Vec<u8> = back
        .iter()
        .filter(|(t, _)| *t == b'Z')
        .map(|(_, b)| b[0])
        .collect();
    assert_eq!(statuses, b"TTI");
}

#[test]
fn discard_all_forgets_statements_everywhere() {
    let mut r = Rig::new();
    r.send(&[parse("a", "select 1"), sync()].concat());
    r.reply(&server_msgs("1Z"));
    r.send(&query("DISCARD ALL"));
    assert!(r.client.changes.all);
    let mut reply = msg(b'C', b"DISCARD ALL\0");
    reply.extend(msg(b'Z', b"I"));
    r.reply(&reply);
    assert!(r.cache.is_empty());
    assert_eq!(r.client.statement_count(), 0);
}

#[test]
fn session_changes_are_noted_without_warnings() {
    let mut r = Rig::new();
    let out = r.send(&query(
        "SET search_path TO a; SET work_mem = '8MB'; SELECT set_config('app.x', '1', false)",
    ));
    assert_eq!(tags(&out), "Q");
    assert!(!r.client.changes.is_empty());
    assert!(!r.client.changes.all);
    assert_eq!(
        tags(&r.due()),
        "",
        "no warning: every parameter follows its client"
    );
    // A server ParameterStatus (a SET inside a function) is noted too.
    r.client.changes = Default::default();
    let mut reply = msg(b'S', b"application_name\0x\0");
    reply.extend(msg(b'C', b"SELECT 1\0"));
    reply.extend(msg(b'Z', b"I"));
    r.reply(&reply);
    assert!(!r.client.changes.is_empty());
    assert_eq!(r.params.get("application_name"), Some("x"));
}

#[test]
fn session_only_features_are_warned_about_and_undone() {
    let mut r = Rig::new();
    r.send(&query("LISTEN ch"));
    let back = r.due();
    assert_eq!(tags(&back), "N");
    assert!(r.client.changes.unlisten);
    r.send(&query("CREATE TEMP TABLE t (a int)"));
    assert!(r.client.changes.discard_temp);
}

#[test]
fn prepare_only_input_is_answered_without_a_server() {
    let registry = StatementRegistry::default();
    let limits = Rig::new().limits;
    let mut c = TxnClient::default();
    let mut up = Pipe::default();
    up.feed(&[parse("P_0", "select 1"), sync()].concat());
    assert!(
        c.answer_without_server(&mut up, &limits, &registry, None)
            .is_none(),
        "never accepted by a server yet"
    );
    registry
        .intern(b"select 1\0\0\0")
        .accepted
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let reply = c
        .answer_without_server(&mut up, &limits, &registry, None)
        .unwrap();
    assert_eq!(tags(&reply), "1Z");
    assert!(up.unread().is_empty());
    assert_eq!(c.statement_count(), 1);
    // A lone Sync, and a Flush before a Close, are answered too.
    up.feed(&sync());
    let reply = c
        .answer_without_server(&mut up, &limits, &registry, None)
        .unwrap();
    assert_eq!(tags(&reply), "Z");
    up.feed(&[msg(b'H', b""), close("P_0"), sync()].concat());
    let reply = c
        .answer_without_server(&mut up, &limits, &registry, None)
        .unwrap();
    assert_eq!(tags(&reply), "3Z");
    assert_eq!(c.statement_count(), 0);
    // Anything that executes needs a server, and so does a simple query.
    up.feed(&[bind("P_0"), exec(), sync()].concat());
    assert!(
        c.answer_without_server(&mut up, &limits, &registry, None)
            .is_none()
    );
    assert!(!up.unread().is_empty());
    let mut up = Pipe::default();
    up.feed(&query("select 1"));
    assert!(
        c.answer_without_server(&mut up, &limits, &registry, None)
            .is_none()
    );
}

#[test]
fn pg_prepared_statements_shows_the_clients_own_names() {
    let mut r = Rig::new();
    r.send(&[parse("mine", "select 1"), sync()].concat());
    r.reply(&server_msgs("1Z"));
    let out = r.send(&query("select name from pg_prepared_statements"));
    let m = messages(&out);
    assert_eq!(tags(&out), "Q");
    let sql = String::from_utf8_lossy(&m[0].1);
    assert!(sql.contains("E'mine'"), "{sql}");
    assert!(sql.contains("NOT LIKE"), "{sql}");
}

#[test]
fn pg_prepared_statements_in_an_unnamed_parse_shows_the_clients_own_names() {
    let mut r = Rig::new();
    r.send(&[parse("mine", "select 1"), sync()].concat());
    r.reply(&server_msgs("1Z"));
    let out = r.send(&[parse("", "select name from pg_prepared_statements"), sync()].concat());
    let m = messages(&out);
    assert_eq!(tags(&out), "PS");
    let sql = String::from_utf8_lossy(&m[0].1);
    assert!(sql.contains("E'mine'"), "{sql}");
    assert!(sql.contains("NOT LIKE"), "{sql}");
    // A named one is left as it is.
    let out = r.send(
        &[
            parse("n", "select name from pg_prepared_statements"),
            sync(),
        ]
        .concat(),
    );
    assert!(!String::from_utf8_lossy(&out).contains("NOT LIKE"));
}

/// Rewritten queries are larger than what the client sent: one read buffer of small queries
/// must not become any amount of server-bound output in one round (found by the `txn` fuzz
/// target). Framing stops past the pending-output bound and resumes once it is written.
#[test]
fn rewritten_queries_are_framed_only_while_their_output_is_bounded() {
    let mut r = Rig::new();
    for i in 0..10 {
        let name = format!("{i}{}", "n".repeat(300));
        r.send(&[parse(&name, "select 1"), sync()].concat());
        r.reply(&server_msgs("1Z"));
    }
    let one = query("select name from pg_prepared_statements");
    let count = 300;
    r.up.feed(&one.repeat(count));
    let mut rounds = Vec::new();
    loop {
        r.run(|c| c.frame_up()).unwrap();
        let out = r.up.drain();
        if out.is_empty() {
            break;
        }
        rounds.push(out);
    }
    let largest = rounds.iter().map(Vec::len).max().unwrap_or(0);
    let rewritten = messages(&rounds[0])[0].1.len() + 5;
    assert!(
        rewritten > 3_000,
        "each query names every statement: {rewritten} bytes"
    );
    assert!(
        largest <= 64 * 1024 + rewritten,
        "{largest} bytes out in one round"
    );
    let sent: usize = rounds.iter().map(|o| tags(o).len()).sum();
    assert_eq!(sent, count, "every query goes out, over several rounds");
}

/// A `PREPARE` after `DEALLOCATE ALL` in the same query makes its statement after the tag that
/// clears the client's SQL-level statements: it is still deallocated at release (if it exists),
/// not left on the server for the next client.
#[test]
fn a_prepare_after_deallocate_all_is_still_deallocated_at_release() {
    let mut r = Rig::new();
    r.send(&query("DEALLOCATE ALL; PREPARE p AS select 1"));
    let mut reply = msg(b'C', b"DEALLOCATE ALL\0");
    reply.extend(msg(b'C', b"PREPARE\0"));
    reply.extend(msg(b'Z', b"I"));
    r.reply(&reply);
    assert!(r.client.needs_follow_up());
    r.client.detached();
    assert_eq!(r.client.changes.deallocate, ["p"]);
    // And it is still the client's: on the next server it is prepared before its EXECUTE.
    r.client.changes = Default::default();
    r.cache = PreparedCache::default();
    let out = r.send(&query("EXECUTE p"));
    assert_eq!(tags(&out), "QQ", "PREPARE p sent ahead of EXECUTE p");
}

/// Fuzzing finding 13: a `DEALLOCATE` lakepool answers is refused on its own in a failed
/// transaction (the name comes back), and a `ROLLBACK` after it lets a Parse pipelined behind
/// it succeed, so the names that may come back count against the client's limit whether or
/// not a Sync follows them.
#[test]
fn a_deallocate_refused_in_a_failed_transaction_does_not_pass_the_statement_limit() {
    let mut r = Rig::new();
    r.limits.max_statements = 1;
    r.send(&[parse("a", "select 1"), sync()].concat());
    r.reply(&server_msgs("1Z"));
    assert_eq!(tags(&r.send(&query("BEGIN"))), "Q");
    r.reply(&[msg(b'C', b"BEGIN\0"), msg(b'Z', b"T")].concat());
    // Pipelined: a failing query, DEALLOCATE a (answered by lakepool), ROLLBACK, Parse b.
    let out = r.send(
        &[
            query("select boom"),
            query("DEALLOCATE a"),
            query("ROLLBACK"),
            parse("b", "select 2"),
            sync(),
        ]
        .concat(),
    );
    assert_eq!(tags(&out), "QQS", "Parse b refused: a may come back");
    let back = r.reply(
        &[
            msg(b'E', b"SERROR\0VERROR\0C42703\0Mboom\0\0"),
            msg(b'Z', b"E"),
            msg(b'C', b"ROLLBACK\0"),
            msg(b'Z', b"I"),
            msg(b'Z', b"I"),
        ]
        .concat(),
    );
    let mut back = back;
    back.extend(r.due());
    // The DEALLOCATE refused (25P02) keeps a; b gets the limit's error.
    assert_eq!(tags(&back), "EZEZCZEZ");
    assert_eq!(r.client.statement_count(), 1);
    assert!(r.idle());
}

/// SQL-level `PREPARE`s count against the client's statement budget with its protocol-level
/// statements: lakepool keeps each one's text to prepare it again on the next server, so
/// without the bound a client could make lakepool hold any amount of it.
#[test]
fn sql_prepares_share_the_client_statement_budget() {
    let mut r = Rig::new();
    r.limits.max_statements = 2;
    let prepared = |r: &mut Rig, sql: &str| {
        assert_eq!(tags(&r.send(&query(sql))), "Q");
        r.reply(&[msg(b'C', b"PREPARE\0"), msg(b'Z', b"I")].concat());
    };
    prepared(&mut r, "PREPARE p1 AS select 1");
    r.send(&[parse("a", "select 2"), sync()].concat());
    r.reply(&server_msgs("1Z"));
    // Two of two: a third name, SQL-level or not, gets 54000 and reaches no server.
    assert!(r.send(&query("PREPARE p2 AS select 3")).is_empty());
    let back = r.due();
    assert_eq!(tags(&back), "EZ");
    assert_eq!(error_code(&back).as_deref(), Some("54000"));
    // A Parse of a third name, or one whose text prepares one, is refused the same way (its
    // Sync goes on to the server).
    for p in [parse("b", "select 4"), parse("", "PREPARE p3 AS select 5")] {
        assert_eq!(tags(&r.send(&[p, sync()].concat())), "S");
        let back = r.reply(&server_msgs("Z"));
        assert_eq!(tags(&back), "EZ");
        assert_eq!(error_code(&back).as_deref(), Some("54000"));
    }
    // DEALLOCATE makes room (the server's answer gives it back).
    assert_eq!(tags(&r.send(&query("DEALLOCATE p1"))), "Q");
    r.reply(&[msg(b'C', b"DEALLOCATE\0"), msg(b'Z', b"I")].concat());
    prepared(&mut r, "PREPARE p2 AS select 3");
    assert!(r.idle());
}

#[test]
fn a_sql_prepare_past_the_byte_budget_is_refused_whole() {
    let mut r = Rig::new();
    r.limits.max_statement_bytes = 100;
    let long = format!(
        "SET work_mem = '1MB'; PREPARE p AS select '{}'",
        "x".repeat(100)
    );
    assert!(r.send(&query(&long)).is_empty(), "nothing of it runs");
    let back = r.due();
    assert_eq!(error_code(&back).as_deref(), Some("54000"));
    assert!(r.client.changes.is_empty(), "the SET did not run either");
    // EXECUTE p is not prepared ahead: p does not exist.
    assert_eq!(tags(&r.send(&query("EXECUTE p"))), "Q");
}

/// Finding 13's SQL-level twin: a `DEALLOCATE` of a SQL-level statement that lakepool answers
/// (the statement is not on this server) gives the name back when refused in a failed
/// transaction, so a `PREPARE` pipelined behind it and a `ROLLBACK` finds no room.
#[test]
fn a_sql_deallocate_refused_in_a_failed_transaction_does_not_pass_the_budget() {
    let mut r = Rig::new();
    r.limits.max_statements = 1;
    assert_eq!(tags(&r.send(&query("PREPARE p AS select 1"))), "Q");
    r.reply(&[msg(b'C', b"PREPARE\0"), msg(b'Z', b"I")].concat());
    // Released: p is deallocated from that server, lakepool keeps its text for the next.
    r.client.detached();
    r.client.changes = Default::default();
    assert_eq!(tags(&r.send(&query("BEGIN"))), "Q");
    r.reply(&[msg(b'C', b"BEGIN\0"), msg(b'Z', b"T")].concat());
    let out = r.send(
        &[
            query("select boom"),
            query("DEALLOCATE p"),
            query("ROLLBACK"),
            query("PREPARE q AS select 2"),
        ]
        .concat(),
    );
    assert_eq!(tags(&out), "QQ", "PREPARE q refused: p may come back");
    let mut back = r.reply(
        &[
            msg(b'E', b"SERROR\0VERROR\0C42703\0Mboom\0\0"),
            msg(b'Z', b"E"),
            msg(b'C', b"ROLLBACK\0"),
            msg(b'Z', b"I"),
        ]
        .concat(),
    );
    back.extend(r.due());
    assert_eq!(tags(&back), "EZEZCZEZ");
    let codes: Vec<String> = messages(&back)
        .into_iter()
        .filter(|(t, _)| *t == b'E')
        .map(|(_, body)| crate::proto::backend::parse_error(&body).code)
        .collect();
    assert_eq!(codes, ["42703", "25P02", "54000"]);
    assert_eq!(r.client.budgeted_statements(), 1);
    assert!(r.idle());
}
