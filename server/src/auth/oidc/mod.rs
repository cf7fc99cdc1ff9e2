//! Bearer-token validation: discovery, JWKS cache, claim checks, optional introspection.

pub(crate) mod claims;
mod config;
mod discovery;
mod idp_client;
mod introspection;
mod jwks;
pub(crate) mod jws;
mod public_key;
mod validator;

#[cfg(test)]
mod tests;

pub use config::{IntrospectionConfig, OidcValidatorConfig};
pub use validator::OidcValidator;

use async_trait::async_trait;
use serde_json::{Map, Value};

use crate::auth::sasl::TokenSession;
use crate::auth::secret::Secret;

/// What a valid token says about its holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedToken {
    /// The directory user (from the configured username claim, mapped through the directory).
    pub username: String,
    pub issuer: String,
    pub subject: String,
    pub sid: Option<String>,
    /// Unix seconds.
    pub expires_at: u64,
    /// `iat`, Unix seconds (revocations by subject compare against it).
    pub issued_at: Option<u64>,
}

impl ValidatedToken {
    /// The OIDC session this token belongs to; `bearer` (the token itself) only where a
    /// re-check must present it again.
    pub fn session(&self, bearer: Option<&str>) -> TokenSession {
        TokenSession {
            issuer: self.issuer.clone(),
            subject: self.subject.clone(),
            sid: self.sid.clone(),
            expires_at: self.expires_at,
            issued_at: self.issued_at,
            bearer: bearer.map(Secret::new),
        }
    }
}

/// A JWS whose signature verified against the issuer's keys; no claim is checked yet.
#[derive(Debug, Clone)]
pub struct SignedJwt {
    /// Header `typ`, if any.
    pub typ: Option<String>,
    pub claims: Map<String, Value>,
    /// The issuer the claims must name (configured or discovered).
    pub expected_issuer: String,
}

/// Why a token was refused. `code()` is stable: it is used in logs and (for HTTP) in
/// `error_description`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token is not a well-formed JWT: {0}")]
    Malformed(String),
    #[error("signature does not verify")]
    BadSignature,
    #[error("no key with kid {0:?} in the issuer's JWKS")]
    UnknownKey(String),
    #[error("algorithm {0} is not allowed")]
    AlgorithmNotAllowed(String),
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet (nbf in the future)")]
    NotYetValid,
    #[error("issuer {0:?} is not the configured issuer")]
    WrongIssuer(String),
    #[error("audience does not contain the configured audience")]
    WrongAudience,
    #[error("required claim {0} is missing")]
    MissingClaim(String),
    #[error("token type {0:?} is not an access token")]
    WrongType(String),
    #[error("introspection says the token is not active")]
    Inactive,
    #[error("user {0:?} is not in the directory")]
    UnknownUser(String),
    /// An ID token (or another non-access token) presented as an access token.
    #[error("not an access token: {0}")]
    NotAnAccessToken(String),
    /// On the deny-list: the session was logged out or its subject revoked.
    #[error("{0}")]
    Revoked(String),
    /// The IdP (discovery, JWKS, introspection) or the directory could not be reached.
    #[error("identity provider unavailable: {0}")]
    Unavailable(String),
}

impl TokenError {
    /// Short stable reason code for logs and RFC 6750 `error_description`.
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::Malformed(_) => "malformed",
            TokenError::BadSignature => "bad_signature",
            TokenError::UnknownKey(_) => "unknown_kid",
            TokenError::AlgorithmNotAllowed(_) => "alg_not_allowed",
            TokenError::Expired => "expired",
            TokenError::NotYetValid => "not_yet_valid",
            TokenError::WrongIssuer(_) => "wrong_issuer",
            TokenError::WrongAudience => "wrong_audience",
            TokenError::MissingClaim(_) => "missing_claim",
            TokenError::WrongType(_) => "wrong_type",
            TokenError::Inactive => "inactive",
            TokenError::UnknownUser(_) => "unknown_user",
            TokenError::NotAnAccessToken(_) => "not_access_token",
            TokenError::Revoked(_) => "revoked",
            TokenError::Unavailable(_) => "unavailable",
        }
    }

    /// A temporary failure: the client should retry later, not discard its token.
    pub fn is_temporary(&self) -> bool {
        matches!(self, TokenError::Unavailable(_))
    }
}

/// Validates bearer tokens. The OIDC implementation is [`OidcValidator`].
#[async_trait]
pub trait TokenValidator: Send + Sync {
    async fn validate(&self, token: &str) -> Result<ValidatedToken, TokenError>;
    /// The discovery URL sent in RFC 7628 error challenges (`openid-configuration`).
    fn discovery_url(&self) -> String;
    /// The scope sent in RFC 7628 error challenges.
    fn required_scope(&self) -> String;
    /// The issuer identifier (RFC 9728 `authorization_servers`), when known without I/O:
    /// configured, or learnt from discovery. `None` = not known yet.
    fn issuer(&self) -> Option<String> {
        None
    }
    /// Verifies a JWS from the issuer (same `alg` allow-list and key cache as access tokens)
    /// without checking any claim: the logout-token receiver checks its own.
    async fn verify_signed(&self, token: &str) -> Result<SignedJwt, TokenError> {
        let _ = token;
        Err(TokenError::Unavailable(
            "this validator cannot verify other JWTs".into(),
        ))
    }
    /// Asks the IdP again, bypassing every cache, whether `token` is still active (RFC 7662);
    /// `Ok` without introspection configured.
    async fn recheck(&self, token: &str) -> Result<(), TokenError> {
        let _ = token;
        Ok(())
    }
}
