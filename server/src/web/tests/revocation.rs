//! `POST /backchannel-logout` and `POST /admin/revoke` through the whole router (`oneshot`):
//! the logout receiver with the real OIDC validator against the fake IdP, live sessions in the
//! registry, and the store up, down or recording.

use std::sync::Arc;

use axum::body::Body;
use base64::Engine as _;
use http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use http::{Request, StatusCode};
use serde_json::{Value, json};

use super::*;
use crate::auth::oidc::TokenValidator;
use crate::auth::revocation::{
    EndReason, LiveSession, LogoutReceiver, LogoutSettings, Revocation, RevocationService,
    RevocationStore, SessionHandle, SessionRegistry,
};
use crate::testkit::TestValidator;
use crate::testkit::oidc::{FakeIdp, keys, validator};
use crate::testkit::revocation::{
    CLIENT_ID, DownStore, RecordingStore, logout_claims, now, signed, token_session,
};

const FORM: &str = "application/x-www-form-urlencoded";

fn post(path: &str, pairs: &[(&str, &str)], body: impl Into<String>) -> Request<Body> {
    let mut req = Request::builder().method("POST").uri(path);
    for (name, value) in pairs {
        req = req.header(*name, *value);
    }
    req.body(Body::from(body.into())).expect("request")
}

fn logout_form(token: &str) -> Request<Body> {
    post(
        logout::PATH,
        &[("content-type", FORM)],
        format!("logout_token={token}"),
    )
}

/// The router with a logout receiver (real validator against `idp`) over `store`.
fn logout_app(idp: &FakeIdp, store: Arc<dyn RevocationStore>) -> (Router, Arc<RevocationService>) {
    let service = RevocationService::new(store, SessionRegistry::new(false), false);
    let (authenticator, _) = testkit::authenticator(&section(&[Bearer, Basic]));
    let mut ctx = HttpContext::from_parts(authenticator, base(), 64 * 1024);
    ctx.logout = Some(Arc::new(LogoutReceiver::new(
        Arc::new(validator(idp, false)),
        service.clone(),
        LogoutSettings {
            audiences: vec![CLIENT_ID.into()],
            max_age: 120,
            leeway: 30,
        },
    )));
    ctx.revocation = Some(service.clone());
    (router(Arc::new(ctx)), service)
}

fn live(service: &RevocationService, issuer: &str, sid: &str) -> SessionHandle {
    service.registry().register(LiveSession::new(
        "imap",
        "alice@example.com",
        Some(token_session(issuer, "sub-alice", Some(sid), now() - 60)),
    ))
}

fn header(response: &Response, name: http::HeaderName) -> Option<String> {
    values(response, name).into_iter().next()
}

#[tokio::test]
async fn backchannel_logout_ends_the_live_session_with_200_no_store() {
    let idp = FakeIdp::start(&[&keys().idp]).await;
    let store = Arc::new(RecordingStore::new());
    let (app, service) = logout_app(&idp, store.clone());
    let mut session = live(&service, &idp.issuer(), "sid-http");
    let other = live(&service, &idp.issuer(), "sid-other");

    let token = signed(Some("logout+jwt"), &logout_claims(&idp, "sid-http"));
    let (response, body) = send(app.clone(), logout_form(&token)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        header(&response, CACHE_CONTROL).as_deref(),
        Some("no-store")
    );
    assert_eq!(body, Value::Null, "no body");
    assert_eq!(
        store.revokes(),
        vec![Revocation::Session {
            issuer: idp.issuer(),
            sid: "sid-http".into()
        }]
    );
    let reason = tokio::time::timeout(std::time::Duration::from_secs(5), session.ended())
        .await
        .expect("the session ends");
    assert!(matches!(reason, EndReason::Revoked(_)), "{reason:?}");
    assert_eq!(other.try_ended(), None);

    // The same token again is a replay: 400, nothing more written.
    let (response, body) = send(app, logout_form(&token)).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], json!("invalid_request"));
    assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|d| d.contains("replay")),
        "{body}"
    );
    assert_eq!(store.revokes().len(), 1);
}

#[tokio::test]
async fn a_jti_reused_with_another_sid_is_400_and_revokes_nothing() {
    let idp = FakeIdp::start(&[&keys().idp]).await;
    let store = Arc::new(RecordingStore::new());
    let (app, service) = logout_app(&idp, store.clone());
    let first = logout_claims(&idp, "sid-a");
    let (response, _) = send(app.clone(), logout_form(&signed(None, &first))).await;
    assert_eq!(response.status(), StatusCode::OK);
    let other = live(&service, &idp.issuer(), "sid-b");

    let mut reused = logout_claims(&idp, "sid-b");
    reused["jti"] = first["jti"].clone();
    let (response, body) = send(app, logout_form(&signed(None, &reused))).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], json!("invalid_request"));
    assert_eq!(store.revokes().len(), 1, "sid-b was not revoked");
    assert_eq!(other.try_ended(), None);
}

#[tokio::test]
async fn a_bad_logout_token_is_400_with_an_oauth_error_body() {
    let idp = FakeIdp::start(&[&keys().idp]).await;
    let store = Arc::new(RecordingStore::new());
    let (app, service) = logout_app(&idp, store.clone());
    let session = live(&service, &idp.issuer(), "sid-1");
    let mut claims = logout_claims(&idp, "sid-1");
    claims["aud"] = json!(["someone-else"]);
    let cases = [
        ("wrong aud", signed(Some("JWT"), &claims)),
        (
            "foreign key",
            crate::testkit::revocation::signed_with(
                &keys().foreign,
                Some("JWT"),
                &logout_claims(&idp, "sid-1"),
            ),
        ),
        ("garbage", "not-a-jwt".to_string()),
    ];
    for (name, token) in cases {
        let (response, body) = send(app.clone(), logout_form(&token)).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{name}");
        assert_eq!(
            header(&response, CONTENT_TYPE).as_deref(),
            Some("application/json"),
            "{name}"
        );
        assert_eq!(
            header(&response, CACHE_CONTROL).as_deref(),
            Some("no-store")
        );
        assert_eq!(body["error"], json!("invalid_request"), "{name}: {body}");
        assert!(
            body["error_description"]
                .as_str()
                .is_some_and(|d| !d.is_empty()),
            "{name}: {body}"
        );
        let fields: Vec<&String> = body.as_object().expect("object").keys().collect();
        assert_eq!(fields, ["error", "error_description"], "{name}");
    }
    let (_, body) = send(app, logout_form(&signed(Some("JWT"), &claims))).await;
    assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|d| d.contains("aud")),
        "{body}"
    );
    assert_eq!(store.writes(), 0);
    assert_eq!(session.try_ended(), None);
}

#[tokio::test]
async fn a_logout_request_that_is_not_a_form_with_one_token_is_400() {
    let idp = FakeIdp::start(&[&keys().idp]).await;
    let store = Arc::new(RecordingStore::new());
    let (app, _) = logout_app(&idp, store.clone());
    let token = signed(Some("JWT"), &logout_claims(&idp, "sid-form"));
    let json_body = json!({ "logout_token": token }).to_string();
    let requests = [
        (
            "JSON body",
            post(
                logout::PATH,
                &[("content-type", "application/json")],
                json_body,
            ),
        ),
        (
            "no content type",
            post(logout::PATH, &[], format!("logout_token={token}")),
        ),
        (
            "no logout_token",
            post(
                logout::PATH,
                &[("content-type", FORM)],
                format!("token={token}"),
            ),
        ),
        (
            "empty logout_token",
            post(logout::PATH, &[("content-type", FORM)], "logout_token="),
        ),
        (
            "two logout_tokens",
            post(
                logout::PATH,
                &[("content-type", FORM)],
                format!("logout_token={token}&logout_token={token}"),
            ),
        ),
    ];
    for (name, req) in requests {
        let (response, body) = send(app.clone(), req).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{name}");
        assert_eq!(body["error"], json!("invalid_request"), "{name}: {body}");
        assert!(body["error_description"].is_string(), "{name}: {body}");
    }
    assert_eq!(store.writes(), 0);
    // The token itself was fine all along.
    let (response, _) = send(app, logout_form(&token)).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn store_down_is_503_with_retry_after() {
    let idp = FakeIdp::start(&[&keys().idp]).await;
    let (app, _) = logout_app(&idp, Arc::new(DownStore));
    let token = signed(Some("JWT"), &logout_claims(&idp, "sid-down"));
    let (response, body) = send(app, logout_form(&token)).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let retry = header(&response, RETRY_AFTER).expect("Retry-After");
    assert!(retry.parse::<u64>().is_ok_and(|s| s > 0), "{retry}");
    assert_eq!(
        header(&response, CACHE_CONTROL).as_deref(),
        Some("no-store")
    );
    assert_eq!(body["error"], json!("temporarily_unavailable"), "{body}");
}

#[tokio::test]
async fn idp_down_is_503_with_retry_after() {
    let idp = FakeIdp::start(&[&keys().idp]).await;
    let store = Arc::new(RecordingStore::new());
    let (app, _) = logout_app(&idp, store.clone());
    idp.set_down(true);
    let token = signed(Some("JWT"), &logout_claims(&idp, "sid-idp-down"));
    let (response, _) = send(app, logout_form(&token)).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(header(&response, RETRY_AFTER).is_some());
    assert_eq!(store.writes(), 0);
}

#[tokio::test]
async fn backchannel_logout_is_404_without_oidc() {
    let (response, _) = send(app(), logout_form("a.b.c")).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

// ---- /admin/revoke ----

const ADMIN: &str = "alice@example.com";

fn bob_basic() -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("bob:bobpw")
    )
}

struct Admin {
    app: Router,
    service: Arc<RevocationService>,
    store: Arc<RecordingStore>,
}

fn admin_app() -> Admin {
    let store = Arc::new(RecordingStore::new());
    let (app, service) = admin_app_over(store.clone());
    Admin {
        app,
        service,
        store,
    }
}

/// The admin router over any store (e.g. one that is down).
fn admin_app_over(store: Arc<dyn RevocationStore>) -> (Router, Arc<RevocationService>) {
    let service = RevocationService::new(store, SessionRegistry::new(false), false);
    let (authenticator, _) = testkit::authenticator(&section(&[Bearer, Basic]));
    let mut ctx = HttpContext::from_parts(authenticator, base(), 64 * 1024);
    ctx.revocation = Some(service.clone());
    ctx.admins = vec!["Alice@Example.com".into()];
    ctx.issuer = Some(TestValidator::new() as Arc<dyn TokenValidator>);
    (router(Arc::new(ctx)), service)
}

fn revoke_as(credentials: &str, body: Value) -> Request<Body> {
    post(
        admin::PATH,
        &[
            (AUTHORIZATION.as_str(), credentials),
            ("content-type", "application/json"),
        ],
        body.to_string(),
    )
}

impl Admin {
    fn session(&self, user: &str, token: Option<crate::auth::sasl::TokenSession>) -> SessionHandle {
        self.service
            .registry()
            .register(LiveSession::new("imap", user, token))
    }
}

fn ended(handle: &SessionHandle) -> bool {
    matches!(handle.try_ended(), Some(EndReason::Revoked(_)))
}

#[tokio::test]
async fn admin_revoke_is_forbidden_to_non_admins() {
    let a = admin_app();
    let alice = a.session(ADMIN, None);
    let (response, body) = send(
        a.app.clone(),
        revoke_as(&bob_basic(), json!({"user": "alice"})),
    )
    .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN, "{body}");
    assert!(!ended(&alice));
    assert_eq!(a.store.writes(), 0);
    // Without credentials: the usual 401.
    let req = post(admin::PATH, &[], json!({"user": "alice"}).to_string());
    let (response, _) = send(a.app, req).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(!ended(&alice));
}

#[tokio::test]
async fn admin_revokes_every_session_of_a_user_password_ones_too() {
    let a = admin_app();
    let iss = crate::testkit::ISSUER;
    let bob_password = a.session("bob@example.com", None);
    let bob_token = a.session(
        "bob@example.com",
        Some(token_session(iss, "sub-bob", Some("bob-sid"), now() - 30)),
    );
    let alice = a.session(ADMIN, None);
    let (response, body) = send(a.app, revoke_as(ALICE_BASIC, json!({"user": "BOB"}))).await;
    assert_eq!(response.status(), StatusCode::OK, "{body}");
    assert!(ended(&bob_password), "password session ended");
    assert!(ended(&bob_token), "token session ended");
    assert!(!ended(&alice), "the admin's own session lives on");
    assert_eq!(body["ended"], json!(2), "{body}");
    let revoked: Vec<Revocation> =
        serde_json::from_value(body["revoked"].clone()).expect("revocations");
    assert!(
        matches!(&revoked[0], Revocation::User { user, .. } if user == "bob@example.com"),
        "canonical name: {revoked:?}"
    );
    // The gateway knows tokens by subject: bob's live subject is revoked too.
    assert!(
        revoked.iter().any(|r| matches!(r,
            Revocation::Subject { issuer, subject, .. } if issuer == iss && subject == "sub-bob")),
        "{revoked:?}"
    );
    assert_eq!(a.store.revokes(), revoked);
}

#[tokio::test]
async fn admin_revoke_with_the_store_down_is_503_with_retry_after() {
    let (app, service) = admin_app_over(Arc::new(DownStore));
    for body in [json!({"user": "bob"}), json!({"sid": "s-down"})] {
        let (response, problem) = send(app.clone(), revoke_as(ALICE_BASIC, body)).await;
        assert_eq!(
            response.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "{problem}"
        );
        let retry = header(&response, RETRY_AFTER).expect("Retry-After on every 503");
        assert!(retry.parse::<u64>().is_ok_and(|s| s > 0), "{retry}");
    }
    assert!(service.registry().sessions().is_empty());
}

#[tokio::test]
async fn admin_revokes_a_sid_or_a_subject_of_the_configured_issuer() {
    let a = admin_app();
    let iss = crate::testkit::ISSUER;
    let by_sid = a.session(
        ADMIN,
        Some(token_session(iss, "sub-alice", Some("s9"), now() - 30)),
    );
    let by_sub = a.session(
        "bob@example.com",
        Some(token_session(iss, "sub-bob", Some("s7"), now() - 30)),
    );
    let elsewhere = a.session(
        ADMIN,
        Some(token_session(
            "https://other.example",
            "sub-alice",
            Some("s9"),
            now() - 30,
        )),
    );

    let (response, body) = send(a.app.clone(), revoke_as(ALICE_BASIC, json!({"sid": "s9"}))).await;
    assert_eq!(response.status(), StatusCode::OK, "{body}");
    assert_eq!(
        body["revoked"],
        json!([{"kind": "session", "issuer": iss, "sid": "s9"}])
    );
    assert!(ended(&by_sid));
    assert!(!ended(&elsewhere), "same sid, other issuer");
    assert!(!ended(&by_sub));

    let (response, body) = send(
        a.app.clone(),
        revoke_as(ALICE_BASIC, json!({"sub": "sub-bob"})),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK, "{body}");
    assert!(ended(&by_sub));
    assert_eq!(body["ended"], json!(1));

    // An explicit iss is honoured.
    let (response, body) = send(
        a.app,
        revoke_as(
            ALICE_BASIC,
            json!({"sid": "s9", "iss": "https://other.example"}),
        ),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK, "{body}");
    assert!(ended(&elsewhere));
}

#[tokio::test]
async fn admin_revoke_refuses_bad_bodies_with_400() {
    let a = admin_app();
    let alice = a.session(ADMIN, None);
    for body in [
        "{}",
        r#"{"sub":"a","sid":"b"}"#,
        r#"{"user":"bob","iss":"https://idp"}"#,
        r#"{"sub":"  "}"#,
        r#"{"subject":"a"}"#,
        r#"{"user":7}"#,
        "not json",
        "",
    ] {
        let req = post(
            admin::PATH,
            &[
                (AUTHORIZATION.as_str(), ALICE_BASIC),
                ("content-type", "application/json"),
            ],
            body,
        );
        let (response, problem) = send(a.app.clone(), req).await;
        assert_eq!(
            response.status(),
            StatusCode::BAD_REQUEST,
            "{body:?}: {problem}"
        );
        assert!(problem["detail"].is_string(), "{body:?}: {problem}");
    }
    let (response, _) = send(a.app, revoke_as(ALICE_BASIC, json!({"user": "nobody"}))).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND, "unknown user");
    assert_eq!(a.store.writes(), 0);
    assert!(!ended(&alice));
}
