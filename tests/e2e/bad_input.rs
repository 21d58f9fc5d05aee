//! Hostile and malformed client input must get a clean ErrorResponse or a
//! closed socket - never a hang, a crash or a huge allocation - and lakepool
//! must keep serving normal clients afterwards.
//!
//! Message formats: <https://www.postgresql.org/docs/current/protocol-message-formats.html>
//! Startup flow: <https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-START-UP>

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::support::lakepool::database_toml;
use crate::support::wire::{
    self, AUTH_SASL, GSSENC_REQUEST, PROTOCOL_3_0, RawConn, Reply, SSL_REQUEST, frontend_msg,
    special_request, startup,
};
use crate::support::{APP_DB, APP_OWNER, Lakepool, connect, ok_stdout, psql};

const APP_USER: (&str, &str) = ("app", "app_pw");
const MD5_USER: (&str, &str) = ("md5_user", "md5_user_pw");
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(1);
const MAX_MESSAGE_SIZE: usize = 1 << 20;

/// One lakepool for the whole module: no client TLS (so SSLRequest gets
/// 'N'), a 1 s handshake timeout and a 1 MiB message limit. Upstream TLS is
/// off to keep these tests about the client side only. Accepts are not
/// deferred (`tcp_defer_accept = 0`): the silent client below must reach
/// lakepool's own timeout, not wait in the kernel.
fn lakepool() -> &'static Lakepool {
    static POOL: OnceLock<Lakepool> = OnceLock::new();
    POOL.get_or_init(|| {
        let config = format!(
            r#"
[server]
listen = "127.0.0.1:0"
client_tls = "disable"
handshake_timeout = {timeout}
tcp_defer_accept = 0
max_message_size = {MAX_MESSAGE_SIZE}

[pool]
pool_mode = "transaction"
pool_size = 4
query_wait_timeout = 5

[[users]]
name = "{app}"
password = "{app_pw}"

[[users]]
name = "{md5}"
password = "{md5_pw}"

{db}"#,
            timeout = HANDSHAKE_TIMEOUT.as_secs(),
            app = APP_USER.0,
            app_pw = APP_USER.1,
            md5 = MD5_USER.0,
            md5_pw = MD5_USER.1,
            db = database_toml("app", APP_DB, APP_OWNER.0, "APP_OWNER_PASSWORD", "disable"),
        );
        Lakepool::start(&config, &[("APP_OWNER_PASSWORD", APP_OWNER.1)])
    })
}

fn raw() -> RawConn {
    RawConn::connect(lakepool().port())
}

/// A normal client still gets through after the abuse.
fn assert_healthy() {
    let lp = lakepool();
    let out = psql(
        lp.port(),
        APP_USER.0,
        APP_USER.1,
        "app",
        "disable",
        "SELECT 1",
    );
    let logs = lp.logs();
    assert_eq!(
        ok_stdout(&format!("psql via lakepool; logs:\n{logs}"), &out),
        "1"
    );
}

fn app_startup(version: u32) -> Vec<u8> {
    startup(version, &[("user", APP_USER.0), ("database", "app")])
}

/// (a) A startup length below 8 (the minimum: length + version) is a
/// protocol violation.
#[test]
fn startup_length_below_minimum() {
    for len in [0u32, 4, 7] {
        let mut c = raw();
        let mut bytes = len.to_be_bytes().to_vec();
        bytes.extend_from_slice(&PROTOCOL_3_0.to_be_bytes());
        drop(c.send(&bytes));
        c.expect_error_or_close(&["08P01"], &format!("startup length {len}"));
    }
    assert_healthy();
}

/// (b) A huge length must be rejected from the header alone, not by
/// allocating it or waiting for it (which only the 1 s handshake timeout
/// would end; a prompt answer is far below that).
#[test]
fn startup_length_huge() {
    let mut c = raw();
    let start = Instant::now();
    let mut bytes = 0xFFFF_FFF0u32.to_be_bytes().to_vec();
    bytes.extend_from_slice(&PROTOCOL_3_0.to_be_bytes());
    drop(c.send(&bytes));
    c.expect_error_or_close(&["08P01"], "huge startup length");
    let took = start.elapsed();
    assert!(
        took < HANDSHAKE_TIMEOUT * 9 / 10,
        "rejection took {took:?}: lakepool waited for the body instead of checking the length"
    );
    assert_healthy();
}

/// (c) A length that lies (claims 100, sends 10, stalls) is ended by the
/// handshake timeout, not sooner and not never.
#[test]
fn startup_length_lies_then_stalls() {
    let mut c = raw();
    let start = Instant::now();
    let mut bytes = 100u32.to_be_bytes().to_vec();
    bytes.extend_from_slice(&PROTOCOL_3_0.to_be_bytes());
    bytes.extend_from_slice(b"us");
    drop(c.send(&bytes));
    c.expect_closed("stalled startup");
    let took = start.elapsed();
    assert!(
        took >= HANDSHAKE_TIMEOUT / 2,
        "closed after {took:?}: before the handshake timeout, with a valid partial packet"
    );
    assert_healthy();
}

/// A client that connects and says nothing is also timed out (with accepts not deferred; a
/// deferred one waits in the kernel, see `net::listen`).
#[test]
fn silent_client_is_timed_out() {
    let mut c = raw();
    c.expect_closed("silent client");
    assert_healthy();
}

/// (d) Protocol 2.0 is answered with a v3 ErrorResponse, 0A000.
#[test]
fn protocol_2_rejected() {
    let mut c = raw();
    c.send(&app_startup(2 << 16)).expect("send startup");
    let err = c
        .expect_error_or_close(&["0A000"], "protocol 2.0")
        .expect("an ErrorResponse, not just a close");
    let msg = err.message().unwrap_or_default();
    assert!(
        msg.contains("unsupported frontend protocol"),
        "message: {msg}"
    );
    assert_healthy();
}

/// (e) A newer 3.x minor gets NegotiateProtocolVersion ('v') with the
/// version lakepool speaks, then authentication continues as normal.
#[test]
fn protocol_3_5_negotiated_down() {
    let mut c = raw();
    c.send(&app_startup((3 << 16) | 5)).expect("send startup");
    let v = c.expect_msg("NegotiateProtocolVersion");
    let (version, unknown) = v
        .negotiate_protocol()
        .unwrap_or_else(|| panic!("expected 'v', got {v:?}"));
    // Full version number, as PostgreSQL sends it (see negotiate_protocol).
    assert!(
        version >> 16 == 3 && (version & 0xFFFF) < 5,
        "offers {}.{}",
        version >> 16,
        version & 0xFFFF
    );
    assert!(unknown.is_empty(), "no options were sent, got {unknown:?}");
    let auth = c.skip_until(b'R', "auth after negotiation");
    assert_eq!(auth.auth_code(), Some(AUTH_SASL));
    assert!(
        auth.sasl_mechanisms()
            .contains(&"SCRAM-SHA-256".to_string())
    );
    assert_healthy();
}

/// Unrecognised `_pq_.` protocol options are listed in the 'v' message
/// (and do not fail the startup).
#[test]
fn unknown_protocol_option_reported() {
    let mut c = raw();
    c.send(&startup(
        PROTOCOL_3_0,
        &[
            ("user", APP_USER.0),
            ("database", "app"),
            ("_pq_.lakepool_test", "1"),
        ],
    ))
    .expect("send startup");
    let v = c.expect_msg("NegotiateProtocolVersion");
    let (version, unknown) = v
        .negotiate_protocol()
        .unwrap_or_else(|| panic!("expected 'v', got {v:?}"));
    assert_eq!(version, PROTOCOL_3_0, "a 3.0 client must be offered 3.0");
    assert_eq!(unknown, vec!["_pq_.lakepool_test".to_string()]);
    assert_eq!(c.skip_until(b'R', "auth").auth_code(), Some(AUTH_SASL));
    assert_healthy();
}

/// The first byte of the reply must be an ErrorResponse or the connection
/// must close: in particular no 'N'/'S' answering an SSLRequest buried in
/// garbage (lakepool must not resynchronise on the byte stream).
fn expect_rejected(c: &mut RawConn, context: &str) {
    match c.peek_byte() {
        Ok(b'E') => {
            c.expect_error_or_close(&["08P01", "0A000"], context);
        }
        Ok(other) => panic!("{context}: unexpected first byte {:?}", other as char),
        Err(Reply::Closed) => {}
        Err(r) => panic!("{context}: {r:?}"),
    }
}

/// (f) Garbage - an HTTP request, a TLS ClientHello without SSLRequest -
/// followed by an SSLRequest is rejected as a whole.
#[test]
fn garbage_then_ssl_request_rejected() {
    let http = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".to_vec();
    // TLS record header + start of a ClientHello (direct TLS, no SSLRequest).
    let client_hello = vec![
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
    ];
    for (name, mut garbage) in [("http", http), ("tls", client_hello)] {
        let mut c = raw();
        garbage.extend_from_slice(&special_request(SSL_REQUEST));
        drop(c.send(&garbage));
        expect_rejected(&mut c, name);
    }
    // A second SSLRequest after the first was refused is also a violation.
    let mut c = raw();
    c.send(&special_request(SSL_REQUEST))
        .expect("send SSLRequest");
    assert_eq!(c.read_byte().ok(), Some(b'N'));
    drop(c.send(&special_request(SSL_REQUEST)));
    expect_rejected(&mut c, "second SSLRequest");
    assert_healthy();
}

/// (g) Without TLS configured, SSLRequest and GSSENCRequest each get a
/// single 'N' and a plaintext startup may follow on the same socket (libpq
/// with gssencmode=prefer sends GSSENCRequest, then SSLRequest, then startup).
#[test]
fn ssl_and_gssenc_requests_refused_then_startup() {
    for sequence in [
        &[SSL_REQUEST][..],
        &[GSSENC_REQUEST][..],
        &[GSSENC_REQUEST, SSL_REQUEST][..],
    ] {
        let mut c = raw();
        for code in sequence {
            c.send(&special_request(*code)).expect("send request");
            assert_eq!(c.read_byte().ok(), Some(b'N'), "answer to {code}");
        }
        c.send(&app_startup(PROTOCOL_3_0)).expect("send startup");
        let auth = c.skip_until(b'R', "auth after refusal");
        assert_eq!(auth.auth_code(), Some(AUTH_SASL), "after {sequence:?}");
    }
    assert_healthy();
}

/// Bytes sent after SSLRequest or GSSENCRequest, before its answer, are refused with 08P01
/// as PostgreSQL refuses them (CVE-2021-23214): never taken as plaintext, and no 'N'.
#[test]
fn data_after_an_encryption_request_is_refused() {
    for (name, code) in [
        ("SSLRequest", SSL_REQUEST),
        ("GSSENCRequest", GSSENC_REQUEST),
    ] {
        let mut c = raw();
        let mut bytes = special_request(code);
        bytes.extend_from_slice(&app_startup(PROTOCOL_3_0));
        drop(c.send(&bytes));
        let err = c
            .expect_error_or_close(&["08P01"], name)
            .unwrap_or_else(|| panic!("{name}: closed without an error"));
        let msg = err.message().unwrap_or_default();
        assert!(
            msg.contains(&format!("received unencrypted data after {name}")),
            "{name}: {msg}"
        );
    }
    assert_healthy();
}

/// A startup packet that arrives in pieces is read whole, and what a client sends right
/// after it reaches the login (here a Query where the password should be: refused, not lost).
#[test]
fn startup_in_pieces_and_bytes_after_it() {
    let packet = app_startup(PROTOCOL_3_0);
    let mut c = raw();
    for piece in [&packet[..2], &packet[2..9], &packet[9..]] {
        c.send(piece).expect("send a piece");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let auth = c.skip_until(b'R', "auth after a startup in pieces");
    assert_eq!(auth.auth_code(), Some(AUTH_SASL));

    let mut c = raw();
    let mut bytes = packet.clone();
    bytes.extend_from_slice(&frontend_msg(b'Q', b"select 1\0"));
    c.send(&bytes).expect("send startup and a query");
    assert_eq!(c.skip_until(b'R', "auth").auth_code(), Some(AUTH_SASL));
    let err = c
        .expect_error_or_close(&["08P01"], "query instead of a password")
        .expect("an error, not a close");
    let msg = err.message().unwrap_or_default();
    assert!(msg.contains("expected"), "{msg}");
    assert_healthy();
}

/// A CancelRequest with a key that matches nothing: closed without reply.
#[test]
fn bogus_cancel_request_closed_silently() {
    let mut c = raw();
    let mut body = wire::CANCEL_REQUEST.to_be_bytes().to_vec();
    body.extend_from_slice(&12345u32.to_be_bytes());
    body.extend_from_slice(&0xDEAD_BEEFu32.to_be_bytes());
    let mut msg = 16u32.to_be_bytes().to_vec();
    msg.extend_from_slice(&body);
    c.send(&msg).expect("send CancelRequest");
    assert!(
        matches!(c.peek_byte(), Err(Reply::Closed)),
        "cancel got a reply"
    );
    assert_healthy();
}

/// (h) After login, a message header announcing more than
/// `max_message_size` is refused with 08P01 as soon as the header arrives;
/// a large message under the limit still works.
#[test]
fn oversized_message_after_login() {
    let port = lakepool().port();
    let mut c = RawConn::login_password(port, MD5_USER.0, MD5_USER.1, "app");
    let filler = "x".repeat(MAX_MESSAGE_SIZE * 3 / 4);
    let rows = c.simple_query(&format!("SELECT length('{filler}')"));
    assert_eq!(rows, vec![Some(filler.len().to_string())]);

    // Only the header (claiming 2 MiB) is sent: a server that waits for the
    // body instead of checking the length times the test out, and no unread
    // bytes are left to turn lakepool's close into a reset that could
    // swallow the ErrorResponse.
    let mut header = vec![b'Q'];
    header.extend_from_slice(&((2 * MAX_MESSAGE_SIZE) as u32 + 4).to_be_bytes());
    c.send(&header).expect("send oversized header");
    let err = c
        .expect_error_or_close(&["08P01"], "oversized message")
        .expect("an ErrorResponse before the close");
    // The stream cannot be resynchronised, so the session must end: FATAL.
    assert_eq!(
        err.field(b'S').as_deref(),
        Some("FATAL"),
        "{:?}",
        err.fields()
    );
    assert!(
        matches!(c.read_msg(), Reply::Closed),
        "still open after FATAL"
    );
    assert_healthy();
}

/// (i) A wrong password and an unknown user are indistinguishable: the
/// same SASL offer up front, the same 28P01 and message at the end, and the
/// password never reaches the logs.
#[tokio::test]
async fn wrong_password_and_unknown_user_look_identical() {
    const WRONG: &str = "Wr0ng-pa55word-b4d1nput";
    let port = lakepool().port();

    // Same first reply, byte for byte (an early "no such user" would leak
    // which names exist).
    let offer = |user: &str| {
        let mut c = raw();
        c.send(&startup(
            PROTOCOL_3_0,
            &[("user", user), ("database", "app")],
        ))
        .expect("send startup");
        c.skip_until(b'R', "auth offer")
    };
    assert_eq!(offer(APP_USER.0), offer("no_such_user"));

    let mut messages = Vec::new();
    for user in [APP_USER.0, "no_such_user", MD5_USER.0] {
        let err = connect(port, user, WRONG, "app", false)
            .await
            .err()
            .unwrap_or_else(|| panic!("{user} logged in with a wrong password"));
        let db = err
            .as_db_error()
            .unwrap_or_else(|| panic!("{user}: not a server error: {err:?}"));
        assert_eq!(db.code().code(), "28P01", "{user}: {db:?}");
        messages.push(db.message().replace(user, "<user>"));
    }
    assert_eq!(messages[0], messages[1], "unknown user distinguishable");

    let logs = lakepool().logs();
    for secret in [WRONG, APP_USER.1, MD5_USER.1, APP_OWNER.1] {
        assert!(!logs.contains(secret), "secret {secret:?} in logs:\n{logs}");
    }
    assert_healthy();
}

/// An unknown message type after login is a protocol violation, not a hang.
#[test]
fn unknown_message_type_after_login() {
    let port = lakepool().port();
    let mut c = RawConn::login_password(port, MD5_USER.0, MD5_USER.1, "app");
    c.send(&frontend_msg(b'!', b"junk")).expect("send junk");
    c.expect_error_or_close(&["08P01"], "unknown message type");
    assert_healthy();
}
