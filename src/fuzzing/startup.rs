//! Target `startup`: the startup-phase packet parser. Input: a packet as a client sends it
//! (4-byte length, then the body).
//!
//! Checked: nothing panics; the length check accepts exactly 8..=10,000; a parsed
//! StartupMessage has non-empty parameter names, no NUL anywhere, and written out again it
//! parses to the same packet; the fixed-size packets are their exact size.

use crate::proto::startup::{MAX_STARTUP_PACKET, StartupPacket, check_length, parse};
use crate::proto::{CANCEL_REQUEST_CODE, GSSENC_REQUEST_CODE, SSL_REQUEST_CODE};

/// One fuzz input.
pub fn run(data: &[u8]) {
    if let Some((len, _)) = data.split_first_chunk::<4>() {
        let len = u32::from_be_bytes(*len);
        let ok = (8..=MAX_STARTUP_PACKET as u64).contains(&u64::from(len));
        assert_eq!(check_length(len).is_ok(), ok, "length {len}");
    }
    check_body(data);
    if let Some((_, body)) = data.split_first_chunk::<4>() {
        check_body(body);
    }
}

fn check_body(body: &[u8]) {
    let Ok(p) = parse(body) else {
        return;
    };
    match &p {
        StartupPacket::SslRequest => assert_eq!(body, SSL_REQUEST_CODE.to_be_bytes()),
        StartupPacket::GssEncRequest => assert_eq!(body, GSSENC_REQUEST_CODE.to_be_bytes()),
        StartupPacket::Cancel { pid, secret } => {
            let mut want = CANCEL_REQUEST_CODE.to_be_bytes().to_vec();
            want.extend_from_slice(&pid.to_be_bytes());
            want.extend_from_slice(&secret.to_be_bytes());
            assert_eq!(body, &want[..]);
        }
        StartupPacket::Startup {
            major,
            minor,
            params,
        } => {
            let code = (u32::from(*major) << 16) | u32::from(*minor);
            assert!(![SSL_REQUEST_CODE, GSSENC_REQUEST_CODE, CANCEL_REQUEST_CODE].contains(&code));
            let mut again = code.to_be_bytes().to_vec();
            for (k, v) in params {
                assert!(!k.is_empty() && !k.contains('\0') && !v.contains('\0'));
                again.extend_from_slice(k.as_bytes());
                again.push(0);
                again.extend_from_slice(v.as_bytes());
                again.push(0);
            }
            again.push(0);
            assert_eq!(again, body, "written out again differs");
            assert_eq!(parse(&again).as_ref(), Ok(&p));
        }
    }
}
