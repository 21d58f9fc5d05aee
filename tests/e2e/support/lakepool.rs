//! Runs the real `lakepool` binary as a child process.
//!
//! Every line the child writes (stderr and stdout) is kept, ANSI escapes
//! stripped, so tests can assert on log contents - in particular that
//! secrets never show up.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::{reap_pid, scratch_dir, unreap_pid};

const START_TIMEOUT: Duration = Duration::from_secs(20);
const LISTENING: &str = "listening addr=";

/// Path of the lakepool binary: Cargo's `CARGO_BIN_EXE_lakepool` when the
/// tests are built inside the lakepool package, else `$LAKEPOOL_BIN` (lets
/// the harness be compiled and exercised outside the package).
/// The admin token the e2e configs that read `/readyz` reasons set.
pub const E2E_ADMIN_TOKEN: &str = "e2e-admin-token";

pub fn lakepool_bin() -> PathBuf {
    if let Some(p) = option_env!("CARGO_BIN_EXE_lakepool") {
        return PathBuf::from(p);
    }
    std::env::var_os("LAKEPOOL_BIN")
        .map(PathBuf::from)
        .expect("not built by cargo for the lakepool package and LAKEPOOL_BIN is unset")
}

pub struct Lakepool {
    child: Child,
    addr: SocketAddr,
    logs: Arc<Mutex<String>>,
    config_path: PathBuf,
    // Holds the config file; removed when the Lakepool is dropped.
    _dir: tempfile::TempDir,
}

/// The environment lakepool runs with: the test process's, minus knobs that
/// would make runs depend on the developer's shell.
fn base_command(args: &[&str], config_path: &Path, env: &[(&str, &str)]) -> Command {
    wrapped_command(None, args, config_path, env)
}

/// [`base_command`] run through `sh -c '<shell>; exec lakepool …'` when `shell` is given (e.g.
/// `ulimit -n 64`), so the process keeps its pid.
fn wrapped_command(
    shell: Option<&str>,
    args: &[&str],
    config_path: &Path,
    env: &[(&str, &str)],
) -> Command {
    let mut cmd = match shell {
        None => Command::new(lakepool_bin()),
        Some(prefix) => {
            let mut c = Command::new("sh");
            c.arg("-c")
                .arg(format!("{prefix} && exec \"$0\" \"$@\""))
                .arg(lakepool_bin());
            c
        }
    };
    cmd.args(args)
        .arg("--config")
        .arg(config_path)
        .env_remove("LAKEPOOL_CONFIG")
        // A RUST_LOG of `warn` would hide the `listening` line; set
        // LAKEPOOL_TEST_LOG to pass a filter through on purpose.
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    if let Some(filter) = std::env::var_os("LAKEPOOL_TEST_LOG") {
        cmd.env("RUST_LOG", filter);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

fn write_config(config_toml: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("lakepool-cfg-")
        // Inside the reaper's dir so a never-dropped (static) Lakepool's
        // config is still removed when the test process exits.
        .tempdir_in(scratch_dir())
        .expect("config temp dir");
    let path = dir.path().join("lakepool.toml");
    std::fs::write(&path, config_toml).expect("write lakepool.toml");
    (dir, path)
}

impl Lakepool {
    /// Starts lakepool with `config_toml` and extra environment variables,
    /// waits for its `listening addr=` log line. Panics (with the logs) if
    /// it exits or does not listen within 20 s.
    pub fn start(config_toml: &str, env: &[(&str, &str)]) -> Lakepool {
        Self::try_start(config_toml, env).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`Self::start`] but returns the failure (message with logs), for
    /// tests that expect lakepool to refuse a configuration.
    pub fn try_start(config_toml: &str, env: &[(&str, &str)]) -> Result<Lakepool, String> {
        Self::try_start_wrapped(config_toml, env, None)
    }

    /// Like [`Self::start`], with shell commands run first in the process that then becomes
    /// lakepool (e.g. `ulimit -n 64` to start it with few file descriptors).
    pub fn start_after_shell(config_toml: &str, env: &[(&str, &str)], shell: &str) -> Lakepool {
        Self::try_start_wrapped(config_toml, env, Some(shell)).unwrap_or_else(|e| panic!("{e}"))
    }

    fn try_start_wrapped(
        config_toml: &str,
        env: &[(&str, &str)],
        shell: Option<&str>,
    ) -> Result<Lakepool, String> {
        let (dir, config_path) = write_config(config_toml);
        let mut child = wrapped_command(shell, &[], &config_path, env)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", lakepool_bin().display()));
        reap_pid(child.id());

        let logs = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let echo = std::env::var_os("LAKEPOOL_TEST_ECHO").is_some();
        let stderr = child.stderr.take().expect("stderr");
        let stdout = child.stdout.take().expect("stdout");
        spawn_reader(stderr, logs.clone(), Some(tx), echo);
        spawn_reader(stdout, logs.clone(), None, echo);

        let mut pool = Lakepool {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            logs,
            config_path,
            _dir: dir,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(addr) => {
                    pool.addr = addr;
                    return Ok(pool);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // stderr closed without the line: the process is exiting.
                    let status = pool.wait_exit(Duration::from_secs(5));
                    return Err(pool.failure(&format!("exited ({status:?}) before listening")));
                }
            }
            if let Ok(Some(status)) = pool.child.try_wait() {
                // Give the reader a moment to drain what was printed.
                thread::sleep(Duration::from_millis(100));
                return Err(pool.failure(&format!("exited ({status}) before listening")));
            }
            if Instant::now() > deadline {
                return Err(pool.failure("no `listening addr=` line within 20 s"));
            }
        }
    }

    fn failure(&self, what: &str) -> String {
        format!("lakepool {what}\n--- lakepool logs ---\n{}", self.logs())
    }

    /// Runs `lakepool check --config <tmp>`; returns (exit success, stdout+stderr).
    pub fn check(config_toml: &str) -> (bool, String) {
        Self::check_with_env(config_toml, &[])
    }

    /// Like [`Self::check`] with extra environment variables.
    pub fn check_with_env(config_toml: &str, env: &[(&str, &str)]) -> (bool, String) {
        let (_dir, config_path) = write_config(config_toml);
        let out = base_command(&["check"], &config_path, env)
            .output()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", lakepool_bin().display()));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), strip_ansi(&text))
    }

    /// The address lakepool reported in its `listening addr=` line.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The config file lakepool was started with (tests may rewrite it).
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// All output so far, one log line per line.
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits until a log line contains `needle`; false on timeout.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.logs().contains(needle) {
                return true;
            }
            thread::sleep(Duration::from_millis(20));
        }
        self.logs().contains(needle)
    }

    /// GET on the admin listener (`admin_listen`, found in the log): (status, content type,
    /// body).
    pub fn admin_get(&self, path: &str) -> (u16, String, String) {
        self.admin_get_with(path, &[])
    }

    /// [`Self::admin_get`] with the test token (`admin_token = E2E_ADMIN_TOKEN`), which makes
    /// `/readyz` say why a database is not ready.
    pub fn admin_get_authorized(&self, path: &str) -> (u16, String, String) {
        let bearer = format!("Bearer {E2E_ADMIN_TOKEN}");
        self.admin_get_with(path, &[("Authorization", &bearer)])
    }

    /// [`Self::admin_get`] with extra request headers (e.g. `Authorization`).
    pub fn admin_get_with(&self, path: &str, headers: &[(&str, &str)]) -> (u16, String, String) {
        use std::io::{Read, Write};
        assert!(self.wait_for_log("admin_addr=", Duration::from_secs(10)));
        let logs = self.logs();
        let at = logs.find("admin_addr=").unwrap() + "admin_addr=".len();
        let addr: SocketAddr = logs[at..]
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        let extra: String = headers
            .iter()
            .map(|(k, v)| format!("{k}: {v}\r\n"))
            .collect();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n"
        )
        .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        let status = resp[9..12].parse().unwrap();
        let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
        let ctype = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-type:")
                    .map(|v| v.trim().to_owned())
            })
            .unwrap_or_default();
        (status, ctype, body.to_owned())
    }

    /// Sends `signal` (a `kill` name such as `TERM`, `INT`, `HUP`).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("spawn kill");
        assert!(
            status.success(),
            "kill -{signal} {} failed",
            self.child.id()
        );
    }

    pub fn sigterm(&self) {
        self.signal("TERM");
    }

    /// Waits for the process to exit; `None` if it is still running after
    /// `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                unreap_pid(self.child.id());
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILLs the process (if still running) and reaps it.
    pub fn kill(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            drop(self.child.kill());
        }
        drop(self.child.wait());
        unreap_pid(self.child.id());
    }
}

impl Drop for Lakepool {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Copies `src` line by line into `logs`; reports the first listening
/// address on `tx`.
fn spawn_reader(
    src: impl Read + Send + 'static,
    logs: Arc<Mutex<String>>,
    tx: Option<mpsc::Sender<SocketAddr>>,
    echo: bool,
) {
    thread::spawn(move || {
        let mut tx = tx;
        for line in BufReader::new(src).split(b'\n') {
            let Ok(line) = line else { break };
            let line = strip_ansi(&String::from_utf8_lossy(&line));
            if echo {
                eprintln!("[lakepool] {line}");
            }
            {
                let mut logs = logs.lock().unwrap_or_else(|e| e.into_inner());
                logs.push_str(&line);
                logs.push('\n');
            }
            if let Some(addr) = parse_listening(&line)
                && let Some(sender) = tx.take()
            {
                // The receiver is gone once start() gave up; nothing to do then.
                let _ = sender.send(addr);
            }
        }
    });
}

/// Extracts the socket address from a `... listening addr=127.0.0.1:1234 ...`
/// line (tolerating a quoted value).
pub fn parse_listening(line: &str) -> Option<SocketAddr> {
    // JSON logs (log_format = "json"): {"fields":{"message":"listening","addr":"…"}}.
    if line.contains("\"message\":\"listening\"") {
        let rest = &line[line.find("\"addr\":\"")? + 8..];
        return rest[..rest.find('"')?].parse().ok();
    }
    let rest = &line[line.find(LISTENING)? + LISTENING.len()..];
    let value = rest
        .split_whitespace()
        .next()?
        .trim_matches(|c| c == '"' || c == ',');
    value.parse().ok()
}

/// Removes ANSI CSI escape sequences (colours), in case the child ignores
/// `NO_COLOR`.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            // Parameters/intermediates until a final byte in '@'..='~'.
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A `[[databases]]` block pointing at the test cluster, with the upstream
/// password taken from environment variable `password_env` (so it is never
/// in the config file or, hopefully, the logs). `tls` is lakepool's upstream
/// mode; the test CA is always supplied.
pub fn database_toml(
    name: &str,
    dbname: &str,
    user: &str,
    password_env: &str,
    tls: &str,
) -> String {
    let pg = super::pg();
    format!(
        "[[databases]]\n\
         name = \"{name}\"\n\
         host = \"{host}\"\n\
         port = {port}\n\
         dbname = \"{dbname}\"\n\
         user = \"{user}\"\n\
         password_env = \"{password_env}\"\n\
         tls = \"{tls}\"\n\
         ca_file = \"{ca}\"\n",
        host = pg.host,
        port = pg.port,
        ca = pg.ca_file.display(),
    )
}
