//! The identities of a pass-through database: one upstream per Databricks identity, whose
//! credential is minted with the newest token a client of that identity logged in with.
//!
//! An identity is created at its first login and kept while a client of it is connected and
//! for `passthrough_cache_ttl` after the last one left (as long as its token's check is
//! trusted). It is dropped when that time passes or when the workspace refuses its token (at
//! a login, or when its credential is refreshed): its refresher stops, its credential stops
//! serving, and the pool registry retires its pool (idle servers close now, busy ones at
//! release). A later login creates it afresh.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use secrecy::SecretString;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Upstream;
use crate::auth::scram::SaltedPasswordCache;
use crate::credentials::lakebase::LakebaseCredential;
use crate::credentials::lakebase::api::{LakebaseApi, LakebaseTarget};
use crate::credentials::passthrough::check::TokenCheck;
use crate::credentials::passthrough::identity::{IdentityApi, IdentityCredential};
use crate::credentials::passthrough::{ClientWorkspace, TokenHash};
use crate::credentials::source::{CredentialSource, Pinned};

/// What every identity's upstream of one pass-through database shares.
#[derive(Debug, Clone)]
pub struct Template {
    /// Instance or endpoint the credentials are minted for.
    pub target: LakebaseTarget,
    /// Configured host (looked up with the client's token when None).
    pub host: Option<String>,
    /// Configured refresh margin.
    pub margin: Option<Duration>,
    /// Port.
    pub port: u16,
    /// Database to log in to.
    pub dbname: String,
    /// TLS client configuration.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Limit on TCP connect + TLS + login.
    pub connect_timeout: Duration,
    /// `send_cleartext_password_without_tls`.
    pub cleartext_without_tls: bool,
}

/// One identity's upstream and what keeps it.
struct Identity {
    name: Arc<str>,
    upstream: Arc<Upstream>,
    api: Arc<IdentityApi>,
    credential: Arc<IdentityCredential>,
    refresher: CancellationToken,
    clients: AtomicUsize,
    last_seen: Mutex<Instant>,
}

impl Identity {
    /// Stops the refresher and the credential for good.
    fn drop_now(&self, why: &str) {
        self.refresher.cancel();
        self.credential.drop_credential();
        self.api.forget();
        tracing::info!(identity = %self.name, "pass-through identity dropped ({why}); its pool drains");
    }
}

/// A logged-in client of an identity; keeps the identity while it lives.
pub struct IdentityLease(Arc<Identity>);

impl std::fmt::Debug for IdentityLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("IdentityLease").field(&self.0.name).finish()
    }
}

impl Drop for IdentityLease {
    fn drop(&mut self) {
        *self.0.last_seen.lock() = Instant::now();
        self.0.clients.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A pass-through database's token check and identities.
pub struct Passthrough {
    template: Template,
    workspace: Arc<ClientWorkspace>,
    check: Arc<TokenCheck>,
    identities: Mutex<HashMap<Arc<str>, Arc<Identity>>>,
    /// Parent of every identity's refresher: cancelled when the database goes (reload).
    root: CancellationToken,
}

impl std::fmt::Debug for Passthrough {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Passthrough")
            .field("target", &self.template.target)
            .field("identities", &self.identities.lock().len())
            .finish_non_exhaustive()
    }
}

impl Drop for Passthrough {
    fn drop(&mut self) {
        self.root.cancel();
    }
}

impl Passthrough {
    /// A pass-through database reaching `template`, checking tokens with `check` and minting
    /// with the clients' tokens at `workspace`.
    pub fn new(
        template: Template,
        workspace: Arc<ClientWorkspace>,
        check: Arc<TokenCheck>,
    ) -> Self {
        Self {
            template,
            workspace,
            check,
            identities: Mutex::new(HashMap::new()),
            root: CancellationToken::new(),
        }
    }

    /// The token check.
    pub fn check(&self) -> &TokenCheck {
        &self.check
    }

    /// Instance or endpoint.
    pub fn target(&self) -> &LakebaseTarget {
        &self.template.target
    }

    /// A client of `name` logged in with `token` (checked, fingerprint `hash`): its identity,
    /// created at its first login (which starts minting its credential), else given the
    /// newer token.
    pub fn login(&self, name: &str, token: SecretString, hash: TokenHash) -> IdentityLease {
        let mut map = self.identities.lock();
        if let Some(id) = map.get(name).filter(|i| !i.api.is_refused()) {
            id.api.set_token(token, hash);
            id.clients.fetch_add(1, Ordering::Relaxed);
            *id.last_seen.lock() = Instant::now();
            // The last refresh failed (say, with a token since revoked): try the new one now.
            let lakebase = id.credential.lakebase();
            if lakebase.current().is_err() && lakebase.status().last_error.is_some() {
                lakebase.refresh_now();
            }
            return IdentityLease(Arc::clone(id));
        }
        let id = self.start(name, token, hash);
        id.clients.fetch_add(1, Ordering::Relaxed);
        if let Some(old) = map.insert(Arc::clone(&id.name), Arc::clone(&id)) {
            old.drop_now("its token was refused");
        }
        IdentityLease(id)
    }

    /// A new identity with its own credential and upstream; its refresher starts now.
    fn start(&self, name: &str, token: SecretString, hash: TokenHash) -> Arc<Identity> {
        let t = &self.template;
        let name: Arc<str> = Arc::from(name);
        let api = Arc::new(IdentityApi::new(
            Arc::clone(&self.workspace),
            Arc::clone(&name),
            token,
            hash,
        ));
        let lakebase = Arc::new(LakebaseCredential::new(
            t.target.clone(),
            Arc::clone(&api) as Arc<dyn LakebaseApi>,
            Pinned::new(t.host.as_deref(), Some(&name)),
            t.margin,
        ));
        let refresher = self.root.child_token();
        lakebase.spawn(refresher.clone());
        let credential = Arc::new(IdentityCredential::new(lakebase, Arc::clone(&name)));
        let upstream = Arc::new(Upstream {
            port: t.port,
            dbname: t.dbname.clone(),
            tls: t.tls.clone(),
            credential: Arc::clone(&credential) as Arc<dyn CredentialSource>,
            connect_timeout: t.connect_timeout,
            salted_cache: Arc::new(SaltedPasswordCache::new()),
            cleartext_without_tls: t.cleartext_without_tls,
        });
        tracing::info!(identity = %name, target = %t.target.describe(),
            "pass-through identity logged in; minting its database credential with its own token");
        Arc::new(Identity {
            name,
            upstream,
            api,
            credential,
            refresher,
            clients: AtomicUsize::new(0),
            last_seen: Mutex::new(Instant::now()),
        })
    }

    /// The upstream of identity `name`, while it has a token nobody refused.
    pub fn upstream(&self, name: &str) -> Option<Arc<Upstream>> {
        self.identities
            .lock()
            .get(name)
            .filter(|i| !i.api.is_refused())
            .map(|i| Arc::clone(&i.upstream))
    }

    /// The workspace refused the token with fingerprint `hash` at a login as `name`: when it
    /// is the token `name`'s credential is refreshed with, the identity is dropped now; its
    /// upstream is returned so the pool registry retires its pool.
    pub fn refused(&self, name: &str, hash: TokenHash) -> Option<Arc<Upstream>> {
        let mut map = self.identities.lock();
        let id = map.get(name).filter(|i| i.api.refuse(hash))?;
        let id = Arc::clone(id);
        map.remove(name);
        drop(map);
        id.drop_now("its token was refused at a login");
        Some(Arc::clone(&id.upstream))
    }

    /// Drops the identities whose token the workspace refused, and those without a client
    /// for the token check's period; returns their names and upstreams, whose pools the
    /// registry retires.
    pub fn sweep(&self, now: Instant) -> Vec<(Arc<str>, Arc<Upstream>)> {
        let keep = self.check.ttl();
        let mut gone = Vec::new();
        self.identities.lock().retain(|_, id| {
            let idle = id.clients.load(Ordering::Relaxed) == 0
                && now.saturating_duration_since(*id.last_seen.lock()) >= keep;
            let refused = id.api.is_refused();
            if idle || refused {
                gone.push((Arc::clone(id), refused));
                return false;
            }
            true
        });
        gone.into_iter()
            .map(|(id, refused)| {
                id.drop_now(if refused {
                    "the workspace refused its token"
                } else {
                    "no client of it is left"
                });
                (Arc::clone(&id.name), Arc::clone(&id.upstream))
            })
            .collect()
    }

    #[cfg(test)]
    /// Identities with a pool now (status views).
    pub fn identities(&self) -> usize {
        self.identities.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::passthrough::check::{WhoAmI, WhoAmIFuture};

    #[derive(Debug)]
    struct Nobody;

    impl WhoAmI for Nobody {
        fn whoami<'a>(&'a self, _token: &'a SecretString) -> WhoAmIFuture<'a> {
            Box::pin(async { unreachable!("not asked in these tests") })
        }
    }

    fn passthrough() -> Passthrough {
        // Nothing listens on port 1: the refreshers fail in the background, which these
        // tests do not look at.
        let ws = Arc::new(ClientWorkspace::new(
            crate::workspace::transport::http_client(Duration::from_secs(1), false).unwrap(),
            "http://127.0.0.1:1".into(),
            Duration::from_secs(1),
        ));
        let check = Arc::new(TokenCheck::new(
            Arc::new(Nobody),
            Duration::from_secs(60),
            10,
        ));
        let template = Template {
            target: LakebaseTarget::Instance("i".into()),
            host: Some("127.0.0.1".into()),
            margin: None,
            port: 5432,
            dbname: "databricks_postgres".into(),
            tls: None,
            connect_timeout: Duration::from_secs(1),
            cleartext_without_tls: false,
        };
        Passthrough::new(template, ws, check)
    }

    fn token(p: &Passthrough, t: &str) -> (SecretString, TokenHash) {
        let s = SecretString::from(t);
        let h = p.check().hash(&s);
        (s, h)
    }

    #[tokio::test]
    async fn each_identity_has_its_own_upstream_kept_while_used() {
        let p = passthrough();
        let (ta, ha) = token(&p, "dapi-alice");
        let (tb, hb) = token(&p, "dapi-bob");
        let a1 = p.login("alice", ta.clone(), ha);
        let a2 = p.login("alice", ta, ha);
        let _b = p.login("bob", tb, hb);
        let (ua, ub) = (p.upstream("alice").unwrap(), p.upstream("bob").unwrap());
        assert!(!Arc::ptr_eq(&ua, &ub));
        assert_eq!(ua.credential.target().1.as_deref(), Some("alice"));
        assert_eq!(ub.credential.target().1.as_deref(), Some("bob"));
        assert_eq!(p.identities(), 2);
        // Connected clients keep an identity whatever the time.
        let later = Instant::now() + Duration::from_secs(3600);
        assert!(p.sweep(later).is_empty());
        drop((a1, a2));
        // After the last client left: kept for the check's period, then dropped.
        assert!(p.sweep(Instant::now() + Duration::from_secs(59)).is_empty());
        let gone = p.sweep(Instant::now() + Duration::from_secs(61));
        assert_eq!(gone.len(), 1);
        assert_eq!(&*gone[0].0, "alice");
        assert!(Arc::ptr_eq(&gone[0].1, &ua));
        assert!(p.upstream("alice").is_none());
        // Its credential stops serving, even to a pool a session still holds.
        let e = ua.credential.current().unwrap_err().to_string();
        assert!(e.contains("log in again"), "{e}");
        assert!(p.upstream("bob").is_some());
    }

    #[tokio::test]
    async fn a_refused_token_drops_the_identity_only_when_it_is_the_one_in_use() {
        let p = passthrough();
        let (t1, h1) = token(&p, "dapi-alice-1");
        let (t2, h2) = token(&p, "dapi-alice-2");
        let _l1 = p.login("alice", t1, h1);
        let _l2 = p.login("alice", t2, h2);
        let first = p.upstream("alice").unwrap();
        // The older token is refused: the credential is refreshed with the newer one anyway.
        assert!(p.refused("alice", h1).is_none());
        assert!(p.upstream("alice").is_some());
        // The token in use is refused: dropped now, whoever is still connected.
        let gone = p.refused("alice", h2).unwrap();
        assert!(Arc::ptr_eq(&gone, &first));
        assert!(p.upstream("alice").is_none());
        // A later login with a good token starts afresh.
        let (t3, h3) = token(&p, "dapi-alice-3");
        let _l3 = p.login("alice", t3, h3);
        let again = p.upstream("alice").unwrap();
        assert!(!Arc::ptr_eq(&again, &first));
        assert!(format!("{p:?}").contains("identities: 1"));
    }
}
