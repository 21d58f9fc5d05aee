//! The Unix-domain socket for local clients (`[server] unix_socket_dir`): libpq's socket name,
//! logins, cancel requests and the TLS rules there, the socket file's life.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use crate::fixtures::{self, APP, CLEAR_DB, CLEAR_USER, OWNER_PW_ENV, Opts};
use crate::support::{APP_OWNER, Lakepool, connect, pg, psql_at, scratch_dir};

/// A fresh directory for one test's socket (short: a socket path has at most 107 bytes).
fn socket_dir(tag: &str) -> PathBuf {
    let d = scratch_dir().join(format!("sock-{tag}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The test config with databases for every method, an admin user, the socket in `dir`,
/// client TLS required on TCP, and `listen` as given.
fn config(dir: &Path, listen: &str) -> String {
    let extra = format!(
        "unix_socket_dir = \"{}\"\nunix_socket_mode = 0o700",
        dir.display()
    );
    fixtures::config_with_methods(&Opts {
        server_extra: &extra,
        ..Opts::default()
    })
    .replace("client_tls = \"prefer\"", "client_tls = \"require\"")
    .replace(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"{listen}\""),
    ) + &format!(
        "\n[[users]]\nname = \"{}\"\npassword = \"{}\"\nadmin = true\n",
        ADMIN.0, ADMIN.1
    )
}

/// The admin console's login in [`config`].
const ADMIN: (&str, &str) = ("sockadmin", "sock_admin_pw");

fn start(dir: &Path, listen: &str) -> Lakepool {
    let lp = Lakepool::start(&config(dir, listen), &[(OWNER_PW_ENV, APP_OWNER.1)]);
    assert!(
        lp.wait_for_log("listening on the unix socket", Duration::from_secs(10)),
        "{}",
        lp.logs()
    );
    lp
}

/// psql through the socket in `dir` (libpq's `host=<directory>`).
fn psql_local(dir: &Path, port: u16, user: (&str, &str), db: &str, sql: &str) -> Output {
    let host = dir.display().to_string();
    psql_at(&host, port, user.0, user.1, db, "disable", sql)
}

/// A free loopback port below 32768.
fn low_port() -> u16 {
    let start = 20_000 + (std::process::id() % 10_000) as u16;
    (start..32_000)
        .chain(20_000..start)
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .expect("a free port below 32768")
}

async fn connect_local(dir: &Path, port: u16) -> tokio_postgres::Client {
    let mut cfg = tokio_postgres::Config::new();
    cfg.host_path(dir)
        .port(port)
        .user(APP.0)
        .password(APP.1)
        .dbname("app")
        .connect_timeout(Duration::from_secs(10));
    let (client, conn) = cfg.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(async move { drop(conn.await) });
    client
}

#[tokio::test]
async fn local_clients_log_in_through_the_socket_without_tls() {
    let dir = socket_dir("login");
    let lp = start(&dir, "127.0.0.1:0");
    let port = lp.port();
    let path = dir.join(format!(".s.PGSQL.{port}"));
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o700, "unix_socket_mode applies");

    // SCRAM through the socket, although client_tls = "require" (nothing there crosses a
    // network), in transaction mode.
    let c = connect_local(&dir, port).await;
    let row = c.query_one("select current_user::text", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), APP_OWNER.0);
    // The same requirement still holds on TCP.
    let e = connect(port, APP.0, APP.1, "app", false).await.unwrap_err();
    let code = e.as_db_error().map(|d| d.code().code().to_owned());
    assert_eq!(code.as_deref(), Some("28000"), "{e}");

    // Cleartext passwords are fine on the socket (allow_cleartext_without_tls is off).
    let out = psql_local(&dir, port, CLEAR_USER, CLEAR_DB, "select 41 + 1");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        lp.logs()
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42");
    assert!(lp.logs().contains("client=unix socket"), "{}", lp.logs());
    // The admin console is there too, and lists the socket client with address "unix".
    let out = psql_local(&dir, port, ADMIN, "lakepool", "SHOW CLIENTS");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with("C|app|app|") && l.contains("|unix||")),
        "{shown}"
    );

    // An SSLRequest there is answered N, as PostgreSQL and PgBouncer answer it.
    let mut raw = std::os::unix::net::UnixStream::connect(&path).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    raw.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])
        .unwrap();
    let mut answer = [0u8; 1];
    raw.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"N");
}

/// The query the cancel test cancels.
const SLEEP: &str = "select pg_sleep(30) as cancelled_through_the_unix_socket";

#[tokio::test]
async fn a_cancel_request_through_the_socket_cancels_the_query() {
    let dir = socket_dir("cancel");
    let lp = start(&dir, "127.0.0.1:0");
    let c = connect_local(&dir, lp.port()).await;
    let token = c.cancel_token();
    // A simple query: with the extended protocol the server reads the next message between
    // Parse and Execute, and PostgreSQL ignores a cancel that arrives while it reads.
    // Its own text: other tests sleep with `select pg_sleep(30)` at the same time.
    let sleeper = tokio::spawn(async move { c.batch_execute(SLEEP).await });
    // Once the query sleeps on a server (an event, not a fixed delay: the machine may be
    // busy), the cancel goes through the socket too (tokio-postgres reuses the client's host).
    let running = format!(
        "select count(*) from pg_stat_activity where query = '{SLEEP}' and wait_event = 'PgSleep'"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while pg().exec_sql(&running).trim() != "1" {
        assert!(
            std::time::Instant::now() < deadline,
            "the query never started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let e = tokio::time::timeout(Duration::from_secs(10), sleeper)
        .await
        .expect("the query ends soon after the cancel")
        .unwrap()
        .unwrap_err();
    let code = e.as_db_error().map(|d| d.code().code().to_owned());
    assert_eq!(code.as_deref(), Some("57014"), "{e}");
}

#[tokio::test]
async fn the_socket_file_goes_on_shutdown_and_a_crashed_runs_file_is_taken_over() {
    let dir = socket_dir("life");
    let mut lp = start(&dir, "127.0.0.1:0");
    let port = lp.port();
    let path = dir.join(format!(".s.PGSQL.{port}"));
    assert!(path.exists());
    lp.sigterm();
    assert!(
        lp.wait_exit(Duration::from_secs(20)).is_some(),
        "{}",
        lp.logs()
    );
    assert!(!path.exists(), "removed on shutdown");

    // A killed run leaves its file behind; the next run on that port takes it over. A port
    // below 32768, which no outgoing connection takes in between (Linux hands those out from
    // 32768 up).
    let port = low_port();
    let mut lp = start(&dir, &format!("127.0.0.1:{port}"));
    let path = dir.join(format!(".s.PGSQL.{port}"));
    lp.kill();
    assert!(path.exists(), "SIGKILL leaves the socket file");
    let lp = start(&dir, &format!("127.0.0.1:{port}"));
    let out = psql_local(&dir, port, APP, "app", "select 1");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        lp.logs()
    );

    // A second lakepool on the same socket, while the first accepts on it, refuses to start
    // (its TCP listener on another loopback address, so that the socket is what collides).
    let clash = config(&dir, &format!("127.0.0.2:{port}"));
    let err = match Lakepool::try_start(&clash, &[(OWNER_PW_ENV, APP_OWNER.1)]) {
        Err(e) => e,
        // Its TCP listener came first and was reported: it exits right after.
        Ok(mut second) => {
            let status = second.wait_exit(Duration::from_secs(20));
            assert!(status.is_some_and(|s| !s.success()), "{}", second.logs());
            second.logs()
        }
    };
    assert!(
        err.contains("another lakepool holds its lock file"),
        "{err}"
    );
    assert!(path.exists(), "the live socket's file is left alone");
}
