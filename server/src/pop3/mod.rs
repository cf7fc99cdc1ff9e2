//! POP3 front end (RFC 1939 with RFC 2449 CAPA and response codes, RFC 5034 AUTH, RFC 2595
//! STLS, implicit TLS). Layout: `command` parses lines, `session` is the sans-IO state machine,
//! `reply` builds every reply, `maildrop` is the INBOX snapshot and its lock, `connection` owns
//! sockets and TLS.

pub mod command;
pub mod connection;
pub mod maildrop;
pub mod reply;
pub mod session;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tracing::Instrument as _;

use crate::auth::AuthBackends;
use crate::auth::sasl::SaslRegistry;
use crate::config::Pop3Section;
use crate::limits::ListenerLimits;
use crate::store::MailStore;

pub use connection::{ConnectionOptions, Io, run as run_connection};
pub use maildrop::MaildropLocks;

/// Whether a listener speaks TLS from the first byte or offers STLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pop3ListenerKind {
    Plain,
    ImplicitTls,
}

/// What every POP3 session shares.
pub struct Pop3Context {
    pub hostname: String,
    pub config: Pop3Section,
    pub registry: SaslRegistry,
    pub backends: AuthBackends,
    pub store: Arc<dyn MailStore>,
    pub tls: Option<TlsAcceptor>,
    /// One maildrop lock per user, across both listeners.
    pub locks: Arc<MaildropLocks>,
}

/// Serves one listener with the configured timeouts.
pub async fn serve(listener: TcpListener, kind: Pop3ListenerKind, ctx: Arc<Pop3Context>) {
    let options = ConnectionOptions::from_config(&ctx.config);
    serve_with(listener, kind, ctx, options).await
}

/// Accepts connections until the listener fails, with no caps.
pub async fn serve_with(
    listener: TcpListener,
    kind: Pop3ListenerKind,
    ctx: Arc<Pop3Context>,
    options: ConnectionOptions,
) {
    serve_limited(
        listener,
        kind,
        ctx,
        options,
        ListenerLimits::unlimited("pop3"),
    )
    .await
}

/// The refusal of a connection over a cap.
const TOO_MANY: &[u8] = b"-ERR [SYS/TEMP] Too many connections, try again later.\r\n";

/// Accepts connections until shutdown; one task per session, each holding a connection
/// permit. Session tasks live in a `JoinSet` owned by this future, so aborting it ends its
/// sessions too; on shutdown it stops accepting and waits for its sessions' goodbyes.
pub async fn serve_limited(
    listener: TcpListener,
    kind: Pop3ListenerKind,
    ctx: Arc<Pop3Context>,
    options: ConnectionOptions,
    limits: ListenerLimits,
) {
    if kind == Pop3ListenerKind::ImplicitTls && ctx.tls.is_none() {
        tracing::error!("implicit-TLS POP3 listener without a TLS certificate; not serving");
        return;
    }
    let mut sessions = JoinSet::new();
    let mut shutdown = limits.session.shutdown.clone();
    loop {
        while sessions.try_join_next().is_some() {}
        let Some((tcp, peer)) =
            crate::limits::next_connection(&listener, &mut shutdown, "POP3").await
        else {
            break;
        };
        let Some(permit) = limits.admit(peer) else {
            // Under implicit TLS a cleartext line would be noise: just close.
            if kind == Pop3ListenerKind::Plain {
                crate::limits::refuse(&tcp, TOO_MANY);
            }
            continue;
        };
        // Replies are small writes; without NODELAY each one can wait for a delayed ACK.
        let _ = tcp.set_nodelay(true);
        let ctx = ctx.clone();
        let session_limits = limits.session.clone();
        let span = tracing::info_span!("pop3", %peer, ?kind);
        sessions.spawn(
            async move {
                let _permit = permit;
                tracing::debug!("POP3 connection");
                match (kind, ctx.tls.clone()) {
                    (Pop3ListenerKind::ImplicitTls, Some(acceptor)) => {
                        match tokio::time::timeout(options.preauth_timeout, acceptor.accept(tcp))
                            .await
                        {
                            Ok(Ok(stream)) => {
                                let binding = crate::tls::tls_exporter(stream.get_ref().1);
                                let io = Box::new(stream);
                                connection::run_limited(
                                    io,
                                    Some(peer),
                                    true,
                                    binding,
                                    ctx,
                                    options,
                                    session_limits,
                                )
                                .await;
                            }
                            Ok(Err(e)) => tracing::info!(error = %e, "POP3 TLS handshake failed"),
                            Err(_) => tracing::info!("POP3 TLS handshake timed out"),
                        }
                    }
                    _ => {
                        connection::run_limited(
                            Box::new(tcp),
                            Some(peer),
                            false,
                            None,
                            ctx,
                            options,
                            session_limits,
                        )
                        .await
                    }
                }
                tracing::debug!("POP3 connection closed");
            }
            .instrument(span),
        );
    }
    drop(listener);
    while sessions.join_next().await.is_some() {}
}
