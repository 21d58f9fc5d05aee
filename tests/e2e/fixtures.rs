//! Configurations the lakepool tests share: one place that knows the test users and the
//! `[[databases]]` block pointing at the shared cluster.

use crate::support::lakepool::database_toml;
use crate::support::{APP_DB, APP_OWNER, Lakepool, pg};

/// Environment variable carrying the upstream password (never in the config file).
pub const OWNER_PW_ENV: &str = "LAKEPOOL_TEST_APP_OWNER_PW";

/// Client logins every test config has: (name, password).
pub const APP: (&str, &str) = ("app", "app_client_pw");
/// Login used for md5 (on [`MD5_DB`]; its plaintext password works with SCRAM elsewhere).
pub const MD5_USER: (&str, &str) = ("md5user", "md5_client_pw");
/// Login used for cleartext (on [`CLEAR_DB`], TLS only).
pub const CLEAR_USER: (&str, &str) = ("clearuser", "clear_client_pw");
/// Databases of [`config_with_methods`]: `app` with md5 and with cleartext authentication
/// (the method is a property of the database, whatever the user).
pub const MD5_DB: &str = "app_md5";
pub const CLEAR_DB: &str = "app_clear";
/// SCRAM login stored as a verifier rather than plaintext.
pub const VERIFIER_USER: (&str, &str) = ("verifieruser", "verifier_client_pw");

/// Options for [`config`].
pub struct Opts<'a> {
    /// `session` or `transaction`.
    pub mode: &'a str,
    /// Pool size.
    pub size: usize,
    /// `query_wait_timeout` in seconds.
    pub wait: f64,
    /// Extra lines for `[pool]`.
    pub pool_extra: &'a str,
    /// Extra lines for `[server]`.
    pub server_extra: &'a str,
    /// Upstream TLS mode.
    pub upstream_tls: &'a str,
}

impl Default for Opts<'_> {
    fn default() -> Self {
        Self {
            mode: "transaction",
            size: 4,
            wait: 10.0,
            pool_extra: "",
            server_extra: "",
            upstream_tls: "verify-full",
        }
    }
}

/// A full lakepool config: client TLS offered with the test certificate, the four test users,
/// and database `app` → the cluster's `appdb` as `app_owner`.
pub fn config(o: &Opts<'_>) -> String {
    let pg = pg();
    let verifier = lakepool::auth::scram::ScramVerifier::from_password(VERIFIER_USER.1, 4096);
    format!(
        "[server]\n\
         listen = \"127.0.0.1:0\"\n\
         tls_cert_file = \"{cert}\"\n\
         tls_key_file = \"{key}\"\n\
         client_tls = \"prefer\"\n\
         handshake_timeout = 5\n\
         {server_extra}\n\
         [pool]\n\
         pool_mode = \"{mode}\"\n\
         pool_size = {size}\n\
         query_wait_timeout = {wait}\n\
         {pool_extra}\n\
         [[users]]\nname = \"{app}\"\npassword = \"{app_pw}\"\n\
         [[users]]\nname = \"{md5}\"\npassword = \"{md5_pw}\"\n\
         [[users]]\nname = \"{clear}\"\npassword = \"{clear_pw}\"\n\
         [[users]]\nname = \"{ver}\"\npassword = \"{verifier}\"\n\
         {db}",
        cert = pg.server_cert.cert_file.display(),
        key = pg.server_cert.key_file.display(),
        server_extra = o.server_extra,
        mode = o.mode,
        size = o.size,
        wait = o.wait,
        pool_extra = o.pool_extra,
        app = APP.0,
        app_pw = APP.1,
        md5 = MD5_USER.0,
        md5_pw = MD5_USER.1,
        clear = CLEAR_USER.0,
        clear_pw = CLEAR_USER.1,
        ver = VERIFIER_USER.0,
        db = database_toml("app", APP_DB, APP_OWNER.0, OWNER_PW_ENV, o.upstream_tls),
    )
}

/// [`config`] plus databases [`MD5_DB`] and [`CLEAR_DB`] (same upstream as `app`).
pub fn config_with_methods(o: &Opts<'_>) -> String {
    let db = |name: &str, auth: &str| {
        let block = database_toml(name, APP_DB, APP_OWNER.0, OWNER_PW_ENV, o.upstream_tls);
        format!("\n{block}auth = \"{auth}\"\n")
    };
    format!(
        "{}{}{}",
        config(o),
        db(MD5_DB, "md5"),
        db(CLEAR_DB, "cleartext")
    )
}

/// Starts lakepool with [`config`].
pub fn start(o: &Opts<'_>) -> Lakepool {
    Lakepool::start(&config(o), &[(OWNER_PW_ENV, APP_OWNER.1)])
}
