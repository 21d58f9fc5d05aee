//! What `/metrics` and the admin console read: one pass over the live pools, clients and
//! credentials, taken per scrape or command (allocates there, never on the data path).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::config::PoolMode;
use crate::credentials::status::RefreshStatus;
use crate::frontend::Frontend;
use crate::frontend::clients::ClientState;
use crate::pool::Pool;
use crate::pool::stats::PoolStats;

/// One (database, user) pool.
#[derive(Debug)]
pub struct PoolSample {
    /// Database name clients use.
    pub database: String,
    /// Login name.
    pub user: String,
    /// Pooling mode.
    pub mode: PoolMode,
    /// Clients logged in to this pool and not waiting for a server.
    pub cl_active: usize,
    /// Clients waiting for a server.
    pub cl_waiting: usize,
    /// Longest current wait.
    pub maxwait: Duration,
    /// Server connections checked out (or being opened).
    pub sv_active: usize,
    /// Idle server connections.
    pub sv_idle: usize,
    /// PAUSEd.
    pub paused: bool,
    /// pool_size.
    pub size: usize,
    /// The counters.
    pub stats: Arc<PoolStats>,
    /// The pool itself.
    pub pool: Pool,
}

/// One database's credential.
#[derive(Debug)]
pub struct CredentialSample {
    /// Database name clients use.
    pub database: String,
    /// `password`, `instance` or `endpoint`.
    pub kind: &'static str,
    /// Description (kind and identity, never the secret).
    pub describe: String,
    /// Expiry of the newest credential.
    pub expires_at: Option<SystemTime>,
    /// Whether a usable credential exists now.
    pub valid: bool,
    /// Refresh counters (rotating credentials).
    pub status: Option<RefreshStatus>,
}

impl CredentialSample {
    /// Seconds until expiry (negative once expired).
    pub fn seconds_left(&self) -> Option<f64> {
        let e = self.expires_at?;
        Some(match e.duration_since(SystemTime::now()) {
            Ok(d) => d.as_secs_f64(),
            Err(past) => -past.duration().as_secs_f64(),
        })
    }
}

/// The pools that exist now, sorted by (database, user), with their client counts.
pub fn pools(fe: &Frontend) -> Vec<PoolSample> {
    let mut clients: HashMap<(String, String), (usize, usize, Duration)> = HashMap::new();
    for c in fe.sessions.snapshot() {
        let e = clients
            .entry((c.database.clone(), c.user.clone()))
            .or_default();
        match c.state() {
            ClientState::Waiting => {
                e.1 += 1;
                e.2 = e.2.max(c.waiting_for().unwrap_or_default());
            }
            _ => e.0 += 1,
        }
    }
    let mut out: Vec<PoolSample> = fe
        .live()
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
                pool,
            }
        })
        .collect();
    out.sort_by(|a, b| (&a.database, &a.user).cmp(&(&b.database, &b.user)));
    out
}

/// Every configured database's credential, sorted by database.
pub fn credentials(fe: &Frontend) -> Vec<CredentialSample> {
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
                valid: c.current().is_ok(),
                status: c.refresh_status(),
            }
        })
        .collect();
    out.sort_by(|a, b| a.database.cmp(&b.database));
    out
}

/// Process figures from `/proc/self` (Linux); None elsewhere.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProcessSample {
    /// Resident set size.
    pub resident_bytes: Option<u64>,
    /// User + system CPU time.
    pub cpu_seconds: Option<f64>,
    /// Open file descriptors.
    pub open_fds: Option<u64>,
    /// Start time, seconds since the Unix epoch.
    pub start_time: Option<f64>,
}

/// Clock ticks per second of `/proc` times (USER_HZ, 100 on every Linux platform we run on).
const CLOCK_TICKS: f64 = 100.0;

/// Reads the process figures.
pub fn process() -> ProcessSample {
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

/// A time as RFC 3339 (UTC, seconds), for the console.
pub fn rfc3339(t: SystemTime) -> String {
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
