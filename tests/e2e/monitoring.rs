//! The monitoring assets under `config/` against the real `/metrics`: the Grafana dashboard is
//! well-formed JSON whose panels all query metrics lakepool exports (and parse as PromQL), and
//! the Prometheus alerting rules use only metrics lakepool exports. (`promtool check rules` and
//! `promtool test rules` on the alerting rules run in scripts/test.sh.)

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::fixtures::{self, OWNER_PW_ENV, Opts};
use crate::support::{APP_OWNER, Lakepool, scratch_dir};

const DASHBOARD: &str = "config/grafana/lakepool-dashboard.json";
const ALERTS: &str = "config/prometheus/lakepool-alerts.yml";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The metric families lakepool's /metrics announces (`# TYPE name kind`).
fn exported_families() -> BTreeSet<String> {
    let opts = Opts {
        server_extra: "admin_listen = \"127.0.0.1:0\"",
        ..Opts::default()
    };
    let lp = Lakepool::start(&fixtures::config(&opts), &[(OWNER_PW_ENV, APP_OWNER.1)]);
    let (status, _, body) = lp.admin_get("/metrics");
    assert_eq!(status, 200, "{body}");
    body.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_owned)
        .collect()
}

/// Names of lakepool's and the process metrics in a PromQL expression or a rules file.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let starts_word = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        let rest = &text[i..];
        if starts_word && (rest.starts_with("lakepool_") || rest.starts_with("process_")) {
            let len = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            names.insert(rest[..len].to_owned());
            i += len;
        } else {
            i += 1;
        }
    }
    names
}

/// The family a sample name belongs to (histogram series carry a suffix).
fn family_of<'a>(name: &'a str, families: &BTreeSet<String>) -> &'a str {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix)
            && families.contains(base)
        {
            return base;
        }
    }
    name
}

/// Every query target of the dashboard: (panel title, expr).
fn dashboard_queries(dashboard: &serde_json::Value) -> Vec<(String, String)> {
    let panels = dashboard["panels"].as_array().expect("panels is an array");
    assert!(!panels.is_empty(), "no panels");
    let mut ids = BTreeSet::new();
    let mut out = Vec::new();
    for p in panels {
        let title = p["title"]
            .as_str()
            .expect("every panel has a title")
            .to_owned();
        let id = p["id"].as_u64().expect("every panel has a numeric id");
        assert!(ids.insert(id), "panel id {id} used twice");
        for key in ["x", "y", "w", "h"] {
            assert!(p["gridPos"][key].is_u64(), "{title}: gridPos.{key}");
        }
        if p["type"] == "row" {
            continue;
        }
        let targets = p["targets"]
            .as_array()
            .unwrap_or_else(|| panic!("{title}: no targets"));
        assert!(!targets.is_empty(), "{title}: no targets");
        for t in targets {
            let expr = t["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("{title}: target without expr"));
            assert!(!expr.trim().is_empty(), "{title}: empty expr");
            assert!(t["refId"].is_string(), "{title}: target without refId");
            out.push((title.clone(), expr.to_owned()));
        }
    }
    out
}

/// `promtool` on PATH, or a panic naming the package.
fn promtool() -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join("promtool"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("promtool not found: apt-get install -y prometheus (or run .ci/run)")
        })
}

#[test]
fn grafana_dashboard_queries_metrics_lakepool_exports() {
    let text = std::fs::read_to_string(repo().join(DASHBOARD)).expect("read the dashboard");
    let dashboard: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{DASHBOARD} is not JSON: {e}"));
    assert!(dashboard["title"].is_string() && dashboard["uid"].is_string());
    assert!(dashboard["schemaVersion"].is_u64());
    let queries = dashboard_queries(&dashboard);
    let families = exported_families();
    let mut used = BTreeSet::new();
    for (title, expr) in &queries {
        let names = metric_names(expr);
        assert!(
            !names.is_empty(),
            "{title}: {expr} queries no lakepool metric"
        );
        for name in names {
            let family = family_of(&name, &families);
            assert!(
                families.contains(family),
                "panel {title:?} queries {name}, which /metrics does not export; it exports {families:?}"
            );
            used.insert(family.to_owned());
        }
    }
    // Every panel's expression parses as PromQL: as recording rules (Grafana's variables
    // replaced by what they expand to), checked by promtool.
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, (_, expr)) in queries.iter().enumerate() {
        let expr = expr
            .replace("$__rate_interval", "5m")
            .replace("$instance", ".*")
            .replace("$database", ".*");
        rules.push_str(&format!(
            "      - record: dashboard:query_{i}\n        expr: {}\n",
            serde_json::to_string(&expr).unwrap()
        ));
    }
    let file = scratch_dir().join("dashboard-rules.yml");
    std::fs::write(&file, rules).unwrap();
    let out = Command::new(promtool())
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "a dashboard expression is not valid PromQL:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The dashboard covers the pool, traffic and credential families.
    for must in [
        "lakepool_clients_waiting",
        "lakepool_servers_active",
        "lakepool_pool_size",
        "lakepool_wait_seconds",
        "lakepool_transactions_total",
        "lakepool_query_time_seconds_total",
        "lakepool_credential_expiry_seconds",
        "lakepool_credential_refresh_failures_total",
        "lakepool_server_connect_failures_total",
    ] {
        assert!(used.contains(must), "the dashboard does not chart {must}");
    }
}

#[test]
fn alert_rules_use_metrics_lakepool_exports() {
    let text = std::fs::read_to_string(repo().join(ALERTS)).expect("read the alert rules");
    let families = exported_families();
    let names = metric_names(&text);
    assert!(names.len() >= 6, "{names:?}");
    for name in &names {
        assert!(
            families.contains(family_of(name, &families)),
            "{ALERTS} uses {name}, which /metrics does not export; it exports {families:?}"
        );
    }
    for alert in [
        "LakepoolCredentialExpiresSoon",
        "LakepoolCredentialRefreshFailing",
        "LakepoolClientsWaiting",
        "LakepoolPoolSaturated",
        "LakepoolServerLoginFailures",
    ] {
        assert!(
            text.contains(&format!("alert: {alert}\n")),
            "{alert} missing"
        );
    }
}

#[test]
fn metric_names_are_found_in_promql() {
    let names = metric_names(
        "sum(rate(lakepool_wait_seconds_bucket{database=~\"$database\"}[5m])) / \
         process_open_fds + my_lakepool_other",
    );
    let got: Vec<&str> = names.iter().map(String::as_str).collect();
    assert_eq!(got, ["lakepool_wait_seconds_bucket", "process_open_fds"]);
}
