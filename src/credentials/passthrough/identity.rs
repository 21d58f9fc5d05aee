//! One pass-through identity's credential: the workspace API called with the newest token a
//! client of the identity logged in with, and the credential source its pool uses.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use parking_lot::Mutex;
use secrecy::SecretString;

use super::{ClientWorkspace, TokenHash};
use crate::credentials::lakebase::LakebaseCredential;
use crate::credentials::lakebase::api::{ApiFuture, LakebaseApi, LakebaseTarget, Located, Minted};
use crate::credentials::source::{Credential, CredentialError, CredentialFuture, CredentialSource};
use crate::credentials::status::RefreshStatus;
use crate::workspace::auth::TokenError;
use crate::workspace::http::{ApiClient, ApiError};

/// Whether `e` says the token itself is no good (rather than, say, a missing permission):
/// HTTP 401, or the workspace's "Invalid access token." answer some endpoints give as 403.
pub fn refuses_token(e: &ApiError) -> bool {
    match e {
        ApiError::Status { status: 401, .. } => true,
        ApiError::Status {
            status: 403,
            message,
            ..
        } => message
            .as_deref()
            .is_some_and(|m| m.to_ascii_lowercase().contains("invalid access token")),
        _ => false,
    }
}

/// The workspace API as one identity: each call is authenticated with the newest token a
/// client of the identity logged in with. A call the workspace refuses because of the token
/// (see [`refuses_token`]) forgets that token and marks the identity refused: its pool is
/// then drained and its credential dropped.
pub struct IdentityApi {
    workspace: Arc<ClientWorkspace>,
    identity: Arc<str>,
    token: Mutex<Option<(SecretString, TokenHash)>>,
    refused: AtomicBool,
    last_failure: Mutex<Option<String>>,
}

impl std::fmt::Debug for IdentityApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityApi")
            .field("identity", &self.identity)
            .field("token", &"[REDACTED]")
            .field("refused", &self.refused.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl IdentityApi {
    /// The API as `identity`, with the token it logged in with.
    pub fn new(
        workspace: Arc<ClientWorkspace>,
        identity: Arc<str>,
        token: SecretString,
        hash: TokenHash,
    ) -> Self {
        Self {
            workspace,
            identity,
            token: Mutex::new(Some((token, hash))),
            refused: AtomicBool::new(false),
            last_failure: Mutex::new(None),
        }
    }

    /// A client of the identity logged in with `token`: later calls use it.
    pub fn set_token(&self, token: SecretString, hash: TokenHash) {
        *self.token.lock() = Some((token, hash));
    }

    #[cfg(test)]
    /// The fingerprint of the token calls use now, if any.
    pub fn token_hash(&self) -> Option<TokenHash> {
        self.token.lock().as_ref().map(|(_, h)| *h)
    }

    /// Whether the workspace refused the identity's token.
    pub fn is_refused(&self) -> bool {
        self.refused.load(Ordering::Relaxed)
    }

    /// Forgets the token whose fingerprint is `hash` (refused at a login), if calls use it.
    pub fn refuse(&self, hash: TokenHash) -> bool {
        let mut t = self.token.lock();
        if t.as_ref().is_some_and(|(_, h)| *h == hash) {
            *t = None;
            self.refused.store(true, Ordering::Relaxed);
            return true;
        }
        false
    }

    /// Forgets the token (the identity was dropped): it is wiped now, not when the last
    /// pool holding this identity goes.
    pub fn forget(&self) {
        *self.token.lock() = None;
    }

    /// A client with the token in use and its fingerprint; None once the token was forgotten.
    fn client(&self) -> Option<(ApiClient, TokenHash)> {
        self.token
            .lock()
            .as_ref()
            .map(|(t, h)| (self.workspace.client(t.clone()), *h))
    }

    /// The error of a call made without a token (it was refused or forgotten).
    fn no_token(&self) -> ApiError {
        ApiError::Token(TokenError::Source {
            method: "passthrough",
            reason: format!(
                "the workspace refused the Databricks token of {}; a client of it must log in \
                 again",
                self.identity
            ),
        })
    }

    /// Records a call's outcome; a refusal of the token it used forgets that token.
    fn record<T>(&self, used: TokenHash, r: &Result<T, ApiError>) {
        match r {
            Ok(_) => *self.last_failure.lock() = None,
            Err(e) => {
                *self.last_failure.lock() = Some(e.to_string());
                if refuses_token(e) && self.refuse(used) {
                    tracing::warn!(identity = %self.identity, error = %e,
                        "the workspace refused the pass-through identity's token; its pool drains");
                }
            }
        }
    }
}

impl LakebaseApi for IdentityApi {
    fn locate<'a>(&'a self, target: &'a LakebaseTarget) -> ApiFuture<'a, Located> {
        Box::pin(async move {
            let (c, used) = self.client().ok_or_else(|| self.no_token())?;
            let r = LakebaseApi::locate(&c, target).await;
            self.record(used, &r);
            r
        })
    }

    fn identity(&self) -> ApiFuture<'_, String> {
        // The role is pinned to the identity the token was checked for: nothing to ask.
        Box::pin(async move { Ok(self.identity.to_string()) })
    }

    fn mint<'a>(&'a self, target: &'a LakebaseTarget) -> ApiFuture<'a, Minted> {
        Box::pin(async move {
            let (c, used) = self.client().ok_or_else(|| self.no_token())?;
            let r = LakebaseApi::mint(&c, target).await;
            self.record(used, &r);
            r
        })
    }

    fn describe(&self) -> String {
        format!("{} (the client's own token)", self.workspace.host())
    }

    fn last_failure(&self) -> Option<String> {
        self.last_failure.lock().clone()
    }
}

/// The credential source of one identity's pool: its Lakebase credential until the identity
/// is dropped, then an error telling the client to log in again (so a pool a session still
/// holds opens nothing more with a credential nobody vouches for any more).
#[derive(Debug)]
pub struct IdentityCredential {
    inner: Arc<LakebaseCredential>,
    identity: Arc<str>,
    dropped: AtomicBool,
}

impl IdentityCredential {
    /// The source over `inner`, minted for `identity`.
    pub fn new(inner: Arc<LakebaseCredential>, identity: Arc<str>) -> Self {
        Self {
            inner,
            identity,
            dropped: AtomicBool::new(false),
        }
    }

    /// The rotating credential underneath.
    pub fn lakebase(&self) -> &Arc<LakebaseCredential> {
        &self.inner
    }

    /// Stops serving credentials for good.
    pub fn drop_credential(&self) {
        self.dropped.store(true, Ordering::Relaxed);
    }

    fn gone(&self) -> Option<CredentialError> {
        self.dropped
            .load(Ordering::Relaxed)
            .then(|| CredentialError {
                reason: format!(
                    "the pass-through credential of {} was dropped (its Databricks token was \
                 refused, or no client of it was left); log in again",
                    self.identity
                ),
            })
    }
}

impl CredentialSource for IdentityCredential {
    fn current(&self) -> Result<Arc<Credential>, CredentialError> {
        match self.gone() {
            Some(e) => Err(e),
            None => self.inner.current(),
        }
    }

    fn refresh_after_rejection<'a>(
        &'a self,
        rejected: &'a Credential,
    ) -> CredentialFuture<'a, Option<Arc<Credential>>> {
        if self.gone().is_some() {
            return Box::pin(async { Ok(None) });
        }
        self.inner.refresh_after_rejection(rejected)
    }

    fn current_or_first(&self) -> CredentialFuture<'_, Arc<Credential>> {
        match self.gone() {
            Some(e) => Box::pin(async move { Err(e) }),
            None => self.inner.current_or_first(),
        }
    }

    fn target(&self) -> (Option<Arc<str>>, Option<Arc<str>>) {
        self.inner.target()
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn expiry(&self) -> Option<SystemTime> {
        self.inner.expiry()
    }

    fn refresh_status(&self) -> Option<RefreshStatus> {
        self.inner.refresh_status()
    }

    fn force_refresh(&self) -> bool {
        self.gone().is_none() && self.inner.force_refresh()
    }
}

/// The credential source of a pass-through database itself: it has none, each identity has
/// its own. Only a pool made for a name without a checked token would ask it.
#[derive(Debug)]
pub struct PerClient {
    target: LakebaseTarget,
    host: Option<Arc<str>>,
}

impl PerClient {
    /// The placeholder for a pass-through database on `target` (with its configured host).
    pub fn new(target: LakebaseTarget, host: Option<&str>) -> Self {
        Self {
            target,
            host: host.filter(|h| !h.is_empty()).map(Arc::from),
        }
    }
}

impl CredentialSource for PerClient {
    fn current(&self) -> Result<Arc<Credential>, CredentialError> {
        Err(CredentialError {
            reason: "pass-through: no Databricks token was checked for this identity; log in \
                     again"
                .to_owned(),
        })
    }

    fn refresh_after_rejection<'a>(
        &'a self,
        _rejected: &'a Credential,
    ) -> CredentialFuture<'a, Option<Arc<Credential>>> {
        Box::pin(async { Ok(None) })
    }

    fn target(&self) -> (Option<Arc<str>>, Option<Arc<str>>) {
        (self.host.clone(), None)
    }

    fn describe(&self) -> String {
        format!(
            "pass-through: each client's own Databricks identity on {}",
            self.target.describe()
        )
    }

    fn kind(&self) -> &'static str {
        "passthrough"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::passthrough::TokenHasher;
    use std::time::Duration;

    fn status(status: u16, message: Option<&str>) -> ApiError {
        ApiError::Status {
            method: "POST",
            host: "https://ws".into(),
            path: "/api/2.0/database/credentials".into(),
            status,
            error_code: None,
            message: message.map(str::to_owned),
            retry_after: None,
        }
    }

    #[test]
    fn only_token_problems_refuse_the_token() {
        assert!(refuses_token(&status(401, None)));
        assert!(refuses_token(&status(403, Some("Invalid access token."))));
        assert!(!refuses_token(&status(
            403,
            Some("no permission on instance")
        )));
        assert!(!refuses_token(&status(503, None)));
    }

    fn api() -> (IdentityApi, TokenHasher) {
        let ws = Arc::new(ClientWorkspace::new(
            crate::workspace::transport::http_client(Duration::from_secs(1), false).unwrap(),
            "http://127.0.0.1:1".into(),
            Duration::from_secs(1),
        ));
        let hasher = TokenHasher::default();
        let t = SecretString::from("dapi-first-token");
        let h = hasher.hash(b"dapi-first-token");
        (IdentityApi::new(ws, Arc::from("alice"), t, h), hasher)
    }

    #[test]
    fn a_refusal_forgets_only_the_token_it_was_for() {
        let (api, hasher) = api();
        let first = hasher.hash(b"dapi-first-token");
        let second = hasher.hash(b"dapi-second-token");
        api.set_token(SecretString::from("dapi-second-token"), second);
        // The first token was refused, but calls use the second one now: nothing changes.
        assert!(!api.refuse(first));
        assert!(!api.is_refused());
        api.record::<()>(first, &Err(status(401, None)));
        assert!(!api.is_refused());
        assert_eq!(api.token_hash(), Some(second));
        // The token in use refused: forgotten, and the identity is marked.
        api.record::<()>(second, &Err(status(401, None)));
        assert!(api.is_refused());
        assert_eq!(api.token_hash(), None);
        assert!(api.client().is_none());
        let e = api.no_token().to_string();
        assert!(e.contains("alice") && e.contains("log in again"), "{e}");
        let shown = format!("{api:?}");
        assert!(!shown.contains("dapi"), "{shown}");
    }

    #[tokio::test]
    async fn the_placeholder_never_has_a_credential() {
        let p = PerClient::new(LakebaseTarget::Instance("i".into()), None);
        assert!(p.current().is_err());
        assert_eq!(p.kind(), "passthrough");
        assert!(p.describe().contains("instance i"));
    }
}
