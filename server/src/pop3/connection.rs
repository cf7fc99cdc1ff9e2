//! The socket side: feeds a [`Session`] and performs its events (TLS upgrade, SASL steps,
//! password checks, the maildrop), with timeouts, and registers the logged-in session as live
//! so a logout at the IdP or a revocation ends it.

use crate::auth::sasl::ChannelBinding;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::Pop3Context;
use super::maildrop::{self, Maildrop};
use super::session::{Event, Interrupt, Io as SessionIo, Session, SessionConfig};
use crate::auth::revocation::{LiveSession, SessionHandle, ended};
use crate::auth::sasl::driver;
use crate::limits::SessionLimits;

pub use crate::transport::Io;

/// Timeouts of one listener; tests shorten them.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionOptions {
    /// Idle time before login (and the limit of TLS handshakes).
    pub preauth_timeout: Duration,
    /// Idle time once logged in (RFC 1939 3: at least 10 minutes).
    pub idle_timeout: Duration,
    /// Limit for writing replies.
    pub io_timeout: Duration,
}

impl ConnectionOptions {
    pub fn from_config(config: &crate::config::Pop3Section) -> Self {
        Self {
            preauth_timeout: Duration::from_secs(config.preauth_timeout_seconds.max(1)),
            idle_timeout: Duration::from_secs(config.idle_timeout_seconds.max(1)),
            io_timeout: Duration::from_secs(60),
        }
    }
}

const READ_CHUNK: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
enum ConnectionError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("timed out writing")]
    WriteTimeout,
    #[error("TLS handshake timed out")]
    HandshakeTimeout,
    #[error("STLS without a TLS certificate")]
    NoTls,
}

/// The session settings of one listener.
pub fn session_config(ctx: &Pop3Context, implicit_tls: bool) -> Arc<SessionConfig> {
    Arc::new(SessionConfig {
        hostname: ctx.hostname.clone(),
        allow_plaintext_auth: ctx.config.allow_plaintext_auth,
        max_auth_failures: ctx.config.max_auth_failures,
        stls_available: ctx.tls.is_some() && !implicit_tls,
        registry: ctx.registry.clone(),
        locks: ctx.locks.clone(),
    })
}

/// Runs one session to its end. `tls` says whether `io` is already TLS (implicit TLS), and
/// `binding` is its `tls-exporter` channel binding (SCRAM-SHA-256-PLUS).
pub async fn run(
    io: Box<dyn Io>,
    peer: Option<SocketAddr>,
    tls: bool,
    binding: Option<ChannelBinding>,
    ctx: Arc<Pop3Context>,
    options: ConnectionOptions,
) {
    run_limited(
        io,
        peer,
        tls,
        binding,
        ctx,
        options,
        SessionLimits::defaults(),
    )
    .await
}

/// [`run`] with the listener's command and login deadlines and shutdown signal.
pub async fn run_limited(
    io: Box<dyn Io>,
    peer: Option<SocketAddr>,
    tls: bool,
    binding: Option<ChannelBinding>,
    ctx: Arc<Pop3Context>,
    options: ConnectionOptions,
    limits: SessionLimits,
) {
    let mut session = Session::new(session_config(&ctx, tls), peer, tls);
    session.set_channel_binding(binding);
    let mut conn = Connection {
        io,
        ctx,
        options,
        pending: Vec::new(),
        limits,
    };
    match conn.drive(session).await {
        Ok(()) => {
            let _ = tokio::time::timeout(options.io_timeout, conn.io.shutdown()).await;
        }
        Err(e) => tracing::info!(error = %e, "POP3 connection ended"),
    }
}

struct Connection {
    io: Box<dyn Io>,
    ctx: Arc<Pop3Context>,
    options: ConnectionOptions,
    /// Replies not written yet; pipelined commands' replies go out together.
    pending: Vec<u8>,
    limits: SessionLimits,
}

impl Connection {
    async fn flush(&mut self) -> Result<(), ConnectionError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let limit = self.options.io_timeout;
        let (io, pending) = (&mut self.io, &self.pending);
        let write = async {
            io.write_all(pending).await?;
            io.flush().await
        };
        tokio::time::timeout(limit, write)
            .await
            .map_err(|_| ConnectionError::WriteTimeout)??;
        self.pending.clear();
        Ok(())
    }

    /// Registers the session in the live-session registry once it is logged in.
    fn register(&self, session: &Session) -> Option<SessionHandle> {
        let identity = session.identity()?;
        let revocation = self.ctx.backends.revocation.as_ref()?;
        Some(revocation.registry().register(LiveSession::new(
            "pop3",
            &identity.authorization_id,
            identity.token.clone(),
        )))
    }

    /// Runs the handshake; returns the new session's channel binding.
    async fn start_tls(&mut self) -> Result<Option<ChannelBinding>, ConnectionError> {
        let acceptor = self.ctx.tls.clone().ok_or(ConnectionError::NoTls)?;
        // Swap a dummy in to move the plain stream into the TLS layer.
        let dummy: Box<dyn Io> = Box::new(tokio::io::join(tokio::io::empty(), tokio::io::sink()));
        let plain = std::mem::replace(&mut self.io, dummy);
        let tls = tokio::time::timeout(self.options.preauth_timeout, acceptor.accept(plain))
            .await
            .map_err(|_| ConnectionError::HandshakeTimeout)??;
        let binding = crate::tls::tls_exporter(tls.get_ref().1);
        self.io = Box::new(tls);
        Ok(binding)
    }

    /// Runs the session until it closes (`Ok`) or the connection fails.
    async fn drive(&mut self, mut session: Session) -> Result<(), ConnectionError> {
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
                Interrupt::Io(SessionIo::Output(bytes)) => {
                    // An answer: the command it answers has arrived.
                    deadlines.answered();
                    self.pending.extend_from_slice(&bytes);
                }
                Interrupt::Io(SessionIo::Close) => return self.flush().await,
                Interrupt::Io(SessionIo::NeedMoreInput) => {
                    self.flush().await?;
                    if let Some(reason) = live.as_ref().and_then(SessionHandle::try_ended) {
                        session.ended(&reason);
                        continue;
                    }
                    let timeout = if session.identity().is_some() {
                        self.options.idle_timeout
                    } else {
                        self.options.preauth_timeout
                    };
                    let (by, expiry) = deadlines.next(timeout);
                    let read = tokio::select! {
                        read = tokio::time::timeout_at(by, self.io.read(&mut buf)) => read,
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
                            tracing::info!(reason = expiry.what(), "POP3 read deadline passed");
                            session.timed_out();
                        }
                        Ok(Ok(0)) => {
                            // No QUIT: no UPDATE (RFC 1939 6); the lock goes with the session.
                            tracing::debug!("POP3 client closed the connection");
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
                    self.flush().await?;
                    let binding = self.start_tls().await?;
                    tracing::debug!("POP3 STLS done");
                    session.tls_established();
                    session.set_channel_binding(binding);
                }
                Interrupt::Event(Event::Auth(work)) => {
                    let done = driver::run(work).await;
                    session.auth_done(done);
                }
                Interrupt::Event(Event::CheckPassword { user, password }) => {
                    let result = driver::verify_password_throttled(
                        &self.ctx.backends,
                        session.peer(),
                        &user,
                        &password,
                    )
                    .await;
                    session.password_checked(result);
                }
                Interrupt::Event(Event::OpenMaildrop { user }) => {
                    let result = Maildrop::load(self.ctx.store.as_ref(), &user);
                    session.maildrop_opened(result);
                }
                Interrupt::Event(Event::Update { user, uids }) => {
                    // Ended before QUIT was read: nothing is deleted.
                    if let Some(reason) = live.as_ref().and_then(SessionHandle::try_ended) {
                        session.ended(&reason);
                        continue;
                    }
                    let result = maildrop::commit(self.ctx.store.as_ref(), &user, &uids);
                    session.updated(result);
                }
            }
        }
    }
}
