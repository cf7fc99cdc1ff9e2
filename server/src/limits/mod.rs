//! What every listener shares against slow, numerous or lingering clients: connection caps
//! with RAII permits (`caps`), read deadlines per command and per unauthenticated session
//! (`deadline`), a write deadline for any stream (`write_deadline`), and the shutdown signal
//! with its grace period (`shutdown`). Front ends only decide what to say on the wire.

pub mod accept;
pub mod caps;
pub mod deadline;
pub mod shutdown;
pub mod write_deadline;

#[cfg(test)]
mod listener_tests;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use crate::config::ListenerLimitsSection;

pub use accept::next_connection;
pub use caps::{CapExceeded, ConnectionLimiter, ConnectionPermit};
pub use deadline::{Expiry, ReadDeadlines};
pub use shutdown::{Shutdown, ShutdownSignal};
pub use write_deadline::WriteDeadline;

/// What each session of a line-protocol listener gets: its deadlines and the shutdown signal.
#[derive(Clone)]
pub struct SessionLimits {
    pub command_timeout: Duration,
    /// `None` where there is no login (inbound SMTP).
    pub login_timeout: Option<Duration>,
    pub write_timeout: Duration,
    pub shutdown: ShutdownSignal,
}

impl SessionLimits {
    pub fn from_section(section: &ListenerLimitsSection, shutdown: ShutdownSignal) -> Self {
        Self {
            command_timeout: section.command_timeout(),
            login_timeout: Some(section.login_timeout()),
            write_timeout: section.write_timeout(),
            shutdown,
        }
    }

    /// The documented defaults, never shut down: for sessions run outside a server.
    pub fn defaults() -> Self {
        Self::from_section(&ListenerLimitsSection::default(), ShutdownSignal::never())
    }

    /// The read deadlines of a new session, its login clock started now.
    pub fn read_deadlines(&self) -> ReadDeadlines {
        ReadDeadlines::new(self.command_timeout, self.login_timeout)
    }
}

/// What a long-lived HTTP stream (JMAP WebSocket, EventSource) is held to.
#[derive(Clone)]
pub struct StreamLimits {
    /// A WebSocket is pinged after this long without traffic from the client.
    pub ping: Duration,
    /// A WebSocket with no traffic from the client for this long is closed.
    pub idle: Duration,
    /// Streams end (WebSocket close 1001) on shutdown.
    pub shutdown: ShutdownSignal,
}

impl Default for StreamLimits {
    fn default() -> Self {
        let http = crate::config::HttpLimitsSection::default();
        Self {
            ping: Duration::from_secs(http.websocket_ping_seconds),
            idle: Duration::from_secs(http.websocket_idle_seconds),
            shutdown: ShutdownSignal::never(),
        }
    }
}

/// What one listener's accept loop needs: its caps and what each session gets.
#[derive(Clone)]
pub struct ListenerLimits {
    pub caps: Arc<ConnectionLimiter>,
    pub session: SessionLimits,
}

impl ListenerLimits {
    /// The listener `key` (e.g. `imap.listen`) configured by `section`.
    pub fn new(
        key: &'static str,
        section: &ListenerLimitsSection,
        shutdown: ShutdownSignal,
    ) -> Self {
        Self {
            caps: ConnectionLimiter::new(
                key,
                section.max_connections,
                section.max_connections_per_address,
            ),
            session: SessionLimits::from_section(section, shutdown),
        }
    }

    /// No caps and no shutdown, default deadlines: for embedders and tests that call a
    /// `serve` directly.
    pub fn unlimited(listener: &'static str) -> Self {
        Self {
            caps: ConnectionLimiter::unlimited(listener),
            session: SessionLimits::defaults(),
        }
    }

    /// Takes a permit for `peer`, or logs which cap refused it (the caller answers and closes).
    pub fn admit(&self, peer: std::net::SocketAddr) -> Option<ConnectionPermit> {
        match self.caps.try_acquire(peer.ip()) {
            Ok(permit) => Some(permit),
            Err(cap) => {
                tracing::info!(
                    listener = self.caps.listener(),
                    %peer,
                    cap = cap.key(),
                    limit = cap.limit(),
                    "connection refused: over the cap"
                );
                None
            }
        }
    }
}

/// Writes a one-line refusal to a fresh connection without waiting: its send buffer is empty,
/// so the line fits; a client that cannot take it loses nothing it was promised.
pub fn refuse(tcp: &tokio::net::TcpStream, line: &[u8]) {
    let _ = tcp.try_write(line);
}
