//! Password logins against the deny-list, on a real server (in process) with a real
//! `redis-server`: an administrator's revocation of a user holds on every password path while
//! Redis is stalled (a temporary failure, like token logins), and a revocation time that is not
//! yet past refuses the password like a wrong one.

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};

use crate::config::Config;
use crate::server::{self, RunningServer};
use crate::testkit::redis_server::RedisServer;
use crate::testkit::revocation::{now, unique};

/// Longest any expectation may take.
const PATIENCE: Duration = Duration::from_secs(15);

struct Running {
    server: RunningServer,
    prefix: String,
    _dir: tempfile::TempDir,
}

/// alice / alicepw, and bob / bobpw, the administrator; every password protocol in cleartext,
/// HTTP Basic; the deny-list in `redis` (300 ms per operation). The failed-login budget is off:
/// these tests poll logins.
async fn start(redis: &RedisServer) -> Running {
    let dir = tempfile::tempdir().expect("temp dir");
    let users = dir.path().join("users.toml");
    std::fs::write(
        &users,
        "[[user]]\nname = \"alice@example.com\"\npassword = \"alicepw\"\naliases = [\"alice\"]\n\
         [[user]]\nname = \"bob@example.com\"\npassword = \"bobpw\"\naliases = [\"bob\"]\n",
    )
    .expect("users");
    let prefix = unique("pw:");
    let any = "\"127.0.0.1:0\"";
    let text = format!(
        "[server]\nadmins = [\"bob@example.com\"]\n\
         [directory]\nkind = \"static\"\npath = \"{}\"\n\
         [imap]\nlisten = {any}\nallow_plaintext_auth = true\n\
         [submission]\nlisten = {any}\nallow_plaintext_auth = true\n\
         [pop3]\nlisten = {any}\nallow_plaintext_auth = true\n\
         [http]\nlisten = {any}\n[http.auth]\nstrategies = [\"basic\"]\n\
         [revocation]\nstore = \"redis\"\nredis_url = \"{}\"\nkey_prefix = \"{prefix}\"\ntimeout_ms = 300\n\
         [login_throttle]\nenabled = false\n",
        users.display(),
        redis.url(),
    );
    let config =
        Config::parse(&text, std::path::Path::new("password-revocation.toml")).expect("config");
    let server = server::start(config).await.expect("server starts");
    Running {
        server,
        prefix,
        _dir: dir,
    }
}

/// Sends `lines` (CRLF added) one per reply, after the greeting; returns the last line of the
/// reply to the last one. A reply ends at any line but IMAP's untagged `* ` and SMTP's `NNN-`.
async fn exchange(addr: SocketAddr, lines: &[&str]) -> String {
    let by = Instant::now() + PATIENCE;
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    let mut buf = Vec::new();
    let mut pending = lines.iter();
    let mut seen = Vec::new();
    loop {
        while let Some(end) = buf.windows(2).position(|w| w == b"\r\n") {
            let line: Vec<u8> = buf.drain(..end + 2).collect();
            let line = String::from_utf8_lossy(&line[..end]).into_owned();
            // The first line is the greeting, IMAP's `* OK` too.
            let more = !seen.is_empty() && line.starts_with("* ")
                || (line.len() > 3
                    && line.as_bytes()[3] == b'-'
                    && line[..3].parse::<u16>().is_ok());
            seen.push(line.clone());
            if more {
                continue;
            }
            match pending.next() {
                Some(next) => tcp
                    .write_all(format!("{next}\r\n").as_bytes())
                    .await
                    .expect("write"),
                None => return line,
            }
        }
        let mut chunk = [0u8; 4096];
        match timeout_at(by, tcp.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => panic!("closed before the last reply: {seen:?}"),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => panic!("no reply within {PATIENCE:?}: {seen:?}"),
        }
    }
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// Every password path's final reply for alice.
struct Replies {
    imap_login: String,
    imap_plain: String,
    pop3: String,
    smtp_login: String,
    http: (u16, Option<String>),
}

async fn alice_logs_in_everywhere(s: &RunningServer) -> Replies {
    let a = &s.addrs;
    let imap = a.imap.expect("imap");
    let imap_login = exchange(imap, &["a LOGIN alice alicepw"]).await;
    let plain = format!(
        "a AUTHENTICATE PLAIN {}",
        b64("\0alice@example.com\0alicepw")
    );
    let imap_plain = exchange(imap, &[&plain]).await;
    let pop3 = exchange(a.pop3.expect("pop3"), &["USER alice", "PASS alicepw"]).await;
    let smtp_login = exchange(
        a.submission.expect("submission"),
        &["EHLO x", "AUTH LOGIN", &b64("alice"), &b64("alicepw")],
    )
    .await;
    let http = reqwest::Client::new()
        .get(format!("http://{}/.well-known/jmap", a.http.expect("http")))
        .basic_auth("alice", Some("alicepw"))
        .send()
        .await
        .expect("HTTP");
    let retry_after = http
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    Replies {
        imap_login,
        imap_plain,
        pop3,
        smtp_login,
        http: (http.status().as_u16(), retry_after),
    }
}

#[tokio::test]
async fn an_admin_revocation_holds_for_password_logins_while_redis_is_stalled() {
    let redis = RedisServer::start();
    let s = start(&redis).await;
    let http = s.server.addrs.http.expect("http");
    let revoke = reqwest::Client::new()
        .post(format!("http://{http}/admin/revoke"))
        .basic_auth("bob", Some("bobpw"))
        .json(&serde_json::json!({"user": "alice"}))
        .send()
        .await
        .expect("revoke");
    assert_eq!(revoke.status().as_u16(), 200);

    redis.pause();
    let stalled = alice_logs_in_everywhere(&s.server).await;
    redis.resume();
    // The same temporary-failure replies a token login gets with the store down.
    assert!(
        stalled.imap_login.starts_with("a NO [UNAVAILABLE]"),
        "IMAP LOGIN: {}",
        stalled.imap_login
    );
    assert!(
        stalled.imap_plain.starts_with("a NO [UNAVAILABLE]"),
        "IMAP PLAIN: {}",
        stalled.imap_plain
    );
    assert!(
        stalled.pop3.starts_with("-ERR [SYS/TEMP]"),
        "POP3: {}",
        stalled.pop3
    );
    assert!(
        stalled.smtp_login.starts_with("454 4.7.0"),
        "SMTP LOGIN: {}",
        stalled.smtp_login
    );
    assert_eq!(stalled.http.0, 503, "HTTP Basic");
    assert!(stalled.http.1.is_some(), "503 without Retry-After");

    // Redis back: a login after the revocation time works (README: a later login works).
    let deadline = Instant::now() + PATIENCE;
    loop {
        let back = alice_logs_in_everywhere(&s.server).await;
        if back.imap_login.starts_with("a OK")
            && back.imap_plain.starts_with("a OK")
            && back.pop3.starts_with("+OK")
            && back.smtp_login.starts_with("235")
            && back.http.0 == 200
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no login after the revocation: {} / {} / {} / {} / {:?}",
            back.imap_login,
            back.imap_plain,
            back.pop3,
            back.smtp_login,
            back.http
        );
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn a_password_login_at_or_before_the_users_revocation_time_is_refused() {
    let redis = RedisServer::start();
    let s = start(&redis).await;
    // Written by another instance whose clock is ahead: "revoked before" an hour from now.
    let mut conn = redis::Client::open(redis.url())
        .expect("redis URL")
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let _: () = redis::cmd("SET")
        .arg(super::keys::user(&s.prefix, "alice@example.com"))
        .arg(now() + 3600)
        .arg("EX")
        .arg(600)
        .query_async(&mut conn)
        .await
        .expect("SET");
    let refused = alice_logs_in_everywhere(&s.server).await;
    // Refused like a wrong password: the reply says nothing about the revocation.
    assert!(
        refused
            .imap_login
            .starts_with("a NO [AUTHENTICATIONFAILED]"),
        "{}",
        refused.imap_login
    );
    assert!(
        refused
            .imap_plain
            .starts_with("a NO [AUTHENTICATIONFAILED]"),
        "{}",
        refused.imap_plain
    );
    assert!(refused.pop3.starts_with("-ERR [AUTH]"), "{}", refused.pop3);
    assert!(
        refused.smtp_login.starts_with("535"),
        "{}",
        refused.smtp_login
    );
    assert_eq!(refused.http.0, 401);
    // bob is not revoked.
    let bob = exchange(s.server.addrs.imap.expect("imap"), &["a LOGIN bob bobpw"]).await;
    assert!(bob.starts_with("a OK"), "{bob}");
}
