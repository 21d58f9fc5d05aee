//! Transaction mode: parameters a client changed with SQL follow it to the next server.
//!
//! lakepool cannot know the value a `SET` produces without the server (list syntax, units,
//! `DEFAULT`, a transaction that rolled back), so after a transaction in which the client set
//! or reset parameters, it asks the server for the resulting values of the tracked ones and
//! records them as the client's settings; the untracked ones are reset so that they do not
//! leak to the next client. Parameters the server reports itself (ParameterStatus) are
//! already followed as they change.

use super::rewrite::{ClientSide, is_tracked};
use crate::upstream::params::ParamMap;
use crate::upstream::server::{ControlError, ServerConn};

fn push_literal(sql: &mut String, text: &str) {
    sql.push('\'');
    sql.push_str(&text.replace('\'', "''"));
    sql.push('\'');
}

/// Reads back what the client's last transaction did to its parameters. On error the server
/// must be closed.
pub async fn follow_settings(
    conn: &mut ServerConn,
    client: &mut ClientSide,
    settings: &mut ParamMap,
    extra: &[String],
) -> Result<(), ControlError> {
    let mut names = std::mem::take(&mut client.touched);
    if std::mem::take(&mut client.touched_all) {
        let applied = conn.params.iter().skip(conn.reported).map(|(k, _)| k);
        names.extend(
            applied
                .chain(settings.iter().map(|(k, _)| k))
                .map(str::to_owned),
        );
    }
    let reported = |n: &str| {
        conn.params
            .iter()
            .take(conn.reported)
            .any(|(k, _)| k.eq_ignore_ascii_case(n))
    };
    let mut read = Vec::new();
    let mut reset = Vec::new();
    for n in names {
        if reported(&n)
            || read
                .iter()
                .chain(&reset)
                .any(|r: &String| r.eq_ignore_ascii_case(&n))
        {
            continue;
        }
        if is_tracked(&n, extra) {
            read.push(n);
        } else {
            reset.push(n);
        }
    }
    let mut sql = String::new();
    for n in &read {
        sql.push_str(if sql.is_empty() { "SELECT " } else { ", " });
        sql.push_str("pg_catalog.current_setting(");
        push_literal(&mut sql, n);
        sql.push_str(", true)");
    }
    if !sql.is_empty() {
        sql.push(';');
    }
    for n in &reset {
        sql.push_str("RESET \"");
        sql.push_str(&n.replace('"', "\"\""));
        sql.push_str("\";");
    }
    if sql.is_empty() {
        return Ok(());
    }
    let row = conn.control_query_row(&sql).await?;
    for (n, v) in read.iter().zip(row) {
        if let Some(v) = v {
            settings.set(n, &v);
            conn.params.set(n, &v);
        }
    }
    Ok(())
}
