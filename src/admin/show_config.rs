//! `SHOW CONFIG`: `key`, `value`, `default`, `changeable` as in PgBouncer. First the settings
//! under PgBouncer's names (its exporters read `max_client_conn` and `max_user_connections`),
//! from `[server]` and `[pool]`; then lakepool's own keys: `server.*` (a restart changes them),
//! each database's pool settings and each user's login (a reload changes them). Durations are
//! in seconds; passwords show as `(set)`.

use std::time::Duration;

use super::show::{TEXT, Table, mode, s};
use crate::config::{PoolSettings, ServerConfig};
use crate::shared::Shared;

fn secs(d: Duration) -> String {
    format!("{}", d.as_secs_f64())
}

/// The pool keys of a settings set, as (key, value) text.
fn pool_rows(p: &PoolSettings) -> Vec<(&'static str, String)> {
    vec![
        ("pool_mode", mode(p.mode).to_owned()),
        ("pool_size", p.size.to_string()),
        ("min_pool_size", p.min_pool_size.to_string()),
        ("reserve_pool_size", p.reserve_pool_size.to_string()),
        ("reserve_pool_timeout", secs(p.reserve_pool_timeout)),
        ("max_db_connections", p.max_db_connections.to_string()),
        ("max_user_connections", p.max_user_connections.to_string()),
        (
            "max_db_client_connections",
            p.max_db_client_connections.to_string(),
        ),
        (
            "max_user_client_connections",
            p.max_user_client_connections.to_string(),
        ),
        ("server_lifetime", secs(p.server_lifetime)),
        ("server_idle_timeout", secs(p.server_idle_timeout)),
        ("server_connect_timeout", secs(p.server_connect_timeout)),
        ("server_login_retry", secs(p.server_login_retry)),
        ("server_check_delay", secs(p.server_check_delay)),
        ("server_check_query", p.server_check_query.clone()),
        ("server_reset_query", p.server_reset_query.clone()),
        ("query_wait_timeout", secs(p.query_wait_timeout)),
        ("client_idle_timeout", secs(p.client_idle_timeout)),
        ("idle_transaction_timeout", secs(p.idle_transaction_timeout)),
        (
            "max_prepared_statements",
            p.max_prepared_statements.to_string(),
        ),
        ("track_extra_parameters", p.track_extra_parameters.join(",")),
    ]
}

/// The settings under PgBouncer's names: (key, value, default, changeable).
fn pgbouncer_rows(sv: &ServerConfig, pool: &PoolSettings) -> Vec<[String; 4]> {
    let d = PoolSettings::default();
    let hosts: Vec<String> = sv.listen.iter().map(|a| a.ip().to_string()).collect();
    let port = sv
        .listen
        .first()
        .map(|a| a.port().to_string())
        .unwrap_or_default();
    let tls_mode = format!("{:?}", sv.client_tls).to_lowercase();
    let file = |f: Option<&std::path::Path>| f.map(|p| p.display().to_string()).unwrap_or_default();
    let restart =
        |k: &str, v: String, def: &str| [k.to_owned(), v, def.to_owned(), "no".to_owned()];
    let reload = |k: &str, v: String, def: String| [k.to_owned(), v, def, "yes".to_owned()];
    let mut rows = vec![
        restart("listen_addr", hosts.join(","), ""),
        restart("listen_port", port, ""),
        restart("unix_socket_dir", file(sv.unix_socket_dir.as_deref()), ""),
        restart(
            "unix_socket_mode",
            format!("0{:o}", sv.unix_socket_mode),
            "0777",
        ),
        restart("max_client_conn", sv.max_client_conn.to_string(), "5000"),
        restart("client_tls_sslmode", tls_mode, ""),
        restart(
            "client_tls_cert_file",
            file(sv.tls.as_ref().map(|t| t.cert_file.as_path())),
            "",
        ),
        restart(
            "client_tls_key_file",
            file(sv.tls.as_ref().map(|t| t.key_file.as_path())),
            "",
        ),
        restart(
            "max_packet_size",
            sv.max_message_size.to_string(),
            "1073741824",
        ),
    ];
    let p = pool_rows(pool);
    let defaults = pool_rows(&d);
    for ((k, v), (_, def)) in p.into_iter().zip(defaults) {
        // PgBouncer calls the pool size of a database without its own `default_pool_size`.
        let k = if k == "pool_size" {
            "default_pool_size"
        } else {
            k
        };
        rows.push(reload(k, v, def));
    }
    rows
}

/// The running settings: PgBouncer's names first, then lakepool's own keys.
// Long on purpose (about 110 lines): one row per setting, in SHOW CONFIG's order (PgBouncer's
// keys first); the list reads best as one table.
pub(crate) fn config(fe: &Shared) -> Table {
    let mut t = Table::new(&[
        ("key", TEXT),
        ("value", TEXT),
        ("default", TEXT),
        ("changeable", TEXT),
    ]);
    let live = fe.live();
    for row in pgbouncer_rows(&fe.server, &live.pool_defaults) {
        t.row(row.into_iter().map(Some).collect());
    }
    drop(live);
    let sv = &fe.server;
    let listen: Vec<String> = sv.listen.iter().map(ToString::to_string).collect();
    let server: Vec<(&str, String, Option<&str>)> = vec![
        ("listen", listen.join(","), None),
        (
            "admin_listen",
            sv.admin_listen.map(|a| a.to_string()).unwrap_or_default(),
            Some(""),
        ),
        (
            "client_tls",
            format!("{:?}", sv.client_tls).to_lowercase(),
            None,
        ),
        (
            "tls_cert_file",
            sv.tls
                .as_ref()
                .map(|t| t.cert_file.display().to_string())
                .unwrap_or_default(),
            Some(""),
        ),
        (
            "tls_key_file",
            sv.tls
                .as_ref()
                .map(|t| t.key_file.display().to_string())
                .unwrap_or_default(),
            Some(""),
        ),
        ("workers", sv.workers.to_string(), None),
        ("max_client_conn", sv.max_client_conn.to_string(), None),
        ("handshake_timeout", secs(sv.handshake_timeout), None),
        ("tcp_defer_accept", secs(sv.tcp_defer_accept), None),
        (
            "allow_cleartext_without_tls",
            sv.allow_cleartext_without_tls.to_string(),
            Some("false"),
        ),
        ("max_message_size", sv.max_message_size.to_string(), None),
        ("shutdown_timeout", secs(sv.shutdown_timeout), None),
        (
            "log_format",
            format!("{:?}", sv.log_format).to_lowercase(),
            None,
        ),
    ];
    for (k, v, d) in server {
        t.row(vec![
            s(format!("server.{k}")),
            s(v),
            d.map(str::to_owned),
            s("no"),
        ]);
    }
    let defaults = pool_rows(&PoolSettings::default());
    let live = fe.live();
    let mut dbs: Vec<_> = live.registry.databases().cloned().collect();
    dbs.sort_by(|a, b| a.name.cmp(&b.name));
    for d in dbs {
        for ((k, v), (_, def)) in pool_rows(&d.settings).into_iter().zip(&defaults) {
            t.row(vec![
                s(format!("databases.{}.{k}", d.name)),
                s(v),
                s(def),
                s("yes"),
            ]);
        }
        t.row(vec![
            s(format!("databases.{}.auth", d.name)),
            s(format!("{:?}", live.users.method_for(&d.name))),
            None,
            s("yes"),
        ]);
        t.row(vec![
            s(format!("databases.{}.credential", d.name)),
            s(d.upstream.credential.describe()),
            None,
            s("yes"),
        ]);
    }
    let mut users: Vec<_> = live.users.iter().collect();
    users.sort_by(|a, b| a.name.cmp(&b.name));
    for u in users {
        let rows = [
            ("password", "(set)".to_owned(), None),
            ("admin", u.admin.to_string(), Some("false")),
        ];
        for (k, v, def) in rows {
            t.row(vec![
                s(format!("users.{}.{k}", u.name)),
                s(v),
                def.map(str::to_owned),
                s("yes"),
            ]);
        }
    }
    t
}
