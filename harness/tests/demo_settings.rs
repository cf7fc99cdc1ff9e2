//! The demo's server settings (`mail-oidc up`, `StackBuilder::demo`) on a real stack: the
//! failed-login budget is the server's documented one, and the gateway's plain pass-through
//! routes hand out the gateway's HTTPS URLs, never the backend's cleartext address.

mod common;

use mail_oidc_harness::clients::imap::ImapClient;
use mail_oidc_harness::clients::jmap::{Auth, JmapClient};
use mail_oidc_harness::stack::Stack;

async fn demo_stack() -> Stack {
    common::init_tracing();
    Stack::builder().demo().start().await.expect("stack starts")
}

fn pass_through(stack: &Stack, auth: Auth) -> JmapClient {
    // The plain route: Basic and Bearer go to the server unchanged.
    let url = format!("{}/.well-known/jmap", stack.endpoints().gateway);
    JmapClient::new(url, auth, &[])
        .and_then(|c| c.with_ca(&stack.endpoints().ca_pem))
        .expect("jmap client")
}

#[tokio::test]
async fn the_demo_throttles_and_keeps_pass_through_clients_on_the_gateway() {
    let stack = demo_stack().await;
    let gateway = stack.endpoints().gateway.clone();
    assert!(gateway.starts_with("https://"), "{gateway}");
    let backend = format!("http://{}", stack.endpoints().http);

    // Pass-through session: every URL is the gateway's, over HTTPS.
    let user = stack.create_user("demo-gw").await.expect("user");
    let jmap = pass_through(
        &stack,
        Auth::Basic(user.mail.clone(), user.password.clone()),
    );
    let session = jmap
        .session()
        .await
        .expect("session through the pass-through route");
    let ws = session.ws_url.clone().unwrap_or_default();
    for url in [
        &session.api_url,
        &session.upload_url,
        &session.download_url,
        &ws,
    ] {
        assert!(
            url.starts_with(&format!("{gateway}/"))
                || url.starts_with(&gateway.replace("https://", "wss://")),
            "{url} is not on the gateway {gateway}"
        );
        assert!(!url.contains(&backend), "{url} names the backend");
    }
    // The session's apiUrl works through the gateway.
    jmap.call_at(
        &session.api_url,
        serde_json::json!([["Core/echo", {}, "0"]]),
    )
    .await
    .expect("a call at the session's apiUrl");
    // A 401 on the pass-through route points its resource_metadata at the gateway too.
    let err = pass_through(&stack, Auth::None)
        .session()
        .await
        .expect_err("no credentials");
    assert_eq!(err.status(), Some(401), "{err}");
    let challenge = err.www_authenticate().unwrap_or_default();
    assert!(
        challenge.contains(&format!(
            "resource_metadata=\"{gateway}/.well-known/oauth-protected-resource\""
        )),
        "{challenge}"
    );
    // ... and the gateway serves it, without a token, as RFC 9728 metadata.
    let http = reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only([
            reqwest::Certificate::from_pem(stack.endpoints().ca_pem.as_bytes()).expect("CA"),
        ])
        .build()
        .expect("http");
    let metadata = http
        .get(format!("{gateway}/.well-known/oauth-protected-resource"))
        .send()
        .await
        .expect("metadata");
    assert_eq!(metadata.status(), 200);
    let metadata: serde_json::Value = metadata.json().await.expect("metadata JSON");
    assert!(metadata["resource"].is_string(), "{metadata}");
    // The session's EventSource URL is served through the gateway too.
    jmap.open_event_source()
        .await
        .expect("the session's EventSource through the gateway");

    // The documented budget: 5 free failures per user name; the failure past them starts the
    // delay, so the attempt after it is refused unchecked (the test stacks allow 1,000,000).
    let victim = stack.create_user("demo-throttle").await.expect("user");
    let ep = stack.endpoints();
    let mut refused = Vec::new();
    for attempt in 1..=7 {
        // A connection per attempt: IMAP closes one after `max_auth_failures`.
        let mut imap = ImapClient::connect_tls(ep.imaps, &ep.ca_pem)
            .await
            .expect("imaps");
        let reply = imap
            .login(&victim.mail, &format!("wrong-{attempt}"))
            .await
            .expect("login reply");
        refused.push(reply.tagged.clone());
    }
    for (n, line) in refused.iter().take(6).enumerate() {
        assert!(
            line.starts_with("NO [AUTHENTICATIONFAILED]"),
            "attempt {}: {line}",
            n + 1
        );
    }
    assert!(
        refused[6].starts_with("NO [UNAVAILABLE] Too many failed logins"),
        "the 7th bad password: {}",
        refused[6]
    );
}
