//! Per-identity pass-through: a client logs in with its own Databricks identity as user name
//! and a Databricks token (PAT or OAuth access token) as password, and lakepool logs in to
//! Lakebase as that identity with a credential minted with the client's own token.
//!
//! - [`check`]: is this token valid, and whose is it? SCIM Me with the token, remembered by a
//!   keyed SHA-256 of the token (never the token) for a bounded time and number of tokens,
//!   one call per token however many clients log in with it at once.
//! - [`identity`]: what one identity's credential needs: the workspace API called with the
//!   newest token a client of the identity logged in with ([`identity::IdentityApi`]), the
//!   credential source that stops serving once the identity is dropped
//!   ([`identity::IdentityCredential`]), and the placeholder source of the database itself
//!   ([`identity::PerClient`]).
//!
//! Tokens are `SecretString`s from the password message on, and are wiped when dropped.

pub mod check;
pub mod identity;

use std::time::Duration;

use secrecy::SecretString;
use sha2::{Digest, Sha256};

use crate::workspace::auth::TokenSource;
use crate::workspace::http::ApiClient;

/// The workspace the clients' tokens are for: its URL and HTTP client, without a token of its
/// own (each call is authenticated with a client's token).
#[derive(Debug)]
pub struct ClientWorkspace {
    http: reqwest::Client,
    host: String,
    retry_budget: Duration,
}

impl ClientWorkspace {
    /// The workspace at `host` (normalised URL), with `retry_budget` per call.
    pub fn new(http: reqwest::Client, host: String, retry_budget: Duration) -> Self {
        Self {
            http,
            host,
            retry_budget,
        }
    }

    /// Workspace URL.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// An API client authenticated with `token` (sent as a bearer token, as a PAT is).
    pub fn client(&self, token: SecretString) -> ApiClient {
        ApiClient::new(
            self.http.clone(),
            self.host.clone(),
            std::sync::Arc::new(TokenSource::Pat(token)),
            self.retry_budget,
        )
    }
}

/// A token's fingerprint: SHA-256 of a per-process key and the token. What the cache and the
/// identities remember instead of the token itself; the key keeps equal tokens of two
/// lakepool processes (or a leaked dump) from being matched against each other.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash([u8; 32]);

impl std::fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenHash([REDACTED])")
    }
}

/// Hashes tokens under one random key.
#[derive(Clone)]
pub struct TokenHasher {
    key: [u8; 32],
}

impl Default for TokenHasher {
    fn default() -> Self {
        Self {
            key: rand::random(),
        }
    }
}

impl std::fmt::Debug for TokenHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenHasher([REDACTED])")
    }
}

impl TokenHasher {
    /// The fingerprint of `token`.
    pub fn hash(&self, token: &[u8]) -> TokenHash {
        let mut h = Sha256::new();
        h.update(self.key);
        h.update(token);
        TokenHash(h.finalize().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_keyed_and_never_printed() {
        let a = TokenHasher::default();
        let b = TokenHasher::default();
        assert_eq!(a.hash(b"dapi123"), a.hash(b"dapi123"));
        assert_ne!(a.hash(b"dapi123"), a.hash(b"dapi124"));
        // Another key (another process) gives another fingerprint of the same token.
        assert_ne!(a.hash(b"dapi123"), b.hash(b"dapi123"));
        let shown = format!("{:?} {a:?}", a.hash(b"dapi123"));
        assert!(
            shown.contains("REDACTED") && !shown.contains("dapi"),
            "{shown}"
        );
    }
}
