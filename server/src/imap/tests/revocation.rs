//! Live IMAP sessions ended from outside: a real [`RevocationService`] over the memory store,
//! bearer logins through OAUTHBEARER (the test validator behind the revocation check, as the
//! server wires it), password logins through LOGIN.

use std::sync::Arc;

use super::{Client, DEADLINE, b64, deliver};
use crate::auth::oidc::ValidatedToken;
use crate::auth::revocation::{Revocation, RevocationService};
use crate::config::ImapSection;
use crate::imap::{ImapContext, connection};
use crate::store::MemoryStore;
use crate::testkit::revocation::{RevocableBackends, now};
use crate::testkit::{ISSUER, TestValidator};

const LOGGED_OUT: &str =
    "* BYE [EXPIRED] Session revoked: the session was logged out at the identity provider.\r\n";

struct Setup {
    ctx: Arc<ImapContext>,
    service: Arc<RevocationService>,
    tokens: Arc<TestValidator>,
}

/// OAUTHBEARER and PLAIN over plaintext (`allow_plaintext_auth`), tokens from `tokens`.
fn setup(end_at_token_expiry: bool) -> Setup {
    let kit = RevocableBackends::new(end_at_token_expiry);
    let registry = kit.registry(&["PLAIN", "OAUTHBEARER"]);
    let RevocableBackends {
        service,
        tokens,
        backends,
    } = kit;
    let ctx = Arc::new(ImapContext {
        hostname: "mail.test".into(),
        config: ImapSection {
            allow_plaintext_auth: true,
            ..ImapSection::default()
        },
        registry,
        backends,
        store: Arc::new(MemoryStore::new()),
        tls: None,
        offload: crate::offload::Offload::default(),
        inflight: crate::inflight::InFlight::new(1 << 30),
    });
    Setup {
        ctx,
        service,
        tokens,
    }
}

/// alice's token in IdP session `sid`, expiring at `exp`.
fn alice(sid: &str, exp: u64) -> ValidatedToken {
    ValidatedToken {
        username: "alice@example.com".into(),
        issuer: ISSUER.into(),
        subject: "sub-alice".into(),
        sid: Some(sid.into()),
        expires_at: exp,
        issued_at: Some(now() - 10),
    }
}

fn oauthbearer(token: &str) -> String {
    b64(format!("n,,\x01auth=Bearer {token}\x01\x01").as_bytes())
}

fn logout(sid: &str) -> Revocation {
    Revocation::Session {
        issuer: ISSUER.into(),
        sid: sid.into(),
    }
}

impl Setup {
    /// A client logged in with OAUTHBEARER as alice in IdP session `sid`.
    async fn bearer_client(&self, sid: &str) -> Client {
        let token = format!("token-{sid}");
        self.tokens.set(&token, Ok(alice(sid, now() + 3600)));
        self.bearer_client_with(&token).await
    }

    async fn bearer_client_with(&self, token: &str) -> Client {
        let (mut c, _) = Client::connect(&self.ctx).await;
        let reply = c
            .cmd(
                "a",
                &format!("AUTHENTICATE OAUTHBEARER {}", oauthbearer(token)),
            )
            .await;
        assert!(reply.starts_with("a OK [CAPABILITY "), "{reply}");
        c
    }

    async fn revoke(&self, r: Revocation) -> usize {
        self.service.revoke(r).await.expect("revoke")
    }
}

#[tokio::test]
async fn idle_session_gets_bye_expired_on_logout_and_closes() {
    let s = setup(false);
    let mut c = s.bearer_client("s-idle").await;
    c.cmd("b", "SELECT INBOX").await;
    c.send(b"c IDLE\r\n").await;
    assert_eq!(c.line().await, "+ idling\r\n");
    assert_eq!(s.revoke(logout("s-idle")).await, 1);
    assert_eq!(c.closed().await, LOGGED_OUT);
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !s.service.registry().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "never deregistered");
        tokio::task::yield_now().await;
    }
    // The logged-out token opens nothing new.
    let (mut c, _) = Client::connect(&s.ctx).await;
    c.send(
        format!(
            "d AUTHENTICATE OAUTHBEARER {}\r\n",
            oauthbearer("token-s-idle")
        )
        .as_bytes(),
    )
    .await;
    assert!(c.line().await.starts_with("+ "), "RFC 7628 error challenge");
    c.send(b"AQ==\r\n").await;
    assert_eq!(
        c.line().await,
        "d NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
    );
}

#[tokio::test]
async fn selected_session_ends_and_another_sid_is_untouched() {
    let s = setup(false);
    let mut gone = s.bearer_client("s-gone").await;
    let mut kept = s.bearer_client("s-kept").await;
    let mut password = {
        let (mut c, _) = Client::connect(&s.ctx).await;
        c.login().await;
        c
    };
    for c in [&mut gone, &mut kept, &mut password] {
        assert!(
            c.cmd("b", "SELECT INBOX")
                .await
                .ends_with("b OK [READ-WRITE] Select completed.\r\n")
        );
    }
    assert_eq!(s.revoke(logout("s-gone")).await, 1);
    assert_eq!(gone.closed().await, LOGGED_OUT);
    assert_eq!(kept.cmd("c", "NOOP").await, "c OK NOOP completed.\r\n");
    assert_eq!(password.cmd("c", "NOOP").await, "c OK NOOP completed.\r\n");
    assert_eq!(s.service.registry().sessions().len(), 2);
}

#[tokio::test]
async fn password_session_ends_on_a_user_revocation() {
    let s = setup(false);
    let (mut c, _) = Client::connect(&s.ctx).await;
    c.login().await;
    let mut bearer = s.bearer_client("s-alice").await;
    assert_eq!(
        s.revoke(Revocation::User {
            user: "Alice@Example.com".into(),
            before: now(),
        })
        .await,
        2
    );
    let bye = "* BYE [EXPIRED] Session revoked: the user's sessions were revoked by an administrator.\r\n";
    assert_eq!(c.closed().await, bye);
    assert_eq!(bearer.closed().await, bye);
    assert!(s.service.registry().sessions().is_empty());
}

#[tokio::test]
async fn token_expiry_ends_the_session_when_configured() {
    let s = setup(true);
    // Valid at login, expired a moment later.
    s.tokens.set("short", Ok(alice("s-short", now() + 1)));
    let mut c = s.bearer_client_with("short").await;
    c.send(b"b IDLE\r\n").await;
    assert_eq!(c.line().await, "+ idling\r\n");
    assert_eq!(
        c.closed().await,
        "* BYE [EXPIRED] Session ended: the access token has expired.\r\n"
    );
}

#[tokio::test]
async fn a_long_fetch_is_cut_between_responses() {
    let s = setup(false);
    let body = format!("Subject: big\n\n{}\n", "x".repeat(4000));
    for _ in 0..50 {
        deliver(&s.ctx, &body);
    }
    s.tokens.set("fetcher", Ok(alice("s-fetch", now() + 3600)));
    // A small pipe: the server blocks writing while the client reads slowly.
    let (ours, theirs) = tokio::io::duplex(1024);
    tokio::spawn(connection::run(
        Box::new(theirs),
        None,
        false,
        None,
        s.ctx.clone(),
    ));
    let (mut c, _) = Client::over(Box::new(ours)).await;
    let reply = c
        .cmd(
            "a",
            &format!("AUTHENTICATE OAUTHBEARER {}", oauthbearer("fetcher")),
        )
        .await;
    assert!(reply.starts_with("a OK "), "{reply}");
    c.cmd("b", "SELECT INBOX").await;
    c.send(b"f FETCH 1:* BODY[]\r\n").await;
    let first = c.line().await;
    assert!(first.starts_with("* 1 FETCH (BODY[] {"), "{first}");
    assert_eq!(s.revoke(logout("s-fetch")).await, 1);
    let mut fetched = 1;
    loop {
        let line = c.line().await;
        if line == LOGGED_OUT {
            break;
        }
        fetched += 1;
        assert!(
            line.starts_with(&format!("* {fetched} FETCH (BODY[] {{")) && line.ends_with(")\r\n"),
            "only whole FETCH responses before the BYE: {line:.80}"
        );
    }
    assert!(fetched < 50, "the revocation cut the output short");
    assert_eq!(
        c.closed().await,
        "",
        "nothing after the BYE, no tagged reply"
    );
}

#[tokio::test]
async fn abort_after_the_error_challenge_counts_as_a_failure() {
    let s = setup(false);
    let (mut c, _) = Client::connect(&s.ctx).await;
    // Plain aborts (no credentials judged yet) never count.
    for tag in ["p1", "p2", "p3", "p4"] {
        c.send(format!("{tag} AUTHENTICATE OAUTHBEARER\r\n").as_bytes())
            .await;
        assert_eq!(c.line().await, "+ \r\n");
        c.send(b"*\r\n").await;
        assert_eq!(
            c.line().await,
            format!("{tag} BAD Authentication aborted by client.\r\n")
        );
    }
    assert_eq!(c.cmd("n", "NOOP").await, "n OK NOOP completed.\r\n");
    // Aborting the RFC 7628 error challenge does: the third one ends the session.
    for tag in ["r1", "r2", "r3"] {
        c.send(
            format!(
                "{tag} AUTHENTICATE OAUTHBEARER {}\r\n",
                oauthbearer("forged")
            )
            .as_bytes(),
        )
        .await;
        let challenge = c.line().await;
        let json = challenge
            .strip_prefix("+ ")
            .and_then(|b| {
                base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b.trim_end())
                    .ok()
            })
            .expect("a base64 challenge");
        assert!(
            String::from_utf8_lossy(&json).contains("\"status\":\"invalid_token\""),
            "{challenge}"
        );
        c.send(b"*\r\n").await;
        let reply = format!("{tag} BAD Authentication aborted by client.\r\n");
        if tag == "r3" {
            assert_eq!(
                c.closed().await,
                format!("{reply}* BYE Too many invalid authentication attempts.\r\n")
            );
        } else {
            assert_eq!(c.line().await, reply);
        }
    }
}
