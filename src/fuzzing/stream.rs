//! Checks that a byte stream lakepool writes is a well-formed sequence of tagged messages,
//! however it was split into writes.

use crate::proto::frame::{HEADER_LEN, parse_header};

/// A message stream seen so far.
#[derive(Debug)]
pub struct StreamCheck {
    /// Who writes this stream (for the panic message).
    name: &'static str,
    /// A header split across writes.
    head: Vec<u8>,
    /// Body bytes of the current message still to come.
    body_left: usize,
    /// The last tags seen, newest last (for the panic message).
    recent: Vec<u8>,
    /// Messages started.
    pub messages: usize,
}

impl StreamCheck {
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            head: Vec::new(),
            body_left: 0,
            recent: Vec::new(),
            messages: 0,
        }
    }

    /// Takes the next bytes of the stream; panics at a length field below 4.
    pub fn feed(&mut self, mut b: &[u8]) {
        while !b.is_empty() {
            if self.body_left > 0 {
                let n = self.body_left.min(b.len());
                self.body_left -= n;
                b = &b[n..];
                continue;
            }
            let n = (HEADER_LEN - self.head.len()).min(b.len());
            self.head.extend_from_slice(&b[..n]);
            b = &b[n..];
            if self.head.len() < HEADER_LEN {
                break;
            }
            match parse_header(&self.head, usize::MAX) {
                Ok(Some(h)) => self.body_left = h.body_len,
                other => panic!(
                    "{}: malformed message header {:02x?} ({other:?}) after tags {:?}",
                    self.name,
                    self.head,
                    String::from_utf8_lossy(&self.recent)
                ),
            }
            if self.recent.len() == 16 {
                self.recent.remove(0);
            }
            self.recent.push(self.head[0]);
            self.messages += 1;
            self.head.clear();
        }
    }

    /// Between two messages.
    pub fn at_boundary(&self) -> bool {
        self.head.is_empty() && self.body_left == 0
    }

    /// Panics unless the stream is between two messages.
    pub fn assert_boundary(&self, when: &str) {
        assert!(
            self.at_boundary(),
            "{}: {when} in the middle of a message ({} header bytes, {} body bytes to come) after tags {:?}",
            self.name,
            self.head.len(),
            self.body_left,
            String::from_utf8_lossy(&self.recent)
        );
    }
}
