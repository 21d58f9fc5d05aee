//! Startup-phase packets: the untagged messages a client sends first.

use super::{CANCEL_REQUEST_CODE, GSSENC_REQUEST_CODE, SSL_REQUEST_CODE, read_cstr};

/// Largest startup-phase packet accepted (PostgreSQL's own limit is 10,000 bytes).
pub(crate) const MAX_STARTUP_PACKET: usize = 10_000;

/// A parsed startup-phase packet.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum StartupPacket {
    /// `SSLRequest`.
    SslRequest,
    /// `GSSENCRequest`.
    GssEncRequest,
    /// `CancelRequest` with the key the client was given in BackendKeyData.
    Cancel {
        /// Process id from BackendKeyData.
        pid: u32,
        /// Secret key from BackendKeyData.
        secret: u32,
    },
    /// `StartupMessage`.
    Startup {
        /// Major protocol version (3 is the only one supported).
        major: u16,
        /// Minor protocol version.
        minor: u16,
        /// Parameters in the order sent.
        params: Vec<(String, String)>,
    },
}

/// Why a startup packet was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum StartupError {
    /// Declared length outside 8..=MAX_STARTUP_PACKET.
    #[error("invalid startup packet length {0}")]
    BadLength(u32),
    /// Contents do not parse.
    #[error("invalid startup packet layout: {0}")]
    Malformed(&'static str),
}

/// Validates the declared length of a startup packet (which includes the length field itself).
pub(crate) fn check_length(len: u32) -> Result<usize, StartupError> {
    let n = len as usize;
    if (8..=MAX_STARTUP_PACKET).contains(&n) {
        Ok(n)
    } else {
        Err(StartupError::BadLength(len))
    }
}

/// Parses a startup packet body: everything after the 4-byte length.
pub(crate) fn parse(body: &[u8]) -> Result<StartupPacket, StartupError> {
    let (code, rest) = body
        .split_first_chunk::<4>()
        .ok_or(StartupError::Malformed("missing protocol code"))?;
    let code = u32::from_be_bytes(*code);
    match code {
        SSL_REQUEST_CODE if rest.is_empty() => Ok(StartupPacket::SslRequest),
        GSSENC_REQUEST_CODE if rest.is_empty() => Ok(StartupPacket::GssEncRequest),
        SSL_REQUEST_CODE | GSSENC_REQUEST_CODE => Err(StartupError::Malformed("trailing bytes")),
        CANCEL_REQUEST_CODE => {
            // Protocol 3.0 keys are 4 bytes; 3.2 allows longer ones, which we never issue.
            let (pid, rest) = rest
                .split_first_chunk::<4>()
                .ok_or(StartupError::Malformed("short cancel request"))?;
            let secret: [u8; 4] = rest
                .try_into()
                .map_err(|_| StartupError::Malformed("cancel key length"))?;
            Ok(StartupPacket::Cancel {
                pid: u32::from_be_bytes(*pid),
                secret: u32::from_be_bytes(secret),
            })
        }
        _ => {
            let major = (code >> 16) as u16;
            let minor = (code & 0xffff) as u16;
            let params = parse_params(rest)?;
            Ok(StartupPacket::Startup {
                major,
                minor,
                params,
            })
        }
    }
}

fn parse_params(mut buf: &[u8]) -> Result<Vec<(String, String)>, StartupError> {
    let mut params = Vec::new();
    loop {
        match buf {
            [0] => return Ok(params),
            [] => return Err(StartupError::Malformed("missing terminator")),
            _ => {}
        }
        let (name, rest) = read_cstr(buf).ok_or(StartupError::Malformed("parameter name"))?;
        let (value, rest) = read_cstr(rest).ok_or(StartupError::Malformed("parameter value"))?;
        if name.is_empty() {
            return Err(StartupError::Malformed("empty parameter name"));
        }
        params.push((name.to_owned(), value.to_owned()));
        buf = rest;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn startup_body(params: &[(&str, &str)]) -> Vec<u8> {
        let mut b = super::super::PROTOCOL_3_0.to_be_bytes().to_vec();
        for (k, v) in params {
            b.extend_from_slice(k.as_bytes());
            b.push(0);
            b.extend_from_slice(v.as_bytes());
            b.push(0);
        }
        b.push(0);
        b
    }

    #[test]
    fn parses_startup() {
        let p = parse(&startup_body(&[("user", "app"), ("database", "db")])).unwrap();
        assert_eq!(
            p,
            StartupPacket::Startup {
                major: 3,
                minor: 0,
                params: vec![
                    ("user".into(), "app".into()),
                    ("database".into(), "db".into())
                ]
            }
        );
    }

    #[test]
    fn parses_special_codes() {
        assert_eq!(
            parse(&SSL_REQUEST_CODE.to_be_bytes()).unwrap(),
            StartupPacket::SslRequest
        );
        assert_eq!(
            parse(&GSSENC_REQUEST_CODE.to_be_bytes()).unwrap(),
            StartupPacket::GssEncRequest
        );
        let mut c = CANCEL_REQUEST_CODE.to_be_bytes().to_vec();
        c.extend_from_slice(&7u32.to_be_bytes());
        c.extend_from_slice(&9u32.to_be_bytes());
        assert_eq!(
            parse(&c).unwrap(),
            StartupPacket::Cancel { pid: 7, secret: 9 }
        );
    }

    #[test]
    fn rejects_malformed() {
        assert!(parse(&[]).is_err());
        assert!(parse(&[0, 3, 0, 0, b'u', b's']).is_err());
        assert!(parse(&[0, 3, 0, 0, 0, 0]).is_err());
        let mut c = CANCEL_REQUEST_CODE.to_be_bytes().to_vec();
        c.extend_from_slice(&[1, 2, 3]);
        assert!(parse(&c).is_err());
        assert!(check_length(7).is_err());
        assert!(check_length(0xffff_fff0).is_err());
        assert!(check_length(8).is_ok());
    }

    #[test]
    fn never_panics_on_prefixes() {
        let body = startup_body(&[("user", "app"), ("options", "-c a=b")]);
        for i in 0..body.len() {
            let _ = parse(&body[..i]);
        }
    }
}
