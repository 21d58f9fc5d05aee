//! What every client connection shares, whether it becomes a pooled session (`frontend`) or an
//! admin console session (`admin`): the app-wide state built once by `app` ([`Shared`]: the
//! reloadable configuration, cancel keys, the client list, shutdown), and the few types both
//! kinds of session need. `frontend` and `admin` both import this module and never each other.

pub mod cancel;
pub mod clients;

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

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

/// The app-wide state, built once by `app` and handed to every client connection.
#[derive(Debug)]
pub struct Shared {
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

impl Shared {
    /// The current TLS, users and databases.
    pub fn live(&self) -> Arc<Live> {
        self.live.load_full()
    }
}

/// An authenticated admin console client, not yet greeted: what a login hands to the console.
#[derive(Debug)]
pub struct ConsoleLogin {
    /// Client socket.
    pub stream: Stream,
    /// Login name.
    pub user: String,
    /// Bytes the client sent after its last authentication message.
    pub leftover: BytesMut,
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
