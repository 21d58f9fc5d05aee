//! PgBouncer compatibility of the admin console: the `pgbouncer` database name, PgBouncer
//! 1.25's columns (names and types, in its order) for each SHOW command PgBouncer has, pools
//! listed before their first use, SHOW STATS under a known pgbench load, and
//! prometheus-pgbouncer-exporter 2.1.2 (from PyPI, with psycopg2-binary; venv by
//! tests/compat/setup.sh) scraping lakepool: its metrics are there and agree with the load,
//! with SHOW STATS and with lakepool's own /metrics.

mod exporter;

use std::collections::BTreeMap;

use crate::fixtures::{self, APP, MD5_USER, OWNER_PW_ENV, Opts};
use crate::support::wire::{RawConn, frontend_msg};
use crate::support::{APP_OWNER, Lakepool, ok_stdout};

/// The console login; md5, so the raw-socket client can log in too.
const ADMIN: (&str, &str) = ("pgbadmin", "pgb_admin_pw");
const MAX_CLIENT_CONN: usize = 321;
const POOL_SIZE: usize = 4;

const TEXT: u32 = 25;
const INT4: u32 = 23;
const NUMERIC: u32 = 1700;

fn start() -> Lakepool {
    let opts = Opts {
        size: POOL_SIZE,
        server_extra: &format!(
            "admin_listen = \"127.0.0.1:0\"\nmax_client_conn = {MAX_CLIENT_CONN}"
        ),
        ..Opts::default()
    };
    let text = format!(
        "{}\n[[users]]\nname = \"{}\"\npassword = \"{}\"\nadmin = true\n",
        fixtures::config(&opts),
        ADMIN.0,
        ADMIN.1
    );
    Lakepool::start(&text, &[(OWNER_PW_ENV, APP_OWNER.1)])
}

/// PgBouncer 1.25's columns (src/admin.c, src/stats.c at the pgbouncer_1_25_0 tag): `s` text,
/// `i` int4, `N` numeric, `T` a time as text.
fn pgbouncer_columns(cmd: &str) -> Vec<(String, u32)> {
    let stats = |prefixed: bool, last_avg: bool| {
        let names = [
            "server_assignment_count",
            "xact_count",
            "query_count",
            if prefixed {
                "received"
            } else {
                "bytes_received"
            },
            if prefixed { "sent" } else { "bytes_sent" },
            "xact_time",
            "query_time",
            "wait_time",
            "client_parse_count",
            "server_parse_count",
            "bind_count",
        ];
        names
            .iter()
            .enumerate()
            .map(|(i, n)| match (prefixed, last_avg && i >= 8) {
                (true, _) => format!("total_{n}"),
                (false, true) => format!("avg_{n}"),
                (false, false) => (*n).to_owned(),
            })
            .collect::<Vec<_>>()
    };
    let (names, types): (Vec<String>, &str) = match cmd {
        "SHOW POOLS" => (
            words(
                "database user cl_active cl_waiting cl_active_cancel_req \
                   cl_waiting_cancel_req sv_active sv_active_cancel sv_being_canceled sv_idle \
                   sv_used sv_tested sv_login maxwait maxwait_us pool_mode load_balance_hosts",
            ),
            "ssiiiiiiiiiiiiiss",
        ),
        "SHOW DATABASES" => (
            words(
                "name host port database force_user pool_size min_pool_size \
                   reserve_pool_size server_lifetime pool_mode load_balance_hosts \
                   max_connections current_connections max_client_connections \
                   current_client_connections paused disabled",
            ),
            "ssissiiiissiiiiii",
        ),
        "SHOW USERS" => (
            words(
                "name pool_size reserve_pool_size pool_mode max_user_connections \
                   current_connections max_user_client_connections current_client_connections",
            ),
            "ssssiiii",
        ),
        "SHOW CLIENTS" | "SHOW SERVERS" => (
            words(
                "type user database replication state addr port local_addr local_port \
                   connect_time request_time wait wait_us close_needed ptr link remote_pid \
                   tls application_name prepared_statements id",
            ),
            "ssssssisiTTiiississii",
        ),
        "SHOW LISTS" => (words("list items"), "si"),
        "SHOW MEM" => (words("name size used free memtotal"), "siiii"),
        "SHOW CONFIG" => (words("key value default changeable"), "ssss"),
        "SHOW VERSION" => (words("version"), "s"),
        "SHOW STATS" => {
            let mut names = vec!["database".to_owned()];
            names.extend(stats(true, false));
            let avg = stats(false, false).into_iter().map(|n| match n.as_str() {
                "bytes_received" => "avg_recv".to_owned(),
                "bytes_sent" => "avg_sent".to_owned(),
                other => format!("avg_{other}"),
            });
            names.extend(avg);
            (names, "sNNNNNNNNNNNNNNNNNNNNNN")
        }
        "SHOW STATS_TOTALS" => {
            let mut names = vec!["database".to_owned()];
            names.extend(stats(false, false));
            (names, "sNNNNNNNNNNN")
        }
        "SHOW STATS_AVERAGES" => {
            let mut names = vec!["database".to_owned()];
            names.extend(stats(false, true));
            (names, "sNNNNNNNNNNN")
        }
        other => panic!("no PgBouncer columns for {other}"),
    };
    assert_eq!(names.len(), types.len(), "{cmd}");
    // The 'T' (time) and 'q' columns: PgBouncer sends times as text; its SHOW CLIENTS id is 'i'
    // (int4) while lakepool's ids are int8.
    names
        .into_iter()
        .zip(types.chars())
        .map(|(n, t)| {
            let oid = match t {
                's' | 'T' => TEXT,
                'i' => INT4,
                'N' => NUMERIC,
                other => panic!("type {other}"),
            };
            (n, oid)
        })
        .collect()
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_owned).collect()
}

/// A result: the RowDescription's (name, type oid), then the rows.
type RawResult = (Vec<(String, u32)>, Vec<Vec<Option<String>>>);

/// Runs `sql` on a raw connection.
fn query_raw(c: &mut RawConn, sql: &str) -> RawResult {
    let mut body = sql.as_bytes().to_vec();
    body.push(0);
    c.send(&frontend_msg(b'Q', &body)).expect("send Query");
    let (mut columns, mut rows) = (Vec::new(), Vec::new());
    loop {
        let m = c.expect_msg(sql);
        match m.tag {
            b'T' => columns = row_description(&m.body),
            b'D' => rows.push(data_row(&m.body)),
            b'E' => panic!("{sql}: {:?}", m.fields()),
            b'Z' => return (columns, rows),
            _ => {}
        }
    }
}

fn row_description(b: &[u8]) -> Vec<(String, u32)> {
    let n = u16::from_be_bytes([b[0], b[1]]) as usize;
    let mut at = 2;
    (0..n)
        .map(|_| {
            let end = at + b[at..].iter().position(|&x| x == 0).unwrap();
            let name = String::from_utf8_lossy(&b[at..end]).into_owned();
            at = end + 1;
            let oid = u32::from_be_bytes(b[at + 6..at + 10].try_into().unwrap());
            at += 18;
            (name, oid)
        })
        .collect()
}

fn data_row(b: &[u8]) -> Vec<Option<String>> {
    let n = u16::from_be_bytes([b[0], b[1]]) as usize;
    let mut at = 2;
    (0..n)
        .map(|_| {
            let len = i32::from_be_bytes(b[at..at + 4].try_into().unwrap());
            at += 4;
            usize::try_from(len).ok().map(|len| {
                let v = String::from_utf8_lossy(&b[at..at + len]).into_owned();
                at += len;
                v
            })
        })
        .collect()
}

/// Rows of a console command as column → value maps.
fn table(c: &mut RawConn, sql: &str) -> Vec<BTreeMap<String, Option<String>>> {
    let (columns, rows) = query_raw(c, sql);
    rows.into_iter()
        .map(|r| {
            columns
                .iter()
                .map(|(n, _)| n.clone())
                .zip(r)
                .collect::<BTreeMap<_, _>>()
        })
        .collect()
}

fn num(row: &BTreeMap<String, Option<String>>, col: &str) -> u64 {
    row[col]
        .as_deref()
        .unwrap_or_else(|| panic!("{col} is NULL"))
        .parse()
        .unwrap_or_else(|e| panic!("{col}: {e}"))
}

fn console(lp: &Lakepool) -> RawConn {
    RawConn::login_password(lp.port(), ADMIN.0, ADMIN.1, "pgbouncer")
}

/// Every SHOW command PgBouncer has answers on `dbname=pgbouncer` with PgBouncer 1.25's
/// columns first, in its order and with its types; lakepool's own columns come after.
#[test]
fn show_commands_have_pgbouncer_1_25_columns() {
    let lp = start();
    let app = crate::support::psql(lp.port(), APP.0, APP.1, "app", "disable", "select 1");
    ok_stdout("psql through lakepool", &app);
    let mut c = console(&lp);
    for cmd in [
        "SHOW POOLS",
        "SHOW DATABASES",
        "SHOW USERS",
        "SHOW CLIENTS",
        "SHOW SERVERS",
        "SHOW LISTS",
        "SHOW MEM",
        "SHOW CONFIG",
        "SHOW VERSION",
        "SHOW STATS",
        "SHOW STATS_TOTALS",
        "SHOW STATS_AVERAGES",
    ] {
        let want = pgbouncer_columns(cmd);
        let (got, rows) = query_raw(&mut c, cmd);
        let mut got_prefix: Vec<(String, u32)> = got.iter().take(want.len()).cloned().collect();
        if matches!(cmd, "SHOW CLIENTS" | "SHOW SERVERS") {
            // lakepool's connection ids are int8 (PgBouncer's int4 would wrap).
            assert_eq!(got_prefix.last().map(|c| c.1), Some(20), "{cmd}");
            got_prefix.last_mut().unwrap().1 = INT4;
        }
        assert_eq!(got_prefix, want, "{cmd}: columns");
        assert!(!rows.is_empty(), "{cmd}: no rows");
        if cmd == "SHOW STATS" {
            assert_eq!(want.len(), 23);
        }
    }
    // lakepool's own commands still answer there.
    let (_, creds) = query_raw(&mut c, "SHOW CREDENTIALS");
    assert_eq!(creds.len(), 1);
    let version = table(&mut c, "SHOW VERSION");
    assert!(
        version[0]["version"]
            .as_deref()
            .unwrap()
            .starts_with("lakepool "),
        "{version:?}"
    );
    // Lists count what there is: one database, five logins, the pools SHOW POOLS lists.
    let lists: BTreeMap<String, u64> = table(&mut c, "SHOW LISTS")
        .iter()
        .map(|r| (r["list"].clone().unwrap(), num(r, "items")))
        .collect();
    assert_eq!(lists["databases"], 1);
    assert_eq!(lists["users"], 5);
    assert_eq!(lists["pools"], table(&mut c, "SHOW POOLS").len() as u64);
    assert!(lists["used_clients"] >= 1, "{lists:?}");
    // SHOW USERS: the limits that apply, and the user's own keys (none set).
    let users = table(&mut c, "SHOW USERS");
    let app_user = users
        .iter()
        .find(|u| u["name"].as_deref() == Some(APP.0))
        .unwrap();
    assert_eq!(app_user["pool_size"].as_deref(), Some(""));
    assert_eq!(num(app_user, "max_user_connections"), 0);
    assert_eq!(num(app_user, "current_connections"), 1, "{users:?}");
    // SHOW CONFIG under PgBouncer's names, as its exporters read them.
    let config = table(&mut c, "SHOW CONFIG");
    let value = |k: &str| {
        config
            .iter()
            .find(|r| r["key"].as_deref() == Some(k))
            .and_then(|r| r["value"].clone())
            .unwrap_or_else(|| panic!("no {k} in SHOW CONFIG"))
    };
    assert_eq!(value("max_client_conn"), MAX_CLIENT_CONN.to_string());
    assert_eq!(value("default_pool_size"), POOL_SIZE.to_string());
    assert_eq!(value("pool_mode"), "transaction");
    assert_eq!(value("max_user_connections"), "0");
    c.terminate();
}

/// Pools are listed before anyone used them: every configured login (admins aside) on every
/// database, with zero counters, in SHOW POOLS, SHOW STATS and /metrics.
#[test]
fn pools_are_listed_before_first_use() {
    let lp = start();
    let mut c = console(&lp);
    let pools = table(&mut c, "SHOW POOLS");
    let listed: Vec<(String, String)> = pools
        .iter()
        .map(|p| (p["database"].clone().unwrap(), p["user"].clone().unwrap()))
        .collect();
    let want: Vec<(String, String)> = ["app", "clearuser", "md5user", "verifieruser"]
        .iter()
        .map(|u| ("app".to_owned(), (*u).to_owned()))
        .collect();
    assert_eq!(listed, want, "admin logins get no pool row");
    for p in &pools {
        assert_eq!(
            num(p, "cl_active") + num(p, "sv_active") + num(p, "sv_idle"),
            0
        );
        assert_eq!(num(p, "pool_size"), POOL_SIZE as u64);
    }
    let stats = table(&mut c, "SHOW STATS");
    assert_eq!(stats.len(), 1);
    assert_eq!(num(&stats[0], "total_xact_count"), 0);
    let (_, _, metrics) = lp.admin_get("/metrics");
    assert!(
        metrics.contains("lakepool_pool_size{database=\"app\",user=\"md5user\"} 4\n"),
        "{metrics}"
    );
    // The first use creates the pool the row stood for.
    let out = crate::support::psql(
        lp.port(),
        MD5_USER.0,
        MD5_USER.1,
        "app",
        "disable",
        "select 1",
    );
    ok_stdout("psql as md5user", &out);
    let pools = table(&mut c, "SHOW POOLS");
    let md5 = pools
        .iter()
        .find(|p| p["user"].as_deref() == Some(MD5_USER.0))
        .unwrap();
    assert_eq!(num(md5, "sv_idle"), 1, "{pools:?}");
    assert_eq!(pools.len(), 4);
}

/// A query's time runs from its request to its reply, waiting for a server included (as in
/// PgBouncer): a query held by PAUSE for at least 300 ms adds at least that much, in both the
/// mapped (named statements) and the plain transaction mode.
#[tokio::test]
async fn query_time_includes_waiting_for_a_server() {
    for extra in ["", "max_prepared_statements = 0"] {
        let opts = Opts {
            pool_extra: extra,
            server_extra: "admin_listen = \"127.0.0.1:0\"",
            ..Opts::default()
        };
        let text = format!(
            "{}\n[[users]]\nname = \"{}\"\npassword = \"{}\"\nadmin = true\n",
            fixtures::config(&opts),
            ADMIN.0,
            ADMIN.1
        );
        let lp = Lakepool::start(&text, &[(OWNER_PW_ENV, APP_OWNER.1)]);
        let port = lp.port();
        let admin = crate::support::connect(port, ADMIN.0, ADMIN.1, "pgbouncer", false)
            .await
            .unwrap();
        let app = crate::support::connect(port, APP.0, APP.1, "app", false)
            .await
            .unwrap();
        app.simple_query("select 1").await.unwrap();
        let query_time = |rows: Vec<tokio_postgres::SimpleQueryMessage>| {
            rows.iter()
                .find_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => {
                        r.get("total_query_time").map(|v| v.parse::<u64>().unwrap())
                    }
                    _ => None,
                })
                .unwrap()
        };
        let before = query_time(admin.simple_query("SHOW STATS").await.unwrap());
        admin.simple_query("PAUSE app").await.unwrap();
        let held = tokio::spawn(async move { app.simple_query("select 2").await.map(|_| ()) });
        // Once lakepool has read the query and holds it, wait 300 ms before RESUME.
        let waiting = || async {
            admin
                .simple_query("SHOW POOLS")
                .await
                .unwrap()
                .iter()
                .any(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => {
                        r.get("user") == Some(APP.0) && r.get("cl_waiting") == Some("1")
                    }
                    _ => false,
                })
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !waiting().await {
            assert!(
                std::time::Instant::now() < deadline,
                "the query never waited"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        admin.simple_query("RESUME app").await.unwrap();
        held.await.unwrap().unwrap();
        let after = query_time(admin.simple_query("SHOW STATS").await.unwrap());
        assert!(
            after - before >= 300_000,
            "{extra:?}: query time grew by {} µs only",
            after - before
        );
    }
}
