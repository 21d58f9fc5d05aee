//! One throwaway PostgreSQL cluster per test binary.
//!
//! Layout of the cluster's temp dir (removed by the reaper after the test
//! process exits, see `support::reap_command`):
//!
//! ```text
//! /tmp/lakepool-pg-XXXX/
//!   data/            PGDATA (also holds a postgres-owned copy of server.{crt,key})
//!   certs/           ca.crt, server.crt, server.key (for tests and lakepool)
//!   pwfile           superuser password for initdb
//!   postgres.log     server log
//!   .s.PGSQL.<port>  unix socket
//! ```

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};

use super::certs::{CertFiles, TestCa, write_private};
use super::{
    APP_DB, APP_OWNER, HOST, MD5_OWNER, PLAIN_OWNER, free_port, is_root, ok_stdout, pg_bin_dir,
    reap_command, reap_pid, scrub_pg_env, sh_quote, unreap_pid,
};

/// The OS account that owns the cluster when the tests run as root:
/// `initdb` and `postgres` refuse to run as root.
const PG_OS_USER: &str = "postgres";

pub struct PgServer {
    /// Always `127.0.0.1`.
    pub host: &'static str,
    pub port: u16,
    pub superuser: String,
    pub superuser_password: String,
    pub bin_dir: PathBuf,
    /// Root of the cluster's temp dir.
    pub dir: PathBuf,
    pub data_dir: PathBuf,
    pub log_file: PathBuf,
    /// PEM of the CA that signed PostgreSQL's certificate (and `server_cert`).
    pub ca_file: PathBuf,
    /// A certificate for `127.0.0.1`/`localhost` signed by `ca`, readable by
    /// the test process: use it as lakepool's client-facing certificate.
    pub server_cert: CertFiles,
    /// The test CA, for issuing more certificates.
    pub ca: TestCa,
}

/// The shared cluster, started on first use.
pub fn pg() -> &'static PgServer {
    static PG: OnceLock<PgServer> = OnceLock::new();
    PG.get_or_init(PgServer::start)
}

/// Runs `pgbench -i -s scale` on `db` as `app_owner` once per (db, scale)
/// for the life of the test binary; concurrent callers wait for the first.
pub fn pgbench_init(db: &str, scale: u32) {
    static DONE: Mutex<Option<HashSet<(String, u32)>>> = Mutex::new(None);
    let mut done = DONE.lock().unwrap_or_else(|e| e.into_inner());
    let done = done.get_or_insert_with(HashSet::new);
    if done.contains(&(db.to_string(), scale)) {
        return;
    }
    let server = pg();
    let out = super::pgbench(
        server.port,
        APP_OWNER.0,
        APP_OWNER.1,
        db,
        &["-i", "-q", "-s", &scale.to_string()],
    );
    ok_stdout("pgbench -i", &out);
    done.insert((db.to_string(), scale));
}

/// `(uid, gid)` of `user` from /etc/passwd.
fn os_user_ids(user: &str) -> (u32, u32) {
    let passwd = fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 3 && f[0] == user)
        .map(|f| (f[2].parse().expect("uid"), f[3].parse().expect("gid")))
        .unwrap_or_else(|| {
            panic!("running as root needs the `{user}` OS user (apt-get install postgresql)")
        })
}

/// `setpriv` switches user and then execs (unlike `runuser`, which forks),
/// so the pid we get is the PostgreSQL tool's own and the reaper can kill it.
const AS_OWNER: [&str; 4] = [
    "--reuid=postgres",
    "--regid=postgres",
    "--init-groups",
    "--",
];

/// A command for `program` running as the cluster's OS owner.
fn owner_cmd(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("setpriv");
        c.args(AS_OWNER).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// Shell prefix equivalent to [`owner_cmd`], for the reaper script.
fn owner_sh_prefix() -> String {
    if is_root() {
        format!("setpriv {} ", AS_OWNER.join(" "))
    } else {
        String::new()
    }
}

impl PgServer {
    fn start() -> PgServer {
        let bin_dir = pg_bin_dir().to_path_buf();
        // As root the cluster is owned by `postgres`, who must be able to
        // reach the directory: use /tmp rather than a $TMPDIR under /root.
        let parent = if is_root() {
            PathBuf::from("/tmp")
        } else {
            std::env::temp_dir()
        };
        let dir = tempfile::Builder::new()
            .prefix("lakepool-pg-")
            .tempdir_in(parent)
            .expect("create cluster temp dir")
            .keep();
        let data_dir = dir.join("data");
        let log_file = dir.join("postgres.log");
        // Registered before initdb so even a half-built cluster is removed.
        // The retries cover a test process killed while pg_ctl was starting
        // the server (no postmaster.pid yet).
        reap_command(format!(
            "for i in 1 2 3; do {}{} -D {} stop -m immediate -w && break; sleep 1; done; rm -rf {}",
            owner_sh_prefix(),
            sh_quote(&bin_dir.join("pg_ctl").to_string_lossy()),
            sh_quote(&data_dir.to_string_lossy()),
            sh_quote(&dir.to_string_lossy()),
        ));

        let certs_dir = dir.join("certs");
        fs::create_dir(&certs_dir).expect("create certs dir");
        let ca = TestCa::new("lakepool test CA");
        let ca_file = certs_dir.join("ca.crt");
        ca.write_ca(&ca_file);
        let server_cert = ca.issue_server(&certs_dir, "server", &["127.0.0.1", "localhost"]);

        let superuser = "postgres".to_string();
        let superuser_password = "lakepool_super_pw".to_string();
        let pwfile = dir.join("pwfile");
        write_private(&pwfile, format!("{superuser_password}\n").as_bytes());
        let owner = is_root().then(|| os_user_ids(PG_OS_USER));
        if let Some(ids) = owner {
            chown(&dir, ids);
            chown(&pwfile, ids);
        }

        let initdb = owner_cmd(&bin_dir.join("initdb"))
            .arg("-D")
            .arg(&data_dir)
            .args(["-U", &superuser, "--auth=scram-sha-256", "-E", "UTF8"])
            .args(["--locale=C", "--no-sync"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn initdb");
        // If the test process dies mid-initdb, initdb must not outlive the
        // reaper's `rm -rf` and recreate files.
        reap_pid(initdb.id());
        let pid = initdb.id();
        let out = initdb.wait_with_output().expect("wait initdb");
        unreap_pid(pid);
        ok_stdout("initdb", &out);

        // PostgreSQL insists its key is owned by the server's OS user and not
        // group/world readable, so it gets its own copy inside PGDATA.
        for (src, name) in [
            (&server_cert.cert_file, "server.crt"),
            (&server_cert.key_file, "server.key"),
        ] {
            let dst = data_dir.join(name);
            write_private(&dst, &fs::read(src).expect("read cert"));
            if let Some(ids) = owner {
                chown(&dst, ids);
            }
        }
        configure(&data_dir, &dir);

        let mut server = PgServer {
            host: HOST,
            port: 0,
            superuser,
            superuser_password,
            bin_dir,
            dir,
            data_dir,
            log_file,
            ca_file,
            server_cert,
            ca,
        };
        server.port = server.pg_ctl_start();
        server.create_roles();
        server
    }

    /// Starts the server on a free port, retrying if another process took
    /// the port between probing and binding. Returns the port.
    fn pg_ctl_start(&self) -> u16 {
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port();
            let out = owner_cmd(&self.bin_dir.join("pg_ctl"))
                .arg("-D")
                .arg(&self.data_dir)
                .arg("-l")
                .arg(&self.log_file)
                .args(["-w", "-t", "60", "-o", &format!("-p {port}"), "start"])
                .current_dir(&self.dir)
                .stdin(Stdio::null())
                .output()
                .expect("spawn pg_ctl");
            if out.status.success() {
                return port;
            }
            last = format!(
                "{}{}\n--- server log ---\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                self.log()
            );
        }
        panic!("pg_ctl start failed five times:\n{last}");
    }

    fn create_roles(&self) {
        let (app, app_pw) = APP_OWNER;
        let (md5, md5_pw) = MD5_OWNER;
        let (plain, plain_pw) = PLAIN_OWNER;
        // Each statement is sent separately by `psql -f -`, which CREATE
        // DATABASE needs (it cannot run inside a transaction block).
        self.exec_sql(&format!(
            "CREATE ROLE {app} LOGIN PASSWORD '{app_pw}';
             SET password_encryption = 'md5';
             CREATE ROLE {md5} LOGIN PASSWORD '{md5_pw}';
             RESET password_encryption;
             CREATE ROLE {plain} LOGIN PASSWORD '{plain_pw}';
             CREATE ROLE {oauth} NOLOGIN;
             CREATE ROLE \"{pat_user}\" LOGIN IN ROLE {oauth};
             CREATE ROLE \"{sp_user}\" LOGIN IN ROLE {oauth};
             CREATE DATABASE {APP_DB} OWNER {app};",
            oauth = super::LAKEBASE_GROUP,
            pat_user = super::LAKEBASE_PAT_USER,
            sp_user = super::LAKEBASE_SP_USER,
        ));
        // The other roles may use app_owner's tables (pgbench's included).
        self.exec_sql_in(
            APP_DB,
            &format!(
                "GRANT ALL ON SCHEMA public TO {md5}, {plain}, {oauth};
                 ALTER DEFAULT PRIVILEGES FOR ROLE {app} IN SCHEMA public
                   GRANT ALL ON TABLES TO {md5}, {plain}, {oauth};
                 ALTER DEFAULT PRIVILEGES FOR ROLE {app} IN SCHEMA public
                   GRANT ALL ON SEQUENCES TO {md5}, {plain}, {oauth};",
                oauth = super::LAKEBASE_GROUP,
            ),
        );
    }

    /// Runs `psql` as the superuser over TCP (database `postgres` unless
    /// `args` say otherwise), with `args` appended.
    pub fn psql(&self, args: &[&str]) -> Output {
        self.psql_cmd()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("spawn psql")
    }

    fn psql_cmd(&self) -> Command {
        let mut cmd = Command::new(self.bin_dir.join("psql"));
        scrub_pg_env(&mut cmd)
            .env("PGHOST", self.host)
            .env("PGPORT", self.port.to_string())
            .env("PGUSER", &self.superuser)
            .env("PGPASSWORD", &self.superuser_password)
            .env("PGDATABASE", "postgres")
            .env("PGSSLMODE", "disable")
            .env("PGCONNECT_TIMEOUT", "10");
        cmd
    }

    /// Runs `sql` (one or more statements) as the superuser in database
    /// `postgres`; panics on error. Returns stdout (`-At` format), trimmed.
    pub fn exec_sql(&self, sql: &str) -> String {
        self.exec_sql_in("postgres", sql)
    }

    /// Like [`Self::exec_sql`] in database `db`.
    pub fn exec_sql_in(&self, db: &str, sql: &str) -> String {
        let mut child = self
            .psql_cmd()
            .args(["-X", "-v", "ON_ERROR_STOP=1", "-At", "-d", db, "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn psql");
        let mut stdin = child.stdin.take().expect("psql stdin");
        stdin.write_all(sql.as_bytes()).expect("write SQL to psql");
        drop(stdin);
        let out = child.wait_with_output().expect("wait psql");
        ok_stdout(&format!("psql: {sql}"), &out)
    }

    /// A tokio-postgres client for the superuser (no TLS), database `postgres`.
    pub async fn connect_superuser(&self) -> tokio_postgres::Client {
        super::connect(
            self.port,
            &self.superuser,
            &self.superuser_password,
            "postgres",
            false,
        )
        .await
        .expect("connect as superuser")
    }

    /// The server log so far (for assertion messages).
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_file).unwrap_or_default()
    }
}

fn chown(path: &Path, (uid, gid): (u32, u32)) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
}

/// Appends the test settings to postgresql.conf (later lines win) and
/// replaces pg_hba.conf.
fn configure(data_dir: &Path, socket_dir: &Path) {
    let conf = format!(
        "\n# lakepool e2e harness\n\
         listen_addresses = '127.0.0.1'\n\
         unix_socket_directories = '{}'\n\
         max_connections = 200\n\
         shared_buffers = '32MB'\n\
         fsync = off\n\
         synchronous_commit = off\n\
         full_page_writes = off\n\
         ssl = on\n\
         ssl_cert_file = 'server.crt'\n\
         ssl_key_file = 'server.key'\n\
         password_encryption = 'scram-sha-256'\n\
         log_line_prefix = '%m [%p] %q%u@%d '\n",
        socket_dir.display()
    );
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(data_dir.join("postgresql.conf"))
        .expect("open postgresql.conf");
    f.write_all(conf.as_bytes())
        .expect("append postgresql.conf");

    // First match wins: the md5 and cleartext roles get their own methods
    // so lakepool's upstream md5/cleartext code paths can be exercised.
    // Token (Lakebase identity) roles log in over TLS only, as on Lakebase.
    let hba = format!(
        "local all all scram-sha-256\n\
         hostnossl all +{oauth} 127.0.0.1/32 reject\n\
         host all {md5} 127.0.0.1/32 md5\n\
         host all {plain} 127.0.0.1/32 password\n\
         host all all 127.0.0.1/32 scram-sha-256\n",
        md5 = MD5_OWNER.0,
        plain = PLAIN_OWNER.0,
        oauth = super::LAKEBASE_GROUP,
    );
    fs::write(data_dir.join("pg_hba.conf"), hba).expect("write pg_hba.conf");
}
