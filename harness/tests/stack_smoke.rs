//! The native stack itself: every service answers, IdP stop/start and key rotation work, and no
//! process survives the stack.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ldap3::{LdapConnAsync, Scope, SearchEntry};
use mail_oidc_harness::idp::IdpClient;
use mail_oidc_harness::stack::{Stack, TestUser, redis};
use serde_json::Value;

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_test_writer()
        .try_init();
}

fn http() -> reqwest::Client {
    mail_oidc_server::tls::install_crypto_provider();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client")
}

/// Exists and is not a zombie.
fn alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks existence.
    let exists = unsafe { libc::kill(pid as libc::pid_t, 0) == 0 };
    let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| rest.starts_with('Z')))
        .unwrap_or(false);
    exists && !zombie
}

fn jwt_part(token: &str, i: usize) -> Value {
    let part = token.split('.').nth(i).expect("JWT part");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("JSON")
}

/// Password grant with plain reqwest (independent of the IdP client under test elsewhere).
async fn password_grant(stack: &Stack, user: &str, password: &str) -> String {
    let client = stack.realm().client("mail-oidc").expect("client");
    let resp: Value = http()
        .post(&stack.endpoints().token_endpoint)
        .basic_auth(&client.client_id, client.secret.as_ref())
        .form(&[
            ("grant_type", "password"),
            ("username", user),
            ("password", password),
            ("scope", "openid email profile"),
        ])
        .send()
        .await
        .expect("token request")
        .json()
        .await
        .expect("token JSON");
    resp["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no access_token: {resp}"))
        .to_string()
}

async fn jwks_kids(stack: &Stack) -> Vec<String> {
    let jwks: Value = http()
        .get(&stack.endpoints().jwks_uri)
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("jwks JSON");
    jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k["kid"].as_str().map(str::to_string))
        .collect()
}

async fn ldap_user(stack: &Stack, user: &TestUser) -> SearchEntry {
    let realm = stack.realm();
    let (conn, mut ldap) = LdapConnAsync::new(&stack.endpoints().ldap_url)
        .await
        .expect("ldap connect");
    ldap3::drive!(conn);
    // The user's own password works for a bind.
    ldap.simple_bind(&realm.user_dn(&user.uid), &user.password)
        .await
        .expect("bind")
        .success()
        .expect("user bind");
    let (entries, _) = ldap
        .search(
            &realm.people_dn,
            Scope::OneLevel,
            &format!("(mail={})", user.mail),
            vec!["uid", "mail", "cn"],
        )
        .await
        .expect("search")
        .success()
        .expect("search ok");
    assert_eq!(entries.len(), 1, "exactly one entry for {}", user.mail);
    SearchEntry::construct(entries.into_iter().next().expect("entry"))
}

/// PING as the server's ACL user (anonymous clients are refused: see tests/redis_acl.rs).
async fn redis_ping(stack: &Stack) -> redis::Reply {
    let addr = stack.endpoints().redis_url.trim_start_matches("redis://");
    let user = &stack.redis_acl().expect("native stack").server;
    redis::command(addr, Some(user), &["PING"])
        .await
        .expect("redis")
}

#[tokio::test]
async fn idp_ldap_redis_stop_start_rotate() {
    init_tracing();
    let stack = Stack::builder()
        .without_server()
        .start()
        .await
        .expect("stack starts");
    eprintln!("stack (no server) started in {:?}", stack.start_duration());
    let ep = stack.endpoints().clone();
    assert!(ep.issuer.starts_with("http://localhost:"), "{}", ep.issuer);

    let discovery: Value = http()
        .get(&ep.discovery_url)
        .send()
        .await
        .expect("discovery")
        .json()
        .await
        .expect("discovery JSON");
    assert_eq!(discovery["issuer"], ep.issuer.as_str());
    assert_eq!(discovery["token_endpoint"], ep.token_endpoint.as_str());
    assert_eq!(discovery["jwks_uri"], ep.jwks_uri.as_str());
    assert!(
        std::fs::read_to_string(&ep.ca_cert)
            .expect("ca")
            .contains("BEGIN CERTIFICATE")
    );
    assert_eq!(
        redis_ping(&stack).await,
        redis::Reply::Simple("PONG".into())
    );

    // The demo user logs in by mail; the token is a JWT signed with the forge's key.
    let token = password_grant(&stack, "demo@example.com", "demo-password").await;
    let header = jwt_part(&token, 0);
    let claims = jwt_part(&token, 1);
    assert_eq!(header["kid"], stack.forge().kid.as_str());
    assert_eq!(header["alg"], "RS256");
    assert_eq!(claims["iss"], ep.issuer.as_str());
    assert_eq!(claims["email"], "demo@example.com");
    assert_eq!(claims["sub"], "demo");

    // A created user exists in LDAP and can log in at the IdP.
    let user = stack.create_user("smoke").await.expect("create user");
    let other = stack.create_user("smoke").await.expect("create user");
    assert_ne!(user.uid, other.uid);
    assert!(user.uid.starts_with("smoke-"));
    assert_eq!(user.mail, format!("{}@example.com", user.uid));
    let entry = ldap_user(&stack, &user).await;
    assert_eq!(entry.attrs["uid"], std::slice::from_ref(&user.uid));
    let token = password_grant(&stack, &user.mail, &user.password).await;
    assert_eq!(jwt_part(&token, 1)["email"], user.mail.as_str());
    // And through the IdP client too (the API other tests use).
    let idp = IdpClient::new(stack.idp_settings("mail-oidc")).expect("idp client");
    let tokens = idp
        .password_grant(&user.mail, &user.password)
        .await
        .expect("password grant via IdpClient");
    assert_eq!(
        jwt_part(&tokens.access_token, 1)["email"],
        user.mail.as_str()
    );

    // stop_idp: discovery fails; start_idp: it answers again, same issuer.
    stack.stop_idp().await;
    assert!(
        http().get(&ep.discovery_url).send().await.is_err(),
        "IdP still answers"
    );
    stack.start_idp().await;
    let discovery: Value = http()
        .get(&ep.discovery_url)
        .send()
        .await
        .expect("discovery after restart")
        .json()
        .await
        .expect("JSON");
    assert_eq!(discovery["issuer"], ep.issuer.as_str());

    // Key rotation: the JWKS, the IdP's tokens and the forge switch to the new kid.
    let old_kid = stack.forge().kid;
    assert_eq!(jwks_kids(&stack).await, std::slice::from_ref(&old_kid));
    let rotation = std::time::Instant::now();
    let new_kid = stack.rotate_signing_key().await.expect("rotate");
    eprintln!("key rotation took {:?}", rotation.elapsed());
    assert_ne!(new_kid, old_kid);
    assert_eq!(stack.forge().kid, new_kid);
    // Every worker serves it: many requests in a row, none with the old kid.
    for _ in 0..10 {
        assert_eq!(jwks_kids(&stack).await, std::slice::from_ref(&new_kid));
    }
    let token = password_grant(&stack, &user.mail, &user.password).await;
    assert_eq!(jwt_part(&token, 0)["kid"], new_kid.as_str());
    assert_ne!(stack.forge().private_pem, "");

    // Dropping the stack stops every process it started.
    let pids = stack.pids().await;
    assert_eq!(pids.len(), 3, "starman, redis, slapd: {pids:?}");
    let dir = stack.dir().to_path_buf();
    drop(stack);
    for pid in pids {
        assert!(!alive(pid), "pid {pid} survived the stack");
    }
    assert!(!dir.exists(), "temp dir removed");
}

#[tokio::test]
async fn full_stack_server_greets_and_extra_server_starts() {
    init_tracing();
    let stack = Stack::builder()
        .server_config(|c| c.server.hostname = "smoke.test".into())
        .start()
        .await
        .expect("stack starts");
    eprintln!("full stack started in {:?}", stack.start_duration());
    let ep = stack.endpoints().clone();
    for addr in [ep.imap, ep.imaps, ep.submission, ep.submissions, ep.smtp] {
        assert!(addr.ip().is_loopback() && addr.port() != 0, "{addr}");
    }
    let greeting = mail_oidc_harness::stack::server::imap_greeting(ep.imap)
        .await
        .expect("IMAP greeting");
    assert!(greeting.starts_with("* OK"), "{greeting}");
    assert_eq!(stack.server_config().server.hostname, "smoke.test");

    let extra = stack
        .start_server(|c| c.imap.listen_tls = None)
        .await
        .expect("extra server");
    assert!(extra.addrs.imap_tls.is_none());
    let imap = extra.addrs.imap.expect("imap");
    assert_ne!(imap, ep.imap);
    mail_oidc_harness::stack::server::imap_greeting(imap)
        .await
        .expect("extra server greets");
    let extra_pid = extra.pid();
    drop(extra);
    assert!(!alive(extra_pid), "extra server survived its handle");

    // Logs are kept per process; the server's own log is there.
    let logs = stack.logs();
    for name in [
        "slapd.log",
        "redis.log",
        "lemonldap-ng.log",
        "server.log",
        "server-2.log",
    ] {
        assert!(logs.contains(name), "{name} missing from logs");
    }

    let pids = stack.pids().await;
    assert_eq!(
        pids.len(),
        5,
        "gateway, server, starman, redis, slapd: {pids:?}"
    );
    drop(stack);
    for pid in pids {
        assert!(!alive(pid), "pid {pid} survived the stack");
    }
}
