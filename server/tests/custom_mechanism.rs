//! A SASL mechanism defined outside the crate (`server/examples/app_password/`), registered
//! through the library API and enabled by name in the config, logs in through IMAP and SMTP.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use mail_oidc_server::config::Config;
use mail_oidc_server::server::{self, RunningServer};
use sha2::{Digest, Sha256};

const APP_PASSWORD: &str = "phone-7f3a-91c2";

#[path = "../examples/app_password/mechanism.rs"]
mod mechanism;

fn files(dir: &Path) -> (PathBuf, PathBuf) {
    let users = dir.join("users.toml");
    std::fs::write(
        &users,
        "[[user]]\nname = \"alice@example.com\"\npassword = \"directory-pw\"\naliases = [\"alice\"]\n",
    )
    .expect("users");
    let passwords = dir.join("app-passwords.toml");
    let hash: String = Sha256::digest(APP_PASSWORD.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    std::fs::write(
        &passwords,
        format!("[[password]]\nuser = \"alice@example.com\"\nsha256 = \"{hash}\"\n"),
    )
    .expect("app passwords");
    let config = dir.join("server.toml");
    std::fs::write(
        &config,
        format!(
            "[directory]\nkind = \"static\"\npath = \"{}\"\n\
             [imap]\nlisten = \"127.0.0.1:0\"\nallow_plaintext_auth = true\n\
             [imap.auth]\nmechanisms = [\"PLAIN\", \"X-APP-PASSWORD\"]\n\
             [submission]\nlisten = \"127.0.0.1:0\"\nallow_plaintext_auth = true\n\
             [submission.auth]\nmechanisms = [\"PLAIN\", \"X-APP-PASSWORD\"]\n",
            users.display()
        ),
    )
    .expect("config");
    (config, passwords)
}

/// The server with the example's mechanism, registered as the example's `main` does.
async fn start(dir: &Path) -> RunningServer {
    let (config, passwords) = files(dir);
    let config = Config::load(&config).expect("config");
    let passwords = mechanism::load(passwords.to_str().expect("utf-8 path")).expect("passwords");
    let services = server::build_services(&config)
        .expect("services")
        .with_mechanism(|backends| {
            Arc::new(mechanism::AppPasswords::new(
                backends.clone(),
                Arc::new(passwords),
            ))
        });
    server::check_with(&config, &services).expect("the config names a registered mechanism");
    server::start_with(config, services)
        .await
        .expect("server starts")
}

struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Conn {
    fn open(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let writer = stream.try_clone().expect("clone");
        Self {
            reader: BufReader::new(stream),
            writer,
        }
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("read");
        line.trim_end().to_string()
    }

    fn send(&mut self, line: &str) {
        self.writer
            .write_all(format!("{line}\r\n").as_bytes())
            .expect("write");
    }

    /// Reads until a line starting with `prefix`, returning every line read.
    fn until(&mut self, prefix: &str) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let line = self.line();
            assert!(!line.is_empty(), "connection closed after {lines:?}");
            let done = line.starts_with(prefix);
            lines.push(line);
            if done {
                return lines;
            }
        }
    }
}

fn message(password: &str) -> String {
    STANDARD.encode(format!("alice\0{password}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_mechanism_logs_in_through_imap_and_smtp() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = start(dir.path()).await;
    let imap_addr = server.addrs.imap.expect("imap bound");
    let submission_addr = server.addrs.submission.expect("submission bound");
    // The clients below block: they run on a blocking thread while the server serves.
    tokio::task::spawn_blocking(move || talk(imap_addr, submission_addr))
        .await
        .expect("clients");
    server.shutdown().await;
}

fn talk(imap_addr: SocketAddr, submission_addr: SocketAddr) {
    let mut imap = Conn::open(imap_addr);
    let greeting = imap.line();
    assert!(
        greeting.contains("AUTH=X-APP-PASSWORD"),
        "advertised: {greeting}"
    );
    imap.send(&format!(
        "a AUTHENTICATE X-APP-PASSWORD {}",
        message("wrong")
    ));
    let reply = imap.until("a ");
    assert!(
        reply
            .last()
            .is_some_and(|l| l.starts_with("a NO [AUTHENTICATIONFAILED]")),
        "{reply:?}"
    );
    // Without an initial response: the empty challenge, then the message.
    imap.send("b AUTHENTICATE X-APP-PASSWORD");
    assert_eq!(imap.line(), "+", "an empty challenge");
    imap.send(&message(APP_PASSWORD));
    let reply = imap.until("b ");
    assert!(
        reply.last().is_some_and(|l| l.starts_with("b OK")),
        "{reply:?}"
    );
    imap.send("c SELECT INBOX");
    let reply = imap.until("c ");
    assert!(
        reply.last().is_some_and(|l| l.starts_with("c OK")),
        "{reply:?}"
    );

    let mut smtp = Conn::open(submission_addr);
    assert!(smtp.line().starts_with("220 "));
    smtp.send("EHLO client.example");
    let ehlo = smtp.until("250 ");
    assert!(
        ehlo.iter()
            .any(|l| l.contains("AUTH") && l.contains("X-APP-PASSWORD")),
        "{ehlo:?}"
    );
    smtp.send(&format!("AUTH X-APP-PASSWORD {}", message("wrong")));
    assert!(smtp.line().starts_with("535 5.7.8"));
    smtp.send(&format!("AUTH X-APP-PASSWORD {}", message(APP_PASSWORD)));
    assert_eq!(smtp.line(), "235 2.7.0 Authentication successful");
    smtp.send("QUIT");
    let mut rest = String::new();
    let _ = smtp.reader.read_to_string(&mut rest);
    assert!(rest.starts_with("221"), "{rest:?}");
}

/// The mechanism is known only where it was registered: the stock binary refuses the config.
#[test]
fn the_stock_server_does_not_know_the_mechanism() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (config, _) = files(dir.path());
    let out = Command::new(env!("CARGO_BIN_EXE_mail-oidc-server"))
        .arg("--config")
        .arg(&config)
        .arg("--check")
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        text.contains("imap.auth.mechanisms") && text.contains("X-APP-PASSWORD"),
        "{text}"
    );
}
