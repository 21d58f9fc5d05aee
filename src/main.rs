//! lakepool command line: run the pooler, check a config, or hash a password.

#![forbid(unsafe_code)]

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use lakepool::auth::scram::{DEFAULT_ITERATIONS, ScramVerifier};
use lakepool::auth::users::MAX_VERIFIER_ITERATIONS;
use lakepool::config;

/// jemalloc, not glibc's malloc: a login makes about 45 allocations that glibc's thread cache
/// (7 chunks per size) often misses, and its 128-byte-aligned ones (tokio's task cell and
/// socket registration) go through `memalign`'s slow path and leave fragments. See
/// ARCHITECTURE.md, "Performance choices". Build with `--no-default-features` for glibc's.
#[cfg(all(feature = "jemalloc", not(target_env = "msvc")))]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// What `--help` says after the options.
const AFTER_HELP: &str = "\
Without a subcommand, lakepool serves: it loads the configuration (--config or
LAKEPOOL_CONFIG), logs a startup line (version, commit, config, listeners, databases, pools),
listens on [server] listen (and unix_socket_dir, admin_listen) and runs in the foreground
until stopped.
`lakepool check` validates exactly what serving validates, environment included, without
binding anything.

Signals:
  SIGHUP              reload the configuration file: users, databases, pool settings, limits,
                      TLS certificates and *_file secrets (listeners need a restart); an invalid
                      file is refused and the running configuration stays
  SIGTERM, SIGINT     drain: stop accepting clients, let transactions in flight finish, tell
                      idle clients (57P01), exit 0 within [server] shutdown_timeout
  a second one        exit at once (status 1)

Logging, to stderr:
  RUST_LOG            level and filters (default info), e.g. RUST_LOG=debug or
                      RUST_LOG=info,lakepool::pool=debug
  LAKEPOOL_LOG_FORMAT text or json, overriding [server] log_format

Admin: psql \"dbname=lakepool\" (or pgbouncer) as an admin = true user for SHOW POOLS, SHOW
STATS, PAUSE, RELOAD, ...; /healthz, /readyz and /metrics on [server] admin_listen.";

#[derive(Parser)]
#[command(
    version = lakepool::VERSION,
    about = "PostgreSQL connection pooler for Databricks Lakebase",
    after_help = AFTER_HELP
)]
struct Cli {
    /// Configuration file (TOML).
    #[arg(long, short, env = "LAKEPOOL_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the configuration exactly as serving does (file, LAKEPOOL_LOG_FORMAT, TLS
    /// files, users, databases, workspace settings) without binding anything, and exit.
    Check,
    /// Read a password from stdin and print its SCRAM-SHA-256 verifier for `[[users]] password`.
    HashPassword {
        /// PBKDF2 iterations.
        #[arg(long, default_value_t = DEFAULT_ITERATIONS)]
        iterations: u32,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::HashPassword { iterations }) => hash_password(iterations),
        Some(Command::Check) => check(cli.config),
        None => serve(cli.config),
    }
}

fn load(path: Option<PathBuf>) -> Result<config::Config, String> {
    let path = path.ok_or("no configuration file: use --config PATH or set LAKEPOOL_CONFIG")?;
    config::load_file(&path).map_err(|e| e.to_string())
}

/// What serving validates before it builds anything: the configuration file and the logging
/// environment. Returns the config and the log format to use.
fn validate(path: Option<PathBuf>) -> Result<(config::Config, config::LogFormat), String> {
    let config = load(path)?;
    let format = log_format(config.server.log_format)?;
    Ok((config, format))
}

/// `check`: exactly what serving validates ([`validate`], then what `app::run` builds before
/// it binds: TLS files, users, databases, workspace settings), without binding or calling any
/// API.
fn check(path: Option<PathBuf>) -> ExitCode {
    let result = validate(path).and_then(|(c, _)| {
        for w in &c.warnings {
            eprintln!("lakepool: warning: {w}");
        }
        lakepool::app::build(&c, CancellationToken::new())
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
    match result {
        Ok(()) => {
            println!("configuration is valid");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("lakepool: {e}");
            ExitCode::FAILURE
        }
    }
}

fn hash_password(iterations: u32) -> ExitCode {
    let stdin = std::io::stdin();
    let tty = stdin.is_terminal();
    if tty {
        eprint!("Password: ");
        let _ = std::io::stderr().flush();
        set_echo(false);
    }
    let mut line = zeroize::Zeroizing::new(String::new());
    let read = stdin.lock().read_line(&mut line);
    if tty {
        set_echo(true);
        eprintln!();
    }
    if let Err(e) = read {
        eprintln!("lakepool: cannot read password: {e}");
        return ExitCode::FAILURE;
    }
    let password = line.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        eprintln!("lakepool: empty password");
        return ExitCode::FAILURE;
    }
    if iterations > MAX_VERIFIER_ITERATIONS {
        eprintln!("lakepool: at most {MAX_VERIFIER_ITERATIONS} iterations (a config refuses more)");
        return ExitCode::FAILURE;
    }
    println!(
        "{}",
        ScramVerifier::from_password(password, iterations.max(1))
    );
    ExitCode::SUCCESS
}

/// Turns terminal echo off/on with stty, so a typed password is not shown.
fn set_echo(on: bool) {
    let _ = std::process::Command::new("stty")
        .arg(if on { "echo" } else { "-echo" })
        .stdin(std::process::Stdio::inherit())
        .status();
}

/// The log format: `LAKEPOOL_LOG_FORMAT` (`text`/`json`) when set, else `[server] log_format`.
fn log_format(configured: config::LogFormat) -> Result<config::LogFormat, String> {
    match std::env::var("LAKEPOOL_LOG_FORMAT").ok().as_deref() {
        None | Some("") => Ok(configured),
        Some("text") => Ok(config::LogFormat::Text),
        Some("json") => Ok(config::LogFormat::Json),
        Some(other) => Err(format!(
            "LAKEPOOL_LOG_FORMAT={other:?} is not supported: use text or json"
        )),
    }
}

/// Logs to stderr: text (coloured on a terminal) or one JSON object per line; the level from
/// `RUST_LOG` (default `info`).
fn init_logging(format: config::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        config::LogFormat::Json => builder.json().init(),
        config::LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

fn serve(path: Option<PathBuf>) -> ExitCode {
    // The config says how to log, so a config error is reported plainly on stderr.
    let (config, format) = match validate(path.clone()) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("lakepool: {e}");
            return ExitCode::FAILURE;
        }
    };
    init_logging(format);
    // One worker runs a current-thread runtime: no work-stealing bookkeeping or cross-thread
    // wake-ups, which on a small machine shared with PostgreSQL is the cheapest per message.
    // Pools keep what a transaction changes once per worker (see `lakepool::worker`).
    lakepool::worker::set_count(config.server.workers);
    let mut builder = if config.server.workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(config.server.workers)
            .on_thread_start(lakepool::worker::on_thread_start);
        b
    };
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        tokio::spawn(signals(shutdown.clone()));
        match lakepool::app::run(config, path, shutdown).await {
            Ok(()) => {
                tracing::info!("stopped");
                ExitCode::SUCCESS
            }
            Err(e) => {
                tracing::error!("{e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// SIGTERM/SIGINT start a graceful shutdown; a second one exits at once. (SIGHUP, reload,
/// is handled by `app`.)
async fn signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    let mut stopping = false;
    loop {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        if stopping {
            tracing::warn!("second signal: exiting now");
            std::process::exit(1);
        }
        stopping = true;
        shutdown.cancel();
    }
}
