//! Hardening: empty secrets, user enumeration, config errors without secrets, log injection,
//! upstream login downgrades, the admin HTTP token, file descriptors, CPU per failed attempt,
//! secret files' permissions and SASLprep.

use std::time::Duration;

use crate::fixtures::{self, APP, OWNER_PW_ENV, Opts};
use crate::support::{APP_OWNER, Lakepool, connect};

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
