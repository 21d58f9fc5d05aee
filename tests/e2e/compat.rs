//! Real-client compatibility matrix: pgjdbc, psycopg 3, asyncpg, node-postgres, psql and
//! `pgbench -M prepared` against lakepool in transaction mode with a pool of 2 and 10
//! concurrent clients, over TLS (verify-full against the test CA).
//!
//! Each client program (under `tests/compat/`) reuses prepared statements across many
//! transactions, checks every result against PostgreSQL semantics (running sums, rolled back
//! inserts, parameters of several types, an error in a prepared statement, `SET
//! application_name`/`search_path` still in force in later transactions) and that the work ran
//! on at least two server connections; it exits non-zero with the mismatch otherwise.
//!
//! Client libraries: `tests/compat/setup.sh` (Python venv in `target/compat-venv`, node-postgres
//! in `tests/compat/node/node_modules`); pgjdbc and a JDK from Debian (`.ci/run`).
//!
//! `LAKEPOOL_COMPAT_TARGET=session` runs the same workloads through lakepool in session mode,
//! `=postgres` directly against the test cluster (to tell a client problem from a pooler one).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::fixtures::{self, APP, Opts};
use crate::support::{
    APP_DB, APP_OWNER, HOST, Lakepool, pg, pg_bin_dir, reap_pid, scrub_pg_env, unreap_pid,
};

/// Concurrent clients per workload.
const CLIENTS: usize = 10;
/// Transactions (plus autocommit statements) per client.
const ITERS: usize = 30;
/// Server connections lakepool may open: far fewer than clients.
const POOL_SIZE: usize = 2;
/// Longest a client program may run.
const TIMEOUT: Duration = Duration::from_secs(90);
/// Transactions per pgbench client.
const PGBENCH_TX: usize = 50;

const SETUP_HINT: &str = "run tests/compat/setup.sh";

pub(crate) fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Where the workloads connect, and as whom.
struct Target {
    label: String,
    port: u16,
    user: &'static str,
    password: &'static str,
    db: &'static str,
    lakepool: Option<Lakepool>,
}

impl Target {
    /// lakepool in transaction mode (or as `LAKEPOOL_COMPAT_TARGET` says).
    fn start() -> Target {
        let which =
            std::env::var("LAKEPOOL_COMPAT_TARGET").unwrap_or_else(|_| "transaction".into());
        match which.as_str() {
            "postgres" => Target {
                label: "PostgreSQL directly".into(),
                port: pg().port,
                user: APP_OWNER.0,
                password: APP_OWNER.1,
                db: APP_DB,
                lakepool: None,
            },
            mode @ ("transaction" | "session") => {
                let config = fixtures::config(&Opts {
                    mode,
                    size: POOL_SIZE,
                    // Session mode queues 8 of the 10 clients for a whole session.
                    wait: 60.0,
                    ..Opts::default()
                })
                // A JVM's first TLS handshake and SCRAM exchange can take seconds on a busy
                // 2-core machine; the fixture's 5 s would fail logins, not the workload.
                .replace("handshake_timeout = 5\n", "handshake_timeout = 60\n");
                assert!(config.contains("handshake_timeout = 60"), "{config}");
                let lp = Lakepool::start(&config, &[(fixtures::OWNER_PW_ENV, APP_OWNER.1)]);
                Target {
                    label: format!("lakepool {mode} mode, pool_size {POOL_SIZE}"),
                    port: lp.port(),
                    user: APP.0,
                    password: APP.1,
                    db: "app",
                    lakepool: Some(lp),
                }
            }
            other => panic!("LAKEPOOL_COMPAT_TARGET={other}: use transaction, session or postgres"),
        }
    }

    /// libpq connection string, TLS verified against the test CA.
    fn conninfo(&self) -> String {
        format!(
            "host={HOST} port={} user={} dbname={} sslmode=verify-full sslrootcert={} \
             connect_timeout=10",
            self.port,
            self.user,
            self.db,
            pg().ca_file.display()
        )
    }

    /// The `COMPAT_*` environment every client program reads.
    fn program_env(&self, cmd: &mut Command, table: &str) {
        scrub_pg_env(cmd)
            .env("COMPAT_HOST", HOST)
            .env("COMPAT_PORT", self.port.to_string())
            .env("COMPAT_USER", self.user)
            .env("COMPAT_PASSWORD", self.password)
            .env("COMPAT_DB", self.db)
            .env("COMPAT_CA", &pg().ca_file)
            .env("COMPAT_TABLE", table)
            .env("COMPAT_CLIENTS", CLIENTS.to_string())
            .env("COMPAT_ITERS", ITERS.to_string());
    }

    /// The last lines of lakepool's log, for failure messages.
    fn log_tail(&self) -> String {
        let Some(lp) = &self.lakepool else {
            return String::new();
        };
        let logs = lp.logs();
        let lines: Vec<&str> = logs.lines().collect();
        let tail = lines[lines.len().saturating_sub(30)..].join("\n");
        format!("\n--- lakepool log (last 30 lines) ---\n{tail}")
    }
}

/// What a child process did.
pub(crate) struct Ran {
    status: Option<ExitStatus>,
    pub(crate) stdout: String,
    stderr: String,
    elapsed: Duration,
}

impl Ran {
    pub(crate) fn ok(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    pub(crate) fn describe(&self) -> String {
        let status = match self.status {
            Some(s) => s.to_string(),
            None => format!("killed after {} s", TIMEOUT.as_secs()),
        };
        format!(
            "{status} in {:.1} s\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.elapsed.as_secs_f64(),
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }
}

/// Runs `cmd` to completion, killing it after [`TIMEOUT`].
pub(crate) fn run(mut cmd: Command) -> Ran {
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let pid = child.id();
    reap_pid(pid);
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout")));
    let err = drain(Box::new(child.stderr.take().expect("stderr")));
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for client program") {
            break Some(s);
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    unreap_pid(pid);
    Ran {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        elapsed: start.elapsed(),
    }
}

/// Runs one client program against a fresh [`Target`] and asserts it reported success.
fn run_program(what: &str, mut cmd: Command, table: &str) {
    let target = Target::start();
    target.program_env(&mut cmd, table);
    let ran = run(cmd);
    assert!(
        ran.ok() && ran.stdout.contains("OK "),
        "{what} against {} failed: {}{}",
        target.label,
        ran.describe(),
        target.log_tail()
    );
    println!("{what} against {}: {}", target.label, ran.stdout.trim());
}

/// `program` on PATH, or a panic naming the install command.
pub(crate) fn require_tool(program: &str, install: &str) -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("`{program}` not found on PATH: {install}"))
}

// ---------------------------------------------------------------------------------------------
// pgjdbc

pub(crate) const PGJDBC_JAR: &str = "/usr/share/java/postgresql.jar";

/// Compiles `tests/compat/java/Compat.java` once per test binary; returns the classpath.
fn pgjdbc_classpath() -> String {
    static CLASSES: OnceLock<Mutex<Option<PathBuf>>> = OnceLock::new();
    let jar = std::env::var("LAKEPOOL_PGJDBC_JAR").unwrap_or_else(|_| PGJDBC_JAR.into());
    assert!(
        Path::new(&jar).is_file(),
        "pgjdbc not found at {jar}: apt-get install -y libpostgresql-jdbc-java (or run .ci/run)"
    );
    let javac = require_tool("javac", "apt-get install -y default-jdk-headless");
    let mut classes = CLASSES
        .get_or_init(|| Mutex::new(None))
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if classes.is_none() {
        let dir = tempfile::Builder::new()
            .prefix("compat-java-")
            .tempdir_in(crate::support::scratch_dir())
            .expect("java temp dir")
            .keep();
        let mut cmd = Command::new(javac);
        cmd.args(["-encoding", "UTF-8", "-nowarn", "-d"])
            .arg(&dir)
            .arg(repo().join("tests/compat/java/Compat.java"));
        let ran = run(cmd);
        assert!(ran.ok(), "javac Compat.java failed: {}", ran.describe());
        *classes = Some(dir);
    }
    format!("{}:{jar}", classes.as_ref().unwrap().display())
}

fn pgjdbc(threshold: &str) {
    let classpath = pgjdbc_classpath();
    let java = require_tool("java", "apt-get install -y default-jdk-headless");
    let mut cmd = Command::new(java);
    // C1 only: less JIT work competing for the CPU in a short program.
    cmd.args(["-XX:TieredStopAtLevel=1", "-cp", &classpath, "Compat"])
        .env("COMPAT_PREPARE_THRESHOLD", threshold);
    run_program(
        &format!("pgjdbc prepareThreshold={threshold}"),
        cmd,
        &format!("compat_pgjdbc_t{threshold}"),
    );
}

/// pgjdbc's default: a statement becomes a named server-side statement on its 5th use.
#[test]
fn pgjdbc_prepare_threshold_default() {
    pgjdbc("5");
}

/// Every statement is a named server-side statement from its first use.
#[test]
fn pgjdbc_prepare_threshold_1() {
    pgjdbc("1");
}

// ---------------------------------------------------------------------------------------------
// Python: psycopg 3 and asyncpg

/// The venv's python, checked to import `module`.
pub(crate) fn venv_python(module: &str) -> PathBuf {
    let python = repo().join("target/compat-venv/bin/python");
    assert!(
        python.is_file(),
        "{} missing: {SETUP_HINT} (needs python3-venv and network access to PyPI)",
        python.display()
    );
    let mut cmd = Command::new(&python);
    cmd.args(["-c", &format!("import {module}")]);
    let ran = run(cmd);
    assert!(
        ran.ok(),
        "python module {module} missing from target/compat-venv: {SETUP_HINT}\n{}",
        ran.describe()
    );
    python
}

fn psycopg(threshold: &str, prepared_max: &str) {
    let mut cmd = Command::new(venv_python("psycopg"));
    cmd.arg(repo().join("tests/compat/python/psycopg_compat.py"))
        .env("COMPAT_PREPARE_THRESHOLD", threshold)
        .env("COMPAT_PREPARED_MAX", prepared_max);
    run_program(
        &format!("psycopg prepare_threshold={threshold} prepared_max={prepared_max}"),
        cmd,
        &format!("compat_psycopg_t{threshold}"),
    );
}

/// Every query is prepared (a named statement) on its first execution, and only 3 are kept
/// (`prepared_max`): the workload uses more, so psycopg keeps closing the least recently used
/// (a protocol-level Close) and preparing it again under a new name.
#[test]
fn psycopg_prepare_threshold_0_prepared_max_3() {
    psycopg("0", "3");
}

/// psycopg's default: prepared on the 6th execution (threshold 5).
#[test]
fn psycopg_prepare_threshold_default() {
    psycopg("default", "default");
}

/// asyncpg runs every query as a named prepared statement.
#[test]
fn asyncpg_prepares_every_query() {
    let mut cmd = Command::new(venv_python("asyncpg"));
    cmd.arg(repo().join("tests/compat/python/asyncpg_compat.py"));
    run_program("asyncpg", cmd, "compat_asyncpg");
}

// ---------------------------------------------------------------------------------------------
// node-postgres

/// Named queries (`{name, text, values}`): parsed once per connection, then only bound.
#[test]
fn node_postgres_named_queries() {
    let node = require_tool("node", "apt-get install -y nodejs npm");
    let dir = repo().join("tests/compat/node");
    assert!(
        dir.join("node_modules/pg/package.json").is_file(),
        "{}/node_modules/pg missing: {SETUP_HINT}",
        dir.display()
    );
    let mut cmd = Command::new(node);
    cmd.arg(dir.join("compat.js")).current_dir(&dir);
    run_program("node-postgres", cmd, "compat_node");
}

// ---------------------------------------------------------------------------------------------
// psql

/// Matches psql's output line by line; `*` in an expected line matches any rest of the line.
fn matches(expected: &[String], got: &str) -> Result<(), String> {
    let got: Vec<&str> = got.lines().collect();
    for (n, want) in expected.iter().enumerate() {
        let Some(line) = got.get(n) else {
            return Err(format!("line {}: missing, want {want:?}", n + 1));
        };
        let ok = match want.strip_suffix('*') {
            Some(prefix) => line.starts_with(prefix),
            None => line == want,
        };
        if !ok {
            return Err(format!("line {}: got {line:?}, want {want:?}", n + 1));
        }
    }
    if got.len() > expected.len() {
        return Err(format!(
            "{} unexpected extra lines, first {:?}",
            got.len() - expected.len(),
            got[expected.len()]
        ));
    }
    Ok(())
}

/// `sum(k + 0.50)` for `k` in `1..=i`, as PostgreSQL prints the numeric.
fn running_sum(i: usize) -> String {
    let twice = i * (i + 2);
    format!("{}.{}", twice / 2, if twice % 2 == 1 { "50" } else { "00" })
}

/// One psql client's script and the output it must print (`psql -X -q -At`).
fn psql_script(table: &str, c: usize, dir: &Path) -> (String, Vec<String>, PathBuf) {
    let app = format!("compat_psql_{c}");
    let path = format!("compat_c{c}, public");
    let copy_in = dir.join(format!("in_{c}.csv"));
    let copy_out = dir.join(format!("out_{c}.csv"));
    // 100 rows for \copy in, i = 10001..=10100, amount 0.25 each.
    let rows: String = (10001..=10100)
        .map(|i| format!("{c},{i},0.25,\"copied, {i}\"\n"))
        .collect();
    std::fs::write(&copy_in, rows).expect("write copy file");

    let mut sql = String::from("\\set ON_ERROR_STOP 1\n");
    let mut want: Vec<String> = Vec::new();
    sql.push_str(&format!(
        "SET application_name = '{app}';\nSET search_path = {path};\n"
    ));
    for i in 1..=ITERS {
        // One simple Query message holding a whole transaction.
        sql.push_str(&format!(
            "BEGIN \\; INSERT INTO {table} VALUES ({c}, {i}, {i}.50, 'c{c}-i{i}') \\; \
             SELECT 'sum', count(*), sum(amount), current_setting('application_name'), \
             current_setting('search_path') FROM {table} WHERE client = {c} AND i < 10000 \\; \
             COMMIT;\n"
        ));
        want.push(format!("sum|{i}|{}|{app}|{path}", running_sum(i)));
        // A transaction over several Query messages.
        sql.push_str(&format!(
            "BEGIN;\nSELECT 'pid', pg_backend_pid();\nSHOW application_name;\n\
             SELECT 'in tx', count(*) FROM {table} WHERE client = {c};\nCOMMIT;\n"
        ));
        want.push("pid|*".into());
        want.push(app.clone());
        let copied = if i > ITERS / 2 { 100 } else { 0 };
        want.push(format!("in tx|{}", i + copied));
        if i % 10 == 0 {
            sql.push_str(&format!(
                "BEGIN;\nINSERT INTO {table} VALUES ({c}, {}, 999, 'rolled back');\nROLLBACK;\n",
                1000 + i
            ));
        }
        // Autocommit statements, several in one Query message; each its own transaction.
        sql.push_str(&format!(
            "SELECT 'echo', $$c{c}-i{i} 'q\" \\$$ || '-\u{fc}' \\; SHOW search_path;\n"
        ));
        want.push(format!("echo|c{c}-i{i} 'q\" \\-\u{fc}"));
        want.push(path.clone());
        if i == ITERS / 2 {
            sql.push_str(&format!(
                "\\copy {table} FROM '{}' WITH (FORMAT csv)\n\
                 SELECT 'copied', count(*), sum(amount) FROM {table} \
                 WHERE client = {c} AND i > 10000;\n",
                copy_in.display()
            ));
            want.push("copied|100|25.00".into());
            // \copy inside a transaction that is rolled back leaves nothing.
            sql.push_str(&format!(
                "BEGIN;\nDELETE FROM {table} WHERE client = {c} AND i > 10000;\n\
                 \\copy {table} FROM '{}' WITH (FORMAT csv)\nROLLBACK;\n",
                copy_in.display()
            ));
        }
    }
    sql.push_str(&format!(
        "\\copy (SELECT client, i, amount, note FROM {table} WHERE client = {c} ORDER BY i) \
         TO '{}' WITH (FORMAT csv)\n\
         SHOW application_name;\nSELECT current_setting('search_path');\n",
        copy_out.display()
    ));
    want.push(app);
    want.push(path);
    (sql, want, copy_out)
}

/// 10 psql processes: multi-statement simple queries, transactions over several queries,
/// `\copy` in and out, and `SET application_name`/`search_path` seen in later transactions.
#[test]
fn psql_scripts_with_copy_and_set() {
    let table = "compat_psql";
    let target = Target::start();
    let psql = pg_bin_dir().join("psql");
    let dir = tempfile::Builder::new()
        .prefix("compat-psql-")
        .tempdir_in(crate::support::scratch_dir())
        .expect("psql temp dir");
    let psql_cmd = |args: &[&str]| {
        let mut cmd = Command::new(&psql);
        scrub_pg_env(&mut cmd)
            .env("PGPASSWORD", target.password)
            .args([
                "-X",
                "-q",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                &target.conninfo(),
            ])
            .args(args);
        cmd
    };
    let setup = run(psql_cmd(&[
        "-c",
        &format!(
            "CREATE TABLE IF NOT EXISTS {table} (client int NOT NULL, i int NOT NULL, \
             amount numeric NOT NULL, note text, PRIMARY KEY (client, i))"
        ),
        "-c",
        &format!("TRUNCATE {table}"),
    ]));
    assert!(
        setup.ok(),
        "psql setup against {} failed: {}{}",
        target.label,
        setup.describe(),
        target.log_tail()
    );

    let scripts: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (sql, want, out) = psql_script(table, c, dir.path());
            let file = dir.path().join(format!("client_{c}.sql"));
            std::fs::write(&file, sql).expect("write psql script");
            (file, want, out)
        })
        .collect();
    let runs: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = scripts
            .iter()
            .map(|(file, _, _)| {
                let cmd = psql_cmd(&["-f", &file.to_string_lossy()]);
                s.spawn(move || run(cmd))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });

    let mut pids = std::collections::HashSet::new();
    for (c, (ran, (_, want, copy_out))) in runs.iter().zip(&scripts).enumerate() {
        let checked = if ran.ok() {
            matches(want, &ran.stdout)
        } else {
            Err("psql failed".into())
        };
        if let Err(e) = checked {
            panic!(
                "psql client {c} against {}: {e}\n{}{}",
                target.label,
                ran.describe(),
                target.log_tail()
            );
        }
        pids.extend(
            ran.stdout
                .lines()
                .filter_map(|l| l.strip_prefix("pid|"))
                .map(str::to_owned),
        );
        // \copy out wrote exactly the committed rows.
        let mut rows: Vec<String> = (1..=ITERS)
            .map(|i| format!("{c},{i},{i}.50,c{c}-i{i}"))
            .collect();
        rows.extend((10001..=10100).map(|i| format!("{c},{i},0.25,\"copied, {i}\"")));
        let got = std::fs::read_to_string(copy_out).expect("read \\copy out file");
        let got: Vec<&str> = got.lines().collect();
        assert_eq!(got, rows, "psql client {c}: \\copy out");
    }
    assert!(
        pids.len() >= 2,
        "psql: all transactions ran on one server connection ({pids:?})"
    );
    println!(
        "psql against {}: {CLIENTS} clients x {ITERS} iterations, {} backend pids seen",
        target.label,
        pids.len()
    );
}

// ---------------------------------------------------------------------------------------------
// pgbench

fn pgbench_value(out: &str, prefix: &str) -> Option<u64> {
    out.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l[prefix.len()..].split(['/', ' ']).find(|v| !v.is_empty()))
        .and_then(|v| v.trim().parse().ok())
}

/// `pgbench -M prepared`: every client's statements are named (`P_0`, `P_1`, ...) and reused
/// for each of its transactions.
///
/// One pgbench thread per client (`-j 10`): pgbench prepares each command with a synchronous
/// `PQprepare` the first time a client runs it, which blocks every client of that thread. With
/// `-j 2` a thread blocked waiting for a server while its other clients hold both servers in
/// open transactions never gets them back (in either pool mode, whatever the pooler does).
#[test]
fn pgbench_prepared() {
    let table = "compat_pgbench";
    let target = Target::start();
    let bin = pg_bin_dir();
    let dir = tempfile::Builder::new()
        .prefix("compat-pgbench-")
        .tempdir_in(crate::support::scratch_dir())
        .expect("pgbench temp dir");
    let libpq_env = |cmd: &mut Command| {
        scrub_pg_env(cmd)
            .env("PGPASSWORD", target.password)
            .env("PGSSLMODE", "verify-full")
            .env("PGSSLROOTCERT", &pg().ca_file)
            .env("PGCONNECT_TIMEOUT", "10");
    };
    let mut setup = Command::new(bin.join("psql"));
    libpq_env(&mut setup);
    setup.args([
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "-d",
        &target.conninfo(),
    ]);
    setup.args([
        "-c",
        &format!(
            "CREATE TABLE IF NOT EXISTS {table} (client int NOT NULL, amount int NOT NULL, \
             pid int NOT NULL, app text)"
        ),
        "-c",
        &format!("TRUNCATE {table}"),
    ]);
    let ran = run(setup);
    assert!(
        ran.ok(),
        "psql setup against {} failed: {}",
        target.label,
        ran.describe()
    );

    let script = dir.path().join("compat.sql");
    std::fs::write(
        &script,
        format!(
            "\\set amount random(1, 1000)\n\
             BEGIN;\n\
             INSERT INTO {table} VALUES (:client_id, :amount, pg_backend_pid(), \
             current_setting('application_name'));\n\
             SELECT count(*), sum(amount) FROM {table} WHERE client = :client_id;\n\
             END;\n\
             SELECT pg_backend_pid(), :amount::int * 2, 'x' || :client_id;\n"
        ),
    )
    .expect("write pgbench script");
    let mut cmd = Command::new(bin.join("pgbench"));
    libpq_env(&mut cmd);
    cmd.args([
        "-h",
        HOST,
        "-p",
        &target.port.to_string(),
        "-U",
        target.user,
    ])
    .args([
        "-n",
        "-M",
        "prepared",
        "-c",
        &CLIENTS.to_string(),
        "-j",
        &CLIENTS.to_string(),
    ])
    .args(["-t", &PGBENCH_TX.to_string(), "-f"])
    .arg(&script)
    .arg(target.db);
    let ran = run(cmd);
    let processed = pgbench_value(&ran.stdout, "number of transactions actually processed:");
    let failed = pgbench_value(&ran.stdout, "number of failed transactions:");
    assert!(
        ran.ok() && processed == Some((CLIENTS * PGBENCH_TX) as u64) && failed == Some(0),
        "pgbench -M prepared against {}: processed {processed:?} (want {}), failed {failed:?}: {}{}",
        target.label,
        CLIENTS * PGBENCH_TX,
        ran.describe(),
        target.log_tail()
    );

    // Every committed transaction left its row; the work spread over several servers.
    let mut count = Command::new(bin.join("psql"));
    libpq_env(&mut count);
    count
        .args(["-X", "-At", "-d", &target.conninfo(), "-c"])
        .arg(format!(
            "SELECT count(*), count(DISTINCT client), count(DISTINCT pid), \
         count(*) FILTER (WHERE app = 'pgbench') FROM {table}"
        ));
    let counted = run(count);
    assert!(counted.ok(), "count rows: {}", counted.describe());
    let n = CLIENTS * PGBENCH_TX;
    let fields: Vec<u64> = counted
        .stdout
        .trim()
        .split('|')
        .map(|v| v.parse().expect("a count"))
        .collect();
    assert_eq!(
        fields[..2],
        [n as u64, CLIENTS as u64],
        "{}",
        counted.stdout
    );
    assert!(fields[2] >= 2, "one server connection did all the work");
    assert_eq!(fields[3], n as u64, "application_name 'pgbench' lost");
    println!(
        "pgbench -M prepared against {}: {n} transactions, 0 failed, {} backend pids",
        target.label, fields[2]
    );
}
