//! The pure core: settings, header parsing, each strategy, challenges and error responses.

use std::net::SocketAddr;
use std::path::Path;

use http::header::{CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, StatusCode};

use super::*;
use crate::config::{Config, ConfigError, HttpStrategy::*};
use crate::testkit::request_auth::{
    self as testkit, ALICE_BASIC, SECRET, gateway_section, section, with_session,
};
use crate::testkit::{BASE, headers};

const META: &str = "https://mail.example.com/.well-known/oauth-protected-resource";

fn peer(addr: &str) -> Option<SocketAddr> {
    Some(addr.parse().expect("test address"))
}

async fn run(
    section: &HttpAuthSection,
    pairs: &[(&str, &str)],
    from: Option<SocketAddr>,
) -> Result<HttpIdentity, AuthRejection> {
    let (auth, _) = testkit::authenticator(section);
    auth.authenticate(&headers(pairs), from).await
}

fn unauthorized(result: Result<HttpIdentity, AuthRejection>) -> (String, Option<TokenError>) {
    match result {
        Err(AuthRejection::Unauthorized {
            detail,
            bearer_error,
        }) => (detail, bearer_error),
        other => panic!("expected 401, got {other:?}"),
    }
}

fn accepted(result: Result<HttpIdentity, AuthRejection>) -> HttpIdentity {
    match result {
        Ok(identity) => identity,
        Err(e) => panic!("expected success, got {e:?}"),
    }
}

fn config_error(result: Result<HttpAuthSettings, ConfigError>) -> (String, String) {
    match result {
        Err(ConfigError::Invalid { key, message }) => (key, message),
        Err(other) => panic!("unexpected error {other}"),
        Ok(s) => panic!("accepted {s:?}"),
    }
}

// ---- settings ----

#[test]
fn config_refuses_x_user_without_secret_or_sources() {
    let text = "[directory]\nkind = \"static\"\npath = \"users.toml\"\n\
                [http]\ngateway_public_url = \"https://gw.example/oidc\"\n\
                [http.auth]\nstrategies = [\"x-user\", \"bearer\"]\n";
    match Config::parse(text, Path::new("test.toml")) {
        Err(ConfigError::Invalid { key, message }) => {
            assert_eq!(key, "http.auth.strategies");
            assert!(message.contains("http.auth.x_user_secret"), "{message}");
            assert!(
                message.contains("http.auth.x_user_trusted_sources"),
                "{message}"
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // Either proof alone is enough.
    for extra in [
        "x_user_secret = \"s\"\n",
        "x_user_trusted_sources = [\"10.0.0.0/8\"]\n",
    ] {
        let ok = format!("{text}{extra}");
        assert!(
            Config::parse(&ok, Path::new("test.toml")).is_ok(),
            "{extra}"
        );
    }
}

#[test]
fn settings_repeat_the_x_user_check_for_hand_built_configs() {
    let (key, message) = config_error(HttpAuthSettings::from_section(&gateway_section(
        &[XUser],
        false,
        false,
    )));
    assert_eq!(key, "http.auth.strategies");
    assert!(message.contains("http.auth.x_user_secret"));
    assert!(message.contains("http.auth.x_user_trusted_sources"));
}

#[test]
fn settings_refuse_bad_values() {
    let mut s = gateway_section(&[XUser], true, false);
    s.x_user_secret = Some(String::new());
    assert_eq!(
        config_error(HttpAuthSettings::from_section(&s)).0,
        "http.auth.x_user_secret"
    );

    let mut s = section(&[Basic]);
    s.realm = "caf\u{e9}".into();
    assert_eq!(
        config_error(HttpAuthSettings::from_section(&s)).0,
        "http.auth.realm"
    );

    let mut s = gateway_section(&[XUser], false, false);
    s.x_user_trusted_sources = vec!["10.0.0.0/33".into()];
    assert_eq!(
        config_error(HttpAuthSettings::from_section(&s)).0,
        "http.auth.x_user_trusted_sources"
    );

    let mut s = section(&[Basic]);
    s.x_user_header = "bad header".into();
    assert_eq!(
        config_error(HttpAuthSettings::from_section(&s)).0,
        "http.auth.x_user_header"
    );

    assert_eq!(
        config_error(HttpAuthSettings::from_section(&section(&[]))).0,
        "http.auth.strategies"
    );
}

#[test]
fn settings_accept_a_bare_address_and_drop_repeated_strategies() {
    let mut s = gateway_section(&[Basic, XUser, Basic], false, false);
    s.x_user_trusted_sources = vec!["192.0.2.7".into(), "2001:db8::/32".into()];
    let settings = HttpAuthSettings::from_section(&s).expect("valid");
    assert_eq!(settings.strategies, vec![Basic, XUser]);
    assert_eq!(
        settings.x_user_trusted_sources[0].to_string(),
        "192.0.2.7/32"
    );
    // The secret never shows in Debug output.
    let mut s = gateway_section(&[XUser], true, false);
    s.x_user_secret = Some(SECRET.into());
    let shown = format!("{:?}", HttpAuthSettings::from_section(&s).expect("valid"));
    assert!(!shown.contains(SECRET), "{shown}");
}

#[test]
fn bearer_without_oidc_is_dropped_or_refused() {
    let backends = |validator| AuthBackends {
        directory: std::sync::Arc::new(testkit::TestDirectory::default()),
        validator,
        admins: Arc::from([]),
        revocation: None,
        throttle: None,
    };
    let auth =
        HttpAuthenticator::new(&section(&[Bearer, Basic]), &backends(None)).expect("basic left");
    assert_eq!(auth.settings().strategies, vec![Basic]);
    assert!(auth.bearer_validator().is_none());
    match HttpAuthenticator::new(&section(&[Bearer]), &backends(None)) {
        Err(ConfigError::Invalid { key, .. }) => assert_eq!(key, "http.auth.strategies"),
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("bearer-only without [oidc] must not start"),
    }
    let v: std::sync::Arc<dyn TokenValidator> =
        std::sync::Arc::new(testkit::TestValidator::named());
    let auth =
        HttpAuthenticator::new(&section(&[Bearer, Basic]), &backends(Some(v))).expect("valid");
    assert_eq!(auth.settings().strategies, vec![Bearer, Basic]);
    assert!(auth.bearer_validator().is_some());
}

// ---- challenges ----

#[test]
fn challenges_follow_the_configured_order_exactly() {
    let basic = r#"Basic realm="mail-oidc", charset="UTF-8""#;
    let bearer = format!(r#"Bearer realm="mail-oidc", resource_metadata="{META}""#);
    let cases: Vec<(Vec<HttpStrategy>, Vec<String>)> = vec![
        (vec![Bearer, Basic], vec![bearer.clone(), basic.into()]),
        (vec![Basic, Bearer], vec![basic.into(), bearer.clone()]),
        (vec![XUser, Bearer], vec![bearer.clone()]),
        (vec![Basic], vec![basic.into()]),
        (
            vec![Basic, XUser, Bearer],
            vec![basic.into(), bearer.clone()],
        ),
        (vec![XUser], vec![]),
    ];
    for (strategies, expected) in cases {
        assert_eq!(
            challenge::challenges(&strategies, "mail-oidc", BASE, None),
            expected,
            "{strategies:?}"
        );
    }
}

#[test]
fn bearer_challenge_carries_the_rfc6750_hint_when_a_token_failed() {
    let got = challenge::challenges(
        &[Basic, Bearer],
        "mail-oidc",
        BASE,
        Some(&TokenError::Expired),
    );
    assert_eq!(
        got,
        vec![
            r#"Basic realm="mail-oidc", charset="UTF-8""#.to_string(),
            format!(
                r#"Bearer realm="mail-oidc", resource_metadata="{META}", error="invalid_token", error_description="expired: token has expired""#
            ),
        ]
    );
}

#[test]
fn realm_is_escaped_as_a_quoted_string() {
    let got = challenge::challenges(&[Basic], r#"a "quoted" \realm"#, BASE, None);
    assert_eq!(
        got,
        vec![r#"Basic realm="a \"quoted\" \\realm", charset="UTF-8""#.to_string()]
    );
}

#[test]
fn error_description_names_code_and_reason_for_every_token_error() {
    let cases = [
        (TokenError::Expired, "expired: token has expired"),
        (
            TokenError::BadSignature,
            "bad_signature: signature does not verify",
        ),
        (
            TokenError::WrongAudience,
            "wrong_audience: audience does not contain the configured audience",
        ),
        (
            TokenError::NotYetValid,
            "not_yet_valid: token is not valid yet (nbf in the future)",
        ),
        (
            TokenError::WrongIssuer("https://evil".into()),
            "wrong_issuer: issuer 'https://evil' is not the configured issuer",
        ),
        (
            TokenError::UnknownKey("k1".into()),
            "unknown_kid: no key with kid 'k1' in the issuer's JWKS",
        ),
        (
            TokenError::AlgorithmNotAllowed("HS256".into()),
            "alg_not_allowed: algorithm HS256 is not allowed",
        ),
        (
            TokenError::MissingClaim("exp".into()),
            "missing_claim: required claim exp is missing",
        ),
        (
            TokenError::WrongType("id".into()),
            "wrong_type: token type 'id' is not an access token",
        ),
        (
            TokenError::Inactive,
            "inactive: introspection says the token is not active",
        ),
        (
            TokenError::UnknownUser("carol".into()),
            "unknown_user: user 'carol' is not in the directory",
        ),
        (
            TokenError::Malformed("bad base64".into()),
            "malformed: token is not a well-formed JWT: bad base64",
        ),
    ];
    for (error, expected) in cases {
        assert_eq!(challenge::error_description(&error), expected);
    }
}

#[test]
fn error_description_is_sanitized_and_bounded() {
    let hostile = TokenError::Malformed(format!("a\"b\\c\u{e9}\r\n{}", "x".repeat(500)));
    let d = challenge::error_description(&hostile);
    assert!(
        d.starts_with("malformed: token is not a well-formed JWT: a'b/c???"),
        "{d}"
    );
    assert!(d.ends_with("..."));
    assert_eq!(d.chars().count(), 203);
    assert!(
        d.bytes()
            .all(|b| (0x20..=0x7e).contains(&b) && b != b'"' && b != b'\\')
    );
    assert!(HeaderValue::from_str(&challenge::quote(&d)).is_ok());
}

// ---- duplicates and parsing ----

#[tokio::test]
async fn two_authorization_headers_are_a_bad_request() {
    let got = run(
        &section(&[Bearer, Basic]),
        &[
            ("authorization", ALICE_BASIC),
            ("authorization", "Bearer good-alice"),
        ],
        None,
    )
    .await;
    assert_eq!(
        got,
        Err(AuthRejection::BadRequest(
            "more than one Authorization header".into()
        ))
    );
}

#[tokio::test]
async fn two_x_user_headers_are_a_bad_request() {
    for strategies in [&[XUser, Bearer][..], &[Bearer][..]] {
        let got = run(
            &gateway_section(strategies, true, false),
            &[
                ("x-user", "alice"),
                ("x-user", "bob"),
                ("x-user-secret", SECRET),
            ],
            None,
        )
        .await;
        assert_eq!(
            got,
            Err(AuthRejection::BadRequest(
                "more than one x-user header".into()
            )),
            "{strategies:?}"
        );
    }
}

#[test]
fn authorization_schemes_are_case_insensitive() {
    let x_user = http::HeaderName::from_static("x-user");
    let parse = |v: &str| {
        credentials::presented(&headers(&[("authorization", v)]), &x_user)
            .expect("parses")
            .authorization
    };
    assert_eq!(
        parse("bearer abc"),
        Some(credentials::Authorization::Bearer("abc".into()))
    );
    assert_eq!(
        parse("BASIC  eA=="),
        Some(credentials::Authorization::Basic("eA==".into()))
    );
    assert_eq!(
        parse("Bearer"),
        Some(credentials::Authorization::Bearer(String::new()))
    );
    assert_eq!(
        parse("Negotiate x"),
        Some(credentials::Authorization::Other("Negotiate".into()))
    );
}

#[test]
fn basic_payload_decoding() {
    assert_eq!(
        credentials::decode_basic("YWxpY2U6YTpi"),
        Ok(("alice".into(), "a:b".into()))
    );
    assert!(credentials::decode_basic("!!!").is_err());
    assert!(credentials::decode_basic("YWxpY2U=").is_err()); // "alice", no colon
    assert!(credentials::decode_basic("OnB3").is_err()); // ":pw", empty user
}

// ---- basic ----

#[tokio::test]
async fn basic_accepts_the_directory_password() {
    let id = accepted(
        run(
            &section(&[Bearer, Basic]),
            &[("authorization", ALICE_BASIC)],
            None,
        )
        .await,
    );
    assert_eq!(
        id,
        HttpIdentity {
            user: "alice@example.com".into(),
            strategy: "basic",
            token: None
        }
    );
}

#[tokio::test]
async fn basic_refusals_have_no_bearer_hint() {
    // alice:wrong, nobody:alicepw, broken base64
    for value in [
        "Basic YWxpY2U6d3Jvbmc=",
        "Basic bm9ib2R5OmFsaWNlcHc=",
        "Basic %%%",
    ] {
        let (detail, hint) = unauthorized(
            run(
                &section(&[Bearer, Basic]),
                &[("authorization", value)],
                None,
            )
            .await,
        );
        assert!(detail.starts_with("basic: "), "{detail}");
        assert_eq!(hint, None);
    }
}

#[tokio::test]
async fn basic_with_directory_down_is_unavailable() {
    let (auth, directory) = testkit::authenticator(&section(&[Basic]));
    directory.set_down(true);
    let got = auth
        .authenticate(&headers(&[("authorization", ALICE_BASIC)]), None)
        .await;
    assert_eq!(
        got,
        Err(AuthRejection::Unavailable(
            "basic: the directory could not be reached".into()
        ))
    );
}

#[tokio::test]
async fn basic_is_ignored_when_not_enabled() {
    let (detail, hint) =
        unauthorized(run(&section(&[Bearer]), &[("authorization", ALICE_BASIC)], None).await);
    assert_eq!(detail, "Basic is not an enabled strategy");
    assert_eq!(hint, None);
}

// ---- bearer ----

#[tokio::test]
async fn bearer_accepts_a_valid_token_and_keeps_the_session() {
    let id = accepted(
        run(
            &section(&[Basic, Bearer]),
            &[("authorization", "Bearer good-alice")],
            None,
        )
        .await,
    );
    assert_eq!(id.user, "alice@example.com");
    assert_eq!(id.strategy, "bearer");
    assert_eq!(
        id.token,
        Some(TokenSession {
            issuer: testkit::ISSUER.into(),
            subject: "sub-alice".into(),
            sid: Some("sid-1".into()),
            expires_at: 4_000_000_000,
            issued_at: Some(1_700_000_000),
            bearer: Some(crate::auth::secret::Secret::new("good-alice")),
        })
    );
}

#[tokio::test]
async fn bearer_refusals_carry_the_token_error() {
    for token in [
        "expired",
        "bad-signature",
        "wrong-audience",
        "wrong-issuer",
        "unknown-user",
        "garbage",
    ] {
        let value = format!("Bearer {token}");
        let (detail, hint) = unauthorized(
            run(
                &section(&[Bearer, Basic]),
                &[("authorization", &value)],
                None,
            )
            .await,
        );
        let expected = testkit::token_error(token);
        assert_eq!(
            detail,
            format!("bearer: {}", challenge::error_description(&expected))
        );
        assert_eq!(hint, Some(expected));
    }
}

#[tokio::test]
async fn empty_bearer_token_is_malformed() {
    let (_, hint) =
        unauthorized(run(&section(&[Bearer]), &[("authorization", "Bearer ")], None).await);
    assert_eq!(
        hint,
        Some(TokenError::Malformed("empty bearer token".into()))
    );
}

#[tokio::test]
async fn bearer_with_idp_down_is_unavailable_not_unauthorized() {
    let got = run(
        &section(&[Bearer, Basic]),
        &[("authorization", "Bearer idp-down")],
        None,
    )
    .await;
    assert_eq!(
        got,
        Err(AuthRejection::Unavailable(
            "bearer: the identity provider could not be reached".into()
        ))
    );
}

#[tokio::test]
async fn nothing_presented_is_unauthorized_without_hint() {
    let (detail, hint) = unauthorized(run(&section(&[Bearer, Basic]), &[], None).await);
    assert_eq!(detail, "no credentials");
    assert_eq!(hint, None);
    let (detail, _) =
        unauthorized(run(&section(&[Bearer]), &[("authorization", "Digest x")], None).await);
    assert_eq!(detail, "Authorization scheme \"Digest\" is not supported");
}

// ---- x-user ----

const GATEWAY: &str = "10.1.2.3:5555";
const OUTSIDE: &str = "192.0.2.1:5555";

#[tokio::test]
async fn x_user_secret_and_cidr_combinations() {
    // (secret configured, cidr configured, secret sent, peer) -> accepted?
    let cases = [
        (true, false, Some(SECRET), OUTSIDE, true),
        (true, false, Some("wrong"), OUTSIDE, false),
        (true, false, Some(""), OUTSIDE, false),
        (true, false, None, GATEWAY, false),
        (false, true, None, GATEWAY, true),
        (false, true, Some(SECRET), OUTSIDE, false),
        (true, true, Some(SECRET), GATEWAY, true),
        (true, true, Some(SECRET), OUTSIDE, false),
        (true, true, Some("wrong"), GATEWAY, false),
        (true, true, None, GATEWAY, false),
    ];
    for (secret, cidr, sent, from, ok) in cases {
        let mut pairs = with_session(&[("x-user", "alice")]);
        if let Some(s) = sent {
            pairs.push(("x-user-secret", s));
        }
        let got = run(&gateway_section(&[XUser], secret, cidr), &pairs, peer(from)).await;
        let case = format!("secret={secret} cidr={cidr} sent={sent:?} from={from}");
        if ok {
            let id = accepted(got);
            assert_eq!(
                (id.user.as_str(), id.strategy),
                ("alice@example.com", "x-user"),
                "{case}"
            );
        } else {
            let (detail, hint) = unauthorized(got);
            assert_eq!(detail, "x-user: not accepted from this client", "{case}");
            assert_eq!(hint, None);
        }
    }
}

#[tokio::test]
async fn x_user_untrusted_does_not_touch_the_directory() {
    let (auth, directory) = testkit::authenticator(&gateway_section(&[XUser], true, false));
    let got = auth
        .authenticate(&headers(&[("x-user", "alice")]), peer(GATEWAY))
        .await;
    unauthorized(got);
    assert_eq!(directory.calls(), 0);
}

#[tokio::test]
async fn x_user_cidr_matches_ipv4_mapped_peers_and_needs_a_peer() {
    let s = gateway_section(&[XUser], false, true);
    accepted(
        run(
            &s,
            &with_session(&[("x-user", "bob")]),
            peer("[::ffff:10.9.9.9]:1"),
        )
        .await,
    );
    unauthorized(run(&s, &[("x-user", "bob")], None).await);
}

#[tokio::test]
async fn x_user_unknown_or_empty_user_is_unauthorized() {
    let s = gateway_section(&[XUser], true, false);
    for name in ["carol", ""] {
        let (detail, _) =
            unauthorized(run(&s, &[("x-user", name), ("x-user-secret", SECRET)], None).await);
        assert!(detail.starts_with("x-user: "), "{detail}");
    }
}

#[tokio::test]
async fn x_user_with_directory_down_is_unavailable() {
    let (auth, directory) = testkit::authenticator(&gateway_section(&[XUser], true, false));
    directory.set_down(true);
    let got = auth
        .authenticate(
            &headers(&with_session(&[
                ("x-user", "alice"),
                ("x-user-secret", SECRET),
            ])),
            None,
        )
        .await;
    assert!(matches!(got, Err(AuthRejection::Unavailable(_))), "{got:?}");
}

/// Issue 13: a client that names `X-User-Sid` (or `-Sub`, `-Iat`, `-Exp`) in its own
/// `Connection` header makes the gateway's proxy drop it. The request must be refused, not
/// registered under the user alone, or a logout of that sid or sub would not end its session.
#[tokio::test]
async fn x_user_without_its_token_session_is_refused() {
    let s = gateway_section(&[XUser], true, false);
    for dropped in ["x-user-sub", "x-user-sid", "x-user-iat", "x-user-exp"] {
        let pairs: Vec<_> = with_session(&[("x-user", "alice"), ("x-user-secret", SECRET)])
            .into_iter()
            .filter(|(n, _)| *n != dropped)
            .collect();
        let (detail, _) = unauthorized(run(&s, &pairs, None).await);
        assert!(
            detail.starts_with("x-user: gateway token headers: no ") && detail.contains(dropped),
            "{dropped}: {detail}"
        );
    }
    // An operator whose gateway authenticates without OIDC tokens opts out, explicitly.
    let mut opted_out = s.clone();
    opted_out.x_user_requires_session = false;
    let id = accepted(
        run(
            &opted_out,
            &[("x-user", "alice"), ("x-user-secret", SECRET)],
            None,
        )
        .await,
    );
    assert!(id.token.is_none());
}

#[tokio::test]
async fn x_user_header_means_nothing_when_the_strategy_is_off() {
    let (detail, _) = unauthorized(
        run(
            &gateway_section(&[Bearer, Basic], true, true),
            &[("x-user", "alice"), ("x-user-secret", SECRET)],
            peer(GATEWAY),
        )
        .await,
    );
    assert_eq!(detail, "no credentials");
}

#[tokio::test]
async fn strategies_are_tried_in_order_and_the_first_success_wins() {
    // A spoofed x-user falls through to a valid bearer token.
    let id = accepted(
        run(
            &gateway_section(&[XUser, Bearer], true, false),
            &[("x-user", "bob"), ("authorization", "Bearer good-alice")],
            peer(OUTSIDE),
        )
        .await,
    );
    assert_eq!(
        (id.user.as_str(), id.strategy),
        ("alice@example.com", "bearer")
    );
    // The gateway vouches even when the forwarded token is expired for us.
    let id = accepted(
        run(
            &gateway_section(&[Bearer, XUser], true, false),
            &with_session(&[
                ("x-user", "bob"),
                ("x-user-secret", SECRET),
                ("authorization", "Bearer expired"),
            ]),
            None,
        )
        .await,
    );
    assert_eq!(
        (id.user.as_str(), id.strategy),
        ("bob@example.com", "x-user")
    );
    // Both refused: both reasons, and the bearer hint.
    let (detail, hint) = unauthorized(
        run(
            &gateway_section(&[XUser, Bearer], true, false),
            &[("x-user", "bob"), ("authorization", "Bearer expired")],
            None,
        )
        .await,
    );
    assert_eq!(
        detail,
        "x-user: not accepted from this client; bearer: expired: token has expired"
    );
    assert_eq!(hint, Some(TokenError::Expired));
}

#[test]
fn secret_comparison() {
    assert!(gateway::secret_matches(b"abc", b"abc"));
    assert!(!gateway::secret_matches(b"abc", b"abd"));
    assert!(!gateway::secret_matches(b"abc", b"abcd"));
    assert!(!gateway::secret_matches(b"", b"abc"));
}

// ---- responses ----

async fn body_json(response: axum::response::Response) -> serde_json::Value {
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    serde_json::from_slice(&bytes).expect("problem JSON")
}

fn header_values(response: &axum::response::Response, name: http::HeaderName) -> Vec<String> {
    response
        .headers()
        .get_all(name)
        .iter()
        .map(|v| v.to_str().expect("ASCII").to_string())
        .collect()
}

#[tokio::test]
async fn unauthorized_response_has_one_challenge_field_each_and_problem_json() {
    let (auth, _) = testkit::authenticator(&section(&[Bearer, Basic]));
    let rejection = AuthRejection::Unauthorized {
        detail: "bearer: expired: token has expired".into(),
        bearer_error: Some(TokenError::Expired),
    };
    let response = auth.rejection_response(&rejection, BASE);
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        header_values(&response, WWW_AUTHENTICATE),
        vec![
            format!(
                r#"Bearer realm="mail-oidc", resource_metadata="{META}", error="invalid_token", error_description="expired: token has expired""#
            ),
            r#"Basic realm="mail-oidc", charset="UTF-8""#.to_string(),
        ]
    );
    assert_eq!(
        header_values(&response, CONTENT_TYPE),
        vec!["application/problem+json"]
    );
    assert_eq!(
        body_json(response).await,
        serde_json::json!({
            "type": "about:blank",
            "title": "Unauthorized",
            "status": 401,
            "detail": "bearer: expired: token has expired",
        })
    );
}

#[tokio::test]
async fn unavailable_and_bad_request_responses() {
    let (auth, _) = testkit::authenticator(&section(&[Bearer, Basic]));
    let response = auth.rejection_response(&AuthRejection::Unavailable("bearer: x".into()), BASE);
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header_values(&response, RETRY_AFTER), vec!["10"]);
    assert!(header_values(&response, WWW_AUTHENTICATE).is_empty());
    let body = body_json(response).await;
    assert_eq!(body["status"], 503);
    assert_eq!(body["title"], "Service Unavailable");

    let response = auth.rejection_response(
        &AuthRejection::BadRequest("more than one Authorization header".into()),
        BASE,
    );
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(header_values(&response, WWW_AUTHENTICATE).is_empty());
    assert_eq!(
        body_json(response).await,
        serde_json::json!({
            "type": "about:blank",
            "title": "Bad Request",
            "status": 400,
            "detail": "more than one Authorization header",
        })
    );
}

mod throttled {
    //! Basic and bearer through the failed-login budget.

    use std::sync::Arc;
    use std::time::Duration;

    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;

    use super::*;
    use crate::auth::throttle::{LoginThrottle, MemoryBudget, Policy, ThrottleSettings};

    /// One free failure per address and per user name; five minutes' delay.
    fn throttle() -> Arc<LoginThrottle> {
        let policy = Policy {
            free_failures: 1,
            base_delay: Duration::from_secs(300),
            max_delay: Duration::from_secs(300),
        };
        LoginThrottle::new(
            Arc::new(MemoryBudget::new()),
            ThrottleSettings {
                per_address: policy,
                per_user: policy,
                window: Duration::from_secs(600),
                fail_open: false,
            },
            "",
        )
    }

    fn basic(user: &str, password: &str) -> String {
        format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
    }

    #[tokio::test]
    async fn throttled_requests_get_429_with_retry_after_and_nothing_is_checked() {
        let (auth, directory) = testkit::authenticator(&section(&[Bearer, Basic]));
        let auth = auth.with_throttle(Some(throttle()));
        let from = peer("192.0.2.7:5000");
        let wrong = basic("alice", "wrong");
        for _ in 0..2 {
            let result = auth
                .authenticate(&headers(&[("authorization", &wrong)]), from)
                .await;
            assert!(matches!(result, Err(AuthRejection::Unauthorized { .. })));
        }
        let calls = directory.calls();
        let rejection = auth
            .authenticate(&headers(&[("authorization", ALICE_BASIC)]), from)
            .await
            .expect_err("throttled");
        assert_eq!(
            rejection,
            AuthRejection::Throttled {
                retry_after_seconds: 300
            }
        );
        assert_eq!(directory.calls(), calls, "nothing was checked");
        let response = auth.rejection_response(&rejection, BASE);
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            response.headers().get(RETRY_AFTER),
            Some(&HeaderValue::from_static("300"))
        );
        assert!(response.headers().get(WWW_AUTHENTICATE).is_none());
        // The address is delayed for tokens too.
        let bearer = auth
            .authenticate(&headers(&[("authorization", "Bearer good-alice")]), from)
            .await;
        assert!(matches!(bearer, Err(AuthRejection::Throttled { .. })));
    }

    #[tokio::test]
    async fn a_trusted_gateway_is_counted_by_user_name_only() {
        let (auth, _) = testkit::authenticator(&gateway_section(&[Basic, XUser], true, true));
        let throttle = throttle();
        let auth = auth.with_throttle(Some(throttle.clone()));
        let gateway = peer("10.1.2.3:5000");
        for _ in 0..2 {
            let result = auth
                .authenticate(
                    &headers(&[("authorization", &basic("bob", "wrong"))]),
                    gateway,
                )
                .await;
            assert!(matches!(result, Err(AuthRejection::Unauthorized { .. })));
        }
        let bob = auth
            .authenticate(
                &headers(&[("authorization", &basic("bob", "bobpw"))]),
                gateway,
            )
            .await;
        assert!(matches!(bob, Err(AuthRejection::Throttled { .. })));
        // Everyone else behind the gateway is untouched.
        let alice = auth
            .authenticate(&headers(&[("authorization", ALICE_BASIC)]), gateway)
            .await;
        assert_eq!(accepted(alice).user, "alice@example.com");
        let gateway_ip = gateway.map(|p| p.ip());
        assert_eq!(throttle.failures(gateway_ip, Some("bob")).await, Ok((0, 2)));
    }
}
