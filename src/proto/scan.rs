//! Streaming message-boundary scanner for forwarded bytes.
//!
//! lakepool forwards bytes between client and server in whatever chunks the sockets deliver. The
//! scanner walks those chunks in place, tracking where each message starts and ends across
//! chunk boundaries, so the session can react to the few messages that matter (ReadyForQuery,
//! ParameterStatus, Sync, Terminate…) without copying or re-encoding anything. Bodies are handed
//! to the caller only for tags it declared interesting; a body split across chunks is assembled
//! in a small side buffer (these are short, rare messages), everything else is skipped.

use std::ops::ControlFlow;

/// Largest body assembled for an interesting message; longer ones are reported without a body.
const MAX_CAPTURE: usize = 64 * 1024;

/// Set of message tags whose bodies the caller wants to see.
#[derive(Clone, Copy, Debug, Default)]
pub struct Interest(u128);

impl Interest {
    /// Interest in the given tags.
    pub const fn of(tags: &[u8]) -> Self {
        let mut bits = 0u128;
        let mut i = 0;
        while i < tags.len() {
            if tags[i] < 128 {
                bits |= 1 << tags[i];
            }
            i += 1;
        }
        Self(bits)
    }

    fn wants(self, tag: u8) -> bool {
        tag < 128 && self.0 & (1 << tag) != 0
    }
}

/// One complete message seen by the scanner.
#[derive(Debug)]
pub struct Msg<'a> {
    /// Message tag.
    pub tag: u8,
    /// Body, for interesting tags whose body fits the capture limit.
    pub body: Option<&'a [u8]>,
    /// Offset of the message's first byte in the current chunk; negative when it began in an
    /// earlier chunk.
    pub start: isize,
    /// Offset just past the message's last byte in the current chunk.
    pub end: usize,
}

/// A framing error: the peer's length field cannot be honoured.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScanError {
    /// Length field below 4.
    #[error("invalid message length {len} for message type {tag:?}")]
    BadLength {
        /// Tag as a char.
        tag: char,
        /// Declared length.
        len: u32,
    },
    /// Length above the configured maximum.
    #[error("message of type {tag:?} is {len} bytes, over the limit of {max} bytes")]
    TooLarge {
        /// Tag as a char.
        tag: char,
        /// Declared length.
        len: u32,
        /// Configured maximum.
        max: usize,
    },
}

/// Boundary tracker for one direction of one connection.
#[derive(Debug)]
pub struct Scanner {
    interest: Interest,
    max_len: usize,
    hdr: [u8; 5],
    hdr_len: u8,
    in_body: bool,
    tag: u8,
    remaining: usize,
    /// Body length of the current message (for `Msg::start`).
    body_len: usize,
    want_body: bool,
    capture: Vec<u8>,
    capturing: bool,
}

impl Scanner {
    /// A scanner reporting bodies for `interest` and rejecting messages longer than `max_len`.
    pub fn new(interest: Interest, max_len: usize) -> Self {
        Self {
            interest,
            max_len,
            hdr: [0; 5],
            hdr_len: 0,
            in_body: false,
            tag: 0,
            remaining: 0,
            body_len: 0,
            want_body: false,
            capture: Vec::new(),
            capturing: false,
        }
    }

    /// Largest message body accepted.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// True when the bytes fed so far end exactly at a message boundary.
    pub fn at_boundary(&self) -> bool {
        self.hdr_len == 0 && !self.in_body
    }

    /// Resets to a boundary (after a connection hand-over, where the stream restarts).
    pub fn reset(&mut self) {
        self.hdr_len = 0;
        self.in_body = false;
        self.remaining = 0;
        self.capture = Vec::new();
        self.capturing = false;
    }

    /// Walks `data`, calling `on` for every message completed in it. `on` may stop the walk by
    /// returning `Break`; the offset scanning stopped at (just past that message) is returned.
    pub fn feed(
        &mut self,
        data: &[u8],
        mut on: impl FnMut(Msg<'_>) -> ControlFlow<()>,
    ) -> Result<usize, ScanError> {
        let mut i = 0;
        while i < data.len() || (self.in_body && self.remaining == 0) {
            if !self.in_body {
                let take = (5 - self.hdr_len as usize).min(data.len() - i);
                let h = self.hdr_len as usize;
                self.hdr[h..h + take].copy_from_slice(&data[i..i + take]);
                self.hdr_len += take as u8;
                i += take;
                if self.hdr_len < 5 {
                    break;
                }
                self.begin_body()?;
            }
            let take = self.remaining.min(data.len() - i);
            let body_start = i;
            if self.want_body && (self.capturing || take < self.remaining) {
                self.capture.extend_from_slice(&data[i..i + take]);
                self.capturing = true;
            }
            i += take;
            self.remaining -= take;
            if self.remaining > 0 {
                break;
            }
            // Message complete.
            self.in_body = false;
            let start = i as isize - (5 + self.body_len) as isize;
            let body = if !self.want_body {
                None
            } else if self.capturing {
                Some(self.capture.as_slice())
            } else {
                Some(&data[body_start..i])
            };
            let flow = on(Msg {
                tag: self.tag,
                body,
                start,
                end: i,
            });
            if self.capturing {
                self.capture.clear();
                self.capturing = false;
            }
            if flow.is_break() {
                return Ok(i);
            }
        }
        Ok(i)
    }

    fn begin_body(&mut self) -> Result<(), ScanError> {
        self.hdr_len = 0;
        self.tag = self.hdr[0];
        let len = u32::from_be_bytes([self.hdr[1], self.hdr[2], self.hdr[3], self.hdr[4]]);
        if len < 4 {
            return Err(ScanError::BadLength {
                tag: char::from(self.tag),
                len,
            });
        }
        let body = (len - 4) as usize;
        if body > self.max_len {
            return Err(ScanError::TooLarge {
                tag: char::from(self.tag),
                len,
                max: self.max_len,
            });
        }
        self.in_body = true;
        self.remaining = body;
        self.body_len = body;
        self.want_body = self.interest.wants(self.tag) && body <= MAX_CAPTURE;
        Ok(())
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

    fn collect(chunks: &[&[u8]], interest: &[u8]) -> Vec<(u8, Option<Vec<u8>>, isize, usize)> {
        let mut s = Scanner::new(Interest::of(interest), 1 << 20);
        let mut out = Vec::new();
        for c in chunks {
            s.feed(c, |m| {
                out.push((m.tag, m.body.map(<[u8]>::to_vec), m.start, m.end));
                ControlFlow::Continue(())
            })
            .unwrap();
        }
        out
    }

    #[test]
    fn whole_messages_in_one_chunk() {
        let mut data = msg(b'D', b"row");
        data.extend(msg(b'Z', b"I"));
        let got = collect(&[&data], b"Z");
        assert_eq!(
            got,
            vec![(b'D', None, 0, 8), (b'Z', Some(b"I".to_vec()), 8, 14)]
        );
    }

    #[test]
    fn split_at_every_offset() {
        let mut data = msg(b'S', b"TimeZone\0UTC\0");
        data.extend(msg(b'C', b"SELECT 1\0"));
        data.extend(msg(b'Z', b"T"));
        data.extend(msg(b'N', b""));
        let whole = collect(&[&data], b"SZ");
        for cut in 0..=data.len() {
            let (a, b) = data.split_at(cut);
            let got = collect(&[a, b], b"SZ");
            let tags: Vec<_> = got.iter().map(|g| (g.0, g.1.clone())).collect();
            let want: Vec<_> = whole.iter().map(|g| (g.0, g.1.clone())).collect();
            assert_eq!(tags, want, "cut at {cut}");
        }
        // Byte-at-a-time.
        let chunks: Vec<&[u8]> = data.chunks(1).collect();
        assert_eq!(collect(&chunks, b"SZ").len(), 4);
    }

    #[test]
    fn start_offsets_across_chunks() {
        let data = msg(b'X', b"");
        let got = collect(&[&data[..2], &data[2..]], b"");
        assert_eq!(got, vec![(b'X', None, -2, 3)]);
    }

    #[test]
    fn rejects_bad_lengths() {
        let mut s = Scanner::new(Interest::default(), 100);
        assert!(matches!(
            s.feed(b"Q\0\0\0\x02", |_| ControlFlow::Continue(())),
            Err(ScanError::BadLength { .. })
        ));
        let mut s = Scanner::new(Interest::default(), 100);
        assert!(matches!(
            s.feed(b"Q\xff\xff\xff\xf0", |_| ControlFlow::Continue(())),
            Err(ScanError::TooLarge { .. })
        ));
    }

    #[test]
    fn break_stops_early_and_boundary() {
        let mut data = msg(b'Z', b"I");
        data.extend(msg(b'D', b"x"));
        let mut s = Scanner::new(Interest::of(b"Z"), 100);
        let stopped = s.feed(&data, |_| ControlFlow::Break(())).unwrap();
        assert_eq!(stopped, 6);
        assert!(s.at_boundary());
        s.feed(&data[6..8], |_| ControlFlow::Continue(())).unwrap();
        assert!(!s.at_boundary());
    }
}
