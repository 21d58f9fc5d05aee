//! Tests of the per-identity pass-through keys: `passthrough` on a database and the token
//! cache settings in `[workspace]`.

use std::path::Path;
use std::time::Duration;

use crate::config::{Config, load_str};

/// Client TLS and one pass-through Lakebase database, no `[[users]]`.
const TLS_SERVER: &str = r#"
[server]
listen = "127.0.0.1:0"
tls_cert_file = "server.crt"
tls_key_file = "server.key"

[workspace]
host = "https://ws.example"
"#;

fn load(text: &str) -> Result<Config, String> {
    load_str(text, Path::new(".")).map_err(|e| e.to_string())
}

#[test]
fn passthrough_needs_no_users_and_has_cache_defaults() {
    let c = load(&format!(
        "{TLS_SERVER}[[databases]]\nname = \"app\"\ninstance = \"i\"\npassthrough = true\n"
    ))
    .unwrap();
    assert!(c.users.is_empty());
    assert!(c.databases[0].passthrough);
    assert_eq!(c.workspace.passthrough_cache_ttl, Duration::from_secs(60));
    assert_eq!(c.workspace.passthrough_cache_size, 10_000);
    let c = load(&format!(
        "{TLS_SERVER}passthrough_cache_ttl = 5\npassthrough_cache_size = 3\n\
         [[databases]]\nname = \"app\"\nendpoint = \"projects/p/branches/b/endpoints/e\"\n\
         passthrough = true\n"
    ))
    .unwrap();
    assert_eq!(c.workspace.passthrough_cache_ttl, Duration::from_secs(5));
    assert_eq!(c.workspace.passthrough_cache_size, 3);
}

#[test]
fn passthrough_is_refused_where_it_cannot_work() {
    let db = "[[databases]]\nname = \"app\"\ninstance = \"i\"\npassthrough = true\n";
    // Without client TLS no token could ever be received.
    let plain = "[server]\nlisten = \"127.0.0.1:0\"\n[workspace]\nhost = \"https://ws\"\n";
    let e = load(&format!("{plain}{db}")).unwrap_err();
    assert!(
        e.contains("databases[0].passthrough") && e.contains("TLS"),
        "{e}"
    );
    let disabled = TLS_SERVER.replace(
        "tls_key_file = \"server.key\"",
        "tls_key_file = \"server.key\"\nclient_tls = \"disable\"",
    );
    assert!(load(&format!("{disabled}{db}")).is_err());
    // Its Unix socket is enough: tokens arrive there without crossing a network.
    let socket = plain.replace(
        "listen = ",
        "unix_socket_dir = \"/run/lakepool\"\nlisten = ",
    );
    assert!(load(&format!("{socket}{db}")).is_ok());
    // A native database has no token to mint with.
    let e = load(&format!(
        "{TLS_SERVER}[[databases]]\nname = \"app\"\nhost = \"h\"\nuser = \"u\"\npassthrough = true\n"
    ))
    .unwrap_err();
    assert!(e.contains("databases[0].passthrough"), "{e}");
    // The role and the client authentication are each client's own.
    let e = load(&format!("{TLS_SERVER}{db}user = \"owner\"\n")).unwrap_err();
    assert!(e.contains("databases[0].user"), "{e}");
    let e = load(&format!("{TLS_SERVER}{db}auth = \"md5\"\n")).unwrap_err();
    assert!(e.contains("databases[0].auth"), "{e}");
    let e = load(&format!("{TLS_SERVER}passthrough_cache_size = 0\n{db}")).unwrap_err();
    assert!(e.contains("workspace.passthrough_cache_size"), "{e}");
    let e = load(&format!("{TLS_SERVER}passthrough_cache_ttl = 0\n{db}")).unwrap_err();
    assert!(e.contains("workspace.passthrough_cache_ttl"), "{e}");
}

#[test]
fn users_are_still_needed_without_a_passthrough_database() {
    let e = load(&format!(
        "{TLS_SERVER}[[databases]]\nname = \"app\"\ninstance = \"i\"\n"
    ))
    .unwrap_err();
    assert!(e.contains("users"), "{e}");
}
