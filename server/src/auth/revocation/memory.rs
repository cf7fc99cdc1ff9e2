//! The deny-list in this process: enough for one instance (and for tests). Entries expire after
//! the TTL like Redis keys do.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::broadcast;

use super::{JtiUse, Notice, Query, Revocation, RevocationStore, StoreError, decide, keys};

/// Notices buffered for a slow listener before it sees `Lagged` (and resyncs).
const NOTICE_BUFFER: usize = 1024;

pub struct MemoryRevocationStore {
    ttl: Duration,
    /// Key (as in [`keys`], empty prefix) -> (value, expiry).
    entries: Mutex<HashMap<String, (u64, Instant)>>,
    /// Logout-token key -> (the token's fingerprint, expiry).
    jtis: Mutex<HashMap<String, (String, Instant)>>,
    notices: broadcast::Sender<Notice>,
}

impl MemoryRevocationStore {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
            jtis: Mutex::new(HashMap::new()),
            notices: broadcast::channel(NOTICE_BUFFER).0,
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u64, Instant)>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, key: &str) -> Option<u64> {
        let mut entries = self.entries();
        match entries.get(key) {
            Some((v, until)) if *until > Instant::now() => Some(*v),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    /// Keeps the larger value (a later "revoked before" never moves back) and renews the TTL.
    fn put_max(&self, key: String, value: u64) {
        let now = Instant::now();
        let mut entries = self.entries();
        entries.retain(|_, (_, until)| *until > now);
        let keep = entries
            .get(&key)
            .map_or(value, |(old, _)| (*old).max(value));
        entries.insert(key, (keep, now + self.ttl));
    }
}

#[async_trait]
impl RevocationStore for MemoryRevocationStore {
    async fn revoke(&self, revocation: &Revocation) -> Result<(), StoreError> {
        match revocation {
            Revocation::Session { issuer, sid } => self.put_max(keys::sid("", issuer, sid), 1),
            Revocation::Subject {
                issuer,
                subject,
                before,
            } => self.put_max(keys::subject("", issuer, subject), *before),
            Revocation::User { user, before } => self.put_max(keys::user("", user), *before),
        }
        // No receiver is fine: nobody is listening yet.
        let _ = self.notices.send(Notice::Revoked(revocation.clone()));
        Ok(())
    }

    async fn lookup(&self, query: Query<'_>) -> Result<Option<String>, StoreError> {
        let token = query.token;
        let sid = token.is_some_and(|t| {
            t.sid
                .as_deref()
                .is_some_and(|sid| self.get(&keys::sid("", &t.issuer, sid)).is_some())
        });
        let subject = token.and_then(|t| self.get(&keys::subject("", &t.issuer, &t.subject)));
        let user = self.get(&keys::user("", query.user));
        Ok(decide(query, sid, subject, user))
    }

    async fn first_use(
        &self,
        issuer: &str,
        jti: &str,
        fingerprint: &str,
    ) -> Result<JtiUse, StoreError> {
        let key = keys::logout_jti("", issuer, jti);
        let now = Instant::now();
        let mut jtis = self.jtis.lock().unwrap_or_else(|e| e.into_inner());
        jtis.retain(|_, (_, until)| *until > now);
        match jtis.get(&key) {
            Some((seen, _)) if seen == fingerprint => Ok(JtiUse::SameToken),
            Some(_) => Ok(JtiUse::OtherToken),
            None => {
                jtis.insert(key, (fingerprint.to_string(), now + self.ttl));
                Ok(JtiUse::First)
            }
        }
    }

    fn subscribe(&self) -> broadcast::Receiver<Notice> {
        self.notices.subscribe()
    }

    fn kind(&self) -> &'static str {
        "memory"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::sasl::TokenSession;

    fn token(sid: &str, iat: u64) -> TokenSession {
        TokenSession {
            issuer: "https://idp".into(),
            subject: "alice".into(),
            sid: Some(sid.into()),
            expires_at: u64::MAX,
            issued_at: Some(iat),
            bearer: None,
        }
    }

    #[tokio::test]
    async fn revocations_are_found_and_announced() {
        let store = MemoryRevocationStore::new(Duration::from_secs(60));
        let mut notices = store.subscribe();
        let t = token("s1", 100);
        let q = Query {
            token: Some(&t),
            user: "a@x",
            authenticated_at: None,
        };
        assert_eq!(store.lookup(q).await, Ok(None));
        let r = Revocation::Session {
            issuer: "https://idp".into(),
            sid: "s1".into(),
        };
        store.revoke(&r).await.expect("revoke");
        assert!(store.lookup(q).await.expect("lookup").is_some());
        assert_eq!(notices.recv().await.ok(), Some(Notice::Revoked(r)));
        // Same sid at another issuer: not revoked.
        let mut other = token("s1", 100);
        other.issuer = "https://other".into();
        let q2 = Query {
            token: Some(&other),
            user: "a@x",
            authenticated_at: None,
        };
        assert_eq!(store.lookup(q2).await, Ok(None));
    }

    #[tokio::test]
    async fn subject_revocation_never_moves_back() {
        let store = MemoryRevocationStore::new(Duration::from_secs(60));
        let subject = |before| Revocation::Subject {
            issuer: "https://idp".into(),
            subject: "alice".into(),
            before,
        };
        store.revoke(&subject(200)).await.expect("revoke");
        store.revoke(&subject(100)).await.expect("revoke");
        let t = token("s1", 150);
        let q = Query {
            token: Some(&t),
            user: "a@x",
            authenticated_at: None,
        };
        assert!(store.lookup(q).await.expect("lookup").is_some());
        let later = token("s1", 201);
        let q = Query {
            token: Some(&later),
            user: "a@x",
            authenticated_at: None,
        };
        assert_eq!(store.lookup(q).await, Ok(None), "a later login works");
    }

    #[tokio::test]
    async fn jti_is_accepted_once_and_entries_expire() {
        let store = MemoryRevocationStore::new(Duration::from_millis(30));
        let first = |iss: &'static str, fp: &'static str| {
            let store = &store;
            async move { store.first_use(iss, "j1", fp).await }
        };
        assert_eq!(first("https://idp", "t1").await, Ok(JtiUse::First));
        assert_eq!(first("https://idp", "t1").await, Ok(JtiUse::SameToken));
        assert_eq!(first("https://idp", "t2").await, Ok(JtiUse::OtherToken));
        assert_eq!(first("https://other", "t2").await, Ok(JtiUse::First));
        let deadline = Instant::now() + Duration::from_secs(5);
        while first("https://idp", "t2").await != Ok(JtiUse::First) {
            assert!(Instant::now() < deadline, "entry never expired");
            tokio::task::yield_now().await;
        }
    }
}
