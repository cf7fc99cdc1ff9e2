//! Single sign-on and single log-out against the real IdP, on every protocol: thin wrappers
//! around the server-agnostic flows in `mail_oidc_harness::suites`.

mod common;

use common::stack_with;
use mail_oidc_harness::stack::Idp;
use mail_oidc_harness::suites::{slo, sso};
use rstest::rstest;

/// One browser login, then the second client gets tokens with no password; both tokens work on
/// IMAP, SMTP, JMAP direct and JMAP through the gateway.
#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sso_tokens_of_both_clients_open_every_protocol(
    #[values(Idp::LemonLdap, Idp::Keycloak)] idp: Idp,
) {
    let stack = stack_with(idp).await;
    let user = stack.create_user("sso").await.expect("user");
    sso::single_sign_on(&stack.mail_target(), &stack.idp_target(), &user.account())
        .await
        .assert_passed();
}

/// A logout at the IdP ends IMAP (IDLE and selected), SMTP in DATA, both WebSockets and the
/// EventSource with their protocol's goodbye; old tokens and the refresh token die; the
/// interrupted message is not delivered; a new login works; another user is untouched.
#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idp_logout_ends_every_session_of_that_user_only(
    #[values(Idp::LemonLdap, Idp::Keycloak)] idp: Idp,
) {
    let stack = stack_with(idp).await;
    let user = stack.create_user("slo").await.expect("user");
    let bystander = stack.create_user("bystander").await.expect("user");
    slo::single_log_out(
        &stack.mail_target(),
        &stack.idp_target(),
        &user.account(),
        &bystander.account(),
    )
    .await
    .assert_passed();
}

/// Keycloak's administrator logs the user out of all sessions (admin API): Keycloak sends its
/// logout tokens (`typ: logout+jwt`, with `exp`) and every session ends the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keycloak_admin_logout_ends_every_session_of_that_user_only() {
    let stack = stack_with(Idp::Keycloak).await;
    let user = stack.create_user("kcadmin").await.expect("user");
    let bystander = stack.create_user("bystander").await.expect("user");
    slo::single_log_out_by(
        &stack.mail_target(),
        &stack.idp_target(),
        &user.account(),
        &bystander.account(),
        slo::LogoutBy::Idp(stack.admin_logout_at_idp(&user)),
    )
    .await
    .assert_passed();
}
