//! The socket side: accept loop, STARTTLS, timeouts, live-session registration, and the loop
//! that feeds a [`Session`] and performs its events.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::auth::revocation::{EndReason, LiveSession, SessionHandle};
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

/// Accepts connections until the listener fails, one task per connection. Session tasks live
/// in a `JoinSet` owned by this future, so aborting it ends its sessions too.
pub async fn serve_with(listener: TcpListener, ctx: Arc<SieveContext>, options: ConnectionOptions) {
    let config = Arc::new(ctx.session_config());
    let mut sessions = JoinSet::new();
    loop {
        while sessions.try_join_next().is_some() {}
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Usually out of file descriptors: back off instead of spinning.
                tracing::warn!(error = %e, "ManageSieve accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Responses are small writes; without NODELAY each one can wait for a delayed ACK.
        let _ = stream.set_nodelay(true);
        let conn = Connection {
            ctx: ctx.clone(),
            options,
        };
        let config = config.clone();
        sessions.spawn(
            async move {
                tracing::debug!("connected");
                conn.run(stream, peer, config).await;
                tracing::debug!("disconnected");
            }
            .instrument(tracing::info_span!("sieve", %peer)),
        );
    }
}

struct Connection {
    ctx: Arc<SieveContext>,
    options: ConnectionOptions,
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
        loop {
            self.track(&session, &mut live);
            match session.next_interrupt() {
                Interrupt::Io(Io::Output(bytes)) => pending.extend_from_slice(&bytes),
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
                    let read = tokio::select! {
                        read = tokio::time::timeout(session.timeout(), transport.read(&mut buf)) => read,
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
