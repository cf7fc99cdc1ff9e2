//! [`LogoutReceiver`] with the real [`OidcValidator`] against the fake IdP: the token shapes
//! LemonLDAP::NG and Keycloak send are accepted, every forgery and claim violation is refused
//! with nothing written to the store, and an unreachable IdP is a temporary failure.

use std::sync::Arc;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use super::logout_token::{BACKCHANNEL_LOGOUT_EVENT, LogoutTokenError};
use super::{
    EndReason, LiveSession, LogoutError, LogoutReceiver, LogoutSettings, Revocation,
    RevocationService, SessionHandle, SessionRegistry,
};
use crate::auth::oidc::{TokenError, TokenValidator};
use crate::testkit::oidc::{FakeIdp, access_claims, keys, mint, raw_token, validator};
use crate::testkit::revocation::{
    CLIENT_ID, RecordingStore, logout_claims, now, signed, signed_with, token_session, unique,
};

const MAX_AGE: u64 = 120;
const LEEWAY: u64 = 30;

struct Fixture {
    idp: FakeIdp,
    store: Arc<RecordingStore>,
    service: Arc<RevocationService>,
    receiver: LogoutReceiver,
}

async fn fixture() -> Fixture {
    let idp = FakeIdp::start(&[&keys().idp]).await;
    let store = Arc::new(RecordingStore::new());
    let service = RevocationService::new(store.clone(), SessionRegistry::new(false), false);
    let receiver = LogoutReceiver::new(
        Arc::new(validator(&idp, false)),
        service.clone(),
        LogoutSettings {
            audiences: vec![CLIENT_ID.into()],
            max_age: MAX_AGE,
            leeway: LEEWAY,
        },
    );
    Fixture {
        idp,
        store,
        service,
        receiver,
    }
}

impl Fixture {
    /// A live IMAP session of alice in IdP session `sid`.
    fn live(&self, sid: &str) -> SessionHandle {
        self.service.registry().register(LiveSession::new(
            "imap",
            "alice@example.com",
            Some(token_session(
                &self.idp.issuer(),
                "sub-alice",
                Some(sid),
                now() - 60,
            )),
        ))
    }
}

fn with(mut claims: Value, name: &str, value: Value) -> Value {
    claims[name] = value;
    claims
}

fn without(mut claims: Value, name: &str) -> Value {
    claims.as_object_mut().expect("object").remove(name);
    claims
}

#[tokio::test]
async fn lemonldap_shaped_token_logs_the_session_out() {
    let f = fixture().await;
    let mut live = f.live("llng-sid");
    let other = f.live("another-sid");
    // LemonLDAP::NG 2.21: header typ JWT, no exp, aud an array, sid and sub.
    let claims = logout_claims(&f.idp, "llng-sid");
    assert!(claims.get("exp").is_none());
    let token = signed(Some("JWT"), &claims);
    let want = Revocation::Session {
        issuer: f.idp.issuer(),
        sid: "llng-sid".into(),
    };
    assert_eq!(f.receiver.receive(&token).await, Ok(want.clone()));
    assert_eq!(f.store.revokes(), vec![want]);
    let jti = claims["jti"].as_str().expect("jti").to_string();
    assert_eq!(f.store.jtis(), vec![(f.idp.issuer(), jti, true)]);
    let reason = tokio::time::timeout(std::time::Duration::from_secs(5), live.ended())
        .await
        .expect("the live session ends");
    assert!(matches!(reason, EndReason::Revoked(ref why) if why.contains("logged out")));
    assert_eq!(other.try_ended(), None, "another IdP session is untouched");
    // A token of that session opens nothing new.
    let t = token_session(&f.idp.issuer(), "sub-alice", Some("llng-sid"), now());
    assert!(f.service.check(&t, "alice@example.com").await.is_err());
}

#[tokio::test]
async fn keycloak_shaped_token_is_accepted() {
    let f = fixture().await;
    let n = now();
    // Keycloak 26: typ logout+jwt, exp, aud a string, its own `typ` claim in the payload.
    let mut claims = logout_claims(&f.idp, "kc-sid");
    claims["aud"] = json!(CLIENT_ID);
    claims["exp"] = json!(n + 120);
    claims["typ"] = json!("Logout");
    let token = signed(Some("logout+jwt"), &claims);
    assert_eq!(
        f.receiver.receive(&token).await,
        Ok(Revocation::Session {
            issuer: f.idp.issuer(),
            sid: "kc-sid".into()
        })
    );
    // No typ header at all is accepted too.
    let token = signed(None, &logout_claims(&f.idp, "kc-sid-2"));
    assert!(f.receiver.receive(&token).await.is_ok());
    assert_eq!(f.store.revokes().len(), 2);
}

#[tokio::test]
async fn sub_only_token_revokes_the_subject_up_to_its_iat() {
    let f = fixture().await;
    let iat = now() - 5;
    let claims = with(
        without(logout_claims(&f.idp, "x"), "sid"),
        "iat",
        json!(iat),
    );
    let mut before = f.service.registry().register(LiveSession::new(
        "smtp",
        "alice@example.com",
        Some(token_session(&f.idp.issuer(), "sub-alice", None, iat - 100)),
    ));
    let after = f.service.registry().register(LiveSession::new(
        "smtp",
        "alice@example.com",
        Some(token_session(&f.idp.issuer(), "sub-alice", None, iat + 1)),
    ));
    let want = Revocation::Subject {
        issuer: f.idp.issuer(),
        subject: "sub-alice".into(),
        before: iat,
    };
    assert_eq!(
        f.receiver
            .receive(&signed(Some("logout+jwt"), &claims))
            .await,
        Ok(want.clone())
    );
    assert_eq!(f.store.revokes(), vec![want]);
    assert!(matches!(
        tokio::time::timeout(std::time::Duration::from_secs(5), before.ended()).await,
        Ok(EndReason::Revoked(_))
    ));
    assert_eq!(after.try_ended(), None, "a token issued later survives");
}

/// Every refusal this table names, with the error it must give.
fn hostile(idp: &FakeIdp) -> Vec<(&'static str, String, LogoutError)> {
    let k = &keys().idp;
    let good = logout_claims(idp, "victim-sid");
    let invalid = |e: LogoutTokenError| LogoutError::Invalid(e);
    let token = |e: TokenError| invalid(LogoutTokenError::Token(e));
    let hmac_forgery = {
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some("JWT".into());
        header.kid = Some(k.kid.clone());
        jsonwebtoken::encode(&header, &good, &EncodingKey::from_secret(&k.public_pem))
            .expect("HMAC sign")
    };
    let tampered = {
        let honest = signed(Some("JWT"), &logout_claims(idp, "someone-else"));
        let parts: Vec<&str> = honest.split('.').collect();
        let forged = raw_token(&json!({}), &good, b"");
        let payload = forged.split('.').nth(1).expect("payload");
        format!("{}.{payload}.{}", parts[0], parts[2])
    };
    vec![
        (
            "signed by another key with the IdP's kid",
            signed_with(&keys().foreign, Some("JWT"), &good),
            token(TokenError::BadSignature),
        ),
        (
            "payload swapped under a valid signature",
            tampered,
            token(TokenError::BadSignature),
        ),
        (
            "alg none",
            raw_token(&json!({"alg": "none", "typ": "JWT"}), &good, b""),
            token(TokenError::AlgorithmNotAllowed("none".into())),
        ),
        (
            "HMAC with the public key as secret",
            hmac_forgery,
            token(TokenError::AlgorithmNotAllowed("HS256".into())),
        ),
        (
            "wrong iss",
            signed(
                Some("JWT"),
                &with(good.clone(), "iss", json!("https://evil.example")),
            ),
            invalid(LogoutTokenError::WrongIssuer("https://evil.example".into())),
        ),
        (
            "wrong aud",
            signed(
                Some("JWT"),
                &with(good.clone(), "aud", json!(["another-client"])),
            ),
            invalid(LogoutTokenError::WrongAudience),
        ),
        (
            "no events",
            signed(Some("JWT"), &without(good.clone(), "events")),
            invalid(LogoutTokenError::NotALogoutEvent),
        ),
        (
            "events not an object",
            signed(
                Some("JWT"),
                &with(good.clone(), "events", json!([BACKCHANNEL_LOGOUT_EVENT])),
            ),
            invalid(LogoutTokenError::BadClaim("events")),
        ),
        (
            "events member not an object",
            signed(
                Some("JWT"),
                &with(
                    good.clone(),
                    "events",
                    json!({ BACKCHANNEL_LOGOUT_EVENT: "logout" }),
                ),
            ),
            invalid(LogoutTokenError::NotALogoutEvent),
        ),
        (
            "nonce present (an ID token)",
            signed(Some("JWT"), &with(good.clone(), "nonce", json!("n-1"))),
            invalid(LogoutTokenError::NoncePresent),
        ),
        (
            "neither sid nor sub",
            signed(Some("JWT"), &without(without(good.clone(), "sid"), "sub")),
            invalid(LogoutTokenError::NoSidOrSub),
        ),
        (
            "iat too old",
            signed(
                Some("JWT"),
                &with(good.clone(), "iat", json!(now() - MAX_AGE - 60)),
            ),
            invalid(LogoutTokenError::TooOld {
                age: MAX_AGE + 60,
                max: MAX_AGE,
            }),
        ),
        (
            "typ at+jwt",
            signed(Some("at+jwt"), &good),
            invalid(LogoutTokenError::WrongType("at+jwt".into())),
        ),
        (
            "no jti",
            signed(Some("JWT"), &without(good.clone(), "jti")),
            invalid(LogoutTokenError::MissingClaim("jti")),
        ),
    ]
}

#[tokio::test]
async fn hostile_tokens_are_refused_and_nothing_is_written() {
    let f = fixture().await;
    let live = f.live("victim-sid");
    for (name, token, want) in hostile(&f.idp) {
        let got = f.receiver.receive(&token).await;
        match (&got, &want) {
            // The age is computed from the clock: a second may pass between mint and check.
            (
                Err(LogoutError::Invalid(LogoutTokenError::TooOld { age, max })),
                LogoutError::Invalid(LogoutTokenError::TooOld { age: a, max: m }),
            ) => assert!(max == m && age >= a && *age <= a + 5, "{name}: {got:?}"),
            _ => assert_eq!(got, Err(want), "{name}"),
        }
        assert_eq!(f.store.writes(), 0, "{name}: nothing may be written");
        assert_eq!(live.try_ended(), None, "{name}: the session lives on");
    }
    assert!(f.store.jtis().is_empty(), "no jti was even looked at");
}

#[tokio::test]
async fn replayed_jti_is_refused_without_a_second_revocation() {
    let f = fixture().await;
    let claims = logout_claims(&f.idp, "replayed-sid");
    let token = signed(Some("JWT"), &claims);
    assert!(f.receiver.receive(&token).await.is_ok());
    assert_eq!(
        f.receiver.receive(&token).await,
        Err(LogoutError::Invalid(LogoutTokenError::Replayed))
    );
    assert_eq!(f.store.revokes().len(), 1, "the replay revoked nothing");
    let jti = claims["jti"].as_str().expect("jti").to_string();
    assert_eq!(
        f.store.jtis(),
        vec![
            (f.idp.issuer(), jti.clone(), true),
            (f.idp.issuer(), jti, false)
        ]
    );
    // Another token of the same session (new jti) is a new logout, not a replay.
    let again = signed(Some("JWT"), &logout_claims(&f.idp, "replayed-sid"));
    assert!(f.receiver.receive(&again).await.is_ok());
}

#[tokio::test]
async fn a_jti_reused_with_another_sid_is_a_replay_and_revokes_nothing() {
    let f = fixture().await;
    let first = logout_claims(&f.idp, "sid-first");
    assert!(
        f.receiver
            .receive(&signed(Some("JWT"), &first))
            .await
            .is_ok()
    );
    let other = f.live("sid-other");
    // Validly signed, same iss and jti, another session: the jti was used, whatever it names.
    let reused = with(
        logout_claims(&f.idp, "sid-other"),
        "jti",
        first["jti"].clone(),
    );
    assert_eq!(
        f.receiver.receive(&signed(Some("JWT"), &reused)).await,
        Err(LogoutError::Invalid(LogoutTokenError::Replayed))
    );
    assert_eq!(f.store.revokes().len(), 1, "sid-other was not revoked");
    assert_eq!(other.try_ended(), None);
    // Nor with a subject only.
    let sub_only = without(reused, "sid");
    assert_eq!(
        f.receiver.receive(&signed(Some("JWT"), &sub_only)).await,
        Err(LogoutError::Invalid(LogoutTokenError::Replayed))
    );
    assert_eq!(f.store.revokes().len(), 1);
}

#[tokio::test]
async fn access_tokens_are_not_logout_tokens() {
    let f = fixture().await;
    let k = &keys().idp;
    let claims = access_claims(&f.idp, "at-sid");
    // The validator accepts it as an access token...
    let v = validator(&f.idp, false);
    let at = mint(k, Some("at+jwt"), Some(&k.kid), &claims);
    assert!(v.validate(&at).await.is_ok());
    // ...and the receiver refuses it as a logout token, by its type.
    assert_eq!(
        f.receiver.receive(&at).await,
        Err(LogoutError::Invalid(LogoutTokenError::WrongType(
            "at+jwt".into()
        )))
    );
    // Typed JWT (as Keycloak types its access tokens), it still is no logout event.
    let jwt = mint(
        k,
        Some("JWT"),
        Some(&k.kid),
        &with(claims, "jti", json!(unique("j"))),
    );
    assert_eq!(
        f.receiver.receive(&jwt).await,
        Err(LogoutError::Invalid(LogoutTokenError::NotALogoutEvent))
    );
    assert_eq!(f.store.writes(), 0);
}

#[tokio::test]
async fn idp_down_at_cold_start_is_unavailable_and_writes_nothing() {
    let f = fixture().await;
    f.idp.set_down(true);
    let token = signed(Some("JWT"), &logout_claims(&f.idp, "s-down"));
    match f.receiver.receive(&token).await {
        Err(LogoutError::Unavailable(why)) => assert!(why.contains("unavailable"), "{why}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert_eq!(f.store.writes(), 0);
    // Once the IdP answers, the same token goes through (it was never recorded).
    f.idp.set_down(false);
    assert!(f.receiver.receive(&token).await.is_ok());
}

#[tokio::test]
async fn idp_stopped_at_cold_start_is_unavailable() {
    let f = fixture().await;
    let token = signed(Some("JWT"), &logout_claims(&f.idp, "s-stopped"));
    let Fixture {
        idp,
        store,
        receiver,
        ..
    } = f;
    idp.stop().await;
    assert!(matches!(
        receiver.receive(&token).await,
        Err(LogoutError::Unavailable(_))
    ));
    assert_eq!(store.writes(), 0);
}

/// Records the jti, then fails the first `failures` revocations (Redis answering the SET but
/// not the script that follows, a timeout between the two).
struct FlakyStore {
    inner: RecordingStore,
    failures: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl super::RevocationStore for FlakyStore {
    async fn revoke(&self, revocation: &Revocation) -> Result<(), super::StoreError> {
        use std::sync::atomic::Ordering;
        if self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(super::StoreError("no answer within 1s".into()));
        }
        self.inner.revoke(revocation).await
    }
    async fn lookup(&self, query: super::Query<'_>) -> Result<Option<String>, super::StoreError> {
        self.inner.lookup(query).await
    }
    async fn first_use(
        &self,
        issuer: &str,
        jti: &str,
        fingerprint: &str,
    ) -> Result<super::JtiUse, super::StoreError> {
        self.inner.first_use(issuer, jti, fingerprint).await
    }
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<super::Notice> {
        self.inner.subscribe()
    }
    fn kind(&self) -> &'static str {
        "flaky"
    }
}

#[tokio::test]
async fn the_idps_retry_after_a_failed_revocation_is_not_a_replay() {
    let idp = FakeIdp::start(&[&keys().idp]).await;
    let store = Arc::new(FlakyStore {
        inner: RecordingStore::new(),
        failures: 1.into(),
    });
    let service = RevocationService::new(store.clone(), SessionRegistry::new(false), false);
    let receiver = LogoutReceiver::new(
        Arc::new(validator(&idp, false)),
        service.clone(),
        LogoutSettings {
            audiences: vec![CLIENT_ID.into()],
            max_age: MAX_AGE,
            leeway: LEEWAY,
        },
    );
    let mut live = service.registry().register(LiveSession::new(
        "imap",
        "alice@example.com",
        Some(token_session(
            &idp.issuer(),
            "sub-alice",
            Some("sid-retry"),
            now() - 60,
        )),
    ));
    for claims in [
        logout_claims(&idp, "sid-retry"),
        without(logout_claims(&idp, "unused"), "sid"),
    ] {
        store.failures.store(1, std::sync::atomic::Ordering::SeqCst);
        let token = signed(Some("JWT"), &claims);
        // First delivery: the jti is recorded, the revocation is not: 503, retry later.
        assert!(matches!(
            receiver.receive(&token).await,
            Err(LogoutError::Unavailable(_))
        ));
        // The IdP retries the very same token: the logout goes through.
        let done = receiver.receive(&token).await;
        assert!(done.is_ok(), "{claims}: {done:?}");
        // Now it is recorded, and another delivery is a replay.
        assert_eq!(
            receiver.receive(&token).await,
            Err(LogoutError::Invalid(LogoutTokenError::Replayed))
        );
    }
    assert_eq!(store.inner.revokes().len(), 2, "one revocation per logout");
    assert!(matches!(
        tokio::time::timeout(std::time::Duration::from_secs(5), live.ended()).await,
        Ok(EndReason::Revoked(_))
    ));
}
