//! Single sign-on and single log-out against the real IdP, on every protocol: thin wrappers
//! around the server-agnostic flows in `mail_oidc_harness::suites`.

mod common;

use mail_oidc_harness::suites::{slo, sso};

/// One browser login, then the second client gets tokens with no password; both tokens work on
/// IMAP, SMTP, JMAP direct and JMAP through the gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sso_tokens_of_both_clients_open_every_protocol() {
    let stack = common::stack().await;
    let user = stack.create_user("sso").await.expect("user");
    sso::single_sign_on(&stack.mail_target(), &stack.idp_target(), &user.account())
        .await
        .assert_passed();
}

/// A logout at the IdP ends IMAP (IDLE and selected), SMTP in DATA, both WebSockets and the
/// EventSource with their protocol's goodbye; old tokens and the refresh token die; the
/// interrupted message is not delivered; a new login works; another user is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idp_logout_ends_every_session_of_that_user_only() {
    let stack = common::stack().await;
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
