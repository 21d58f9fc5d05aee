//! Tokens of SQL text as PostgreSQL's scanner sees them, reduced to what [`super`] needs to
//! classify statements: token kinds and boundaries, plus identifier resolution.

/// Token kinds; only as fine as classification needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// Unquoted identifier or keyword.
    Word,
    /// `"quoted identifier"`.
    Ident,
    /// `U&"identifier"` with Unicode escapes.
    UIdent,
    /// Any string constant: `'...'`, `E'...'`, `U&'...'`, `B'...'`, `X'...'`, `N'...'`.
    Str,
    /// `$tag$...$tag$`.
    Dollar,
    /// Number or `$n` parameter.
    Num,
    /// Any other single byte (operators, punctuation).
    Punct(u8),
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Token {
    pub(super) kind: Kind,
    pub(super) start: usize,
    pub(super) end: usize,
    /// Content between the quotes, for quoted identifiers and strings.
    inner: (usize, usize),
}

/// PostgreSQL's scanner, reduced to token boundaries. Unterminated constructs run to the end.
#[derive(Clone)]
pub(super) struct Lexer<'a> {
    s: &'a [u8],
    pos: usize,
}

pub(super) fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

fn ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

fn ident_cont(b: u8) -> bool {
    ident_start(b) || b.is_ascii_digit() || b == b'$'
}

impl<'a> Lexer<'a> {
    pub(super) fn new(s: &'a str) -> Self {
        Self {
            s: s.as_bytes(),
            pos: 0,
        }
    }

    /// Byte at `i`, or 0 past the end (0 matches nothing the lexer looks for).
    fn at(&self, i: usize) -> u8 {
        self.s.get(i).copied().unwrap_or(0)
    }

    fn skip_trivia(&mut self) {
        loop {
            let b = self.at(self.pos);
            if is_space(b) {
                self.pos += 1;
            } else if b == b'-' && self.at(self.pos + 1) == b'-' {
                let rest = &self.s[self.pos..];
                self.pos += rest
                    .iter()
                    .position(|&c| c == b'\n' || c == b'\r')
                    .unwrap_or(rest.len());
            } else if b == b'/' && self.at(self.pos + 1) == b'*' {
                self.pos = self.block_comment_end(self.pos + 2);
            } else {
                return;
            }
        }
    }

    /// End of a `/* ... */` comment whose body starts at `i`; comments nest.
    fn block_comment_end(&self, mut i: usize) -> usize {
        let mut depth = 0usize;
        while i < self.s.len() {
            match (self.s[i], self.at(i + 1)) {
                (b'/', b'*') => {
                    depth += 1;
                    i += 2;
                }
                (b'*', b'/') => {
                    if depth == 0 {
                        return i + 2;
                    }
                    depth -= 1;
                    i += 2;
                }
                _ => i += 1,
            }
        }
        self.s.len()
    }

    /// Scans a quoted body starting at `i` up to the closing `q` (doubled `q` is an escaped
    /// one; with `backslash`, `\` escapes the next byte). Returns (content end, token end).
    fn quoted_end(&self, mut i: usize, q: u8, backslash: bool) -> (usize, usize) {
        while i < self.s.len() {
            let b = self.s[i];
            if backslash && b == b'\\' {
                i += 2;
            } else if b == q {
                if self.at(i + 1) != q {
                    return (i, i + 1);
                }
                i += 2;
            } else {
                i += 1;
            }
        }
        (self.s.len(), self.s.len())
    }

    fn quoted(
        &self,
        kind: Kind,
        body: usize,
        q: u8,
        backslash: bool,
    ) -> (Kind, usize, (usize, usize)) {
        let (inner_end, end) = self.quoted_end(body, q, backslash);
        (kind, end, (body, inner_end))
    }

    /// At a `$`: a dollar-quoted string, a `$n` parameter, or a lone `$`.
    fn dollar(&self, start: usize) -> (Kind, usize) {
        let s = self.s;
        let mut j = start + 1;
        if ident_start(self.at(j)) {
            j += 1;
            while ident_start(self.at(j)) || self.at(j).is_ascii_digit() {
                j += 1;
            }
        }
        if self.at(j) == b'$' {
            let delim = &s[start..=j];
            let body = j + 1;
            // Tags never contain `$`, so checking only at `$` bytes keeps this linear.
            let mut k = body;
            while k < s.len() {
                if s[k] == b'$' && s[k..].starts_with(delim) {
                    return (Kind::Dollar, k + delim.len());
                }
                k += 1;
            }
            return (Kind::Dollar, s.len());
        }
        let digits = s[start + 1..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if digits > 0 {
            (Kind::Num, start + 1 + digits)
        } else {
            (Kind::Punct(b'$'), start + 1)
        }
    }
}

impl Iterator for Lexer<'_> {
    type Item = Token;

    fn next(&mut self) -> Option<Token> {
        self.skip_trivia();
        let start = self.pos;
        let b = *self.s.get(start)?;
        let n1 = self.at(start + 1);
        let n2 = self.at(start + 2);
        let none = (0, 0);
        let (kind, end, inner) = match b {
            b'\'' => self.quoted(Kind::Str, start + 1, b'\'', false),
            b'"' => self.quoted(Kind::Ident, start + 1, b'"', false),
            b'$' => {
                let (kind, end) = self.dollar(start);
                (kind, end, none)
            }
            b'e' | b'E' if n1 == b'\'' => self.quoted(Kind::Str, start + 2, b'\'', true),
            b'b' | b'B' | b'x' | b'X' | b'n' | b'N' if n1 == b'\'' => {
                self.quoted(Kind::Str, start + 2, b'\'', false)
            }
            b'u' | b'U' if n1 == b'&' && n2 == b'\'' => {
                self.quoted(Kind::Str, start + 3, b'\'', false)
            }
            b'u' | b'U' if n1 == b'&' && n2 == b'"' => {
                self.quoted(Kind::UIdent, start + 3, b'"', false)
            }
            _ if ident_start(b) => {
                let len = self.s[start..]
                    .iter()
                    .take_while(|&&c| ident_cont(c))
                    .count();
                (Kind::Word, start + len, none)
            }
            _ if b.is_ascii_digit() => {
                // Trailing letters lex as a separate word, as older servers do.
                let len = self.s[start..]
                    .iter()
                    .take_while(|&&c| c.is_ascii_digit() || c == b'.' || c == b'_')
                    .count();
                (Kind::Num, start + len, none)
            }
            _ => (Kind::Punct(b), start + 1, none),
        };
        self.pos = end;
        Some(Token {
            kind,
            start,
            end,
            inner,
        })
    }
}

/// Longest identifier PostgreSQL keeps (NAMEDATALEN - 1); longer ones are truncated.
const MAX_IDENT: usize = 63;

/// Tokens of one statement with a little lookahead.
#[derive(Clone)]
pub(super) struct Cursor<'a> {
    src: &'a str,
    lex: Lexer<'a>,
}

impl<'a> Cursor<'a> {
    pub(super) fn new(src: &'a str) -> Self {
        Self {
            src,
            lex: Lexer::new(src),
        }
    }

    /// The whole text being walked.
    pub(super) fn src(&self) -> &'a str {
        self.src
    }

    pub(super) fn next(&mut self) -> Option<Token> {
        self.lex.next()
    }

    pub(super) fn peek(&self) -> Option<Token> {
        self.lex.clone().next()
    }

    pub(super) fn text(&self, t: Token) -> &'a str {
        self.src.get(t.start..t.end).unwrap_or_default()
    }

    pub(super) fn inner(&self, t: Token) -> &'a str {
        self.src.get(t.inner.0..t.inner.1).unwrap_or_default()
    }

    /// `t` is the unquoted keyword `kw`.
    pub(super) fn is(&self, t: Option<Token>, kw: &str) -> bool {
        t.is_some_and(|t| t.kind == Kind::Word && self.text(t).eq_ignore_ascii_case(kw))
    }

    pub(super) fn is_punct(t: Option<Token>, p: u8) -> bool {
        t.is_some_and(|t| t.kind == Kind::Punct(p))
    }

    /// Consumes the next token if it is the keyword `kw`.
    pub(super) fn eat(&mut self, kw: &str) -> bool {
        let hit = self.is(self.peek(), kw);
        if hit {
            self.next();
        }
        hit
    }

    /// The identifier `t` as PostgreSQL resolves it: unquoted folded to lower case, quoted
    /// unescaped, `U&"..."` decoded (consuming a following `UESCAPE 'c'`), then truncated.
    pub(super) fn ident(&mut self, t: Option<Token>) -> Option<String> {
        let t = t?;
        let mut name = match t.kind {
            Kind::Word => self.text(t).to_ascii_lowercase(),
            Kind::Ident => self.inner(t).replace("\"\"", "\""),
            Kind::UIdent => {
                let raw = self.inner(t).replace("\"\"", "\"");
                let mut esc = '\\';
                if self.is(self.peek(), "uescape") {
                    self.next();
                    let s = self.next().filter(|s| s.kind == Kind::Str)?;
                    let mut chars = self.inner(s).chars();
                    esc = chars.next()?;
                    let bad = chars.next().is_some()
                        || esc.is_ascii_hexdigit()
                        || (esc.is_ascii() && is_space(esc as u8))
                        || matches!(esc, '+' | '\'' | '"');
                    if bad {
                        return None;
                    }
                }
                unicode_unescape(&raw, esc)?
            }
            _ => return None,
        };
        if name.is_empty() {
            return None; // PostgreSQL rejects zero-length delimited identifiers
        }
        if name.len() > MAX_IDENT {
            let mut n = MAX_IDENT;
            while !name.is_char_boundary(n) {
                n -= 1;
            }
            name.truncate(n);
        }
        Some(name)
    }

    /// `t` as an identifier followed by any `.ident` parts: a GUC name like `myapp.tenant`.
    pub(super) fn dotted(&mut self, t: Option<Token>) -> Option<String> {
        let mut name = self.ident(t)?;
        while Self::is_punct(self.peek(), b'.') {
            self.next();
            let part = self.next();
            name.push('.');
            name.push_str(&self.ident(part)?);
        }
        Some(name)
    }
}

/// Decodes the escapes of a `U&"..."` identifier: `<esc>XXXX`, `<esc>+XXXXXX`, `<esc><esc>`,
/// with UTF-16 surrogate pairs combined. `None` where PostgreSQL would raise an error.
fn unicode_unescape(raw: &str, esc: char) -> Option<String> {
    fn hex(chars: &mut std::str::Chars<'_>, n: usize) -> Option<u32> {
        (0..n).try_fold(0u32, |acc, _| Some(acc * 16 + chars.next()?.to_digit(16)?))
    }
    fn code(chars: &mut std::str::Chars<'_>) -> Option<u32> {
        if chars.as_str().starts_with('+') {
            chars.next();
            hex(chars, 6)
        } else {
            hex(chars, 4)
        }
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != esc {
            out.push(c);
            continue;
        }
        if chars.as_str().starts_with(esc) {
            chars.next();
            out.push(esc);
            continue;
        }
        let mut cp = code(&mut chars)?;
        if (0xD800..0xDC00).contains(&cp) {
            if chars.next() != Some(esc) {
                return None;
            }
            let low = code(&mut chars).filter(|l| (0xDC00..0xE000).contains(l))?;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
        }
        out.push(char::from_u32(cp).filter(|&c| c != '\0')?);
    }
    Some(out)
}
