//! The project's workspace API stand-in (`lakepool-standin`) run against the shared cluster,
//! and a tiny HTTP client for its control endpoints.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::{LAKEBASE_GROUP, pg, reap_pid};

/// The PAT the stand-in accepts.
pub const PAT: &str = "dapi-standin-pat-0123456789abcdef";
/// The service principal's client id (its application id is [`Standin::sp_user`]).
pub const CLIENT_ID: &str = "lakepool-test-sp";
/// The service principal's OAuth secret.
pub const CLIENT_SECRET: &str = "dose-standin-secret-9876543210";
/// The provisioned instance the stand-in knows.
pub const INSTANCE: &str = "lakepool-test-instance";
/// The autoscaling endpoint the stand-in knows.
pub const ENDPOINT: &str = "projects/lakepool/branches/main/endpoints/primary";

fn pat_user(tag: &str) -> String {
    format!("{tag}@example.com")
}

fn sp_user(tag: &str) -> String {
    format!("sp-{tag}")
}

fn standin_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_lakepool-standin"))
}

/// More stand-in arguments, and the Postgres roles of the identities they add.
#[derive(Default)]
pub struct Extra {
    /// Command-line arguments.
    pub args: Vec<String>,
    /// Roles to create (in the Lakebase group).
    pub roles: Vec<String>,
}

/// A running stand-in.
pub struct Standin {
    child: Child,
    addr: SocketAddr,
    tag: String,
}

impl Standin {
    /// Starts the stand-in with database credentials living `lifetime_s` seconds. `tag` makes
    /// its identities unique: tests run in parallel against one cluster, and a credential
    /// minted for a role replaces that role's password, so each test needs its own roles.
    pub fn start(tag: &str, lifetime_s: u64) -> Standin {
        Standin::start_with(tag, lifetime_s, &Extra::default())
    }

    /// [`Standin::start`] with more arguments (identity providers, other identities) and the
    /// Postgres roles of the identities they add.
    pub fn start_with(tag: &str, lifetime_s: u64, extra: &Extra) -> Standin {
        let pg = pg();
        let (pat_user, sp_user) = (pat_user(tag), sp_user(tag));
        let mut roles = vec![pat_user.clone(), sp_user.clone()];
        roles.extend(extra.roles.iter().cloned());
        let creates: String = roles
            .iter()
            .map(|r| {
                format!(
                    "IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{r}') THEN \
                       CREATE ROLE \"{r}\" LOGIN IN ROLE {LAKEBASE_GROUP}; END IF; "
                )
            })
            .collect();
        pg.exec_sql(&format!("DO $$ BEGIN {creates} END $$;"));
        let mut child = Command::new(standin_bin())
            .args(["--listen", "127.0.0.1:0"])
            .args(["--pg-host", pg.host, "--pg-port", &pg.port.to_string()])
            .args([
                "--pg-user",
                &pg.superuser,
                "--pg-password-env",
                "STANDIN_PG_PW",
            ])
            .args(["--pat", &format!("{PAT}={pat_user}")])
            .args([
                "--client",
                &format!("{CLIENT_ID}:{CLIENT_SECRET}={sp_user}"),
            ])
            .args(["--instance", &format!("{INSTANCE}=127.0.0.1")])
            .args(["--endpoint", &format!("{ENDPOINT}=127.0.0.1")])
            .args(["--lifetime", &lifetime_s.to_string()])
            .args(&extra.args)
            .env("STANDIN_PG_PW", &pg.superuser_password)
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn lakepool-standin");
        reap_pid(child.id());
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if std::env::var_os("LAKEPOOL_TEST_ECHO").is_some() {
                    eprintln!("[standin] {line}");
                }
                if let Some(addr) = super::lakepool::parse_listening(&line)
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(addr);
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("lakepool-standin did not report its address");
        Standin {
            child,
            addr,
            tag: tag.to_owned(),
        }
    }

    /// The identity (Postgres role) of the PAT.
    pub fn pat_user(&self) -> String {
        pat_user(&self.tag)
    }

    /// The identity (application id, Postgres role) of the service principal.
    pub fn sp_user(&self) -> String {
        sp_user(&self.tag)
    }

    /// Base URL, e.g. `http://127.0.0.1:40000`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// POSTs a JSON body to a control endpoint (`/__standin/...`).
    pub fn control(&self, path: &str, body: &str) -> String {
        http(self.addr, "POST", path, body)
    }

    /// Revokes a PAT or access token, as deleting it in the workspace does: later API calls
    /// with it get 401.
    pub fn revoke(&self, token: &str) {
        let body = serde_json::json!({ "token": token }).to_string();
        self.control("/__standin/revoke", &body);
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stats as JSON.
    pub fn stats(&self) -> serde_json::Value {
        let body = http(self.addr, "GET", "/__standin/stats", "");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("stats {body:?}: {e}"))
    }

    /// A counter from the stats.
    pub fn stat(&self, name: &str) -> u64 {
        self.stats()[name].as_u64().unwrap_or(0)
    }
}

impl Drop for Standin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Minimal HTTP/1.1 request over loopback; returns the body.
fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect stand-in");
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("send");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read");
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    assert!(head.starts_with("HTTP/1.1 2"), "{method} {path}: {head}");
    // Chunked bodies from hyper: decode the simple case.
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, after)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            out.push_str(&after[..n.min(after.len())]);
            rest = after.get(n + 2..).unwrap_or("");
        }
        return out;
    }
    body.to_owned()
}
