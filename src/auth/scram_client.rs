//! The client half of SCRAM-SHA-256: lakepool logging in to an upstream server, and the cache
//! of salted passwords that spares a reconnect the PBKDF2 run.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Mutex, MutexGuard};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use zeroize::Zeroizing;

use super::scram::*;

/// Salt and iteration count from a server-first-message: the input to Hi().
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct SaltParams {
    /// Decoded salt.
    pub(crate) salt: Vec<u8>,
    /// PBKDF2 iteration count (1..=10_000_000).
    pub(crate) iterations: u32,
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

    pub(super) fn with_nonce(
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
    pub(crate) fn password(&self) -> &str {
        &self.password
    }
}

/// Cached salted passwords this many; beyond it the oldest entry is dropped.
pub(super) const CACHE_CAPACITY: usize = 64;

#[derive(PartialEq, Eq)]
pub(super) struct CacheKey {
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

    pub(super) fn lock(&self) -> MutexGuard<'_, VecDeque<(CacheKey, Zeroizing<Key>)>> {
        // Entries stay consistent even if a holder panicked: ignore poisoning.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached salted password for this password and salt, if any.
    pub(crate) fn get(&self, password: &str, params: &SaltParams) -> Option<Zeroizing<[u8; 32]>> {
        let key = Self::key(password, params);
        self.lock()
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.clone())
    }

    /// Stores a salted password, evicting the oldest entry when full.
    pub(crate) fn insert(&self, password: &str, params: &SaltParams, salted: &[u8; 32]) {
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
