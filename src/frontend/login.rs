//! From an accepted socket to a logged-in session: startup, authentication, database lookup,
//! session settings, and the ParameterStatus/BackendKeyData/ReadyForQuery greeting.

use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

use super::auth::authenticate;
use super::handshake::{Startup, startup, tls_required};
use super::txn::state::ClientSettings;
use crate::config::ClientTls;
use crate::config::PoolMode;
use crate::error::{ClientError, ClientFacing};
use crate::logsafe::LogSafe;
use crate::net::{Peer, Stream};
use crate::pool::limits::ClientAdmission;
use crate::pool::registry::Database;
use crate::pool::{Checkout, Pool};
use crate::proto::sqlstate::SqlState;
use crate::proto::write;
use crate::shared::cancel::Registration;
use crate::shared::{ConsoleLogin, Shared, send_error_and_close, send_error_and_close_after};
use crate::upstream::params::{ParamMap, Spellings, SyncKey, client_settings, sync_plan};
use crate::upstream::passthrough::IdentityLease;
use crate::upstream::server::ControlError;

/// A client that has logged in.
#[derive(Debug)]
pub(crate) struct LoggedIn {
    /// Client socket.
    pub(crate) stream: Stream,
    /// Everything else about the session.
    pub(crate) session: SessionInfo,
    /// Bytes the client sent after its last authentication message.
    pub(crate) leftover: BytesMut,
    /// The client's address.
    pub(crate) peer: Peer,
}

/// What login established besides the socket.
#[derive(Debug)]
pub(crate) struct SessionInfo {
    /// Login name (shared with the client list's entry).
    pub(crate) user: Arc<str>,
    /// Database name (shared with the client list's entry).
    pub(crate) database: Arc<str>,
    /// The (database, user) pool.
    pub(crate) pool: Pool,
    /// The client's session settings.
    pub(crate) settings: ClientSettings,
    /// Cancel key registration.
    pub(crate) cancel: Registration,
    /// Counts the client for max_db_client_connections / max_user_client_connections.
    pub(crate) _admission: ClientAdmission,
    /// Session mode: the server the client keeps for its whole session, checked out at login
    /// so that the backend pid it is told is the server's own.
    pub(crate) server: Option<Box<Checkout>>,
    /// Pass-through: keeps the client's identity (its pool and credential) while connected.
    pub(crate) _identity: Option<IdentityLease>,
}

/// A login that succeeded: a pooled session, or the admin console.
#[derive(Debug)]
pub(crate) enum Login {
    /// A client of a configured database.
    Session(Box<LoggedIn>),
    /// An admin user logged in to the virtual database `lakepool`.
    Console(ConsoleLogin),
}

/// Why a login ended without a session.
#[derive(Debug)]
pub(crate) enum LoginEnd {
    /// A cancel request was handled.
    Cancelled,
    /// Failed; the client has been told when possible.
    Failed(ClientError),
    /// Failed where no reply was possible (socket error, TLS failure).
    Dropped(String),
    /// Startup and authentication took longer than handshake_timeout.
    TimedOut,
}

/// Runs startup and authentication (within `handshake_timeout`), then greets the client. The
/// wait for a server connection a greeting may need is not part of the handshake timeout: it
/// is bounded by `query_wait_timeout`. `admitted` is false when max_client_conn is exceeded: the
/// client then gets 53300 once its startup packet is read.
pub(crate) async fn login(
    fe: &Arc<Shared>,
    stream: Stream,
    peer: Peer,
    admitted: bool,
) -> Result<Login, LoginEnd> {
    let handshake = async {
        let (mut stream, params, buf) = match startup(fe, stream).await {
            Ok(Startup::Login {
                stream,
                params,
                buf,
            }) => (stream, params, buf),
            Ok(Startup::Cancelled) => return Err(LoginEnd::Cancelled),
            Err((Some(mut stream), e)) if e.can_reply() => {
                let err = e.to_client_error();
                send_error_and_close(&mut stream, &err).await;
                return Err(LoginEnd::Failed(err));
            }
            Err((_, e)) => return Err(LoginEnd::Dropped(e.to_string())),
        };
        // What ends authentication (SASL's final message, AuthenticationOk) waits here for the
        // rest of the greeting, or the error that ends the login: one write to the client.
        let mut greeting = BytesMut::with_capacity(512);
        match authenticate_login(fe, &mut stream, params, buf, admitted, &mut greeting).await {
            Ok(authed) => Ok((stream, authed, greeting)),
            Err(err) => {
                send_error_and_close_after(&mut stream, &greeting, &err).await;
                Err(LoginEnd::Failed(err))
            }
        }
    };
    let (mut stream, authed, greeting) =
        tokio::time::timeout(fe.server.handshake_timeout, handshake)
            .await
            .map_err(|_| LoginEnd::TimedOut)??;
    let authed = match authed {
        Authed::Pool(a) => a,
        Authed::Console { user, leftover } => {
            return Ok(Login::Console(ConsoleLogin {
                stream,
                user,
                leftover,
                greeting,
            }));
        }
    };
    let mut greeting = greeting;
    match greet(fe, &mut stream, authed, &mut greeting).await {
        Ok((session, leftover)) => Ok(Login::Session(Box::new(LoggedIn {
            stream,
            session,
            leftover,
            peer,
        }))),
        Err(err) => {
            send_error_and_close_after(&mut stream, &greeting, &err).await;
            Err(LoginEnd::Failed(err))
        }
    }
}

/// Where an authenticated client goes.
enum Authed {
    Pool(Authenticated),
    Console { user: String, leftover: BytesMut },
}

/// A client whose password checked out, before its greeting.
struct Authenticated {
    user: String,
    database: String,
    db: Arc<Database>,
    settings: ParamMap,
    leftover: BytesMut,
    identity: Option<IdentityLease>,
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The user and database a startup packet names (the database defaults to the user name, as
/// PostgreSQL's does).
fn login_names(params: &[(String, String)]) -> Result<(String, String), ClientError> {
    let user = param(params, "user")
        .filter(|u| !u.is_empty())
        .ok_or_else(|| {
            ClientError::fatal(
                SqlState::INVALID_AUTHORIZATION,
                "no PostgreSQL user name specified in startup packet",
            )
        })?
        .to_owned();
    let database = param(params, "database")
        .filter(|d| !d.is_empty())
        .unwrap_or(&user)
        .to_owned();
    Ok((user, database))
}

/// Authenticates the client; what ends authentication goes into `greeting`, unsent.
/// `leftover` holds what the client sent after its startup packet.
async fn authenticate_login(
    fe: &Arc<Shared>,
    stream: &mut Stream,
    params: Vec<(String, String)>,
    mut leftover: BytesMut,
    admitted: bool,
    greeting: &mut BytesMut,
) -> Result<Authed, ClientError> {
    if !admitted {
        return Err(ClientError::fatal(
            SqlState::TOO_MANY_CONNECTIONS,
            "no more connections allowed (max_client_conn)",
        ));
    }
    if fe.server.client_tls == ClientTls::Require && !stream.is_private() {
        return Err(tls_required());
    }
    let (user, database) = login_names(&params)?;
    // A pass-through database takes each client's Databricks token instead of [[users]].
    let passthrough = fe
        .live()
        .registry
        .database(&database)
        .filter(|d| d.passthrough.is_some())
        .cloned();
    let identity = match &passthrough {
        Some(db) => Some(
            super::passthrough::authenticate(fe, stream, &mut leftover, &user, db, greeting)
                .await
                .map_err(|e| e.to_client_error())?,
        ),
        None => {
            authenticate(fe, stream, &mut leftover, &user, &database, greeting)
                .await
                .map_err(|e| e.to_client_error())?;
            None
        }
    };
    if crate::config::is_admin_database(&database) {
        let admin = fe.live().users.get(&user).is_some_and(|u| u.admin);
        if !admin {
            return Err(ClientError::fatal(
                SqlState::INSUFFICIENT_PRIVILEGE,
                "permission denied for the admin console",
            ));
        }
        return Ok(Authed::Console { user, leftover });
    }
    let db = passthrough
        .or_else(|| fe.live().registry.database(&database).cloned())
        .ok_or_else(|| {
            ClientError::fatal(
                SqlState::INVALID_CATALOG_NAME,
                format!("database \"{}\" does not exist", LogSafe(&database)),
            )
        })?;
    let settings = client_settings(&params).map_err(|e| {
        let code = match e {
            crate::upstream::params::ParamError::Replication => SqlState::FEATURE_NOT_SUPPORTED,
            _ => SqlState::INVALID_PARAMETER_VALUE,
        };
        ClientError::fatal(code, e.to_string())
    })?;
    Ok(Authed::Pool(Authenticated {
        user,
        database,
        db,
        settings,
        leftover,
        identity,
    }))
}

/// Gets what the greeting needs and sends it: what `greeting` holds already (the end of
/// authentication), then ParameterStatus, BackendKeyData and ReadyForQuery, in one write.
/// Session mode checks out the client's server now: the client is told the server's own pid
/// and parameter values. Transaction mode tells the pool's parameter values with the client's
/// own settings in the server's spelling; it needs a server only to learn a spelling it has not
/// seen (or when the pool never connected), so logging in rarely waits for a busy pool.
async fn greet(
    fe: &Arc<Shared>,
    stream: &mut Stream,
    authed: Authenticated,
    greeting: &mut BytesMut,
) -> Result<(SessionInfo, BytesMut), ClientError> {
    let Authenticated {
        user,
        database,
        db,
        settings,
        leftover,
        identity,
    } = authed;
    let pool = fe.live().registry.pool(&db, &user);
    let admission = pool.admit_client().map_err(|e| e.to_client_error())?;
    let mut settings = ClientSettings::new(settings);
    let (server, pid) = if pool.settings().mode == PoolMode::Session {
        let mut s = pool.checkout().await.map_err(|e| e.to_client_error())?;
        sync_settings(&mut s, &mut settings, pool.spellings()).await?;
        let conn = s.conn_ref();
        for (k, v) in conn.params.iter() {
            write::parameter_status(greeting, k, v);
        }
        let pid = conn.key.0;
        (Some(Box::new(s)), Some(pid))
    } else {
        if !spelled(&pool, &mut settings) {
            let mut s = pool.checkout().await.map_err(|e| e.to_client_error())?;
            sync_settings(&mut s, &mut settings, pool.spellings()).await?;
            spelled(&pool, &mut settings);
            s.release();
        }
        if let Some(cached) = pool.cached_params() {
            cached.write_to(greeting, &settings.wanted);
        }
        (None, None)
    };
    let cancel = fe.cancels.register_as(Arc::clone(&db.upstream), pid);
    let (pid, secret) = cancel.client_key;
    write::backend_key_data(greeting, pid, secret);
    write::ready_for_query(greeting, b'I');
    let io_err = |e: std::io::Error| {
        ClientError::fatal(
            SqlState::CONNECTION_FAILURE,
            format!("client write failed: {e}"),
        )
    };
    stream.write_all(greeting).await.map_err(io_err)?;
    stream.flush().await.map_err(io_err)?;
    greeting.clear();
    // The pool's names: the same strings (the pool is this database and user's), shared.
    debug_assert!(pool.database() == database && pool.user() == user);
    let (database, user) = pool.names();
    let (database, user) = (Arc::clone(database), Arc::clone(user));
    let info = SessionInfo {
        user,
        database,
        pool,
        settings,
        cancel,
        _admission: admission,
        server,
        _identity: identity,
    };
    Ok((info, leftover))
}

/// Puts the client's reported settings in the server's spelling where the pool knows it; false
/// when a server must be asked (the pool never connected, or a value was never seen).
fn spelled(pool: &Pool, settings: &mut ClientSettings) -> bool {
    let Some(cached) = pool.cached_params() else {
        return false;
    };
    let spellings = pool.spellings();
    let mut all = true;
    // Values the server spells otherwise than the client (rare), applied after the walk: the
    // common case (spelled as sent, already in `settings`) copies nothing.
    let mut respelled: Vec<(String, String)> = Vec::new();
    for (k, v) in settings.startup.iter() {
        let Some(current) = cached.params().get(k) else {
            continue;
        };
        match spellings.with(k, v, |sp| (sp != v).then(|| sp.to_owned())) {
            Some(None) => {}
            Some(Some(sp)) => respelled.push((k.to_owned(), sp)),
            None if current == v => spellings.learn(k, v, v),
            None => all = false,
        }
    }
    for (k, sp) in respelled {
        settings.normalized(&k, &sp);
    }
    all
}

/// True when `server`'s session already matches what the client wants, as last checked (the
/// common case): [`sync_settings`] would return at once, so a checkout need not set up its
/// (boxed) exchange.
pub(crate) fn settings_in_sync(server: &mut Checkout, settings: &ClientSettings) -> bool {
    let conn = server.conn();
    conn.session.in_sync
        == Some(SyncKey::of(
            &settings.wanted,
            &conn.session.settings,
            &conn.params,
        ))
}

/// Brings `server`'s session-level settings in line with the client's (one round trip, only
/// when they differ). The values the server stores become the client's (`utf-8` becomes
/// `UTF8`), and the pool remembers the spelling for clients that log in later.
pub(crate) async fn sync_settings(
    server: &mut Checkout,
    settings: &mut ClientSettings,
    spellings: &Spellings,
) -> Result<(), ClientError> {
    let conn = server.conn();
    let key = SyncKey::of(&settings.wanted, &conn.session.settings, &conn.params);
    if conn.session.in_sync == Some(key) {
        // The same wanted, session and reported settings as a checkout that set nothing.
        return Ok(());
    }
    let Some(plan) = sync_plan(&settings.wanted, &conn.session.settings, &conn.params) else {
        conn.session.in_sync = Some(key);
        return Ok(());
    };
    conn.session.in_sync = None;
    let rows = match conn.control_query_rows(&plan.sql).await {
        Ok(rows) => rows,
        Err(ControlError::Server(fields, _)) => {
            let code = SqlState::parse(&fields.code).unwrap_or(SqlState::INVALID_PARAMETER_VALUE);
            return Err(ClientError::fatal(code, fields.message));
        }
        Err(ControlError::Broken(e)) => {
            return Err(ClientError::fatal(
                SqlState::CONNECTION_FAILURE,
                format!("server connection failed: {e}"),
            ));
        }
    };
    conn.session.settings = settings.wanted.clone();
    for (names, row) in plan.rows.iter().zip(rows) {
        for (name, value) in names.iter().zip(row) {
            let Some(value) = value else { continue };
            // The spelling learned is of the value lakepool set: the client's own SET, or its
            // startup value when it has none.
            if let Some(set) = settings.wanted.get(name)
                && set != value
            {
                spellings.learn(name, set, &value);
            }
            settings.normalized(name, &value);
            conn.session.settings.set(name, &value);
        }
    }
    Ok(())
}
