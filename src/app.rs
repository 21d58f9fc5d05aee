//! The entry layer: builds the shared state from a validated config, binds listeners, runs the
//! maintenance task and shuts down. `accept` takes client connections and hands each, once
//! logged in, to a pooled session (`frontend`) or the admin console (`admin`); `reload`
//! re-reads the configuration. (Just over 600 lines: building the live state from a config is
//! one sequence, kept in one place so reload and startup cannot drift apart.)

mod accept;
mod reload;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::scram::SaltedPasswordCache;
use crate::auth::users::UserDb;
use crate::config::{Config, ConfigError, CredentialConfig, DatabaseConfig, WorkspaceConfig};
use crate::credentials::fixed::StaticCredential;
use crate::credentials::lakebase::LakebaseCredential;
use crate::credentials::lakebase::api::LakebaseTarget;
use crate::credentials::passthrough::ClientWorkspace;
use crate::credentials::passthrough::check::{TokenCheck, WhoAmI};
use crate::credentials::passthrough::identity::PerClient;
use crate::credentials::source::{CredentialSource, Pinned};
use crate::net::tls::{self, TlsError};
use crate::pool::registry::{Database, Registry};
use crate::shared::cancel::CancelRegistry;
use crate::shared::{Live, Shared};
use crate::upstream::Upstream;
use crate::upstream::passthrough::{Passthrough, Template};
use crate::workspace::auth::TokenSource;
use crate::workspace::http::ApiClient;
use crate::workspace::resolve::resolve;
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

/// What `build` produces: the shared state, and the rotating credentials to start.
pub struct Built {
    /// The app-wide state every client connection gets.
    pub(crate) shared: Shared,
    /// Lakebase credentials whose refreshers `run` starts.
    pub(crate) rotating: Vec<Arc<LakebaseCredential>>,
    /// Where reload requests arrive.
    pub(crate) reloads: tokio::sync::mpsc::UnboundedReceiver<crate::shared::ReloadRequest>,
}

/// Builds everything a running lakepool needs from a config, without binding sockets or
/// calling any API. Also what `lakepool check` runs, so a config that checks out also starts.
pub fn build(config: &Config, shutdown: CancellationToken) -> Result<Built, AppError> {
    let (live, rotating) = build_live(config, None)?;
    let (reload, reloads) = tokio::sync::mpsc::unbounded_channel();
    let shared = Shared {
        server: config.server.clone(),
        reload,
        live: ArcSwap::from_pointee(live),
        cancels: Arc::new(CancelRegistry::default()),
        clients: AtomicUsize::new(0),
        sessions: Arc::default(),
        shutdown,
        ends: Default::default(),
    };
    Ok(Built {
        shared,
        rotating,
        reloads,
    })
}

/// Builds TLS, users and databases. With `old` (a reload), a database whose upstream settings
/// are unchanged keeps its upstream, so its credential is not minted again and its pools keep
/// their connections. Returns the new Lakebase credentials, whose refreshers the caller starts.
// Long on purpose (about 95 lines): one loop over the databases that decides, per database,
// keep the upstream (reload, unchanged) or build it (TLS, credential source) — one decision.
fn build_live(
    config: &Config,
    old: Option<&Live>,
) -> Result<(Live, Vec<Arc<LakebaseCredential>>), AppError> {
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
    let users = UserDb::build(config).map_err(|e| config.locate(e))?;
    // Pass-through databases mint with each client's token: lakepool's own identity is
    // needed only for the other Lakebase databases.
    let needs_workspace = config
        .databases
        .iter()
        .any(|d| !matches!(d.credential, CredentialConfig::Password(_)) && !d.passthrough);
    let mut api = None;
    let mut clients_workspace = None;
    let mut databases = Vec::with_capacity(config.databases.len());
    let mut rotating = Vec::new();
    for (i, db) in config.databases.iter().enumerate() {
        let fingerprint = fingerprint(db, &config.workspace);
        let same = old
            .and_then(|o| o.registry.database(&db.name))
            .filter(|d| d.fingerprint == fingerprint);
        if let Some(d) = same {
            databases.push(Database {
                name: db.name.clone(),
                upstream: Arc::clone(&d.upstream),
                settings: db.pool.clone(),
                fingerprint,
                passthrough: d.passthrough.clone(),
            });
            continue;
        }
        if needs_workspace && api.is_none() {
            api = Some(workspace_client(&config.workspace)?);
        }
        let context = format!("databases[{i}].tls");
        let client_tls = tls::client_tls(db.tls, db.ca_file.as_deref())
            .map_err(|source| AppError::Tls { context, source })?;
        let mut passthrough = None;
        let credential: Arc<dyn CredentialSource> = match (&db.credential, &api) {
            (_, _) if db.passthrough => {
                let shared = match &clients_workspace {
                    Some(c) => Clone::clone(c),
                    None => {
                        let c = client_workspace(&config.workspace, api.as_deref())?;
                        clients_workspace = Some(Clone::clone(&c));
                        c
                    }
                };
                let p = passthrough_database(db, client_tls.clone(), shared)?;
                let placeholder = PerClient::new(p.target().clone(), db.host.as_deref());
                passthrough = Some(p);
                Arc::new(placeholder)
            }
            (CredentialConfig::Password(pw), _) => Arc::new(StaticCredential::new(
                db.host.as_deref().unwrap_or_default(),
                db.user.as_deref().unwrap_or_default(),
                pw.clone(),
            )),
            (CredentialConfig::Instance(name), Some(api)) => {
                let target = LakebaseTarget::Instance(name.clone());
                lakebase(db, target, api, &mut rotating)
            }
            (CredentialConfig::Endpoint { name, ttl }, Some(api)) => {
                let target = LakebaseTarget::Endpoint {
                    name: name.clone(),
                    ttl: *ttl,
                };
                lakebase(db, target, api, &mut rotating)
            }
            (_, None) => return Err(AppError::Workspace("no workspace client".to_owned())),
        };
        let upstream = Upstream {
            port: db.port,
            dbname: db.dbname.clone(),
            tls: client_tls,
            credential,
            connect_timeout: db.pool.server_connect_timeout,
            salted_cache: Arc::new(SaltedPasswordCache::new()),
            cleartext_without_tls: db.send_cleartext_password_without_tls,
        };
        databases.push(Database {
            name: db.name.clone(),
            upstream: Arc::new(upstream),
            settings: db.pool.clone(),
            fingerprint,
            passthrough,
        });
    }
    let user_settings = config
        .users
        .iter()
        .map(|u| (u.name.clone(), u.pool.clone()))
        .collect();
    let registry = match old {
        Some(o) => Registry::reloaded(&o.registry, databases, user_settings),
        None => Registry::new(databases, user_settings),
    };
    Ok((
        Live {
            tls,
            users,
            registry: Arc::new(registry),
            pool_defaults: config.pool.clone(),
        },
        rotating,
    ))
}

/// A rotating Lakebase credential for `db`, added to `rotating` so its refresher gets started.
fn lakebase(
    db: &DatabaseConfig,
    target: LakebaseTarget,
    api: &ApiClient,
    rotating: &mut Vec<Arc<LakebaseCredential>>,
) -> Arc<dyn CredentialSource> {
    let c = Arc::new(LakebaseCredential::new(
        target,
        Arc::new(api.sibling()),
        Pinned::new(db.host.as_deref(), db.user.as_deref()),
        db.refresh_margin,
    ));
    rotating.push(Arc::clone(&c));
    c
}

/// The workspace URL and HTTP client pass-through databases call with their clients'
/// tokens, and the token check they share.
type ClientsWorkspace = (Arc<ClientWorkspace>, Arc<TokenCheck>);

/// The workspace for pass-through databases: lakepool's own workspace client's URL when there
/// is one, else the URL alone (no credentials of lakepool's own are needed: every call
/// carries a client's token).
fn client_workspace(
    ws: &WorkspaceConfig,
    api: Option<&ApiClient>,
) -> Result<ClientsWorkspace, AppError> {
    let workspace =
        ClientWorkspace::for_config(ws, api.map(ApiClient::host)).map_err(AppError::Workspace)?;
    let workspace = Arc::new(workspace);
    let check = TokenCheck::new(
        Arc::clone(&workspace) as Arc<dyn WhoAmI>,
        ws.passthrough_cache_ttl,
        ws.passthrough_cache_size,
    );
    Ok((workspace, Arc::new(check)))
}

/// The identities of pass-through database `db`, each reaching its instance or endpoint with
/// a credential minted with the client's own token.
fn passthrough_database(
    db: &DatabaseConfig,
    tls: Option<Arc<rustls::ClientConfig>>,
    (workspace, check): ClientsWorkspace,
) -> Result<Arc<Passthrough>, AppError> {
    let target = match &db.credential {
        CredentialConfig::Instance(name) => LakebaseTarget::Instance(name.clone()),
        CredentialConfig::Endpoint { name, ttl } => LakebaseTarget::Endpoint {
            name: name.clone(),
            ttl: *ttl,
        },
        // Refused when the config was loaded.
        CredentialConfig::Password(_) => {
            return Err(AppError::Workspace(format!(
                "database {}: passthrough needs an instance or endpoint",
                db.name
            )));
        }
    };
    let template = Template {
        target,
        host: db.host.clone(),
        margin: db.refresh_margin,
        port: db.port,
        dbname: db.dbname.clone(),
        tls,
        connect_timeout: db.pool.server_connect_timeout,
        cleartext_without_tls: db.send_cleartext_password_without_tls,
    };
    Ok(Arc::new(Passthrough::new(template, workspace, check)))
}

/// Digest of a database's upstream settings, including the secrets and workspace settings its
/// credential depends on (hashed, never kept in clear) and the CA file's contents.
fn fingerprint(db: &DatabaseConfig, ws: &WorkspaceConfig) -> [u8; 32] {
    use secrecy::ExposeSecret;
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    let mut put = |label: &str, v: &[u8]| {
        h.update(label.as_bytes());
        h.update((v.len() as u64).to_be_bytes());
        h.update(v);
    };
    put("host", format!("{:?}", db.host).as_bytes());
    put("port", &db.port.to_be_bytes());
    put("dbname", db.dbname.as_bytes());
    put("user", format!("{:?}", db.user).as_bytes());
    put("tls", format!("{:?}", db.tls).as_bytes());
    put("ca", format!("{:?}", db.ca_file).as_bytes());
    if let Some(ca) = &db.ca_file {
        put("ca_contents", &std::fs::read(ca).unwrap_or_default());
    }
    put("margin", format!("{:?}", db.refresh_margin).as_bytes());
    put(
        "cleartext_without_tls",
        &[u8::from(db.send_cleartext_password_without_tls)],
    );
    if db.passthrough {
        put(
            "passthrough",
            format!(
                "{:?}|{}",
                ws.passthrough_cache_ttl, ws.passthrough_cache_size
            )
            .as_bytes(),
        );
    }
    put(
        "connect_timeout",
        format!("{:?}", db.pool.server_connect_timeout).as_bytes(),
    );
    let secret = |s: &Option<secrecy::SecretString>| {
        s.as_ref()
            .map(|s| s.expose_secret().to_owned())
            .unwrap_or_default()
    };
    match &db.credential {
        CredentialConfig::Password(pw) => put("password", secret(pw).as_bytes()),
        other => {
            put("credential", format!("{other:?}").as_bytes());
            put(
                "workspace",
                format!(
                    "{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
                    ws.host,
                    ws.profile,
                    ws.config_file,
                    ws.auth_type,
                    ws.client_id,
                    ws.http_timeout,
                    ws.retry_timeout
                )
                .as_bytes(),
            );
            put("token", secret(&ws.token).as_bytes());
            put("client_secret", secret(&ws.client_secret).as_bytes());
            // The other auth attributes (Debug redacts the Azure secret, hashed next).
            put("sdk", format!("{:?}", ws.sdk).as_bytes());
            put(
                "azure_client_secret",
                secret(&ws.sdk.azure_client_secret).as_bytes(),
            );
        }
    }
    h.finalize().into()
}

/// Resolves the workspace (config, `DATABRICKS_*`, profile, .netrc) and builds its client.
fn workspace_client(ws: &WorkspaceConfig) -> Result<Arc<ApiClient>, AppError> {
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    let resolved = resolve(ws, &|k| std::env::var(k).ok(), home.as_deref())
        .map_err(|e| AppError::Workspace(e.to_string()))?;
    tracing::info!(host = %resolved.host, source = %resolved.source, "workspace resolved");
    let http = crate::workspace::transport::http_client(
        ws.http_timeout,
        resolved.host.starts_with("https://"),
    )
    .map_err(AppError::Workspace)?;
    let token = TokenSource::new(resolved.auth, http.clone(), resolved.host.clone());
    Ok(Arc::new(ApiClient::new(
        http,
        resolved.host,
        Arc::new(token),
        ws.retry_timeout,
    )))
}

/// Open files lakepool may hold besides client and server connections: listeners, the runtime,
/// cancel requests and workspace API calls in flight, certificate and secret file reads.
const OPEN_FILES_MARGIN: u64 = 64;

/// Most open files the configuration can use: every client, every server connection the pools
/// may open (pool and reserve sizes for each database and user, capped by
/// `max_db_connections`), and a margin.
pub(crate) fn open_files_needed(config: &Config) -> u64 {
    let servers: usize = config
        .databases
        .iter()
        .map(|db| {
            let all: usize = config
                .users
                .iter()
                .map(|u| u.pool.apply(&db.pool))
                .map(|p| p.size + p.reserve_pool_size)
                .sum();
            match db.pool.max_db_connections {
                0 => all,
                cap => all.min(cap),
            }
        })
        .sum();
    (config.server.max_client_conn + servers) as u64 + OPEN_FILES_MARGIN
}

/// Raises the open-files soft limit to the hard one (capped by the kernel's `nr_open`) and
/// warns when it is still below what the configuration can use: past it, accepts and server
/// connections fail with EMFILE.
fn raise_open_files_limit(config: &Config) {
    use rlimit::Resource;
    let needed = open_files_needed(config);
    let Ok((soft, hard)) = Resource::NOFILE.get() else {
        return;
    };
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(1 << 20);
    let target = hard.min(nr_open);
    let soft = if soft < target {
        match Resource::NOFILE.set(target, hard) {
            Ok(()) => target,
            Err(e) => {
                tracing::warn!(error = %e, soft, hard, "cannot raise the open files limit");
                soft
            }
        }
    } else {
        soft
    };
    if soft < needed {
        tracing::warn!(
            limit = soft,
            hard_limit = hard,
            needed,
            "the open files limit is below max_client_conn plus the pools' server connections \
             plus a margin of {OPEN_FILES_MARGIN}: past it, clients and server connections fail \
             (raise it with ulimit -n, LimitNOFILE= in systemd, or lower max_client_conn)"
        );
    } else {
        tracing::debug!(limit = soft, needed, "open files limit");
    }
}

/// Runs lakepool until `shutdown` is cancelled, then drains: listeners stop, idle clients are
/// told and closed, and clients still in a session get up to `shutdown_timeout` to finish.
pub async fn run(
    config: Config,
    path: Option<std::path::PathBuf>,
    shutdown: CancellationToken,
) -> Result<(), AppError> {
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    raise_open_files_limit(&config);
    let built = build(&config, shutdown.clone())?;
    let fe = Arc::new(built.shared);
    let path_shown = path.as_ref().map(|p| p.display().to_string());
    // Credentials are fetched in the background: lakepool listens even while the first one
    // cannot be had yet, and clients are told why until it can.
    let refreshers = reload::start_refreshers(built.rotating, &shutdown);
    tokio::spawn(reload::reloads(
        Arc::clone(&fe),
        path,
        built.reloads,
        refreshers,
        shutdown.clone(),
    ));
    tokio::spawn(reload::sighup(Arc::clone(&fe)));
    let mut listening = Vec::new();
    let mut first_port = None;
    for addr in &config.server.listen {
        let err = |source| AppError::Bind {
            addr: addr.to_string(),
            source,
        };
        let (listener, tuned) =
            crate::net::listen::bind(*addr, config.server.tcp_defer_accept).map_err(err)?;
        let local = listener.local_addr().map_err(err)?;
        tracing::info!(addr = %local, workers = config.server.workers, "listening");
        listening.push(local.to_string());
        first_port.get_or_insert(local.port());
        tokio::spawn(accept::run(listener, tuned, Arc::clone(&fe)));
    }
    if let (Some(dir), Some(port)) = (&config.server.unix_socket_dir, first_port) {
        // libpq finds the socket by the port: the first TCP listener's, as PgBouncer's.
        let socket = crate::net::unix::bind(dir, port, config.server.unix_socket_mode).map_err(
            |source| AppError::Bind {
                addr: crate::net::unix::socket_path(dir, port)
                    .display()
                    .to_string(),
                source,
            },
        )?;
        tracing::info!(path = %socket.path.display(), "listening on the unix socket");
        listening.push(socket.path.display().to_string());
        tokio::spawn(accept::run_local(socket, Arc::clone(&fe)));
    }
    let mut admin = "off".to_owned();
    if let Some(addr) = config.server.admin_listen {
        let (listener, local) = bind(addr).await?;
        if let Some(w) = crate::admin::exposure_warning(local, config.server.admin_token.is_some())
        {
            tracing::warn!("{w}");
        }
        tracing::info!(admin_addr = %local, "health endpoints: /healthz, /readyz");
        admin = local.to_string();
        tokio::spawn(crate::admin::serve(listener, Arc::clone(&fe)));
    }
    log_startup(&fe, path_shown.as_deref(), &listening, &admin);
    let maintenance = tokio::spawn(maintain(Arc::clone(&fe)));
    shutdown.cancelled().await;
    // Sessions wait on their own client entry, not on the token: wake them.
    fe.sessions.drain();
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

/// The startup line: what runs (version and commit), from which file, where it listens, and
/// the databases and pools (as SHOW POOLS lists them) it serves.
fn log_startup(fe: &Shared, config: Option<&str>, listening: &[String], admin: &str) {
    let live = fe.live();
    let mut databases: Vec<String> = live
        .registry
        .databases()
        .map(|d| format!("{} ({})", d.name, d.upstream.credential.describe()))
        .collect();
    databases.sort();
    drop(live);
    let pools: Vec<String> = crate::admin::snapshot::pools(fe)
        .iter()
        .map(|p| {
            let mode = match p.mode {
                crate::config::PoolMode::Session => "session",
                crate::config::PoolMode::Transaction => "transaction",
            };
            format!("{}/{} ({mode}, pool_size {})", p.database, p.user, p.size)
        })
        .collect();
    tracing::info!(
        version = %crate::VERSION,
        config = %config.unwrap_or("-"),
        listen = %listening.join(", "),
        admin_listen = %admin,
        databases = %databases.join(", "),
        pools = %pools.join(", "),
        "lakepool started"
    );
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

async fn maintain(fe: Arc<Shared>) {
    let mut tick = tokio::time::interval(MAINTENANCE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        fe.live().registry.sweep_passthrough();
        for pool in fe.live().registry.pools() {
            pool.sweep();
            pool.fill_to_min();
            pool.relieve();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_files_needed_counts_clients_pools_and_a_margin() {
        let text = |db_extra: &str| {
            format!(
                "[server]\nlisten = \"127.0.0.1:0\"\nmax_client_conn = 100\n\
                 [pool]\npool_size = 10\nreserve_pool_size = 2\n\
                 [[users]]\nname = \"a\"\npassword = \"pw\"\n\
                 [[users]]\nname = \"b\"\npassword = \"pw\"\npool_size = 3\n\
                 [[databases]]\nname = \"d\"\nhost = \"h\"\nuser = \"u\"\n{db_extra}"
            )
        };
        let load = |t: &str| crate::config::load_str(t, std::path::Path::new(".")).unwrap();
        // 100 clients + (10 + 2) for a + (3 + 2) for b + the margin.
        assert_eq!(open_files_needed(&load(&text(""))), 100 + 12 + 5 + 64);
        assert_eq!(
            open_files_needed(&load(&text("max_db_connections = 4\n"))),
            100 + 4 + 64
        );
    }
}
