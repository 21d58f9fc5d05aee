//! Differences from a direct connection that issue 17 lists, each checked against what
//! PostgreSQL itself does: a plain `pg_dump` replayed through a transaction-mode database,
//! ParameterStatus values at login, session mode's backend pid (pg_backend_pid, termination,
//! notifications, cancel), shared statements after DDL, and `pg_prepared_statements`.
//!
//! Uses the lakepool of `isolation.rs` (`pool_size = 1`, upstream superuser).

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::fixtures::MD5_USER;
use crate::isolation::{client, start, text};
use crate::support::wire::{self, BackendMsg, CANCEL_REQUEST, RawConn, Reply};
use crate::support::{
    APP_DB, APP_OWNER, HOST, MD5_OWNER, ok_stdout, pg, pg_bin_dir, psql, scratch_dir, scrub_pg_env,
};

/// Source schema of the dump: a SQL function whose body refers to a table pg_dump writes
/// after it (functions come before tables in a dump), data with a tab and quotes, a view.
const DUMP_SCHEMA: &str = "CREATE SCHEMA shop;
    CREATE TABLE shop.orders (id serial PRIMARY KEY, qty int NOT NULL, note text);
    INSERT INTO shop.orders (qty, note) VALUES (1, 'a'), (2, E'tab\\tand ''quote'''), (3, NULL);
    CREATE FUNCTION shop.total() RETURNS bigint LANGUAGE sql
        AS $$ SELECT sum(qty) FROM shop.orders $$;
    CREATE VIEW shop.big AS SELECT id, qty FROM shop.orders WHERE qty > 1;";

/// Issue 17: replaying a plain `pg_dump` file through a transaction-mode database stopped at
/// CREATE FUNCTION, because the dump's `SET check_function_bodies = false` was reset after its
/// own statement. Now the dump replays with `psql -v ON_ERROR_STOP=1` and the data is there.
#[test]
fn a_plain_pg_dump_replays_through_transaction_mode() {
    pg().exec_sql(&format!(
        "CREATE DATABASE iso_dump_src OWNER {o}; CREATE DATABASE iso_dump_dst OWNER {o};",
        o = APP_OWNER.0
    ));
    let made = psql(
        pg().port,
        APP_OWNER.0,
        APP_OWNER.1,
        "iso_dump_src",
        "disable",
        DUMP_SCHEMA,
    );
    ok_stdout("create the dump's source schema", &made);
    let file = scratch_dir().join("iso_dump.sql");
    let mut dump = Command::new(pg_bin_dir().join("pg_dump"));
    scrub_pg_env(&mut dump)
        .env("PGPASSWORD", APP_OWNER.1)
        .args(["-h", HOST, "-p", &pg().port.to_string(), "-U", APP_OWNER.0])
        .args(["-Fp", "--no-owner", "--no-privileges", "-f"])
        .arg(&file)
        .arg("iso_dump_src")
        .stdin(Stdio::null());
    ok_stdout("pg_dump", &dump.output().expect("spawn pg_dump"));
    let sql = std::fs::read_to_string(&file).expect("read the dump");
    let (func, table) = (
        sql.find("CREATE FUNCTION shop.total()"),
        sql.find("CREATE TABLE shop.orders"),
    );
    assert!(
        sql.contains("SET check_function_bodies = false;") && func < table && func.is_some(),
        "the dump does not test what it should (function before table, check_function_bodies)"
    );

    let lp = start(Some("iso_dump_dst"));
    let conninfo = format!(
        "host={HOST} port={} user={} dbname=dump sslmode=disable connect_timeout=10",
        lp.port(),
        MD5_USER.0
    );
    let mut replay = Command::new(pg_bin_dir().join("psql"));
    scrub_pg_env(&mut replay)
        .env("PGPASSWORD", MD5_USER.1)
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &conninfo, "-f"])
        .arg(&file)
        .stdin(Stdio::null());
    let out = replay.output().expect("spawn psql");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "replaying the dump through lakepool: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut c = client(&lp, "dump", &[]);
    let got = c.query(
        "select shop.total(), (select count(*) from shop.big), \
         (select note from shop.orders where id = 2)",
    );
    assert!(got.error.is_none(), "{:?}", got.error.map(|e| e.fields()));
    assert_eq!(text(&got), "6|2|tab\tand 'quote'");
}

/// Startup parameters whose reported spelling the server normalizes.
const STARTUP: &[(&str, &str)] = &[
    ("client_encoding", "utf-8"),
    ("DateStyle", "iso"),
    ("TimeZone", "utc"),
    ("application_name", "iso_app"),
];

/// Issue 17: ParameterStatus values were echoed as the client wrote them (`utf-8`) instead of
/// the server's normalized value (`UTF8`). At login, on a fresh pool and again once it has
/// servers, every value is what a direct connection reports.
#[test]
fn parameter_status_values_are_the_servers_spelling() {
    let direct = RawConn::login_with(pg().port, false, MD5_OWNER.0, MD5_OWNER.1, APP_DB, STARTUP);
    assert_eq!(direct.parameter("client_encoding").as_deref(), Some("UTF8"));
    let lp = start(None);
    for (round, db) in [("fresh pool", "iso"), ("pool with a server", "iso")] {
        let mut c = client(&lp, db, STARTUP);
        for (name, _) in STARTUP {
            assert_eq!(
                c.parameter(name),
                direct.parameter(name),
                "{round}: ParameterStatus {name} at login"
            );
        }
        let shown = text(&c.query("select current_setting('client_encoding')"));
        assert_eq!(shown, "UTF8", "{round}");
        c.terminate();
    }
}

fn cancel_request(pid: u32, key: u32) -> Vec<u8> {
    let mut m = 16u32.to_be_bytes().to_vec();
    for v in [CANCEL_REQUEST, pid, key] {
        m.extend_from_slice(&v.to_be_bytes());
    }
    m
}

/// A NotificationResponse: (pid, channel, payload).
fn notification(m: &BackendMsg) -> (u32, String, String) {
    let pid = u32::from_be_bytes(m.body[..4].try_into().unwrap());
    let mut parts = m.body[4..].split(|b| *b == 0);
    let mut next = || String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    (pid, next(), next())
}

/// Issue 17: in session mode the backend pid lakepool reported was not the server's, so
/// `pg_terminate_backend(<reported pid>)` did nothing and a notification's sender pid never
/// matched; and a terminated server's 57P01 was followed by lakepool's own 08006. Now the
/// pid in BackendKeyData is the server's, cancel still works with it, and termination reaches
/// the client as the server's FATAL 57P01 and nothing after it.
#[test]
fn session_mode_reports_the_servers_pid() {
    let lp = start(None);
    let mut c = client(&lp, "iso_session", &[]);
    let key = c
        .greeting
        .iter()
        .find(|m| m.tag == b'K')
        .expect("BackendKeyData")
        .clone();
    let pid = c.backend_pid().expect("a pid");
    let secret = u32::from_be_bytes(key.body[4..8].try_into().unwrap());
    let real = text(&c.query("select pg_backend_pid()"));
    assert_eq!(real, pid.to_string(), "pg_backend_pid() vs BackendKeyData");

    let r = c.query("LISTEN iso_note; NOTIFY iso_note, 'hello'");
    let note = r
        .other
        .iter()
        .find(|m| m.tag == b'A')
        .expect("the notification");
    assert_eq!(notification(note), (pid, "iso_note".into(), "hello".into()));

    // Cancel with the key lakepool reported still reaches the query.
    c.send(&wire::frontend_msg(b'Q', b"select pg_sleep(30)\0"))
        .expect("send pg_sleep");
    std::thread::sleep(Duration::from_millis(500));
    let mut cancel = RawConn::connect(lp.port());
    cancel
        .send(&cancel_request(pid, secret))
        .expect("send CancelRequest");
    let r = c.read_until_ready("cancelled pg_sleep");
    assert_eq!(
        r.error.as_ref().and_then(BackendMsg::sqlstate).as_deref(),
        Some("57014"),
        "{:?}",
        r.error.map(|e| e.fields())
    );

    pg().exec_sql(&format!("select pg_terminate_backend({pid})"));
    c.set_read_timeout(Duration::from_secs(10));
    match c.read_msg() {
        Reply::Msg(m) if m.tag == b'E' => {
            assert_eq!(m.sqlstate().as_deref(), Some("57P01"), "{:?}", m.fields());
        }
        other => panic!("after pg_terminate_backend: {other:?}"),
    }
    match c.read_msg() {
        Reply::Closed => {}
        Reply::Msg(m) => panic!("after the server's 57P01, lakepool sent {:?}", m.fields()),
        other => panic!("after the server's 57P01: {other:?}"),
    }
}

/// Runs Parse `name` `sql` / Bind (one text parameter) / Execute / Sync.
fn prepare_and_run(c: &mut RawConn, name: &str, sql: &str, param: &str) -> Result<String, String> {
    let mut m = wire::parse(name, sql);
    m.extend_from_slice(&wire::bind("", name, &[Some(param)]));
    m.extend_from_slice(&wire::execute(""));
    m.extend_from_slice(&wire::sync());
    c.send(&m).expect("send Parse/Bind/Execute/Sync");
    let r = c.read_until_ready(sql);
    match r.error {
        Some(e) => Err(format!("{:?}", e.fields())),
        None => Ok(text(&r)),
    }
}

/// Issue 17: a shared prepared statement used after a type it depends on was dropped and
/// re-created failed with XX000 "cache lookup failed for type" where a direct connection
/// succeeds; an ALTER of a table's column type made the next client's fresh statement fail
/// with "cached plan must not change result type". A client that prepares a statement after
/// the DDL gets a working one.
#[test]
fn statements_prepared_after_ddl_work() {
    let lp = start(None);
    let mut setup = client(&lp, "iso", &[]);
    let r = setup.query(
        "drop table if exists iso_ddl; drop type if exists iso_pair; \
         create type iso_pair as (a int, b text); create table iso_ddl (a int); \
         insert into iso_ddl values (1)",
    );
    assert!(r.error.is_none(), "{:?}", r.error.map(|e| e.fields()));
    let mut first = client(&lp, "iso", &[]);
    let typed = "select $1::iso_pair";
    let star = "select *, $1::text from iso_ddl";
    assert_eq!(
        prepare_and_run(&mut first, "s1", typed, "(1,x)"),
        Ok("(1,x)".into())
    );
    assert_eq!(
        prepare_and_run(&mut first, "s2", star, "p"),
        Ok("1|p".into())
    );
    first.terminate();

    let r = setup.query(
        "drop type iso_pair; create type iso_pair as (a int, b text); \
         alter table iso_ddl alter a type text",
    );
    assert!(r.error.is_none(), "{:?}", r.error.map(|e| e.fields()));

    let mut second = client(&lp, "iso", &[]);
    let mut problems = Vec::new();
    for (name, sql, param, want) in [("t1", typed, "(2,y)", "(2,y)"), ("t2", star, "q", "1|q")] {
        match prepare_and_run(&mut second, name, sql, param) {
            Ok(got) if got == want => {}
            other => problems.push(format!("{sql:?} prepared after the DDL: {other:?}")),
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Fuzz finding 6: a client's Parse answered from the server's copy of a statement that
/// turned out stale (its type re-created where lakepool could not see it) has its batch
/// replayed; a Query the client pipelined behind that batch used to reach the server first,
/// so the client got the Query's rows as the batch's answer and the batch's as the Query's.
#[test]
fn a_query_pipelined_behind_a_replayed_batch_keeps_its_place() {
    let lp = start(None);
    let mut setup = client(&lp, "iso", &[]);
    let r = setup.query("drop type if exists iso_pipe; create type iso_pipe as (a int, b text)");
    assert!(r.error.is_none(), "{:?}", r.error.map(|e| e.fields()));
    let typed = "select $1::iso_pipe";
    let mut first = client(&lp, "iso", &[]);
    assert_eq!(
        prepare_and_run(&mut first, "p1", typed, "(1,x)"),
        Ok("(1,x)".into())
    );
    first.terminate();
    // Behind lakepool's back: the pool's one server keeps its copy, now stale.
    pg().exec_sql_in(
        "appdb",
        "drop type iso_pipe; create type iso_pipe as (a int, b text)",
    );

    let mut second = client(&lp, "iso", &[]);
    let mut m = wire::parse("t1", typed);
    m.extend_from_slice(&wire::bind("", "t1", &[Some("(2,y)")]));
    m.extend_from_slice(&wire::execute(""));
    m.extend_from_slice(&wire::sync());
    m.extend_from_slice(&wire::frontend_msg(b'Q', b"select 'after'\0"));
    second.send(&m).expect("send the batch and the Query");
    let batch = second.read_until_ready("the batch");
    let query = second.read_until_ready("the pipelined Query");
    assert_eq!(
        (
            batch.error.as_ref().map(|e| e.fields()),
            text(&batch),
            query.error.as_ref().map(|e| e.fields()),
            text(&query)
        ),
        (None, "(2,y)".to_string(), None, "after".to_string())
    );
}

/// Next to fuzz finding 9 (a stale-plan error to a request queued before a batch lakepool may
/// replay must not be taken for the batch's): on a real PostgreSQL, an exchange whose own
/// statement went stale, pipelined before such a batch, gets its error as on a direct
/// connection, and the batch, stale too, is replayed and gets its rows.
#[test]
fn a_stale_error_before_a_replayable_batch_stays_where_it_belongs() {
    let lp = start(None);
    let mut setup = client(&lp, "iso", &[]);
    let r =
        setup.query("drop type if exists iso_before; create type iso_before as (a int, b text)");
    assert!(r.error.is_none(), "{:?}", r.error.map(|e| e.fields()));
    let typed = "select $1::iso_before";
    let mut first = client(&lp, "iso", &[]);
    assert_eq!(
        prepare_and_run(&mut first, "p1", typed, "(1,x)"),
        Ok("(1,x)".into())
    );
    first.terminate();
    let mut second = client(&lp, "iso", &[]);
    assert_eq!(
        prepare_and_run(&mut second, "t0", "select $1::iso_before as own", "(1,x)"),
        Ok("(1,x)".into())
    );
    // Behind lakepool's back: both statements on the pool's one server go stale.
    pg().exec_sql_in(
        "appdb",
        "drop type iso_before; create type iso_before as (a int, b text)",
    );

    let mut m = wire::bind("", "t0", &[Some("(1,x)")]);
    m.extend_from_slice(&wire::execute(""));
    m.extend_from_slice(&wire::sync());
    m.extend_from_slice(&wire::parse("t1", typed));
    m.extend_from_slice(&wire::bind("", "t1", &[Some("(2,y)")]));
    m.extend_from_slice(&wire::execute(""));
    m.extend_from_slice(&wire::sync());
    m.extend_from_slice(&wire::frontend_msg(b'Q', b"select 'after'\0"));
    second.send(&m).expect("send two batches and a Query");
    let own = second.read_until_ready("the batch on t0");
    let batch = second.read_until_ready("the batch on t1");
    let after = second.read_until_ready("the Query");
    assert_eq!(
        (
            own.error.as_ref().and_then(|e| e.sqlstate()),
            batch.error.as_ref().map(|e| e.fields()),
            text(&batch),
            after.error.as_ref().map(|e| e.fields()),
            text(&after)
        ),
        (
            Some("XX000".to_string()),
            None,
            "(2,y)".to_string(),
            None,
            "after".to_string()
        )
    );
}

/// Issue 17: clients saw other clients' `lakepool_<n>` statements in `pg_prepared_statements`.
/// A client sees exactly its own names (protocol-level and SQL PREPARE), whether it asks in
/// a simple query or through the extended protocol, with another client's statements on the
/// same server.
#[test]
fn pg_prepared_statements_shows_a_client_its_own_names() {
    let lp = start(None);
    let mut mine = client(&lp, "iso", &[]);
    let mut theirs = client(&lp, "iso", &[]);
    let mut m = wire::parse("mine_a", "select 1");
    m.extend_from_slice(&wire::parse("mine_b", "select 2"));
    m.extend_from_slice(&wire::sync());
    mine.send(&m).expect("send Parse");
    assert!(mine.read_until_ready("Parse mine_*").error.is_none());
    assert!(mine.query("PREPARE mine_sql AS select 4").error.is_none());
    let mut m = wire::parse("theirs", "select 3");
    m.extend_from_slice(&wire::sync());
    theirs.send(&m).expect("send Parse");
    assert!(theirs.read_until_ready("Parse theirs").error.is_none());

    let list = "select name from pg_prepared_statements order by name";
    let mut problems = Vec::new();
    for (who, c, want) in [
        ("mine", &mut mine, "mine_a\nmine_b\nmine_sql"),
        ("theirs", &mut theirs, "theirs"),
    ] {
        let simple = c.query(list);
        if text(&simple) != want || simple.error.is_some() {
            problems.push(format!(
                "{who}, simple query: {:?} {:?}",
                text(&simple),
                simple.error
            ));
        }
        let mut m = wire::parse("", list);
        m.extend_from_slice(&wire::bind("", "", &[]));
        m.extend_from_slice(&wire::execute(""));
        m.extend_from_slice(&wire::sync());
        c.send(&m).expect("send the extended query");
        let extended = c.read_until_ready("extended query");
        if text(&extended) != want || extended.error.is_some() {
            problems.push(format!(
                "{who}, extended protocol: {:?} {:?}",
                text(&extended),
                extended.error
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
