//! Config errors in plain words, with the line they concern and never a value from the file.
//!
//! The TOML crate's own errors quote the offending line (a `password = "…` left unterminated
//! would put the secret on stderr, in the `reload refused` log line and in the console's RELOAD
//! reply) and speak serde (`invalid value: integer 99999, expected u16`). lakepool parses the
//! file into a spanned document first, remembers where every key is ([`KeyLines`]) and renders
//! each error as `line N: key: problem`, with the problem rephrased and no value quoted.

use std::ops::Range;

use toml::de::{DeTable, DeValue};

use super::ConfigError;

/// Where each key of the file is: dotted paths (`server.listen`, `users[1].password`) with the
/// byte range of the key and its value, and the line of the key.
#[derive(Debug, Clone, Default)]
pub struct KeyLines {
    entries: Vec<Entry>,
}

#[derive(Debug, Clone)]
struct Entry {
    path: String,
    span: Range<usize>,
    line: usize,
}

/// 1-based line of a byte offset.
fn line_at(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

impl KeyLines {
    /// Indexes every key of `doc`, parsed from `text`.
    pub(super) fn new(text: &str, doc: &DeTable<'_>) -> Self {
        let mut lines = KeyLines::default();
        lines.walk(text, "", doc);
        lines
    }

    fn walk(&mut self, text: &str, prefix: &str, table: &DeTable<'_>) {
        for (key, value) in table.iter() {
            let path = if prefix.is_empty() {
                key.get_ref().to_string()
            } else {
                format!("{prefix}.{}", key.get_ref())
            };
            let (k, v) = (key.span(), value.span());
            self.entries.push(Entry {
                path: path.clone(),
                span: k.start.min(v.start)..k.end.max(v.end),
                line: line_at(text, k.start),
            });
            match value.get_ref() {
                DeValue::Table(t) => self.walk(text, &path, t),
                DeValue::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        let path = format!("{path}[{i}]");
                        self.entries.push(Entry {
                            path: path.clone(),
                            span: item.span(),
                            line: line_at(text, item.span().start),
                        });
                        if let DeValue::Table(t) = item.get_ref() {
                            self.walk(text, &path, t);
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// Line of `key`, else of the nearest enclosing key that is in the file (`users[0].password`
    /// set as `password_env` is found there; a missing key is reported at its table).
    pub fn line_of(&self, key: &str) -> Option<usize> {
        let exact = |p: &str| self.entries.iter().find(|e| e.path == p).map(|e| e.line);
        if let Some(l) = exact(key) {
            return Some(l);
        }
        for form in ["_file", "_env"] {
            if let Some(l) = exact(&format!("{key}{form}")) {
                return Some(l);
            }
        }
        let mut path = key;
        while let Some(cut) = path.rfind(['.', '[']) {
            path = &path[..cut];
            if let Some(l) = exact(path) {
                return Some(l);
            }
        }
        None
    }

    /// The innermost key whose text contains `offset`.
    fn at(&self, offset: usize) -> Option<&Entry> {
        self.entries
            .iter()
            .filter(|e| e.span.contains(&offset) || e.span.start == offset)
            // On a tie (a `[[users]]` header is the span of both `users` and `users[0]`) the
            // deeper path wins.
            .min_by_key(|e| (e.span.len(), std::cmp::Reverse(e.path.len())))
    }

    /// A serde error from deserializing part of the document, located and in plain words.
    pub(super) fn serde_error(&self, e: &toml::de::Error, table: &str) -> ConfigError {
        let entry = e.span().and_then(|s| self.at(s.start));
        let message = e.message();
        // A missing field is reported at its table: name the field instead.
        if let Some(field) = between(message, "missing field `", "`") {
            let parent = entry.map_or(table, |e| e.path.as_str());
            let key = join(parent, field);
            return ConfigError::Invalid {
                line: self.line_of(&key),
                key,
                problem: "is required".to_owned(),
            };
        }
        let key = entry.map_or_else(|| table.to_owned(), |e| e.path.clone());
        ConfigError::Invalid {
            line: entry.map(|e| e.line),
            key,
            problem: plain(message),
        }
    }

    /// Adds the line to an error that names a key but has no line yet.
    pub fn locate(&self, e: ConfigError) -> ConfigError {
        match e {
            ConfigError::Invalid {
                key,
                problem,
                line: None,
            } => ConfigError::Invalid {
                line: self.line_of(&key),
                key,
                problem,
            },
            other => other,
        }
    }
}

fn join(parent: &str, field: &str) -> String {
    if parent.is_empty() {
        field.to_owned()
    } else {
        format!("{parent}.{field}")
    }
}

/// The text between `start` and the next `end`.
fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let rest = &s[s.find(start)? + start.len()..];
    Some(&rest[..rest.find(end)?])
}

/// A TOML syntax error: the line and the parser's description, which names what was expected
/// and never quotes the file.
pub(super) fn syntax_error(text: &str, e: &toml::de::Error) -> ConfigError {
    ConfigError::Syntax {
        line: e.span().map_or(1, |s| line_at(text, s.start)),
        message: e.message().to_owned(),
    }
}

/// What serde expected, in words a person configuring lakepool uses.
fn expected_in_words(expected: &str) -> String {
    match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number, 0 or more".to_owned(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number".to_owned(),
        "f32" | "f64" => "a number".to_owned(),
        "a boolean" => "true or false".to_owned(),
        "a string" => "a string in quotes".to_owned(),
        "a sequence" => "a list".to_owned(),
        s if s.starts_with("struct ") || s == "a map" => "a table".to_owned(),
        // Enum variants and the like are lakepool's own words, e.g. "one of `a`, `b`".
        s => s.to_owned(),
    }
}

/// Rephrases a serde message without the value it quotes (which could be a secret written
/// under the wrong key or with the wrong type).
fn plain(message: &str) -> String {
    if let Some(field) = between(message, "unknown field `", "`") {
        return format!("unknown key `{field}`");
    }
    if message.starts_with("unknown variant ") {
        let expected = message.split_once(", expected ").map_or("", |(_, e)| e);
        return format!("must be {expected}");
    }
    if message.starts_with("invalid type: ") || message.starts_with("invalid value: ") {
        let expected = message.split_once(", expected ").map_or("", |(_, e)| e);
        return format!("must be {}", expected_in_words(expected));
    }
    if message.contains("untagged enum Listen") {
        return "must be an address or a list of addresses".to_owned();
    }
    if message.starts_with("duplicate field") {
        return "is given twice".to_owned();
    }
    // Anything else is shown only if it cannot be quoting a value.
    if message.contains(['`', '"', '\'']) {
        "has a value lakepool cannot use".to_owned()
    } else {
        message.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_messages_become_plain_words_without_values() {
        assert_eq!(
            plain("invalid value: integer `99999`, expected u16"),
            "must be a whole number, 0 or more"
        );
        assert_eq!(
            plain("invalid type: string \"hunter2\", expected a boolean"),
            "must be true or false"
        );
        assert_eq!(
            plain("unknown variant `hunter2`, expected one of `disable`, `require`"),
            "must be one of `disable`, `require`"
        );
        assert_eq!(
            plain("unknown field `bogus`, expected one of `a`, `b`"),
            "unknown key `bogus`"
        );
        assert_eq!(
            plain("something odd about \"hunter2\""),
            "has a value lakepool cannot use"
        );
    }

    #[test]
    fn keys_are_found_by_path_and_offset() {
        let text = "[server]\nlisten = \"x\"\n\n[[users]]\nname = \"a\"\n[[users]]\nname = \"b\"\npassword_env = \"P\"\n";
        let doc = DeTable::parse(text).unwrap();
        let lines = KeyLines::new(text, doc.get_ref());
        assert_eq!(lines.line_of("server.listen"), Some(2));
        assert_eq!(lines.line_of("users[1].name"), Some(7));
        assert_eq!(lines.line_of("users[1].password"), Some(8));
        assert_eq!(lines.line_of("users[0].pool_size"), Some(4));
        assert_eq!(lines.line_of("nothing"), None);
        let at = text.find("\"b\"").unwrap();
        assert_eq!(lines.at(at).map(|e| e.path.as_str()), Some("users[1].name"));
    }
}
