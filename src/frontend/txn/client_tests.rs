use super::*;
use crate::frontend::pump::{Core, IdleLimits, TxnPart};
use crate::frontend::txn::TxnLimits;
use crate::frontend::txn::replies::ReplyQueue;
use crate::pool::statements::StatementRegistry;
use crate::upstream::params::ParamMap;
use crate::upstream::prepared::PreparedCache;

fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    v.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    v.extend_from_slice(body);
    v
}

fn parse(name: &str, sql: &str) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(name.as_bytes());
    b.push(0);
    b.extend_from_slice(sql.as_bytes());
    b.extend_from_slice(&[0, 0, 0]);
    msg(b'P', &b)
}

fn bind(stmt: &str) -> Vec<u8> {
    let mut b = vec![0];
    b.extend_from_slice(stmt.as_bytes());
    b.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0]);
    msg(b'B', &b)
}

fn close(stmt: &str) -> Vec<u8> {
    let mut b = vec![b'S'];
    b.extend_from_slice(stmt.as_bytes());
    b.push(0);
    msg(b'C', &b)
}

fn describe(stmt: &str) -> Vec<u8> {
    let mut b = vec![b'S'];
    b.extend_from_slice(stmt.as_bytes());
    b.push(0);
    msg(b'D', &b)
}

fn query(sql: &str) -> Vec<u8> {
    let mut b = sql.as_bytes().to_vec();
    b.push(0);
    msg(b'Q', &b)
}

fn exec() -> Vec<u8> {
    msg(b'E', b"\0\0\0\0\0")
}

fn sync() -> Vec<u8> {
    msg(b'S', b"")
}

/// Splits a byte stream into (tag, body) pairs.
fn messages(mut b: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while b.len() >= 5 {
        let len = u32::from_be_bytes([b[1], b[2], b[3], b[4]]) as usize;
        out.push((b[0], b[5..1 + len].to_vec()));
        b = &b[1 + len..];
    }
    out
}

fn tags(b: &[u8]) -> String {
    messages(b).iter().map(|(t, _)| char::from(*t)).collect()
}

fn error_code(b: &[u8]) -> Option<String> {
    messages(b)
        .into_iter()
        .find(|(t, _)| *t == b'E')
        .map(|(_, body)| crate::proto::backend::parse_error(&body).code)
}

/// One client and one server connection of one pool, driven through the pump's framing
/// without sockets.
struct Rig {
    client: TxnClient,
    queue: ReplyQueue,
    cache: PreparedCache,
    registry: StatementRegistry,
    limits: TxnLimits,
    tracker: Tracker,
    up: Pipe,
    down: Pipe,
    params: ParamMap,
    idle: IdleLimits,
}

impl Rig {
    fn new() -> Self {
        Self {
            client: TxnClient::default(),
            queue: ReplyQueue::default(),
            cache: PreparedCache::default(),
            registry: StatementRegistry::default(),
            limits: TxnLimits {
                cache_cap: 10,
                max_statements: 1000,
                max_statement_bytes: 1 << 20,
                hold_limit: 1 << 20,
                max_message: 1 << 24,
            },
            tracker: Tracker::default(),
            up: Pipe::default(),
            down: Pipe::default(),
            params: ParamMap::new(),
            idle: IdleLimits::default(),
        }
    }

    fn run<R>(&mut self, f: impl FnOnce(&mut Core<'_>) -> R) -> R {
        let mut core = Core {
            up: &mut self.up,
            down: &mut self.down,
            tracker: &mut self.tracker,
            server_params: &mut self.params,
            txn: Some(TxnPart {
                client: &mut self.client,
                at: Attached {
                    queue: &mut self.queue,
                    cache: &mut self.cache,
                    registry: &self.registry,
                    limits: &self.limits,
                },
            }),
            release_when_idle: true,
            limits: &mut self.idle,
            max_message: 1 << 24,
            terminated: false,
            client_moved: false,
        };
        f(&mut core)
    }

    /// Client bytes in; what goes to the server out.
    fn send(&mut self, bytes: &[u8]) -> Vec<u8> {
        self.up.feed(bytes);
        self.run(|c| c.frame_up()).unwrap();
        self.up.drain()
    }

    /// Server bytes in; what goes to the client out.
    fn reply(&mut self, bytes: &[u8]) -> Vec<u8> {
        self.down.feed(bytes);
        self.run(|c| c.frame_down()).unwrap();
        self.down.drain()
    }

    /// Made-up replies due while the server says nothing.
    fn due(&mut self) -> Vec<u8> {
        self.reply(&[])
    }

    fn idle(&mut self) -> bool {
        self.run(|c| c.idle_now())
    }
}

fn server_msgs(tags: &str) -> Vec<u8> {
    tags.bytes()
        .flat_map(|t| match t {
            b'Z' => msg(b'Z', b"I"),
            b'C' => msg(b'C', b"SELECT 1\0"),
            b'E' => msg(b'E', b"SERROR\0VERROR\0C42P01\0Mno\0\0"),
            t => msg(t, b""),
        })
        .collect()
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
    // Anything that executes needs a server.
    up.feed(&[bind("P_0"), exec(), sync()].concat());
    assert!(
        c.answer_without_server(&mut up, &limits, &registry, None)
            .is_none()
    );
    assert!(!up.unread().is_empty());
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
fn an_eviction_skipped_by_an_error_keeps_the_statement_cached() {
    let mut r = Rig::new();
    r.limits.cache_cap = 1;
    r.send(&[parse("a", "select 1"), sync()].concat());
    r.reply(&server_msgs("1Z"));
    // The unnamed Parse fails first; the eviction Close of `a` queued after it is skipped, so
    // the server still has `a`'s statement.
    let out = r.send(&[parse("", "selec"), parse("b", "select 2"), sync()].concat());
    assert_eq!(tags(&out), "PCPS");
    assert_eq!(tags(&r.reply(&server_msgs("EZ"))), "EZ");
    let out = r.send(&[bind("a"), exec(), sync()].concat());
    assert_eq!(
        tags(&out),
        "BES",
        "no second Parse of a statement the server kept"
    );
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
    let mut stale = msg(
        b'E',
        b"SERROR\0VERROR\0CXX000\0Mcache lookup failed for type 16390\0\0",
    );
    stale.extend(msg(b'Z', b"I"));
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

#[test]
fn a_stale_statement_whose_batch_already_answered_passes_the_error() {
    let mut r = Rig::new();
    r.send(&[parse("a", "select $1::t"), sync()].concat());
    r.reply(&server_msgs("1Z"));
    // The client's own statement from before: a direct connection would fail too.
    let out = r.send(&[bind("a"), exec(), sync()].concat());
    assert_eq!(tags(&out), "BES");
    let mut stale = msg(
        b'E',
        b"SERROR\0VERROR\0CXX000\0Mcache lookup failed for type 16390\0\0",
    );
    stale.extend(msg(b'Z', b"I"));
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
