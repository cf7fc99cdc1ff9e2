//! Every listener of a real server (in process, on 127.0.0.1) against slow, stalled, too many
//! and lingering clients, with small configured limits. Waits poll with a deadline; the only
//! pacing is the drip of a slow client.

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};

use crate::config::Config;
use crate::server::{self, RunningServer};

/// Longest any expectation may take.
const PATIENCE: Duration = Duration::from_secs(15);

struct Running {
    server: RunningServer,
    _dir: tempfile::TempDir,
}

/// A server with every line-protocol listener and HTTP (Basic against a static directory of
/// one user, alice / pw), plus the given TOML (a `[limits]` section).
async fn start(limits: &str) -> Running {
    let dir = tempfile::tempdir().expect("temp dir");
    let users = dir.path().join("users.toml");
    std::fs::write(
        &users,
        "[[user]]\nname = \"alice@example.com\"\npassword = \"pw\"\naliases = [\"alice\"]\n",
    )
    .expect("users");
    let any = "\"127.0.0.1:0\"";
    let text = format!(
        "[directory]\nkind = \"static\"\npath = \"{}\"\n\
         [imap]\nlisten = {any}\nallow_plaintext_auth = true\n\
         [submission]\nlisten = {any}\nallow_plaintext_auth = true\n\
         [smtp]\nlisten = {any}\n\
         [pop3]\nlisten = {any}\nallow_plaintext_auth = true\n\
         [sieve]\nlisten = {any}\nallow_plaintext_auth = true\n\
         [http]\nlisten = {any}\n[http.auth]\nstrategies = [\"basic\"]\n\
         {limits}\n",
        users.display()
    );
    let config = Config::parse(&text, std::path::Path::new("limits-test.toml")).expect("config");
    let server = server::start(config).await.expect("server starts");
    Running { server, _dir: dir }
}

struct Client {
    tcp: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Self {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        Self {
            tcp,
            buf: Vec::new(),
        }
    }

    /// The next line (without CRLF), or `None` once the server closed.
    async fn line(&mut self) -> Option<String> {
        let by = Instant::now() + PATIENCE;
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..end + 2).collect();
                return Some(String::from_utf8_lossy(&line[..end]).into_owned());
            }
            let mut chunk = [0u8; 4096];
            match timeout_at(by, self.tcp.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return None,
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
                Err(_) => panic!("no line within {PATIENCE:?}; got {:?}", self.buf),
            }
        }
    }

    /// Lines until one starts with `prefix` (inclusive).
    async fn until(&mut self, prefix: &str) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let line = self
                .line()
                .await
                .unwrap_or_else(|| panic!("closed before {prefix:?}; lines: {lines:?}"));
            let done = line.starts_with(prefix);
            lines.push(line);
            if done {
                return lines;
            }
        }
    }

    async fn send(&mut self, text: &str) {
        self.tcp.write_all(text.as_bytes()).await.expect("send");
    }

    /// Sends `text` one byte per tick, forever (the slow client), until the server answers
    /// with a line; returns the lines it sent before closing.
    async fn drip_until_closed(&mut self, text: &str) -> Vec<String> {
        let by = Instant::now() + PATIENCE;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let bytes: Vec<u8> = text.bytes().collect();
        let mut i = 0;
        let mut lines = Vec::new();
        loop {
            let mut chunk = [0u8; 4096];
            tokio::select! {
                _ = tick.tick() => {
                    // A closed connection shows up on the read side.
                    let _ = self.tcp.write_all(&bytes[i % bytes.len()..][..1]).await;
                    i += 1;
                }
                read = self.tcp.read(&mut chunk) => match read {
                    Ok(0) | Err(_) => {
                        let rest = String::from_utf8_lossy(&self.buf).into_owned();
                        lines.extend(rest.split("\r\n").filter(|l| !l.is_empty()).map(str::to_string));
                        return lines;
                    }
                    Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                },
                () = tokio::time::sleep_until(by) => panic!(
                    "still open after {PATIENCE:?} of drip-feeding; got {:?}",
                    String::from_utf8_lossy(&self.buf)
                ),
            }
        }
    }

    /// Waits until the server closes; what it sent meanwhile.
    async fn closed(&mut self) -> String {
        String::from_utf8_lossy(&self.closed_bytes().await).into_owned()
    }

    async fn closed_bytes(&mut self) -> Vec<u8> {
        let by = Instant::now() + PATIENCE;
        loop {
            let mut chunk = [0u8; 4096];
            match timeout_at(by, self.tcp.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return std::mem::take(&mut self.buf),
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
                Err(_) => panic!(
                    "still open after {PATIENCE:?}; got {:?}",
                    String::from_utf8_lossy(&self.buf)
                ),
            }
        }
    }
}

const SHORT_COMMANDS: &str = "[limits.imap]\ncommand_timeout_seconds = 1\n\
     [limits.submission]\ncommand_timeout_seconds = 1\n\
     [limits.smtp]\ncommand_timeout_seconds = 1\n\
     [limits.pop3]\ncommand_timeout_seconds = 1\n\
     [limits.sieve]\ncommand_timeout_seconds = 1\n";

#[tokio::test]
async fn imap_command_drip_fed_byte_by_byte_is_cut_with_bye() {
    let s = start(SHORT_COMMANDS).await;
    let mut c = Client::connect(s.server.addrs.imap.unwrap()).await;
    c.until("* OK").await;
    let lines = c.drip_until_closed("a LOGIN alice pw\r\n").await;
    assert_eq!(
        lines.last().map(String::as_str),
        Some("* BYE Disconnected for inactivity."),
        "{lines:?}"
    );
}

#[tokio::test]
async fn submission_command_drip_fed_byte_by_byte_is_cut_with_421() {
    let s = start(SHORT_COMMANDS).await;
    let mut c = Client::connect(s.server.addrs.submission.unwrap()).await;
    c.until("220 ").await;
    let lines = c.drip_until_closed("EHLO client.example\r\n").await;
    assert!(
        lines.last().is_some_and(|l| l.starts_with("421 4.4.2")),
        "{lines:?}"
    );
}

#[tokio::test]
async fn inbound_smtp_command_drip_fed_byte_by_byte_is_cut_with_421() {
    let s = start(SHORT_COMMANDS).await;
    let mut c = Client::connect(s.server.addrs.smtp.unwrap()).await;
    c.until("220 ").await;
    c.send("EHLO client.example\r\n").await;
    c.until("250 ").await;
    let lines = c.drip_until_closed("MAIL FROM:<a@b.example>\r\n").await;
    assert!(
        lines.last().is_some_and(|l| l.starts_with("421 4.4.2")),
        "{lines:?}"
    );
}

#[tokio::test]
async fn pop3_command_drip_fed_byte_by_byte_is_cut_with_err() {
    let s = start(SHORT_COMMANDS).await;
    let mut c = Client::connect(s.server.addrs.pop3.unwrap()).await;
    c.until("+OK").await;
    let lines = c.drip_until_closed("USER alice\r\n").await;
    assert_eq!(
        lines.last().map(String::as_str),
        Some("-ERR Disconnected for inactivity."),
        "{lines:?}"
    );
}

#[tokio::test]
async fn managesieve_command_drip_fed_byte_by_byte_is_cut_with_bye() {
    let s = start(SHORT_COMMANDS).await;
    let mut c = Client::connect(s.server.addrs.sieve.unwrap()).await;
    c.until("OK").await;
    let lines = c.drip_until_closed("CAPABILITY\r\n").await;
    assert_eq!(
        lines.last().map(String::as_str),
        Some("BYE \"Disconnected for inactivity.\""),
        "{lines:?}"
    );
}

const SHORT_LOGIN: &str = "[limits.imap]\nlogin_timeout_seconds = 1\n\
     [limits.submission]\nlogin_timeout_seconds = 1\n\
     [limits.pop3]\nlogin_timeout_seconds = 1\n\
     [limits.sieve]\nlogin_timeout_seconds = 1\n";

#[tokio::test]
async fn imap_busy_but_never_logging_in_is_cut_at_the_login_deadline() {
    let s = start(SHORT_LOGIN).await;
    let mut c = Client::connect(s.server.addrs.imap.unwrap()).await;
    c.until("* OK").await;
    // Complete commands, each answered at once: only the login deadline can end this.
    let lines = c.drip_until_closed("a NOOP\r\n").await;
    assert!(
        lines.iter().any(|l| l == "a OK NOOP completed."),
        "{lines:?}"
    );
    assert_eq!(
        lines.last().map(String::as_str),
        Some("* BYE Disconnected for inactivity."),
        "{lines:?}"
    );
}

#[tokio::test]
async fn submission_busy_but_never_logging_in_is_cut_at_the_login_deadline() {
    let s = start(SHORT_LOGIN).await;
    let mut c = Client::connect(s.server.addrs.submission.unwrap()).await;
    c.until("220 ").await;
    let lines = c.drip_until_closed("NOOP\r\n").await;
    assert!(lines.iter().any(|l| l.starts_with("250")), "{lines:?}");
    assert!(
        lines.last().is_some_and(|l| l.starts_with("421 4.4.2")),
        "{lines:?}"
    );
}

#[tokio::test]
async fn a_login_in_time_lifts_the_login_deadline() {
    let s = start(SHORT_LOGIN).await;
    let mut c = Client::connect(s.server.addrs.imap.unwrap()).await;
    c.until("* OK").await;
    c.send("a LOGIN alice pw\r\n").await;
    c.until("a OK").await;
    // Well past the login deadline, the logged-in session still answers.
    let past = Instant::now() + Duration::from_millis(1500);
    let mut n = 0;
    while Instant::now() < past {
        n += 1;
        c.send(&format!("n{n} NOOP\r\n")).await;
        c.until(&format!("n{n} OK")).await;
    }
}

#[tokio::test]
async fn http_headers_never_finished_are_cut() {
    let s = start("[limits.http]\nheader_timeout_seconds = 1\n").await;
    let mut c = Client::connect(s.server.addrs.http.unwrap()).await;
    c.send("GET /.well-known/oauth-protected-resource HTTP/1.1\r\nHost: x\r\n")
        .await;
    // One header byte at a time, never the blank line that ends the headers.
    c.drip_until_closed("X-Slow: aaaaaaaaaaaaaaaaaaaaaaaa\r\n")
        .await;
}

#[tokio::test]
async fn http_request_body_never_finished_gets_503() {
    let s = start("[limits.http]\nrequest_timeout_seconds = 1\n").await;
    let mut c = Client::connect(s.server.addrs.http.unwrap()).await;
    let auth = base64::engine::general_purpose::STANDARD.encode("alice:pw");
    // Complete headers (the header timeout is satisfied), then a body that never ends.
    c.send(&format!(
        "POST /jmap HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"using\""
    ))
    .await;
    let status = c.line().await.expect("a response");
    assert!(status.starts_with("HTTP/1.1 503"), "{status:?}");
    // README promises `Retry-After` on every 503.
    let mut headers = Vec::new();
    while let Some(line) = c.line().await {
        if line.is_empty() {
            break;
        }
        headers.push(line.to_ascii_lowercase());
    }
    assert!(
        headers.iter().any(|h| h.starts_with("retry-after: ")),
        "{headers:?}"
    );
}

/// A JMAP WebSocket opened by hand, so the test sees the server's frames as they are.
async fn websocket(http: SocketAddr) -> Client {
    let mut c = Client::connect(http).await;
    let auth = base64::engine::general_purpose::STANDARD.encode("alice:pw");
    c.send(&format!(
        "GET /jmap/ws HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\n\
         Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: jmap\r\n\r\n"
    ))
    .await;
    let status = c.line().await.expect("response");
    assert!(status.starts_with("HTTP/1.1 101"), "{status:?}");
    while c.line().await.is_some_and(|header| !header.is_empty()) {}
    c
}

/// Server frames (unmasked, short payloads) as (opcode, payload).
fn frames(bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    let mut rest = bytes;
    while rest.len() >= 2 {
        let len = usize::from(rest[1] & 0x7f).min(rest.len() - 2);
        frames.push((rest[0] & 0x0f, rest[2..2 + len].to_vec()));
        rest = &rest[2 + len..];
    }
    frames
}

#[tokio::test]
async fn idle_jmap_websocket_is_pinged_then_closed() {
    let s = start("[limits.http]\nwebsocket_ping_seconds = 1\nwebsocket_idle_seconds = 2\n").await;
    let mut c = websocket(s.server.addrs.http.unwrap()).await;
    // This client never answers: the raw frames the server sends are a ping, then a close.
    let opcodes = frames(&c.closed_bytes().await);
    assert_eq!(
        opcodes.first().map(|f| f.0),
        Some(0x9),
        "a ping first: {opcodes:?}"
    );
    let close = opcodes.last().expect("frames");
    assert_eq!(close.0, 0x8, "a close last: {opcodes:?}");
    assert_eq!(
        close.1[..2],
        1001u16.to_be_bytes(),
        "going away: {opcodes:?}"
    );
}

#[tokio::test]
async fn the_connection_over_the_global_cap_is_refused_in_every_protocol() {
    let s = start(
        "[limits.imap]\nmax_connections = 2\n[limits.submission]\nmax_connections = 2\n\
         [limits.pop3]\nmax_connections = 2\n[limits.sieve]\nmax_connections = 2\n\
         [limits.http]\nmax_connections = 2\n",
    )
    .await;
    let a = &s.server.addrs;
    for (addr, greeting, refusal) in [
        (a.imap, "* OK", "* BYE [UNAVAILABLE] Too many connections"),
        (a.submission, "220 ", "421 4.7.0 "),
        (a.pop3, "+OK", "-ERR [SYS/TEMP] Too many connections"),
        (a.sieve, "OK", "BYE (TRYLATER) \"Too many connections"),
    ] {
        let addr = addr.unwrap();
        let mut first = Client::connect(addr).await;
        first.until(greeting).await;
        let mut second = Client::connect(addr).await;
        second.until(greeting).await;
        let mut third = Client::connect(addr).await;
        let got = third.closed().await;
        assert!(got.starts_with(refusal), "{addr}: {got:?}");
        // A freed slot admits the next connection.
        drop(first);
        admitted_again(addr, refusal).await;
    }
    let http = a.http.unwrap();
    let _first = Client::connect(http).await;
    let _second = Client::connect(http).await;
    let mut third = Client::connect(http).await;
    let got = third.closed().await;
    assert!(got.starts_with("HTTP/1.1 503"), "{got:?}");
    let (head, body) = got.split_once("\r\n\r\n").expect("head and body");
    assert!(
        head.contains(&format!("Content-Length: {}\r\n", body.len())),
        "{got:?}"
    );
}

/// Polls until a new connection to `addr` is not refused (the freed slot is seen).
async fn admitted_again(addr: SocketAddr, refusal: &str) {
    let by = Instant::now() + PATIENCE;
    loop {
        let mut c = Client::connect(addr).await;
        if c.line().await.is_some_and(|l| !l.starts_with(refusal)) {
            return;
        }
        assert!(Instant::now() < by, "{addr}: no slot freed");
    }
}

#[tokio::test]
async fn the_connection_over_the_per_address_cap_is_refused() {
    let s = start(
        "[limits.imap]\nmax_connections_per_address = 1\n\
         [limits.smtp]\nmax_connections_per_address = 1\n",
    )
    .await;
    let imap = s.server.addrs.imap.unwrap();
    let mut first = Client::connect(imap).await;
    first.until("* OK").await;
    let got = Client::connect(imap).await.closed().await;
    assert!(
        got.starts_with("* BYE [UNAVAILABLE] Too many connections"),
        "{got:?}"
    );
    let smtp = s.server.addrs.smtp.unwrap();
    let mut first = Client::connect(smtp).await;
    first.until("220 ").await;
    let got = Client::connect(smtp).await.closed().await;
    assert!(got.starts_with("421 4.7.0 "), "{got:?}");
}

#[tokio::test]
async fn shutdown_ends_every_protocols_sessions_with_their_goodbye() {
    let s = start("[limits]\nshutdown_grace_seconds = 5\n").await;
    let a = s.server.addrs.clone();
    let mut imap = Client::connect(a.imap.unwrap()).await;
    imap.until("* OK").await;
    imap.send("a LOGIN alice pw\r\n").await;
    imap.until("a OK").await;
    let mut submission = Client::connect(a.submission.unwrap()).await;
    submission.until("220 ").await;
    let mut smtp = Client::connect(a.smtp.unwrap()).await;
    smtp.until("220 ").await;
    // In the middle of a transaction: that message is not accepted.
    smtp.send("EHLO client.example\r\nMAIL FROM:<a@b.example>\r\n")
        .await;
    smtp.until("250 2.1.0").await;
    let mut pop3 = Client::connect(a.pop3.unwrap()).await;
    pop3.until("+OK").await;
    let mut sieve = Client::connect(a.sieve.unwrap()).await;
    sieve.until("OK").await;
    let mut ws = websocket(a.http.unwrap()).await;

    let stopping = tokio::spawn(s.server.shutdown());
    assert_eq!(
        imap.closed().await,
        "* BYE [UNAVAILABLE] Server shutting down, try again later.\r\n"
    );
    assert!(submission.closed().await.starts_with("421 4.3.2 "));
    assert!(smtp.closed().await.starts_with("421 4.3.2 "));
    assert_eq!(
        pop3.closed().await,
        "-ERR [SYS/TEMP] Server shutting down, try again later.\r\n"
    );
    assert_eq!(
        sieve.closed().await,
        "BYE (TRYLATER) \"Server shutting down, try again later.\"\r\n"
    );
    let close = frames(&ws.closed_bytes().await);
    assert!(
        close
            .iter()
            .any(|(op, payload)| *op == 0x8 && payload[..2] == 1001u16.to_be_bytes()),
        "{close:?}"
    );
    tokio::time::timeout(PATIENCE, stopping)
        .await
        .expect("shutdown returns once the sessions are gone")
        .expect("shutdown task");
    // Nothing listens any more.
    assert!(TcpStream::connect(a.imap.unwrap()).await.is_err());
}

#[tokio::test]
async fn imap_client_that_never_reads_is_dropped_at_the_write_deadline() {
    let s = start("[limits.imap]\nwrite_timeout_seconds = 1\n").await;
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    // A small window fills fast: the server's replies soon have nowhere to go.
    socket.set_recv_buffer_size(4096).expect("rcvbuf");
    let tcp = socket
        .connect(s.server.addrs.imap.unwrap())
        .await
        .expect("connect");
    let (_unread, mut writer) = tcp.into_split();
    // Pipelined commands, answers never read. The server reads the next command only once
    // the previous answer is written, so what it holds stays bounded; the write deadline is
    // what ends the connection, which this writer sees as a failed write (reset).
    let pipelined = "a CAPABILITY\r\n".repeat(64);
    let writing = tokio::spawn(async move {
        loop {
            if let Err(e) = writer.write_all(pipelined.as_bytes()).await {
                return e;
            }
        }
    });
    let error = tokio::time::timeout(PATIENCE, writing)
        .await
        .expect("the server drops a client that does not read")
        .expect("writer task");
    assert!(
        matches!(
            error.kind(),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
        ),
        "{error}"
    );
}

#[tokio::test]
async fn http_client_that_never_reads_is_dropped_at_the_write_deadline() {
    let s = start("[limits.http]\nwrite_timeout_seconds = 1\n").await;
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("rcvbuf");
    let tcp = socket
        .connect(s.server.addrs.http.unwrap())
        .await
        .expect("connect");
    let (_unread, mut writer) = tcp.into_split();
    // Pipelined requests whose responses are never read: the same socket wrapper bounds
    // EventSource events, WebSocket frames and downloads.
    let pipelined =
        "GET /.well-known/oauth-protected-resource HTTP/1.1\r\nHost: x\r\n\r\n".repeat(32);
    let writing = tokio::spawn(async move {
        loop {
            if let Err(e) = writer.write_all(pipelined.as_bytes()).await {
                return e;
            }
        }
    });
    let error = tokio::time::timeout(PATIENCE, writing)
        .await
        .expect("the server drops a client that does not read")
        .expect("writer task");
    assert!(
        matches!(
            error.kind(),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
        ),
        "{error}"
    );
}
