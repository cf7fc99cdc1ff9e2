//! The back-channel logout receiver's core, without HTTP: verify the logout token (signature,
//! then every claim of OpenID Connect Back-Channel Logout 1.0 §2.6), refuse a replayed `jti`
//! (in the shared store, so a replay to another instance is refused too), then revoke.

use std::sync::Arc;

use super::logout_token::{self, LogoutEvent, LogoutRules, LogoutTokenError};
use super::{Revocation, RevocationService};
use crate::auth::oidc::TokenValidator;

/// Why a logout was not carried out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogoutError {
    /// The token is not an acceptable logout token (HTTP 400); nothing was written.
    #[error("{0}")]
    Invalid(LogoutTokenError),
    /// The IdP's keys or the store could not be reached (HTTP 503); retry later.
    #[error("{0}")]
    Unavailable(String),
}

/// What the logout token asks for, as settings.
#[derive(Debug, Clone)]
pub struct LogoutSettings {
    pub audiences: Vec<String>,
    pub max_age: u64,
    pub leeway: u64,
}

pub struct LogoutReceiver {
    validator: Arc<dyn TokenValidator>,
    revocation: Arc<RevocationService>,
    settings: LogoutSettings,
}

impl LogoutReceiver {
    /// `validator` verifies signatures (the raw OIDC validator: the same keys and `alg` list as
    /// access tokens).
    pub fn new(
        validator: Arc<dyn TokenValidator>,
        revocation: Arc<RevocationService>,
        settings: LogoutSettings,
    ) -> Self {
        Self {
            validator,
            revocation,
            settings,
        }
    }

    /// Checks `token` fully and revokes what it names; returns what was revoked.
    pub async fn receive(&self, token: &str) -> Result<Revocation, LogoutError> {
        let event = self.verify(token).await?;
        match self
            .revocation
            .store()
            .first_use(&event.issuer, &event.jti)
            .await
        {
            Ok(true) => {}
            Ok(false) => return Err(LogoutError::Invalid(LogoutTokenError::Replayed)),
            Err(e) => return Err(LogoutError::Unavailable(e.to_string())),
        }
        let revocation =
            revocation_for(&event).ok_or(LogoutError::Invalid(LogoutTokenError::NoSidOrSub))?;
        self.revocation
            .revoke(revocation.clone())
            .await
            .map_err(|e| LogoutError::Unavailable(e.to_string()))?;
        Ok(revocation)
    }

    async fn verify(&self, token: &str) -> Result<LogoutEvent, LogoutError> {
        let signed = self.validator.verify_signed(token).await.map_err(|e| {
            if e.is_temporary() {
                LogoutError::Unavailable(e.to_string())
            } else {
                LogoutError::Invalid(LogoutTokenError::Token(e))
            }
        })?;
        logout_token::check_type(signed.typ.as_deref()).map_err(LogoutError::Invalid)?;
        let now = crate::time::now_unix().max(0) as u64;
        logout_token::check(
            &signed.claims,
            &LogoutRules {
                issuer: &signed.expected_issuer,
                audiences: &self.settings.audiences,
                max_age: self.settings.max_age,
                leeway: self.settings.leeway,
            },
            now,
        )
        .map_err(LogoutError::Invalid)
    }
}

/// A `sid` names one IdP session (§2.4: with both, the session is meant); `sub` alone means
/// every session of the user: tokens issued up to the logout token's `iat`, on the IdP's own
/// clock, so a replay could never move the line.
pub fn revocation_for(event: &LogoutEvent) -> Option<Revocation> {
    match (&event.sid, &event.subject) {
        (Some(sid), _) => Some(Revocation::Session {
            issuer: event.issuer.clone(),
            sid: sid.clone(),
        }),
        (None, Some(subject)) => Some(Revocation::Subject {
            issuer: event.issuer.clone(),
            subject: subject.clone(),
            before: event.issued_at,
        }),
        (None, None) => None,
    }
}
