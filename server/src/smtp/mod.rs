//! SMTP front end: submission with AUTH (RFC 6409, 4954), inbound MX without (RFC 5321).
//!
//! `command` parses lines, `session` is the sans-IO state machine, `data` reads DATA bodies,
//! `delivery` stores accepted mail, `connection` owns sockets and TLS.

pub mod command;
pub mod connection;
pub mod data;
pub mod delivery;
pub mod refusals;
pub mod reply;
pub mod session;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::auth::AuthBackends;
use crate::auth::sasl::SaslRegistry;
use crate::config::{SmtpSection, SubmissionSection};
use crate::store::MailStore;

pub use connection::{ConnectionOptions, serve_limited, serve_with};

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
    /// Recipients' Sieve scripts.
    pub filter: Arc<crate::sieve::SieveFilter>,
    pub tls: Option<TlsAcceptor>,
    /// The server-wide budget of DATA bytes being received.
    pub inflight: crate::inflight::InFlight,
}

/// Serves one listener forever with the default timeouts (5 minutes idle).
pub async fn serve(listener: TcpListener, kind: SmtpListenerKind, ctx: Arc<SmtpContext>) {
    serve_with(listener, kind, ctx, ConnectionOptions::default()).await
}
