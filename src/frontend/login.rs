//! From an accepted socket to a logged-in session: startup, authentication, database lookup,
//! session settings, and the ParameterStatus/BackendKeyData/ReadyForQuery greeting.

use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::auth::authenticate;
use super::cancel::Registration;
use super::handshake::{Startup, startup, tls_required};
use super::{Frontend, send_error_and_close};
use crate::config::ClientTls;
use crate::error::{ClientError, ClientFacing};
use crate::net::Stream;
use crate::pool::limits::ClientAdmission;
use crate::pool::registry::Database;
use crate::pool::{Checkout, Pool};
use crate::proto::sqlstate::SqlState;
use crate::proto::write;
use crate::upstream::params::{ParamMap, client_settings, sync_sql};
use crate::upstream::server::ControlError;

/// Reported parameters a client can change, tracked for every client (as PgBouncer does).
const TRACKED: [&str; 6] = [
    "application_name",
    "client_encoding",
    "DateStyle",
    "IntervalStyle",
    "TimeZone",
    "standard_conforming_strings",
];

/// A client that has logged in.
#[derive(Debug)]
pub struct LoggedIn {
    /// Client socket.
    pub stream: Stream,
    /// Everything else about the session.
    pub session: SessionInfo,
}

/// What login established besides the socket.
#[derive(Debug)]
pub struct SessionInfo {
    /// Bytes the client sent after its last authentication message.
    pub leftover: BytesMut,
    /// Login name.
    pub user: String,
    /// Database name.
    pub database: String,
    /// The (database, user) pool.
    pub pool: Pool,
    /// Settings the client asked for.
    pub settings: ParamMap,
    /// Cancel key registration.
    pub cancel: Registration,
    /// Counts the client for max_db_client_connections / max_user_client_connections.
    pub admission: ClientAdmission,
}

/// A login that succeeded: a pooled session, or the admin console.
#[derive(Debug)]
pub enum Login {
    /// A client of a configured database.
    Session(LoggedIn),
    /// An admin user logged in to the virtual database `lakepool`.
    Console(ConsoleLogin),
}

/// An authenticated admin console client, not yet greeted.
#[derive(Debug)]
pub struct ConsoleLogin {
    /// Client socket.
    pub stream: Stream,
    /// Login name.
    pub user: String,
    /// Bytes the client sent after its last authentication message.
    pub leftover: BytesMut,
}

/// Why a login ended without a session.
#[derive(Debug)]
pub enum LoginEnd {
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
pub async fn login(fe: &Arc<Frontend>, tcp: TcpStream, admitted: bool) -> Result<Login, LoginEnd> {
    let handshake = async {
        let (mut stream, params) = match startup(fe, tcp).await {
            Ok(Startup::Login { stream, params }) => (stream, params),
            Ok(Startup::Cancelled) => return Err(LoginEnd::Cancelled),
            Err((Some(mut stream), e)) if e.can_reply() => {
                let err = e.to_client_error();
                send_error_and_close(&mut stream, &err).await;
                return Err(LoginEnd::Failed(err));
            }
            Err((_, e)) => return Err(LoginEnd::Dropped(e.to_string())),
        };
        match authenticate_login(fe, &mut stream, params, admitted).await {
            Ok(authed) => Ok((stream, authed)),
            Err(err) => {
                send_error_and_close(&mut stream, &err).await;
                Err(LoginEnd::Failed(err))
            }
        }
    };
    let (mut stream, authed) = tokio::time::timeout(fe.server.handshake_timeout, handshake)
        .await
        .map_err(|_| LoginEnd::TimedOut)??;
    let authed = match authed {
        Authed::Pool(a) => a,
        Authed::Console { user, leftover } => {
            return Ok(Login::Console(ConsoleLogin {
                stream,
                user,
                leftover,
            }));
        }
    };
    match greet(fe, &mut stream, authed).await {
        Ok(session) => Ok(Login::Session(LoggedIn { stream, session })),
        Err(err) => {
            send_error_and_close(&mut stream, &err).await;
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
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

async fn authenticate_login(
    fe: &Arc<Frontend>,
    stream: &mut Stream,
    params: Vec<(String, String)>,
    admitted: bool,
) -> Result<Authed, ClientError> {
    if !admitted {
        return Err(ClientError::fatal(
            SqlState::TOO_MANY_CONNECTIONS,
            "no more connections allowed (max_client_conn)",
        ));
    }
    if fe.server.client_tls == ClientTls::Require && !stream.is_tls() {
        return Err(tls_required());
    }
    let user = param(&params, "user")
        .filter(|u| !u.is_empty())
        .ok_or_else(|| {
            ClientError::fatal(
                SqlState::INVALID_AUTHORIZATION,
                "no PostgreSQL user name specified in startup packet",
            )
        })?
        .to_owned();
    let database = param(&params, "database")
        .filter(|d| !d.is_empty())
        .unwrap_or(&user)
        .to_owned();
    let mut leftover = BytesMut::new();
    authenticate(fe, stream, &mut leftover, &user)
        .await
        .map_err(|e| e.to_client_error())?;
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
    let db = fe
        .live()
        .registry
        .database(&database)
        .cloned()
        .ok_or_else(|| {
            ClientError::fatal(
                SqlState::INVALID_CATALOG_NAME,
                format!("database \"{database}\" does not exist"),
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
    }))
}

/// Gets what the greeting needs (a server in session mode, or the pool's cached parameters)
/// and sends ParameterStatus, BackendKeyData and ReadyForQuery.
async fn greet(
    fe: &Arc<Frontend>,
    stream: &mut Stream,
    authed: Authenticated,
) -> Result<SessionInfo, ClientError> {
    let Authenticated {
        user,
        database,
        db,
        mut settings,
        leftover,
    } = authed;
    let pool = fe.live().registry.pool(&db, &user);
    let admission = pool.admit_client().map_err(|e| e.to_client_error())?;
    let cancel = fe.cancels.register(Arc::clone(&db.upstream));

    // A server is needed only when the pool has never connected and so has no ParameterStatus
    // values to replay. In both modes a client gets its server at its first request (session
    // mode then keeps it), so logging in never waits for a busy pool.
    let mut server = match pool.cached_params() {
        Some(_) => None,
        None => Some(pool.checkout().await.map_err(|e| e.to_client_error())?),
    };
    // Every client tracks the settable reported parameters, starting from the server defaults,
    // so a server another client changed is put back for this one.
    if let Some(defaults) = pool.cached_params() {
        for name in TRACKED {
            if settings.get(name).is_none()
                && let Some(v) = defaults.get(name)
            {
                settings.set(name, v);
            }
        }
    }
    let mut greeting = BytesMut::with_capacity(512);
    if let Some(s) = server.as_mut() {
        sync_settings(s, &mut settings).await?;
        let conn = s.conn_ref();
        for (k, v) in conn.params.iter().take(conn.reported) {
            write::parameter_status(&mut greeting, k, v);
        }
    } else if let Some(cached) = pool.cached_params() {
        for (k, v) in cached.iter() {
            write::parameter_status(&mut greeting, k, settings.get(k).unwrap_or(v));
        }
    }
    if let Some(s) = server.take() {
        s.release();
    }
    let (pid, secret) = cancel.client_key;
    write::backend_key_data(&mut greeting, pid, secret);
    write::ready_for_query(&mut greeting, b'I');
    let io_err = |e: std::io::Error| {
        ClientError::fatal(
            SqlState::CONNECTION_FAILURE,
            format!("client write failed: {e}"),
        )
    };
    stream.write_all(&greeting).await.map_err(io_err)?;
    stream.flush().await.map_err(io_err)?;
    Ok(SessionInfo {
        leftover,
        user,
        database,
        pool,
        settings,
        cancel,
        admission,
    })
}

/// Applies the client's settings to `server` where they differ (one round trip, only when
/// needed). Afterwards the client's settings match the server's: for reported parameters the
/// server's canonical spelling is adopted, so the next check finds nothing to do.
pub async fn sync_settings(
    server: &mut Checkout,
    settings: &mut ParamMap,
) -> Result<(), ClientError> {
    let conn = server.conn();
    let Some(sql) = sync_sql(settings, &conn.params, conn.reported) else {
        return Ok(());
    };
    match conn.run_control_query(&sql).await {
        Ok(_) => {}
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
    }
    // Settings an earlier client applied and this one did not want were RESET.
    conn.params
        .retain_from(conn.reported, |name| settings.get(name).is_some());
    let names: Vec<(String, String)> = settings
        .iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    for (k, v) in names {
        let reported = conn
            .params
            .iter()
            .take(conn.reported)
            .find(|(n, _)| n.eq_ignore_ascii_case(&k))
            .map(|(_, v)| v.to_owned());
        match reported {
            Some(server_value) => settings.set(&k, &server_value),
            None => conn.params.set(&k, &v),
        }
    }
    Ok(())
}
