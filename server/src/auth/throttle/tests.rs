//! The budget's rules on both stores: counting, delays, forgiveness, sharing, outages.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::*;
use crate::testkit::redis_server::RedisServer;
use crate::testkit::revocation::unique;

fn settings(fail_open: bool) -> ThrottleSettings {
    let policy = Policy {
        free_failures: 2,
        base_delay: Duration::from_secs(10),
        max_delay: Duration::from_secs(60),
    };
    ThrottleSettings {
        per_address: policy,
        per_user: policy,
        window: Duration::from_secs(600),
        fail_open,
    }
}

/// A clock the test moves by hand.
fn clock() -> (Arc<AtomicU64>, Clock) {
    let now = Arc::new(AtomicU64::new(1_000_000));
    let read = now.clone();
    (now, Arc::new(move || read.load(Ordering::SeqCst)))
}

fn ip(s: &str) -> Option<IpAddr> {
    Some(s.parse().expect("ip"))
}

async fn fail(t: &Arc<LoginThrottle>, address: &str, user: Option<&str>) {
    t.admit(ip(address), user)
        .await
        .expect("admitted")
        .failed()
        .await;
}

#[tokio::test]
async fn free_failures_then_refused_unchecked_until_the_delay_passes() {
    let (now, clock) = clock();
    let t = LoginThrottle::with_clock(Arc::new(MemoryBudget::new()), settings(false), "", clock);
    for _ in 0..3 {
        fail(&t, "127.0.0.1", Some("bob")).await;
    }
    let refused = t.admit(ip("127.0.0.1"), Some("bob")).await;
    assert_eq!(
        refused.err(),
        Some(Refusal::Throttled {
            retry_after: Duration::from_secs(10)
        })
    );
    // Refusals are not counted: waiting out the delay is enough, however often one tried.
    for _ in 0..5 {
        assert!(t.admit(ip("127.0.0.1"), Some("bob")).await.is_err());
    }
    assert_eq!(t.failures(ip("127.0.0.1"), Some("bob")).await, Ok((3, 3)));
    now.fetch_add(10_000, Ordering::SeqCst);
    let attempt = t
        .admit(ip("127.0.0.1"), Some("bob"))
        .await
        .expect("after the delay");
    attempt.failed().await;
    // The fourth failure doubles the delay.
    assert_eq!(
        t.admit(ip("127.0.0.1"), Some("bob")).await.err(),
        Some(Refusal::Throttled {
            retry_after: Duration::from_secs(20)
        })
    );
}

#[tokio::test]
async fn a_user_is_throttled_from_every_address_and_an_address_for_every_user() {
    let (_now, clock) = clock();
    let t = LoginThrottle::with_clock(Arc::new(MemoryBudget::new()), settings(false), "", clock);
    fail(&t, "127.0.0.1", Some("bob")).await;
    fail(&t, "127.0.0.2", Some("bob")).await;
    fail(&t, "127.0.0.3", Some("bob")).await;
    assert!(matches!(
        t.admit(ip("127.0.0.4"), Some("BOB")).await,
        Err(Refusal::Throttled { .. })
    ));
    assert!(t.admit(ip("127.0.0.4"), Some("carol")).await.is_ok());
    fail(&t, "10.0.0.1", Some("u1")).await;
    fail(&t, "10.0.0.1", Some("u2")).await;
    fail(&t, "10.0.0.1", None).await;
    assert!(matches!(
        t.admit(ip("10.0.0.1"), Some("u9")).await,
        Err(Refusal::Throttled { .. })
    ));
    assert!(matches!(
        t.admit(ip("10.0.0.1"), None).await,
        Err(Refusal::Throttled { .. })
    ));
}

#[tokio::test]
async fn a_success_forgives_only_its_own_pair() {
    let (now, clock) = clock();
    let t = LoginThrottle::with_clock(Arc::new(MemoryBudget::new()), settings(false), "", clock);
    // Two typos by bob at home, one guess against bob from elsewhere, one guess from home
    // against carol.
    fail(&t, "127.0.0.1", Some("bob")).await;
    fail(&t, "127.0.0.1", Some("bob")).await;
    fail(&t, "127.0.0.9", Some("bob")).await;
    fail(&t, "127.0.0.1", Some("carol")).await;
    now.fetch_add(60_000, Ordering::SeqCst);
    t.admit(ip("127.0.0.1"), Some("Bob"))
        .await
        .expect("admitted")
        .succeeded()
        .await;
    assert_eq!(t.failures(ip("127.0.0.1"), Some("bob")).await, Ok((1, 1)));
    assert_eq!(t.failures(ip("127.0.0.9"), Some("carol")).await, Ok((1, 1)));
}

#[tokio::test]
async fn counts_are_forgotten_a_window_after_the_latest_failure() {
    let (now, clock) = clock();
    let t = LoginThrottle::with_clock(Arc::new(MemoryBudget::new()), settings(false), "", clock);
    for _ in 0..3 {
        fail(&t, "127.0.0.1", Some("bob")).await;
    }
    now.fetch_add(600_000, Ordering::SeqCst);
    assert_eq!(t.failures(ip("127.0.0.1"), Some("bob")).await, Ok((0, 0)));
    fail(&t, "127.0.0.1", Some("bob")).await;
    assert_eq!(t.failures(ip("127.0.0.1"), Some("bob")).await, Ok((1, 1)));
}

#[tokio::test]
async fn two_instances_on_one_redis_share_the_budget() {
    let redis = RedisServer::start();
    let prefix = unique("throttle-share:");
    let (now, clock) = clock();
    let make = || {
        let budget = RedisBudget::start(&redis.url(), Duration::from_secs(2)).expect("redis");
        LoginThrottle::with_clock(
            Arc::new(budget),
            settings(false),
            prefix.clone(),
            clock.clone(),
        )
    };
    let (a, b) = (make(), make());
    fail(&a, "127.0.0.1", Some("bob")).await;
    fail(&b, "127.0.0.1", Some("bob")).await;
    fail(&a, "127.0.0.2", Some("bob")).await;
    assert_eq!(b.failures(ip("127.0.0.1"), Some("bob")).await, Ok((2, 3)));
    assert_eq!(
        b.admit(ip("127.0.0.3"), Some("bob")).await.err(),
        Some(Refusal::Throttled {
            retry_after: Duration::from_secs(10)
        })
    );
    now.fetch_add(10_000, Ordering::SeqCst);
    b.admit(ip("127.0.0.1"), Some("bob"))
        .await
        .expect("after the delay")
        .succeeded()
        .await;
    assert_eq!(a.failures(ip("127.0.0.1"), Some("bob")).await, Ok((0, 1)));
    assert!(a.admit(ip("127.0.0.3"), Some("bob")).await.is_ok());
}

#[tokio::test]
async fn redis_down_refuses_unless_fail_open() {
    let mut redis = RedisServer::start();
    let url = redis.url();
    redis.kill();
    let closed = LoginThrottle::new(
        Arc::new(RedisBudget::start(&url, Duration::from_millis(300)).expect("url")),
        settings(false),
        "p:",
    );
    assert!(matches!(
        closed.admit(ip("127.0.0.1"), Some("bob")).await,
        Err(Refusal::Unavailable(_))
    ));
    let open = LoginThrottle::new(
        Arc::new(RedisBudget::start(&url, Duration::from_millis(300)).expect("url")),
        settings(true),
        "p:",
    );
    let attempt = open
        .admit(ip("127.0.0.1"), Some("bob"))
        .await
        .expect("fail open admits");
    // Reporting on an unreachable store neither blocks nor panics.
    attempt.failed().await;
}

mod mechanisms {
    //! Every login path asks the budget before its directory or IdP, and tells it the outcome.

    use super::*;
    use crate::auth::AuthBackends;
    use crate::auth::sasl::driver::verify_password_throttled;
    use crate::auth::sasl::{
        OAuthBearer, Plain, Protocol, SaslFailure, SaslMechanism, SaslStep, SessionContext, XOAuth2,
    };
    use crate::testkit::{TestDirectory, TestValidator, backends, token_for};

    const PEER: &str = "127.0.0.1:40000";

    /// One free failure per address and per user; a delay of minutes.
    fn throttled(directory: Arc<TestDirectory>, validator: Arc<TestValidator>) -> AuthBackends {
        let policy = Policy {
            free_failures: 1,
            base_delay: Duration::from_secs(300),
            max_delay: Duration::from_secs(300),
        };
        let mut b = backends(directory, Some(validator), &[]);
        b.throttle = Some(LoginThrottle::new(
            Arc::new(MemoryBudget::new()),
            ThrottleSettings {
                per_address: policy,
                per_user: policy,
                window: Duration::from_secs(600),
                fail_open: false,
            },
            "",
        ));
        b
    }

    fn ctx() -> SessionContext {
        SessionContext {
            protocol: Protocol::Imap,
            tls: true,
            allow_plaintext_without_tls: false,
            peer: Some(PEER.parse().expect("addr")),
            channel_binding: None,
        }
    }

    async fn once(mech: &dyn SaslMechanism, message: &[u8]) -> SaslStep {
        mech.start(Some(message), &ctx()).step(None).await
    }

    fn is_throttled(step: &SaslStep) -> bool {
        matches!(step, SaslStep::Failure(SaslFailure::Throttled { retry_after_seconds }) if *retry_after_seconds > 0)
    }

    #[tokio::test]
    async fn password_paths_stop_asking_the_directory() {
        let directory = TestDirectory::new();
        let b = throttled(directory.clone(), TestValidator::new());
        let plain = Plain::new(b.clone());
        for _ in 0..2 {
            let step = once(&plain, b"\0bob\0wrong").await;
            assert!(matches!(
                step,
                SaslStep::Failure(SaslFailure::InvalidCredentials { .. })
            ));
        }
        let calls = directory.calls();
        assert!(is_throttled(&once(&plain, b"\0bob\0bobpw").await));
        let peer = Some(PEER.parse().expect("addr"));
        assert!(matches!(
            verify_password_throttled(&b, peer, b"alice", b"alicepw").await,
            Err(SaslFailure::Throttled { .. })
        ));
        assert_eq!(
            directory.calls(),
            calls,
            "throttled attempts are not checked"
        );
    }

    #[tokio::test]
    async fn bearer_paths_stop_asking_the_idp() {
        let validator = TestValidator::new();
        validator.set("good", Ok(token_for("alice@example.com")));
        let b = throttled(TestDirectory::new(), validator.clone());
        let bearer = OAuthBearer::new(b.clone());
        // A refused token: the RFC 7628 error challenge, then the failure.
        for _ in 0..2 {
            let mut ex = bearer.start(Some(b"n,,\x01auth=Bearer bad\x01\x01"), &ctx());
            assert!(matches!(ex.step(None).await, SaslStep::Challenge(_)));
            assert!(matches!(
                ex.step(Some(b"\x01")).await,
                SaslStep::Failure(SaslFailure::InvalidCredentials { .. })
            ));
        }
        let calls = validator.calls();
        let good = b"n,,\x01auth=Bearer good\x01\x01";
        assert!(is_throttled(&once(&bearer, good).await));
        let xoauth2 = XOAuth2::new(b);
        assert!(is_throttled(
            &once(
                &xoauth2,
                b"user=alice@example.com\x01auth=Bearer good\x01\x01"
            )
            .await
        ));
        assert_eq!(
            validator.calls(),
            calls,
            "throttled tokens are not validated"
        );
    }

    #[tokio::test]
    async fn expired_and_revoked_tokens_cost_nothing() {
        use crate::auth::oidc::TokenError;
        let validator = TestValidator::new();
        validator.set("expired", Err(TokenError::Expired));
        validator.set("revoked", Err(TokenError::Revoked("logged out".into())));
        validator.set("good", Ok(token_for("alice@example.com")));
        let b = throttled(TestDirectory::new(), validator);
        let bearer = OAuthBearer::new(b.clone());
        for token in ["expired", "revoked", "expired", "revoked"] {
            let message = format!("n,,\x01auth=Bearer {token}\x01\x01");
            assert!(matches!(
                once(&bearer, message.as_bytes()).await,
                SaslStep::Challenge(_)
            ));
        }
        let throttle = b.throttle.as_ref().expect("throttle");
        assert_eq!(throttle.failures(ip("127.0.0.1"), None).await, Ok((0, 0)));
        assert!(matches!(
            once(&bearer, b"n,,\x01auth=Bearer good\x01\x01").await,
            SaslStep::Success { .. }
        ));
    }
}
