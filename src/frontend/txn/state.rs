//! Transaction mode: session state a client changes follows it to whatever server it gets next,
//! and never reaches another client.
//!
//! While a client holds a server, lakepool notes what its statements may have changed (the SQL
//! classifier: `SET`, `RESET`, `set_config`, `SET ROLE`, `SET SESSION AUTHORIZATION`, `SET SESSION
//! CHARACTERISTICS`, `DO`, `CALL`…; ParameterStatus from the server). When the transaction is
//! over, before the server goes back to the pool, one query reads back the resulting values
//! (the server knows what a `SET` produced, whether it was rolled back, what `DEFAULT` means)
//! and undoes what cannot follow a client (LISTEN, session advisory locks, held cursors,
//! temporary tables, SQL-level prepared statements). The values become the client's session
//! settings, which the next checkout applies to whatever server it gets, and the server's own
//! record of what is set on it, which the next client's checkout compares with its own.

use crate::upstream::params::{self, ParamMap, Readback, readback_sql};
use crate::upstream::server::{ControlError, ServerConn};

/// What a client's statements may have changed on its server since the last read back.
#[derive(Debug, Default)]
pub(crate) struct Changes {
    /// Parameters changed by name, with whether the last change was a `RESET`.
    named: Vec<(String, bool)>,
    /// Something changed session state without naming it (`RESET ALL`, `DO`, `CALL`, an
    /// unknown function, a `set_config` with a computed name, a query too large to inspect):
    /// read everything back.
    pub(crate) all: bool,
    /// `LISTEN`: `UNLISTEN *` before another client.
    pub(crate) unlisten: bool,
    /// Session-level advisory locks: released before another client.
    pub(crate) unlock: bool,
    /// Cursors `WITH HOLD`: closed before another client.
    pub(crate) close_cursors: bool,
    /// Temporary objects: dropped before another client.
    pub(crate) discard_temp: bool,
    /// Prepared statements created on the server in the client's own names (SQL `PREPARE`,
    /// and protocol-level ones when statement mapping is off): deallocated before another
    /// client.
    pub(crate) deallocate: Vec<String>,
}

impl Changes {
    /// Code ran that may have changed anything without naming it (a `DO` block, `CALL`, a
    /// function lakepool does not know): everything is read back, and what cannot follow a
    /// client is undone whether or not it happened (each is a no-op when nothing is there).
    pub(crate) fn opaque(&mut self) {
        self.all = true;
        self.unlisten = true;
        self.unlock = true;
        self.close_cursors = true;
        self.discard_temp = true;
    }

    /// Equal to a new one, capacity included.
    pub(crate) fn is_bare(&self) -> bool {
        self.is_empty() && self.named.capacity() == 0 && self.deallocate.capacity() == 0
    }

    /// Nothing noted.
    pub(crate) fn is_empty(&self) -> bool {
        self.named.is_empty()
            && !self.all
            && !self.unlisten
            && !self.unlock
            && !self.close_cursors
            && !self.discard_temp
            && self.deallocate.is_empty()
    }

    /// A parameter was set (or may have been).
    pub(crate) fn set(&mut self, name: &str) {
        self.note(name, false);
    }

    /// A parameter was reset.
    pub(crate) fn reset(&mut self, name: &str) {
        self.note(name, true);
    }

    fn note(&mut self, name: &str, reset: bool) {
        // The role and session authorization reset each other: read both back.
        let both = name == params::ROLE || name == params::SESSION_AUTHORIZATION;
        for n in [name, params::ROLE, params::SESSION_AUTHORIZATION] {
            if n != name && !both {
                continue;
            }
            match self.named.iter_mut().find(|(k, _)| k == n) {
                Some(e) => e.1 = reset && n == name,
                None => self.named.push((n.to_owned(), reset && n == name)),
            }
        }
    }

    /// A prepared statement the server must forget before another client.
    pub(crate) fn deallocate_later(&mut self, name: &str) {
        if !self.deallocate.iter().any(|n| n == name) {
            self.deallocate.push(name.to_owned());
        }
    }
}

/// A client's session as a direct connection would have it.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClientSettings {
    /// What the client asked for at startup (values as the server spells them once known):
    /// what a `RESET` returns to.
    pub(crate) startup: ParamMap,
    /// Every parameter that differs from a freshly logged-in server: the startup settings and
    /// the client's own changes.
    pub(crate) wanted: ParamMap,
}

impl ClientSettings {
    /// Settings for a client that asked for `startup`.
    pub(crate) fn new(startup: ParamMap) -> Self {
        Self {
            wanted: startup.clone(),
            startup,
        }
    }

    /// Adopts the server's spelling of a value lakepool just set for this client.
    /// The startup value follows only when it is the value that was set (a later `SET` of the
    /// same parameter must not become what `RESET` returns to).
    pub(crate) fn normalized(&mut self, name: &str, value: &str) {
        let set = self.wanted.get(name);
        if set.is_some() && self.startup.get(name) == set {
            self.startup.set(name, value);
        }
        self.wanted.set(name, value);
    }
}

/// The cleanup and read back after a transaction that changed session state. On error the
/// server's state is unknown and it must be closed.
pub(crate) async fn follow_changes(
    conn: &mut ServerConn,
    changes: &mut Changes,
    settings: &mut ClientSettings,
) -> Result<(), ControlError> {
    let changes = std::mem::take(changes);
    let mut names: Vec<String> = changes.named.iter().map(|(n, _)| n.clone()).collect();
    if changes.all {
        // pg_settings does not list the role, the session authorization or custom
        // placeholders: ask for those by name.
        for n in [params::ROLE, params::SESSION_AUTHORIZATION] {
            if !names.iter().any(|k| k == n) {
                names.push(n.to_owned());
            }
        }
        for (n, _) in settings.wanted.iter().chain(conn.session.settings.iter()) {
            if n.contains('.') && !names.iter().any(|k| k.eq_ignore_ascii_case(n)) {
                names.push(n.to_owned());
            }
        }
    }
    let mut sql = cleanup_sql(&changes);
    let reads = changes.all || !names.is_empty();
    if reads {
        sql.push_str(&readback_sql(if changes.all {
            Readback::All(&names)
        } else {
            Readback::Names(&names)
        }));
    }
    if sql.is_empty() {
        return Ok(());
    }
    let rows = conn.control_query_rows(&sql).await?;
    if !reads {
        return Ok(());
    }
    let values: Vec<(String, Option<String>)> = rows
        .into_iter()
        .filter_map(|r| {
            let mut r = r.into_iter();
            Some((r.next()??, r.next()?))
        })
        .collect();
    if changes.all {
        apply_all(conn, settings, values);
    } else {
        apply_named(conn, settings, &changes.named, values);
    }
    Ok(())
}

/// Statements that undo what cannot follow a client, ahead of the read back.
fn cleanup_sql(changes: &Changes) -> String {
    let mut sql = String::new();
    if changes.unlisten {
        sql.push_str("UNLISTEN *;");
    }
    if changes.unlock {
        sql.push_str("SELECT pg_catalog.pg_advisory_unlock_all();");
    }
    if changes.close_cursors {
        sql.push_str("CLOSE ALL;");
    }
    if changes.discard_temp {
        sql.push_str("DISCARD TEMP;");
    }
    if !changes.deallocate.is_empty() {
        // Only those that exist: a PREPARE may have failed, and DEALLOCATE of a missing name
        // is an error.
        sql.push_str(
            "DO $lakepool$ DECLARE n text; BEGIN FOR n IN SELECT name FROM \
             pg_catalog.pg_prepared_statements WHERE name = ANY (ARRAY[",
        );
        for (i, n) in changes.deallocate.iter().enumerate() {
            if i > 0 {
                sql.push(',');
            }
            params::push_literal(&mut sql, n);
        }
        sql.push_str(
            "]::text[]) LOOP EXECUTE pg_catalog.format('DEALLOCATE %I', n); END LOOP; END \
             $lakepool$;",
        );
    }
    sql
}

/// Everything set at session level was read back: that is now both the server's record and,
/// over the startup settings, the client's session.
fn apply_all(
    conn: &mut ServerConn,
    settings: &mut ClientSettings,
    values: Vec<(String, Option<String>)>,
) {
    let mut session = ParamMap::new();
    for (n, v) in values {
        if !params::unset(&n, v.as_deref(), &conn.session.login_user) && params::is_settable(&n) {
            session.set(&n, v.as_deref().unwrap_or_default());
        }
    }
    let mut wanted = settings.startup.clone();
    for (n, v) in session.iter() {
        wanted.set(n, v);
    }
    // A startup setting the client reset is back at the server's value: set again next time.
    conn.session.settings = session;
    settings.wanted = wanted;
}

/// The named parameters were read back. A `RESET` that took effect returns the parameter to
/// the client's startup value, which the next checkout applies (PostgreSQL resets to the value
/// from the startup packet; the server here was logged in without it).
fn apply_named(
    conn: &mut ServerConn,
    settings: &mut ClientSettings,
    named: &[(String, bool)],
    values: Vec<(String, Option<String>)>,
) {
    for (n, v) in values {
        if !params::is_settable(&n) {
            continue;
        }
        let was_reset = named.iter().any(|(k, r)| *r && k == &n);
        let before = settings.wanted.get(&n).map(str::to_owned);
        if params::unset(&n, v.as_deref(), &conn.session.login_user) {
            conn.session.settings.remove(&n);
            match settings.startup.get(&n).map(str::to_owned) {
                Some(s) => settings.wanted.set(&n, &s),
                None => {
                    settings.wanted.remove(&n);
                }
            }
            continue;
        }
        let v = v.unwrap_or_default();
        if was_reset && before.as_deref() != Some(v.as_str()) {
            // Reset (not rolled back): at the server's own value now.
            conn.session.settings.remove(&n);
            match settings.startup.get(&n).map(str::to_owned) {
                Some(s) => settings.wanted.set(&n, &s),
                None => {
                    settings.wanted.remove(&n);
                }
            }
            continue;
        }
        conn.session.settings.set(&n, &v);
        settings.wanted.set(&n, &v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_later_set_does_not_become_the_startup_value() {
        let mut startup = ParamMap::new();
        startup.set("work_mem", "8mb");
        let mut s = ClientSettings::new(startup);
        // The server's spelling of the startup value is adopted by both.
        s.normalized("work_mem", "8MB");
        assert_eq!(s.startup.get("work_mem"), Some("8MB"));
        // The client's own SET, applied to a server: RESET must still return to 8MB.
        s.wanted.set("work_mem", "64mb");
        s.normalized("work_mem", "64MB");
        assert_eq!(s.wanted.get("work_mem"), Some("64MB"));
        assert_eq!(s.startup.get("work_mem"), Some("8MB"));
    }

    #[test]
    fn role_and_session_authorization_are_read_back_together() {
        let mut c = Changes::default();
        c.set("role");
        assert_eq!(c.named.len(), 2);
        c.reset("work_mem");
        c.set("work_mem");
        assert_eq!(c.named.iter().filter(|(n, _)| n == "work_mem").count(), 1);
        assert!(!c.named.iter().any(|(_, r)| *r));
        c.reset("work_mem");
        assert!(c.named.iter().any(|(n, r)| n == "work_mem" && *r));
    }

    #[test]
    fn cleanup_undoes_what_cannot_follow() {
        let mut c = Changes {
            unlisten: true,
            unlock: true,
            close_cursors: true,
            discard_temp: true,
            ..Changes::default()
        };
        c.deallocate_later("p'1");
        let sql = cleanup_sql(&c);
        assert!(sql.starts_with(
            "UNLISTEN *;SELECT pg_catalog.pg_advisory_unlock_all();CLOSE ALL;DISCARD TEMP;DO"
        ));
        assert!(sql.contains("E'p''1'"));
        assert!(!c.is_empty());
        assert!(Changes::default().is_empty());
    }
}
