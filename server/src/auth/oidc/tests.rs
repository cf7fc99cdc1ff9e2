//! The validator against a fake IdP over real HTTP: fetch behaviour, key rotation, outages,
//! introspection and every refusal reason.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use super::{IntrospectionConfig, OidcValidator, OidcValidatorConfig, TokenError, TokenValidator};
use crate::config::OidcSection;
use crate::testkit::TestDirectory;
use crate::testkit::oidc::{
    DISCOVERY_PATH, FakeIdp, INTROSPECTION_PATH, JWKS_PATH, TestKey, keys, mint, raw_token,
};

const USER: &str = "alice@example.com";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A config as `[oidc]` with only `discovery_url` and `audience` set would give.
fn config(idp: &FakeIdp) -> OidcValidatorConfig {
    let section: OidcSection = toml::from_str(&format!(
        "discovery_url = \"{}\"\naudience = [\"mail\"]\nhttp_timeout_seconds = 5",
        idp.url(DISCOVERY_PATH)
    ))
    .expect("section parses");
    OidcValidatorConfig::from_section(&section).expect("valid section")
}

fn validator_with(config: OidcValidatorConfig, directory: Arc<TestDirectory>) -> OidcValidator {
    OidcValidator::new(config, directory).expect("validator builds")
}

fn validator(config: OidcValidatorConfig) -> OidcValidator {
    validator_with(config, TestDirectory::new())
}

fn claims(idp: &FakeIdp) -> Value {
    let now = now();
    json!({
        "iss": idp.issuer(),
        "sub": "sub-alice",
        "aud": ["other-client", "mail"],
        "exp": now + 300,
        "nbf": now - 10,
        "iat": now - 10,
        "sid": "session-1",
        "email": USER,
    })
}

fn claims_with(idp: &FakeIdp, name: &str, value: Value) -> Value {
    let mut c = claims(idp);
    c[name] = value;
    c
}

/// A well-formed token from the IdP's current key.
fn good_token(idp: &FakeIdp) -> String {
    let k = &keys().idp;
    mint(k, Some("at+JWT"), Some(&k.kid), &claims(idp))
}

fn signed(key: &TestKey, claims: &Value) -> String {
    mint(key, Some("JWT"), Some(&key.kid), claims)
}

#[tokio::test]
async fn valid_token_is_accepted_and_idp_is_asked_once() {
    let idp = FakeIdp::start(&[&keys().idp]).await;
    let v = validator(config(&idp));
    // Nothing is fetched before the first token.
    assert_eq!(idp.total_hits(), 0);

    let t = v.validate(&good_token(&idp)).await.expect("valid token");
    assert_eq!(t.username, USER);
    assert_eq!(t.issuer, idp.issuer());
    assert_eq!(t.subject, "sub-alice");
    assert_eq!(t.sid.as_deref(), Some("session-1"));
    assert!(t.expires_at > now());

    let again = v.validate(&good_token(&idp)).await.expect("still valid");
    assert_eq!(again.username, USER);
    assert_eq!(idp.hits(DISCOVERY_PATH), 1);
    assert_eq!(idp.hits(JWKS_PATH), 1);
}

#[tokio::test]
async fn accessors_report_discovery_url_and_scope() {
    let idp = FakeIdp::start(&[&keys().idp]).await;
    let v = validator(config(&idp));
    assert_eq!(v.discovery_url(), idp.url(DISCOVERY_PATH));
    assert_eq!(v.required_scope(), "openid email");
}

#[tokio::test]
async fn claim_failures_are_refused_with_their_reason() {
    let idp = FakeIdp::start(&[&keys().idp]).await;
    let v = validator(config(&idp));
    let k = &keys().idp;
    let n = now();
    let mut no_exp = claims(&idp);
    no_exp.as_object_mut().expect("object").remove("exp");
    let cases = [
        (
            "expired",
            claims_with(&idp, "exp", json!(n - 120)),
            TokenError::Expired,
        ),
        (
            "future nbf",
            claims_with(&idp, "nbf", json!(n + 120)),
            TokenError::NotYetValid,
        ),
        (
            "wrong iss",
            claims_with(&idp, "iss", json!("https://evil.example")),
            TokenError::WrongIssuer("https://evil.example".into()),
        ),
        (
            "wrong aud",
            claims_with(&idp, "aud", json!(["other-client"])),
            TokenError::WrongAudience,
        ),
        ("no exp", no_exp, TokenError::MissingClaim("exp".into())),
        (
            "unknown user",
            claims_with(&idp, "email", json!("mallory@example.com")),
            TokenError::UnknownUser("mallory@example.com".into()),
        ),
    ];
    for (name, c, want) in cases {
        let got = v.validate(&signed(k, &c)).await;
        assert_eq!(got, Err(want), "{name}");
    }
}

#[tokio::test]
async fn wrong_type_is_refused() {
    let idp = FakeIdp::start(&[&keys().idp]).await;
    let v = validator(config(&idp));
    let k = &keys().idp;
    let t = mint(k, Some("logout+jwt"), Some(&k.kid), &claims(&idp));
    assert_eq!(
        v.validate(&t).await,
        Err(TokenError::WrongType("logout+jwt".into()))
    );
    // No typ at all is fine.
    let t = mint(k, None, Some(&k.kid), &claims(&idp));
    assert!(v.validate(&t).await.is_ok());
}

#[tokio::test]
async fn alg_none_is_refused_without_asking_the_idp() {
    let idp = FakeIdp::start(&[&keys().idp]).await;
    let v = validator(config(&idp));
    for alg in ["none", "None", "NONE"] {
        let t = raw_token(
            &json!({"alg": alg, "typ": "JWT", "kid": keys().idp.kid}),
            &claims(&idp),
            b"",
        );
        assert_eq!(
            v.validate(&t).await,
            Err(TokenError::AlgorithmNotAllowed(alg.into()))
        );
    }
    assert_eq!(idp.total_hits(), 0);
}

#[tokio::test]
async fn hs256_signed_with_the_public_key_is_refused() {
    let idp = FakeIdp::start(&[&keys().idp]).await;
    let v = validator(config(&idp));
    let k = &keys().idp;
    // The classic key-confusion forgery: HMAC keyed with the IdP's public key PEM.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(k.kid.clone());
    let forged = jsonwebtoken::encode(
        &header,
        &claims(&idp),
        &EncodingKey::from_secret(&k.public_pem),
    )
    .expect("sign");
    assert_eq!(
        v.validate(&forged).await,
        Err(TokenError::AlgorithmNotAllowed("HS256".into()))
    );
}

#[tokio::test]
async fn foreign_key_with_a_known_kid_is_a_bad_signature() {
    let idp = FakeIdp::start(&[&keys().idp]).await;
    let v = validator(config(&idp));
    let foreign = &keys().foreign;
    assert_eq!(foreign.kid, keys().idp.kid);
    assert_eq!(
        v.validate(&signed(foreign, &claims(&idp))).await,
        Err(TokenError::BadSignature)
    );
    // A tampered payload under a genuine signature fails the same way.
    let good = good_token(&idp);
    let parts: Vec<&str> = good.split('.').collect();
    let evil_claims = claims_with(&idp, "email", json!("root@example.com"));
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(evil_claims.to_string()),
        parts[2]
    );
    assert_eq!(v.validate(&tampered).await, Err(TokenError::BadSignature));
}

#[tokio::test]
async fn unknown_kid_refetches_once_then_is_rate_limited() {
    let ks = keys();
    let idp = FakeIdp::start(&[&ks.idp]).await;
    let v = validator(config(&idp));
    v.validate(&good_token(&idp)).await.expect("valid");
    assert_eq!(idp.hits(JWKS_PATH), 1);

    // The IdP rotates; the first token with the new kid is picked up at once (the initial
    // fetch does not count against the refetch interval).
    idp.set_keys(&[&ks.idp, &ks.rotated]);
    let rotated = signed(&ks.rotated, &claims(&idp));
    assert!(v.validate(&rotated).await.is_ok());
    assert_eq!(idp.hits(JWKS_PATH), 2);
    assert!(v.validate(&rotated).await.is_ok());
    assert_eq!(idp.hits(JWKS_PATH), 2);

    // Another unknown kid within the interval: no refetch.
    let mut stranger = ks.foreign.clone();
    stranger.kid = "never-published".into();
    assert_eq!(
        v.validate(&signed(&stranger, &claims(&idp))).await,
        Err(TokenError::UnknownKey("never-published".into()))
    );
    assert_eq!(idp.hits(JWKS_PATH), 2);
}

#[tokio::test]
async fn unknown_kid_refetch_happens_again_after_the_interval() {
    let ks = keys();
    let idp = FakeIdp::start(&[&ks.idp]).await;
    let mut cfg = config(&idp);
    cfg.jwks_refetch_interval = Duration::ZERO;
    let v = validator(cfg);
    let mut stranger = ks.foreign.clone();
    stranger.kid = "nope".into();
    for round in 1..=3 {
        assert_eq!(
            v.validate(&signed(&stranger, &claims(&idp))).await,
            Err(TokenError::UnknownKey("nope".into()))
        );
        // Round 1 fetched the set after the token arrived, so refetching could not help;
        // every later unknown-kid token refetches once (no rate limit with a zero interval).
        assert_eq!(idp.hits(JWKS_PATH), round);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_validations_share_one_fetch() {
    let ks = keys();
    let idp = FakeIdp::start(&[&ks.idp]).await;
    let v = Arc::new(validator(config(&idp)));
    let token = good_token(&idp);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (v, token) = (v.clone(), token.clone());
        tasks.spawn(async move { v.validate(&token).await });
    }
    while let Some(r) = tasks.join_next().await {
        assert!(r.expect("task").is_ok());
    }
    assert_eq!(idp.hits(DISCOVERY_PATH), 1);
    assert_eq!(idp.hits(JWKS_PATH), 1);

    // A burst of tokens with a new kid refetches once.
    idp.set_keys(&[&ks.idp, &ks.rotated]);
    let rotated = signed(&ks.rotated, &claims(&idp));
    for _ in 0..8 {
        let (v, token) = (v.clone(), rotated.clone());
        tasks.spawn(async move { v.validate(&token).await });
    }
    while let Some(r) = tasks.join_next().await {
        assert!(r.expect("task").is_ok());
    }
    assert_eq!(idp.hits(JWKS_PATH), 2);
}

#[tokio::test]
async fn idp_down_cold_is_unavailable_and_retried_later() {
    let idp = FakeIdp::start(&[&keys().idp]).await;
    let v = validator(config(&idp));
    let token = good_token(&idp);

    idp.set_down(true);
    let err = v.validate(&token).await.expect_err("IdP answers 503");
    assert!(
        matches!(err, TokenError::Unavailable(_)),
        "{err:?} ({})",
        err.code()
    );
    // Discovery is retried on the next use, then JWKS is fetched.
    idp.set_down(false);
    assert!(v.validate(&token).await.is_ok());
    assert_eq!(idp.hits(DISCOVERY_PATH), 2);

    // Explicit issuer + jwks_url, IdP gone entirely (connection refused).
    let mut cfg = config(&idp);
    cfg.discovery_url = None;
    cfg.issuer = Some(idp.issuer());
    cfg.jwks_url = Some(idp.url(JWKS_PATH));
    let cold = validator(cfg);
    idp.stop().await;
    let err = cold.validate(&token).await.expect_err("IdP is gone");
    assert!(err.is_temporary(), "{err:?}");
}

#[tokio::test]
async fn idp_down_warm_keeps_serving_cached_keys() {
    let idp = FakeIdp::start(&[&keys().idp]).await;
    let mut cfg = config(&idp);
    // Every use finds the cached set stale, so each would refresh.
    cfg.jwks_max_age = Duration::ZERO;
    // This is about the key cache: the same token must reach it each time.
    cfg.token_cache_ttl = Duration::ZERO;
    let v = validator(cfg);
    let token = good_token(&idp);
    assert!(v.validate(&token).await.is_ok());
    assert_eq!(idp.hits(JWKS_PATH), 1);

    idp.set_down(true);
    assert!(v.validate(&token).await.is_ok(), "cached keys still serve");
    assert_eq!(idp.hits(JWKS_PATH), 2, "one refresh was attempted");
    assert!(v.validate(&token).await.is_ok());
    assert_eq!(idp.hits(JWKS_PATH), 2, "failed refresh backs off");

    idp.stop().await;
    assert!(v.validate(&token).await.is_ok(), "IdP gone: still valid");
}

#[tokio::test]
async fn discovery_issuer_must_match_configured_issuer() {
    let idp = FakeIdp::start(&[&keys().idp]).await;
    let mut cfg = config(&idp);
    cfg.issuer = Some(idp.issuer());
    let v = validator(cfg);
    assert!(v.validate(&good_token(&idp)).await.is_ok());

    let idp2 = FakeIdp::start(&[&keys().idp]).await;
    idp2.set_discovery_issuer("https://someone-else.example");
    let mut cfg = config(&idp2);
    cfg.issuer = Some(idp2.issuer());
    let v = validator(cfg);
    let err = v.validate(&good_token(&idp2)).await.expect_err("mismatch");
    assert!(matches!(err, TokenError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn directory_down_is_unavailable() {
    let idp = FakeIdp::start(&[&keys().idp]).await;
    let directory = TestDirectory::new();
    directory.set_down(true);
    let v = validator_with(config(&idp), directory);
    let err = v
        .validate(&good_token(&idp))
        .await
        .expect_err("no directory");
    assert!(err.is_temporary(), "{err:?}");
}

#[tokio::test]
async fn username_is_mapped_through_the_directory() {
    let idp = FakeIdp::start(&[&keys().idp]).await;
    let mut cfg = config(&idp);
    cfg.username_claim = "preferred_username".into();
    // The shared directory knows alice by her uid too.
    let v = validator_with(cfg, TestDirectory::new());
    let c = claims_with(&idp, "preferred_username", json!("alice"));
    let t = v.validate(&signed(&keys().idp, &c)).await.expect("valid");
    assert_eq!(t.username, USER);
}

#[tokio::test]
async fn ec_and_eddsa_keys_verify_and_must_fit_the_alg() {
    let ks = keys();
    let idp = FakeIdp::start(&[&ks.idp, &ks.ec, &ks.ed]).await;
    let v = validator(config(&idp));
    assert!(v.validate(&signed(&ks.ec, &claims(&idp))).await.is_ok());
    assert!(v.validate(&signed(&ks.ed, &claims(&idp))).await.is_ok());

    // An ES256 token naming the RSA key's kid.
    let mut confused = ks.ec.clone();
    confused.kid = ks.idp.kid.clone();
    assert!(matches!(
        v.validate(&signed(&confused, &claims(&idp))).await,
        Err(TokenError::AlgorithmNotAllowed(_))
    ));

    // Without a kid, the only key of the family is used.
    let no_kid = mint(&ks.ec, Some("JWT"), None, &claims(&idp));
    assert!(v.validate(&no_kid).await.is_ok());
}

#[tokio::test]
async fn no_kid_with_two_candidate_keys_is_unknown_key() {
    let ks = keys();
    let idp = FakeIdp::start(&[&ks.idp, &ks.rotated]).await;
    let v = validator(config(&idp));
    let t = mint(&ks.idp, Some("JWT"), None, &claims(&idp));
    assert!(matches!(
        v.validate(&t).await,
        Err(TokenError::UnknownKey(_))
    ));
}

fn with_introspection(idp: &FakeIdp) -> OidcValidatorConfig {
    let mut cfg = config(idp);
    cfg.introspection = Some(IntrospectionConfig {
        endpoint: None,
        client_id: "mail".into(),
        client_secret: "s3cret:/".into(),
        cache_ttl: Duration::from_secs(60),
        cache_capacity: 100,
    });
    cfg
}

#[tokio::test]
async fn introspection_inactive_is_refused() {
    let idp = FakeIdp::start(&[&keys().idp]).await;
    idp.set_active(false);
    let v = validator(with_introspection(&idp));
    let token = good_token(&idp);
    assert_eq!(v.validate(&token).await, Err(TokenError::Inactive));

    let seen = idp.requests(INTROSPECTION_PATH);
    assert_eq!(seen.len(), 1);
    // client_secret_basic with form-encoded id and secret (RFC 6749 2.3.1).
    let want = format!("Basic {}", STANDARD.encode("mail:s3cret%3A%2F"));
    assert_eq!(seen[0].authorization.as_deref(), Some(want.as_str()));
    assert!(seen[0].body.contains(&format!("token={token}")));
    assert!(seen[0].body.contains("token_type_hint=access_token"));
}

#[tokio::test]
async fn introspection_answers_are_cached_per_token() {
    let idp = FakeIdp::start(&[&keys().idp]).await;
    let v = validator(with_introspection(&idp));
    let token = good_token(&idp);
    assert!(v.validate(&token).await.is_ok());
    assert!(v.validate(&token).await.is_ok());
    assert_eq!(idp.hits(INTROSPECTION_PATH), 1, "second answer from cache");

    let other = signed(&keys().idp, &claims_with(&idp, "sid", json!("session-2")));
    assert!(v.validate(&other).await.is_ok());
    assert_eq!(idp.hits(INTROSPECTION_PATH), 2, "another token is asked");
}

#[tokio::test]
async fn introspection_outage_is_unavailable() {
    let idp = FakeIdp::start(&[&keys().idp]).await;
    let v = validator(with_introspection(&idp));
    let token = good_token(&idp);
    // Warm discovery and JWKS first, then take the IdP down.
    let warm = signed(&keys().idp, &claims_with(&idp, "sid", json!("warm")));
    assert!(v.validate(&warm).await.is_ok());
    idp.set_down(true);
    let err = v.validate(&token).await.expect_err("introspection 503");
    assert!(err.is_temporary(), "{err:?}");
}

#[tokio::test]
async fn garbage_is_malformed_without_asking_the_idp() {
    let idp = FakeIdp::start(&[&keys().idp]).await;
    let v = validator(config(&idp));
    let inputs = [
        "",
        "garbage",
        "a.b",
        "a.b.c.d",
        "***.***.***",
        "eyJhbGciOiJSUzI1NiJ9.%%%.sig",
        "e30.e30.e30",
        "bnVsbA.e30.",
    ];
    for input in inputs {
        match v.validate(input).await {
            Err(TokenError::Malformed(_)) => {}
            other => panic!("{input:?}: expected Malformed, got {other:?}"),
        }
    }
    assert_eq!(idp.total_hits(), 0);
}

#[tokio::test]
async fn verified_tokens_are_remembered_but_the_directory_is_asked_every_time() {
    let idp = FakeIdp::start(&[&keys().idp]).await;
    let directory = TestDirectory::new();
    let v = validator_with(config(&idp), directory.clone());
    let token = good_token(&idp);
    for round in 1..=3 {
        let t = v.validate(&token).await.expect("valid");
        assert_eq!(t.username, USER);
        assert_eq!(t.sid.as_deref(), Some("session-1"));
        assert_eq!(directory.calls(), round, "directory lookup on every login");
    }
    assert_eq!(v.verified_tokens_len(), 1);
    // A refused token is never remembered, and stays refused.
    let forged = signed(&keys().foreign, &claims(&idp));
    for _ in 0..2 {
        assert_eq!(v.validate(&forged).await, Err(TokenError::BadSignature));
    }
    assert_eq!(v.verified_tokens_len(), 1);
    // The user's directory entry still decides, even for a remembered token.
    directory.set_down(true);
    let err = v.validate(&token).await.expect_err("directory down");
    assert!(err.is_temporary(), "{err:?}");
}

#[tokio::test]
async fn a_token_past_its_exp_is_never_remembered() {
    let idp = FakeIdp::start(&[&keys().idp]).await;
    let v = validator(config(&idp));
    // Within the 30 s leeway: accepted, but its `exp` has passed, so it is not kept.
    let late = signed(&keys().idp, &claims_with(&idp, "exp", json!(now() - 5)));
    assert!(v.validate(&late).await.is_ok());
    assert_eq!(v.verified_tokens_len(), 0);
    assert!(v.validate(&good_token(&idp)).await.is_ok());
    assert_eq!(v.verified_tokens_len(), 1);
}

#[tokio::test]
async fn token_cache_off_remembers_nothing() {
    let idp = FakeIdp::start(&[&keys().idp]).await;
    let mut cfg = config(&idp);
    assert_eq!(cfg.token_cache_ttl, Duration::from_secs(300), "default");
    assert_eq!(cfg.token_cache_capacity, 10_000, "default");
    cfg.token_cache_ttl = Duration::ZERO;
    let v = validator(cfg);
    for _ in 0..2 {
        assert!(v.validate(&good_token(&idp)).await.is_ok());
    }
    assert_eq!(v.verified_tokens_len(), 0);
}

#[tokio::test]
async fn revocation_still_refuses_a_remembered_token() {
    use crate::auth::revocation::{
        MemoryRevocationStore, Revocation, RevocationCheckingValidator, RevocationService,
        RevocationStore, SessionRegistry,
    };
    let idp = FakeIdp::start(&[&keys().idp]).await;
    let inner = Arc::new(validator(config(&idp)));
    let store = Arc::new(MemoryRevocationStore::new(Duration::from_secs(60)));
    let service = RevocationService::new(store.clone(), SessionRegistry::new(false), false);
    let v = RevocationCheckingValidator::new(inner.clone(), service);
    let token = good_token(&idp);
    assert!(v.validate(&token).await.is_ok());
    assert!(v.validate(&token).await.is_ok());
    assert_eq!(inner.verified_tokens_len(), 1);
    store
        .revoke(&Revocation::Session {
            issuer: idp.issuer(),
            sid: "session-1".into(),
        })
        .await
        .expect("revoke");
    assert!(matches!(
        v.validate(&token).await,
        Err(TokenError::Revoked(_))
    ));
}
