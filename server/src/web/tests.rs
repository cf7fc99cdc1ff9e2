//! PublicBase rules, and the router end to end with `oneshot` (plus one real listener).

mod revocation;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::response::Response;
use http::header::{CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderMap, Request, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

use super::*;
use crate::auth::request_auth::{HttpAuthSettings, HttpAuthenticator};
use crate::config::HttpStrategy::{self, *};
use crate::testkit::BASE;
use crate::testkit::request_auth::{
    self as testkit, ALICE_BASIC, ISSUER, SECRET, gateway_section, section, with_session,
};

fn identity(strategy: HttpStrategy) -> HttpIdentity {
    HttpIdentity {
        user: "alice@example.com".into(),
        strategy: crate::auth::request_auth::strategy_name(strategy),
        token: None,
    }
}

fn base() -> BaseUrl {
    BaseUrl::parse(BASE).expect("valid base")
}

/// What a proxy that preserves the client's `Host` (and adds `X-Forwarded-*` from it) sends
/// when the client names a host of its choosing: none of it may reach a URL we hand out.
const FORWARDED: &[(&str, &str)] = &[
    ("host", "evil.example"),
    ("x-forwarded-proto", "http"),
    ("x-forwarded-host", "evil.example:8443"),
    ("x-forwarded-prefix", "/phish/"),
];

// ---- BaseUrl and PublicBase ----

#[test]
fn base_url_parsing() {
    assert_eq!(base().to_string(), BASE);
    let b = BaseUrl::parse("http://mail.example.com:8080/prefix/").expect("valid");
    assert_eq!(b.to_string(), "http://mail.example.com:8080/prefix");
    assert_eq!(
        BaseUrl::parse("https://[2001:db8::1]:443/").map(|b| b.to_string()),
        Ok("https://[2001:db8::1]".into())
    );
    for bad in [
        "ftp://x",
        "https://u:p@x",
        "https://x/?q",
        "https://x/#f",
        "not a url",
    ] {
        assert!(BaseUrl::parse(bad).is_err(), "{bad}");
    }
    let bound: SocketAddr = "127.0.0.1:8080".parse().expect("addr");
    assert_eq!(
        BaseUrl::from_bound(bound).to_string(),
        "http://127.0.0.1:8080"
    );
    let bound: SocketAddr = "[::1]:8080".parse().expect("addr");
    assert_eq!(BaseUrl::from_bound(bound).to_string(), "http://[::1]:8080");
}

const GATEWAY_BASE: &str = "https://gw.example.org:8443/mail";

fn gateway_base() -> BaseUrl {
    BaseUrl::parse(GATEWAY_BASE).expect("valid gateway base")
}

#[test]
fn the_gateway_base_counts_only_for_x_user() {
    assert_eq!(
        PublicBase::for_request(
            &base(),
            Some(&gateway_base()),
            identity(XUser).via_gateway()
        ),
        PublicBase(GATEWAY_BASE.into())
    );
    for other in [Some(identity(Basic)), Some(identity(Bearer)), None] {
        assert_eq!(
            PublicBase::for_request(
                &base(),
                Some(&gateway_base()),
                other.as_ref().is_some_and(HttpIdentity::via_gateway)
            ),
            PublicBase(BASE.into()),
            "{other:?}"
        );
    }
}

#[test]
fn x_user_needs_a_configured_gateway_base() {
    let config = |http: &str| {
        let text = format!(
            "[directory]\nkind = \"static\"\npath = \"users.toml\"\n[http]\n{http}\n\
             [http.auth]\nstrategies = [\"bearer\", \"x-user\"]\nx_user_secret = \"s\"\n"
        );
        crate::config::Config::parse(&text, std::path::Path::new("test.toml"))
    };
    match config("") {
        Err(ConfigError::Invalid { key, .. }) => assert_eq!(key, "http.gateway_public_url"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    let ok = config(&format!("gateway_public_url = \"{GATEWAY_BASE}/\"")).expect("valid");
    assert_eq!(
        super::gateway_base(&ok.http).expect("valid"),
        Some(gateway_base())
    );
    let bad = crate::config::HttpSection {
        gateway_public_url: Some("javascript:alert(1)".into()),
        ..Default::default()
    };
    assert!(super::gateway_base(&bad).is_err());
}

#[test]
fn issuer_derivation_from_discovery_url() {
    assert_eq!(
        issuer_from_discovery_url("https://idp/realms/x/.well-known/openid-configuration"),
        Some("https://idp/realms/x".into())
    );
    assert_eq!(issuer_from_discovery_url("https://idp/other"), None);
    assert_eq!(
        issuer_from_discovery_url("/.well-known/openid-configuration"),
        None
    );
}

// ---- router ----

fn app_with(section: &crate::config::HttpAuthSection, limit: usize) -> Router {
    let (authenticator, _) = testkit::authenticator(section);
    let mut ctx = HttpContext::from_parts(authenticator, base(), limit);
    ctx.auth.gateway_base = Some(Arc::new(gateway_base()));
    router(Arc::new(ctx))
}

fn app() -> Router {
    app_with(&section(&[Bearer, Basic]), 1024)
}

fn get(path: &str, pairs: &[(&str, &str)]) -> Request<Body> {
    let mut req = Request::builder().uri(path);
    for (name, value) in pairs {
        req = req.header(*name, *value);
    }
    req.body(Body::empty()).expect("request")
}

fn from_peer(mut req: Request<Body>, peer: &str) -> Request<Body> {
    let addr: SocketAddr = peer.parse().expect("addr");
    req.extensions_mut().insert(ConnectInfo(addr));
    req
}

async fn send(app: Router, req: Request<Body>) -> (Response, Value) {
    let response = app.oneshot(req).await.expect("infallible");
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.expect("body");
    let json = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).expect("JSON body")
    };
    (Response::from_parts(parts, Body::empty()), json)
}

fn values(response: &Response, name: http::HeaderName) -> Vec<String> {
    response
        .headers()
        .get_all(name)
        .iter()
        .map(|v| v.to_str().expect("ASCII").to_string())
        .collect()
}

#[tokio::test]
async fn protected_resource_metadata_is_public() {
    let (response, body) = send(app(), get("/.well-known/oauth-protected-resource", &[])).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(values(&response, CONTENT_TYPE), vec!["application/json"]);
    assert_eq!(
        body,
        json!({
            "resource": BASE,
            "authorization_servers": [ISSUER],
            "bearer_methods_supported": ["header"],
            "scopes_supported": ["openid", "email"],
        })
    );
}

#[tokio::test]
async fn protected_resource_metadata_falls_back_to_the_discovery_url() {
    let v = testkit::TestValidator::named().with_issuer(None);
    assert_eq!(
        resource_metadata(BASE, &v)["authorization_servers"],
        json!([ISSUER])
    );
}

#[tokio::test]
async fn protected_resource_metadata_is_404_without_bearer() {
    let (response, body) = send(
        app_with(&section(&[Basic]), 1024),
        get("/.well-known/oauth-protected-resource", &[]),
    )
    .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(body["status"], 404);
}

#[tokio::test]
async fn no_credentials_gives_every_challenge_in_order() {
    let (response, body) = send(app(), get("/whoami", &[])).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        values(&response, WWW_AUTHENTICATE),
        vec![
            format!(
                r#"Bearer realm="mail-oidc", resource_metadata="{BASE}/.well-known/oauth-protected-resource""#
            ),
            r#"Basic realm="mail-oidc", charset="UTF-8""#.to_string(),
        ]
    );
    assert_eq!(
        values(&response, CONTENT_TYPE),
        vec!["application/problem+json"]
    );
    assert_eq!(
        body,
        json!({"type": "about:blank", "title": "Unauthorized", "status": 401, "detail": "no credentials"})
    );
}

#[tokio::test]
async fn challenge_order_follows_config_through_the_router() {
    let (response, _) = send(
        app_with(&gateway_section(&[Basic, XUser, Bearer], true, false), 1024),
        get("/whoami", &[]),
    )
    .await;
    let got = values(&response, WWW_AUTHENTICATE);
    assert_eq!(got.len(), 2);
    assert!(got[0].starts_with("Basic "), "{got:?}");
    assert!(got[1].starts_with("Bearer "), "{got:?}");
}

#[tokio::test]
async fn expired_bearer_gets_the_invalid_token_hint() {
    let (response, body) = send(
        app(),
        get("/whoami", &[("authorization", "Bearer expired")]),
    )
    .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        values(&response, WWW_AUTHENTICATE)[0],
        format!(
            r#"Bearer realm="mail-oidc", resource_metadata="{BASE}/.well-known/oauth-protected-resource", error="invalid_token", error_description="expired: token has expired""#
        )
    );
    assert_eq!(body["detail"], "bearer: expired: token has expired");
}

#[tokio::test]
async fn idp_down_is_503_with_retry_after() {
    let (response, body) = send(
        app(),
        get("/whoami", &[("authorization", "Bearer idp-down")]),
    )
    .await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(values(&response, RETRY_AFTER), vec!["10"]);
    assert!(values(&response, WWW_AUTHENTICATE).is_empty());
    assert_eq!(
        values(&response, CONTENT_TYPE),
        vec!["application/problem+json"]
    );
    assert_eq!(body["status"], 503);
}

#[tokio::test]
async fn duplicate_authorization_is_400_problem() {
    let req = get(
        "/whoami",
        &[
            ("authorization", ALICE_BASIC),
            ("authorization", ALICE_BASIC),
        ],
    );
    let (response, body) = send(app(), req).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        values(&response, CONTENT_TYPE),
        vec!["application/problem+json"]
    );
    assert_eq!(body["detail"], "more than one Authorization header");
}

#[tokio::test]
async fn basic_and_bearer_reach_the_handler_with_the_default_base() {
    for auth in [ALICE_BASIC, "Bearer good-alice"] {
        let mut pairs = vec![("authorization", auth)];
        pairs.extend_from_slice(FORWARDED);
        let (response, body) = send(app(), get("/whoami", &pairs)).await;
        assert_eq!(response.status(), StatusCode::OK, "{auth}");
        assert_eq!(body["user"], "alice@example.com");
        // Neither the Host nor forwarded headers shape the base.
        assert_eq!(body["publicBase"], BASE);
    }
}

#[tokio::test]
async fn x_user_through_the_gateway_uses_the_configured_gateway_base() {
    let app = app_with(&gateway_section(&[XUser, Bearer], true, true), 1024);
    let mut pairs = with_session(&[("x-user", "bob"), ("x-user-secret", SECRET)]);
    pairs.extend_from_slice(FORWARDED);
    let (response, body) = send(
        app.clone(),
        from_peer(get("/whoami", &pairs), "10.0.0.2:4000"),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        body,
        json!({"user": "bob@example.com", "strategy": "x-user", "publicBase": GATEWAY_BASE})
    );
    // Same headers from outside the trusted network: refused, and no x-user challenge.
    let (response, body) = send(app, from_peer(get("/whoami", &pairs), "192.0.2.9:4000")).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(body["detail"], "x-user: not accepted from this client");
    let challenges = values(&response, WWW_AUTHENTICATE);
    assert_eq!(challenges.len(), 1);
    assert!(challenges[0].starts_with("Bearer "));
}

#[tokio::test]
async fn the_gateway_secret_does_not_reach_handlers() {
    let (authenticator, _) = testkit::authenticator(&gateway_section(&[XUser], true, false));
    let ctx = Arc::new(HttpContext::from_parts(authenticator, base(), 1024));
    let echo = Router::new()
        .route(
            "/echo",
            axum::routing::get(|h: HeaderMap| async move {
                h.contains_key("x-user-secret").to_string()
            }),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            ctx.auth.clone(),
            crate::auth::request_auth::require_auth,
        ));
    let response = echo
        .oneshot(get(
            "/echo",
            &with_session(&[("x-user", "alice"), ("x-user-secret", SECRET)]),
        ))
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = axum::body::to_bytes(response.into_body(), 64)
        .await
        .expect("body");
    assert_eq!(&bytes[..], b"false");
}

#[tokio::test]
async fn unknown_paths_are_404_not_401() {
    let response = app().oneshot(get("/nope", &[])).await.expect("infallible");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(response.headers().get(WWW_AUTHENTICATE).is_none());
}

#[tokio::test]
async fn announced_oversized_body_is_413_before_auth() {
    let req = Request::builder()
        .method("POST")
        .uri("/whoami")
        .header("content-length", "2048")
        .body(Body::from(vec![0u8; 2048]))
        .expect("request");
    let (response, body) = send(app(), req).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["status"], 413);
}

#[tokio::test]
async fn streamed_body_is_capped_for_any_handler() {
    let (authenticator, _) = testkit::authenticator(&section(&[Basic]));
    let ctx = Arc::new(HttpContext::from_parts(authenticator, base(), 16));
    // Reads the raw body stream, bypassing extractor limits.
    let sink = Router::new().route(
        "/sink",
        axum::routing::post(|req: axum::extract::Request| async move {
            match axum::body::to_bytes(req.into_body(), usize::MAX).await {
                Ok(b) => format!("read {}", b.len()),
                Err(_) => "limited".to_string(),
            }
        }),
    );
    let app = sink
        .layer(axum::middleware::from_fn_with_state(ctx.clone(), guard))
        .layer(DefaultBodyLimit::max(ctx.max_upload_size));
    let small = Request::builder()
        .method("POST")
        .uri("/sink")
        .body(Body::from(vec![7u8; 5]))
        .expect("request");
    let response = app.clone().oneshot(small).await.expect("infallible");
    let bytes = axum::body::to_bytes(response.into_body(), 64)
        .await
        .expect("body");
    assert_eq!(&bytes[..], b"read 5");
    // No Content-Length header: only the body cap can stop it.
    let req = Request::builder()
        .method("POST")
        .uri("/sink")
        .body(Body::from(vec![7u8; 20]))
        .expect("request");
    assert!(req.headers().get("content-length").is_none());
    let response = app.oneshot(req).await.expect("infallible");
    let bytes = axum::body::to_bytes(response.into_body(), 64)
        .await
        .expect("body");
    assert_eq!(&bytes[..], b"limited");
}

#[tokio::test]
async fn serve_passes_the_peer_address_to_the_auth_layer() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut s = gateway_section(&[XUser], false, false);
    s.x_user_trusted_sources = vec!["127.0.0.1/32".into()];
    let settings = HttpAuthSettings::from_section(&s).expect("valid");
    let authenticator = HttpAuthenticator::with_settings(
        settings,
        Arc::new(testkit::TestDirectory::default()),
        None,
    );
    let ctx = Arc::new(HttpContext::from_parts(
        authenticator,
        BaseUrl::from_bound(addr),
        1024,
    ));
    let server = tokio::spawn(serve(listener, ctx));
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(
            b"GET /whoami HTTP/1.1\r\nHost: x\r\nX-User: alice\r\nX-User-Iss: https://idp\r\nX-User-Sub: s\r\n\
              X-User-Sid: \r\nX-User-Iat: \r\nX-User-Exp: 4102444800\r\nConnection: close\r\n\r\n",
        )
        .await
        .expect("write");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await.expect("read");
    server.abort();
    assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
    assert!(
        reply.contains(&format!(r#""publicBase":"http://{addr}""#)),
        "{reply}"
    );
    assert!(reply.contains(r#""strategy":"x-user""#), "{reply}");
}
