//! prometheus-pgbouncer-exporter 2.1.2 scraping lakepool under a known pgbench load.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

use super::{ADMIN, MAX_CLIENT_CONN, POOL_SIZE, console, num, start, table};
use crate::fixtures::APP;
use crate::support::{APP_DB, Lakepool, ok_stdout, pgbench, pgbench_init, scrub_pg_env};

/// `number of transactions actually processed: N/M` from pgbench.
fn processed(out: &str) -> u64 {
    out.lines()
        .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
        .and_then(|v| v.split('/').next())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no transaction count in pgbench output:\n{out}"))
}

/// Runs pgbench through lakepool; returns the transactions it processed.
fn run_pgbench(lp: &Lakepool, args: &[&str]) -> u64 {
    let out = pgbench(lp.port(), APP.0, APP.1, "app", args);
    processed(&ok_stdout("pgbench through lakepool", &out))
}

/// One scrape by prometheus-pgbouncer-exporter's collector: (name, labels, value) samples.
fn exporter_scrape(lp: &Lakepool) -> Vec<(String, BTreeMap<String, String>, f64)> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = repo.join("target/pgbouncer-exporter-venv/bin/python");
    assert!(
        python.is_file(),
        "{} missing: run tests/compat/setup.sh (needs python3-venv and PyPI)",
        python.display()
    );
    let dsn = format!(
        "postgresql://{}:{}@127.0.0.1:{}/pgbouncer?sslmode=disable",
        ADMIN.0,
        ADMIN.1,
        lp.port()
    );
    let mut cmd = Command::new(python);
    let out = scrub_pg_env(&mut cmd)
        .arg(repo.join("tests/compat/python/pgbouncer_exporter_scrape.py"))
        .env("EXPORTER_DSN", dsn)
        .stdin(Stdio::null())
        .output()
        .expect("run the exporter");
    let text = ok_stdout("prometheus-pgbouncer-exporter scrape", &out);
    if std::env::var_os("LAKEPOOL_TEST_ECHO").is_some() {
        eprintln!("{text}");
    }
    // The exporter logs failed queries at ERROR and reports pgbouncer_up 0.
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("Unable"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_exposition(&text)
}

fn parse_exposition(text: &str) -> Vec<(String, BTreeMap<String, String>, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split(',')
                .filter(|kv| !kv.is_empty())
                .map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap();
                    (k.to_owned(), v.trim_matches('"').to_owned())
                })
                .collect();
            (name.to_owned(), labels, value.parse().unwrap())
        })
        .collect()
}

/// The value of the sample `name` (with or without `_total`) whose labels include `labels`.
fn sample(
    samples: &[(String, BTreeMap<String, String>, f64)],
    name: &str,
    labels: &[(&str, &str)],
) -> f64 {
    samples
        .iter()
        .find(|(n, l, _)| {
            (n == name || *n == format!("{name}_total"))
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.2)
        .unwrap_or_else(|| panic!("no {name}{labels:?} in the exporter's output: {samples:?}"))
}

/// lakepool's own /metrics value of a per-pool counter, summed over the users of `app`.
fn lakepool_metric(lp: &Lakepool, name: &str) -> f64 {
    let (_, _, text) = lp.admin_get("/metrics");
    parse_exposition(&text)
        .iter()
        .filter(|(n, l, _)| n == name && l.get("database").map(String::as_str) == Some("app"))
        .map(|s| s.2)
        .sum()
}

/// prometheus-pgbouncer-exporter 2.1.2 scrapes lakepool as it scrapes PgBouncer: every metric
/// it exports is there, the counters moved by exactly what pgbench did (give or take pgbench's
/// own start-up statement), and they equal SHOW STATS and lakepool's /metrics.
#[test]
fn pgbouncer_exporter_scrapes_lakepool_under_known_load() {
    pgbench_init(APP_DB, 1);
    let lp = start();
    let before = exporter_scrape(&lp);
    assert_eq!(sample(&before, "pgbouncer_up", &[]), 1.0, "{before:?}");

    // Simple protocol: one statement, one query and one transaction each.
    let simple = run_pgbench(&lp, &["-n", "-S", "-c", "2", "-j", "2", "-t", "50"]);
    assert_eq!(simple, 100);
    // Prepared: each client prepares its statement once, then binds it per transaction.
    let prepared = run_pgbench(
        &lp,
        &[
            "-n", "-S", "-M", "prepared", "-c", "2", "-j", "2", "-t", "25",
        ],
    );
    assert_eq!(prepared, 50);

    let after = exporter_scrape(&lp);
    let db = [("database", "app")];
    let delta = |name: &str| sample(&after, name, &db) - sample(&before, name, &db);
    let xacts = delta("pgbouncer_stats_transactions_total");
    let queries = delta("pgbouncer_stats_queries_total");
    // pgbench runs two statements of its own per run (the scale and partitioning checks),
    // and a prepared client's Parse+Sync is a request of its own when a server answers it.
    let load = (simple + prepared) as f64;
    assert!(
        (load..=load + 6.0).contains(&xacts),
        "transactions {xacts}, load {load}"
    );
    assert!(
        (load..=load + 6.0).contains(&queries),
        "queries {queries}, load {load}"
    );
    assert!(delta("pgbouncer_stats_received_bytes") > 0.0);
    assert!(delta("pgbouncer_stats_sent_bytes") > 0.0);
    assert!(delta("pgbouncer_stats_queries_duration_microseconds") > 0.0);
    // A transaction spans its queries (and whatever the client did in between); a query's
    // time includes waiting for a server, as in PgBouncer.
    let query_time = delta("pgbouncer_stats_queries_duration_microseconds");
    assert!(delta("pgbouncer_stats_transactions_duration_microseconds") >= query_time);
    assert!(delta("pgbouncer_stats_waiting_duration_microseconds") >= 0.0);

    // The same numbers in SHOW STATS (nothing ran in between) and in lakepool's /metrics.
    let mut c = console(&lp);
    let stats = table(&mut c, "SHOW STATS");
    let row = &stats[0];
    for (metric, column) in [
        ("pgbouncer_stats_transactions_total", "total_xact_count"),
        ("pgbouncer_stats_queries_total", "total_query_count"),
        ("pgbouncer_stats_received_bytes", "total_received"),
        ("pgbouncer_stats_sent_bytes", "total_sent"),
        (
            "pgbouncer_stats_queries_duration_microseconds",
            "total_query_time",
        ),
        (
            "pgbouncer_stats_transactions_duration_microseconds",
            "total_xact_time",
        ),
        (
            "pgbouncer_stats_waiting_duration_microseconds",
            "total_wait_time",
        ),
    ] {
        assert_eq!(
            sample(&after, metric, &db),
            num(row, column) as f64,
            "{metric}"
        );
    }
    assert_eq!(
        sample(&after, "pgbouncer_stats_transactions_total", &db),
        lakepool_metric(&lp, "lakepool_transactions_total")
    );
    assert_eq!(
        sample(&after, "pgbouncer_stats_queries_duration_microseconds", &db) / 1e6,
        lakepool_metric(&lp, "lakepool_query_time_seconds_total")
    );
    // Statement mapping counted like PgBouncer's prepared statements: two clients' Parses,
    // one Bind per prepared transaction, at most one server Parse per server connection.
    assert_eq!(num(row, "total_client_parse_count"), 2, "{row:?}");
    assert_eq!(num(row, "total_bind_count"), 50, "{row:?}");
    let server_parses = num(row, "total_server_parse_count");
    assert!((1..=POOL_SIZE as u64).contains(&server_parses), "{row:?}");
    assert!(
        num(row, "total_server_assignment_count") >= load as u64,
        "{row:?}"
    );

    // Pools, databases and config as the exporter reads them.
    let pool = [("database", "app"), ("user", "app")];
    let pools = table(&mut c, "SHOW POOLS");
    let app_pool = pools
        .iter()
        .find(|p| p["user"].as_deref() == Some("app"))
        .unwrap();
    let idle = sample(&after, "pgbouncer_pools_server_idle_connections", &pool);
    assert_eq!(idle, num(app_pool, "sv_idle") as f64);
    assert!(
        (1.0..=POOL_SIZE as f64).contains(&idle),
        "idle servers {idle}"
    );
    assert_eq!(
        sample(&after, "pgbouncer_pools_client_active_connections", &pool),
        0.0
    );
    assert_eq!(
        sample(&after, "pgbouncer_pools_client_waiting_connections", &pool),
        0.0
    );
    assert_eq!(
        sample(&after, "pgbouncer_pools_client_maxwait_seconds", &pool),
        0.0
    );
    let backend = [("database", "app"), ("backend_database", APP_DB)];
    assert_eq!(
        sample(&after, "pgbouncer_databases_database_pool_size", &backend),
        POOL_SIZE as f64
    );
    assert_eq!(
        sample(
            &after,
            "pgbouncer_databases_database_current_connections",
            &backend
        ),
        idle
    );
    assert_eq!(
        sample(&after, "pgbouncer_config_max_client_conn", &[]),
        MAX_CLIENT_CONN as f64
    );
    assert_eq!(
        sample(&after, "pgbouncer_config_max_user_connections", &[]),
        0.0
    );
    assert_eq!(sample(&after, "pgbouncer_up", &[]), 1.0);
    c.terminate();
}
