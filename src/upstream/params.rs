//! Session parameters (GUCs) as a client wants them and as a server connection has them.
//!
//! A pooled server connection is shared by clients that may have asked for different
//! `application_name`, `client_encoding`, `DateStyle`, `TimeZone`… at startup. Before a client
//! uses a server, lakepool sends one `SET` batch for just the values that differ, so each client
//! sees the session it asked for; servers usually already match and nothing is sent.

/// Name/value pairs with PostgreSQL's case-insensitive names, with a hash of the contents kept
/// up to date on each change (maps are small and change rarely; the hash lets a checkout see in
/// three compares that nothing needs setting, see [`SyncKey`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ParamMap {
    entries: Vec<(String, String)>,
    /// Hash of `entries` (0 when empty).
    hash: u64,
}

impl ParamMap {
    /// An empty map.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Value of `name`, compared case-insensitively.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Sets `name` (keeping the existing spelling of the name if present).
    pub(crate) fn set(&mut self, name: &str, value: &str) {
        if self.put(name, value) {
            self.rehash();
        }
    }

    /// Sets `name` without updating the hash: for filling a map in one go, then
    /// [`Self::rehash`] once (rehashing after each of n entries would hash n² of them).
    /// True when the value changed.
    fn put(&mut self, name: &str, value: &str) -> bool {
        match self
            .entries
            .iter_mut()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
        {
            Some((_, v)) => {
                if v == value {
                    return false;
                }
                value.clone_into(v);
            }
            None => self.entries.push((name.to_owned(), value.to_owned())),
        }
        true
    }

    /// Removes `name`; true when it was there.
    pub(crate) fn remove(&mut self, name: &str) -> bool {
        let before = self.entries.len();
        self.entries.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        let removed = self.entries.len() != before;
        if removed {
            self.rehash();
        }
        removed
    }

    /// Entries in insertion order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Whether there are no entries.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of entries.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The contents' hash: equal maps (same entries in the same order, names compared
    /// case-insensitively) have equal hashes.
    pub(crate) fn content_hash(&self) -> u64 {
        self.hash
    }

    fn rehash(&mut self) {
        use std::hash::Hasher;
        if self.entries.is_empty() {
            self.hash = 0;
            return;
        }
        let mut h = std::collections::hash_map::DefaultHasher::new();
        for (k, v) in &self.entries {
            for b in k.bytes() {
                h.write_u8(b.to_ascii_lowercase());
            }
            h.write_u8(0xff);
            h.write(v.as_bytes());
            h.write_u8(0xff);
        }
        self.hash = h.finish().max(1);
    }
}

/// What [`sync_plan`] was last given for a server connection when it found (or left) nothing
/// to set: the hashes of the client's wanted settings, the server's session settings and the
/// server's reported parameters. The same three again mean the same answer, without the plan.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct SyncKey([u64; 3]);

impl SyncKey {
    /// The key of these three inputs of [`sync_plan`].
    pub(crate) fn of(want: &ParamMap, have: &ParamMap, reported: &ParamMap) -> Self {
        Self([
            want.content_hash(),
            have.content_hash(),
            reported.content_hash(),
        ])
    }
}

/// How a pool's servers spell values clients give at startup (`client_encoding=utf-8` is
/// `UTF8`): learned when lakepool sets them, so a client logging in without a server is told
/// the server's own spelling, as a direct connection would tell it.
#[derive(Debug, Default)]
pub(crate) struct Spellings {
    map: parking_lot::Mutex<SpellingMap>,
}

/// Spellings by name (lower case), then by the value as clients send it. Nested, so a lookup
/// borrows its keys: a login looks up each of its startup settings.
#[derive(Debug, Default)]
struct SpellingMap {
    by_name: std::collections::HashMap<Box<str>, std::collections::HashMap<Box<str>, Box<str>>>,
    /// Pairs held, at most [`MAX_SPELLINGS`].
    len: usize,
}

/// Most spellings remembered per pool (distinct name/value pairs clients used).
const MAX_SPELLINGS: usize = 1024;

impl Spellings {
    /// `f` of the server's spelling of `value` for `name`, if known. Allocates nothing unless
    /// `name` has upper-case letters.
    pub(crate) fn with<R>(&self, name: &str, value: &str, f: impl FnOnce(&str) -> R) -> Option<R> {
        let lower;
        let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            lower = name.to_ascii_lowercase();
            lower.as_str()
        } else {
            name
        };
        let map = self.map.lock();
        map.by_name.get(name)?.get(value).map(|s| f(s))
    }

    /// Records that the server stores `value` for `name` as `spelled`.
    pub(crate) fn learn(&self, name: &str, value: &str, spelled: &str) {
        let mut map = self.map.lock();
        let map = &mut *map;
        let values = match map.by_name.get_mut(&*name.to_ascii_lowercase()) {
            Some(values) => values,
            None if map.len < MAX_SPELLINGS => map
                .by_name
                .entry(name.to_ascii_lowercase().into())
                .or_default(),
            None => return,
        };
        if let Some(known) = values.get_mut(value) {
            *known = spelled.into();
        } else if map.len < MAX_SPELLINGS {
            values.insert(value.into(), spelled.into());
            map.len += 1;
        }
    }
}

/// Why a startup parameter was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum ParamError {
    /// Replication connections cannot be pooled.
    #[error("replication connections are not supported by lakepool")]
    Replication,
    /// `options` contained something other than `-c name=value` switches.
    #[error("unsupported startup option {0:?}: only -c name=value is supported")]
    UnsupportedOption(String),
    /// A name with characters a GUC name cannot have.
    #[error("invalid parameter name {0:?}")]
    BadName(String),
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
}

/// The settings a client asked for at startup: ordinary parameters plus `-c` switches inside
/// `options`. Protocol extensions (`_pq_.*`) are skipped; the caller negotiates those.
pub(crate) fn client_settings(params: &[(String, String)]) -> Result<ParamMap, ParamError> {
    let mut out = ParamMap::new();
    for (name, value) in params {
        // user and database are connection metadata, not settings to SET.
        if name.starts_with("_pq_.") || matches!(name.as_str(), "user" | "database") {
            continue;
        }
        match name.as_str() {
            "replication" => {
                if !matches!(value.as_str(), "false" | "off" | "no" | "0") {
                    return Err(ParamError::Replication);
                }
            }
            "options" => parse_options(value, &mut out)?,
            _ => {
                if !valid_name(name) {
                    return Err(ParamError::BadName(name.clone()));
                }
                out.put(name, value);
            }
        }
    }
    out.rehash();
    Ok(out)
}

/// Parses `-c name=value` / `--name=value` switches (backslash escapes spaces, as libpq does).
fn parse_options(options: &str, out: &mut ParamMap) -> Result<(), ParamError> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut chars = options.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            c if c.is_ascii_whitespace() => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    let mut it = words.into_iter();
    while let Some(w) = it.next() {
        let setting = if w == "-c" {
            it.next()
                .ok_or_else(|| ParamError::UnsupportedOption(w.clone()))?
        } else if let Some(rest) = w.strip_prefix("-c") {
            rest.to_owned()
        } else if let Some(rest) = w.strip_prefix("--") {
            rest.to_owned()
        } else {
            return Err(ParamError::UnsupportedOption(w));
        };
        let (name, value) = setting
            .split_once('=')
            .ok_or_else(|| ParamError::UnsupportedOption(setting.clone()))?;
        // `-c` names may use dashes for underscores, as in postgres' own command line.
        let name = name.replace('-', "_");
        if !valid_name(&name) {
            return Err(ParamError::BadName(name));
        }
        out.put(&name, value);
    }
    Ok(())
}

/// Parameters settable only through their own commands, with their own reset forms; they are
/// restored last (and reset first) because they change what the other settings may do.
pub(crate) const ROLE: &str = "role";
/// See [`ROLE`].
pub(crate) const SESSION_AUTHORIZATION: &str = "session_authorization";

/// Parameters the server reports (ParameterStatus) that no client can set: they follow the
/// server or other settings (`is_superuser` follows the role), so they are never restored.
const NOT_SETTABLE: [&str; 6] = [
    "server_version",
    "server_encoding",
    "integer_datetimes",
    "in_hot_standby",
    "is_superuser",
    "scram_iterations",
];

/// Whether a reported parameter is one a session can set (and so must follow its client).
pub(crate) fn is_settable(name: &str) -> bool {
    !NOT_SETTABLE.iter().any(|n| n.eq_ignore_ascii_case(name))
}

/// Appends `text` as an escaped string literal (`E'...'`): correct whatever
/// `standard_conforming_strings` is.
pub(crate) fn push_literal(sql: &mut String, text: &str) {
    sql.push_str("E'");
    for c in text.chars() {
        match c {
            '\'' => sql.push_str("''"),
            '\\' => sql.push_str("\\\\"),
            c => sql.push(c),
        }
    }
    sql.push('\'');
}

/// Appends `name` as a quoted identifier.
pub(crate) fn push_ident(sql: &mut String, name: &str) {
    sql.push('"');
    sql.push_str(&name.replace('"', "\"\""));
    sql.push('"');
}

/// The SQL lakepool runs before a client uses a server whose session-level settings (`have`)
/// differ from what the client's session has (`want`), and what its rows mean.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct SyncPlan {
    /// One simple query (several statements).
    pub(crate) sql: String,
    /// For each row the query returns, in order, the parameters its columns are the new values
    /// of (`set_config` returns the value as the server stores it: `utf-8` comes back `UTF8`).
    pub(crate) rows: Vec<Vec<String>>,
}

/// Plans bringing a server's session-level settings from `have` to `want`. `reported` are the
/// values the server reports now: a wanted value it already has needs no `set_config`. The role
/// and session authorization are reset first and restored last: a `RESET` or `set_config` may
/// need the login role's privileges, and setting the session authorization resets the role.
pub(crate) fn sync_plan(want: &ParamMap, have: &ParamMap, reported: &ParamMap) -> Option<SyncPlan> {
    let special =
        |n: &str| n.eq_ignore_ascii_case(ROLE) || n.eq_ignore_ascii_case(SESSION_AUTHORIZATION);
    let mut sets = Vec::new();
    for (name, value) in want.iter().filter(|(n, _)| !special(n)) {
        let current = have.get(name).or_else(|| reported.get(name));
        if current != Some(value) {
            sets.push((name, value));
        }
    }
    let resets: Vec<&str> = have
        .iter()
        .map(|(n, _)| n)
        .filter(|n| !special(n) && want.get(n).is_none())
        .collect();
    let auth_changes = want.get(SESSION_AUTHORIZATION) != have.get(SESSION_AUTHORIZATION);
    let role_changes = want.get(ROLE) != have.get(ROLE);
    let params_change = !sets.is_empty() || !resets.is_empty();
    // Back to the login role before touching anything else when it is not the login role now.
    let reset_auth = have.get(SESSION_AUTHORIZATION).is_some() && (auth_changes || params_change);
    let reset_role = have.get(ROLE).is_some() && (role_changes || params_change || reset_auth);
    if !params_change && !auth_changes && !role_changes {
        return None;
    }
    let mut sql = String::new();
    let mut rows = Vec::new();
    if reset_auth {
        sql.push_str("SET SESSION AUTHORIZATION DEFAULT;");
    }
    if reset_role {
        sql.push_str("RESET ROLE;");
    }
    for name in &resets {
        sql.push_str("RESET ");
        push_ident(&mut sql, name);
        sql.push(';');
    }
    if !sets.is_empty() {
        push_set_configs(&mut sql, &sets);
        rows.push(sets.iter().map(|(n, _)| (*n).to_owned()).collect());
    }
    // Setting the session authorization resets the role, so both are set again after a reset.
    let set_auth = want
        .get(SESSION_AUTHORIZATION)
        .filter(|_| reset_auth || auth_changes);
    if let Some(user) = set_auth {
        push_set_configs(&mut sql, &[(SESSION_AUTHORIZATION, user)]);
        rows.push(vec![SESSION_AUTHORIZATION.to_owned()]);
    }
    let set_role = want
        .get(ROLE)
        .filter(|_| reset_role || role_changes || set_auth.is_some());
    if let Some(role) = set_role {
        push_set_configs(&mut sql, &[(ROLE, role)]);
        rows.push(vec![ROLE.to_owned()]);
    }
    Some(SyncPlan { sql, rows })
}

fn push_set_configs(sql: &mut String, sets: &[(&str, &str)]) {
    sql.push_str("SELECT ");
    for (i, (name, value)) in sets.iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str("pg_catalog.set_config(");
        push_literal(sql, name);
        sql.push_str(", ");
        push_literal(sql, value);
        sql.push_str(", false)");
    }
    sql.push(';');
}

/// What a read back asks the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Readback<'a> {
    /// The current values of these parameters.
    Names(&'a [String]),
    /// Every parameter set at session level (`pg_settings.source = 'session'`), plus these
    /// (the role, the session authorization and custom placeholders, which `pg_settings` does
    /// not list).
    All(&'a [String]),
}

/// SQL returning one `(name, value)` row per parameter asked for; the value is NULL for a
/// parameter that does not exist.
pub(crate) fn readback_sql(what: Readback<'_>) -> String {
    let (all, names) = match what {
        Readback::Names(n) => (false, n),
        Readback::All(n) => (true, n),
    };
    let mut sql = String::new();
    if all {
        sql.push_str(
            "SELECT name, pg_catalog.current_setting(name) FROM pg_catalog.pg_settings \
             WHERE source = 'session'",
        );
    }
    if !names.is_empty() {
        if all {
            sql.push_str(" UNION ALL ");
        }
        sql.push_str("SELECT n, pg_catalog.current_setting(n, true) FROM (VALUES ");
        for (i, n) in names.iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push('(');
            push_literal(&mut sql, n);
            sql.push_str("::text)");
        }
        sql.push_str(") AS v(n)");
    }
    sql.push(';');
    sql
}

/// Whether a value read back means the parameter is not set at session level: NULL (no such
/// parameter), the role `none`, the session authorization of the login user, or an empty
/// custom placeholder (what `RESET ALL` leaves of one).
pub(crate) fn unset(name: &str, value: Option<&str>, login_user: &str) -> bool {
    match value {
        None => true,
        Some(v) if name.eq_ignore_ascii_case(ROLE) => v == "none",
        Some(v) if name.eq_ignore_ascii_case(SESSION_AUTHORIZATION) => v == login_user,
        Some(v) => v.is_empty() && name.contains('.'),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    #[test]
    fn content_hash_follows_the_contents() {
        let mut a = ParamMap::new();
        assert_eq!(a.content_hash(), 0);
        a.set("TimeZone", "UTC");
        let mut b = ParamMap::new();
        b.set("timezone", "UTC");
        assert_eq!(a.content_hash(), b.content_hash());
        let h = a.content_hash();
        a.set("timezone", "UTC");
        assert_eq!(a.content_hash(), h);
        a.set("timezone", "Europe/Paris");
        assert_ne!(a.content_hash(), h);
        a.set("timezone", "UTC");
        assert_eq!(a.content_hash(), h);
        a.set("work_mem", "8MB");
        assert!(a.remove("work_mem"));
        assert_eq!(a.content_hash(), h);
        assert!(a.remove("timezone"));
        assert_eq!(a.content_hash(), 0);
        // A key is only as stale as any of its three maps.
        let empty = ParamMap::new();
        assert_ne!(
            SyncKey::of(&b, &empty, &empty),
            SyncKey::of(&empty, &b, &empty)
        );
        assert_eq!(SyncKey::of(&b, &empty, &b), SyncKey::of(&b, &empty, &b));
    }

    #[test]
    fn settings_skip_metadata_and_parse_options() {
        let m = client_settings(&p(&[
            ("user", "u"),
            ("database", "d"),
            ("application_name", "psql"),
            ("options", "-c search_path=a\\ b --statement-timeout=5s"),
            ("_pq_.x", "1"),
        ]))
        .unwrap();
        assert_eq!(m.get("application_name"), Some("psql"));
        assert_eq!(m.get("search_path"), Some("a b"));
        assert_eq!(m.get("statement_timeout"), Some("5s"));
        assert_eq!(m.get("user"), None);
        assert_eq!(m.len(), 3);
        // Filled without a hash per entry, hashed once: the same hash as set one by one.
        let mut one_by_one = ParamMap::new();
        for (k, v) in m.iter() {
            one_by_one.set(k, v);
        }
        assert_ne!(m.content_hash(), 0);
        assert_eq!(m.content_hash(), one_by_one.content_hash());
        assert_eq!(m, one_by_one);
        assert_eq!(
            client_settings(&p(&[("user", "u")]))
                .unwrap()
                .content_hash(),
            0
        );
    }

    #[test]
    fn rejects_replication_and_bad_options() {
        assert_eq!(
            client_settings(&p(&[("replication", "database")])),
            Err(ParamError::Replication)
        );
        assert!(client_settings(&p(&[("options", "-X")])).is_err());
        assert!(client_settings(&p(&[("bad name", "x")])).is_err());
        assert!(client_settings(&p(&[("replication", "false")])).is_ok());
    }

    fn map(pairs: &[(&str, &str)]) -> ParamMap {
        let mut m = ParamMap::new();
        for (k, v) in pairs {
            m.set(k, v);
        }
        m
    }

    #[test]
    fn sync_plan_sets_what_differs_and_resets_leftovers() {
        let want = map(&[
            ("DateStyle", "ISO, MDY"),
            ("application_name", "it's \\ me"),
        ]);
        let reported = map(&[("datestyle", "ISO, MDY"), ("application_name", "")]);
        let plan = sync_plan(&want, &ParamMap::new(), &reported).unwrap();
        assert_eq!(
            plan.sql,
            "SELECT pg_catalog.set_config(E'application_name', E'it''s \\\\ me', false);"
        );
        assert_eq!(plan.rows, vec![vec!["application_name".to_owned()]]);
        // The server has it at session level already: nothing to do.
        let have = map(&[("application_name", "it's \\ me")]);
        assert_eq!(sync_plan(&want, &have, &reported), None);
        // A setting an earlier client left is reset.
        let have = map(&[("application_name", "it's \\ me"), ("work_mem", "8MB")]);
        assert_eq!(
            sync_plan(&want, &have, &reported).unwrap().sql,
            "RESET \"work_mem\";"
        );
    }

    #[test]
    fn the_role_is_reset_first_and_restored_last() {
        let have = map(&[("role", "other"), ("work_mem", "8MB")]);
        let want = map(&[("role", "other")]);
        let plan = sync_plan(&want, &have, &ParamMap::new()).unwrap();
        assert_eq!(
            plan.sql,
            "RESET ROLE;RESET \"work_mem\";SELECT pg_catalog.set_config(E'role', E'other', false);"
        );
        let have = map(&[("session_authorization", "u"), ("role", "r")]);
        let plan = sync_plan(&ParamMap::new(), &have, &ParamMap::new()).unwrap();
        assert_eq!(plan.sql, "SET SESSION AUTHORIZATION DEFAULT;RESET ROLE;");
        let want = map(&[("session_authorization", "u"), ("role", "r"), ("x.y", "1")]);
        let plan = sync_plan(&want, &ParamMap::new(), &ParamMap::new()).unwrap();
        assert!(plan.sql.ends_with(
            "SELECT pg_catalog.set_config(E'session_authorization', E'u', false);SELECT pg_catalog.set_config(E'role', E'r', false);"
        ), "{}", plan.sql);
        assert_eq!(plan.rows.len(), 3);
    }

    #[test]
    fn readback_asks_by_name_or_for_everything() {
        let names = vec!["work_mem".to_owned(), "app.x".to_owned()];
        assert_eq!(
            readback_sql(Readback::Names(&names)),
            "SELECT n, pg_catalog.current_setting(n, true) FROM (VALUES (E'work_mem'::text), (E'app.x'::text)) AS v(n);"
        );
        let all = readback_sql(Readback::All(&names[1..]));
        assert!(all.starts_with("SELECT name, pg_catalog.current_setting(name) FROM pg_catalog.pg_settings WHERE source = 'session' UNION ALL"));
        assert!(unset("role", Some("none"), "u"));
        assert!(unset("session_authorization", Some("u"), "u"));
        assert!(!unset("session_authorization", Some("v"), "u"));
        assert!(unset("app.x", Some(""), "u"));
        assert!(!unset("work_mem", Some(""), "u"));
        assert!(unset("work_mem", None, "u"));
        assert!(!is_settable("is_superuser") && is_settable("TimeZone"));
    }

    #[test]
    fn spellings_match_names_in_any_case_and_values_exactly_and_stay_bounded() {
        let sp = Spellings::default();
        let get = |n: &str, v: &str| sp.with(n, v, str::to_owned);
        assert_eq!(get("client_encoding", "utf-8"), None);
        sp.learn("Client_Encoding", "utf-8", "UTF8");
        assert_eq!(get("client_encoding", "utf-8").as_deref(), Some("UTF8"));
        assert_eq!(get("CLIENT_ENCODING", "utf-8").as_deref(), Some("UTF8"));
        assert_eq!(
            get("client_encoding", "UTF-8"),
            None,
            "values are matched exactly"
        );
        sp.learn("client_encoding", "utf-8", "UTF-8?");
        assert_eq!(
            get("client_encoding", "utf-8").as_deref(),
            Some("UTF-8?"),
            "relearned"
        );
        for i in 0..2 * MAX_SPELLINGS {
            sp.learn("application_name", &format!("app{i}"), &format!("app{i}"));
        }
        assert_eq!(sp.map.lock().len, MAX_SPELLINGS);
        assert!(get("application_name", "app0").is_some());
        assert!(get("application_name", &format!("app{}", 2 * MAX_SPELLINGS - 1)).is_none());
        // A known pair is still updated at the bound.
        sp.learn("client_encoding", "utf-8", "UTF8");
        assert_eq!(get("client_encoding", "utf-8").as_deref(), Some("UTF8"));
    }
}
