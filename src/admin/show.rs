//! The tables of the admin console's `SHOW` commands. Column names follow PgBouncer's where
//! the meaning is the same; numbers are `int8`, everything else `text`. No secret is ever
//! shown: passwords and tokens appear as `(set)` at most.

use std::time::{Duration, Instant, SystemTime};

use bytes::BytesMut;

use super::console::{COMMANDS, Show};
use super::snapshot::{self, rfc3339};
use crate::config::{PoolMode, PoolSettings};
use crate::frontend::Frontend;
use crate::proto::write;

const TEXT: u32 = 25;
const INT8: u32 = 20;

/// A result set.
#[derive(Debug, Default)]
pub struct Table {
    /// (name, type oid).
    pub columns: Vec<(&'static str, u32)>,
    /// Rows of text values (NULL as None).
    pub rows: Vec<Vec<Option<String>>>,
}

impl Table {
    fn new(columns: &[(&'static str, u32)]) -> Self {
        Self {
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    fn row(&mut self, values: Vec<Option<String>>) {
        debug_assert_eq!(values.len(), self.columns.len());
        self.rows.push(values);
    }

    /// Writes RowDescription and the DataRows.
    pub fn write(&self, buf: &mut BytesMut) {
        write::row_description(buf, &self.columns);
        for r in &self.rows {
            let vals: Vec<Option<&str>> = r.iter().map(|v| v.as_deref()).collect();
            write::data_row(buf, &vals);
        }
    }
}

fn s(v: impl ToString) -> Option<String> {
    Some(v.to_string())
}

fn mode(m: PoolMode) -> &'static str {
    match m {
        PoolMode::Session => "session",
        PoolMode::Transaction => "transaction",
    }
}

/// An `Instant` as wall-clock time.
fn wall(t: Instant) -> SystemTime {
    SystemTime::now()
        .checked_sub(t.elapsed())
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// Builds the table for `what`.
pub fn table(fe: &Frontend, what: Show) -> Table {
    match what {
        Show::Pools => pools(fe),
        Show::Clients => clients(fe),
        Show::Servers => servers(fe),
        Show::Stats => stats(fe),
        Show::Databases => databases(fe),
        Show::Config => config(fe),
        Show::Credentials => credentials(fe),
        Show::Help => {
            let mut t = Table::new(&[("command", TEXT)]);
            for c in COMMANDS {
                t.row(vec![s(c)]);
            }
            t
        }
        Show::Version => {
            let mut t = Table::new(&[("version", TEXT)]);
            t.row(vec![s(concat!("lakepool ", env!("CARGO_PKG_VERSION")))]);
            t
        }
    }
}

fn pools(fe: &Frontend) -> Table {
    let mut t = Table::new(&[
        ("database", TEXT),
        ("user", TEXT),
        ("cl_active", INT8),
        ("cl_waiting", INT8),
        ("sv_active", INT8),
        ("sv_idle", INT8),
        ("maxwait", INT8),
        ("maxwait_us", INT8),
        ("pool_mode", TEXT),
        ("pool_size", INT8),
        ("paused", TEXT),
    ]);
    for p in snapshot::pools(fe) {
        t.row(vec![
            s(&p.database),
            s(&p.user),
            s(p.cl_active),
            s(p.cl_waiting),
            s(p.sv_active),
            s(p.sv_idle),
            s(p.maxwait.as_secs()),
            s(p.maxwait.subsec_micros()),
            s(mode(p.mode)),
            s(p.size),
            s(if p.paused { "yes" } else { "no" }),
        ]);
    }
    t
}

fn clients(fe: &Frontend) -> Table {
    let mut t = Table::new(&[
        ("type", TEXT),
        ("user", TEXT),
        ("database", TEXT),
        ("state", TEXT),
        ("addr", TEXT),
        ("port", INT8),
        ("connect_time", TEXT),
        ("wait", INT8),
        ("wait_us", INT8),
        ("tls", TEXT),
        ("id", INT8),
    ]);
    for c in fe.sessions.snapshot() {
        let wait = c.waiting_for().unwrap_or(Duration::ZERO);
        t.row(vec![
            s("C"),
            s(&c.user),
            s(&c.database),
            s(c.state().as_str()),
            s(c.addr.ip()),
            s(c.addr.port()),
            s(rfc3339(c.connected_at)),
            s(wait.as_secs()),
            s(wait.subsec_micros()),
            s(if c.tls { "yes" } else { "no" }),
            s(c.id),
        ]);
    }
    t
}

/// Idle connections one row each (with their backend pid); connections in use are known to
/// the pool only as a count, so each pool with some gets one `active` row with that count.
fn servers(fe: &Frontend) -> Table {
    let mut t = Table::new(&[
        ("type", TEXT),
        ("user", TEXT),
        ("database", TEXT),
        ("state", TEXT),
        ("addr", TEXT),
        ("port", INT8),
        ("connect_time", TEXT),
        ("request_time", TEXT),
        ("backend_pid", INT8),
        ("id", INT8),
        ("count", INT8),
    ]);
    for p in snapshot::pools(fe) {
        let port = p.pool.upstream().port;
        for c in p.pool.idle_servers() {
            t.row(vec![
                s("S"),
                s(&p.user),
                s(&p.database),
                s("idle"),
                s(&c.host),
                s(port),
                s(rfc3339(wall(c.created))),
                s(rfc3339(wall(c.last_used))),
                s(c.backend_pid),
                s(c.id),
                s(1),
            ]);
        }
        if p.sv_active > 0 {
            t.row(vec![
                s("S"),
                s(&p.user),
                s(&p.database),
                s("active"),
                p.pool
                    .upstream()
                    .credential
                    .target()
                    .0
                    .map(|h| h.to_string()),
                s(port),
                None,
                None,
                None,
                None,
                s(p.sv_active),
            ]);
        }
    }
    t
}

fn stats(fe: &Frontend) -> Table {
    use std::sync::atomic::Ordering::Relaxed;
    let mut t = Table::new(&[
        ("database", TEXT),
        ("user", TEXT),
        ("total_xact_count", INT8),
        ("total_query_count", INT8),
        ("total_received", INT8),
        ("total_sent", INT8),
        ("total_wait_time", INT8),
        ("total_wait_count", INT8),
        ("avg_wait_time", INT8),
        ("max_wait_time", INT8),
        ("servers_opened", INT8),
        ("servers_closed", INT8),
        ("errors", INT8),
    ]);
    for p in snapshot::pools(fe) {
        let st = &p.stats;
        let wait_us = st.wait_us.load(Relaxed);
        let n = st.wait_count.load(Relaxed);
        let errors: u64 = st.errors.iter().map(|e| e.load(Relaxed)).sum();
        t.row(vec![
            s(&p.database),
            s(&p.user),
            s(st.xacts.load(Relaxed)),
            s(st.queries.load(Relaxed)),
            s(st.received.load(Relaxed)),
            s(st.sent.load(Relaxed)),
            s(wait_us),
            s(n),
            s(wait_us.checked_div(n).unwrap_or(0)),
            s(st.wait_max_us.load(Relaxed)),
            s(st.servers_opened.load(Relaxed)),
            s(st.servers_closed.load(Relaxed)),
            s(errors),
        ]);
    }
    t
}

fn databases(fe: &Frontend) -> Table {
    let mut t = Table::new(&[
        ("name", TEXT),
        ("host", TEXT),
        ("port", INT8),
        ("database", TEXT),
        ("force_user", TEXT),
        ("pool_size", INT8),
        ("min_pool_size", INT8),
        ("reserve_pool", INT8),
        ("pool_mode", TEXT),
        ("max_connections", INT8),
        ("current_connections", INT8),
        ("paused", TEXT),
        ("credential", TEXT),
    ]);
    let pools = snapshot::pools(fe);
    let live = fe.live();
    let mut dbs: Vec<_> = live.registry.databases().cloned().collect();
    dbs.sort_by(|a, b| a.name.cmp(&b.name));
    for d in dbs {
        let up = &d.upstream;
        let (host, user) = up.credential.target();
        let (host, user) = (host.map(|h| h.to_string()), user.map(|u| u.to_string()));
        let mine: Vec<_> = pools.iter().filter(|p| p.database == d.name).collect();
        let paused = !mine.is_empty() && mine.iter().all(|p| p.paused);
        let st = &d.settings;
        t.row(vec![
            s(&d.name),
            host,
            s(up.port),
            s(&up.dbname),
            user,
            s(st.size),
            s(st.min_pool_size),
            s(st.reserve_pool_size),
            s(mode(st.mode)),
            s(st.max_db_connections),
            s(live.registry.database_servers(&d.name)),
            s(if paused { "yes" } else { "no" }),
            s(up.credential.describe()),
        ]);
    }
    t
}

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

/// The running settings: `[server]` (changes need a restart), each database's pool settings
/// and each user's login (changes take effect on RELOAD). Passwords show as `(set)`.
fn config(fe: &Frontend) -> Table {
    let mut t = Table::new(&[
        ("key", TEXT),
        ("value", TEXT),
        ("default", TEXT),
        ("changeable", TEXT),
    ]);
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

fn credentials(fe: &Frontend) -> Table {
    let mut t = Table::new(&[
        ("database", TEXT),
        ("source", TEXT),
        ("identity", TEXT),
        ("host", TEXT),
        ("valid", TEXT),
        ("expires_at", TEXT),
        ("seconds_left", INT8),
        ("last_refresh", TEXT),
        ("refreshes", INT8),
        ("failures", INT8),
        ("last_error", TEXT),
        ("last_error_class", TEXT),
        ("description", TEXT),
    ]);
    let live = fe.live();
    for c in snapshot::credentials(fe) {
        let db = live.registry.database(&c.database);
        let st = c.status.clone().unwrap_or_default();
        let (host, identity) = db
            .map(|d| d.upstream.credential.target())
            .unwrap_or_default();
        let (host, identity) = (
            host.map(|h| h.to_string()).or(st.host.clone()),
            identity.map(|u| u.to_string()).or(st.identity.clone()),
        );
        t.row(vec![
            s(&c.database),
            s(c.kind),
            identity,
            host,
            s(if c.valid { "yes" } else { "no" }),
            c.expires_at.map(rfc3339),
            c.seconds_left().map(|v| (v.floor() as i64).to_string()),
            st.last_refresh.map(rfc3339),
            c.status.as_ref().map(|s| s.refreshes.to_string()),
            c.status.as_ref().map(|s| s.failures.to_string()),
            st.last_error.clone(),
            st.last_error_class.map(str::to_owned),
            s(&c.describe),
        ]);
    }
    t
}
