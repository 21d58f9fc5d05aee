//! Transaction mode, replaying a batch after a stale shared statement.

use bytes::BytesMut;

use super::client::Step;
use super::{Attached, TxnClient};
use crate::frontend::pipe::Pipe;
use crate::frontend::tracker::Tracker;
use crate::proto::frame::Header;

/// Most bytes of a batch kept to replay it after a stale statement.
const MAX_REPLAY: usize = 64 * 1024;

/// A batch whose Parse lakepool answered from a server's copy of the statement. If the server
/// finds that copy stale (the objects it was planned against changed) before any reply of the
/// batch has reached the client, lakepool drops the error, prepares the statement afresh and
/// sends the rest of the batch again: the client sees what a direct connection, which would
/// have parsed its statement now, would have sent.
#[derive(Debug)]
pub(super) struct Replay {
    /// The client's name for the statement.
    pub(super) name: Box<[u8]>,
    /// The client's messages after the Parse, as it sent them, up to its Sync.
    pub(super) tail: BytesMut,
    /// Where it stands.
    pub(super) state: ReplayState,
}

/// Where a [`Replay`] stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ReplayState {
    /// Recording the client's messages up to Sync.
    Recording,
    /// The batch is complete; waiting for the server's first reply.
    Armed,
    /// The server found the statement stale: its error was dropped, the ReadyForQuery that
    /// ends the skipped batch will be too.
    Retrying,
    /// The stale attempt's replies are all in: the batch is sent again.
    Ready,
    /// Something reached the client, or the batch could not be kept: no replay.
    Off,
}

impl Replay {
    /// Keeps the client message at the framing position (once it is whole; a message that
    /// must stream, or too much, ends the replay).
    pub(super) fn record(&mut self, h: Header, up: &Pipe) {
        match up.whole(h) {
            Some(m) if self.tail.len() + m.len() <= MAX_REPLAY && h.tag != b'd' => {
                self.tail.extend_from_slice(m);
                if h.tag == b'S' {
                    self.state = ReplayState::Armed;
                }
            }
            None if up.fits(h) => {}
            _ => self.state = ReplayState::Off,
        }
    }
}

impl TxnClient {
    /// After the server found a statement lakepool had answered a Parse with stale: the
    /// client's name moves to a statement prepared afresh and the batch is handled again, its
    /// output queued for the server.
    pub(crate) fn replay_batch(&mut self, up: &mut Pipe, at: &mut Attached<'_>, t: &mut Tracker) {
        let Some(r) = self.replay.take() else {
            return;
        };
        if let Some(old) = self.statements.get(&r.name) {
            old.stale.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        at.registry.schema_changed();
        let _ = self.mapped(&r.name, at);
        let mut batch = Pipe::with_input(&r.tail);
        while let Ok(crate::frontend::pipe::Next::Message(h)) = batch.next(usize::MAX) {
            if self.on_message(h, &mut batch, at, t) == Step::NeedMore {
                break;
            }
        }
        batch.move_output_into(up);
    }
}
