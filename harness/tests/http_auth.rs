//! HTTP authentication on the server's own listener: ordered strategies, exact WWW-Authenticate
//! challenges (JAMES-3522), RFC 6750 hints, RFC 9728 metadata, gateway-asserted X-User rules.

mod common;

use common::{Grant, stack, user_and_token};
use mail_oidc_harness::stack::Stack;
use mail_oidc_harness::tokens::Hostile;
use mail_oidc_server::config::HttpStrategy;
use reqwest::header::{AUTHORIZATION, WWW_AUTHENTICATE};

fn http() -> reqwest::Client {
    mail_oidc_server::tls::install_crypto_provider();
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}

fn challenges(resp: &reqwest::Response) -> Vec<String> {
    resp.headers()
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .map(|v| v.to_str().expect("ascii header").to_string())
        .collect()
}

fn bearer_challenge(base: &str) -> String {
    format!(
        "Bearer realm=\"mail-oidc\", resource_metadata=\"{base}/.well-known/oauth-protected-resource\""
    )
}
const BASIC: &str = "Basic realm=\"mail-oidc\", charset=\"UTF-8\"";

async fn assert_problem(resp: reqwest::Response, status: u16) {
    assert_eq!(resp.status().as_u16(), status);
    let ctype = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    assert_eq!(ctype.as_deref(), Some("application/problem+json"));
    let body: serde_json::Value = resp.json().await.expect("problem JSON");
    assert_eq!(body["status"], status, "{body}");
    assert!(
        body["title"].is_string() && body["type"].is_string(),
        "{body}"
    );
}

/// Every 401 lists the challenge of each configured strategy, in configured order.
#[tokio::test]
async fn www_authenticate_lists_every_strategy_in_order() {
    let stack = stack().await;
    use HttpStrategy::*;
    let cases: Vec<Vec<HttpStrategy>> = vec![
        vec![Bearer, Basic, XUser],
        vec![Basic, Bearer],
        vec![Basic],
        vec![XUser, Bearer],
        vec![Bearer],
    ];
    for strategies in cases {
        let list = strategies.clone();
        let server = stack
            .start_server(move |c| c.http.auth.strategies = list)
            .await
            .expect("server");
        let addr = server.addrs.http.expect("http listener");
        let base = format!("http://{addr}");
        let resp = http()
            .get(format!("{base}/.well-known/jmap"))
            .send()
            .await
            .expect("get");
        let expected: Vec<String> = strategies
            .iter()
            .filter_map(|s| match s {
                Bearer => Some(bearer_challenge(&base)),
                Basic => Some(BASIC.to_string()),
                // A gateway-asserted identity has no challenge a client could answer.
                XUser => None,
            })
            .collect();
        assert_eq!(challenges(&resp), expected, "strategies {strategies:?}");
        assert_problem(resp, 401).await;
    }
}

/// A refused bearer token's challenge names the precise reason, for every JWT attack.
#[tokio::test]
async fn bearer_failures_carry_rfc6750_hints() {
    let stack = stack().await;
    let user = stack.create_user("hint").await.expect("user");
    let base = format!("http://{}", stack.endpoints().http);
    for kind in Hostile::ALL {
        let token = stack.forge().hostile(kind, &user.mail, &user.uid);
        let resp = http()
            .get(format!("{base}/.well-known/jmap"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("get");
        let all = challenges(&resp);
        let bearer = all
            .iter()
            .find(|c| c.starts_with("Bearer "))
            .expect("bearer challenge");
        let prefix = format!(
            "{}, error=\"invalid_token\", error_description=\"{}: ",
            bearer_challenge(&base),
            kind.expected_reason()
        );
        assert!(
            bearer.starts_with(&prefix),
            "{kind:?}: {bearer}\nexpected prefix {prefix}"
        );
        assert!(
            all.contains(&BASIC.to_string()),
            "basic still offered: {all:?}"
        );
        assert_problem(resp, 401).await;
    }
}

/// RFC 9728 metadata names the IdP as authorization server.
#[tokio::test]
async fn protected_resource_metadata() {
    let stack = stack().await;
    let base = format!("http://{}", stack.endpoints().http);
    let resp = http()
        .get(format!("{base}/.well-known/oauth-protected-resource"))
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), 200);
    let doc: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(doc["resource"], base, "{doc}");
    assert_eq!(
        doc["authorization_servers"],
        serde_json::json!([stack.endpoints().issuer])
    );
    assert_eq!(
        doc["bearer_methods_supported"],
        serde_json::json!(["header"])
    );
}

/// Two Authorization headers, or two X-User headers, are a bad request.
#[tokio::test]
async fn duplicate_credentials_are_400() {
    let stack = stack().await;
    let (user, tokens) = user_and_token(&stack, Grant::Password).await;
    let url = format!("http://{}/.well-known/jmap", stack.endpoints().http);
    let resp = http()
        .get(&url)
        .header(AUTHORIZATION, format!("Bearer {}", tokens.access_token))
        .header(AUTHORIZATION, format!("Bearer {}", tokens.access_token))
        .send()
        .await
        .expect("get");
    assert_problem(resp, 400).await;
    let resp = http()
        .get(&url)
        .header("X-User", &user.mail)
        .header("X-User", &user.mail)
        .header("X-User-Secret", &stack.endpoints().x_user_secret)
        .send()
        .await
        .expect("get");
    assert_problem(resp, 400).await;
}

async fn session_user(stack: &Stack, req: reqwest::RequestBuilder) -> (u16, Option<String>) {
    let _ = stack;
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let body: Option<serde_json::Value> = resp.json().await.ok();
    (
        status,
        body.and_then(|b| b["username"].as_str().map(str::to_string)),
    )
}

/// Direct to the server: Bearer and Basic work; X-User only with the secret AND from a trusted
/// source address.
#[tokio::test]
async fn direct_bearer_basic_and_x_user_rules() {
    let stack = stack().await;
    let (user, tokens) = user_and_token(&stack, Grant::Password).await;
    let ep = stack.endpoints();
    let url = format!("http://{}/.well-known/jmap", ep.http);
    let c = http();
    assert_eq!(
        session_user(&stack, c.get(&url).bearer_auth(&tokens.access_token)).await,
        (200, Some(user.mail.clone()))
    );
    assert_eq!(
        session_user(
            &stack,
            c.get(&url).basic_auth(&user.uid, Some(&user.password))
        )
        .await,
        (200, Some(user.mail.clone()))
    );
    assert_eq!(
        session_user(&stack, c.get(&url).basic_auth(&user.mail, Some("wrong")))
            .await
            .0,
        401
    );
    // X-User without the shared secret: refused.
    assert_eq!(
        session_user(&stack, c.get(&url).header("X-User", &user.mail))
            .await
            .0,
        401
    );
    // With a wrong secret: refused.
    let req = c
        .get(&url)
        .header("X-User", &user.mail)
        .header("X-User-Secret", "guess");
    assert_eq!(session_user(&stack, req).await.0, 401);
    // With the secret from the trusted address (127.0.0.1) and the token's session: accepted.
    let session = |req: reqwest::RequestBuilder| {
        req.header("X-User-Iss", &ep.issuer)
            .header("X-User-Sub", &user.uid)
            .header("X-User-Sid", "")
            .header("X-User-Iat", "")
            .header("X-User-Exp", "4102444800")
    };
    let req = session(
        c.get(&url)
            .header("X-User", &user.mail)
            .header("X-User-Secret", &ep.x_user_secret),
    );
    assert_eq!(
        session_user(&stack, req).await,
        (200, Some(user.mail.clone()))
    );
    // Without the session headers (a proxy may drop them): refused, never user-only.
    let req = c
        .get(&url)
        .header("X-User", &user.mail)
        .header("X-User-Secret", &ep.x_user_secret);
    assert_eq!(session_user(&stack, req).await.0, 401);
    // With the secret but from an untrusted loopback address (127.0.0.2): refused.
    let untrusted = reqwest::Client::builder()
        .no_proxy()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .expect("client");
    let req = session(
        untrusted
            .get(&url)
            .header("X-User", &user.mail)
            .header("X-User-Secret", &ep.x_user_secret),
    );
    assert_eq!(session_user(&stack, req).await.0, 401);
}
