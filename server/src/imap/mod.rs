//! IMAP4rev1 front end (RFC 3501 with SASL-IR, LITERAL+, ID, IDLE, UIDPLUS, UNSELECT, CHILDREN,
//! MOVE). Layout: `framing` splits bytes into commands, imap-codec parses them, `session` is the
//! state machine with `commands/*` as handlers, `connection` does the I/O.

mod commands;
mod connection;
pub(crate) mod framing;
mod mime;
mod response;
mod selected;
pub(crate) mod session;
mod structure;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tracing::Instrument as _;

use crate::auth::AuthBackends;
use crate::auth::sasl::SaslRegistry;
use crate::config::ImapSection;
use crate::store::MailStore;

pub use connection::{Io, run as run_connection};

/// Whether a listener speaks TLS from the first byte or offers STARTTLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImapListenerKind {
    Plain,
    ImplicitTls,
}

/// What every IMAP session shares.
pub struct ImapContext {
    pub hostname: String,
    pub config: ImapSection,
    pub registry: SaslRegistry,
    pub backends: AuthBackends,
    pub store: Arc<dyn MailStore>,
    pub tls: Option<TlsAcceptor>,
}

/// Accepts connections until the listener fails; one task per session. Session tasks live in
/// a `JoinSet` owned by this future, so aborting `serve` ends its sessions too.
pub async fn serve(listener: TcpListener, kind: ImapListenerKind, ctx: Arc<ImapContext>) {
    let mut sessions = JoinSet::new();
    loop {
        while sessions.try_join_next().is_some() {}
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Usually out of file descriptors: back off instead of spinning.
                tracing::warn!(error = %e, "IMAP accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let ctx = ctx.clone();
        let span = tracing::info_span!("imap", %peer);
        sessions.spawn(
            async move {
                tracing::info!(?kind, "IMAP connection");
                let _ = tcp.set_nodelay(true);
                match kind {
                    ImapListenerKind::Plain => {
                        connection::run(Box::new(tcp), Some(peer), false, None, ctx).await;
                    }
                    ImapListenerKind::ImplicitTls => {
                        let Some(acceptor) = ctx.tls.clone() else {
                            tracing::error!("implicit-TLS IMAP listener without a certificate");
                            return;
                        };
                        let limit = Duration::from_secs(ctx.config.preauth_timeout_seconds.max(1));
                        match tokio::time::timeout(limit, acceptor.accept(tcp)).await {
                            Ok(Ok(stream)) => {
                                let binding = crate::tls::tls_exporter(stream.get_ref().1);
                                connection::run(Box::new(stream), Some(peer), true, binding, ctx)
                                    .await;
                            }
                            Ok(Err(e)) => tracing::info!(error = %e, "IMAP TLS handshake failed"),
                            Err(_) => tracing::info!("IMAP TLS handshake timed out"),
                        }
                    }
                }
                tracing::info!("IMAP connection closed");
            }
            .instrument(span),
        );
    }
}
