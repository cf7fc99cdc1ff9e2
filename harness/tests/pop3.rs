//! POP3 end to end: logins with real IdP tokens (OAUTHBEARER, XOAUTH2) and hostile ones, PLAIN and
//! USER/PASS against LDAP with the TLS policy, the failure limit, the maildrop (DELE + QUIT seen
//! from IMAP, IN-USE), a session ended by single log-out, and curl as a real client.

mod common;

use std::time::Duration;

use common::{Grant, assert_oauth_error_challenge, stack, stack_with, token_for};
use mail_oidc_harness::clients::imap::ImapClient;
use mail_oidc_harness::clients::plain_payload;
use mail_oidc_harness::clients::pop3::Pop3Client;
use mail_oidc_harness::clients::sasl::{AuthTurn, AuthVerdict, SaslClient};
use mail_oidc_harness::clients::smtp::SmtpClient;
use mail_oidc_harness::idp::IdpClient;
use mail_oidc_harness::stack::{Idp, Stack, TestUser};
use mail_oidc_harness::suites::END_DEADLINE;
use mail_oidc_harness::suites::sso::sign_on;
use mail_oidc_harness::tokens::Hostile;
use rstest::rstest;

const LOGGED_IN: &str = "+OK Logged in.";
const REFUSED: &str = "-ERR [AUTH] Authentication failed.";
const PLAINTEXT_REFUSED: &str =
    "-ERR [AUTH] Plaintext authentication disallowed on non-secure connections.";
const IN_USE: &str = "-ERR [IN-USE] Mailbox is locked by another POP3 session.";
/// Lines that need dot-stuffing on the way out.
const MESSAGE: &[u8] =
    b"From: sender@example.net\r\nSubject: pop3 test\r\n\r\n.leading dot\r\n.\r\nlast line\r\n";

async fn pop3s(stack: &Stack) -> Pop3Client {
    let ep = stack.endpoints();
    Pop3Client::connect_tls(ep.pop3s, &ep.ca_pem)
        .await
        .expect("connect pop3s")
}

/// Delivers `message` to `to` through the inbound SMTP listener.
async fn deliver(stack: &Stack, to: &str, message: &[u8]) {
    let mut smtp = SmtpClient::connect(stack.endpoints().smtp)
        .await
        .expect("connect smtp");
    smtp.ehlo("sender.example.net").await.expect("ehlo");
    let reply = smtp
        .send_mail("sender@example.net", &[to], message)
        .await
        .expect("send");
    assert!(reply.is_positive(), "{reply}");
    let _ = smtp.quit().await;
}

/// A token from the IdP logs in with each mechanism, with and without an initial response, on
/// POP3S and after STLS; the maildrop is then usable.
#[rstest]
#[tokio::test]
async fn idp_token_logs_in(#[values(Idp::LemonLdap, Idp::Keycloak)] idp: Idp) {
    let stack = stack_with(idp).await;
    let user = stack.create_user("p3").await.expect("user");
    deliver(&stack, &user.mail, MESSAGE).await;
    let token = token_for(&stack, &user, Grant::Password).await.access_token;
    for mech in ["OAUTHBEARER", "XOAUTH2"] {
        for ir in [true, false] {
            let mut pop3 = pop3s(&stack).await;
            assert_eq!(
                pop3.sasl_mechanisms().await.expect("capa"),
                ["PLAIN", "OAUTHBEARER", "XOAUTH2"]
            );
            let outcome = match mech {
                "OAUTHBEARER" => pop3.oauthbearer(&user.mail, &token, ir).await,
                _ => pop3.xoauth2(&user.mail, &token, ir).await,
            }
            .expect("exchange runs");
            assert!(outcome.challenge.is_none(), "{mech} ir={ir}: {outcome:?}");
            assert_eq!(outcome.reply.line, LOGGED_IN, "{mech} ir={ir}");
            let (count, _) = pop3.stat().await.expect("stat");
            assert_eq!(count, 1, "{mech} ir={ir}");
            // QUIT releases the maildrop for the next login.
            assert_eq!(pop3.quit().await.expect("quit").line, "+OK Logging out.");
        }
    }
    let ep = stack.endpoints();
    let mut pop3 = Pop3Client::connect(ep.pop3).await.expect("connect pop3");
    pop3.stls(&ep.ca_pem).await.expect("stls");
    let outcome = pop3
        .oauthbearer(&user.mail, &token, true)
        .await
        .expect("exchange");
    assert_eq!(outcome.reply.line, LOGGED_IN, "{outcome:?}");
    common::assert_connection_logged(&stack, pop3.local_addr(), "protocol=Pop3");
}

/// Forged tokens (expired, another audience, another key, `alg: none`) get the exact RFC 7628
/// challenge, then `-ERR [AUTH]`, with both mechanisms, with and without an initial response.
#[rstest]
#[tokio::test]
async fn hostile_token_is_refused_with_rfc7628_challenge(
    #[values(Idp::LemonLdap, Idp::Keycloak)] idp: Idp,
) {
    let stack = stack_with(idp).await;
    let user = stack.create_user("p3h").await.expect("user");
    for kind in [
        Hostile::Expired,
        Hostile::WrongAudience,
        Hostile::BadSignature,
        Hostile::AlgNone,
    ] {
        let token = stack.forge().hostile(kind, &user.mail, &user.uid);
        for mech in ["OAUTHBEARER", "XOAUTH2"] {
            for ir in [true, false] {
                let mut pop3 = pop3s(&stack).await;
                let outcome = match mech {
                    "OAUTHBEARER" => pop3.oauthbearer(&user.mail, &token, ir).await,
                    _ => pop3.xoauth2(&user.mail, &token, ir).await,
                }
                .expect("exchange runs");
                let challenge = outcome.challenge.as_ref().unwrap_or_else(|| {
                    panic!("{kind:?} {mech} ir={ir}: expected an error challenge: {outcome:?}")
                });
                assert_oauth_error_challenge(&stack, challenge);
                assert_eq!(outcome.reply.line, REFUSED, "{kind:?} {mech} ir={ir}");
                common::assert_connection_logged(&stack, pop3.local_addr(), kind.expected_reason());
            }
        }
    }
}

/// Before TLS nothing is offered and everything is refused; after STLS, USER/PASS and PLAIN
/// check the password against LDAP; three failures close the connection.
#[tokio::test]
async fn passwords_against_ldap_tls_policy_and_failure_limit() {
    let stack = stack().await;
    let user = stack.create_user("p3pw").await.expect("user");
    let ep = stack.endpoints();
    let mut pop3 = Pop3Client::connect(ep.pop3).await.expect("connect pop3");
    let caps = pop3.capabilities().await.expect("capa");
    assert!(caps.iter().any(|c| c == "STLS"), "{caps:?}");
    assert!(!caps.iter().any(|c| c == "USER"), "{caps:?}");
    assert!(!caps.iter().any(|c| c.starts_with("SASL")), "{caps:?}");
    assert_eq!(
        pop3.user_pass(&user.mail, &user.password)
            .await
            .expect("user")
            .line,
        PLAINTEXT_REFUSED
    );
    assert_eq!(
        pop3.plain(&user.mail, &user.password, true)
            .await
            .expect("plain")
            .line,
        PLAINTEXT_REFUSED
    );
    let token = token_for(&stack, &user, Grant::Password).await.access_token;
    let bearer = pop3
        .oauthbearer(&user.mail, &token, true)
        .await
        .expect("oauthbearer");
    assert_eq!(bearer.reply.line, PLAINTEXT_REFUSED);
    assert!(
        bearer.challenge.is_none(),
        "refused before the token is read"
    );

    pop3.stls(&ep.ca_pem).await.expect("stls");
    let caps = pop3.capabilities().await.expect("capa");
    assert!(caps.iter().any(|c| c == "USER"), "{caps:?}");
    assert!(
        caps.iter().any(|c| c == "SASL PLAIN OAUTHBEARER XOAUTH2"),
        "{caps:?}"
    );
    assert!(!caps.iter().any(|c| c == "STLS"), "{caps:?}");
    assert_eq!(
        pop3.user_pass(&user.mail, "not-the-password")
            .await
            .expect("user")
            .line,
        REFUSED
    );
    assert_eq!(
        pop3.user_pass(&user.uid, &user.password)
            .await
            .expect("user by uid")
            .line,
        LOGGED_IN
    );
    assert_eq!(pop3.stat().await.expect("stat"), (0, 0));
    pop3.quit().await.expect("quit");

    for ir in [true, false] {
        let mut pop3 = pop3s(&stack).await;
        assert_eq!(
            pop3.plain(&user.mail, &user.password, ir)
                .await
                .expect("plain")
                .line,
            LOGGED_IN,
            "ir={ir}"
        );
        pop3.quit().await.expect("quit");
    }

    // Through the protocol-neutral view: three refusals, the last one closes.
    let mut pop3 = pop3s(&stack).await;
    let client: &mut dyn SaslClient = &mut pop3;
    assert_eq!(client.protocol(), "pop3");
    let wrong = plain_payload(&user.mail, "wrong");
    for attempt in 1..=3 {
        let turn = client
            .auth_start("PLAIN", Some(&wrong))
            .await
            .expect("auth");
        assert_eq!(turn.verdict(), Some(AuthVerdict::Refused), "{attempt}");
        if attempt < 3 {
            assert!(client.noop().await.expect("capa"), "still usable");
        } else {
            let AuthTurn::Done { reply, .. } = turn else {
                panic!("final reply expected");
            };
            assert_eq!(
                reply,
                "-ERR [AUTH] Too many invalid authentication attempts."
            );
        }
    }
    assert!(client.is_closed().await, "closed after the limit");
}

/// The maildrop: exact sizes and dot-stuffing over the wire, a second session finds it in use,
/// DELE + QUIT removes the message for IMAP too, and UIDLs survive sessions.
#[tokio::test]
async fn dele_and_quit_are_seen_from_imap_and_a_second_session_is_refused() {
    let stack = stack().await;
    let user = stack.create_user("p3md").await.expect("user");
    deliver(&stack, &user.mail, b"Subject: first\r\n\r\none\r\n").await;
    deliver(&stack, &user.mail, MESSAGE).await;
    let token = token_for(&stack, &user, Grant::Password).await.access_token;
    let mut pop3 = pop3s(&stack).await;
    let outcome = pop3
        .oauthbearer(&user.mail, &token, true)
        .await
        .expect("auth");
    assert_eq!(outcome.reply.line, LOGGED_IN);
    let (count, octets) = pop3.stat().await.expect("stat");
    assert_eq!(count, 2);
    let sizes = pop3.list().await.expect("list");
    assert_eq!(sizes.iter().map(|(_, s)| s).sum::<u64>(), octets);
    let second = pop3.retr(2).await.expect("retr");
    assert!(
        second.ends_with(MESSAGE),
        "{:?}",
        String::from_utf8_lossy(&second)
    );
    assert_eq!(second.len() as u64, sizes[1].1, "RETR has the LIST size");
    let top = pop3.top(2, 0).await.expect("top");
    assert!(top.ends_with(b"Subject: pop3 test\r\n\r\n"), "{top:?}");
    let ids = pop3.uidl().await.expect("uidl");
    assert_eq!(ids.len(), 2);

    let mut other = pop3s(&stack).await;
    assert_eq!(
        other
            .user_pass(&user.mail, &user.password)
            .await
            .expect("user")
            .line,
        IN_USE
    );

    assert!(pop3.dele(1).await.expect("dele").is_ok());
    assert_eq!(
        pop3.quit().await.expect("quit").line,
        "+OK Logging out, 1 message(s) deleted."
    );
    // The lock is released before the QUIT reply: the other session gets in now.
    assert_eq!(
        other
            .user_pass(&user.mail, &user.password)
            .await
            .expect("user")
            .line,
        LOGGED_IN
    );
    assert_eq!(
        other.uidl().await.expect("uidl"),
        [(1, ids[1].1.clone())],
        "the remaining message keeps its id"
    );
    let ep = stack.endpoints();
    let mut imap = ImapClient::connect_tls(ep.imaps, &ep.ca_pem)
        .await
        .expect("imaps");
    assert!(
        imap.login(&user.mail, &user.password)
            .await
            .expect("login")
            .is_ok()
    );
    let select = imap.select("INBOX").await.expect("select");
    assert!(
        select.untagged.iter().any(|l| l == "* 1 EXISTS"),
        "{select:?}"
    );
}

/// A logout at the IdP ends a POP3 session that logged in with a token of that IdP session:
/// `-ERR [SYS/PERM]`, the connection closes, and its DELE is not applied.
#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_log_out_ends_the_pop3_session(#[values(Idp::LemonLdap, Idp::Keycloak)] idp: Idp) {
    let stack = stack_with(idp).await;
    let user: TestUser = stack.create_user("p3slo").await.expect("user");
    deliver(&stack, &user.mail, MESSAGE).await;
    let target = stack.idp_target();
    let on = sign_on(&target, &user.account()).await.expect("sign on");
    let mut pop3 = pop3s(&stack).await;
    let outcome = pop3
        .oauthbearer(&user.mail, &on.confidential.tokens.access_token, true)
        .await
        .expect("auth");
    assert_eq!(outcome.reply.line, LOGGED_IN);
    assert!(pop3.dele(1).await.expect("dele").is_ok());
    IdpClient::new(target.confidential.clone())
        .expect("idp client")
        .browser_logout(&on.browser, &target.logout_url)
        .await
        .expect("logout at the IdP");
    let goodbye = pop3.read_line_within(END_DEADLINE).await.expect("goodbye");
    assert_eq!(
        goodbye,
        "-ERR [SYS/PERM] Session revoked: the session was logged out at the identity provider."
    );
    assert!(pop3.is_closed().await, "closed after the -ERR");
    // No UPDATE: the message is still there (a password login is not that IdP session).
    let mut again = pop3s(&stack).await;
    assert_eq!(
        again
            .user_pass(&user.mail, &user.password)
            .await
            .expect("user")
            .line,
        LOGGED_IN
    );
    assert_eq!(again.stat().await.expect("stat").0, 1);
}

/// Runs curl with a deadline; (exit status, stdout, stderr).
async fn curl(args: &[&str]) -> (Option<i32>, Vec<u8>, String) {
    let run = tokio::process::Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "30"])
        .args(args)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(40), run)
        .await
        .expect("curl finishes")
        .expect("curl runs");
    (
        out.status.code(),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// curl, a real client, lists and fetches over POP3S with `--oauth2-bearer` (it picks the
/// mechanism from CAPA), and fails cleanly with a forged token.
#[rstest]
#[tokio::test]
async fn curl_fetches_over_pop3s_with_a_bearer_token(
    #[values(Idp::LemonLdap, Idp::Keycloak)] idp: Idp,
) {
    let stack = stack_with(idp).await;
    let user = stack.create_user("p3curl").await.expect("user");
    deliver(&stack, &user.mail, MESSAGE).await;
    let token = token_for(&stack, &user, Grant::Password).await.access_token;
    let ep = stack.endpoints();
    let ca = ep.ca_cert.to_str().expect("UTF-8 path").to_string();
    let base = format!("pop3s://127.0.0.1:{}/", ep.pop3s.port());
    let login = format!("{}:", user.mail);
    let (status, listing, err) = curl(&[
        "--cacert",
        &ca,
        &base,
        "--oauth2-bearer",
        &token,
        "-u",
        &login,
    ])
    .await;
    assert_eq!(status, Some(0), "curl list: {err}");
    let listing = String::from_utf8_lossy(&listing).into_owned();
    let size: u64 = listing
        .strip_prefix("1 ")
        .and_then(|r| r.trim_end().parse().ok())
        .unwrap_or_else(|| panic!("one message listed: {listing:?}"));
    let one = format!("{base}1");
    let (status, message, err) = curl(&[
        "--cacert",
        &ca,
        &one,
        "--oauth2-bearer",
        &token,
        "-u",
        &login,
    ])
    .await;
    assert_eq!(status, Some(0), "curl retr: {err}");
    assert!(
        message.ends_with(MESSAGE),
        "{:?}",
        String::from_utf8_lossy(&message)
    );
    assert_eq!(message.len() as u64, size, "curl got the listed size");
    // Which mechanism curl chose, from the driver's `login` line.
    let logs = stack.server_log();
    let mechanism = logs
        .lines()
        .filter(|l| l.contains("login protocol=Pop3"))
        .filter_map(|l| l.split(" mechanism=").nth(1))
        .filter_map(|rest| rest.split(' ').next())
        .next_back()
        .unwrap_or_else(|| panic!("no POP3 login logged: {logs}"))
        .to_string();
    assert!(
        ["OAUTHBEARER", "XOAUTH2"].contains(&mechanism.as_str()),
        "{mechanism}"
    );
    eprintln!("curl authenticated with {mechanism}");

    let forged = stack
        .forge()
        .hostile(Hostile::Expired, &user.mail, &user.uid);
    let (status, _, err) = curl(&[
        "--cacert",
        &ca,
        &base,
        "--oauth2-bearer",
        &forged,
        "-u",
        &login,
    ])
    .await;
    // 67: CURLE_LOGIN_DENIED.
    assert_eq!(status, Some(67), "curl with a forged token: {err}");
}
