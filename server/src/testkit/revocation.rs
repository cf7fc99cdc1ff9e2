//! Helpers for the revocation tests (and the protocol tests that end sessions): a store that
//! records every write, a store that is down, token sessions and logout tokens.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::auth::revocation::logout_token::BACKCHANNEL_LOGOUT_EVENT;
use crate::auth::revocation::{
    JtiUse, MemoryRevocationStore, Notice, Query, Revocation, RevocationStore, StoreError,
};
use crate::auth::sasl::TokenSession;
use crate::testkit::oidc::{FakeIdp, TestKey, keys, mint};

/// The audience logout tokens are minted for (the IdP's client id).
pub const CLIENT_ID: &str = "mail";

/// Unix seconds now.
pub fn now() -> u64 {
    crate::time::now_unix().max(0) as u64
}

/// A value no other call in this test process returns (jti, sid, key prefix).
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!(
        "{prefix}{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A token session of `issuer`/`subject`/`sid` issued at `iat`, valid for an hour.
pub fn token_session(issuer: &str, subject: &str, sid: Option<&str>, iat: u64) -> TokenSession {
    TokenSession {
        issuer: issuer.into(),
        subject: subject.into(),
        sid: sid.map(str::to_string),
        expires_at: now() + 3600,
        issued_at: Some(iat),
        bearer: None,
    }
}

/// One `first_use` call: issuer, jti, and whether it was the jti's first use.
pub type JtiCall = (String, String, bool);

/// A [`MemoryRevocationStore`] that records every write, so a test can prove a refused logout
/// token wrote nothing.
pub struct RecordingStore {
    inner: MemoryRevocationStore,
    revokes: Mutex<Vec<Revocation>>,
    jtis: Mutex<Vec<JtiCall>>,
}

impl RecordingStore {
    pub fn new() -> Self {
        Self {
            inner: MemoryRevocationStore::new(Duration::from_secs(3600)),
            revokes: Mutex::default(),
            jtis: Mutex::default(),
        }
    }

    pub fn revokes(&self) -> Vec<Revocation> {
        self.revokes.lock().expect("lock").clone()
    }

    pub fn jtis(&self) -> Vec<JtiCall> {
        self.jtis.lock().expect("lock").clone()
    }

    /// Revocations plus jti uses that recorded something new.
    pub fn writes(&self) -> usize {
        self.revokes().len() + self.jtis().iter().filter(|(_, _, first)| *first).count()
    }
}

#[async_trait]
impl RevocationStore for RecordingStore {
    async fn revoke(&self, revocation: &Revocation) -> Result<(), StoreError> {
        self.revokes.lock().expect("lock").push(revocation.clone());
        self.inner.revoke(revocation).await
    }

    async fn lookup(&self, query: Query<'_>) -> Result<Option<String>, StoreError> {
        self.inner.lookup(query).await
    }

    async fn first_use(
        &self,
        issuer: &str,
        jti: &str,
        fingerprint: &str,
    ) -> Result<JtiUse, StoreError> {
        let seen = self.inner.first_use(issuer, jti, fingerprint).await?;
        self.jtis
            .lock()
            .expect("lock")
            .push((issuer.into(), jti.into(), seen == JtiUse::First));
        Ok(seen)
    }

    fn subscribe(&self) -> broadcast::Receiver<Notice> {
        self.inner.subscribe()
    }

    fn kind(&self) -> &'static str {
        "recording"
    }
}

/// A store that cannot be reached: every operation fails.
pub struct DownStore;

#[async_trait]
impl RevocationStore for DownStore {
    async fn revoke(&self, _: &Revocation) -> Result<(), StoreError> {
        Err(StoreError("connection refused".into()))
    }

    async fn lookup(&self, _: Query<'_>) -> Result<Option<String>, StoreError> {
        Err(StoreError("connection refused".into()))
    }

    async fn first_use(&self, _: &str, _: &str, _: &str) -> Result<JtiUse, StoreError> {
        Err(StoreError("connection refused".into()))
    }

    fn subscribe(&self) -> broadcast::Receiver<Notice> {
        broadcast::channel(1).1
    }

    fn kind(&self) -> &'static str {
        "down"
    }
}

/// The claims of a good logout token from `idp` as LemonLDAP::NG 2.21 sends them: `aud` an
/// array, no `exp`, both `sid` and `sub`, a fresh `jti`.
pub fn logout_claims(idp: &FakeIdp, sid: &str) -> Value {
    json!({
        "iss": idp.issuer(),
        "aud": [CLIENT_ID],
        "iat": now(),
        "jti": unique("jti-"),
        "events": { BACKCHANNEL_LOGOUT_EVENT: {} },
        "sid": sid,
        "sub": "sub-alice",
    })
}

/// Signs `claims` with the IdP's key, header `typ` as given.
pub fn signed(typ: Option<&str>, claims: &Value) -> String {
    signed_with(&keys().idp, typ, claims)
}

pub fn signed_with(key: &TestKey, typ: Option<&str>, claims: &Value) -> String {
    mint(key, typ, Some(&key.kid), claims)
}

/// Backends wired as the server wires them for a protocol test that ends sessions: a memory
/// deny-list whose service is listening, and a token table behind the revocation check.
pub struct RevocableBackends {
    pub service: std::sync::Arc<crate::auth::revocation::RevocationService>,
    pub tokens: std::sync::Arc<crate::testkit::TestValidator>,
    pub backends: crate::auth::AuthBackends,
}

impl RevocableBackends {
    /// Needs a Tokio runtime (the service's listener is spawned).
    pub fn new(end_at_token_expiry: bool) -> Self {
        use crate::auth::revocation::{
            RevocationCheckingValidator, RevocationService, SessionRegistry,
        };
        let service = RevocationService::new(
            std::sync::Arc::new(MemoryRevocationStore::new(Duration::from_secs(3600))),
            SessionRegistry::new(end_at_token_expiry),
            false,
        );
        tokio::spawn(service.clone().listen());
        let tokens = crate::testkit::TestValidator::new();
        let validator: std::sync::Arc<dyn crate::auth::oidc::TokenValidator> = std::sync::Arc::new(
            RevocationCheckingValidator::new(tokens.clone(), service.clone()),
        );
        let backends = crate::auth::AuthBackends {
            directory: crate::testkit::TestDirectory::new(),
            validator: Some(validator),
            admins: std::sync::Arc::from([]),
            revocation: Some(service.clone()),
            throttle: None,
        };
        Self {
            service,
            tokens,
            backends,
        }
    }

    /// The built-in mechanisms `names`, enabled in that order.
    pub fn registry(&self, names: &[&str]) -> crate::auth::sasl::SaslRegistry {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        crate::auth::sasl::SaslRegistry::with_builtins(&self.backends)
            .enable(&names)
            .expect("mechanisms known")
    }
}
