//! redis-server in the foreground on a free loopback port. Its append-only file lives in the
//! stack's directory, so a stop and a start on the same port keep the deny-list (as a
//! production Redis would).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::bail;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::ports::{START_ATTEMPTS, free_port, is_bind_failure};
use super::process::{ChildProcess, find_program, tail};
use super::wait::Deadline;

const READY_TIMEOUT: Duration = Duration::from_secs(15);

pub struct Redis {
    /// `127.0.0.1:<port>`.
    pub addr: String,
    pub process: ChildProcess,
}

/// Starts redis-server on a free port; ready when it answers PING.
pub async fn start(dir: &Path, log: &Path) -> anyhow::Result<Redis> {
    start_on(dir, log, None).await
}

/// Starts redis-server on `port` (tried once), or on a free port; ready when it answers PING.
pub async fn start_on(dir: &Path, log: &Path, port: Option<u16>) -> anyhow::Result<Redis> {
    let program = find_program("redis-server")?;
    std::fs::create_dir_all(dir)?;
    let mut last_error = None;
    let attempts = if port.is_some() { 1 } else { START_ATTEMPTS };
    for _ in 0..attempts {
        let port = match port {
            Some(p) => p,
            None => free_port()?,
        };
        let addr = format!("127.0.0.1:{port}");
        let mut cmd = Command::new(&program);
        cmd.arg("--port")
            .arg(port.to_string())
            .args(["--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "yes", "--appendfsync", "everysec"])
            .args(["--daemonize", "no", "--dir"])
            .arg(dir);
        let mut process = ChildProcess::spawn("redis", cmd, log)?;
        match wait_ready(&mut process, &addr).await {
            Ok(()) => return Ok(Redis { addr, process }),
            Err(e) if is_bind_failure(&process.log_of_this_run()) => {
                tracing::info!(port, "redis could not bind; retrying on another port");
                last_error = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last_error.unwrap_or_else(|| anyhow::anyhow!("redis did not start")))
}

async fn wait_ready(process: &mut ChildProcess, addr: &str) -> anyhow::Result<()> {
    let deadline = Deadline::new(format!("redis at {addr}"), READY_TIMEOUT);
    loop {
        process.ensure_running()?;
        match ping(addr).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                if let Err(timeout) = deadline.tick(&e).await {
                    bail!("{timeout}\n{}", tail(&process.log_of_this_run(), 40));
                }
            }
        }
    }
}

/// One inline PING; Ok on `+PONG`.
pub async fn ping(addr: &str) -> anyhow::Result<()> {
    let probe = async {
        let mut stream = TcpStream::connect(addr).await?;
        stream.write_all(b"PING\r\n").await?;
        let mut buf = [0u8; 64];
        let n = stream.read(&mut buf).await?;
        anyhow::Ok(buf[..n].to_vec())
    };
    let reply = tokio::time::timeout(Duration::from_secs(2), probe).await??;
    if reply.starts_with(b"+PONG") {
        Ok(())
    } else {
        bail!(
            "unexpected PING reply {:?}",
            String::from_utf8_lossy(&reply)
        )
    }
}
