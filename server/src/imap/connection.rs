//! The socket side of a session: reads into the framer, hands frames to the session, writes its
//! output, and runs STARTTLS, timeouts and IDLE notifications. All protocol logic is elsewhere.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::broadcast;

use super::ImapContext;
use super::framing::{Frame, Framer};
use super::session::{Event, Next, Session};
use crate::auth::revocation::{EndReason, LiveSession, SessionHandle, ended};
use crate::auth::sasl::driver::{self, AuthDone};
use crate::auth::sasl::{ChannelBinding, SaslFailure};
use crate::limits::{Expiry, SessionLimits, WriteDeadline};
use crate::store::StoreEvent;

pub use crate::transport::Io;

/// Bytes read per call.
const READ_CHUNK: usize = 16 * 1024;

/// How long a response already being written may take to finish once the session has been
/// ended (a client that reads nothing cannot hold an ended session open).
const FINISH_AFTER_END: Duration = Duration::from_secs(5);

enum Wake {
    Read(std::io::Result<usize>),
    Store(Result<StoreEvent, broadcast::error::RecvError>),
    Timeout(Expiry),
    Ended(EndReason),
    Shutdown,
}

/// What a flush achieved.
enum Flushed {
    All,
    /// The session was ended between two responses; the rest was dropped.
    Ended(EndReason),
}

async fn store_event(
    rx: &mut Option<broadcast::Receiver<StoreEvent>>,
) -> Result<StoreEvent, broadcast::error::RecvError> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn flush(io: &mut Box<dyn Io>, session: &mut Session) -> std::io::Result<()> {
    let out = session.take_output();
    if !out.is_empty() {
        io.write_all(&out).await?;
        io.flush().await?;
    }
    Ok(())
}

/// Writes the queued output response by response, stopping between two responses once the
/// session has been ended. A response being written when that happens is finished (within
/// [`FINISH_AFTER_END`]), so the client never sees half a response before the `BYE`.
async fn flush_live(
    io: &mut Box<dyn Io>,
    session: &mut Session,
    live: &mut Option<SessionHandle>,
) -> std::io::Result<Flushed> {
    let chunks = session.take_chunks();
    let mut wrote = false;
    for chunk in chunks {
        if let Some(reason) = live.as_ref().and_then(SessionHandle::try_ended) {
            if wrote {
                io.flush().await?;
            }
            return Ok(Flushed::Ended(reason));
        }
        let mut pos = 0;
        let mut end_seen = None;
        // Once ended, the rest of this response gets FINISH_AFTER_END in all.
        let mut finish_by = None;
        while pos < chunk.len() {
            if let Some(by) = finish_by {
                match tokio::time::timeout_at(by, io.write(&chunk[pos..])).await {
                    Ok(Ok(0)) | Ok(Err(_)) | Err(_) => {
                        return Err(std::io::Error::other(
                            "session ended while the client stalled",
                        ));
                    }
                    Ok(Ok(n)) => pos += n,
                }
                continue;
            }
            tokio::select! {
                written = io.write(&chunk[pos..]) => match written? {
                    0 => return Err(std::io::ErrorKind::WriteZero.into()),
                    n => pos += n,
                },
                reason = ended(live) => {
                    end_seen = Some(reason);
                    finish_by = Some(tokio::time::Instant::now() + FINISH_AFTER_END);
                }
            }
        }
        wrote = true;
        if let Some(reason) = end_seen {
            io.flush().await?;
            return Ok(Flushed::Ended(reason));
        }
    }
    if wrote {
        io.flush().await?;
    }
    Ok(Flushed::All)
}

/// Says goodbye on shutdown and closes.
async fn shut_down(io: &mut Box<dyn Io>, session: &mut Session) {
    session.take_output();
    session.shutting_down();
    let _ = tokio::time::timeout(FINISH_AFTER_END, flush(io, session)).await;
    let _ = tokio::time::timeout(FINISH_AFTER_END, io.shutdown()).await;
}

/// Writes the goodbye of an ended session and closes.
async fn end_session(io: &mut Box<dyn Io>, session: &mut Session, reason: &EndReason) {
    session.take_output();
    session.ended(reason);
    let _ = tokio::time::timeout(FINISH_AFTER_END, flush(io, session)).await;
    let _ = tokio::time::timeout(FINISH_AFTER_END, io.shutdown()).await;
}

enum Answer {
    Auth(AuthDone),
    Password(Result<String, SaslFailure>),
    Heavy(Result<Vec<u8>, crate::offload::OffloadError>),
}

/// The session's slow work: SASL steps, password checks, and heavy commands (on the offload
/// pool, so this task only awaits).
async fn perform(ctx: &ImapContext, peer: Option<SocketAddr>, event: Event) -> Answer {
    match event {
        Event::Auth(work) => Answer::Auth(driver::run(work).await),
        Event::CheckPassword { user, password } => Answer::Password(
            driver::verify_password_throttled(&ctx.backends, peer, &user, &password).await,
        ),
        Event::Heavy(job) => Answer::Heavy(ctx.offload.run(job).await),
    }
}

/// Registers the session in the live-session registry once it has logged in.
fn register(ctx: &ImapContext, session: &Session) -> Option<SessionHandle> {
    let user = session.user.as_deref()?;
    let revocation = ctx.backends.revocation.as_ref()?;
    Some(
        revocation
            .registry()
            .register(LiveSession::new("imap", user, session.token.clone())),
    )
}

/// Runs one session to its end. `tls` says whether `io` is already TLS (implicit TLS), and
/// `binding` is its `tls-exporter` channel binding (SCRAM-SHA-256-PLUS).
pub async fn run(
    io: Box<dyn Io>,
    peer: Option<SocketAddr>,
    tls: bool,
    binding: Option<ChannelBinding>,
    ctx: Arc<ImapContext>,
) {
    run_with(io, peer, tls, binding, ctx, SessionLimits::defaults()).await
}

/// [`run`] with the listener's deadlines and shutdown signal. Every write has the write
/// deadline; every read waits at most until the idle, command or login deadline.
pub async fn run_with(
    io: Box<dyn Io>,
    peer: Option<SocketAddr>,
    tls: bool,
    binding: Option<ChannelBinding>,
    ctx: Arc<ImapContext>,
    limits: SessionLimits,
) {
    let mut io: Box<dyn Io> = Box::new(WriteDeadline::new(io, limits.write_timeout));
    let mut deadlines = limits.read_deadlines();
    let mut shutdown = limits.shutdown.clone();
    let mut session = Session::new(ctx.clone(), peer, tls);
    session.set_channel_binding(binding);
    let mut framer = Framer::new();
    let mut idle_rx: Option<broadcast::Receiver<StoreEvent>> = None;
    let mut live: Option<SessionHandle> = None;
    let mut buf = vec![0u8; READ_CHUNK];
    session.greeting();
    if let Err(e) = flush(&mut io, &mut session).await {
        tracing::debug!(error = %e, "IMAP client gone before greeting");
        return;
    }
    loop {
        let frame = framer.next(session.framer_mode(), &session.limits());
        if frame != Frame::NeedMore {
            // A whole line or literal has arrived: the command clock stops.
            deadlines.answered();
            // A command is not left waiting on its own work (a slow IdP, a big search) once the
            // session has been ended (or the server shuts down).
            let mut next = session.handle(frame);
            while let Next::Event(event) = next {
                let answer = tokio::select! {
                    answer = perform(&ctx, peer, event) => answer,
                    reason = ended(&mut live) => {
                        end_session(&mut io, &mut session, &reason).await;
                        return;
                    }
                    () = shutdown.requested() => {
                        shut_down(&mut io, &mut session).await;
                        return;
                    }
                };
                next = match answer {
                    Answer::Auth(done) => session.auth_done(done),
                    Answer::Password(result) => session.password_checked(result),
                    Answer::Heavy(result) => session.heavy_done(result),
                };
            }
            if live.is_none() {
                live = register(&ctx, &session);
            }
            if session.user.is_some() {
                deadlines.logged_in();
            }
            // IDLE watches the store only while it runs; subscribing first, then syncing, so no
            // change falls between the two.
            match (session.idling_user(), idle_rx.is_some()) {
                (Some(user), false) => {
                    idle_rx = Some(ctx.store.subscribe(user));
                    session.idle_update();
                }
                (None, true) => idle_rx = None,
                _ => {}
            }
            match flush_live(&mut io, &mut session, &mut live).await {
                Ok(Flushed::All) => {}
                Ok(Flushed::Ended(reason)) => {
                    end_session(&mut io, &mut session, &reason).await;
                    return;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "IMAP write failed");
                    return;
                }
            }
            match next {
                // The loop above answered every event.
                Next::Continue | Next::Event(_) => {}
                Next::AcceptLiteral => framer.accept_literal(),
                Next::RejectLiteral => framer.reject_literal(),
                Next::Close => {
                    let _ = io.shutdown().await;
                    return;
                }
                Next::StartTls => {
                    if framer.buffered() > 0 {
                        tracing::info!(
                            bytes = framer.buffered(),
                            "discarding input pipelined after STARTTLS"
                        );
                    }
                    framer.discard_input();
                    let Some(acceptor) = ctx.tls.clone() else {
                        return;
                    };
                    let limit = Duration::from_secs(ctx.config.preauth_timeout_seconds.max(1));
                    match tokio::time::timeout(limit, acceptor.accept(io)).await {
                        Ok(Ok(stream)) => {
                            let binding = crate::tls::tls_exporter(stream.get_ref().1);
                            io = Box::new(stream);
                            session.tls_started();
                            session.set_channel_binding(binding);
                            tracing::debug!("IMAP STARTTLS done");
                        }
                        Ok(Err(e)) => {
                            tracing::info!(error = %e, "IMAP STARTTLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::info!("IMAP STARTTLS handshake timed out");
                            return;
                        }
                    }
                }
            }
            continue;
        }
        let (by, expiry) = deadlines.next(session.timeout());
        let wake = tokio::select! {
            r = tokio::time::timeout_at(by, io.read(&mut buf)) => match r {
                Ok(r) => Wake::Read(r),
                Err(_) => Wake::Timeout(expiry),
            },
            e = store_event(&mut idle_rx) => Wake::Store(e),
            reason = ended(&mut live) => Wake::Ended(reason),
            () = shutdown.requested() => Wake::Shutdown,
        };
        match wake {
            Wake::Read(Ok(0)) => {
                tracing::debug!(user = ?session.user, "IMAP client closed the connection");
                return;
            }
            Wake::Read(Ok(n)) => {
                deadlines.input();
                framer.enqueue(&buf[..n]);
            }
            Wake::Read(Err(e)) => {
                tracing::debug!(error = %e, "IMAP read failed");
                return;
            }
            Wake::Timeout(expiry) => {
                tracing::info!(user = ?session.user, reason = expiry.what(), "IMAP read deadline passed");
                session.on_timeout();
                let _ = flush(&mut io, &mut session).await;
                let _ = io.shutdown().await;
                return;
            }
            Wake::Store(event) => {
                if let Err(broadcast::error::RecvError::Closed) = event {
                    idle_rx = None;
                }
                // Lagged or not, a sync reports whatever changed.
                session.idle_update();
                if flush(&mut io, &mut session).await.is_err() {
                    return;
                }
            }
            Wake::Ended(reason) => {
                end_session(&mut io, &mut session, &reason).await;
                return;
            }
            Wake::Shutdown => {
                shut_down(&mut io, &mut session).await;
                return;
            }
        }
    }
}
