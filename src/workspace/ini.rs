//! A minimal reader for `~/.databrickscfg`.
//!
//! Hand-written rather than taken from an INI crate because the semantics must match the
//! Databricks SDKs exactly, and general INI crates differ in exactly the places that matter:
//!
//! - an inline comment needs whitespace before `#`/`;`, so secrets containing `#` survive
//!   (`token = abc#def` keeps `abc#def`; databricks-sdk-go #594, go-ini
//!   `SpaceBeforeInlineComment`);
//! - `[DEFAULT]` keys are NOT merged into other profiles (Python's configparser would; the Python
//!   SDK works around it);
//! - keys are case-sensitive, as the Go SDK reads them (the attribute names are lowercase);
//! - `[__settings__]` holds settings such as `default_profile` and is never a profile.
//!
//! Where the two SDKs' parsers disagree we follow the Go one (gopkg.in/ini.v1), which the
//! Databricks CLI uses to write these files: keys before the first section belong to
//! `DEFAULT`, a repeated section continues the earlier one, a repeated key takes the last value,
//! and a value wrapped in one pair of `"` or `'` quotes is unwrapped. Only `=` separates a key
//! from its value (a `key: value` line is an error rather than a silent guess).
//!
//! Values may be secrets, so neither `Debug` nor any error ever shows one.

use std::fmt;
use std::path::Path;

/// The section every SDK reads when no profile is chosen.
pub(crate) const DEFAULT_SECTION: &str = "DEFAULT";

/// The section holding file-wide settings (`default_profile`); never a profile.
pub(crate) const SETTINGS_SECTION: &str = "__settings__";

/// Reading or parsing the file failed (shared with the other credentials file reader).
pub(crate) type IniError = super::textfile::FileError;

/// One `[section]` with its keys in file order.
#[derive(Clone)]
pub(crate) struct Section {
    name: String,
    entries: Vec<(String, String)>,
}

impl Section {
    /// The value of `key` (case-sensitive), the last one if repeated.
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The keys in file order (may repeat).
    pub(crate) fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(k, _)| k.as_str())
    }
}

// Values may be secrets: show key names only.
impl fmt::Debug for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Section")
            .field("name", &self.name)
            .field("keys", &self.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// A parsed config file: its sections in file order.
#[derive(Debug, Clone, Default)]
pub(crate) struct IniFile {
    sections: Vec<Section>,
}

impl IniFile {
    /// The section called `name` (case-sensitive), including `__settings__`.
    pub(crate) fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }

    /// The profile called `name`; `__settings__` is never a profile.
    pub(crate) fn profile(&self, name: &str) -> Option<&Section> {
        if name == SETTINGS_SECTION {
            return None;
        }
        self.section(name)
    }

    /// Profile names in file order (`__settings__` excluded).
    pub(crate) fn profile_names(&self) -> impl Iterator<Item = &str> {
        self.sections
            .iter()
            .map(|s| s.name.as_str())
            .filter(|n| *n != SETTINGS_SECTION)
    }

    /// `[__settings__] default_profile`, if set and non-empty.
    pub(crate) fn default_profile(&self) -> Option<&str> {
        self.section(SETTINGS_SECTION)
            .and_then(|s| s.get("default_profile"))
            .filter(|v| !v.is_empty())
    }
}

/// Reads and parses `path`; `Ok(None)` when the file does not exist (the SDKs treat a missing
/// file as "not configured", not as an error).
pub(crate) fn read(path: &Path) -> Result<Option<IniFile>, IniError> {
    match super::textfile::read_optional(path)? {
        Some(text) => parse(&text, path).map(Some),
        None => Ok(None),
    }
}

/// Parses config file text; `path` is only used in error messages.
pub(crate) fn parse(text: &str, path: &Path) -> Result<IniFile, IniError> {
    let syntax = |line: usize, reason: &'static str| IniError::Syntax {
        path: path.to_path_buf(),
        line,
        reason,
    };
    // Editors on Windows may write a byte-order mark; go-ini ignores it too.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut file = IniFile::default();
    // Index into `file.sections` of the section being filled; keys before any header go to
    // DEFAULT as in go-ini.
    let mut current: Option<usize> = None;
    for (idx, raw) in text.lines().enumerate() {
        let line_no = idx + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            let close = rest
                .find(']')
                .ok_or_else(|| syntax(line_no, "section header without closing `]`"))?;
            let name = rest[..close].trim();
            if name.is_empty() {
                return Err(syntax(line_no, "empty section name"));
            }
            let after = rest[close + 1..].trim_start();
            if !(after.is_empty() || after.starts_with('#') || after.starts_with(';')) {
                return Err(syntax(line_no, "unexpected text after section header"));
            }
            current = Some(section_index(&mut file, name));
            continue;
        }
        let Some(eq) = line.find('=') else {
            return Err(syntax(
                line_no,
                "expected `key = value`, `[section]` or a comment",
            ));
        };
        let key = line[..eq].trim();
        if key.is_empty() {
            return Err(syntax(line_no, "missing key before `=`"));
        }
        let value = clean_value(&line[eq + 1..]);
        let section = match current {
            Some(i) => i,
            None => {
                let i = section_index(&mut file, DEFAULT_SECTION);
                current = Some(i);
                i
            }
        };
        if let Some(s) = file.sections.get_mut(section) {
            s.entries.push((key.to_owned(), value.to_owned()));
        }
    }
    Ok(file)
}

/// Finds or creates section `name`: a repeated header continues the earlier section (go-ini).
fn section_index(file: &mut IniFile, name: &str) -> usize {
    if let Some(i) = file.sections.iter().position(|s| s.name == name) {
        return i;
    }
    file.sections.push(Section {
        name: name.to_owned(),
        entries: Vec::new(),
    });
    file.sections.len() - 1
}

/// Strips surrounding whitespace, an inline comment (only when whitespace precedes `#`/`;`) and
/// one pair of surrounding quotes.
fn clean_value(raw: &str) -> &str {
    let mut value = raw.trim();
    // Leading whitespace is gone before the comment search, so `key = #x` keeps `#x` as both SDKs
    // do (go-ini looks for " #" in the trimmed value; Python does not strip inline comments).
    if let Some(cut) = inline_comment_start(value) {
        value = value[..cut].trim_end();
    }
    unquote(value)
}

/// Byte offset of an inline comment: `#` or `;` right after whitespace.
fn inline_comment_start(value: &str) -> Option<usize> {
    let mut prev_ws = false;
    for (i, c) in value.char_indices() {
        if (c == '#' || c == ';') && prev_ws {
            return Some(i);
        }
        prev_ws = c.is_whitespace();
    }
    None
}

/// Removes one pair of surrounding `"` or `'` when the quote does not also occur inside (go-ini's
/// `hasSurroundedQuote`).
fn unquote(value: &str) -> &str {
    for q in ['"', '\''] {
        if value.len() >= 2 && value.starts_with(q) && value.ends_with(q) {
            let inner = &value[1..value.len() - 1];
            if !inner.contains(q) {
                return inner;
            }
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> IniFile {
        parse(text, Path::new("/cfg")).unwrap()
    }

    fn err(text: &str) -> IniError {
        parse(text, Path::new("/home/u/.databrickscfg")).unwrap_err()
    }

    #[test]
    fn sections_and_keys() {
        let f = p("[DEFAULT]\nhost = https://a\ntoken=dapi1\n\n[prod]\n  host   =   https://b  \n");
        assert_eq!(f.profile("DEFAULT").unwrap().get("host"), Some("https://a"));
        assert_eq!(f.profile("DEFAULT").unwrap().get("token"), Some("dapi1"));
        assert_eq!(f.profile("prod").unwrap().get("host"), Some("https://b"));
        assert_eq!(f.profile_names().collect::<Vec<_>>(), ["DEFAULT", "prod"]);
    }

    #[test]
    fn default_not_merged_into_profiles() {
        let f = p("[DEFAULT]\ntoken = t\n[prod]\nhost = h\n");
        assert_eq!(f.profile("prod").unwrap().get("token"), None);
    }

    #[test]
    fn keys_and_sections_are_case_sensitive() {
        let f = p("[Prod]\nToken = x\n");
        assert!(f.profile("prod").is_none());
        let s = f.profile("Prod").unwrap();
        assert_eq!(s.get("token"), None);
        assert_eq!(s.get("Token"), Some("x"));
    }

    #[test]
    fn full_line_comments() {
        let f = p("# hash\n; semi\n   # indented\n[a]\n;k = v\n#k2 = v\nk3 = v3\n");
        assert_eq!(f.profile("a").unwrap().keys().collect::<Vec<_>>(), ["k3"]);
    }

    #[test]
    fn inline_comments_need_whitespace() {
        let f =
            p("[a]\nt1 = abc#def\nt2 = abc # comment\nt3 = abc;def\nt4 = abc\t; c\nt5 = a #b #c\n");
        let s = f.profile("a").unwrap();
        assert_eq!(s.get("t1"), Some("abc#def"));
        assert_eq!(s.get("t2"), Some("abc"));
        assert_eq!(s.get("t3"), Some("abc;def"));
        assert_eq!(s.get("t4"), Some("abc"));
        assert_eq!(s.get("t5"), Some("a"));
    }

    #[test]
    fn value_starting_with_hash_is_kept() {
        let f = p("[a]\nk = #abc\nj =#literal\n");
        let s = f.profile("a").unwrap();
        assert_eq!(s.get("k"), Some("#abc"));
        assert_eq!(s.get("j"), Some("#literal"));
    }

    #[test]
    fn equals_inside_value_and_empty_value() {
        let f = p("[a]\nsecret = ab==cd=\nempty =\n");
        let s = f.profile("a").unwrap();
        assert_eq!(s.get("secret"), Some("ab==cd="));
        assert_eq!(s.get("empty"), Some(""));
    }

    #[test]
    fn quotes_unwrapped_once() {
        let f = p("[a]\nq1 = \"x y\"\nq2 = 'z'\nq3 = \"a\"b\"\nq4 = \"\n");
        let s = f.profile("a").unwrap();
        assert_eq!(s.get("q1"), Some("x y"));
        assert_eq!(s.get("q2"), Some("z"));
        assert_eq!(s.get("q3"), Some("\"a\"b\""));
        assert_eq!(s.get("q4"), Some("\""));
    }

    #[test]
    fn settings_is_not_a_profile() {
        let f = p("[__settings__]\ndefault_profile = prod\n[prod]\nhost = h\n");
        assert!(f.profile(SETTINGS_SECTION).is_none());
        assert!(f.section(SETTINGS_SECTION).is_some());
        assert_eq!(f.profile_names().collect::<Vec<_>>(), ["prod"]);
        assert_eq!(f.default_profile(), Some("prod"));
        assert_eq!(
            p("[__settings__]\ndefault_profile =\n").default_profile(),
            None
        );
        assert_eq!(p("[a]\n").default_profile(), None);
    }

    #[test]
    fn keys_before_first_section_go_to_default() {
        let f = p("host = h\n[a]\nk = v\n");
        assert_eq!(f.profile(DEFAULT_SECTION).unwrap().get("host"), Some("h"));
    }

    #[test]
    fn repeated_section_continues_and_last_key_wins() {
        let f = p("[a]\nk = 1\n[b]\n[a]\nk = 2\nj = 3\n");
        let s = f.profile("a").unwrap();
        assert_eq!(s.get("k"), Some("2"));
        assert_eq!(s.get("j"), Some("3"));
        assert_eq!(f.profile_names().count(), 2);
    }

    #[test]
    fn crlf_bom_and_header_comment() {
        let f = p("\u{feff}[a] # note\r\nk = v\r\n");
        assert_eq!(f.profile("a").unwrap().get("k"), Some("v"));
    }

    #[test]
    fn malformed_lines_name_file_and_line() {
        let e = err("# c\njust-a-line\n");
        assert!(matches!(e, IniError::Syntax { line: 2, .. }));
        let msg = e.to_string();
        assert!(msg.starts_with("/home/u/.databrickscfg:2:"), "{msg}");

        assert!(matches!(
            err("[a]\nk = v\nnoequals\n"),
            IniError::Syntax { line: 3, .. }
        ));
        assert!(matches!(err("[a\n"), IniError::Syntax { line: 1, .. }));
        assert!(matches!(err("[]\n"), IniError::Syntax { line: 1, .. }));
        assert!(matches!(err("[a] x\n"), IniError::Syntax { line: 1, .. }));
        assert!(matches!(
            err("[a]\n= v\n"),
            IniError::Syntax { line: 2, .. }
        ));
        assert!(matches!(
            err("[a]\nk: v\n"),
            IniError::Syntax { line: 2, .. }
        ));
    }

    #[test]
    fn errors_and_debug_never_show_values() {
        let e = err("[a]\ndapiSECRET123\n");
        assert!(!e.to_string().contains("dapiSECRET123"));
        assert!(!format!("{e:?}").contains("dapiSECRET123"));
        let f = p("[a]\ntoken = dapiSECRET123\n");
        let dbg = format!("{f:?} {:?}", f.profile("a").unwrap());
        assert!(!dbg.contains("dapiSECRET123"), "{dbg}");
        assert!(dbg.contains("token"));
    }

    #[test]
    fn read_missing_is_none_and_read_parses() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read(&dir.path().join("nope")).unwrap().is_none());
        let path = dir.path().join("cfg");
        std::fs::write(&path, "[a]\nk = v\n").unwrap();
        let f = read(&path).unwrap().unwrap();
        assert_eq!(f.profile("a").unwrap().get("k"), Some("v"));
        std::fs::write(&path, [0xff, 0xfe, b'\n']).unwrap();
        assert!(matches!(read(&path), Err(IniError::NotUtf8 { .. })));
        // A directory cannot be read as a file: an I/O error naming the path.
        let e = read(dir.path()).unwrap_err();
        assert!(matches!(e, IniError::Io { .. }));
        assert!(e.to_string().contains(&dir.path().display().to_string()));
    }
}
