//! A real JMAP client, Python's jmapc (installed by scripts/install-deps.sh), against the demo's
//! HTTPS gateway: it only fetches `https://<host>/.well-known/jmap`, so this is what an operator's
//! users would run. After an administrator revokes the user, the same client is refused.

mod common;

use std::process::Command;

use common::{Grant, stack, user_and_token};
use mail_oidc_harness::suites::revocation::admin_revoke;

/// Lists the account's mailboxes with jmapc; prints them one per line, or fails.
const SCRIPT: &str = r#"
import os, sys
from jmapc import Client
from jmapc.methods import MailboxGet
client = Client.create_with_api_token(host=os.environ["GATEWAY_HOST"], api_token=os.environ["TOKEN"])
result = client.request(MailboxGet(ids=None))
for mailbox in sorted(m.name for m in result.data):
    print(mailbox)
"#;

fn jmapc(host: &str, token: &str, ca: &std::path::Path) -> std::process::Output {
    Command::new("python3")
        .arg("-c")
        .arg(SCRIPT)
        .env("GATEWAY_HOST", host)
        .env("TOKEN", token)
        .env("REQUESTS_CA_BUNDLE", ca)
        .output()
        .expect("python3 runs (scripts/install-deps.sh installs jmapc)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jmapc_lists_mailboxes_through_the_https_gateway_until_revoked() {
    let stack = stack().await;
    let (user, tokens) = user_and_token(&stack, Grant::AuthCode).await;
    let ep = stack.endpoints();
    let host = ep
        .gateway
        .strip_prefix("https://")
        .expect("the gateway serves HTTPS");
    let out = jmapc(host, &tokens.access_token, &ep.ca_cert);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "jmapc failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        ["Drafts", "INBOX", "Sent"]
    );

    let (status, body) = admin_revoke(
        &stack.admin_revoke_url(),
        &stack.admin_account(),
        &serde_json::json!({"user": user.mail}),
    )
    .await
    .expect("admin revoke");
    assert_eq!(status, 200, "{body}");
    let out = jmapc(host, &tokens.access_token, &ep.ca_cert);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a revoked token still works for jmapc"
    );
    assert!(stderr.contains("401"), "jmapc should see the 401: {stderr}");
}
