//! Every client is bounded in memory and time (issue 11): a client that floods lakepool
//! without reading, declares huge messages, stops half-way through a message, prepares
//! statement names without end or stops reading a large result takes neither memory nor
//! servers from the others.
//!
//! Transaction mode with statement mapping, `pool_size = 5`, `client_idle_timeout = 5`,
//! `idle_transaction_timeout = 5`. Memory is lakepool's own, read from `/proc/<pid>/status`.
//! The timeout matrix (plain/TLS, mapping on/off, session/transaction) is in
//! `bounded_timeouts.rs`; what the server skips after an error, and pipelined COPY, in
//! `bounded_protocol.rs`.

use std::io::{ErrorKind, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::fixtures::{self, MD5_USER, OWNER_PW_ENV, Opts};
use crate::support::lakepool::database_toml;
use crate::support::wire::{self, QueryResult, RawConn, Reply, frontend_msg};
use crate::support::{APP_DB, APP_OWNER, Lakepool};

const MIB: u64 = 1 << 20;

/// The module's lakepool: database `app` as in the issue, plus `one` (`pool_size = 1`) and
/// `other` (a second pool of the same database, for "other clients" that must not wait behind
/// the five servers of `app`). `pool_extra` adds `[pool]` lines.
pub(crate) fn start(pool_extra: &str) -> Lakepool {
    let mut config = fixtures::config(&Opts {
        size: 5,
        wait: 30.0,
        pool_extra: &format!("client_idle_timeout = 5\nidle_transaction_timeout = 5\n{pool_extra}"),
        ..Opts::default()
    });
    for (name, extra) in [("one", "pool_size = 1\n"), ("other", "")] {
        config.push_str(&database_toml(
            name,
            APP_DB,
            APP_OWNER.0,
            OWNER_PW_ENV,
            "verify-full",
        ));
        config.push_str(extra);
    }
    Lakepool::start(&config, &[(OWNER_PW_ENV, APP_OWNER.1)])
}

pub(crate) fn login(lp: &Lakepool, db: &str) -> RawConn {
    RawConn::login_with(lp.port(), false, MD5_USER.0, MD5_USER.1, db, &[])
}

/// A client of `one` whose `a` (`select 1`) is prepared.
pub(crate) fn login_with_a(lp: &Lakepool) -> RawConn {
    let mut c = login(lp, "one");
    let mut m = wire::parse("a", "select 1");
    m.extend_from_slice(&wire::sync());
    c.send(&m).expect("send Parse");
    let r = c.read_until_ready("Parse a");
    assert!(r.error.is_none(), "{:?}", r.error.map(|e| e.fields()));
    c
}

/// Binds and executes the client's statement `name` (no parameters); the result must be
/// free of errors.
pub(crate) fn run_named(c: &mut RawConn, name: &str) -> QueryResult {
    let mut m = wire::bind("", name, &[]);
    m.extend_from_slice(&wire::execute(""));
    m.extend_from_slice(&wire::sync());
    c.send(&m).expect("send Bind/Execute/Sync");
    let r = c.read_until_ready(&format!("Bind/Execute of {name}"));
    assert!(
        r.error.is_none(),
        "{name}: {:?}",
        r.error.map(|e| e.fields())
    );
    r
}

/// A field of `/proc/<pid>/status` in KiB (`VmRSS`, `VmSize`).
fn proc_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("{field} missing from /proc/{pid}/status"))
}

/// Samples a `/proc/<pid>/status` field every 50 ms until stopped; `stop` returns the largest
/// value seen, in bytes.
struct Peak {
    stop: Arc<AtomicBool>,
    handle: thread::JoinHandle<u64>,
}

impl Peak {
    fn start(pid: u32, field: &'static str) -> Peak {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = thread::spawn(move || {
            let mut max = 0;
            while !flag.load(Ordering::Relaxed) {
                max = max.max(proc_kib(pid, field) * 1024);
                thread::sleep(Duration::from_millis(50));
            }
            max.max(proc_kib(pid, field) * 1024)
        });
        Peak { stop, handle }
    }

    fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().expect("sampler thread")
    }
}

/// Runs `select <n>` on a fresh client of `db` every 200 ms until `stop`; panics (in the
/// thread) if one fails. Returns how many succeeded.
fn keep_querying(port: u16, db: &'static str, stop: Arc<AtomicBool>) -> thread::JoinHandle<u32> {
    thread::spawn(move || {
        let mut c = RawConn::login_with(port, false, MD5_USER.0, MD5_USER.1, db, &[]);
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let r = c.query(&format!("select {n}"));
            assert!(r.error.is_none(), "other client: {:?}", r.error);
            assert_eq!(r.rows, vec![vec![Some(n.to_string())]], "other client");
            thread::sleep(Duration::from_millis(200));
        }
        n
    })
}

/// Writes `chunk` over and over without reading until `limit` bytes went out, the connection
/// is cut, or `deadline` passes. Returns the bytes written. A write that blocks past the
/// socket's write timeout is retried: lakepool holding the client back is expected.
fn flood(conn: &mut RawConn, chunk: &[u8], limit: u64, deadline: Instant) -> u64 {
    conn.stream
        .set_write_timeout(Some(Duration::from_millis(500)))
        .expect("write timeout");
    let mut sent = 0u64;
    let mut at = 0;
    while sent < limit && Instant::now() < deadline {
        match conn.stream.write(&chunk[at..]) {
            Ok(0) => break,
            Ok(n) => {
                sent += n as u64;
                at = (at + n) % chunk.len();
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    sent
}

/// Reads (and drops) whatever lakepool still sends until it closes the connection; the
/// SQLSTATEs of the ErrorResponses seen, or None if it is still open at `deadline`.
fn drain_until_closed(conn: &mut RawConn, deadline: Instant) -> Option<Vec<String>> {
    conn.set_read_timeout(Duration::from_secs(1));
    let mut codes = Vec::new();
    while Instant::now() < deadline {
        match conn.read_msg() {
            Reply::Msg(m) if m.tag == b'E' => codes.push(m.sqlstate().unwrap_or_default()),
            Reply::Msg(_) | Reply::TimedOut => {}
            Reply::Closed => return Some(codes),
        }
    }
    None
}

/// Asserts lakepool sends exactly one FATAL ErrorResponse with `code` and then closes.
fn expect_fatal_then_close(conn: &mut RawConn, code: &str, context: &str) {
    match conn.read_msg() {
        Reply::Msg(m) if m.tag == b'E' => {
            assert_eq!(
                m.sqlstate().as_deref(),
                Some(code),
                "{context}: {:?}",
                m.fields()
            );
            assert_eq!(
                m.field(b'S').as_deref(),
                Some("FATAL"),
                "{context}: {:?}",
                m.fields()
            );
        }
        other => panic!("{context}: expected ErrorResponse {code}, got {other:?}"),
    }
    match conn.read_msg() {
        Reply::Closed => {}
        other => panic!("{context}: expected the connection closed after {code}, got {other:?}"),
    }
}

/// Issue 11: a client sending 400 MiB of Close (another of Sync) messages and never reading
/// took lakepool from 11 MB to 1.75 GB: replies lakepool makes up were queued without limit
/// while it kept reading. Now it stops reading such a client (and cuts it off after
/// idle_transaction_timeout, since it does not read its results).
#[test]
fn close_and_sync_floods_without_reading_keep_memory_bounded() {
    let lp = start("");
    let pid = lp.pid();
    let mut closer = login(&lp, "app");
    let mut syncer = login(&lp, "app");
    let stop = Arc::new(AtomicBool::new(false));
    let other = keep_querying(lp.port(), "app", Arc::clone(&stop));
    let rss_before = proc_kib(pid, "VmRSS") * 1024;
    let peak = Peak::start(pid, "VmRSS");

    // 1 MiB of each kind of message; Close of a name the client never prepared gets
    // CloseComplete, as from PostgreSQL.
    let close = wire::target(b'C', b'S', "s1");
    let close_chunk: Vec<u8> = close
        .iter()
        .copied()
        .cycle()
        .take(close.len() << 17)
        .collect();
    let sync_chunk: Vec<u8> = wire::sync().repeat(1 << 18);
    let limit = 400 * MIB;
    let deadline = Instant::now() + Duration::from_secs(60);
    let (closes_sent, syncs_sent) = thread::scope(|s| {
        let a = s.spawn(|| flood(&mut closer, &close_chunk, limit, deadline));
        let b = s.spawn(|| flood(&mut syncer, &sync_chunk, limit, deadline));
        (a.join().unwrap(), b.join().unwrap())
    });
    let rss_peak = peak.stop();
    stop.store(true, Ordering::Relaxed);
    let queries = other
        .join()
        .expect("the other client's queries kept working");

    let growth = rss_peak.saturating_sub(rss_before);
    println!(
        "RSS {} -> peak {} MiB; sent {} MiB of Close, {} MiB of Sync; other client ran {queries} queries",
        rss_before / MIB,
        rss_peak / MIB,
        closes_sent / MIB,
        syncs_sent / MIB
    );
    assert!(
        growth < 64 * MIB,
        "lakepool's RSS grew by {} MiB (Close flood: {} MiB sent, Sync flood: {} MiB sent)",
        growth / MIB,
        closes_sent / MIB,
        syncs_sent / MIB
    );
    // Neither flooder reads its results: both are cut off (idle_transaction_timeout).
    let end = Instant::now() + Duration::from_secs(60);
    for (name, conn) in [("Close", &mut closer), ("Sync", &mut syncer)] {
        let codes = drain_until_closed(conn, end);
        assert!(
            codes.is_some(),
            "the {name} flooder is still connected a minute after it stopped reading"
        );
        println!("{name} flooder: closed; errors seen {codes:?}");
    }
    assert!(
        lp.logs().contains("idle_transaction_timeout"),
        "{}",
        lp.logs()
    );
}

/// The largest message length PostgreSQL accepts (`PQ_LARGE_MESSAGE_LIMIT`, 1 GiB - 2):
/// with 2^30 itself the server closes the connection at once ("invalid message length"),
/// which would end the test before lakepool's memory is measured.
const HUGE_LEN: u32 = (1 << 30) - 2;

/// The start of a message whose header declares [`HUGE_LEN`] bytes.
fn huge(tag: u8, body_start: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&HUGE_LEN.to_be_bytes());
    m.extend_from_slice(body_start);
    m
}

/// Issue 11: a Query (or Parse/Bind) header declaring 1 GiB made lakepool reserve the
/// declared size at once (+1 GiB of virtual memory per client) and hold the body in RSS as it
/// arrived. Five such clients now cost lakepool less than 512 MiB of VmSize; a named Parse
/// too large to inspect is refused with 54000; the ones that stop half-way are cut off with
/// 25P03 and their servers serve others again; clients of another pool work throughout.
#[test]
fn five_clients_declaring_one_gib_messages_cost_no_memory() {
    let lp = start("");
    let pid = lp.pid();
    let stop = Arc::new(AtomicBool::new(false));
    let other = keep_querying(lp.port(), "other", Arc::clone(&stop));
    let vm_before = proc_kib(pid, "VmSize") * 1024;
    let rss_before = proc_kib(pid, "VmRSS") * 1024;
    let vm_peak = Peak::start(pid, "VmSize");
    let rss_peak = Peak::start(pid, "VmRSS");

    let named_parse = huge(b'P', b"big\0select '");
    let kinds: [(&str, Vec<u8>); 5] = [
        ("Query", huge(b'Q', b"select '")),
        ("Query (stops)", huge(b'Q', b"sel")),
        ("named Parse", named_parse),
        ("unnamed Parse", huge(b'P', b"\0select '")),
        (
            "Bind of the unnamed statement",
            huge(b'B', b"\0\0\0\0\0\x01"),
        ),
    ];
    let mut clients: Vec<(&str, RawConn)> = kinds
        .iter()
        .map(|(what, head)| {
            let mut c = login(&lp, "app");
            c.send(head).expect("send the header");
            (*what, c)
        })
        .collect();
    // The named Parse cannot be held to be inspected: a clean refusal, at once.
    let refused = clients[2].1.expect_msg("named Parse of 1 GiB");
    assert_eq!(
        refused.sqlstate().as_deref(),
        Some("54000"),
        "named Parse of 1 GiB: {:?}",
        refused.fields()
    );
    // All but one trickle 64 KiB every 100 ms for 3 s (about 2 MiB each), then stop.
    let piece = vec![b'x'; 64 << 10];
    let trickled = Arc::new(AtomicU64::new(0));
    thread::scope(|s| {
        for (what, c) in clients.iter_mut().filter(|(w, _)| *w != "Query (stops)") {
            let (piece, trickled) = (&piece, &trickled);
            s.spawn(move || {
                for _ in 0..30 {
                    if let Err(e) = c.send(piece) {
                        panic!("{what}: lakepool stopped reading or closed: {e}");
                    }
                    trickled.fetch_add(piece.len() as u64, Ordering::Relaxed);
                    thread::sleep(Duration::from_millis(100));
                }
            });
        }
    });
    let vm_growth = vm_peak.stop().saturating_sub(vm_before);
    let rss_growth = rss_peak.stop().saturating_sub(rss_before);
    println!(
        "VmSize +{} MiB, RSS +{} MiB while {} MiB trickled in",
        vm_growth / MIB,
        rss_growth / MIB,
        trickled.load(Ordering::Relaxed) / MIB
    );
    assert!(
        vm_growth < 512 * MIB,
        "lakepool's VmSize grew by {} MiB for five 1 GiB declarations",
        vm_growth / MIB
    );
    assert!(
        rss_growth < 64 * MIB,
        "lakepool's RSS grew by {} MiB",
        rss_growth / MIB
    );

    // All five stopped half-way through a message: each is cut off with 25P03.
    thread::scope(|s| {
        for (what, c) in clients.iter_mut() {
            s.spawn(move || {
                c.set_read_timeout(Duration::from_secs(20));
                expect_fatal_then_close(c, "25P03", &format!("{what} client that stopped"));
            });
        }
    });
    // Their servers serve the pool again.
    let mut next = login(&lp, "app");
    next.set_read_timeout(Duration::from_secs(15));
    assert_eq!(
        next.simple_query("select 'next'"),
        vec![Some("next".into())]
    );
    stop.store(true, Ordering::Relaxed);
    other.join().expect("clients of another pool kept working");
}

/// Issue 11: five clients each sending 8 bytes of a Query (`Q`, length 20, `sel`) held all
/// five servers for more than 30 s; a sixth client got 57014. A client half-way through a
/// message now holds no server: the sixth client's query runs, and the five are cut off after
/// idle_transaction_timeout with FATAL 25P03 and nothing else.
#[test]
fn half_sent_queries_hold_no_server() {
    let lp = start("");
    let half: &[u8] = b"Q\x00\x00\x00\x14sel";
    assert_eq!(half.len(), 8);
    let mut five: Vec<RawConn> = (0..5)
        .map(|_| {
            let mut c = login(&lp, "app");
            c.send(half).expect("send half a Query");
            c
        })
        .collect();
    let sent_at = Instant::now();
    let mut sixth = login(&lp, "app");
    sixth.set_read_timeout(Duration::from_secs(15));
    assert_eq!(sixth.simple_query("select 6"), vec![Some("6".into())]);
    println!(
        "sixth client's query done {:.1} s after the five sent half a message",
        sent_at.elapsed().as_secs_f64()
    );
    thread::scope(|s| {
        for (i, c) in five.iter_mut().enumerate() {
            s.spawn(move || {
                c.set_read_timeout(Duration::from_secs(20));
                expect_fatal_then_close(c, "25P03", &format!("half-message client {i}"));
            });
        }
    });
    let waited = sent_at.elapsed();
    assert!(
        waited >= Duration::from_millis(4500),
        "cut off after {waited:?}, before idle_transaction_timeout (5 s)"
    );
}

/// SQL-level `PREPARE`s share the budget: lakepool keeps each one's text to prepare it again
/// on the next server, so without the bound a client could make it hold any amount of text.
/// A refused query runs nothing (the SET before the PREPARE included); DEALLOCATE makes room.
#[test]
fn sql_prepares_per_client_are_bounded() {
    let lp = start("max_client_prepared_statements = 3\n");
    let mut c = login(&lp, "app");
    for i in 0..3 {
        c.simple_query(&format!("PREPARE p{i} AS select {i}"));
    }
    let r = c.query("SET application_name = 'refused'; PREPARE p3 AS select 3");
    let err = r.error.expect("the fourth statement is refused");
    assert_eq!(
        err.sqlstate().as_deref(),
        Some("54000"),
        "{:?}",
        err.fields()
    );
    assert_ne!(
        c.simple_query("show application_name"),
        vec![Some("refused".into())],
        "nothing of the refused query ran"
    );
    c.simple_query("DEALLOCATE p0");
    c.simple_query("PREPARE p3 AS select 3");
    assert_eq!(c.simple_query("EXECUTE p3"), vec![Some("3".into())]);
    assert_eq!(c.simple_query("EXECUTE p2"), vec![Some("2".into())]);
}

/// Issue 11: the per-client statement-name map had no bound (2 million names cost +148 MB).
/// With `max_client_prepared_statements = 50`, the 51st name gets 54000, the session goes on
/// (its statements still work, a closed name makes room), and 2 million more attempts cost
/// no memory.
#[test]
fn statement_names_per_client_are_bounded() {
    let lp = start("max_client_prepared_statements = 50\n");
    let pid = lp.pid();
    let mut c = login(&lp, "app");
    let mut batch = Vec::new();
    for i in 0..60 {
        batch.extend_from_slice(&wire::parse(&format!("s{i}"), "select 1"));
    }
    batch.extend_from_slice(&wire::sync());
    c.send(&batch).expect("send 60 Parse");
    let r = c.read_until_ready("60 Parse");
    let parsed = r.other.iter().filter(|m| m.tag == b'1').count();
    assert_eq!(parsed, 50, "ParseComplete count; error {:?}", r.error);
    let err = r.error.expect("the 51st name is refused");
    assert_eq!(
        err.sqlstate().as_deref(),
        Some("54000"),
        "{:?}",
        err.fields()
    );
    // The session goes on: a prepared statement runs, a closed name makes room for another.
    let mut run = wire::bind("", "s49", &[]);
    run.extend_from_slice(&wire::execute(""));
    run.extend_from_slice(&wire::target(b'C', b'S', "s0"));
    run.extend_from_slice(&wire::parse("again", "select 1"));
    run.extend_from_slice(&wire::sync());
    c.send(&run).expect("send Bind/Execute/Close/Parse");
    let r = c.read_until_ready("after the refusal");
    assert!(r.error.is_none(), "{:?}", r.error.map(|e| e.fields()));
    assert_eq!(r.rows, vec![vec![Some("1".into())]]);
    assert_eq!(c.simple_query("select 'on'"), vec![Some("on".into())]);

    // 2 million more names, pipelined in groups of 10 with a Sync each: the first of a group
    // is refused, the rest are skipped up to the Sync as the server would skip them. A
    // reader counts the refusals while the writer sends.
    const ATTEMPTS: usize = 2_000_000;
    const GROUP: usize = 10;
    let rss_before = proc_kib(pid, "VmRSS") * 1024;
    let peak = Peak::start(pid, "VmRSS");
    let mut reader = c.try_clone();
    let counted = thread::spawn(move || {
        reader.set_read_timeout(Duration::from_secs(30));
        let (mut refused, mut ready) = (0, 0);
        while ready < ATTEMPTS / GROUP {
            let m = reader.expect_msg("replies to the 2 million Parse");
            match m.tag {
                b'E' if m.sqlstate().as_deref() == Some("54000") => refused += 1,
                b'E' => panic!("unexpected error {:?}", m.fields()),
                b'Z' => ready += 1,
                _ => {}
            }
        }
        refused
    });
    let started = Instant::now();
    let mut chunk = Vec::with_capacity(64 << 10);
    for i in 0..ATTEMPTS {
        chunk.extend_from_slice(&wire::parse(&format!("n{i}"), "select 1"));
        if i % GROUP == GROUP - 1 {
            chunk.extend_from_slice(&wire::sync());
            if chunk.len() >= 60 << 10 || i + 1 == ATTEMPTS {
                c.send(&chunk).expect("send Parse messages");
                chunk.clear();
            }
        }
    }
    let refused = counted.join().expect("reader");
    let growth = peak.stop().saturating_sub(rss_before);
    println!(
        "{ATTEMPTS} names sent in {:.1} s; RSS +{} MiB",
        started.elapsed().as_secs_f64(),
        growth / MIB
    );
    assert_eq!(refused, ATTEMPTS / GROUP, "one refusal per group");
    assert!(
        growth < 32 * MIB,
        "lakepool's RSS grew by {} MiB for {ATTEMPTS} refused names",
        growth / MIB
    );
    assert_eq!(c.simple_query("select 'still'"), vec![Some("still".into())]);
}

/// Issue 11 ("a time bound on every wait"): a client that stops reading half-way through a
/// large result holds its server only until idle_transaction_timeout; the server then goes
/// back to the pool (`pool_size = 1`): a client that waited for it gets its query answered.
#[test]
fn a_client_that_stops_reading_a_large_result_releases_its_server() {
    let lp = start("");
    let mut stuck = login(&lp, "one");
    let sql = "select repeat('x', 200) from generate_series(1, 1000000)\0";
    stuck
        .send(&frontend_msg(b'Q', sql.as_bytes()))
        .expect("send the query");
    for _ in 0..10 {
        let m = stuck.expect_msg("the first rows");
        assert!(matches!(m.tag, b'T' | b'D'), "{m:?} {:?}", m.fields());
    }
    // stuck reads no more. The only server is its; the next client waits for it.
    let started = Instant::now();
    let mut next = login(&lp, "one");
    next.set_read_timeout(Duration::from_secs(25));
    let got = next.query("select 'served'");
    assert!(
        got.error.is_none(),
        "the waiting client: {:?}\n{}",
        got.error.map(|e| e.fields()),
        lp.logs()
    );
    assert_eq!(got.rows, vec![vec![Some("served".into())]]);
    println!(
        "the waiting client was served after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let codes = drain_until_closed(&mut stuck, Instant::now() + Duration::from_secs(60));
    assert!(
        codes.is_some(),
        "the client that stopped reading is still connected"
    );
    println!("errors the stuck client got after its rows: {codes:?}");
}
