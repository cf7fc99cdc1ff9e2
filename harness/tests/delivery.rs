//! Mail flows end to end: submitted with a token over SMTP, read with a token over IMAP; inbound
//! mail for a user who never logged in.

mod common;

use common::{Grant, stack, stack_with, user_and_token};
use lettre::transport::smtp::authentication::Mechanism;
use mail_oidc_harness::clients::imap::ImapClient;
use mail_oidc_harness::clients::smtp::{SmtpClient, submit_with_lettre};
use mail_oidc_harness::stack::Idp;
use rstest::rstest;

/// A message submitted with XOAUTH2 (lettre, STARTTLS) is fetched over IMAP with OAUTHBEARER,
/// byte for byte after the two trace headers the server prepends.
#[tokio::test]
async fn submitted_with_xoauth2_fetched_with_oauthbearer_byte_for_byte() {
    let stack = stack().await;
    let ep = stack.endpoints();
    let (sender, sender_tokens) = user_and_token(&stack, Grant::Password).await;
    let (rcpt, rcpt_tokens) = user_and_token(&stack, Grant::AuthCode).await;
    // 8-bit body, long line, a line starting with a dot: all must survive unchanged.
    let raw = format!(
        "From: <{s}>\r\nTo: <{r}>\r\nSubject: byte for byte\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\
         Grüße aus Köln\r\n.one dot\r\n..two dots\r\n{long}\r\n",
        s = sender.mail,
        r = rcpt.mail,
        long = "x".repeat(900)
    )
    .into_bytes();
    submit_with_lettre(
        ep.submission,
        &ep.ca_pem,
        &sender.mail,
        &sender_tokens.access_token,
        Mechanism::Xoauth2,
        &sender.mail,
        &[&rcpt.mail],
        &raw,
    )
    .await
    .expect("lettre submits with XOAUTH2");

    let mut imap = ImapClient::connect_tls(ep.imaps, &ep.ca_pem)
        .await
        .expect("imaps");
    let outcome = imap
        .oauthbearer(&rcpt.mail, &rcpt_tokens.access_token, true)
        .await
        .expect("auth");
    assert!(outcome.reply.tagged.starts_with("OK"), "{outcome:?}");
    let select = imap.select("INBOX").await.expect("select");
    assert!(
        select.untagged.iter().any(|l| l == "* 1 EXISTS"),
        "{select:?}"
    );
    let fetched = imap.fetch_message(1).await.expect("fetch uid 1");
    let trace_end = fetched
        .windows(2)
        .enumerate()
        .filter(|(_, w)| *w == b"\r\n")
        .nth(1)
        .map(|(i, _)| i + 2)
        .expect("two trace header lines");
    let (trace, body) = fetched.split_at(trace_end);
    let trace = String::from_utf8_lossy(trace);
    assert!(
        trace.starts_with(&format!("Return-Path: <{}>\r\nReceived: ", sender.mail)),
        "{trace}"
    );
    assert!(
        trace.contains("with ESMTPSA"),
        "authenticated TLS submission is recorded: {trace}"
    );
    assert_eq!(body, raw.as_slice(), "message bytes unchanged");
}

/// Inbound SMTP (no AUTH) delivers to a provisioned user who never logged in; the user then logs
/// in with a token and finds the mail. Unknown recipients are refused at RCPT.
#[rstest]
#[tokio::test]
async fn inbound_mail_reaches_user_who_never_logged_in(
    #[values(Idp::LemonLdap, Idp::Keycloak)] idp: Idp,
) {
    let stack = stack_with(idp).await;
    let ep = stack.endpoints();
    let rcpt = stack.create_user("newcomer").await.expect("user");
    let mut smtp = SmtpClient::connect(ep.smtp).await.expect("connect mx");
    let ehlo = smtp.ehlo("mx.remote.test").await.expect("ehlo");
    assert!(
        !ehlo.iter().any(|l| l.starts_with("AUTH")),
        "no AUTH on inbound: {ehlo:?}"
    );
    let unknown = smtp
        .command("MAIL FROM:<someone@remote.test>")
        .await
        .expect("mail");
    assert_eq!(unknown.code, 250, "{unknown:?}");
    let nobody = smtp
        .command("RCPT TO:<nobody-here@example.com>")
        .await
        .expect("rcpt");
    assert_eq!(
        (nobody.code, nobody.enhanced()),
        (550, Some("5.1.1")),
        "{nobody:?}"
    );
    smtp.command("RSET").await.expect("rset");
    let raw = b"From: <someone@remote.test>\r\nSubject: welcome\r\n\r\nfirst mail\r\n".to_vec();
    let reply = smtp
        .send_mail("someone@remote.test", &[&rcpt.mail], &raw)
        .await
        .expect("send");
    assert_eq!(reply.code, 250, "{reply:?}");

    // Uppercase uid works as recipient too: the directory, not the token, says who exists.
    let reply = smtp
        .send_mail("someone@remote.test", &[&rcpt.mail.to_uppercase()], &raw)
        .await
        .expect("send");
    assert_eq!(reply.code, 250, "{reply:?}");

    let tokens = common::token_for(&stack, &rcpt, Grant::Password).await;
    let mut imap = ImapClient::connect_tls(ep.imaps, &ep.ca_pem)
        .await
        .expect("imaps");
    let outcome = imap
        .xoauth2(&rcpt.mail, &tokens.access_token, true)
        .await
        .expect("auth");
    assert!(outcome.reply.tagged.starts_with("OK"), "{outcome:?}");
    let select = imap.select("INBOX").await.expect("select");
    assert!(
        select.untagged.iter().any(|l| l == "* 2 EXISTS"),
        "{select:?}"
    );
    let first = imap.fetch_message(1).await.expect("fetch");
    assert!(first.ends_with(&raw), "delivered bytes intact");
}
