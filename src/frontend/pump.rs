//! The data path: full-duplex forwarding between a client and its server connection.
//!
//! Both directions are polled from the session's one task, so a client and its server never
//! cost a cross-task wake-up. Each direction reads into one reusable buffer, walks the new bytes
//! with a [`Scanner`] (no copy, no re-encoding), writes the same bytes out, and only then reads
//! again: a slow reader stops its writer (backpressure) and large results stream through a
//! fixed-size buffer. The scanners track what transaction pooling needs: how many
//! ReadyForQuery replies are owed, the last transaction status, and where messages end.

use std::future::Future;
use std::future::poll_fn;
use std::io;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::BytesMut;
use tokio::io::AsyncWrite;
use tokio_util::io::poll_read_buf;

use super::replies::ReplyQueue;
use super::rewrite::{Attached, ClientInput, ClientSide, ServerSide};
use crate::net::Stream;
use crate::pool::statements::StatementRegistry;
use crate::pool::stats::{PoolStats, QueryClock, error_code};
use crate::proto::backend::parse_parameter_status;
use crate::proto::scan::{Interest, ScanError, Scanner};
use crate::upstream::params::ParamMap;
use crate::upstream::prepared::PreparedCache;
use std::sync::atomic::Ordering::Relaxed;

/// Client message tags the session must see: none need bodies.
const CLIENT_INTEREST: Interest = Interest::of(b"");
/// Server message tags whose bodies the session reads: ReadyForQuery, ParameterStatus,
/// ErrorResponse (its SQLSTATE class is counted).
const SERVER_INTEREST: Interest = Interest::of(b"ZSE");

/// Why forwarding stopped.
#[derive(Debug)]
pub enum PumpEnd {
    /// Transaction mode: the server is idle, nothing is in flight, it can be released.
    Idle,
    /// The client sent Terminate.
    ClientTerminated,
    /// The client closed its socket.
    ClientClosed,
    /// The client socket failed.
    ClientIo(io::Error),
    /// The client sent a message the framing cannot accept.
    ClientProtocol(ScanError),
    /// The server closed its socket.
    ServerClosed,
    /// The server socket failed.
    ServerIo(io::Error),
    /// The server sent a message the framing cannot accept.
    ServerProtocol(ScanError),
    /// The client sat idle inside a transaction past idle_transaction_timeout.
    IdleInTransaction,
    /// Session mode: the client sat idle between transactions past client_idle_timeout.
    ClientIdle,
}

/// Protocol state of a client/server pair, carried across transactions.
#[derive(Debug)]
pub struct Tracker {
    /// Client→server boundary tracker.
    pub client_scan: Scanner,
    /// Server→client boundary tracker.
    pub server_scan: Scanner,
    /// ReadyForQuery messages the server still owes (one per Query, Sync, FunctionCall).
    pub pending: u32,
    /// Status byte of the last ReadyForQuery (`I`, `T`, `E`).
    pub status: u8,
    /// Extended-protocol messages were sent since the last Sync.
    pub unsynced: bool,
    /// A Terminate was split across reads and its first bytes reached the server.
    pub partial_terminate: bool,
    /// The client sent Terminate; forwarding stops once earlier bytes are written.
    pub terminated: bool,
    /// Server bytes were read but never delivered to the client.
    pub undelivered: bool,
    /// The server is in COPY FROM STDIN (CopyInResponse seen, CopyDone/CopyFail not yet sent).
    pub copy_in: bool,
    /// Syncs counted since the last Execute, while no CopyDone/CopyFail has closed that window:
    /// if the Execute turns out to start a COPY FROM STDIN, the server ignores them.
    exec_window: Option<u32>,
    /// Windows closed by the client's CopyDone/CopyFail before the server's CopyInResponse
    /// arrived (pipelined COPY), oldest first.
    closed_windows: std::collections::VecDeque<u32>,
    /// The pool's counters (queries, transactions, bytes, errors), when counting.
    pub stats: Option<std::sync::Arc<PoolStats>>,
    /// When the query and the transaction in flight started (query and transaction times).
    pub clock: QueryClock,
}

impl Tracker {
    /// A tracker for a freshly logged-in client.
    pub fn new(max_client_message: usize) -> Self {
        Self {
            client_scan: Scanner::new(CLIENT_INTEREST, max_client_message),
            server_scan: Scanner::new(SERVER_INTEREST, usize::MAX),
            pending: 0,
            status: b'I',
            unsynced: false,
            partial_terminate: false,
            terminated: false,
            undelivered: false,
            copy_in: false,
            exec_window: None,
            closed_windows: std::collections::VecDeque::new(),
            stats: None,
            clock: QueryClock::default(),
        }
    }

    /// True when the server connection is between transactions with nothing in flight.
    pub fn server_idle(&self) -> bool {
        self.pending == 0
            && self.status == b'I'
            && !self.unsynced
            && !self.copy_in
            && self.client_scan.at_boundary()
            && self.server_scan.at_boundary()
    }

    /// Scans client bytes just read. Returns the length to forward (a Terminate is cut off) and
    /// whether the client terminated.
    pub fn scan_client(&mut self, data: &[u8]) -> Result<(usize, bool), ScanError> {
        let mut terminate_at = None;
        let pending = &mut self.pending;
        let unsynced = &mut self.unsynced;
        let copy_in = &mut self.copy_in;
        let window = &mut self.exec_window;
        let closed = &mut self.closed_windows;
        let clock = &mut self.clock;
        if let Some(s) = &self.stats {
            s.received.fetch_add(data.len() as u64, Relaxed);
        }
        self.client_scan.feed(data, |m| {
            match m.tag {
                b'Q' | b'F' => {
                    *pending += 1;
                    *window = None;
                    clock.request();
                }
                // The server ignores Sync (and Flush) while in COPY FROM STDIN: no reply owed.
                b'S' if *copy_in => {}
                b'S' => {
                    *pending += 1;
                    clock.request();
                    *unsynced = false;
                    if let Some(w) = window.as_mut() {
                        *w += 1;
                    }
                }
                b'E' => {
                    *unsynced = true;
                    *window = Some(0);
                }
                b'c' | b'f' => {
                    if *copy_in {
                        *copy_in = false;
                    } else if let Some(w) = window.take() {
                        // CopyDone before the server said CopyInResponse: a pipelined COPY.
                        closed.push_back(w);
                    }
                }
                b'P' | b'B' | b'D' | b'C' | b'H' => *unsynced = true,
                b'X' => {
                    terminate_at = Some(m.start);
                    return ControlFlow::Break(());
                }
                _ => {}
            }
            ControlFlow::Continue(())
        })?;
        if terminate_at.is_some() {
            self.terminated = true;
        }
        Ok(match terminate_at {
            Some(start) if start >= 0 => (start as usize, true),
            Some(_) => {
                self.partial_terminate = true;
                (0, true)
            }
            None => (data.len(), false),
        })
    }

    /// Scans server bytes just read, recording ReadyForQuery and ParameterStatus (applied to
    /// both the client's settings and the server's known parameters).
    pub fn scan_server(
        &mut self,
        data: &[u8],
        client_params: &mut ParamMap,
        server_params: &mut ParamMap,
    ) -> Result<(), ScanError> {
        let pending = &mut self.pending;
        let status = &mut self.status;
        let copy_in = &mut self.copy_in;
        let window = &mut self.exec_window;
        let closed = &mut self.closed_windows;
        let clock = &mut self.clock;
        let stats = self.stats.as_deref();
        if let Some(s) = stats {
            s.sent.fetch_add(data.len() as u64, Relaxed);
        }
        self.server_scan.feed(data, |m| {
            match (m.tag, m.body) {
                (b'Z', Some(body)) => {
                    *pending = pending.saturating_sub(1);
                    *status = body.first().copied().unwrap_or(b'I');
                    if let Some(s) = stats {
                        s.record_ready(*status);
                        s.record_ready_time(clock, *status, *pending == 0);
                    }
                    if *pending == 0 {
                        closed.clear();
                    }
                }
                // CopyInResponse: Syncs the client sent after the Execute that started this
                // COPY are ignored by the server, and so are any until CopyDone/CopyFail.
                (b'G', _) => match closed.pop_front() {
                    Some(w) => *pending = pending.saturating_sub(w),
                    None => {
                        if let Some(w) = window.take() {
                            *pending = pending.saturating_sub(w);
                        }
                        *copy_in = true;
                    }
                },
                (b'E', body) => {
                    if let Some(s) = stats {
                        s.record_error(body.and_then(error_code).unwrap_or(b"XX"));
                    }
                }
                (b'S', Some(body)) => {
                    if let Some((k, v)) = parse_parameter_status(body) {
                        server_params.set(k, v);
                        if client_params.get(k).is_some() {
                            client_params.set(k, v);
                        }
                    }
                }
                _ => {}
            }
            ControlFlow::Continue(())
        })?;
        Ok(())
    }
}

/// One direction's buffer: bytes in `buf[written..]` still have to be written out.
#[derive(Debug, Default)]
pub struct Flow {
    /// Bytes read and not yet fully written.
    pub buf: BytesMut,
    written: usize,
}

impl Flow {
    /// A flow over an existing buffer whose contents still have to be written.
    pub fn with(buf: BytesMut) -> Self {
        Self { buf, written: 0 }
    }

    /// Nothing left to write.
    pub fn is_drained(&self) -> bool {
        self.written >= self.buf.len()
    }

    /// Writes out what is pending, then flushes. Ready(Ok) means the buffer is empty again.
    fn poll_drain(&mut self, cx: &mut Context<'_>, dst: &mut Stream) -> Poll<io::Result<()>> {
        while self.written < self.buf.len() {
            let n = ready!(Pin::new(&mut *dst).poll_write(cx, &self.buf[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        ready!(Pin::new(&mut *dst).poll_flush(cx))?;
        self.buf.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

/// Transaction mode with prepared-statement mapping: the message-level state a forwarding run
/// also works on.
pub struct Mapping<'a> {
    /// The client's side: unhandled input, its named statements.
    pub client: &'a mut ClientSide,
    /// Server-side framing state.
    pub server: &'a mut ServerSide,
    /// Replies owed.
    pub queue: &'a mut ReplyQueue,
    /// The server connection's prepared statements.
    pub cache: &'a mut PreparedCache,
    /// The pool's interned statements.
    pub registry: &'a StatementRegistry,
    /// Most statements prepared per server.
    pub cap: usize,
    /// Parameters tracked besides the built-in ones.
    pub extra_tracked: &'a [String],
    /// Server bytes read and not yet handled.
    pub rx: &'a mut BytesMut,
}

impl Mapping<'_> {
    /// Nothing owed, nothing half-passed.
    fn settled(&self) -> bool {
        self.queue.is_empty() && self.server.at_boundary() && self.rx.is_empty()
    }
}

/// Everything one forwarding run works on.
pub struct Pump<'a> {
    /// Client socket.
    pub client: &'a mut Stream,
    /// Server socket.
    pub server: &'a mut Stream,
    /// Client→server flow (its buffer is the client's pooled buffer).
    pub up: &'a mut Flow,
    /// Server→client flow (its buffer belongs to the server connection).
    pub down: &'a mut Flow,
    /// Protocol state.
    pub tracker: &'a mut Tracker,
    /// The client's session settings.
    pub client_params: &'a mut ParamMap,
    /// The server's known parameters.
    pub server_params: &'a mut ParamMap,
    /// Transaction pooling: stop at the first idle point.
    pub release_when_idle: bool,
    /// Prepared-statement mapping (transaction mode), when on.
    pub mapping: Option<Mapping<'a>>,
    /// Idle limits; both zero (off) by default.
    pub limits: IdleLimits,
}

/// How long a client may sit silent while it holds a server.
#[derive(Debug, Default)]
pub struct IdleLimits {
    /// Inside a transaction (idle_transaction_timeout); zero is off.
    pub in_transaction: std::time::Duration,
    /// Between transactions, session mode (client_idle_timeout); zero is off.
    pub between_transactions: std::time::Duration,
    /// When the client last sent something, kept only while a limit is on.
    last_input: Option<tokio::time::Instant>,
    /// The timer for the current deadline.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl IdleLimits {
    /// Limits for one forwarding run.
    pub fn new(
        in_transaction: std::time::Duration,
        between_transactions: std::time::Duration,
    ) -> Self {
        Self {
            in_transaction,
            between_transactions,
            ..Self::default()
        }
    }

    fn on(&self) -> bool {
        !self.in_transaction.is_zero() || !self.between_transactions.is_zero()
    }

    fn client_sent(&mut self) {
        if self.on() {
            self.last_input = Some(tokio::time::Instant::now());
        }
    }

    /// Arms the timer for the limit that applies now and polls it; Ready with the reason
    /// when the client has been silent too long.
    fn poll_expired(
        &mut self,
        cx: &mut Context<'_>,
        t: &Tracker,
        up_drained: bool,
    ) -> Poll<PumpEnd> {
        if !self.on() {
            return Poll::Pending;
        }
        // Only a client that owes the next move counts as idle: nothing in flight, all sent.
        let waiting_on_client = t.pending == 0 && !t.copy_in && up_drained;
        let (limit, end) = match t.status {
            b'T' | b'E' => (self.in_transaction, PumpEnd::IdleInTransaction),
            _ => (self.between_transactions, PumpEnd::ClientIdle),
        };
        if !waiting_on_client || limit.is_zero() {
            return Poll::Pending;
        }
        let since = *self
            .last_input
            .get_or_insert_with(tokio::time::Instant::now);
        let deadline = since + limit;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        ready!(timer.as_mut().poll(cx));
        Poll::Ready(end)
    }
}

impl Pump<'_> {
    /// Forwards in both directions until one of the [`PumpEnd`] conditions.
    ///
    /// # Cancel safety
    /// Cancel safe in the sense that no byte is lost: unwritten data stays in the flows.
    pub async fn run(&mut self) -> PumpEnd {
        poll_fn(|cx| self.poll_run(cx)).await
    }

    /// Like [`Pump::run`]; once `shutdown` fires, a session-mode pair also stops at its next
    /// idle point (with [`PumpEnd::Idle`]), so lakepool can tell an idle client it is going
    /// away while a client inside a transaction finishes it first.
    pub async fn run_until_shutdown(
        &mut self,
        shutdown: &tokio_util::sync::CancellationToken,
    ) -> PumpEnd {
        if !self.release_when_idle {
            if !shutdown.is_cancelled() {
                tokio::select! {
                    end = poll_fn(|cx| self.poll_run(cx)) => return end,
                    () = shutdown.cancelled() => {}
                }
            }
            self.release_when_idle = true;
            if self.idle_now() {
                return PumpEnd::Idle;
            }
        }
        poll_fn(|cx| self.poll_run(cx)).await
    }

    fn idle_now(&self) -> bool {
        self.up.is_drained()
            && self.down.is_drained()
            && self.tracker.server_idle()
            && self.mapping.as_ref().is_none_or(Mapping::settled)
    }

    fn poll_run(&mut self, cx: &mut Context<'_>) -> Poll<PumpEnd> {
        loop {
            let mut progress = false;
            match self.poll_up(cx) {
                Poll::Ready(Ok(true)) => progress = true,
                Poll::Ready(Ok(false)) => {}
                Poll::Ready(Err(end)) => return Poll::Ready(end),
                Poll::Pending => {}
            }
            match self.poll_down(cx) {
                Poll::Ready(Ok(())) => {
                    progress = true;
                    if self.release_when_idle
                        && self.up.is_drained()
                        && self.tracker.server_idle()
                        && self.mapping.as_ref().is_none_or(Mapping::settled)
                    {
                        return Poll::Ready(PumpEnd::Idle);
                    }
                }
                Poll::Ready(Err(end)) => return Poll::Ready(end),
                Poll::Pending => {}
            }
            if !progress {
                let up_drained = self.up.is_drained();
                if let Poll::Ready(end) = self.limits.poll_expired(cx, self.tracker, up_drained) {
                    return Poll::Ready(end);
                }
                return Poll::Pending;
            }
        }
    }

    /// Client→server: drain pending bytes, then read and scan more. Ready(Ok(true)) when bytes
    /// moved; Err on a terminal condition.
    fn poll_up(&mut self, cx: &mut Context<'_>) -> Poll<Result<bool, PumpEnd>> {
        if self.mapping.is_some() {
            return self.poll_up_mapped(cx);
        }
        if !self.up.is_drained() {
            ready!(self.up.poll_drain(cx, self.server)).map_err(PumpEnd::ServerIo)?;
            if self.tracker.terminated {
                return Poll::Ready(Err(PumpEnd::ClientTerminated));
            }
            return Poll::Ready(Ok(true));
        }
        if self.tracker.terminated {
            return Poll::Ready(Err(PumpEnd::ClientTerminated));
        }
        let before = self.up.buf.len();
        let n = ready!(poll_read_buf(
            Pin::new(&mut *self.client),
            cx,
            &mut self.up.buf
        ))
        .map_err(PumpEnd::ClientIo)?;
        if n == 0 {
            return Poll::Ready(Err(PumpEnd::ClientClosed));
        }
        self.limits.client_sent();
        let (keep, terminated) = self
            .tracker
            .scan_client(&self.up.buf[before..])
            .map_err(PumpEnd::ClientProtocol)?;
        if terminated {
            self.up.buf.truncate(before + keep);
            // Forward what came before the Terminate, then stop.
            ready!(self.up.poll_drain(cx, self.server)).map_err(PumpEnd::ServerIo)?;
            return Poll::Ready(Err(PumpEnd::ClientTerminated));
        }
        Poll::Ready(Ok(true))
    }

    /// Client→server with statement mapping: handle buffered input into the out buffer,
    /// drain it, read more.
    fn poll_up_mapped(&mut self, cx: &mut Context<'_>) -> Poll<Result<bool, PumpEnd>> {
        loop {
            if !self.up.is_drained() {
                ready!(self.up.poll_drain(cx, self.server)).map_err(PumpEnd::ServerIo)?;
                return Poll::Ready(Ok(true));
            }
            if self.tracker.terminated {
                return Poll::Ready(Err(PumpEnd::ClientTerminated));
            }
            if self.handle_client_input()? {
                continue;
            }
            let Some(m) = self.mapping.as_mut() else {
                return Poll::Ready(Ok(false));
            };
            let n = ready!(poll_read_buf(
                Pin::new(&mut *self.client),
                cx,
                &mut m.client.inbuf
            ))
            .map_err(PumpEnd::ClientIo)?;
            if n == 0 {
                return Poll::Ready(Err(PumpEnd::ClientClosed));
            }
            self.limits.client_sent();
            self.handle_client_input()?;
            return Poll::Ready(Ok(true));
        }
    }

    /// Moves what the client sent into the out buffer. True when something is to be sent
    /// or the client terminated.
    fn handle_client_input(&mut self) -> Result<bool, PumpEnd> {
        let Some(m) = self.mapping.as_mut() else {
            return Ok(false);
        };
        if m.client.inbuf.is_empty() {
            return Ok(false);
        }
        let before = self.up.buf.len();
        let input = m
            .client
            .handle(
                &mut self.up.buf,
                &mut Attached {
                    queue: m.queue,
                    cache: m.cache,
                    registry: m.registry,
                    cap: m.cap,
                    max_message: self.tracker.client_scan.max_len(),
                    status: self.tracker.status,
                    extra_tracked: m.extra_tracked,
                    stats: self.tracker.stats.as_deref(),
                },
            )
            .map_err(PumpEnd::ClientProtocol)?;
        self.tracker
            .scan_client(&self.up.buf[before..])
            .map_err(PumpEnd::ClientProtocol)?;
        if input == ClientInput::Terminated {
            self.tracker.terminated = true;
            return Ok(true);
        }
        Ok(self.up.buf.len() > before)
    }

    /// Server→client: drain pending bytes (Ready(Ok) once drained), else read and scan more.
    fn poll_down(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), PumpEnd>> {
        if self.mapping.is_some() {
            return self.poll_down_mapped(cx);
        }
        loop {
            if !self.down.buf.is_empty() {
                ready!(self.down.poll_drain(cx, self.client)).map_err(PumpEnd::ClientIo)?;
                return Poll::Ready(Ok(()));
            }
            let n = ready!(poll_read_buf(
                Pin::new(&mut *self.server),
                cx,
                &mut self.down.buf
            ))
            .map_err(PumpEnd::ServerIo)?;
            if n == 0 {
                return Poll::Ready(Err(PumpEnd::ServerClosed));
            }
            self.tracker
                .scan_server(&self.down.buf, self.client_params, self.server_params)
                .map_err(PumpEnd::ServerProtocol)?;
        }
    }
}

impl Pump<'_> {
    /// Server→client with statement mapping: made-up replies that are due go out first; server
    /// messages are read into `rx` and handled into the out buffer.
    fn poll_down_mapped(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), PumpEnd>> {
        loop {
            if !self.down.buf.is_empty() {
                ready!(self.down.poll_drain(cx, self.client)).map_err(PumpEnd::ClientIo)?;
                return Poll::Ready(Ok(()));
            }
            let Some(m) = self.mapping.as_mut() else {
                return Poll::Ready(Ok(()));
            };
            m.server
                .flush_due(m.queue, &mut self.down.buf, self.tracker.status);
            if !self.down.buf.is_empty() {
                continue;
            }
            let before = m.rx.len();
            let n = ready!(poll_read_buf(Pin::new(&mut *self.server), cx, &mut *m.rx))
                .map_err(PumpEnd::ServerIo)?;
            if n == 0 {
                return Poll::Ready(Err(PumpEnd::ServerClosed));
            }
            self.tracker
                .scan_server(&m.rx[before..], self.client_params, self.server_params)
                .map_err(PumpEnd::ServerProtocol)?;
            m.server.handle(
                m.rx,
                &mut self.down.buf,
                m.queue,
                m.cache,
                m.client,
                self.tracker.status,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    fn client(t: &mut Tracker, tags: &[u8]) {
        let data: Vec<u8> = tags.iter().flat_map(|&tag| msg(tag, b"")).collect();
        t.scan_client(&data).unwrap();
    }

    fn server(t: &mut Tracker, msgs: &[(u8, &[u8])]) {
        let data: Vec<u8> = msgs.iter().flat_map(|(tag, b)| msg(*tag, b)).collect();
        let (mut c, mut s) = (ParamMap::new(), ParamMap::new());
        t.scan_server(&data, &mut c, &mut s).unwrap();
    }

    #[test]
    fn simple_and_extended_queries_release_at_idle() {
        let mut t = Tracker::new(1 << 20);
        client(&mut t, b"Q");
        assert!(!t.server_idle());
        server(
            &mut t,
            &[(b'T', b""), (b'D', b""), (b'C', b""), (b'Z', b"I")],
        );
        assert!(t.server_idle());
        client(&mut t, b"PBDES");
        server(
            &mut t,
            &[(b'1', b""), (b'2', b""), (b'C', b""), (b'Z', b"T")],
        );
        assert!(!t.server_idle(), "inside a transaction");
        client(&mut t, b"Q");
        server(&mut t, &[(b'C', b""), (b'Z', b"I")]);
        assert!(t.server_idle());
    }

    #[test]
    fn query_and_transaction_time_span_request_to_ready() {
        use std::sync::atomic::Ordering::Relaxed;
        let mut t = Tracker::new(1 << 20);
        let stats = std::sync::Arc::new(PoolStats::default());
        t.stats = Some(std::sync::Arc::clone(&stats));
        // A pipeline of two batches is one query span, ended by the second ReadyForQuery.
        client(&mut t, b"BESBES");
        std::thread::sleep(std::time::Duration::from_millis(2));
        server(&mut t, &[(b'2', b""), (b'C', b""), (b'Z', b"T")]);
        assert_eq!(stats.query_us.load(Relaxed), 0, "a reply is still owed");
        server(&mut t, &[(b'2', b""), (b'C', b""), (b'Z', b"T")]);
        let query = stats.query_us.load(Relaxed);
        assert!(query >= 2000, "{query}");
        assert_eq!(stats.xact_us.load(Relaxed), 0, "inside a transaction");
        client(&mut t, b"Q");
        server(&mut t, &[(b'C', b""), (b'Z', b"I")]);
        assert!(stats.xact_us.load(Relaxed) >= query);
        assert_eq!(stats.queries.load(Relaxed), 3);
        assert_eq!(stats.xacts.load(Relaxed), 1);
    }

    #[test]
    fn pipelined_batches_and_flush_without_sync_hold_the_server() {
        let mut t = Tracker::new(1 << 20);
        client(&mut t, b"BESBESBES");
        server(&mut t, &[(b'Z', b"I"), (b'Z', b"I")]);
        assert!(!t.server_idle(), "one reply still owed");
        server(&mut t, &[(b'Z', b"I")]);
        assert!(t.server_idle());
        client(&mut t, b"PBEH");
        server(&mut t, &[(b'1', b""), (b'2', b""), (b'C', b"")]);
        assert!(!t.server_idle(), "extended messages await a Sync");
    }

    #[test]
    fn extended_copy_in_ignores_syncs_during_copy() {
        // tokio-postgres / libpq: Bind, Execute, Sync; then CopyData…, CopyDone, Sync.
        let mut t = Tracker::new(1 << 20);
        client(&mut t, b"BES");
        server(&mut t, &[(b'2', b""), (b'G', b"")]);
        assert!(!t.server_idle(), "in COPY");
        client(&mut t, b"ddc");
        client(&mut t, b"S");
        server(&mut t, &[(b'C', b""), (b'Z', b"I")]);
        assert!(t.server_idle(), "{t:?}");
    }

    #[test]
    fn fully_pipelined_copy_in() {
        let mut t = Tracker::new(1 << 20);
        client(&mut t, b"BESddcS");
        server(&mut t, &[(b'2', b""), (b'G', b"")]);
        assert!(!t.server_idle());
        server(&mut t, &[(b'C', b""), (b'Z', b"I")]);
        assert!(t.server_idle(), "{t:?}");
    }

    #[test]
    fn copy_in_response_before_the_sync() {
        let mut t = Tracker::new(1 << 20);
        client(&mut t, b"BEH");
        server(&mut t, &[(b'2', b""), (b'G', b"")]);
        client(&mut t, b"Sddc");
        assert!(!t.server_idle());
        client(&mut t, b"S");
        server(&mut t, &[(b'C', b""), (b'Z', b"I")]);
        assert!(t.server_idle(), "{t:?}");
    }

    #[test]
    fn simple_copy_in() {
        let mut t = Tracker::new(1 << 20);
        client(&mut t, b"Q");
        server(&mut t, &[(b'G', b"")]);
        client(&mut t, b"dddc");
        assert!(!t.server_idle());
        server(&mut t, &[(b'C', b""), (b'Z', b"I")]);
        assert!(t.server_idle());
    }

    #[test]
    fn error_mid_pipeline_still_one_reply_per_sync() {
        let mut t = Tracker::new(1 << 20);
        client(&mut t, b"PBESPBES");
        server(&mut t, &[(b'E', b""), (b'Z', b"I")]);
        assert!(!t.server_idle());
        server(
            &mut t,
            &[(b'1', b""), (b'2', b""), (b'C', b""), (b'Z', b"I")],
        );
        assert!(t.server_idle());
    }

    #[test]
    fn terminate_is_cut_off() {
        let mut t = Tracker::new(1 << 20);
        let mut data = msg(b'Q', b"select 1\0");
        let q_len = data.len();
        data.extend(msg(b'X', b""));
        let (keep, terminated) = t.scan_client(&data).unwrap();
        assert_eq!((keep, terminated), (q_len, true));
    }
}
