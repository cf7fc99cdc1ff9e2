//! IMAP logins with OpenID Connect tokens from a real LemonLDAP::NG and a real Keycloak, and
//! every way they must fail.

mod common;

use common::{Grant, assert_oauth_error_challenge, stack, stack_with, user_and_token};
use mail_oidc_harness::clients::imap::ImapClient;
use mail_oidc_harness::stack::Idp;
use mail_oidc_harness::tokens::Hostile;
use rstest::rstest;

async fn tls_client(stack: &mail_oidc_harness::stack::Stack) -> ImapClient {
    ImapClient::connect_tls(stack.endpoints().imaps, &stack.endpoints().ca_pem)
        .await
        .expect("connect imaps")
}

/// A token from the IdP logs in with each mechanism, with and without SASL-IR, from each grant;
/// the session is then usable (SELECT INBOX).
#[rstest]
#[tokio::test]
async fn idp_token_logs_in(
    #[values(Idp::LemonLdap, Idp::Keycloak)] idp: Idp,
    #[values("OAUTHBEARER", "XOAUTH2")] mech: &str,
    #[values(true, false)] initial_response: bool,
    #[values(Grant::Password, Grant::AuthCode)] grant: Grant,
) {
    let stack = stack_with(idp).await;
    let (user, tokens) = user_and_token(&stack, grant).await;
    let mut imap = tls_client(&stack).await;
    let outcome = match mech {
        "OAUTHBEARER" => {
            imap.oauthbearer(&user.mail, &tokens.access_token, initial_response)
                .await
        }
        _ => {
            imap.xoauth2(&user.mail, &tokens.access_token, initial_response)
                .await
        }
    }
    .expect("exchange runs");
    assert!(
        outcome.challenge.is_none(),
        "no error challenge: {outcome:?}"
    );
    assert!(outcome.reply.tagged.starts_with("OK"), "{outcome:?}");
    let select = imap.select("INBOX").await.expect("select");
    assert!(select.tagged.starts_with("OK [READ-WRITE]"), "{select:?}");
    assert!(
        select.untagged.iter().any(|l| l.ends_with(" EXISTS")),
        "{select:?}"
    );
    imap.logout().await.expect("logout");
}

/// Each hostile token gets the RFC 7628 challenge (checked field by field), then
/// `NO [AUTHENTICATIONFAILED]`, for both mechanisms, with and without SASL-IR; the server logs
/// the precise reason.
#[rstest]
#[tokio::test]
async fn hostile_token_is_refused_with_rfc7628_challenge(
    #[values(Idp::LemonLdap, Idp::Keycloak)] idp: Idp,
    #[values(
        Hostile::BadSignature,
        Hostile::Expired,
        Hostile::NotYetValid,
        Hostile::WrongIssuer,
        Hostile::WrongAudience,
        Hostile::AlgNone,
        Hostile::UnknownKid,
        Hostile::HmacWithPublicKey,
        Hostile::Garbage
    )]
    kind: Hostile,
) {
    let stack = stack_with(idp).await;
    let user = stack.create_user("h").await.expect("user");
    let token = stack.forge().hostile(kind, &user.mail, &user.uid);
    for mech in ["OAUTHBEARER", "XOAUTH2"] {
        for ir in [true, false] {
            let mut imap = tls_client(&stack).await;
            let outcome = match mech {
                "OAUTHBEARER" => imap.oauthbearer(&user.mail, &token, ir).await,
                _ => imap.xoauth2(&user.mail, &token, ir).await,
            }
            .expect("exchange runs");
            let challenge = outcome.challenge.as_ref().unwrap_or_else(|| {
                panic!("{mech} ir={ir}: expected an error challenge: {outcome:?}")
            });
            assert_oauth_error_challenge(&stack, challenge);
            assert_eq!(
                outcome.reply.tagged, "NO [AUTHENTICATIONFAILED] Authentication failed.",
                "{mech} ir={ir}"
            );
            common::assert_connection_logged(&stack, imap.local_addr(), kind.expected_reason());
        }
    }
}

/// A token that is valid but for another user than the authzid / XOAUTH2 user is refused:
/// OAUTHBEARER's authzid is a request to act as someone else (RFC 5530 AUTHORIZATIONFAILED,
/// only `server.admins` may), XOAUTH2's user is the token's claimed owner (a bad token).
#[tokio::test]
async fn token_of_another_user_is_refused() {
    let stack = stack().await;
    let (_alice, tokens) = user_and_token(&stack, Grant::Password).await;
    let bob = stack.create_user("bob").await.expect("bob");
    let mut imap = tls_client(&stack).await;
    let outcome = imap
        .oauthbearer(&bob.mail, &tokens.access_token, true)
        .await
        .expect("exchange");
    assert_eq!(
        outcome.reply.tagged,
        "NO [AUTHORIZATIONFAILED] Authorization failed: not allowed to act as that user.",
        "{outcome:?}"
    );
    let mut imap = tls_client(&stack).await;
    let outcome = imap
        .xoauth2(&bob.mail, &tokens.access_token, true)
        .await
        .expect("exchange");
    assert!(outcome.challenge.is_some(), "{outcome:?}");
    assert!(
        outcome
            .reply
            .tagged
            .starts_with("NO [AUTHENTICATIONFAILED]"),
        "{outcome:?}"
    );
}

/// OAUTHBEARER with an empty authzid (`n,,`) is accepted.
#[tokio::test]
async fn oauthbearer_empty_authzid_is_accepted() {
    let stack = stack().await;
    let (_user, tokens) = user_and_token(&stack, Grant::Password).await;
    let mut imap = tls_client(&stack).await;
    let payload = mail_oidc_harness::clients::imap::oauthbearer_payload(
        None,
        "localhost",
        stack.endpoints().imaps.port(),
        &tokens.access_token,
    );
    let reply = imap
        .auth_start("OAUTHBEARER", Some(&payload))
        .await
        .expect("auth");
    match reply {
        mail_oidc_harness::clients::imap::SaslReply::Done(r) => {
            assert!(r.tagged.starts_with("OK"), "{r:?}")
        }
        other => panic!("expected success, got {other:?}"),
    }
}

/// Control bytes a client sends (ESC, backspace, NUL) reach the server's log escaped, never raw:
/// a log viewer's terminal must not obey them.
#[tokio::test]
async fn control_bytes_reach_the_log_escaped() {
    let stack = stack().await;
    let mut imap = tls_client(&stack).await;
    imap.send_line("t1 \u{1b}[2J\u{8}EVIL\u{7f}")
        .await
        .expect("send");
    let reply = imap.read_line().await.expect("reply");
    assert!(reply.starts_with("t1 BAD"), "{reply}");
    let lines = stack.server_log_of(imap.local_addr().expect("local address"));
    let logged = lines
        .iter()
        .find(|l| l.contains("EVIL"))
        .unwrap_or_else(|| panic!("the refused command is logged: {lines:#?}"));
    assert!(
        logged.contains("\\x1b[2J\\x08EVIL\\x7f"),
        "escaped: {logged:?}"
    );
    let raw = stack.server_log();
    assert!(
        !raw.contains('\u{1b}') && !raw.contains('\u{8}') && !raw.contains('\u{7f}'),
        "no raw control byte anywhere in the log"
    );
}
