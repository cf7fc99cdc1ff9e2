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
