//! The disk store under a crash: the real server binary takes a stream of SMTP deliveries and
//! IMAP APPENDs, is killed with SIGKILL in the middle of it, and is started again on the same
//! `store.path`. Every message the server acknowledged (SMTP `250`, APPEND `OK`) must be there
//! byte for byte, and no message may be there partially.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mail_oidc_server::server::BoundAddrs;

const USER: &str = "alice@example.com";
const PASSWORD: &str = "alicepw";
const DEADLINE: Duration = Duration::from_secs(60);
/// Acknowledged messages to wait for before the kill.
const ACKS_BEFORE_KILL: usize = 30;

struct Server {
    child: Child,
    addrs: BoundAddrs,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_config(dir: &Path) -> PathBuf {
    let users = dir.join("users.toml");
    std::fs::write(
        &users,
        format!("[[user]]\nname = \"{USER}\"\npassword = \"{PASSWORD}\"\n"),
    )
    .unwrap();
    let config = dir.join("server.toml");
    std::fs::write(
        &config,
        format!(
            "[imap]\nlisten = \"127.0.0.1:0\"\nallow_plaintext_auth = true\n\
             [smtp]\nlisten = \"127.0.0.1:0\"\nlocal_domains = [\"example.com\"]\n\
             [directory]\nkind = \"static\"\npath = \"{}\"\n\
             [store]\nkind = \"disk\"\npath = \"{}\"\n",
            users.display(),
            dir.join("mail").display()
        ),
    )
    .unwrap();
    config
}

fn start(dir: &Path, config: &Path, run: usize) -> Server {
    let ready = dir.join("ready.json");
    let _ = std::fs::remove_file(&ready);
    let log = std::fs::File::create(dir.join(format!("server-{run}.log"))).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_mail-oidc-server"))
        .arg("--config")
        .arg(config)
        .arg("--ready-file")
        .arg(&ready)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start mail-oidc-server");
    let mut server = Server {
        child,
        addrs: BoundAddrs::default(),
    };
    let until = Instant::now() + DEADLINE;
    loop {
        if let Ok(text) = std::fs::read(&ready)
            && let Ok(addrs) = serde_json::from_slice::<BoundAddrs>(&text)
        {
            server.addrs = addrs;
            return server;
        }
        if let Some(status) = server.child.try_wait().unwrap() {
            let log = std::fs::read_to_string(dir.join(format!("server-{run}.log")));
            panic!("server exited with {status}: {log:?}");
        }
        assert!(Instant::now() < until, "no ready file within the deadline");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A message whose every byte follows from `tag`, 1 to ~40 KB, CRLF, no line starting with `.`.
fn message(tag: &str, k: usize) -> Vec<u8> {
    let mut m = format!("Subject: {tag}\r\nX-Seq: {tag}\r\n\r\n").into_bytes();
    for i in 0..(k * 37 % 500 + 10) {
        m.extend_from_slice(format!("{tag} line {i:05} abcdefghijklmnopqrstuvwxyz\r\n").as_bytes());
    }
    m
}

struct Line<'a>(&'a mut BufReader<TcpStream>);

impl Line<'_> {
    fn read(&mut self) -> std::io::Result<String> {
        let mut line = String::new();
        if self.0.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(line)
    }
}

fn connect(addr: SocketAddr) -> std::io::Result<(TcpStream, BufReader<TcpStream>)> {
    let stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(DEADLINE))?;
    let reader = BufReader::new(stream.try_clone()?);
    Ok((stream, reader))
}

/// Delivers messages until the connection breaks; pushes each acknowledged tag.
fn smtp_stream(addr: SocketAddr, acked: &Mutex<Vec<String>>, stop: &AtomicBool) {
    let run = || -> std::io::Result<()> {
        let (mut w, mut r) = connect(addr)?;
        let reply = |r: &mut BufReader<TcpStream>| -> std::io::Result<String> {
            loop {
                let line = Line(r).read()?;
                if line.as_bytes().get(3) != Some(&b'-') {
                    return Ok(line);
                }
            }
        };
        reply(&mut r)?;
        w.write_all(b"EHLO crash.test\r\n")?;
        reply(&mut r)?;
        for k in 0.. {
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            let tag = format!("smtp-{k}");
            w.write_all(
                format!("MAIL FROM:<s@remote.test>\r\nRCPT TO:<{USER}>\r\nDATA\r\n").as_bytes(),
            )?;
            for _ in 0..3 {
                reply(&mut r)?;
            }
            let mut data = message(&tag, k);
            data.extend_from_slice(b".\r\n");
            w.write_all(&data)?;
            if reply(&mut r)?.starts_with("250 ") {
                acked.lock().unwrap().push(tag);
            }
        }
        Ok(())
    };
    // The kill breaks the connection: that is the expected end.
    let _ = run();
}

/// APPENDs until the connection breaks; pushes each acknowledged tag.
fn imap_stream(addr: SocketAddr, acked: &Mutex<Vec<String>>, stop: &AtomicBool) {
    let run = || -> std::io::Result<()> {
        let (mut w, mut r) = connect(addr)?;
        Line(&mut r).read()?;
        w.write_all(format!("l LOGIN {USER} {PASSWORD}\r\n").as_bytes())?;
        while !Line(&mut r).read()?.starts_with("l ") {}
        for k in 0.. {
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            let tag = format!("imap-{k}");
            let m = message(&tag, k);
            w.write_all(format!("a APPEND INBOX {{{}+}}\r\n", m.len()).as_bytes())?;
            w.write_all(&m)?;
            w.write_all(b"\r\n")?;
            loop {
                let line = Line(&mut r).read()?;
                if line.starts_with("a OK") {
                    acked.lock().unwrap().push(tag);
                    break;
                }
                if line.starts_with("a ") {
                    break;
                }
            }
        }
        Ok(())
    };
    let _ = run();
}

/// Every message of the INBOX, through IMAP FETCH BODY.PEEK[].
fn fetch_all(addr: SocketAddr) -> Vec<Vec<u8>> {
    let (mut w, mut r) = connect(addr).unwrap();
    Line(&mut r).read().unwrap();
    w.write_all(format!("l LOGIN {USER} {PASSWORD}\r\n").as_bytes())
        .unwrap();
    while !Line(&mut r).read().unwrap().starts_with("l ") {}
    w.write_all(b"s SELECT INBOX\r\n").unwrap();
    let mut exists = 0;
    loop {
        let line = Line(&mut r).read().unwrap();
        if let Some(n) = line
            .strip_prefix("* ")
            .and_then(|l| l.strip_suffix(" EXISTS\r\n"))
        {
            exists = n.parse().unwrap();
        }
        if line.starts_with("s ") {
            assert!(line.starts_with("s OK"), "{line}");
            break;
        }
    }
    let mut out = Vec::new();
    if exists == 0 {
        return out;
    }
    w.write_all(b"f FETCH 1:* (BODY.PEEK[])\r\n").unwrap();
    loop {
        let line = Line(&mut r).read().unwrap();
        if line.starts_with("f ") {
            assert!(line.starts_with("f OK"), "{line}");
            return out;
        }
        let Some(open) = line.rfind('{') else {
            continue;
        };
        let len: usize = line[open + 1..]
            .trim_end_matches("\r\n")
            .trim_end_matches('}')
            .parse()
            .unwrap();
        let mut body = vec![0; len];
        r.read_exact(&mut body).unwrap();
        out.push(body);
        // The rest of the FETCH response: ")\r\n".
        Line(&mut r).read().unwrap();
    }
}

/// The tag of a stored message, from its `X-Seq:` header.
fn tag_of(stored: &[u8]) -> String {
    let text = String::from_utf8_lossy(stored);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("X-Seq: "))
        .unwrap_or_else(|| panic!("a message without X-Seq: {text:.200}"));
    line.to_string()
}

#[test]
fn acknowledged_mail_survives_sigkill_and_nothing_is_partial() {
    let tmp = tempfile::tempdir().unwrap();
    let config = write_config(tmp.path());
    let mut server = start(tmp.path(), &config, 1);
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = [server.addrs.smtp, server.addrs.imap]
        .into_iter()
        .enumerate()
        .map(|(i, addr)| {
            let addr = addr.expect("listener bound");
            let (acked, stop) = (acked.clone(), stop.clone());
            std::thread::spawn(move || {
                if i == 0 {
                    smtp_stream(addr, &acked, &stop)
                } else {
                    imap_stream(addr, &acked, &stop)
                }
            })
        })
        .collect();
    let until = Instant::now() + DEADLINE;
    while acked.lock().unwrap().len() < ACKS_BEFORE_KILL {
        assert!(
            Instant::now() < until,
            "too few acknowledgements before the deadline"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // SIGKILL while both streams are still writing.
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.iter().any(|t| t.starts_with("smtp-")), "{acked:?}");
    assert!(acked.iter().any(|t| t.starts_with("imap-")), "{acked:?}");

    let server = start(tmp.path(), &config, 2);
    let stored = fetch_all(server.addrs.imap.unwrap());
    let mut found = std::collections::BTreeSet::new();
    for m in &stored {
        let tag = tag_of(m);
        let (kind, k) = tag.split_once('-').unwrap();
        let expected = message(&tag, k.parse().unwrap());
        // SMTP adds its trace headers in front; otherwise the bytes are exactly as sent.
        let intact = match kind {
            "smtp" => m.ends_with(&expected) && m.starts_with(b"Return-Path: "),
            _ => *m == expected,
        };
        assert!(intact, "{tag} is not intact ({} bytes stored)", m.len());
        assert!(found.insert(tag.clone()), "{tag} stored twice");
    }
    eprintln!(
        "{} acknowledged before the kill, {} found after the restart",
        acked.len(),
        found.len()
    );
    for tag in &acked {
        assert!(
            found.contains(tag),
            "acknowledged {tag} lost; found {found:?}"
        );
    }
}
