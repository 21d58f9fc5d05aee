//! `/metrics`: Prometheus text exposition format 0.0.4, rendered per scrape from a
//! [`snapshot`](super::snapshot). Names are prefixed `lakepool_` (process figures use the
//! standard `process_` names). Pool metrics carry `database` and `user` labels, credential
//! metrics `database`.

use std::fmt::Write as _;

use super::snapshot::{CredentialSample, PoolSample, ProcessSample};
use crate::pool::stats::{PoolStats, WAIT_BUCKETS, error_class_label};

/// Content-Type of the rendering.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Everything one scrape shows.
#[derive(Debug)]
pub(crate) struct Scrape {
    /// Pools.
    pub(crate) pools: Vec<PoolSample>,
    /// Credentials.
    pub(crate) credentials: Vec<CredentialSample>,
    /// Process figures.
    pub(crate) process: ProcessSample,
    /// Client connections open now (logging in or logged in).
    pub(crate) clients_connected: usize,
    /// Sessions ended since start, by reason (label, count).
    pub(crate) sessions_ended: Vec<(&'static str, u64)>,
}

/// A text exposition being written.
struct Out {
    s: String,
}

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.s, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.s, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.s.push_str(name);
        if !labels.is_empty() {
            self.s.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.s.push(',');
                }
                let _ = write!(self.s, "{k}=\"{}\"", escape_label(v));
            }
            self.s.push('}');
        }
        let _ = writeln!(self.s, " {}", fmt_value(value));
    }
}

/// Formats a sample value (integers without a fraction, `+Inf`/`-Inf`/`NaN` as the format
/// spells them).
fn fmt_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// Label value escaping: backslash, double quote and line feed.
pub(crate) fn escape_label(v: &str) -> String {
    let mut o = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => o.push_str("\\\\"),
            '"' => o.push_str("\\\""),
            '\n' => o.push_str("\\n"),
            c => o.push(c),
        }
    }
    o
}

/// HELP text escaping: backslash and line feed.
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// The wait-time histogram samples of one pool.
fn wait_histogram(o: &mut Out, database: &str, user: &str, stats: &PoolStats) {
    let (buckets, count) = stats.wait_histogram();
    let name = "lakepool_wait_seconds_bucket";
    for (i, le) in WAIT_BUCKETS.iter().enumerate() {
        let le = fmt_value(*le);
        let labels = [("database", database), ("user", user), ("le", &le)];
        o.sample(name, &labels, buckets[i] as f64);
    }
    let labels = [("database", database), ("user", user), ("le", "+Inf")];
    o.sample(name, &labels, count as f64);
    let labels = [("database", database), ("user", user)];
    let sum = stats.sum(|c| &c.wait_us) as f64 / 1e6;
    o.sample("lakepool_wait_seconds_sum", &labels, sum);
    o.sample("lakepool_wait_seconds_count", &labels, count as f64);
}

/// A per-pool counter's value.
type Count = fn(&PoolSample) -> f64;

/// The per-pool counters: name, help, value.
const COUNTERS: [(&str, &str, Count); 12] = [
    (
        "lakepool_transactions_total",
        "Transactions: ReadyForQuery replies with status idle sent to clients.",
        |p| p.stats.sum(|c| &c.xacts) as f64,
    ),
    (
        "lakepool_queries_total",
        "Queries: ReadyForQuery replies sent to clients (one per simple query or Sync).",
        |p| p.stats.sum(|c| &c.queries) as f64,
    ),
    (
        "lakepool_transaction_time_seconds_total",
        "Time spent in transactions, from the first request to the ReadyForQuery that ends it.",
        |p| p.stats.sum(|c| &c.xact_us) as f64 / 1e6,
    ),
    (
        "lakepool_query_time_seconds_total",
        "Time spent in queries, from a request to the ReadyForQuery that answers it.",
        |p| p.stats.sum(|c| &c.query_us) as f64 / 1e6,
    ),
    (
        "lakepool_client_bytes_received_total",
        "Bytes received from clients.",
        |p| p.stats.sum(|c| &c.received) as f64,
    ),
    (
        "lakepool_client_bytes_sent_total",
        "Bytes sent to clients from servers.",
        |p| p.stats.sum(|c| &c.sent) as f64,
    ),
    (
        "lakepool_server_connections_opened_total",
        "Server connections opened.",
        |p| p.stats.sum(|c| &c.servers_opened) as f64,
    ),
    (
        "lakepool_server_connections_closed_total",
        "Server connections closed or lost.",
        |p| p.stats.sum(|c| &c.servers_closed) as f64,
    ),
    (
        "lakepool_server_connect_failures_total",
        "Failed attempts to open a server connection (TCP, TLS, login refused, no credential).",
        |p| p.stats.sum(|c| &c.connect_failures) as f64,
    ),
    (
        "lakepool_client_parses_total",
        "Parse messages of named statements from clients (transaction mode, statement mapping).",
        |p| p.stats.sum(|c| &c.client_parses) as f64,
    ),
    (
        "lakepool_server_parses_total",
        "Parse messages sent to servers for clients' named statements.",
        |p| p.stats.sum(|c| &c.server_parses) as f64,
    ),
    (
        "lakepool_binds_total",
        "Bind messages of named statements (transaction mode, statement mapping).",
        |p| p.stats.sum(|c| &c.binds) as f64,
    ),
];

/// Renders a scrape.
pub(crate) fn render(scrape: &Scrape) -> String {
    let mut o = Out {
        s: String::with_capacity(4096 + scrape.pools.len() * 3072),
    };
    o.family("lakepool_info", "gauge", "lakepool build information.");
    o.sample(
        "lakepool_info",
        &[
            ("version", env!("CARGO_PKG_VERSION")),
            ("commit", crate::COMMIT),
        ],
        1.0,
    );
    o.family(
        "lakepool_clients_connected",
        "gauge",
        "Client connections open now (logging in or logged in, console included).",
    );
    o.sample(
        "lakepool_clients_connected",
        &[],
        scrape.clients_connected as f64,
    );
    o.family(
        "lakepool_client_sessions_ended_total",
        "counter",
        "Logged-in client sessions ended since start, by reason (client_terminated, client_closed, client_io, client_protocol, server, idle_transaction_timeout, client_idle_timeout, shutdown, error).",
    );
    for (reason, n) in &scrape.sessions_ended {
        o.sample(
            "lakepool_client_sessions_ended_total",
            &[("reason", reason)],
            *n as f64,
        );
    }

    pool_families(&mut o, scrape);
    credential_families(&mut o, scrape);
    process_families(&mut o, scrape);
    o.s
}

/// Per-pool gauges, the wait histogram, counters and errors by SQLSTATE class.
fn pool_families(o: &mut Out, scrape: &Scrape) {
    type Gauge = fn(&PoolSample) -> f64;
    let gauges: [(&str, &str, Gauge); 6] = [
        (
            "lakepool_clients_active",
            "Clients logged in to the pool and not waiting for a server connection.",
            |p| p.cl_active as f64,
        ),
        (
            "lakepool_clients_waiting",
            "Clients waiting for a server connection (queued, or paused).",
            |p| p.cl_waiting as f64,
        ),
        (
            "lakepool_servers_active",
            "Server connections checked out by clients (or being opened).",
            |p| p.sv_active as f64,
        ),
        (
            "lakepool_servers_idle",
            "Idle server connections in the pool.",
            |p| p.sv_idle as f64,
        ),
        (
            "lakepool_pool_size",
            "Configured pool_size of the pool.",
            |p| p.size as f64,
        ),
        (
            "lakepool_pool_paused",
            "1 while the pool is paused (admin console PAUSE).",
            |p| f64::from(u8::from(p.paused)),
        ),
    ];
    for (name, help, f) in gauges {
        o.family(name, "gauge", help);
        for p in &scrape.pools {
            o.sample(name, &[("database", &p.database), ("user", &p.user)], f(p));
        }
    }

    o.family(
        "lakepool_wait_seconds",
        "histogram",
        "Time clients waited for a server connection (successful checkouts).",
    );
    for p in &scrape.pools {
        wait_histogram(o, &p.database, &p.user, &p.stats);
    }

    for (name, help, f) in COUNTERS {
        o.family(name, "counter", help);
        for p in &scrape.pools {
            o.sample(name, &[("database", &p.database), ("user", &p.user)], f(p));
        }
    }

    o.family(
        "lakepool_errors_total",
        "counter",
        "Errors sent to clients (from servers, or lakepool's own when no server could be had), by SQLSTATE class.",
    );
    for p in &scrape.pools {
        for (i, n) in p.stats.errors().into_iter().enumerate() {
            if n > 0 {
                o.sample(
                    "lakepool_errors_total",
                    &[
                        ("database", &p.database),
                        ("user", &p.user),
                        ("class", error_class_label(i)),
                    ],
                    n as f64,
                );
            }
        }
    }
}

/// The upstream credentials: validity, expiry, refreshes and failures.
fn credential_families(o: &mut Out, scrape: &Scrape) {
    o.family(
        "lakepool_credential_valid",
        "gauge",
        "1 when the database's upstream credential is usable now.",
    );
    for c in &scrape.credentials {
        o.sample(
            "lakepool_credential_valid",
            &[("database", &c.database), ("source", c.kind)],
            f64::from(u8::from(c.valid)),
        );
    }
    o.family(
        "lakepool_credential_expiry_seconds",
        "gauge",
        "Seconds until the current rotating credential expires (negative once expired).",
    );
    for c in &scrape.credentials {
        if let Some(left) = c.seconds_left() {
            o.sample(
                "lakepool_credential_expiry_seconds",
                &[("database", &c.database)],
                left.floor(),
            );
        }
    }
    o.family(
        "lakepool_credential_refreshes_total",
        "counter",
        "Successful refreshes of the rotating credential.",
    );
    for c in &scrape.credentials {
        if let Some(st) = &c.status {
            o.sample(
                "lakepool_credential_refreshes_total",
                &[("database", &c.database)],
                st.refreshes as f64,
            );
        }
    }
    o.family(
        "lakepool_credential_refresh_failures_total",
        "counter",
        "Failed refresh attempts of the rotating credential.",
    );
    for c in &scrape.credentials {
        if let Some(st) = &c.status {
            o.sample(
                "lakepool_credential_refresh_failures_total",
                &[("database", &c.database)],
                st.failures as f64,
            );
        }
    }
    o.family(
        "lakepool_credential_last_error_info",
        "gauge",
        "Class of the last failed refresh (1 while one is recorded).",
    );
    for c in &scrape.credentials {
        if let Some(class) = c.status.as_ref().and_then(|s| s.last_error_class) {
            o.sample(
                "lakepool_credential_last_error_info",
                &[("database", &c.database), ("class", class)],
                1.0,
            );
        }
    }
}

/// The standard `process_*` metrics, those the platform can give.
fn process_families(o: &mut Out, scrape: &Scrape) {
    let p = &scrape.process;
    let process: [(&str, &str, &str, Option<f64>); 4] = [
        (
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            p.resident_bytes.map(|v| v as f64),
        ),
        (
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            p.cpu_seconds,
        ),
        (
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            p.open_fds.map(|v| v as f64),
        ),
        (
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            p.start_time,
        ),
    ];
    for (name, kind, help, v) in process {
        if let Some(v) = v {
            o.family(name, kind, help);
            o.sample(name, &[], v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(escape_label(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape_label("x\ny"), "x\\ny");
        assert_eq!(escape_help("a\\b\nc"), "a\\\\b\\nc");
        assert_eq!(fmt_value(3.0), "3");
        assert_eq!(fmt_value(0.5), "0.5");
        assert_eq!(fmt_value(f64::INFINITY), "+Inf");
    }

    #[test]
    fn renders_families_with_help_type_and_labels() {
        let scrape = Scrape {
            pools: Vec::new(),
            credentials: vec![CredentialSample {
                database: "d\"b".to_owned(),
                kind: "instance",
                describe: String::new(),
                expires_at: Some(
                    std::time::SystemTime::now() + std::time::Duration::from_secs(100),
                ),
                valid: true,
                status: Some(crate::credentials::status::RefreshStatus {
                    refreshes: 2,
                    failures: 1,
                    last_error_class: Some("http_5xx"),
                    ..Default::default()
                }),
            }],
            process: ProcessSample {
                resident_bytes: Some(1024),
                ..Default::default()
            },
            clients_connected: 3,
            sessions_ended: vec![("client_terminated", 7), ("shutdown", 0)],
        };
        let text = render(&scrape);
        assert!(
            text.contains(
                "# TYPE lakepool_clients_connected gauge\nlakepool_clients_connected 3\n"
            )
        );
        assert!(text.contains(
            "# TYPE lakepool_client_sessions_ended_total counter\nlakepool_client_sessions_ended_total{reason=\"client_terminated\"} 7\nlakepool_client_sessions_ended_total{reason=\"shutdown\"} 0\n"
        ));
        assert!(
            text.contains("lakepool_credential_refreshes_total{database=\"d\\\"b\"} 2\n"),
            "{text}"
        );
        assert!(text.contains(
            "lakepool_credential_last_error_info{database=\"d\\\"b\",class=\"http_5xx\"} 1\n"
        ));
        assert!(text.contains("# TYPE lakepool_wait_seconds histogram\n"));
        assert!(text.contains("process_resident_memory_bytes 1024\n"));
        assert!(
            !text.contains("process_open_fds"),
            "absent figures are left out"
        );
        let left = text
            .lines()
            .find(|l| l.starts_with("lakepool_credential_expiry_seconds{"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap();
        assert!((98.0..=100.0).contains(&left), "{left}");
        // Every sample line belongs to a family announced by HELP and TYPE before it.
        let mut typed = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                typed.insert(rest.split(' ').next().unwrap().to_owned());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                let base = name
                    .strip_suffix("_bucket")
                    .or_else(|| name.strip_suffix("_sum"))
                    .or_else(|| name.strip_suffix("_count"))
                    .filter(|b| typed.contains(*b))
                    .unwrap_or(name);
                assert!(typed.contains(base), "{line}");
            }
        }
    }

    #[test]
    fn pool_counters_are_rendered_in_seconds_and_counts() {
        let stats = std::sync::Arc::new(crate::pool::stats::PoolStats::default());
        stats
            .local()
            .query_us
            .store(2_500, std::sync::atomic::Ordering::Relaxed);
        stats
            .local()
            .xact_us
            .store(4_000_000, std::sync::atomic::Ordering::Relaxed);
        stats.record_bind();
        stats.record_connect_failure();
        let scrape = Scrape {
            pools: vec![PoolSample {
                database: "d".into(),
                user: "u".into(),
                mode: crate::config::PoolMode::Transaction,
                cl_active: 0,
                cl_waiting: 0,
                maxwait: std::time::Duration::ZERO,
                sv_active: 0,
                sv_idle: 0,
                paused: false,
                size: 5,
                stats,
                pool: None,
            }],
            credentials: Vec::new(),
            process: ProcessSample::default(),
            clients_connected: 0,
            sessions_ended: Vec::new(),
        };
        let text = render(&scrape);
        let labels = "{database=\"d\",user=\"u\"}";
        for line in [
            format!("lakepool_query_time_seconds_total{labels} 0.0025"),
            format!("lakepool_transaction_time_seconds_total{labels} 4"),
            format!("lakepool_binds_total{labels} 1"),
            format!("lakepool_server_connect_failures_total{labels} 1"),
            format!("lakepool_client_parses_total{labels} 0"),
            format!("lakepool_pool_size{labels} 5"),
        ] {
            assert!(
                text.contains(&format!("{line}\n")),
                "{line} missing:\n{text}"
            );
        }
    }

    #[test]
    fn pool_histogram_is_rendered() {
        let stats = std::sync::Arc::new(crate::pool::stats::PoolStats::default());
        stats.record_wait(std::time::Duration::from_millis(2));
        let mut o = Out { s: String::new() };
        wait_histogram(&mut o, "d", "u", &stats);
        let text = o.s;
        assert!(
            text.contains(
                "lakepool_wait_seconds_bucket{database=\"d\",user=\"u\",le=\"0.001\"} 0\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "lakepool_wait_seconds_bucket{database=\"d\",user=\"u\",le=\"0.005\"} 1\n"
            )
        );
        assert!(
            text.contains(
                "lakepool_wait_seconds_bucket{database=\"d\",user=\"u\",le=\"+Inf\"} 1\n"
            )
        );
        assert!(text.contains("lakepool_wait_seconds_count{database=\"d\",user=\"u\"} 1\n"));
        assert!(text.contains("lakepool_wait_seconds_sum{database=\"d\",user=\"u\"} 0.002\n"));
    }
}
