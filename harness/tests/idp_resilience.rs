//! The server keeps working through IdP key rotation and outages, and fails temporarily (not
//! permanently) when it cannot verify anything.

mod common;

use common::{Grant, stack, stack_with, token_for, user_and_token};
use mail_oidc_harness::clients::imap::ImapClient;
use mail_oidc_harness::clients::smtp::SmtpClient;
use mail_oidc_harness::stack::Idp;
use rstest::rstest;

/// After the IdP's signing key changes, new tokens are accepted with no server restart.
#[rstest]
#[tokio::test]
async fn signing_key_rotation_needs_no_restart(#[values(Idp::LemonLdap, Idp::Keycloak)] idp: Idp) {
    let stack = stack_with(idp).await;
    let ep = stack.endpoints().clone();
    let (user, before) = user_and_token(&stack, Grant::Password).await;
    let mut imap = ImapClient::connect_tls(ep.imaps, &ep.ca_pem)
        .await
        .expect("imaps");
    let ok = imap
        .oauthbearer(&user.mail, &before.access_token, true)
        .await
        .expect("auth");
    assert!(ok.reply.tagged.starts_with("OK"), "{ok:?}");

    let old_kid = stack.forge().kid.clone();
    let new_kid = stack.rotate_signing_key().await.expect("rotate");
    assert_ne!(old_kid, new_kid);
    let after = token_for(&stack, &user, Grant::Password).await;
    let header = jsonwebtoken::decode_header(&after.access_token).expect("jwt header");
    assert_eq!(
        header.kid.as_deref(),
        Some(new_kid.as_str()),
        "IdP signs with the new key"
    );
    let mut imap = ImapClient::connect_tls(ep.imaps, &ep.ca_pem)
        .await
        .expect("imaps");
    let ok = imap
        .oauthbearer(&user.mail, &after.access_token, true)
        .await
        .expect("auth");
    assert!(
        ok.reply.tagged.starts_with("OK"),
        "new-key token accepted: {ok:?}"
    );
    // And the forge now mints with the rotated key too.
    let forged = stack
        .forge()
        .mint(&stack.forge().claims_for(&user.mail, &user.uid));
    let mut smtp = SmtpClient::connect_tls(ep.submissions, &ep.ca_pem)
        .await
        .expect("smtps");
    smtp.ehlo("client.test").await.expect("ehlo");
    let ok = smtp.xoauth2(&user.mail, &forged, true).await.expect("auth");
    assert_eq!(ok.reply.code, 235, "{ok:?}");
}

/// IdP stopped while the JWKS is cached: logins keep working over IMAP and SMTP.
#[tokio::test]
async fn idp_down_with_cached_keys_keeps_logins_working() {
    let stack = stack().await;
    let ep = stack.endpoints().clone();
    let (user, tokens) = user_and_token(&stack, Grant::Password).await;
    let mut imap = ImapClient::connect_tls(ep.imaps, &ep.ca_pem)
        .await
        .expect("imaps");
    let ok = imap
        .oauthbearer(&user.mail, &tokens.access_token, true)
        .await
        .expect("auth");
    assert!(ok.reply.tagged.starts_with("OK"), "{ok:?}");

    stack.stop_idp().await;
    let discovery = reqwest::get(&ep.discovery_url).await;
    assert!(discovery.is_err(), "the IdP is really down");
    let mut imap = ImapClient::connect_tls(ep.imaps, &ep.ca_pem)
        .await
        .expect("imaps");
    let ok = imap
        .xoauth2(&user.mail, &tokens.access_token, false)
        .await
        .expect("auth");
    assert!(ok.reply.tagged.starts_with("OK"), "{ok:?}");
    let mut smtp = SmtpClient::connect_tls(ep.submissions, &ep.ca_pem)
        .await
        .expect("smtps");
    smtp.ehlo("client.test").await.expect("ehlo");
    let ok = smtp
        .oauthbearer(&user.mail, &tokens.access_token, true)
        .await
        .expect("auth");
    assert_eq!(ok.reply.code, 235, "{ok:?}");
}

/// IdP stopped before a server ever fetched its keys: a temporary failure, not a rejection.
#[tokio::test]
async fn idp_down_at_cold_start_is_a_temporary_failure() {
    let stack = stack().await;
    let ep = stack.endpoints().clone();
    let (user, tokens) = user_and_token(&stack, Grant::Password).await;
    stack.stop_idp().await;
    let cold = stack
        .start_server(|_| {})
        .await
        .expect("fresh server, empty key cache");
    let imaps = cold.addrs.imap_tls.expect("imaps");
    let mut imap = ImapClient::connect_tls(imaps, &ep.ca_pem)
        .await
        .expect("imaps");
    let outcome = imap
        .oauthbearer(&user.mail, &tokens.access_token, true)
        .await
        .expect("auth");
    assert!(
        outcome.challenge.is_none(),
        "no invalid_token challenge: {outcome:?}"
    );
    assert_eq!(
        outcome.reply.tagged,
        "NO [UNAVAILABLE] Temporary authentication failure."
    );
    let smtps = cold.addrs.submission_tls.expect("smtps");
    let mut smtp = SmtpClient::connect_tls(smtps, &ep.ca_pem)
        .await
        .expect("smtps");
    smtp.ehlo("client.test").await.expect("ehlo");
    let outcome = smtp
        .xoauth2(&user.mail, &tokens.access_token, true)
        .await
        .expect("auth");
    assert!(outcome.challenge.is_none(), "{outcome:?}");
    assert_eq!(
        (outcome.reply.code, outcome.reply.enhanced()),
        (454, Some("4.7.0"))
    );

    // Once the IdP is back, the same token works on the same cold server.
    stack.start_idp().await;
    let mut imap = ImapClient::connect_tls(imaps, &ep.ca_pem)
        .await
        .expect("imaps");
    let ok = imap
        .oauthbearer(&user.mail, &tokens.access_token, true)
        .await
        .expect("auth");
    assert!(ok.reply.tagged.starts_with("OK"), "{ok:?}");
}
