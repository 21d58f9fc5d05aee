//! Reloading the configuration: SIGHUP and the console's RELOAD ask, one reload runs at a time,
//! and the refreshers of Lakebase credentials follow the databases that use them.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::build_live;
use crate::credentials::lakebase::LakebaseCredential;
use crate::shared::Shared;

/// Running credential refreshers, each stoppable on its own when a reload drops its database.
pub(crate) type Refreshers = Vec<(Arc<LakebaseCredential>, CancellationToken)>;

/// Starts the refreshers of new Lakebase credentials.
pub(crate) fn start_refreshers(
    new: Vec<Arc<LakebaseCredential>>,
    shutdown: &CancellationToken,
) -> Refreshers {
    new.into_iter()
        .map(|c| {
            let token = shutdown.child_token();
            c.spawn(token.clone());
            (c, token)
        })
        .collect()
}

/// SIGHUP asks for a reload; the outcome is logged by the reload itself.
pub(crate) async fn sighup(fe: Arc<Shared>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::error!("cannot install the SIGHUP handler: reload by signal is off");
        return;
    };
    while hup.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading the configuration");
        let (tx, _rx) = tokio::sync::oneshot::channel();
        if fe.reload.send(tx).is_err() {
            return;
        }
    }
}

/// Serves reload requests one at a time (SIGHUP, the admin console's RELOAD).
pub(crate) async fn reloads(
    fe: Arc<Shared>,
    path: Option<std::path::PathBuf>,
    mut requests: tokio::sync::mpsc::UnboundedReceiver<crate::shared::ReloadRequest>,
    mut running: Refreshers,
    shutdown: CancellationToken,
) {
    while let Some(reply) = requests.recv().await {
        let result = match &path {
            Some(p) => reload(&fe, p, &mut running, &shutdown).await,
            None => Err("lakepool was started without a configuration file".to_owned()),
        };
        match &result {
            Ok(()) => {}
            Err(e) => {
                tracing::error!(error = %e, "reload refused; the running configuration stays in force")
            }
        }
        let _ = reply.send(result);
    }
}

/// Re-reads the configuration file and swaps in users, databases, pool settings, limits, TLS
/// certificates and secret files. Connected clients stay; pools whose upstream or settings
/// changed drain as their clients move on. An invalid file changes nothing.
async fn reload(
    fe: &Shared,
    path: &std::path::Path,
    running: &mut Refreshers,
    shutdown: &CancellationToken,
) -> Result<(), String> {
    let old = fe.live();
    // Reading the file, secret files, certificates and CA bundles, and deriving SCRAM
    // verifiers (PBKDF2, milliseconds each), run on a blocking thread: the runtime threads
    // keep serving clients meanwhile.
    let (path_owned, previous) = (path.to_owned(), Arc::clone(&old));
    let (config, live, rotating) = tokio::task::spawn_blocking(move || {
        let config = crate::config::load_file(&path_owned).map_err(|e| e.to_string())?;
        let (live, rotating) = build_live(&config, Some(&previous)).map_err(|e| e.to_string())?;
        Ok::<_, String>((config, live, rotating))
    })
    .await
    .map_err(|e| format!("the reload failed: {e}"))??;
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    let s = &config.server;
    if s.listen != fe.server.listen
        || s.admin_listen != fe.server.admin_listen
        || s.workers != fe.server.workers
        || s.max_client_conn != fe.server.max_client_conn
        || s.client_tls != fe.server.client_tls
        || s.unix_socket_dir != fe.server.unix_socket_dir
        || s.unix_socket_mode != fe.server.unix_socket_mode
        || s.tcp_defer_accept != fe.server.tcp_defer_accept
    {
        tracing::warn!(
            "[server] listen, unix_socket_dir, unix_socket_mode, admin_listen, workers, \
             max_client_conn, client_tls and tcp_defer_accept take effect on restart only"
        );
    }
    running.extend(start_refreshers(rotating, shutdown));
    let databases = live.registry.databases().count();
    let users = config.users.len();
    fe.live.store(Arc::new(live));
    // Refreshers whose database is gone or was rebuilt stop; their clients have moved on or
    // keep the old upstream until they leave.
    let current = fe.live();
    // A login still holding the old snapshot may have created a pool in the old registry
    // while the new one was built: retire it too, so its clients move on.
    let kept = current.registry.pools();
    for pool in old.registry.pools() {
        if !kept.iter().any(|k| k.same_as(&pool)) && !pool.is_retired() {
            pool.retire();
        }
    }
    // Pools this reload drained: those of the old configuration it did not keep.
    let mut drained: Vec<String> = old
        .registry
        .pools()
        .iter()
        .filter(|p| p.is_retired())
        .map(|p| format!("{}/{}", p.database(), p.user()))
        .collect();
    drained.sort();
    running.retain(|(c, token)| {
        let mine = Arc::as_ptr(c) as *const ();
        let used = current
            .registry
            .databases()
            .any(|d| Arc::as_ptr(&d.upstream.credential) as *const () == mine);
        if !used {
            token.cancel();
        }
        used
    });
    drop(old);
    let drained = if drained.is_empty() {
        "none".to_owned()
    } else {
        drained.join(", ")
    };
    tracing::info!(databases, users, drained = %drained, "configuration reloaded");
    Ok(())
}
