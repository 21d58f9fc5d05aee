//! HTTP endpoints on `[server] admin_listen`: `/healthz` (the process and its event loop
//! answer), `/readyz` (every configured database has a valid upstream credential) and
//! `/metrics` (Prometheus). The admin console over the PostgreSQL protocol lives in
//! [`console`].
//!
//! Probes need no login and learn no names: `/healthz` says `ok`, `/readyz` counts the
//! databases without a credential. With `[server] admin_token` set, `/metrics` (which names
//! users and databases) requires `Authorization: Bearer <token>`, and the same header makes
//! `/readyz` say which databases and why.

pub(crate) mod console;
pub(crate) mod metrics;
pub(crate) mod show;
mod show_config;
mod show_stats;
pub(crate) mod snapshot;

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;

use crate::shared::Shared;

/// Serves the endpoints until shutdown.
pub(crate) async fn serve(listener: TcpListener, fe: Arc<Shared>) {
    let mut backoff = crate::net::accept::AcceptBackoff::new("admin listener");
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            () = fe.shutdown.cancelled() => return,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => {
                backoff.succeeded();
                tcp
            }
            Err(e) => {
                backoff.failed(&e).await;
                continue;
            }
        };
        let fe = Arc::clone(&fe);
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let fe = Arc::clone(&fe);
                async move { Ok::<_, Infallible>(route(&req, &fe)) }
            });
            let conn = http1::Builder::new().serve_connection(TokioIo::new(tcp), service);
            // Bounded: a probe that stalls must not hold a task forever.
            let _ = tokio::time::timeout(std::time::Duration::from_secs(30), conn).await;
        });
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// Whether the request carries the configured bearer token (false when none is configured).
fn has_token(req: &Request<Incoming>, fe: &Shared) -> bool {
    let Some(token) = &fe.server.admin_token else {
        return false;
    };
    let given = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        .unwrap_or_default();
    bool::from(given.ct_eq(token.expose_secret().as_bytes()))
}

fn unauthorized() -> Response<Full<Bytes>> {
    let mut resp = text(
        StatusCode::UNAUTHORIZED,
        "unauthorized: send Authorization: Bearer <admin_token>\n".to_owned(),
    );
    resp.headers_mut().insert(
        hyper::header::WWW_AUTHENTICATE,
        hyper::header::HeaderValue::from_static("Bearer realm=\"lakepool\""),
    );
    resp
}

/// The warning to log at startup when the endpoints are reachable from other hosts and
/// `/metrics` needs no token.
pub(crate) fn exposure_warning(listen: std::net::SocketAddr, has_token: bool) -> Option<String> {
    (!listen.ip().is_loopback() && !has_token).then(|| {
        format!(
            "admin_listen {listen} is not a loopback address and no admin_token is set: \
             anyone who can reach it can read /metrics (user and database names, traffic)"
        )
    })
}

fn route(req: &Request<Incoming>, fe: &Shared) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n".to_owned());
    }
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n".to_owned()),
        "/readyz" => readiness(fe, has_token(req, fe)),
        "/metrics" if fe.server.admin_token.is_some() && !has_token(req, fe) => unauthorized(),
        "/metrics" => {
            let scrape = metrics::Scrape {
                pools: snapshot::pools(fe),
                credentials: snapshot::credentials(fe),
                process: snapshot::process(),
                clients_connected: fe.clients.load(std::sync::atomic::Ordering::Relaxed),
                sessions_ended: fe.ends.counts().collect(),
            };
            let mut resp = text(StatusCode::OK, metrics::render(&scrape));
            resp.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static(metrics::CONTENT_TYPE),
            );
            resp
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /healthz, /readyz or /metrics\n".to_owned(),
        ),
    }
}

/// Ready when no shutdown is under way and every database's credential source has a valid
/// credential now (pass-through databases have none of their own). Names and reasons only with the admin token (`detailed`).
fn readiness(fe: &Shared, detailed: bool) -> Response<Full<Bytes>> {
    if fe.shutdown.is_cancelled() {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: shutting down\n".to_owned(),
        );
    }
    let mut problems = Vec::new();
    let live = fe.live();
    let mut total = 0;
    for db in live.registry.databases() {
        total += 1;
        // A pass-through database has no credential of its own: each client brings one.
        if db.passthrough.is_none()
            && let Err(e) = db.upstream.credential.current()
        {
            problems.push(format!("database {}: {e}", db.name));
        }
    }
    if problems.is_empty() {
        return text(StatusCode::OK, "ready\n".to_owned());
    }
    let mut body = format!(
        "not ready: {} of {total} databases have no upstream credential\n",
        problems.len()
    );
    if detailed {
        body.push_str(&problems.join("\n"));
        body.push('\n');
    }
    text(StatusCode::SERVICE_UNAVAILABLE, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposed_without_a_token_is_warned_about() {
        let any: std::net::SocketAddr = "0.0.0.0:9187".parse().unwrap();
        let local: std::net::SocketAddr = "127.0.0.1:9187".parse().unwrap();
        let local6: std::net::SocketAddr = "[::1]:9187".parse().unwrap();
        assert!(exposure_warning(any, false).is_some_and(|w| w.contains("admin_token")));
        assert!(exposure_warning(any, true).is_none());
        assert!(exposure_warning(local, false).is_none());
        assert!(exposure_warning(local6, false).is_none());
    }
}
