//! Connection-level tests: a real session over an in-memory pipe, scripted like RFC transcripts.

mod condstore;
mod manage;
mod quota;
mod revocation;
mod volume;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{ImapContext, ImapListenerKind, Io, connection};
use crate::auth::sasl::{
    SaslExchange, SaslFailure, SaslIdentity, SaslMechanism, SaslRegistry, SaslStep, SessionContext,
};
use crate::config::ImapSection;
use crate::store::MemoryStore;
use crate::testkit::{TestDirectory, backends};

/// Deadline for any single expected reply; tests never sleep, they wait at most this long.
const DEADLINE: Duration = Duration::from_secs(10);

/// XTEST: answers `+ d2hvPw==` ("who?"), then the client's word decides the outcome.
struct XTest;

struct XTestExchange {
    asked: bool,
}

impl SaslMechanism for XTest {
    fn name(&self) -> &str {
        "XTEST"
    }
    fn available(&self, _ctx: &SessionContext) -> bool {
        true
    }
    fn start(&self, _initial: Option<&[u8]>, _ctx: &SessionContext) -> Box<dyn SaslExchange> {
        Box::new(XTestExchange { asked: false })
    }
}

#[async_trait]
impl SaslExchange for XTestExchange {
    async fn step(&mut self, client: Option<&[u8]>) -> SaslStep {
        let word = match (self.asked, client) {
            (false, None) => {
                self.asked = true;
                return SaslStep::Challenge(b"who?".to_vec());
            }
            (_, Some(w)) => w.to_vec(),
            (true, None) => return SaslStep::Failure(SaslFailure::Malformed("none".into())),
        };
        let ok = |user: &str, data: Option<Vec<u8>>| SaslStep::Success {
            identity: SaslIdentity {
                authentication_id: user.into(),
                authorization_id: user.into(),
                token: None,
            },
            server_data: data,
        };
        match word.as_slice() {
            b"alice" => ok("alice@example.com", None),
            b"withdata" => ok("alice@example.com", Some(b"bye".to_vec())),
            b"temp" => SaslStep::Failure(SaslFailure::TemporaryFailure("idp down".into())),
            b"mal" => SaslStep::Failure(SaslFailure::Malformed("junk".into())),
            b"again" => SaslStep::Challenge(Vec::new()),
            _ => SaslStep::Failure(SaslFailure::InvalidCredentials {
                reason: "test".into(),
            }),
        }
    }
}

struct Setup {
    ctx: Arc<ImapContext>,
    dir: Arc<TestDirectory>,
}

fn setup(config: ImapSection) -> Setup {
    setup_with_store(config, Arc::new(MemoryStore::new()))
}

fn setup_with_store(config: ImapSection, store: Arc<dyn crate::store::MailStore>) -> Setup {
    let dir = TestDirectory::new();
    let backends = backends(dir.clone(), None, &[]);
    let mut registry = SaslRegistry::with_builtins(&backends);
    registry.register(Arc::new(XTest));
    let registry = registry
        .enable(&["PLAIN".to_string(), "XTEST".to_string()])
        .expect("mechanisms known");
    let ctx = Arc::new(ImapContext {
        hostname: "mail.test".into(),
        config,
        registry,
        backends,
        store,
        tls: None,
        offload: crate::offload::Offload::default(),
        inflight: crate::inflight::InFlight::new(1 << 30),
    });
    Setup { ctx, dir }
}

fn plaintext_config() -> ImapSection {
    ImapSection {
        allow_plaintext_auth: true,
        ..ImapSection::default()
    }
}

struct Client {
    io: Box<dyn Io>,
    buf: Vec<u8>,
}

impl Client {
    async fn connect(ctx: &Arc<ImapContext>) -> (Client, String) {
        let (ours, theirs) = tokio::io::duplex(1 << 20);
        tokio::spawn(connection::run(
            Box::new(theirs),
            None,
            false,
            None,
            ctx.clone(),
        ));
        Self::over(Box::new(ours)).await
    }

    async fn over(io: Box<dyn Io>) -> (Client, String) {
        let mut c = Client {
            io,
            buf: Vec::new(),
        };
        let greeting = c.line().await;
        (c, greeting)
    }

    /// Runs the client side of a TLS handshake on the connection.
    async fn start_tls(self, tls: &TestTls) -> Client {
        assert!(self.buf.is_empty(), "no bytes may be pending before TLS");
        let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
        let stream = tls
            .connector
            .connect(name, self.io)
            .await
            .expect("TLS handshake");
        Client {
            io: Box::new(stream),
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.io.write_all(bytes).await.expect("write");
    }

    /// Reads more bytes; panics at EOF or after the deadline.
    async fn fill(&mut self) {
        let mut chunk = [0u8; 8192];
        let n = tokio::time::timeout(DEADLINE, self.io.read(&mut chunk))
            .await
            .expect("reply within the deadline")
            .expect("read");
        assert!(
            n > 0,
            "connection closed; got so far: {:?}",
            String::from_utf8_lossy(&self.buf)
        );
        self.buf.extend_from_slice(&chunk[..n]);
    }

    /// One response line with its literals inlined (`{n}\r\n` + n bytes).
    async fn line(&mut self) -> String {
        let mut consumed = 0;
        loop {
            if let Some(pos) = self.buf[consumed..].iter().position(|&b| b == b'\n') {
                let end = consumed + pos + 1;
                let line = &self.buf[..end];
                if let Some(len) = literal_len(line) {
                    while self.buf.len() < end + len {
                        self.fill().await;
                    }
                    consumed = end + len;
                    continue;
                }
                let text = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end);
                return text;
            }
            self.fill().await;
        }
    }

    /// Everything up to and including the tagged reply.
    async fn until(&mut self, tag: &str) -> String {
        let mut all = String::new();
        loop {
            let line = self.line().await;
            all.push_str(&line);
            if line.starts_with(&format!("{tag} ")) {
                return all;
            }
        }
    }

    async fn cmd(&mut self, tag: &str, command: &str) -> String {
        self.send(format!("{tag} {command}\r\n").as_bytes()).await;
        self.until(tag).await
    }

    /// Waits for the server to close the connection (EOF), returning what came before.
    async fn closed(&mut self) -> String {
        let mut chunk = [0u8; 4096];
        loop {
            let n = tokio::time::timeout(DEADLINE, self.io.read(&mut chunk))
                .await
                .expect("close within the deadline")
                .unwrap_or(0);
            if n == 0 {
                return String::from_utf8_lossy(&std::mem::take(&mut self.buf)).into_owned();
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    async fn login(&mut self) {
        let reply = self.cmd("L", "LOGIN alice alicepw").await;
        assert!(reply.starts_with("L OK [CAPABILITY IMAP4rev1"), "{reply}");
    }
}

fn literal_len(line: &[u8]) -> Option<usize> {
    let line = line.strip_suffix(b"\r\n")?;
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|&b| b == b'{')?;
    std::str::from_utf8(&inner[open + 1..]).ok()?.parse().ok()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn deliver(ctx: &ImapContext, body: &str) -> u32 {
    ctx.store.ensure_user("alice@example.com");
    ctx.store
        .append(
            "alice@example.com",
            "INBOX",
            body.replace('\n', "\r\n").into_bytes(),
            BTreeSet::new(),
            Some(1_700_000_000),
        )
        .expect("append")
}

const MAIL: &str = "From: Bob <bob@example.com>\nTo: alice@example.com\nSubject: Lunch\nDate: Tue, 14 Nov 2023 22:13:20 +0000\nMessage-ID: <m1@example.com>\n\nSee you at noon.\n";

#[tokio::test]
async fn greeting_capabilities_without_tls() {
    let s = setup(ImapSection::default());
    let (mut c, greeting) = Client::connect(&s.ctx).await;
    assert_eq!(
        greeting,
        "* OK [CAPABILITY IMAP4rev1 SASL-IR LITERAL+ ID IDLE UIDPLUS UNSELECT CHILDREN MOVE ENABLE NAMESPACE CONDSTORE QRESYNC LOGINDISABLED AUTH=XTEST] mail.test mail-oidc ready.\r\n"
    );
    let reply = c.cmd("a", "CAPABILITY").await;
    assert!(reply.contains("LOGINDISABLED AUTH=XTEST\r\n"), "{reply}");
    assert!(!reply.contains("STARTTLS"), "no certificate, no STARTTLS");
    assert_eq!(
        c.cmd("b", "LOGIN alice alicepw").await,
        "b NO [PRIVACYREQUIRED] Plaintext authentication disallowed on non-secure connections.\r\n"
    );
    assert_eq!(
        c.cmd("c", "AUTHENTICATE PLAIN").await,
        "c NO [PRIVACYREQUIRED] Plaintext authentication disallowed on non-secure connections.\r\n"
    );
    assert_eq!(
        c.cmd("d", "AUTHENTICATE CRAM-MD5").await,
        "d NO Unsupported authentication mechanism.\r\n"
    );
    assert_eq!(c.cmd("e", "SELECT INBOX").await, "e BAD Log in first.\r\n");
    let reply = c.cmd("f", "LOGOUT").await;
    assert_eq!(reply, "* BYE Logging out.\r\nf OK LOGOUT completed.\r\n");
    c.closed().await;
}

#[tokio::test]
async fn plain_with_initial_response_and_continuation() {
    let s = setup(plaintext_config());
    let (mut c, greeting) = Client::connect(&s.ctx).await;
    assert!(
        greeting.contains(
            "ID IDLE UIDPLUS UNSELECT CHILDREN MOVE ENABLE NAMESPACE CONDSTORE QRESYNC AUTH=PLAIN AUTH=XTEST]"
        ),
        "{greeting}"
    );
    let ir = b64(b"\0alice\0alicepw");
    let reply = c.cmd("a", &format!("AUTHENTICATE PLAIN {ir}")).await;
    assert_eq!(
        reply,
        "a OK [CAPABILITY IMAP4rev1 SASL-IR LITERAL+ ID IDLE UIDPLUS UNSELECT CHILDREN MOVE ENABLE NAMESPACE CONDSTORE QRESYNC] Logged in\r\n"
    );
    assert_eq!(
        c.cmd("b", "AUTHENTICATE PLAIN").await,
        "b BAD Already authenticated.\r\n"
    );

    let (mut c, _) = Client::connect(&s.ctx).await;
    c.send(b"a AUTHENTICATE PLAIN\r\n").await;
    assert_eq!(c.line().await, "+ \r\n");
    c.send(format!("{}\r\n", b64(b"\0alice\0wrong")).as_bytes())
        .await;
    assert_eq!(
        c.line().await,
        "a NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
    );
    c.send(b"b AUTHENTICATE PLAIN\r\n").await;
    assert_eq!(c.line().await, "+ \r\n");
    c.send(format!("{}\r\n", b64(b"\0alice\0alicepw")).as_bytes())
        .await;
    assert!(c.line().await.starts_with("b OK [CAPABILITY IMAP4rev1 "));
}

#[tokio::test]
async fn authenticate_abort_bad_base64_and_failure_mapping() {
    let s = setup(ImapSection {
        max_auth_failures: 10,
        ..ImapSection::default()
    });
    let (mut c, _) = Client::connect(&s.ctx).await;
    c.send(b"a AUTHENTICATE XTEST\r\n").await;
    assert_eq!(c.line().await, format!("+ {}\r\n", b64(b"who?")));
    c.send(b"*\r\n").await;
    assert_eq!(
        c.line().await,
        "a BAD Authentication aborted by client.\r\n"
    );

    c.send(b"b AUTHENTICATE XTEST\r\n").await;
    c.line().await;
    c.send(b"not base64!\r\n").await;
    assert_eq!(
        c.line().await,
        "b BAD Invalid base64 data in continued response.\r\n"
    );

    assert_eq!(
        c.cmd("c", "AUTHENTICATE XTEST ab$c").await,
        "c BAD Invalid base64 data in continued response.\r\n"
    );

    for (word, reply) in [
        ("temp", "NO [UNAVAILABLE] Temporary authentication failure."),
        ("mal", "BAD Malformed SASL message."),
        ("nobody", "NO [AUTHENTICATIONFAILED] Authentication failed."),
    ] {
        c.send(b"d AUTHENTICATE XTEST\r\n").await;
        c.line().await;
        c.send(format!("{}\r\n", b64(word.as_bytes())).as_bytes())
            .await;
        assert_eq!(c.line().await, format!("d {reply}\r\n"), "{word}");
    }

    // Several rounds, then success; the empty challenge is `+ `.
    c.send(b"e AUTHENTICATE XTEST\r\n").await;
    c.line().await;
    c.send(format!("{}\r\n", b64(b"again")).as_bytes()).await;
    assert_eq!(c.line().await, "+ \r\n");
    c.send(format!("{}\r\n", b64(b"alice")).as_bytes()).await;
    assert!(c.line().await.starts_with("e OK [CAPABILITY "));
    assert!(
        s.ctx.store.status("alice@example.com", "INBOX").is_ok(),
        "INBOX created at login"
    );
}

#[tokio::test]
async fn success_with_additional_data() {
    let s = setup(ImapSection::default());
    let (mut c, _) = Client::connect(&s.ctx).await;
    c.send(format!("a AUTHENTICATE XTEST {}\r\n", b64(b"withdata")).as_bytes())
        .await;
    assert_eq!(c.line().await, format!("+ {}\r\n", b64(b"bye")));
    c.send(b"\r\n").await;
    assert!(c.line().await.starts_with("a OK [CAPABILITY "));
}

#[tokio::test]
async fn too_many_failures_end_the_session() {
    let s = setup(plaintext_config());
    let (mut c, _) = Client::connect(&s.ctx).await;
    assert_eq!(
        c.cmd("a", "LOGIN alice x").await,
        "a NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
    );
    c.send(b"b AUTHENTICATE XTEST\r\n").await;
    c.line().await;
    c.send(b"*\r\n").await;
    assert_eq!(
        c.line().await,
        "b BAD Authentication aborted by client.\r\n",
        "aborts don't count"
    );
    assert_eq!(
        c.cmd("c", "LOGIN alice \"\"").await,
        "c NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
    );
    c.send(b"d LOGIN alice y\r\n").await;
    let rest = c.closed().await;
    assert_eq!(
        rest,
        "d NO [AUTHENTICATIONFAILED] Authentication failed.\r\n* BYE Too many invalid authentication attempts.\r\n"
    );
}

#[tokio::test]
async fn login_when_directory_is_down() {
    let s = setup(plaintext_config());
    s.dir.set_down(true);
    let (mut c, _) = Client::connect(&s.ctx).await;
    assert_eq!(
        c.cmd("a", "LOGIN alice alicepw").await,
        "a NO [UNAVAILABLE] Temporary authentication failure.\r\n"
    );
    s.dir.set_down(false);
    c.login().await;
    assert!(c.cmd("b", "CAPABILITY").await.contains(
        "* CAPABILITY IMAP4rev1 SASL-IR LITERAL+ ID IDLE UIDPLUS UNSELECT CHILDREN MOVE ENABLE NAMESPACE CONDSTORE QRESYNC\r\n"
    ));
}

#[tokio::test]
async fn login_with_literals() {
    let s = setup(plaintext_config());
    let (mut c, _) = Client::connect(&s.ctx).await;
    c.send(b"a LOGIN {5}\r\n").await;
    assert_eq!(c.line().await, "+ OK\r\n");
    c.send(b"alice {7+}\r\nalicepw\r\n").await;
    assert!(c.line().await.starts_with("a OK [CAPABILITY "));
}

#[tokio::test]
async fn oversized_input() {
    let s = setup(ImapSection {
        max_preauth_literal: 100,
        ..plaintext_config()
    });
    let (mut c, _) = Client::connect(&s.ctx).await;
    assert_eq!(
        c.cmd("a", "LOGIN {101}").await,
        "a NO [TOOBIG] Literal too large.\r\n"
    );
    // A non-synchronizing literal that is too big is skipped, data and all.
    c.send(b"b LOGIN {200+}\r\n").await;
    assert_eq!(c.line().await, "b NO [TOOBIG] Literal too large.\r\n");
    c.send(&[b'x'; 200]).await;
    c.send(b" rest\r\nc NOOP\r\n").await;
    assert_eq!(c.line().await, "c OK NOOP completed.\r\n");
    assert_eq!(c.cmd("d", "FOO bar").await, "d BAD Unknown command.\r\n");
    assert_eq!(
        c.cmd("e", "LOGIN").await,
        "e BAD Error in IMAP command LOGIN: invalid arguments.\r\n"
    );
    let mut long = b"f NOOP ".to_vec();
    long.extend(vec![b'x'; 9000]);
    long.extend(b"\r\n");
    c.send(&long).await;
    assert_eq!(c.closed().await, "* BAD Line too long.\r\n");

    // AUTHENTICATE lines may be longer (bearer tokens), up to max_auth_line.
    let (mut c, _) = Client::connect(&s.ctx).await;
    let token = b64(&[b'a'; 9000]);
    let reply = c.cmd("g", &format!("AUTHENTICATE XTEST {token}")).await;
    assert_eq!(
        reply,
        "g NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
    );
}

#[tokio::test]
async fn preauth_timeout() {
    let s = setup(ImapSection {
        preauth_timeout_seconds: 1,
        ..ImapSection::default()
    });
    let (mut c, _) = Client::connect(&s.ctx).await;
    assert_eq!(c.closed().await, "* BYE Disconnected for inactivity.\r\n");
}

#[tokio::test]
async fn select_fetch_store_search_expunge() {
    let s = setup(plaintext_config());
    let first = deliver(&s.ctx, MAIL);
    deliver(
        &s.ctx,
        "From: carol@example.org\nSubject: Report\n\nQuarterly numbers.\n",
    );
    let (mut c, _) = Client::connect(&s.ctx).await;
    c.login().await;
    let reply = c.cmd("a", "SELECT INBOX").await;
    let validity = s
        .ctx
        .store
        .status("alice@example.com", "INBOX")
        .unwrap()
        .uid_validity;
    assert_eq!(
        reply,
        format!(
            "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n\
             * OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] Flags permitted.\r\n\
             * 2 EXISTS\r\n* 2 RECENT\r\n* OK [UNSEEN 1] First unseen.\r\n\
             * OK [UIDVALIDITY {validity}] UIDs valid.\r\n* OK [UIDNEXT 3] Predicted next UID.\r\n\
             * OK [HIGHESTMODSEQ 3] Highest\r\n\
             a OK [READ-WRITE] Select completed.\r\n"
        )
    );
    let reply = c
        .cmd("b", "FETCH 1 (FLAGS UID RFC822.SIZE INTERNALDATE ENVELOPE)")
        .await;
    assert_eq!(
        reply,
        format!(
            "* 1 FETCH (FLAGS (\\Recent) UID {first} RFC822.SIZE {} INTERNALDATE \"14-Nov-2023 22:13:20 +0000\" ENVELOPE (\"Tue, 14 Nov 2023 22:13:20 +0000\" \"Lunch\" ((\"Bob\" NIL \"bob\" \"example.com\")) ((\"Bob\" NIL \"bob\" \"example.com\")) ((\"Bob\" NIL \"bob\" \"example.com\")) ((NIL NIL \"alice\" \"example.com\")) NIL NIL NIL \"<m1@example.com>\"))\r\nb OK Fetch completed.\r\n",
            MAIL.len() + MAIL.matches('\n').count()
        )
    );
    let reply = c
        .cmd("c", "UID FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        .await;
    assert_eq!(
        reply,
        "* 1 FETCH (UID 1 BODY[HEADER.FIELDS (SUBJECT)] {18}\r\nSubject: Lunch\r\n\r\n)\r\n\
         * 2 FETCH (UID 2 BODY[HEADER.FIELDS (SUBJECT)] {19}\r\nSubject: Report\r\n\r\n)\r\n\
         c OK Fetch completed.\r\n"
    );
    let reply = c.cmd("d", "FETCH 2 (BODY[TEXT]<0.9>)").await;
    assert_eq!(
        reply,
        "* 2 FETCH (BODY[TEXT]<0> {9}\r\nQuarterly FLAGS (\\Seen \\Recent))\r\nd OK Fetch completed.\r\n"
    );
    assert_eq!(
        c.cmd("e", "SEARCH UNSEEN").await,
        "* SEARCH 1\r\ne OK Search completed.\r\n"
    );
    assert_eq!(
        c.cmd("f", "UID SEARCH FROM bob").await,
        "* SEARCH 1\r\nf OK Search completed.\r\n"
    );
    assert_eq!(
        c.cmd("g", "SEARCH CHARSET KOI8-R ALL").await,
        "g NO [BADCHARSET (US-ASCII UTF-8)] Unsupported charset.\r\n"
    );
    assert_eq!(
        c.cmd("h", "STORE 1 +FLAGS (\\Deleted $Work)").await,
        "* 1 FETCH (FLAGS ($Work \\Deleted \\Recent))\r\nh OK Store completed.\r\n"
    );
    assert_eq!(
        c.cmd("i", "UID STORE 2 -FLAGS.SILENT (\\Seen)").await,
        "i OK Store completed.\r\n"
    );
    assert_eq!(
        c.cmd("j", "FETCH 3 FLAGS").await,
        "j BAD Invalid messageset.\r\n"
    );
    assert_eq!(
        c.cmd("k", "SEARCH DELETED KEYWORD $Work").await,
        "* SEARCH 1\r\nk OK Search completed.\r\n"
    );
    assert_eq!(
        c.cmd("l", "EXPUNGE").await,
        "* 1 EXPUNGE\r\nl OK Expunge completed.\r\n"
    );
    assert_eq!(
        c.cmd("m", "FETCH 1 (UID FLAGS)").await,
        "* 1 FETCH (UID 2 FLAGS (\\Recent))\r\nm OK Fetch completed.\r\n"
    );
    let reply = c.cmd("n", "FETCH 1 (BODY[] BODYSTRUCTURE)").await;
    assert!(reply.contains("BODY[] {"), "{reply}");
    assert!(
        reply.contains("BODYSTRUCTURE (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 20 1 NIL NIL NIL NIL)"),
        "{reply}"
    );
    assert!(
        reply.contains("FLAGS (\\Seen \\Recent)"),
        "BODY[] sets \\Seen: {reply}"
    );
    assert_eq!(c.cmd("o", "CLOSE").await, "o OK Close completed.\r\n");
    assert_eq!(
        c.cmd("p", "FETCH 1 FLAGS").await,
        "p BAD No mailbox selected.\r\n"
    );
}

#[tokio::test]
async fn examine_is_read_only() {
    let s = setup(plaintext_config());
    deliver(&s.ctx, MAIL);
    let (mut c, _) = Client::connect(&s.ctx).await;
    c.login().await;
    let reply = c.cmd("a", "EXAMINE INBOX").await;
    assert!(reply.contains("[PERMANENTFLAGS ()]"), "{reply}");
    assert!(
        reply.ends_with("a OK [READ-ONLY] Examine completed.\r\n"),
        "{reply}"
    );
    let reply = c.cmd("b", "FETCH 1 BODY[]").await;
    assert!(
        !reply.contains("\\Seen"),
        "EXAMINE never sets \\Seen: {reply}"
    );
    assert_eq!(
        c.cmd("c", "STORE 1 +FLAGS (\\Seen)").await,
        "c NO Mailbox is read-only.\r\n"
    );
    assert_eq!(
        c.cmd("d", "EXPUNGE").await,
        "d NO Mailbox is read-only.\r\n"
    );
}

#[tokio::test]
async fn append_create_list_status_copy_move() {
    let s = setup(plaintext_config());
    let (mut c, _) = Client::connect(&s.ctx).await;
    c.login().await;
    let msg = "Subject: draft\r\n\r\nhello\r\n";
    c.send(
        format!(
            "a APPEND INBOX (\\Seen) \"01-Feb-2024 10:00:00 +0100\" {{{}}}\r\n",
            msg.len()
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(c.line().await, "+ OK\r\n");
    c.send(format!("{msg}\r\n").as_bytes()).await;
    let validity = s
        .ctx
        .store
        .status("alice@example.com", "INBOX")
        .unwrap()
        .uid_validity;
    assert_eq!(
        c.line().await,
        format!("a OK [APPENDUID {validity} 1] Append completed.\r\n")
    );
    let stored = s.ctx.store.messages("alice@example.com", "INBOX").unwrap();
    assert_eq!(stored[0].data.as_slice(), msg.as_bytes());
    assert_eq!(stored[0].internal_date, 1_706_778_000);
    assert!(stored[0].flags.contains("\\Seen"));

    c.send(format!("b APPEND INBOX {{{}+}}\r\n{msg}\r\n", msg.len()).as_bytes())
        .await;
    assert_eq!(
        c.line().await,
        format!("b OK [APPENDUID {validity} 2] Append completed.\r\n")
    );
    assert_eq!(
        c.cmd("c", "APPEND Nope {1+}\r\nx").await,
        "c NO [TRYCREATE] Mailbox doesn't exist.\r\n"
    );
    assert_eq!(
        c.cmd("d", "CREATE Work/2024").await,
        "d OK Create completed.\r\n"
    );
    assert_eq!(
        c.cmd("d2", "CREATE Bad//Name").await,
        "d2 NO [CANNOT] Invalid mailbox name.\r\n"
    );
    assert!(
        !s.ctx
            .store
            .list_mailboxes("alice@example.com")
            .contains(&"Bad".to_string()),
        "no parent left behind"
    );
    // Refused names change nothing: too long or too deep at the end, `.`/`..` levels.
    let too_long = format!("Deep/Er/{}", "x".repeat(600));
    let too_deep = vec!["L"; crate::store::MAX_DEPTH + 1].join("/");
    for (n, name) in [
        too_long.as_str(),
        too_deep.as_str(),
        "..",
        "../../etc",
        "Up/../Up",
        "Here/.",
    ]
    .into_iter()
    .enumerate()
    {
        assert_eq!(
            c.cmd(&format!("r{n}"), &format!("CREATE \"{name}\"")).await,
            format!("r{n} NO [CANNOT] Invalid mailbox name.\r\n"),
            "{name}"
        );
    }
    let left = s.ctx.store.list_mailboxes("alice@example.com");
    for parent in ["Deep", "L", "Up", "Here", ".."] {
        assert!(
            !left.contains(&parent.to_string()),
            "{parent} left behind: {left:?}"
        );
    }
    let deepest = vec!["M"; crate::store::MAX_DEPTH].join("/");
    assert!(crate::store::validate_mailbox_name(&deepest).is_ok());
    assert_eq!(
        c.cmd("e", "CREATE inbox").await,
        "e NO [ALREADYEXISTS] Mailbox already exists.\r\n"
    );
    assert_eq!(
        c.cmd("f", "LIST \"\" *").await,
        "* LIST (\\HasNoChildren) \"/\" \"INBOX\"\r\n* LIST (\\HasChildren) \"/\" \"Work\"\r\n\
         * LIST (\\HasNoChildren) \"/\" \"Work/2024\"\r\nf OK LIST completed.\r\n"
    );
    assert_eq!(
        c.cmd("g", "LIST \"\" %").await,
        "* LIST (\\HasNoChildren) \"/\" \"INBOX\"\r\n* LIST (\\HasChildren) \"/\" \"Work\"\r\ng OK LIST completed.\r\n"
    );
    assert_eq!(
        c.cmd("h", "LIST \"\" \"\"").await,
        "* LIST (\\Noselect) \"/\" \"\"\r\nh OK LIST completed.\r\n"
    );
    // LSUB lists what was subscribed, no longer every mailbox.
    assert_eq!(
        c.cmd("i0", "SUBSCRIBE Work/2024").await,
        "i0 OK Subscription updated.\r\n"
    );
    assert_eq!(
        c.cmd("i", "LSUB \"Work/\" %").await,
        "* LSUB (\\HasNoChildren) \"/\" \"Work/2024\"\r\ni OK LSUB completed.\r\n"
    );
    assert_eq!(
        c.cmd("j", "STATUS INBOX (MESSAGES UNSEEN UIDNEXT)").await,
        "* STATUS \"INBOX\" (MESSAGES 2 UNSEEN 1 UIDNEXT 3)\r\nj OK Status completed.\r\n"
    );
    c.cmd("k", "SELECT INBOX").await;
    let work = s
        .ctx
        .store
        .status("alice@example.com", "Work")
        .unwrap()
        .uid_validity;
    assert_eq!(
        c.cmd("l", "COPY 1:2 Work").await,
        format!("l OK [COPYUID {work} 1:2 1:2] Copy completed.\r\n")
    );
    assert_eq!(
        c.cmd("m", "COPY 1 Nope").await,
        "m NO [TRYCREATE] Mailbox doesn't exist.\r\n"
    );
    assert_eq!(
        c.cmd("n", "UID MOVE 2 Work").await,
        format!("* OK [COPYUID {work} 2 3] Moved.\r\n* 2 EXPUNGE\r\nn OK Move completed.\r\n")
    );
    assert_eq!(
        s.ctx
            .store
            .status("alice@example.com", "Work")
            .unwrap()
            .exists,
        3
    );
    assert_eq!(c.cmd("o", "UNSELECT").await, "o OK Unselect completed.\r\n");
}

#[tokio::test]
async fn noop_and_idle_see_delivered_mail() {
    let s = setup(plaintext_config());
    deliver(&s.ctx, MAIL);
    let (mut c, _) = Client::connect(&s.ctx).await;
    c.login().await;
    c.cmd("a", "SELECT INBOX").await;
    deliver(&s.ctx, MAIL);
    assert_eq!(
        c.cmd("b", "NOOP").await,
        "* 2 EXISTS\r\n* 2 RECENT\r\nb OK NOOP completed.\r\n"
    );

    c.send(b"c IDLE\r\n").await;
    assert_eq!(c.line().await, "+ idling\r\n");
    deliver(&s.ctx, MAIL);
    assert_eq!(c.line().await, "* 3 EXISTS\r\n");
    assert_eq!(c.line().await, "* 3 RECENT\r\n");
    s.ctx
        .store
        .set_flags(
            "alice@example.com",
            "INBOX",
            1,
            ["\\Flagged".to_string()].into(),
        )
        .unwrap();
    assert_eq!(c.line().await, "* 1 FETCH (FLAGS (\\Flagged \\Recent))\r\n");
    s.ctx
        .store
        .expunge("alice@example.com", "INBOX", &[2])
        .unwrap();
    assert_eq!(c.line().await, "* 2 EXPUNGE\r\n");
    c.send(b"DONE\r\n").await;
    assert_eq!(c.line().await, "c OK Idle completed.\r\n");

    c.send(b"d IDLE\r\n").await;
    assert_eq!(c.line().await, "+ idling\r\n");
    c.send(b"e NOOP\r\n").await;
    assert_eq!(c.line().await, "d BAD Expected DONE.\r\n");
    assert_eq!(c.cmd("f", "NOOP").await, "f OK NOOP completed.\r\n");
}

#[tokio::test]
async fn id_and_unauthenticated_noop() {
    let s = setup(ImapSection::default());
    let (mut c, _) = Client::connect(&s.ctx).await;
    let reply = c.cmd("a", "ID (\"name\" \"test\")").await;
    assert!(
        reply.starts_with("* ID (\"name\" \"mail-oidc\" \"version\" \""),
        "{reply}"
    );
    assert!(reply.ends_with("a OK ID completed.\r\n"));
    assert_eq!(c.cmd("b", "NOOP").await, "b OK NOOP completed.\r\n");
    assert_eq!(
        c.cmd("c", "STARTTLS").await,
        "c BAD STARTTLS is not available.\r\n"
    );
}

#[tokio::test]
async fn multipart_fetch() {
    let s = setup(plaintext_config());
    deliver(
        &s.ctx,
        "Subject: parts\nContent-Type: multipart/mixed; boundary=XX\n\n--XX\nContent-Type: text/plain\n\nfirst\n--XX\nContent-Type: text/html\n\n<p>second</p>\n--XX--\n",
    );
    let (mut c, _) = Client::connect(&s.ctx).await;
    c.login().await;
    c.cmd("a", "SELECT INBOX").await;
    assert_eq!(
        c.cmd("b", "FETCH 1 (BODY.PEEK[2] BODY.PEEK[1.MIME])").await,
        "* 1 FETCH (BODY[2] {13}\r\n<p>second</p> BODY[1.MIME] {28}\r\nContent-Type: text/plain\r\n\r\n)\r\nb OK Fetch completed.\r\n"
    );
    let reply = c.cmd("c", "FETCH 1 BODY").await;
    assert!(
        reply.contains("BODY ((\"text\" \"plain\" NIL NIL NIL \"7BIT\" 5 1)(\"text\" \"html\" NIL NIL NIL \"7BIT\" 13 1) \"mixed\")"),
        "{reply}"
    );
}

/// A self-signed certificate (made with the openssl CLI) and both TLS ends.
struct TestTls {
    acceptor: tokio_rustls::TlsAcceptor,
    connector: tokio_rustls::TlsConnector,
    _dir: tempfile::TempDir,
}

fn test_tls() -> TestTls {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;

    crate::tls::install_crypto_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
        .args(["-addext", "subjectAltName=DNS:localhost"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl runs");
    assert!(status.success(), "openssl req failed");
    let acceptor = crate::tls::acceptor(&crate::config::TlsSection {
        cert: cert.clone(),
        key,
    })
    .expect("acceptor");
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&cert).expect("read cert") {
        roots.add(c.expect("pem")).expect("trust anchor");
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TestTls {
        acceptor,
        connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
        _dir: dir,
    }
}

fn with_tls(s: &Setup, tls: &TestTls) -> Arc<ImapContext> {
    Arc::new(ImapContext {
        hostname: s.ctx.hostname.clone(),
        config: s.ctx.config.clone(),
        registry: s.ctx.registry.clone(),
        backends: s.ctx.backends.clone(),
        store: s.ctx.store.clone(),
        tls: Some(tls.acceptor.clone()),
        offload: s.ctx.offload.clone(),
        inflight: s.ctx.inflight.clone(),
    })
}

#[tokio::test]
async fn starttls_discards_pipelined_commands_and_enables_plain() {
    let tls = test_tls();
    let ctx = with_tls(&setup(ImapSection::default()), &tls);
    let (mut c, greeting) = Client::connect(&ctx).await;
    assert!(
        greeting.contains("QRESYNC STARTTLS LOGINDISABLED AUTH=XTEST]"),
        "{greeting}"
    );
    assert_eq!(
        c.cmd("a", "AUTHENTICATE PLAIN").await,
        "a NO [PRIVACYREQUIRED] Plaintext authentication disallowed on non-secure connections.\r\n"
    );
    // `b NOOP` rides in the same packet as STARTTLS: it must be dropped, never answered.
    c.send(b"s STARTTLS\r\nb NOOP\r\n").await;
    assert_eq!(c.line().await, "s OK Begin TLS negotiation now.\r\n");
    let mut c = c.start_tls(&tls).await;
    assert_eq!(
        c.cmd("c", "CAPABILITY").await,
        "* CAPABILITY IMAP4rev1 SASL-IR LITERAL+ ID IDLE UIDPLUS UNSELECT CHILDREN MOVE ENABLE NAMESPACE CONDSTORE QRESYNC AUTH=PLAIN AUTH=XTEST\r\nc OK Capability completed.\r\n"
    );
    assert_eq!(
        c.cmd("d", "STARTTLS").await,
        "d BAD TLS is already active.\r\n"
    );
    c.login().await;
}

#[tokio::test]
async fn implicit_tls_listener() {
    let tls = test_tls();
    let ctx = with_tls(&setup(ImapSection::default()), &tls);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(super::serve(listener, ImapListenerKind::ImplicitTls, ctx));
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
    let stream = tls.connector.connect(name, tcp).await.expect("handshake");
    let (mut c, greeting) = Client::over(Box::new(stream)).await;
    assert!(
        greeting.contains("QRESYNC AUTH=PLAIN AUTH=XTEST]"),
        "{greeting}"
    );
    let ir = b64(b"\0alice\0alicepw");
    assert!(
        c.cmd("a", &format!("AUTHENTICATE PLAIN {ir}"))
            .await
            .starts_with("a OK ")
    );
    server.abort();
}

#[tokio::test]
async fn hostile_input_never_breaks_the_session() {
    let s = setup(plaintext_config());
    deliver(&s.ctx, MAIL);
    let (mut c, _) = Client::connect(&s.ctx).await;
    c.login().await;
    c.cmd("s", "SELECT INBOX").await;
    let commands = [
        "FETCH 1 (BODY[1.2.3.4.5.6.MIME])",
        "FETCH 1 BODY[9.HEADER]",
        "FETCH 0 FLAGS",
        "FETCH 1:4294967295 FLAGS",
        "UID FETCH 4294967295:1 FLAGS",
        "FETCH 1 (BODY[]<4294967295.4294967295>)",
        "FETCH 1 BINARY[1]",
        "SEARCH OR OR OR",
        "SEARCH NOT NOT NOT NOT ALL",
        "SEARCH HEADER \"\" \"\"",
        "SEARCH 1:* 99:100",
        "STORE 1 FLAGS (\\Recent \\Seen)",
        "STORE 1 +FLAGS ()",
        "LIST \"\" \"%%%%%%%%%%%%%%*****************%%%%%%%%%%x\"",
        "SELECT \"\"",
        "CREATE \"a//b\"",
        "CREATE \"*\"",
        "STATUS Nope (MESSAGES)",
        "APPEND INBOX {0+}\r\n",
        "COPY 1 INBOX",
        "EXAMINE INBOX",
        "DELETE INBOX",
        "ENABLE UTF8=ACCEPT",
        "UID EXPUNGE 1:*",
        "\u{1}\u{2}\u{3}",
        "(((((((((((((((((((((((((((((",
    ];
    for (i, command) in commands.iter().enumerate() {
        let tag = format!("t{i}");
        let reply = c.cmd(&tag, command).await;
        assert!(
            [" OK ", " NO ", " BAD "]
                .iter()
                .any(|k| reply.contains(&format!("{tag}{k}"))),
            "{command}: {reply}"
        );
    }
    // Random bytes (deterministic LCG), one line at a time.
    let mut x: u64 = 42;
    for i in 0..200 {
        let mut line = format!("r{i} ").into_bytes();
        for _ in 0..(i % 40) {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let b = (x >> 33) as u8;
            if b != b'\n' && b != b'\r' && b != b'{' {
                line.push(b);
            }
        }
        line.extend(b"\r\n");
        c.send(&line).await;
        let reply = c.until(&format!("r{i}")).await;
        assert!(reply.contains(&format!("r{i} ")), "{reply}");
    }
    assert_eq!(c.cmd("z", "NOOP").await, "z OK NOOP completed.\r\n");
}

#[tokio::test]
async fn enable_and_namespace() {
    let s = setup(plaintext_config());
    let (mut c, _) = Client::connect(&s.ctx).await;
    // Both need a login, like every mailbox command.
    assert_eq!(c.cmd("a", "NAMESPACE").await, "a BAD Log in first.\r\n");
    assert_eq!(
        c.cmd("b", "ENABLE CONDSTORE").await,
        "b BAD Log in first.\r\n"
    );
    c.login().await;
    assert_eq!(
        c.cmd("c", "NAMESPACE").await,
        "* NAMESPACE ((\"\" \"/\")) NIL NIL\r\nc OK NAMESPACE completed.\r\n"
    );
    // Unknown names are ignored; ENABLED lists what this command turned on.
    assert_eq!(
        c.cmd("d", "ENABLE X-UNKNOWN CONDSTORE").await,
        "* ENABLED CONDSTORE\r\nd OK ENABLE completed.\r\n"
    );
    assert_eq!(
        c.cmd("e", "ENABLE").await,
        "e BAD Error in IMAP command ENABLE: invalid arguments.\r\n"
    );
    c.cmd("f", "SELECT INBOX").await;
    assert_eq!(
        c.cmd("g", "ENABLE CONDSTORE").await,
        "g BAD ENABLE is not allowed while a mailbox is selected.\r\n"
    );
}
