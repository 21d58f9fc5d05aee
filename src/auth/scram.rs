//! SCRAM-SHA-256 (RFC 5802 / RFC 7677) as PostgreSQL speaks it, sans-IO.
//!
//! [`ScramServer`] verifies clients connecting to lakepool; [`ScramClient`]
//! logs lakepool in to an upstream server. Callers move message bodies in and
//! out; nothing here does I/O or logging.
//!
//! Passwords go through SASLprep first, as PostgreSQL and libpq do (see
//! [`super::saslprep`]): the raw bytes are used when SASLprep fails.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Mutex, MutexGuard};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

use super::saslprep::saslprep;

/// Iteration count PostgreSQL uses by default for new SCRAM verifiers.
pub const DEFAULT_ITERATIONS: u32 = 4096;
/// SASL name of SCRAM-SHA-256 without channel binding.
pub const SCRAM_SHA_256: &str = "SCRAM-SHA-256";
/// SASL name of SCRAM-SHA-256 with `tls-server-end-point` channel binding.
pub const SCRAM_SHA_256_PLUS: &str = "SCRAM-SHA-256-PLUS";

/// Upper bound on a server's iteration count: a hostile upstream must not be
/// able to make us burn minutes of CPU.
const MAX_CLIENT_ITERATIONS: u32 = 10_000_000;
/// Raw nonce length, as PostgreSQL (SCRAM_RAW_NONCE_LEN).
const NONCE_LEN: usize = 18;
/// Salt length for new verifiers, as PostgreSQL (SCRAM_DEFAULT_SALT_LEN).
pub const DEFAULT_SALT_LEN: usize = 16;
const KEY_LEN: usize = 32;
/// The only gs2 header a PLUS exchange can use, since authzids are rejected.
const GS2_HEADER_PLUS: &[u8] = b"p=tls-server-end-point,,";
/// base64("n,,") and base64("y,,"): the `c=` value of an unbound exchange.
const CBIND_N: &str = "biws";
const CBIND_Y: &str = "eSws";

type Key = [u8; KEY_LEN];

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
    pub fn is_invalid_password(&self) -> bool {
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

fn sha256(data: &[u8]) -> Key {
    Sha256::digest(data).into()
}

fn xor(mut a: Key, b: Key) -> Key {
    a.iter_mut().zip(b).for_each(|(x, y)| *x ^= y);
    a
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    bool::from(a.ct_eq(b))
}

fn random_nonce() -> String {
    let mut raw = [0u8; NONCE_LEN];
    rand::fill(&mut raw[..]);
    B64.encode(raw)
}

/// Hi(SASLprep(password), salt, i) with i = 0 treated as 1 (PBKDF2 needs a round). The
/// result is a password equivalent: wiped when dropped, as is the prepared copy.
fn hi(password: impl AsRef<[u8]>, salt: &[u8], iterations: u32) -> Zeroizing<Key> {
    let prepared = Zeroizing::new(saslprep(password.as_ref()).into_owned());
    Zeroizing::new(pbkdf2::pbkdf2_hmac_array::<Sha256, KEY_LEN>(
        &prepared,
        salt,
        iterations.max(1),
    ))
}

/// (StoredKey, ServerKey) from a salted password.
fn derive_keys(salted: &Key) -> (Key, Key) {
    let client_key = Zeroizing::new(hmac_sha256(salted, &[b"Client Key"]));
    (sha256(&*client_key), hmac_sha256(salted, &[b"Server Key"]))
}

/// Digits only (no sign or spaces), fits in u32, at least 1.
fn parse_iterations(s: &[u8]) -> Option<u32> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(s)
        .ok()?
        .parse::<u32>()
        .ok()
        .filter(|&i| i >= 1)
}

fn decode_key(b64: &[u8]) -> Option<Key> {
    B64.decode(b64).ok()?.try_into().ok()
}

/// Printable per RFC 5802: %x21-7E except ','; non-empty.
fn is_printable(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// Rejects what PostgreSQL rejects before parsing: empty input and NULs.
fn check_message(msg: &[u8]) -> Result<&[u8], ScramError> {
    if msg.is_empty() {
        return Err(ScramError::Malformed("empty message"));
    }
    if msg.contains(&0) {
        return Err(ScramError::Malformed("NUL byte in message"));
    }
    Ok(msg)
}

/// Reads `attr=value` pairs separated by commas, never panicking.
struct Cursor<'a> {
    rest: &'a [u8],
    total: usize,
}

impl<'a> Cursor<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Cursor {
            rest: buf,
            total: buf.len(),
        }
    }

    fn pos(&self) -> usize {
        self.total - self.rest.len()
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn peek(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    /// Consumes `b` or fails.
    fn expect(&mut self, b: u8, reason: &'static str) -> Result<(), ScramError> {
        match self.rest.split_first() {
            Some((&c, tail)) if c == b => {
                self.rest = tail;
                Ok(())
            }
            _ => Err(ScramError::Malformed(reason)),
        }
    }

    /// Reads any `x=value[,]` attribute, like PostgreSQL's read_any_attr.
    fn any_attr(&mut self) -> Result<(u8, &'a [u8]), ScramError> {
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
    fn attr(&mut self, attr: u8, reason: &'static str) -> Result<&'a [u8], ScramError> {
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
    pub fn parse(s: &str) -> Result<Self, ScramError> {
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
    pub fn from_password_and_salt(password: &str, salt: &[u8], iterations: u32) -> Self {
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
    pub fn mock(username: &str, secret: &[u8; 32], salt: Vec<u8>, iterations: u32) -> Self {
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
    pub fn verify_password(&self, password: impl AsRef<[u8]>) -> bool {
        let (stored, server) = derive_keys(&hi(password, &self.salt, self.iterations));
        let ok = stored.ct_eq(&self.stored_key) & server.ct_eq(&self.server_key);
        bool::from(ok) && !self.doomed
    }

    /// The PBKDF2 iteration count.
    pub fn iterations(&self) -> u32 {
        self.iterations
    }

    /// Length of the salt in bytes.
    pub fn salt_len(&self) -> usize {
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

enum ServerState {
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
pub struct ScramServer {
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
    pub fn new(verifier: ScramVerifier, tls_end_point: Option<Vec<u8>>) -> Self {
        ScramServer {
            verifier,
            tls_end_point,
            state: ServerState::Initial,
        }
    }

    /// Mechanisms to list in AuthenticationSASL, preferred first.
    pub fn mechanisms(&self) -> &'static [&'static str] {
        if self.tls_end_point.is_some() {
            &[SCRAM_SHA_256_PLUS, SCRAM_SHA_256]
        } else {
            &[SCRAM_SHA_256]
        }
    }

    /// Handles SASLInitialResponse; returns the server-first-message.
    pub fn client_first(
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
    pub fn client_final(&mut self, client_final: &[u8]) -> Result<Vec<u8>, ScramError> {
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

        if !ct_eq(cbind, expected_cbind.as_bytes()) {
            return Err(ScramError::ChannelBindingMismatch);
        }
        if !ct_eq(final_nonce, &nonce) {
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
        Ok(format!("v={}", B64.encode(server_signature)).into_bytes())
    }
}

/// Salt and iteration count from a server-first-message: the input to Hi().
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct SaltParams {
    /// Decoded salt.
    pub salt: Vec<u8>,
    /// PBKDF2 iteration count (1..=10_000_000).
    pub iterations: u32,
}

/// Hi() = PBKDF2-HMAC-SHA256 of the raw password bytes; expensive.
pub fn salted_password(password: &str, params: &SaltParams) -> Zeroizing<[u8; 32]> {
    hi(password, &params.salt, params.iterations)
}

enum ClientState {
    Initial,
    GotServerFirst { server_first: String, nonce: String },
    SentFinal { server_signature: Key },
    Done,
}

/// Client side of a SCRAM exchange (lakepool logging in upstream).
pub struct ScramClient {
    password: Zeroizing<String>,
    /// Server certificate hash when binding (SCRAM-SHA-256-PLUS).
    tls_end_point: Option<Vec<u8>>,
    gs2_header: &'static [u8],
    client_nonce: String,
    client_first_bare: String,
    state: ClientState,
}

impl fmt::Debug for ScramClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramClient")
            .field("mechanism", &self.mechanism())
            .finish_non_exhaustive()
    }
}

impl ScramClient {
    /// `tls_end_point`: server certificate hash to use PLUS; otherwise plain
    /// SCRAM with gs2 flag `y` on TLS connections and `n` elsewhere.
    /// (A server that offered PLUS rejects `y`: bind whenever PLUS is offered over TLS.)
    pub fn new(password: &str, tls_end_point: Option<Vec<u8>>, connection_is_tls: bool) -> Self {
        let nonce = random_nonce();
        Self::with_nonce(password, tls_end_point, connection_is_tls, "", nonce)
    }

    fn with_nonce(
        password: &str,
        tls_end_point: Option<Vec<u8>>,
        connection_is_tls: bool,
        user: &str,
        client_nonce: String,
    ) -> Self {
        let gs2_header: &'static [u8] = match (&tls_end_point, connection_is_tls) {
            (Some(_), _) => GS2_HEADER_PLUS,
            (None, true) => b"y,,",
            (None, false) => b"n,,",
        };
        // libpq sends an empty user name: the server uses the startup user.
        let client_first_bare = format!("n={user},r={client_nonce}");
        ScramClient {
            password: Zeroizing::new(password.to_owned()),
            tls_end_point,
            gs2_header,
            client_nonce,
            client_first_bare,
            state: ClientState::Initial,
        }
    }

    /// The SASL mechanism name to put in SASLInitialResponse.
    pub fn mechanism(&self) -> &'static str {
        if self.tls_end_point.is_some() {
            SCRAM_SHA_256_PLUS
        } else {
            SCRAM_SHA_256
        }
    }

    /// The client-first-message (`n,,n=,r=<nonce>` style).
    pub fn client_first(&self) -> Vec<u8> {
        [self.gs2_header, self.client_first_bare.as_bytes()].concat()
    }

    /// Parses the server-first-message; returns the parameters for Hi().
    pub fn server_first(&mut self, server_first: &[u8]) -> Result<SaltParams, ScramError> {
        if !matches!(
            std::mem::replace(&mut self.state, ClientState::Done),
            ClientState::Initial
        ) {
            return Err(ScramError::OutOfSequence);
        }
        let msg = check_message(server_first)?;
        let mut cur = Cursor::new(msg);
        let nonce = cur.attr(b'r', "expected nonce attribute")?;
        // The server must extend our nonce with a non-empty part of its own.
        if !is_printable(nonce)
            || nonce.len() <= self.client_nonce.len()
            || !nonce.starts_with(self.client_nonce.as_bytes())
        {
            return Err(ScramError::NonceMismatch);
        }
        let salt = B64
            .decode(cur.attr(b's', "expected salt attribute")?)
            .map_err(|_| ScramError::Malformed("invalid salt"))?;
        let iterations = parse_iterations(cur.attr(b'i', "expected iteration count")?)
            .filter(|&i| i <= MAX_CLIENT_ITERATIONS)
            .ok_or(ScramError::Malformed("invalid iteration count"))?;
        if !cur.is_empty() {
            return Err(ScramError::Malformed("garbage after server-first-message"));
        }
        // Everything accepted above is ASCII, so these conversions cannot fail.
        let text = |b: &[u8]| {
            String::from_utf8(b.to_vec()).map_err(|_| ScramError::Malformed("not UTF-8"))
        };
        let (server_first, nonce) = (text(msg)?, text(nonce)?);
        self.state = ClientState::GotServerFirst {
            server_first,
            nonce,
        };
        Ok(SaltParams { salt, iterations })
    }

    /// Builds the client-final-message from SaltedPassword = Hi(password, salt, i).
    pub fn client_final(&mut self, salted_password: &[u8; 32]) -> Result<Vec<u8>, ScramError> {
        let ClientState::GotServerFirst {
            server_first,
            nonce,
        } = std::mem::replace(&mut self.state, ClientState::Done)
        else {
            return Err(ScramError::OutOfSequence);
        };
        let cbind_input = match &self.tls_end_point {
            Some(hash) => [self.gs2_header, hash].concat(),
            None => self.gs2_header.to_vec(),
        };
        let without_proof = format!("c={},r={nonce}", B64.encode(cbind_input));
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let auth_message = [auth_message.as_bytes()];
        let client_key = Zeroizing::new(hmac_sha256(salted_password, &[b"Client Key"]));
        let client_signature = hmac_sha256(&sha256(&*client_key), &auth_message);
        let proof = xor(*client_key, client_signature);
        let server_key = hmac_sha256(salted_password, &[b"Server Key"]);
        self.state = ClientState::SentFinal {
            server_signature: hmac_sha256(&server_key, &auth_message),
        };
        Ok(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
    }

    /// Verifies the server-final-message (`v=...`, or `e=...` error) in constant time.
    pub fn server_final(&self, server_final: &[u8]) -> Result<(), ScramError> {
        let ClientState::SentFinal { server_signature } = &self.state else {
            return Err(ScramError::OutOfSequence);
        };
        let mut cur = Cursor::new(check_message(server_final)?);
        if cur.peek() == Some(b'e') {
            let reason = cur.attr(b'e', "invalid error attribute")?;
            // Peer-controlled text: keep it short and printable for logs.
            let printable = |&b: &u8| {
                if b == b' ' || b.is_ascii_graphic() {
                    b
                } else {
                    b'?'
                }
            };
            let reason = reason.iter().take(64).map(printable).map(char::from);
            return Err(ScramError::Server(reason.collect()));
        }
        let signature = decode_key(cur.attr(b'v', "expected verifier attribute")?)
            .ok_or(ScramError::Malformed("invalid server signature"))?;
        if !cur.is_empty() {
            return Err(ScramError::Malformed("garbage after server-final-message"));
        }
        if !ct_eq(&signature, server_signature) {
            return Err(ScramError::InvalidServerSignature);
        }
        Ok(())
    }

    /// The password, for the caller to compute (or look up) the salted password.
    pub fn password(&self) -> &str {
        &self.password
    }
}

/// Cached salted passwords this many; beyond it the oldest entry is dropped.
const CACHE_CAPACITY: usize = 64;

#[derive(PartialEq, Eq)]
struct CacheKey {
    /// sha256(password): the cache need not hold the password itself.
    password_hash: Key,
    params: SaltParams,
}

/// Bounded thread-safe cache of Hi() results keyed by (sha256(password), salt, iterations).
#[derive(Default)]
pub struct SaltedPasswordCache {
    /// Oldest first; a linear scan of 64 entries is cheaper than hashing. Salted passwords
    /// are wiped when evicted or dropped.
    entries: Mutex<VecDeque<(CacheKey, Zeroizing<Key>)>>,
}

impl fmt::Debug for SaltedPasswordCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SaltedPasswordCache { .. }")
    }
}

impl SaltedPasswordCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    fn key(password: &str, params: &SaltParams) -> CacheKey {
        let (password_hash, params) = (sha256(password.as_bytes()), params.clone());
        CacheKey {
            password_hash,
            params,
        }
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<(CacheKey, Zeroizing<Key>)>> {
        // Entries stay consistent even if a holder panicked: ignore poisoning.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached salted password for this password and salt, if any.
    pub fn get(&self, password: &str, params: &SaltParams) -> Option<Zeroizing<[u8; 32]>> {
        let key = Self::key(password, params);
        self.lock()
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.clone())
    }

    /// Stores a salted password, evicting the oldest entry when full.
    pub fn insert(&self, password: &str, params: &SaltParams, salted: &[u8; 32]) {
        let key = Self::key(password, params);
        let salted = Zeroizing::new(*salted);
        let mut entries = self.lock();
        if let Some(entry) = entries.iter_mut().find(|(k, _)| *k == key) {
            entry.1 = salted;
            return;
        }
        if entries.len() >= CACHE_CAPACITY {
            entries.pop_front();
        }
        entries.push_back((key, salted));
    }
}

#[cfg(test)]
#[path = "scram_tests.rs"]
mod tests;
