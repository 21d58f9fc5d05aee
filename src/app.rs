//! Wiring: builds the shared state from a validated config, binds listeners, runs the
//! maintenance task and shuts down.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::scram::SaltedPasswordCache;
use crate::auth::users::UserDb;
use crate::config::{Config, ConfigError};
use crate::frontend::cancel::CancelRegistry;
use crate::frontend::{Frontend, listener};
use crate::net::tls::{self, TlsError};
use crate::pool::registry::{Database, Registry};
use crate::upstream::Upstream;
use crate::upstream::credential::StaticCredential;

/// How often idle server connections are checked for timeouts and health.
const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(1);

/// Startup failed.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Invalid configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// TLS files unusable.
    #[error("{context}: {source}")]
    Tls {
        /// Which setting.
        context: String,
        /// Cause.
        source: TlsError,
    },
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: String,
        /// Cause.
        source: std::io::Error,
    },
}

/// Builds everything a running lakepool needs from a config, without binding sockets. Also
/// what `lakepool check` runs, so a config that checks out also starts.
pub fn build(config: &Config, shutdown: CancellationToken) -> Result<Frontend, AppError> {
    let tls = config
        .server
        .tls
        .as_ref()
        .map(tls::server_tls)
        .transpose()
        .map_err(|source| AppError::Tls {
            context: "server.tls_cert_file/tls_key_file".to_owned(),
            source,
        })?;
    let users = UserDb::build(&config.users)?;
    let mut databases = Vec::with_capacity(config.databases.len());
    for (i, db) in config.databases.iter().enumerate() {
        let context = format!("databases[{i}].tls");
        let client_tls =
            tls::client_tls(db.tls, db.ca_file.as_deref()).map_err(|source| AppError::Tls {
                context: context.clone(),
                source,
            })?;
        let server_name =
            tls::server_name(&db.host).map_err(|source| AppError::Tls { context, source })?;
        let upstream = Upstream {
            host: db.host.clone(),
            port: db.port,
            dbname: db.dbname.clone(),
            user: db.user.clone(),
            tls: client_tls,
            server_name,
            credential: Arc::new(StaticCredential::new(db.password.clone())),
            connect_timeout: db.pool.server_connect_timeout,
            salted_cache: Arc::new(SaltedPasswordCache::new()),
        };
        databases.push(Database {
            name: db.name.clone(),
            upstream: Arc::new(upstream),
            settings: db.pool.clone(),
        });
    }
    Ok(Frontend {
        server: config.server.clone(),
        tls,
        users,
        registry: Registry::new(databases),
        cancels: Arc::new(CancelRegistry::default()),
        clients: AtomicUsize::new(0),
        shutdown,
    })
}

/// Runs lakepool until `shutdown` is cancelled, then drains: listeners stop, idle clients are
/// told and closed, and clients still in a session get up to `shutdown_timeout` to finish.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), AppError> {
    let fe = Arc::new(build(&config, shutdown.clone())?);
    let mut tasks = Vec::new();
    for addr in &config.server.listen {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| AppError::Bind {
                addr: addr.to_string(),
                source,
            })?;
        let local = listener.local_addr().map_err(|source| AppError::Bind {
            addr: addr.to_string(),
            source,
        })?;
        tracing::info!(addr = %local, "listening");
        tasks.push(tokio::spawn(listener::run(listener, Arc::clone(&fe))));
    }
    let maintenance = tokio::spawn(maintain(Arc::clone(&fe)));
    shutdown.cancelled().await;
    tracing::info!("shutting down: no new connections");
    let deadline = tokio::time::Instant::now() + config.server.shutdown_timeout;
    while fe.clients.load(Ordering::Relaxed) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let left = fe.clients.load(Ordering::Relaxed);
    if left > 0 {
        tracing::warn!(
            clients = left,
            "shutdown_timeout reached with clients still connected"
        );
    }
    maintenance.abort();
    for pool in fe.registry.pools() {
        pool.close();
    }
    // Give the Terminate messages to idle servers a moment to go out.
    tokio::time::sleep(Duration::from_millis(100)).await;
    Ok(())
}

async fn maintain(fe: Arc<Frontend>) {
    let mut tick = tokio::time::interval(MAINTENANCE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for pool in fe.registry.pools() {
            pool.sweep();
        }
    }
}
