//! A server's reported parameters as logging-in clients are told them. A transaction-mode
//! login replays the pool's newest server's ParameterStatus values; the messages are encoded
//! once per server connection opened, not once per login, so a login copies one block
//! (re-encoding only the few values the client set itself).

use bytes::BytesMut;

use super::params::ParamMap;
use crate::proto::write;

/// A server's ParameterStatus values with their messages encoded.
#[derive(Debug)]
pub(crate) struct ReportedParams {
    params: ParamMap,
    /// The ParameterStatus message of each entry of `params`, in its order.
    messages: Box<[u8]>,
    /// Where each entry's message ends in `messages`.
    ends: Box<[usize]>,
}

impl ReportedParams {
    /// Encodes `params`' messages.
    pub(crate) fn new(params: ParamMap) -> Self {
        let mut messages = BytesMut::new();
        let mut ends = Vec::new();
        for (k, v) in params.iter() {
            write::parameter_status(&mut messages, k, v);
            ends.push(messages.len());
        }
        Self {
            params,
            messages: messages.to_vec().into_boxed_slice(),
            ends: ends.into_boxed_slice(),
        }
    }

    /// The values.
    pub(crate) fn params(&self) -> &ParamMap {
        &self.params
    }

    /// Appends one ParameterStatus message per value to `out`, in order, with the value
    /// `overrides` has for a parameter in its place (a client's own settings).
    pub(crate) fn write_to(&self, out: &mut BytesMut, overrides: &ParamMap) {
        if overrides.is_empty() {
            out.extend_from_slice(&self.messages);
            return;
        }
        // Copied up to the next overridden message, which is encoded afresh.
        let mut copied_to = 0;
        let mut start = 0;
        for ((k, v), &end) in self.params.iter().zip(self.ends.iter()) {
            if let Some(own) = overrides.get(k).filter(|&own| own != v) {
                out.extend_from_slice(&self.messages[copied_to..start]);
                write::parameter_status(out, k, own);
                copied_to = end;
            }
            start = end;
        }
        out.extend_from_slice(&self.messages[copied_to..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> ParamMap {
        let mut m = ParamMap::new();
        for (k, v) in pairs {
            m.set(k, v);
        }
        m
    }

    /// What a login wrote before the messages were kept encoded: one message per value.
    fn one_by_one(params: &ParamMap, overrides: &ParamMap) -> BytesMut {
        let mut out = BytesMut::new();
        for (k, v) in params.iter() {
            write::parameter_status(&mut out, k, overrides.get(k).unwrap_or(v));
        }
        out
    }

    #[test]
    fn replays_the_values_with_the_clients_own_in_place() {
        let server = map(&[
            ("application_name", ""),
            ("client_encoding", "UTF8"),
            ("DateStyle", "ISO, MDY"),
            ("TimeZone", "UTC"),
        ]);
        let reported = ReportedParams::new(server.clone());
        for overrides in [
            map(&[]),
            map(&[("application_name", "pgbench")]),
            map(&[("client_encoding", "UTF8")]),
            map(&[("datestyle", "German, DMY"), ("timezone", "Europe/Paris")]),
            map(&[("TimeZone", "Asia/Tokyo"), ("application_name", "a")]),
            map(&[("search_path", "x")]),
        ] {
            let mut out = BytesMut::from(&b"before"[..]);
            reported.write_to(&mut out, &overrides);
            let mut want = BytesMut::from(&b"before"[..]);
            want.extend_from_slice(&one_by_one(&server, &overrides));
            assert_eq!(out, want, "overrides {overrides:?}");
        }
        assert_eq!(reported.params(), &server);
    }

    #[test]
    fn no_values_write_nothing() {
        let reported = ReportedParams::new(ParamMap::new());
        let mut out = BytesMut::new();
        reported.write_to(&mut out, &map(&[("application_name", "x")]));
        assert!(out.is_empty());
    }
}
