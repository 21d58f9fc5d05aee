//! Calls of functions that may change session state where the SQL does not show it: a
//! statement calling anything but a keyword or a `pg_catalog` built-in (`sql_builtins.rs`) is
//! read back and cleaned up after like `DO` and `CALL`.

use super::lex::{self, Cursor, Kind, Token};

/// For the pre-filter: the name right before a `(` at the end of `head` is a keyword or a
/// built-in function (unqualified), or there is no name (`((`, `= (`). Conservative: a quoted
/// or qualified name is left to the classifier.
pub(super) fn known_before_paren(head: &[u8]) -> bool {
    let mut end = head.len();
    while end > 0 && lex::is_space(head[end - 1]) {
        end -= 1;
    }
    let mut start = end;
    while start > 0 && is_name_byte(head[start - 1]) {
        start -= 1;
    }
    if start == end {
        return end == 0 || head[end - 1] != b'"';
    }
    let mut before = start;
    while before > 0 && lex::is_space(head[before - 1]) {
        before -= 1;
    }
    if before > 0 && matches!(head[before - 1], b'.' | b'"' | b'&') {
        // Qualified (`s . f (`), or the end of a quoted name.
        return false;
    }
    let name = &head[start..end];
    is_known_call(name, true) || (is_plain_name(name) && after_into(&head[..before]))
}

/// An ASCII identifier the lexer reads as one word (not `0f`, a number and a name, nor `$1`).
fn is_plain_name(name: &[u8]) -> bool {
    name.first()
        .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_')
        && name.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_')
}

/// `head` ends with the word `INTO`: the name after it is a table and its `(` a column list
/// (`INSERT INTO t (a, b)`), not a call.
fn after_into(head: &[u8]) -> bool {
    let n = head.len();
    n >= 4 && head[n - 4..].eq_ignore_ascii_case(b"into") && (n == 4 || !is_name_byte(head[n - 5]))
}

/// Whether `sql` may hold a comment (`--` or `/*`, perhaps inside a literal).
pub(super) fn has_comment(sql: &[u8]) -> bool {
    sql.windows(2).any(|w| w == b"--" || w == b"/*")
}

/// Bytes of an unquoted name (a non-ASCII name is never a built-in).
fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

/// `name` (folded to lower case when `fold`, as an unquoted name is) is a keyword or a built-in
/// function whose call leaves session state alone (`sql_calls.rs`).
fn is_known_call(name: &[u8], fold: bool) -> bool {
    super::builtins::SAFE_CALLS
        .binary_search_by(|k| {
            let k = k.as_bytes();
            for (a, b) in k.iter().zip(name) {
                let b = if fold { b.to_ascii_lowercase() } else { *b };
                match a.cmp(&b) {
                    std::cmp::Ordering::Equal => {}
                    o => return o,
                }
            }
            k.len().cmp(&name.len())
        })
        .is_ok()
}

/// Words after which `name (` defines a name or lists columns rather than calling a function:
/// `INSERT INTO t (a, b)`, `CREATE TABLE t (...)`, `COPY t (a) FROM`, `AS g(i)`,
/// `WITH x(a) AS`, `REFERENCES t (id)`, `CREATE FUNCTION f(int)`.
const DEFINES_NAME: &[&str] = &[
    "into",
    "table",
    "copy",
    "as",
    "with",
    "recursive",
    "references",
    "function",
    "procedure",
    "aggregate",
    "routine",
    "view",
];

/// Whether a statement calls a function lakepool does not know to leave session state alone:
/// anything but a keyword or a `pg_catalog` function (unqualified or qualified with
/// `pg_catalog`). A name being defined is not a call.
pub(super) fn calls_unknown_function(text: &str) -> bool {
    if !text.as_bytes().contains(&b'(') {
        return false;
    }
    let mut c = Cursor::new(text);
    // The three tokens before the current one: `before qualifier . name (`.
    let mut back: [Option<Token>; 3] = [None; 3];
    while let Some(t) = c.next() {
        let named = matches!(t.kind, Kind::Word | Kind::Ident | Kind::UIdent);
        if named && Cursor::is_punct(c.peek(), b'(') && !known_call(&c, t, back) {
            return true;
        }
        back = [Some(t), back[0], back[1]];
    }
    false
}

fn known_call(c: &Cursor<'_>, name: Token, back: [Option<Token>; 3]) -> bool {
    let qualified = Cursor::is_punct(back[0], b'.');
    let before = if qualified { back[2] } else { back[0] };
    if DEFINES_NAME.iter().any(|k| c.is(before, k)) {
        return true;
    }
    if qualified {
        let catalog = back[1].is_some_and(|q| match q.kind {
            Kind::Word => c.text(q).eq_ignore_ascii_case("pg_catalog"),
            Kind::Ident => c.inner(q) == "pg_catalog",
            _ => false,
        });
        if !catalog {
            return false;
        }
    }
    match name.kind {
        Kind::Word => is_known_call(c.text(name).as_bytes(), true),
        Kind::Ident => is_known_call(c.inner(name).as_bytes(), false),
        _ => false,
    }
}
