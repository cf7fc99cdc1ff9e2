//! A real `redis-server` for tests: its own temp dir, a free loopback port, no persistence.
//! Ready once its log says so and it answers `PING`; killed by PID on drop (also when a test
//! panics), so no test leaves a server behind.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where the test suite expects the binary.
pub const REDIS_SERVER: &str = "/usr/bin/redis-server";

/// How long a start (or restart) may take.
const START_DEADLINE: Duration = Duration::from_secs(15);

pub struct RedisServer {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// Everything the server logged, for failure messages.
    log: Arc<Mutex<Vec<String>>>,
}

/// A port nothing listens on right now (the OS picks it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl RedisServer {
    /// Starts a server on a free port; panics (with its log) if it does not come up.
    pub fn start() -> Self {
        let mut last_error = String::new();
        // The free port may be taken between our probe and the server's bind: try a few.
        for _ in 0..3 {
            match Self::try_start_on(free_port()) {
                Ok(server) => return server,
                Err(e) => last_error = e,
            }
        }
        panic!("redis-server did not start: {last_error}");
    }

    /// Starts a server on `port` (e.g. one a client was already told about).
    pub fn start_on(port: u16) -> Self {
        match Self::try_start_on(port) {
            Ok(server) => server,
            Err(e) => panic!("redis-server did not start on port {port}: {e}"),
        }
    }

    fn try_start_on(port: u16) -> Result<Self, String> {
        let mut server = Self {
            port,
            dir: tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?,
            child: None,
            log: Arc::default(),
        };
        server.spawn()?;
        Ok(server)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kills the server (SIGKILL to its PID) and reaps it; the port is free afterwards.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the SAME port (after [`RedisServer::kill`]). Data is gone:
    /// nothing is persisted.
    pub fn restart(&mut self) {
        self.kill();
        if let Err(e) = self.spawn() {
            panic!("redis-server did not restart on port {}: {e}", self.port);
        }
    }

    /// Freezes the server (SIGSTOP to its PID): connections stay open, nothing is answered.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused server run again (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("redis-server is running").id();
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {signal} {pid} failed");
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.join("\n")).unwrap_or_default()
    }

    fn spawn(&mut self) -> Result<(), String> {
        let mut child = Command::new(REDIS_SERVER)
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {REDIS_SERVER}: {e}"))?;
        let (tx, rx) = mpsc::channel::<String>();
        for pipe in [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let tx = tx.clone();
            let log = self.log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    if let Ok(mut log) = log.lock() {
                        log.push(line.clone());
                    }
                    // Nobody listens once the server is up: that is fine.
                    let _ = tx.send(line);
                }
            });
        }
        drop(tx);
        self.child = Some(child);
        let deadline = Instant::now() + START_DEADLINE;
        // Readiness: the log line, then a PING answered. No fixed wait anywhere.
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains("Ready to accept connections") => break,
                Ok(_) => {}
                Err(_) => {
                    self.kill();
                    return Err(format!(
                        "no readiness line within {START_DEADLINE:?}; log:\n{}",
                        self.log()
                    ));
                }
            }
        }
        match ping(self.port) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.kill();
                Err(format!("PING failed: {e}; log:\n{}", self.log()))
            }
        }
    }
}

/// Sends `PING` and expects `+PONG`.
pub fn ping(port: u16) -> Result<(), String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    stream.write_all(b"PING\r\n").map_err(|e| e.to_string())?;
    let mut answer = [0u8; 7];
    stream.read_exact(&mut answer).map_err(|e| e.to_string())?;
    if &answer == b"+PONG\r\n" {
        Ok(())
    } else {
        Err(format!("answer {:?}", String::from_utf8_lossy(&answer)))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

#[test]
fn starts_answers_ping_and_stops_on_drop() {
    let mut server = RedisServer::start();
    let port = server.port();
    assert_eq!(ping(port), Ok(()));
    server.restart();
    assert_eq!(server.port(), port, "same port after a restart");
    assert_eq!(ping(port), Ok(()));
    drop(server);
    assert!(ping(port).is_err(), "nothing answers once dropped");
}
