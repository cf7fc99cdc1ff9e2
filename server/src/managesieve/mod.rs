//! ManageSieve front end (RFC 5804): users upload, check and activate their Sieve scripts.
//!
//! `parser` frames lines and types commands, `reply` builds every response, `session` is the
//! sans-IO state machine, `connection` owns sockets, TLS and timeouts. Scripts live in
//! [`crate::store::SieveScripts`]; whether a script is valid is decided by the injected
//! [`ScriptCheck`].

pub mod connection;
pub mod parser;
pub mod reply;
pub mod session;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::auth::AuthBackends;
use crate::auth::sasl::SaslRegistry;
use crate::config::SieveSection;
use crate::store::SieveScripts;

pub use connection::{ConnectionOptions, serve_limited, serve_with};
pub use session::SessionConfig;

/// Compiles a script: `Ok` if it is valid, else the error text with its line (`line N: ...`).
/// `server.rs` wires it to the Sieve interpreter (`crate::sieve::Script::compile`); tests may
/// inject their own.
pub type ScriptCheck = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// The `SIEVE` capability: exactly the extensions the interpreter accepts in `require`.
pub fn sieve_extensions() -> String {
    crate::sieve::SUPPORTED_EXTENSIONS.join(" ")
}

/// What every ManageSieve session shares.
pub struct SieveContext {
    pub hostname: String,
    pub config: SieveSection,
    pub registry: SaslRegistry,
    pub backends: AuthBackends,
    pub scripts: Arc<SieveScripts>,
    pub check: ScriptCheck,
    pub tls: Option<TlsAcceptor>,
}

impl SieveContext {
    /// The per-listener session settings.
    pub fn session_config(&self) -> SessionConfig {
        SessionConfig {
            hostname: self.hostname.clone(),
            registry: self.registry.clone(),
            max_auth_failures: self.config.max_auth_failures,
            allow_plaintext_auth: self.config.allow_plaintext_auth,
            starttls_available: self.tls.is_some(),
            scripts: self.scripts.clone(),
            check: self.check.clone(),
            extensions: sieve_extensions(),
            preauth_timeout: Duration::from_secs(self.config.preauth_timeout_seconds.max(1)),
            idle_timeout: Duration::from_secs(self.config.idle_timeout_seconds.max(1)),
        }
    }
}

/// Serves one listener until it fails, with the default I/O timeout.
pub async fn serve(listener: TcpListener, ctx: Arc<SieveContext>) {
    serve_with(listener, ctx, ConnectionOptions::default()).await
}
