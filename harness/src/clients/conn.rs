//! The connection under the line-based clients (IMAP, SMTP, ManageSieve): a buffered stream with a deadline on
//! every call, plain or TLS from the start, upgraded in place by STARTTLS.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncWriteExt, BufReader};

use super::{BoxedIo, ClientError, ClientResult, DEFAULT_TIMEOUT, deadline, tls};

pub(crate) struct Conn {
    pub(crate) stream: BufReader<BoxedIo>,
    /// Deadline of each read and write.
    pub(crate) timeout: Duration,
    /// The server's address; `None` over an in-memory stream.
    pub(crate) peer: Option<SocketAddr>,
    /// The TLS session's `tls-exporter` channel binding, once under TLS 1.3.
    pub(crate) exporter: Option<Vec<u8>>,
    /// This end's address (what the server logs as the connection's peer); `None` over an
    /// in-memory stream.
    pub(crate) local: Option<SocketAddr>,
}

impl Conn {
    pub(crate) fn new(stream: BoxedIo, peer: Option<SocketAddr>) -> Self {
        Self {
            stream: BufReader::new(stream),
            timeout: DEFAULT_TIMEOUT,
            peer,
            exporter: None,
            local: None,
        }
    }

    /// Plain TCP.
    pub(crate) async fn tcp(addr: SocketAddr) -> ClientResult<Self> {
        let tcp = tls::tcp(addr, DEFAULT_TIMEOUT).await?;
        let local = tcp.local_addr().ok();
        let mut conn = Self::new(Box::new(tcp), Some(addr));
        conn.local = local;
        Ok(conn)
    }

    /// Implicit TLS trusting only `ca_pem`.
    pub(crate) async fn tls(addr: SocketAddr, ca_pem: &str) -> ClientResult<Self> {
        let tcp = tls::tcp(addr, DEFAULT_TIMEOUT).await?;
        let local = tcp.local_addr().ok();
        let tls = deadline(
            DEFAULT_TIMEOUT,
            "TLS handshake",
            tls::handshake(tcp, ca_pem),
        )
        .await?;
        let exporter = tls::exporter(tls.get_ref().1);
        let mut conn = Self::new(Box::new(tls), Some(addr));
        conn.exporter = exporter;
        conn.local = local;
        Ok(conn)
    }

    /// Sends raw bytes as they are.
    pub(crate) async fn send_bytes(&mut self, bytes: &[u8]) -> ClientResult<()> {
        let stream = &mut self.stream;
        deadline(self.timeout, "writing", async {
            stream.get_mut().write_all(bytes).await?;
            stream.get_mut().flush().await?;
            Ok(())
        })
        .await
    }

    /// The TLS handshake after the server's STARTTLS go-ahead (`go_ahead` names it in the error).
    /// Fails if the server sent anything after it in plaintext: that would be a
    /// command-injection hole.
    pub(crate) async fn start_tls(&mut self, ca_pem: &str, go_ahead: &str) -> ClientResult<()> {
        if !self.stream.buffer().is_empty() {
            return Err(ClientError::Protocol(format!(
                "server sent plaintext after STARTTLS {go_ahead}: {:?}",
                String::from_utf8_lossy(self.stream.buffer())
            )));
        }
        // Swap a dummy in to move the plain stream into the TLS layer.
        let dummy: BoxedIo = Box::new(tokio::io::join(tokio::io::empty(), tokio::io::sink()));
        let plain = std::mem::replace(&mut self.stream, BufReader::new(dummy)).into_inner();
        let tls = deadline(
            self.timeout,
            "STARTTLS handshake",
            tls::handshake(plain, ca_pem),
        )
        .await?;
        self.exporter = tls::exporter(tls.get_ref().1);
        self.stream = BufReader::new(Box::new(tls));
        Ok(())
    }

    /// Reads (and drops) whatever the server still sends until it closes the connection: `true`
    /// once it has, `false` if it is still open when the deadline passes.
    pub(crate) async fn closes(&mut self) -> bool {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 4096];
        let limit = tokio::time::Instant::now() + self.timeout;
        loop {
            match tokio::time::timeout_at(limit, self.stream.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
                Err(_) => return false,
            }
        }
    }
}
