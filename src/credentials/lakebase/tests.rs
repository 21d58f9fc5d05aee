//! The refresher against a scripted workspace on a paused tokio clock: schedule and jitter,
//! keep-last-good, the refresh after a 28P01, single flight, instance states, margins.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use secrecy::{ExposeSecret, SecretString};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::LakebaseCredential;
use super::api::{ApiFuture, LakebaseApi, LakebaseTarget, Located, Minted};
use super::refresher::{margin, refresh_delay};
use crate::credentials::source::{CredentialSource, Pinned};
use crate::workspace::http::ApiError;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A scripted workspace: mint results are taken from `script` (a success when empty), each
/// call takes `delay` of (paused) time, and every call is counted.
#[derive(Debug, Default)]
struct FakeApi {
    lifetime: Mutex<Duration>,
    script: Mutex<VecDeque<Result<(), ApiError>>>,
    failing: Mutex<Option<ApiError>>,
    located: Mutex<Located>,
    delay: Mutex<Duration>,
    mints: AtomicU64,
    locates: AtomicU64,
    identities: AtomicU64,
}

impl FakeApi {
    fn new(lifetime: Duration) -> Arc<Self> {
        let f = FakeApi::default();
        *f.lifetime.lock() = lifetime;
        *f.located.lock() = Located {
            state: Some("AVAILABLE".into()),
            host: Some("instance-1.lakebase.example".into()),
        };
        Arc::new(f)
    }

    fn mints(&self) -> u64 {
        self.mints.load(Ordering::SeqCst)
    }

    /// Every mint fails with `e` until cleared with None.
    fn fail_with(&self, e: Option<ApiError>) {
        *self.failing.lock() = e;
    }
}

fn unavailable() -> ApiError {
    ApiError::Status {
        method: "POST",
        host: "https://ws.example".into(),
        path: "/api/2.0/database/credentials".into(),
        status: 503,
        error_code: Some("TEMPORARILY_UNAVAILABLE".into()),
        message: None,
        retry_after: None,
    }
}

impl LakebaseApi for FakeApi {
    fn locate<'a>(&'a self, _target: &'a LakebaseTarget) -> ApiFuture<'a, Located> {
        Box::pin(async move {
            self.locates.fetch_add(1, Ordering::SeqCst);
            Ok(self.located.lock().clone())
        })
    }

    fn identity(&self) -> ApiFuture<'_, String> {
        Box::pin(async move {
            self.identities.fetch_add(1, Ordering::SeqCst);
            Ok("sp-app-id".to_owned())
        })
    }

    fn mint<'a>(&'a self, _target: &'a LakebaseTarget) -> ApiFuture<'a, Minted> {
        Box::pin(async move {
            let n = self.mints.fetch_add(1, Ordering::SeqCst) + 1;
            let delay = *self.delay.lock();
            tokio::time::sleep(delay).await;
            if let Some(e) = self.failing.lock().clone() {
                return Err(e);
            }
            if let Some(Err(e)) = self.script.lock().pop_front() {
                return Err(e);
            }
            Ok(Minted {
                token: SecretString::from(format!("token-{n}")),
                lifetime: *self.lifetime.lock(),
            })
        })
    }

    fn describe(&self) -> String {
        "fake".to_owned()
    }

    fn last_failure(&self) -> Option<String> {
        None
    }
}

fn instance() -> LakebaseTarget {
    LakebaseTarget::Instance("inst".into())
}

/// A started credential with jitter fixed at `jitter` (fraction of the 10 %).
fn started(
    api: &Arc<FakeApi>,
    pinned: Pinned,
    margin: Option<Duration>,
    jitter: fn() -> f64,
) -> (Arc<LakebaseCredential>, CancellationToken) {
    let mut c = LakebaseCredential::new(instance(), Arc::clone(api) as _, pinned, margin);
    c.jitter = jitter;
    let c = Arc::new(c);
    let stop = CancellationToken::new();
    c.spawn(stop.clone());
    (c, stop)
}

fn token_of(c: &LakebaseCredential) -> String {
    let cred = c.current().unwrap();
    cred.password.as_ref().unwrap().expose_secret().to_owned()
}

/// Advances the paused clock to `at` (from `start`), letting every task run.
async fn until(start: Instant, at: Duration) {
    tokio::time::sleep_until(start + at).await;
    // Let woken tasks finish their step.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[test]
fn margin_is_half_the_lifetime_capped_at_twenty_minutes_or_the_configured_one_capped() {
    assert_eq!(margin(secs(3600), None), (secs(1200), false));
    assert_eq!(margin(secs(900), None), (secs(450), false));
    assert_eq!(margin(secs(3600), Some(secs(600))), (secs(600), false));
    // A margin at or above the lifetime would refresh in a loop: capped at half.
    assert_eq!(margin(secs(3600), Some(secs(3600))), (secs(1800), true));
    assert_eq!(margin(secs(60), Some(secs(300))), (secs(30), true));
}

#[test]
fn refresh_delay_subtracts_margin_and_up_to_ten_percent_jitter() {
    assert_eq!(refresh_delay(secs(3600), secs(1200), 0.0), secs(2400));
    assert_eq!(refresh_delay(secs(3600), secs(1200), 0.5), secs(2340));
    let earliest = refresh_delay(secs(3600), secs(1200), 0.999_999);
    assert!(
        earliest > secs(2279) && earliest <= secs(2281),
        "{earliest:?}"
    );
    // Never a loop, whatever the numbers.
    assert_eq!(refresh_delay(secs(1), secs(1), 0.9), secs(1));
    assert_eq!(refresh_delay(Duration::ZERO, Duration::ZERO, 0.0), secs(1));
    // Random jitter stays within its band.
    for _ in 0..100 {
        let d = refresh_delay(secs(3600), secs(1200), rand::random::<f64>());
        assert!(d >= secs(2280) && d <= secs(2400), "{d:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn refreshes_on_schedule_with_jitter() {
    let api = FakeApi::new(secs(3600));
    let start = Instant::now();
    let (c, stop) = started(&api, Pinned::default(), None, || 0.5);
    until(start, secs(1)).await;
    assert_eq!(api.mints(), 1);
    assert_eq!(token_of(&c), "token-1");
    let cred = c.current().unwrap();
    assert_eq!(&*cred.host, "instance-1.lakebase.example");
    assert_eq!(&*cred.user, "sp-app-id");
    // Due at 3600 - 1200 - 0.5 × 120 = 2340 s after it arrived.
    until(start, secs(2339)).await;
    assert_eq!(api.mints(), 1, "refreshed early");
    until(start, secs(2341)).await;
    assert_eq!(api.mints(), 2, "not refreshed when due");
    assert_eq!(token_of(&c), "token-2");
    // The identity is asked once; the host is looked up each round.
    assert_eq!(api.identities.load(Ordering::SeqCst), 1);
    assert_eq!(api.locates.load(Ordering::SeqCst), 2);
    stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn configured_margin_above_half_the_lifetime_is_capped() {
    let api = FakeApi::new(secs(600));
    let start = Instant::now();
    // A margin equal to the lifetime: before the cap, this refreshed about once a second.
    let (_c, stop) = started(&api, Pinned::default(), Some(secs(600)), || 0.0);
    until(start, secs(299)).await;
    assert_eq!(api.mints(), 1);
    until(start, secs(301)).await;
    assert_eq!(api.mints(), 2);
    stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn keeps_the_last_good_credential_while_refreshing_fails() {
    let api = FakeApi::new(secs(600));
    let start = Instant::now();
    let (c, stop) = started(&api, Pinned::default(), None, || 0.0);
    until(start, secs(1)).await;
    assert_eq!(token_of(&c), "token-1");
    api.fail_with(Some(unavailable()));
    // Refresh due at 300 s fails, again and again; the first credential stays in use.
    until(start, secs(590)).await;
    assert!(api.mints() > 2, "retried: {}", api.mints());
    assert_eq!(token_of(&c), "token-1");
    let st = c.status();
    assert!(st.failures >= 1);
    assert_eq!(st.last_error_class, Some("http_5xx"));
    // Past its expiry: no credential, and the reason says why.
    until(start, secs(601)).await;
    let err = c.current().unwrap_err().to_string();
    assert!(
        err.contains("expired and refreshing it fails") && err.contains("503"),
        "{err}"
    );
    // The API recovers: so does the credential, without a restart.
    api.fail_with(None);
    until(start, secs(640)).await;
    assert!(c.current().is_ok());
    assert!(c.status().last_error.is_none());
    stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_rejected_login_gets_one_refresh_and_no_loop() {
    let api = FakeApi::new(secs(3600));
    let start = Instant::now();
    let (c, stop) = started(&api, Pinned::default(), None, || 0.0);
    until(start, secs(1)).await;
    let rejected = c.current().unwrap();
    let newer = c
        .refresh_after_rejection(&rejected)
        .await
        .unwrap()
        .expect("a newer credential");
    assert_eq!(api.mints(), 2);
    assert_ne!(
        newer.password.as_ref().unwrap().expose_secret(),
        rejected.password.as_ref().unwrap().expose_secret()
    );
    // Other logins rejected with the old credential just take the newer one.
    let again = c.refresh_after_rejection(&rejected).await.unwrap();
    assert!(again.is_some());
    assert_eq!(api.mints(), 2);
    // The newer one rejected too (role missing): no second refresh within 10 s.
    let none = c.refresh_after_rejection(&newer).await.unwrap();
    assert!(none.is_none());
    assert_eq!(api.mints(), 2);
    stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn many_waiting_logins_cause_one_api_call() {
    let api = FakeApi::new(secs(3600));
    *api.delay.lock() = secs(2);
    let (c, stop) = started(&api, Pinned::default(), None, || 0.0);
    let waiters: Vec<_> = (0..200)
        .map(|_| {
            let c = Arc::clone(&c);
            tokio::spawn(async move { c.current_or_first().await.map(|_| ()) })
        })
        .collect();
    for w in waiters {
        w.await.unwrap().unwrap();
    }
    assert_eq!(api.mints(), 1);
    stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn first_credential_failure_is_reported_to_waiting_logins() {
    let api = FakeApi::new(secs(3600));
    api.fail_with(Some(unavailable()));
    let (c, stop) = started(&api, Pinned::default(), None, || 0.0);
    let err = c.current_or_first().await.unwrap_err().to_string();
    assert!(
        err.contains("no credential for instance inst yet") && err.contains("503"),
        "{err}"
    );
    stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn configured_host_and_user_win_and_are_not_looked_up() {
    let api = FakeApi::new(secs(3600));
    let start = Instant::now();
    let pinned = Pinned::new(Some("pinned.example"), Some("app_role"));
    let (c, stop) = started(&api, pinned, None, || 0.0);
    until(start, secs(1)).await;
    let cred = c.current().unwrap();
    assert_eq!((&*cred.host, &*cred.user), ("pinned.example", "app_role"));
    assert_eq!(api.locates.load(Ordering::SeqCst), 0);
    assert_eq!(api.identities.load(Ordering::SeqCst), 0);
    stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn minted_whatever_the_state_keeping_the_last_known_host() {
    let api = FakeApi::new(secs(600));
    let start = Instant::now();
    let (c, stop) = started(&api, Pinned::default(), None, || 0.0);
    until(start, secs(1)).await;
    // The instance goes UPDATING (a failover), and its answer names no host meanwhile.
    *api.located.lock() = Located {
        state: Some("UPDATING".into()),
        host: None,
    };
    until(start, secs(301)).await;
    assert_eq!(api.mints(), 2, "a credential is minted during UPDATING");
    let cred = c.current().unwrap();
    assert_eq!(&*cred.host, "instance-1.lakebase.example");
    let warning = c.status().last_warning.unwrap_or_default();
    assert!(
        warning.contains("state UPDATING") && warning.contains("keeping the last known host"),
        "{warning}"
    );
    stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn without_a_known_host_a_starting_instance_is_retried() {
    let api = FakeApi::new(secs(600));
    *api.located.lock() = Located {
        state: Some("STARTING".into()),
        host: Some("instance-1.lakebase.example".into()),
    };
    let start = Instant::now();
    let (c, stop) = started(&api, Pinned::default(), None, || 0.0);
    until(start, secs(1)).await;
    let err = c.current().unwrap_err().to_string();
    assert!(
        err.contains("state STARTING") && err.contains("retrying"),
        "{err}"
    );
    assert_eq!(api.mints(), 0);
    assert_eq!(c.status().last_error_class, Some("not_available"));
    api.located.lock().state = Some("AVAILABLE".into());
    until(start, secs(40)).await;
    assert!(c.current().is_ok());
    stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn expiry_is_local_receive_time_plus_lifetime() {
    let api = FakeApi::new(secs(900));
    *api.delay.lock() = secs(5);
    let start = Instant::now();
    let (c, stop) = started(&api, Pinned::default(), None, || 0.0);
    until(start, secs(6)).await;
    let cred = c.current().unwrap();
    // Received at 5 s (the call took 5 s): valid until 905 s.
    assert_eq!(cred.expires_at, Some(start + secs(905)));
    stop.cancel();
}
