//! The command line: `check` names the bad key, `hash-password` makes a usable verifier.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::fixtures::{self, APP, OWNER_PW_ENV, Opts};
use crate::support::lakepool::lakepool_bin;
use crate::support::{APP_OWNER, Lakepool, ok_stdout, psql};

#[test]
fn check_accepts_a_good_config_and_names_the_bad_key() {
    let good = fixtures::config(&Opts::default());
    let (ok, out) = Lakepool::check_with_env(&good, &[(OWNER_PW_ENV, APP_OWNER.1)]);
    assert!(ok, "{out}");
    let cases = [
        (
            good.replace("pool_size = 4", "pool_size = 0"),
            "pool.pool_size",
        ),
        (
            good.replace("pool_mode = \"transaction\"", "pool_mode = \"sometimes\""),
            "pool_mode",
        ),
        (
            good.replace("tls = \"verify-full\"", "tls = \"maybe\""),
            "databases[0]",
        ),
        (format!("{good}bogus_key = 1\n"), "bogus_key"),
        (
            good.replace(
                "client_tls = \"prefer\"",
                "client_tls = \"prefer\"\nworkers = 1000",
            ),
            "server.workers",
        ),
    ];
    for (text, key) in cases {
        let (ok, out) = Lakepool::check_with_env(&text, &[(OWNER_PW_ENV, APP_OWNER.1)]);
        assert!(!ok, "accepted a bad config ({key})");
        assert!(out.contains(key), "error does not name {key}: {out}");
    }
    // A missing env secret names the variable, not a value.
    let (ok, out) = Lakepool::check(&good);
    assert!(!ok);
    assert!(out.contains(OWNER_PW_ENV), "{out}");
}

#[test]
fn hash_password_verifier_logs_in() {
    let mut child = Command::new(lakepool_bin())
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"hashed secret\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let verifier = ok_stdout("hash-password", &out);
    assert!(verifier.starts_with("SCRAM-SHA-256$4096:"), "{verifier}");
    assert!(!verifier.contains("hashed secret"));
    let text = fixtures::config(&Opts::default()).replace(
        &format!("name = \"{}\"\npassword = \"{}\"", APP.0, APP.1),
        &format!("name = \"{}\"\npassword = \"{verifier}\"", APP.0),
    );
    let lp = Lakepool::start(&text, &[(OWNER_PW_ENV, APP_OWNER.1)]);
    let out = psql(
        lp.port(),
        APP.0,
        "hashed secret",
        "app",
        "disable",
        "select 7",
    );
    assert_eq!(ok_stdout("login with hashed verifier", &out), "7");
}

#[test]
fn json_logs_parse_and_carry_connection_fields() {
    let text = fixtures::config(&Opts::default()).replace(
        "handshake_timeout = 5",
        "handshake_timeout = 5\nlog_format = \"json\"",
    );
    let lp = Lakepool::start(&text, &[(OWNER_PW_ENV, APP_OWNER.1)]);
    ok_stdout(
        "login",
        &psql(lp.port(), APP.0, APP.1, "app", "disable", "select 1"),
    );
    let _ = psql(lp.port(), APP.0, "wrong", "app", "disable", "select 1");
    assert!(lp.wait_for_log("client disconnected", std::time::Duration::from_secs(5)));
    let logs = lp.logs();
    let mut logged_in = false;
    for line in logs.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            v["level"].is_string() && v["fields"]["message"].is_string(),
            "{line}"
        );
        if v["fields"]["message"] == "client logged in" {
            assert_eq!(v["fields"]["user"], APP.0);
            assert_eq!(v["fields"]["database"], "app");
            assert!(
                v["fields"]["client"]
                    .as_str()
                    .is_some_and(|c| c.starts_with("127.0.0.1:"))
            );
            logged_in = true;
        }
    }
    assert!(logged_in, "{logs}");
    assert!(!logs.contains(APP.1) && !logs.contains(APP_OWNER.1));
}
