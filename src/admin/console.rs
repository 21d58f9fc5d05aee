//! The admin console: an admin user logging in to the virtual database `lakepool` (or
//! `pgbouncer`, the name PgBouncer's tools use) gets a session that answers simple queries
//! with the commands below (case-insensitive, optional trailing `;`). Results are
//! RowDescription + DataRow + CommandComplete, then ReadyForQuery. The extended protocol gets
//! `0A000` (then the console skips to the Sync).
//!
//! `SHOW POOLS|CLIENTS|SERVERS|STATS|STATS_TOTALS|STATS_AVERAGES|DATABASES|USERS|LISTS|MEM|
//! CONFIG|CREDENTIALS|HELP|VERSION` (PgBouncer 1.25's columns where PgBouncer has the
//! command, see [`super::show`]), `PAUSE [db]`, `RESUME [db]`, `RECONNECT [db]`,
//! `REFRESH CREDENTIALS [db]`, `RELOAD`, `SHUTDOWN`.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::show;
use crate::error::ClientError;
use crate::net::Stream;
use crate::pool::Pool;
use crate::proto::sqlstate::SqlState;
use crate::proto::write::{self, Severity};
use crate::shared::{ConsoleLogin, Shared};

/// Longest PAUSE waits for the servers in use to come back.
const PAUSE_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest REFRESH CREDENTIALS waits for the new credential.
const REFRESH_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest RELOAD waits for its answer.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest message the console accepts.
const MAX_MESSAGE: usize = 1 << 20;

/// The commands, for HELP and the unknown-command error.
pub(crate) const COMMANDS: &[&str] = &[
    "SHOW POOLS",
    "SHOW CLIENTS",
    "SHOW SERVERS",
    "SHOW STATS",
    "SHOW STATS_TOTALS",
    "SHOW STATS_AVERAGES",
    "SHOW DATABASES",
    "SHOW USERS",
    "SHOW LISTS",
    "SHOW MEM",
    "SHOW CONFIG",
    "SHOW CREDENTIALS",
    "SHOW HELP",
    "SHOW VERSION",
    "PAUSE [db]",
    "RESUME [db]",
    "RECONNECT [db]",
    "REFRESH CREDENTIALS [db]",
    "RELOAD",
    "SHUTDOWN",
];

/// What `SHOW` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Show {
    /// Per pool: clients and servers.
    Pools,
    /// Live clients.
    Clients,
    /// Server connections.
    Servers,
    /// Per database counters: totals and averages.
    Stats,
    /// Per database totals.
    StatsTotals,
    /// Per database averages.
    StatsAverages,
    /// Configured databases.
    Databases,
    /// Configured logins.
    Users,
    /// Sizes of lakepool's lists.
    Lists,
    /// Memory.
    Mem,
    /// Running settings (secrets redacted).
    Config,
    /// Upstream credentials (never the secret).
    Credentials,
    /// The commands.
    Help,
    /// lakepool's version.
    Version,
}

/// A parsed console command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Command {
    /// An empty query.
    Empty,
    /// `SHOW …`.
    Show(Show),
    /// `PAUSE [db]`.
    Pause(Option<String>),
    /// `RESUME [db]`.
    Resume(Option<String>),
    /// `RECONNECT [db]`.
    Reconnect(Option<String>),
    /// `REFRESH CREDENTIALS [db]`.
    RefreshCredentials(Option<String>),
    /// `RELOAD`.
    Reload,
    /// `SHUTDOWN`.
    Shutdown,
}

/// Parses one command; the error is the message for a 42601.
pub(crate) fn parse(query: &str) -> Result<Command, String> {
    let q = query.trim();
    let q = q.strip_suffix(';').unwrap_or(q).trim();
    let words: Vec<&str> = q.split_whitespace().collect();
    let lower: Vec<String> = words.iter().map(|w| w.to_ascii_lowercase()).collect();
    let lw: Vec<&str> = lower.iter().map(String::as_str).collect();
    let db = |w: &str| -> String {
        let w = w.trim();
        match w.strip_prefix('"').and_then(|w| w.strip_suffix('"')) {
            Some(quoted) => quoted.replace("\"\"", "\""),
            None => w.to_owned(),
        }
    };
    let cmd = match lw.as_slice() {
        [] => Command::Empty,
        ["show", what] => Command::Show(match *what {
            "pools" => Show::Pools,
            "clients" => Show::Clients,
            "servers" => Show::Servers,
            "stats" => Show::Stats,
            "stats_totals" => Show::StatsTotals,
            "stats_averages" => Show::StatsAverages,
            "databases" => Show::Databases,
            "users" => Show::Users,
            "lists" => Show::Lists,
            "mem" => Show::Mem,
            "config" => Show::Config,
            "credentials" => Show::Credentials,
            "help" => Show::Help,
            "version" => Show::Version,
            _ => return Err(unknown(q)),
        }),
        ["pause"] => Command::Pause(None),
        ["pause", _] => Command::Pause(Some(db(words[1]))),
        ["resume"] => Command::Resume(None),
        ["resume", _] => Command::Resume(Some(db(words[1]))),
        ["reconnect"] => Command::Reconnect(None),
        ["reconnect", _] => Command::Reconnect(Some(db(words[1]))),
        ["refresh", "credentials"] => Command::RefreshCredentials(None),
        ["refresh", "credentials", _] => Command::RefreshCredentials(Some(db(words[2]))),
        ["reload"] => Command::Reload,
        ["shutdown"] => Command::Shutdown,
        _ => return Err(unknown(q)),
    };
    Ok(cmd)
}

fn unknown(q: &str) -> String {
    let shown: String = q.chars().take(60).collect();
    format!(
        "unknown admin console command \"{shown}\"; commands: {}",
        COMMANDS.join(", ")
    )
}

/// A reply being built: result sets, notices and the CommandComplete tag, or an error.
pub(crate) struct Reply {
    /// Bytes to send before ReadyForQuery.
    pub(crate) buf: BytesMut,
}

impl Reply {
    fn error(&mut self, code: SqlState, message: &str) {
        write::error_response(&mut self.buf, Severity::Error, code, message, None, None);
    }
}

/// Serves one console client until it leaves; returns why it ended.
// Long on purpose (about 90 lines): the greeting, then one loop over the client's messages by
// tag, sharing the skip-to-Sync state; each tag's handling is a few lines.
pub(crate) async fn serve(fe: &Arc<Shared>, login: ConsoleLogin) -> String {
    let ConsoleLogin {
        mut stream,
        leftover,
        greeting,
        ..
    } = login;
    // After AuthenticationOk, in the same write.
    let mut out = greeting;
    for (k, v) in [
        (
            "server_version",
            concat!("16.0 (lakepool ", env!("CARGO_PKG_VERSION"), ")"),
        ),
        ("server_encoding", "UTF8"),
        ("client_encoding", "UTF8"),
        ("DateStyle", "ISO, MDY"),
        ("IntervalStyle", "postgres"),
        ("TimeZone", "UTC"),
        ("integer_datetimes", "on"),
        ("standard_conforming_strings", "on"),
        ("application_name", "lakepool"),
        ("is_superuser", "off"),
    ] {
        write::parameter_status(&mut out, k, v);
    }
    write::backend_key_data(&mut out, rand::random(), rand::random());
    write::ready_for_query(&mut out, b'I');
    if let Err(e) = send(&mut stream, &mut out).await {
        return format!("client I/O error: {e}");
    }
    let mut inbuf = leftover;
    // Extended-protocol messages were refused: skip everything up to the next Sync.
    let mut skipping = false;
    loop {
        let (tag, body) = match next_message(fe, &mut stream, &mut inbuf).await {
            Ok(Some(m)) => m,
            Ok(None) => return "client closed the connection".to_owned(),
            Err(end) => return end,
        };
        match tag {
            b'X' => return "client terminated".to_owned(),
            b'S' => {
                skipping = false;
                write::ready_for_query(&mut out, b'I');
            }
            b'P' | b'B' | b'D' | b'E' | b'C' | b'H' | b'F' => {
                if !skipping {
                    skipping = true;
                    write::error_response(
                        &mut out,
                        Severity::Error,
                        SqlState::FEATURE_NOT_SUPPORTED,
                        "the admin console supports simple queries only",
                        None,
                        None,
                    );
                }
                if tag == b'F' {
                    // FunctionCall is answered like a simple query: with ReadyForQuery.
                    skipping = false;
                    write::ready_for_query(&mut out, b'I');
                }
            }
            b'Q' => {
                let end = body.iter().position(|&b| b == 0).unwrap_or(body.len());
                let query = String::from_utf8_lossy(&body[..end]).into_owned();
                let mut reply = Reply { buf: out };
                let shutdown = execute(fe, &query, &mut reply).await;
                out = reply.buf;
                write::ready_for_query(&mut out, b'I');
                if shutdown {
                    let _ = send(&mut stream, &mut out).await;
                    return "SHUTDOWN".to_owned();
                }
            }
            other => {
                let err = ClientError::fatal(
                    SqlState::PROTOCOL_VIOLATION,
                    format!("unexpected message type {:?}", other as char),
                );
                err.write(&mut out);
                let _ = send(&mut stream, &mut out).await;
                return "protocol violation".to_owned();
            }
        }
        if let Err(e) = send(&mut stream, &mut out).await {
            return format!("client I/O error: {e}");
        }
    }
}

async fn send(stream: &mut Stream, out: &mut BytesMut) -> std::io::Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    stream.write_all(out).await?;
    stream.flush().await?;
    out.clear();
    Ok(())
}

/// Reads the next whole message (tag, body); None when the client closed the socket.
async fn next_message(
    fe: &Shared,
    stream: &mut Stream,
    inbuf: &mut BytesMut,
) -> Result<Option<(u8, BytesMut)>, String> {
    loop {
        if inbuf.len() >= 5 {
            let len = u32::from_be_bytes([inbuf[1], inbuf[2], inbuf[3], inbuf[4]]) as usize;
            if !(4..=MAX_MESSAGE).contains(&len) {
                let err = ClientError::fatal(
                    SqlState::PROTOCOL_VIOLATION,
                    format!("invalid message length {len}"),
                );
                crate::shared::send_error_and_close(stream, &err).await;
                return Err("protocol violation".to_owned());
            }
            if inbuf.len() > len {
                let tag = inbuf[0];
                inbuf.advance(5);
                let body = inbuf.split_to(len - 4);
                return Ok(Some((tag, body)));
            }
        }
        let n = tokio::select! {
            r = stream.read_buf(inbuf) => r.map_err(|e| format!("client I/O error: {e}"))?,
            () = fe.shutdown.cancelled() => {
                let err = ClientError::fatal(SqlState::ADMIN_SHUTDOWN, "lakepool is shutting down");
                crate::shared::send_error_and_close(stream, &err).await;
                return Err("shutdown".to_owned());
            }
        };
        if n == 0 {
            return Ok(None);
        }
    }
}

/// Runs one command into `reply`; true when it was SHUTDOWN.
// Long on purpose (about 90 lines): one match arm per console command, so the command list
// reads in one place.
pub(crate) async fn execute(fe: &Arc<Shared>, query: &str, reply: &mut Reply) -> bool {
    let cmd = match parse(query) {
        Ok(c) => c,
        Err(msg) => {
            reply.error(SqlState::SYNTAX_ERROR, &msg);
            return false;
        }
    };
    match cmd {
        Command::Empty => write::empty_query(&mut reply.buf),
        Command::Show(what) => {
            let table = show::table(fe, what);
            table.write(&mut reply.buf);
            write::command_complete(&mut reply.buf, "SHOW");
        }
        Command::Pause(db) => {
            if !known(fe, db.as_deref(), reply) {
                return false;
            }
            let pools = fe.live().registry.pause(db.as_deref());
            let deadline = tokio::time::Instant::now() + PAUSE_TIMEOUT;
            loop {
                let busy: usize = pools.iter().map(Pool::active).sum();
                if busy == 0 {
                    write::command_complete(&mut reply.buf, "PAUSE");
                    break;
                }
                if tokio::time::Instant::now() >= deadline || fe.shutdown.is_cancelled() {
                    reply.error(
                        SqlState::QUERY_CANCELED,
                        &format!(
                            "PAUSE: {busy} server connection(s) still in use after {} s; \
                             the pools stay paused (RESUME to undo)",
                            PAUSE_TIMEOUT.as_secs()
                        ),
                    );
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Command::Resume(db) => {
            if !known(fe, db.as_deref(), reply) {
                return false;
            }
            fe.live().registry.resume(db.as_deref());
            write::command_complete(&mut reply.buf, "RESUME");
        }
        Command::Reconnect(db) => {
            if !known(fe, db.as_deref(), reply) {
                return false;
            }
            for p in &fe.live().registry.pools_of(db.as_deref()) {
                p.reconnect();
            }
            write::command_complete(&mut reply.buf, "RECONNECT");
        }
        Command::RefreshCredentials(db) => refresh_credentials(fe, db.as_deref(), reply).await,
        Command::Reload => {
            let (tx, rx) = tokio::sync::oneshot::channel();
            if fe.reload.send(tx).is_err() {
                reply.error(
                    SqlState::CONFIG_FILE_ERROR,
                    "RELOAD: configuration reload is not available",
                );
                return false;
            }
            match tokio::time::timeout(RELOAD_TIMEOUT, rx).await {
                Ok(Ok(Ok(()))) => write::command_complete(&mut reply.buf, "RELOAD"),
                Ok(Ok(Err(msg))) => reply.error(SqlState::CONFIG_FILE_ERROR, &msg),
                Ok(Err(_)) => reply.error(
                    SqlState::CONFIG_FILE_ERROR,
                    "RELOAD: the reload request was dropped unanswered",
                ),
                Err(_) => reply.error(
                    SqlState::CONFIG_FILE_ERROR,
                    &format!("RELOAD: no answer within {} s", RELOAD_TIMEOUT.as_secs()),
                ),
            }
        }
        Command::Shutdown => {
            tracing::warn!("SHUTDOWN requested from the admin console");
            write::command_complete(&mut reply.buf, "SHUTDOWN");
            fe.shutdown.cancel();
            return true;
        }
    }
    false
}

/// False after writing a 3D000 when `db` names no configured database.
fn known(fe: &Shared, db: Option<&str>, reply: &mut Reply) -> bool {
    match db {
        Some(name) if fe.live().registry.database(name).is_none() => {
            reply.error(
                SqlState::INVALID_CATALOG_NAME,
                &format!("database \"{name}\" does not exist"),
            );
            false
        }
        _ => true,
    }
}

/// REFRESH CREDENTIALS: asks each rotating credential for a new one and waits for it.
async fn refresh_credentials(fe: &Shared, db: Option<&str>, reply: &mut Reply) {
    let live = fe.live();
    let mut dbs: Vec<_> = match db {
        Some(name) => match live.registry.database(name) {
            Some(d) => vec![Arc::clone(d)],
            None => {
                reply.error(
                    SqlState::INVALID_CATALOG_NAME,
                    &format!("database \"{name}\" does not exist"),
                );
                return;
            }
        },
        None => live.registry.databases().cloned().collect(),
    };
    drop(live);
    dbs.sort_by(|a, b| a.name.cmp(&b.name));
    let mut failed = Vec::new();
    for d in &dbs {
        let c = &d.upstream.credential;
        let before = c.refresh_status().unwrap_or_default();
        if !c.force_refresh() {
            write::notice(
                &mut reply.buf,
                &format!("database {}: {} — nothing to refresh", d.name, c.describe()),
            );
            continue;
        }
        let deadline = tokio::time::Instant::now() + REFRESH_TIMEOUT;
        loop {
            let now = c.refresh_status().unwrap_or_default();
            if now.refreshes > before.refreshes {
                write::notice(
                    &mut reply.buf,
                    &format!("database {}: new credential", d.name),
                );
                break;
            }
            if now.failures > before.failures || tokio::time::Instant::now() >= deadline {
                let why = now
                    .last_error
                    .unwrap_or_else(|| "no new credential in time".to_owned());
                failed.push(format!("database {}: {why}", d.name));
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    if failed.is_empty() {
        write::command_complete(&mut reply.buf, "REFRESH CREDENTIALS");
    } else {
        reply.error(
            SqlState::UNABLE_TO_CONNECT,
            &format!("REFRESH CREDENTIALS failed: {}", failed.join("; ")),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commands() {
        assert_eq!(parse("show pools"), Ok(Command::Show(Show::Pools)));
        assert_eq!(
            parse("  SHOW  Clients ; "),
            Ok(Command::Show(Show::Clients))
        );
        assert_eq!(
            parse("show credentials;"),
            Ok(Command::Show(Show::Credentials))
        );
        assert_eq!(
            parse("SHOW STATS_TOTALS"),
            Ok(Command::Show(Show::StatsTotals))
        );
        assert_eq!(
            parse("show stats_averages"),
            Ok(Command::Show(Show::StatsAverages))
        );
        assert_eq!(parse("show Users"), Ok(Command::Show(Show::Users)));
        assert_eq!(parse("SHOW LISTS;"), Ok(Command::Show(Show::Lists)));
        assert_eq!(parse("show mem"), Ok(Command::Show(Show::Mem)));
        assert_eq!(parse("PAUSE"), Ok(Command::Pause(None)));
        assert_eq!(parse("pause app;"), Ok(Command::Pause(Some("app".into()))));
        assert_eq!(parse("pause \"My Db\""), Err(unknown("pause \"My Db\"")));
        assert_eq!(
            parse("resume \"a\"\"b\""),
            Ok(Command::Resume(Some("a\"b".into())))
        );
        assert_eq!(
            parse("Reconnect App"),
            Ok(Command::Reconnect(Some("App".into())))
        );
        assert_eq!(
            parse("refresh credentials"),
            Ok(Command::RefreshCredentials(None))
        );
        assert_eq!(
            parse("REFRESH CREDENTIALS lb;"),
            Ok(Command::RefreshCredentials(Some("lb".into())))
        );
        assert_eq!(parse("reload"), Ok(Command::Reload));
        assert_eq!(parse("SHUTDOWN;"), Ok(Command::Shutdown));
        assert_eq!(parse(" ; "), Ok(Command::Empty));
        assert_eq!(parse(""), Ok(Command::Empty));
        let e = parse("select 1").unwrap_err();
        assert!(e.contains("SHOW POOLS") && e.contains("select 1"), "{e}");
        assert!(parse("show nothing").is_err());
        assert!(parse("pause a b").is_err());
        assert!(parse("refresh").is_err());
    }
}
