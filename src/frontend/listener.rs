//! Accept loop: one task per client connection.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use super::Frontend;
use super::session::serve_client;
use crate::net::tune;

/// Accepts clients until shutdown. Accept errors (e.g. out of file descriptors) are logged
/// and retried after a short pause instead of ending the listener.
pub async fn run(listener: TcpListener, fe: Arc<Frontend>) {
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            () = fe.shutdown.cancelled() => return,
        };
        match accepted {
            Ok((tcp, peer)) => {
                tune(&tcp);
                tokio::spawn(serve_client(Arc::clone(&fe), tcp, peer));
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
