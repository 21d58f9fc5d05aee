//! lakepool command line: run the pooler, check a config, or hash a password.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use lakepool::auth::scram::{DEFAULT_ITERATIONS, ScramVerifier};
use lakepool::auth::users::MAX_VERIFIER_ITERATIONS;
use lakepool::config;

#[derive(Parser)]
#[command(
    version,
    about = "PostgreSQL connection pooler for Databricks Lakebase"
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
    /// Validate the configuration and exit.
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

fn check(path: Option<PathBuf>) -> ExitCode {
    let result = load(path).and_then(|c| {
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

/// Logs to stderr: text (coloured on a terminal) or one JSON object per line. The format comes
/// from `LAKEPOOL_LOG_FORMAT` (`text`/`json`), else `[server] log_format`; the level from
/// `RUST_LOG` (default `info`).
fn init_logging(format: config::LogFormat) -> Result<(), String> {
    let format = match std::env::var("LAKEPOOL_LOG_FORMAT").ok().as_deref() {
        None | Some("") => format,
        Some("text") => config::LogFormat::Text,
        Some("json") => config::LogFormat::Json,
        Some(other) => {
            return Err(format!(
                "LAKEPOOL_LOG_FORMAT={other:?} is not supported: use text or json"
            ));
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        config::LogFormat::Json => builder.json().init(),
        config::LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
    Ok(())
}

fn serve(path: Option<PathBuf>) -> ExitCode {
    // The config says how to log, so a config error is reported plainly on stderr.
    let config = match load(path.clone()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("lakepool: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = init_logging(config.server.log_format) {
        eprintln!("lakepool: {e}");
        return ExitCode::FAILURE;
    }
    // One worker runs a current-thread runtime: no work-stealing bookkeeping or cross-thread
    // wake-ups, which on a small machine shared with PostgreSQL is the cheapest per message.
    let mut builder = if config.server.workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(config.server.workers);
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
