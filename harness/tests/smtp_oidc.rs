//! SMTP submission with OpenID Connect tokens from a real LemonLDAP::NG, password mechanisms
//! against LDAP, and every way a login must fail.

mod common;

use common::{Grant, assert_oauth_error_challenge, stack, stack_with, user_and_token};
use mail_oidc_harness::clients::smtp::SmtpClient;
use mail_oidc_harness::stack::Idp;
use mail_oidc_harness::stack::Stack;
use mail_oidc_harness::tokens::Hostile;
use rstest::rstest;

/// Submission over STARTTLS, EHLO done again after TLS, ready for AUTH.
async fn submission(stack: &Stack) -> SmtpClient {
    let ep = stack.endpoints();
    let mut smtp = SmtpClient::connect(ep.submission).await.expect("connect");
    smtp.ehlo("client.test").await.expect("ehlo");
    smtp.starttls(&ep.ca_pem).await.expect("starttls");
    smtp.ehlo("client.test").await.expect("ehlo after tls");
    smtp
}

fn message(from: &str, to: &str, subject: &str) -> Vec<u8> {
    format!(
        "From: <{from}>\r\nTo: <{to}>\r\nSubject: {subject}\r\nMessage-ID: <{subject}@client.test>\r\n\
         Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n\r\nHello {to},\r\n.leading dot stays\r\n"
    )
    .into_bytes()
}

#[rstest]
#[tokio::test]
async fn idp_token_authenticates_submission(
    #[values(Idp::LemonLdap, Idp::Keycloak)] idp: Idp,
    #[values("OAUTHBEARER", "XOAUTH2")] mech: &str,
    #[values(true, false)] initial_response: bool,
    #[values(Grant::Password, Grant::AuthCode)] grant: Grant,
) {
    let stack = stack_with(idp).await;
    let (user, tokens) = user_and_token(&stack, grant).await;
    let mut smtp = submission(&stack).await;
    let outcome = match mech {
        "OAUTHBEARER" => {
            smtp.oauthbearer(&user.mail, &tokens.access_token, initial_response)
                .await
        }
        _ => {
            smtp.xoauth2(&user.mail, &tokens.access_token, initial_response)
                .await
        }
    }
    .expect("exchange runs");
    assert!(outcome.challenge.is_none(), "{outcome:?}");
    assert_eq!(outcome.reply.code, 235, "{outcome:?}");
    let reply = smtp
        .send_mail(
            &user.mail,
            &[&user.mail],
            &message(&user.mail, &user.mail, "self"),
        )
        .await
        .expect("send");
    assert_eq!(reply.code, 250, "{reply:?}");
}

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
            let mut smtp = submission(&stack).await;
            let outcome = match mech {
                "OAUTHBEARER" => smtp.oauthbearer(&user.mail, &token, ir).await,
                _ => smtp.xoauth2(&user.mail, &token, ir).await,
            }
            .expect("exchange runs");
            let challenge = outcome
                .challenge
                .as_ref()
                .unwrap_or_else(|| panic!("{mech} ir={ir}: expected a challenge: {outcome:?}"));
            assert_oauth_error_challenge(&stack, challenge);
            assert_eq!(outcome.reply.code, 535, "{mech} ir={ir}: {outcome:?}");
            assert_eq!(outcome.reply.enhanced(), Some("5.7.8"), "{outcome:?}");
            // No mail may be sent after a failed AUTH.
            let mail = smtp
                .command(&format!("MAIL FROM:<{}>", user.mail))
                .await
                .expect("mail");
            assert_eq!(mail.code, 530, "{mail:?}");
            common::assert_connection_logged(&stack, smtp.local_addr(), kind.expected_reason());
        }
    }
}

/// Malformed payloads get 501 5.5.2, `*` gets 501 5.7.0, three failures end the session.
#[tokio::test]
async fn malformed_abort_and_too_many_failures() {
    let stack = stack().await;
    let user = stack.create_user("m").await.expect("user");
    let mut smtp = submission(&stack).await;
    let reply = smtp
        .auth_start("OAUTHBEARER", Some(b"garbage without gs2"))
        .await
        .expect("auth");
    assert_eq!(
        (reply.code, reply.enhanced()),
        (501, Some("5.5.2")),
        "{reply:?}"
    );
    smtp.send_line("AUTH XOAUTH2 ***notbase64***")
        .await
        .expect("send");
    let reply = smtp.read_reply().await.expect("reply");
    assert_eq!(
        (reply.code, reply.enhanced()),
        (501, Some("5.5.2")),
        "{reply:?}"
    );
    let reply = smtp.auth_start("OAUTHBEARER", None).await.expect("auth");
    assert_eq!(reply.code, 334, "{reply:?}");
    let reply = smtp.auth_abort().await.expect("abort");
    assert_eq!(
        (reply.code, reply.enhanced()),
        (501, Some("5.7.0")),
        "{reply:?}"
    );

    let mut smtp = submission(&stack).await;
    for _ in 0..2 {
        let reply = smtp.plain(&user.mail, "wrong", true).await.expect("plain");
        assert_eq!(
            (reply.code, reply.enhanced()),
            (535, Some("5.7.8")),
            "{reply:?}"
        );
    }
    let reply = smtp.plain(&user.mail, "wrong", true).await.expect("plain");
    // The third failure is reported, then the server gives up on the session.
    let closing = if reply.code == 535 {
        smtp.read_reply().await.expect("421")
    } else {
        reply
    };
    assert_eq!(closing.code, 421, "{closing:?}");
    assert!(smtp.read_reply().await.is_err(), "connection closed");
}

/// PLAIN and LOGIN against LDAP after STARTTLS; before TLS they are neither offered nor accepted.
#[tokio::test]
async fn plain_and_login_need_tls_and_check_ldap() {
    let stack = stack().await;
    let user = stack.create_user("pw").await.expect("user");
    let ep = stack.endpoints();
    let mut smtp = SmtpClient::connect(ep.submission).await.expect("connect");
    let ehlo = smtp.ehlo("client.test").await.expect("ehlo");
    // Passwords and bearer tokens are credentials alike: nothing is offered in clear.
    assert!(
        !ehlo.iter().any(|l| l.starts_with("AUTH")),
        "no mechanism before TLS: {ehlo:?}"
    );
    assert!(ehlo.iter().any(|l| l == "STARTTLS"), "{ehlo:?}");
    let reply = smtp
        .plain(&user.mail, &user.password, true)
        .await
        .expect("plain");
    assert_eq!(reply.code, 538, "{reply:?}");
    let reply = smtp
        .auth_start("OAUTHBEARER", Some(b"n,,\x01auth=Bearer x\x01\x01"))
        .await
        .expect("oauthbearer");
    assert_eq!(reply.code, 538, "{reply:?}");

    let mut smtp = submission(&stack).await;
    for ir in [true, false] {
        let bad = smtp.login(&user.mail, "bad", ir).await.expect("login");
        assert_eq!(bad.code, 535, "{bad:?}");
    }
    let good = smtp
        .login(&user.mail, &user.password, false)
        .await
        .expect("login");
    assert_eq!(good.code, 235, "{good:?}");
    let mut smtp = submission(&stack).await;
    let good = smtp
        .plain(&user.mail, &user.password, false)
        .await
        .expect("plain");
    assert_eq!(good.code, 235, "{good:?}");
    let mut smtp = SmtpClient::connect_tls(ep.submissions, &ep.ca_pem)
        .await
        .expect("tls");
    let ehlo = smtp.ehlo("client.test").await.expect("ehlo");
    assert!(!ehlo.iter().any(|l| l == "STARTTLS"), "{ehlo:?}");
    let good = smtp
        .plain(&user.mail, &user.password, true)
        .await
        .expect("plain");
    assert_eq!(good.code, 235, "{good:?}");
}

/// EHLO's AUTH line shows exactly the configured mechanisms in the configured order.
#[tokio::test]
async fn ehlo_follows_configured_mechanisms() {
    let stack = stack().await;
    let ep = stack.endpoints();
    let mut smtp = SmtpClient::connect_tls(ep.submissions, &ep.ca_pem)
        .await
        .expect("tls");
    let ehlo = smtp.ehlo("client.test").await.expect("ehlo");
    assert!(
        ehlo.iter()
            .any(|l| l == "AUTH PLAIN LOGIN OAUTHBEARER XOAUTH2"),
        "{ehlo:?}"
    );
    for order in [
        vec!["XOAUTH2", "OAUTHBEARER"],
        vec!["LOGIN", "XOAUTH2", "PLAIN"],
    ] {
        let names: Vec<String> = order.iter().map(|s| s.to_string()).collect();
        let server = stack
            .start_server(move |c| c.submission.auth.mechanisms = Some(names))
            .await
            .expect("extra server");
        let addr = server.addrs.submission_tls.expect("submissions");
        let mut smtp = SmtpClient::connect_tls(addr, &ep.ca_pem)
            .await
            .expect("tls");
        let ehlo = smtp.ehlo("client.test").await.expect("ehlo");
        let expected = format!("AUTH {}", order.join(" "));
        assert!(ehlo.contains(&expected), "{expected} in {ehlo:?}");
    }
}
