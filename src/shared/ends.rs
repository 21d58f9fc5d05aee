//! Why client sessions ended, counted for `/metrics` (`lakepool_client_sessions_ended_total`).

use std::sync::atomic::{AtomicU64, Ordering};

/// Why a logged-in client's session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EndReason {
    /// The client sent Terminate.
    ClientTerminated,
    /// The client closed its socket.
    ClientClosed,
    /// The client socket failed.
    ClientIo,
    /// The client broke the protocol.
    ClientProtocol,
    /// A server closed, failed or broke the protocol under the client.
    Server,
    /// idle_transaction_timeout.
    IdleTransactionTimeout,
    /// client_idle_timeout.
    ClientIdleTimeout,
    /// lakepool shut down.
    Shutdown,
    /// Any other error lakepool told the client (no server for it, a refused request…).
    Error,
}

impl EndReason {
    /// Every reason, in the order of the counters.
    pub(crate) const ALL: [EndReason; 9] = [
        EndReason::ClientTerminated,
        EndReason::ClientClosed,
        EndReason::ClientIo,
        EndReason::ClientProtocol,
        EndReason::Server,
        EndReason::IdleTransactionTimeout,
        EndReason::ClientIdleTimeout,
        EndReason::Shutdown,
        EndReason::Error,
    ];

    /// The metric label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            EndReason::ClientTerminated => "client_terminated",
            EndReason::ClientClosed => "client_closed",
            EndReason::ClientIo => "client_io",
            EndReason::ClientProtocol => "client_protocol",
            EndReason::Server => "server",
            EndReason::IdleTransactionTimeout => "idle_transaction_timeout",
            EndReason::ClientIdleTimeout => "client_idle_timeout",
            EndReason::Shutdown => "shutdown",
            EndReason::Error => "error",
        }
    }
}

/// Session ends by reason since start.
#[derive(Debug, Default)]
pub(crate) struct SessionEnds([AtomicU64; EndReason::ALL.len()]);

impl SessionEnds {
    /// Counts one session end.
    pub(crate) fn record(&self, reason: EndReason) {
        self.0[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// (label, count) for each reason.
    pub(crate) fn counts(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        EndReason::ALL
            .iter()
            .map(|r| (r.label(), self.0[*r as usize].load(Ordering::Relaxed)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reason_has_its_own_counter() {
        let ends = SessionEnds::default();
        ends.record(EndReason::Shutdown);
        ends.record(EndReason::Shutdown);
        ends.record(EndReason::ClientClosed);
        let counts: Vec<_> = ends.counts().collect();
        assert_eq!(counts.len(), EndReason::ALL.len());
        assert!(counts.contains(&("shutdown", 2)));
        assert!(counts.contains(&("client_closed", 1)));
        assert!(counts.contains(&("error", 0)));
        for (i, r) in EndReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
    }
}
