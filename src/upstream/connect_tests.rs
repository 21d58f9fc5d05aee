//! Login downgrades, against a fake server on a loopback socket: lakepool must not send a
//! cleartext password over a connection without TLS (unless allowed) nor accept a login that
//! skips the end of a SCRAM exchange it started.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use secrecy::SecretString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::auth::scram::SaltedPasswordCache;
use crate::credentials::fixed::StaticCredential;
use crate::proto::write;

const PASSWORD: &str = "upstream_s3cret";

fn upstream(port: u16, cleartext_without_tls: bool) -> Upstream {
    Upstream {
        port,
        dbname: "db".to_owned(),
        tls: None,
        credential: Arc::new(StaticCredential::new(
            "127.0.0.1",
            "role",
            Some(SecretString::from(PASSWORD)),
        )),
        connect_timeout: Duration::from_secs(10),
        salted_cache: Arc::new(SaltedPasswordCache::new()),
        cleartext_without_tls,
    }
}

/// Reads the startup packet, then one typed message at a time.
async fn read_startup(s: &mut TcpStream) {
    let len = s.read_u32().await.unwrap() as usize;
    let mut body = vec![0; len - 4];
    s.read_exact(&mut body).await.unwrap();
}

/// The next typed message from lakepool, or None when it closed the connection.
async fn read_message(s: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let tag = s.read_u8().await.ok()?;
    let len = s.read_u32().await.ok()? as usize;
    let mut body = vec![0; len - 4];
    s.read_exact(&mut body).await.ok()?;
    Some((tag, body))
}

async fn send(s: &mut TcpStream, f: impl FnOnce(&mut BytesMut)) {
    let mut out = BytesMut::new();
    f(&mut out);
    s.write_all(&out).await.unwrap();
}

/// Runs `server` on one accepted connection while lakepool logs in; returns both outcomes.
async fn against<F, Fut, T>(
    allow_cleartext: bool,
    server: F,
) -> (Result<ServerConn, UpstreamError>, T)
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T> + Send,
    T: Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let fake = tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        server(s).await
    });
    let up = upstream(port, allow_cleartext);
    let login = connect(&up, 1).await;
    (login, fake.await.unwrap())
}

async fn finish_login(s: &mut TcpStream) {
    send(s, write::auth_ok).await;
    send(s, |b| write::ready_for_query(b, b'I')).await;
}

#[tokio::test]
async fn no_cleartext_password_over_plain_tcp() {
    let (login, received) = against(false, |mut s| async move {
        read_startup(&mut s).await;
        send(&mut s, write::auth_cleartext).await;
        // What lakepool sends next: nothing, it closes.
        read_message(&mut s).await
    })
    .await;
    let err = login.expect_err("logged in by sending a cleartext password");
    assert!(matches!(err, UpstreamError::Refused { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("send_cleartext_password_without_tls"),
        "{err}"
    );
    assert_eq!(
        received, None,
        "lakepool sent something after the cleartext request"
    );
    assert_eq!(err.sqlstate(), SqlState::UNABLE_TO_CONNECT);
}

#[tokio::test]
async fn cleartext_over_plain_tcp_when_the_database_allows_it() {
    let (login, received) = against(true, |mut s| async move {
        read_startup(&mut s).await;
        send(&mut s, write::auth_cleartext).await;
        let got = read_message(&mut s).await;
        finish_login(&mut s).await;
        got
    })
    .await;
    login.expect("login with the setting on");
    let (tag, body) = received.unwrap();
    assert_eq!(
        (tag, body.as_slice()),
        (b'p', format!("{PASSWORD}\0").as_bytes())
    );
}

#[tokio::test]
async fn authentication_ok_before_scram_completes_is_refused() {
    // Right after the client-first-message, and right after the client proof.
    for stop_after in [1, 2] {
        let (login, _) = against(false, move |mut s| async move {
            read_startup(&mut s).await;
            send(&mut s, |b| write::auth_sasl(b, &["SCRAM-SHA-256"])).await;
            let (_, initial) = read_message(&mut s).await.unwrap();
            if stop_after == 2 {
                // A well-formed server-first-message extending lakepool's nonce.
                let text = String::from_utf8_lossy(&initial).into_owned();
                let nonce = text.split("r=").nth(1).unwrap().to_owned();
                let first = format!("r={nonce}srv,s=c2FsdHNhbHQ=,i=4096");
                send(&mut s, |b| write::auth_sasl_continue(b, first.as_bytes())).await;
                read_message(&mut s).await.unwrap();
            }
            finish_login(&mut s).await;
        })
        .await;
        let err = login.expect_err("accepted AuthenticationOk mid-SCRAM");
        assert!(
            matches!(err, UpstreamError::Refused { .. }) && err.to_string().contains("SCRAM"),
            "{err}"
        );
    }
}

#[tokio::test]
async fn a_wrong_server_signature_is_refused() {
    let (login, _) = against(false, |mut s| async move {
        read_startup(&mut s).await;
        send(&mut s, |b| write::auth_sasl(b, &["SCRAM-SHA-256"])).await;
        let (_, initial) = read_message(&mut s).await.unwrap();
        let text = String::from_utf8_lossy(&initial).into_owned();
        let nonce = text.split("r=").nth(1).unwrap().to_owned();
        let first = format!("r={nonce}srv,s=c2FsdHNhbHQ=,i=4096");
        send(&mut s, |b| write::auth_sasl_continue(b, first.as_bytes())).await;
        read_message(&mut s).await.unwrap();
        let forged = "v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
        send(&mut s, |b| write::auth_sasl_final(b, forged.as_bytes())).await;
        finish_login(&mut s).await;
    })
    .await;
    let err = login.expect_err("accepted a forged server signature");
    assert!(matches!(err, UpstreamError::Scram(_)), "{err}");
}

#[tokio::test]
async fn another_method_in_the_middle_of_scram_is_refused() {
    let (login, received) = against(true, |mut s| async move {
        read_startup(&mut s).await;
        send(&mut s, |b| write::auth_sasl(b, &["SCRAM-SHA-256"])).await;
        read_message(&mut s).await.unwrap();
        send(&mut s, write::auth_cleartext).await;
        read_message(&mut s).await
    })
    .await;
    assert!(matches!(login, Err(UpstreamError::Refused { .. })));
    assert_eq!(received, None, "lakepool answered the switch to cleartext");
}
