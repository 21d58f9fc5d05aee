//! The tables of the admin console's `SHOW` commands. Where PgBouncer 1.25 has the command,
//! the columns are its columns in its order, with its types (`int4`, `int8`, `numeric`, `text`)
//! and units (times in µs, durations in seconds), so PgBouncer's exporters and dashboards read
//! lakepool; lakepool's own columns follow them. What lakepool does not have (cancel-request
//! queues, peers, DNS caches, slab allocators) shows as 0, what it does not know per
//! connection (local address, application name of a client) as NULL. No secret is ever shown:
//! passwords and tokens appear as `(set)` at most.

use std::time::{Duration, Instant, SystemTime};

use bytes::BytesMut;

use super::console::{COMMANDS, Show};
use super::snapshot::{self, pg_time, rfc3339};
use crate::config::PoolMode;
use crate::proto::write;
use crate::shared::Shared;

pub(super) const TEXT: u32 = 25;
pub(super) const INT4: u32 = 23;
pub(super) const INT8: u32 = 20;
pub(super) const NUMERIC: u32 = 1700;

/// A result set.
#[derive(Debug, Default)]
pub(crate) struct Table {
    /// (name, type oid).
    pub(crate) columns: Vec<(&'static str, u32)>,
    /// Rows of text values (NULL as None).
    pub(crate) rows: Vec<Vec<Option<String>>>,
}

impl Table {
    pub(super) fn new(columns: &[(&'static str, u32)]) -> Self {
        Self {
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    pub(super) fn row(&mut self, values: Vec<Option<String>>) {
        debug_assert_eq!(values.len(), self.columns.len());
        self.rows.push(values);
    }

    /// Writes RowDescription and the DataRows.
    pub(crate) fn write(&self, buf: &mut BytesMut) {
        write::row_description(buf, &self.columns);
        for r in &self.rows {
            let vals: Vec<Option<&str>> = r.iter().map(|v| v.as_deref()).collect();
            write::data_row(buf, &vals);
        }
    }
}

pub(super) fn s(v: impl ToString) -> Option<String> {
    Some(v.to_string())
}

pub(super) fn mode(m: PoolMode) -> &'static str {
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
pub(crate) fn table(fe: &Shared, what: Show) -> Table {
    match what {
        Show::Pools => pools(fe),
        Show::Clients => clients(fe),
        Show::Servers => servers(fe),
        Show::Stats => super::show_stats::stats(fe),
        Show::StatsTotals => super::show_stats::totals(fe),
        Show::StatsAverages => super::show_stats::averages_table(fe),
        Show::Databases => databases(fe),
        Show::Users => users(fe),
        Show::Lists => lists(fe),
        Show::Mem => mem(),
        Show::Config => super::show_config::config(fe),
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
            t.row(vec![s(crate::VERSION_LINE)]);
            t
        }
    }
}

fn pools(fe: &Shared) -> Table {
    let mut t = Table::new(&[
        ("database", TEXT),
        ("user", TEXT),
        ("cl_active", INT4),
        ("cl_waiting", INT4),
        ("cl_active_cancel_req", INT4),
        ("cl_waiting_cancel_req", INT4),
        ("sv_active", INT4),
        ("sv_active_cancel", INT4),
        ("sv_being_canceled", INT4),
        ("sv_idle", INT4),
        ("sv_used", INT4),
        ("sv_tested", INT4),
        ("sv_login", INT4),
        ("maxwait", INT4),
        ("maxwait_us", INT4),
        ("pool_mode", TEXT),
        ("load_balance_hosts", TEXT),
        // lakepool's own:
        ("pool_size", INT4),
        ("paused", TEXT),
    ]);
    for p in snapshot::pools(fe) {
        t.row(vec![
            s(&p.database),
            s(&p.user),
            s(p.cl_active),
            s(p.cl_waiting),
            s(0),
            s(0),
            // Connections being opened count as active (lakepool does not tell them apart).
            s(p.sv_active),
            s(0),
            s(0),
            s(p.sv_idle),
            s(0),
            s(0),
            s(0),
            s(p.maxwait.as_secs()),
            s(p.maxwait.subsec_micros()),
            s(mode(p.mode)),
            None,
            s(p.size),
            s(if p.paused { "yes" } else { "no" }),
        ]);
    }
    t
}

/// PgBouncer's socket columns (SHOW CLIENTS and SHOW SERVERS).
const SOCKET_COLUMNS: [(&str, u32); 21] = [
    ("type", TEXT),
    ("user", TEXT),
    ("database", TEXT),
    ("replication", TEXT),
    ("state", TEXT),
    ("addr", TEXT),
    ("port", INT4),
    ("local_addr", TEXT),
    ("local_port", INT4),
    ("connect_time", TEXT),
    ("request_time", TEXT),
    ("wait", INT4),
    ("wait_us", INT4),
    ("close_needed", INT4),
    ("ptr", TEXT),
    ("link", TEXT),
    ("remote_pid", INT4),
    ("tls", TEXT),
    ("application_name", TEXT),
    ("prepared_statements", INT4),
    ("id", INT8),
];

/// One socket row; `ptr` is lakepool's id of the connection (`c<id>` for clients, `s<id>` for
/// servers), `link` is not tracked.
struct Socket<'a> {
    kind: &'static str,
    user: &'a str,
    database: &'a str,
    state: &'a str,
    addr: Option<String>,
    port: Option<u16>,
    connect_time: Option<SystemTime>,
    request_time: Option<SystemTime>,
    wait: Duration,
    remote_pid: Option<u32>,
    tls: Option<bool>,
    id: Option<u64>,
}

impl Socket<'_> {
    fn row(&self) -> Vec<Option<String>> {
        let prefix = if self.kind == "C" { "c" } else { "s" };
        vec![
            s(self.kind),
            s(self.user),
            s(self.database),
            s("none"),
            s(self.state),
            self.addr.clone(),
            self.port.map(|p| p.to_string()),
            None,
            None,
            self.connect_time.map(pg_time),
            self.request_time.map(pg_time),
            s(self.wait.as_secs()),
            s(self.wait.subsec_micros()),
            s(0),
            self.id.map(|id| format!("{prefix}{id}")),
            None,
            self.remote_pid.map(|p| p.to_string()),
            self.tls.map(|t| if t { "TLS" } else { "" }.to_owned()),
            None,
            None,
            self.id.map(|id| id.to_string()),
        ]
    }
}

fn clients(fe: &Shared) -> Table {
    let mut t = Table::new(&SOCKET_COLUMNS);
    for c in fe.sessions.snapshot() {
        let sock = Socket {
            kind: "C",
            user: &c.user,
            database: &c.database,
            state: c.state().as_str(),
            addr: Some(c.addr.host()),
            port: c.addr.port(),
            connect_time: Some(c.connected_at()),
            request_time: None,
            wait: c.waiting_for().unwrap_or(Duration::ZERO),
            remote_pid: Some(0),
            tls: Some(c.tls),
            id: Some(c.id),
        };
        t.row(sock.row());
    }
    t
}

/// Idle connections one row each (with their backend pid); connections in use are known to
/// the pool only as a count, so each gets a row with what the pool knows (no id or pid).
fn servers(fe: &Shared) -> Table {
    let mut t = Table::new(&SOCKET_COLUMNS);
    for p in snapshot::pools(fe) {
        let Some(pool) = &p.pool else { continue };
        let up = pool.upstream();
        let base = |state| Socket {
            kind: "S",
            user: &p.user,
            database: &p.database,
            state,
            addr: up.credential.target().0.map(|h| h.to_string()),
            port: Some(up.port),
            connect_time: None,
            request_time: None,
            wait: Duration::ZERO,
            remote_pid: None,
            tls: Some(up.tls.is_some()),
            id: None,
        };
        for _ in 0..p.sv_active {
            t.row(base("active").row());
        }
        for c in pool.idle_servers() {
            let sock = Socket {
                addr: s(&c.host),
                connect_time: Some(wall(c.created)),
                request_time: Some(wall(c.last_used)),
                remote_pid: Some(c.backend_pid),
                id: Some(c.id),
                ..base("idle")
            };
            t.row(sock.row());
        }
    }
    t
}

fn databases(fe: &Shared) -> Table {
    let mut t = Table::new(&[
        ("name", TEXT),
        ("host", TEXT),
        ("port", INT4),
        ("database", TEXT),
        ("force_user", TEXT),
        ("pool_size", INT4),
        ("min_pool_size", INT4),
        ("reserve_pool_size", INT4),
        ("server_lifetime", INT4),
        ("pool_mode", TEXT),
        ("load_balance_hosts", TEXT),
        ("max_connections", INT4),
        ("current_connections", INT4),
        ("max_client_connections", INT4),
        ("current_client_connections", INT4),
        ("paused", INT4),
        ("disabled", INT4),
        // lakepool's own:
        ("credential", TEXT),
    ]);
    let sessions = fe.sessions.snapshot();
    let live = fe.live();
    let mut dbs: Vec<_> = live.registry.databases().cloned().collect();
    dbs.sort_by(|a, b| a.name.cmp(&b.name));
    for d in dbs {
        let up = &d.upstream;
        let (host, user) = up.credential.target();
        let (host, user) = (host.map(|h| h.to_string()), user.map(|u| u.to_string()));
        let st = &d.settings;
        let clients = sessions.iter().filter(|c| *c.database == *d.name).count();
        t.row(vec![
            s(&d.name),
            host,
            s(up.port),
            s(&up.dbname),
            user,
            s(st.size),
            s(st.min_pool_size),
            s(st.reserve_pool_size),
            s(st.server_lifetime.as_secs()),
            s(mode(st.mode)),
            None,
            s(st.max_db_connections),
            s(live.registry.database_servers(&d.name)),
            s(st.max_db_client_connections),
            s(clients),
            s(u8::from(live.registry.database_paused(&d.name))),
            s(0),
            s(up.credential.describe()),
        ]);
    }
    t
}

/// Every configured login. `pool_size`, `reserve_pool_size` and `pool_mode` are the user's own
/// keys (empty or NULL when not set, as in PgBouncer); the limits are what applies to it.
fn users(fe: &Shared) -> Table {
    let mut t = Table::new(&[
        ("name", TEXT),
        ("pool_size", TEXT),
        ("reserve_pool_size", TEXT),
        ("pool_mode", TEXT),
        ("max_user_connections", INT4),
        ("current_connections", INT4),
        ("max_user_client_connections", INT4),
        ("current_client_connections", INT4),
    ]);
    let pools = snapshot::pools(fe);
    let sessions = fe.sessions.snapshot();
    let live = fe.live();
    let mut users: Vec<_> = live.users.iter().collect();
    users.sort_by(|a, b| a.name.cmp(&b.name));
    for u in users {
        let own = live.registry.user_overrides(&u.name);
        let applied = own.map_or_else(
            || live.pool_defaults.clone(),
            |o| o.apply(&live.pool_defaults),
        );
        let servers: usize = pools
            .iter()
            .filter(|p| p.user == u.name)
            .map(|p| p.sv_active + p.sv_idle)
            .sum();
        let clients = sessions
            .iter()
            .filter(|c| *c.user == *u.name && !crate::config::is_admin_database(&c.database))
            .count();
        t.row(vec![
            s(&u.name),
            s(own
                .and_then(|o| o.pool_size())
                .map(|v| v.to_string())
                .unwrap_or_default()),
            s(own
                .and_then(|o| o.reserve_pool_size())
                .map(|v| v.to_string())
                .unwrap_or_default()),
            own.and_then(|o| o.pool_mode()).map(|m| mode(m).to_owned()),
            s(applied.max_user_connections),
            s(servers),
            s(applied.max_user_client_connections),
            s(clients),
        ]);
    }
    t
}

/// PgBouncer's list sizes: lakepool's configured databases and users, pools (as SHOW POOLS
/// lists them), logged-in clients, connections still logging in, server connections.
fn lists(fe: &Shared) -> Table {
    let mut t = Table::new(&[("list", TEXT), ("items", INT4)]);
    let live = fe.live();
    let pools = snapshot::pools(fe);
    let logged_in = fe.sessions.len();
    let connections = fe.clients.load(std::sync::atomic::Ordering::Relaxed);
    let servers: usize = pools.iter().map(|p| p.sv_active + p.sv_idle).sum();
    let rows = [
        ("databases", live.registry.databases().count()),
        ("users", live.users.iter().count()),
        ("peers", 0),
        ("pools", pools.len()),
        ("peer_pools", 0),
        ("free_clients", 0),
        ("used_clients", logged_in),
        ("login_clients", connections.saturating_sub(logged_in)),
        ("free_servers", 0),
        ("used_servers", servers),
        ("dns_names", 0),
        ("dns_zones", 0),
        ("dns_queries", 0),
        ("dns_pending", 0),
    ];
    for (name, n) in rows {
        t.row(vec![s(name), s(n)]);
    }
    t
}

/// PgBouncer lists its slab allocators here; lakepool has none, so the rows are the process's
/// memory from `/proc/self/status` in kB units: `size` 1024, `used` the kB, `memtotal` bytes.
fn mem() -> Table {
    let mut t = Table::new(&[
        ("name", TEXT),
        ("size", INT4),
        ("used", INT4),
        ("free", INT4),
        ("memtotal", INT4),
    ]);
    for (name, kb) in snapshot::memory() {
        t.row(vec![s(name), s(1024), s(kb), s(0), s(kb * 1024)]);
    }
    t
}

fn credentials(fe: &Shared) -> Table {
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
