//! IMAP4rev1 front end (placeholder until implemented).

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::auth::AuthBackends;
use crate::auth::sasl::SaslRegistry;
use crate::config::ImapSection;
use crate::store::MailStore;

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

/// Accepts connections until the listener fails; one task per session.
pub async fn serve(_listener: TcpListener, _kind: ImapListenerKind, _ctx: Arc<ImapContext>) {
    todo!()
}
