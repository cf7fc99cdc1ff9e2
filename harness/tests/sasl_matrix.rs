//! The same SASL matrix (suites::sasl) on every protocol, with tokens from both IdPs.

mod common;

use common::{Grant, stack_with, user_and_token};
use mail_oidc_harness::stack::{Idp, Stack};
use mail_oidc_harness::suites::sasl::{
    ImapEndpoint, Pop3Endpoint, SaslCredentials, SaslEndpoint, SieveEndpoint, SmtpEndpoint, matrix,
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

#[rstest]
#[tokio::test]
async fn pop3(#[values(Idp::LemonLdap, Idp::Keycloak)] idp: Idp) {
    let stack = stack_with(idp).await;
    let ep = stack.endpoints();
    let endpoint = Pop3Endpoint {
        tls: ep.pop3s,
        cleartext: Some(ep.pop3),
        ca_pem: ep.ca_pem.clone(),
    };
    run(&stack, endpoint).await;
}

#[rstest]
#[tokio::test]
async fn managesieve(#[values(Idp::LemonLdap, Idp::Keycloak)] idp: Idp) {
    let stack = stack_with(idp).await;
    let ep = stack.endpoints();
    let endpoint = SieveEndpoint {
        addr: ep.sieve,
        ca_pem: ep.ca_pem.clone(),
    };
    run(&stack, endpoint).await;
}

/// SCRAM-SHA-256(-PLUS) on every protocol, against a server whose directory holds SCRAM secrets
/// (a static directory: LDAP has none), over real TLS 1.3 with `tls-exporter` binding.
#[tokio::test]
async fn scram_on_every_protocol() {
    use mail_oidc_harness::suites::Account;
    use mail_oidc_harness::suites::sasl::scram_matrix;
    use mail_oidc_server::auth::directory::ScramSecret;
    use mail_oidc_server::config::{DirectorySection, StaticSection};

    let stack = stack_with(Idp::LemonLdap).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let account = Account {
        mail: "scram@example.com".into(),
        password: "correct horse battery staple".into(),
    };
    let users = dir.path().join("users.toml");
    std::fs::write(
        &users,
        format!(
            "[[user]]\nname = \"{}\"\nscram_sha256 = \"{}\"\n",
            account.mail,
            ScramSecret::generate(&account.password, ScramSecret::MIN_ITERATIONS)
        ),
    )
    .expect("users file");
    let mechanisms: Vec<String> = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"]
        .iter()
        .map(|m| m.to_string())
        .collect();
    let server = stack
        .start_server(|config| {
            config.directory = DirectorySection::Static(StaticSection { path: users });
            config.imap.auth.mechanisms = Some(mechanisms.clone());
            config.submission.auth.mechanisms = Some(mechanisms.clone());
            config.pop3.auth.mechanisms = Some(mechanisms.clone());
            config.sieve.auth.mechanisms = Some(mechanisms);
        })
        .await
        .expect("server with SCRAM secrets");
    let ca = &stack.endpoints().ca_pem;
    let imap = ImapEndpoint {
        tls: server.addrs.imap_tls.expect("imaps"),
        cleartext: server.addrs.imap,
        ca_pem: ca.clone(),
    };
    scram_matrix(&imap, &account).await.assert_passed();
    let smtp = SmtpEndpoint {
        tls: server.addrs.submission_tls.expect("submissions"),
        cleartext: server.addrs.submission,
        ca_pem: ca.clone(),
    };
    scram_matrix(&smtp, &account).await.assert_passed();
    let pop3 = Pop3Endpoint {
        tls: server.addrs.pop3_tls.expect("pop3s"),
        cleartext: server.addrs.pop3,
        ca_pem: ca.clone(),
    };
    scram_matrix(&pop3, &account).await.assert_passed();
    let sieve = SieveEndpoint {
        addr: server.addrs.sieve.expect("sieve"),
        ca_pem: ca.clone(),
    };
    scram_matrix(&sieve, &account).await.assert_passed();
}
