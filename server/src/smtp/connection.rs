//! The socket side: accept loop, TLS (implicit and STARTTLS), and the loop that feeds a
//! [`Session`] and performs its events.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::limits::{ListenerLimits, SessionLimits};

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

/// Accepts connections forever, one task per connection, with no caps.
pub async fn serve_with(
    listener: TcpListener,
    kind: SmtpListenerKind,
    ctx: Arc<SmtpContext>,
    options: ConnectionOptions,
) {
    let mut limits = ListenerLimits::unlimited("smtp");
    if kind == SmtpListenerKind::Inbound {
        limits.session.login_timeout = None;
    }
    serve_limited(listener, kind, ctx, options, limits).await
}

/// Refusal of a connection over a cap (RFC 3463 4.7.0: a security or policy status).
fn too_many(hostname: &str) -> Vec<u8> {
    format!("421 4.7.0 {hostname} Too many connections, try again later\r\n").into_bytes()
}

/// Accepts connections until shutdown, one task per connection holding a connection permit.
/// Session tasks live in a `JoinSet` owned by this future, so aborting it ends them; on
/// shutdown it stops accepting and waits for its sessions' goodbyes.
pub async fn serve_limited(
    listener: TcpListener,
    kind: SmtpListenerKind,
    ctx: Arc<SmtpContext>,
    options: ConnectionOptions,
    limits: ListenerLimits,
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
        max_recipient_refusals: ctx.inbound.max_recipient_refusals,
        inflight: ctx.inflight.clone(),
        address_refusals: Arc::new(super::refusals::RecipientRefusals::new(
            ctx.inbound.max_recipient_refusals_per_address,
        )),
    });
    if kind == SmtpListenerKind::SubmissionImplicitTls && ctx.tls.is_none() {
        tracing::error!("implicit-TLS submission listener without a TLS certificate; not serving");
        return;
    }
    let mut sessions = JoinSet::new();
    let mut shutdown = limits.session.shutdown.clone();
    loop {
        while sessions.try_join_next().is_some() {}
        let Some((stream, peer)) =
            crate::limits::next_connection(&listener, &mut shutdown, "SMTP").await
        else {
            break;
        };
        let Some(permit) = limits.admit(peer) else {
            if kind != SmtpListenerKind::SubmissionImplicitTls {
                crate::limits::refuse(&stream, &too_many(&ctx.hostname));
            }
            continue;
        };
        // Replies are small writes; without NODELAY each one can wait for a delayed ACK.
        let _ = stream.set_nodelay(true);
        let span = tracing::info_span!("smtp", %peer, ?kind);
        let conn = Connection {
            ctx: ctx.clone(),
            options,
            limits: limits.session.clone(),
        };
        let config = config.clone();
        sessions.spawn(
            async move {
                let _permit = permit;
                tracing::debug!("connected");
                conn.run(stream, peer, kind, config).await;
                tracing::debug!("disconnected");
            }
            .instrument(span),
        );
    }
    drop(listener);
    while sessions.join_next().await.is_some() {}
}

struct Connection {
    ctx: Arc<SmtpContext>,
    options: ConnectionOptions,
    limits: SessionLimits,
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
        let mut deadlines = self.limits.read_deadlines();
        let mut shutdown = self.limits.shutdown.clone();
        loop {
            if live.is_none() {
                live = self.register(&session);
            }
            if session.identity().is_some() {
                deadlines.logged_in();
            }
            match session.next_interrupt() {
                Interrupt::Io(Io::Output(bytes)) => {
                    // An answer: the command it answers has arrived.
                    deadlines.answered();
                    pending.extend_from_slice(&bytes);
                }
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
                    let (by, expiry) = deadlines.next(self.options.idle_timeout);
                    let read = tokio::select! {
                        read = tokio::time::timeout_at(by, transport.read(&mut buf)) => read,
                        // At once, also in the middle of DATA: that message is not accepted.
                        reason = ended(&mut live) => {
                            session.ended(&reason);
                            continue;
                        }
                        () = shutdown.requested() => {
                            session.shutting_down();
                            continue;
                        }
                    };
                    match read {
                        Err(_) => {
                            tracing::info!(reason = expiry.what(), "read deadline passed");
                            session.timed_out();
                        }
                        Ok(Ok(0)) => {
                            tracing::debug!("client closed the connection");
                            return Ok(());
                        }
                        Ok(Ok(n)) => {
                            deadlines.input();
                            session.enqueue_input(&buf[..n]);
                        }
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
