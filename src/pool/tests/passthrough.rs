//! The registry with a pass-through database: one pool per identity on the identity's own
//! upstream, `[[users]]` settings not applied, and dropped identities' pools retired.

use super::*;
use crate::config::PoolOverrides;
use crate::credentials::lakebase::api::LakebaseTarget;
use crate::credentials::passthrough::ClientWorkspace;
use crate::credentials::passthrough::check::{TokenCheck, WhoAmI, WhoAmIFuture};
use crate::upstream::passthrough::{Passthrough, Template};

#[derive(Debug)]
struct Nobody;

impl WhoAmI for Nobody {
    fn whoami<'a>(&'a self, _token: &'a SecretString) -> WhoAmIFuture<'a> {
        Box::pin(async { unreachable!("the registry never checks tokens") })
    }
}

/// A pass-through database whose identities are dropped `keep` after their last client left.
/// Its credentials are never minted (the fake connector does not ask for them).
fn passthrough_db(keep: Duration) -> (Database, Arc<Passthrough>) {
    let ws = Arc::new(ClientWorkspace::new(
        crate::workspace::transport::http_client(secs(1), false).unwrap(),
        "http://127.0.0.1:1".into(),
        secs(1),
    ));
    let check = Arc::new(TokenCheck::new(Arc::new(Nobody), keep, 10));
    let template = Template {
        target: LakebaseTarget::Instance("i".into()),
        host: Some("127.0.0.1".into()),
        margin: None,
        port: 1,
        dbname: "app".into(),
        tls: None,
        connect_timeout: secs(1),
        cleartext_without_tls: false,
    };
    let p = Arc::new(Passthrough::new(template, ws, check));
    let mut db = database("pt", &upstream(), settings());
    db.passthrough = Some(Arc::clone(&p));
    (db, p)
}

fn login(p: &Passthrough, name: &str) -> crate::upstream::passthrough::IdentityLease {
    let token = SecretString::from(format!("dapi-{name}"));
    let hash = p.check().hash(&token);
    p.login(name, token, hash)
}

#[tokio::test]
async fn each_identity_gets_its_own_pool_and_user_entries_do_not_apply() {
    let fake = FakeUpstream::new();
    let (db, p) = passthrough_db(ms(50));
    let raw = "[server]\nlisten = \"127.0.0.1:0\"\n[[users]]\nname = \"alice\"\npassword = \"pw\"\n\
               pool_size = 1\n[[databases]]\nname = \"d\"\nhost = \"h\"\nuser = \"u\"\n";
    let cfg = crate::config::load_str(raw, std::path::Path::new(".")).unwrap();
    let overrides: HashMap<String, PoolOverrides> = cfg
        .users
        .iter()
        .map(|u| (u.name.clone(), u.pool.clone()))
        .collect();
    let reg = Registry::new(vec![db], overrides).with_connector(Connector::Fake(Arc::clone(&fake)));
    // No pool for a name without a checked token.
    assert!(reg.current_pool("pt", "carol").is_none());
    let alice_lease = login(&p, "alice");
    let _bob_lease = login(&p, "bob");
    let alice = reg.current_pool("pt", "alice").unwrap();
    let bob = reg.current_pool("pt", "bob").unwrap();
    assert!(!alice.same_as(&bob));
    assert!(Arc::ptr_eq(alice.upstream(), &p.upstream("alice").unwrap()));
    assert!(Arc::ptr_eq(bob.upstream(), &p.upstream("bob").unwrap()));
    // The [[users]] entry named alice (pool_size 1) is not alice the identity.
    assert_eq!(alice.settings().size, settings().size);
    alice.checkout().await.unwrap().release();
    assert_eq!(alice.counts(), (1, 1, 0));

    // Alice's last client leaves; past the check's period her identity and pool go.
    drop(alice_lease);
    tokio::time::sleep(ms(100)).await;
    reg.sweep_passthrough();
    assert!(alice.is_retired());
    assert_eq!(alice.counts(), (0, 0, 0), "idle servers closed");
    assert!(reg.current_pool("pt", "alice").is_none());
    assert!(!bob.is_retired(), "bob still has a client");
    // Logging in again gives a new pool on a new upstream.
    let _again = login(&p, "alice");
    let fresh = reg.current_pool("pt", "alice").unwrap();
    assert!(!fresh.same_as(&alice) && !fresh.is_retired());
}

#[tokio::test]
async fn a_refused_token_retires_the_identity_pool_at_once() {
    let fake = FakeUpstream::new();
    let (db, p) = passthrough_db(secs(60));
    let reg =
        Registry::new(vec![db], HashMap::new()).with_connector(Connector::Fake(Arc::clone(&fake)));
    let _lease = login(&p, "alice");
    let pool = reg.current_pool("pt", "alice").unwrap();
    pool.checkout().await.unwrap().release();
    let db = reg.database("pt").unwrap();
    // Someone else's token refused at a login as alice: nothing happens.
    let other = p.check().hash(&SecretString::from("dapi-wrong"));
    reg.token_refused(db, "alice", other);
    assert!(!pool.is_retired());
    // Alice's own token refused: her idle servers close now, her clients still connected.
    let hers = p.check().hash(&SecretString::from("dapi-alice"));
    reg.token_refused(db, "alice", hers);
    assert!(pool.is_retired());
    assert_eq!(pool.counts(), (0, 0, 0));
}
