//! Tests of the SQL classifier (included from sql.rs). Over 600 lines: one case per statement
//! form the data path must see, kept next to each other so a missing form shows.

use super::*;

fn set(name: &str) -> Command {
    Command::Set { name: name.into() }
}
fn set_local(name: &str) -> Command {
    Command::SetLocal { name: name.into() }
}
fn reset(name: &str) -> Command {
    Command::Reset { name: name.into() }
}

/// Classification of a single-statement string (also checks the pre-filter agrees).
fn one(sql: &str) -> Command {
    let st = statements(sql);
    assert_eq!(st.len(), 1, "{sql:?} -> {st:?}");
    let cmd = st.into_iter().next().map(|s| s.command).unwrap();
    if cmd != Command::Other {
        assert!(needs_attention(sql.as_bytes()), "{sql:?}");
    }
    cmd
}

fn texts(sql: &str) -> Vec<&str> {
    statements(sql).into_iter().map(|s| s.text).collect()
}

#[test]
fn set_forms() {
    assert_eq!(one("SET search_path TO a, b"), set("search_path"));
    assert_eq!(one(r#"set Search_Path = "MySchema""#), set("search_path"));
    assert_eq!(
        one("SET SESSION statement_timeout = '5s'"),
        set("statement_timeout")
    );
    assert_eq!(one("SET LOCAL lock_timeout = 1"), set_local("lock_timeout"));
    assert_eq!(one("SET TIME ZONE 'UTC'"), set("timezone"));
    assert_eq!(one("set local time zone 'UTC'"), set_local("timezone"));
    assert_eq!(one("SET NAMES 'UTF8'"), set("client_encoding"));
    assert_eq!(one("SET SCHEMA 'app'"), set("search_path"));
    assert_eq!(one("SET ROLE admin"), set("role"));
    assert_eq!(one("SET ROLE NONE"), set("role"));
    assert_eq!(one("SET role TO 'x'"), set("role"));
    assert_eq!(
        one("SET SESSION AUTHORIZATION bob"),
        set("session_authorization")
    );
    assert_eq!(
        one("SET SESSION SESSION AUTHORIZATION bob"),
        set("session_authorization")
    );
    assert_eq!(
        one("SET LOCAL SESSION AUTHORIZATION bob"),
        set_local("session_authorization")
    );
    assert_eq!(one("SET XML OPTION DOCUMENT"), set("xmloption"));
    assert_eq!(one("SET myapp.tenant = 42"), set("myapp.tenant"));
    assert_eq!(one(r#"SET "MyApp" . Tenant TO 'x'"#), set("MyApp.tenant"));
    assert_eq!(one("SET search_path FROM CURRENT"), set("search_path"));
    assert_eq!(one("SET a=-1"), set("a"));
    assert_eq!(
        one("SET /* c */ -- c\n\t search_path\n=/**/x"),
        set("search_path")
    );
    assert_eq!(one(r#"SET "a""b" = 1"#), set("a\"b"));
    assert_eq!(one("SET local.x = 1"), set("local.x"));
    assert_eq!(one("SET LOCAL local.x = 1"), set_local("local.x"));
    assert_eq!(one("SET session.x TO 1"), set("session.x"));
    assert_eq!(one("SET local = 1"), set("local"));
    assert_eq!(one(r#"SET "" = 1"#), Command::Other);
}

#[test]
fn set_to_default_is_reset() {
    assert_eq!(
        one("SET application_name TO DEFAULT"),
        reset("application_name")
    );
    assert_eq!(
        one("set application_name = default"),
        reset("application_name")
    );
    assert_eq!(one("SET TIME ZONE DEFAULT"), reset("timezone"));
    assert_eq!(one("SET TIME ZONE LOCAL"), reset("timezone"));
    assert_eq!(one("SET NAMES"), reset("client_encoding"));
    assert_eq!(one("SET NAMES DEFAULT"), reset("client_encoding"));
    assert_eq!(
        one("SET SESSION AUTHORIZATION DEFAULT"),
        reset("session_authorization")
    );
    // Quoted "default" is a value, not the keyword.
    assert_eq!(one(r#"SET x = "default""#), set("x"));
    // LOCAL wins: the reset lasts only for the transaction.
    assert_eq!(one("SET LOCAL x TO DEFAULT"), set_local("x"));
}

#[test]
fn set_transaction_level_is_other() {
    for sql in [
        "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
        "SET TRANSACTION SNAPSHOT '00000003-0000001B-1'",
        "SET CONSTRAINTS ALL DEFERRED",
        "SET LOCAL",
        "SET",
        "SET x",
        "RESET TRANSACTION ISOLATION LEVEL",
    ] {
        assert_eq!(one(sql), Command::Other, "{sql}");
    }
}

#[test]
fn reset_forms() {
    assert_eq!(one("reset all"), Command::ResetAll);
    assert_eq!(one("RESET TimeZone"), reset("timezone"));
    assert_eq!(one("RESET TIME ZONE"), reset("timezone"));
    assert_eq!(one("RESET ROLE"), reset("role"));
    assert_eq!(
        one("RESET SESSION AUTHORIZATION"),
        reset("session_authorization")
    );
    assert_eq!(one("RESET myapp.Tenant"), reset("myapp.tenant"));
    assert_eq!(one(r#"RESET "all""#), reset("all"));
}

#[test]
fn discard_deallocate_prepare_listen() {
    assert_eq!(one("DISCARD ALL"), Command::DiscardAll);
    assert_eq!(one("discard plans"), Command::DiscardOther);
    assert_eq!(one("DISCARD SEQUENCES"), Command::DiscardOther);
    assert_eq!(one("DISCARD TEMP"), Command::DiscardOther);
    assert_eq!(one("DISCARD TEMPORARY"), Command::DiscardOther);
    let dealloc = |n: &str| Command::Deallocate { name: n.into() };
    assert_eq!(one(r#"DEALLOCATE PREPARE "S_1""#), dealloc("S_1"));
    assert_eq!(one("DEALLOCATE S_1"), dealloc("s_1"));
    assert_eq!(one("DEALLOCATE prepare"), dealloc("prepare"));
    assert_eq!(one("deallocate all"), Command::DeallocateAll);
    assert_eq!(one("DEALLOCATE PREPARE ALL"), Command::DeallocateAll);
    assert_eq!(one(r#"DEALLOCATE "all""#), dealloc("all"));
    let prep = |n: &str| Command::Prepare { name: n.into() };
    assert_eq!(one("PREPARE p(int) AS SELECT $1"), prep("p"));
    assert_eq!(one(r#"PREPARE "Q" AS SELECT 1"#), prep("Q"));
    assert_eq!(one("PREPARE TRANSACTION 'gid'"), Command::Other);
    assert_eq!(one("LISTEN foo"), Command::Listen);
    assert_eq!(one("UNLISTEN foo"), Command::Other);
}

#[test]
fn long_identifiers_are_truncated() {
    let long = "a".repeat(70);
    assert_eq!(one(&format!("SET {long} = 1")), set(&long[..63]));
    // Truncation stops at a character boundary.
    let wide = "é".repeat(40);
    let Command::Set { name } = one(&format!("SET \"{wide}\" = 1")) else {
        panic!()
    };
    assert_eq!(name, "é".repeat(31));
}

#[test]
fn unicode_escaped_identifiers() {
    assert_eq!(one(r#"SET U&"d\0061t" = 1"#), set("dat"));
    assert_eq!(one(r#"SET U&"d!0061t" UESCAPE '!' = 1"#), set("dat"));
    assert_eq!(one(r#"SET U&"\+01F600" = 1"#), set("\u{1F600}"));
    assert_eq!(one(r#"SET U&"\D83D\DE00" = 1"#), set("\u{1F600}"));
    assert_eq!(one(r#"SET U&"\\" = 1"#), set("\\"));
    assert_eq!(one(r#"SET U&"\zz" = 1"#), Command::Other);
    assert_eq!(
        one(r#"SELECT U&"pg_\0061dvisory_lock"(1)"#),
        Command::AdvisoryLock
    );
}

#[test]
fn splitting() {
    let st = statements("SELECT 1; SET x.y = 2; SELECT 'a;b'");
    assert_eq!(st.len(), 3);
    assert_eq!(st[0].text, "SELECT 1");
    assert_eq!(st[0].command, Command::Other);
    assert_eq!(st[1].text, "SET x.y = 2");
    assert_eq!(st[1].command, set("x.y"));
    assert_eq!(st[2].text, "SELECT 'a;b'");
    assert_eq!(st[2].command, Command::Other);

    let st = statements("BEGIN; SET LOCAL a = 1; COMMIT");
    let cmds: Vec<_> = st.iter().map(|s| s.command.clone()).collect();
    assert_eq!(cmds, [Command::Other, set_local("a"), Command::Other]);

    assert_eq!(texts(" ;; \n -- x\n ; /* y */ "), Vec::<&str>::new());
    assert_eq!(texts(""), Vec::<&str>::new());
    assert_eq!(
        texts("/* a */ SELECT /* in */ 1 -- b\n ; -- c\n SET a = 1 ;"),
        ["SELECT /* in */ 1", "SET a = 1"]
    );
    // Rule actions are parenthesised statement lists.
    assert_eq!(
        texts("CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO u VALUES (1); NOTIFY t); SET a = 1").len(),
        2
    );
    // SQL-standard routine bodies.
    let body = "CREATE OR REPLACE FUNCTION f(x int) RETURNS int LANGUAGE sql BEGIN ATOMIC \
                SELECT CASE WHEN x > 0 THEN 1 ELSE 2 END; SELECT 3; END";
    assert_eq!(texts(&format!("{body}; SET a = 1")), [body, "SET a = 1"]);
    // A function named "begin" does not open a body.
    assert_eq!(
        texts("CREATE FUNCTION begin() RETURNS int AS 'select 1' LANGUAGE sql; SET ROLE x; END")
            .len(),
        3
    );
}

#[test]
fn quoting_and_comments() {
    assert_eq!(one("SELECT $$ ; SET a = 1 $$"), Command::Other);
    assert_eq!(one("SELECT $fn$ ; $$ SET a = 1; $fn$"), Command::Other);
    assert_eq!(one("/* SET a=1 */ SELECT 1"), Command::Other);
    assert_eq!(
        one("/* outer /* SET a=1; */ still ; */ SELECT 1"),
        Command::Other
    );
    assert_eq!(one("-- SET a=1;\nSELECT 1"), Command::Other);
    assert_eq!(one("SELECT 'it''s; SET a=1'"), Command::Other);
    assert_eq!(one(r"SELECT E'it\'s; SET a=1'"), Command::Other);
    assert_eq!(one(r"SELECT e'\\'"), Command::Other);
    assert_eq!(one(r#"SELECT "a;""b" FROM t"#), Command::Other);
    assert_eq!(one(r"SELECT U&'\0041;'"), Command::Other);
    assert_eq!(
        texts(r"SELECT 'a\'; SET a = 1"),
        [r"SELECT 'a\'", "SET a = 1"]
    );
    // `$1` is a parameter; `a$$` is one identifier; `$x` without a closing `$` is no quote.
    assert_eq!(texts("SELECT $1; SET a = 1; SELECT $2").len(), 3);
    assert_eq!(texts("SELECT a$$ ; SET a = 1").len(), 2);
    assert_eq!(texts("SELECT $x ; SET a = 1").len(), 2);
    // Unterminated constructs run to the end.
    for sql in [
        "SELECT '; SET a=1",
        "SELECT \"; SET a=1",
        "SELECT $q$; SET a=1",
        "/* ; SET a=1",
    ] {
        assert!(
            statements(sql).iter().all(|s| s.command == Command::Other),
            "{sql}"
        );
    }
}

#[test]
fn advisory_locks() {
    assert_eq!(one("select pg_advisory_lock(1)"), Command::AdvisoryLock);
    assert_eq!(
        one("SELECT PG_TRY_ADVISORY_LOCK_SHARED (1, 2)"),
        Command::AdvisoryLock
    );
    assert_eq!(
        one("SELECT pg_catalog.pg_advisory_lock_shared(1)"),
        Command::AdvisoryLock
    );
    assert_eq!(
        one(r#"SELECT "pg_try_advisory_lock"(1)"#),
        Command::AdvisoryLock
    );
    assert_eq!(
        one("SELECT x FROM t WHERE pg_try_advisory_lock(id)"),
        Command::AdvisoryLock
    );
    for sql in [
        "select pg_advisory_xact_lock(1)",
        "select pg_advisory_unlock(1)",
        "select pg_advisory_unlock_all()",
        "select 'pg_advisory_lock(1)'",
        "select 1 -- pg_advisory_lock(1)",
        r#"select "PG_ADVISORY_LOCK"(1)"#,
        "select my_pg_advisory_lock(1)",
    ] {
        assert_eq!(one(sql), Command::Other, "{sql}");
    }
}

// Long on purpose: one table of statements and what each is classified as.
#[test]
fn cursors_and_temp_objects() {
    assert_eq!(
        one("DECLARE c CURSOR WITH HOLD FOR SELECT 1"),
        Command::CursorWithHold
    );
    assert_eq!(
        one("declare cursor binary no scroll cursor with hold for select 1"),
        Command::CursorWithHold
    );
    assert_eq!(
        one("DECLARE c CURSOR WITHOUT HOLD FOR SELECT 1"),
        Command::Other
    );
    assert_eq!(
        one("DECLARE c CURSOR FOR SELECT 'with hold'"),
        Command::Other
    );

    assert_eq!(one("CREATE TEMP TABLE t(a int)"), Command::CreateTemp);
    assert_eq!(
        one("CREATE TEMP TABLE t(a int) ON COMMIT DROP"),
        Command::Other
    );
    assert_eq!(
        one("CREATE TEMP TABLE t(a int) ON COMMIT PRESERVE ROWS"),
        Command::CreateTemp
    );
    assert_eq!(
        one("CREATE TEMP TABLE t ON COMMIT DROP AS SELECT 1"),
        Command::Other
    );
    assert_eq!(
        one("CREATE GLOBAL TEMPORARY TABLE t AS SELECT 1 AS \"on\""),
        Command::CreateTemp
    );
    assert_eq!(one("create local temp sequence s"), Command::CreateTemp);
    assert_eq!(
        one("CREATE OR REPLACE TEMP VIEW v AS SELECT 1"),
        Command::CreateTemp
    );
    assert_eq!(
        one("CREATE TEMP RECURSIVE VIEW v(n) AS SELECT 1"),
        Command::CreateTemp
    );
    assert_eq!(one("CREATE TABLE pg_temp.t(a int)"), Command::CreateTemp);
    assert_eq!(
        one("CREATE TABLE IF NOT EXISTS pg_temp_3.t(a int)"),
        Command::CreateTemp
    );
    assert_eq!(one("CREATE TABLE t(a int)"), Command::Other);
    assert_eq!(one("CREATE TABLE temp(a int)"), Command::Other);
    assert_eq!(one("CREATE TEMP FUNCTION"), Command::Other);
    assert_eq!(one("SELECT * INTO TEMP t FROM x"), Command::CreateTemp);
    assert_eq!(
        one("SELECT * INTO TEMPORARY TABLE t FROM x"),
        Command::CreateTemp
    );
    assert_eq!(
        one("SELECT * INTO LOCAL TEMP t FROM x"),
        Command::CreateTemp
    );
    assert_eq!(one("SELECT * INTO temp FROM x"), Command::Other);
    assert_eq!(one("INSERT INTO temp VALUES (1)"), Command::Other);
    assert_eq!(
        one(
            "WITH x AS (SELECT 1), y (a) AS NOT MATERIALIZED (SELECT 2) SELECT * INTO TEMP t FROM x"
        ),
        Command::CreateTemp
    );
    assert_eq!(
        one(
            "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) \
             SEARCH DEPTH FIRST BY n SET o CYCLE n SET c USING p SELECT * INTO TEMP t FROM r"
        ),
        Command::CreateTemp
    );
    assert_eq!(
        one("WITH x AS (SELECT 1) INSERT INTO temp SELECT * FROM x"),
        Command::Other
    );
    assert_eq!(
        one(
            "WITH update AS (SELECT 1 AS a) MERGE INTO temp t USING update u ON true \
             WHEN MATCHED THEN DO NOTHING"
        ),
        Command::Other
    );
}

#[test]
fn needs_attention_filters() {
    assert!(!needs_attention(
        b"SELECT abalance FROM pgbench_accounts WHERE aid = $1"
    ));
    assert!(!needs_attention(b""));
    assert!(!needs_attention(b"INSERT INTO t VALUES (1, 2)"));
    // pgbench's TPC-B-like writes: `SET` inside an UPDATE is no session change.
    for sql in [
        "UPDATE pgbench_accounts SET abalance = abalance + -4211 WHERE aid = 77311;",
        "UPDATE pgbench_tellers SET tbalance = tbalance + -4211 WHERE tid = 7;",
        "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) \
         VALUES (7, 1, 77311, -4211, CURRENT_TIMESTAMP);",
        "update t set\tx = 1",
        "select 1 as set",
    ] {
        assert!(!needs_attention(sql.as_bytes()), "{sql}");
    }
    for sql in [
        "sEt a=1",
        "  \n set a=1",
        "select 1;\tSET a=1",
        "update t set x = 1; set a = 1",
        "/* c */ set a=1",
        "select set_config('a', '1', false)",
        "reset all",
        "DISCARD all",
        "Deallocate x",
        "PREPARE p AS SELECT 1",
        "LISTEN x",
        "select pg_advisory_lock(1)",
        "declare c cursor with HOLD for select 1",
        "create TEMP table t()",
        "create table pg_temp.t()",
        r#"select u&"x"(1)"#,
    ] {
        assert!(needs_attention(sql.as_bytes()), "{sql}");
    }
}

/// Deterministic xorshift generator: no extra crates, reproducible failures.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Checks the invariants every input must satisfy.
fn check(sql: &str) {
    let st = statements(sql);
    let range = sql.as_ptr() as usize..=sql.as_ptr() as usize + sql.len();
    for s in &st {
        assert!(!s.text.is_empty(), "{sql:?}");
        assert!(range.contains(&(s.text.as_ptr() as usize)), "{sql:?}");
        // (Only the start: an unterminated quote keeps trailing blanks as its content.)
        assert_eq!(s.text, s.text.trim_start(), "{sql:?}");
        // A statement's text re-splits to itself.
        let again = statements(s.text);
        assert_eq!(again.len(), 1, "{sql:?}: {:?}", s.text);
        assert_eq!(again[0], *s, "{sql:?}");
        if s.command != Command::Other {
            assert!(needs_attention(sql.as_bytes()), "{sql:?} -> {s:?}");
        }
    }
}

// Long on purpose: the list of SQL pieces it combines is most of its length.
#[test]
fn random_and_truncated_inputs_never_panic() {
    const PIECES: &[&str] = &[
        "SET ",
        "set",
        "RESET ",
        "LOCAL ",
        "SESSION ",
        "TIME ZONE ",
        "ALL",
        "x",
        "a.b",
        " ",
        "\n",
        "\t",
        "'",
        "''",
        "\"",
        "\"\"",
        "$$",
        "$a$",
        "$1",
        "$",
        "--",
        "/*",
        "*/",
        ";",
        ";",
        "(",
        ")",
        "E'",
        "e'\\'",
        "\\",
        "U&\"",
        "U&'",
        "UESCAPE '!'",
        "!0061",
        "\\0061",
        "\\D83D",
        "pg_advisory_lock",
        "pg_try_advisory_lock_shared",
        "pg_temp",
        ".",
        "TEMP ",
        "TEMPORARY ",
        "CREATE ",
        "OR REPLACE ",
        "TABLE ",
        "VIEW ",
        "=",
        "TO ",
        "DEFAULT",
        "é",
        "\u{0}",
        "😀",
        "DECLARE c CURSOR WITH HOLD ",
        "FOR ",
        "BEGIN ",
        "ATOMIC ",
        "END",
        "CASE ",
        "FUNCTION ",
        "ON COMMIT DROP",
        "LISTEN ",
        "DISCARD ",
        "DEALLOCATE ",
        "PREPARE ",
        "SELECT ",
        "INTO ",
        "AS ",
        "1",
        "0.5e",
    ];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..5_000 {
        let mut sql = String::new();
        for _ in 0..rng.below(24) {
            sql.push_str(PIECES[rng.below(PIECES.len())]);
        }
        check(&sql);
        // Every prefix, as a message cut short would present it.
        for (i, _) in sql.char_indices().step_by(3) {
            check(&sql[..i]);
        }
    }
}

#[test]
fn truncated_test_vectors_never_panic() {
    let vectors = [
        r#"SET "MyApp" . Tenant TO 'x'; RESET ALL; DISCARD ALL"#,
        r#"SELECT U&"pg_\0061dvisory_lock"(1) UESCAPE '!'"#,
        "CREATE OR REPLACE FUNCTION f() RETURNS int BEGIN ATOMIC SELECT CASE WHEN 1 THEN 2 END; END; SET a=1",
        "SELECT $fn$ ; $$ SET a = 1; $fn$; /* a /* b */ c */ LISTEN x -- y",
        r"SELECT E'it\'s'; DECLARE c CURSOR WITH HOLD FOR SELECT 1; CREATE TEMP TABLE t() ON COMMIT DROP",
    ];
    for v in vectors {
        for (i, _) in v.char_indices() {
            check(&v[..i]);
            check(&v[i..]);
        }
    }
}

#[test]
fn pre_filter_skips_words_that_only_contain_a_keyword() {
    for q in [
        "SELECT * FROM t ORDER BY a OFFSET 5",
        "select dataset, attempt, threshold from jobs",
        "SELECT abalance FROM pgbench_accounts WHERE aid = 1",
    ] {
        assert!(!needs_attention(q.as_bytes()), "{q}");
    }
    for q in [
        "RESET search_path",
        "select pg_advisory_lock(1)",
        "create table pg_temp.t (a int)",
        "x;set a = 1",
    ] {
        assert!(needs_attention(q.as_bytes()), "{q}");
    }
}

#[test]
fn pre_filter_sees_a_keyword_right_after_a_number() {
    // Found by fuzzing: the scanner ends the number before the letter, so this is a
    // set_config call, which the pre-filter hid behind the digit.
    let q = "select 1set_config(name, 'v', false)";
    assert_eq!(statements(q)[0].set_config, SetConfigCalls::Unknown);
    assert!(needs_attention(q.as_bytes()));
}

#[test]
fn session_characteristics_name_the_defaults_they_set() {
    assert_eq!(
        one("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY, ISOLATION LEVEL SERIALIZABLE"),
        Command::SessionCharacteristics {
            names: vec![
                "default_transaction_read_only".into(),
                "default_transaction_isolation".into()
            ]
        }
    );
}

#[test]
fn do_call_and_execute() {
    assert_eq!(one("DO $$ BEGIN PERFORM 1; END $$"), Command::Opaque);
    assert_eq!(one("call p(1)"), Command::Opaque);
    assert_eq!(one("EXECUTE q(1)"), Command::Execute { name: "q".into() });
    assert_eq!(
        one("EXPLAIN (ANALYZE) EXECUTE \"Q\""),
        Command::Execute { name: "Q".into() }
    );
    assert_eq!(
        one("CREATE TABLE t AS EXECUTE q"),
        Command::Execute { name: "q".into() }
    );
    assert!(needs_attention(b"do $$ x $$"));
    assert!(needs_attention(b"CALL p()"));
    // A user's function may change anything: the classifier must look.
    assert!(needs_attention(b"select double_it(1)"));
}

#[test]
fn unknown_function_calls_are_noticed() {
    let calls = |sql: &str| statements(sql).iter().any(|s| s.calls_unknown);
    for sql in [
        "select public.iso_set_work_mem()",
        "select my_fn(1)",
        "SELECT * FROM app.items_for($1)",
        "select \"MyFn\"()",
        "select pg_catalog.now(), other.now()",
        "insert into t (a) select f(x) from y",
    ] {
        assert!(calls(sql), "{sql}");
        assert!(needs_attention(sql.as_bytes()), "{sql}");
    }
    for sql in [
        "select count(*), now(), coalesce(a, 1) from t where x in (1, 2) and exists (select 1)",
        "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 2, 3, 4, CURRENT_TIMESTAMP)",
        "insert into s.t(a, b) values ($1, $2)",
        "select pg_catalog.lower($1)::varchar(20), cast(x as numeric(10, 2)) from generate_series(1, 3) as g(i)",
        "create table t (a int references u (id), b decimal(5, 1))",
        "with x(a) as (select 1) select * from x",
        "create function f(int) returns int language sql as 'select 1'",
        "select 'f(' || \"lower\"(x) from t",
    ] {
        assert!(!calls(sql), "{sql}");
    }
    // Keywords and built-ins before `(` keep the pre-filter's fast answer.
    assert!(!needs_attention(
        b"select count(*), now(), coalesce(a, 1) from t where x in (1, 2) and exists (select 1)"
    ));
    assert!(!needs_attention(b"select (1 + 2) * (3)"));
}

#[test]
fn set_config_calls_name_their_parameters() {
    let st = |sql: &str| statements(sql).remove(0).set_config;
    assert_eq!(
        st(
            "SELECT pg_catalog.set_config('Search_Path', 'a', false), set_config('x.y'::text, $1, true)"
        ),
        SetConfigCalls::Names(vec!["search_path".into(), "x.y".into()])
    );
    assert_eq!(
        st("SELECT set_config(name, 'v', false) FROM t"),
        SetConfigCalls::Unknown
    );
    assert_eq!(st("SELECT 'set_config(''a'')'"), SetConfigCalls::None);
    assert!(needs_attention(b"select set_config('a','b',false)"));
}

#[test]
fn prepared_statements_view_references() {
    let r = prepared_statements_refs(
        "select p.name from pg_catalog.pg_prepared_statements p join x on true, pg_prepared_statements where pg_prepared_statements.name = 'pg_prepared_statements' and other.pg_prepared_statements is null",
    );
    assert_eq!(r.len(), 2, "{r:?}");
    assert!(r[0].aliased);
    assert!(!r[1].aliased);
}

/// The eight-bytes-at-a-time word skip agrees with the byte-by-byte rule for every byte value
/// at every position of a chunk.
#[test]
fn skip_letters_matches_the_byte_rule() {
    for b in 0..=255u8 {
        for at in 0..12 {
            let mut text = vec![b'x'; 12];
            text[at] = b;
            for start in 0..text.len() {
                let want = (start..text.len())
                    .find(|&j| !hides_word_start(text[j]))
                    .unwrap_or(text.len());
                assert_eq!(
                    skip_letters(&text, start),
                    want,
                    "byte {b:#x} at {at}, from {start}"
                );
            }
        }
    }
}

/// A simple query's text ends at its first NUL, and the pooler asks the pre-filter about the
/// whole body but the last byte: that may only add attention. For texts the pre-filter passes,
/// every prefix followed by a NUL and any rest must pass too.
#[test]
fn needs_attention_of_a_text_holds_past_a_nul() {
    let texts = [
        "SET search_path = a",
        "select 1; set x = 1",
        "RESET ALL",
        "discard all",
        "DEALLOCATE p1",
        "PREPARE p AS SELECT 1",
        "LISTEN ch",
        "SELECT pg_advisory_lock(1)",
        "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
        "CREATE TEMP TABLE t (a int)",
        "DO $$ BEGIN END $$",
        "CALL p()",
        "EXECUTE p",
        "SELECT set_config('a', 'b', false)",
        "SELECT U&\"\\0070g_advisory_lock\"(1)",
        "SELECT f /* x */ (1)",
        "SELECT unknown_fn(1)",
    ];
    let rests: [&[u8]; 5] = [b"", b"x", b" ; SELECT 1", b"abc(", b"\0--"];
    for t in texts {
        let t = t.as_bytes();
        for k in 0..=t.len() {
            let prefix = &t[..k];
            if !needs_attention(prefix) {
                continue;
            }
            for rest in rests {
                let whole = [prefix, b"\0", rest].concat();
                assert!(
                    needs_attention(&whole),
                    "{:?}",
                    String::from_utf8_lossy(&whole)
                );
                let whole = [prefix, b"\0", &t[k..], rest].concat();
                assert!(
                    needs_attention(&whole),
                    "{:?}",
                    String::from_utf8_lossy(&whole)
                );
            }
        }
    }
}
