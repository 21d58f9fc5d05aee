//! Raw PostgreSQL wire protocol over blocking TCP, for tests that must send
//! bytes no well-behaved driver would.
//!
//! Formats: <https://www.postgresql.org/docs/current/protocol-message-formats.html>

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use super::HOST;

/// Protocol version 3.0 as sent in StartupMessage (major << 16 | minor).
pub const PROTOCOL_3_0: u32 = 3 << 16;
/// Magic "protocol versions" of the special requests (length 8 or 16).
pub const CANCEL_REQUEST: u32 = 80877102;
pub const SSL_REQUEST: u32 = 80877103;
pub const GSSENC_REQUEST: u32 = 80877104;

/// Authentication request codes carried by 'R' messages.
pub const AUTH_OK: u32 = 0;
pub const AUTH_CLEARTEXT: u32 = 3;
pub const AUTH_MD5: u32 = 5;
pub const AUTH_SASL: u32 = 10;

/// The default per-read timeout: long enough for a loaded CI machine, short
/// enough that a server that silently hangs fails the test quickly.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// StartupMessage: Int32 len, Int32 version, (key\0 value\0)*, \0.
pub fn startup(version: u32, params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = version.to_be_bytes().to_vec();
    for (k, v) in params {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    with_len(None, &body)
}

/// SSLRequest / GSSENCRequest: Int32 8, Int32 code.
pub fn special_request(code: u32) -> Vec<u8> {
    with_len(None, &code.to_be_bytes())
}

/// A typed frontend message: Byte1 tag, Int32 len (self-inclusive), body.
pub fn frontend_msg(tag: u8, body: &[u8]) -> Vec<u8> {
    with_len(Some(tag), body)
}

fn with_len(tag: Option<u8>, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 5);
    out.extend(tag);
    out.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// SASLInitialResponse: mechanism, Int32 length, client-first-message.
pub fn sasl_initial(mechanism: &str, data: &[u8]) -> Vec<u8> {
    let mut body = mechanism.as_bytes().to_vec();
    body.push(0);
    body.extend_from_slice(&(data.len() as u32).to_be_bytes());
    body.extend_from_slice(data);
    frontend_msg(b'p', &body)
}

/// Lowercase hex of the MD5 digest of `parts` concatenated.
fn md5_hex(parts: &[&[u8]]) -> String {
    use md5::{Digest, Md5};
    let mut h = Md5::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// PasswordMessage body for AuthenticationMD5Password:
/// `"md5" + md5(md5(password + user) + salt)`.
pub fn md5_response(user: &str, password: &str, salt: &[u8]) -> String {
    let inner = md5_hex(&[password.as_bytes(), user.as_bytes()]);
    format!("md5{}", md5_hex(&[inner.as_bytes(), salt]))
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendMsg {
    pub tag: u8,
    pub body: Vec<u8>,
}

impl BackendMsg {
    /// Fields of an ErrorResponse/NoticeResponse: (code byte, value).
    pub fn fields(&self) -> Vec<(u8, String)> {
        self.body
            .split(|b| *b == 0)
            .filter(|f| !f.is_empty())
            .map(|f| (f[0], String::from_utf8_lossy(&f[1..]).into_owned()))
            .collect()
    }

    pub fn field(&self, code: u8) -> Option<String> {
        self.fields()
            .into_iter()
            .find(|(c, _)| *c == code)
            .map(|(_, v)| v)
    }

    /// SQLSTATE (`C` field) of an ErrorResponse.
    pub fn sqlstate(&self) -> Option<String> {
        (self.tag == b'E').then(|| self.field(b'C')).flatten()
    }

    /// Primary message (`M` field) of an ErrorResponse.
    pub fn message(&self) -> Option<String> {
        (self.tag == b'E').then(|| self.field(b'M')).flatten()
    }

    fn int32_at(&self, at: usize) -> Option<u32> {
        let b = self.body.get(at..at + 4)?;
        Some(u32::from_be_bytes(b.try_into().ok()?))
    }

    /// The request code of an 'R' (Authentication*) message.
    pub fn auth_code(&self) -> Option<u32> {
        (self.tag == b'R').then(|| self.int32_at(0)).flatten()
    }

    /// Mechanism names of AuthenticationSASL.
    pub fn sasl_mechanisms(&self) -> Vec<String> {
        if self.auth_code() != Some(AUTH_SASL) {
            return Vec::new();
        }
        self.body[4..]
            .split(|b| *b == 0)
            .filter(|m| !m.is_empty())
            .map(|m| String::from_utf8_lossy(m).into_owned())
            .collect()
    }

    /// NegotiateProtocolVersion ('v'): the version the server offers and
    /// the protocol options it did not recognise. The docs call the first
    /// field the "newest minor protocol version", but PostgreSQL and libpq
    /// treat it as a full version (`major << 16 | minor`), e.g. 196608 for
    /// 3.0, so that is what this returns.
    pub fn negotiate_protocol(&self) -> Option<(u32, Vec<String>)> {
        if self.tag != b'v' {
            return None;
        }
        let version = self.int32_at(0)?;
        let count = self.int32_at(4)? as usize;
        let names: Vec<String> = self
            .body
            .get(8..)?
            .split(|b| *b == 0)
            .filter(|n| !n.is_empty())
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect();
        (names.len() == count).then_some((version, names))
    }
}

/// What a read produced.
#[derive(Debug)]
pub enum Reply {
    Msg(BackendMsg),
    /// EOF or reset: the server closed the connection.
    Closed,
    /// Nothing arrived within the read timeout.
    TimedOut,
}

pub struct RawConn {
    pub stream: TcpStream,
    /// After [`RawConn::start_tls`], every byte goes through this TLS session.
    tls: Option<Box<rustls::ClientConnection>>,
    /// What the server sent at login between AuthenticationOk and the first ReadyForQuery
    /// (ParameterStatus, BackendKeyData, notices), filled by the `login_*` constructors.
    pub greeting: Vec<BackendMsg>,
}

/// What a simple query produced: every message up to ReadyForQuery, sorted by kind.
#[derive(Debug, Default)]
pub struct QueryResult {
    /// DataRows, all columns (NULL as `None`).
    pub rows: Vec<Vec<Option<String>>>,
    /// NoticeResponses.
    pub notices: Vec<BackendMsg>,
    /// The ErrorResponse, if any.
    pub error: Option<BackendMsg>,
    /// Everything else before ReadyForQuery (RowDescription, CommandComplete, ...).
    pub other: Vec<BackendMsg>,
}

fn classify(e: io::Error) -> Reply {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Reply::TimedOut,
        // UnexpectedEof (mid-message), ConnectionReset, BrokenPipe, ...
        _ => Reply::Closed,
    }
}

impl RawConn {
    pub fn connect(port: u16) -> RawConn {
        let stream = TcpStream::connect((HOST, port))
            .unwrap_or_else(|e| panic!("connect {HOST}:{port}: {e}"));
        stream.set_nodelay(true).expect("nodelay");
        let mut conn = RawConn {
            stream,
            tls: None,
            greeting: Vec::new(),
        };
        conn.set_read_timeout(READ_TIMEOUT);
        conn.stream
            .set_write_timeout(Some(READ_TIMEOUT))
            .expect("write timeout");
        conn
    }

    /// A second handle on the same plain-TCP connection (e.g. a reader thread next to a
    /// writer).
    pub fn try_clone(&self) -> RawConn {
        assert!(self.tls.is_none(), "try_clone of a TLS connection");
        RawConn {
            stream: self.stream.try_clone().expect("clone socket"),
            tls: None,
            greeting: Vec::new(),
        }
    }

    pub fn set_read_timeout(&mut self, timeout: Duration) {
        self.stream
            .set_read_timeout(Some(timeout))
            .expect("read timeout");
    }

    /// Writes all of `bytes`. Errors are returned, not panicked on: the
    /// server may legitimately have closed the socket already.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        match &mut self.tls {
            Some(tls) => {
                let mut s = rustls::Stream::new(tls.as_mut(), &mut self.stream);
                s.write_all(bytes)?;
                s.flush()
            }
            None => {
                self.stream.write_all(bytes)?;
                self.stream.flush()
            }
        }
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        match &mut self.tls {
            Some(tls) => rustls::Stream::new(tls.as_mut(), &mut self.stream).read_exact(buf),
            None => self.stream.read_exact(buf),
        }
    }

    /// Sends SSLRequest and, on `S`, completes a TLS handshake verifying the server against
    /// the test CA as `127.0.0.1`.
    pub fn start_tls(&mut self) {
        self.send(&special_request(SSL_REQUEST))
            .expect("send SSLRequest");
        let answer = self.read_byte().expect("answer to SSLRequest");
        assert_eq!(answer, b'S', "the server refused TLS");
        let config = super::certs::client_tls_config(&super::pg().ca_file);
        let name = rustls::pki_types::ServerName::try_from(super::HOST)
            .expect("server name")
            .to_owned();
        let mut tls =
            rustls::ClientConnection::new(std::sync::Arc::new(config), name).expect("TLS client");
        while tls.is_handshaking() {
            tls.complete_io(&mut self.stream).expect("TLS handshake");
        }
        self.tls = Some(Box::new(tls));
    }

    /// The next byte without consuming it, or how the read ended.
    pub fn peek_byte(&mut self) -> Result<u8, Reply> {
        let mut b = [0u8; 1];
        match self.stream.peek(&mut b) {
            Ok(0) => Err(Reply::Closed),
            Ok(_) => Ok(b[0]),
            Err(e) => Err(classify(e)),
        }
    }

    /// Reads the single-byte answer to SSLRequest/GSSENCRequest.
    pub fn read_byte(&mut self) -> Result<u8, Reply> {
        let mut b = [0u8; 1];
        self.read_exact(&mut b).map_err(classify)?;
        Ok(b[0])
    }

    /// Reads one backend message (Byte1 tag, Int32 len, body).
    pub fn read_msg(&mut self) -> Reply {
        let mut head = [0u8; 5];
        if let Err(e) = self.read_exact(&mut head) {
            return classify(e);
        }
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        assert!(
            (4..=16 << 20).contains(&len),
            "implausible backend message: tag {:?} len {len}",
            head[0] as char
        );
        let mut body = vec![0u8; len - 4];
        if let Err(e) = self.read_exact(&mut body) {
            return classify(e);
        }
        Reply::Msg(BackendMsg { tag: head[0], body })
    }

    /// Reads a message, panicking if the connection closed or timed out.
    pub fn expect_msg(&mut self, context: &str) -> BackendMsg {
        match self.read_msg() {
            Reply::Msg(m) => m,
            other => panic!("{context}: expected a message, got {other:?}"),
        }
    }

    /// Reads until a message tagged `tag`, skipping ParameterStatus,
    /// BackendKeyData and NoticeResponse; panics on anything else
    /// (including an ErrorResponse, whose fields are shown).
    pub fn skip_until(&mut self, tag: u8, context: &str) -> BackendMsg {
        loop {
            let m = self.expect_msg(context);
            match m.tag {
                t if t == tag => return m,
                b'S' | b'K' | b'N' => continue,
                _ => panic!(
                    "{context}: expected {:?}, got {m:?} {:?}",
                    tag as char,
                    m.fields()
                ),
            }
        }
    }

    /// Asserts the server answers with an ErrorResponse whose SQLSTATE is in
    /// `codes` or closes the connection; an empty `codes` accepts any
    /// SQLSTATE. A silent server (read timeout) fails. Returns the error,
    /// if one was sent. Messages before the error (e.g. a NoticeResponse)
    /// are skipped.
    pub fn expect_error_or_close(&mut self, codes: &[&str], context: &str) -> Option<BackendMsg> {
        loop {
            match self.read_msg() {
                Reply::Closed => return None,
                Reply::TimedOut => panic!("{context}: server neither answered nor closed"),
                Reply::Msg(m) if m.tag == b'E' => {
                    let code = m.sqlstate().unwrap_or_default();
                    assert!(
                        codes.is_empty() || codes.contains(&code.as_str()),
                        "{context}: SQLSTATE {code}, expected one of {codes:?}: {:?}",
                        m.fields()
                    );
                    return Some(m);
                }
                Reply::Msg(m) if m.tag == b'N' => continue,
                Reply::Msg(m) => panic!("{context}: expected error or close, got {m:?}"),
            }
        }
    }

    /// Asserts the connection gets closed (EOF/reset) within the read
    /// timeout, ignoring an ErrorResponse sent first.
    pub fn expect_closed(&mut self, context: &str) {
        if self.expect_error_or_close(&[], context).is_some() {
            match self.read_msg() {
                Reply::Closed => {}
                other => panic!("{context}: expected close after the error, got {other:?}"),
            }
        }
    }

    /// Sends a StartupMessage and completes password authentication (SCRAM-SHA-256, md5 or
    /// cleartext), returning after the first ReadyForQuery.
    pub fn login_password(port: u16, user: &str, password: &str, db: &str) -> RawConn {
        Self::login_with(port, false, user, password, db, &[])
    }

    /// Like [`Self::login_password`], over TLS when `tls`, with extra startup parameters;
    /// the login's ParameterStatus and BackendKeyData messages are kept in `greeting`.
    pub fn login_with(
        port: u16,
        tls: bool,
        user: &str,
        password: &str,
        db: &str,
        params: &[(&str, &str)],
    ) -> RawConn {
        let mut conn = RawConn::connect(port);
        if tls {
            conn.start_tls();
        }
        let mut all = vec![("user", user), ("database", db)];
        all.extend_from_slice(params);
        conn.send(&startup(PROTOCOL_3_0, &all))
            .expect("send startup");
        let req = conn.skip_until(b'R', "auth request");
        let response = match req.auth_code() {
            Some(AUTH_MD5) => Some(md5_response(user, password, &req.body[4..8])),
            Some(AUTH_CLEARTEXT) => Some(password.to_string()),
            Some(AUTH_SASL) => {
                // Ends with AuthenticationOk read.
                conn.scram_exchange(password);
                None
            }
            other => panic!("login_password: unsupported auth request {other:?}"),
        };
        if let Some(response) = response {
            let mut body = response.into_bytes();
            body.push(0);
            conn.send(&frontend_msg(b'p', &body))
                .expect("send password");
            let ok = conn.skip_until(b'R', "AuthenticationOk");
            assert_eq!(ok.auth_code(), Some(AUTH_OK), "AuthenticationOk expected");
        }
        loop {
            let m = conn.expect_msg("login greeting");
            match m.tag {
                b'Z' => return conn,
                b'S' | b'K' | b'N' => conn.greeting.push(m),
                _ => panic!("login: unexpected {m:?} {:?}", m.fields()),
            }
        }
    }

    /// The value of a ParameterStatus the server sent at login.
    pub fn parameter(&self, name: &str) -> Option<String> {
        self.greeting
            .iter()
            .rev()
            .filter(|m| m.tag == b'S')
            .find_map(|m| {
                let mut parts = m.body.split(|b| *b == 0);
                let k = parts.next()?;
                let v = parts.next()?;
                (k == name.as_bytes()).then(|| String::from_utf8_lossy(v).into_owned())
            })
    }

    /// The process id of the login's BackendKeyData.
    pub fn backend_pid(&self) -> Option<u32> {
        self.greeting
            .iter()
            .find(|m| m.tag == b'K')
            .and_then(|m| m.int32_at(0))
    }

    /// Runs a simple query and returns everything it produced up to ReadyForQuery.
    pub fn query(&mut self, sql: &str) -> QueryResult {
        let mut body = sql.as_bytes().to_vec();
        body.push(0);
        self.send(&frontend_msg(b'Q', &body)).expect("send Query");
        self.read_until_ready(sql)
    }

    /// Reads messages up to ReadyForQuery (after a query or a Sync), sorted by kind.
    pub fn read_until_ready(&mut self, context: &str) -> QueryResult {
        let mut r = QueryResult::default();
        loop {
            let m = self.expect_msg(context);
            match m.tag {
                b'D' => r.rows.push(columns(&m.body)),
                b'N' => r.notices.push(m),
                b'E' => r.error = Some(m),
                b'Z' => return r,
                _ => r.other.push(m),
            }
        }
    }

    /// Answers AuthenticationSASL (already read) with SCRAM-SHA-256 up to AuthenticationOk,
    /// using lakepool's own SCRAM client.
    pub fn scram_exchange(&mut self, password: &str) {
        use lakepool::auth::scram::{ScramClient, salted_password};
        let mut client = ScramClient::new(password, None, false);
        self.send(&sasl_initial(client.mechanism(), &client.client_first()))
            .expect("send SASLInitialResponse");
        let first = self.expect_msg("SASLContinue");
        assert_eq!(
            first.auth_code(),
            Some(11),
            "SASLContinue expected: {:?}",
            first.fields()
        );
        let params = client.server_first(&first.body[4..]).expect("server-first");
        let fin = client
            .client_final(&salted_password(password, &params))
            .expect("client-final");
        self.send(&frontend_msg(b'p', &fin))
            .expect("send SASLResponse");
        let last = self.expect_msg("SASLFinal");
        assert_eq!(
            last.auth_code(),
            Some(12),
            "SASLFinal expected: {:?}",
            last.fields()
        );
        client
            .server_final(&last.body[4..])
            .expect("server signature");
        let ok = self.skip_until(b'R', "AuthenticationOk");
        assert_eq!(ok.auth_code(), Some(AUTH_OK), "AuthenticationOk expected");
    }

    /// Runs a simple query and returns the first column of each row;
    /// panics on ErrorResponse.
    pub fn simple_query(&mut self, sql: &str) -> Vec<Option<String>> {
        let mut body = sql.as_bytes().to_vec();
        body.push(0);
        self.send(&frontend_msg(b'Q', &body)).expect("send Query");
        let mut rows = Vec::new();
        loop {
            let m = self.expect_msg("simple query");
            match m.tag {
                b'D' => rows.push(first_column(&m.body)),
                b'E' => panic!("query {sql:?} failed: {:?}", m.fields()),
                b'Z' => return rows,
                _ => {}
            }
        }
    }

    /// Sends Terminate and closes the socket.
    pub fn terminate(mut self) {
        drop(self.send(&frontend_msg(b'X', &[])));
    }
}

/// Every column of a DataRow body (NULL as `None`).
fn columns(body: &[u8]) -> Vec<Option<String>> {
    let count = body
        .get(..2)
        .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]) as usize);
    let mut at = 2;
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let Some(len) = body.get(at..at + 4) else {
            break;
        };
        let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
        at += 4;
        match usize::try_from(len) {
            Ok(n) => {
                out.push(
                    body.get(at..at + n)
                        .map(|v| String::from_utf8_lossy(v).into_owned()),
                );
                at += n;
            }
            Err(_) => out.push(None),
        }
    }
    out
}

/// Parse: statement name, query, no parameter types.
pub fn parse(name: &str, sql: &str) -> Vec<u8> {
    let mut body = Vec::new();
    for s in [name, sql] {
        body.extend_from_slice(s.as_bytes());
        body.push(0);
    }
    body.extend_from_slice(&0u16.to_be_bytes());
    frontend_msg(b'P', &body)
}

/// Bind: portal, statement, text parameters (None = NULL), text results.
pub fn bind(portal: &str, statement: &str, params: &[Option<&str>]) -> Vec<u8> {
    let mut body = Vec::new();
    for s in [portal, statement] {
        body.extend_from_slice(s.as_bytes());
        body.push(0);
    }
    body.extend_from_slice(&0u16.to_be_bytes());
    body.extend_from_slice(&(params.len() as u16).to_be_bytes());
    for p in params {
        match p {
            Some(v) => {
                body.extend_from_slice(&(v.len() as i32).to_be_bytes());
                body.extend_from_slice(v.as_bytes());
            }
            None => body.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    body.extend_from_slice(&0u16.to_be_bytes());
    frontend_msg(b'B', &body)
}

/// Execute: portal, no row limit.
pub fn execute(portal: &str) -> Vec<u8> {
    let mut body = portal.as_bytes().to_vec();
    body.push(0);
    body.extend_from_slice(&0u32.to_be_bytes());
    frontend_msg(b'E', &body)
}

/// Describe or Close (`tag` b'D' or b'C') of a statement (`kind` b'S') or portal (b'P').
pub fn target(tag: u8, kind: u8, name: &str) -> Vec<u8> {
    let mut body = vec![kind];
    body.extend_from_slice(name.as_bytes());
    body.push(0);
    frontend_msg(tag, &body)
}

/// Sync.
pub fn sync() -> Vec<u8> {
    frontend_msg(b'S', &[])
}

/// First column of a DataRow body (Int16 count, then Int32 len + bytes).
fn first_column(body: &[u8]) -> Option<String> {
    let len = i32::from_be_bytes(body.get(2..6)?.try_into().ok()?);
    let len = usize::try_from(len).ok()?;
    Some(String::from_utf8_lossy(body.get(6..6 + len)?).into_owned())
}
