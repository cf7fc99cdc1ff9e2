//! Connection caps of one listener: a global count and a count per client address, taken
//! together as one RAII permit so a session can never leak a slot.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Which cap refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CapExceeded {
    #[error("the listener already has {limit} connections")]
    Total { limit: usize },
    #[error("this address already has {limit} connections")]
    PerAddress { limit: usize },
}

impl CapExceeded {
    /// The config key of the cap, for logs.
    pub fn key(&self) -> &'static str {
        match self {
            CapExceeded::Total { .. } => "max_connections",
            CapExceeded::PerAddress { .. } => "max_connections_per_address",
        }
    }
    pub fn limit(&self) -> usize {
        match self {
            CapExceeded::Total { limit } | CapExceeded::PerAddress { limit } => *limit,
        }
    }
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_address: HashMap<IpAddr, usize>,
}

/// The caps of one listener.
pub struct ConnectionLimiter {
    listener: &'static str,
    max_total: usize,
    max_per_address: usize,
    counts: Mutex<Counts>,
}

impl ConnectionLimiter {
    pub fn new(listener: &'static str, max_total: usize, max_per_address: usize) -> Arc<Self> {
        Arc::new(Self {
            listener,
            max_total,
            max_per_address,
            counts: Mutex::new(Counts::default()),
        })
    }

    pub fn unlimited(listener: &'static str) -> Arc<Self> {
        Self::new(listener, usize::MAX, usize::MAX)
    }

    /// The listener's config key, for logs.
    pub fn listener(&self) -> &'static str {
        self.listener
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        // A panic elsewhere while holding the lock leaves counts that are still consistent.
        self.counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Connections open now (tests, logs).
    pub fn open(&self) -> usize {
        self.counts().total
    }

    /// A permit for one connection from `ip`, or the cap it would exceed.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionPermit, CapExceeded> {
        // An IPv4 client on a dual-stack socket counts as its IPv4 address.
        let ip = ip.to_canonical();
        let mut counts = self.counts();
        if counts.total >= self.max_total {
            return Err(CapExceeded::Total {
                limit: self.max_total,
            });
        }
        let mine = counts.per_address.entry(ip).or_default();
        if *mine >= self.max_per_address {
            return Err(CapExceeded::PerAddress {
                limit: self.max_per_address,
            });
        }
        *mine += 1;
        counts.total += 1;
        Ok(ConnectionPermit {
            limiter: self.clone(),
            ip,
        })
    }
}

/// One connection's slot; dropping it frees the slot.
pub struct ConnectionPermit {
    limiter: Arc<ConnectionLimiter>,
    ip: IpAddr,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut counts = self.limiter.counts();
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.per_address.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.per_address.remove(&self.ip);
            }
        }
    }
}
