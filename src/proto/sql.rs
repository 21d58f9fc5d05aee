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
pub enum Command {
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
pub enum SetConfigCalls {
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
pub struct Statement<'a> {
    /// The statement's text, trimmed of surrounding whitespace and comments and of its
    /// terminating `;`.
    pub text: &'a str,
    /// What the statement does to session state.
    pub command: Command,
    /// Its `set_config` calls.
    pub set_config: SetConfigCalls,
}

/// Splits `sql` into top-level statements (on `;` outside quotes, comments, dollar quotes,
/// parentheses and `BEGIN ATOMIC ... END` routine bodies) and classifies each. Empty statements
/// (`;;`, whitespace, comment-only) are skipped.
pub fn statements(sql: &str) -> Vec<Statement<'_>> {
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
pub fn needs_attention(sql: &[u8]) -> bool {
    // Every non-Other classification needs one of these words at the start of a word
    // ("temporary" starts with "temp"; `_` counts as a word break so that "pg_temp" and
    // "pg_advisory_lock" are seen), except a function or schema name spelled with Unicode
    // escapes, hence `U&"`. Requiring the word start keeps "offset", "dataset" or "attempt" from
    // sending ordinary queries to the full classifier. A table of possible first bytes keeps the
    // common byte to one load and branch; the second byte picks the word to compare.
    // One pass that visits each word once: a word's first byte is looked at, the rest of the
    // word skipped in a tight loop.
    let n = sql.len();
    let mut i = 0;
    while i < n {
        let b = sql[i];
        if !WORD_BYTE[b as usize] {
            i += 1;
            continue;
        }
        if FIRST_BYTE[b as usize] && i + 1 < n {
            let rest = &sql[i..];
            let hit = match (b | 0x20, sql[i + 1] | 0x20) {
                (b's', b'e') => starts_ci(rest, b"set"),
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
        i += 1;
        while i < n && WORD_BYTE[sql[i] as usize] {
            i += 1;
        }
    }
    false
}

/// [`continues_word`] as a table, for the pre-filter's inner loop.
static WORD_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = continues_word(b as u8);
        b += 1;
    }
    t
};

/// Whether `b` can be in the middle of a word such as an identifier: letters, digits and the
/// bytes of multi-byte characters, which PostgreSQL allows in identifiers (`_` is not treated
/// as one here, see [`needs_attention`]).
const fn continues_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b >= 0x80
}

/// First bytes of the words [`needs_attention`] looks for, in either case.
static FIRST_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let firsts = b"sdplahtuceSDPLAHTUCErR";
    let mut i = 0;
    while i < firsts.len() {
        t[firsts[i] as usize] = true;
        i += 1;
    }
    t
};

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

#[path = "sql_lex.rs"]
mod lex;

use lex::{Cursor, Kind, Lexer};

/// Parses what follows a statement's first keyword.
type Parser = fn(&mut Cursor<'_>) -> Command;

/// Statement parsers by first keyword.
const VERBS: &[(&str, Parser)] = &[
    ("set", set),
    ("reset", reset),
    ("discard", discard),
    ("deallocate", deallocate),
    ("prepare", prepare),
    ("listen", listen),
    ("declare", declare),
    ("create", create),
    ("select", select_into_temp),
    ("with", with),
    ("do", opaque),
    ("call", opaque),
    ("execute", execute),
    ("explain", explain),
];

/// Classifies one statement's text (as produced by [`statements`]).
fn classify(text: &str) -> Command {
    let mut c = Cursor::new(text);
    let first = c.next();
    let cmd = VERBS
        .iter()
        .find(|(verb, _)| c.is(first, verb))
        .map_or(Command::Other, |(_, f)| f(&mut c));
    // The byte checks spare a second lexing pass over ordinary statements.
    let b = text.as_bytes();
    if cmd == Command::Other
        && (contains_ci(b, b"advisory") || contains_ci(b, b"u&\""))
        && advisory_lock(text)
    {
        return Command::AdvisoryLock;
    }
    cmd
}

/// After `SET`.
fn set(c: &mut Cursor<'_>) -> Command {
    // `LOCAL`/`SESSION` are modifiers unless they are the name itself (`SET local.x = 1`), and
    // `SESSION` also starts `SESSION AUTHORIZATION|CHARACTERISTICS`.
    let mut ahead = c.clone();
    let modifier = ahead.next();
    let after = ahead.peek();
    let is_name = Cursor::is_punct(after, b'.')
        || Cursor::is_punct(after, b'=')
        || ahead.is(after, "to")
        || ahead.is(after, "authorization")
        || ahead.is(after, "characteristics");
    let local = c.is(modifier, "local") && !is_name;
    if local || (c.is(modifier, "session") && !is_name) {
        c.next();
    }
    let first = c.next();

    // Generic form first: `name {TO|=} value`, `name FROM CURRENT`.
    let mut generic = c.clone();
    if let Some(name) = generic.dotted(first) {
        let op = generic.next();
        let reset = if generic.is(op, "to") || Cursor::is_punct(op, b'=') {
            Some(generic.is(generic.peek(), "default"))
        } else if generic.is(op, "from") && generic.is(generic.peek(), "current") {
            Some(false)
        } else {
            None
        };
        if let Some(reset) = reset {
            return set_result(name, local, reset);
        }
    }

    // Special forms; `reset` where PostgreSQL executes the form as a reset to the default.
    let (name, reset) = if c.is(first, "time") && c.eat("zone") {
        let v = c.peek();
        ("timezone", c.is(v, "default") || c.is(v, "local"))
    } else if c.is(first, "names") {
        let v = c.peek();
        ("client_encoding", v.is_none() || c.is(v, "default"))
    } else if c.is(first, "schema") {
        ("search_path", false)
    } else if c.is(first, "role") {
        ("role", false)
    } else if c.is(first, "session") && c.eat("authorization") {
        ("session_authorization", c.is(c.peek(), "default"))
    } else if c.is(first, "xml") && c.eat("option") {
        ("xmloption", false)
    } else if c.is(first, "session") && c.eat("characteristics") {
        // `AS TRANSACTION ISOLATION LEVEL ...`, `READ ONLY|WRITE`, `[NOT] DEFERRABLE`: the
        // session defaults of the transaction modes.
        return session_characteristics(c);
    } else {
        return Command::Other;
    };
    set_result(name.to_owned(), local, reset)
}

/// `SET SESSION CHARACTERISTICS AS TRANSACTION modes`: which default each mode sets. Several
/// modes may be given; the first decides the name reported, and the caller reads back all three
/// when any is named (see [`Command::SessionCharacteristics`]).
fn session_characteristics(c: &mut Cursor<'_>) -> Command {
    let mut names = Vec::new();
    while let Some(t) = c.next() {
        let name = if c.is(Some(t), "isolation") {
            "default_transaction_isolation"
        } else if c.is(Some(t), "read") {
            "default_transaction_read_only"
        } else if c.is(Some(t), "deferrable") {
            "default_transaction_deferrable"
        } else {
            continue;
        };
        if !names.contains(&name) {
            names.push(name);
        }
    }
    Command::SessionCharacteristics {
        names: names.into_iter().map(str::to_owned).collect(),
    }
}

/// LOCAL wins over a reset: either way the change lasts only for the transaction.
fn set_result(name: String, local: bool, reset: bool) -> Command {
    match (local, reset) {
        (true, _) => Command::SetLocal { name },
        (false, true) => Command::Reset { name },
        (false, false) => Command::Set { name },
    }
}

/// After `RESET`.
fn reset(c: &mut Cursor<'_>) -> Command {
    let first = c.next();
    let name = if c.is(first, "all") {
        return Command::ResetAll;
    } else if c.is(first, "time") && c.eat("zone") {
        "timezone".to_owned()
    } else if c.is(first, "session") && c.eat("authorization") {
        "session_authorization".to_owned()
    } else if c.is(first, "transaction") && c.eat("isolation") {
        // `RESET TRANSACTION ISOLATION LEVEL`: transaction-scoped.
        return Command::Other;
    } else {
        match c.dotted(first) {
            Some(name) => name,
            None => return Command::Other,
        }
    };
    Command::Reset { name }
}

/// After `DISCARD`.
fn discard(c: &mut Cursor<'_>) -> Command {
    let what = c.next();
    if c.is(what, "all") {
        Command::DiscardAll
    } else if ["plans", "sequences", "temp", "temporary"]
        .iter()
        .any(|kw| c.is(what, kw))
    {
        Command::DiscardOther
    } else {
        Command::Other
    }
}

/// After `DEALLOCATE`.
fn deallocate(c: &mut Cursor<'_>) -> Command {
    let mut t = c.next();
    // `DEALLOCATE prepare` deallocates a statement named "prepare".
    if c.is(t, "prepare") && c.peek().is_some() {
        t = c.next();
    }
    if c.is(t, "all") {
        return Command::DeallocateAll;
    }
    match c.ident(t) {
        Some(name) => Command::Deallocate { name },
        None => Command::Other,
    }
}

/// After `PREPARE`.
fn prepare(c: &mut Cursor<'_>) -> Command {
    let t = c.next();
    // Two-phase commit: `PREPARE TRANSACTION 'gid'`.
    if c.is(t, "transaction") && c.peek().is_some_and(|s| s.kind == Kind::Str) {
        return Command::Other;
    }
    match c.ident(t) {
        Some(name) => Command::Prepare { name },
        None => Command::Other,
    }
}

/// After `DO` or `CALL`.
fn opaque(_: &mut Cursor<'_>) -> Command {
    Command::Opaque
}

/// After `EXECUTE`.
fn execute(c: &mut Cursor<'_>) -> Command {
    let t = c.next();
    match c.ident(t) {
        Some(name) => Command::Execute { name },
        None => Command::Other,
    }
}

/// After `EXPLAIN`: `[ANALYZE] [VERBOSE] | (options)` then the statement; only `EXECUTE`
/// matters here.
fn explain(c: &mut Cursor<'_>) -> Command {
    if Cursor::is_punct(c.peek(), b'(') {
        skip_parens(c);
    }
    c.eat("analyze");
    c.eat("analyse");
    c.eat("verbose");
    if c.eat("execute") {
        return execute(c);
    }
    Command::Other
}

/// After `LISTEN`.
fn listen(c: &mut Cursor<'_>) -> Command {
    match c.next() {
        Some(_) => Command::Listen,
        None => Command::Other,
    }
}

/// After `DECLARE`: `name [options] CURSOR [{WITH|WITHOUT} HOLD] FOR query`.
fn declare(c: &mut Cursor<'_>) -> Command {
    c.next(); // the cursor's name, which may itself be "cursor"
    while let Some(t) = c.next() {
        if c.is(Some(t), "cursor") {
            if c.eat("with") && c.eat("hold") {
                return Command::CursorWithHold;
            }
            break;
        }
        if t.kind != Kind::Word || c.is(Some(t), "for") {
            break;
        }
    }
    Command::Other
}

/// After `CREATE`.
fn create(c: &mut Cursor<'_>) -> Command {
    if c.eat("or") && !c.eat("replace") {
        return Command::Other;
    }
    let scoped = c.eat("global") || c.eat("local");
    let mut temp = c.eat("temp") || c.eat("temporary");
    if scoped && !temp {
        return Command::Other;
    }
    c.eat("unlogged");
    c.eat("recursive");
    let kind = c.next();
    let table = c.is(kind, "table");
    if !table && !c.is(kind, "view") && !c.is(kind, "sequence") {
        return Command::Other;
    }
    if !temp {
        // A name qualified with the session's temporary schema also makes a temporary object.
        if c.eat("if") {
            c.eat("not");
            c.eat("exists");
        }
        let schema = c.next();
        temp =
            c.ident(schema).is_some_and(|s| is_temp_schema(&s)) && Cursor::is_punct(c.peek(), b'.');
    }
    if !temp {
        return if table {
            create_as_execute(c)
        } else {
            Command::Other
        };
    }
    if table && on_commit_drop(c) {
        return Command::Other;
    }
    Command::CreateTemp
}

/// Rest of a `CREATE TABLE name ... AS EXECUTE name`.
fn create_as_execute(c: &mut Cursor<'_>) -> Command {
    let mut depth = 0usize;
    while let Some(t) = c.next() {
        match t.kind {
            Kind::Punct(b'(') => depth += 1,
            Kind::Punct(b')') => depth = depth.saturating_sub(1),
            Kind::Word if depth == 0 && c.is(Some(t), "as") => {
                return if c.eat("execute") {
                    execute(c)
                } else {
                    Command::Other
                };
            }
            _ => {}
        }
    }
    Command::Other
}

fn is_temp_schema(s: &str) -> bool {
    s == "pg_temp"
        || s.strip_prefix("pg_temp_")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Rest of a `CREATE TEMP TABLE` has `ON COMMIT DROP` at top level (before any `AS query`).
fn on_commit_drop(c: &mut Cursor<'_>) -> bool {
    let mut depth = 0usize;
    while let Some(t) = c.next() {
        match t.kind {
            Kind::Punct(b'(') => depth += 1,
            Kind::Punct(b')') => depth = depth.saturating_sub(1),
            Kind::Word if depth == 0 => {
                if c.is(Some(t), "as") {
                    return false;
                }
                if c.is(Some(t), "on") && c.eat("commit") && c.eat("drop") {
                    return true;
                }
            }
            _ => {}
        }
    }
    false
}

/// After `SELECT`: `... INTO [GLOBAL|LOCAL] {TEMP|TEMPORARY} [TABLE] name ...` at top level.
fn select_into_temp(c: &mut Cursor<'_>) -> Command {
    if !contains_ci(c.src().as_bytes(), b"temp") {
        return Command::Other;
    }
    let mut depth = 0usize;
    while let Some(t) = c.next() {
        match t.kind {
            Kind::Punct(b'(') => depth += 1,
            Kind::Punct(b')') => depth = depth.saturating_sub(1),
            Kind::Word if depth == 0 && c.is(Some(t), "into") => {
                let scoped = c.eat("global") || c.eat("local");
                if !(c.eat("temp") || c.eat("temporary")) {
                    continue;
                }
                // `INTO temp FROM ...` targets a table named "temp" instead.
                let next = c.peek();
                let named = match next {
                    Some(n) if n.kind == Kind::Word => !SELECT_CLAUSES
                        .iter()
                        .any(|kw| c.text(n).eq_ignore_ascii_case(kw)),
                    Some(n) => matches!(n.kind, Kind::Ident | Kind::UIdent),
                    None => false,
                };
                if scoped || named {
                    return Command::CreateTemp;
                }
            }
            _ => {}
        }
    }
    Command::Other
}

/// After `WITH`: skips the common table expressions; only a main `SELECT` can be `SELECT INTO`.
fn with(c: &mut Cursor<'_>) -> Command {
    if !contains_ci(c.src().as_bytes(), b"temp") {
        return Command::Other;
    }
    c.eat("recursive");
    loop {
        // name [(columns)] AS [NOT] [MATERIALIZED] (query) [SEARCH ... SET col] [CYCLE ... USING col]
        c.next();
        if Cursor::is_punct(c.peek(), b'(') {
            skip_parens(c);
        }
        if !c.eat("as") {
            return Command::Other;
        }
        c.eat("not");
        c.eat("materialized");
        if !skip_parens(c) {
            return Command::Other;
        }
        for (clause, last) in [("search", "set"), ("cycle", "using")] {
            if c.eat(clause) {
                while !c.eat(last) {
                    if c.next().is_none() {
                        return Command::Other;
                    }
                }
                c.next();
            }
        }
        let next = c.next();
        if !Cursor::is_punct(next, b',') {
            return if c.is(next, "select") {
                select_into_temp(c)
            } else {
                Command::Other
            };
        }
    }
}

/// Consumes a parenthesised group if one comes next.
fn skip_parens(c: &mut Cursor<'_>) -> bool {
    if !Cursor::is_punct(c.peek(), b'(') {
        return false;
    }
    let mut depth = 0usize;
    while let Some(t) = c.next() {
        match t.kind {
            Kind::Punct(b'(') => depth += 1,
            Kind::Punct(b')') => depth -= 1,
            _ => {}
        }
        if depth == 0 {
            break;
        }
    }
    true
}

/// Reserved words that may follow a `SELECT ... INTO target`.
const SELECT_CLAUSES: &[&str] = &[
    "from",
    "where",
    "group",
    "having",
    "window",
    "order",
    "limit",
    "offset",
    "fetch",
    "for",
    "union",
    "intersect",
    "except",
];

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
pub struct ViewRef {
    /// Its bytes, with the `pg_catalog.` qualifier when given.
    pub range: std::ops::Range<usize>,
    /// An alias follows (`... pg_prepared_statements ps`, `... AS ps`).
    pub aliased: bool,
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
pub fn prepared_statements_refs(sql: &str) -> Vec<ViewRef> {
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
