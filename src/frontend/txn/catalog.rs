//! `pg_prepared_statements` as a client of a transaction-mode pool should see it: its own
//! prepared statements under its own names, not the server connection's `lakepool_<n>`
//! statements that every client of the pool shares.
//!
//! Each reference to the view in a simple query is replaced by a subquery over the server's
//! view that renames the client's mapped statements and leaves out the other `lakepool_`
//! ones. The row type stays the view's own (`jsonb_populate_record` over the view's row),
//! so the rewrite does not depend on the server version's columns. Before the rewritten query
//! the client's statements are prepared on the server, so the view shows all of them.

use std::sync::Arc;

use super::client::{Step, expect_for};
use super::replies::Expect;
use super::statements::ensure_prepared;
use super::{Attached, TxnClient};
use crate::frontend::pipe::Pipe;
use crate::frontend::tracker::Tracker;
use crate::proto::frame::{HEADER_LEN, Header, split_cstr};
use crate::proto::frontend;
use crate::proto::sql::prepared_statements_refs;
use crate::upstream::params::push_literal;
use crate::upstream::prepared::{NAME_PREFIX, Statement};

/// `sql` with every reference to `pg_prepared_statements` replaced; `mapped` pairs the
/// client's statement names with their names on this server.
pub(super) fn rewrite(sql: &str, mapped: &[(&[u8], &str)]) -> String {
    let refs = prepared_statements_refs(sql);
    let mut out = String::with_capacity(sql.len() + 512);
    let mut at = 0;
    for r in refs {
        out.push_str(&sql[at..r.range.start]);
        out.push('(');
        out.push_str(&view(mapped));
        out.push(')');
        if !r.aliased {
            out.push_str(" AS pg_prepared_statements");
        }
        at = r.range.end;
    }
    out.push_str(&sql[at..]);
    out
}

fn view(mapped: &[(&[u8], &str)]) -> String {
    let mut v = String::new();
    if !mapped.is_empty() {
        v.push_str(
            "SELECT (pg_catalog.jsonb_populate_record(p, pg_catalog.jsonb_build_object('name', m.c))).* \
             FROM pg_catalog.pg_prepared_statements p JOIN (VALUES ",
        );
        for (i, (client, server)) in mapped.iter().enumerate() {
            if i > 0 {
                v.push_str(", ");
            }
            v.push('(');
            push_literal(&mut v, server);
            v.push_str("::text, ");
            push_literal(&mut v, &String::from_utf8_lossy(client));
            v.push_str("::text)");
        }
        v.push_str(") AS m(s, c) ON p.name = m.s UNION ALL ");
    }
    v.push_str("SELECT p.* FROM pg_catalog.pg_prepared_statements p WHERE p.name NOT LIKE ");
    push_literal(&mut v, &format!("{}%", NAME_PREFIX.replace('_', "\\_")));
    v
}

impl TxnClient {
    /// The client's names mapped on this server, for `pg_prepared_statements`.
    pub(super) fn mapped_names<'s>(&'s self, at: &Attached<'_>) -> Vec<(&'s [u8], &'s str)> {
        let mut v: Vec<_> = self
            .statements
            .iter()
            .filter(|(_, s)| at.cache.contains(s))
            .map(|(n, s)| (n, &*s.name))
            .collect();
        v.sort_unstable();
        v
    }

    /// Prepares every statement of the client on this server (up to its cache size), so that
    /// a look at `pg_prepared_statements` shows all of them.
    pub(super) fn ensure_all_prepared(
        &mut self,
        up: &mut Pipe,
        at: &mut Attached<'_>,
        t: &mut Tracker,
    ) {
        let mut all: Vec<Arc<Statement>> =
            self.statements.iter().map(|(_, s)| Arc::clone(s)).collect();
        all.sort_unstable_by_key(|s| s.id);
        let missing: Vec<_> = all
            .iter()
            .take(at.limits.cache_cap)
            .filter(|s| !at.cache.contains(s))
            .cloned()
            .collect();
        // Inside the client's own unsynced exchange nothing is prepared: a Sync of lakepool's
        // would end that exchange (and hide its error), and without one a failed Parse would
        // make the server skip the client's query. Nor inside a transaction block (or with
        // earlier queries of the client unanswered, which may open one; lakepool's own owed
        // Closes and PREPAREs just sent do not): a failed Parse would abort the client's
        // transaction with the cause hidden. The view then shows the client's statements
        // this server has.
        if missing.is_empty()
            || t.unsynced
            || t.status != b'I'
            || t.pending > at.queue.own_ready_owed()
        {
            return;
        }
        for s in &missing {
            ensure_prepared(s, up, at, t);
        }
        // A simple query right after Parse messages would be skipped if one failed: close the
        // extended exchange with a Sync of lakepool's own.
        frontend::sync(up.emit());
        at.queue.push(Expect::OwnSync);
        t.client_sent(b'S');
    }

    /// An unnamed statement that reads `pg_prepared_statements`: rewritten, as a simple query
    /// is, for the client's names on this server. (A named one would keep one moment's names
    /// for every later execution; it goes to the server as it is.)
    pub(super) fn parse_catalog_query(
        &mut self,
        h: Header,
        up: &mut Pipe,
        at: &mut Attached<'_>,
        t: &mut Tracker,
    ) -> Step {
        let parts = {
            let msg = up.whole(h).unwrap_or_default();
            let rest = &msg[HEADER_LEN + 1..];
            split_cstr(rest).and_then(|(text, types)| {
                Some((std::str::from_utf8(text).ok()?.to_owned(), types.to_vec()))
            })
        };
        let Some((text, types)) = parts else {
            return self.pass(h, up, at, t);
        };
        if !t.unsynced {
            // First of its batch: the client's SQL-level statements go ahead of it as their
            // own simple queries (not within the batch's implicit transaction).
            let names: Vec<String> = self
                .sql_prepared
                .keys()
                .filter(|n| !self.sql_on_server.contains(n))
                .cloned()
                .collect();
            self.prepare_sql_first(&names, up, at, t);
        }
        self.ensure_all_prepared(up, at, t);
        let sql = rewrite(&text, &self.mapped_names(at));
        up.consume(h);
        let mut rest = Vec::with_capacity(sql.len() + 1 + types.len());
        rest.extend_from_slice(sql.as_bytes());
        rest.push(0);
        rest.extend_from_slice(&types);
        frontend::parse(up.emit(), b"", &rest);
        expect_for(b'P', at);
        t.client_sent(b'P');
        Step::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_replaced_and_aliases_kept() {
        let sql = "select name from pg_prepared_statements where from_sql = false";
        let out = rewrite(sql, &[(b"_pg3_0", "lakepool_7")]);
        assert!(out.starts_with("select name from (SELECT"), "{out}");
        assert!(out.contains("AS pg_prepared_statements where from_sql = false"));
        assert!(out.contains("E'lakepool_7'::text, E'_pg3_0'::text"));
        let aliased = rewrite("SELECT * FROM pg_catalog.pg_prepared_statements ps", &[]);
        assert!(aliased.ends_with(") ps"), "{aliased}");
        assert!(aliased.contains("NOT LIKE E'lakepool\\\\_%'"), "{aliased}");
        let untouched = "select 'pg_prepared_statements'";
        assert_eq!(rewrite(untouched, &[]), untouched);
    }
}
