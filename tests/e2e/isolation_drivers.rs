//! Issue 17 item 7 with real drivers: psycopg 3, asyncpg, pgjdbc and node-postgres, each
//! through lakepool in transaction mode with `pool_size = 1` (every connection gets the same
//! server), over TLS. Each program (`tests/compat/{python,node,java}/isolation*`) runs
//! session-changing statements on one connection, disconnects, and checks a new connection
//! sees the server defaults; then checks a connection's own settings persist across
//! transactions while another connection uses the server in between; none of these statements
//! may get a notice.
//!
//! Client libraries as for `compat.rs` (`tests/compat/setup.sh`, pgjdbc from Debian).

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use crate::compat::{PGJDBC_JAR, repo, require_tool, run, venv_python};
use crate::fixtures::{self, APP, Opts};
use crate::isolation::{OTHER_ROLE, roles};
use crate::support::{APP_DB, APP_OWNER, HOST, Lakepool, ok_stdout, pg, psql, scrub_pg_env};

/// What a new connection must see as a direct connection does.
const CHECK: &str = "select current_user, current_setting('default_transaction_read_only'), \
    current_setting('transaction_isolation'), current_setting('work_mem'), \
    current_setting('search_path'), current_setting('statement_timeout'), \
    coalesce(current_setting('myapp.tenant', true), '')";

/// Session-changing statements, each run on its own connection in autocommit.
fn changes() -> String {
    [
        &format!("SET ROLE {OTHER_ROLE}"),
        "SET default_transaction_read_only = on",
        "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE",
        "select set_config('work_mem', '64MB', false)",
        "select set_config('search_path', 'x,public', false)",
        "SET statement_timeout = '7s'",
        "SET myapp.tenant = 'a'",
    ]
    .join("\n")
}

/// A connection's own changes, and what it must see afterwards.
fn own_changes() -> String {
    [
        &format!("SET ROLE {OTHER_ROLE}"),
        "SET work_mem = '64MB'",
        "SET search_path = x, public",
        "select set_config('statement_timeout', '7s', false)",
        "SET myapp.tenant = 'a'",
        // Parameters drivers' test suites set: no notice for them.
        "SET client_min_messages = notice",
        "SET escape_string_warning = off",
    ]
    .join("\n")
}
const OWN_CHECK: &str = "select current_user, current_setting('work_mem'), \
    current_setting('search_path'), current_setting('statement_timeout'), \
    coalesce(current_setting('myapp.tenant', true), '')";

fn own_want() -> String {
    format!("{OTHER_ROLE}|64MB|x, public|7s|a")
}

/// Runs a driver's program against a fresh lakepool and asserts it reported success.
fn run_driver(what: &str, mut cmd: Command) {
    roles();
    let defaults = ok_stdout(
        "defaults on a direct connection",
        &psql(
            pg().port,
            APP_OWNER.0,
            APP_OWNER.1,
            APP_DB,
            "disable",
            CHECK,
        ),
    );
    let config = fixtures::config(&Opts {
        size: 1,
        wait: 60.0,
        ..Opts::default()
    })
    // A JVM's first TLS handshake can take seconds on a busy machine (see compat.rs).
    .replace("handshake_timeout = 5\n", "handshake_timeout = 60\n");
    let lp = Lakepool::start(&config, &[(fixtures::OWNER_PW_ENV, APP_OWNER.1)]);
    scrub_pg_env(&mut cmd)
        .env("COMPAT_HOST", HOST)
        .env("COMPAT_PORT", lp.port().to_string())
        .env("COMPAT_USER", APP.0)
        .env("COMPAT_PASSWORD", APP.1)
        .env("COMPAT_DB", "app")
        .env("COMPAT_CA", &pg().ca_file)
        .env("ISO_CHANGES", changes())
        .env("ISO_CHECK", CHECK)
        .env("ISO_DEFAULTS", &defaults)
        .env("ISO_OWN_CHANGES", own_changes())
        .env("ISO_OWN_CHECK", OWN_CHECK)
        .env("ISO_OWN_WANT", own_want());
    let ran = run(cmd);
    let logs = lp.logs();
    let tail: Vec<&str> = logs.lines().rev().take(20).collect();
    assert!(
        ran.ok() && ran.stdout.contains("OK "),
        "{what}: {}\n--- lakepool log (last lines, newest first) ---\n{}",
        ran.describe(),
        tail.join("\n")
    );
    println!("{}", ran.stdout.trim());
}

#[test]
fn psycopg_sessions_are_isolated() {
    let mut cmd = Command::new(venv_python("psycopg"));
    cmd.arg(repo().join("tests/compat/python/isolation_psycopg.py"));
    run_driver("psycopg", cmd);
}

#[test]
fn asyncpg_sessions_are_isolated() {
    let mut cmd = Command::new(venv_python("asyncpg"));
    cmd.arg(repo().join("tests/compat/python/isolation_asyncpg.py"));
    run_driver("asyncpg", cmd);
}

#[test]
fn node_postgres_sessions_are_isolated() {
    let node = require_tool("node", "apt-get install -y nodejs npm");
    let dir = repo().join("tests/compat/node");
    assert!(
        dir.join("node_modules/pg/package.json").is_file(),
        "{}/node_modules/pg missing: run tests/compat/setup.sh",
        dir.display()
    );
    let mut cmd = Command::new(node);
    cmd.arg(dir.join("isolation.js")).current_dir(&dir);
    run_driver("node-postgres", cmd);
}

/// Compiles `tests/compat/java/Isolation.java` once per test binary; returns the classpath.
fn isolation_classpath() -> String {
    static CLASSES: OnceLock<Mutex<Option<PathBuf>>> = OnceLock::new();
    let jar = std::env::var("LAKEPOOL_PGJDBC_JAR").unwrap_or_else(|_| PGJDBC_JAR.into());
    assert!(
        std::path::Path::new(&jar).is_file(),
        "pgjdbc not found at {jar}: apt-get install -y libpostgresql-jdbc-java"
    );
    let javac = require_tool("javac", "apt-get install -y default-jdk-headless");
    let mut classes = CLASSES
        .get_or_init(|| Mutex::new(None))
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if classes.is_none() {
        let dir = tempfile::Builder::new()
            .prefix("isolation-java-")
            .tempdir_in(crate::support::scratch_dir())
            .expect("java temp dir")
            .keep();
        let mut cmd = Command::new(javac);
        cmd.args(["-encoding", "UTF-8", "-nowarn", "-d"])
            .arg(&dir)
            .arg(repo().join("tests/compat/java/Isolation.java"));
        let ran = run(cmd);
        assert!(ran.ok(), "javac Isolation.java failed: {}", ran.describe());
        *classes = Some(dir);
    }
    format!("{}:{jar}", classes.as_ref().unwrap().display())
}

#[test]
fn pgjdbc_sessions_are_isolated() {
    let classpath = isolation_classpath();
    let java = require_tool("java", "apt-get install -y default-jdk-headless");
    let mut cmd = Command::new(java);
    cmd.args(["-XX:TieredStopAtLevel=1", "-cp", &classpath, "Isolation"]);
    run_driver("pgjdbc", cmd);
}
