//! SMTP front end: submission with AUTH, inbound without (placeholder until implemented).

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::auth::AuthBackends;
use crate::auth::sasl::SaslRegistry;
use crate::config::{SmtpSection, SubmissionSection};
use crate::store::MailStore;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpListenerKind {
    /// Submission with STARTTLS; AUTH required before MAIL.
    Submission,
    /// Submission over implicit TLS.
    SubmissionImplicitTls,
    /// Inbound MX: no AUTH, only recipients the directory knows.
    Inbound,
}

/// What every SMTP session shares.
pub struct SmtpContext {
    pub hostname: String,
    pub submission: SubmissionSection,
    pub inbound: SmtpSection,
    pub registry: SaslRegistry,
    pub backends: AuthBackends,
    pub store: Arc<dyn MailStore>,
    pub tls: Option<TlsAcceptor>,
}

pub async fn serve(_listener: TcpListener, _kind: SmtpListenerKind, _ctx: Arc<SmtpContext>) {
    todo!()
}
