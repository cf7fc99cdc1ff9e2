//! The same SASL matrix (suites::sasl) on every protocol, with tokens from both IdPs.

mod common;

use common::{Grant, stack_with, user_and_token};
use mail_oidc_harness::stack::{Idp, Stack};
use mail_oidc_harness::suites::sasl::{
    ImapEndpoint, SaslCredentials, SaslEndpoint, SmtpEndpoint, matrix,
};
use mail_oidc_harness::tokens::Hostile;
use rstest::rstest;

/// The stack's server allows three failed logins per connection (its default).
const FAILURE_LIMIT: u32 = 3;

async fn credentials(stack: &Stack) -> SaslCredentials {
    let (user, tokens) = user_and_token(stack, Grant::Password).await;
    let other = stack.create_user("other").await.expect("second user");
    let forge = stack.forge();
    let hostile = [
        Hostile::Expired,
        Hostile::BadSignature,
        Hostile::WrongAudience,
    ]
    .into_iter()
    .map(|kind| {
        (
            format!("{kind:?}"),
            forge.hostile(kind, &user.mail, &user.uid),
        )
    })
    .collect();
    SaslCredentials {
        account: user.account(),
        token: tokens.access_token,
        other: other.account(),
        hostile,
        discovery_url: stack.endpoints().discovery_url.clone(),
        failure_limit: Some(FAILURE_LIMIT),
    }
}

async fn run<E: SaslEndpoint>(stack: &Stack, endpoint: E) {
    let creds = credentials(stack).await;
    matrix(&endpoint, &creds).await.assert_passed();
}

#[rstest]
#[tokio::test]
async fn imap(#[values(Idp::LemonLdap, Idp::Keycloak)] idp: Idp) {
    let stack = stack_with(idp).await;
    let ep = stack.endpoints();
    let endpoint = ImapEndpoint {
        tls: ep.imaps,
        cleartext: Some(ep.imap),
        ca_pem: ep.ca_pem.clone(),
    };
    run(&stack, endpoint).await;
}

#[rstest]
#[tokio::test]
async fn smtp(#[values(Idp::LemonLdap, Idp::Keycloak)] idp: Idp) {
    let stack = stack_with(idp).await;
    let ep = stack.endpoints();
    let endpoint = SmtpEndpoint {
        tls: ep.submissions,
        cleartext: Some(ep.submission),
        ca_pem: ep.ca_pem.clone(),
    };
    run(&stack, endpoint).await;
}
