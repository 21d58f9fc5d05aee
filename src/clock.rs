//! The time, read once per poll of a client's task.
//!
//! One transaction used to read the clock six times: the client's request arriving (for its idle
//! limit), the checkout, the start of the query's timing, its end, the check-in and the reply
//! reaching the client. Each read is a vDSO call and the `Instant` arithmetic after it, about 90
//! instructions. Those reads fall in two polls of the session's task (the request's, the
//! reply's), and within one poll they would differ by microseconds. So, as PgBouncer reads the
//! time once per turn of its event loop, a client's task reads it once per poll: [`scoped`] wraps
//! the poll, and [`now`] inside it returns the first reading.
//!
//! Outside a wrapped poll (maintenance, the admin API, clean-up tasks) [`now`] reads the clock
//! every time. A check that must see time move within one poll (whether a timer that fired has
//! really reached its deadline) reads `Instant::now()` itself.

use std::cell::Cell;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::time::Instant;

#[derive(Clone, Copy)]
enum PollTime {
    /// Not inside a wrapped poll: every [`now`] reads the clock.
    Outside,
    /// Inside a wrapped poll; the clock not read yet.
    Unread,
    /// Inside a wrapped poll, which read the clock at this instant.
    Read(Instant),
}

thread_local! {
    static POLL_TIME: Cell<PollTime> = const { Cell::new(PollTime::Outside) };
}

/// The current time: inside a poll wrapped in [`scoped`], the same instant for the whole poll.
/// `tokio::time::Instant`, so tests that pause tokio's clock control it.
pub(crate) fn now() -> Instant {
    POLL_TIME.with(|c| match c.get() {
        PollTime::Read(t) => t,
        PollTime::Unread => {
            let t = Instant::now();
            c.set(PollTime::Read(t));
            t
        }
        PollTime::Outside => Instant::now(),
    })
}

/// Runs `poll` (one poll of a task) with [`now`] reading the clock at most once. Not nested: an
/// inner scope would end the outer one's.
pub(crate) fn scoped<R>(poll: impl FnOnce() -> R) -> R {
    /// Ends the scope even if the poll unwinds.
    struct End;
    impl Drop for End {
        fn drop(&mut self) {
            POLL_TIME.with(|c| c.set(PollTime::Outside));
        }
    }
    POLL_TIME.with(|c| c.set(PollTime::Unread));
    let _end = End;
    poll()
}

pin_project_lite::pin_project! {
    /// A future whose every poll is inside [`scoped`]. It holds the inner future in place: no
    /// second copy of a client's task state.
    pub(crate) struct OneReadingPerPoll<F> {
        #[pin]
        inner: F,
    }
}

impl<F: Future> Future for OneReadingPerPoll<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let inner = self.project().inner;
        scoped(|| inner.poll(cx))
    }
}

/// `fut`, each of its polls inside [`scoped`].
pub(crate) fn one_reading_per_poll<F: Future>(fut: F) -> OneReadingPerPoll<F> {
    OneReadingPerPoll { inner: fut }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn spin(d: Duration) {
        let t = std::time::Instant::now();
        while t.elapsed() < d {
            std::hint::spin_loop();
        }
    }

    #[test]
    fn inside_a_scope_the_clock_is_read_once() {
        scoped(|| {
            let a = now();
            spin(Duration::from_millis(2));
            assert_eq!(now(), a);
        });
    }

    #[test]
    fn outside_a_scope_and_in_the_next_scope_it_is_read_again() {
        let first = scoped(now);
        spin(Duration::from_millis(2));
        let outside = now();
        assert!(outside > first);
        spin(Duration::from_millis(2));
        assert!(
            now() > outside,
            "outside a scope every call reads the clock"
        );
        spin(Duration::from_millis(2));
        assert!(scoped(now) > outside, "a new scope reads it again");
    }

    #[test]
    fn a_scope_that_unwinds_ends() {
        let caught = std::panic::catch_unwind(|| {
            scoped(|| {
                now();
                panic!("the poll panicked");
            })
        });
        assert!(caught.is_err());
        let a = now();
        spin(Duration::from_millis(2));
        assert!(now() > a);
    }

    #[tokio::test]
    async fn each_poll_of_a_wrapped_future_reads_the_clock_again() {
        let (a, b) = one_reading_per_poll(async {
            let a = now();
            spin(Duration::from_millis(2));
            assert_eq!(now(), a, "same poll");
            tokio::task::yield_now().await;
            (a, now())
        })
        .await;
        assert!(b > a, "the second poll read the clock again");
        spin(Duration::from_millis(2));
        assert!(now() > b, "after the future, no scope");
    }
}
