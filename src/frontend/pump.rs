//! The data path: full-duplex forwarding between a client and its server connection, one
//! pipeline per direction.
//!
//! Both directions are polled from the session's one task, so a client and its server never
//! cost a cross-task wake-up. Each direction reads into its fixed buffer, frames what arrived
//! once, passes each message through (or, in transaction mode, through the transaction-mode
//! handling in [`super::txn`]), writes, and only then reads again: a slow reader stops its
//! writer (backpressure), and what lakepool makes up itself counts against the client's output
//! like what the server sends. Large messages stream through the fixed buffers.
//!
//! Every wait on the client is bounded while it holds a server: a client that stops sending
//! (inside a transaction, half-way through a message, in COPY) or stops reading is cut off
//! after `idle_transaction_timeout`; in session mode an idle client after
//! `client_idle_timeout`.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use super::pipe::{Next, Pipe};
use super::tracker::Tracker;
use super::txn::client::MAX_QUEUED;
use super::txn::{Attached, TxnClient};
use crate::net::{ReadArmed, Stream};
use crate::proto::backend::parse_parameter_status;
use crate::proto::frame::{FrameError, HEADER_LEN};
use crate::shared::clients::ClientHandle;
use crate::shared::ends::EndReason;
use crate::upstream::params::{ParamMap, is_settable};

/// Most bytes lakepool's own replies may add to what waits to be written to a client before
/// it stops reading that client.
const MAX_PENDING_OUT: usize = 64 * 1024;

/// Why forwarding stopped.
#[derive(Debug)]
pub(crate) enum PumpEnd {
    /// Transaction mode: the server is idle, nothing is in flight, it can be released.
    Idle,
    /// The client sent Terminate.
    ClientTerminated,
    /// The client closed its socket.
    ClientClosed,
    /// The client socket failed.
    ClientIo(io::Error),
    /// The client sent a message the framing cannot accept.
    ClientProtocol(FrameError),
    /// The server closed its socket.
    ServerClosed,
    /// The server socket failed.
    ServerIo(io::Error),
    /// The server sent a message the framing cannot accept.
    ServerProtocol(FrameError),
    /// The client held a server without sending or reading past idle_transaction_timeout.
    IdleInTransaction,
    /// Session mode: the client sat idle between transactions past client_idle_timeout.
    ClientIdle,
}

/// How long a client may keep lakepool waiting, and the one timer that enforces it.
#[derive(Debug, Default)]
pub(crate) struct IdleLimits {
    /// While it holds a server and owes the next move or does not read
    /// (idle_transaction_timeout), in milliseconds (0: none). Milliseconds in a u32 (49 days at
    /// most), not `Duration`s: every idle client carries this struct.
    in_transaction_ms: u32,
    /// Idle between transactions (client_idle_timeout): without a server in transaction mode,
    /// with its server in session mode. Milliseconds, 0: none.
    idle_ms: u32,
    /// When the client last sent or read something (kept only while a limit is on).
    last_progress: Option<Instant>,
    /// One timer for the session, re-armed only when it fires: moving bytes costs a clock
    /// read, never a timer update.
    timer: Option<Pin<Box<Sleep>>>,
}

/// A limit in whole milliseconds: below 1 ms is 1 ms (still on), above 49 days is 49 days.
fn limit_ms(d: Duration) -> u32 {
    if d.is_zero() {
        return 0;
    }
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX).max(1)
}

/// Which limit applies to a wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// Not waiting on the client.
    None,
    /// The client holds a server (or a half-sent message) and owes the next move.
    Stalled,
    /// The client is idle between transactions.
    Idle,
}

impl IdleLimits {
    /// Limits from the pool settings.
    pub(crate) fn new(in_transaction: Duration, idle: Duration) -> Self {
        Self {
            in_transaction_ms: limit_ms(in_transaction),
            idle_ms: limit_ms(idle),
            ..Self::default()
        }
    }

    fn on(&self) -> bool {
        self.in_transaction_ms != 0 || self.idle_ms != 0
    }

    /// The client moved bytes.
    pub(crate) fn progress(&mut self) {
        if self.on() {
            self.last_progress = Some(Instant::now());
        }
    }

    /// Ready when the client has kept lakepool waiting in `wait` past its limit.
    pub(crate) fn poll_expired(&mut self, cx: &mut Context<'_>, wait: Wait) -> Poll<()> {
        let limit = match wait {
            Wait::None => return Poll::Pending,
            Wait::Stalled => self.in_transaction_ms,
            Wait::Idle => self.idle_ms,
        };
        if limit == 0 {
            return Poll::Pending;
        }
        let limit = Duration::from_millis(u64::from(limit));
        let since = *self.last_progress.get_or_insert_with(Instant::now);
        let deadline = since + limit;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        loop {
            // Armed for a later deadline than needed (a stricter limit applies now): re-arm.
            if timer.deadline() > deadline {
                timer.as_mut().reset(deadline);
            }
            ready!(timer.as_mut().poll(cx));
            if Instant::now() >= deadline {
                return Poll::Ready(());
            }
            // Fired for an older deadline: the client moved since.
            timer.as_mut().reset(deadline);
        }
    }
}

/// Transaction mode: the client's state and the server-side things it works on.
pub(crate) struct TxnPart<'a> {
    /// The client's transaction-mode state.
    pub(crate) client: &'a mut TxnClient,
    /// The server's statements, the reply queue, the pool's registry, the limits.
    pub(crate) at: Attached<'a>,
}

/// Everything one forwarding run works on.
pub(crate) struct Pump<'a> {
    /// Client socket.
    client: &'a mut Stream,
    /// Server socket.
    server: &'a mut Stream,
    /// Everything else.
    core: Core<'a>,
    /// Whether this run's last read of the client said Pending: the server's wake-ups then
    /// need not poll the client again.
    client_read: ReadArmed,
}

/// The sockets that said Pending in the current wake-up.
#[derive(Debug, Default)]
struct Blocked {
    client_read: bool,
    client_write: bool,
    server_read: bool,
    server_write: bool,
}

/// A forwarding run without its sockets: the framing and bookkeeping of both directions.
pub(crate) struct Core<'a> {
    /// Client→server pipeline (the client's buffer).
    pub(crate) up: &'a mut Pipe,
    /// Server→client pipeline (over the server connection's buffer).
    pub(crate) down: &'a mut Pipe,
    /// Protocol state.
    pub(crate) tracker: &'a mut Tracker,
    /// The server's reported parameter values.
    pub(crate) server_params: &'a mut ParamMap,
    /// Transaction mode.
    pub(crate) txn: Option<TxnPart<'a>>,
    /// Transaction pooling: stop at the first idle point.
    pub(crate) release_when_idle: bool,
    /// Idle limits.
    pub(crate) limits: &'a mut IdleLimits,
    /// Largest client message accepted.
    pub(crate) max_message: usize,
    /// The client sent Terminate (everything before it goes out first).
    pub(crate) terminated: bool,
    /// Bytes moved to or from the client since the idle timer last heard of it.
    pub(crate) client_moved: bool,
}

impl<'a> Pump<'a> {
    /// A forwarding run between `client` and `server`.
    pub(crate) fn new(client: &'a mut Stream, server: &'a mut Stream, core: Core<'a>) -> Self {
        Self {
            client,
            server,
            core,
            client_read: ReadArmed::default(),
        }
    }

    /// Whether the run's last read of the client said Pending (see [`ReadArmed`]).
    pub(crate) fn client_read_armed(&self) -> bool {
        self.client_read.is_armed()
    }

    /// Forwards in both directions until one of the [`PumpEnd`] conditions; once lakepool
    /// drains, a session-mode pair also stops at its next idle point (with [`PumpEnd::Idle`]),
    /// so lakepool can tell an idle client it is going away while a client inside a
    /// transaction finishes it first. Cancel safe in that no byte is lost: unwritten data stays
    /// in the pipes.
    pub(crate) async fn run_until_shutdown(&mut self, entry: &ClientHandle) -> PumpEnd {
        if !self.core.release_when_idle {
            let drained = poll_fn(|cx| {
                if entry.poll_draining(cx).is_ready() {
                    return Poll::Ready(None);
                }
                self.poll_run(cx).map(Some)
            })
            .await;
            match drained {
                Some(end) => return end,
                None => self.core.release_when_idle = true,
            }
            if self.core.idle_now() {
                return PumpEnd::Idle;
            }
        }
        poll_fn(|cx| self.poll_run(cx)).await
    }

    fn poll_run(&mut self, cx: &mut Context<'_>) -> Poll<PumpEnd> {
        // A socket that said Pending in this wake-up stays so until the next one: asking again
        // would only cost a readiness check.
        let mut blocked = Blocked::default();
        loop {
            let mut progress = false;
            match self.poll_up(cx, &mut blocked) {
                Poll::Ready(Ok(())) => progress = true,
                Poll::Ready(Err(end)) => return Poll::Ready(end),
                Poll::Pending => {}
            }
            match self.poll_down(cx, &mut blocked) {
                Poll::Ready(Ok(())) => progress = true,
                Poll::Ready(Err(end)) => return Poll::Ready(end),
                Poll::Pending => {}
            }
            let core = &mut self.core;
            if core.release_when_idle && core.idle_now() {
                return Poll::Ready(PumpEnd::Idle);
            }
            if !progress {
                // One clock read per wake-up, not per read or write.
                if std::mem::take(&mut core.client_moved) {
                    core.limits.progress();
                }
                let wait = core.waiting_on_client();
                if core.limits.poll_expired(cx, wait).is_ready() {
                    return Poll::Ready(match wait {
                        Wait::Idle => PumpEnd::ClientIdle,
                        _ => PumpEnd::IdleInTransaction,
                    });
                }
                return Poll::Pending;
            }
        }
    }

    /// Client→server: write what is framed, frame what was read, read more. Ready(Ok) when
    /// something moved.
    fn poll_up(
        &mut self,
        cx: &mut Context<'_>,
        blocked: &mut Blocked,
    ) -> Poll<Result<(), PumpEnd>> {
        let core = &mut self.core;
        let mut moved = false;
        loop {
            if core.up.has_output() {
                if blocked.server_write {
                    return moved_or_pending(moved);
                }
                match core.up.poll_write_out(cx, self.server) {
                    Poll::Ready(Ok(())) => moved = true,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(PumpEnd::ServerIo(e))),
                    Poll::Pending => {
                        blocked.server_write = true;
                        return moved_or_pending(moved);
                    }
                }
            }
            if core.terminated {
                return Poll::Ready(Err(PumpEnd::ClientTerminated));
            }
            core.frame_up()?;
            if core.up.has_output() || core.terminated {
                continue;
            }
            if core.held_back() || blocked.client_read {
                return moved_or_pending(moved);
            }
            let up = &mut *core.up;
            let n = match self.client_read.poll(self.client, |c| up.poll_fill(cx, c)) {
                Poll::Ready(Ok(n)) => n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(PumpEnd::ClientIo(e))),
                Poll::Pending => {
                    blocked.client_read = true;
                    return moved_or_pending(moved);
                }
            };
            if n == 0 {
                return Poll::Ready(Err(PumpEnd::ClientClosed));
            }
            moved = true;
            core.client_moved = true;
            if let Some(s) = &core.tracker.stats {
                s.local().received.fetch_add(n as u64, Relaxed);
            }
        }
    }

    /// Server→client: write what is framed, frame what was read, read more.
    fn poll_down(
        &mut self,
        cx: &mut Context<'_>,
        blocked: &mut Blocked,
    ) -> Poll<Result<(), PumpEnd>> {
        let core = &mut self.core;
        let mut moved = false;
        loop {
            if core.down.has_output() {
                if blocked.client_write {
                    return moved_or_pending(moved);
                }
                match core.down.poll_write_out(cx, self.client) {
                    Poll::Ready(Ok(())) => {
                        moved = true;
                        core.client_moved = true;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(PumpEnd::ClientIo(e))),
                    Poll::Pending => {
                        blocked.client_write = true;
                        return moved_or_pending(moved);
                    }
                }
            }
            core.frame_down()?;
            if core.down.has_output() {
                continue;
            }
            if blocked.server_read {
                return moved_or_pending(moved);
            }
            if core.release_when_idle && core.idle_now() {
                // The transaction is over: reading the server again would only register a
                // waker for a connection about to go back to the pool.
                return Poll::Ready(Err(PumpEnd::Idle));
            }
            let n = match core.down.poll_fill(cx, self.server) {
                Poll::Ready(Ok(n)) => n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(PumpEnd::ServerIo(e))),
                Poll::Pending => {
                    blocked.server_read = true;
                    return moved_or_pending(moved);
                }
            };
            if n == 0 {
                return Poll::Ready(Err(PumpEnd::ServerClosed));
            }
            moved = true;
            if let Some(s) = &core.tracker.stats {
                s.local().sent.fetch_add(n as u64, Relaxed);
            }
        }
    }
}

/// Ready(Ok) when a direction moved bytes before it had to wait, else Pending.
fn moved_or_pending(moved: bool) -> Poll<Result<(), PumpEnd>> {
    if moved {
        Poll::Ready(Ok(()))
    } else {
        Poll::Pending
    }
}

impl Core<'_> {
    /// The server is between transactions, nothing is owed either way and no message is
    /// half through: it could serve another client. Server bytes read and not framed yet (the
    /// start of a message the server sent after its ReadyForQuery, such as an asynchronous
    /// ParameterStatus or a FATAL error) keep it: released, they would be dropped with the
    /// buffer and its next client would frame the rest of that message as a new one.
    pub(crate) fn idle_now(&self) -> bool {
        // The server's state first: inside a transaction, the one that says no.
        self.tracker.server_idle()
            && !self.up.has_output()
            && !self.up.is_streaming()
            && !self.down.has_output()
            && !self.down.is_streaming()
            && self.down.unread().is_empty()
            && self
                .txn
                .as_ref()
                .is_none_or(|t| t.at.queue.is_empty() && t.client.notices.is_empty())
    }

    /// What lakepool waits for from the client now, if anything.
    fn waiting_on_client(&self) -> Wait {
        if self.down.has_output() {
            // The client does not read what it asked for.
            return Wait::Stalled;
        }
        if self.up.has_output() {
            return Wait::None;
        }
        if self.up.is_streaming() || self.up.is_holding() {
            // Half-way through a message the server waits for its rest, whatever it owes.
            return Wait::Stalled;
        }
        let t = &*self.tracker;
        if !(t.waiting_on_client() || t.copy_in) {
            return Wait::None;
        }
        if t.server_idle() && self.up.unread().is_empty() && self.down.unread().is_empty() {
            Wait::Idle
        } else {
            Wait::Stalled
        }
    }

    /// The client is ahead: lakepool's own replies wait to be written to it, too many replies
    /// are owed, or what its messages became (rewritten, with statements prepared first) waits
    /// to be written to the server. Framing and reading it resume as those are written. The
    /// last bound matters because a rewrite can be larger than the message: without it, one
    /// read buffer of small messages could turn into any amount of output in one round (found
    /// by the `txn` fuzz target: 16 KiB of `pg_prepared_statements` queries, 100 KiB out).
    fn held_back(&self) -> bool {
        self.down.output_len() > MAX_PENDING_OUT
            || self.up.output_len() > MAX_PENDING_OUT
            || self
                .txn
                .as_ref()
                .is_some_and(|t| t.at.queue.len() >= MAX_QUEUED || t.client.replay_pending())
    }

    /// Handles the client messages that have arrived.
    pub(crate) fn frame_up(&mut self) -> Result<(), PumpEnd> {
        loop {
            if self.held_back() {
                return Ok(());
            }
            let h = match self
                .up
                .next(self.max_message)
                .map_err(PumpEnd::ClientProtocol)?
            {
                Next::NeedMore => return Ok(()),
                Next::Message(h) => h,
            };
            if h.tag == b'X' {
                // Terminate: everything before it goes out, then the session ends.
                self.up.drop_message(h);
                self.terminated = true;
                return Ok(());
            }
            match &mut self.txn {
                Some(t) => {
                    let step = t.client.on_message(h, self.up, &mut t.at, self.tracker);
                    if step == super::txn::client::Step::NeedMore {
                        return Ok(());
                    }
                }
                None => {
                    if self.up.whole(h).is_none() && self.up.fits(h) {
                        return Ok(());
                    }
                    self.tracker.client_sent(h.tag);
                    self.up.pass_message(h);
                }
            }
        }
    }

    /// Handles the server messages that have arrived, with lakepool's own replies put where
    /// they belong.
    pub(crate) fn frame_down(&mut self) -> Result<(), PumpEnd> {
        loop {
            if let Some(t) = &mut self.txn
                && !self.down.is_streaming()
                && t.client.has_due(&t.at)
            {
                t.client
                    .write_due(&mut t.at, self.tracker.status, self.down.emit());
            }
            let h = match self
                .down
                .next(usize::MAX)
                .map_err(PumpEnd::ServerProtocol)?
            {
                Next::NeedMore => return Ok(()),
                Next::Message(h) => h,
            };
            let mapping = self.txn.as_ref().is_some_and(|t| t.at.limits.mapping());
            let inspect = matches!(h.tag, b'Z' | b'S' | b'E') || (mapping && h.tag == b'C');
            let forward = {
                let body = if inspect {
                    match self.down.whole(h) {
                        Some(m) => Some(&m[HEADER_LEN..]),
                        // Wait for the rest unless it cannot fit: then it passes unread.
                        None if self.down.fits(h) => return Ok(()),
                        None => None,
                    }
                } else {
                    None
                };
                self.tracker.server_sent(h.tag, body);
                if h.tag == b'S'
                    && let Some((k, v)) = body.and_then(parse_parameter_status)
                {
                    self.server_params.set(k, v);
                    if let Some(t) = &mut self.txn
                        && is_settable(k)
                    {
                        // The client changed a reported parameter (maybe inside a function):
                        // its value follows the client.
                        t.client.changes.set(&k.to_ascii_lowercase());
                    }
                }
                match &mut self.txn {
                    Some(t) => {
                        let forward = t.client.on_server_message(h.tag, body, &mut t.at);
                        let skipped = t.at.queue.take_skipped_queries();
                        if skipped > 0 {
                            self.tracker.replies_skipped(skipped);
                        }
                        forward
                    }
                    None => true,
                }
            };
            if forward {
                self.down.pass_message(h);
            } else {
                self.down.drop_message(h);
            }
            if let Some(t) = &mut self.txn
                && t.client.replay_due()
            {
                t.client.replay_batch(self.up, &mut t.at, self.tracker);
            }
        }
    }
}

impl std::fmt::Display for PumpEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PumpEnd::Idle => f.write_str("idle"),
            PumpEnd::ClientTerminated => f.write_str("client terminated"),
            PumpEnd::ClientClosed => f.write_str("client closed the connection"),
            PumpEnd::ClientIo(e) => write!(f, "client I/O error: {e}"),
            PumpEnd::ClientProtocol(e) => write!(f, "protocol violation: {e}"),
            PumpEnd::ServerClosed => f.write_str("server closed the connection"),
            PumpEnd::ServerIo(e) => write!(f, "server I/O error: {e}"),
            PumpEnd::ServerProtocol(e) => write!(f, "server protocol error: {e}"),
            PumpEnd::IdleInTransaction => f.write_str("idle_transaction_timeout"),
            PumpEnd::ClientIdle => f.write_str("client_idle_timeout"),
        }
    }
}

impl PumpEnd {
    /// Why the session ended, when the run ends it.
    pub(crate) fn reason(&self) -> EndReason {
        match self {
            // A run ends idle as a session's end only when lakepool shuts down.
            PumpEnd::Idle => EndReason::Shutdown,
            PumpEnd::ClientTerminated => EndReason::ClientTerminated,
            PumpEnd::ClientClosed => EndReason::ClientClosed,
            PumpEnd::ClientIo(_) => EndReason::ClientIo,
            PumpEnd::ClientProtocol(_) => EndReason::ClientProtocol,
            PumpEnd::ServerClosed | PumpEnd::ServerIo(_) | PumpEnd::ServerProtocol(_) => {
                EndReason::Server
            }
            PumpEnd::IdleInTransaction => EndReason::IdleTransactionTimeout,
            PumpEnd::ClientIdle => EndReason::ClientIdleTimeout,
        }
    }
}
