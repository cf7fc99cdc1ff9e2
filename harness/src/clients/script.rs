//! For the clients' unit tests: a scripted server on the other end of an in-memory pipe.

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, DuplexStream};

pub(crate) struct Server {
    pub(crate) io: BufReader<DuplexStream>,
}

impl Server {
    /// The client's next line is `line` (CRLF added).
    pub(crate) async fn expect(&mut self, line: &str) {
        let mut got = String::new();
        self.io.read_line(&mut got).await.unwrap_or_default();
        assert_eq!(got, format!("{line}\r\n"));
    }

    /// The client's next bytes are exactly `bytes` (literals, several lines at once).
    pub(crate) async fn expect_bytes(&mut self, bytes: &[u8]) {
        let mut got = vec![0u8; bytes.len()];
        self.io.read_exact(&mut got).await.expect("client bytes");
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(bytes)
        );
    }

    pub(crate) async fn send(&mut self, bytes: &[u8]) {
        let _ = self.io.get_mut().write_all(bytes).await;
    }
}

/// The client's end of a pipe whose server has already sent `greeting`.
pub(crate) async fn pipe(greeting: &[u8]) -> (DuplexStream, Server) {
    let (client, server) = tokio::io::duplex(1 << 20);
    let mut server = Server {
        io: BufReader::new(server),
    };
    server.send(greeting).await;
    (client, server)
}
