//! What `/metrics` and the admin console read: one pass over the live pools, clients and
//! credentials, taken per scrape or command (allocates there, never on the data path).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::config::PoolMode;
use crate::credentials::status::RefreshStatus;
use crate::pool::Pool;
use crate::pool::stats::PoolStats;
use crate::shared::Shared;
use crate::shared::clients::ClientState;

/// One (database, user) pool.
#[derive(Debug)]
pub(crate) struct PoolSample {
    /// Database name clients use.
    pub(crate) database: String,
    /// Login name.
    pub(crate) user: String,
    /// Pooling mode.
    pub(crate) mode: PoolMode,
    /// Clients logged in to this pool and not waiting for a server.
    pub(crate) cl_active: usize,
    /// Clients waiting for a server.
    pub(crate) cl_waiting: usize,
    /// Longest current wait.
    pub(crate) maxwait: Duration,
    /// Server connections checked out (or being opened).
    pub(crate) sv_active: usize,
    /// Idle server connections.
    pub(crate) sv_idle: usize,
    /// PAUSEd.
    pub(crate) paused: bool,
    /// pool_size.
    pub(crate) size: usize,
    /// The counters (zero for a pool not used yet).
    pub(crate) stats: Arc<PoolStats>,
    /// The pool itself; None for a pool listed before its first use.
    pub(crate) pool: Option<Pool>,
}

/// One database's credential.
#[derive(Debug)]
pub(crate) struct CredentialSample {
    /// Database name clients use.
    pub(crate) database: String,
    /// `password`, `instance` or `endpoint`.
    pub(crate) kind: &'static str,
    /// Description (kind and identity, never the secret).
    pub(crate) describe: String,
    /// Expiry of the newest credential.
    pub(crate) expires_at: Option<SystemTime>,
    /// Whether a usable credential exists now.
    pub(crate) valid: bool,
    /// Refresh counters (rotating credentials).
    pub(crate) status: Option<RefreshStatus>,
}

impl CredentialSample {
    /// Seconds until expiry (negative once expired).
    pub(crate) fn seconds_left(&self) -> Option<f64> {
        let e = self.expires_at?;
        Some(match e.duration_since(SystemTime::now()) {
            Ok(d) => d.as_secs_f64(),
            Err(past) => -past.duration().as_secs_f64(),
        })
    }
}

/// Logged-in clients per (database, user): (not waiting, waiting, longest wait).
type ClientCounts = HashMap<(String, String), (usize, usize, Duration)>;

fn client_counts(fe: &Shared) -> ClientCounts {
    let mut clients: ClientCounts = HashMap::new();
    for c in fe.sessions.snapshot() {
        let e = clients
            .entry((c.database.to_string(), c.user.to_string()))
            .or_default();
        match c.state() {
            ClientState::Waiting => {
                e.1 += 1;
                e.2 = e.2.max(c.waiting_for().unwrap_or_default());
            }
            _ => e.0 += 1,
        }
    }
    clients
}

/// The pools, sorted by (database, user), with their client counts: those that exist now,
/// and, listed before their first use, the pool every configured user (admin-only logins
/// aside) would get on every database. Every database logs in upstream as one fixed role (its
/// `user`, or the workspace identity), so these pools are known from the configuration alone,
/// as PgBouncer lists a `force_user` database's pool before anyone uses it.
pub(crate) fn pools(fe: &Shared) -> Vec<PoolSample> {
    let clients = client_counts(fe);
    let live = fe.live();
    let mut out: Vec<PoolSample> = live
        .registry
        .pools()
        .into_iter()
        .map(|pool| {
            let (idle, total, _) = pool.counts();
            let key = (pool.database().to_owned(), pool.user().to_owned());
            let (cl_active, cl_waiting, maxwait) = clients.get(&key).copied().unwrap_or_default();
            PoolSample {
                database: key.0,
                user: key.1,
                mode: pool.settings().mode,
                cl_active,
                cl_waiting,
                maxwait,
                sv_active: total.saturating_sub(idle),
                sv_idle: idle,
                paused: pool.is_paused(),
                size: pool.settings().size,
                stats: Arc::clone(pool.stats()),
                pool: Some(pool),
            }
        })
        .collect();
    // Pass-through databases log in as each client's identity: no pool is known beforehand.
    for db in live
        .registry
        .databases()
        .filter(|d| d.passthrough.is_none())
    {
        for user in live.users.iter().filter(|u| !u.admin) {
            if out
                .iter()
                .any(|p| p.database == db.name && p.user == user.name)
            {
                continue;
            }
            let settings = live.registry.settings(db, &user.name);
            out.push(PoolSample {
                database: db.name.clone(),
                user: user.name.clone(),
                mode: settings.mode,
                cl_active: 0,
                cl_waiting: 0,
                maxwait: Duration::ZERO,
                sv_active: 0,
                sv_idle: 0,
                paused: live.registry.database_paused(&db.name),
                size: settings.size,
                stats: Arc::default(),
                pool: None,
            });
        }
    }
    out.sort_by(|a, b| (&a.database, &a.user).cmp(&(&b.database, &b.user)));
    out
}

/// Every configured database's credential, sorted by database.
pub(crate) fn credentials(fe: &Shared) -> Vec<CredentialSample> {
    let live = fe.live();
    let mut out: Vec<CredentialSample> = live
        .registry
        .databases()
        .map(|db| {
            let c = &db.upstream.credential;
            CredentialSample {
                database: db.name.clone(),
                kind: c.kind(),
                describe: c.describe(),
                expires_at: c.expiry(),
                // Pass-through: each identity has its own; the database needs none.
                valid: db.passthrough.is_some() || c.current().is_ok(),
                status: c.refresh_status(),
            }
        })
        .collect();
    out.sort_by(|a, b| a.database.cmp(&b.database));
    out
}

/// Process figures from `/proc/self` (Linux); None elsewhere.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ProcessSample {
    /// Resident set size.
    pub(crate) resident_bytes: Option<u64>,
    /// User + system CPU time.
    pub(crate) cpu_seconds: Option<f64>,
    /// Open file descriptors.
    pub(crate) open_fds: Option<u64>,
    /// Start time, seconds since the Unix epoch.
    pub(crate) start_time: Option<f64>,
}

/// Clock ticks per second of `/proc` times (USER_HZ, 100 on every Linux platform we run on).
const CLOCK_TICKS: f64 = 100.0;

/// Reads the process figures.
pub(crate) fn process() -> ProcessSample {
    let mut p = ProcessSample::default();
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        p.resident_bytes = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024);
    }
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // Fields after the parenthesised command name (which may contain spaces).
        if let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) {
            let f: Vec<&str> = rest.split_whitespace().collect();
            // rest[0] is field 3 (state): utime is field 14, stime 15, starttime 22.
            let field = |n: usize| f.get(n - 3).and_then(|v| v.parse::<u64>().ok());
            if let (Some(u), Some(s)) = (field(14), field(15)) {
                p.cpu_seconds = Some((u + s) as f64 / CLOCK_TICKS);
            }
            let btime = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("btime "))
                    .and_then(|v| v.trim().parse::<u64>().ok())
            });
            if let (Some(start), Some(boot)) = (field(22), btime) {
                p.start_time = Some(boot as f64 + start as f64 / CLOCK_TICKS);
            }
        }
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        p.open_fds = Some(dir.count() as u64);
    }
    p
}

/// Memory figures of the process from `/proc/self/status`, in kB: resident, data, virtual.
pub(crate) fn memory() -> Vec<(&'static str, u64)> {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return Vec::new();
    };
    let kb = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    };
    [
        ("resident", "VmRSS:"),
        ("data", "VmData:"),
        ("virtual", "VmSize:"),
    ]
    .into_iter()
    .filter_map(|(name, key)| Some((name, kb(key)?)))
    .collect()
}

/// A time as PgBouncer shows it (`2026-01-31 12:00:00 UTC`; lakepool always uses UTC).
pub(crate) fn pg_time(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let format =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|d| d.format(&format).ok())
        .unwrap_or_default()
}

/// A time as RFC 3339 (UTC, seconds), for the console.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_as_pgbouncer_and_rfc3339() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(pg_time(t), "2023-11-14 22:13:20 UTC");
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn memory_reads_proc() {
        let m = memory();
        if std::path::Path::new("/proc/self/status").exists() {
            let names: Vec<_> = m.iter().map(|(n, _)| *n).collect();
            assert_eq!(names, ["resident", "data", "virtual"]);
            assert!(m.iter().all(|(_, kb)| *kb > 0), "{m:?}");
        }
    }
}
