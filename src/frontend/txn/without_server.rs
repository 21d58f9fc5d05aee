//! Transaction mode, before a server is attached: input that only prepares or closes
//! statements is answered by lakepool itself.

use std::sync::Arc;

use bytes::BytesMut;

use super::{TxnClient, TxnLimits};
use crate::frontend::pipe::Pipe;
use crate::proto::frame::{HEADER_LEN, parse_header, split_cstr};
use crate::proto::{sql, write};
use crate::upstream::prepared::Statement;

impl TxnClient {
    /// Answers, without a server, input that only prepares statements some server already
    /// accepted or closes statements, ending in Sync: what drivers send to prepare before
    /// executing (pgbench, psycopg). Such a client then needs a server only to execute, so
    /// preparing never waits behind busy servers. Returns the replies, or None (nothing
    /// changed) when the input needs a server.
    pub(crate) fn answer_without_server(
        &mut self,
        up: &mut Pipe,
        at: &TxnLimits,
        registry: &crate::pool::statements::StatementRegistry,
        stats: Option<&crate::pool::stats::PoolStats>,
    ) -> Option<BytesMut> {
        if !at.mapping() || self.discarding {
            return None;
        }
        let buf = up.unread();
        // Only Parse, Close, Flush and Sync can be answered here: a simple query, the most
        // common request, goes to a server without any other work.
        if !matches!(buf.first(), Some(b'P' | b'C' | b'H' | b'S')) {
            return None;
        }
        let mut pos = 0;
        let mut plan: Vec<(&[u8], Option<Arc<Statement>>)> = Vec::new();
        // The client's statements so far (names, bytes), counted at its first named Parse.
        let mut footprint = None;
        loop {
            let h = parse_header(&buf[pos..], at.max_message).ok()??;
            let body = buf.get(pos + HEADER_LEN..pos + h.total())?;
            pos += h.total();
            match h.tag {
                b'P' => {
                    let (name, rest) = split_cstr(body)?;
                    let (text, _) = split_cstr(rest)?;
                    if name.is_empty()
                        || self.statements.contains(name)
                        || plan.iter().any(|(n, _)| *n == name)
                        || sql::needs_attention(text)
                    {
                        return None;
                    }
                    let (names, bytes) = footprint.get_or_insert_with(|| self.prepared_footprint());
                    if *names + plan.len() >= at.max_statements {
                        return None;
                    }
                    *bytes += rest.len();
                    if *bytes > at.max_statement_bytes {
                        return None;
                    }
                    plan.push((name, Some(registry.accepted(rest)?)));
                }
                b'C' => match body.split_first() {
                    Some((&b'S', rest)) => plan.push((split_cstr(rest)?.0, None)),
                    _ => return None,
                },
                b'H' => {}
                b'S' if pos == buf.len() => break,
                _ => return None,
            }
        }
        let mut reply = BytesMut::with_capacity(plan.len() * 5 + 6);
        let owned: Vec<_> = plan
            .into_iter()
            .map(|(n, s)| (Box::<[u8]>::from(n), s))
            .collect();
        for (name, stmt) in owned {
            match stmt {
                Some(s) => {
                    self.statements.insert(name, s);
                    write::parse_complete(&mut reply);
                    if let Some(st) = stats {
                        st.record_client_parse();
                    }
                }
                None => {
                    self.statements.remove(&name);
                    write::close_complete(&mut reply);
                }
            }
        }
        write::ready_for_query(&mut reply, b'I');
        up.discard_unread();
        Some(reply)
    }
}
