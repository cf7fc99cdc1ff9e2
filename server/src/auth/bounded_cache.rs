//! A small bounded cache whose entries expire: the validated-token cache and the directory
//! cache share it. No I/O; the caller passes the current instant, so tests need no sleeps.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

struct Entry<V> {
    value: V,
    until: Instant,
}

/// At most `capacity` entries, each kept until `min(ttl, the lifetime given at insertion)`.
/// A zero `ttl` or `capacity` turns it off (nothing is stored).
pub struct BoundedCache<K, V> {
    ttl: Duration,
    capacity: usize,
    entries: Mutex<HashMap<K, Entry<V>>>,
}

impl<K: Eq + Hash + Clone, V: Clone> BoundedCache<K, V> {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            capacity,
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub fn is_enabled(&self) -> bool {
        !self.ttl.is_zero() && self.capacity > 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, Entry<V>>> {
        // A poisoned map still holds whole entries: each is inserted or removed in one call.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The live value for `key`; an expired one is removed.
    pub fn get(&self, key: &K, now: Instant) -> Option<V> {
        if !self.is_enabled() {
            return None;
        }
        let mut entries = self.lock();
        match entries.get(key) {
            Some(e) if e.until > now => Some(e.value.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    /// Stores `value` for at most `lifetime` (and never longer than the cache's ttl). When
    /// full, expired entries go first, then the one closest to expiry.
    pub fn put(&self, key: K, value: V, lifetime: Duration, now: Instant) {
        let keep = self.ttl.min(lifetime);
        if keep.is_zero() || !self.is_enabled() {
            return;
        }
        let mut entries = self.lock();
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            entries.retain(|_, e| e.until > now);
        }
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            let soonest = entries
                .iter()
                .min_by_key(|(_, e)| e.until)
                .map(|(k, _)| k.clone());
            if let Some(k) = soonest {
                entries.remove(&k);
            }
        }
        entries.insert(
            key,
            Entry {
                value,
                until: now + keep,
            },
        );
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_at_the_shorter_of_ttl_and_lifetime() {
        let cache = BoundedCache::new(Duration::from_secs(60), 10);
        let t0 = Instant::now();
        cache.put("long", 1, Duration::from_secs(3600), t0);
        cache.put("short", 2, Duration::from_secs(5), t0);
        assert_eq!(cache.get(&"long", t0 + Duration::from_secs(59)), Some(1));
        assert_eq!(cache.get(&"long", t0 + Duration::from_secs(60)), None);
        assert_eq!(cache.get(&"short", t0 + Duration::from_secs(4)), Some(2));
        assert_eq!(cache.get(&"short", t0 + Duration::from_secs(5)), None);
        // Expired entries are removed when met.
        assert!(cache.is_empty());
    }

    #[test]
    fn never_holds_more_than_capacity() {
        let cache = BoundedCache::new(Duration::from_secs(60), 3);
        let t0 = Instant::now();
        for i in 0..10u64 {
            cache.put(i, i, Duration::from_secs(10 + i), t0);
            assert!(cache.len() <= 3);
        }
        // The ones closest to expiry made room: the last three stay.
        assert_eq!(cache.get(&9, t0), Some(9));
        assert_eq!(cache.get(&8, t0), Some(8));
        assert_eq!(cache.get(&7, t0), Some(7));
        assert_eq!(cache.get(&0, t0), None);
    }

    #[test]
    fn zero_ttl_or_capacity_stores_nothing() {
        let t0 = Instant::now();
        for cache in [
            BoundedCache::new(Duration::ZERO, 10),
            BoundedCache::new(Duration::from_secs(60), 0),
        ] {
            cache.put(1, 1, Duration::from_secs(60), t0);
            assert_eq!(cache.get(&1, t0), None);
            assert!(!cache.is_enabled());
        }
        // A lifetime already over is not stored either.
        let cache = BoundedCache::new(Duration::from_secs(60), 10);
        cache.put(1, 1, Duration::ZERO, t0);
        assert!(cache.is_empty());
    }
}
