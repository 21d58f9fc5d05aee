//! The parsers of the statements that matter to transaction pooling, one per first keyword:
//! each reads what follows its keyword and says what the statement changes.

use super::*;

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
pub(super) fn classify(text: &str) -> Command {
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
