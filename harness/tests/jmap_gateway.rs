//! JMAP end to end: through the Apache gateway with LemonLDAP::NG tokens, direct to the server,
//! WebSocket push, and EmailSubmission delivering to another user who reads it over IMAP.

mod common;

use std::time::Duration;

use common::{Grant, stack, stack_with, token_for, user_and_token};
use mail_oidc_harness::clients::imap::ImapClient;
use mail_oidc_harness::clients::jmap::{Auth, JmapClient};
use mail_oidc_harness::clients::smtp::SmtpClient;
use mail_oidc_harness::stack::Idp;
use mail_oidc_harness::stack::Stack;
use mail_oidc_harness::suites::revocation::{self, LogoutNames};
use mail_oidc_harness::tokens::Hostile;
use rstest::rstest;
use serde_json::{Value, json};

fn gateway_client(stack: &Stack, auth: Auth, extra: &[(String, String)]) -> JmapClient {
    let url = format!("{}/oidc/.well-known/jmap", stack.endpoints().gateway);
    JmapClient::new(url, auth, extra)
        .and_then(|c| c.with_ca(&stack.endpoints().ca_pem))
        .expect("jmap client")
}

/// Sends one message from a fresh sender to `rcpt` over inbound SMTP.
async fn deliver(stack: &Stack, rcpt: &str, subject: &str) {
    let mut smtp = SmtpClient::connect(stack.endpoints().smtp)
        .await
        .expect("smtp");
    smtp.ehlo("mx.remote.test").await.expect("ehlo");
    let msg = format!(
        "From: <sender@remote.test>\r\nTo: <{rcpt}>\r\nSubject: {subject}\r\n\r\nbody of {subject}\r\n"
    );
    let reply = smtp
        .send_mail("sender@remote.test", &[rcpt], msg.as_bytes())
        .await
        .expect("send");
    assert_eq!(reply.code, 250, "{reply:?}");
}

fn response<'a>(resp: &'a Value, index: usize, name: &str) -> &'a Value {
    let call = &resp["methodResponses"][index];
    assert_eq!(call[0], name, "method response {index}: {resp}");
    &call[1]
}

/// A client that names another host through the gateway (Apache keeps the client's `Host` and
/// derives `X-Forwarded-Host` from it) still gets the configured gateway URL in its session:
/// a client never chooses where the session's URLs point.
#[tokio::test]
async fn gateway_session_urls_ignore_the_clients_host_header() {
    let stack = stack().await;
    let (_user, tokens) = user_and_token(&stack, Grant::Password).await;
    let forged = [
        ("Host".to_string(), "evil.example:8443".to_string()),
        ("X-Forwarded-Host".to_string(), "evil.example".to_string()),
    ];
    let jmap = gateway_client(&stack, Auth::Bearer(tokens.access_token.clone()), &forged);
    let session = jmap.session().await.expect("session through the gateway");
    let expected = format!("{}/oidc/", stack.endpoints().gateway);
    for url in [&session.api_url, &session.upload_url, &session.download_url] {
        assert!(
            url.starts_with(&expected),
            "{url} should start with {expected}"
        );
        assert!(!url.contains("evil.example"), "{url}");
    }
}

/// Through the gateway with a LemonLDAP::NG token: session (URLs keep the /oidc prefix),
/// Mailbox/get, Email/query + Email/get of a message sent over SMTP.
#[rstest]
#[tokio::test]
async fn gateway_session_mailboxes_and_smtp_mail(
    #[values(Idp::LemonLdap, Idp::Keycloak)] idp: Idp,
    #[values(Grant::Password, Grant::AuthCode)] grant: Grant,
) {
    let stack = stack_with(idp).await;
    let (user, tokens) = user_and_token(&stack, grant).await;
    deliver(&stack, &user.mail, "hello-over-smtp").await;
    let jmap = gateway_client(&stack, Auth::Bearer(tokens.access_token.clone()), &[]);
    let session = jmap.session().await.expect("session through the gateway");
    assert_eq!(session.username, user.mail);
    let gw = &stack.endpoints().gateway;
    assert!(
        session.api_url.starts_with(&format!("{gw}/oidc/")),
        "{}",
        session.api_url
    );
    assert!(
        session.upload_url.starts_with(&format!("{gw}/oidc/")),
        "{}",
        session.upload_url
    );
    let account = session.account_id.clone();
    let resp = jmap
        .call(json!([["Mailbox/get", {"accountId": account, "ids": null}, "0"]]))
        .await
        .expect("call");
    let mailboxes = response(&resp, 0, "Mailbox/get")["list"]
        .as_array()
        .expect("list")
        .clone();
    let inbox = mailboxes
        .iter()
        .find(|m| m["role"] == "inbox")
        .unwrap_or_else(|| panic!("an inbox: {mailboxes:?}"));
    let inbox_id = inbox["id"].as_str().expect("id").to_string();
    let resp = jmap
        .call(json!([
            ["Email/query", {"accountId": account, "filter": {"inMailbox": inbox_id}}, "0"],
            ["Email/get", {
                "accountId": account,
                "#ids": {"resultOf": "0", "name": "Email/query", "path": "/ids"},
                "properties": ["subject", "from", "mailboxIds", "preview"]
            }, "1"],
        ]))
        .await
        .expect("call");
    let ids = response(&resp, 0, "Email/query")["ids"]
        .as_array()
        .expect("ids")
        .clone();
    assert_eq!(ids.len(), 1, "{resp}");
    let email = &response(&resp, 1, "Email/get")["list"][0];
    assert_eq!(email["subject"], "hello-over-smtp", "{email}");
    assert_eq!(email["from"][0]["email"], "sender@remote.test", "{email}");
    assert_eq!(email["mailboxIds"][&inbox_id], true, "{email}");
}

/// WebSocket through the gateway: a request is answered, and a delivery is pushed.
#[tokio::test]
async fn gateway_websocket_request_and_push() {
    let stack = stack().await;
    let (user, tokens) = user_and_token(&stack, Grant::Password).await;
    let jmap = gateway_client(&stack, Auth::Bearer(tokens.access_token), &[]);
    let session = jmap.session().await.expect("session");
    let ws_url = session.ws_url.clone().expect("ws url");
    assert!(ws_url.contains("/oidc/"), "{ws_url}");
    let mut ws = jmap
        .connect_ws()
        .await
        .expect("websocket upgrade through the gateway");
    let echo = ws
        .request(json!({
            "@type": "Request",
            "using": ["urn:ietf:params:jmap:core"],
            "methodCalls": [["Core/echo", {"hello": "ws"}, "e"]]
        }))
        .await
        .expect("request over ws");
    assert_eq!(echo["methodResponses"][0][1]["hello"], "ws", "{echo}");
    ws.enable_push().await.expect("push enable");
    deliver(&stack, &user.mail, "pushed").await;
    let push = ws
        .next_push(Duration::from_secs(10))
        .await
        .expect("StateChange push");
    let changed = &push["changed"][&session.account_id];
    assert!(
        changed.get("Email").is_some(),
        "Email state changed: {push}"
    );
    ws.close().await.expect("close");
}

/// Without a token, or with any attack token, the gateway answers 401 itself.
#[rstest]
#[tokio::test]
async fn gateway_refuses_missing_and_hostile_tokens(
    #[values(Idp::LemonLdap, Idp::Keycloak)] idp: Idp,
) {
    let stack = stack_with(idp).await;
    let user = stack.create_user("gw").await.expect("user");
    let none = gateway_client(&stack, Auth::None, &[]);
    let err = none.session().await.expect_err("no token");
    assert_eq!(err.status(), Some(401), "{err}");
    assert!(
        err.www_authenticate()
            .is_some_and(|h| h.starts_with("Bearer")),
        "{err}"
    );
    for kind in Hostile::ALL {
        let token = stack.forge().hostile(kind, &user.mail, &user.uid);
        let jmap = gateway_client(&stack, Auth::Bearer(token), &[]);
        let err = jmap.session().await.expect_err("hostile token refused");
        assert_eq!(err.status(), Some(401), "{kind:?}: {err}");
    }
}

/// Issue 13: a client naming `X-User-Sid, X-User-Sub, ...` in its own `Connection` header made
/// Apache drop them after the gateway set them, so its WebSocket and EventSource outlived a
/// logout of that sid or sub. They must end; the old token is refused at the gateway.
#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_connection_header_does_not_escape_single_log_out(
    #[values(Idp::LemonLdap, Idp::Keycloak)] idp: Idp,
    #[values(LogoutNames::Sid, LogoutNames::Sub)] names: LogoutNames,
) {
    let stack = stack_with(idp).await;
    let user = stack.create_user("hop").await.expect("user");
    revocation::hostile_connection_header(
        &stack.mail_target(),
        &stack.idp_target(),
        &stack.endpoints().backchannel_logout_url,
        &stack.forge(),
        &user.account(),
        names,
    )
    .await
    .assert_passed();
}

/// The server's half of that fix: a request with the gateway's secret but without the token
/// session headers (as the proxy would have forwarded it) is refused, not served as user-only.
#[tokio::test]
async fn the_server_refuses_a_gateway_user_without_its_session_headers() {
    let stack = stack().await;
    let user = stack.create_user("bare").await.expect("user");
    let ep = stack.endpoints();
    let http = reqwest::Client::builder().no_proxy().build().expect("http");
    let url = format!("http://{}/.well-known/jmap", ep.http);
    let with_session = http
        .get(&url)
        .header("X-User", &user.mail)
        .header("X-User-Secret", &ep.x_user_secret)
        .header("X-User-Iss", &ep.issuer)
        .header("X-User-Sub", &user.uid)
        .header("X-User-Sid", "")
        .header("X-User-Iat", "")
        .header("X-User-Exp", "4102444800")
        .send()
        .await
        .expect("request");
    assert_eq!(
        with_session.status(),
        200,
        "the complete set is served: {}",
        with_session.text().await.unwrap_or_default()
    );
    let bare = http
        .get(&url)
        .header("X-User", &user.mail)
        .header("X-User-Secret", &ep.x_user_secret)
        .header("X-User-Iss", &ep.issuer)
        .header("X-User-Sub", &user.uid)
        .send()
        .await
        .expect("request");
    assert_eq!(bare.status(), 401);
    let body: Value = bare.json().await.expect("problem JSON");
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("no x-user-sid header")),
        "{body}"
    );
}

/// A forged X-User through the gateway is ignored: the token's user wins.
#[tokio::test]
async fn forged_x_user_through_gateway_is_ignored() {
    let stack = stack().await;
    let (alice, tokens) = user_and_token(&stack, Grant::Password).await;
    let bob = stack.create_user("bob").await.expect("bob");
    let forged = [
        ("X-User".to_string(), bob.mail.clone()),
        ("X-User-Secret".to_string(), "guessed".to_string()),
    ];
    let jmap = gateway_client(&stack, Auth::Bearer(tokens.access_token), &forged);
    let session = jmap.session().await.expect("session");
    assert_eq!(session.username, alice.mail);
    // Basic through the gateway's plain route reaches the server's Basic strategy.
    let url = format!("{}/.well-known/jmap", stack.endpoints().gateway);
    let basic = JmapClient::new(
        url,
        Auth::Basic(bob.mail.clone(), bob.password.clone()),
        &forged,
    )
    .and_then(|c| c.with_ca(&stack.endpoints().ca_pem))
    .expect("client");
    assert_eq!(
        basic.session().await.expect("basic session").username,
        bob.mail
    );
}

/// EmailSubmission/set delivers to another user, who reads the message over IMAP.
#[tokio::test]
async fn email_submission_reaches_another_user_over_imap() {
    let stack = stack().await;
    let (alice, tokens) = user_and_token(&stack, Grant::Password).await;
    let bob = stack.create_user("bob").await.expect("bob");
    let direct = JmapClient::new(
        stack.endpoints().jmap_session.clone(),
        Auth::Bearer(tokens.access_token),
        &[],
    )
    .expect("client");
    let session = direct.session().await.expect("session");
    let account = session.account_id.clone();
    let resp = direct
        .call(json!([
            ["Mailbox/get", {"accountId": account, "ids": null}, "m"],
            ["Identity/get", {"accountId": account, "ids": null}, "i"],
        ]))
        .await
        .expect("call");
    let mailboxes = response(&resp, 0, "Mailbox/get")["list"]
        .as_array()
        .expect("list")
        .clone();
    let drafts = mailboxes
        .iter()
        .find(|m| m["role"] == "drafts")
        .or_else(|| mailboxes.iter().find(|m| m["role"] == "inbox"))
        .expect("a mailbox for the draft");
    let identity = response(&resp, 1, "Identity/get")["list"][0].clone();
    assert_eq!(identity["email"], alice.mail, "{identity}");
    let resp = direct
        .call(json!([
            ["Email/set", {"accountId": account, "create": {"d1": {
                "mailboxIds": {drafts["id"].as_str().expect("id"): true},
                "keywords": {"$draft": true},
                "from": [{"email": alice.mail}],
                "to": [{"email": bob.mail}],
                "subject": "sent with JMAP",
                "bodyValues": {"b": {"value": "Hello Bob, from JMAP."}},
                "textBody": [{"partId": "b", "type": "text/plain"}]
            }}}, "0"],
            ["EmailSubmission/set", {"accountId": account, "create": {"s1": {
                "emailId": "#d1",
                "identityId": identity["id"]
            }}}, "1"],
        ]))
        .await
        .expect("call");
    assert!(
        response(&resp, 0, "Email/set")["created"]["d1"]["id"].is_string(),
        "{resp}"
    );
    assert!(
        response(&resp, 1, "EmailSubmission/set")["created"]["s1"]["id"].is_string(),
        "{resp}"
    );

    let bob_tokens = token_for(&stack, &bob, Grant::Password).await;
    let ep = stack.endpoints();
    let mut imap = ImapClient::connect_tls(ep.imaps, &ep.ca_pem)
        .await
        .expect("imaps");
    let ok = imap
        .oauthbearer(&bob.mail, &bob_tokens.access_token, true)
        .await
        .expect("auth");
    assert!(ok.reply.tagged.starts_with("OK"), "{ok:?}");
    let select = imap.select("INBOX").await.expect("select");
    assert!(
        select.untagged.iter().any(|l| l == "* 1 EXISTS"),
        "{select:?}"
    );
    let message = String::from_utf8(imap.fetch_message(1).await.expect("fetch")).expect("utf8");
    assert!(message.contains("Subject: sent with JMAP"), "{message}");
    assert!(message.contains("Hello Bob, from JMAP."), "{message}");
}

/// Bad input gets the RFC 8620 request-level and method-level errors, never a 500.
#[tokio::test]
async fn bad_jmap_input_gets_rfc_errors() {
    let stack = stack().await;
    let (_user, tokens) = user_and_token(&stack, Grant::Password).await;
    let jmap = gateway_client(&stack, Auth::Bearer(tokens.access_token), &[]);
    let session = jmap.session().await.expect("session");
    let json = [("Content-Type".to_string(), "application/json".to_string())];
    let cases: [(&str, &str); 3] = [
        ("{not json", "urn:ietf:params:jmap:error:notJSON"),
        (
            r#"{"using": [], "calls": []}"#,
            "urn:ietf:params:jmap:error:notRequest",
        ),
        (
            r#"{"using": ["urn:example:nope"], "methodCalls": []}"#,
            "urn:ietf:params:jmap:error:unknownCapability",
        ),
    ];
    for (body, problem_type) in cases {
        let resp = jmap
            .raw_post(&session.api_url, body, &json)
            .await
            .expect("post");
        assert_eq!(resp.status, 400, "{body}: {}", resp.text());
        let problem = resp.json().expect("problem JSON");
        assert_eq!(problem["type"], problem_type, "{problem}");
    }
    let resp = jmap
        .call_at(
            &session.api_url,
            json!([
                ["Nope/get", {}, "0"],
                ["Mailbox/get", {"accountId": "not-mine"}, "1"],
                ["Email/get", {"accountId": session.account_id, "ids": "x"}, "2"],
            ]),
        )
        .await
        .expect("method errors are a 200 response");
    let errors: Vec<&Value> = (0..3).map(|i| &resp["methodResponses"][i]).collect();
    assert_eq!(errors[0][0], "error");
    assert_eq!(errors[0][1]["type"], "unknownMethod", "{resp}");
    assert_eq!(errors[1][1]["type"], "accountNotFound", "{resp}");
    assert_eq!(errors[2][1]["type"], "invalidArguments", "{resp}");
}
