//! `SHOW STATS`, `SHOW STATS_TOTALS` and `SHOW STATS_AVERAGES`: one row per configured
//! database (its pools added up), PgBouncer 1.25's columns in its order and units. Totals are
//! counts, bytes and microseconds since the pools were created (a pool rebuilt by a reload
//! starts from zero). Averages cover the window of [`PoolStats::delta`]: counts and bytes per
//! second, times in microseconds per transaction, query or server assignment.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::show::{NUMERIC, TEXT, Table, s};
use super::snapshot;
use crate::pool::stats::{Delta, PoolStats, Totals};
use crate::shared::Shared;

/// A database's pools added up.
#[derive(Debug, Default)]
struct DbStats {
    totals: Totals,
    averages: Totals,
    /// lakepool's own: longest wait (µs), servers opened and closed, errors, failed connects.
    max_wait_us: u64,
    opened: u64,
    closed: u64,
    errors: u64,
    connect_failures: u64,
}

/// Per second of `elapsed`, rounded down (0 for an empty window).
fn per_second(n: u64, elapsed: Duration) -> u64 {
    let us = elapsed.as_micros();
    if us == 0 {
        return 0;
    }
    u64::try_from(u128::from(n) * 1_000_000 / us).unwrap_or(u64::MAX)
}

/// Averages of a database from its pools' windows: rates add up pool by pool (each over its
/// own window), times are total time over total count.
fn averages(deltas: &[Delta]) -> Totals {
    let mut sum = Totals::default();
    let mut rates = Totals::default();
    for d in deltas {
        sum.add(&d.totals);
        let t = &d.totals;
        rates.add(&Totals {
            server_assignments: per_second(t.server_assignments, d.elapsed),
            xacts: per_second(t.xacts, d.elapsed),
            queries: per_second(t.queries, d.elapsed),
            received: per_second(t.received, d.elapsed),
            sent: per_second(t.sent, d.elapsed),
            client_parses: per_second(t.client_parses, d.elapsed),
            server_parses: per_second(t.server_parses, d.elapsed),
            binds: per_second(t.binds, d.elapsed),
            ..Totals::default()
        });
    }
    Totals {
        xact_us: sum.xact_us.checked_div(sum.xacts).unwrap_or(0),
        query_us: sum.query_us.checked_div(sum.queries).unwrap_or(0),
        wait_us: sum.wait_us.checked_div(sum.server_assignments).unwrap_or(0),
        ..rates
    }
}

/// Every configured database, sorted by name, with its pools' figures.
fn by_database(fe: &Shared) -> BTreeMap<String, DbStats> {
    let mut dbs: BTreeMap<String, (DbStats, Vec<Delta>)> = fe
        .live()
        .registry
        .databases()
        .map(|d| (d.name.clone(), Default::default()))
        .collect();
    let now = Instant::now();
    for p in snapshot::pools(fe) {
        let Some((db, deltas)) = dbs.get_mut(&p.database) else {
            continue;
        };
        let st: &PoolStats = &p.stats;
        db.totals.add(&st.totals());
        db.max_wait_us = db.max_wait_us.max(st.wait_max_us());
        db.opened += st.sum(|c| &c.servers_opened);
        db.closed += st.sum(|c| &c.servers_closed);
        db.errors += st.errors().iter().sum::<u64>();
        db.connect_failures += st.sum(|c| &c.connect_failures);
        if p.pool.is_some() {
            deltas.push(st.delta(now));
        }
    }
    dbs.into_iter()
        .map(|(name, (mut db, deltas))| {
            db.averages = averages(&deltas);
            (name, db)
        })
        .collect()
}

/// The eleven figures in PgBouncer's order.
fn figures(t: &Totals) -> [Option<String>; 11] {
    [
        s(t.server_assignments),
        s(t.xacts),
        s(t.queries),
        s(t.received),
        s(t.sent),
        s(t.xact_us),
        s(t.query_us),
        s(t.wait_us),
        s(t.client_parses),
        s(t.server_parses),
        s(t.binds),
    ]
}

fn with_database(columns: &[&'static str]) -> Table {
    let mut all = vec![("database", TEXT)];
    all.extend(columns.iter().map(|c| (*c, NUMERIC)));
    Table::new(&all)
}

/// SHOW STATS: totals, then averages (PgBouncer's 23 columns), then lakepool's own.
pub(crate) fn stats(fe: &Shared) -> Table {
    let mut t = with_database(&[
        "total_server_assignment_count",
        "total_xact_count",
        "total_query_count",
        "total_received",
        "total_sent",
        "total_xact_time",
        "total_query_time",
        "total_wait_time",
        "total_client_parse_count",
        "total_server_parse_count",
        "total_bind_count",
        "avg_server_assignment_count",
        "avg_xact_count",
        "avg_query_count",
        "avg_recv",
        "avg_sent",
        "avg_xact_time",
        "avg_query_time",
        "avg_wait_time",
        "avg_client_parse_count",
        "avg_server_parse_count",
        "avg_bind_count",
        // lakepool's own:
        "max_wait_time",
        "servers_opened",
        "servers_closed",
        "errors",
        "server_connect_failures",
    ]);
    for (name, db) in by_database(fe) {
        let mut row = vec![s(name)];
        row.extend(figures(&db.totals));
        row.extend(figures(&db.averages));
        row.extend([
            s(db.max_wait_us),
            s(db.opened),
            s(db.closed),
            s(db.errors),
            s(db.connect_failures),
        ]);
        t.row(row);
    }
    t
}

/// SHOW STATS_TOTALS.
pub(crate) fn totals(fe: &Shared) -> Table {
    let mut t = with_database(&[
        "server_assignment_count",
        "xact_count",
        "query_count",
        "bytes_received",
        "bytes_sent",
        "xact_time",
        "query_time",
        "wait_time",
        "client_parse_count",
        "server_parse_count",
        "bind_count",
    ]);
    for (name, db) in by_database(fe) {
        let mut row = vec![s(name)];
        row.extend(figures(&db.totals));
        t.row(row);
    }
    t
}

/// SHOW STATS_AVERAGES (PgBouncer's names, `avg_` on the last three only).
pub(crate) fn averages_table(fe: &Shared) -> Table {
    let mut t = with_database(&[
        "server_assignment_count",
        "xact_count",
        "query_count",
        "bytes_received",
        "bytes_sent",
        "xact_time",
        "query_time",
        "wait_time",
        "avg_client_parse_count",
        "avg_server_parse_count",
        "avg_bind_count",
    ]);
    for (name, db) in by_database(fe) {
        let mut row = vec![s(name)];
        row.extend(figures(&db.averages));
        t.row(row);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn averages_are_rates_and_times_per_event() {
        let secs = Duration::from_secs;
        let pool = |xacts, xact_us, received, elapsed| Delta {
            totals: Totals {
                xacts,
                queries: xacts * 2,
                xact_us,
                query_us: xact_us,
                received,
                server_assignments: xacts,
                wait_us: xacts * 10,
                binds: xacts,
                ..Totals::default()
            },
            elapsed,
        };
        let avg = averages(&[
            pool(600, 6_000, 60_000, secs(60)),
            pool(30, 3_000, 0, secs(30)),
        ]);
        assert_eq!(avg.xacts, 10 + 1, "per second, each pool over its window");
        assert_eq!(avg.queries, 20 + 2);
        assert_eq!(avg.received, 1000);
        assert_eq!(avg.binds, 11);
        assert_eq!(avg.xact_us, 9_000 / 630, "µs per transaction");
        assert_eq!(avg.query_us, 9_000 / 1260, "µs per query");
        assert_eq!(avg.wait_us, 10, "µs per server assignment");
        // An empty window (the first look) averages to zero.
        assert_eq!(averages(&[pool(5, 5, 5, Duration::ZERO)]).xacts, 0);
        assert_eq!(averages(&[]), Totals::default());
    }
}
