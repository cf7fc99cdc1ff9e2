//! The OIDC gateway (Apache httpd + mod_oauth2) in front of the server's HTTP side: it challenges
//! requests without a token, verifies LemonLDAP::NG tokens itself (signature, exp, iss, aud,
//! email), proxies good ones, follows key rotation without a reload, and never lets a client
//! choose the identity.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mail_oidc_harness::clients::jmap::{Auth, JmapClient, JmapError, JmapWs, RawResponse};
use mail_oidc_harness::stack::Stack;
use mail_oidc_harness::stack::gateway::JWKS_CACHE_SECONDS;
use mail_oidc_harness::stack::wait::Deadline;
use mail_oidc_harness::tokens::Hostile;
use serde_json::{Value, json};

use common::{Grant, user_and_token};

/// What mod_oauth2 says about a token it could not verify (the gateway's own 401, not the
/// server's).
const GATEWAY_BAD_TOKEN: &str = "Token could not be verified.";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn gateway_client(stack: &Stack, auth: Auth, extra: &[(String, String)]) -> JmapClient {
    let url = format!("{}/oidc/.well-known/jmap", stack.endpoints().gateway);
    JmapClient::new(url, auth, extra)
        .and_then(|c| c.with_ca(&stack.endpoints().ca_pem))
        .expect("jmap client")
}

/// TLS trusting the stack's CA, for WebSocket upgrades at the gateway.
fn gateway_tls(stack: &Stack) -> Option<std::sync::Arc<rustls::ClientConfig>> {
    Some(mail_oidc_harness::clients::tls::client_config(&stack.endpoints().ca_pem).expect("CA"))
}

/// The token session a gateway forwards beside `X-User` (a token without `sid` and `iat`).
fn session_headers(issuer: &str, sub: &str) -> Vec<(String, String)> {
    [
        ("X-User-Iss", issuer),
        ("X-User-Sub", sub),
        ("X-User-Sid", ""),
        ("X-User-Iat", ""),
        ("X-User-Exp", "4102444800"),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_string(), v.to_string()))
    .collect()
}

/// GET the server's `/whoami` through the gateway's token-checked route.
async fn oidc_whoami(stack: &Stack, auth: Auth, extra: &[(String, String)]) -> RawResponse {
    gateway_client(stack, auth, extra)
        .raw_get("/oidc/whoami", &[])
        .await
        .expect("request to the gateway")
}

/// The server's `/whoami` answer: (user, strategy, publicBase).
fn whoami(resp: &RawResponse, what: &str) -> (String, String, String) {
    assert_eq!(resp.status, 200, "{what}: {} {}", resp.status, resp.text());
    let v = resp.json().expect("whoami JSON");
    let s = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    (s("user"), s("strategy"), s("publicBase"))
}

fn challenge(resp: &RawResponse) -> String {
    resp.header("www-authenticate")
        .unwrap_or_default()
        .to_string()
}

/// A 401 written by the gateway (mod_oauth2's wording or our iss/aud rule): Apache's HTML page,
/// so the request never reached the server.
fn assert_gateway_401(resp: &RawResponse, what: &str) {
    assert_eq!(resp.status, 401, "{what}: {} {}", resp.status, resp.text());
    let wa = challenge(resp);
    assert!(
        wa.starts_with("Bearer realm=\"mail-oidc\"") && wa.contains("error=\"invalid_token\""),
        "{what}: WWW-Authenticate {wa:?}"
    );
    assert!(
        resp.text().contains("<title>401 Unauthorized</title>"),
        "{what}: not Apache's 401 page: {}",
        resp.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_verifies_tokens_and_asserts_the_identity() {
    let stack = common::stack().await;
    let ep = stack.endpoints().clone();
    let gateway = stack.gateway().expect("the stack starts a gateway");
    eprintln!(
        "gateway {} started in {:?} (whole stack in {:?})",
        ep.gateway,
        gateway.start_duration(),
        stack.start_duration()
    );
    assert!(
        ep.gateway.starts_with("https://127.0.0.1:"),
        "{}",
        ep.gateway
    );
    assert_eq!(
        ep.jmap_session,
        format!("http://{}/.well-known/jmap", ep.http)
    );
    assert!(ep.x_user_secret.len() >= 32);

    // No token: the gateway's challenge on every token-checked route, a forged X-User or not.
    let forged_user = [("X-User".to_string(), "demo@example.com".to_string())];
    for path in [
        "/oidc/jmap",
        "/oidc/.well-known/jmap",
        "/oidc/upload/x/",
        "/oidc/whoami",
    ] {
        let client = gateway_client(&stack, Auth::None, &forged_user);
        let resp = client.raw_get(path, &[]).await.expect("GET");
        assert_eq!(resp.status, 401, "{path}: {}", resp.text());
        assert_eq!(
            challenge(&resp),
            "Bearer realm=\"mail-oidc\", error=\"invalid_request\", \
             error_description=\"No bearer token found in the request.\"",
            "{path}"
        );
    }
    let ws = format!("{}/oidc/jmap/ws", ep.gateway);
    match JmapWs::connect_with(&ws, &[], gateway_tls(&stack)).await {
        Err(e @ JmapError::Upgrade(_)) => {
            assert_eq!(e.status(), Some(401), "{e}");
            assert!(
                e.www_authenticate()
                    .is_some_and(|w| w.starts_with("Bearer"))
            );
        }
        other => panic!("WebSocket upgrade without a token: {other:?}"),
    }

    // A LemonLDAP::NG password-grant token: the server sees the token's email as X-User (not
    // the Authorization header, which would make it `bearer`), and URLs under /oidc.
    let (user, tokens) = user_and_token(&stack, Grant::Password).await;
    let token = tokens.access_token.clone();
    let started = Instant::now();
    let resp = oidc_whoami(&stack, Auth::Bearer(token.clone()), &[]).await;
    eprintln!(
        "first request through the gateway (JWKS fetch included): {:?}",
        started.elapsed()
    );
    let oidc_base = format!("{}/oidc", ep.gateway);
    assert_eq!(
        whoami(&resp, "LemonLDAP::NG token"),
        (user.mail.clone(), "x-user".to_string(), oidc_base.clone())
    );
    // Whatever identity headers the client adds, in any case (the token session too, so that
    // the server alone would accept them: only the gateway's stripping refuses them).
    let forged: Vec<(String, String)> = [
        ("X-User".to_string(), "bob@example.com".to_string()),
        ("x-user".to_string(), "root@example.com".to_string()),
        ("X-USER-SECRET".to_string(), ep.x_user_secret.clone()),
        ("X-Forwarded-Prefix".to_string(), "/evil".to_string()),
        ("X-Forwarded-Host".to_string(), "evil.example".to_string()),
    ]
    .into_iter()
    .chain(session_headers(&ep.issuer, "bob"))
    .collect();
    let resp = oidc_whoami(&stack, Auth::Bearer(token.clone()), &forged).await;
    assert_eq!(
        whoami(&resp, "token + forged headers"),
        (user.mail.clone(), "x-user".to_string(), oidc_base.clone())
    );

    // The pass-through routes leave authentication to the server, and strip identity headers.
    // (The server honours X-Forwarded-* only for x-user requests: its own base URL here.)
    let server_base = format!("http://{}", ep.http);
    let plain = |auth: Auth, extra: &[(String, String)]| {
        JmapClient::new(format!("{}/whoami", ep.gateway), auth, extra)
            .and_then(|c| c.with_ca(&ep.ca_pem))
            .expect("client")
    };
    let basic = Auth::Basic(user.mail.clone(), user.password.clone());
    let resp = plain(basic.clone(), &forged)
        .raw_get("/whoami", &[])
        .await
        .expect("GET");
    assert_eq!(
        whoami(&resp, "Basic through the gateway"),
        (user.mail.clone(), "basic".to_string(), server_base)
    );
    let resp = plain(Auth::Bearer(token.clone()), &[])
        .raw_get("/whoami", &[])
        .await
        .expect("GET");
    assert_eq!(whoami(&resp, "Bearer through the gateway").1, "bearer");
    let resp = plain(Auth::None, &forged)
        .raw_get("/whoami", &[])
        .await
        .expect("GET");
    assert_eq!(
        resp.status,
        401,
        "X-User + secret from a client: {}",
        resp.text()
    );
    // ... which the server itself would have honoured: the gateway's stripping is what refused.
    let asserted: Vec<(String, String)> = [
        ("X-User".to_string(), "bob@example.com".to_string()),
        ("X-User-Secret".to_string(), ep.x_user_secret.clone()),
    ]
    .into_iter()
    .chain(session_headers(&ep.issuer, "bob"))
    .collect();
    let direct = JmapClient::new(format!("http://{}/whoami", ep.http), Auth::None, &asserted)
        .expect("client");
    let resp = direct.raw_get("/whoami", &[]).await.expect("GET");
    let who = whoami(&resp, "X-User + secret, direct");
    assert_eq!(
        (who.0.as_str(), who.1.as_str()),
        ("bob@example.com", "x-user")
    );
    let resp = plain(Auth::None, &asserted)
        .raw_get("/whoami", &[])
        .await
        .expect("GET");
    assert_eq!(
        resp.status,
        401,
        "the same through the gateway: {}",
        resp.text()
    );

    // Forged tokens stop at the gateway.
    let forge = stack.forge();
    for kind in [
        Hostile::BadSignature,
        Hostile::Expired,
        Hostile::AlgNone,
        Hostile::UnknownKid,
        Hostile::HmacWithPublicKey,
        Hostile::Garbage,
    ] {
        let bad = forge.hostile(kind, &user.mail, &user.uid);
        let resp = oidc_whoami(&stack, Auth::Bearer(bad), &[]).await;
        assert_gateway_401(&resp, &format!("{kind:?}"));
        assert!(
            challenge(&resp).contains(GATEWAY_BAD_TOKEN),
            "{kind:?}: {}",
            challenge(&resp)
        );
    }
    // Signed with the IdP's key, but a claim the gateway checks is wrong.
    let bad = forge.hostile(Hostile::NotYetValid, &user.mail, &user.uid);
    let resp = oidc_whoami(&stack, Auth::Bearer(bad), &[]).await;
    assert_gateway_401(&resp, "NotYetValid");
    assert!(
        challenge(&resp).contains("Token not yet valid."),
        "{}",
        challenge(&resp)
    );
    for kind in [Hostile::WrongIssuer, Hostile::WrongAudience] {
        let bad = forge.hostile(kind, &user.mail, &user.uid);
        let resp = oidc_whoami(&stack, Auth::Bearer(bad), &[]).await;
        assert_gateway_401(&resp, &format!("{kind:?}"));
    }
    let mut no_email = forge.claims_for(&user.mail, &user.uid);
    if let Some(claims) = no_email.as_object_mut() {
        claims.remove("email");
    }
    let resp = oidc_whoami(&stack, Auth::Bearer(forge.mint(&no_email)), &[]).await;
    assert_gateway_401(&resp, "token without email");
    // Basic is no bearer token: the token-checked routes refuse it.
    let resp = oidc_whoami(&stack, basic.clone(), &[]).await;
    assert_eq!(resp.status, 401, "Basic on /oidc: {}", resp.text());

    // A valid token is accepted until its exp, then refused (no cache of verified tokens).
    let mut short = forge.claims_for(&user.mail, &user.uid);
    short["exp"] = json!(now() + 2);
    let short = forge.mint(&short);
    let resp = oidc_whoami(&stack, Auth::Bearer(short.clone()), &[]).await;
    assert_eq!(whoami(&resp, "short-lived token before exp").0, user.mail);
    let deadline = Deadline::new("the short-lived token to expire", Duration::from_secs(10));
    loop {
        let resp = oidc_whoami(&stack, Auth::Bearer(short.clone()), &[]).await;
        if resp.status == 401 {
            assert_gateway_401(&resp, "short-lived token after exp");
            break;
        }
        whoami(&resp, "short-lived token");
        deadline.tick(resp.status).await.expect("refused after exp");
    }

    jmap_through_gateway(&stack, &token, &user.mail, &user.password).await;

    // Key rotation without touching the gateway: the new kid works at once (an unknown kid
    // makes mod_oauth2 refetch the JWKS); the old key stops once the cached JWKS expires.
    let old = forge.mint(&forge.claims_for(&user.mail, &user.uid));
    let resp = oidc_whoami(&stack, Auth::Bearer(old.clone()), &[]).await;
    whoami(&resp, "old key before rotation");
    stack.rotate_signing_key().await.expect("rotate");
    let new_forge = stack.forge();
    assert_ne!(new_forge.kid, forge.kid);
    let fresh = new_forge.mint(&new_forge.claims_for(&user.mail, &user.uid));
    let resp = oidc_whoami(&stack, Auth::Bearer(fresh), &[]).await;
    whoami(&resp, "new key right after rotation");
    let rotated = Instant::now();
    let deadline = Deadline::new(
        "the gateway to drop the rotated-out key",
        Duration::from_secs(u64::from(JWKS_CACHE_SECONDS) + 10),
    );
    loop {
        let resp = oidc_whoami(&stack, Auth::Bearer(old.clone()), &[]).await;
        if resp.status == 401 {
            assert_gateway_401(&resp, "old key after rotation");
            break;
        }
        whoami(&resp, "old key after rotation");
        deadline.tick(resp.status).await.expect("old key refused");
    }
    eprintln!("old key refused {:?} after the rotation", rotated.elapsed());
}

/// JMAP through both gateway routes.
async fn jmap_through_gateway(stack: &Stack, token: &str, mail: &str, password: &str) {
    let ep = stack.endpoints();
    // The session through /oidc keeps the prefix in every URL, and the identity is the token's
    // email whatever X-User the client sends.
    let forged = [
        ("X-User".to_string(), "bob@example.com".to_string()),
        ("x-user".to_string(), "root@example.com".to_string()),
        ("X-User-Secret".to_string(), ep.x_user_secret.clone()),
    ];
    let client = gateway_client(stack, Auth::Bearer(token.to_string()), &forged);
    let session = client.session().await.expect("session through the gateway");
    assert_eq!(session.username, mail, "{}", session.raw);
    let oidc = format!("{}/oidc/", ep.gateway);
    for url in [&session.api_url, &session.upload_url, &session.download_url] {
        assert!(url.starts_with(&oidc), "{url} lacks {oidc}");
    }
    if let Some(ws) = &session.ws_url {
        assert!(ws.contains("/oidc/jmap/ws"), "{ws}");
    }
    let resp = client
        .call(json!([["Mailbox/get", {"accountId": session.account_id}, "0"]]))
        .await
        .expect("Mailbox/get");
    assert_eq!(
        resp.pointer("/methodResponses/0/0").and_then(Value::as_str),
        Some("Mailbox/get"),
        "{resp}"
    );
    if session.ws_url.is_some() {
        let mut ws = client.connect_ws().await.expect("WebSocket through /oidc");
        let echo = ws
            .request(json!({"methodCalls": [["Core/echo", {"hello": true}, "e"]]}))
            .await
            .expect("echo over the WebSocket");
        assert_eq!(
            echo.pointer("/methodResponses/0/1/hello"),
            Some(&json!(true)),
            "{echo}"
        );
    }

    // The pass-through route: Basic reaches the server, URLs without the prefix; upload and
    // download through /oidc round-trip a blob.
    let plain = format!("{}/.well-known/jmap", ep.gateway);
    let basic = JmapClient::new(
        &plain,
        Auth::Basic(mail.to_string(), password.to_string()),
        &[],
    )
    .and_then(|c| c.with_ca(&ep.ca_pem))
    .expect("client");
    let session = basic.session().await.expect("Basic through the gateway");
    assert_eq!(session.username, mail);
    assert!(!session.api_url.contains("/oidc"), "{}", session.api_url);
    let blob = b"blob through the gateway".to_vec();
    let blob_id = client
        .upload(blob.clone(), "text/plain")
        .await
        .expect("upload via /oidc");
    assert_eq!(
        client.download(&blob_id).await.expect("download via /oidc"),
        blob
    );
}

/// A WebSocket backend standing in for the server's `/jmap/ws`: answers the upgrade with the
/// `jmap` subprotocol, sends the request headers it saw as one JSON message, then echoes.
// The handshake callback's error type is tungstenite's, however large.
#[allow(clippy::result_large_err)]
async fn ws_backend() -> std::net::SocketAddr {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut seen = serde_json::Map::new();
                let callback = |req: &Request, mut resp: Response| {
                    seen.insert("path".into(), json!(req.uri().path()));
                    for (name, value) in req.headers() {
                        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                        match seen.get_mut(name.as_str()) {
                            Some(Value::Array(values)) => values.push(json!(value)),
                            _ => {
                                seen.insert(name.as_str().to_string(), json!([value]));
                            }
                        }
                    }
                    resp.headers_mut().insert(
                        "Sec-WebSocket-Protocol",
                        reqwest::header::HeaderValue::from_static("jmap"),
                    );
                    Ok(resp)
                };
                let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
                    return;
                };
                let hello = Value::Object(seen).to_string();
                if ws.send(Message::text(hello)).await.is_err() {
                    return;
                }
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_text() && ws.send(msg).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// A backend that redirects every request to `<its own address>/jmap/session`, as a server
/// unaware of the gateway would.
async fn redirect_backend() -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let reply = format!(
                    "HTTP/1.1 302 Found\r\nLocation: http://{addr}/jmap/session\r\n\
                     Content-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let _ = stream.write_all(reply.as_bytes()).await;
            });
        }
    });
    addr
}

/// Another gateway with the stack's IdP in front of `backend`.
async fn extra_gateway(
    stack: &Stack,
    backend: std::net::SocketAddr,
    name: &str,
    secret: &str,
) -> mail_oidc_harness::stack::gateway::Gateway {
    use mail_oidc_harness::stack::gateway::{self, GatewaySettings};

    let ep = stack.endpoints();
    let settings = GatewaySettings {
        backend,
        issuer: ep.issuer.clone(),
        jwks_uri: ep.jwks_uri.clone(),
        audiences: stack.realm().client_ids(),
        realm: "mail-oidc".into(),
        x_user_header: "X-User".into(),
        x_user_secret_header: "X-User-Secret".into(),
        x_user_secret: secret.into(),
        leeway_seconds: 30,
        redis_addr: ep.redis_url.trim_start_matches("redis://").to_string(),
        redis_user: stack
            .redis_acl()
            .expect("a native stack's Redis ACL")
            .gateway
            .clone(),
        key_prefix: stack.server_config().revocation.key_prefix,
        tls_cert: stack.dir().join("pki").join("server.pem"),
        tls_key: stack.dir().join("pki").join("server-key.pem"),
    };
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client");
    gateway::start(
        &settings,
        &stack.dir().join(name),
        &stack.dir().join("logs").join(format!("{name}.log")),
        &http,
        &ep.ca_pem,
        None,
    )
    .await
    .expect("extra gateway")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_and_redirects_through_the_gateway() {
    let stack = common::stack().await;
    let secret = "ws-test-secret";
    let gw = extra_gateway(&stack, ws_backend().await, "gateway-ws", secret).await;
    let (user, tokens) = user_and_token(&stack, Grant::Password).await;

    let headers = [
        (
            "Authorization".to_string(),
            format!("Bearer {}", tokens.access_token),
        ),
        ("x-user".to_string(), "bob@example.com".to_string()),
    ];
    let url = format!("{}/oidc/jmap/ws", gw.base_url());
    let mut ws = JmapWs::connect_with(&url, &headers, gateway_tls(&stack))
        .await
        .expect("upgrade through /oidc");
    let seen = ws.recv(Duration::from_secs(10)).await.expect("hello");
    assert_eq!(seen["path"], json!("/jmap/ws"), "{seen}");
    assert_eq!(seen["x-user"], json!([user.mail]), "{seen}");
    assert_eq!(seen["x-user-secret"], json!([secret]), "{seen}");
    assert_eq!(seen["x-forwarded-prefix"], json!(["/oidc"]), "{seen}");
    assert!(seen.get("authorization").is_none(), "{seen}");
    ws.send(&json!({"echo": 1})).await.expect("send");
    assert_eq!(
        ws.recv(Duration::from_secs(10)).await.expect("echo"),
        json!({"echo": 1})
    );
    ws.close().await.expect("close");

    // The pass-through route: the Authorization header reaches the backend, identity headers
    // from the client do not.
    let url = format!("{}/jmap/ws", gw.base_url());
    let mut ws = JmapWs::connect_with(&url, &headers, gateway_tls(&stack))
        .await
        .expect("upgrade through /jmap/ws");
    let seen = ws.recv(Duration::from_secs(10)).await.expect("hello");
    assert_eq!(
        seen["authorization"],
        json!([format!("Bearer {}", tokens.access_token)]),
        "{seen}"
    );
    assert!(seen.get("x-user").is_none(), "{seen}");
    assert!(seen.get("x-user-secret").is_none(), "{seen}");
    assert!(seen.get("x-forwarded-prefix").is_none(), "{seen}");

    // A redirect to the server's own address comes back on the gateway, keeping the route.
    let redirector =
        extra_gateway(&stack, redirect_backend().await, "gateway-redirect", secret).await;
    let no_follow = reqwest::Client::builder()
        .no_proxy()
        .add_root_certificate(
            reqwest::Certificate::from_pem(stack.endpoints().ca_pem.as_bytes()).expect("CA"),
        )
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http client");
    for (path, expected) in [
        ("/oidc/.well-known/jmap", "/oidc/jmap/session"),
        ("/.well-known/jmap", "/jmap/session"),
    ] {
        let resp = no_follow
            .get(format!("{}{path}", redirector.base_url()))
            .header("Authorization", format!("Bearer {}", tokens.access_token))
            .send()
            .await
            .expect("GET");
        assert_eq!(resp.status().as_u16(), 302, "{path}");
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        assert_eq!(
            location,
            format!("{}{expected}", redirector.base_url()),
            "{path}"
        );
    }
}
