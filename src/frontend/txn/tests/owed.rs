//! Statements a server may still have after the server skipped lakepool's requests (fuzz
//! finding 10 and its reviews): Closes owed, and what is owed nothing.

use super::*;
use crate::upstream::prepared::PreparedCache;

/// Cap 2, `a` and `b` prepared; a failing exchange then skips the eviction Close of `b` (and
/// the Parse of `c` that took its place): `b` is owed a Close, `a` is still cached.
fn with_b_owed() -> Rig {
    let mut r = Rig::new();
    r.limits.cache_cap = 2;
    r.send(&[parse("a", "select 1"), parse("b", "select 2"), sync()].concat());
    r.reply(&server_msgs("11Z"));
    let out = r.send(&[bind("a"), exec(), parse("c", "select 3"), sync()].concat());
    assert_eq!(tags(&out), "BECPS");
    assert_eq!(tags(&r.reply(&server_msgs("EZ"))), "EZ");
    assert_eq!((r.cache.len(), r.cache.owed_len()), (1, 1));
    r
}

/// A client that only binds statements the server has still pays the server's debts: without
/// that, a server stays past its statement cap for as long as its clients only bind.
#[test]
fn owed_closes_go_in_front_of_a_bind_of_a_cached_statement() {
    let mut r = with_b_owed();
    let out = r.send(&[bind("a"), exec(), sync()].concat());
    assert_eq!(tags(&out), "CBES");
    assert!(
        messages(&out)[0].1.starts_with(b"Slakepool_"),
        "a Close of lakepool's statement"
    );
    assert_eq!(tags(&r.reply(&server_msgs("32CZ"))), "2CZ");
    assert_eq!((r.cache.len(), r.cache.owed_len()), (1, 0));
    assert!(r.queue.is_empty() && r.idle());
}

#[test]
fn owed_closes_go_in_front_of_a_describe_and_come_back_if_skipped() {
    let mut r = with_b_owed();
    // The Describe's exchange fails before the Close runs: still owed.
    let out = r.send(&[parse("", "selec"), describe("a"), sync()].concat());
    assert_eq!(tags(&out), "PCDS");
    assert_eq!(tags(&r.reply(&server_msgs("EZ"))), "EZ");
    assert_eq!(r.cache.owed_len(), 1);
    let out = r.send(&[describe("a"), sync()].concat());
    assert_eq!(tags(&out), "CDS");
    assert_eq!(tags(&r.reply(&server_msgs("3nZ"))), "nZ");
    assert_eq!(r.cache.owed_len(), 0);
}

/// A Parse sent with nothing in front of it (the server had no copy) and skipped, then an
/// eviction Close of the same statement in a later pipelined exchange, skipped as well: the
/// server never had the statement, so nothing is owed for it; only the statement whose own
/// eviction was skipped is.
#[test]
fn a_statement_whose_only_parse_was_skipped_is_owed_nothing() {
    let mut r = Rig::new();
    r.limits.cache_cap = 1;
    r.send(&[parse("a", "select 1"), sync()].concat());
    r.reply(&server_msgs("1Z"));
    let out = r.send(
        &[
            // Fails: the eviction Close of `a` and the Parse of `c` are skipped.
            parse("", "selec"),
            parse("c", "select 3"),
            sync(),
            // Fails too: the eviction Close of `c` and the Parse of `d` are skipped.
            parse("", "selec"),
            parse("d", "select 4"),
            sync(),
        ]
        .concat(),
    );
    assert_eq!(tags(&out), "PCPS".repeat(2));
    assert_eq!(tags(&r.reply(&server_msgs("EZEZ"))), "EZEZ");
    assert_eq!((r.cache.len(), r.cache.owed_len()), (0, 1), "only `a`");
    // The Close that goes out is `a`'s.
    let out = r.send(&[parse("e", "select 5"), sync()].concat());
    assert_eq!(tags(&out), "CPS");
    let a = r.registry.intern(b"select 1\0\0\0");
    let close_body = &messages(&out)[0].1;
    assert_eq!(&close_body[1..close_body.len() - 1], a.name.as_bytes());
}

/// A client's statement this server lacks is not prepared for a `pg_prepared_statements`
/// query inside a transaction block: a failing Parse would abort the client's transaction with
/// the cause hidden. Outside one it is (with a Sync of lakepool's).
#[test]
fn pg_prepared_statements_prepares_nothing_inside_a_transaction_block() {
    for (status, expected) in [(b'T', "Q"), (b'E', "Q"), (b'I', "PSQ")] {
        let mut r = Rig::new();
        r.send(&[parse("mine", "select 1"), sync()].concat());
        r.reply(&server_msgs("1Z"));
        // Another server, which never had the statement.
        r.cache = PreparedCache::default();
        r.tracker.status = status;
        let out = r.send(&query("select name from pg_prepared_statements"));
        assert_eq!(tags(&out), expected, "status {}", status as char);
    }
}

/// A statement dropped behind lakepool's back (a `DEALLOCATE` inside a function): the server
/// answers a Bind of it with 26000, and lakepool stops trusting its copy, so the next use
/// prepares it again instead of failing until it is evicted.
#[test]
fn a_statement_the_server_says_it_lacks_is_prepared_again() {
    let mut r = Rig::new();
    r.send(&[parse("a", "select 1"), sync()].concat());
    r.reply(&server_msgs("1Z"));
    let out = r.send(&[bind("a"), exec(), sync()].concat());
    assert_eq!(tags(&out), "BES");
    let a = r.registry.intern(b"select 1\0\0\0");
    let lacks_error = |name: &str| {
        let text =
            format!("SERROR\0VERROR\0C26000\0Mprepared statement \"{name}\" does not exist\0\0");
        let mut m = msg(b'E', text.as_bytes());
        m.extend(msg(b'Z', b"I"));
        m
    };
    // A 26000 about something else (a function evaluated at Bind time) changes nothing.
    assert_eq!(tags(&r.reply(&lacks_error("other"))), "EZ");
    assert_eq!((r.cache.len(), r.cache.owed_len()), (1, 0));
    let out = r.send(&[bind("a"), exec(), sync()].concat());
    assert_eq!(tags(&out), "BES");
    let lacks = lacks_error(&a.name);
    assert_eq!(tags(&r.reply(&lacks)), "EZ");
    assert_eq!((r.cache.len(), r.cache.owed_len()), (0, 1));
    let out = r.send(&[bind("a"), exec(), sync()].concat());
    assert_eq!(
        tags(&out),
        "CPBES",
        "closed (to be safe) and prepared again"
    );
    assert_eq!(tags(&r.reply(&server_msgs("312CZ"))), "2CZ");
    assert_eq!((r.cache.len(), r.cache.owed_len()), (1, 0));
    // Another error changes nothing.
    r.send(&[bind("a"), exec(), sync()].concat());
    r.reply(&server_msgs("EZ"));
    assert_eq!((r.cache.len(), r.cache.owed_len()), (1, 0));
}

/// Owed Closes go out (with a Sync of lakepool's) in front of a `pg_prepared_statements`
/// query; they are lakepool's, so the server still counts as idle and the client's statement
/// it lacks is prepared for the view.
#[test]
fn pg_prepared_statements_prepares_behind_owed_closes() {
    let mut r = with_b_owed();
    assert!(r.tracker.server_idle());
    let out = r.send(&query("select name from pg_prepared_statements"));
    assert_eq!(
        tags(&out),
        "CSCPSQ",
        "b is prepared so that the view shows it"
    );
}

/// The same behind a SQL-level `PREPARE` lakepool sends ahead on a server that lacks it.
#[test]
fn pg_prepared_statements_prepares_behind_an_added_prepare() {
    let mut r = Rig::new();
    r.send(&[parse("mine", "select 1"), sync()].concat());
    r.reply(&server_msgs("1Z"));
    r.send(&query("PREPARE p AS select 2"));
    let mut back = msg(b'C', b"PREPARE\0");
    back.extend(msg(b'Z', b"I"));
    r.reply(&back);
    r.client.detached();
    r.client.changes = Default::default();
    r.cache = PreparedCache::default();
    let out = r.send(&query("select name from pg_prepared_statements"));
    assert_eq!(tags(&out), "QPSQ");
}
