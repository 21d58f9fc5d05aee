//! Transaction mode, client → server: each client message is framed once by the pipe and
//! handled here, or in the file for its kind of message:
//!
//! - [`super::inspect`]: SQL (simple queries, Parse) inspected for what it does to session
//!   state, SQL-level prepared statements followed.
//! - [`super::statements`]: with statement mapping on, Parse, Bind, Describe and Close of named
//!   statements rewritten to the statement's server-side name.
//! - [`super::catalog`]: `pg_prepared_statements` rewritten for the client's own names.
//! - [`super::replay`]: a batch sent again after a stale shared statement.
//! - [`super::without_server`]: prepare-only input answered before a server is attached.
//!
//! Everything else passes unchanged; large messages (COPY data, big Binds) stream through
//! without being held whole.

use super::replay::ReplayState;
use super::replies::{Expect, Synth};
use super::statements::{bind_names_pending, parse_name_pending};
use super::{Attached, TxnClient};
use crate::error::ClientError;
use crate::frontend::pipe::Pipe;
use crate::frontend::tracker::Tracker;
use crate::proto::frame::{FrameError, Header};
use crate::proto::frontend;

/// Most entries the reply queue may hold before lakepool stops reading the client: a client
/// that pipelines requests without reading replies is held back, not buffered.
pub(crate) const MAX_QUEUED: usize = 4096;

/// Most Closes owed by a server's cache (see [`PreparedCache`]) sent in front of a simple
/// query (two go in front of each Parse lakepool sends): the server is rid of them within a
/// few requests, and one message never queues more than a few replies.
///
/// [`PreparedCache`]: crate::upstream::prepared::PreparedCache
pub(crate) const MAX_OWED_CLOSES: usize = 8;

/// What handling the message at the framing position came to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Handled; go on with the next message.
    Done,
    /// More bytes are needed first.
    NeedMore,
}

/// A whole message, or why there is none yet.
pub(super) enum Whole {
    Ready,
    Wait,
    TooBig,
}

/// Makes the message at the framing position whole if it can be: in the read buffer, or in
/// the side buffer up to the hold limit.
pub(super) fn whole(up: &mut Pipe, h: Header, hold_limit: usize) -> Whole {
    if up.whole(h).is_some() {
        Whole::Ready
    } else if up.fits(h) {
        Whole::Wait
    } else if h.total() <= hold_limit && !up.is_holding() {
        up.start_holding(h);
        Whole::Wait
    } else if up.is_holding() {
        Whole::Wait
    } else {
        Whole::TooBig
    }
}

/// Whether lakepool must see the whole message: SQL it inspects, statement names it maps.
fn inspected(tag: u8, mapping: bool) -> bool {
    matches!(tag, b'Q' | b'P') || (mapping && matches!(tag, b'B' | b'D' | b'C'))
}

/// Before a server is attached: whether the client's next request is ready to go (a whole
/// message, or one that must stream), holding an inspected message that is larger than the read
/// buffer until it is whole. Only a client with a request ready gets a server, so a client that
/// stops half-way through a message holds no server.
pub(crate) fn request_ready(up: &mut Pipe, limits: &super::TxnLimits) -> Result<bool, FrameError> {
    match up.next(limits.max_message)? {
        crate::frontend::pipe::Next::NeedMore => Ok(false),
        crate::frontend::pipe::Next::Message(h) => {
            if up.whole(h).is_some() {
                return Ok(true);
            }
            if up.fits(h) {
                return Ok(false);
            }
            if inspected(h.tag, limits.mapping()) {
                return Ok(match whole(up, h, limits.hold_limit) {
                    Whole::Wait => false,
                    Whole::Ready => true,
                    // It streams, but without mapping a Parse goes only once its name is in:
                    // a server taken earlier would be released at once with nothing done, and
                    // taken again, in a loop (found by the txn fuzz target).
                    // The same for a Bind with mapping on, which needs its statement name.
                    Whole::TooBig => match h.tag {
                        b'P' => limits.mapping() || !parse_name_pending(up),
                        b'B' => !limits.mapping() || !bind_names_pending(up),
                        _ => true,
                    },
                });
            }
            Ok(true)
        }
    }
}

impl TxnClient {
    /// Handles the client message whose header is at the framing position of `up`.
    pub(crate) fn on_message(
        &mut self,
        h: Header,
        up: &mut Pipe,
        at: &mut Attached<'_>,
        tracker: &mut Tracker,
    ) -> Step {
        let mapping = at.limits.mapping();
        if self.discarding {
            if h.tag != b'S' {
                up.drop_message(h);
                return Step::Done;
            }
            self.discarding = false;
        }
        if let Some(r) = self.replay.as_mut()
            && r.state == ReplayState::Recording
        {
            r.record(h, up);
        }
        if at.queue.skipping() {
            if matches!(h.tag, b'Q' | b'F') {
                // Ignored by the server like the rest (no reply; a direct connection leaves
                // the client waiting too): not sent, and no ReadyForQuery awaited.
                up.drop_message(h);
                return Step::Done;
            }
            // The server ignores everything up to Sync: pass it untouched.
            return self.pass(h, up, at, tracker);
        }
        if h.tag == b'Q'
            && mapping
            && at.cache.owes_closes()
            && !tracker.unsynced
            && !tracker.copy_in
        {
            // A simple query starts an exchange of its own: the Closes go first, with a Sync
            // of lakepool's so their replies come back (and are dropped) whatever the query
            // turns out to be, even one lakepool answers itself. Parses lakepool sends take
            // owed Closes along as well (`prepare`).
            super::statements::close_owed(up, at, tracker, MAX_OWED_CLOSES);
            frontend::sync(up.emit());
            at.queue.push(Expect::OwnSync);
            tracker.client_sent(b'S');
        }
        match h.tag {
            b'Q' => self.query(h, up, at, tracker),
            b'P' => self.parse(h, up, at, tracker),
            b'B' if mapping => self.bind(h, up, at, tracker),
            b'D' | b'C' if mapping => self.describe_or_close(h, up, at, tracker),
            _ => self.pass(h, up, at, tracker),
        }
    }

    /// Passes a message unchanged: once it is whole if it fits the read buffer (so a server is
    /// never left holding half a message lakepool could have kept), streaming otherwise.
    pub(super) fn pass(
        &mut self,
        h: Header,
        up: &mut Pipe,
        at: &mut Attached<'_>,
        t: &mut Tracker,
    ) -> Step {
        if up.whole(h).is_none() && up.fits(h) {
            return Step::NeedMore;
        }
        expect_for(h.tag, at);
        t.client_sent(h.tag);
        up.pass_message(h);
        Step::Done
    }

    /// A lakepool-made error in place of a client message; later messages are dropped up to
    /// Sync, as the server skips them after an error.
    pub(super) fn refuse(
        &mut self,
        h: Header,
        up: &mut Pipe,
        at: &mut Attached<'_>,
        err: ClientError,
    ) -> Step {
        up.drop_message(h);
        at.queue
            .push(Expect::Synth(Synth::Error(Box::new(err)), None));
        self.discarding = true;
        Step::Done
    }
}

/// The reply entry for a message passed unchanged. Kept with statement mapping off too: only
/// the queue knows which request an error answers, so which simple queries the server then
/// skips (review of 61a3618: without it such a client kept its server for good), and where
/// a made-up error goes in the stream.
pub(super) fn expect_for(tag: u8, at: &mut Attached<'_>) {
    let e = match tag {
        b'P' => Expect::Parse {
            forward: true,
            stmt: None,
            mapped: None,
            closed_first: false,
        },
        b'B' => Expect::Bind(None),
        b'D' => Expect::Describe(None),
        b'E' => Expect::Execute,
        b'C' => Expect::Close {
            forward: true,
            evicted: None,
        },
        b'S' => Expect::Sync,
        b'Q' | b'F' => Expect::Query,
        b'c' | b'f' => Expect::CopyEnd,
        _ => return,
    };
    at.queue.push(e);
}
