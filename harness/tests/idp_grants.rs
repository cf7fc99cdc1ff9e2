//! Tokens from every LemonLDAP::NG grant the harness drives: refresh, client credentials, SSO
//! across clients; and JWT sizes real deployments produce (SASL lines well above 1 KiB).

mod common;

use common::{Grant, stack, user_and_token};
use mail_oidc_harness::clients::imap::ImapClient;
use mail_oidc_harness::clients::smtp::SmtpClient;
use mail_oidc_harness::idp::{BrowserSession, IdpClient};

/// A token obtained with the refresh grant logs in like the original.
#[tokio::test]
async fn refreshed_token_logs_in() {
    let stack = stack().await;
    let (user, tokens) = user_and_token(&stack, Grant::Password).await;
    let idp = IdpClient::new(stack.idp_settings("mail-oidc")).expect("idp");
    let refresh = tokens
        .refresh_token
        .as_deref()
        .expect("password grant gives a refresh token");
    let refreshed = idp.refresh(refresh).await.expect("refresh grant");
    assert_ne!(
        refreshed.access_token, tokens.access_token,
        "a new access token"
    );
    let ep = stack.endpoints();
    let mut imap = ImapClient::connect_tls(ep.imaps, &ep.ca_pem)
        .await
        .expect("imaps");
    let ok = imap
        .xoauth2(&user.mail, &refreshed.access_token, true)
        .await
        .expect("auth");
    assert!(ok.reply.tagged.starts_with("OK"), "{ok:?}");
}

/// A client-credentials token is validly signed by the IdP but names no mail user (its `sub` is
/// the client): the server refuses it with the RFC 7628 challenge and logs why.
#[tokio::test]
async fn client_credentials_token_is_not_a_mail_login() {
    let stack = stack().await;
    let user = stack.create_user("cc").await.expect("user");
    let idp = IdpClient::new(stack.idp_settings("mail-oidc")).expect("idp");
    let service = idp
        .client_credentials()
        .await
        .expect("client credentials grant");
    let ep = stack.endpoints();
    let mut imap = ImapClient::connect_tls(ep.imaps, &ep.ca_pem)
        .await
        .expect("imaps");
    let out = imap
        .oauthbearer(&user.mail, &service.access_token, true)
        .await
        .expect("auth");
    let challenge = out.challenge.as_ref().expect("error challenge");
    common::assert_oauth_error_challenge(&stack, challenge);
    assert_eq!(
        out.reply.tagged,
        "NO [AUTHENTICATIONFAILED] Authentication failed."
    );
    common::assert_connection_logged(&stack, imap.local_addr(), "missing_claim");
}

/// Single sign-on: after logging in for one client, a second client of the realm gets its
/// tokens from the same browser without a login form, and both tokens open the mailbox.
#[tokio::test]
async fn sso_cookie_serves_a_second_client() {
    let stack = stack().await;
    let user = stack.create_user("sso").await.expect("user");
    let browser = BrowserSession::new().expect("browser");
    let mail_client = IdpClient::new(stack.idp_settings("mail-oidc")).expect("idp");
    let first = mail_client
        .auth_code_login(&browser, Some((&user.mail, &user.password)))
        .await
        .expect("first login");
    assert!(first.login_form_shown);
    let webmail = IdpClient::new(stack.idp_settings("webmail")).expect("idp");
    let second = webmail
        .auth_code_login(&browser, None)
        .await
        .expect("SSO login");
    assert!(!second.login_form_shown, "the SSO cookie is reused");
    let claims = mail_oidc_harness::tokens::decode_unverified(&second.tokens.access_token)
        .expect("jwt")
        .1;
    assert_eq!(claims["client_id"], "webmail", "{claims}");
    let ep = stack.endpoints();
    for token in [&first.tokens.access_token, &second.tokens.access_token] {
        let mut imap = ImapClient::connect_tls(ep.imaps, &ep.ca_pem)
            .await
            .expect("imaps");
        let ok = imap
            .oauthbearer(&user.mail, token, false)
            .await
            .expect("auth");
        assert!(ok.reply.tagged.starts_with("OK"), "{ok:?}");
    }
}

/// A 9 KB JWT (12 KB of base64 on the SASL line) (many claims, as some IdPs issue) fits the 16 KiB SASL line limit on IMAP and
/// SMTP; a line over the limit is refused cleanly, and other pre-auth lines stay short.
#[tokio::test]
async fn large_jwts_fit_and_oversized_lines_are_refused() {
    let stack = stack().await;
    let user = stack.create_user("big").await.expect("user");
    let forge = stack.forge();
    let mut claims = forge.claims_for(&user.mail, &user.uid);
    claims["groups"] = serde_json::json!(
        (0..450)
            .map(|i| format!("group-{i:04}"))
            .collect::<Vec<_>>()
    );
    let big = forge.mint(&claims);
    assert!(big.len() > 8 * 1024, "token is {} bytes", big.len());
    let ep = stack.endpoints();
    let mut imap = ImapClient::connect_tls(ep.imaps, &ep.ca_pem)
        .await
        .expect("imaps");
    let ok = imap
        .oauthbearer(&user.mail, &big, true)
        .await
        .expect("auth");
    assert!(ok.reply.tagged.starts_with("OK"), "{ok:?}");
    let mut smtp = SmtpClient::connect_tls(ep.submissions, &ep.ca_pem)
        .await
        .expect("smtps");
    smtp.ehlo("client.test").await.expect("ehlo");
    let ok = smtp.xoauth2(&user.mail, &big, true).await.expect("auth");
    assert_eq!(ok.reply.code, 235, "{ok:?}");

    // 20 KiB of base64 on one AUTHENTICATE line: over the limit.
    let mut imap = ImapClient::connect_tls(ep.imaps, &ep.ca_pem)
        .await
        .expect("imaps");
    imap.send_line(&format!(
        "A1 AUTHENTICATE XOAUTH2 {}",
        "A".repeat(20 * 1024)
    ))
    .await
    .expect("send");
    assert_eq!(
        imap.read_line().await.expect("reply"),
        "* BAD Line too long."
    );
    // A non-AUTHENTICATE command line of 12 KiB before login: over the short pre-auth limit.
    let mut imap = ImapClient::connect_tls(ep.imaps, &ep.ca_pem)
        .await
        .expect("imaps");
    imap.send_line(&format!("A1 NOOP {}", "x".repeat(12 * 1024)))
        .await
        .expect("send");
    assert_eq!(
        imap.read_line().await.expect("reply"),
        "* BAD Line too long."
    );
    let mut smtp = SmtpClient::connect_tls(ep.submissions, &ep.ca_pem)
        .await
        .expect("smtps");
    smtp.ehlo("client.test").await.expect("ehlo");
    smtp.send_line(&format!("AUTH XOAUTH2 {}", "A".repeat(20 * 1024)))
        .await
        .expect("send");
    let reply = smtp.read_reply().await.expect("reply");
    assert_eq!(
        (reply.code, reply.enhanced()),
        (500, Some("5.5.2")),
        "{reply:?}"
    );
}
