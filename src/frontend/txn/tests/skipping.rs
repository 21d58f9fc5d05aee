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
