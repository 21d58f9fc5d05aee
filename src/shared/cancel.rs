//! Cancel requests: lakepool-issued keys mapped to whatever server connection a client is
//! using right now.
//!
//! Each client gets a random (pid, secret) key. Its [`CancelSlot`] holds the BackendKeyData of
//! the server connection it currently has (or 0), updated with one atomic store per checkout.
//! A cancel arriving while the client holds no server does nothing. To never cancel another
//! client's query (PgBouncer #245), a server is not handed back to the pool while a cancel
//! for it is still in flight: the releasing session waits for in-flight cancels first.

use std::collections::hash_map::Entry;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

use crate::proto::frontend;
use crate::upstream::Upstream;
use crate::upstream::connect::open_stream;

use super::id_hash::IdMap;

/// Longest a forwarded cancel may take before it is abandoned.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(5);

/// The cancel target of one client session.
#[derive(Debug)]
pub(crate) struct CancelSlot {
    /// (server pid << 32) | server secret of the attached server connection; 0 when none.
    server: AtomicU64,
    in_flight: AtomicU32,
    done: Notify,
    upstream: Arc<Upstream>,
    /// Host of the server connection last attached (written only when it changes: every
    /// connection opened with one credential shares its host's `Arc`).
    host: Mutex<Option<Arc<str>>>,
    /// Address of the `Arc` in `host`, to see without locking that it did not change (the
    /// slot holds that `Arc`, so its address cannot be reused while it is there).
    host_ptr: AtomicUsize,
}

impl CancelSlot {
    /// Records the server connection the client now uses (its key and host).
    pub(crate) fn attach(&self, key: (u32, u32), host: &Arc<str>) {
        let ptr = Arc::as_ptr(host).cast::<u8>() as usize;
        if self.host_ptr.load(Ordering::Relaxed) != ptr {
            *self.host.lock() = Some(Arc::clone(host));
            self.host_ptr.store(ptr, Ordering::Relaxed);
        }
        let packed = (u64::from(key.0) << 32) | u64::from(key.1);
        self.server.store(packed, Ordering::SeqCst);
    }

    /// Forgets the server connection, then waits until no cancel aimed at it is in flight, so
    /// the connection can safely go to another client.
    pub(crate) async fn detach(&self) {
        self.server.store(0, Ordering::SeqCst);
        if self.in_flight.load(Ordering::SeqCst) == 0 {
            return;
        }
        loop {
            let notified = self.done.notified();
            if self.in_flight.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// Unregisters a session's key when the session ends.
#[derive(Debug)]
pub(crate) struct Registration {
    key: u64,
    registry: Arc<CancelRegistry>,
    /// The slot.
    pub(crate) slot: Arc<CancelSlot>,
    /// The key given to the client as BackendKeyData.
    pub(crate) client_key: (u32, u32),
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.map.lock().remove(&self.key);
    }
}

/// All live client keys.
#[derive(Debug, Default)]
pub(crate) struct CancelRegistry {
    map: Mutex<IdMap<Arc<CancelSlot>>>,
}

impl CancelRegistry {
    /// Issues a key whose pid is `pid` (session mode shows the server's own pid, so
    /// `pg_backend_pid()` and notification pids match what the client was told); the secret
    /// stays lakepool's, so cancel routing is unchanged.
    pub(crate) fn register_as(
        self: &Arc<Self>,
        upstream: Arc<Upstream>,
        pid: Option<u32>,
    ) -> Registration {
        let pid = pid.filter(|&p| p != 0);
        let slot = Arc::new(CancelSlot {
            server: AtomicU64::new(0),
            in_flight: AtomicU32::new(0),
            done: Notify::new(),
            upstream,
            host: Mutex::new(None),
            host_ptr: AtomicUsize::new(0),
        });
        let mut map = self.map.lock();
        loop {
            // A pid of 0 is never valid; keep the high bit clear as PostgreSQL pids are positive.
            let pid = pid.unwrap_or_else(|| rand::random::<u32>() & 0x7fff_ffff);
            let secret = rand::random::<u32>();
            let key = (u64::from(pid) << 32) | u64::from(secret);
            if pid == 0 {
                continue;
            }
            let Entry::Vacant(free) = map.entry(key) else {
                continue;
            };
            free.insert(Arc::clone(&slot));
            return Registration {
                key,
                registry: Arc::clone(self),
                slot,
                client_key: (pid, secret),
            };
        }
    }

    /// Handles a client's CancelRequest: forwards it to the server connection that client is
    /// using now, if any. Unknown keys are ignored, as PostgreSQL does.
    pub(crate) async fn cancel(&self, pid: u32, secret: u32) {
        let key = (u64::from(pid) << 32) | u64::from(secret);
        let Some(slot) = self.map.lock().get(&key).cloned() else {
            tracing::debug!("cancel request with unknown key ignored");
            return;
        };
        slot.in_flight.fetch_add(1, Ordering::SeqCst);
        let server = slot.server.load(Ordering::SeqCst);
        let host = slot.host.lock().clone();
        if server != 0
            && let Some(host) = host
        {
            let (spid, ssecret) = ((server >> 32) as u32, server as u32);
            if let Err(e) = tokio::time::timeout(
                CANCEL_TIMEOUT,
                forward(&slot.upstream, &host, spid, ssecret),
            )
            .await
            {
                tracing::warn!(error = %e, "cancel request to server timed out");
            }
        }
        slot.in_flight.fetch_sub(1, Ordering::SeqCst);
        slot.done.notify_waiters();
    }
}

/// Sends a CancelRequest on a new connection (TLS when the upstream uses it) and waits for
/// the server to close it, which it does once the cancel has been signalled.
/// The host is the one the server connection was opened to, so a cancel needs no credential
/// (it works while the API is down) and follows the connection, not the newest lookup.
async fn forward(up: &Upstream, host: &str, pid: u32, secret: u32) {
    let mut stream = match open_stream(up, host).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "could not forward cancel request");
            return;
        }
    };
    let mut out = BytesMut::with_capacity(16);
    frontend::cancel_request(&mut out, pid, secret);
    if stream.write_all(&out).await.is_ok() {
        let _ = stream.flush().await;
        let mut sink = [0u8; 64];
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    use super::CancelRegistry;
    use crate::upstream::Upstream;

    #[test]
    fn the_slot_follows_the_attached_connection_and_its_host() {
        let registry = Arc::new(CancelRegistry::default());
        let reg = registry.register_as(Upstream::never_contacted(), None);
        let slot = &reg.slot;
        let a: Arc<str> = Arc::from("a.example");
        slot.attach((1, 2), &a);
        assert_eq!(slot.host.lock().as_deref(), Some("a.example"));
        // Another connection opened with the same credential shares its host.
        slot.attach((3, 4), &Arc::clone(&a));
        assert!(
            slot.host
                .lock()
                .as_ref()
                .is_some_and(|h| Arc::ptr_eq(h, &a))
        );
        let b: Arc<str> = Arc::from("b.example");
        slot.attach((5, 6), &b);
        assert_eq!(slot.host.lock().as_deref(), Some("b.example"));
        assert_eq!(slot.server.load(Ordering::SeqCst), (5 << 32) | 6);
        drop(b);
        // Same text, new `Arc` (a refreshed credential): recorded too.
        slot.attach((7, 8), &Arc::from("a.example"));
        assert_eq!(slot.host.lock().as_deref(), Some("a.example"));
    }
}
