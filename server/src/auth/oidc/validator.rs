//! The OIDC bearer-token validator: structure and header, key, signature, claims, directory,
//! then (optionally) introspection.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use jsonwebtoken::Algorithm;
use sha2::{Digest, Sha256};

use super::claims::{self, CheckedClaims, ClaimRules};
use super::config::OidcValidatorConfig;
use super::discovery::{Discovery, Endpoints, Overrides};
use super::idp_client::IdpClient;
use super::introspection::Introspector;
use super::jwks::JwksCache;
use super::{SignedJwt, TokenError, TokenValidator, ValidatedToken, jws};
use crate::auth::bounded_cache::BoundedCache;
use crate::auth::directory::Directory;
use crate::config::ConfigError;

pub struct OidcValidator {
    discovery_url: String,
    scope: String,
    audience: Vec<String>,
    username_claim: String,
    leeway: u64,
    algorithms: Vec<Algorithm>,
    discovery: Discovery,
    jwks: JwksCache,
    introspection: Option<Introspector>,
    directory: Arc<dyn Directory>,
    /// Tokens whose signature and claims verified (RSA verification dominated a login's CPU).
    verified_tokens: BoundedCache<TokenHash, CheckedClaims>,
}

/// A token's SHA-256: the cache never holds a usable token.
type TokenHash = [u8; 32];

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl OidcValidator {
    pub fn new(
        config: OidcValidatorConfig,
        directory: Arc<dyn Directory>,
    ) -> Result<Self, ConfigError> {
        let http = IdpClient::new(config.http_timeout, config.ca_cert_pem.as_deref())?;
        let introspection_endpoint = config
            .introspection
            .as_ref()
            .and_then(|i| i.endpoint.clone());
        let discovery = match (&config.discovery_url, &config.issuer, &config.jwks_url) {
            (Some(url), _, _) => Discovery::remote(
                url.clone(),
                Overrides {
                    issuer: config.issuer.clone(),
                    jwks_uri: config.jwks_url.clone(),
                    introspection_endpoint,
                },
                http.clone(),
            ),
            (None, Some(issuer), Some(jwks_url)) => Discovery::Fixed(Arc::new(Endpoints {
                issuer: issuer.clone(),
                jwks_uri: jwks_url.clone(),
                introspection_endpoint,
            })),
            _ => {
                return Err(ConfigError::Invalid {
                    key: "oidc".into(),
                    message: "set `discovery_url`, or both `issuer` and `jwks_url`".into(),
                });
            }
        };
        Ok(Self {
            discovery_url: config.discovery_url(),
            scope: config.scope.clone(),
            jwks: JwksCache::new(
                http.clone(),
                config.jwks_refetch_interval,
                config.jwks_max_age,
            ),
            introspection: config
                .introspection
                .as_ref()
                .map(|i| Introspector::new(http.clone(), i)),
            audience: config.audience,
            username_claim: config.username_claim,
            leeway: config.leeway.as_secs(),
            algorithms: config.algorithms,
            discovery,
            directory,
            verified_tokens: BoundedCache::new(config.token_cache_ttl, config.token_cache_capacity),
        })
    }

    /// Structure, `alg`, key and signature; the issuer the claims must name.
    async fn verified<'t>(
        &self,
        token: &'t str,
    ) -> Result<(jws::Jws<'t>, Arc<Endpoints>), TokenError> {
        let jws = jws::parse(token)?;
        let alg = jws::check_algorithm(&jws.header.alg, &self.algorithms)?;
        let endpoints = self.discovery.endpoints().await?;
        let key = self
            .jwks
            .key_for(&endpoints.jwks_uri, &jws.header, alg)
            .await?;
        jws.verify(&key.key, alg)?;
        Ok((jws, endpoints))
    }

    /// Tokens currently remembered as verified.
    #[cfg(test)]
    pub(super) fn verified_tokens_len(&self) -> usize {
        self.verified_tokens.len()
    }

    /// Structure, type, signature and claims: everything that depends on the token alone,
    /// so its outcome is remembered (by hash, until `exp` at the latest) in `verified_tokens`.
    async fn checked_claims(&self, token: &str) -> Result<CheckedClaims, TokenError> {
        let hash: TokenHash = Sha256::digest(token.as_bytes()).into();
        if let Some(checked) = self.verified_tokens.get(&hash, Instant::now())
            && checked.expires_at > unix_now()
        {
            return Ok(checked);
        }
        // The header `typ` is refused before any I/O: no key fetch for a logout token.
        jws::check_type(jws::parse(token)?.header.typ.as_deref())?;
        let (jws, endpoints) = self.verified(token).await?;
        let now = unix_now();
        let claims = jws.claims()?;
        claims::check_access_token(jws.header.typ.as_deref(), &claims)?;
        let checked = claims::check(
            &claims,
            &ClaimRules {
                issuer: &endpoints.issuer,
                audience: &self.audience,
                leeway: self.leeway,
                username_claim: &self.username_claim,
            },
            now,
        )?;
        self.verified_tokens.put(
            hash,
            checked.clone(),
            Duration::from_secs(checked.expires_at.saturating_sub(now)),
            Instant::now(),
        );
        Ok(checked)
    }

    async fn check(&self, token: &str) -> Result<ValidatedToken, TokenError> {
        let checked = self.checked_claims(token).await?;
        let now = unix_now();
        let username = match self.directory.lookup(&checked.username).await {
            Ok(Some(canonical)) => canonical,
            Ok(None) => return Err(TokenError::UnknownUser(checked.username)),
            Err(e) => return Err(TokenError::Unavailable(e.to_string())),
        };
        if let Some(introspector) = &self.introspection {
            let endpoints = self.discovery.endpoints().await?;
            let lifetime = Duration::from_secs(checked.expires_at.saturating_sub(now));
            introspector
                .check(endpoints.introspection_endpoint.as_deref(), token, lifetime)
                .await?;
        }
        Ok(ValidatedToken {
            username,
            issuer: checked.issuer,
            subject: checked.subject,
            sid: checked.sid,
            expires_at: checked.expires_at,
            issued_at: checked.issued_at,
        })
    }
}

#[async_trait]
impl TokenValidator for OidcValidator {
    async fn validate(&self, token: &str) -> Result<ValidatedToken, TokenError> {
        let result = self.check(token).await;
        // The token itself is never logged: it is a credential.
        match &result {
            Ok(t) => tracing::debug!(user = %t.username, sub = %t.subject, "bearer token accepted"),
            Err(e) => tracing::info!(code = e.code(), reason = %e, "bearer token refused"),
        }
        result
    }

    fn discovery_url(&self) -> String {
        self.discovery_url.clone()
    }

    fn required_scope(&self) -> String {
        self.scope.clone()
    }

    fn issuer(&self) -> Option<String> {
        self.discovery.issuer()
    }

    async fn verify_signed(&self, token: &str) -> Result<SignedJwt, TokenError> {
        let (jws, endpoints) = self.verified(token).await?;
        Ok(SignedJwt {
            typ: jws.header.typ.clone(),
            claims: jws.claims()?,
            expected_issuer: endpoints.issuer.clone(),
        })
    }

    async fn recheck(&self, token: &str) -> Result<(), TokenError> {
        let Some(introspector) = &self.introspection else {
            return Ok(());
        };
        let endpoints = self.discovery.endpoints().await?;
        introspector
            .recheck(endpoints.introspection_endpoint.as_deref(), token)
            .await
    }
}
