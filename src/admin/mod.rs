//! HTTP endpoints on `[server] admin_listen`: `/healthz` (the process and its event loop
//! answer), `/readyz` (every configured database has a valid upstream credential; the body
//! says which has not and why) and `/metrics` (Prometheus). The admin console over the
//! PostgreSQL protocol lives in [`console`].

pub mod console;
pub mod metrics;
pub mod show;
mod show_config;
mod show_stats;
pub mod snapshot;

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::frontend::Frontend;

/// Serves the endpoints until shutdown.
pub async fn serve(listener: TcpListener, fe: Arc<Frontend>) {
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            () = fe.shutdown.cancelled() => return,
        };
        let Ok((tcp, _)) = accepted else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
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

fn route(req: &Request<Incoming>, fe: &Frontend) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n".to_owned());
    }
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n".to_owned()),
        "/readyz" => readiness(fe),
        "/metrics" => {
            let scrape = metrics::Scrape {
                pools: snapshot::pools(fe),
                credentials: snapshot::credentials(fe),
                process: snapshot::process(),
                clients_connected: fe.clients.load(std::sync::atomic::Ordering::Relaxed),
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
/// credential now.
fn readiness(fe: &Frontend) -> Response<Full<Bytes>> {
    if fe.shutdown.is_cancelled() {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: shutting down\n".to_owned(),
        );
    }
    let mut problems = Vec::new();
    let live = fe.live();
    for db in live.registry.databases() {
        if let Err(e) = db.upstream.credential.current() {
            problems.push(format!("database {}: {e}", db.name));
        }
    }
    if problems.is_empty() {
        text(StatusCode::OK, "ready\n".to_owned())
    } else {
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready:\n{}\n", problems.join("\n")),
        )
    }
}
