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
