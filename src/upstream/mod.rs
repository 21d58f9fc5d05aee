//! Server connections: where the upstream is, how to log in to it, and the connection itself.

pub mod connect;
pub(crate) mod params;
pub(crate) mod passthrough;
pub(crate) mod prepared;
pub(crate) mod reported;
pub mod server;

use std::sync::Arc;
use std::time::Duration;

use crate::auth::scram::SaltedPasswordCache;
use crate::credentials::source::CredentialSource;

/// Everything needed to open a server connection for one configured database. Host, role
/// and password come from the credential source (configured, or looked up with the
/// credential: see `credentials::source::Pinned`).
#[derive(Debug)]
pub struct Upstream {
    /// Port.
    pub port: u16,
    /// Database to log in to.
    pub dbname: String,
    /// TLS client configuration; None for `tls = "disable"`.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Host, role and password.
    pub credential: Arc<dyn CredentialSource>,
    /// Limit on TCP connect + TLS + login.
    pub connect_timeout: Duration,
    /// SCRAM salted-password cache shared by all connections to this upstream.
    pub salted_cache: Arc<SaltedPasswordCache>,
    /// May send the password (or token) in cleartext when the server asks for it over a
    /// connection without TLS (`send_cleartext_password_without_tls`); refused otherwise.
    pub cleartext_without_tls: bool,
}

#[cfg(test)]
impl Upstream {
    /// An upstream on 127.0.0.1:1 with a fixed password, for tests that never contact it.
    pub(crate) fn never_contacted() -> Arc<Self> {
        Arc::new(Self {
            port: 1,
            dbname: "app".to_owned(),
            tls: None,
            credential: Arc::new(crate::credentials::fixed::StaticCredential::new(
                "127.0.0.1",
                "app",
                Some(secrecy::SecretString::from("pw")),
            )),
            connect_timeout: Duration::from_secs(15),
            salted_cache: Arc::default(),
            cleartext_without_tls: false,
        })
    }
}
