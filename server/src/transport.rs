//! The byte streams front ends run on: any stream (`Io`, also in-memory pipes in tests), and a
//! TCP connection that STARTTLS can turn into TLS in place (`Transport`).

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::auth::sasl::ChannelBinding;

/// Any byte stream a session can run on: TCP, TLS over TCP, or an in-memory pipe in tests.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Why a connection ended abnormally.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("timed out writing or in the TLS handshake")]
    Timeout,
    #[error("no TLS configured")]
    NoTls,
}

/// A TCP connection, in clear or under TLS.
pub enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Only while STARTTLS moves the TCP stream into the TLS acceptor.
    Detached,
}

fn detached() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::NotConnected, "transport detached")
}

impl Transport {
    /// Runs the TLS handshake on a plain transport (a TLS one is returned as it is).
    pub async fn upgrade(
        self,
        acceptor: Option<&TlsAcceptor>,
        within: Duration,
    ) -> Result<Transport, TransportError> {
        let tcp = match self {
            Transport::Plain(tcp) => tcp,
            Transport::Tls(_) | Transport::Detached => return Ok(self),
        };
        let acceptor = acceptor.ok_or(TransportError::NoTls)?;
        let tls = tokio::time::timeout(within, acceptor.accept(tcp))
            .await
            .map_err(|_| TransportError::Timeout)??;
        Ok(Transport::Tls(Box::new(tls)))
    }

    /// [`Transport::upgrade`] in place: the transport is detached during the handshake and
    /// stays so if it fails.
    pub async fn start_tls(
        &mut self,
        acceptor: Option<&TlsAcceptor>,
        within: Duration,
    ) -> Result<(), TransportError> {
        let plain = std::mem::replace(self, Transport::Detached);
        *self = plain.upgrade(acceptor, within).await?;
        Ok(())
    }

    /// Writes and flushes `pending` (if anything is pending) within `within`, then empties it.
    pub async fn flush_pending(
        &mut self,
        pending: &mut Vec<u8>,
        within: Duration,
    ) -> Result<(), TransportError> {
        if pending.is_empty() {
            return Ok(());
        }
        tokio::time::timeout(within, self.write_all_flush(pending))
            .await
            .map_err(|_| TransportError::Timeout)??;
        pending.clear();
        Ok(())
    }

    /// RFC 9266 `tls-exporter` of a TLS transport (TLS 1.3 only).
    pub fn channel_binding(&self) -> Option<ChannelBinding> {
        match self {
            Transport::Tls(s) => crate::tls::tls_exporter(s.get_ref().1),
            Transport::Plain(_) | Transport::Detached => None,
        }
    }

    pub async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Transport::Plain(s) => s.read(buf).await,
            Transport::Tls(s) => s.read(buf).await,
            Transport::Detached => Err(detached()),
        }
    }

    pub async fn write_all_flush(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self {
            Transport::Plain(s) => {
                s.write_all(data).await?;
                s.flush().await
            }
            Transport::Tls(s) => {
                s.write_all(data).await?;
                s.flush().await
            }
            Transport::Detached => Err(detached()),
        }
    }

    pub async fn shutdown(&mut self) -> std::io::Result<()> {
        match self {
            Transport::Plain(s) => s.shutdown().await,
            Transport::Tls(s) => s.shutdown().await,
            Transport::Detached => Ok(()),
        }
    }
}
