//! [`RedisRevocationStore`] against a real `redis-server` (one per test, on a free port): the
//! deny-list semantics, the documented key names and TTLs, notices between instances, and what
//! happens when Redis dies, hangs and comes back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::broadcast;

use super::{
    JtiUse, LiveSession, Notice, Query, RedisRevocationConfig, RedisRevocationStore, Revocation,
    RevocationService, RevocationStore, SessionRegistry, keys,
};
use crate::auth::revocation::EndReason;
use crate::testkit::redis_server::{RedisServer, free_port};
use crate::testkit::revocation::{now, token_session, unique};

const ISS: &str = "https://idp.example.com/realms/mail";
const OTHER_ISS: &str = "https://other.example.com";
/// `revocation.timeout_ms` of these stores.
const TIMEOUT: Duration = Duration::from_millis(500);
/// Scheduling slack on top of [`TIMEOUT`] when timing a failure.
const SLACK: Duration = Duration::from_millis(300);
const TTL: Duration = Duration::from_secs(600);
/// Longest wait for anything that should happen (a notice, a reconnect).
const DEADLINE: Duration = Duration::from_secs(20);

fn store(redis: &RedisServer, prefix: &str) -> RedisRevocationStore {
    RedisRevocationStore::start(RedisRevocationConfig {
        url: redis.url(),
        key_prefix: prefix.into(),
        ttl: TTL,
        timeout: TIMEOUT,
    })
    .expect("store starts")
}

/// A plain connection, as the gateway (or an operator) would have.
async fn raw(redis: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis.url())
        .expect("redis URL")
        .get_multiplexed_async_connection()
        .await
        .expect("raw connection")
}

/// Waits until at least `n` clients are subscribed to `channel` (the stores' subscriber tasks).
async fn subscribed(conn: &mut redis::aio::MultiplexedConnection, channel: &str, n: usize) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (_, count): (String, usize) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(channel)
            .query_async(conn)
            .await
            .expect("PUBSUB NUMSUB");
        if count >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {count} of {n} subscribers on {channel}"
        );
        tokio::task::yield_now().await;
    }
}

/// The next notice `pick` accepts (others are skipped), within [`DEADLINE`].
async fn notice(rx: &mut broadcast::Receiver<Notice>, pick: impl Fn(&Notice) -> bool) -> Notice {
    tokio::time::timeout(DEADLINE, async {
        loop {
            match rx.recv().await {
                Ok(n) if pick(&n) => return n,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => panic!("notice channel closed"),
            }
        }
    })
    .await
    .expect("notice within the deadline")
}

fn query<'a>(token: Option<&'a crate::auth::sasl::TokenSession>, user: &'a str) -> Query<'a> {
    Query {
        token,
        user,
        authenticated_at: None,
    }
}

#[tokio::test]
async fn revocations_by_sid_subject_and_user_are_found_for_their_issuer_only() {
    let redis = RedisServer::start();
    let store = store(&redis, &unique("t:"));
    let iat = now() - 60;
    let t = token_session(ISS, "sub-alice", Some("s1"), iat);
    assert_eq!(
        store.lookup(query(Some(&t), "alice@example.com")).await,
        Ok(None)
    );

    store
        .revoke(&Revocation::Session {
            issuer: ISS.into(),
            sid: "s1".into(),
        })
        .await
        .expect("revoke sid");
    let why = store
        .lookup(query(Some(&t), "alice@example.com"))
        .await
        .expect("lookup");
    assert!(
        why.as_deref().is_some_and(|w| w.contains("logged out")),
        "{why:?}"
    );
    // The same sid at another issuer, or another sid: not revoked.
    let other_iss = token_session(OTHER_ISS, "sub-alice", Some("s1"), iat);
    assert_eq!(
        store
            .lookup(query(Some(&other_iss), "alice@example.com"))
            .await,
        Ok(None)
    );
    let other_sid = token_session(ISS, "sub-alice", Some("s2"), iat);
    assert_eq!(
        store
            .lookup(query(Some(&other_sid), "alice@example.com"))
            .await,
        Ok(None)
    );

    let bob = token_session(ISS, "sub-bob", None, iat);
    store
        .revoke(&Revocation::Subject {
            issuer: ISS.into(),
            subject: "sub-bob".into(),
            before: iat,
        })
        .await
        .expect("revoke subject");
    assert!(
        store
            .lookup(query(Some(&bob), "bob@example.com"))
            .await
            .expect("lookup")
            .is_some()
    );
    let bob_later = token_session(ISS, "sub-bob", None, iat + 1);
    assert_eq!(
        store
            .lookup(query(Some(&bob_later), "bob@example.com"))
            .await,
        Ok(None),
        "a later login works"
    );
    let bob_elsewhere = token_session(OTHER_ISS, "sub-bob", None, iat);
    assert_eq!(
        store
            .lookup(query(Some(&bob_elsewhere), "bob@example.com"))
            .await,
        Ok(None)
    );

    store
        .revoke(&Revocation::User {
            user: "Carol@Example.com".into(),
            before: iat,
        })
        .await
        .expect("revoke user");
    let carol = token_session(OTHER_ISS, "sub-carol", None, iat);
    assert!(
        store
            .lookup(query(Some(&carol), "carol@example.com"))
            .await
            .expect("lookup")
            .is_some(),
        "any issuer: the user is revoked"
    );
    let password_session = Query {
        token: None,
        user: "carol@example.com",
        authenticated_at: Some(iat - 5),
    };
    assert!(
        store
            .lookup(password_session)
            .await
            .expect("lookup")
            .is_some()
    );
    let new_password_login = query(None, "carol@example.com");
    assert_eq!(store.lookup(new_password_login).await, Ok(None));
}

#[tokio::test]
async fn subject_revoked_before_never_moves_back() {
    let redis = RedisServer::start();
    let prefix = unique("t:");
    let store = store(&redis, &prefix);
    let subject = |before| Revocation::Subject {
        issuer: ISS.into(),
        subject: "sub-alice".into(),
        before,
    };
    store.revoke(&subject(2_000)).await.expect("revoke");
    store
        .revoke(&subject(1_000))
        .await
        .expect("an older revocation");
    let mut conn = raw(&redis).await;
    let value: String = redis::cmd("GET")
        .arg(keys::subject(&prefix, ISS, "sub-alice"))
        .query_async(&mut conn)
        .await
        .expect("GET");
    assert_eq!(value, "2000", "the larger time is kept");
    let between = token_session(ISS, "sub-alice", None, 1_500);
    assert!(
        store
            .lookup(query(Some(&between), "a@x"))
            .await
            .expect("lookup")
            .is_some()
    );
    let later = token_session(ISS, "sub-alice", None, 2_001);
    assert_eq!(store.lookup(query(Some(&later), "a@x")).await, Ok(None));
    store
        .revoke(&subject(3_000))
        .await
        .expect("a newer revocation");
    assert!(
        store
            .lookup(query(Some(&later), "a@x"))
            .await
            .expect("lookup")
            .is_some()
    );
}

#[tokio::test]
async fn logout_jti_is_first_used_once_per_issuer() {
    let redis = RedisServer::start();
    let store = store(&redis, &unique("t:"));
    assert_eq!(store.first_use(ISS, "j1", "t1").await, Ok(JtiUse::First));
    assert_eq!(
        store.first_use(ISS, "j1", "t1").await,
        Ok(JtiUse::SameToken),
        "the same token again"
    );
    assert_eq!(
        store.first_use(ISS, "j1", "t2").await,
        Ok(JtiUse::OtherToken),
        "another token with that jti"
    );
    assert_eq!(
        store.first_use(OTHER_ISS, "j1", "t2").await,
        Ok(JtiUse::First)
    );
    assert_eq!(store.first_use(ISS, "j2", "t1").await, Ok(JtiUse::First));
}

#[tokio::test]
async fn keys_and_channel_are_the_documented_ones_and_every_key_expires() {
    let redis = RedisServer::start();
    let prefix = unique("doc:");
    let store = store(&redis, &prefix);
    let client = redis::Client::open(redis.url()).expect("redis URL");
    let mut gateway = client.get_async_pubsub().await.expect("pubsub");
    gateway
        .subscribe(keys::channel(&prefix))
        .await
        .expect("subscribe");

    let revocations = [
        Revocation::Session {
            issuer: ISS.into(),
            sid: "abc".into(),
        },
        Revocation::Subject {
            issuer: ISS.into(),
            subject: "u:1".into(),
            before: 1_700_000_000,
        },
        Revocation::User {
            user: "Alice@Example.COM".into(),
            before: 1_700_000_001,
        },
    ];
    for r in &revocations {
        store.revoke(r).await.expect("revoke");
    }
    assert_eq!(store.first_use(ISS, "j1", "f1").await, Ok(JtiUse::First));

    // Announced on `<prefix>revocations` as the JSON the gateway and other instances read.
    let mut messages = gateway.on_message();
    for r in &revocations {
        let msg = tokio::time::timeout(DEADLINE, messages.next())
            .await
            .expect("message within the deadline")
            .expect("subscription open");
        assert_eq!(msg.get_channel_name(), keys::channel(&prefix));
        let text = String::from_utf8_lossy(msg.get_payload_bytes()).into_owned();
        assert_eq!(
            serde_json::from_str::<Revocation>(&text).ok().as_ref(),
            Some(r),
            "{text}"
        );
    }
    drop(messages);

    let mut conn = raw(&redis).await;
    let expected = [
        (format!("{prefix}revoked:sid:{ISS}#abc"), "1"),
        (format!("{prefix}revoked:sub:{ISS}#u:1"), "1700000000"),
        (
            format!("{prefix}revoked:user:alice@example.com"),
            "1700000001",
        ),
        (format!("{prefix}logout-jti:{ISS}#j1"), "f1"),
    ];
    let mut listed: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .expect("KEYS");
    listed.sort();
    let mut want: Vec<String> = expected.iter().map(|(k, _)| k.clone()).collect();
    want.sort();
    assert_eq!(listed, want, "exactly the documented keys");
    for (key, value) in &expected {
        let got: String = redis::cmd("GET")
            .arg(key)
            .query_async(&mut conn)
            .await
            .expect("GET");
        assert_eq!(&got, value, "{key}");
        let ttl: i64 = redis::cmd("TTL")
            .arg(key)
            .query_async(&mut conn)
            .await
            .expect("TTL");
        assert!(
            ttl > 0 && ttl <= TTL.as_secs() as i64,
            "{key}: TTL {ttl} not within (0, {}]",
            TTL.as_secs()
        );
    }
    // The helpers in `keys` give the same names.
    assert_eq!(expected[0].0, keys::sid(&prefix, ISS, "abc"));
    assert_eq!(expected[1].0, keys::subject(&prefix, ISS, "u:1"));
    assert_eq!(expected[2].0, keys::user(&prefix, "Alice@Example.COM"));
    assert_eq!(expected[3].0, keys::logout_jti(&prefix, ISS, "j1"));
}

#[tokio::test]
async fn a_revocation_written_by_one_instance_is_announced_to_the_other() {
    let redis = RedisServer::start();
    let prefix = unique("t:");
    let a = store(&redis, &prefix);
    let b = store(&redis, &prefix);
    let mut conn = raw(&redis).await;
    subscribed(&mut conn, &keys::channel(&prefix), 2).await;
    let mut on_a = a.subscribe();
    let mut on_b = b.subscribe();
    let r = Revocation::Session {
        issuer: ISS.into(),
        sid: "s-shared".into(),
    };
    a.revoke(&r).await.expect("revoke on a");
    let want = Notice::Revoked(r.clone());
    assert_eq!(
        notice(&mut on_b, |n| matches!(n, Notice::Revoked(_))).await,
        want
    );
    assert_eq!(
        notice(&mut on_a, |n| matches!(n, Notice::Revoked(_))).await,
        want,
        "the writer hears its own notice too"
    );
    let t = token_session(ISS, "sub-alice", Some("s-shared"), now());
    assert!(
        b.lookup(query(Some(&t), "a@x"))
            .await
            .expect("lookup on b")
            .is_some()
    );
}

#[tokio::test]
async fn killed_redis_fails_within_the_timeout_then_a_restart_resyncs() {
    let mut redis = RedisServer::start();
    let prefix = unique("t:");
    let store = store(&redis, &prefix);
    let mut conn = raw(&redis).await;
    subscribed(&mut conn, &keys::channel(&prefix), 1).await;
    drop(conn);
    let mut notices = store.subscribe();
    let t = token_session(ISS, "sub-alice", Some("s1"), now());
    assert_eq!(store.lookup(query(Some(&t), "a@x")).await, Ok(None), "up");

    redis.kill();
    let r = Revocation::Session {
        issuer: ISS.into(),
        sid: "s1".into(),
    };
    for _ in 0..2 {
        let started = Instant::now();
        let lookup = store.lookup(query(Some(&t), "a@x")).await;
        assert!(lookup.is_err(), "lookup with Redis down: {lookup:?}");
        let revoke = store.revoke(&r).await;
        assert!(revoke.is_err(), "revoke with Redis down: {revoke:?}");
        let jti = store.first_use(ISS, "j-down", "f").await;
        assert!(jti.is_err(), "first_use with Redis down: {jti:?}");
        assert!(
            started.elapsed() <= 3 * TIMEOUT + SLACK,
            "three failures took {:?} (timeout {TIMEOUT:?} each)",
            started.elapsed()
        );
    }

    redis.restart();
    let deadline = Instant::now() + DEADLINE;
    while store.lookup(query(Some(&t), "a@x")).await.is_err() {
        assert!(Instant::now() < deadline, "the store never reconnected");
    }
    assert_eq!(
        notice(&mut notices, |n| *n == Notice::Resync).await,
        Notice::Resync,
        "notices may have been missed: the subscriber asks for a resync"
    );
    store.revoke(&r).await.expect("revoke after the restart");
    assert!(
        store
            .lookup(query(Some(&t), "a@x"))
            .await
            .expect("lookup")
            .is_some()
    );
    assert_eq!(
        notice(&mut notices, |n| matches!(n, Notice::Revoked(_))).await,
        Notice::Revoked(r),
        "subscribed again"
    );
    assert_eq!(store.first_use(ISS, "j-up", "f").await, Ok(JtiUse::First));
}

#[tokio::test]
async fn a_hung_redis_fails_at_the_deadline_not_later() {
    let redis = RedisServer::start();
    let store = store(&redis, &unique("t:"));
    let t = token_session(ISS, "sub-alice", Some("s1"), now());
    assert_eq!(store.lookup(query(Some(&t), "a@x")).await, Ok(None), "up");
    redis.pause();
    let started = Instant::now();
    let lookup = store.lookup(query(Some(&t), "a@x")).await;
    let took = started.elapsed();
    redis.resume();
    match lookup {
        Err(e) => assert!(e.0.contains("lookup"), "{e}"),
        Ok(v) => panic!("a frozen Redis answered {v:?}"),
    }
    assert!(
        took + SLACK >= TIMEOUT && took <= TIMEOUT + SLACK,
        "failed after {took:?}, timeout {TIMEOUT:?}"
    );
    let deadline = Instant::now() + DEADLINE;
    while store.lookup(query(Some(&t), "a@x")).await.is_err() {
        assert!(Instant::now() < deadline, "the store never recovered");
    }
}

#[tokio::test]
async fn notices_missed_while_unsubscribed_are_caught_up_by_the_resync() {
    let redis = RedisServer::start();
    let prefix = unique("t:");
    let store: Arc<dyn RevocationStore> = Arc::new(store(&redis, &prefix));
    let registry = SessionRegistry::new(false);
    let service = RevocationService::new(store, registry.clone(), false);
    let listener = tokio::spawn(service.clone().listen());
    let mut gone = registry.register(LiveSession::new(
        "imap",
        "alice@example.com",
        Some(token_session(ISS, "sub-alice", Some("s-missed"), now())),
    ));
    let kept = registry.register(LiveSession::new(
        "imap",
        "alice@example.com",
        Some(token_session(ISS, "sub-alice", Some("s-kept"), now())),
    ));
    let mut conn = raw(&redis).await;
    subscribed(&mut conn, &keys::channel(&prefix), 1).await;

    // Another instance wrote the revocation, and its notice never arrived here.
    let _: () = redis::cmd("SET")
        .arg(keys::sid(&prefix, ISS, "s-missed"))
        .arg(1)
        .arg("EX")
        .arg(600)
        .query_async(&mut conn)
        .await
        .expect("SET");
    assert_eq!(gone.try_ended(), None, "no notice, nothing ended yet");
    // The subscription breaks; the subscriber comes back and resyncs.
    let _: redis::Value = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut conn)
        .await
        .expect("CLIENT KILL");
    let reason = tokio::time::timeout(DEADLINE, gone.ended())
        .await
        .expect("ended by the resync");
    assert!(
        matches!(&reason, EndReason::Revoked(why) if why.contains("logged out")),
        "{reason:?}"
    );
    assert_eq!(kept.try_ended(), None);
    listener.abort();
}

#[tokio::test]
async fn a_store_started_before_redis_fails_closed_then_works_and_resyncs() {
    let port = free_port();
    let prefix = unique("t:");
    let store = RedisRevocationStore::start(RedisRevocationConfig {
        url: format!("redis://127.0.0.1:{port}/"),
        key_prefix: prefix.clone(),
        ttl: TTL,
        timeout: TIMEOUT,
    })
    .expect("starting needs no Redis");
    let mut notices = store.subscribe();
    let t = token_session(ISS, "sub-alice", Some("s1"), now());
    let started = Instant::now();
    assert!(
        store.lookup(query(Some(&t), "a@x")).await.is_err(),
        "no Redis yet"
    );
    assert!(
        started.elapsed() <= TIMEOUT + SLACK,
        "{:?}",
        started.elapsed()
    );

    let redis = RedisServer::start_on(port);
    let deadline = Instant::now() + DEADLINE;
    while store.lookup(query(Some(&t), "a@x")).await.is_err() {
        assert!(Instant::now() < deadline, "the store never connected");
    }
    assert_eq!(
        notice(&mut notices, |n| *n == Notice::Resync).await,
        Notice::Resync,
        "the first subscription after a failed start resyncs"
    );
    let mut conn = raw(&redis).await;
    subscribed(&mut conn, &keys::channel(&prefix), 1).await;
}
