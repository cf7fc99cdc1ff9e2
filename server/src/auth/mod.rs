//! Protocol-neutral authentication: nothing here knows IMAP, SMTP or HTTP.

pub mod bounded_cache;
pub mod directory;
pub mod oidc;
pub mod request_auth;
pub mod revocation;
pub mod sasl;
pub mod secret;
pub mod throttle;

use std::sync::Arc;

use directory::Directory;
use oidc::TokenValidator;
use revocation::RevocationService;
use throttle::{Attempt, LoginThrottle, Refusal};

/// What every mechanism may need to verify credentials. Built once at start-up and shared.
#[derive(Clone)]
pub struct AuthBackends {
    /// Who exists, and password checks for PLAIN/LOGIN.
    pub directory: Arc<dyn Directory>,
    /// Bearer-token validation; `None` when no `[oidc]` section is configured.
    pub validator: Option<Arc<dyn TokenValidator>>,
    /// `server.admins` (lower case): the only users whose authzid may name another user
    /// (delegation), on every protocol and mechanism.
    pub admins: Arc<[String]>,
    /// The deny-list and live sessions; `None` only in tests and embedders that go without.
    /// (`validator` is already wrapped in its check.)
    pub revocation: Option<Arc<RevocationService>>,
    /// The failed-login budget (`[login_throttle]`); `None` counts nothing (tests, embedders).
    pub throttle: Option<Arc<LoginThrottle>>,
}

impl AuthBackends {
    /// Whether `user` (canonical) may log in as another user through an authzid.
    pub fn may_act_as_others(&self, user: &str) -> bool {
        self.admins.iter().any(|a| a.eq_ignore_ascii_case(user))
    }

    /// Asks the failed-login budget before a secret is checked: every mechanism and every
    /// password path calls this first, and reports the outcome on the returned attempt.
    /// `user` is the name tried (`None` for tokens: not known before validation).
    pub async fn admit_login(
        &self,
        peer: Option<std::net::SocketAddr>,
        user: Option<&str>,
    ) -> Result<Attempt, Refusal> {
        match &self.throttle {
            Some(throttle) => throttle.admit(peer.map(|p| p.ip()), user).await,
            None => Ok(Attempt::unthrottled()),
        }
    }
}
