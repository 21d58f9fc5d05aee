//! A `.netrc` reader, for the lowest-priority personal access token source.
//!
//! Neither Databricks SDK reads `.netrc`; Databricks documents it for curl only
//! (`machine <workspace-host>` / `login token` / `password <PAT>`). We accept the same file so a
//! setup that works with `curl --netrc` works here, and parse it the way curl and Python's
//! `netrc` module do: words separated by spaces, tabs and newlines; keywords `machine NAME`,
//! `default`, `login`, `password`, `account`, `macdef NAME` (whose body, up to the next blank
//! line, is skipped); a line whose first word starts with `#` is a comment (unless that word is the value of a
//! keyword ending the previous line); a word may be
//! double-quoted with `\` escapes (curl >= 7.84) so passwords can contain spaces.
//!
//! Passwords are secrets: `Debug` redacts them and errors never show any word of the file.

use std::path::Path;

use secrecy::SecretString;

/// Reading or parsing the file failed (shared with the other credentials file reader).
pub(crate) type NetrcError = super::textfile::FileError;

/// One `machine` (or `default`) entry.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// Host name of a `machine` entry; `None` for the `default` entry.
    pub(crate) machine: Option<String>,
    /// `login` value.
    pub(crate) login: Option<String>,
    /// `password` value.
    pub(crate) password: Option<SecretString>,
    /// `account` value (an additional password, hence secret).
    pub(crate) account: Option<SecretString>,
}

impl Entry {
    fn new(machine: Option<String>) -> Self {
        Entry {
            machine,
            login: None,
            password: None,
            account: None,
        }
    }
}

/// A parsed `.netrc`: entries in file order.
#[derive(Debug, Clone, Default)]
pub(crate) struct Netrc {
    /// All `machine` and `default` entries in file order.
    pub(crate) entries: Vec<Entry>,
}

impl Netrc {
    /// Entries that apply to `host`, best first: `machine` entries naming it (host names compare
    /// case-insensitively, as curl does), then `default` entries.
    pub(crate) fn entries_for<'a, 'h>(
        &'a self,
        host: &'h str,
    ) -> impl Iterator<Item = &'a Entry> + use<'a, 'h> {
        let machines = self.entries.iter().filter(move |e| {
            e.machine
                .as_deref()
                .is_some_and(|m| m.eq_ignore_ascii_case(host))
        });
        let defaults = self.entries.iter().filter(|e| e.machine.is_none());
        machines.chain(defaults)
    }

    /// The first entry for `host` (a matching `machine`, else `default`), as curl picks it.
    #[cfg(test)]
    pub(crate) fn lookup(&self, host: &str) -> Option<&Entry> {
        self.entries_for(host).next()
    }
}

/// Reads and parses `path`; `Ok(None)` when the file does not exist.
pub(crate) fn read(path: &Path) -> Result<Option<Netrc>, NetrcError> {
    match super::textfile::read_optional(path)? {
        Some(text) => parse(&text, path).map(Some),
        None => Ok(None),
    }
}

/// The keyword whose value the next word is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pending {
    Machine,
    Login,
    Password,
    Account,
    Macdef,
}

/// Parses `.netrc` text; `path` is only used in error messages.
// Long on purpose (about 105 lines): one tokenizer loop whose state (the current entry, a
// keyword waiting for its value across lines, a macro body) is shared by every branch.
pub(crate) fn parse(text: &str, path: &Path) -> Result<Netrc, NetrcError> {
    let syntax = |line: usize, reason: &'static str| NetrcError::Syntax {
        path: path.to_path_buf(),
        line,
        reason,
    };
    let mut netrc = Netrc::default();
    let mut current: Option<Entry> = None;
    // A keyword still waiting for its value, and the line it was on (the value may follow on a
    // later line: newlines are ordinary separators).
    let mut pending: Option<(Pending, usize)> = None;
    let mut in_macdef = false;

    for (idx, line) in text.lines().enumerate() {
        let line_no = idx + 1;
        if in_macdef {
            // A macro body runs to the first blank line.
            if line.trim().is_empty() {
                in_macdef = false;
            }
            continue;
        }
        let words = split_words(line).ok_or_else(|| syntax(line_no, "unterminated quote"))?;
        // A comment line, unless its first word is the value of a keyword ending the previous
        // line (a password may start with `#`).
        if pending.is_none()
            && words
                .first()
                .is_some_and(|w| !w.quoted && w.text.starts_with('#'))
        {
            continue;
        }
        for word in words {
            if let Some((keyword, _)) = pending.take() {
                let value = word.text;
                match keyword {
                    Pending::Machine => current = Some(Entry::new(Some(value))),
                    Pending::Login => set(&mut current, |e| e.login = Some(value)),
                    Pending::Password => {
                        set(&mut current, |e| {
                            e.password = Some(SecretString::from(value))
                        });
                    }
                    Pending::Account => {
                        set(&mut current, |e| {
                            e.account = Some(SecretString::from(value))
                        });
                    }
                    Pending::Macdef => {
                        // The body starts on the next line; the rest of this one is ignored.
                        in_macdef = true;
                        break;
                    }
                }
                continue;
            }
            // A quoted word is never a keyword.
            let keyword = if word.quoted { "" } else { word.text.as_str() };
            match keyword {
                "machine" | "default" => {
                    if let Some(done) = current.take() {
                        netrc.entries.push(done);
                    }
                    if keyword == "default" {
                        current = Some(Entry::new(None));
                    } else {
                        pending = Some((Pending::Machine, line_no));
                    }
                }
                "login" | "password" | "account" => {
                    if current.is_none() {
                        return Err(syntax(line_no, "login/password/account before any machine"));
                    }
                    pending = Some((
                        match keyword {
                            "login" => Pending::Login,
                            "password" => Pending::Password,
                            _ => Pending::Account,
                        },
                        line_no,
                    ));
                }
                "macdef" => pending = Some((Pending::Macdef, line_no)),
                _ => {
                    return Err(syntax(
                        line_no,
                        "unexpected word (expected a netrc keyword)",
                    ));
                }
            }
        }
    }
    if let Some((keyword, line)) = pending {
        return Err(syntax(
            line,
            match keyword {
                Pending::Machine => "`machine` without a host name",
                Pending::Macdef => "`macdef` without a name",
                _ => "keyword without a value at end of file",
            },
        ));
    }
    if let Some(done) = current {
        netrc.entries.push(done);
    }
    Ok(netrc)
}

/// Applies `f` to the entry being built (callers checked there is one).
fn set(current: &mut Option<Entry>, f: impl FnOnce(&mut Entry)) {
    if let Some(e) = current.as_mut() {
        f(e);
    }
}

/// One word of a line.
struct Word {
    text: String,
    quoted: bool,
}

/// Splits a line into words; `None` on an unterminated quote.
fn split_words(line: &str) -> Option<Vec<Word>> {
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&first) = chars.peek() else {
            return Some(words);
        };
        let mut text = String::new();
        if first == '"' {
            chars.next();
            loop {
                match chars.next()? {
                    '"' => break,
                    '\\' => match chars.next()? {
                        'n' => text.push('\n'),
                        'r' => text.push('\r'),
                        't' => text.push('\t'),
                        other => text.push(other),
                    },
                    c => text.push(c),
                }
            }
            words.push(Word { text, quoted: true });
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                text.push(c);
                chars.next();
            }
            words.push(Word {
                text,
                quoted: false,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    fn p(text: &str) -> Netrc {
        parse(text, Path::new("/n")).unwrap()
    }

    fn err_line(text: &str) -> usize {
        match parse(text, Path::new("/home/u/.netrc")).unwrap_err() {
            NetrcError::Syntax { line, .. } => line,
            other => panic!("unexpected {other:?}"),
        }
    }

    fn pw(e: &Entry) -> &str {
        e.password.as_ref().unwrap().expose_secret()
    }

    #[test]
    fn multi_line_entry() {
        let n = p("machine dbc-1.cloud.databricks.com\nlogin token\npassword dapiA\n");
        let e = n.lookup("dbc-1.cloud.databricks.com").unwrap();
        assert_eq!(e.login.as_deref(), Some("token"));
        assert_eq!(pw(e), "dapiA");
        assert!(n.lookup("other.example").is_none());
    }

    #[test]
    fn one_line_entries_pick_by_host() {
        let n = p("machine a.example login token password pA\n\
                   machine b.example login token password pB account acc\n");
        assert_eq!(pw(n.lookup("b.example").unwrap()), "pB");
        assert_eq!(pw(n.lookup("A.EXAMPLE").unwrap()), "pA");
        let b = n.lookup("b.example").unwrap();
        assert_eq!(b.account.as_ref().unwrap().expose_secret(), "acc");
    }

    #[test]
    fn values_may_be_on_the_next_line() {
        let n = p("machine\n  h.example login\ntoken password\n\tpX");
        assert_eq!(pw(n.lookup("h.example").unwrap()), "pX");
    }

    #[test]
    fn default_applies_when_no_machine_matches() {
        let n = p("machine a.example login token password pA\ndefault login token password pD\n");
        assert_eq!(pw(n.lookup("a.example").unwrap()), "pA");
        let d = n.lookup("z.example").unwrap();
        assert!(d.machine.is_none());
        assert_eq!(pw(d), "pD");
        // Machines come before default even when default is written first.
        let n = p("default login token password pD\nmachine a.example login token password pA\n");
        assert_eq!(pw(n.lookup("a.example").unwrap()), "pA");
        let all: Vec<_> = n.entries_for("a.example").map(pw).collect();
        assert_eq!(all, ["pA", "pD"]);
    }

    #[test]
    fn macdef_body_skipped_until_blank_line() {
        let text = "machine a.example login token password pA\n\
                    macdef init\n\
                    machine evil.example login token password pEvil\n\
                    cd /tmp\n\
                    \n\
                    machine b.example login token password pB\n";
        let n = p(text);
        assert!(n.lookup("evil.example").is_none());
        assert_eq!(pw(n.lookup("b.example").unwrap()), "pB");
        assert_eq!(pw(n.lookup("a.example").unwrap()), "pA");
        assert_eq!(n.entries.len(), 2);
    }

    #[test]
    fn comment_lines_and_quotes() {
        let n = p(
            "# my tokens\n  # indented\nmachine a.example login token password \"p w\\\"x\"\n\
                   machine b.example login token password #notacomment\n",
        );
        assert_eq!(pw(n.lookup("a.example").unwrap()), "p w\"x");
        assert_eq!(pw(n.lookup("b.example").unwrap()), "#notacomment");
        let n = p("machine c.example login token password\n#hashpw\n");
        assert_eq!(pw(n.lookup("c.example").unwrap()), "#hashpw");
    }

    #[test]
    fn syntax_errors_name_line_and_hide_words() {
        assert_eq!(err_line("login token\n"), 1);
        assert_eq!(err_line("machine a\nlogin token dapiSECRET123\n"), 2);
        assert_eq!(err_line("machine a\nlogin token\npassword\n"), 3);
        assert_eq!(err_line("machine\n"), 1);
        assert_eq!(err_line("machine a password \"open\n"), 1);
        let e = parse(
            "machine a\nlogin token dapiSECRET123\n",
            Path::new("/home/u/.netrc"),
        )
        .unwrap_err();
        let msg = format!("{e} {e:?}");
        assert!(msg.contains("/home/u/.netrc:2"), "{msg}");
        assert!(!msg.contains("dapiSECRET123"), "{msg}");
    }

    #[test]
    fn debug_redacts_passwords() {
        let n = p("machine a login token password dapiSECRET123 account dapiSECRET123\n");
        let dbg = format!("{n:?}");
        assert!(!dbg.contains("dapiSECRET123"), "{dbg}");
        assert!(dbg.contains("REDACTED"));
    }

    #[test]
    fn read_missing_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read(&dir.path().join("nope")).unwrap().is_none());
        let path = dir.path().join("netrc");
        std::fs::write(&path, "machine h login token password p\n").unwrap();
        assert_eq!(pw(read(&path).unwrap().unwrap().lookup("h").unwrap()), "p");
    }
}
