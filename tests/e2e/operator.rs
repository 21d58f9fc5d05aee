//! What an operator sees: `--version` with the commit, `--help` on the default action, signals
//! and logging variables, `check` refusing what serving refuses (environment included), the
//! startup line, upstream login failures at WARN, and the reload line naming drained pools.

use std::process::Command;
use std::time::Duration;

use crate::fixtures::{self, APP, OWNER_PW_ENV, Opts};
use crate::support::lakepool::{database_toml, lakepool_bin};
use crate::support::{APP_DB, APP_OWNER, Lakepool, ok_stdout, psql};

fn run(args: &[&str]) -> String {
    let out = Command::new(lakepool_bin())
        .args(args)
        .output()
        .expect("run lakepool");
    ok_stdout(&format!("lakepool {args:?}"), &out)
}

#[test]
fn version_names_the_commit_and_help_explains_serving() {
    let version = run(&["--version"]);
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    let want = format!(
        "lakepool {} (commit {})",
        env!("CARGO_PKG_VERSION"),
        commit.as_deref().unwrap_or("unknown")
    );
    assert_eq!(version, want);
    let help = run(&["--help"]);
    for needle in [
        "Without a subcommand, lakepool serves",
        "SIGHUP",
        "reload the configuration",
        "SIGTERM, SIGINT",
        "drain",
        "a second one",
        "RUST_LOG",
        "LAKEPOOL_LOG_FORMAT",
        "LAKEPOOL_CONFIG",
    ] {
        assert!(help.contains(needle), "--help lacks {needle:?}:\n{help}");
    }
}

/// `check` validates what serving validates, the environment included: both refuse an unknown
/// LAKEPOOL_LOG_FORMAT with the same message, and both accept json.
#[test]
fn check_refuses_the_log_format_serving_refuses() {
    let good = fixtures::config(&Opts::default());
    let env = |format| [(OWNER_PW_ENV, APP_OWNER.1), ("LAKEPOOL_LOG_FORMAT", format)];
    let (ok, out) = Lakepool::check_with_env(&good, &env("xml"));
    assert!(!ok, "check accepted LAKEPOOL_LOG_FORMAT=xml: {out}");
    let message = "LAKEPOOL_LOG_FORMAT=\"xml\" is not supported: use text or json";
    assert!(out.contains(message), "{out}");
    let served = Lakepool::try_start(&good, &env("xml"));
    let Err(failure) = served else {
        panic!("lakepool served with LAKEPOOL_LOG_FORMAT=xml");
    };
    assert!(failure.contains(message), "{failure}");
    let (ok, out) = Lakepool::check_with_env(&good, &env("json"));
    assert!(ok, "{out}");
}

#[test]
fn startup_line_names_version_config_listeners_databases_and_pools() {
    let opts = Opts {
        server_extra: "admin_listen = \"127.0.0.1:0\"",
        ..Opts::default()
    };
    let lp = Lakepool::start(&fixtures::config(&opts), &[(OWNER_PW_ENV, APP_OWNER.1)]);
    assert!(lp.wait_for_log("lakepool started", Duration::from_secs(10)));
    let logs = lp.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("lakepool started"))
        .unwrap();
    for needle in [
        format!("version={}", env!("CARGO_PKG_VERSION")),
        "(commit ".to_owned(),
        format!("config={}", lp.config_path().display()),
        format!("listen={}", lp.addr()),
        "admin_listen=127.0.0.1:".to_owned(),
        "databases=app (static password)".to_owned(),
        "app/app (transaction, pool_size 4)".to_owned(),
        "app/md5user (transaction, pool_size 4)".to_owned(),
    ] {
        assert!(line.contains(&needle), "{needle:?} missing from: {line}");
    }
}

/// A server refusing lakepool's login is the operator's problem: WARN, whether or not
/// server_login_retry pauses new attempts; the client's own mistakes stay at INFO.
#[test]
fn upstream_login_failures_are_warnings() {
    for retry in ["server_login_retry = 0", "server_login_retry = 15"] {
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n[pool]\n{retry}\n\n\
             [[users]]\nname = \"{}\"\npassword = \"{}\"\n\n{}",
            APP.0,
            APP.1,
            database_toml(
                "app",
                APP_DB,
                APP_OWNER.0,
                "LAKEPOOL_TEST_WRONG_PW",
                "verify-full"
            ),
        );
        let lp = Lakepool::start(&text, &[("LAKEPOOL_TEST_WRONG_PW", "not the password")]);
        let out = psql(lp.port(), APP.0, APP.1, "app", "disable", "select 1");
        assert!(!out.status.success());
        let wrong = psql(
            lp.port(),
            APP.0,
            "wrong client pw",
            "app",
            "disable",
            "select 1",
        );
        assert!(!wrong.status.success());
        assert!(lp.wait_for_log("code=28P01", Duration::from_secs(10)));
        let logs = lp.logs();
        let level_of = |needle: &str| {
            logs.lines()
                .find(|l| l.contains(needle))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
                .unwrap_or_else(|| panic!("no {needle:?} line in:\n{logs}"))
        };
        assert_eq!(level_of("server connection failed"), "WARN", "{retry}");
        assert_eq!(
            level_of("login failed client=127.0.0.1:"),
            "WARN",
            "{retry}"
        );
        // The client's wrong password: INFO.
        let client_mistake = logs
            .lines()
            .find(|l| l.contains("code=28P01") && l.contains("login failed"))
            .unwrap();
        assert!(client_mistake.contains(" INFO "), "{client_mistake}");
    }
}

#[test]
fn reload_line_names_the_pools_it_drained() {
    let lp = fixtures::start(&Opts::default());
    let out = psql(lp.port(), APP.0, APP.1, "app", "disable", "select 1");
    ok_stdout("psql", &out);
    // Same settings: nothing drained.
    lp.signal("HUP");
    assert!(lp.wait_for_log("configuration reloaded", Duration::from_secs(10)));
    assert!(lp.logs().contains("drained=none"), "{}", lp.logs());
    // A new pool size: the used pool is drained (pools never used have nothing to drain).
    let bigger = fixtures::config(&Opts {
        size: 6,
        ..Opts::default()
    });
    std::fs::write(lp.config_path(), bigger).unwrap();
    lp.signal("HUP");
    assert!(
        lp.wait_for_log("drained=app/app", Duration::from_secs(10)),
        "{}",
        lp.logs()
    );
}
