//! RFC 7662 token introspection (client_secret_basic) with a small per-token answer cache.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::TokenError;
use super::config::IntrospectionConfig;
use super::idp_client::IdpClient;

/// Cache key: the token's SHA-256, so the cache never holds a usable token.
type TokenHash = [u8; 32];

#[derive(Debug, Clone, Copy)]
struct Answer {
    active: bool,
    until: Instant,
}

/// Answers kept until `min(ttl, token exp)`; at most `capacity` of them.
pub struct AnswerCache {
    ttl: Duration,
    capacity: usize,
    entries: HashMap<TokenHash, Answer>,
}

impl AnswerCache {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            capacity,
            entries: HashMap::new(),
        }
    }

    pub fn get(&mut self, key: &TokenHash, now: Instant) -> Option<bool> {
        match self.entries.get(key) {
            Some(a) if a.until > now => Some(a.active),
            Some(_) => {
                self.entries.remove(key);
                None
            }
            None => None,
        }
    }

    /// `token_lifetime`: time left until the token's `exp`; the answer never outlives it.
    pub fn put(&mut self, key: TokenHash, active: bool, token_lifetime: Duration, now: Instant) {
        let keep = self.ttl.min(token_lifetime);
        if keep.is_zero() || self.capacity == 0 {
            return;
        }
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&key) {
            self.entries.retain(|_, a| a.until > now);
        }
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&key) {
            // Still full of live answers: drop the one closest to expiry.
            let soonest = self
                .entries
                .iter()
                .min_by_key(|(_, a)| a.until)
                .map(|(k, _)| *k);
            if let Some(k) = soonest {
                self.entries.remove(&k);
            }
        }
        self.entries.insert(
            key,
            Answer {
                active,
                until: now + keep,
            },
        );
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

pub struct Introspector {
    http: IdpClient,
    /// `Basic base64(urlencode(id) ":" urlencode(secret))` (RFC 6749 2.3.1).
    authorization: String,
    cache: Mutex<AnswerCache>,
}

fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

impl Introspector {
    pub fn new(http: IdpClient, config: &IntrospectionConfig) -> Self {
        let credentials = format!(
            "{}:{}",
            form_encode(&config.client_id),
            form_encode(&config.client_secret)
        );
        Self {
            http,
            authorization: format!("Basic {}", STANDARD.encode(credentials)),
            cache: Mutex::new(AnswerCache::new(config.cache_ttl, config.cache_capacity)),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, AnswerCache> {
        // The cache stays consistent even if a holder panicked (every update is one call).
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks the IdP (or the cache) whether `token` is still active. `token_lifetime` is the
    /// time left until the token's `exp`.
    pub async fn check(
        &self,
        endpoint: Option<&str>,
        token: &str,
        token_lifetime: Duration,
    ) -> Result<(), TokenError> {
        let key: TokenHash = Sha256::digest(token.as_bytes()).into();
        // Bound first so the cache lock is released before any await.
        let cached = self.cache().get(&key, Instant::now());
        let active = match cached {
            Some(active) => {
                tracing::debug!(active, "introspection answer from cache");
                active
            }
            None => {
                let endpoint = endpoint.ok_or_else(|| {
                    TokenError::Unavailable("the IdP advertises no introspection_endpoint".into())
                })?;
                let active = self.ask(endpoint, token).await?;
                self.cache()
                    .put(key, active, token_lifetime, Instant::now());
                active
            }
        };
        if active {
            Ok(())
        } else {
            Err(TokenError::Inactive)
        }
    }

    /// Asks the IdP itself, never the cache (re-check of a live session). An inactive answer
    /// replaces a cached active one, so the token stops opening new sessions too.
    pub async fn recheck(&self, endpoint: Option<&str>, token: &str) -> Result<(), TokenError> {
        let endpoint = endpoint.ok_or_else(|| {
            TokenError::Unavailable("the IdP advertises no introspection_endpoint".into())
        })?;
        if self.ask(endpoint, token).await? {
            return Ok(());
        }
        let key: TokenHash = Sha256::digest(token.as_bytes()).into();
        let mut cache = self.cache();
        let ttl = cache.ttl;
        cache.put(key, false, ttl, Instant::now());
        Err(TokenError::Inactive)
    }

    async fn ask(&self, endpoint: &str, token: &str) -> Result<bool, TokenError> {
        let answer = self
            .http
            .post_form_json(
                "introspection",
                endpoint,
                &self.authorization,
                &[("token", token), ("token_type_hint", "access_token")],
            )
            .await?;
        answer
            .get("active")
            .and_then(Value::as_bool)
            .ok_or_else(|| {
                TokenError::Unavailable(format!(
                    "introspection {endpoint}: answer has no boolean \"active\""
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn answer_never_outlives_the_token() {
        let now = Instant::now();
        let mut c = AnswerCache::new(MIN, 10);
        c.put([1; 32], true, Duration::from_secs(5), now);
        assert_eq!(c.get(&[1; 32], now + Duration::from_secs(4)), Some(true));
        assert_eq!(c.get(&[1; 32], now + Duration::from_secs(5)), None);
        // Capped at the TTL even for a long-lived token.
        c.put([2; 32], false, Duration::from_secs(3600), now);
        assert_eq!(
            c.get(&[2; 32], now + MIN - Duration::from_secs(1)),
            Some(false)
        );
        assert_eq!(c.get(&[2; 32], now + MIN), None);
        // An already expired token is not cached at all.
        c.put([3; 32], true, Duration::ZERO, now);
        assert_eq!(c.get(&[3; 32], now), None);
    }

    #[test]
    fn size_is_bounded_expired_first() {
        let now = Instant::now();
        let mut c = AnswerCache::new(MIN, 3);
        c.put([1; 32], true, Duration::from_secs(1), now);
        c.put([2; 32], true, MIN, now);
        c.put([3; 32], true, Duration::from_secs(30), now);
        // Full; [1] has expired by then and goes first.
        let later = now + Duration::from_secs(2);
        c.put([4; 32], true, MIN, later);
        assert_eq!(c.len(), 3);
        assert_eq!(c.get(&[2; 32], later), Some(true));
        // Full of live answers: the one closest to expiry ([3]) goes.
        c.put([5; 32], true, MIN, later);
        assert_eq!(c.len(), 3);
        assert_eq!(c.get(&[3; 32], later), None);
        assert_eq!(c.get(&[4; 32], later), Some(true));
        assert_eq!(c.get(&[5; 32], later), Some(true));
    }
}
