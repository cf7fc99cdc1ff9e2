//! The SASL SPI (JAMES-4210 in Rust terms): a mechanism starts an exchange, an exchange steps
//! until success or failure. [`driver`] runs exchanges for every protocol; front ends only frame
//! the messages and map outcomes to their wire replies.

pub mod driver;
mod login;
mod oauthbearer;
pub(crate) mod parse;
mod plain;
mod registry;
pub(crate) mod scram;
mod xoauth2;

pub use driver::{AuthAction, AuthDone, AuthWork, SaslDriver, SuccessData};
pub use login::Login;
pub use oauthbearer::OAuthBearer;
pub use plain::Plain;
pub use registry::{SaslRegistry, default_mechanisms};
pub use scram::{NonceSource, ScramSha256};
pub use xoauth2::XOAuth2;

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;

/// Which front end runs the exchange; decides defaults and reply shapes, never mechanism logic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Imap,
    Smtp,
    Pop3,
    ManageSieve,
}

/// What a mechanism may know about the session it runs in.
#[derive(Debug, Clone)]
pub struct SessionContext {
    pub protocol: Protocol,
    /// The connection is protected by TLS (implicit or after STARTTLS).
    pub tls: bool,
    /// Plaintext mechanisms (PLAIN, LOGIN) are offered without TLS (config `allow_plaintext_auth`).
    pub allow_plaintext_without_tls: bool,
    pub peer: Option<SocketAddr>,
    /// The TLS channel binding of this connection (RFC 9266 `tls-exporter`), once TLS is up;
    /// SCRAM-SHA-256-PLUS is only offered with one.
    pub channel_binding: Option<ChannelBinding>,
}

/// Channel-binding data of a TLS connection (RFC 5056), as `-PLUS` mechanisms bind to it.
#[derive(Clone, PartialEq, Eq)]
pub struct ChannelBinding {
    /// The RFC 5929/9266 type name; `tls-exporter` is the only one we produce.
    pub kind: &'static str,
    pub data: Vec<u8>,
}

/// The data stays out of logs: it is a secret derived from the TLS session.
impl std::fmt::Debug for ChannelBinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelBinding")
            .field("kind", &self.kind)
            .field("len", &self.data.len())
            .finish_non_exhaustive()
    }
}

impl SessionContext {
    /// Whether a mechanism that sends a password in clear may run now.
    pub fn plaintext_allowed(&self) -> bool {
        self.tls || self.allow_plaintext_without_tls
    }
}

/// The OIDC session a token-based login came from, kept for revocation and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSession {
    pub issuer: String,
    pub subject: String,
    pub sid: Option<String>,
    /// Unix seconds.
    pub expires_at: u64,
    /// `iat`, Unix seconds.
    pub issued_at: Option<u64>,
    /// The access token itself, kept only for the introspection re-check of live sessions.
    pub bearer: Option<crate::auth::secret::Secret>,
}

/// Who logged in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslIdentity {
    /// The directory user whose credentials (password or token) were verified.
    pub authentication_id: String,
    /// The user whose mail is accessed; equal to `authentication_id` unless delegation is allowed.
    pub authorization_id: String,
    /// Set for bearer-token logins.
    pub token: Option<TokenSession>,
}

/// Why an exchange failed. Each kind maps to one wire reply per protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaslFailure {
    /// The client's message does not follow the mechanism's syntax (bad base64, bad GS2 header).
    #[error("malformed SASL message: {0}")]
    Malformed(String),
    /// Wrong password or an invalid token; `reason` is for logs (e.g. `expired`, `bad_signature`).
    #[error("invalid credentials: {reason}")]
    InvalidCredentials { reason: String },
    /// The authzid names another user and delegation is not allowed.
    #[error("authorization identity {authzid:?} differs from authenticated user {authcid:?}")]
    DelegationForbidden { authcid: String, authzid: String },
    /// The IdP or the directory could not be reached: try again later.
    #[error("temporary failure: {0}")]
    TemporaryFailure(String),
    /// The client cancelled with `*`.
    #[error("authentication aborted by client")]
    Aborted,
    /// The client cancelled with `*` after its credentials were refused (an RFC 7628 error
    /// challenge went out): the wire reply of an abort, but it counts as a failed attempt.
    #[error("authentication aborted after the credentials were refused: {reason}")]
    AbortedAfterRefusal { reason: String },
    /// The mechanism is not offered in this session (unknown or disabled).
    #[error("mechanism not available: {0}")]
    MechanismUnavailable(String),
    /// The mechanism is enabled but only offered under TLS (plaintext passwords).
    #[error("mechanism {0} needs TLS")]
    EncryptionRequired(String),
    /// A client response that is not base64.
    #[error("invalid base64 in a SASL response")]
    InvalidBase64,
    /// Too many failed logins from this address or for this user name: refused without a
    /// check until the delay passes (`[login_throttle]`).
    #[error("throttled: too many failed logins; retry in {retry_after_seconds}s")]
    Throttled { retry_after_seconds: u64 },
}

impl From<crate::auth::throttle::Refusal> for SaslFailure {
    fn from(refusal: crate::auth::throttle::Refusal) -> Self {
        use crate::auth::throttle::{Refusal, retry_after_seconds};
        match refusal {
            Refusal::Throttled { retry_after } => SaslFailure::Throttled {
                retry_after_seconds: retry_after_seconds(retry_after),
            },
            Refusal::Unavailable(why) => SaslFailure::TemporaryFailure(why),
        }
    }
}

/// The outcome of one exchange step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaslStep {
    /// Send these bytes (base64-encoded by the front end) and wait for the client's next message.
    Challenge(Vec<u8>),
    Success {
        identity: SaslIdentity,
        /// Additional data with outcome of success (SCRAM's `v=` server signature).
        server_data: Option<Vec<u8>>,
    },
    Failure(SaslFailure),
}

/// A SASL mechanism. Other crates may implement it and register it in a [`SaslRegistry`].
pub trait SaslMechanism: Send + Sync {
    /// IANA name, upper case (`PLAIN`, `OAUTHBEARER`).
    fn name(&self) -> &str;
    /// Whether the mechanism is offered in this session (e.g. PLAIN only under TLS).
    fn available(&self, ctx: &SessionContext) -> bool;
    /// Starts an exchange. `initial` is the decoded initial response (SASL-IR), if any; an empty
    /// initial response (`=`) is `Some(&[])`.
    fn start(&self, initial: Option<&[u8]>, ctx: &SessionContext) -> Box<dyn SaslExchange>;

    /// Called by [`SaslRegistry::enable`] with the names (upper case) of every mechanism the
    /// listener offers. A mechanism whose behaviour depends on its siblings returns an adjusted
    /// copy to use instead: SCRAM-SHA-256 must know whether SCRAM-SHA-256-PLUS is offered to
    /// tell a channel-binding downgrade from a client that simply saw no -PLUS.
    fn with_siblings(&self, _offered: &[String]) -> Option<Arc<dyn SaslMechanism>> {
        None
    }
}

/// One running authentication. Dropping it releases whatever it holds.
#[async_trait]
pub trait SaslExchange: Send {
    /// Advances the exchange. `client` is `None` on the first step when there was no initial
    /// response, otherwise the client's decoded message (possibly empty).
    ///
    /// OAUTHBEARER/XOAUTH2 failures follow RFC 7628: the exchange first returns
    /// `Challenge(error JSON)`, and only after the client's dummy reply `Failure(..)`.
    async fn step(&mut self, client: Option<&[u8]>) -> SaslStep;

    /// The client cancelled with `*`. An exchange that already refused the credentials says
    /// so, so the front end counts the attempt as failed.
    fn abort(&mut self) -> SaslFailure {
        SaslFailure::Aborted
    }
}

impl SaslFailure {
    /// Whether the attempt counts toward `max_auth_failures` (a plain abort or an unreachable
    /// IdP does not).
    pub fn counts_as_failure(&self) -> bool {
        matches!(
            self,
            SaslFailure::InvalidCredentials { .. }
                | SaslFailure::DelegationForbidden { .. }
                | SaslFailure::Malformed(_)
                | SaslFailure::InvalidBase64
                | SaslFailure::AbortedAfterRefusal { .. }
                | SaslFailure::Throttled { .. }
        )
    }
}
