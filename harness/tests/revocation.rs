//! Revocation end to end: hostile logout tokens, two instances sharing Redis, admin revocation,
//! the introspection re-check, a Redis outage, token expiry, and ID tokens presented as access
//! tokens. Thin wrappers around `mail_oidc_harness::suites::revocation` where the flow is
//! server-agnostic.

mod common;

use std::time::Duration;

use common::{Grant, stack, stack_with, token_for, user_and_token};
use mail_oidc_harness::stack::Idp;
use mail_oidc_harness::stack::Stack;
use mail_oidc_harness::stack::wait::Deadline;
use mail_oidc_harness::suites::{END_DEADLINE, revocation};
use mail_oidc_server::config::{IntrospectionSection, RevocationStoreKind};
use rstest::rstest;

/// Bad signature, alg none, wrong iss, wrong aud, no events, nonce, neither sid nor sub, too
/// old: 400 each and nothing ends; the valid token ends the session; its replay is refused.
#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_logout_tokens_get_400_and_end_nothing(
    #[values(Idp::LemonLdap, Idp::Keycloak)] idp: Idp,
) {
    let stack = stack_with(idp).await;
    let (user, tokens) = user_and_token(&stack, Grant::Password).await;
    revocation::hostile_logout_tokens(
        &stack.mail_target(),
        &stack.endpoints().backchannel_logout_url,
        &stack.forge(),
        &user.account(),
        &tokens.access_token,
    )
    .await
    .assert_passed();
}

/// Two instances share the Redis deny-list: the IdP's logout call reaches the first, and the
/// sessions on the second end too.
#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_delivered_to_one_instance_ends_sessions_on_both(
    #[values(Idp::LemonLdap, Idp::Keycloak)] idp: Idp,
) {
    let stack = stack_with(idp).await;
    let second = stack.start_server(|_| {}).await.expect("second server");
    let user = stack.create_user("multi").await.expect("user");
    let ca = &stack.endpoints().ca_pem;
    revocation::logout_reaches_every_instance(
        &[stack.mail_target(), second.mail_target(ca)],
        &stack.idp_target(),
        &user.account(),
    )
    .await
    .assert_passed();
}

/// `/admin/revoke {"user": ..}` by the realm's administrator ends every session of that user,
/// password sessions included; a non-administrator gets 403.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_revocation_by_user_ends_all_of_their_sessions() {
    let stack = stack().await;
    let (user, tokens) = user_and_token(&stack, Grant::Password).await;
    revocation::admin_revocation(
        &stack.mail_target(),
        &stack.admin_revoke_url(),
        &stack.admin_account(),
        &user.account(),
        &tokens.access_token,
    )
    .await
    .assert_passed();
}

/// An IdP session killed without a back-channel call (LemonLDAP::NG's session tool; Keycloak's
/// RFC 7009 token revocation) ends the server's session at the next introspection re-check.
#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_recheck_ends_a_session_killed_at_the_idp(
    #[values(Idp::LemonLdap, Idp::Keycloak)] idp: Idp,
) {
    let stack = Stack::builder()
        .idp(idp)
        .server_config(|c| {
            if let Some(oidc) = c.oidc.as_mut() {
                oidc.introspection = Some(IntrospectionSection {
                    endpoint: None,
                    client_id: "mail-oidc".into(),
                    client_secret: "mail-oidc-secret".into(),
                    recheck_seconds: Some(1),
                });
            }
        })
        .start()
        .await
        .expect("stack");
    let (user, tokens) = user_and_token(&stack, Grant::Password).await;
    let kill = stack.kill_idp_sessions(&user, &tokens.access_token);
    revocation::introspection_recheck(
        &stack.mail_target(),
        &user.account(),
        &tokens.access_token,
        kill,
    )
    .await
    .assert_passed();
}

/// Redis stopped: logins fail closed at the server (IMAP, SMTP, JMAP) and at the gateway, open
/// sessions live on; Redis back: everything works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_fails_closed_and_recovers() {
    let stack = stack().await;
    assert_eq!(
        stack.server_config().revocation.store,
        RevocationStoreKind::Redis
    );
    let (user, tokens) = user_and_token(&stack, Grant::Password).await;
    revocation::store_outage(
        &stack.mail_target(),
        &user.account(),
        &tokens.access_token,
        async {
            stack.stop_redis().await;
            Ok(())
        },
        stack.start_redis(),
    )
    .await
    .assert_passed();
}

/// Waits (polling the clock) until the token's `exp` has passed.
async fn until_expired(token: &str) {
    let (_, claims) = mail_oidc_harness::tokens::decode_unverified(token).expect("jwt");
    let exp = claims["exp"].as_u64().expect("exp");
    let deadline = Deadline::new("the token to expire", Duration::from_secs(60));
    while mail_oidc_server::time::now_unix() as u64 <= exp {
        deadline.tick(format!("exp {exp}")).await.expect("clock");
    }
}

/// A realm whose confidential client issues 3-second access tokens.
fn short_lived_realm() -> mail_oidc_harness::realm::Realm {
    let mut realm = mail_oidc_harness::realm::Realm::demo();
    for c in &mut realm.clients {
        c.access_token_seconds = 3;
    }
    realm
}

/// `session.end_at_token_expiry = true`: an IMAP session ends with `* BYE [EXPIRED]` once its
/// token's `exp` passes; by default it keeps running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_end_at_token_expiry_only_when_configured() {
    for end_at_expiry in [true, false] {
        let stack = Stack::builder()
            .realm(short_lived_realm())
            .server_config(move |c| c.session.end_at_token_expiry = end_at_expiry)
            .start()
            .await
            .expect("stack");
        let (user, tokens) = user_and_token(&stack, Grant::Password).await;
        let target = stack.mail_target();
        let mut session = mail_oidc_harness::suites::live::imap_selected(
            &target,
            &user.mail,
            &tokens.access_token,
        )
        .await
        .expect("IMAP session");
        if end_at_expiry {
            let bye = session.ended(END_DEADLINE).await.expect("ended at expiry");
            assert!(bye.contains("expired"), "{bye}");
        } else {
            until_expired(&tokens.access_token).await;
            session
                .still_alive()
                .await
                .expect("a validated session keeps running");
        }
    }
}

/// The `id_token` of a real grant is refused as an access token on IMAP, SMTP, JMAP and at the
/// gateway, with its reason.
#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn id_tokens_are_not_access_tokens(#[values(Idp::LemonLdap, Idp::Keycloak)] idp: Idp) {
    let stack = stack_with(idp).await;
    for grant in [Grant::Password, Grant::AuthCode] {
        let user = stack.create_user("idtok").await.expect("user");
        let tokens = token_for(&stack, &user, grant).await;
        let id_token = tokens.id_token.expect("the grant returns an id_token");
        let target = stack.mail_target();
        for path in mail_oidc_harness::suites::access::Path::ALL {
            mail_oidc_harness::suites::access::refused(
                &target,
                path,
                &user.mail,
                &id_token,
                Some("not_access_token"),
            )
            .await
            .unwrap_or_else(|e| panic!("{grant:?} id_token on {}: {e:#}", path.name()));
        }
        // The access token of the same grant works, so the refusal is about the token's kind.
        mail_oidc_harness::suites::access::accepted(
            &target,
            mail_oidc_harness::suites::access::Path::Imap,
            &user.mail,
            &tokens.access_token,
        )
        .await
        .expect("the access token works");
    }
}

/// Issue 13: the deny-list decides who is logged out, and another local account could delete a
/// `revoked:sid:` key, write `revoked:user:bob`, publish on the channel, FLUSHALL and SHUTDOWN.
/// Now nobody gets in without a password, and each client's ACL user can do only its part.
#[tokio::test]
async fn the_deny_list_is_closed_to_other_local_accounts() {
    use std::os::unix::fs::PermissionsExt;

    use mail_oidc_harness::stack::redis::{self, Reply};

    let stack = stack().await;
    let addr = stack
        .endpoints()
        .redis_url
        .trim_start_matches("redis://")
        .to_string();
    let acl = stack.redis_acl().expect("a native stack's Redis ACL");
    let p = acl.key_prefix.clone();
    let revoked = format!("{p}revoked:user:bob@example.com");
    let sid_key = format!("{p}revoked:sid:https://idp#s1");
    let channel = format!("{p}revocations");
    let run = |user: Option<&redis::RedisUser>, args: Vec<String>| {
        let addr = addr.clone();
        let user = user.cloned();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            redis::command(&addr, user.as_ref(), &args)
                .await
                .expect("redis answers")
        }
    };
    let cmd = |parts: &[&str]| parts.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let refused = |reply: Reply, code: &str, what: &str| {
        assert!(
            reply.error().is_some_and(|e| e.starts_with(code)),
            "{what}: expected {code}, got {reply:?}"
        );
    };
    let admin = [
        cmd(&["FLUSHALL"]),
        cmd(&["FLUSHDB"]),
        cmd(&["SHUTDOWN", "NOSAVE"]),
        cmd(&["CONFIG", "SET", "appendonly", "no"]),
        cmd(&["ACL", "LIST"]),
        cmd(&["SCRIPT", "FLUSH"]),
    ];

    // Anonymous: nothing at all.
    for args in [
        cmd(&["PING"]),
        cmd(&["GET", &revoked]),
        cmd(&["DEL", &sid_key]),
        cmd(&["SET", &revoked, "9999999999"]),
        cmd(&["PUBLISH", &channel, "user bob@example.com 1"]),
    ]
    .into_iter()
    .chain(admin.clone())
    {
        refused(
            run(None, args.clone()).await,
            "NOAUTH",
            &format!("anonymous {args:?}"),
        );
    }
    let guessed = redis::RedisUser {
        name: "default".into(),
        password: String::new(),
    };
    assert!(
        run(Some(&guessed), cmd(&["PING"])).await.error().is_some(),
        "the default user is off"
    );

    // The gateway reads the deny-list and does nothing else.
    assert_eq!(
        run(Some(&acl.gateway), cmd(&["MGET", &sid_key, &revoked])).await,
        Reply::Array(vec![None, None])
    );
    for args in [
        cmd(&["SET", &revoked, "9999999999"]),
        cmd(&["DEL", &sid_key]),
        cmd(&["PUBLISH", &channel, "user bob@example.com 1"]),
        cmd(&["GET", &format!("{p}throttle:user:bob@example.com")]),
    ]
    .into_iter()
    .chain(admin.clone())
    {
        refused(
            run(Some(&acl.gateway), args.clone()).await,
            "NOPERM",
            &format!("gateway {args:?}"),
        );
    }

    // The server owns its prefix and channel, and nothing that flushes, stops or reconfigures.
    assert_eq!(
        run(Some(&acl.server), cmd(&["GET", &revoked])).await,
        Reply::Bulk(None)
    );
    for args in [
        cmd(&["SET", "elsewhere", "1"]),
        cmd(&["PUBLISH", "another-channel", "x"]),
        cmd(&["KEYS", "*"]),
    ]
    .into_iter()
    .chain(admin.clone())
    {
        refused(
            run(Some(&acl.server), args.clone()).await,
            "NOPERM",
            &format!("server {args:?}"),
        );
    }

    // The IdP's session store: reads and writes, no channels, no administration.
    for args in [cmd(&["PUBLISH", &channel, "user bob@example.com 1"])]
        .into_iter()
        .chain(admin)
    {
        refused(
            run(acl.idp.as_ref(), args.clone()).await,
            "NOPERM",
            &format!("IdP {args:?}"),
        );
    }

    // Owner-only on disk; the ACL file holds hashes, not passwords.
    let mode = |path: std::path::PathBuf| {
        std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .permissions()
            .mode()
            & 0o777
    };
    let dir = stack.dir().join("redis");
    assert_eq!(mode(dir.clone()), 0o700);
    assert_eq!(mode(dir.join("redis.sock")), 0o600);
    assert_eq!(mode(dir.join("users.acl")), 0o600);
    let acl_text = std::fs::read_to_string(dir.join("users.acl")).expect("acl");
    for user in [&acl.server, &acl.gateway]
        .into_iter()
        .chain(acl.idp.as_ref())
    {
        assert_eq!(mode(dir.join(format!("{}.pass", user.name))), 0o600);
        assert!(!acl_text.contains(&user.password));
    }
    assert_eq!(mode(stack.dir().join("gateway").join("redis.pass")), 0o400);
}
