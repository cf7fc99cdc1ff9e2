//! Connection-level tests: a real listener on 127.0.0.1:0, STARTTLS with the test kit's
//! certificate, the real PLAIN and OAUTHBEARER over the test doubles, a real revocation service
//! over the memory store ending live sessions.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use super::session::tests::test_check;
use super::{ConnectionOptions, SieveContext, serve_with};
use crate::auth::oidc::ValidatedToken;
use crate::auth::revocation::{Revocation, RevocationService};
use crate::config::SieveSection;
use crate::store::{ScriptLimits, SieveScripts};
use crate::testkit::revocation::{RevocableBackends, now};
use crate::testkit::{ISSUER, TestValidator};

/// Per-read limit: generous, tests never wait for it unless something is broken.
const READ_LIMIT: Duration = Duration::from_secs(10);
const LOGGED_OUT: &str =
    "BYE \"Session revoked: the session was logged out at the identity provider.\"";

struct Server {
    addr: SocketAddr,
    scripts: Arc<SieveScripts>,
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
    async fn start(config: SieveSection) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let kit = RevocableBackends::new(false);
        let registry = kit.registry(&["PLAIN", "OAUTHBEARER"]);
        let RevocableBackends {
            service,
            tokens,
            backends,
        } = kit;
        let scripts = Arc::new(SieveScripts::new(ScriptLimits {
            max_script_size: config.max_script_size,
            max_scripts: config.max_scripts,
        }));
        let ctx = Arc::new(SieveContext {
            hostname: "localhost".into(),
            config,
            registry,
            backends,
            scripts: scripts.clone(),
            check: test_check(),
            tls: Some(crate::testkit::tls::acceptor()),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(serve_with(listener, ctx, ConnectionOptions::default()));
        Self {
            addr,
            scripts,
            service,
            tokens,
            task,
            _dir: dir,
        }
    }

    /// Registers a token for alice in IdP session `sid`; returns it.
    fn token(&self, sid: &str) -> String {
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
        token
    }

    /// A client after STARTTLS, logged in with OAUTHBEARER as alice in IdP session `sid`.
    async fn bearer_client(&self, sid: &str) -> Client {
        let token = self.token(sid);
        let mut c = Client::starttls(self.addr).await;
        let ir = BASE64.encode(format!("n,,\x01auth=Bearer {token}\x01\x01"));
        c.write(format!("AUTHENTICATE \"OAUTHBEARER\" {{{}+}}\r\n{ir}\r\n", ir.len()).as_bytes())
            .await;
        assert_eq!(c.line().await, "OK \"Logged in.\"");
        c
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

    fn live_sessions(&self) -> usize {
        self.service.registry().len()
    }
}

enum Stream {
    Plain(BufReader<TcpStream>),
    Tls(Box<BufReader<tokio_rustls::client::TlsStream<TcpStream>>>),
    Closed,
}

/// A raw ManageSieve client reading line by line.
struct Client {
    stream: Stream,
}

impl Client {
    /// Connects and reads the greeting up to its `OK`.
    async fn connect(addr: SocketAddr) -> (Self, Vec<String>) {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let mut c = Self {
            stream: Stream::Plain(BufReader::new(tcp)),
        };
        let greeting = c.until_ok().await;
        (c, greeting)
    }

    /// Connects, STARTTLS, and reads the capabilities sent again after the handshake.
    async fn starttls(addr: SocketAddr) -> Self {
        let (mut c, _) = Self::connect(addr).await;
        c.write(b"STARTTLS\r\n").await;
        assert_eq!(c.line().await, "OK \"Begin TLS negotiation now.\"");
        let Stream::Plain(reader) = std::mem::replace(&mut c.stream, Stream::Closed) else {
            panic!("not a plain connection");
        };
        assert!(
            reader.buffer().is_empty(),
            "bytes after the STARTTLS go-ahead"
        );
        c.stream = Stream::Tls(Box::new(BufReader::new(
            crate::testkit::tls::connect(reader.into_inner()).await,
        )));
        let caps = c.until_ok().await;
        assert_eq!(
            caps.last().map(String::as_str),
            Some("OK \"TLS negotiation successful.\"")
        );
        assert!(
            caps.contains(&"\"SASL\" \"PLAIN OAUTHBEARER\"".to_string()),
            "{caps:?}"
        );
        c
    }

    async fn write(&mut self, bytes: &[u8]) {
        let written = match &mut self.stream {
            Stream::Plain(s) => s.get_mut().write_all(bytes).await,
            Stream::Tls(s) => {
                let s = s.get_mut();
                match s.write_all(bytes).await {
                    Ok(()) => s.flush().await,
                    Err(e) => Err(e),
                }
            }
            Stream::Closed => panic!("closed"),
        };
        written.expect("write");
    }

    /// One line without its CRLF; `None` at the end of the stream.
    async fn try_line(&mut self) -> Option<String> {
        let mut line = String::new();
        let read = match &mut self.stream {
            Stream::Plain(s) => tokio::time::timeout(READ_LIMIT, s.read_line(&mut line)).await,
            Stream::Tls(s) => tokio::time::timeout(READ_LIMIT, s.read_line(&mut line)).await,
            Stream::Closed => panic!("closed"),
        };
        let n = read.expect("a line within the deadline").unwrap_or(0);
        if n == 0 {
            return None;
        }
        assert!(line.ends_with("\r\n"), "line without CRLF: {line:?}");
        Some(line.trim_end_matches("\r\n").to_string())
    }

    async fn line(&mut self) -> String {
        self.try_line()
            .await
            .expect("a line, not the end of the stream")
    }

    /// Lines up to and including the first `OK`/`NO`/`BYE`.
    async fn until_ok(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let line = self.line().await;
            let done = ["OK", "NO", "BYE"]
                .iter()
                .any(|s| line == *s || line.starts_with(&format!("{s} ")));
            lines.push(line);
            if done {
                return lines;
            }
        }
    }

    async fn command(&mut self, line: &str) -> Vec<String> {
        self.write(format!("{line}\r\n").as_bytes()).await;
        self.until_ok().await
    }

    /// Reads to the end of the stream; what came.
    async fn rest(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        let read = match &mut self.stream {
            Stream::Plain(s) => tokio::time::timeout(READ_LIMIT, s.read_to_end(&mut out)).await,
            Stream::Tls(s) => tokio::time::timeout(READ_LIMIT, s.read_to_end(&mut out)).await,
            Stream::Closed => panic!("closed"),
        };
        // A TLS peer may close without close_notify after BYE; either way it is the end.
        let _ = read.expect("EOF within the deadline");
        out
    }
}

#[tokio::test]
async fn starttls_plain_login_and_a_script_round_trip() {
    let server = Server::start(SieveSection::default()).await;
    let (mut c, greeting) = Client::connect(server.addr).await;
    assert_eq!(
        greeting,
        [
            "\"IMPLEMENTATION\" \"mail-oidc\"",
            "\"SASL\" \"\"",
            &format!(
                "\"SIEVE\" \"{}\"",
                "fileinto envelope copy imap4flags body comparator-i;octet comparator-i;ascii-casemap"
            ),
            "\"STARTTLS\"",
            "\"VERSION\" \"1.0\"",
            "\"UNAUTHENTICATE\"",
            "OK \"localhost mail-oidc ManageSieve ready.\"",
        ]
    );
    let plain = BASE64.encode("\0alice\0alicepw");
    assert_eq!(
        c.command(&format!("AUTHENTICATE \"PLAIN\" \"{plain}\""))
            .await,
        ["NO (ENCRYPT-NEEDED) \"Plaintext authentication disallowed on non-secure connections.\""]
    );
    drop(c);

    let mut c = Client::starttls(server.addr).await;
    // sieve-connect's form: the initial response as a literal.
    c.write(format!("AUTHENTICATE \"PLAIN\" {{{}+}}\r\n{plain}\r\n", plain.len()).as_bytes())
        .await;
    assert_eq!(c.line().await, "OK \"Logged in.\"");
    let script = "require \"fileinto\";\r\nfileinto \"Junk\";\r\n";
    c.write(format!("PUTSCRIPT \"junk\" {{{}+}}\r\n{script}\r\n", script.len()).as_bytes())
        .await;
    assert_eq!(c.line().await, "OK \"Putscript completed.\"");
    assert_eq!(
        c.command("SETACTIVE \"junk\"").await,
        ["OK \"Setactive completed.\""]
    );
    assert_eq!(
        c.command("LISTSCRIPTS").await,
        ["\"junk\" ACTIVE", "OK \"Listscripts completed.\""]
    );
    assert_eq!(
        c.command("GETSCRIPT \"junk\"").await,
        [
            &format!("{{{}}}", script.len()),
            "require \"fileinto\";",
            "fileinto \"Junk\";",
            "",
            "OK \"Getscript completed.\"",
        ]
    );
    assert_eq!(
        server.scripts.active("alice@example.com"),
        Some(("junk".into(), script.into()))
    );
    assert_eq!(c.command("LOGOUT").await, ["OK \"Logout completed.\""]);
    assert!(c.rest().await.is_empty());
}

#[tokio::test]
async fn revocation_ends_the_session_with_bye_and_spares_others() {
    let server = Server::start(SieveSection::default()).await;
    let mut doomed = server.bearer_client("s-doomed").await;
    let mut spared = server.bearer_client("s-spared").await;
    assert_eq!(server.live_sessions(), 2);
    assert_eq!(server.logout("s-doomed").await, 1);
    assert_eq!(doomed.line().await, LOGGED_OUT);
    assert!(doomed.rest().await.is_empty(), "closed after BYE");
    assert_eq!(spared.command("NOOP").await, ["OK \"Done\""]);
    // The old token opens nothing any more.
    let token = server.token("s-doomed");
    let mut again = Client::starttls(server.addr).await;
    let ir = BASE64.encode(format!("n,,\x01auth=Bearer {token}\x01\x01"));
    again
        .write(format!("AUTHENTICATE \"OAUTHBEARER\" \"{ir}\"\r\n").as_bytes())
        .await;
    let challenge = again.line().await;
    assert!(
        challenge.starts_with('"'),
        "an RFC 7628 challenge: {challenge}"
    );
    assert_eq!(
        again.command("\"AQ==\"").await,
        ["NO \"Authentication failed.\""]
    );
}

#[tokio::test]
async fn revocation_in_the_middle_of_a_putscript_drops_it() {
    let server = Server::start(SieveSection::default()).await;
    let mut c = server.bearer_client("s-put").await;
    c.write(b"PUTSCRIPT \"half\" {100+}\r\nrequire").await;
    // The command is not complete, so nothing answers it; the revocation does.
    server.logout("s-put").await;
    assert_eq!(c.line().await, LOGGED_OUT);
    assert!(c.rest().await.is_empty());
    assert!(server.scripts.list("alice@example.com").is_empty());
}

#[tokio::test]
async fn unauthenticate_deregisters_the_live_session() {
    let server = Server::start(SieveSection::default()).await;
    let mut c = server.bearer_client("s-unauth").await;
    assert_eq!(server.live_sessions(), 1);
    assert_eq!(
        c.command("UNAUTHENTICATE").await,
        ["OK \"Unauthenticated.\""]
    );
    // The connection deregisters before it reads again: NOOP's answer proves it has.
    assert_eq!(c.command("NOOP").await, ["OK \"Done\""]);
    assert_eq!(server.live_sessions(), 0);
    assert_eq!(server.logout("s-unauth").await, 0);
    // A second login registers again, under the new session.
    let token = server.token("s-second");
    let ir = BASE64.encode(format!("n,,\x01auth=Bearer {token}\x01\x01"));
    assert_eq!(
        c.command(&format!("AUTHENTICATE \"OAUTHBEARER\" \"{ir}\""))
            .await,
        ["OK \"Logged in.\""]
    );
    assert_eq!(c.command("NOOP").await, ["OK \"Done\""]);
    assert_eq!(server.live_sessions(), 1);
    assert_eq!(server.logout("s-second").await, 1);
    assert_eq!(c.line().await, LOGGED_OUT);
}

#[tokio::test]
async fn too_many_failures_then_bye_and_close() {
    let server = Server::start(SieveSection::default()).await;
    let mut c = Client::starttls(server.addr).await;
    let wrong = BASE64.encode("\0alice\0wrong");
    for _ in 1..3 {
        assert_eq!(
            c.command(&format!("AUTHENTICATE \"PLAIN\" \"{wrong}\""))
                .await,
            ["NO \"Authentication failed.\""]
        );
    }
    assert_eq!(
        c.command(&format!("AUTHENTICATE \"PLAIN\" \"{wrong}\""))
            .await,
        ["NO \"Authentication failed.\""]
    );
    assert_eq!(
        c.line().await,
        "BYE \"Too many invalid authentication attempts.\""
    );
    assert!(c.rest().await.is_empty());
}

#[tokio::test]
async fn idle_connection_gets_bye() {
    let server = Server::start(SieveSection {
        preauth_timeout_seconds: 1,
        ..SieveSection::default()
    })
    .await;
    let (mut c, _) = Client::connect(server.addr).await;
    assert_eq!(c.line().await, "BYE \"Disconnected for inactivity.\"");
    assert!(c.try_line().await.is_none());
}
