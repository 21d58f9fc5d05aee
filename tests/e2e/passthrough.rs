//! Per-identity pass-through against the workspace stand-in and the real cluster: each client
//! logs in with its own Databricks identity and token (over TLS or the Unix socket only),
//! lakepool checks the token with SCIM Me, mints the database credential with it and pools per
//! identity.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::support::standin::{Extra, INSTANCE, Standin};
use crate::support::{APP_DB, Lakepool, connect, ok_stdout, pg, psql};

/// The console login of these configs (pass-through identities are not `[[users]]`).
const ADMIN: (&str, &str) = ("ptadmin", "pt_admin_pw");
/// The pass-through database.
const DB: &str = "lake";

/// Two Databricks identities in the stand-in, each with two PATs.
struct Identities {
    standin: Standin,
    alice: String,
    bob: String,
    /// Alice's tokens: the first, and a second one she can log in with after the first is
    /// revoked.
    alice_tokens: [String; 2],
    bob_token: String,
}

impl Identities {
    fn start(tag: &str) -> Identities {
        let alice = format!("alice-{tag}@example.com");
        let bob = format!("bob-{tag}@example.com");
        let alice_tokens = [
            format!("dapi-{tag}-alice-first-5f1e"),
            format!("dapi-{tag}-alice-second-9a0c"),
        ];
        let bob_token = format!("dapi-{tag}-bob-77d2");
        let mut args = Vec::new();
        for (t, u) in [
            (&alice_tokens[0], &alice),
            (&alice_tokens[1], &alice),
            (&bob_token, &bob),
        ] {
            args.push("--pat".to_owned());
            args.push(format!("{t}={u}"));
        }
        let extra = Extra {
            args,
            roles: vec![alice.clone(), bob.clone()],
        };
        Identities {
            standin: Standin::start_with(tag, 3600, &extra),
            alice,
            bob,
            alice_tokens,
            bob_token,
        }
    }

    /// Every client token of the stand-in.
    fn tokens(&self) -> Vec<&str> {
        vec![
            &self.alice_tokens[0],
            &self.alice_tokens[1],
            &self.bob_token,
        ]
    }
}

/// Pool keys of [`config`].
struct Pool {
    size: usize,
    server_lifetime: f64,
    query_wait_timeout: f64,
    /// `workspace.passthrough_cache_ttl`.
    cache_ttl: f64,
}

impl Default for Pool {
    fn default() -> Self {
        Self {
            size: 2,
            server_lifetime: 3600.0,
            query_wait_timeout: 20.0,
            cache_ttl: 60.0,
        }
    }
}

/// Client TLS offered (not required, so a plain client reaches the pass-through refusal),
/// no workspace credentials of lakepool's own, and pass-through database [`DB`] on the
/// stand-in's instance.
fn config(ids: &Identities, p: &Pool) -> String {
    let pg = pg();
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
         admin_token = \"e2e-admin-token\"\n\
         tls_cert_file = \"{cert}\"\ntls_key_file = \"{key}\"\nclient_tls = \"prefer\"\n\n\
         [pool]\npool_mode = \"transaction\"\npool_size = {size}\nserver_lifetime = {life}\n\
         query_wait_timeout = {wait}\n\n\
         [workspace]\nhost = \"{url}\"\npassthrough_cache_ttl = {ttl}\n\n\
         [[users]]\nname = \"{admin}\"\npassword = \"{admin_pw}\"\nadmin = true\n\n\
         [[databases]]\nname = \"{DB}\"\ninstance = \"{INSTANCE}\"\nport = {port}\n\
         dbname = \"{APP_DB}\"\ntls = \"verify-full\"\nca_file = \"{ca}\"\npassthrough = true\n",
        cert = pg.server_cert.cert_file.display(),
        key = pg.server_cert.key_file.display(),
        size = p.size,
        life = p.server_lifetime,
        wait = p.query_wait_timeout,
        url = ids.standin.url(),
        ttl = p.cache_ttl,
        admin = ADMIN.0,
        admin_pw = ADMIN.1,
        port = pg.port,
        ca = pg.ca_file.display(),
    )
}

/// A TLS session as `user` with `token` as its password.
async fn login(lp: &Lakepool, user: &str, token: &str) -> tokio_postgres::Client {
    connect(lp.port(), user, token, DB, true)
        .await
        .unwrap_or_else(|e| panic!("pass-through login as {user}: {e}"))
}

/// The SQLSTATE and message of a refused login.
async fn refused(lp: &Lakepool, user: &str, token: &str, tls: bool) -> (String, String) {
    let e = match connect(lp.port(), user, token, DB, tls).await {
        Ok(_) => panic!("login as {user} was accepted"),
        Err(e) => e,
    };
    let db = e
        .as_db_error()
        .unwrap_or_else(|| panic!("no server error: {e}"));
    (db.code().code().to_owned(), db.message().to_owned())
}

/// `current_user` and the server's pid, in one transaction.
async fn whoami(c: &tokio_postgres::Client) -> (String, i32) {
    let r = c
        .query_one("select current_user::text, pg_backend_pid()", &[])
        .await
        .expect("query");
    (r.get(0), r.get(1))
}

/// The console's SHOW output (unaligned), read with psql.
async fn console(lp: &Lakepool, command: &'static str) -> String {
    let port = lp.port();
    let out = tokio::task::spawn_blocking(move || {
        psql(port, ADMIN.0, ADMIN.1, "lakepool", "disable", command)
    })
    .await
    .expect("psql");
    ok_stdout(command, &out)
}

#[tokio::test]
async fn each_client_is_its_own_identity_and_never_gets_another_identitys_servers() {
    let ids = Identities::start("pt_own_identity");
    let lp = Lakepool::start(&config(&ids, &Pool::default()), &[]);
    // Three clients of each identity, interleaved transactions.
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push((
            ids.alice.as_str(),
            login(&lp, &ids.alice, &ids.alice_tokens[0]).await,
        ));
        clients.push((ids.bob.as_str(), login(&lp, &ids.bob, &ids.bob_token).await));
    }
    let mut pids: [HashSet<i32>; 2] = Default::default();
    for _ in 0..10 {
        let answers = whoami_all(&clients).await;
        for ((who, _), (user, pid)) in clients.iter().zip(answers) {
            assert_eq!(&user, who, "current_user is the client's own identity");
            pids[usize::from(*who == ids.bob)].insert(pid);
        }
    }
    assert!(
        pids[0].is_disjoint(&pids[1]),
        "an identity's clients used another identity's server: {pids:?}"
    );
    // Each identity's servers log in as that identity over TLS.
    let tls = clients[0]
        .1
        .query_one(
            "select ssl from pg_stat_ssl where pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    assert!(tls.get::<_, bool>(0), "upstream logins use TLS");
    // Two pools, one per identity, both on database `lake`; no token in the console.
    let pools = console(&lp, "SHOW POOLS").await;
    for who in [&ids.alice, &ids.bob] {
        assert!(pools.contains(&format!("{DB}|{who}|")), "{pools}");
    }
    let clients_shown = console(&lp, "SHOW CLIENTS").await;
    let (_, _, metrics) = lp.admin_get_authorized("/metrics");
    for t in ids.tokens() {
        assert!(!pools.contains(t) && !clients_shown.contains(t));
        assert!(!metrics.contains(t), "a client token reached /metrics");
    }
    // Lakepool needs no credential of its own: it is ready.
    let (status, _, body) = lp.admin_get_authorized("/readyz");
    assert_eq!((status, body.trim()), (200, "ready"), "{body}");
}

/// Runs [`whoami`] on every client at once.
async fn whoami_all(clients: &[(&str, tokio_postgres::Client)]) -> Vec<(String, i32)> {
    futures_util::future::join_all(clients.iter().map(|(_, c)| whoami(c))).await
}

#[tokio::test]
async fn pool_limits_apply_per_identity_and_servers_close_at_server_lifetime() {
    let ids = Identities::start("pt_limits_lifetime");
    let pool = Pool {
        size: 1,
        server_lifetime: 2.0,
        query_wait_timeout: 2.0,
        ..Pool::default()
    };
    let lp = Lakepool::start(&config(&ids, &pool), &[]);
    // Alice's only server is held by an open transaction.
    let holder = login(&lp, &ids.alice, &ids.alice_tokens[0]).await;
    holder.batch_execute("begin; select 1").await.unwrap();
    let (_, held) = whoami(&holder).await;
    // Another client of Alice waits for it, and gives up at query_wait_timeout…
    let waiter = login(&lp, &ids.alice, &ids.alice_tokens[1]).await;
    let e = waiter.simple_query("select 1").await.unwrap_err();
    let e = e
        .as_db_error()
        .map(|d| d.message().to_owned())
        .unwrap_or_default();
    assert!(e.contains("query_wait_timeout"), "{e}");
    // …while Bob, with his own pool of one, is served.
    let bob = login(&lp, &ids.bob, &ids.bob_token).await;
    assert_eq!(whoami(&bob).await.0, ids.bob);
    holder.batch_execute("commit").await.unwrap();

    // Alice's server is closed once server_lifetime has passed, and a new one serves her.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (user, pid) = whoami(&holder).await;
        assert_eq!(user, ids.alice);
        if pid != held {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "alice's server outlived server_lifetime"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let still = pg().exec_sql(&format!(
        "select count(*) from pg_stat_activity where pid = {held}"
    ));
    assert_eq!(still.trim(), "0", "the old server was closed");
}

#[tokio::test]
async fn wrong_foreign_and_revoked_tokens_get_28p01() {
    let ids = Identities::start("pt_refused_tokens");
    let pool = Pool {
        cache_ttl: 1.0,
        ..Pool::default()
    };
    let lp = Lakepool::start(&config(&ids, &pool), &[]);
    let alice = login(&lp, &ids.alice, &ids.alice_tokens[0]).await;
    assert_eq!(whoami(&alice).await.0, ids.alice);

    // A token the workspace does not know, and Bob's (valid) token presented as Alice.
    for token in ["dapi-not-a-real-token", ids.bob_token.as_str()] {
        let (code, message) = refused(&lp, &ids.alice, token, true).await;
        assert_eq!(code, "28P01");
        assert_eq!(
            message,
            format!("password authentication failed for user \"{}\"", ids.alice)
        );
    }
    // An unknown user name with a valid token: the name must be the token's identity.
    let (code, _) = refused(&lp, "mallory@example.com", &ids.bob_token, true).await;
    assert_eq!(code, "28P01");

    // Revoked in the workspace: refused at the first login after the cached check expires.
    ids.standin.revoke(&ids.alice_tokens[0]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match connect(lp.port(), &ids.alice, &ids.alice_tokens[0], DB, true).await {
            Ok(_) => {
                assert!(
                    Instant::now() < deadline,
                    "a revoked token was still accepted"
                );
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Err(e) => {
                let code = e.as_db_error().map(|d| d.code().code().to_owned());
                assert_eq!(code.as_deref(), Some("28P01"), "{e}");
                break;
            }
        }
    }
    // Her other, valid token still logs her in, as herself.
    let again = login(&lp, &ids.alice, &ids.alice_tokens[1]).await;
    assert_eq!(whoami(&again).await.0, ids.alice);
    // Bob was never affected.
    let bob = login(&lp, &ids.bob, &ids.bob_token).await;
    assert_eq!(whoami(&bob).await.0, ids.bob);
}

#[tokio::test]
async fn plain_tcp_is_refused_before_a_token_is_asked_for() {
    let ids = Identities::start("pt_plain_tcp");
    let lp = Lakepool::start(&config(&ids, &Pool::default()), &[]);
    let (code, message) = refused(&lp, &ids.alice, &ids.alice_tokens[0], false).await;
    assert_eq!(code, "28000");
    assert!(message.contains("must use TLS"), "{message}");
    // Nothing was sent to the workspace: the token was never asked for.
    let by_path = ids.standin.stats()["by_path"].clone();
    assert!(
        by_path.get("/api/2.0/preview/scim/v2/Me").is_none(),
        "{by_path}"
    );
    // The same login over TLS works.
    let c = login(&lp, &ids.alice, &ids.alice_tokens[0]).await;
    assert_eq!(whoami(&c).await.0, ids.alice);
}

#[tokio::test]
async fn the_unix_socket_takes_tokens_without_tls() {
    let ids = Identities::start("ptsock");
    let dir = crate::support::scratch_dir().join("sock-pt");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // No client certificate at all: the socket alone makes pass-through possible.
    let pg = pg();
    let tls_lines = format!(
        "tls_cert_file = \"{}\"\ntls_key_file = \"{}\"\nclient_tls = \"prefer\"\n",
        pg.server_cert.cert_file.display(),
        pg.server_cert.key_file.display()
    );
    let text = config(&ids, &Pool::default());
    assert!(text.contains(&tls_lines));
    let text = text.replace(
        &tls_lines,
        &format!("unix_socket_dir = \"{}\"\n", dir.display()),
    );
    let lp = Lakepool::start(&text, &[]);
    assert!(
        lp.wait_for_log("listening on the unix socket", Duration::from_secs(10)),
        "{}",
        lp.logs()
    );
    let mut cfg = tokio_postgres::Config::new();
    cfg.host_path(&dir)
        .port(lp.port())
        .user(&ids.alice)
        .password(&ids.alice_tokens[0])
        .dbname(DB)
        .connect_timeout(Duration::from_secs(10));
    let (c, conn) = cfg.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(async move { drop(conn.await) });
    assert_eq!(whoami(&c).await.0, ids.alice);
    // Plain TCP still never gets as far as the token.
    let (code, message) = refused(&lp, &ids.bob, &ids.bob_token, false).await;
    assert_eq!(code, "28000");
    assert!(message.contains("must use TLS"), "{message}");
}

#[tokio::test]
async fn tokens_never_reach_the_logs() {
    let ids = Identities::start("pt_tokens_logs");
    let pool = Pool {
        cache_ttl: 1.0,
        ..Pool::default()
    };
    let lp = Lakepool::start(&config(&ids, &pool), &[("RUST_LOG", "trace")]);
    // Good logins, a wrong one, a plain one, a foreign one and a revoked one.
    let alice = login(&lp, &ids.alice, &ids.alice_tokens[0]).await;
    let bob = login(&lp, &ids.bob, &ids.bob_token).await;
    whoami(&alice).await;
    whoami(&bob).await;
    refused(&lp, &ids.alice, "dapi-wrong-token-in-logs-test", true).await;
    refused(&lp, &ids.alice, &ids.alice_tokens[1], false).await;
    refused(&lp, &ids.alice, &ids.bob_token, true).await;
    ids.standin.revoke(&ids.bob_token);
    let deadline = Instant::now() + Duration::from_secs(30);
    while connect(lp.port(), &ids.bob, &ids.bob_token, DB, true)
        .await
        .is_ok()
    {
        assert!(Instant::now() < deadline, "revoked token still accepted");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let logs = lp.logs();
    assert!(
        logs.contains("TRACE") || logs.contains("DEBUG"),
        "trace logging was on"
    );
    assert!(logs.contains(&ids.alice), "identities are logged");
    for t in ids.tokens() {
        assert!(!logs.contains(t), "a client token reached the logs");
    }
    assert!(!logs.contains("dapi-wrong-token-in-logs-test"));
    let minted: Vec<String> =
        serde_json::from_value(ids.standin.stats()["tokens"].clone()).unwrap_or_default();
    assert!(!minted.is_empty(), "credentials were minted");
    for t in minted {
        assert!(!logs.contains(&t), "a database credential reached the logs");
    }
}

#[tokio::test]
async fn an_unreachable_workspace_is_not_a_wrong_password() {
    let ids = Identities::start("pt_workspace_down");
    // A short retry budget, so the refusal comes quickly.
    let text = config(&ids, &Pool::default()).replace(
        "passthrough_cache_ttl",
        "retry_timeout = 1\npassthrough_cache_ttl",
    );
    let lp = Lakepool::start(&text, &[]);
    ids.standin.control("/__standin/outage", r#"{"on": true}"#);
    let (code, message) = refused(&lp, &ids.alice, &ids.alice_tokens[0], true).await;
    assert_eq!(code, "08001", "{message}");
    assert!(
        message.contains("could not check the Databricks token"),
        "{message}"
    );
    assert!(!message.contains(&ids.alice_tokens[0]));
    // The failed check was not remembered: once the workspace answers, the same token works.
    ids.standin.control("/__standin/outage", r#"{"on": false}"#);
    let c = login(&lp, &ids.alice, &ids.alice_tokens[0]).await;
    assert_eq!(whoami(&c).await.0, ids.alice);
}
