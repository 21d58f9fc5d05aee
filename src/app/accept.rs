//! The entry of every client connection: the accept loop (one task per client) and the
//! dispatch after login, to a pooled session (`frontend`) or to the admin console (`admin`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::{TcpListener, TcpStream};

use crate::frontend::login::{Login, LoginEnd, login};
use crate::logsafe::LogSafe;
use crate::net::accept::AcceptBackoff;
use crate::net::tune;
use crate::shared::Shared;

/// Accepts clients until shutdown. Accept errors (e.g. out of file descriptors) back off
/// instead of ending the listener or spinning.
pub(crate) async fn run(listener: TcpListener, shared: Arc<Shared>) {
    let mut backoff = AcceptBackoff::new("client listener");
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            () = shared.shutdown.cancelled() => return,
        };
        match accepted {
            Ok((tcp, peer)) => {
                backoff.succeeded();
                tune(&tcp);
                tokio::spawn(serve_client(Arc::clone(&shared), tcp, peer));
            }
            Err(e) => backoff.failed(&e).await,
        }
    }
}

/// Serves one accepted client connection from startup to close: the login, then a pooled
/// session or the admin console, whichever the login asked for.
pub(crate) async fn serve_client(fe: Arc<Shared>, tcp: TcpStream, peer: SocketAddr) {
    let (_count, admitted) = ClientCount::enter(&fe.clients, fe.server.max_client_conn);
    // Boxed: the login state machine is large and only needed once; an idle session should
    // not carry its space for its whole life.
    let logged = match Box::pin(login(&fe, tcp, admitted)).await {
        Ok(Login::Session(l)) => l,
        Ok(Login::Console(c)) => {
            tracing::info!(client = %peer, user = %c.user, "admin console login");
            let client = fe.sessions.register(
                &c.user,
                crate::config::ADMIN_DATABASE,
                peer,
                c.stream.is_tls(),
            );
            let end = Box::pin(crate::admin::console::serve(&fe, c)).await;
            drop(client);
            tracing::info!(client = %peer, reason = %end, "admin console disconnected");
            return;
        }
        Err(LoginEnd::Cancelled) => return,
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
            return;
        }
        Err(LoginEnd::Dropped(why)) => {
            tracing::debug!(client = %peer, reason = %why, "connection dropped during startup");
            return;
        }
        Err(LoginEnd::TimedOut) => {
            tracing::info!(client = %peer, "login timed out (handshake_timeout)");
            return;
        }
    };
    crate::frontend::session::serve(&fe, logged, &peer).await;
}

/// Counts a client connection for max_client_conn while it lives.
#[derive(Debug)]
struct ClientCount<'a>(&'a AtomicUsize);

impl<'a> ClientCount<'a> {
    /// Counts one more client; returns whether it is within `max`.
    fn enter(counter: &'a AtomicUsize, max: usize) -> (Self, bool) {
        let before = counter.fetch_add(1, Ordering::Relaxed);
        (Self(counter), before < max)
    }
}

impl Drop for ClientCount<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
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
            let f = super::serve_client(shared, c, a);
            let n = size(&f);
            // An idle client's task is mostly this future: keep it small (1,512 bytes when
            // written, 1,544 since the dispatch calls the session as its own future; the
            // transaction's state is boxed for its length only).
            assert!(n <= 1600, "serve_client future is {n} bytes");
        });
    }
}
