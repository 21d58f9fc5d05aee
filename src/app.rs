//! Wiring: builds the shared state from a validated config, binds listeners, runs the
//! maintenance task and shuts down.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::scram::SaltedPasswordCache;
use crate::auth::users::UserDb;
use crate::config::{Config, ConfigError, CredentialConfig, WorkspaceConfig};
use crate::frontend::cancel::CancelRegistry;
use crate::frontend::{Frontend, Live, listener};
use crate::net::tls::{self, TlsError};
use crate::pool::registry::{Database, Registry};
use crate::upstream::Upstream;
use crate::upstream::credential::{CredentialSource, StaticCredential};
use crate::upstream::lakebase::{LakebaseCredential, LakebaseTarget};
use crate::workspace::http::ApiClient;
use crate::workspace::resolve::{WorkspaceAuth, resolve};
use crate::workspace::token::TokenSource;
use arc_swap::ArcSwap;

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
    /// The workspace needed for Lakebase credentials cannot be used.
    #[error("workspace: {0}")]
    Workspace(String),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: String,
        /// Cause.
        source: std::io::Error,
    },
}

/// What `build` produces: the client side, and the rotating credentials to start.
pub struct Built {
    /// Shared state of the client side.
    pub frontend: Frontend,
    /// Lakebase credentials whose refreshers `run` starts.
    pub rotating: Vec<Arc<LakebaseCredential>>,
    /// Where reload requests arrive.
    pub reloads: tokio::sync::mpsc::UnboundedReceiver<crate::frontend::ReloadRequest>,
}

/// Builds everything a running lakepool needs from a config, without binding sockets or
/// calling any API. Also what `lakepool check` runs, so a config that checks out also starts.
pub fn build(config: &Config, shutdown: CancellationToken) -> Result<Built, AppError> {
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
    let needs_workspace = config
        .databases
        .iter()
        .any(|d| !matches!(d.credential, CredentialConfig::Password(_)));
    let api = needs_workspace
        .then(|| workspace_client(&config.workspace))
        .transpose()?;
    let mut databases = Vec::with_capacity(config.databases.len());
    let mut rotating = Vec::new();
    for (i, db) in config.databases.iter().enumerate() {
        let context = format!("databases[{i}].tls");
        let client_tls = tls::client_tls(db.tls, db.ca_file.as_deref())
            .map_err(|source| AppError::Tls { context, source })?;
        let credential: Arc<dyn CredentialSource> = match (&db.credential, &api) {
            (CredentialConfig::Password(pw), _) => Arc::new(StaticCredential::new(pw.clone())),
            (CredentialConfig::Instance(name), Some(api)) => {
                let c = Arc::new(LakebaseCredential::new(
                    LakebaseTarget::Instance(name.clone()),
                    Arc::new(api.sibling()),
                    db.host.clone(),
                    db.user.clone(),
                    db.refresh_margin,
                ));
                rotating.push(Arc::clone(&c));
                c
            }
            (CredentialConfig::Endpoint { name, ttl }, Some(api)) => {
                let c = Arc::new(LakebaseCredential::new(
                    LakebaseTarget::Endpoint {
                        name: name.clone(),
                        ttl: *ttl,
                    },
                    Arc::new(api.sibling()),
                    db.host.clone(),
                    db.user.clone(),
                    db.refresh_margin,
                ));
                rotating.push(Arc::clone(&c));
                c
            }
            (_, None) => return Err(AppError::Workspace("no workspace client".to_owned())),
        };
        let upstream = Upstream {
            host: db.host.clone(),
            port: db.port,
            dbname: db.dbname.clone(),
            user: db.user.clone(),
            tls: client_tls,
            credential,
            connect_timeout: db.pool.server_connect_timeout,
            salted_cache: Arc::new(SaltedPasswordCache::new()),
        };
        databases.push(Database {
            name: db.name.clone(),
            upstream: Arc::new(upstream),
            settings: db.pool.clone(),
        });
    }
    let (reload, reloads) = tokio::sync::mpsc::unbounded_channel();
    let frontend = Frontend {
        server: config.server.clone(),
        reload,
        live: ArcSwap::from_pointee(Live {
            tls,
            users,
            registry: Arc::new(Registry::new(
                databases,
                config
                    .users
                    .iter()
                    .map(|u| (u.name.clone(), u.pool.clone()))
                    .collect(),
            )),
        }),
        cancels: Arc::new(CancelRegistry::default()),
        clients: AtomicUsize::new(0),
        sessions: Arc::default(),
        shutdown,
    };
    Ok(Built {
        frontend,
        rotating,
        reloads,
    })
}

/// Resolves the workspace (config, `DATABRICKS_*`, profile, .netrc) and builds its client.
fn workspace_client(ws: &WorkspaceConfig) -> Result<Arc<ApiClient>, AppError> {
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    let resolved = resolve(ws, &|k| std::env::var(k).ok(), home.as_deref())
        .map_err(|e| AppError::Workspace(e.to_string()))?;
    tracing::info!(host = %resolved.host, source = %resolved.source, "workspace resolved");
    let http =
        crate::workspace::http::http_client(ws.http_timeout, resolved.host.starts_with("https://"))
            .map_err(AppError::Workspace)?;
    let token = match resolved.auth {
        WorkspaceAuth::Pat(t) => TokenSource::Pat(t),
        WorkspaceAuth::OAuthM2m {
            client_id,
            client_secret,
        } => TokenSource::m2m(
            http.clone(),
            resolved.host.clone(),
            client_id,
            client_secret,
        ),
    };
    Ok(Arc::new(ApiClient::new(
        http,
        resolved.host,
        Arc::new(token),
        ws.retry_timeout,
    )))
}

/// Runs lakepool until `shutdown` is cancelled, then drains: listeners stop, idle clients are
/// told and closed, and clients still in a session get up to `shutdown_timeout` to finish.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), AppError> {
    let built = build(&config, shutdown.clone())?;
    let fe = Arc::new(built.frontend);
    // Credentials are fetched in the background: lakepool listens even while the first one
    // cannot be had yet, and clients are told why until it can.
    for c in &built.rotating {
        c.spawn(shutdown.clone());
    }
    for addr in &config.server.listen {
        let (listener, local) = bind(*addr).await?;
        tracing::info!(addr = %local, "listening");
        tokio::spawn(listener::run(listener, Arc::clone(&fe)));
    }
    if let Some(addr) = config.server.admin_listen {
        let (listener, local) = bind(addr).await?;
        tracing::info!(admin_addr = %local, "health endpoints: /healthz, /readyz");
        tokio::spawn(crate::admin::serve(listener, Arc::clone(&fe)));
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
    for pool in fe.live().registry.pools() {
        pool.close();
    }
    // Give the Terminate messages to idle servers a moment to go out.
    tokio::time::sleep(Duration::from_millis(100)).await;
    Ok(())
}

/// Binds a listener and reports the address it got (port 0 picks a free one).
async fn bind(addr: std::net::SocketAddr) -> Result<(TcpListener, std::net::SocketAddr), AppError> {
    let err = |source| AppError::Bind {
        addr: addr.to_string(),
        source,
    };
    let listener = TcpListener::bind(addr).await.map_err(err)?;
    let local = listener.local_addr().map_err(err)?;
    Ok((listener, local))
}

async fn maintain(fe: Arc<Frontend>) {
    let mut tick = tokio::time::interval(MAINTENANCE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for pool in fe.live().registry.pools() {
            pool.sweep();
            pool.fill_to_min();
            pool.relieve();
        }
    }
}
