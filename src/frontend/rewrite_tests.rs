use super::*;

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

/// One client and one server connection of one pool.
struct Rig {
    client: ClientSide,
    queue: ReplyQueue,
    cache: PreparedCache,
    server: ServerSide,
    registry: StatementRegistry,
    cap: usize,
    status: u8,
    rx: BytesMut,
    stats: crate::pool::stats::PoolStats,
}

impl Rig {
    fn new() -> Self {
        Self {
            client: ClientSide::default(),
            queue: ReplyQueue::default(),
            cache: PreparedCache::default(),
            server: ServerSide::default(),
            registry: StatementRegistry::default(),
            cap: 10,
            status: b'I',
            rx: BytesMut::new(),
            stats: crate::pool::stats::PoolStats::default(),
        }
    }

    /// Client bytes in; what goes to the server out.
    fn send(&mut self, bytes: &[u8]) -> Vec<u8> {
        self.client.inbuf.extend_from_slice(bytes);
        let mut out = BytesMut::new();
        let r = self
            .client
            .handle(
                &mut out,
                &mut Attached {
                    queue: &mut self.queue,
                    cache: &mut self.cache,
                    registry: &self.registry,
                    cap: self.cap,
                    max_message: 1 << 20,
                    status: self.status,
                    extra_tracked: &[],
                    stats: Some(&self.stats),
                },
            )
            .unwrap();
        assert_eq!(r, ClientInput::Done);
        out.to_vec()
    }

    /// Server bytes in; what goes to the client out.
    fn reply(&mut self, bytes: &[u8]) -> Vec<u8> {
        self.rx.extend_from_slice(bytes);
        let mut out = BytesMut::new();
        self.server.handle(
            &mut self.rx,
            &mut out,
            &mut self.queue,
            &mut self.cache,
            &mut self.client,
            self.status,
        );
        out.to_vec()
    }

    /// Made-up replies due while the server says nothing.
    fn due(&mut self) -> Vec<u8> {
        let mut out = BytesMut::new();
        self.server
            .flush_due(&mut self.queue, &mut out, self.status);
        out.to_vec()
    }
}

fn server_msgs(tags: &str) -> Vec<u8> {
    tags.bytes()
        .flat_map(|t| match t {
            b'Z' => msg(b'Z', b"I"),
            b'C' => msg(b'C', b"SELECT 1\0"),
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
    // Bind and Execute use the server-side name.
    let out = r.send(&[bind("S_1"), exec(), sync()].concat());
    assert_eq!(tags(&out), "BES");
    assert!(messages(&out)[0].1.starts_with(b"\0lakepool_"));
    assert_eq!(tags(&r.reply(&server_msgs("2CZ"))), "2CZ");
}

#[test]
fn statement_already_on_the_server_is_not_prepared_again() {
    let mut r = Rig::new();
    r.send(&[parse("a", "select 1"), sync()].concat());
    r.reply(&server_msgs("1Z"));
    // A second client (same pool, same server) prepares the same text under another name.
    let mut other = ClientSide::default();
    std::mem::swap(&mut r.client, &mut other);
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

/// PgBouncer's counts with prepared statements on: client Parses of named statements, the
/// Parses sent to servers for them, Binds of named statements; unnamed ones are not counted.
#[test]
fn named_parses_and_binds_are_counted() {
    use std::sync::atomic::Ordering::Relaxed;
    let mut r = Rig::new();
    let counts = |r: &Rig| {
        let t = r.stats.totals();
        (t.client_parses, t.server_parses, t.binds)
    };
    r.send(&[parse("a", "select 1"), bind("a"), exec(), sync()].concat());
    r.reply(&server_msgs("12CZ"));
    assert_eq!(counts(&r), (1, 1, 1));
    // Already prepared on this server: a Bind, no Parse.
    r.send(&[bind("a"), exec(), sync()].concat());
    r.reply(&server_msgs("2CZ"));
    assert_eq!(counts(&r), (1, 1, 2));
    // Another server: prepared again for the Bind.
    r.cache = PreparedCache::default();
    r.send(&[bind("a"), exec(), sync()].concat());
    r.reply(&server_msgs("12CZ"));
    assert_eq!(counts(&r), (1, 2, 3));
    // Unnamed statements pass uncounted.
    r.send(&[parse("", "select 2"), bind(""), exec(), sync()].concat());
    r.reply(&server_msgs("12CZ"));
    assert_eq!(counts(&r), (1, 2, 3));
    // A prepare answered without a server is a client Parse.
    let mut c = ClientSide::default();
    c.inbuf
        .extend_from_slice(&[parse("b", "select 1"), sync()].concat());
    r.registry
        .intern(b"select 1\0\0\0")
        .accepted
        .store(true, Relaxed);
    assert!(
        c.answer_without_server(&r.registry, Some(&r.stats))
            .is_some()
    );
    assert_eq!(counts(&r), (2, 2, 3));
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
    // Binding the closed name now fails at the server, with PostgreSQL's own error.
    let out = r.send(&[bind("a"), exec(), sync()].concat());
    assert_eq!(&messages(&out)[0].1[..3], b"\0a\0");
}

#[test]
fn full_cache_closes_least_recently_used() {
    let mut r = Rig::new();
    r.cap = 1;
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
fn copy_data_streams_without_being_held() {
    let mut r = Rig::new();
    let big = msg(b'd', &vec![b'x'; 10_000]);
    let out = r.send(&big[..4000]);
    assert_eq!(out.len(), 4000, "streamed as it arrives");
    let out = r.send(&big[4000..]);
    assert_eq!(out.len(), big.len() - 4000);
    assert!(r.client.inbuf.is_empty());
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
fn discard_all_forgets_statements_everywhere() {
    let mut r = Rig::new();
    r.send(&[parse("a", "select 1"), sync()].concat());
    r.reply(&server_msgs("1Z"));
    r.send(&query("DISCARD ALL"));
    assert!(r.client.touched_all);
    let mut reply = msg(b'C', b"DISCARD ALL\0");
    reply.extend(msg(b'Z', b"I"));
    r.reply(&reply);
    assert!(r.cache.is_empty());
    assert_eq!(r.client.statement_count(), 0);
}

#[test]
fn set_is_noted_and_untracked_parameters_warned_about() {
    let mut r = Rig::new();
    let out = r.send(&query("SET search_path TO a; SET work_mem = '8MB'"));
    assert_eq!(tags(&out), "Q");
    assert_eq!(r.client.touched, vec!["search_path", "work_mem"]);
    let back = r.due();
    assert_eq!(tags(&back), "N", "one warning, for work_mem");
    assert!(String::from_utf8_lossy(&back).contains("work_mem"));
}

#[test]
fn prepare_only_input_is_answered_without_a_server() {
    let registry = StatementRegistry::default();
    let mut c = ClientSide::default();
    c.inbuf
        .extend_from_slice(&[parse("P_0", "select 1"), sync()].concat());
    assert!(
        c.answer_without_server(&registry, None).is_none(),
        "never accepted by a server yet"
    );
    registry
        .intern(b"select 1\0\0\0")
        .accepted
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let reply = c.answer_without_server(&registry, None).unwrap();
    assert_eq!(tags(&reply), "1Z");
    assert!(c.inbuf.is_empty());
    assert_eq!(c.statement_count(), 1);
    // Anything that executes needs a server.
    c.inbuf
        .extend_from_slice(&[bind("P_0"), exec(), sync()].concat());
    assert!(c.answer_without_server(&registry, None).is_none());
    assert!(!c.inbuf.is_empty());
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
    // Bind fails; the Close of `a` and the Parse of `b` (already on the server) after it are
    // skipped by PostgreSQL, so `a` must still exist and `b` must not.
    r.send(&[parse("x", "select 2"), sync()].concat());
    r.reply(&server_msgs("1Z"));
    let mut other = ClientSide::default();
    std::mem::swap(&mut r.client, &mut other);
    r.send(&[parse("a", "select 1"), sync()].concat());
    r.reply(&server_msgs("Z"));
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
    assert_eq!(r.client.statement_count(), 1);
    let out = r.send(&[bind("a"), exec(), sync()].concat());
    assert!(
        messages(&out)[0].1.starts_with(b"\0lakepool_"),
        "a is still mapped"
    );
}

#[test]
fn an_eviction_skipped_by_an_error_keeps_the_statement_cached() {
    let mut r = Rig::new();
    r.cap = 1;
    r.send(&[parse("a", "select 1"), sync()].concat());
    r.reply(&server_msgs("1Z"));
    // The Bind of an unknown name fails first; the eviction Close of `a` queued after it is
    // skipped, so the server still has `a`'s statement.
    let out = r.send(&[bind("nope"), exec(), parse("b", "select 2"), sync()].concat());
    assert_eq!(tags(&out), "BECPS");
    assert_eq!(tags(&r.reply(&server_msgs("EZ"))), "EZ");
    let out = r.send(&[bind("a"), exec(), sync()].concat());
    assert_eq!(
        tags(&out),
        "BES",
        "no second Parse of a statement the server kept"
    );
}
