//! The client side: accepting connections, the startup handshake and authentication, and the
//! session loop that forwards traffic through pooled server connections.

pub mod auth;
pub mod cancel;
pub mod clients;
pub mod handshake;
pub mod listener;
pub mod login;
pub mod passthrough;
pub mod pipe;
pub mod pump;
pub mod session;
pub mod tracker;
pub mod txn;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use crate::auth::users::UserDb;
use crate::config::ServerConfig;
use crate::error::ClientError;
use crate::net::Stream;
use crate::net::tls::ServerTls;
use crate::pool::registry::Registry;
use arc_swap::ArcSwap;
use cancel::CancelRegistry;

/// A request to re-read the configuration file; the answer says whether the new one took
/// effect (an invalid one is refused and the old one stays).
pub type ReloadRequest = tokio::sync::oneshot::Sender<Result<(), String>>;

/// What a reload replaces: a client reads it once at login and keeps that snapshot.
#[derive(Debug)]
pub struct Live {
    /// Client-facing TLS, when configured.
    pub tls: Option<ServerTls>,
    /// Client logins.
    pub users: UserDb,
    /// Databases and pools.
    pub registry: Arc<Registry>,
    /// `[pool]` as configured (SHOW CONFIG, SHOW USERS).
    pub pool_defaults: crate::config::PoolSettings,
}

/// Shared state of the client side, built once by `app` and handed to every session.
#[derive(Debug)]
pub struct Frontend {
    /// `[server]` settings (as at startup: listeners and these limits need a restart).
    pub server: ServerConfig,
    /// TLS, users and databases, swapped whole by a reload.
    pub live: ArcSwap<Live>,
    /// Reload requests (SIGHUP, the admin console's RELOAD), answered when done.
    pub reload: tokio::sync::mpsc::UnboundedSender<ReloadRequest>,
    /// Live cancel keys.
    pub cancels: Arc<CancelRegistry>,
    /// Client connections open now.
    pub clients: AtomicUsize,
    /// Logged-in clients (`SHOW CLIENTS`, `SHOW POOLS`, `/metrics`).
    pub sessions: Arc<clients::ClientRegistry>,
    /// Cancelled when lakepool shuts down.
    pub shutdown: CancellationToken,
}

impl Frontend {
    /// The current TLS, users and databases.
    pub fn live(&self) -> Arc<Live> {
        self.live.load_full()
    }
}

/// Counts a client connection for max_client_conn while it lives.
#[derive(Debug)]
pub struct ClientCount<'a>(&'a AtomicUsize);

impl<'a> ClientCount<'a> {
    /// Counts one more client; returns whether it is within `max`.
    pub fn enter(counter: &'a AtomicUsize, max: usize) -> (Self, bool) {
        let before = counter.fetch_add(1, Ordering::Relaxed);
        (Self(counter), before < max)
    }
}

impl Drop for ClientCount<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Sends an error to the client and closes the connection, best effort.
pub async fn send_error_and_close(stream: &mut Stream, err: &ClientError) {
    let mut buf = BytesMut::with_capacity(128);
    err.write(&mut buf);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
        let _ = stream.write_all(&buf).await;
        let _ = stream.flush().await;
        let _ = stream.shutdown().await;
    })
    .await;
}
