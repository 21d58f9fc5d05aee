//! The live client sessions, for `SHOW CLIENTS`, `SHOW POOLS` and `/metrics`: an `Arc` entry
//! per logged-in client, added at login and removed when its session ends. A session changes
//! its entry's state with one atomic store per checkout and release; nothing else on the data
//! path touches it. The entry also carries the session's shutdown wake-up: draining wakes
//! every waiting session through its own entry.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use atomic_waker::AtomicWaker;
use parking_lot::Mutex;

use super::id_hash::IdMap;
use crate::net::Peer;

/// What a client is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientState {
    /// Logged in, holding no server (transaction mode between transactions), or the console.
    Idle,
    /// Waiting for a server connection.
    Waiting,
    /// Using a server connection.
    Active,
}

impl ClientState {
    /// PgBouncer-like name.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ClientState::Idle => "idle",
            ClientState::Waiting => "waiting",
            ClientState::Active => "active",
        }
    }
}

/// What wait starts are measured from (one for the process: every idle client carries its
/// entry, and a copy of this in each would cost 16 bytes per client).
static EPOCH: LazyLock<Instant> = LazyLock::new(clock_now);

/// The pools' clock (`crate::pool::now`, which this module sits below): wait starts come from
/// it, so the wait's length is read from it too. tokio's, so unit tests can pause it; without
/// tokio's `test-util` feature, `std::time::Instant::now()`.
fn clock_now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Microseconds since [`EPOCH`].
fn micros_since_epoch() -> u64 {
    micros_at(clock_now())
}

/// `t` in microseconds since [`EPOCH`] (0 for an earlier instant).
fn micros_at(t: Instant) -> u64 {
    u64::try_from(t.saturating_duration_since(*EPOCH).as_micros()).unwrap_or(u64::MAX)
}

/// One logged-in client.
#[derive(Debug)]
pub(crate) struct ClientEntry {
    /// Registry id.
    pub(crate) id: u64,
    /// Login name.
    pub(crate) user: Arc<str>,
    /// Database name.
    pub(crate) database: Arc<str>,
    /// Peer address.
    pub(crate) addr: Peer,
    /// When it logged in, in µs since the Unix epoch (8 bytes, not a 16-byte `SystemTime`).
    connected_at_us: u64,
    /// Over TLS.
    pub(crate) tls: bool,
    state: AtomicU8,
    /// The session's task while it waits: woken when lakepool starts draining.
    woken: AtomicWaker,
    /// When the current wait began, in µs since [`EPOCH`].
    wait_start_us: AtomicU64,
}

impl ClientEntry {
    /// When it logged in.
    pub(crate) fn connected_at(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_micros(self.connected_at_us)
    }

    /// The current state.
    pub(crate) fn state(&self) -> ClientState {
        match self.state.load(Ordering::Acquire) {
            1 => ClientState::Waiting,
            2 => ClientState::Active,
            _ => ClientState::Idle,
        }
    }

    /// Sets the state (a wait's start is recorded: now).
    pub(crate) fn set(&self, state: ClientState) {
        if state == ClientState::Waiting {
            self.set_waiting_since(clock_now());
        } else {
            self.store(state);
        }
    }

    /// Sets the state to Waiting, since `since` (the caller's clock read, not another).
    pub(crate) fn set_waiting_since(&self, since: Instant) {
        self.wait_start_us
            .store(micros_at(since), Ordering::Relaxed);
        self.store(ClientState::Waiting);
    }

    fn store(&self, state: ClientState) {
        let v = match state {
            ClientState::Idle => 0,
            ClientState::Waiting => 1,
            ClientState::Active => 2,
        };
        // Release: a reader that sees Waiting sees this wait's start (free on x86).
        self.state.store(v, Ordering::Release);
    }

    /// How long it has been waiting, when waiting.
    pub(crate) fn waiting_for(&self) -> Option<std::time::Duration> {
        (self.state() == ClientState::Waiting).then(|| {
            let start = self.wait_start_us.load(Ordering::Relaxed);
            Duration::from_micros(micros_since_epoch().saturating_sub(start))
        })
    }
}

/// All live clients.
#[derive(Debug)]
pub(crate) struct ClientRegistry {
    clients: Mutex<IdMap<Arc<ClientEntry>>>,
    /// lakepool is shutting down: sessions stop at their next idle point.
    draining: AtomicBool,
    next: AtomicU64,
}

impl Default for ClientRegistry {
    fn default() -> Self {
        Self {
            clients: Mutex::new(IdMap::default()),
            draining: AtomicBool::new(false),
            next: AtomicU64::new(1),
        }
    }
}

impl ClientRegistry {
    /// Registers a logged-in client; it is removed when the handle drops.
    pub(crate) fn register(
        self: &Arc<Self>,
        user: Arc<str>,
        database: Arc<str>,
        addr: Peer,
        tls: bool,
    ) -> ClientHandle {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let entry = Arc::new(ClientEntry {
            id,
            user,
            database,
            addr,
            connected_at_us: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
            tls,
            state: AtomicU8::new(0),
            woken: AtomicWaker::new(),
            wait_start_us: AtomicU64::new(0),
        });
        self.clients.lock().insert(id, Arc::clone(&entry));
        ClientHandle {
            entry,
            registry: Arc::clone(self),
        }
    }

    /// The clients now, oldest first.
    pub(crate) fn snapshot(&self) -> Vec<Arc<ClientEntry>> {
        let mut v: Vec<_> = self.clients.lock().values().cloned().collect();
        v.sort_by_key(|c| c.id);
        v
    }

    /// Starts draining: every session waiting now is woken and sees it, and every later
    /// wait sees it at once.
    pub(crate) fn drain(&self) {
        // Set before the wake-ups: a session registers its waker, then reads the flag.
        self.draining.store(true, Ordering::SeqCst);
        for entry in self.clients.lock().values() {
            entry.woken.wake();
        }
    }

    /// Clients logged in now.
    pub(crate) fn len(&self) -> usize {
        self.clients.lock().len()
    }

    /// No client is logged in.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A registered client; dropping it removes the client.
#[derive(Debug)]
pub(crate) struct ClientHandle {
    entry: Arc<ClientEntry>,
    registry: Arc<ClientRegistry>,
}

impl ClientHandle {
    /// The client's address.
    pub(crate) fn addr(&self) -> Peer {
        self.entry.addr
    }

    /// Sets the client's state.
    pub(crate) fn set(&self, state: ClientState) {
        self.entry.set(state);
    }

    /// The client waits for a server since `since`.
    pub(crate) fn set_waiting_since(&self, since: Instant) {
        self.entry.set_waiting_since(since);
    }

    /// Ready once lakepool is draining; otherwise the task is woken when it starts. Per
    /// client: no shared lock or registration per wait (a `CancellationToken` future takes
    /// two shared mutexes per wait, and every idle client would keep one registered).
    pub(crate) fn poll_draining(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.entry.woken.register(cx.waker());
        if self.registry.draining.load(Ordering::SeqCst) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Drop for ClientHandle {
    fn drop(&mut self) {
        self.registry.clients.lock().remove(&self.entry.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_state_and_removal() {
        let r = Arc::new(ClientRegistry::default());
        let addr = Peer::Tcp("127.0.0.1:5".parse().unwrap());
        let a = r.register("u".into(), "d".into(), addr, false);
        let b = r.register("u".into(), "d".into(), addr, true);
        b.set(ClientState::Waiting);
        let snap = r.snapshot();
        assert_eq!(snap.len(), 2);
        assert_eq!(snap[0].state(), ClientState::Idle);
        assert_eq!(snap[1].state(), ClientState::Waiting);
        assert!(snap[1].waiting_for().is_some());
        drop(a);
        assert_eq!(r.len(), 1);
        drop(b);
        assert!(r.is_empty());
    }
}
