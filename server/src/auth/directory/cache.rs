//! A short cache in front of a directory's `lookup`: every bearer login maps its token's user
//! through the directory, and an LDAP search per login costs a connection, a bind and a search.
//! Only users found are remembered (a user created a moment ago is never hidden by a stale
//! "not found"); errors, password checks and SCRAM secrets always go to the directory.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{Directory, DirectoryError, ScramUser};
use crate::auth::bounded_cache::BoundedCache;

pub struct CachingDirectory {
    inner: Arc<dyn Directory>,
    found: BoundedCache<String, String>,
}

impl CachingDirectory {
    /// `ttl` zero or `capacity` zero: every lookup goes to `inner`.
    pub fn new(inner: Arc<dyn Directory>, ttl: Duration, capacity: usize) -> Self {
        Self {
            inner,
            found: BoundedCache::new(ttl, capacity),
        }
    }
}

#[async_trait]
impl Directory for CachingDirectory {
    async fn lookup(&self, name: &str) -> Result<Option<String>, DirectoryError> {
        if let Some(canonical) = self.found.get(&name.to_string(), Instant::now()) {
            return Ok(Some(canonical));
        }
        let found = self.inner.lookup(name).await?;
        if let Some(canonical) = &found {
            self.found.put(
                name.to_string(),
                canonical.clone(),
                Duration::MAX,
                Instant::now(),
            );
        }
        Ok(found)
    }

    async fn verify_password(
        &self,
        name: &str,
        password: &str,
    ) -> Result<Option<String>, DirectoryError> {
        self.inner.verify_password(name, password).await
    }

    async fn scram_sha256(&self, name: &str) -> Result<Option<ScramUser>, DirectoryError> {
        self.inner.scram_sha256(name).await
    }

    fn has_scram_secrets(&self) -> bool {
        self.inner.has_scram_secrets()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Counts lookups; knows only `alice`; `down` makes every lookup fail.
    #[derive(Default)]
    struct Counting {
        lookups: AtomicUsize,
        down: std::sync::atomic::AtomicBool,
    }

    #[async_trait]
    impl Directory for Counting {
        async fn lookup(&self, name: &str) -> Result<Option<String>, DirectoryError> {
            self.lookups.fetch_add(1, Ordering::SeqCst);
            if self.down.load(Ordering::SeqCst) {
                return Err(DirectoryError::Unavailable("down".into()));
            }
            Ok((name == "alice").then(|| "alice@example.com".to_string()))
        }
        async fn verify_password(
            &self,
            _: &str,
            _: &str,
        ) -> Result<Option<String>, DirectoryError> {
            Ok(None)
        }
    }

    #[tokio::test]
    async fn found_users_are_remembered_unknown_ones_and_errors_are_not() {
        let inner = Arc::new(Counting::default());
        let d = CachingDirectory::new(inner.clone(), Duration::from_secs(60), 10);
        for _ in 0..3 {
            assert_eq!(
                d.lookup("alice").await,
                Ok(Some("alice@example.com".into()))
            );
        }
        assert_eq!(inner.lookups.load(Ordering::SeqCst), 1);
        for _ in 0..2 {
            assert_eq!(d.lookup("bob").await, Ok(None));
        }
        assert_eq!(inner.lookups.load(Ordering::SeqCst), 3);
        inner.down.store(true, Ordering::SeqCst);
        // Remembered users keep working while the directory is down; others get the error.
        assert_eq!(
            d.lookup("alice").await,
            Ok(Some("alice@example.com".into()))
        );
        assert!(d.lookup("carol").await.is_err());
        assert!(d.lookup("carol").await.is_err());
        assert_eq!(inner.lookups.load(Ordering::SeqCst), 5);
    }

    #[tokio::test]
    async fn zero_ttl_asks_the_directory_every_time() {
        let inner = Arc::new(Counting::default());
        let d = CachingDirectory::new(inner.clone(), Duration::ZERO, 10);
        for _ in 0..3 {
            assert!(d.lookup("alice").await.is_ok());
        }
        assert_eq!(inner.lookups.load(Ordering::SeqCst), 3);
    }
}
