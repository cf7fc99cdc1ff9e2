//! Keycloak as the stack's IdP: realm from the one `Realm`, LDAP users federated, tokens that the
//! server accepts, logout tokens that end sessions.

mod common;

use common::{Grant, stack_with, user_and_token};
use mail_oidc_harness::stack::Idp;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keycloak_password_and_auth_code_tokens_open_imap() {
    let stack = stack_with(Idp::Keycloak).await;
    for grant in [Grant::Password, Grant::AuthCode] {
        let (user, tokens) = user_and_token(&stack, grant).await;
        mail_oidc_harness::suites::access::accepted(
            &stack.mail_target(),
            mail_oidc_harness::suites::access::Path::Imap,
            &user.mail,
            &tokens.access_token,
        )
        .await
        .unwrap_or_else(|e| panic!("{grant:?}: {e:#}\n{}", stack.server_log()));
    }
}
