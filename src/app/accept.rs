//! The entry of every client connection: the accept loop (one task per client) and the
//! dispatch after login, to a pooled session (`frontend`) or to the admin console (`admin`).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::net::TcpListener;

use crate::frontend::login::{LoggedIn, Login, LoginEnd, login};
use crate::logsafe::LogSafe;
use crate::net::accept::AcceptBackoff;
use crate::net::unix::LocalSocket;
use crate::net::{Peer, Stream, tune};
use crate::shared::Shared;

/// Accepts clients until shutdown. Accept errors (e.g. out of file descriptors) back off
/// instead of ending the listener or spinning. `tuned`: accepted sockets carry their options
/// from the listener already (`net::listen::bind`).
pub(crate) async fn run(listener: TcpListener, tuned: bool, shared: Arc<Shared>) {
    let mut backoff = AcceptBackoff::new("client listener");
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            () = shared.shutdown.cancelled() => return,
        };
        match accepted {
            Ok((tcp, peer)) => {
                backoff.succeeded();
                if !tuned {
                    tune(&tcp);
                }
                let client = serve_client(Arc::clone(&shared), Stream::Plain(tcp), Peer::Tcp(peer));
                tokio::spawn(client);
            }
            Err(e) => backoff.failed(&e).await,
        }
    }
}

/// Accepts local clients on the Unix-domain socket until shutdown, as [`run`] does on TCP;
/// the socket's file goes with it.
pub(crate) async fn run_local(socket: LocalSocket, shared: Arc<Shared>) {
    let mut backoff = AcceptBackoff::new("unix socket listener");
    loop {
        let accepted = tokio::select! {
            r = socket.listener.accept() => r,
            () = shared.shutdown.cancelled() => return,
        };
        match accepted {
            Ok((socket, _)) => {
                backoff.succeeded();
                let client = serve_client(
                    Arc::clone(&shared),
                    Stream::Local(Box::new(socket)),
                    Peer::Local,
                );
                tokio::spawn(client);
            }
            Err(e) => backoff.failed(&e).await,
        }
    }
}

/// Serves one accepted client connection from startup to close: the login, then a pooled
/// session or the admin console, whichever the login asked for.
///
/// A plain fn returning the task's future: an async fn would keep its arguments (the socket,
/// the address) in the task's state for the client's whole life, and an idle client's memory
/// is mostly that state.
pub(crate) fn serve_client(
    fe: Arc<Shared>,
    stream: Stream,
    peer: Peer,
) -> impl Future<Output = ()> + Send + 'static {
    let (count, admitted) = ClientCount::enter(fe);
    // Boxed: the login state machine is large and only needed once; an idle session should
    // not carry its space for its whole life.
    let login = Box::pin(log_in(Arc::clone(&count.0), stream, peer, admitted));
    async move {
        // `let else`, not `if let`: the login's result is not kept in the task's state for
        // the whole session.
        let Some(logged) = login.await else {
            return;
        };
        crate::frontend::session::serve(&count.0, logged).await;
        drop(count);
    }
}

/// The login, and the admin console when that is what the client logged in to. Some(login)
/// when a pooled session follows.
async fn log_in(
    fe: Arc<Shared>,
    stream: Stream,
    peer: Peer,
    admitted: bool,
) -> Option<Box<LoggedIn>> {
    match login(&fe, stream, peer, admitted).await {
        Ok(Login::Session(l)) => Some(l),
        Ok(Login::Console(c)) => {
            tracing::info!(client = %peer, user = %c.user, "admin console login");
            let client = fe.sessions.register(
                Arc::from(c.user.as_str()),
                Arc::from(crate::config::ADMIN_DATABASE),
                peer,
                c.stream.is_tls(),
            );
            let end = Box::pin(crate::admin::console::serve(&fe, c)).await;
            drop(client);
            tracing::info!(client = %peer, reason = %end, "admin console disconnected");
            None
        }
        Err(LoginEnd::Cancelled) => None,
        Err(LoginEnd::Failed(e)) => {
            // 08: lakepool could not get a server for the client (an upstream failure, for the
            // operator); anything else is the client's own doing.
            if e.code.as_str().starts_with("08") {
                tracing::warn!(client = %peer, code = %e.code, error = %LogSafe(&e.message),
                    "login failed");
            } else {
                tracing::info!(client = %peer, code = %e.code, error = %LogSafe(&e.message),
                    "login failed");
            }
            None
        }
        Err(LoginEnd::Dropped(why)) => {
            tracing::debug!(client = %peer, reason = %why, "connection dropped during startup");
            None
        }
        Err(LoginEnd::TimedOut) => {
            tracing::info!(client = %peer, "login timed out (handshake_timeout)");
            None
        }
    }
}

/// Counts a client connection for max_client_conn while it lives; holds the shared state
/// for the client's task.
struct ClientCount(Arc<Shared>);

impl ClientCount {
    /// Counts one more client; returns whether it is within `max_client_conn`.
    fn enter(fe: Arc<Shared>) -> (Self, bool) {
        let before = fe.clients.fetch_add(1, Ordering::Relaxed);
        let admitted = before < fe.server.max_client_conn;
        (Self(fe), admitted)
    }
}

impl Drop for ClientCount {
    fn drop(&mut self) {
        self.0.clients.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    /// Every idle client costs one task holding this future: keep it small (PgBouncer holds
    /// about 1 KiB per client).
    #[test]
    fn session_future_stays_small() {
        fn size<F: std::future::Future>(_: &F) -> usize {
            std::mem::size_of::<F>()
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let a = l.local_addr().unwrap();
            let c = tokio::net::TcpStream::connect(a).await.unwrap();
            let text = "[server]\nlisten=\"127.0.0.1:0\"\n[[users]]\nname=\"a\"\npassword=\"b\"\n\
                        [[databases]]\nname=\"d\"\nhost=\"127.0.0.1\"\nuser=\"u\"\ntls=\"disable\"\n";
            let cfg = crate::config::load_str(text, std::path::Path::new(".")).unwrap();
            let token = tokio_util::sync::CancellationToken::new();
            let shared = std::sync::Arc::new(crate::app::build(&cfg, token).unwrap().shared);
            let (stream, peer) = (crate::net::Stream::Plain(c), crate::net::Peer::Tcp(a));
            let f = super::serve_client(shared, stream, peer);
            let n = size(&f);
            // An idle client's task is mostly this future. tokio's task cell adds 104 bytes
            // and rounds up to 128: at most 408 bytes keeps the cell at 512 bytes (408 here
            // and 400 in a release build when written; the cell was 1,792 with the
            // 1,568-byte future of a98a19d, 768 with the 624-byte one of d337269).
            assert!(n <= 408, "serve_client future is {n} bytes");
        });
    }
}
