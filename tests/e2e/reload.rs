//! Reload (SIGHUP): users, pool settings and databases change under load without failing a
//! transaction; an invalid file is refused and the running configuration stays.

use std::time::Duration;

use crate::fixtures::{self, APP, Opts};
use crate::support::{APP_DB, ok_stdout, pgbench, pgbench_init, psql};

const NEW_USER: (&str, &str) = ("reload_new_user", "reload_new_pw");

fn failed_transactions(out: &str) -> Option<u64> {
    out.lines()
        .find(|l| l.starts_with("number of failed transactions:"))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn reload_under_load_changes_pool_size_and_users() {
    pgbench_init(APP_DB, 1);
    let lp = fixtures::start(&Opts {
        size: 2,
        ..Opts::default()
    });
    let port = lp.port();
    let login_new = || psql(port, NEW_USER.0, NEW_USER.1, "app", "require", "select 1");
    assert!(
        !login_new().status.success(),
        "the new user does not exist yet"
    );

    let bench = std::thread::spawn(move || {
        pgbench(
            port,
            APP.0,
            APP.1,
            "app",
            &["-n", "-c", "6", "-j", "2", "-T", "6", "-M", "extended"],
        )
    });
    std::thread::sleep(Duration::from_millis(1500));
    // A bigger pool and a new login, while pgbench runs.
    let grown = format!(
        "{}\n[[users]]\nname = \"{}\"\npassword = \"{}\"\n",
        fixtures::config(&Opts {
            size: 5,
            ..Opts::default()
        }),
        NEW_USER.0,
        NEW_USER.1
    );
    std::fs::write(lp.config_path(), &grown).unwrap();
    lp.signal("HUP");
    assert!(
        lp.wait_for_log("configuration reloaded", Duration::from_secs(10)),
        "{}",
        lp.logs()
    );
    assert_eq!(ok_stdout("new user", &login_new()), "1");

    // An invalid file is refused; everything keeps working as before.
    std::thread::sleep(Duration::from_millis(500));
    std::fs::write(lp.config_path(), "[server]\nlisten = 5\n").unwrap();
    lp.signal("HUP");
    assert!(
        lp.wait_for_log("reload refused", Duration::from_secs(10)),
        "{}",
        lp.logs()
    );
    assert_eq!(ok_stdout("after refused reload", &login_new()), "1");

    let out = bench.join().unwrap();
    let text = ok_stdout("pgbench across reloads", &out);
    assert_eq!(failed_transactions(&text), Some(0), "{text}");
    assert!(
        text.contains("number of transactions actually processed"),
        "{text}"
    );
}
