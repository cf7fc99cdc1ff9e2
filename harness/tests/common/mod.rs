//! Shared fixtures for the end-to-end tests: a fresh native stack per test, users, tokens.
#![allow(dead_code)]

use mail_oidc_harness::idp::{BrowserSession, IdpClient, TokenSet};
use mail_oidc_harness::stack::{Idp, Stack, TestUser};

/// Logs from the harness itself (the processes' logs are printed by the stack on failure).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_test_writer()
        .try_init();
}

pub async fn stack() -> Stack {
    stack_with(Idp::LemonLdap).await
}

/// A stack on `idp` (Keycloak: a realm of the test binary's shared Keycloak).
pub async fn stack_with(idp: Idp) -> Stack {
    init_tracing();
    Stack::builder()
        .idp(idp)
        .start()
        .await
        .expect("stack starts")
}

/// How a test gets its access token from LemonLDAP::NG.
#[derive(Debug, Clone, Copy)]
pub enum Grant {
    /// Resource-owner password grant (what CLI clients and scripts use).
    Password,
    /// Authorization code + PKCE through the login form (what a mail client's browser does).
    AuthCode,
}

pub async fn user_and_token(stack: &Stack, grant: Grant) -> (TestUser, TokenSet) {
    let user = stack.create_user("t").await.expect("create user");
    let tokens = token_for(stack, &user, grant).await;
    (user, tokens)
}

pub async fn token_for(stack: &Stack, user: &TestUser, grant: Grant) -> TokenSet {
    let idp = IdpClient::new(stack.idp_settings("mail-oidc")).expect("idp client");
    match grant {
        Grant::Password => idp
            .password_grant(&user.mail, &user.password)
            .await
            .expect("password grant"),
        Grant::AuthCode => {
            let browser = BrowserSession::new().expect("browser");
            let outcome = idp
                .auth_code_login(&browser, Some((&user.mail, &user.password)))
                .await
                .expect("auth-code flow");
            assert!(
                outcome.login_form_shown,
                "a fresh browser must see the login form"
            );
            outcome.tokens
        }
    }
}

/// Decodes the RFC 7628 error challenge and checks it field by field.
pub fn assert_oauth_error_challenge(stack: &Stack, challenge: &serde_json::Value) {
    let obj = challenge.as_object().expect("challenge is a JSON object");
    assert_eq!(
        obj.get("status").and_then(|v| v.as_str()),
        Some("invalid_token"),
        "{challenge}"
    );
    assert_eq!(
        obj.get("openid-configuration").and_then(|v| v.as_str()),
        Some(stack.endpoints().discovery_url.as_str()),
        "{challenge}"
    );
    let scope = obj
        .get("scope")
        .and_then(|v| v.as_str())
        .expect("scope present");
    assert!(
        scope.split(' ').any(|s| s == "openid"),
        "scope names openid: {challenge}"
    );
    assert_eq!(
        obj.len(),
        3,
        "exactly status, scope, openid-configuration: {challenge}"
    );
}

/// The server logged `needle` for the connection from `client` (its own lines, not anywhere in
/// the log), so the evidence belongs to that refusal.
#[track_caller]
pub fn assert_connection_logged(stack: &Stack, client: Option<std::net::SocketAddr>, needle: &str) {
    let client = client.expect("a TCP client knows its local address");
    let lines = stack.server_log_of(client);
    assert!(
        lines.iter().any(|l| l.contains(needle)),
        "no server log line of the connection from {client} names {needle:?}: {lines:#?}"
    );
}
