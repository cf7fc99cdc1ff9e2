//! IMAP4rev1 front end (RFC 3501 with SASL-IR, LITERAL+, ID, IDLE, UIDPLUS, UNSELECT, CHILDREN,
//! MOVE, ENABLE, NAMESPACE). Layout: `framing` splits bytes into commands, imap-codec parses them, `session` is the
//! state machine with `commands/*` as handlers, `connection` does the I/O.

mod commands;
mod connection;
pub(crate) mod framing;
mod list_pattern;
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
use crate::limits::ListenerLimits;
use crate::store::MailStore;

pub use connection::{Io, run as run_connection, run_with as run_connection_with};

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
    /// Where heavy commands (LIST, SEARCH) run, off the async workers.
    pub offload: crate::offload::Offload,
    /// The server-wide budget of literal bytes being received.
    pub inflight: crate::inflight::InFlight,
}

/// Accepts connections until the listener fails, with default deadlines and no caps.
pub async fn serve(listener: TcpListener, kind: ImapListenerKind, ctx: Arc<ImapContext>) {
    serve_limited(listener, kind, ctx, ListenerLimits::unlimited("imap")).await
}

/// The refusal of a connection over a cap.
const TOO_MANY: &[u8] = b"* BYE [UNAVAILABLE] Too many connections, try again later.\r\n";

/// Accepts connections until shutdown; one task per session, each holding a connection
/// permit. Session tasks live in a `JoinSet` owned by this future, so aborting `serve` ends
/// its sessions too; on shutdown it stops accepting and waits for its sessions' goodbyes.
pub async fn serve_limited(
    listener: TcpListener,
    kind: ImapListenerKind,
    ctx: Arc<ImapContext>,
    limits: ListenerLimits,
) {
    let mut sessions = JoinSet::new();
    let mut shutdown = limits.session.shutdown.clone();
    loop {
        while sessions.try_join_next().is_some() {}
        let Some((tcp, peer)) =
            crate::limits::next_connection(&listener, &mut shutdown, "IMAP").await
        else {
            break;
        };
        let Some(permit) = limits.admit(peer) else {
            // Under implicit TLS a cleartext line would be noise: just close.
            if kind == ImapListenerKind::Plain {
                crate::limits::refuse(&tcp, TOO_MANY);
            }
            continue;
        };
        let ctx = ctx.clone();
        let session_limits = limits.session.clone();
        let span = tracing::info_span!("imap", %peer);
        sessions.spawn(
            async move {
                let _permit = permit;
                tracing::info!(?kind, "IMAP connection");
                let _ = tcp.set_nodelay(true);
                match kind {
                    ImapListenerKind::Plain => {
                        connection::run_with(
                            Box::new(tcp),
                            Some(peer),
                            false,
                            None,
                            ctx,
                            session_limits,
                        )
                        .await;
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
                                connection::run_with(
                                    Box::new(stream),
                                    Some(peer),
                                    true,
                                    binding,
                                    ctx,
                                    session_limits,
                                )
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
    drop(listener);
    while sessions.join_next().await.is_some() {}
}
