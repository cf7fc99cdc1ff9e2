//! The budget through real listeners: failures on one connection (or protocol, or address, or
//! instance) delay logins on another. Each test starts whole servers on loopback ports; the
//! delays are long (minutes) so nothing depends on timing, and a hand-moved clock stands in
//! for waiting.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpSocket;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use super::{FailureBudget, LoginThrottle, MemoryBudget, Policy, ThrottleSettings};
use crate::config::Config;
use crate::server::{self, RunningServer};
use crate::testkit::redis_server::RedisServer;
use crate::testkit::revocation::unique;

const THROTTLED_IMAP: &str = "a NO [UNAVAILABLE] Too many failed logins from this address or for this user; try again later.";

/// A server on every mail protocol and HTTP, with alice and bob in a static directory.
/// `throttle` is the `[login_throttle]` body.
fn config(dir: &Path, throttle: &str) -> Config {
    let users = dir.join("users.toml");
    std::fs::write(
        &users,
        "[[user]]\nname = \"alice@example.com\"\npassword = \"alicepw\"\naliases = [\"alice\"]\n\
         [[user]]\nname = \"bob@example.com\"\npassword = \"bobpw\"\naliases = [\"bob\"]\n",
    )
    .expect("users");
    let text = format!(
        "[directory]\nkind = \"static\"\npath = \"{}\"\n\
         [imap]\nlisten = \"127.0.0.1:0\"\nallow_plaintext_auth = true\n\
         [submission]\nlisten = \"127.0.0.1:0\"\nallow_plaintext_auth = true\n\
         [pop3]\nlisten = \"127.0.0.1:0\"\nallow_plaintext_auth = true\n\
         [sieve]\nlisten = \"127.0.0.1:0\"\nallow_plaintext_auth = true\n\
         [http]\nlisten = \"127.0.0.1:0\"\n\
         [login_throttle]\n{throttle}\n",
        users.display()
    );
    Config::parse(&text, Path::new("test.toml")).expect("config")
}

/// Two free failures per address, many per user; long delays.
const PER_ADDRESS: &str = "free_failures_per_address = 2\nfree_failures_per_user = 100\n\
                           base_delay_seconds = 300\nmax_delay_seconds = 600\n";
/// Two free failures per user name, many per address.
const PER_USER: &str = "free_failures_per_address = 100\nfree_failures_per_user = 2\n\
                        base_delay_seconds = 300\nmax_delay_seconds = 600\n";

/// Starts a server; its throttle (when any) runs on `clock` if given.
async fn start(
    config: Config,
    clock: Option<Arc<AtomicU64>>,
) -> (RunningServer, Arc<LoginThrottle>) {
    let mut services = server::build_services(&config).expect("services");
    let mut throttle = services
        .backends
        .throttle
        .clone()
        .expect("throttle enabled");
    if let Some(clock) = clock {
        let t = &config.login_throttle;
        let policy = |free_failures| Policy {
            free_failures,
            base_delay: std::time::Duration::from_secs(t.base_delay_seconds),
            max_delay: std::time::Duration::from_secs(t.max_delay_seconds),
        };
        throttle = LoginThrottle::with_clock(
            Arc::new(MemoryBudget::new()) as Arc<dyn FailureBudget>,
            ThrottleSettings {
                per_address: policy(t.free_failures_per_address),
                per_user: policy(t.free_failures_per_user),
                window: std::time::Duration::from_secs(t.window_seconds),
                fail_open: false,
            },
            "",
            Arc::new(move || clock.load(Ordering::SeqCst)),
        );
        services.backends.throttle = Some(throttle.clone());
    }
    let running = server::start_with(config, services)
        .await
        .expect("server starts");
    (running, throttle)
}

/// A line-oriented client connected from `from` (a loopback address).
struct Conn {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl Conn {
    async fn open(from: &str, to: SocketAddr) -> Self {
        let socket = TcpSocket::new_v4().expect("socket");
        socket
            .bind(format!("{from}:0").parse().expect("addr"))
            .expect("bind the source address");
        let stream = socket.connect(to).await.expect("connect");
        let (read, writer) = stream.into_split();
        Self {
            reader: BufReader::new(read),
            writer,
        }
    }

    async fn line(&mut self) -> String {
        let mut line = String::new();
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(20),
            self.reader.read_line(&mut line),
        )
        .await
        .expect("a reply in time")
        .expect("read");
        assert!(read > 0, "connection closed");
        line.trim_end().to_string()
    }

    async fn send(&mut self, line: &str) {
        self.writer
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .expect("write");
    }

    /// Reads until a line starting with `prefix`; returns that line.
    async fn until(&mut self, prefix: &str) -> String {
        loop {
            let line = self.line().await;
            if line.starts_with(prefix) {
                return line;
            }
        }
    }

    /// Sends `line` and returns the reply line starting with `prefix`.
    async fn ask(&mut self, line: &str, prefix: &str) -> String {
        self.send(line).await;
        self.until(prefix).await
    }
}

/// One IMAP LOGIN on a fresh connection from `from`; the tagged reply.
async fn imap_login(from: &str, server: &RunningServer, user: &str, password: &str) -> String {
    let mut c = Conn::open(from, server.addrs.imap.expect("imap")).await;
    c.until("* OK").await;
    c.ask(&format!("a LOGIN {user} {password}"), "a ").await
}

fn plain(user: &str, password: &str) -> String {
    BASE64.encode(format!("\0{user}\0{password}"))
}

async fn http_basic(
    from: &str,
    server: &RunningServer,
    user: &str,
    password: &str,
) -> reqwest::Response {
    let client = reqwest::Client::builder()
        .local_address(Some(from.parse().expect("ip")))
        .build()
        .expect("client");
    let url = format!("http://{}/whoami", server.addrs.http.expect("http"));
    client
        .get(url)
        .basic_auth(user, Some(password))
        .send()
        .await
        .expect("http")
}

fn ip(s: &str) -> Option<std::net::IpAddr> {
    Some(s.parse().expect("ip"))
}

#[tokio::test]
async fn failures_over_several_connections_throttle_a_fresh_connection() {
    let dir = tempfile::tempdir().expect("dir");
    let (server, throttle) = start(config(dir.path(), PER_ADDRESS), None).await;
    for _ in 0..3 {
        assert_eq!(
            imap_login("127.0.0.1", &server, "bob", "wrong").await,
            "a NO [AUTHENTICATIONFAILED] Authentication failed."
        );
    }
    // The right password on a fresh connection is not even checked.
    assert_eq!(
        imap_login("127.0.0.1", &server, "bob", "bobpw").await,
        THROTTLED_IMAP
    );
    assert_eq!(
        imap_login("127.0.0.1", &server, "alice", "alicepw").await,
        THROTTLED_IMAP
    );
    // Refusals are not counted: only the three failures.
    assert_eq!(
        throttle.failures(ip("127.0.0.1"), Some("bob")).await,
        Ok((3, 3))
    );
    // They do count toward the connection's own limit (imap.max_auth_failures = 3).
    let mut c = Conn::open("127.0.0.1", server.addrs.imap.expect("imap")).await;
    c.until("* OK").await;
    for _ in 0..3 {
        assert_eq!(c.ask("a LOGIN bob bobpw", "a ").await, THROTTLED_IMAP);
    }
    assert_eq!(
        c.line().await,
        "* BYE Too many invalid authentication attempts."
    );
    server.shutdown().await;
}

#[tokio::test]
async fn imap_failures_throttle_pop3_smtp_sieve_and_http_basic() {
    let dir = tempfile::tempdir().expect("dir");
    let (server, _) = start(config(dir.path(), PER_ADDRESS), None).await;
    for _ in 0..3 {
        imap_login("127.0.0.1", &server, "bob", "wrong").await;
    }
    let mut pop = Conn::open("127.0.0.1", server.addrs.pop3.expect("pop3")).await;
    pop.until("+OK").await;
    pop.ask("USER alice", "+OK").await;
    assert_eq!(
        pop.ask("PASS alicepw", "-ERR").await,
        "-ERR [SYS/TEMP] Too many failed logins from this address or for this user; try again later."
    );

    let mut smtp = Conn::open("127.0.0.1", server.addrs.submission.expect("submission")).await;
    smtp.until("220 ").await;
    smtp.ask("EHLO client.example", "250 ").await;
    assert_eq!(
        smtp.ask(&format!("AUTH PLAIN {}", plain("alice", "alicepw")), "")
            .await,
        "454 4.7.0 Too many failed logins from this address or for this user; try again later"
    );

    let mut sieve = Conn::open("127.0.0.1", server.addrs.sieve.expect("sieve")).await;
    sieve.until("OK").await;
    assert_eq!(
        sieve
            .ask(
                &format!("AUTHENTICATE \"PLAIN\" \"{}\"", plain("alice", "alicepw")),
                ""
            )
            .await,
        "NO (TRYLATER) \"Too many failed logins from this address or for this user; try again later.\""
    );

    let response = http_basic("127.0.0.1", &server, "alice@example.com", "alicepw").await;
    assert_eq!(response.status(), reqwest::StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!(retry_after > 0 && retry_after <= 600, "{retry_after}");
    server.shutdown().await;
}

#[tokio::test]
async fn http_basic_failures_count_for_imap() {
    let dir = tempfile::tempdir().expect("dir");
    let (server, throttle) = start(config(dir.path(), PER_ADDRESS), None).await;
    for _ in 0..3 {
        let r = http_basic("127.0.0.1", &server, "bob@example.com", "wrong").await;
        assert_eq!(r.status(), reqwest::StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        throttle
            .failures(ip("127.0.0.1"), Some("bob@example.com"))
            .await,
        Ok((3, 3))
    );
    assert_eq!(
        imap_login("127.0.0.1", &server, "alice", "alicepw").await,
        THROTTLED_IMAP
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_user_name_is_throttled_from_another_address() {
    let dir = tempfile::tempdir().expect("dir");
    let (server, _) = start(config(dir.path(), PER_USER), None).await;
    for _ in 0..3 {
        imap_login("127.0.0.1", &server, "bob", "wrong").await;
    }
    // Same name, other address, other protocol, other case: delayed.
    let mut pop = Conn::open("127.0.0.2", server.addrs.pop3.expect("pop3")).await;
    pop.until("+OK").await;
    pop.ask("USER BOB", "+OK").await;
    assert!(
        pop.ask("PASS bobpw", "-ERR")
            .await
            .starts_with("-ERR [SYS/TEMP] Too many failed logins")
    );
    assert_eq!(
        imap_login("127.0.0.2", &server, "bob", "bobpw").await,
        THROTTLED_IMAP
    );
    // Another user from that address is not.
    assert!(
        imap_login("127.0.0.2", &server, "alice", "alicepw")
            .await
            .starts_with("a OK")
    );
    server.shutdown().await;
}

#[tokio::test]
async fn success_after_the_delay_logs_in_and_forgives_only_its_own_failures() {
    let dir = tempfile::tempdir().expect("dir");
    let now = Arc::new(AtomicU64::new(1_000_000));
    let (server, throttle) = start(config(dir.path(), PER_USER), Some(now.clone())).await;
    imap_login("127.0.0.2", &server, "bob", "wrong").await;
    imap_login("127.0.0.1", &server, "bob", "wrong").await;
    imap_login("127.0.0.1", &server, "bob", "wrong").await;
    assert_eq!(
        imap_login("127.0.0.1", &server, "bob", "bobpw").await,
        THROTTLED_IMAP
    );
    now.fetch_add(300_000, Ordering::SeqCst);
    assert!(
        imap_login("127.0.0.1", &server, "bob", "bobpw")
            .await
            .starts_with("a OK")
    );
    // Bob's two typos from 127.0.0.1 are forgiven; the failure from 127.0.0.2 stays.
    assert_eq!(
        throttle.failures(ip("127.0.0.1"), Some("bob")).await,
        Ok((0, 1))
    );
    assert_eq!(
        throttle.failures(ip("127.0.0.2"), Some("bob")).await,
        Ok((1, 1))
    );
    // So a later typo is free again.
    assert_eq!(
        imap_login("127.0.0.1", &server, "bob", "wrong").await,
        "a NO [AUTHENTICATIONFAILED] Authentication failed."
    );
    assert!(
        imap_login("127.0.0.1", &server, "bob", "bobpw")
            .await
            .starts_with("a OK")
    );
    server.shutdown().await;
}

#[tokio::test]
async fn two_instances_sharing_redis_share_the_budget() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("dir");
    let shared = format!(
        "{PER_ADDRESS}store = \"redis\"\nredis_url = \"{}\"\nkey_prefix = \"{}\"\n",
        redis.url(),
        unique("shared:")
    );
    let (a, _) = start(config(dir.path(), &shared), None).await;
    let (b, b_throttle) = start(config(dir.path(), &shared), None).await;
    for _ in 0..3 {
        imap_login("127.0.0.1", &a, "bob", "wrong").await;
    }
    assert_eq!(
        b_throttle.failures(ip("127.0.0.1"), Some("bob")).await,
        Ok((3, 3))
    );
    assert_eq!(
        imap_login("127.0.0.1", &b, "alice", "alicepw").await,
        THROTTLED_IMAP
    );
    let r = http_basic("127.0.0.1", &b, "alice@example.com", "alicepw").await;
    assert_eq!(r.status(), reqwest::StatusCode::TOO_MANY_REQUESTS);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn redis_down_is_a_temporary_failure_unless_fail_open() {
    let mut redis = RedisServer::start();
    let url = redis.url();
    redis.kill();
    let dir = tempfile::tempdir().expect("dir");
    let down = format!("store = \"redis\"\nredis_url = \"{url}\"\ntimeout_ms = 300\n");
    let (closed, _) = start(config(dir.path(), &down), None).await;
    assert_eq!(
        imap_login("127.0.0.1", &closed, "alice", "alicepw").await,
        "a NO [UNAVAILABLE] Temporary authentication failure."
    );
    let r = http_basic("127.0.0.1", &closed, "alice@example.com", "alicepw").await;
    assert_eq!(r.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
    let open = format!("{down}fail_open = true\n");
    let (opened, _) = start(config(dir.path(), &open), None).await;
    assert!(
        imap_login("127.0.0.1", &opened, "alice", "alicepw")
            .await
            .starts_with("a OK")
    );
    closed.shutdown().await;
    opened.shutdown().await;
}
