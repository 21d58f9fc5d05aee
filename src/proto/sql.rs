//! Lexer-level classification of SQL text for transaction pooling.
//!
//! In transaction pooling mode a server connection is shared between clients, so the pooler must
//! notice statements whose effect outlives the transaction (`SET`, `PREPARE`, `LISTEN`, session
//! advisory locks, temporary tables, held cursors…). A full parser is not needed for that: the
//! statements in question are recognised by their first few keywords, provided the text is
//! tokenised exactly as PostgreSQL's scanner does (strings, quoted identifiers, dollar quotes,
//! nested comments), so that nothing inside a literal or comment is mistaken for a command and
//! no command is hidden from the splitter.
//!
//! [`needs_attention`] is a byte-level pre-filter for the hot path; [`statements`] splits a query
//! string and classifies each statement. Statement texts borrow from the input; only names
//! reported in a [`Command`] are allocated.
//!
//! Assumes `standard_conforming_strings = on` (the default since PostgreSQL 9.1): backslashes
//! are ordinary characters in `'...'` and only escape inside `E'...'`. Names follow the server's
//! identifier rules, including `U&"..."` escapes and truncation to 63 bytes.
//!
//! Lexical by design, so blind to effects hidden behind a call: `set_config(...)`, functions or
//! `EXECUTE`d statements that lock or create temp tables, a view made temporary by referring to
//! a temporary table. Nor does it know whether a statement then fails (a failing statement rolls
//! back the earlier ones of the same implicit transaction); that is for the caller to watch.

/// What one statement does to session state, as far as a pooler cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Command {
    /// `SET [SESSION] name {TO|=} ...`, also `SET TIME ZONE ...` (name "timezone"), `SET NAMES ...`
    /// ("client_encoding"), `SET SCHEMA ...` ("search_path"), `SET ROLE ...` ("role"),
    /// `SET SESSION AUTHORIZATION ...` ("session_authorization"), `SET XML OPTION` ("xmloption"),
    /// `SET name FROM CURRENT`. `name` is lowercased unless it was double-quoted (then unquoted,
    /// case kept); dotted custom names (`myapp.tenant`) are kept as one name.
    Set {
        /// Parameter name.
        name: String,
    },
    /// `SET LOCAL ...` (any of the forms above, including `TO DEFAULT`): lasts only for the
    /// current transaction.
    SetLocal {
        /// Parameter name.
        name: String,
    },
    /// `RESET name`, `RESET TIME ZONE`, `RESET ROLE`, `RESET SESSION AUTHORIZATION`; also
    /// `SET name {TO|=} DEFAULT`, `SET TIME ZONE {DEFAULT|LOCAL}`, `SET NAMES [DEFAULT]` and
    /// `SET SESSION AUTHORIZATION DEFAULT`, which PostgreSQL executes as a reset.
    Reset {
        /// Parameter name.
        name: String,
    },
    /// `RESET ALL`.
    ResetAll,
    /// `DISCARD ALL`.
    DiscardAll,
    /// `DISCARD PLANS | SEQUENCES | TEMP | TEMPORARY`.
    DiscardOther,
    /// `DEALLOCATE [PREPARE] name` (identifier rules: lowercased unless double-quoted).
    Deallocate {
        /// Prepared statement name.
        name: String,
    },
    /// `DEALLOCATE [PREPARE] ALL`.
    DeallocateAll,
    /// SQL-level `PREPARE name ...` (not `PREPARE TRANSACTION`).
    Prepare {
        /// Prepared statement name.
        name: String,
    },
    /// `LISTEN channel`.
    Listen,
    /// A call to a session-level advisory lock function anywhere in the statement:
    /// `pg_advisory_lock`, `pg_advisory_lock_shared`, `pg_try_advisory_lock`,
    /// `pg_try_advisory_lock_shared` (not the `_xact_` variants, not `pg_advisory_unlock*`).
    AdvisoryLock,
    /// `DECLARE ... CURSOR WITH HOLD ...`.
    CursorWithHold,
    /// `CREATE [OR REPLACE] [GLOBAL|LOCAL] {TEMP|TEMPORARY} [RECURSIVE] {TABLE|VIEW|SEQUENCE} ...`,
    /// `CREATE {TABLE|VIEW|SEQUENCE} pg_temp.name ...` and `SELECT ... INTO TEMP ...`, except a
    /// table created `ON COMMIT DROP` (gone with the transaction, so `Other`).
    CreateTemp,
    /// `SET SESSION CHARACTERISTICS AS TRANSACTION ...`: sets these session defaults
    /// (`default_transaction_isolation`, `default_transaction_read_only`,
    /// `default_transaction_deferrable`).
    SessionCharacteristics {
        /// The defaults it sets.
        names: Vec<String>,
    },
    /// SQL-level `EXECUTE name ...` of a statement prepared with SQL `PREPARE`, also inside
    /// `EXPLAIN` and `CREATE TABLE ... AS`.
    Execute {
        /// Prepared statement name.
        name: String,
    },
    /// `DO` blocks and `CALL`: code that runs now and may change session state in ways the
    /// statement's text does not show.
    Opaque,
    /// `SET TRANSACTION ...`, `SET CONSTRAINTS ...` and everything else.
    Other,
}

/// The `set_config(name, value, is_local)` calls in a statement.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum SetConfigCalls {
    /// None.
    #[default]
    None,
    /// Calls naming these parameters with string literals (lowercased, as PostgreSQL folds
    /// GUC names).
    Names(Vec<String>),
    /// At least one call whose parameter name is not a plain literal.
    Unknown,
}

/// One top-level statement of a query string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Statement<'a> {
    /// The statement's text, trimmed of surrounding whitespace and comments and of its
    /// terminating `;`.
    pub(crate) text: &'a str,
    /// What the statement does to session state.
    pub(crate) command: Command,
    /// Its `set_config` calls.
    pub(crate) set_config: SetConfigCalls,
    /// It calls a function not known to leave session state alone (a user's function may
    /// `SET`, lock, `LISTEN` or create temporary tables where the text does not show it).
    pub(crate) calls_unknown: bool,
}

/// Splits `sql` into top-level statements (on `;` outside quotes, comments, dollar quotes,
/// parentheses and `BEGIN ATOMIC ... END` routine bodies) and classifies each. Empty statements
/// (`;;`, whitespace, comment-only) are skipped.
pub(crate) fn statements(sql: &str) -> Vec<Statement<'_>> {
    let mut out = Vec::new();
    let lex = Lexer::new(sql);
    let mut span: Option<(usize, usize)> = None;
    let mut paren = 0usize;
    let mut routine = Routine::Start;
    let mut after_begin = false;
    let mut atomic = 0usize;
    let mut push = |span: Option<(usize, usize)>| {
        if let Some(text) = span.and_then(|(a, b)| sql.get(a..b)) {
            out.push(Statement {
                text,
                command: classify(text),
                set_config: set_config_calls(text),
                calls_unknown: calls_unknown_function(text),
            });
        }
    };
    for t in lex {
        match t.kind {
            Kind::Punct(b';') if paren == 0 && atomic == 0 => {
                push(span.take());
                routine = Routine::Start;
                after_begin = false;
                continue;
            }
            Kind::Punct(b'(') => paren += 1,
            Kind::Punct(b')') => paren = paren.saturating_sub(1),
            _ => {}
        }
        // `;` inside a SQL-standard routine body (`CREATE FUNCTION ... BEGIN ATOMIC ...; END`)
        // does not end the statement; the server's grammar knows, so must we.
        let word = if t.kind == Kind::Word {
            sql.get(t.start..t.end)
        } else {
            None
        };
        routine = routine.step(word);
        if let Some(w) = word.filter(|_| routine == Routine::Body) {
            if atomic > 0 {
                if w.eq_ignore_ascii_case("case") {
                    atomic += 1;
                } else if w.eq_ignore_ascii_case("end") {
                    atomic -= 1;
                }
            } else if after_begin && w.eq_ignore_ascii_case("atomic") {
                atomic = 1;
            }
        }
        after_begin = paren == 0
            && atomic == 0
            && routine == Routine::Body
            && word.is_some_and(|w| w.eq_ignore_ascii_case("begin"));
        span = Some((span.map_or(t.start, |s| s.0), t.end));
    }
    push(span);
    out
}

/// Cheap pre-filter over raw bytes: false means no statement in `sql` can classify as anything
/// but [`Command::Other`], so [`statements`] need not run. May return true spuriously (a keyword
/// inside a string or a longer word); never false when some statement would classify otherwise.
/// No allocation, one pass.
pub(crate) fn needs_attention(sql: &[u8]) -> bool {
    // Every non-Other classification needs one of these words at the start of a word
    // ("temporary" starts with "temp"; `_` counts as a word break so that "pg_temp" and
    // "pg_advisory_lock" are seen), except a function or schema name spelled with Unicode
    // escapes, hence `U&"`. Requiring the word start keeps "offset", "dataset" or "attempt" from
    // sending ordinary queries to the full classifier. A table of possible first bytes keeps the
    // common byte to one load and branch; the second byte picks the word to compare.
    // One pass that visits each word once: a word's first byte is looked at, the rest of its
    // letters skipped in a tight loop. Only letters hide a word start: the scanner ends a
    // number before a letter (`1set_config(...)` is `1` and a call).
    let n = sql.len();
    let mut i = 0;
    let mut comments = None;
    while i < n {
        let b = sql[i];
        let class = BYTE_CLASS[b as usize];
        i += 1;
        if class == 0 {
            continue;
        }
        if class & PAREN != 0 {
            if !known_before_paren(&sql[..i - 1])
                || *comments.get_or_insert_with(|| has_comment(sql))
            {
                // An unknown name's call; or a comment, which may stand between a name and
                // its `(`, or end in a keyword.
                return true;
            }
            continue;
        }
        if class & FIRST != 0 && i < n {
            let rest = &sql[i - 1..];
            let hit = match (b | 0x20, sql[i] | 0x20) {
                // The word `SET` only as a statement's first (`UPDATE t SET` is every other
                // write); `set_config` anywhere.
                (b's', b'e') => {
                    starts_ci(rest, b"set")
                        && (!word_ci(rest, b"set")
                            || starts_statement(&sql[..i - 1])
                            || *comments.get_or_insert_with(|| has_comment(sql)))
                }
                (b'r', b'e') => starts_ci(rest, b"reset"),
                (b'd', b'i') => starts_ci(rest, b"discard"),
                (b'd', b'e') => starts_ci(rest, b"deallocate"),
                (b'p', b'r') => starts_ci(rest, b"prepare"),
                (b'l', b'i') => starts_ci(rest, b"listen"),
                (b'a', b'd') => starts_ci(rest, b"advisory"),
                (b'h', b'o') => starts_ci(rest, b"hold"),
                (b't', b'e') => starts_ci(rest, b"temp"),
                (b'd', b'o') => word_ci(rest, b"do"),
                (b'c', b'a') => word_ci(rest, b"call"),
                (b'e', b'x') => word_ci(rest, b"execute") || word_ci(rest, b"explain"),
                (b'u', b'&') => rest.get(2) == Some(&b'"'),
                _ => false,
            };
            if hit {
                return true;
            }
        }
        // A letter (every first byte is one): the rest of the word hides no word start.
        i = skip_letters(sql, i);
    }
    false
}

/// The index of the first byte at or after `i` that does not hide a word start (see
/// [`hides_word_start`]), found eight bytes at a time: the pre-filter spends most of its time
/// skipping the rest of words.
fn skip_letters(sql: &[u8], mut i: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    while let Some(chunk) = sql.get(i..i + 8) {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        let x = u64::from_le_bytes(bytes);
        // Each byte lowercased, its high bit cleared: at most 0x7f, so the additions below
        // never carry into the next byte. A byte's high bit then says `y >= b'a'`, and
        // `y > b'z'`.
        let y = (x | (0x20 * ONES)) & !HIGH;
        let from_a = y + (0x80 - u64::from(b'a')) * ONES;
        let past_z = y + (0x80 - u64::from(b'z') - 1) * ONES;
        // A letter: ASCII a-z in either case, or any byte from 0x80 (multi-byte characters).
        let letters = (x | (from_a & !past_z)) & HIGH;
        let others = !letters & HIGH;
        if others != 0 {
            return i + (others.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < sql.len() && BYTE_CLASS[sql[i] as usize] & LETTER != 0 {
        i += 1;
    }
    i
}

/// Byte classes for the pre-filter: [`LETTER`] (see [`hides_word_start`]), [`FIRST`] (a first
/// byte of a word it looks for, in either case; all letters) and [`PAREN`]; 0 for the rest, so
/// the common byte is one load and one branch.
static BYTE_CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        if hides_word_start(b as u8) {
            t[b] = LETTER;
        }
        b += 1;
    }
    let firsts = b"sdplahtuceSDPLAHTUCErR";
    let mut i = 0;
    while i < firsts.len() {
        t[firsts[i] as usize] |= FIRST;
        i += 1;
    }
    t[b'(' as usize] = PAREN;
    t
};
const LETTER: u8 = 1;
const FIRST: u8 = 2;
const PAREN: u8 = 4;

/// Whether a word starting after `b` is the tail of a longer word. A digit is not enough: the
/// scanner ends a number before a letter (`1set_config(...)` is `1` and a call), and a digit
/// inside an identifier (`t1set`) only makes the pre-filter say true spuriously.
const fn hides_word_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b >= 0x80
}

/// Whether `b` can be in the middle of a word such as an identifier: letters, digits and the
/// bytes of multi-byte characters, which PostgreSQL allows in identifiers (`_` is not treated
/// as one here, see [`needs_attention`]).
const fn continues_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b >= 0x80
}

/// Nothing but blanks since the start of `head` or its last `;`: a word after it may be a
/// statement's first (a comment before it is the caller's to rule out).
fn starts_statement(head: &[u8]) -> bool {
    head.iter()
        .rev()
        .find(|&&b| !lex::is_space(b))
        .is_none_or(|&b| b == b';')
}

/// `hay` starts with the whole word `kw` (lowercase), ignoring ASCII case.
fn word_ci(hay: &[u8], kw: &[u8]) -> bool {
    starts_ci(hay, kw)
        && hay
            .get(kw.len())
            .is_none_or(|&b| !continues_word(b) && b != b'_')
}

/// `hay` contains `kw` (lowercase), ignoring ASCII case.
fn contains_ci(hay: &[u8], kw: &[u8]) -> bool {
    hay.windows(kw.len()).any(|w| w.eq_ignore_ascii_case(kw))
}

/// `hay` starts with `kw` (lowercase ASCII letters), ignoring ASCII case.
fn starts_ci(hay: &[u8], kw: &[u8]) -> bool {
    // `| 0x20` maps only 'X' and 'x' to 'x', so this is exact for letters.
    hay.len() >= kw.len() && hay.iter().zip(kw).all(|(&h, &k)| h | 0x20 == k)
}

/// Where a statement stands in recognising `CREATE [OR REPLACE] {FUNCTION|PROCEDURE}`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Routine {
    Start,
    Create,
    CreateOr,
    CreateOrReplace,
    Body,
    No,
}

impl Routine {
    fn step(self, word: Option<&str>) -> Self {
        let is = |k: &str| word.is_some_and(|w| w.eq_ignore_ascii_case(k));
        let routine = is("function") || is("procedure");
        match self {
            Self::Start if is("create") => Self::Create,
            Self::Create if is("or") => Self::CreateOr,
            Self::CreateOr if is("replace") => Self::CreateOrReplace,
            Self::Create | Self::CreateOrReplace if routine => Self::Body,
            Self::Body => Self::Body,
            _ => Self::No,
        }
    }
}

#[path = "sql_builtins.rs"]
mod builtins;
#[path = "sql_calls.rs"]
mod calls;

use calls::{calls_unknown_function, has_comment, known_before_paren};
#[path = "sql_lex.rs"]
mod lex;

use lex::{Cursor, Kind, Lexer};

#[path = "sql_verbs.rs"]
mod verbs;

use verbs::classify;

/// The `set_config` calls in one statement's text.
fn set_config_calls(text: &str) -> SetConfigCalls {
    if !contains_ci(text.as_bytes(), b"set_config") {
        return SetConfigCalls::None;
    }
    let mut c = Cursor::new(text);
    let mut names = Vec::new();
    while let Some(t) = c.next() {
        let hit = match t.kind {
            Kind::Word => c.text(t).eq_ignore_ascii_case("set_config"),
            Kind::Ident => c.inner(t) == "set_config",
            _ => false,
        };
        if !hit || !Cursor::is_punct(c.peek(), b'(') {
            continue;
        }
        c.next();
        let arg = c.next();
        let literal = arg.filter(|a| a.kind == Kind::Str).and_then(|a| {
            // Only plain '...' literals: escapes (E'..', U&'..') could spell any name.
            let raw = c.text(a);
            raw.starts_with('\'').then(|| c.inner(a).replace("''", "'"))
        });
        match literal {
            // A cast of the literal (`'x'::text`) still names x.
            Some(name) if Cursor::is_punct(c.peek(), b',') || Cursor::is_punct(c.peek(), b':') => {
                let name = name.to_ascii_lowercase();
                if !names.contains(&name) {
                    names.push(name);
                }
            }
            _ => return SetConfigCalls::Unknown,
        }
    }
    if names.is_empty() {
        SetConfigCalls::None
    } else {
        SetConfigCalls::Names(names)
    }
}

/// A reference to the view `pg_prepared_statements` in a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ViewRef {
    /// Its bytes, with the `pg_catalog.` qualifier when given.
    pub(crate) range: std::ops::Range<usize>,
    /// An alias follows (`... pg_prepared_statements ps`, `... AS ps`).
    pub(crate) aliased: bool,
}

/// Words that may follow a table reference without being its alias.
const AFTER_TABLE: &[&str] = &[
    "where",
    "join",
    "inner",
    "left",
    "right",
    "full",
    "cross",
    "natural",
    "on",
    "using",
    "order",
    "group",
    "having",
    "limit",
    "offset",
    "fetch",
    "union",
    "intersect",
    "except",
    "window",
    "for",
    "returning",
    "tablesample",
    "into",
    "with",
];

/// References to the view `pg_prepared_statements` (a session's own prepared statements, which
/// in transaction pooling mode must show the client's statements, not the server connection's).
pub(crate) fn prepared_statements_refs(sql: &str) -> Vec<ViewRef> {
    const VIEW: &str = "pg_prepared_statements";
    let mut out = Vec::new();
    if !contains_ci(sql.as_bytes(), VIEW.as_bytes()) {
        return out;
    }
    let is_name = |c: &Cursor<'_>, t: lex::Token, name: &str| match t.kind {
        Kind::Word => c.text(t).eq_ignore_ascii_case(name),
        Kind::Ident => c.inner(t) == name,
        _ => false,
    };
    let mut c = Cursor::new(sql);
    // The last two tokens, to see a `pg_catalog .` qualifier.
    let mut prev: [Option<lex::Token>; 2] = [None, None];
    while let Some(t) = c.next() {
        if is_name(&c, t, VIEW) && !Cursor::is_punct(c.peek(), b'.') {
            let dotted = Cursor::is_punct(prev[1], b'.');
            let qualifier = prev[0].filter(|q| dotted && is_name(&c, *q, "pg_catalog"));
            // Another schema's `pg_prepared_statements` is not the catalog view.
            if !dotted || qualifier.is_some() {
                let aliased = match c.peek() {
                    Some(n) if n.kind == Kind::Word => !AFTER_TABLE
                        .iter()
                        .any(|kw| c.text(n).eq_ignore_ascii_case(kw)),
                    Some(n) => matches!(n.kind, Kind::Ident | Kind::UIdent),
                    None => false,
                };
                out.push(ViewRef {
                    range: qualifier.map_or(t.start, |q| q.start)..t.end,
                    aliased,
                });
            }
        }
        prev = [prev[1], Some(t)];
    }
    out
}

/// Session-level advisory lock functions.
const ADVISORY: &[&str] = &[
    "pg_advisory_lock",
    "pg_advisory_lock_shared",
    "pg_try_advisory_lock",
    "pg_try_advisory_lock_shared",
];

/// The statement calls a session-level advisory lock function.
fn advisory_lock(text: &str) -> bool {
    let mut c = Cursor::new(text);
    while let Some(t) = c.next() {
        let hit = match t.kind {
            Kind::Word => ADVISORY.iter().any(|f| c.text(t).eq_ignore_ascii_case(f)),
            Kind::Ident => ADVISORY.contains(&c.inner(t)),
            Kind::UIdent => c
                .ident(Some(t))
                .is_some_and(|n| ADVISORY.contains(&n.as_str())),
            _ => false,
        };
        if hit && Cursor::is_punct(c.peek(), b'(') {
            return true;
        }
    }
    false
}

#[cfg(test)]
#[path = "sql_tests.rs"]
mod tests;
