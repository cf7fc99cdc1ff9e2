//! Connection-level tests: the real connection loop over an in-memory pipe (STLS included) or a
//! loopback listener (implicit TLS), the real PLAIN/OAUTHBEARER mechanisms, a real
//! [`RevocationService`] over the memory store ending live sessions.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use super::{ALICE, DOTS, LF_ONLY, NO_FINAL_CRLF, b64, inbox, oauthbearer, store_with};
use crate::auth::oidc::ValidatedToken;
use crate::auth::revocation::{Revocation, RevocationService};
use crate::config::Pop3Section;
use crate::pop3::{
    ConnectionOptions, Io, MaildropLocks, Pop3Context, Pop3ListenerKind, run_connection, serve_with,
};
use crate::store::MemoryStore;
use crate::testkit::revocation::{RevocableBackends, now};
use crate::testkit::{ISSUER, TestValidator, tls};

/// Deadline for any single expected reply; tests never sleep, they wait at most this long.
const DEADLINE: Duration = Duration::from_secs(10);

const LOGGED_OUT: &str = "-ERR [SYS/PERM] Session revoked: the session was logged out at the \
                          identity provider.\r\n";

struct Setup {
    ctx: Arc<Pop3Context>,
    store: Arc<MemoryStore>,
    service: Arc<RevocationService>,
    tokens: Arc<TestValidator>,
    options: ConnectionOptions,
}

/// PLAIN and OAUTHBEARER, TLS from the test certificate, tokens from `tokens` behind the
/// revocation check (as the server wires it), alice's INBOX holding three messages.
fn setup() -> Setup {
    let kit = RevocableBackends::new(false);
    let registry = kit.registry(&["PLAIN", "OAUTHBEARER"]);
    let RevocableBackends {
        service,
        tokens,
        backends,
    } = kit;
    let store = store_with(&[DOTS, NO_FINAL_CRLF, LF_ONLY]);
    let ctx = Arc::new(Pop3Context {
        hostname: "localhost".into(),
        config: Pop3Section::default(),
        registry,
        backends,
        store: store.clone(),
        tls: Some(tls::acceptor()),
        locks: MaildropLocks::new(),
    });
    Setup {
        ctx,
        store,
        service,
        tokens,
        options: ConnectionOptions::from_config(&Pop3Section::default()),
    }
}

struct Client {
    io: BufReader<Box<dyn Io>>,
}

impl Client {
    /// A connection over an in-memory pipe (cleartext; STLS offered); reads the greeting.
    async fn connect(s: &Setup) -> Client {
        let (ours, theirs) = tokio::io::duplex(1 << 20);
        tokio::spawn(run_connection(
            Box::new(theirs),
            None,
            false,
            None,
            s.ctx.clone(),
            s.options,
        ));
        let mut c = Client {
            io: BufReader::new(Box::new(ours)),
        };
        assert_eq!(c.line().await, "+OK localhost mail-oidc ready.\r\n");
        c
    }

    /// The client side of a TLS handshake on this connection.
    async fn start_tls(self) -> Client {
        assert!(self.io.buffer().is_empty(), "bytes after the STLS reply");
        let stream = tls::connector()
            .connect(tls::server_name(), self.io.into_inner())
            .await
            .expect("TLS handshake");
        Client {
            io: BufReader::new(Box::new(stream)),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        let io = self.io.get_mut();
        io.write_all(bytes).await.expect("write");
        io.flush().await.expect("flush");
    }

    /// One reply line with its CRLF; panics at EOF or after the deadline.
    async fn line(&mut self) -> String {
        let mut line = String::new();
        let n = tokio::time::timeout(DEADLINE, self.io.read_line(&mut line))
            .await
            .expect("reply within the deadline")
            .expect("read");
        assert!(n > 0, "connection closed");
        line
    }

    /// A multi-line reply, status line to `.` line included.
    async fn multi(&mut self) -> String {
        let mut all = self.line().await;
        if !all.starts_with("+OK") {
            return all;
        }
        loop {
            let line = self.line().await;
            all.push_str(&line);
            if line == ".\r\n" {
                return all;
            }
        }
    }

    async fn cmd(&mut self, command: &str) -> String {
        self.send(format!("{command}\r\n").as_bytes()).await;
        self.line().await
    }

    /// Waits for the server to close (EOF), returning what came before.
    async fn closed(&mut self) -> String {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(DEADLINE, self.io.read_to_end(&mut rest)).await;
        // A TLS peer may close without close_notify; either way the stream has ended.
        let _ = read.expect("close within the deadline");
        String::from_utf8_lossy(&rest).into_owned()
    }
}

impl Setup {
    /// A client logged in with OAUTHBEARER as alice in IdP session `sid` (plaintext allowed
    /// for tokens only under TLS, so STLS first).
    async fn bearer_client(&self, sid: &str) -> Client {
        let token = format!("token-{sid}");
        self.tokens.set(
            &token,
            Ok(ValidatedToken {
                username: ALICE.into(),
                issuer: ISSUER.into(),
                subject: "sub-alice".into(),
                sid: Some(sid.into()),
                expires_at: now() + 3600,
                issued_at: Some(now() - 10),
            }),
        );
        let mut c = Client::connect(self).await;
        assert_eq!(c.cmd("STLS").await, "+OK Begin TLS negotiation.\r\n");
        let mut c = c.start_tls().await;
        assert_eq!(
            c.cmd(&format!("AUTH OAUTHBEARER {}", oauthbearer(ALICE, &token)))
                .await,
            "+OK Logged in.\r\n"
        );
        c
    }

    async fn revoke(&self, revocation: Revocation) -> usize {
        self.service.revoke(revocation).await.expect("revoke")
    }

    /// Polls (never sleeps) until alice has no live session and no maildrop lock.
    async fn wait_until_released(&self) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        let live = || {
            self.service
                .registry()
                .sessions()
                .iter()
                .any(|(_, session)| session.user == ALICE)
        };
        while live() || self.ctx.locks.is_locked(ALICE) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "session never released"
            );
            tokio::task::yield_now().await;
        }
    }
}

#[tokio::test]
async fn stls_discards_pipelined_input_and_changes_the_capabilities() {
    let s = setup();
    let mut c = Client::connect(&s).await;
    c.send(b"CAPA\r\n").await;
    let caps = c.multi().await;
    assert!(caps.contains("\r\nSTLS\r\n"), "{caps}");
    assert!(!caps.contains("USER"), "{caps}");
    assert!(
        !caps.contains("SASL"),
        "no mechanism offered in clear: {caps}"
    );
    c.send(b"STLS\r\nUSER alice\r\n").await;
    assert_eq!(c.line().await, "+OK Begin TLS negotiation.\r\n");
    let mut c = c.start_tls().await;
    c.send(b"CAPA\r\n").await;
    let caps = c.multi().await;
    assert_eq!(
        caps,
        "+OK Capability list follows.\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n\
         PIPELINING\r\nUSER\r\nSASL PLAIN OAUTHBEARER\r\nIMPLEMENTATION mail-oidc\r\n.\r\n",
        "the pipelined USER was not answered"
    );
    assert_eq!(
        c.cmd("PASS alicepw").await,
        "-ERR No username given.\r\n",
        "the USER sent before TLS was dropped"
    );
    assert_eq!(
        c.cmd(&format!("AUTH PLAIN {}", b64(b"\0alice\0alicepw")))
            .await,
        "+OK Logged in.\r\n"
    );
    c.send(b"RETR 1\r\n").await;
    assert_eq!(
        c.multi().await,
        "+OK 74 octets\r\nFrom: bob@example.com\r\nSubject: dots\r\n\r\n..leading dot\r\n\
         ...two dots\r\n..\r\nend\r\n.\r\n"
    );
    assert_eq!(c.cmd("QUIT").await, "+OK Logging out.\r\n");
    assert_eq!(c.closed().await, "");
}

#[tokio::test]
async fn implicit_tls_listener_deletes_at_quit() {
    let s = setup();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(serve_with(
        listener,
        Pop3ListenerKind::ImplicitTls,
        s.ctx.clone(),
        s.options,
    ));
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let stream = tls::connector()
        .connect(tls::server_name(), tcp)
        .await
        .expect("TLS handshake");
    let mut c = Client {
        io: BufReader::new(Box::new(stream)),
    };
    assert_eq!(c.line().await, "+OK localhost mail-oidc ready.\r\n");
    c.send(b"CAPA\r\n").await;
    let caps = c.multi().await;
    assert!(!caps.contains("STLS"), "already TLS: {caps}");
    assert!(caps.contains("\r\nUSER\r\n"), "{caps}");
    assert_eq!(c.cmd("USER alice").await, "+OK Password required.\r\n");
    assert_eq!(c.cmd("PASS alicepw").await, "+OK Logged in.\r\n");
    assert_eq!(c.cmd("STAT").await, "+OK 3 146\r\n");
    assert_eq!(c.cmd("DELE 2").await, "+OK Marked to be deleted.\r\n");
    assert_eq!(
        inbox(s.store.as_ref(), ALICE).len(),
        3,
        "nothing removed before QUIT"
    );
    assert_eq!(
        c.cmd("QUIT").await,
        "+OK Logging out, 1 message(s) deleted.\r\n"
    );
    c.closed().await;
    assert_eq!(
        inbox(s.store.as_ref(), ALICE),
        [DOTS.to_vec(), LF_ONLY.to_vec()]
    );
    server.abort();
}

#[tokio::test]
async fn in_use_until_the_first_session_disconnects_without_quit() {
    let s = setup();
    let mut first = s.bearer_client("s-first").await;
    assert_eq!(first.cmd("DELE 1").await, "+OK Marked to be deleted.\r\n");
    let mut second = Client::connect(&s).await;
    second.cmd("STLS").await;
    let mut second = second.start_tls().await;
    let plain = format!("AUTH PLAIN {}", b64(b"\0alice\0alicepw"));
    assert_eq!(
        second.cmd(&plain).await,
        "-ERR [IN-USE] Mailbox is locked by another POP3 session.\r\n"
    );
    // The first client goes away without QUIT: no UPDATE, the lock is released.
    drop(first);
    s.wait_until_released().await;
    assert_eq!(second.cmd(&plain).await, "+OK Logged in.\r\n");
    assert_eq!(
        second.cmd("STAT").await,
        "+OK 3 146\r\n",
        "the first session's DELE was not applied"
    );
}

#[tokio::test]
async fn idp_logout_ends_the_session_with_err_and_nothing_is_deleted() {
    let s = setup();
    let mut c = s.bearer_client("s-logout").await;
    let mut other = s.bearer_client_for_bob("s-bob").await;
    assert_eq!(c.cmd("DELE 1").await, "+OK Marked to be deleted.\r\n");
    assert_eq!(
        s.revoke(Revocation::Session {
            issuer: ISSUER.into(),
            sid: "s-logout".into(),
        })
        .await,
        1
    );
    assert_eq!(c.line().await, LOGGED_OUT);
    assert_eq!(c.closed().await, "", "closed after the -ERR");
    s.wait_until_released().await;
    assert_eq!(inbox(s.store.as_ref(), ALICE).len(), 3, "no UPDATE");
    assert_eq!(
        other.cmd("NOOP").await,
        "+OK\r\n",
        "another session lives on"
    );
    // The logged-out token opens nothing any more: error challenge, then `-ERR [AUTH]`.
    let mut c = Client::connect(&s).await;
    c.cmd("STLS").await;
    let mut c = c.start_tls().await;
    let challenge = c
        .cmd(&format!(
            "AUTH OAUTHBEARER {}",
            oauthbearer(ALICE, "token-s-logout")
        ))
        .await;
    assert!(challenge.starts_with("+ "), "{challenge}");
    assert_eq!(
        c.cmd("AQ==").await,
        "-ERR [AUTH] Authentication failed.\r\n"
    );
}

#[tokio::test]
async fn a_user_revocation_ends_a_password_session() {
    let s = setup();
    let mut c = Client::connect(&s).await;
    c.cmd("STLS").await;
    let mut c = c.start_tls().await;
    c.cmd("USER alice").await;
    assert_eq!(c.cmd("PASS alicepw").await, "+OK Logged in.\r\n");
    assert_eq!(
        s.revoke(Revocation::User {
            user: ALICE.into(),
            before: now(),
        })
        .await,
        1
    );
    assert_eq!(
        c.line().await,
        "-ERR [SYS/PERM] Session revoked: the user's sessions were revoked by an \
         administrator.\r\n"
    );
    c.closed().await;
    s.wait_until_released().await;
}

#[tokio::test]
async fn idle_sessions_time_out_without_update() {
    let mut s = setup();
    s.options.preauth_timeout = Duration::from_millis(200);
    let mut c = Client::connect(&s).await;
    assert_eq!(c.line().await, "-ERR Disconnected for inactivity.\r\n");
    c.closed().await;

    // Logged in: the idle timer, not the pre-login one (long enough for the handshake).
    s.options.preauth_timeout = DEADLINE;
    s.options.idle_timeout = Duration::from_millis(200);
    let mut c = Client::connect(&s).await;
    c.cmd("STLS").await;
    let mut c = c.start_tls().await;
    // Pipelined, so the idle timer cannot run out between the commands.
    c.send(b"USER alice\r\nPASS alicepw\r\nDELE 1\r\n").await;
    assert_eq!(c.line().await, "+OK Password required.\r\n");
    assert_eq!(c.line().await, "+OK Logged in.\r\n");
    assert_eq!(c.line().await, "+OK Marked to be deleted.\r\n");
    assert_eq!(c.line().await, "-ERR Disconnected for inactivity.\r\n");
    c.closed().await;
    s.wait_until_released().await;
    assert_eq!(inbox(s.store.as_ref(), ALICE).len(), 3);
}

impl Setup {
    /// Like [`Setup::bearer_client`] for bob (whose maildrop is empty).
    async fn bearer_client_for_bob(&self, sid: &str) -> Client {
        let token = format!("token-{sid}");
        self.tokens.set(
            &token,
            Ok(ValidatedToken {
                username: "bob@example.com".into(),
                issuer: ISSUER.into(),
                subject: "sub-bob".into(),
                sid: Some(sid.into()),
                expires_at: now() + 3600,
                issued_at: Some(now() - 10),
            }),
        );
        let mut c = Client::connect(self).await;
        c.cmd("STLS").await;
        let mut c = c.start_tls().await;
        assert_eq!(
            c.cmd(&format!(
                "AUTH OAUTHBEARER {}",
                oauthbearer("bob@example.com", &token)
            ))
            .await,
            "+OK Logged in.\r\n"
        );
        c
    }
}
