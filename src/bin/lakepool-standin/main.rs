//! lakepool-standin: a local stand-in for the Databricks workspace API parts lakepool uses
//! (OAuth M2M and token exchange, SCIM Me, Lakebase Provisioned instances and Autoscaling
//! endpoints, database credentials) and for the identity providers behind the other auth
//! methods (Entra ID, the Azure instance metadata service, a metadata service), backed by a real PostgreSQL where every minted credential becomes the
//! identity's role password with `VALID UNTIL` its expiry. For tests and the quickstart only:
//! it has no real security and must only listen on loopback.

#![forbid(unsafe_code)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::todo,
    clippy::dbg_macro
)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod api;
mod control;
mod http;
mod idp;
mod pg;
mod state;

use std::convert::Infallible;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use state::{ClientSpec, Named, PatSpec, State};

/// The minter for `--pg-*`: where minted credentials become role passwords.
fn minter(cli: &Cli) -> Result<pg::Minter, String> {
    let password =
        match &cli.pg_password_env {
            Some(var) => Some(std::env::var(var).map_err(|_| {
                format!("environment variable {var} (--pg-password-env) is not set")
            })?),
            None => None,
        };
    pg::Minter::new(pg::PgTarget {
        host: cli.pg_host.clone(),
        port: cli.pg_port,
        user: cli.pg_user.clone(),
        password,
        dbname: cli.pg_dbname.clone(),
        ca_file: cli.pg_ca_file.clone(),
        connect_timeout: Duration::from_secs(10),
    })
}

/// Local stand-in for the Databricks workspace API (OAuth M2M, SCIM Me, Lakebase database
/// instances / postgres endpoints and their credentials), backed by a real PostgreSQL.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Address to listen on (HTTP, no TLS). Keep it on loopback.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// PostgreSQL host where minted credentials are installed as role passwords.
    #[arg(long, default_value = "127.0.0.1")]
    pg_host: String,
    /// PostgreSQL port.
    #[arg(long, default_value_t = 5432)]
    pg_port: u16,
    /// PostgreSQL superuser to run CREATE/ALTER ROLE as.
    #[arg(long, default_value = "postgres")]
    pg_user: String,
    /// Name of the environment variable holding the superuser's password (none: no password).
    #[arg(long)]
    pg_password_env: Option<String>,
    /// Database to log in to.
    #[arg(long, default_value = "postgres")]
    pg_dbname: String,
    /// CA file: when set, connect to PostgreSQL with TLS, verify-full.
    #[arg(long)]
    pg_ca_file: Option<PathBuf>,
    /// A personal access token and the identity it authenticates as: TOKEN=USERNAME (repeatable).
    #[arg(long = "pat", value_name = "TOKEN=USERNAME", value_parser = state::parse_pat)]
    pats: Vec<PatSpec>,
    /// An OAuth M2M service principal: ID:SECRET=USERNAME, USERNAME being its application id
    /// and Postgres role (repeatable).
    #[arg(long = "client", value_name = "ID:SECRET=USERNAME", value_parser = state::parse_client)]
    clients: Vec<ClientSpec>,
    /// A provisioned database instance: NAME=HOST[@STATE] (STATE default AVAILABLE; repeatable).
    #[arg(long = "instance", value_name = "NAME=HOST[@STATE]", value_parser = state::parse_instance)]
    instances: Vec<Named>,
    /// An autoscaling endpoint: projects/p/branches/b/endpoints/e=HOST[@STATE]
    /// (STATE default ACTIVE; repeatable).
    #[arg(long = "endpoint", value_name = "NAME=HOST[@STATE]", value_parser = state::parse_endpoint)]
    endpoints: Vec<Named>,
    /// The Entra ID tenant of an Azure workspace (serves `/aad/auth` and `/{tenant}/oauth2/token`).
    #[arg(long)]
    azure_tenant: Option<String>,
    /// An Entra ID service principal: CLIENT_ID:SECRET=USERNAME (repeatable).
    #[arg(long = "azure-sp", value_name = "CLIENT_ID:SECRET=USERNAME", value_parser = idp::parse_azure_sp)]
    azure_sps: Vec<idp::AzureSp>,
    /// A managed identity served by `/metadata/identity/oauth2/token`: CLIENT_ID=USERNAME
    /// (repeatable; a single one is also the system-assigned identity).
    #[arg(long = "azure-msi", value_name = "CLIENT_ID=USERNAME", value_parser = idp::parse_azure_msi)]
    azure_msis: Vec<idp::AzureMsi>,
    /// A federation policy for token exchange:
    /// issuer=…,subject=…[,audience=…][,client_id=…],user=… (repeatable; the audience defaults
    /// to the token endpoint URL).
    #[arg(long = "federation", value_name = "POLICY", value_parser = idp::parse_federation)]
    federation: Vec<idp::Federation>,
    /// The identity `/metadata-service/…` issues tokens for.
    #[arg(long)]
    metadata_identity: Option<String>,
    /// Database credential lifetime in seconds.
    #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..))]
    lifetime: u64,
    /// Workspace OAuth access token lifetime in seconds.
    #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..))]
    oauth_lifetime: u64,
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    let minter = minter(&cli)?;
    if !cli.listen.ip().is_loopback() {
        tracing::warn!(addr = %cli.listen, "listening on a non-loopback address: this stand-in has no real security");
    }
    let listener = TcpListener::bind(cli.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", cli.listen))?;
    let local = listener
        .local_addr()
        .map_err(|e| format!("cannot read the bound address: {e}"))?;

    let state = Arc::new(State::new(
        format!("http://{local}"),
        cli.pats,
        cli.clients,
        cli.instances,
        cli.endpoints,
        cli.lifetime,
        cli.oauth_lifetime,
        idp::Idps {
            azure_tenant: cli.azure_tenant,
            azure_sps: cli.azure_sps,
            azure_msis: cli.azure_msis,
            federation: cli.federation,
            metadata_user: cli.metadata_identity,
        },
        minter,
    ));
    // Check PostgreSQL early so a misconfiguration shows at startup; minting reconnects anyway.
    if let Err(e) = state.minter.check().await {
        tracing::warn!("PostgreSQL not reachable yet ({e}); will retry when minting");
    }
    tracing::info!(addr = %local, "listening");

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("cannot install the SIGTERM handler: {e}"))?;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let st = Arc::clone(&state);
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let st = Arc::clone(&st);
                        async move { Ok::<_, Infallible>(http::handle(&st, req).await) }
                    });
                    if let Err(e) = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await
                    {
                        tracing::debug!(%peer, "HTTP connection ended: {e}");
                    }
                });
            }
            _ = term.recv() => {
                tracing::info!("SIGTERM received, exiting");
                break;
            }
            _ = tokio::signal::ctrl_c() => {
                tracing::info!("SIGINT received, exiting");
                break;
            }
        }
    }
    state.minter.close().await;
    Ok(())
}
