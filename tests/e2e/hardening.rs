//! Hardening: empty secrets, user enumeration, config errors without secrets, log injection,
//! upstream login downgrades, the admin HTTP token, file descriptors, CPU per failed attempt,
//! secret files' permissions and SASLprep.

use std::time::Duration;

use crate::fixtures::{self, APP, CLEAR_DB, CLEAR_USER, MD5_DB, MD5_USER, OWNER_PW_ENV, Opts};
use crate::support::lakepool::database_toml;
use crate::support::wire::{
    AUTH_MD5, AUTH_SASL, BackendMsg, PROTOCOL_3_0, RawConn, frontend_msg, sasl_initial, startup,
};
use crate::support::{APP_DB, APP_OWNER, Lakepool, connect};

/// The admin console login added to the shared test config.
const ADMIN: (&str, &str) = ("hardadmin", "hard_admin_pw");

fn with_admin(config: &str) -> String {
    format!(
        "{config}\n[[users]]\nname = \"{}\"\npassword = \"{}\"\nadmin = true\n",
        ADMIN.0, ADMIN.1
    )
}

/// A config error never shows a value from the file, wherever it is shown: `lakepool check`,
/// the `reload refused` log line and the console's RELOAD reply; it gives the line instead.
#[tokio::test]
async fn config_errors_show_the_line_and_never_the_secret() {
    let good = with_admin(&fixtures::config(&Opts::default()));
    let bad = good.replace(
        &format!("password = \"{}\"", APP.1),
        "password = \"x_S3CR3T_unterminated",
    );
    let line = bad
        .lines()
        .position(|l| l.contains("x_S3CR3T"))
        .map(|i| i + 1)
        .unwrap();
    let expected = format!("line {line}: not valid TOML");

    let (ok, out) = Lakepool::check_with_env(&bad, &[(OWNER_PW_ENV, APP_OWNER.1)]);
    assert!(!ok);
    assert!(out.contains(&expected), "{out}");
    assert!(!out.contains("S3CR3T"), "{out}");

    let lp = Lakepool::start(&good, &[(OWNER_PW_ENV, APP_OWNER.1)]);
    std::fs::write(lp.config_path(), &bad).unwrap();
    let console = connect(lp.port(), ADMIN.0, ADMIN.1, "lakepool", false)
        .await
        .unwrap();
    let err = console.simple_query("RELOAD").await.unwrap_err();
    let reply = err.as_db_error().map(|e| e.message().to_owned()).unwrap();
    assert!(reply.contains(&expected), "{reply}");
    assert!(!reply.contains("S3CR3T"), "{reply}");
    assert!(lp.wait_for_log("reload refused", Duration::from_secs(10)));
    let logs = lp.logs();
    assert!(logs.contains(&expected), "{logs}");
    assert!(!logs.contains("S3CR3T"), "{logs}");

    // A port out of range is said in plain words, with its line.
    let bad_port: String = good
        .lines()
        .map(|l| {
            if l.starts_with("port = ") {
                "port = 99999"
            } else {
                l
            }
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let (ok, out) = Lakepool::check_with_env(&bad_port, &[(OWNER_PW_ENV, APP_OWNER.1)]);
    assert!(!ok);
    assert!(
        out.contains("databases[0].port: must be between 1 and 65535") && out.contains("line "),
        "{out}"
    );
}

/// An empty client or upstream password is refused at load in every form, and `lakepool check`
/// says which key; the running lakepool refuses to start with one.
#[test]
fn empty_secrets_are_refused_by_check_and_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let newline = dir.path().join("newline");
    std::fs::write(&newline, "\n").unwrap();
    let good = fixtures::config(&Opts::default());
    let app_password = format!("password = \"{}\"", APP.1);
    let forms = [
        "password = \"\"".to_owned(),
        "password_env = \"LAKEPOOL_TEST_EMPTY\"".to_owned(),
        format!("password_file = \"{}\"", newline.display()),
    ];
    let env = [(OWNER_PW_ENV, APP_OWNER.1), ("LAKEPOOL_TEST_EMPTY", "")];
    for form in &forms {
        let client = good.replace(&app_password, form);
        let (ok, out) = Lakepool::check_with_env(&client, &env);
        assert!(!ok, "accepted {form}");
        assert!(
            out.contains("users[0].password") && out.contains("empty"),
            "{out}"
        );
        let upstream = good.replace(&format!("password_env = \"{OWNER_PW_ENV}\""), form);
        let (ok, out) = Lakepool::check_with_env(&upstream, &env);
        assert!(!ok, "accepted upstream {form}");
        assert!(
            out.contains("databases[0].password") && out.contains("empty"),
            "{out}"
        );
    }
    // The upstream password's own variable set to "".
    let (ok, out) = Lakepool::check_with_env(&good, &[(OWNER_PW_ENV, "")]);
    assert!(!ok && out.contains("databases[0].password_env"), "{out}");
    let started = Lakepool::try_start(&good.replace(&app_password, &forms[0]), &env);
    let err = started
        .err()
        .expect("lakepool started with an empty password");
    assert!(err.contains("users[0].password: is empty"), "{err}");
}

/// The first authentication message lakepool sends `user` asking for `database` over plain TCP
/// (an ErrorResponse when it refuses before asking for a password).
fn first_auth_reply(port: u16, user: &str, database: &str) -> (RawConn, BackendMsg) {
    let mut c = RawConn::connect(port);
    c.send(&startup(
        PROTOCOL_3_0,
        &[("user", user), ("database", database)],
    ))
    .unwrap();
    let m = c.expect_msg("first reply to the startup packet");
    (c, m)
}

/// The SCRAM server-first-message's salt (decoded) and iteration count for `user`.
fn scram_salt_and_iterations(port: u16, user: &str) -> (Vec<u8>, u32) {
    use base64::Engine as _;
    let (mut c, offer) = first_auth_reply(port, user, "app");
    assert_eq!(offer.auth_code(), Some(AUTH_SASL), "{user}: {offer:?}");
    c.send(&sasl_initial("SCRAM-SHA-256", b"n,,n=,r=fixedclientnonce"))
        .unwrap();
    let first = c.expect_msg("server-first-message");
    let text = String::from_utf8(first.body[4..].to_vec()).unwrap();
    let attr = |name: &str| {
        text.split(',')
            .find_map(|a| a.strip_prefix(name))
            .unwrap_or_else(|| panic!("{name} in {text}"))
            .to_owned()
    };
    let salt = base64::engine::general_purpose::STANDARD
        .decode(attr("s="))
        .unwrap();
    (salt, attr("i=").parse().unwrap())
}

/// Before the password is checked, a known user and an unknown one get the same exchange: the
/// database's method (SCRAM, md5, or the TLS rule of cleartext), and SCRAM salts and iteration
/// counts shaped alike and stable across a reload.
#[test]
fn unknown_users_cannot_be_told_from_known_ones() {
    let lp = Lakepool::start(
        &fixtures::config_with_methods(&Opts::default()),
        &[(OWNER_PW_ENV, APP_OWNER.1)],
    );
    let port = lp.port();
    const GHOST: &str = "no_such_user_here";

    // SCRAM: the same offer, the same shape of salt and count.
    let offer = |user| first_auth_reply(port, user, "app").1;
    assert_eq!(offer(APP.0), offer(GHOST));
    let (known_salt, known_i) = scram_salt_and_iterations(port, APP.0);
    let (ghost_salt, ghost_i) = scram_salt_and_iterations(port, GHOST);
    assert_eq!(known_i, ghost_i);
    assert_eq!(known_salt.len(), ghost_salt.len());
    // A reload keeps both salts.
    lp.signal("HUP");
    assert!(lp.wait_for_log("configuration reloaded", Duration::from_secs(10)));
    assert_eq!(scram_salt_and_iterations(port, APP.0).0, known_salt);
    assert_eq!(scram_salt_and_iterations(port, GHOST).0, ghost_salt);

    // md5 database: md5 for everyone, and the same failure.
    for user in [MD5_USER.0, APP.0, GHOST] {
        let (_, m) = first_auth_reply(port, user, MD5_DB);
        assert_eq!(m.auth_code(), Some(AUTH_MD5), "{user}: {m:?}");
    }
    let md5_failure = |user: &str| {
        let (mut c, m) = first_auth_reply(port, user, MD5_DB);
        let response = crate::support::wire::md5_response(user, "wrong", &m.body[4..8]);
        c.send(&frontend_msg(b'p', format!("{response}\0").as_bytes()))
            .unwrap();
        let e = c.expect_error_or_close(&["28P01"], user).unwrap();
        e.message().unwrap().replace(user, "<user>")
    };
    assert_eq!(md5_failure(MD5_USER.0), md5_failure(GHOST));

    // Cleartext database without TLS: refused the same way before any password.
    for user in [CLEAR_USER.0, GHOST] {
        let (_, m) = first_auth_reply(port, user, CLEAR_DB);
        assert_eq!(m.sqlstate().as_deref(), Some("28000"), "{user}: {m:?}");
        assert!(m.message().unwrap().contains("requires TLS"), "{m:?}");
    }
}

/// An unknown user's SCRAM iteration count is the configured verifiers' own.
#[test]
fn fake_verifiers_use_the_configured_iteration_count() {
    let verifier = lakepool::auth::scram::ScramVerifier::from_password("v_pw", 8192);
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\
         [[users]]\nname = \"{}\"\npassword = \"{verifier}\"\n{}",
        APP.0,
        database_toml("app", APP_DB, APP_OWNER.0, OWNER_PW_ENV, "disable"),
    );
    let lp = Lakepool::start(&text, &[(OWNER_PW_ENV, APP_OWNER.1)]);
    assert_eq!(scram_salt_and_iterations(lp.port(), APP.0).1, 8192);
    assert_eq!(
        scram_salt_and_iterations(lp.port(), "nobody_at_all").1,
        8192
    );
}

/// SASLprep as PostgreSQL applies it: a user configured with `IX-Ⅸ` (Roman numeral nine) logs
/// in with the normalized `IX-IX` over SCRAM (what libpq and node-postgres send) and through a
/// cleartext login over TLS; md5 hashes the raw password, as PostgreSQL does.
#[tokio::test]
async fn saslprep_passwords_log_in_normalized() {
    const ROMAN: (&str, &str) = ("roman", "IX-\u{2168}");
    let text = format!(
        "{}\n[[users]]\nname = \"{}\"\npassword = \"{}\"\n",
        fixtures::config_with_methods(&Opts::default()),
        ROMAN.0,
        ROMAN.1
    );
    let lp = Lakepool::start(&text, &[(OWNER_PW_ENV, APP_OWNER.1)]);
    let port = lp.port();
    // SCRAM, with the password as a normalizing client computes the proof.
    let mut c = RawConn::connect(port);
    c.send(&startup(
        PROTOCOL_3_0,
        &[("user", ROMAN.0), ("database", "app")],
    ))
    .unwrap();
    assert_eq!(c.expect_msg("SASL offer").auth_code(), Some(AUTH_SASL));
    c.scram_exchange("IX-IX");
    c.skip_until(b'Z', "ready");
    // Cleartext over TLS, with either form sent as it is.
    for password in ["IX-IX", ROMAN.1] {
        let out = tokio::task::spawn_blocking(move || {
            crate::support::psql(port, ROMAN.0, password, CLEAR_DB, "require", "select 1")
        })
        .await
        .unwrap();
        assert_eq!(crate::support::ok_stdout(password, &out), "1");
    }
    // md5 is not normalized: only the configured form works.
    let md5 = |password: &'static str| {
        tokio::task::spawn_blocking(move || {
            crate::support::psql(port, ROMAN.0, password, MD5_DB, "disable", "select 1")
        })
    };
    assert!(md5(ROMAN.1).await.unwrap().status.success());
    assert!(!md5("IX-IX").await.unwrap().status.success());
}

/// A reload reads files and runs PBKDF2 off the runtime: on a one-thread runtime, a client's
/// query is answered while a reload deriving expensive verifiers is still under way.
#[tokio::test]
async fn reload_runs_pbkdf2_off_the_runtime() {
    // At the iteration cap: each verifier costs one PBKDF2 run at load (the empty-password
    // check), about a second apiece in a debug build and tens of milliseconds in a release
    // one (`cargo test --release`), which needs more of them for the reload to outlast the
    // query below.
    let heavy = lakepool::auth::scram::ScramVerifier::from_password("heavy_pw", 100_000);
    let mut text = fixtures::config(&Opts {
        server_extra: "workers = 1",
        ..Opts::default()
    });
    let users = if cfg!(debug_assertions) { 3 } else { 80 };
    for i in 0..users {
        text.push_str(&format!(
            "\n[[users]]\nname = \"heavy{i}\"\npassword = \"{heavy}\"\n"
        ));
    }
    let lp = Lakepool::start(&text, &[(OWNER_PW_ENV, APP_OWNER.1)]);
    let client = connect(lp.port(), APP.0, APP.1, "app", false)
        .await
        .unwrap();
    client.simple_query("select 1").await.unwrap();
    lp.signal("HUP");
    assert!(lp.wait_for_log("SIGHUP: reloading", Duration::from_secs(10)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    client.simple_query("select 2").await.unwrap();
    assert!(
        !lp.logs().contains("configuration reloaded"),
        "the query waited for the reload:\n{}",
        lp.logs()
    );
    assert!(lp.wait_for_log("configuration reloaded", Duration::from_secs(60)));
}

/// A user name (or database name) with a newline cannot forge a log line in text format: the
/// name comes out escaped.
#[tokio::test]
async fn a_newline_in_a_client_name_cannot_forge_a_log_line() {
    let lp = fixtures::start(&Opts::default());
    let forged =
        "2026-01-01T00:00:00Z  INFO lakepool::frontend::session: client logged in user=admin";
    let user = format!("x\n{forged}");
    let err = connect(lp.port(), &user, "wrong", "app", false)
        .await
        .unwrap_err();
    assert_eq!(err.as_db_error().map(|e| e.code().code()), Some("28P01"));
    // An authenticated user asking for a database name with a newline.
    let err = connect(lp.port(), APP.0, APP.1, &format!("nodb\n{forged}"), false)
        .await
        .unwrap_err();
    assert_eq!(err.as_db_error().map(|e| e.code().code()), Some("3D000"));
    assert!(
        lp.wait_for_log("nodb\\n", Duration::from_secs(10)),
        "{}",
        lp.logs()
    );
    let logs = lp.logs();
    assert!(logs.contains("x\\n2026-01-01"), "{logs}");
    assert!(
        !logs.lines().any(|l| l.starts_with("2026-01-01T00:00:00Z")),
        "a forged line:\n{logs}"
    );
}

/// `/metrics` needs the admin token when one is set; `/healthz` and `/readyz` need none and
/// name no user or database (the token shows `/readyz`'s details).
#[test]
fn admin_token_guards_metrics_and_probes_reveal_no_names() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("admin-token");
    std::fs::write(&token_file, "tok_3xample_admin\n").unwrap();
    // A Lakebase database whose workspace cannot be reached: never ready.
    let closed = crate::support::free_port();
    let text = format!(
        "{}\n[[databases]]\nname = \"secretive_db\"\ninstance = \"inst\"\n\
         [workspace]\nhost = \"http://127.0.0.1:{closed}\"\ntoken = \"pat_placeholder\"\n\
         retry_timeout = 1\n",
        fixtures::config(&Opts {
            server_extra: &format!(
                "admin_listen = \"127.0.0.1:0\"\nadmin_token_file = \"{}\"",
                token_file.display()
            ),
            ..Opts::default()
        })
    );
    let lp = Lakepool::start(&text, &[(OWNER_PW_ENV, APP_OWNER.1)]);
    let bearer = [("Authorization", "Bearer tok_3xample_admin")];
    let (status, _, body) = lp.admin_get("/metrics");
    assert_eq!(status, 401, "{body}");
    let wrong = [("Authorization", "Bearer tok_3xample_admiN")];
    assert_eq!(lp.admin_get_with("/metrics", &wrong).0, 401);
    let (status, _, body) = lp.admin_get_with("/metrics", &bearer);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("lakepool_info"), "{body}");

    assert_eq!(
        lp.admin_get("/healthz"),
        (200, lp.admin_get("/healthz").1, "ok\n".to_owned())
    );
    let (status, _, body) = lp.admin_get("/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("1 of 2 databases"), "{body}");
    for name in ["secretive_db", "app", APP.0] {
        assert!(!body.contains(name), "/readyz names {name}: {body}");
    }
    let (_, _, detailed) = lp.admin_get_with("/readyz", &bearer);
    assert!(detailed.contains("database secretive_db"), "{detailed}");
    assert!(!lp.logs().contains("tok_3xample_admin"));
}

/// The "Max open files" soft and hard limits of a running process.
fn open_files_limits(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let nums: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (nums[0], nums[1])
}

/// At startup the open-files soft limit is raised to the hard one.
#[test]
fn open_files_soft_limit_is_raised() {
    let lp = Lakepool::start_after_shell(
        &fixtures::config(&Opts::default()),
        &[(OWNER_PW_ENV, APP_OWNER.1)],
        "ulimit -S -n 256",
    );
    let (soft, hard) = open_files_limits(lp.pid());
    assert!(
        hard > 256,
        "the test needs a hard limit above 256 (it is {hard})"
    );
    assert_eq!(soft, hard.min(1 << 20));
}

/// With few file descriptors, lakepool says so at startup; when they run out, accept errors
/// are logged once per episode (not every few milliseconds) and it recovers by itself.
#[test]
fn out_of_file_descriptors_warns_once_and_recovers() {
    let lp = Lakepool::start_after_shell(
        &fixtures::config(&Opts::default()),
        &[(OWNER_PW_ENV, APP_OWNER.1)],
        "ulimit -n 48",
    );
    assert!(
        lp.logs().contains("the open files limit is below"),
        "{}",
        lp.logs()
    );
    // Connections that send one byte of a startup packet, then nothing, hold a descriptor each
    // until handshake_timeout (5 s); past the limit the kernel queues them and accept fails.
    // (The byte gets them past the deferred accept: a silent one waits in the kernel.)
    let held: Vec<_> = (0..80)
        .filter_map(|_| {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", lp.port())).ok()?;
            std::io::Write::write_all(&mut s, &[0]).ok()?;
            Some(s)
        })
        .collect();
    assert!(
        lp.wait_for_log("accept failed", Duration::from_secs(5)),
        "{}",
        lp.logs()
    );
    std::thread::sleep(Duration::from_millis(1500));
    let failures = lp.logs().matches("accept failed").count();
    assert_eq!(failures, 1, "accept errors flood the log:\n{}", lp.logs());
    drop(held);
    assert!(
        lp.wait_for_log("accepting connections again", Duration::from_secs(15)),
        "{}",
        lp.logs()
    );
    let out = crate::support::psql(lp.port(), APP.0, APP.1, "app", "disable", "select 1");
    assert_eq!(crate::support::ok_stdout("after recovery", &out), "1");
}

/// A secret file others may read is warned about (by `check` and at startup), without its
/// contents; a private one is not.
#[test]
fn secret_files_others_can_read_are_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app-password");
    std::fs::write(&file, format!("{}\n", APP.1)).unwrap();
    let text = fixtures::config(&Opts::default()).replace(
        &format!("password = \"{}\"", APP.1),
        &format!("password_file = \"{}\"", file.display()),
    );
    let env = [(OWNER_PW_ENV, APP_OWNER.1)];
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (ok, out) = Lakepool::check_with_env(&text, &env);
    assert!(ok, "{out}");
    assert!(
        out.contains("warning") && out.contains("users[0].password_file") && out.contains("644"),
        "{out}"
    );
    let lp = Lakepool::start(&text, &env);
    assert!(
        lp.logs().contains("is readable by group or others"),
        "{}",
        lp.logs()
    );
    assert!(!lp.logs().contains(APP.1));
    drop(lp);
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (ok, out) = Lakepool::check_with_env(&text, &env);
    assert!(ok && !out.contains("warning"), "{out}");
}
