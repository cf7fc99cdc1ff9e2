//! The live-session registry: every authenticated session of every protocol, with its token's
//! iss/sub/sid/exp and a handle that ends it. Protocol loops `select!` on
//! [`SessionHandle::ended`] as they select on their socket; dropping the handle deregisters.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::Revocation;
use crate::auth::sasl::TokenSession;

/// How long revocations are remembered for sessions that register just after one (a login
/// checked against the store a moment before the revocation was written).
const RECENT_WINDOW: Duration = Duration::from_secs(60);
/// Most revocations remembered for that purpose.
const RECENT_CAPACITY: usize = 1024;

/// One authenticated session.
#[derive(Clone)]
pub struct LiveSession {
    /// `imap`, `smtp`, `jmap-ws`, `eventsource`, ...
    pub protocol: &'static str,
    /// The canonical directory user whose mail the session accesses.
    pub user: String,
    /// Set for bearer-token logins (directly or through the gateway).
    pub token: Option<TokenSession>,
    /// The access token itself, kept only for the introspection re-check.
    pub access_token: Option<String>,
    /// Unix seconds.
    pub authenticated_at: u64,
}

// The access token is a credential: never in a log line.
impl std::fmt::Debug for LiveSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveSession")
            .field("protocol", &self.protocol)
            .field("user", &self.user)
            .field("token", &self.token)
            .field("authenticated_at", &self.authenticated_at)
            .finish_non_exhaustive()
    }
}

impl LiveSession {
    pub fn new(protocol: &'static str, user: &str, token: Option<TokenSession>) -> Self {
        Self {
            protocol,
            user: user.to_string(),
            token,
            access_token: None,
            authenticated_at: crate::time::now_unix().max(0) as u64,
        }
    }
}

/// Why a live session was ended; protocols put [`EndReason::text`] in their goodbye.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    /// A logout or an administrator revoked it (the text says which).
    Revoked(String),
    /// The token's `exp` passed (`session.end_at_token_expiry`).
    TokenExpired,
    /// Introspection re-check: the IdP says the token is no longer active.
    Inactive,
}

impl EndReason {
    /// One sentence for the wire, e.g. `Session revoked: the session was logged out at the
    /// identity provider.`
    pub fn text(&self) -> String {
        match self {
            EndReason::Revoked(why) => format!("Session revoked: {why}."),
            EndReason::TokenExpired => "Session ended: the access token has expired.".into(),
            EndReason::Inactive => {
                "Session ended: the identity provider no longer knows this token.".into()
            }
        }
    }

    /// Short stable code for logs.
    pub fn code(&self) -> &'static str {
        match self {
            EndReason::Revoked(_) => "revoked",
            EndReason::TokenExpired => "token_expired",
            EndReason::Inactive => "inactive",
        }
    }
}

struct Entry {
    session: Arc<LiveSession>,
    end: watch::Sender<Option<EndReason>>,
}

/// Every live session of this instance.
pub struct SessionRegistry {
    entries: Mutex<HashMap<u64, Entry>>,
    next_id: AtomicU64,
    recent: Mutex<VecDeque<(Instant, Revocation)>>,
    end_at_token_expiry: bool,
    /// Keep each session's access token (for the introspection re-check); dropped otherwise.
    keep_bearer: bool,
}

impl std::fmt::Debug for SessionRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionRegistry")
            .field("live", &self.len())
            .field("end_at_token_expiry", &self.end_at_token_expiry)
            .finish()
    }
}

impl SessionRegistry {
    /// `end_at_token_expiry`: sessions also end when their token's `exp` passes.
    pub fn new(end_at_token_expiry: bool) -> Arc<Self> {
        Self::with_bearer(end_at_token_expiry, false)
    }

    /// Like [`SessionRegistry::new`]; `keep_bearer` keeps each session's access token in memory
    /// for the introspection re-check.
    pub fn with_bearer(end_at_token_expiry: bool, keep_bearer: bool) -> Arc<Self> {
        Arc::new(Self {
            entries: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            recent: Mutex::new(VecDeque::new()),
            end_at_token_expiry,
            keep_bearer,
        })
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Entry>> {
        // Every update is one call: the map stays consistent even after a panic elsewhere.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn recent(&self) -> std::sync::MutexGuard<'_, VecDeque<(Instant, Revocation)>> {
        self.recent.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a session; it ends at once if a revocation of the last minute covers it.
    pub fn register(self: &Arc<Self>, mut session: LiveSession) -> SessionHandle {
        if !self.keep_bearer
            && let Some(token) = session.token.as_mut()
        {
            token.bearer = None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let expires = match (&session.token, self.end_at_token_expiry) {
            (Some(t), true) => Some(deadline_of(t.expires_at)),
            _ => None,
        };
        let (tx, rx) = watch::channel(None);
        let already = self.recently_revoked(&session);
        if let Some(why) = &already {
            tracing::info!(protocol = session.protocol, user = %session.user, "session revoked while it logged in");
            let _ = tx.send(Some(EndReason::Revoked(why.clone())));
        }
        tracing::debug!(id, protocol = session.protocol, user = %session.user, "session registered");
        self.entries().insert(
            id,
            Entry {
                session: Arc::new(session),
                end: tx,
            },
        );
        SessionHandle {
            id,
            registry: Arc::downgrade(self),
            rx,
            expires,
        }
    }

    fn recently_revoked(&self, s: &LiveSession) -> Option<String> {
        let now = Instant::now();
        let mut recent = self.recent();
        while recent
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > RECENT_WINDOW)
        {
            recent.pop_front();
        }
        recent
            .iter()
            .find(|(_, r)| {
                r.covers_new_login(s.token.as_ref())
                    && match r {
                        Revocation::User { user, .. } => user.eq_ignore_ascii_case(&s.user),
                        _ => true,
                    }
            })
            .map(|(_, r)| r.describe())
    }

    /// Ends every session `revocation` covers; returns how many.
    pub fn end_matching(&self, revocation: &Revocation) -> usize {
        {
            let mut recent = self.recent();
            if recent.len() >= RECENT_CAPACITY {
                recent.pop_front();
            }
            recent.push_back((Instant::now(), revocation.clone()));
        }
        let reason = EndReason::Revoked(revocation.describe());
        let entries = self.entries();
        let mut ended = 0;
        for (id, entry) in entries.iter() {
            let s = &entry.session;
            if revocation.matches(s.token.as_ref(), &s.user, s.authenticated_at)
                && entry
                    .end
                    .send_if_modified(|current| set_once(current, &reason))
            {
                tracing::info!(id, protocol = s.protocol, user = %s.user, "ending revoked session");
                ended += 1;
            }
        }
        ended
    }

    /// Ends one session (introspection re-check, resync); false if it is gone or ended.
    pub fn end(&self, id: u64, reason: EndReason) -> bool {
        self.entries()
            .get(&id)
            .is_some_and(|e| e.end.send_if_modified(|current| set_once(current, &reason)))
    }

    /// A snapshot of the live sessions (for re-checks).
    pub fn sessions(&self) -> Vec<(u64, Arc<LiveSession>)> {
        self.entries()
            .iter()
            .filter(|(_, e)| e.end.borrow().is_none())
            .map(|(id, e)| (*id, e.session.clone()))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.entries().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn remove(&self, id: u64) {
        self.entries().remove(&id);
    }
}

/// The first reason wins; later ones change nothing.
fn set_once(current: &mut Option<EndReason>, reason: &EndReason) -> bool {
    if current.is_some() {
        return false;
    }
    *current = Some(reason.clone());
    true
}

/// The monotonic instant of a Unix time (now, if it has passed).
fn deadline_of(unix: u64) -> tokio::time::Instant {
    let now = crate::time::now_unix().max(0) as u64;
    tokio::time::Instant::now() + Duration::from_secs(unix.saturating_sub(now))
}

/// A registered session's end signal. Dropping it removes the session from the registry.
pub struct SessionHandle {
    id: u64,
    registry: Weak<SessionRegistry>,
    rx: watch::Receiver<Option<EndReason>>,
    expires: Option<tokio::time::Instant>,
}

impl std::fmt::Debug for SessionHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionHandle")
            .field("id", &self.id)
            .field("ended", &*self.rx.borrow())
            .finish()
    }
}

impl SessionHandle {
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Resolves when the session must end. Cancel-safe: use it in `select!`.
    pub async fn ended(&mut self) -> EndReason {
        let expiry = async {
            match self.expires {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            reason = wait_for_end(&mut self.rx) => reason,
            () = expiry => EndReason::TokenExpired,
        }
    }

    /// The reason, if the session has been told to end (or its token expired).
    pub fn try_ended(&self) -> Option<EndReason> {
        if let Some(reason) = self.rx.borrow().clone() {
            return Some(reason);
        }
        self.expires
            .filter(|at| *at <= tokio::time::Instant::now())
            .map(|_| EndReason::TokenExpired)
    }
}

/// [`SessionHandle::ended`] of a session that may not be registered yet (never resolves then),
/// for protocol loops that `select!` before and after login alike.
pub async fn ended(live: &mut Option<SessionHandle>) -> EndReason {
    match live {
        Some(handle) => handle.ended().await,
        None => std::future::pending().await,
    }
}

async fn wait_for_end(rx: &mut watch::Receiver<Option<EndReason>>) -> EndReason {
    loop {
        if let Some(reason) = rx.borrow_and_update().clone() {
            return reason;
        }
        if rx.changed().await.is_err() {
            // The registry is gone (server shutting down): nothing will end this session.
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for SessionHandle {
    fn drop(&mut self) {
        if let Some(registry) = self.registry.upgrade() {
            registry.remove(self.id);
            tracing::debug!(id = self.id, "session deregistered");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(sid: &str, exp: u64) -> TokenSession {
        TokenSession {
            issuer: "https://idp".into(),
            subject: "alice".into(),
            sid: Some(sid.into()),
            expires_at: exp,
            issued_at: Some(crate::time::now_unix() as u64),
            bearer: None,
        }
    }

    fn far() -> u64 {
        crate::time::now_unix() as u64 + 3600
    }

    fn logout(sid: &str) -> Revocation {
        Revocation::Session {
            issuer: "https://idp".into(),
            sid: sid.into(),
        }
    }

    #[tokio::test]
    async fn a_revocation_ends_matching_sessions_only() {
        let registry = SessionRegistry::new(false);
        let mut a = registry.register(LiveSession::new("imap", "a@x", Some(token("s1", far()))));
        let b = registry.register(LiveSession::new("smtp", "a@x", Some(token("s2", far()))));
        let c = registry.register(LiveSession::new("imap", "a@x", None));
        assert_eq!(registry.len(), 3);
        assert_eq!(registry.end_matching(&logout("s1")), 1);
        // A second delivery of the same logout ends nothing more.
        assert_eq!(registry.end_matching(&logout("s1")), 0);
        let reason = tokio::time::timeout(Duration::from_secs(5), a.ended())
            .await
            .expect("ended promptly");
        assert!(matches!(reason, EndReason::Revoked(ref why) if why.contains("logged out")));
        assert_eq!(b.try_ended(), None);
        assert_eq!(c.try_ended(), None);
        assert_eq!(
            registry.sessions().len(),
            2,
            "ended sessions are not re-checked"
        );
        drop((a, b, c));
        assert!(registry.is_empty(), "handles deregister on drop");
    }

    #[tokio::test]
    async fn a_session_registering_just_after_its_revocation_ends_at_once() {
        let registry = SessionRegistry::new(false);
        registry.end_matching(&logout("s9"));
        let h = registry.register(LiveSession::new("imap", "a@x", Some(token("s9", far()))));
        assert!(matches!(h.try_ended(), Some(EndReason::Revoked(_))));
        let other = registry.register(LiveSession::new("imap", "a@x", Some(token("s8", far()))));
        assert_eq!(other.try_ended(), None);
    }

    #[tokio::test]
    async fn a_password_login_after_a_user_revocation_stands() {
        let registry = SessionRegistry::new(false);
        let now = crate::time::now_unix() as u64;
        registry.end_matching(&Revocation::User {
            user: "a@x".into(),
            before: now,
        });
        let password = registry.register(LiveSession::new("imap", "a@x", None));
        assert_eq!(password.try_ended(), None, "same second, but a new login");
        // A token issued at or before the revocation is caught (the login race).
        let old = registry.register(LiveSession::new("imap", "a@x", Some(token("s1", far()))));
        assert!(matches!(old.try_ended(), Some(EndReason::Revoked(_))));
    }

    #[tokio::test]
    async fn token_expiry_ends_sessions_only_when_configured() {
        let past = (crate::time::now_unix() - 5) as u64;
        let on = SessionRegistry::new(true);
        let mut h = on.register(LiveSession::new("imap", "a@x", Some(token("s1", past))));
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(5), h.ended())
                .await
                .ok(),
            Some(EndReason::TokenExpired)
        );
        let off = SessionRegistry::new(false);
        let mut h = off.register(LiveSession::new("imap", "a@x", Some(token("s1", past))));
        assert_eq!(h.try_ended(), None);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), h.ended())
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn end_by_id_and_texts() {
        let registry = SessionRegistry::new(false);
        let h = registry.register(LiveSession::new("imap", "a@x", None));
        assert!(registry.end(h.id(), EndReason::Inactive));
        assert!(
            !registry.end(h.id(), EndReason::TokenExpired),
            "first reason wins"
        );
        assert_eq!(h.try_ended(), Some(EndReason::Inactive));
        assert_eq!(EndReason::Revoked("x".into()).text(), "Session revoked: x.");
        let debug = format!(
            "{:?}",
            LiveSession {
                access_token: Some("secret-token".into()),
                ..LiveSession::new("imap", "a@x", None)
            }
        );
        assert!(!debug.contains("secret-token"));
    }
}
