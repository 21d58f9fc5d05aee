//! Server connections: where the upstream is, how to log in to it, and the connection itself.

pub mod connect;
pub mod credential;
pub mod lakebase;
pub mod params;
pub mod prepared;
pub mod server;

use std::sync::Arc;
use std::time::Duration;

use crate::auth::scram::SaltedPasswordCache;
use credential::{Credential, CredentialSource};

/// Everything needed to open a server connection for one configured database.
#[derive(Debug)]
pub struct Upstream {
    /// Host name or address; None when the credential source looks it up (Lakebase).
    pub host: Option<String>,
    /// Port.
    pub port: u16,
    /// Database to log in to.
    pub dbname: String,
    /// Role to log in as; None when the credential source looks it up (workspace identity).
    pub user: Option<String>,
    /// TLS client configuration; None for `tls = "disable"`.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Password source.
    pub credential: Arc<dyn CredentialSource>,
    /// Limit on TCP connect + TLS + login.
    pub connect_timeout: Duration,
    /// SCRAM salted-password cache shared by all connections to this upstream.
    pub salted_cache: Arc<SaltedPasswordCache>,
    /// May send the password (or token) in cleartext when the server asks for it over a
    /// connection without TLS (`send_cleartext_password_without_tls`); refused otherwise.
    pub cleartext_without_tls: bool,
}

impl Upstream {
    /// Host and role to log in with: configured values win, else what the credential carries.
    pub fn endpoint<'a>(
        &'a self,
        cred: Option<&'a Credential>,
    ) -> Result<(&'a str, &'a str), connect::UpstreamError> {
        let host = self
            .host
            .as_deref()
            .or_else(|| cred.and_then(|c| c.host.as_deref()))
            .ok_or(connect::UpstreamError::NoHost)?;
        let user = self
            .user
            .as_deref()
            .or_else(|| cred.and_then(|c| c.user.as_deref()))
            .ok_or(connect::UpstreamError::NoUser)?;
        Ok((host, user))
    }
}
