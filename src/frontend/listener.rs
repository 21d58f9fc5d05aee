//! Accept loop: one task per client connection.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use super::Frontend;
use super::session::serve_client;
use crate::net::tune;

/// Accepts clients until shutdown. Accept errors (e.g. out of file descriptors) back off
/// instead of ending the listener or spinning.
pub async fn run(listener: TcpListener, fe: Arc<Frontend>) {
    let mut backoff = AcceptBackoff::new("client listener");
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            () = fe.shutdown.cancelled() => return,
        };
        match accepted {
            Ok((tcp, peer)) => {
                backoff.succeeded();
                tune(&tcp);
                tokio::spawn(serve_client(Arc::clone(&fe), tcp, peer));
            }
            Err(e) => backoff.failed(&e).await,
        }
    }
}

/// First pause after a failed accept.
const FIRST_PAUSE: Duration = Duration::from_millis(10);
/// Longest pause between accept attempts while they keep failing.
const MAX_PAUSE: Duration = Duration::from_secs(1);

/// What a listener does when accept fails (EMFILE when out of file descriptors, ENOBUFS…):
/// it pauses, doubling the pause up to a second, and logs one warning per episode of
/// failures and one line when accepting works again, instead of a line every few
/// milliseconds.
#[derive(Debug)]
pub struct AcceptBackoff {
    what: &'static str,
    pause: Duration,
    failures: u64,
}

impl AcceptBackoff {
    /// A backoff for the listener named `what` (for the log lines).
    pub fn new(what: &'static str) -> Self {
        Self {
            what,
            pause: FIRST_PAUSE,
            failures: 0,
        }
    }

    /// Call after a failed accept: warns if it is the first of an episode, then pauses.
    pub async fn failed(&mut self, e: &std::io::Error) {
        if self.failures == 0 {
            tracing::warn!(listener = self.what, error = %e,
                "accept failed; retrying with backoff up to 1 s (no further lines until it works)");
        }
        self.failures += 1;
        tokio::time::sleep(self.pause).await;
        self.pause = (self.pause * 2).min(MAX_PAUSE);
    }

    /// Call after a successful accept: ends an episode of failures.
    pub fn succeeded(&mut self) {
        if self.failures > 0 {
            tracing::info!(
                listener = self.what,
                failed_attempts = self.failures,
                "accepting connections again"
            );
            self.failures = 0;
            self.pause = FIRST_PAUSE;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn pauses_double_up_to_a_second_and_reset_on_success() {
        let mut b = AcceptBackoff::new("test");
        let e = std::io::Error::other("EMFILE");
        let mut pauses = Vec::new();
        for _ in 0..10 {
            let before = tokio::time::Instant::now();
            b.failed(&e).await;
            pauses.push(before.elapsed());
        }
        assert_eq!(pauses[0], FIRST_PAUSE);
        assert_eq!(pauses[1], FIRST_PAUSE * 2);
        assert_eq!(*pauses.last().unwrap(), MAX_PAUSE);
        assert_eq!(b.failures, 10);
        b.succeeded();
        assert_eq!((b.failures, b.pause), (0, FIRST_PAUSE));
    }
}
