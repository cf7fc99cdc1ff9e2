//! The revocation check as a layer around any [`TokenValidator`]: a token that passes every
//! signature and claim check is then looked up in the deny-list. SASL mechanisms and the HTTP
//! bearer strategy use the wrapped validator and need to know nothing about revocation.

use std::sync::Arc;

use async_trait::async_trait;

use super::RevocationService;
use crate::auth::oidc::{SignedJwt, TokenError, TokenValidator, ValidatedToken};

pub struct RevocationCheckingValidator {
    inner: Arc<dyn TokenValidator>,
    service: Arc<RevocationService>,
}

impl RevocationCheckingValidator {
    pub fn new(inner: Arc<dyn TokenValidator>, service: Arc<RevocationService>) -> Self {
        Self { inner, service }
    }
}

#[async_trait]
impl TokenValidator for RevocationCheckingValidator {
    async fn validate(&self, token: &str) -> Result<ValidatedToken, TokenError> {
        let validated = self.inner.validate(token).await?;
        self.service
            .check(&validated.session(None), &validated.username)
            .await?;
        Ok(validated)
    }

    fn discovery_url(&self) -> String {
        self.inner.discovery_url()
    }

    fn required_scope(&self) -> String {
        self.inner.required_scope()
    }

    fn issuer(&self) -> Option<String> {
        self.inner.issuer()
    }

    async fn verify_signed(&self, token: &str) -> Result<SignedJwt, TokenError> {
        self.inner.verify_signed(token).await
    }

    async fn recheck(&self, token: &str) -> Result<(), TokenError> {
        self.inner.recheck(token).await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::auth::revocation::{
        MemoryRevocationStore, Revocation, RevocationStore, SessionRegistry,
    };
    use crate::testkit::{TestValidator, token_for};

    struct DownStore;

    #[async_trait]
    impl RevocationStore for DownStore {
        async fn revoke(&self, _: &Revocation) -> Result<(), crate::auth::revocation::StoreError> {
            Err(crate::auth::revocation::StoreError("down".into()))
        }
        async fn lookup(
            &self,
            _: crate::auth::revocation::Query<'_>,
        ) -> Result<Option<String>, crate::auth::revocation::StoreError> {
            Err(crate::auth::revocation::StoreError(
                "connection refused".into(),
            ))
        }
        async fn first_use(
            &self,
            _: &str,
            _: &str,
            _: &str,
        ) -> Result<crate::auth::revocation::JtiUse, crate::auth::revocation::StoreError> {
            Err(crate::auth::revocation::StoreError("down".into()))
        }
        fn subscribe(&self) -> tokio::sync::broadcast::Receiver<crate::auth::revocation::Notice> {
            tokio::sync::broadcast::channel(1).1
        }
        fn kind(&self) -> &'static str {
            "down"
        }
    }

    fn wrapped(store: Arc<dyn RevocationStore>, fail_open: bool) -> RevocationCheckingValidator {
        let inner = TestValidator::new();
        inner.set("good", Ok(token_for("alice@example.com")));
        let service = RevocationService::new(store, SessionRegistry::new(false), fail_open);
        RevocationCheckingValidator::new(inner, service)
    }

    #[tokio::test]
    async fn revoked_sid_is_refused_after_the_inner_checks() {
        let store = Arc::new(MemoryRevocationStore::new(Duration::from_secs(60)));
        let v = wrapped(store.clone(), false);
        assert!(v.validate("good").await.is_ok());
        let t = token_for("alice@example.com");
        store
            .revoke(&Revocation::Session {
                issuer: t.issuer.clone(),
                sid: t.sid.clone().expect("sid"),
            })
            .await
            .expect("revoke");
        match v.validate("good").await {
            Err(TokenError::Revoked(why)) => assert!(why.contains("logged out"), "{why}"),
            other => panic!("expected Revoked, got {other:?}"),
        }
        // Inner refusals are untouched.
        assert_eq!(v.validate("other").await, Err(TokenError::BadSignature));
    }

    #[tokio::test]
    async fn unreachable_store_fails_closed_unless_configured_open() {
        let closed = wrapped(Arc::new(DownStore), false);
        match closed.validate("good").await {
            Err(e @ TokenError::Unavailable(_)) => assert!(e.is_temporary()),
            other => panic!("expected Unavailable, got {other:?}"),
        }
        let open = wrapped(Arc::new(DownStore), true);
        assert!(open.validate("good").await.is_ok());
    }
}
