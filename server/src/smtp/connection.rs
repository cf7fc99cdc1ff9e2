//! The socket side: accept loop, TLS (implicit and STARTTLS), and the loop that feeds a
//! [`Session`] and performs its events.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tracing::Instrument;

use crate::auth::revocation::{LiveSession, SessionHandle, ended};
use crate::transport::{Transport, TransportError};

use super::delivery;
use super::session::{Event, Interrupt, Io, Session, SessionConfig};
use super::{SmtpContext, SmtpListenerKind};

/// Timeouts of one listener; tests shorten them.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionOptions {
    /// Idle time (waiting for a command or DATA bytes) before `421 4.4.2`.
    pub idle_timeout: Duration,
    /// Limit for writing replies and for TLS handshakes.
    pub io_timeout: Duration,
}

impl Default for ConnectionOptions {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(300),
            io_timeout: Duration::from_secs(60),
        }
    }
}

const READ_CHUNK: usize = 64 * 1024;

/// Accepts connections forever, one task per connection.
pub async fn serve_with(
    listener: TcpListener,
    kind: SmtpListenerKind,
    ctx: Arc<SmtpContext>,
    options: ConnectionOptions,
) {
    let max_message_size = match kind {
        SmtpListenerKind::Inbound => ctx.inbound.max_message_size,
        SmtpListenerKind::Submission | SmtpListenerKind::SubmissionImplicitTls => {
            ctx.submission.max_message_size
        }
    };
    let config = Arc::new(SessionConfig {
        hostname: ctx.hostname.clone(),
        kind,
        max_message_size,
        max_auth_failures: ctx.submission.max_auth_failures,
        allow_plaintext_auth: ctx.submission.allow_plaintext_auth,
        local_domains: ctx.inbound.local_domains.clone(),
        starttls_available: ctx.tls.is_some() && kind != SmtpListenerKind::SubmissionImplicitTls,
        registry: ctx.registry.clone(),
    });
    if kind == SmtpListenerKind::SubmissionImplicitTls && ctx.tls.is_none() {
        tracing::error!("implicit-TLS submission listener without a TLS certificate; not serving");
        return;
    }
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                // Replies are small writes; without NODELAY each one can wait for a delayed ACK.
                let _ = stream.set_nodelay(true);
                let span = tracing::info_span!("smtp", %peer, ?kind);
                let conn = Connection {
                    ctx: ctx.clone(),
                    options,
                };
                let config = config.clone();
                tokio::spawn(
                    async move {
                        tracing::debug!("connected");
                        conn.run(stream, peer, kind, config).await;
                        tracing::debug!("disconnected");
                    }
                    .instrument(span),
                );
            }
            Err(e) => {
                // Usually EMFILE: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

struct Connection {
    ctx: Arc<SmtpContext>,
    options: ConnectionOptions,
}

/// How a connection ends abnormally.
type ConnectionError = TransportError;

impl Connection {
    async fn run(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        kind: SmtpListenerKind,
        config: Arc<SessionConfig>,
    ) {
        let implicit_tls = kind == SmtpListenerKind::SubmissionImplicitTls;
        let mut transport = Transport::Plain(stream);
        if implicit_tls {
            transport = match transport
                .upgrade(self.ctx.tls.as_ref(), self.options.io_timeout)
                .await
            {
                Ok(t) => t,
                Err(e) => {
                    tracing::info!(error = %e, "TLS handshake failed");
                    return;
                }
            };
        }
        let mut session = Session::new(config, Some(peer), implicit_tls);
        session.set_channel_binding(transport.channel_binding());
        match self.drive(&mut transport, session).await {
            Ok(()) => {
                let _ = tokio::time::timeout(self.options.io_timeout, transport.shutdown()).await;
            }
            Err(e) => tracing::info!(error = %e, "connection ended"),
        }
    }

    /// Registers the session in the live-session registry once it has authenticated.
    fn register(&self, session: &Session) -> Option<SessionHandle> {
        let identity = session.identity()?;
        let revocation = self.ctx.backends.revocation.as_ref()?;
        Some(revocation.registry().register(LiveSession::new(
            "smtp",
            &identity.authorization_id,
            identity.token.clone(),
        )))
    }

    /// Runs the session until it closes (`Ok`) or the connection fails.
    async fn drive(
        &self,
        transport: &mut Transport,
        mut session: Session,
    ) -> Result<(), ConnectionError> {
        let mut pending = Vec::new();
        let mut buf = vec![0u8; READ_CHUNK];
        let mut live: Option<SessionHandle> = None;
        loop {
            if live.is_none() {
                live = self.register(&session);
            }
            match session.next_interrupt() {
                Interrupt::Io(Io::Output(bytes)) => pending.extend_from_slice(&bytes),
                Interrupt::Io(Io::Close) => {
                    transport
                        .flush_pending(&mut pending, self.options.io_timeout)
                        .await?;
                    return Ok(());
                }
                Interrupt::Io(Io::NeedMoreInput) => {
                    // Replies to pipelined commands go out together (RFC 2920).
                    transport
                        .flush_pending(&mut pending, self.options.io_timeout)
                        .await?;
                    let read = tokio::select! {
                        read = tokio::time::timeout(self.options.idle_timeout, transport.read(&mut buf)) => read,
                        // At once, also in the middle of DATA: that message is not accepted.
                        reason = ended(&mut live) => {
                            session.ended(&reason);
                            continue;
                        }
                    };
                    match read {
                        Err(_) => session.timed_out(),
                        Ok(Ok(0)) => {
                            tracing::debug!("client closed the connection");
                            return Ok(());
                        }
                        Ok(Ok(n)) => session.enqueue_input(&buf[..n]),
                        Ok(Err(e)) => return Err(e.into()),
                    }
                }
                Interrupt::Event(Event::StartTls) => {
                    transport
                        .flush_pending(&mut pending, self.options.io_timeout)
                        .await?;
                    transport
                        .start_tls(self.ctx.tls.as_ref(), self.options.io_timeout)
                        .await?;
                    tracing::debug!("STARTTLS done");
                    session.tls_established();
                    session.set_channel_binding(transport.channel_binding());
                }
                Interrupt::Event(Event::Auth(work)) => {
                    let done = crate::auth::sasl::driver::run(work).await;
                    session.auth_done(done);
                }
                Interrupt::Event(Event::CheckRecipient(address)) => {
                    let result = self.ctx.backends.directory.lookup(&address).await;
                    match &result {
                        // A quick read of the index, no disk: fine on the async worker.
                        Ok(Some(user)) if self.ctx.store.over_quota(user) => {
                            session.recipient_full(user)
                        }
                        _ => session.recipient_checked(result),
                    }
                }
                Interrupt::Event(Event::Deliver(envelope)) => {
                    // Ended while the message arrived: it is not accepted.
                    if let Some(reason) = live.as_ref().and_then(SessionHandle::try_ended) {
                        session.ended(&reason);
                        continue;
                    }
                    let result = delivery::deliver(
                        self.ctx.store.clone(),
                        self.ctx.filter.clone(),
                        &self.ctx.hostname,
                        envelope,
                    )
                    .await;
                    session.delivered(result);
                }
            }
        }
    }
}
