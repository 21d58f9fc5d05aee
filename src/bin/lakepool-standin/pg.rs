//! Installing minted credentials in PostgreSQL: one superuser connection (opened with the
//! lakepool library itself), used under a mutex so minting is serialised.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use lakepool::auth::scram::SaltedPasswordCache;
use lakepool::config::UpstreamTls;
use lakepool::credentials::fixed::StaticCredential;
use lakepool::upstream::Upstream;
use lakepool::upstream::connect::connect;
use lakepool::upstream::server::{ControlError, ServerConn};
use secrecy::SecretString;
use tokio::sync::Mutex;

/// SQLSTATE duplicate_object: CREATE ROLE of an existing role.
const DUPLICATE_OBJECT: &str = "42710";

/// Where the superuser connection goes.
pub struct PgTarget {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<String>,
    pub dbname: String,
    pub ca_file: Option<PathBuf>,
    pub connect_timeout: Duration,
}

/// Minting failed.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    #[error("cannot connect to PostgreSQL: {0}")]
    Connect(String),
    #[error("PostgreSQL refused: {0}")]
    Sql(String),
}

struct Conn {
    conn: Option<ServerConn>,
    /// Roles known to exist (created or seen), to skip CREATE ROLE.
    roles: HashSet<String>,
}

/// Installs credentials as role passwords.
pub struct Minter {
    up: Upstream,
    conn: Mutex<Conn>,
    minted: AtomicU64,
    next_id: AtomicU64,
    tokens: parking_lot::Mutex<Vec<String>>,
}

/// `"ident"` with embedded quotes doubled.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// `'literal'` with embedded quotes doubled (standard_conforming_strings is on by default;
/// the values used here never contain a backslash anyway).
pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The statements that make `token` the password of `role` until `valid_until`.
pub fn alter_role_sql(role: &str, token: &str, valid_until: &str) -> String {
    format!(
        "ALTER ROLE {} WITH LOGIN PASSWORD {} VALID UNTIL {}",
        quote_ident(role),
        quote_literal(token),
        quote_literal(valid_until)
    )
}

impl Minter {
    /// Prepares (does not connect yet).
    pub fn new(t: PgTarget) -> Result<Self, String> {
        let mode = if t.ca_file.is_some() {
            UpstreamTls::VerifyFull
        } else {
            UpstreamTls::Disable
        };
        let tls = lakepool::net::tls::client_tls(mode, t.ca_file.as_deref())
            .map_err(|e| format!("PostgreSQL TLS setup: {e}"))?;
        let up = Upstream {
            port: t.port,
            dbname: t.dbname,
            tls,
            credential: Arc::new(StaticCredential::new(
                &t.host,
                &t.user,
                t.password.map(SecretString::from),
            )),
            connect_timeout: t.connect_timeout,
            salted_cache: Arc::new(SaltedPasswordCache::new()),
            cleartext_without_tls: false,
        };
        Ok(Self {
            up,
            conn: Mutex::new(Conn {
                conn: None,
                roles: HashSet::new(),
            }),
            minted: AtomicU64::new(0),
            next_id: AtomicU64::new(1),
            tokens: parking_lot::Mutex::new(Vec::new()),
        })
    }

    /// The most recent tokens installed (for tests asserting they never reach a log).
    pub fn recent_tokens(&self) -> Vec<String> {
        self.tokens.lock().clone()
    }

    /// Credentials installed so far.
    pub fn minted(&self) -> u64 {
        self.minted.load(Ordering::Relaxed)
    }

    /// Opens the connection now if it is not open, to report problems early.
    pub async fn check(&self) -> Result<(), MintError> {
        let mut g = self.conn.lock().await;
        if g.conn.is_none() {
            g.conn = Some(self.open().await?);
        }
        Ok(())
    }

    /// Closes the connection (at exit).
    pub async fn close(&self) {
        if let Some(c) = self.conn.lock().await.conn.take() {
            c.terminate().await;
        }
    }

    async fn open(&self) -> Result<ServerConn, MintError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        connect(&self.up, id)
            .await
            .map_err(|e| MintError::Connect(e.to_string()))
    }

    /// Makes `token` the password of role `identity` (creating the role if needed), valid
    /// until `valid_until` (RFC 3339). A broken connection is replaced and the step retried once.
    pub async fn mint(
        &self,
        identity: &str,
        token: &str,
        valid_until: &str,
    ) -> Result<(), MintError> {
        let mut g = self.conn.lock().await;
        let mut retried = false;
        loop {
            match self.mint_on(&mut g, identity, token, valid_until).await {
                Err(Step::Broken(e)) if !retried => {
                    tracing::warn!("PostgreSQL connection broke ({e}); reconnecting");
                    g.conn = None;
                    retried = true;
                }
                Err(Step::Broken(e)) => {
                    g.conn = None;
                    return Err(MintError::Connect(e));
                }
                Err(Step::Failed(e)) => return Err(e),
                Ok(()) => {
                    self.minted.fetch_add(1, Ordering::Relaxed);
                    let mut t = self.tokens.lock();
                    if t.len() >= 1000 {
                        t.remove(0);
                    }
                    t.push(token.to_owned());
                    return Ok(());
                }
            }
        }
    }

    async fn mint_on(
        &self,
        g: &mut Conn,
        identity: &str,
        token: &str,
        valid_until: &str,
    ) -> Result<(), Step> {
        if g.conn.is_none() {
            g.conn = Some(self.open().await.map_err(Step::Failed)?);
        }
        let Some(conn) = g.conn.as_mut() else {
            return Err(Step::Broken("no connection".to_owned()));
        };
        if !g.roles.contains(identity) {
            let sql = format!("CREATE ROLE {} LOGIN", quote_ident(identity));
            match conn.run_control_query(&sql).await {
                Ok(_) => tracing::info!("created role {identity}"),
                Err(ControlError::Server(f, _)) if f.code == DUPLICATE_OBJECT => {}
                Err(ControlError::Server(f, _)) => {
                    return Err(Step::Failed(MintError::Sql(format!(
                        "{} ({})",
                        f.message, f.code
                    ))));
                }
                Err(ControlError::Broken(e)) => return Err(Step::Broken(e.to_string())),
            }
            g.roles.insert(identity.to_owned());
        }
        let Some(conn) = g.conn.as_mut() else {
            return Err(Step::Broken("no connection".to_owned()));
        };
        match conn
            .run_control_query(&alter_role_sql(identity, token, valid_until))
            .await
        {
            Ok(_) => Ok(()),
            Err(ControlError::Server(f, _)) => {
                // The role may have been dropped behind our back: forget it so the next mint
                // creates it again.
                g.roles.remove(identity);
                Err(Step::Failed(MintError::Sql(format!(
                    "{} ({})",
                    f.message, f.code
                ))))
            }
            Err(ControlError::Broken(e)) => Err(Step::Broken(e.to_string())),
        }
    }
}

enum Step {
    Broken(String),
    Failed(MintError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(
            alter_role_sql("sp\"x", "t'k", "2026-01-01T00:00:00Z"),
            "ALTER ROLE \"sp\"\"x\" WITH LOGIN PASSWORD 't''k' VALID UNTIL '2026-01-01T00:00:00Z'"
        );
    }
}
