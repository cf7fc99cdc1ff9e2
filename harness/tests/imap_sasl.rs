//! IMAP SASL framing, password mechanisms against LDAP, TLS policy and advertised capabilities.

mod common;

use common::stack;
use mail_oidc_harness::clients::imap::{ImapClient, SaslReply};

fn done(reply: SaslReply) -> mail_oidc_harness::clients::imap::ImapReply {
    match reply {
        SaslReply::Done(r) => r,
        other => panic!("expected a final reply, got {other:?}"),
    }
}

/// Malformed SASL messages get `BAD` (never a crash), and the session stays usable.
#[tokio::test]
async fn malformed_sasl_payloads_get_bad() {
    let stack = stack().await;
    let ca = &stack.endpoints().ca_pem;
    let cases: &[(&str, &[u8])] = &[
        ("OAUTHBEARER", b"not a gs2 header"),
        ("OAUTHBEARER", b"n,,\x01auth=Basic abc\x01\x01"),
        ("OAUTHBEARER", b"n,,\x01host=x\x01\x01"),
        ("XOAUTH2", b"user=a@b\x01\x01"),
        ("XOAUTH2", b"\xff\xfe\x00"),
    ];
    for (mech, payload) in cases {
        let mut imap = ImapClient::connect_tls(stack.endpoints().imaps, ca)
            .await
            .expect("connect");
        let reply = done(imap.auth_start(mech, Some(payload)).await.expect("auth"));
        assert!(
            reply.tagged.starts_with("BAD"),
            "{mech} {payload:?}: {reply:?}"
        );
        let noop = imap.command("NOOP").await.expect("noop after bad");
        assert!(noop.tagged.starts_with("OK"), "{noop:?}");
    }
    // Undecodable base64, as initial response and as a continuation line.
    let mut imap = ImapClient::connect_tls(stack.endpoints().imaps, ca)
        .await
        .expect("connect");
    imap.send_line("A1 AUTHENTICATE XOAUTH2 !!!notbase64")
        .await
        .expect("send");
    let line = imap.read_line().await.expect("reply");
    assert!(line.starts_with("A1 BAD"), "{line}");
    match imap.auth_start("OAUTHBEARER", None).await.expect("auth") {
        SaslReply::Challenge(c) => assert!(c.is_empty(), "empty first challenge: {c:?}"),
        other => panic!("{other:?}"),
    }
    imap.send_line("@@@@").await.expect("send");
    let line = imap.read_line().await.expect("reply");
    assert!(line.contains("BAD"), "{line}");
}

/// `*` aborts an exchange with `BAD`, and the client may then log in normally.
#[tokio::test]
async fn star_aborts_the_exchange() {
    let stack = stack().await;
    let user = stack.create_user("abort").await.expect("user");
    let mut imap = ImapClient::connect_tls(stack.endpoints().imaps, &stack.endpoints().ca_pem)
        .await
        .expect("connect");
    match imap.auth_start("OAUTHBEARER", None).await.expect("auth") {
        SaslReply::Challenge(_) => {}
        other => panic!("{other:?}"),
    }
    let reply = done(imap.auth_abort().await.expect("abort"));
    assert_eq!(reply.tagged, "BAD Authentication aborted by client.");
    let reply = imap
        .plain(&user.mail, &user.password, true)
        .await
        .expect("plain");
    assert!(reply.tagged.starts_with("OK"), "{reply:?}");
}

/// After three failed authentications the server says BYE and closes.
#[tokio::test]
async fn three_failures_then_bye() {
    let stack = stack().await;
    let user = stack.create_user("bye").await.expect("user");
    let mut imap = ImapClient::connect_tls(stack.endpoints().imaps, &stack.endpoints().ca_pem)
        .await
        .expect("connect");
    for attempt in 1..=2 {
        let reply = imap.plain(&user.mail, "wrong", true).await.expect("plain");
        assert_eq!(
            reply.tagged, "NO [AUTHENTICATIONFAILED] Authentication failed.",
            "{attempt}"
        );
    }
    // The third failure is answered, then the server says BYE and closes.
    let reply = imap.plain(&user.mail, "wrong", true).await.expect("plain");
    assert_eq!(
        reply.tagged,
        "NO [AUTHENTICATIONFAILED] Authentication failed."
    );
    let bye = imap.read_line().await.expect("BYE line");
    assert_eq!(bye, "* BYE Too many invalid authentication attempts.");
    assert!(
        imap.read_line().await.is_err(),
        "connection closed after BYE"
    );
}

/// PLAIN and LOGIN check the password against LDAP, over TLS.
#[tokio::test]
async fn plain_and_login_against_ldap() {
    let stack = stack().await;
    let user = stack.create_user("pw").await.expect("user");
    let ep = stack.endpoints();
    for ir in [true, false] {
        let mut imap = ImapClient::connect_tls(ep.imaps, &ep.ca_pem)
            .await
            .expect("connect");
        let bad = imap
            .plain(&user.mail, "not-the-password", ir)
            .await
            .expect("plain");
        assert_eq!(
            bad.tagged,
            "NO [AUTHENTICATIONFAILED] Authentication failed."
        );
        let good = imap
            .plain(&user.mail, &user.password, ir)
            .await
            .expect("plain");
        assert!(good.tagged.starts_with("OK"), "{good:?}");
        assert!(
            imap.select("INBOX")
                .await
                .expect("select")
                .tagged
                .starts_with("OK")
        );
    }
    let mut imap = ImapClient::connect_tls(ep.imaps, &ep.ca_pem)
        .await
        .expect("connect");
    let bad = imap.login(&user.mail, "nope").await.expect("login");
    assert_eq!(
        bad.tagged,
        "NO [AUTHENTICATIONFAILED] Authentication failed."
    );
    let good = imap
        .login(&user.uid, &user.password)
        .await
        .expect("login by uid");
    assert!(good.tagged.starts_with("OK"), "{good:?}");
    // STARTTLS on the plain port, then PLAIN works too.
    let mut imap = ImapClient::connect(ep.imap).await.expect("connect");
    imap.starttls(&ep.ca_pem).await.expect("starttls");
    let good = imap
        .plain(&user.mail, &user.password, true)
        .await
        .expect("plain");
    assert!(good.tagged.starts_with("OK"), "{good:?}");
}

/// Before TLS: LOGINDISABLED, no AUTH= at all (a bearer token is a credential like a password),
/// and PLAIN, LOGIN and OAUTHBEARER are refused even if tried.
#[tokio::test]
async fn plaintext_refused_before_tls() {
    let stack = stack().await;
    let user = stack.create_user("cleartext").await.expect("user");
    let mut imap = ImapClient::connect(stack.endpoints().imap)
        .await
        .expect("connect");
    let caps = imap.capabilities().await.expect("caps");
    assert!(caps.iter().any(|c| c == "STARTTLS"), "{caps:?}");
    assert!(caps.iter().any(|c| c == "LOGINDISABLED"), "{caps:?}");
    assert!(!caps.iter().any(|c| c.starts_with("AUTH=")), "{caps:?}");
    let reply = imap
        .plain(&user.mail, &user.password, true)
        .await
        .expect("plain");
    assert!(reply.tagged.starts_with("NO"), "{reply:?}");
    let token = common::token_for(&stack, &user, common::Grant::Password)
        .await
        .access_token;
    let bearer = imap
        .oauthbearer(&user.mail, &token, true)
        .await
        .expect("oauthbearer");
    assert_eq!(
        bearer.reply.tagged,
        "NO [PRIVACYREQUIRED] Plaintext authentication disallowed on non-secure connections.",
        "{bearer:?}"
    );
    assert!(
        bearer.challenge.is_none(),
        "refused before the token is looked at"
    );
    let reply = imap.login(&user.mail, &user.password).await.expect("login");
    assert!(reply.tagged.starts_with("NO"), "{reply:?}");
    imap.starttls(&stack.endpoints().ca_pem)
        .await
        .expect("starttls");
    let caps = imap.capabilities().await.expect("caps");
    assert!(
        !caps.iter().any(|c| c == "STARTTLS" || c == "LOGINDISABLED"),
        "{caps:?}"
    );
    assert!(caps.iter().any(|c| c == "AUTH=PLAIN"), "{caps:?}");
    assert!(caps.iter().any(|c| c == "AUTH=OAUTHBEARER"), "{caps:?}");
    let ok = imap
        .oauthbearer(&user.mail, &token, true)
        .await
        .expect("oauthbearer");
    assert!(ok.reply.is_ok(), "{ok:?}");
}

/// CAPABILITY shows exactly the configured mechanisms, in the configured order.
#[tokio::test]
async fn capabilities_follow_configured_mechanisms() {
    let stack = stack().await;
    let ca = stack.endpoints().ca_pem.clone();
    // Defaults first.
    let mut imap = ImapClient::connect_tls(stack.endpoints().imaps, &ca)
        .await
        .expect("connect");
    let auths: Vec<String> = auth_caps(&imap.capabilities().await.expect("caps"));
    assert_eq!(auths, ["AUTH=PLAIN", "AUTH=OAUTHBEARER", "AUTH=XOAUTH2"]);
    for order in [
        vec!["XOAUTH2", "OAUTHBEARER"],
        vec!["OAUTHBEARER", "PLAIN", "LOGIN", "XOAUTH2"],
        vec!["LOGIN"],
    ] {
        let names: Vec<String> = order.iter().map(|s| s.to_string()).collect();
        let server = stack
            .start_server(move |c| c.imap.auth.mechanisms = Some(names))
            .await
            .expect("extra server");
        let addr = server.addrs.imap_tls.expect("imaps");
        let mut imap = ImapClient::connect_tls(addr, &ca).await.expect("connect");
        let expected: Vec<String> = order.iter().map(|m| format!("AUTH={m}")).collect();
        assert_eq!(
            auth_caps(&imap.capabilities().await.expect("caps")),
            expected
        );
        // A mechanism left out is refused even when tried.
        if !order.contains(&"PLAIN") {
            let user = stack.create_user("x").await.expect("user");
            let reply = imap
                .plain(&user.mail, &user.password, true)
                .await
                .expect("plain");
            assert!(reply.tagged.starts_with("NO"), "{reply:?}");
        }
    }
}

fn auth_caps(caps: &[String]) -> Vec<String> {
    caps.iter()
        .filter(|c| c.starts_with("AUTH="))
        .cloned()
        .collect()
}
