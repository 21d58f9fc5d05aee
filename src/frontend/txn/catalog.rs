//! `pg_prepared_statements` as a client of a transaction-mode pool should see it: its own
//! prepared statements under its own names, not the server connection's `lakepool_<n>`
//! statements that every client of the pool shares.
//!
//! Each reference to the view in a simple query is replaced by a subquery over the server's
//! view that renames the client's mapped statements and leaves out the other `lakepool_`
//! ones. The row type stays the view's own (`jsonb_populate_record` over the view's row),
//! so the rewrite does not depend on the server version's columns.

use crate::proto::sql::prepared_statements_refs;
use crate::upstream::params::push_literal;
use crate::upstream::prepared::NAME_PREFIX;

/// `sql` with every reference to `pg_prepared_statements` replaced; `mapped` pairs the
/// client's statement names with their names on this server.
pub fn rewrite(sql: &str, mapped: &[(&[u8], &str)]) -> String {
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
