//! Is a client's Databricks token valid, and whose is it? SCIM Me asked with the token itself.
//!
//! The answer is remembered by the token's keyed SHA-256 ([`TokenHasher`]), never the token,
//! for `passthrough_cache_ttl`, so a burst of logins with one token costs one API call, and a
//! revoked or expired token is refused at the first login after its entry expires. A refusal
//! (HTTP 401/403) is remembered too, so a client retrying a wrong token in a loop costs one
//! call per period; a failed call (network, 5xx, 429 past the retry budget) is not, so the
//! next login asks again. At most `passthrough_cache_size` tokens are remembered: the oldest
//! entries go first. Logins with the same token while its call runs wait for that call.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::OnceCell;
use tokio::time::Instant;

use super::{ClientWorkspace, TokenHash, TokenHasher};
use crate::workspace::api::Me;
use crate::workspace::http::ApiError;

/// Future of a SCIM Me call.
pub type WhoAmIFuture<'a> = Pin<Box<dyn Future<Output = Result<Me, ApiError>> + Send + 'a>>;

/// Asks the workspace who a token authenticates (SCIM Me); the unit tests script it.
pub trait WhoAmI: Send + Sync + std::fmt::Debug {
    /// SCIM Me, authenticated with `token`.
    fn whoami<'a>(&'a self, token: &'a SecretString) -> WhoAmIFuture<'a>;
}

impl WhoAmI for ClientWorkspace {
    fn whoami<'a>(&'a self, token: &'a SecretString) -> WhoAmIFuture<'a> {
        Box::pin(async move { self.client(token.clone()).me().await })
    }
}

/// What the workspace said about a token.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// The token is valid and authenticates this identity.
    Valid(Me),
    /// The workspace refused the token (HTTP 401 or 403): wrong, revoked or expired.
    Refused,
}

impl Verdict {
    /// Whether the token is valid and `login` is its identity: the `userName` (a user's
    /// e-mail, a service principal's application id, the Postgres role lakepool's own
    /// identity uses too), or a service principal's `applicationId`. Exact comparison:
    /// the name becomes the upstream role.
    pub fn is_identity(&self, login: &str) -> bool {
        match self {
            Verdict::Valid(me) => {
                me.user_name.as_deref() == Some(login)
                    || me.application_id.as_deref() == Some(login)
            }
            Verdict::Refused => false,
        }
    }
}

/// A checked token: the verdict and the token's fingerprint.
#[derive(Debug, Clone)]
pub struct Checked {
    /// What the workspace said (now, or within the cache period).
    pub verdict: Verdict,
    /// The token's fingerprint.
    pub hash: TokenHash,
}

/// The workspace could not be asked (network, 5xx, rate limit beyond the retry budget); the
/// token may well be valid.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CheckError(pub ApiError);

/// One token's entry: filled once by the call that checks it.
#[derive(Debug)]
struct Slot {
    created: Instant,
    done: OnceCell<(Verdict, Instant)>,
}

impl Slot {
    /// Still usable at `now`: a call under way, or an answer younger than `ttl`.
    fn usable(&self, now: Instant, ttl: Duration) -> bool {
        self.done
            .get()
            .is_none_or(|(_, at)| now.saturating_duration_since(*at) < ttl)
    }

    /// Past its time: an answer older than `ttl`, or a call started longer ago than `ttl`
    /// that never gave one (it failed, and nobody asked again).
    fn stale(&self, now: Instant, ttl: Duration) -> bool {
        match self.done.get() {
            Some((_, at)) => now.saturating_duration_since(*at) >= ttl,
            None => now.saturating_duration_since(self.created) >= ttl,
        }
    }
}

/// The remembered checks, oldest first in `order`.
#[derive(Debug, Default)]
struct Cache {
    slots: HashMap<TokenHash, Arc<Slot>>,
    /// Insertion order; an entry whose slot was replaced or removed is skipped.
    order: VecDeque<(TokenHash, Weak<Slot>)>,
}

impl Cache {
    /// The entry for `hash`: the current one while usable, else a new one.
    fn slot(&mut self, hash: TokenHash, now: Instant, ttl: Duration, capacity: usize) -> Arc<Slot> {
        if let Some(s) = self.slots.get(&hash)
            && s.usable(now, ttl)
        {
            return Arc::clone(s);
        }
        self.slots.remove(&hash);
        self.prune(now, ttl, capacity.saturating_sub(1));
        let s = Arc::new(Slot {
            created: now,
            done: OnceCell::new(),
        });
        self.slots.insert(hash, Arc::clone(&s));
        self.order.push_back((hash, Arc::downgrade(&s)));
        s
    }

    /// Drops, oldest first, entries that were replaced, are stale, or exceed `keep`.
    fn prune(&mut self, now: Instant, ttl: Duration, keep: usize) {
        while let Some((hash, weak)) = self.order.front() {
            let current = self
                .slots
                .get(hash)
                .filter(|s| std::ptr::eq(Arc::as_ptr(s), weak.as_ptr()));
            let remove = match current {
                None => true,
                Some(s) => s.stale(now, ttl) || self.slots.len() > keep,
            };
            if !remove {
                break;
            }
            if current.is_some() {
                self.slots.remove(hash);
            }
            self.order.pop_front();
        }
    }
}

/// Checks client tokens with the workspace, remembering the answers.
pub struct TokenCheck {
    who: Arc<dyn WhoAmI>,
    hasher: TokenHasher,
    ttl: Duration,
    capacity: usize,
    cache: Mutex<Cache>,
}

impl std::fmt::Debug for TokenCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCheck")
            .field("who", &self.who)
            .field("ttl", &self.ttl)
            .field("capacity", &self.capacity)
            .field("remembered", &self.cache.lock().slots.len())
            .finish()
    }
}

impl TokenCheck {
    /// Checks tokens with `who`, remembering at most `capacity` answers for `ttl` each.
    pub fn new(who: Arc<dyn WhoAmI>, ttl: Duration, capacity: usize) -> Self {
        Self {
            who,
            hasher: TokenHasher::default(),
            ttl,
            capacity: capacity.max(1),
            cache: Mutex::new(Cache::default()),
        }
    }

    /// How long an answer is trusted.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The fingerprint of `token` under this check's key.
    pub fn hash(&self, token: &SecretString) -> TokenHash {
        self.hasher.hash(token.expose_secret().as_bytes())
    }

    /// Who `token` authenticates: the remembered answer if it is younger than the cache
    /// period, else the workspace's answer now (one call for every login waiting on it).
    pub async fn check(&self, token: &SecretString) -> Result<Checked, CheckError> {
        let hash = self.hash(token);
        let slot = self
            .cache
            .lock()
            .slot(hash, Instant::now(), self.ttl, self.capacity);
        let (verdict, _) = slot
            .done
            .get_or_try_init(|| async {
                let answer = self.who.whoami(token).await;
                let at = Instant::now();
                match answer {
                    Ok(me) => Ok((Verdict::Valid(me), at)),
                    Err(ApiError::Status {
                        status: 401 | 403, ..
                    }) => Ok((Verdict::Refused, at)),
                    Err(e) => Err(CheckError(e)),
                }
            })
            .await?;
        Ok(Checked {
            verdict: verdict.clone(),
            hash,
        })
    }

    #[cfg(test)]
    /// Tokens remembered now.
    pub fn remembered(&self) -> usize {
        self.cache.lock().slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A workspace whose answers the test sets: a user name, or an HTTP status.
    #[derive(Debug, Default)]
    struct Script {
        calls: AtomicUsize,
        answers: Mutex<HashMap<String, Result<&'static str, u16>>>,
    }

    impl Script {
        fn set(&self, token: &str, answer: Result<&'static str, u16>) {
            self.answers.lock().insert(token.to_owned(), answer);
        }
        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
    }

    impl WhoAmI for Script {
        fn whoami<'a>(&'a self, token: &'a SecretString) -> WhoAmIFuture<'a> {
            Box::pin(async move {
                self.calls.fetch_add(1, Ordering::SeqCst);
                // A call takes a while, so logins pile up behind it.
                tokio::time::sleep(Duration::from_millis(200)).await;
                let answer = self.answers.lock().get(token.expose_secret()).copied();
                match answer.unwrap_or(Err(401)) {
                    Ok(user) => Ok(Me {
                        user_name: Some(user.to_owned()),
                        application_id: None,
                    }),
                    Err(status) => Err(ApiError::Status {
                        method: "GET",
                        host: "https://ws".into(),
                        path: "/api/2.0/preview/scim/v2/Me".into(),
                        status,
                        error_code: None,
                        message: None,
                        retry_after: None,
                    }),
                }
            })
        }
    }

    fn setup(ttl_s: u64, capacity: usize) -> (Arc<Script>, Arc<TokenCheck>) {
        let script = Arc::new(Script::default());
        let check = TokenCheck::new(
            Arc::clone(&script) as Arc<dyn WhoAmI>,
            Duration::from_secs(ttl_s),
            capacity,
        );
        (script, Arc::new(check))
    }

    fn tok(s: &str) -> SecretString {
        SecretString::from(s)
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_logins_costs_one_call() {
        let (script, check) = setup(60, 100);
        script.set("dapi-alice", Ok("alice@example.com"));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let check = Arc::clone(&check);
            tasks.push(tokio::spawn(async move {
                check.check(&tok("dapi-alice")).await.unwrap()
            }));
        }
        for t in tasks {
            let c = t.await.unwrap();
            assert!(c.verdict.is_identity("alice@example.com"));
            assert!(!c.verdict.is_identity("bob@example.com"));
        }
        assert_eq!(script.calls(), 1);
        // Within the period: remembered; past it: asked again.
        tokio::time::sleep(Duration::from_secs(30)).await;
        check.check(&tok("dapi-alice")).await.unwrap();
        assert_eq!(script.calls(), 1);
        tokio::time::sleep(Duration::from_secs(31)).await;
        check.check(&tok("dapi-alice")).await.unwrap();
        assert_eq!(script.calls(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_revoked_token_is_refused_once_its_entry_expires() {
        let (script, check) = setup(60, 100);
        script.set("dapi-alice", Ok("alice@example.com"));
        let first = check.check(&tok("dapi-alice")).await.unwrap();
        assert!(first.verdict.is_identity("alice@example.com"));
        script.set("dapi-alice", Err(401));
        // Still trusted within the period…
        let cached = check.check(&tok("dapi-alice")).await.unwrap();
        assert!(cached.verdict.is_identity("alice@example.com"));
        // …refused at the first login after it.
        tokio::time::sleep(Duration::from_secs(61)).await;
        let refused = check.check(&tok("dapi-alice")).await.unwrap();
        assert!(matches!(refused.verdict, Verdict::Refused));
        assert_eq!(refused.hash, first.hash);
        // A refusal is remembered too: a client retrying costs no more calls.
        check.check(&tok("dapi-alice")).await.unwrap();
        assert_eq!(script.calls(), 2);
        // 403 ("Invalid access token") is a refusal as well.
        script.set("dapi-x", Err(403));
        assert!(matches!(
            check.check(&tok("dapi-x")).await.unwrap().verdict,
            Verdict::Refused
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn failed_calls_are_not_remembered() {
        let (script, check) = setup(60, 100);
        script.set("dapi-alice", Err(503));
        let e = check.check(&tok("dapi-alice")).await.unwrap_err();
        assert!(e.to_string().contains("503"), "{e}");
        script.set("dapi-alice", Ok("alice@example.com"));
        let ok = check.check(&tok("dapi-alice")).await.unwrap();
        assert!(ok.verdict.is_identity("alice@example.com"));
        assert_eq!(script.calls(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn the_cache_holds_at_most_its_size() {
        let (script, check) = setup(60, 2);
        for t in ["t1", "t2", "t3"] {
            script.set(t, Ok("u"));
            check.check(&tok(t)).await.unwrap();
        }
        assert_eq!(check.remembered(), 2);
        assert_eq!(script.calls(), 3);
        // t1 was the oldest: it went, so it is asked again; t3 is still remembered.
        check.check(&tok("t3")).await.unwrap();
        assert_eq!(script.calls(), 3);
        check.check(&tok("t1")).await.unwrap();
        assert_eq!(script.calls(), 4);
        assert_eq!(check.remembered(), 2);
        // Expired entries go first, whatever the size.
        tokio::time::sleep(Duration::from_secs(61)).await;
        check.check(&tok("t2")).await.unwrap();
        assert_eq!(check.remembered(), 1);
    }

    #[test]
    fn a_service_principal_matches_by_application_id() {
        let v = Verdict::Valid(Me {
            user_name: Some("6f1c-app-id".into()),
            application_id: Some("6f1c-app-id".into()),
        });
        assert!(v.is_identity("6f1c-app-id"));
        assert!(!v.is_identity("6F1C-APP-ID"));
        assert!(!Verdict::Refused.is_identity(""));
    }
}
