//! Connection-level tests: a real listener on 127.0.0.1:0, TLS, the real PLAIN/LOGIN mechanisms
//! over an in-test directory, and the MemoryStore.

mod quota;
mod revocation;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rustls_pki_types::ServerName;
use rustls_pki_types::pem::PemObject;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

use super::{
    FailingStore, Scripted, TestDirectory, backends, directory, registry, without_trace_headers,
};
use crate::config::{SmtpSection, SubmissionSection, TlsSection};
use crate::smtp::{ConnectionOptions, SmtpContext, SmtpListenerKind, serve_with};
use crate::store::{MailStore, MemoryStore};
use crate::testkit::tls::{CERT, KEY};

/// Per-read limit: generous, tests never wait for it unless something is broken.
const READ_LIMIT: Duration = Duration::from_secs(10);

struct Setup {
    kind: SmtpListenerKind,
    store: Option<Arc<dyn MailStore>>,
    options: ConnectionOptions,
    max_message_size: usize,
    /// The server-wide budget of DATA bytes in flight.
    inflight: crate::inflight::InFlight,
}

impl Setup {
    fn new(kind: SmtpListenerKind) -> Self {
        Self {
            kind,
            store: None,
            options: ConnectionOptions::default(),
            max_message_size: 2 * 1024 * 1024,
            inflight: crate::inflight::InFlight::new(1 << 30),
        }
    }
}

struct TestServer {
    addr: SocketAddr,
    store: Arc<dyn MailStore>,
    directory: Arc<TestDirectory>,
    task: JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    async fn start(setup: Setup) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&cert, CERT).unwrap();
        std::fs::write(&key, KEY).unwrap();
        let acceptor = crate::tls::acceptor(&TlsSection { cert, key }).unwrap();

        let directory = directory();
        let backends = backends(directory.clone(), None, &[]);
        let store = setup
            .store
            .unwrap_or_else(|| Arc::new(MemoryStore::new()) as Arc<dyn MailStore>);
        let ctx = Arc::new(SmtpContext {
            hostname: "localhost".into(),
            submission: SubmissionSection {
                max_message_size: setup.max_message_size,
                ..SubmissionSection::default()
            },
            inbound: SmtpSection {
                max_message_size: setup.max_message_size,
                local_domains: vec!["example.com".into()],
                ..SmtpSection::default()
            },
            registry: registry(&backends, Scripted::new(vec![])),
            backends,
            store: store.clone(),
            filter: Arc::new(crate::sieve::SieveFilter::keep_all()),
            tls: Some(acceptor),
            inflight: setup.inflight.clone(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(serve_with(listener, setup.kind, ctx, setup.options));
        Self {
            addr,
            store,
            directory,
            task,
            _dir: dir,
        }
    }

    fn inbox(&self, user: &str) -> Vec<Vec<u8>> {
        self.store
            .messages(user, "INBOX")
            .map(|m| m.iter().map(|m| m.data.to_vec()).collect())
            .unwrap_or_default()
    }
}

enum Stream {
    Plain(BufReader<TcpStream>),
    Tls(Box<BufReader<tokio_rustls::client::TlsStream<TcpStream>>>),
    Closed,
}

/// A raw SMTP client that reads whole replies.
struct Client {
    stream: Stream,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Self {
        let tcp = TcpStream::connect(addr).await.unwrap();
        Self {
            stream: Stream::Plain(BufReader::new(tcp)),
        }
    }

    async fn connect_tls(addr: SocketAddr) -> Self {
        let tcp = TcpStream::connect(addr).await.unwrap();
        Self {
            stream: Stream::Tls(Box::new(BufReader::new(tls_connect(tcp).await))),
        }
    }

    async fn starttls(&mut self) {
        assert_eq!(
            self.command("STARTTLS").await,
            "220 2.0.0 Ready to start TLS"
        );
        self.upgrade().await;
    }

    /// Runs the TLS handshake on the plain connection.
    async fn upgrade(&mut self) {
        let Stream::Plain(reader) = std::mem::replace(&mut self.stream, Stream::Closed) else {
            panic!("not a plain connection");
        };
        assert!(reader.buffer().is_empty(), "bytes after 220 STARTTLS");
        self.stream = Stream::Tls(Box::new(BufReader::new(
            tls_connect(reader.into_inner()).await,
        )));
    }

    async fn write(&mut self, bytes: &[u8]) {
        match &mut self.stream {
            Stream::Plain(s) => s.get_mut().write_all(bytes).await.unwrap(),
            Stream::Tls(s) => {
                s.get_mut().write_all(bytes).await.unwrap();
                s.get_mut().flush().await.unwrap();
            }
            Stream::Closed => panic!("closed"),
        }
    }

    /// One reply, lines joined with `\n`, without line ends.
    async fn reply(&mut self) -> String {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let read = match &mut self.stream {
                Stream::Plain(s) => tokio::time::timeout(READ_LIMIT, s.read_line(&mut line)).await,
                Stream::Tls(s) => tokio::time::timeout(READ_LIMIT, s.read_line(&mut line)).await,
                Stream::Closed => panic!("closed"),
            };
            let n = read.expect("reply within the deadline").unwrap();
            assert!(n > 0, "connection closed; got so far {lines:?}");
            assert!(line.ends_with("\r\n"), "line without CRLF: {line:?}");
            let line = line.trim_end_matches("\r\n").to_string();
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line);
            if last {
                return lines.join("\n");
            }
        }
    }

    async fn command(&mut self, line: &str) -> String {
        self.write(format!("{line}\r\n").as_bytes()).await;
        self.reply().await
    }

    /// Reads to EOF; returns what came.
    async fn rest(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        let read = match &mut self.stream {
            Stream::Plain(s) => tokio::time::timeout(READ_LIMIT, s.read_to_end(&mut out)).await,
            Stream::Tls(s) => tokio::time::timeout(READ_LIMIT, s.read_to_end(&mut out)).await,
            Stream::Closed => panic!("closed"),
        };
        // A TLS peer may close without close_notify after 421; either way we are at the end.
        let _ = read.expect("EOF within the deadline");
        out
    }
}

async fn tls_connect(tcp: TcpStream) -> tokio_rustls::client::TlsStream<TcpStream> {
    crate::tls::install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls_pki_types::CertificateDer::from_pem_slice(CERT.as_bytes()).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap()
}

fn plain(user: &str, password: &str) -> String {
    BASE64.encode(format!("\0{user}\0{password}"))
}

/// A message with lines that need dot-stuffing, 8-bit bytes and a long line.
fn sample_message() -> Vec<u8> {
    let mut m = b"From: alice@example.com\r\nTo: bob@example.com\r\nSubject: test\r\n\r\n".to_vec();
    m.extend_from_slice(b".leading dot\r\n..two dots\r\n.\r\n");
    m.extend_from_slice("caf\u{e9} 8-bit\r\n".as_bytes());
    m.extend_from_slice(&[b'x'; 3000]);
    m.extend_from_slice(b"\r\nend\r\n");
    m
}

fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for line in message.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b".") {
            out.push(b'.');
        }
        out.extend_from_slice(line);
    }
    out.extend_from_slice(b".\r\n");
    out
}

#[tokio::test]
async fn submission_starttls_auth_plain_and_exact_delivery() {
    let server = TestServer::start(Setup::new(SmtpListenerKind::Submission)).await;
    let mut c = Client::connect(server.addr).await;
    assert_eq!(c.reply().await, "220 localhost ESMTP mail-oidc");
    let ehlo = c.command("EHLO client.test").await;
    assert!(ehlo.contains("\n250-STARTTLS\n"), "{ehlo}");
    assert!(ehlo.ends_with("\n250 AUTH XSCRIPT"), "{ehlo}");
    assert_eq!(
        c.command(&format!("AUTH PLAIN {}", plain("alice", "alicepw")))
            .await,
        "538 5.7.11 Encryption required for requested authentication mechanism"
    );
    c.starttls().await;
    let ehlo = c.command("EHLO client.test").await;
    assert_eq!(
        ehlo,
        "250-localhost\n250-PIPELINING\n250-SIZE 2097152\n250-8BITMIME\n\
         250-ENHANCEDSTATUSCODES\n250 AUTH PLAIN LOGIN XSCRIPT"
    );
    assert_eq!(
        c.command("MAIL FROM:<alice@example.com>").await,
        "530 5.7.0 Authentication required"
    );
    assert_eq!(
        c.command(&format!("AUTH PLAIN {}", plain("alice", "alicepw")))
            .await,
        "235 2.7.0 Authentication successful"
    );
    assert_eq!(
        c.command("MAIL FROM:<bob@example.com>").await,
        "553 5.7.1 Sender address not owned by user"
    );
    assert_eq!(
        c.command("MAIL FROM:<alice@example.com>").await,
        "250 2.1.0 Ok"
    );
    assert_eq!(c.command("RCPT TO:<bob@example.com>").await, "250 2.1.5 Ok");
    assert_eq!(
        c.command("RCPT TO:<Alice@Example.com>").await,
        "250 2.1.5 Ok"
    );
    assert_eq!(
        c.command("RCPT TO:<nobody@example.com>").await,
        "550 5.1.1 <nobody@example.com>: Recipient address rejected: User unknown"
    );
    assert_eq!(
        c.command("DATA").await,
        "354 End data with <CR><LF>.<CR><LF>"
    );
    let message = sample_message();
    c.write(&dot_stuff(&message)).await;
    let queued = c.reply().await;
    let id = queued
        .strip_prefix("250 2.0.0 Ok: queued as ")
        .unwrap_or_else(|| panic!("{queued}"))
        .to_string();
    assert_eq!(c.command("QUIT").await, "221 2.0.0 Bye");

    for user in ["bob@example.com", "alice@example.com"] {
        let inbox = server.inbox(user);
        assert_eq!(inbox.len(), 1, "{user}");
        assert_eq!(without_trace_headers(&inbox[0]), message.as_slice());
        let head = String::from_utf8_lossy(&inbox[0][..200]).to_string();
        assert!(
            head.starts_with("Return-Path: <alice@example.com>\r\n"),
            "{head}"
        );
        assert!(
            head.contains(&format!(
                "Received: from client.test ([127.0.0.1]) by localhost with ESMTPSA id {id}; "
            )),
            "{head}"
        );
    }
}

#[tokio::test]
async fn auth_login_and_too_many_failures() {
    let server = TestServer::start(Setup::new(SmtpListenerKind::SubmissionImplicitTls)).await;
    let mut c = Client::connect_tls(server.addr).await;
    assert_eq!(c.reply().await, "220 localhost ESMTP mail-oidc");
    let ehlo = c.command("EHLO client.test").await;
    assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
    assert!(ehlo.ends_with("\n250 AUTH PLAIN LOGIN XSCRIPT"), "{ehlo}");

    for attempt in 1..=3 {
        let mut reply = c.command("AUTH LOGIN").await;
        for answer in ["bob", "wrong"] {
            assert!(reply.starts_with("334 "), "{reply}");
            reply = c.command(&BASE64.encode(answer)).await;
        }
        if attempt < 3 {
            assert_eq!(reply, "535 5.7.8 Authentication credentials invalid");
        } else {
            assert_eq!(reply, "535 5.7.8 Authentication credentials invalid");
            assert_eq!(
                c.reply().await,
                "421 4.7.0 Too many authentication failures"
            );
            assert!(c.rest().await.is_empty());
        }
    }

    let mut c = Client::connect_tls(server.addr).await;
    c.reply().await;
    c.command("EHLO client.test").await;
    assert_eq!(
        c.command("AUTH LOGIN").await,
        format!("334 {}", BASE64.encode("Username:"))
    );
    assert_eq!(
        c.command(&BASE64.encode("bob")).await,
        format!("334 {}", BASE64.encode("Password:"))
    );
    assert_eq!(
        c.command(&BASE64.encode("bobpw")).await,
        "235 2.7.0 Authentication successful"
    );
    assert_eq!(
        c.command("MAIL FROM:<bob@example.com>").await,
        "250 2.1.0 Ok"
    );
}

#[tokio::test]
async fn auth_temporary_failure_and_abort() {
    let server = TestServer::start(Setup::new(SmtpListenerKind::SubmissionImplicitTls)).await;
    let mut c = Client::connect_tls(server.addr).await;
    c.reply().await;
    c.command("EHLO client.test").await;
    server.directory.set_down(true);
    assert_eq!(
        c.command(&format!("AUTH PLAIN {}", plain("alice", "alicepw")))
            .await,
        "454 4.7.0 Temporary authentication failure"
    );
    server.directory.set_down(false);
    assert_eq!(c.command("AUTH PLAIN").await, "334 ");
    assert_eq!(c.command("*").await, "501 5.7.0 Authentication aborted");
    assert_eq!(c.command("AUTH PLAIN").await, "334 ");
    assert_eq!(c.command("%%%").await, "501 5.5.2 Invalid base64 data");
    assert_eq!(c.command("AUTH PLAIN").await, "334 ");
    assert_eq!(
        c.command(&plain("alice", "alicepw")).await,
        "235 2.7.0 Authentication successful"
    );
}

#[tokio::test]
async fn inbound_pipelined_transaction() {
    let server = TestServer::start(Setup::new(SmtpListenerKind::Inbound)).await;
    let mut c = Client::connect(server.addr).await;
    c.reply().await;
    let mut batch = b"EHLO mx.remote.test\r\nMAIL FROM:<sender@remote.test> BODY=8BITMIME\r\n\
        RCPT TO:<alice@example.com>\r\nRCPT TO:<carol@other.test>\r\n\
        RCPT TO:<ghost@example.com>\r\nRCPT TO:<down@example.com>\r\nDATA\r\n"
        .to_vec();
    c.write(&batch).await;
    let ehlo = c.reply().await;
    assert!(!ehlo.contains("AUTH"), "{ehlo}");
    let mut replies = Vec::new();
    for _ in 0..6 {
        replies.push(c.reply().await);
    }
    assert_eq!(
        replies,
        [
            "250 2.1.0 Ok",
            "250 2.1.5 Ok",
            "550 5.7.1 Relay access denied",
            "550 5.1.1 <ghost@example.com>: Recipient address rejected: User unknown",
            "451 4.3.0 Temporary directory failure",
            "354 End data with <CR><LF>.<CR><LF>",
        ]
    );
    let message = b"Subject: hi\r\n\r\nhello\r\n".to_vec();
    batch = dot_stuff(&message);
    batch.extend_from_slice(b"QUIT\r\n");
    c.write(&batch).await;
    assert!(c.reply().await.starts_with("250 2.0.0 Ok: queued as "));
    assert_eq!(c.reply().await, "221 2.0.0 Bye");
    assert!(c.rest().await.is_empty());

    let inbox = server.inbox("alice@example.com");
    assert_eq!(inbox.len(), 1);
    assert_eq!(without_trace_headers(&inbox[0]), message.as_slice());
    let text = String::from_utf8_lossy(&inbox[0]).to_string();
    assert!(text.starts_with("Return-Path: <sender@remote.test>\r\nReceived: from mx.remote.test ([127.0.0.1]) by localhost with ESMTP id "), "{text}");
}

#[tokio::test]
async fn starttls_drops_pipelined_commands() {
    let server = TestServer::start(Setup::new(SmtpListenerKind::Inbound)).await;
    let mut c = Client::connect(server.addr).await;
    c.reply().await;
    c.command("EHLO a.test").await;
    // The pipelined NOOP must not be answered (inside or outside TLS).
    c.write(b"STARTTLS\r\nNOOP\r\n").await;
    assert_eq!(c.reply().await, "220 2.0.0 Ready to start TLS");
    c.upgrade().await;
    assert_eq!(
        c.command("MAIL FROM:<>").await,
        "503 5.5.1 Bad sequence of commands: send EHLO first"
    );
    let ehlo = c.command("EHLO a.test").await;
    assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
    assert_eq!(c.command("MAIL FROM:<>").await, "250 2.1.0 Ok");
    assert_eq!(c.command("RCPT TO:<bob@example.com>").await, "250 2.1.5 Ok");
    assert_eq!(
        c.command("DATA").await,
        "354 End data with <CR><LF>.<CR><LF>"
    );
    c.write(b"x\r\n.\r\n").await;
    assert!(c.reply().await.starts_with("250 2.0.0 Ok: queued as "));
    let stored = server.inbox("bob@example.com");
    assert!(String::from_utf8_lossy(&stored[0]).contains(" with ESMTPS id "));
}

#[tokio::test]
async fn idle_timeout_sends_421() {
    let mut setup = Setup::new(SmtpListenerKind::Inbound);
    setup.options.idle_timeout = Duration::from_millis(200);
    let server = TestServer::start(setup).await;
    let mut c = Client::connect(server.addr).await;
    c.reply().await;
    assert_eq!(c.reply().await, "421 4.4.2 Timeout");
    assert!(c.rest().await.is_empty());
}

#[tokio::test]
async fn failed_store_is_not_acknowledged_nor_half_delivered() {
    let mut setup = Setup::new(SmtpListenerKind::Inbound);
    setup.store = Some(Arc::new(FailingStore {
        inner: MemoryStore::new(),
        fail_for: "bob@example.com".into(),
    }));
    let server = TestServer::start(setup).await;
    let mut c = Client::connect(server.addr).await;
    c.reply().await;
    c.command("EHLO a.test").await;
    c.command("MAIL FROM:<>").await;
    assert_eq!(
        c.command("RCPT TO:<alice@example.com>").await,
        "250 2.1.5 Ok"
    );
    assert_eq!(c.command("RCPT TO:<bob@example.com>").await, "250 2.1.5 Ok");
    c.command("DATA").await;
    c.write(b"x\r\n.\r\n").await;
    assert_eq!(
        c.reply().await,
        "451 4.3.0 Temporary failure storing the message, try again later"
    );
    assert!(server.inbox("alice@example.com").is_empty());
    // The session goes on.
    assert_eq!(c.command("NOOP").await, "250 2.0.0 Ok");
}

#[tokio::test]
async fn size_limit_over_the_wire() {
    let mut setup = Setup::new(SmtpListenerKind::Inbound);
    setup.max_message_size = 100_000;
    let server = TestServer::start(setup).await;
    let mut c = Client::connect(server.addr).await;
    c.reply().await;
    let ehlo = c.command("EHLO a.test").await;
    assert!(ehlo.contains("\n250-SIZE 100000\n"), "{ehlo}");
    assert_eq!(
        c.command("MAIL FROM:<> SIZE=100001").await,
        "552 5.3.4 Message size exceeds fixed maximum message size"
    );
    c.command("MAIL FROM:<>").await;
    c.command("RCPT TO:<bob@example.com>").await;
    c.command("DATA").await;
    let line = [b'y'; 998];
    let mut body = Vec::new();
    for _ in 0..200 {
        body.extend_from_slice(&line);
        body.extend_from_slice(b"\r\n");
    }
    c.write(&dot_stuff(&body)).await;
    assert_eq!(c.reply().await, "552 5.3.4 Message too big");
    assert!(server.inbox("bob@example.com").is_empty());
    // Just under the limit goes through.
    c.command("MAIL FROM:<>").await;
    c.command("RCPT TO:<bob@example.com>").await;
    c.command("DATA").await;
    let fits = &body[..99_000];
    c.write(&dot_stuff(fits)).await;
    assert!(c.reply().await.starts_with("250 2.0.0 Ok: queued as "));
    assert_eq!(
        without_trace_headers(&server.inbox("bob@example.com")[0]),
        fits
    );
}

#[tokio::test]
async fn data_over_the_in_flight_budget_gets_452_until_the_other_message_is_stored() {
    let step = crate::smtp::session::DATA_RESERVE_STEP;
    let mut setup = Setup::new(SmtpListenerKind::Inbound);
    let pool = crate::inflight::InFlight::new(step + step / 2);
    setup.inflight = pool.clone();
    let server = TestServer::start(setup).await;
    let mut clients = Vec::new();
    for _ in 0..2 {
        let mut c = Client::connect(server.addr).await;
        c.reply().await;
        c.command("EHLO mx.remote.test").await;
        assert_eq!(
            c.command("MAIL FROM:<sender@remote.test>").await,
            "250 2.1.0 Ok"
        );
        assert_eq!(
            c.command("RCPT TO:<alice@example.com>").await,
            "250 2.1.5 Ok"
        );
        clients.push(c);
    }
    let [first, second] = &mut clients[..] else {
        unreachable!()
    };
    assert_eq!(
        first.command("DATA").await,
        "354 End data with <CR><LF>.<CR><LF>"
    );
    assert_eq!(pool.in_use(), step, "reserved at DATA");
    assert_eq!(
        second.command("DATA").await,
        "452 4.3.1 Insufficient system storage"
    );
    first
        .write(&dot_stuff(b"Subject: one\r\n\r\nfirst\r\n"))
        .await;
    assert!(first.reply().await.starts_with("250 2.0.0 Ok: queued as "));
    assert_eq!(pool.in_use(), 0, "stored: nothing in flight");
    assert_eq!(
        second.command("DATA").await,
        "354 End data with <CR><LF>.<CR><LF>"
    );
    second
        .write(&dot_stuff(b"Subject: two\r\n\r\nsecond\r\n"))
        .await;
    assert!(second.reply().await.starts_with("250 2.0.0 Ok: queued as "));
    assert_eq!(server.inbox("alice@example.com").len(), 2);
    assert_eq!(pool.in_use(), 0);
}

#[tokio::test]
async fn recipient_enumeration_is_cut_off_with_421() {
    let server = TestServer::start(Setup::new(SmtpListenerKind::Inbound)).await;
    let mut c = Client::connect(server.addr).await;
    c.reply().await;
    c.command("EHLO mx.remote.test").await;
    c.command("MAIL FROM:<sender@remote.test>").await;
    let limit = crate::config::SmtpSection::default().max_recipient_refusals;
    for i in 1..limit {
        let reply = c.command(&format!("RCPT TO:<guess{i}@example.com>")).await;
        assert!(reply.starts_with("550 5.1.1 "), "{reply}");
    }
    let reply = c.command("RCPT TO:<last@example.com>").await;
    assert!(reply.starts_with("550 5.1.1 "), "{reply}");
    assert_eq!(
        c.reply().await,
        "421 4.7.0 Too many recipient refusals, closing connection"
    );
    assert!(c.rest().await.is_empty(), "closed after the 421");
}
