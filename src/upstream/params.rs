//! Session parameters (GUCs) as a client wants them and as a server connection has them.
//!
//! A pooled server connection is shared by clients that may have asked for different
//! `application_name`, `client_encoding`, `DateStyle`, `TimeZone`… at startup. Before a client
//! uses a server, lakepool sends one `SET` batch for just the values that differ, so each client
//! sees the session it asked for; servers usually already match and nothing is sent.

/// Name/value pairs with PostgreSQL's case-insensitive names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParamMap(Vec<(String, String)>);

impl ParamMap {
    /// An empty map.
    pub fn new() -> Self {
        Self(Vec::new())
    }

    /// Value of `name`, compared case-insensitively.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Sets `name` (keeping the existing spelling of the name if present).
    pub fn set(&mut self, name: &str, value: &str) {
        match self
            .0
            .iter_mut()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
        {
            Some((_, v)) => {
                if v != value {
                    value.clone_into(v);
                }
            }
            None => self.0.push((name.to_owned(), value.to_owned())),
        }
    }

    /// Entries in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Drops entries from index `start` on for which `keep` is false.
    pub fn retain_from(&mut self, start: usize, keep: impl Fn(&str) -> bool) {
        let mut i = 0;
        self.0.retain(|(k, _)| {
            i += 1;
            i <= start || keep(k)
        });
    }

    /// Keeps only the first `n` entries.
    pub fn truncate(&mut self, n: usize) {
        self.0.truncate(n);
    }

    /// True when every entry of `self` has the same value in `other`.
    pub fn is_subset_of(&self, other: &ParamMap) -> bool {
        self.iter().all(|(k, v)| other.get(k) == Some(v))
    }
}

/// Why a startup parameter was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParamError {
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
pub fn client_settings(params: &[(String, String)]) -> Result<ParamMap, ParamError> {
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
                out.set(name, value);
            }
        }
    }
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
        out.set(&name, value);
    }
    Ok(())
}

fn push_literal(sql: &mut String, text: &str) {
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

/// SQL that brings a server's settings (`have`, whose first `reported` entries the server
/// reported itself) in line with what a client wants: `set_config()` for each wanted value that
/// differs (it parses values as a startup parameter would, so list settings such as
/// `search_path = 'a,b'` keep their meaning), and `RESET` for settings an earlier client applied
/// that this one did not ask for. None when nothing differs.
pub fn sync_sql(want: &ParamMap, have: &ParamMap, reported: usize) -> Option<String> {
    let mut sql = String::new();
    for (name, value) in want.iter() {
        if have.get(name) == Some(value) {
            continue;
        }
        sql.push_str(if sql.is_empty() { "SELECT " } else { ", " });
        sql.push_str("pg_catalog.set_config(");
        push_literal(&mut sql, name);
        sql.push_str(", ");
        push_literal(&mut sql, value);
        sql.push_str(", false)");
    }
    if !sql.is_empty() {
        sql.push(';');
    }
    for (name, _) in have.iter().skip(reported) {
        if want.get(name).is_none() {
            sql.push_str("RESET \"");
            sql.push_str(&name.replace('"', "\"\""));
            sql.push_str("\";");
        }
    }
    (!sql.is_empty()).then_some(sql)
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

    #[test]
    fn sync_sql_quotes_skips_equal_and_resets_leftovers() {
        let mut want = ParamMap::new();
        want.set("DateStyle", "ISO, MDY");
        want.set("application_name", "it's \\ me");
        let mut have = ParamMap::new();
        have.set("datestyle", "ISO, MDY");
        assert_eq!(
            sync_sql(&want, &have, 1).unwrap(),
            "SELECT pg_catalog.set_config(E'application_name', E'it''s \\\\ me', false);"
        );
        have.set("application_name", "it's \\ me");
        assert_eq!(sync_sql(&want, &have, 1), None);
        assert!(want.is_subset_of(&have));
        // A setting an earlier client applied (past the reported ones) is reset.
        have.set("statement_timeout", "1s");
        assert_eq!(
            sync_sql(&want, &have, 2).unwrap(),
            "RESET \"statement_timeout\";"
        );
    }
}
