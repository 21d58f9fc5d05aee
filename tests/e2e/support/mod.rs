//! Shared harness for the end-to-end test binary (`tests/e2e/main.rs`).
//!
//! Everything here is process-global on purpose: the binary starts one
//! throwaway PostgreSQL cluster ([`pg::pg`]) and every test module shares it.
//! Not every test module uses every helper, hence the `dead_code` allowance.
#![allow(dead_code)]

pub mod certs;
pub mod lakepool;
pub mod pg;
pub mod standin;
pub mod wire;

use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

// Convenience re-exports; which ones a build uses depends on the enabled
// test modules.
#[allow(unused_imports)]
pub use lakepool::Lakepool;
#[allow(unused_imports)]
pub use pg::{PgServer, pg, pgbench_init};

/// The only address anything in the harness listens on or connects to.
pub const HOST: &str = "127.0.0.1";

/// Roles created in the test cluster, with their passwords.
pub const APP_OWNER: (&str, &str) = ("app_owner", "app_owner_pw");
pub const MD5_OWNER: (&str, &str) = ("md5_owner", "md5_owner_pw");
pub const PLAIN_OWNER: (&str, &str) = ("plain_owner", "plain_owner_pw");
/// Database owned by `app_owner`.
pub const APP_DB: &str = "appdb";
/// Group of the Databricks-identity roles: TLS-only logins, table privileges.
pub const LAKEBASE_GROUP: &str = "lakebase_oauth";
/// Identity of the stand-in's personal access token (a user's e-mail).
pub const LAKEBASE_PAT_USER: &str = "dev@example.com";
/// Identity of the stand-in's service principal (its application id).
pub const LAKEBASE_SP_USER: &str = "6f1c2a9e-3b7d-4c55-9a01-lakepool0001";

/// True when the test process runs as root. `/proc/self` is owned by the
/// effective uid, which avoids a libc dependency for `geteuid()`.
pub fn is_root() -> bool {
    fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// Asks the kernel for a free loopback port by binding port 0. The port lies
/// in the ephemeral range, so an outgoing connection (or another test) could
/// take it before the caller binds it again: callers whose bind fails retry
/// with a new port (see `PgServer::pg_ctl_start`). Everything else the harness
/// starts (lakepool, the stand-in) binds port 0 itself and reports the address.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind((HOST, 0))
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Directory holding `initdb`, `pg_ctl`, `psql`, `pgbench`.
///
/// Order: `$PG_BIN_DIR`, the highest `/usr/lib/postgresql/<ver>/bin`
/// (Debian), then `pg_config --bindir`.
pub fn pg_bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let has_initdb = |d: &Path| d.join("initdb").is_file();
        if let Some(d) = std::env::var_os("PG_BIN_DIR").map(PathBuf::from) {
            assert!(has_initdb(&d), "PG_BIN_DIR={} has no initdb", d.display());
            return d;
        }
        let mut debian: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let ver = e.file_name().to_str()?.parse::<u32>().ok()?;
                Some((ver, e.path().join("bin")))
            })
            .filter(|(_, d)| has_initdb(d))
            .collect();
        debian.sort();
        if let Some((_, d)) = debian.pop() {
            return d;
        }
        let from_pg_config = Command::new("pg_config")
            .arg("--bindir")
            .output()
            .ok()
            .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
        match from_pg_config {
            Some(d) if has_initdb(&d) => d,
            _ => panic!(
                "PostgreSQL server binaries (initdb) not found: install them with \
                 `apt-get install -y postgresql` (see .ci/run) or set PG_BIN_DIR"
            ),
        }
    })
}

/// Removes every `PG*` variable so the developer's environment (PGHOST,
/// PGSERVICE, PGSSLMODE, ...) cannot redirect a test's libpq client.
pub fn scrub_pg_env(cmd: &mut Command) -> &mut Command {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PG") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// Runs `psql` against `127.0.0.1:port`. `sslmode` is libpq's (`disable`,
/// `require`, `verify-full`, ...); the test CA is always supplied so the
/// `verify-*` modes work. Output is `-At` (unaligned, tuples only).
pub fn psql(port: u16, user: &str, password: &str, db: &str, sslmode: &str, sql: &str) -> Output {
    psql_at(HOST, port, user, password, db, sslmode, sql)
}

/// [`psql`] against `host`: an address, or a directory holding a Unix-domain socket.
pub fn psql_at(
    host: &str,
    port: u16,
    user: &str,
    password: &str,
    db: &str,
    sslmode: &str,
    sql: &str,
) -> Output {
    let conninfo = format!(
        "host={host} port={port} user={user} dbname={db} sslmode={sslmode} connect_timeout=10"
    );
    let mut cmd = Command::new(pg_bin_dir().join("psql"));
    scrub_pg_env(&mut cmd)
        .env("PGPASSWORD", password)
        .env("PGSSLROOTCERT", &pg().ca_file)
        .args([
            "-X",
            "-v",
            "ON_ERROR_STOP=1",
            "-At",
            "-d",
            &conninfo,
            "-c",
            sql,
        ])
        .stdin(Stdio::null())
        .output()
        .expect("spawn psql")
}

/// pgbench's "number of failed transactions" from its report.
pub fn failed_transactions(out: &str) -> Option<u64> {
    out.lines()
        .find(|l| l.starts_with("number of failed transactions:"))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Runs `pgbench -h 127.0.0.1 -p port -U user <args> db` with `PGPASSWORD`.
pub fn pgbench(port: u16, user: &str, password: &str, db: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new(pg_bin_dir().join("pgbench"));
    scrub_pg_env(&mut cmd)
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "10")
        .args(["-h", HOST, "-p", &port.to_string(), "-U", user])
        .args(args)
        .arg(db)
        .stdin(Stdio::null())
        .output()
        .expect("spawn pgbench")
}

/// Asserts a child process succeeded, printing its output otherwise; returns
/// trimmed stdout.
pub fn ok_stdout(what: &str, out: &Output) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Connects with tokio-postgres to `127.0.0.1:port` and spawns the
/// connection task on the current runtime. `tls = true` means
/// `sslmode=require` with full verification against the test CA (hostname
/// `127.0.0.1` is an IP SAN in every test certificate).
pub async fn connect(
    port: u16,
    user: &str,
    password: &str,
    db: &str,
    tls: bool,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let mut cfg = tokio_postgres::Config::new();
    cfg.host(HOST)
        .port(port)
        .user(user)
        .password(password)
        .dbname(db)
        .connect_timeout(Duration::from_secs(10));
    connect_config(cfg, tls).await
}

/// Like [`connect`] but with a caller-built config (application_name,
/// options, channel binding, ...). `ssl_mode` is overridden from `tls`.
pub async fn connect_config(
    mut cfg: tokio_postgres::Config,
    tls: bool,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    use tokio_postgres::config::SslMode;
    if tls {
        cfg.ssl_mode(SslMode::Require);
        let (client, conn) = cfg.connect(make_tls()).await?;
        tokio::spawn(async move { drop(conn.await) });
        Ok(client)
    } else {
        cfg.ssl_mode(SslMode::Disable);
        let (client, conn) = cfg.connect(tokio_postgres::NoTls).await?;
        tokio::spawn(async move { drop(conn.await) });
        Ok(client)
    }
}

/// A tokio-postgres TLS connector trusting the shared test CA.
pub fn make_tls() -> tokio_postgres_rustls::MakeRustlsConnect {
    tokio_postgres_rustls::MakeRustlsConnect::new(certs::client_tls_config(&pg().ca_file))
}

/// Cleans up after the test process, however it ends (normal exit, panic,
/// SIGKILL). Rust test binaries have no global teardown, so a detached shell
/// blocks reading a pipe whose only writer is this process; the kernel closes
/// it when we die, and the shell then runs `cleanup.sh`: kill registered pids,
/// then the registered commands (stop PostgreSQL, remove its directory).
/// A pipe avoids the pid-reuse race of polling `kill -0 $PPID`.
struct Reaper {
    dir: PathBuf,
    state: Mutex<ReaperState>,
    // Never written; kept open for the life of the process (see above).
    _stdin: ChildStdin,
}

#[derive(Default)]
struct ReaperState {
    pids: Vec<u32>,
    commands: Vec<String>,
}

fn reaper() -> &'static Reaper {
    static REAPER: OnceLock<Reaper> = OnceLock::new();
    REAPER.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("lakepool-reaper-")
            .tempdir()
            .expect("reaper tempdir")
            .keep();
        fs::write(dir.join("cleanup.sh"), "").expect("write cleanup.sh");
        // Never waited for: it must outlive this process to do its job.
        #[allow(clippy::zombie_processes)]
        let child = Command::new("sh")
            .arg("-c")
            .arg(r#"cat >/dev/null; sh "$1/cleanup.sh" >/dev/null 2>&1; rm -rf "$1""#)
            .arg("lakepool-test-reaper")
            .arg(&dir)
            .stdin(Stdio::piped())
            // Inherited stdout/stderr would make test runners wait for (or
            // flag as leaked) a process that outlives the test binary.
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Own process group: Ctrl-C on the test run must not kill it.
            .process_group(0)
            .spawn()
            .expect("spawn reaper shell");
        Reaper {
            dir,
            state: Mutex::new(ReaperState::default()),
            _stdin: child.stdin.expect("reaper stdin"),
        }
    })
}

impl Reaper {
    fn update(&self, f: impl FnOnce(&mut ReaperState)) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut st);
        let mut script = String::new();
        for pid in &st.pids {
            script.push_str(&format!("kill -KILL {pid}\n"));
        }
        for c in &st.commands {
            script.push_str(c);
            script.push('\n');
        }
        // Write-then-rename so the shell never reads a half-written script.
        let tmp = self.dir.join("cleanup.sh.tmp");
        let mut f = fs::File::create(&tmp).expect("create cleanup.sh.tmp");
        f.write_all(script.as_bytes())
            .expect("write cleanup.sh.tmp");
        fs::rename(&tmp, self.dir.join("cleanup.sh")).expect("rename cleanup.sh");
    }
}

/// A directory removed when the test process exits; put per-test files
/// (configs, extra certificates) under it.
pub fn scratch_dir() -> &'static Path {
    &reaper().dir
}

/// Kill `pid` with SIGKILL when the test process exits (unless unregistered).
pub fn reap_pid(pid: u32) {
    reaper().update(|s| s.pids.push(pid));
}

/// Forget `pid` (it was stopped normally), so a reused pid is never killed.
pub fn unreap_pid(pid: u32) {
    reaper().update(|s| s.pids.retain(|p| *p != pid));
}

/// Run shell `command` when the test process exits, after killing pids.
pub fn reap_command(command: String) {
    reaper().update(|s| s.commands.push(command));
}

/// Single-quotes `s` for `sh`.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r#"'\''"#))
}
