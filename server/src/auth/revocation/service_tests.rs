//! [`RevocationService::resync`] and [`introspection_recheck`]: the two ways a session ends
//! without a notice reaching it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{
    EndReason, LiveSession, MemoryRevocationStore, Revocation, RevocationService, RevocationStore,
    SessionRegistry, introspection_recheck,
};
use crate::auth::oidc::TokenValidator;
use crate::auth::secret::Secret;
use crate::testkit::oidc::{FakeIdp, INTROSPECTION_PATH, access_claims, keys, mint, validator};
use crate::testkit::revocation::{now, token_session};

const ISS: &str = "https://idp.example.com/realms/mail";
const DEADLINE: Duration = Duration::from_secs(10);

#[tokio::test]
async fn resync_ends_sessions_revoked_while_notices_were_missed() {
    let store = Arc::new(MemoryRevocationStore::new(Duration::from_secs(3600)));
    let registry = SessionRegistry::new(false);
    // Nobody listens: every notice below is missed.
    let service = RevocationService::new(store.clone(), registry.clone(), false);
    let iat = now() - 60;
    let by_sid = registry.register(LiveSession::new(
        "imap",
        "alice@example.com",
        Some(token_session(ISS, "sub-alice", Some("s-gone"), iat)),
    ));
    let by_subject = registry.register(LiveSession::new(
        "smtp",
        "bob@example.com",
        Some(token_session(ISS, "sub-bob", None, iat)),
    ));
    let password = registry.register(LiveSession::new("imap", "carol@example.com", None));
    let untouched = registry.register(LiveSession::new(
        "imap",
        "alice@example.com",
        Some(token_session(ISS, "sub-alice", Some("s-kept"), iat)),
    ));
    for r in [
        Revocation::Session {
            issuer: ISS.into(),
            sid: "s-gone".into(),
        },
        Revocation::Subject {
            issuer: ISS.into(),
            subject: "sub-bob".into(),
            before: now(),
        },
        Revocation::User {
            user: "carol@example.com".into(),
            before: now(),
        },
    ] {
        store.revoke(&r).await.expect("written by another instance");
    }
    assert_eq!(by_sid.try_ended(), None, "no notice was heard");

    service.resync().await;
    for (name, handle) in [
        ("sid", &by_sid),
        ("subject", &by_subject),
        ("password", &password),
    ] {
        assert!(
            matches!(handle.try_ended(), Some(EndReason::Revoked(_))),
            "{name}: {:?}",
            handle.try_ended()
        );
    }
    assert_eq!(untouched.try_ended(), None);
    assert_eq!(
        registry.sessions().len(),
        1,
        "only the untouched one is live"
    );
}

#[tokio::test]
async fn a_lagged_listener_resyncs() {
    let store = Arc::new(MemoryRevocationStore::new(Duration::from_secs(3600)));
    let registry = SessionRegistry::new(false);
    let service = RevocationService::new(store.clone(), registry.clone(), false);
    let mut gone = registry.register(LiveSession::new(
        "imap",
        "alice@example.com",
        Some(token_session(ISS, "sub-alice", Some("s-lagged"), now() - 5)),
    ));
    // The listener subscribes now, then falls more than its buffer behind before it runs.
    let listener = service.clone().listen();
    store
        .revoke(&Revocation::Session {
            issuer: ISS.into(),
            sid: "s-lagged".into(),
        })
        .await
        .expect("revoke");
    for i in 0..2_000 {
        store
            .revoke(&Revocation::Session {
                issuer: ISS.into(),
                sid: format!("noise-{i}"),
            })
            .await
            .expect("revoke");
    }
    let task = tokio::spawn(listener);
    let reason = tokio::time::timeout(DEADLINE, gone.ended())
        .await
        .expect("ended by the resync after the lag");
    assert!(matches!(reason, EndReason::Revoked(_)), "{reason:?}");
    task.abort();
}

#[tokio::test]
async fn introspection_recheck_ends_sessions_whose_token_is_no_longer_active() {
    let idp = FakeIdp::start(&[&keys().idp]).await;
    let v = Arc::new(validator(&idp, true));
    let k = &keys().idp;
    let token = mint(
        k,
        Some("at+jwt"),
        Some(&k.kid),
        &access_claims(&idp, "s-intro"),
    );
    let validated = v.validate(&token).await.expect("valid at login");
    let logins = idp.hits(INTROSPECTION_PATH);
    // As the server builds it when `recheck_seconds` is set: tokens are kept for the re-check.
    let registry = SessionRegistry::with_bearer(false, true);
    let mut bearer = registry.register(LiveSession::new(
        "imap",
        &validated.username,
        Some(validated.session(Some(&token))),
    ));
    let password = registry.register(LiveSession::new("imap", "bob@example.com", None));
    let task = tokio::spawn(introspection_recheck(
        registry.clone(),
        v.clone() as Arc<dyn TokenValidator>,
        Duration::from_millis(50),
    ));

    // Re-checks happen (bypassing the cache) and an active token keeps its session.
    let deadline = Instant::now() + DEADLINE;
    while idp.hits(INTROSPECTION_PATH) < logins + 2 {
        assert!(Instant::now() < deadline, "no re-check happened");
        tokio::task::yield_now().await;
    }
    assert_eq!(bearer.try_ended(), None, "still active");
    let seen = idp.requests(INTROSPECTION_PATH);
    assert!(
        seen.last()
            .is_some_and(|r| r.body.contains(&format!("token={token}"))),
        "the session's own token is introspected"
    );

    idp.set_active(false);
    let reason = tokio::time::timeout(DEADLINE, bearer.ended())
        .await
        .expect("ended once the IdP says inactive");
    assert_eq!(reason, EndReason::Inactive);
    assert_eq!(password.try_ended(), None, "no token, nothing to re-check");
    task.abort();
    // The inactive answer replaced the cached active one: the token opens nothing new, even
    // if the IdP would now say otherwise.
    idp.set_active(true);
    assert_eq!(
        v.validate(&token).await,
        Err(crate::auth::oidc::TokenError::Inactive)
    );
}

#[tokio::test]
async fn introspection_recheck_keeps_sessions_while_the_idp_is_down() {
    let idp = FakeIdp::start(&[&keys().idp]).await;
    let v = Arc::new(validator(&idp, true));
    let registry = SessionRegistry::with_bearer(false, true);
    let mut session = token_session(&idp.issuer(), "sub-alice", Some("s"), now());
    session.bearer = Some(Secret::new("some.access.token"));
    let handle = registry.register(LiveSession::new("imap", "alice@example.com", Some(session)));
    idp.set_down(true);
    let task = tokio::spawn(introspection_recheck(
        registry.clone(),
        v as Arc<dyn TokenValidator>,
        Duration::from_millis(20),
    ));
    let deadline = Instant::now() + DEADLINE;
    // Discovery is asked (and fails) at every tick.
    while idp.total_hits() < 3 {
        assert!(Instant::now() < deadline, "no re-check attempted");
        tokio::task::yield_now().await;
    }
    assert_eq!(handle.try_ended(), None, "an unreachable IdP ends nothing");
    task.abort();
}
