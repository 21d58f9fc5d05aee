//! Server connections: where the upstream is, how to log in to it, and the connection itself.

pub mod connect;
pub mod credential;
pub mod params;
pub mod server;

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;

use crate::auth::scram::SaltedPasswordCache;
use credential::CredentialSource;

/// Everything needed to open a server connection for one configured database.
#[derive(Debug)]
pub struct Upstream {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Database to log in to.
    pub dbname: String,
    /// Role to log in as.
    pub user: String,
    /// TLS client configuration; None for `tls = "disable"`.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Name checked against the server certificate (verify-full) and sent as SNI.
    pub server_name: ServerName<'static>,
    /// Password source.
    pub credential: Arc<dyn CredentialSource>,
    /// Limit on TCP connect + TLS + login.
    pub connect_timeout: Duration,
    /// SCRAM salted-password cache shared by all connections to this upstream.
    pub salted_cache: Arc<SaltedPasswordCache>,
}
