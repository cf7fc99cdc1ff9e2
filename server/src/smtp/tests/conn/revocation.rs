//! Live submission sessions ended from outside: implicit TLS, AUTH OAUTHBEARER through the
//! revocation-checking validator, a real [`RevocationService`] over the memory store.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use tokio::task::JoinHandle;

use super::{BASE64, Client};
use crate::auth::oidc::ValidatedToken;
use crate::auth::revocation::{Revocation, RevocationService};
use crate::config::{SmtpSection, SubmissionSection, TlsSection};
use crate::smtp::{ConnectionOptions, SmtpContext, SmtpListenerKind, serve_with};
use crate::store::{MailStore, MemoryStore};
use crate::testkit::revocation::{RevocableBackends, now};
use crate::testkit::tls::{CERT, KEY};
use crate::testkit::{ISSUER, TestValidator};

const LOGGED_OUT: &str =
    "421 4.7.0 Session revoked: the session was logged out at the identity provider.";

struct Server {
    addr: SocketAddr,
    store: Arc<dyn MailStore>,
    service: Arc<RevocationService>,
    tokens: Arc<TestValidator>,
    task: JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&cert, CERT).expect("cert");
        std::fs::write(&key, KEY).expect("key");
        let acceptor = crate::tls::acceptor(&TlsSection { cert, key }).expect("acceptor");
        let kit = RevocableBackends::new(false);
        let registry = kit.registry(&["PLAIN", "LOGIN", "OAUTHBEARER"]);
        let RevocableBackends {
            service,
            tokens,
            backends,
        } = kit;
        let store: Arc<dyn MailStore> = Arc::new(MemoryStore::new());
        let ctx = Arc::new(SmtpContext {
            hostname: "localhost".into(),
            submission: SubmissionSection::default(),
            inbound: SmtpSection::default(),
            registry,
            backends,
            store: store.clone(),
            filter: Arc::new(crate::sieve::SieveFilter::keep_all()),
            tls: Some(acceptor),
            inflight: crate::inflight::InFlight::new(1 << 30),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(serve_with(
            listener,
            SmtpListenerKind::SubmissionImplicitTls,
            ctx,
            ConnectionOptions::default(),
        ));
        Self {
            addr,
            store,
            service,
            tokens,
            task,
            _dir: dir,
        }
    }

    /// A client authenticated with OAUTHBEARER as alice in IdP session `sid`.
    async fn bearer_client(&self, sid: &str) -> Client {
        let token = format!("token-{sid}");
        self.tokens.set(
            &token,
            Ok(ValidatedToken {
                username: "alice@example.com".into(),
                issuer: ISSUER.into(),
                subject: "sub-alice".into(),
                sid: Some(sid.into()),
                expires_at: now() + 3600,
                issued_at: Some(now() - 10),
            }),
        );
        let mut c = Client::connect_tls(self.addr).await;
        assert_eq!(c.reply().await, "220 localhost ESMTP mail-oidc");
        let ehlo = c.command("EHLO client.test").await;
        assert!(ehlo.contains("OAUTHBEARER"), "{ehlo}");
        let ir = BASE64.encode(format!("n,,\x01auth=Bearer {token}\x01\x01"));
        assert_eq!(
            c.command(&format!("AUTH OAUTHBEARER {ir}")).await,
            "235 2.7.0 Authentication successful"
        );
        c
    }

    fn inbox(&self, user: &str) -> usize {
        self.store.messages(user, "INBOX").map_or(0, |m| m.len())
    }

    async fn logout(&self, sid: &str) -> usize {
        self.service
            .revoke(Revocation::Session {
                issuer: ISSUER.into(),
                sid: sid.into(),
            })
            .await
            .expect("revoke")
    }
}

#[tokio::test]
async fn revocation_in_the_middle_of_data_is_421_and_the_message_is_not_accepted() {
    let server = Server::start().await;
    let mut c = server.bearer_client("s-data").await;
    let mut other = server.bearer_client("s-other").await;
    assert_eq!(
        c.command("MAIL FROM:<alice@example.com>").await,
        "250 2.1.0 Ok"
    );
    assert_eq!(c.command("RCPT TO:<bob@example.com>").await, "250 2.1.5 Ok");
    assert_eq!(
        c.command("DATA").await,
        "354 End data with <CR><LF>.<CR><LF>"
    );
    c.write(b"From: alice@example.com\r\nTo: bob@example.com\r\nSubject: half\r\n\r\nthe first half\r\n")
        .await;
    // A round trip elsewhere gives the server a chance to read the half first (the result must
    // be the same if it has not).
    assert_eq!(other.command("NOOP").await, "250 2.0.0 Ok");
    assert_eq!(server.logout("s-data").await, 1);
    assert_eq!(c.reply().await, LOGGED_OUT);
    assert!(c.rest().await.is_empty(), "closed after the 421");
    assert_eq!(
        server.inbox("bob@example.com"),
        0,
        "the message was not accepted"
    );
    // The other IdP session still sends mail.
    other.command("MAIL FROM:<alice@example.com>").await;
    other.command("RCPT TO:<bob@example.com>").await;
    other.command("DATA").await;
    other.write(b"Subject: whole\r\n\r\nhello\r\n.\r\n").await;
    assert!(other.reply().await.starts_with("250 2.0.0 Ok: queued as "));
    assert_eq!(server.inbox("bob@example.com"), 1);
}

#[tokio::test]
async fn idle_authenticated_session_gets_421_and_is_closed() {
    let server = Server::start().await;
    let mut c = server.bearer_client("s-idle").await;
    assert_eq!(server.logout("s-idle").await, 1);
    assert_eq!(c.reply().await, LOGGED_OUT);
    assert!(c.rest().await.is_empty());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !server.service.registry().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "never deregistered");
        tokio::task::yield_now().await;
    }
    // The logged-out token cannot authenticate again.
    let mut c = Client::connect_tls(server.addr).await;
    c.reply().await;
    c.command("EHLO client.test").await;
    let ir = BASE64.encode("n,,\x01auth=Bearer token-s-idle\x01\x01");
    let challenge = c.command(&format!("AUTH OAUTHBEARER {ir}")).await;
    assert!(challenge.starts_with("334 "), "{challenge}");
    assert_eq!(
        c.command("AQ==").await,
        "535 5.7.8 Authentication credentials invalid"
    );
}

#[tokio::test]
async fn password_session_ends_on_a_user_revocation() {
    let server = Server::start().await;
    let mut c = Client::connect_tls(server.addr).await;
    c.reply().await;
    c.command("EHLO client.test").await;
    let plain = BASE64.encode("\0bob\0bobpw");
    assert_eq!(
        c.command(&format!("AUTH PLAIN {plain}")).await,
        "235 2.7.0 Authentication successful"
    );
    let ended = server
        .service
        .revoke(Revocation::User {
            user: "bob@example.com".into(),
            before: now(),
        })
        .await
        .expect("revoke");
    assert_eq!(ended, 1);
    assert_eq!(
        c.reply().await,
        "421 4.7.0 Session revoked: the user's sessions were revoked by an administrator."
    );
    assert!(c.rest().await.is_empty());
}
