//! Framing: messages held until whole or streamed, errors skipping to Sync, Terminate.

use super::*;

#[test]
fn error_mid_pipeline_skips_to_sync() {
    let mut r = Rig::new();
    r.send(&[parse("a", "select 1"), sync()].concat());
    r.reply(&server_msgs("1Z"));
    r.cache = PreparedCache::default();
    // Bind of `a` needs a Parse first; the Parse fails (say, the table went away).
    let out = r.send(&[bind("a"), exec(), parse("b", "select 2"), bind("b"), sync()].concat());
    assert_eq!(tags(&out), "PBEPBS");
    assert_eq!(tags(&r.reply(&server_msgs("EZ"))), "EZ");
    assert!(r.queue.is_empty());
    assert!(r.cache.is_empty(), "nothing was prepared");
}

#[test]
fn messages_split_anywhere_are_held_until_whole() {
    let mut r = Rig::new();
    let input = [parse("a", "select 1"), bind("a"), exec(), sync()].concat();
    let mut out = Vec::new();
    for b in &input {
        out.extend(r.send(std::slice::from_ref(b)));
    }
    assert_eq!(tags(&out), "PBES");
    let reply = server_msgs("12CZ");
    let mut back = Vec::new();
    for b in &reply {
        back.extend(r.reply(std::slice::from_ref(b)));
    }
    assert_eq!(tags(&back), "12CZ");
}

#[test]
fn large_copy_data_streams_and_small_messages_wait_until_whole() {
    let mut r = Rig::new();
    let big = msg(b'd', &vec![b'x'; 40_000]);
    let out = r.send(&big[..4000]);
    assert_eq!(
        out.len(),
        4000,
        "too large for the buffer: streamed as it arrives"
    );
    let mut rest = Vec::new();
    for chunk in big[4000..].chunks(8000) {
        rest.extend(r.send(chunk));
    }
    assert_eq!(rest.len(), big.len() - 4000);
    let small = msg(b'd', &[b'y'; 100]);
    assert!(
        r.send(&small[..50]).is_empty(),
        "a small message goes whole"
    );
    assert_eq!(r.send(&small[50..]), small);
}

#[test]
fn a_large_query_is_held_up_to_the_limit_then_inspected() {
    let mut r = Rig::new();
    let long = format!("SET search_path = a; SELECT '{}'", "x".repeat(30_000));
    let q = query(&long);
    let mut out = Vec::new();
    for chunk in q.chunks(7000) {
        out.extend(r.send(chunk));
    }
    assert_eq!(out, q, "passed unchanged once whole");
    assert!(r.client.changes.all || !r.client.changes.is_empty());
    // Over the hold limit it streams uninspected, and the session is read back after.
    r.limits.hold_limit = 20_000;
    r.client.changes = Default::default();
    let mut out = Vec::new();
    for chunk in q.chunks(7000) {
        out.extend(r.send(chunk));
    }
    assert_eq!(out, q);
    assert!(r.client.changes.all);
}

#[test]
fn a_bind_with_large_parameters_streams_with_its_name_rewritten() {
    let mut r = Rig::new();
    r.send(&[parse("a", "select $1"), sync()].concat());
    r.reply(&server_msgs("1Z"));
    r.limits.hold_limit = 20_000;
    let mut body = b"\0a\0\0\0\0\x01".to_vec();
    body.extend_from_slice(&50_000u32.to_be_bytes());
    body.extend(std::iter::repeat_n(b'z', 50_000));
    body.extend_from_slice(&[0, 0]);
    let b = msg(b'B', &body);
    let mut out = Vec::new();
    for chunk in b.chunks(6000) {
        out.extend(r.send(chunk));
    }
    let m = messages(&out);
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].0, b'B');
    assert!(m[0].1.starts_with(b"\0lakepool_"));
    assert!(m[0].1.ends_with(&body[3..]));
}

#[test]
fn terminate_stops_after_what_came_before() {
    let mut r = Rig::new();
    r.up.feed(&[query("select 1"), msg(b'X', b"")].concat());
    let terminated = r.run(|c| {
        c.frame_up().unwrap();
        c.terminated
    });
    assert!(terminated);
    assert_eq!(tags(&r.up.drain()), "Q");
}

/// Without statement mapping, a Parse too large to hold goes to a server only once its name
/// is in: a server taken before would be released at once with nothing done and taken again,
/// in a loop (found by the `txn` fuzz target).
#[test]
fn a_parse_too_large_to_hold_is_not_ready_before_its_name() {
    use crate::frontend::txn::client::request_ready;
    let limits = TxnLimits {
        cache_cap: 0,
        max_statements: 10,
        max_statement_bytes: 1 << 20,
        hold_limit: 2000,
        max_message: 1 << 24,
    };
    let mut up = Pipe::default();
    let mut head = vec![b'P'];
    head.extend_from_slice(&8_000_000u32.to_be_bytes());
    head.extend_from_slice(&[b'z'; 100]);
    up.feed(&head);
    assert!(
        !request_ready(&mut up, &limits).unwrap(),
        "the name is not in yet"
    );
    up.feed(b"\0select ");
    assert!(
        request_ready(&mut up, &limits).unwrap(),
        "named: it can stream now"
    );
}

/// With statement mapping, a Bind too large to hold goes to a server only once its portal and
/// statement names are in (the same busy loop otherwise; found by the `txn` fuzz target).
#[test]
fn a_bind_too_large_to_hold_is_not_ready_before_its_names() {
    use crate::frontend::txn::client::request_ready;
    let limits = TxnLimits {
        cache_cap: 10,
        max_statements: 10,
        max_statement_bytes: 1 << 20,
        hold_limit: 2000,
        max_message: 1 << 24,
    };
    let mut up = Pipe::default();
    let mut head = vec![b'B'];
    head.extend_from_slice(&5_000_000u32.to_be_bytes());
    head.extend_from_slice(b"\0stmt_na");
    up.feed(&head);
    assert!(
        !request_ready(&mut up, &limits).unwrap(),
        "the statement name is not in yet"
    );
    up.feed(b"me\0\0\0");
    assert!(
        request_ready(&mut up, &limits).unwrap(),
        "names in: it can stream now"
    );
}
