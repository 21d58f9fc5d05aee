//! SCRAM-SHA-256 (RFC 5802 / RFC 7677) as PostgreSQL speaks it, sans-IO.
//!
//! `ScramServer` verifies clients connecting to lakepool; [`ScramClient`]
//! logs lakepool in to an upstream server. Callers move message bodies in and
//! out; nothing here does I/O or logging.
//!
//! Passwords go through SASLprep first, as PostgreSQL and libpq do (see
//! `super::saslprep`): the raw bytes are used when SASLprep fails.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

use super::saslprep::saslprep;

pub use super::scram_client::{SaltParams, SaltedPasswordCache, ScramClient, salted_password};

/// Iteration count PostgreSQL uses by default for new SCRAM verifiers.
pub const DEFAULT_ITERATIONS: u32 = 4096;
/// SASL name of SCRAM-SHA-256 without channel binding.
pub(crate) const SCRAM_SHA_256: &str = "SCRAM-SHA-256";
/// SASL name of SCRAM-SHA-256 with `tls-server-end-point` channel binding.
pub(crate) const SCRAM_SHA_256_PLUS: &str = "SCRAM-SHA-256-PLUS";

/// Upper bound on a server's iteration count: a hostile upstream must not be
/// able to make us burn minutes of CPU.
pub(super) const MAX_CLIENT_ITERATIONS: u32 = 10_000_000;
/// Raw nonce length, as PostgreSQL (SCRAM_RAW_NONCE_LEN).
pub(super) const NONCE_LEN: usize = 18;
/// Salt length for new verifiers, as PostgreSQL (SCRAM_DEFAULT_SALT_LEN).
pub(crate) const DEFAULT_SALT_LEN: usize = 16;
pub(super) const KEY_LEN: usize = 32;
/// base64 of a [`KEY_LEN`]-byte signature, padded.
const SERVER_SIGNATURE_B64_LEN: usize = KEY_LEN.div_ceil(3) * 4;
/// The only gs2 header a PLUS exchange can use, since authzids are rejected.
pub(super) const GS2_HEADER_PLUS: &[u8] = b"p=tls-server-end-point,,";
/// base64("n,,") and base64("y,,"): the `c=` value of an unbound exchange.
pub(super) const CBIND_N: &str = "biws";
pub(super) const CBIND_Y: &str = "eSws";

pub(super) type Key = [u8; KEY_LEN];

/// Errors of a SCRAM exchange; Display never includes secret material.
#[derive(Debug, thiserror::Error)]
pub enum ScramError {
    /// The peer's message does not follow the SCRAM grammar.
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    /// The client picked a SASL mechanism we did not offer.
    #[error("unsupported SASL authentication mechanism")]
    UnsupportedMechanism,
    /// The channel-binding data does not match the TLS connection.
    #[error("SCRAM channel binding check failed")]
    ChannelBindingMismatch,
    /// The client selected SCRAM-SHA-256-PLUS but sent no channel binding.
    #[error("SCRAM-SHA-256-PLUS selected without channel binding data")]
    ChannelBindingRequired,
    /// The client asked for channel binding we cannot provide.
    #[error("unsupported SCRAM channel binding")]
    ChannelBindingUnsupported,
    /// The client claims we do not support channel binding although we
    /// offered it: a possible downgrade attack.
    #[error("SCRAM channel binding negotiation error: server supports channel binding")]
    ChannelBindingDowngrade,
    /// The final message's nonce is not the one negotiated.
    #[error("SCRAM nonce mismatch")]
    NonceMismatch,
    /// The client proof is wrong: wrong password (or unknown user).
    #[error("invalid SCRAM client proof")]
    InvalidProof,
    /// The upstream server failed to prove knowledge of the password.
    #[error("invalid SCRAM server signature")]
    InvalidServerSignature,
    /// The upstream server ended the exchange with `e=<reason>`.
    #[error("SCRAM error from server: {0}")]
    Server(String),
    /// A stored verifier string could not be parsed.
    #[error("invalid SCRAM verifier: {0}")]
    BadVerifier(&'static str),
    /// A message arrived in a state where it is not expected.
    #[error("SCRAM message out of sequence")]
    OutOfSequence,
}

impl ScramError {
    /// True only when the client's proof was wrong (wrong password).
    pub(crate) fn is_invalid_password(&self) -> bool {
        matches!(self, ScramError::InvalidProof)
    }
}

/// HMAC-SHA-256 of `parts` concatenated, under a 32-byte key.
pub(crate) fn hmac_sha256(key: &Key, parts: &[&[u8]]) -> Key {
    // HMAC zero-pads keys shorter than the hash block, so padding by hand
    // yields the same MAC through the infallible block-sized constructor.
    let mut block = [0u8; 64];
    block[..KEY_LEN].copy_from_slice(key);
    let mut mac = <Hmac<Sha256> as KeyInit>::new(&block.into());
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

pub(super) fn sha256(data: &[u8]) -> Key {
    Sha256::digest(data).into()
}

pub(super) fn xor(mut a: Key, b: Key) -> Key {
    a.iter_mut().zip(b).for_each(|(x, y)| *x ^= y);
    a
}

pub(super) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    bool::from(a.ct_eq(b))
}

pub(super) fn random_nonce() -> String {
    let mut raw = [0u8; NONCE_LEN];
    rand::fill(&mut raw[..]);
    B64.encode(raw)
}

/// Hi(SASLprep(password), salt, i) with i = 0 treated as 1 (PBKDF2 needs a round). The
/// result is a password equivalent: wiped when dropped, as is the prepared copy.
pub(super) fn hi(password: impl AsRef<[u8]>, salt: &[u8], iterations: u32) -> Zeroizing<Key> {
    let prepared = Zeroizing::new(saslprep(password.as_ref()).into_owned());
    Zeroizing::new(pbkdf2::pbkdf2_hmac_array::<Sha256, KEY_LEN>(
        &prepared,
        salt,
        iterations.max(1),
    ))
}

/// (StoredKey, ServerKey) from a salted password.
pub(super) fn derive_keys(salted: &Key) -> (Key, Key) {
    let client_key = Zeroizing::new(hmac_sha256(salted, &[b"Client Key"]));
    (sha256(&*client_key), hmac_sha256(salted, &[b"Server Key"]))
}

/// Digits only (no sign or spaces), fits in u32, at least 1.
pub(super) fn parse_iterations(s: &[u8]) -> Option<u32> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(s)
        .ok()?
        .parse::<u32>()
        .ok()
        .filter(|&i| i >= 1)
}

pub(super) fn decode_key(b64: &[u8]) -> Option<Key> {
    B64.decode(b64).ok()?.try_into().ok()
}

/// Printable per RFC 5802: %x21-7E except ','; non-empty.
pub(super) fn is_printable(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// Rejects what PostgreSQL rejects before parsing: empty input and NULs.
pub(super) fn check_message(msg: &[u8]) -> Result<&[u8], ScramError> {
    if msg.is_empty() {
        return Err(ScramError::Malformed("empty message"));
    }
    if msg.contains(&0) {
        return Err(ScramError::Malformed("NUL byte in message"));
    }
    Ok(msg)
}

/// Reads `attr=value` pairs separated by commas, never panicking.
pub(super) struct Cursor<'a> {
    rest: &'a [u8],
    total: usize,
}

impl<'a> Cursor<'a> {
    pub(super) fn new(buf: &'a [u8]) -> Self {
        Cursor {
            rest: buf,
            total: buf.len(),
        }
    }

    pub(super) fn pos(&self) -> usize {
        self.total - self.rest.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    pub(super) fn peek(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    /// Consumes `b` or fails.
    pub(super) fn expect(&mut self, b: u8, reason: &'static str) -> Result<(), ScramError> {
        match self.rest.split_first() {
            Some((&c, tail)) if c == b => {
                self.rest = tail;
                Ok(())
            }
            _ => Err(ScramError::Malformed(reason)),
        }
    }

    /// Reads any `x=value[,]` attribute, like PostgreSQL's read_any_attr.
    pub(super) fn any_attr(&mut self) -> Result<(u8, &'a [u8]), ScramError> {
        let (&attr, tail) = self
            .rest
            .split_first()
            .ok_or(ScramError::Malformed("unexpected end of message"))?;
        if !attr.is_ascii_alphabetic() {
            return Err(ScramError::Malformed("invalid attribute name"));
        }
        let tail = tail
            .strip_prefix(b"=")
            .ok_or(ScramError::Malformed("expected '=' after attribute name"))?;
        let mut parts = tail.splitn(2, |&b| b == b',');
        let value = parts.next().unwrap_or_default();
        self.rest = parts.next().unwrap_or_default();
        Ok((attr, value))
    }

    /// Reads attribute `attr`, failing on any other.
    pub(super) fn attr(&mut self, attr: u8, reason: &'static str) -> Result<&'a [u8], ScramError> {
        if self.peek() != Some(attr) {
            return Err(ScramError::Malformed(reason));
        }
        Ok(self.any_attr()?.1)
    }
}

/// A PostgreSQL SCRAM verifier:
/// `SCRAM-SHA-256$<iter>:<b64 salt>$<b64 StoredKey>:<b64 ServerKey>`.
#[derive(Clone)]
pub struct ScramVerifier {
    iterations: u32,
    salt: Vec<u8>,
    stored_key: Key,
    server_key: Key,
    /// Set on mock verifiers: every exchange with them must fail.
    doomed: bool,
}

impl ScramVerifier {
    /// Parses the canonical string form (strict: iterations >= 1, base64, 32-byte keys).
    pub(crate) fn parse(s: &str) -> Result<Self, ScramError> {
        let bad = ScramError::BadVerifier;
        let rest = s
            .strip_prefix("SCRAM-SHA-256$")
            .ok_or(bad("unknown scheme"))?;
        let (iter_salt, keys) = rest.split_once('$').ok_or(bad("missing keys"))?;
        let (iter, salt) = iter_salt.split_once(':').ok_or(bad("missing salt"))?;
        let (stored, server) = keys.split_once(':').ok_or(bad("missing server key"))?;
        let iterations = parse_iterations(iter.as_bytes()).ok_or(bad("invalid iteration count"))?;
        let salt = B64.decode(salt).map_err(|_| bad("invalid salt"))?;
        if salt.is_empty() {
            return Err(bad("empty salt"));
        }
        Ok(ScramVerifier {
            iterations,
            salt,
            stored_key: decode_key(stored.as_bytes()).ok_or(bad("invalid stored key"))?,
            server_key: decode_key(server.as_bytes()).ok_or(bad("invalid server key"))?,
            doomed: false,
        })
    }

    /// Builds a verifier with a random 16-byte salt; runs PBKDF2 (expensive).
    pub fn from_password(password: &str, iterations: u32) -> Self {
        let mut salt = [0u8; DEFAULT_SALT_LEN];
        rand::fill(&mut salt[..]);
        Self::from_password_and_salt(password, &salt, iterations)
    }

    /// Builds a verifier from a given salt; runs PBKDF2 (iterations 0 counts as 1).
    pub(crate) fn from_password_and_salt(password: &str, salt: &[u8], iterations: u32) -> Self {
        let (stored_key, server_key) = derive_keys(&hi(password, salt, iterations));
        ScramVerifier {
            iterations: iterations.max(1),
            salt: salt.to_vec(),
            stored_key,
            server_key,
            doomed: false,
        }
    }

    /// Fake verifier for unknown users (no user enumeration): the caller picks a salt and an
    /// iteration count a probe cannot tell from a real user's; the keys come from `secret`, a
    /// per-process random key. Exchanges with it always fail with [`ScramError::InvalidProof`].
    pub(crate) fn mock(username: &str, secret: &[u8; 32], salt: Vec<u8>, iterations: u32) -> Self {
        let user = username.as_bytes();
        ScramVerifier {
            iterations: iterations.max(1),
            salt,
            stored_key: hmac_sha256(secret, &[b"lakepool-scram-mock-stored\0", user]),
            server_key: hmac_sha256(secret, &[b"lakepool-scram-mock-server\0", user]),
            doomed: true,
        }
    }

    /// Checks a cleartext password (any bytes, SASLprep'd when they allow it); runs PBKDF2
    /// (expensive), compares in constant time.
    pub(crate) fn verify_password(&self, password: impl AsRef<[u8]>) -> bool {
        let (stored, server) = derive_keys(&hi(password, &self.salt, self.iterations));
        let ok = stored.ct_eq(&self.stored_key) & server.ct_eq(&self.server_key);
        bool::from(ok) && !self.doomed
    }

    /// The PBKDF2 iteration count.
    pub(crate) fn iterations(&self) -> u32 {
        self.iterations
    }

    /// Length of the salt in bytes.
    pub(crate) fn salt_len(&self) -> usize {
        self.salt.len()
    }
}

impl Drop for ScramVerifier {
    fn drop(&mut self) {
        // ServerKey lets its holder pose as the server; StoredKey with a sniffed exchange
        // lets it log in.
        self.stored_key.zeroize();
        self.server_key.zeroize();
    }
}

impl fmt::Display for ScramVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            B64.encode(&self.salt),
            B64.encode(self.stored_key),
            B64.encode(self.server_key)
        )
    }
}

impl fmt::Debug for ScramVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramVerifier")
            .field("iterations", &self.iterations)
            .field("keys", &"[REDACTED]")
            .finish_non_exhaustive()
    }
}

pub(super) enum ServerState {
    Initial,
    AwaitingFinal {
        /// Exact `c=` value the client must send.
        expected_cbind: String,
        client_first_bare: Vec<u8>,
        server_first: Vec<u8>,
        nonce: Vec<u8>,
    },
    /// Finished, successfully or not; no further messages are accepted.
    Done,
}

/// Server side of a SCRAM exchange (lakepool verifying a client).
pub(crate) struct ScramServer {
    verifier: ScramVerifier,
    tls_end_point: Option<Vec<u8>>,
    state: ServerState,
}

impl fmt::Debug for ScramServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramServer")
            .field("channel_binding_offered", &self.tls_end_point.is_some())
            .finish_non_exhaustive()
    }
}

impl ScramServer {
    /// `tls_end_point`: hash of our certificate on TLS connections (PLUS is then offered).
    pub(crate) fn new(verifier: ScramVerifier, tls_end_point: Option<Vec<u8>>) -> Self {
        ScramServer {
            verifier,
            tls_end_point,
            state: ServerState::Initial,
        }
    }

    /// Mechanisms to list in AuthenticationSASL, preferred first.
    pub(crate) fn mechanisms(&self) -> &'static [&'static str] {
        if self.tls_end_point.is_some() {
            &[SCRAM_SHA_256_PLUS, SCRAM_SHA_256]
        } else {
            &[SCRAM_SHA_256]
        }
    }

    /// Handles SASLInitialResponse; returns the server-first-message.
    pub(crate) fn client_first(
        &mut self,
        mechanism: &str,
        client_first: &[u8],
    ) -> Result<Vec<u8>, ScramError> {
        self.client_first_with_nonce(mechanism, client_first, &random_nonce())
    }

    fn client_first_with_nonce(
        &mut self,
        mechanism: &str,
        msg: &[u8],
        server_nonce: &str,
    ) -> Result<Vec<u8>, ScramError> {
        // Any failure leaves the exchange finished.
        if !matches!(
            std::mem::replace(&mut self.state, ServerState::Done),
            ServerState::Initial
        ) {
            return Err(ScramError::OutOfSequence);
        }
        let binding = match (mechanism, &self.tls_end_point) {
            (SCRAM_SHA_256_PLUS, Some(hash)) => Some(hash),
            (SCRAM_SHA_256, _) => None,
            _ => return Err(ScramError::UnsupportedMechanism),
        };
        let mut cur = Cursor::new(check_message(msg)?);
        let expected_cbind = match (cur.peek(), binding) {
            (Some(b'n' | b'y'), Some(_)) => return Err(ScramError::ChannelBindingRequired),
            (Some(b'y'), None) if self.tls_end_point.is_some() => {
                return Err(ScramError::ChannelBindingDowngrade);
            }
            (Some(flag @ (b'n' | b'y')), None) => {
                cur.expect(flag, "invalid channel-binding flag")?;
                cur.expect(b',', "comma expected after channel-binding flag")?;
                (if flag == b'n' { CBIND_N } else { CBIND_Y }).to_owned()
            }
            (Some(b'p'), Some(hash)) => {
                if cur.attr(b'p', "invalid channel-binding flag")? != b"tls-server-end-point" {
                    return Err(ScramError::ChannelBindingUnsupported);
                }
                B64.encode([GS2_HEADER_PLUS, hash].concat())
            }
            (Some(b'p'), None) => return Err(ScramError::ChannelBindingUnsupported),
            _ => return Err(ScramError::Malformed("unexpected channel-binding flag")),
        };
        // PostgreSQL rejects any authorization identity.
        if cur.peek() == Some(b'a') {
            return Err(ScramError::Malformed("authzid is not supported"));
        }
        cur.expect(b',', "unexpected attribute in gs2 header")?;
        let client_first_bare = cur.rest.to_vec();
        if cur.peek() == Some(b'm') {
            return Err(ScramError::Malformed("unsupported mandatory extension"));
        }
        // The SCRAM user name is ignored: the startup packet's user counts.
        cur.attr(b'n', "expected user name attribute")?;
        let client_nonce = cur.attr(b'r', "expected nonce attribute")?;
        if !is_printable(client_nonce) {
            return Err(ScramError::Malformed("invalid client nonce"));
        }
        // Optional extensions are ignored, as PostgreSQL does.
        while !cur.is_empty() {
            cur.any_attr()?;
        }
        let nonce = [client_nonce, server_nonce.as_bytes()].concat();
        let server_first = [
            b"r=".as_slice(),
            &nonce,
            b",s=",
            B64.encode(&self.verifier.salt).as_bytes(),
            b",i=",
            self.verifier.iterations.to_string().as_bytes(),
        ]
        .concat();
        self.state = ServerState::AwaitingFinal {
            expected_cbind,
            client_first_bare,
            server_first: server_first.clone(),
            nonce,
        };
        Ok(server_first)
    }

    /// Handles SASLResponse; returns the server-final-message (`v=...`) on success.
    pub(crate) fn client_final(&mut self, client_final: &[u8]) -> Result<Vec<u8>, ScramError> {
        let ServerState::AwaitingFinal {
            expected_cbind,
            client_first_bare,
            server_first,
            nonce,
        } = std::mem::replace(&mut self.state, ServerState::Done)
        else {
            return Err(ScramError::OutOfSequence);
        };
        let msg = check_message(client_final)?;
        let mut cur = Cursor::new(msg);
        let cbind = cur.attr(b'c', "expected channel-binding attribute")?;
        let final_nonce = cur.attr(b'r', "expected nonce attribute")?;
        // Skip extensions up to the proof, which must come last.
        let (proof_start, proof_b64) = loop {
            let start = cur.pos();
            let (attr, value) = cur.any_attr()?;
            if attr == b'p' {
                break (start, value);
            }
        };
        if !cur.is_empty() {
            return Err(ScramError::Malformed("garbage after client proof"));
        }
        let proof = decode_key(proof_b64).ok_or(ScramError::Malformed("invalid client proof"))?;
        let without_proof = msg
            .get(..proof_start.saturating_sub(1))
            .ok_or(ScramError::Malformed("unexpected end of message"))?;

        // Plain compares: both values are public (the client was sent the nonce, and the
        // binding is the certificate's hash); only the proof check below keeps constant time.
        if cbind != expected_cbind.as_bytes() {
            return Err(ScramError::ChannelBindingMismatch);
        }
        if final_nonce != nonce.as_slice() {
            return Err(ScramError::NonceMismatch);
        }
        let auth_message = [
            &client_first_bare,
            b",".as_slice(),
            &server_first,
            b",",
            without_proof,
        ];
        let client_signature = hmac_sha256(&self.verifier.stored_key, &auth_message);
        let client_key = xor(proof, client_signature);
        let ok = bool::from(sha256(&client_key).ct_eq(&self.verifier.stored_key));
        if !ok || self.verifier.doomed {
            return Err(ScramError::InvalidProof);
        }
        let server_signature = hmac_sha256(&self.verifier.server_key, &auth_message);
        let mut server_final = String::with_capacity(2 + SERVER_SIGNATURE_B64_LEN);
        server_final.push_str("v=");
        B64.encode_string(server_signature, &mut server_final);
        Ok(server_final.into_bytes())
    }
}

#[cfg(test)]
#[path = "scram_tests.rs"]
mod tests;
