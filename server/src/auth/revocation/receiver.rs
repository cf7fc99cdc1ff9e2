//! The back-channel logout receiver's core, without HTTP: verify the logout token (signature,
//! then every claim of OpenID Connect Back-Channel Logout 1.0 §2.6), refuse a replayed `jti`
//! (in the shared store, so a replay to another instance is refused too), then revoke.

use std::sync::Arc;

use super::logout_token::{self, LogoutEvent, LogoutRules, LogoutTokenError};
use super::{JtiUse, Query, Revocation, RevocationService};
use crate::auth::oidc::TokenValidator;
use crate::auth::sasl::TokenSession;

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
        let revocation =
            revocation_for(&event).ok_or(LogoutError::Invalid(LogoutTokenError::NoSidOrSub))?;
        let store = self.revocation.store();
        match store
            .first_use(&event.issuer, &event.jti, &fingerprint(token))
            .await
        {
            Ok(JtiUse::First) => {}
            // The jti of another token: never twice, whatever that token names.
            Ok(JtiUse::OtherToken) => {
                tracing::info!(jti = %event.jti, "logout token refused: jti already used by another token");
                return Err(LogoutError::Invalid(LogoutTokenError::Replayed));
            }
            // This very token again: a replay if its logout was recorded. If it was not (the
            // store failed between the jti and the revocation, and the IdP got a 503), this is
            // the IdP's retry and must go through.
            Ok(JtiUse::SameToken) => {
                let Some(probe) = covered_session(&revocation) else {
                    return Err(LogoutError::Invalid(LogoutTokenError::Replayed));
                };
                let query = Query {
                    token: Some(&probe),
                    user: "",
                    authenticated_at: None,
                };
                match store.lookup(query).await {
                    Ok(Some(_)) => return Err(LogoutError::Invalid(LogoutTokenError::Replayed)),
                    Ok(None) => {
                        tracing::info!(jti = %event.jti, "retry of a logout that was not recorded")
                    }
                    Err(e) => return Err(LogoutError::Unavailable(e.to_string())),
                }
            }
            Err(e) => return Err(LogoutError::Unavailable(e.to_string())),
        }
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

/// The digest a logout token's `jti` is recorded with: only the very same token is a retry.
fn fingerprint(token: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A token session that `revocation` covers: asking the store about it tells whether the
/// revocation is recorded. `None` for a user revocation (logout tokens never make one).
fn covered_session(revocation: &Revocation) -> Option<TokenSession> {
    let (issuer, subject, sid, issued_at) = match revocation {
        Revocation::Session { issuer, sid } => (issuer, String::new(), Some(sid.clone()), 0),
        Revocation::Subject {
            issuer,
            subject,
            before,
        } => (issuer, subject.clone(), None, *before),
        Revocation::User { .. } => return None,
    };
    Some(TokenSession {
        issuer: issuer.clone(),
        subject,
        sid,
        expires_at: 0,
        issued_at: Some(issued_at),
        bearer: None,
    })
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
