//! One server-wide budget of message bytes held in memory while they arrive (SMTP DATA, IMAP
//! literals such as APPEND's), so many large uploads at once cannot exhaust memory: a byte
//! semaphore without waiting. A session reserves before it buffers; when the budget is spent it
//! refuses (SMTP `452 4.3.1`, IMAP `NO [UNAVAILABLE]`) and nothing is half-stored.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The shared budget. Cheap to clone; clones share it.
#[derive(Clone)]
pub struct InFlight {
    inner: Arc<Inner>,
}

struct Inner {
    limit: usize,
    used: AtomicUsize,
}

impl std::fmt::Debug for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InFlight")
            .field("limit", &self.inner.limit)
            .field("used", &self.in_use())
            .finish()
    }
}

impl InFlight {
    pub fn new(limit: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                limit,
                used: AtomicUsize::new(0),
            }),
        }
    }

    pub fn limit(&self) -> usize {
        self.inner.limit
    }

    /// Bytes reserved right now, by every session together.
    pub fn in_use(&self) -> usize {
        self.inner.used.load(Ordering::Acquire)
    }

    /// An empty reservation, to grow later.
    pub fn empty(&self) -> Reservation {
        Reservation {
            pool: self.clone(),
            bytes: 0,
        }
    }

    /// Reserves `bytes`, or nothing when that would pass the limit.
    pub fn try_reserve(&self, bytes: usize) -> Option<Reservation> {
        let mut r = self.empty();
        r.try_grow(bytes).then_some(r)
    }

    fn take(&self, bytes: usize) -> bool {
        let limit = self.inner.limit;
        self.inner
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|total| *total <= limit)
            })
            .is_ok()
    }

    fn give_back(&self, bytes: usize) {
        self.inner.used.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// Bytes one session holds; given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    pool: InFlight,
    bytes: usize,
}

impl Reservation {
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Adds `more` bytes; false (and nothing changed) when the budget has not that much left.
    pub fn try_grow(&mut self, more: usize) -> bool {
        if more == 0 {
            return true;
        }
        if self.pool.take(more) {
            self.bytes += more;
            true
        } else {
            false
        }
    }

    /// Grows the reservation to at least `total` bytes.
    pub fn try_grow_to(&mut self, total: usize) -> bool {
        self.try_grow(total.saturating_sub(self.bytes))
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.pool.give_back(self.bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_share_the_limit_and_give_back_on_drop() {
        let pool = InFlight::new(100);
        let a = pool.try_reserve(60).unwrap();
        assert_eq!(pool.in_use(), 60);
        assert!(pool.try_reserve(41).is_none(), "over the limit");
        assert_eq!(pool.in_use(), 60, "a refused reservation takes nothing");
        let mut b = pool.try_reserve(40).unwrap();
        assert!(!b.try_grow(1));
        assert_eq!(b.bytes(), 40);
        drop(a);
        assert_eq!(pool.in_use(), 40);
        assert!(b.try_grow_to(90));
        assert!(b.try_grow_to(50), "already that large");
        assert_eq!((b.bytes(), pool.in_use()), (90, 90));
        drop(b);
        assert_eq!(pool.in_use(), 0);
    }
}
