//! Issue 11 item 4: `client_idle_timeout` and `idle_transaction_timeout` behave the same for
//! plain and TLS clients, with and without statement mapping, in session and transaction
//! mode. Every combination runs at once (one thread per client), so the whole matrix costs
//! one timeout's wait.

use std::thread;
use std::time::{Duration, Instant};

use crate::fixtures::{self, MD5_USER, OWNER_PW_ENV, Opts};
use crate::support::lakepool::database_toml;
use crate::support::wire::{self, RawConn, Reply};
use crate::support::{APP_DB, APP_OWNER, Lakepool};

/// Both timeouts, in seconds.
const LIMIT: f64 = 5.0;
/// How much later than the limit a timeout may fire before the test calls it broken: a
/// liveness bound for a loaded 2-core machine, not a speed target.
const SLACK: f64 = 4.0;

/// Databases (pools) of the matrix: (name, pool_mode, max_prepared_statements).
const POOLS: [(&str, &str, u32); 4] = [
    ("session_mapped", "session", 200),
    ("session_plain", "session", 0),
    ("txn_mapped", "transaction", 200),
    ("txn_plain", "transaction", 0),
];

/// What a client does before it goes quiet, and what must end it.
#[derive(Clone, Copy, Debug)]
enum Quiet {
    /// `select 1`, then nothing: client_idle_timeout, 57P05.
    Idle,
    /// `begin`, then nothing: idle_transaction_timeout, 25P03.
    InTransaction,
    /// Parse/Bind/Execute without Sync, then nothing: the client owes the next move while
    /// holding a server (idle_transaction_timeout, 25P03).
    Unsynced,
}

impl Quiet {
    fn code(self) -> &'static str {
        match self {
            Quiet::Idle => "57P05",
            Quiet::InTransaction | Quiet::Unsynced => "25P03",
        }
    }

    /// Does its part; returns when lakepool last heard from it or answered it.
    fn go_quiet(self, c: &mut RawConn) -> Instant {
        match self {
            Quiet::Idle => {
                assert_eq!(c.simple_query("select 1"), vec![Some("1".into())]);
            }
            Quiet::InTransaction => {
                c.simple_query("begin");
            }
            Quiet::Unsynced => {
                let mut m = wire::parse("", "select 1");
                m.extend_from_slice(&wire::bind("", "", &[]));
                m.extend_from_slice(&wire::execute(""));
                c.send(&m).expect("send Parse/Bind/Execute");
            }
        }
        Instant::now()
    }
}

fn start() -> Lakepool {
    let mut config = fixtures::config(&Opts {
        // Session mode: every client of a pool holds a server at once.
        size: 8,
        pool_extra: &format!("client_idle_timeout = {LIMIT}\nidle_transaction_timeout = {LIMIT}\n"),
        ..Opts::default()
    });
    for (name, mode, statements) in POOLS {
        config.push_str(&database_toml(
            name,
            APP_DB,
            APP_OWNER.0,
            OWNER_PW_ENV,
            "verify-full",
        ));
        config.push_str(&format!(
            "pool_mode = \"{mode}\"\nmax_prepared_statements = {statements}\n"
        ));
    }
    Lakepool::start(&config, &[(OWNER_PW_ENV, APP_OWNER.1)])
}

/// One cell of the matrix: what went wrong, or None.
fn cell(port: u16, db: &str, tls: bool, quiet: Quiet) -> Option<String> {
    let mut c = RawConn::login_with(port, tls, MD5_USER.0, MD5_USER.1, db, &[]);
    let since = quiet.go_quiet(&mut c);
    c.set_read_timeout(Duration::from_secs_f64(LIMIT + SLACK + 5.0));
    let first = c.read_msg();
    let after = since.elapsed().as_secs_f64();
    let err = match first {
        Reply::Msg(m) if m.tag == b'E' => m,
        other => return Some(format!("got {other:?} after {after:.1} s")),
    };
    let mut problems = Vec::new();
    if err.sqlstate().as_deref() != Some(quiet.code())
        || err.field(b'S').as_deref() != Some("FATAL")
    {
        problems.push(format!("error {:?}", err.fields()));
    }
    if !(LIMIT - 0.5..=LIMIT + SLACK).contains(&after) {
        problems.push(format!("fired after {after:.1} s"));
    }
    match c.read_msg() {
        Reply::Closed => {}
        other => problems.push(format!("not closed after the error: {other:?}")),
    }
    (!problems.is_empty()).then(|| problems.join("; "))
}

#[test]
fn idle_timeouts_fire_for_every_transport_mapping_and_mode() {
    let lp = start();
    let port = lp.port();
    let mut cases = Vec::new();
    for (db, _, _) in POOLS {
        for tls in [false, true] {
            for quiet in [Quiet::Idle, Quiet::InTransaction, Quiet::Unsynced] {
                cases.push((db, tls, quiet));
            }
        }
    }
    let failures: Vec<String> = thread::scope(|s| {
        let handles: Vec<_> = cases
            .iter()
            .map(|&(db, tls, quiet)| {
                let h = s.spawn(move || cell(port, db, tls, quiet));
                (db, tls, quiet, h)
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|(db, tls, quiet, h)| {
                let what = format!("{db} {} {quiet:?}", if tls { "TLS" } else { "plain" });
                match h.join() {
                    Ok(None) => None,
                    Ok(Some(problem)) => Some(format!("{what}: {problem}")),
                    Err(_) => Some(format!("{what}: panicked")),
                }
            })
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} of {} combinations failed:\n{}\n--- lakepool log ---\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n"),
        lp.logs()
    );
}
