//! Parsing of the backend messages lakepool has to understand: the login exchange with an
//! upstream server and the few messages it watches while forwarding.

use super::{read_cstr, read_i32};

/// An `Authentication*` request from the server.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum AuthRequest<'a> {
    /// `AuthenticationOk`.
    Ok,
    /// `AuthenticationCleartextPassword`.
    Cleartext,
    /// `AuthenticationMD5Password`.
    Md5([u8; 4]),
    /// `AuthenticationSASL` with the offered mechanisms.
    Sasl(Vec<&'a str>),
    /// `AuthenticationSASLContinue`.
    SaslContinue(&'a [u8]),
    /// `AuthenticationSASLFinal`.
    SaslFinal(&'a [u8]),
    /// Any other method (Kerberos, GSS, SSPI…), by code.
    Unsupported(i32),
}

/// Parses an `R` message body.
pub(crate) fn parse_auth(body: &[u8]) -> Option<AuthRequest<'_>> {
    let (code, rest) = read_i32(body)?;
    Some(match code {
        0 => AuthRequest::Ok,
        3 => AuthRequest::Cleartext,
        5 => AuthRequest::Md5(*rest.first_chunk::<4>()?),
        10 => {
            let mut mechs = Vec::new();
            let mut buf = rest;
            loop {
                let (m, r) = read_cstr(buf)?;
                if m.is_empty() {
                    break;
                }
                mechs.push(m);
                buf = r;
            }
            AuthRequest::Sasl(mechs)
        }
        11 => AuthRequest::SaslContinue(rest),
        12 => AuthRequest::SaslFinal(rest),
        other => AuthRequest::Unsupported(other),
    })
}

/// Parses a `ParameterStatus` body into (name, value).
pub(crate) fn parse_parameter_status(body: &[u8]) -> Option<(&str, &str)> {
    let (name, rest) = read_cstr(body)?;
    let (value, _) = read_cstr(rest)?;
    Some((name, value))
}

/// Parses a `BackendKeyData` body (protocol 3.0: 4-byte secret).
pub(crate) fn parse_backend_key(body: &[u8]) -> Option<(u32, u32)> {
    let (pid, rest) = body.split_first_chunk::<4>()?;
    let secret = rest.first_chunk::<4>()?;
    Some((u32::from_be_bytes(*pid), u32::from_be_bytes(*secret)))
}

/// The fields of an `ErrorResponse`/`NoticeResponse` lakepool cares about.
#[derive(Debug, Default, PartialEq, Eq, Clone)]
pub struct ErrorFields {
    /// Severity (non-localised `V`, else `S`).
    pub(crate) severity: String,
    /// SQLSTATE (`C`).
    pub code: String,
    /// Primary message (`M`).
    pub message: String,
}

/// Parses an `ErrorResponse` body.
pub(crate) fn parse_error(body: &[u8]) -> ErrorFields {
    let mut f = ErrorFields::default();
    let mut buf = body;
    while let Some((&kind, rest)) = buf.split_first() {
        if kind == 0 {
            break;
        }
        let Some((value, rest)) = read_cstr(rest) else {
            break;
        };
        match kind {
            b'V' => value.clone_into(&mut f.severity),
            b'S' if f.severity.is_empty() => value.clone_into(&mut f.severity),
            b'C' => value.clone_into(&mut f.code),
            b'M' => value.clone_into(&mut f.message),
            _ => {}
        }
        buf = rest;
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sasl_mechanisms() {
        let body = b"\0\0\0\x0aSCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0";
        assert_eq!(
            parse_auth(body),
            Some(AuthRequest::Sasl(vec![
                "SCRAM-SHA-256-PLUS",
                "SCRAM-SHA-256"
            ]))
        );
        assert_eq!(parse_auth(b"\0\0\0\x0aSCRAM"), None);
        assert_eq!(parse_auth(b"\0\0\0\x05ab"), None);
    }

    #[test]
    fn parses_error_fields() {
        let f = parse_error(b"SFATAL\0VFATAL\0C28P01\0Mpassword authentication failed\0\0");
        assert_eq!(f.code, "28P01");
        assert_eq!(f.severity, "FATAL");
        assert_eq!(f.message, "password authentication failed");
        let f = parse_error(b"SERR");
        assert_eq!(f.code, "");
    }
}
