//! The socket side: accept loop, STARTTLS, timeouts, live-session registration, and the loop
//! that feeds a [`Session`] and performs its events.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::auth::revocation::{EndReason, LiveSession, SessionHandle};
use crate::limits::{ListenerLimits, SessionLimits};
use crate::transport::{Transport, TransportError};

use super::SieveContext;
use super::session::{Event, Interrupt, Io, Session, SessionConfig};

/// Limits of one listener; tests shorten them.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionOptions {
    /// Limit for writing responses and for the TLS handshake.
    pub io_timeout: Duration,
}

impl Default for ConnectionOptions {
    fn default() -> Self {
        Self {
            io_timeout: Duration::from_secs(60),
        }
    }
}

const READ_CHUNK: usize = 16 * 1024;

/// Accepts connections until the listener fails, with no caps.
pub async fn serve_with(listener: TcpListener, ctx: Arc<SieveContext>, options: ConnectionOptions) {
    serve_limited(listener, ctx, options, ListenerLimits::unlimited("sieve")).await
}

/// The refusal of a connection over a cap (RFC 5804 1.3: TRYLATER).
const TOO_MANY: &[u8] = b"BYE (TRYLATER) \"Too many connections, try again later.\"\r\n";

/// Accepts connections until shutdown, one task per connection holding a connection permit.
/// Session tasks live in a `JoinSet` owned by this future, so aborting it ends its sessions
/// too; on shutdown it stops accepting and waits for its sessions' goodbyes.
pub async fn serve_limited(
    listener: TcpListener,
    ctx: Arc<SieveContext>,
    options: ConnectionOptions,
    limits: ListenerLimits,
) {
    let config = Arc::new(ctx.session_config());
    let mut sessions = JoinSet::new();
    let mut shutdown = limits.session.shutdown.clone();
    loop {
        while sessions.try_join_next().is_some() {}
        let Some((stream, peer)) =
            crate::limits::next_connection(&listener, &mut shutdown, "ManageSieve").await
        else {
            break;
        };
        let Some(permit) = limits.admit(peer) else {
            crate::limits::refuse(&stream, TOO_MANY);
            continue;
        };
        // Responses are small writes; without NODELAY each one can wait for a delayed ACK.
        let _ = stream.set_nodelay(true);
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
                conn.run(stream, peer, config).await;
                tracing::debug!("disconnected");
            }
            .instrument(tracing::info_span!("sieve", %peer)),
        );
    }
    drop(listener);
    while sessions.join_next().await.is_some() {}
}

struct Connection {
    ctx: Arc<SieveContext>,
    options: ConnectionOptions,
    limits: SessionLimits,
}

/// How a connection ends abnormally.
type ConnectionError = TransportError;

/// The live-session registration of one login.
struct Live {
    /// [`Session::logins`] when it was registered.
    login: u64,
    handle: SessionHandle,
}

impl Connection {
    async fn run(&self, stream: TcpStream, peer: SocketAddr, config: Arc<SessionConfig>) {
        let mut transport = Transport::Plain(stream);
        let session = Session::new(config, Some(peer), false);
        match self.drive(&mut transport, session).await {
            Ok(()) => {
                let _ = tokio::time::timeout(self.options.io_timeout, transport.shutdown()).await;
            }
            Err(e) => tracing::info!(error = %e, "connection ended"),
        }
    }

    /// Keeps the live-session registration in step with the session: one per login, none
    /// after UNAUTHENTICATE (dropping the handle deregisters).
    fn track(&self, session: &Session, live: &mut Option<Live>) {
        let current = session.identity().map(|_| session.logins());
        if live.as_ref().map(|l| l.login) == current {
            return;
        }
        *live = None;
        let (Some(identity), Some(revocation)) =
            (session.identity(), self.ctx.backends.revocation.as_ref())
        else {
            return;
        };
        let handle = revocation.registry().register(LiveSession::new(
            "sieve",
            &identity.authorization_id,
            identity.token.clone(),
        ));
        *live = Some(Live {
            login: session.logins(),
            handle,
        });
    }

    /// Runs the session until it closes (`Ok`) or the connection fails.
    async fn drive(
        &self,
        transport: &mut Transport,
        mut session: Session,
    ) -> Result<(), ConnectionError> {
        let mut pending = Vec::new();
        let mut buf = vec![0u8; READ_CHUNK];
        let mut live: Option<Live> = None;
        let mut deadlines = self.limits.read_deadlines();
        let mut shutdown = self.limits.shutdown.clone();
        loop {
            self.track(&session, &mut live);
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
                    // Responses to pipelined commands go out together.
                    transport
                        .flush_pending(&mut pending, self.options.io_timeout)
                        .await?;
                    let (by, expiry) = deadlines.next(session.timeout());
                    let read = tokio::select! {
                        read = tokio::time::timeout_at(by, transport.read(&mut buf)) => read,
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
                    session.set_channel_binding(transport.channel_binding());
                    session.tls_established();
                }
                Interrupt::Event(Event::Auth(work)) => {
                    let done = crate::auth::sasl::driver::run(work).await;
                    session.auth_done(done);
                }
            }
        }
    }
}

/// Resolves when the logged-in session is ended from outside; never without a login.
async fn ended(live: &mut Option<Live>) -> EndReason {
    match live {
        Some(live) => live.handle.ended().await,
        None => std::future::pending().await,
    }
}
