//! The accept step every listener shares: the next connection, or none once shutdown is asked.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use super::ShutdownSignal;

/// The next accepted connection, or `None` once shutdown is requested. A failed accept (usually
/// out of file descriptors) is logged and retried after a pause instead of spinning.
pub async fn next_connection(
    listener: &TcpListener,
    shutdown: &mut ShutdownSignal,
    protocol: &'static str,
) -> Option<(TcpStream, SocketAddr)> {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.requested() => return None,
        };
        match accepted {
            Ok(accepted) => return Some(accepted),
            Err(e) => {
                tracing::warn!(error = %e, protocol, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
