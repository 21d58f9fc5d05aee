//! What every client connection shares, whether it becomes a pooled session (`frontend`) or an
//! admin console session (`admin`): the app-wide state built once by `app` ([`Shared`]: the
//! reloadable configuration, cancel keys, the client list, shutdown), and the few types both
//! kinds of session need. `frontend` and `admin` both import this module and never each other.

pub(crate) mod cancel;
pub(crate) mod clients;
pub(crate) mod ends;
pub(crate) mod id_hash;

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
pub(crate) type ReloadRequest = tokio::sync::oneshot::Sender<Result<(), String>>;

/// What a reload replaces: a client reads it once at login and keeps that snapshot.
#[derive(Debug)]
pub(crate) struct Live {
    /// Client-facing TLS, when configured.
    pub(crate) tls: Option<ServerTls>,
    /// Client logins.
    pub(crate) users: UserDb,
    /// Databases and pools.
    pub(crate) registry: Arc<Registry>,
    /// `[pool]` as configured (SHOW CONFIG, SHOW USERS).
    pub(crate) pool_defaults: crate::config::PoolSettings,
}

/// The app-wide state, built once by `app` and handed to every client connection.
#[derive(Debug)]
pub(crate) struct Shared {
    /// `[server]` settings (as at startup: listeners and these limits need a restart).
    pub(crate) server: ServerConfig,
    /// TLS, users and databases, swapped whole by a reload.
    pub(crate) live: ArcSwap<Live>,
    /// Reload requests (SIGHUP, the admin console's RELOAD), answered when done.
    pub(crate) reload: tokio::sync::mpsc::UnboundedSender<ReloadRequest>,
    /// Live cancel keys.
    pub(crate) cancels: Arc<CancelRegistry>,
    /// Client connections open now.
    pub(crate) clients: AtomicUsize,
    /// Logged-in clients (`SHOW CLIENTS`, `SHOW POOLS`, `/metrics`).
    pub(crate) sessions: Arc<clients::ClientRegistry>,
    /// Cancelled when lakepool shuts down.
    pub(crate) shutdown: CancellationToken,
    /// Why sessions ended (`/metrics`).
    pub(crate) ends: ends::SessionEnds,
}

impl Shared {
    /// The current TLS, users and databases.
    pub(crate) fn live(&self) -> Arc<Live> {
        self.live.load_full()
    }
}

/// An authenticated admin console client, not yet greeted: what a login hands to the console.
#[derive(Debug)]
pub(crate) struct ConsoleLogin {
    /// Client socket.
    pub(crate) stream: Stream,
    /// Login name.
    pub(crate) user: String,
    /// Bytes the client sent after its last authentication message.
    pub(crate) leftover: BytesMut,
    /// What ends authentication (AuthenticationOk), unsent: the console's greeting follows it.
    pub(crate) greeting: BytesMut,
}

/// Sends an error to the client and closes the connection, best effort.
pub(crate) async fn send_error_and_close(stream: &mut Stream, err: &ClientError) {
    send_error_and_close_after(stream, &[], err).await;
}

/// Sends `before` (messages not sent yet, such as AuthenticationOk), then an error, in one
/// write, and closes the connection, best effort.
pub(crate) async fn send_error_and_close_after(
    stream: &mut Stream,
    before: &[u8],
    err: &ClientError,
) {
    let mut buf = BytesMut::with_capacity(before.len() + 128);
    buf.extend_from_slice(before);
    err.write(&mut buf);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
        let _ = stream.write_all(&buf).await;
        let _ = stream.flush().await;
        let _ = stream.shutdown().await;
    })
    .await;
}
