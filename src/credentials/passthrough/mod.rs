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

use crate::config::WorkspaceConfig;
use crate::workspace::auth::TokenSource;
use crate::workspace::http::ApiClient;
use crate::workspace::resolve::{ResolveError, resolve};

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

    /// The workspace of `[workspace]`: at `own_host` (the URL lakepool's own workspace client
    /// resolved) when there is one, else the URL the SDK rules resolve, whether or not any
    /// credentials of lakepool's own are configured (each call carries a client's token).
    pub fn for_config(ws: &WorkspaceConfig, own_host: Option<&str>) -> Result<Self, String> {
        let host = match own_host {
            Some(h) => h.to_owned(),
            None => {
                let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
                match resolve(ws, &|k| std::env::var(k).ok(), home.as_deref()) {
                    Ok(r) => r.host,
                    Err(ResolveError::NoCredentials { host, .. }) => host,
                    Err(e) => return Err(e.to_string()),
                }
            }
        };
        let http = crate::workspace::transport::http_client(
            ws.http_timeout,
            host.starts_with("https://"),
        )?;
        Ok(Self::new(http, host, ws.retry_timeout))
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

    fn workspace(host: &str) -> WorkspaceConfig {
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[workspace]\nhost = \"{host}\"\n\
             [[users]]\nname = \"u\"\npassword = \"p\"\n\
             [[databases]]\nname = \"d\"\nhost = \"h\"\nuser = \"u\"\n"
        );
        crate::config::load_str(&text, std::path::Path::new("."))
            .unwrap()
            .workspace
    }

    #[test]
    fn the_clients_workspace_needs_no_credentials_of_its_own() {
        // Only a URL configured: the clients' tokens are all the calls need.
        let ws = workspace("http://127.0.0.1:9");
        let c = ClientWorkspace::for_config(&ws, None).unwrap();
        assert_eq!(c.host(), "http://127.0.0.1:9");
        // lakepool's own client already resolved the URL: that one is used.
        let c = ClientWorkspace::for_config(&ws, Some("https://ws.example")).unwrap();
        assert_eq!(c.host(), "https://ws.example");
    }

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
