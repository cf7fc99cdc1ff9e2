//! Single log-out and revocation: the deny-list store (memory or Redis), the back-channel logout
//! token checks, and the live-session registry that ends open sessions on every protocol.
//!
//! The flow: a logout token (or an admin request) becomes a [`Revocation`]; the [`RevocationService`]
//! writes it to the [`RevocationStore`], which tells every server instance (a Redis channel, or
//! in-process for the memory store); each instance ends the matching sessions in its
//! [`SessionRegistry`]. Every bearer login and HTTP request asks the store first
//! ([`RevocationService::check`]), so a revoked token opens nothing new; every password login
//! asks it too ([`RevocationService::check_password_login`]), so a store outage fails closed.

mod directory;
pub mod keys;
pub mod logout_token;
mod memory;
mod receiver;
mod redis;
pub mod registry;
mod service;
mod validator;

#[cfg(test)]
mod password_tests;
#[cfg(test)]
mod receiver_tests;
#[cfg(test)]
mod redis_tests;
#[cfg(test)]
mod service_tests;

pub use directory::RevocationCheckingDirectory;
pub use memory::MemoryRevocationStore;
pub use receiver::{LogoutError, LogoutReceiver, LogoutSettings, revocation_for};
pub use redis::{RedisRevocationConfig, RedisRevocationStore};
pub use registry::{EndReason, LiveSession, SessionHandle, SessionRegistry, ended};
pub use service::{Denied, RevocationService, introspection_recheck};
pub use validator::RevocationCheckingValidator;

use async_trait::async_trait;
use tokio::sync::broadcast;

use crate::auth::sasl::TokenSession;

/// What is revoked. Every variant is scoped: a `sid` means nothing without its issuer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Revocation {
    /// One IdP session (OIDC `sid`): its tokens are refused, its live sessions end.
    Session { issuer: String, sid: String },
    /// Every token of `iss`+`sub` issued at or before `before` (Unix seconds); a later login
    /// works.
    Subject {
        issuer: String,
        subject: String,
        before: u64,
    },
    /// Every session of a directory user (whatever the login method) authenticated at or before
    /// `before`, and that user's tokens issued at or before it.
    User { user: String, before: u64 },
}

impl Revocation {
    /// For logs and protocol goodbyes, without the token-derived values of other users.
    pub fn describe(&self) -> String {
        match self {
            Revocation::Session { .. } => {
                "the session was logged out at the identity provider".into()
            }
            Revocation::Subject { .. } => "the user's sessions were revoked".into(),
            Revocation::User { .. } => {
                "the user's sessions were revoked by an administrator".into()
            }
        }
    }

    /// Whether a live session (its token, its user, when it authenticated) falls under this.
    pub fn matches(&self, token: Option<&TokenSession>, user: &str, authenticated_at: u64) -> bool {
        match self {
            Revocation::Session { issuer, sid } => {
                token.is_some_and(|t| t.issuer == *issuer && t.sid.as_deref() == Some(sid.as_str()))
            }
            Revocation::Subject {
                issuer,
                subject,
                before,
            } => token.is_some_and(|t| {
                t.issuer == *issuer && t.subject == *subject && issued_no_later(t, *before)
            }),
            Revocation::User { user: who, before } => {
                who.eq_ignore_ascii_case(user)
                    && match token {
                        Some(t) => issued_no_later(t, *before) || authenticated_at <= *before,
                        None => authenticated_at <= *before,
                    }
            }
        }
    }
}

impl Revocation {
    /// Whether a session that is registering now (it just logged in) falls under this: the
    /// race between a login's store check and a revocation written meanwhile. Judged by the
    /// token alone; a password login after a user revocation is a new login and stands.
    pub fn covers_new_login(&self, token: Option<&TokenSession>) -> bool {
        match self {
            Revocation::Session { .. } | Revocation::Subject { .. } => {
                self.matches(token, "", u64::MAX)
            }
            Revocation::User { before, .. } => token.is_some_and(|t| issued_no_later(t, *before)),
        }
    }
}

/// A token without `iat` cannot prove it came later: it counts as issued before.
fn issued_no_later(token: &TokenSession, before: u64) -> bool {
    token.issued_at.is_none_or(|iat| iat <= before)
}

/// What every instance hears from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A revocation written by any instance (this one included).
    Revoked(Revocation),
    /// The channel was lost and is back: notices may have been missed, so every live session
    /// is checked against the store once.
    Resync,
}

/// What [`RevocationStore::first_use`] found for a logout token's `jti`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JtiUse {
    /// Never seen: now recorded.
    First,
    /// Recorded before for this very token (the IdP sending it again).
    SameToken,
    /// Recorded before for another token: the `jti` is being reused (a replay).
    OtherToken,
}

/// The store could not be asked or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("revocation store unavailable: {0}")]
pub struct StoreError(pub String);

/// What the store says about one token (or password) session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Query<'a> {
    pub token: Option<&'a TokenSession>,
    /// The canonical directory user.
    pub user: &'a str,
    /// When a live session authenticated (Unix seconds); `None` for a login being decided now,
    /// which is later than any revocation already written.
    pub authenticated_at: Option<u64>,
}

/// The deny-list. Implementations: [`MemoryRevocationStore`] (one instance) and [`RedisRevocationStore`] (shared by
/// every instance and read by the gateway; key names in [`keys`]).
#[async_trait]
pub trait RevocationStore: Send + Sync {
    /// Records `revocation` (expiring after the configured TTL) and tells every instance.
    async fn revoke(&self, revocation: &Revocation) -> Result<(), StoreError>;
    /// The revocation that denies this session, if any (a description for logs and replies).
    async fn lookup(&self, query: Query<'_>) -> Result<Option<String>, StoreError>;
    /// Records a logout token's `jti` (issuer-scoped) with `fingerprint`, the digest of the
    /// whole token, unless that `jti` was recorded before; says which.
    async fn first_use(
        &self,
        issuer: &str,
        jti: &str,
        fingerprint: &str,
    ) -> Result<JtiUse, StoreError>;
    /// Notices from every instance, this one included.
    fn subscribe(&self) -> broadcast::Receiver<Notice>;
    /// For logs: `memory` or `redis`.
    fn kind(&self) -> &'static str;
}

/// The decision both stores share, from what they read: whether the session's `sid` is on the
/// list, and the "revoked before" times of its subject and its user.
pub fn decide(
    query: Query<'_>,
    sid_revoked: bool,
    subject_before: Option<u64>,
    user_before: Option<u64>,
) -> Option<String> {
    if let Some(token) = query.token {
        if sid_revoked {
            return Some("session logged out at the identity provider".into());
        }
        if let Some(before) = subject_before
            && issued_no_later(token, before)
        {
            return Some(format!(
                "tokens of this subject issued at or before {before} are revoked"
            ));
        }
        if let Some(before) = user_before
            && issued_no_later(token, before)
        {
            return Some(format!(
                "tokens of this user issued at or before {before} are revoked"
            ));
        }
    }
    match (query.authenticated_at, user_before) {
        (Some(at), Some(before)) if at <= before => Some(format!(
            "sessions of this user authenticated at or before {before} are revoked"
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(sid: Option<&str>, iat: Option<u64>) -> TokenSession {
        TokenSession {
            issuer: "https://idp".into(),
            subject: "alice".into(),
            sid: sid.map(str::to_string),
            expires_at: 2_000,
            issued_at: iat,
            bearer: None,
        }
    }

    #[test]
    fn sid_revocation_matches_only_that_issuer_and_sid() {
        let r = Revocation::Session {
            issuer: "https://idp".into(),
            sid: "s1".into(),
        };
        assert!(r.matches(Some(&token(Some("s1"), Some(10))), "a@x", 10));
        assert!(!r.matches(Some(&token(Some("s2"), Some(10))), "a@x", 10));
        assert!(!r.matches(Some(&token(None, Some(10))), "a@x", 10));
        assert!(!r.matches(None, "a@x", 10));
        let mut other = token(Some("s1"), Some(10));
        other.issuer = "https://other".into();
        assert!(!r.matches(Some(&other), "a@x", 10));
    }

    #[test]
    fn subject_revocation_spares_later_tokens() {
        let r = Revocation::Subject {
            issuer: "https://idp".into(),
            subject: "alice".into(),
            before: 100,
        };
        assert!(r.matches(Some(&token(None, Some(100))), "a@x", 100));
        assert!(r.matches(Some(&token(None, Some(99))), "a@x", 100));
        assert!(
            r.matches(Some(&token(None, None)), "a@x", 200),
            "no iat: refused"
        );
        assert!(!r.matches(Some(&token(None, Some(101))), "a@x", 101));
        assert!(!r.matches(None, "a@x", 1));
    }

    #[test]
    fn user_revocation_covers_password_sessions() {
        let r = Revocation::User {
            user: "Alice@Example.com".into(),
            before: 100,
        };
        assert!(r.matches(None, "alice@example.com", 100));
        assert!(!r.matches(None, "alice@example.com", 101));
        assert!(!r.matches(None, "bob@example.com", 1));
        assert!(r.matches(Some(&token(None, Some(50))), "alice@example.com", 150));
    }

    #[test]
    fn decisions() {
        let t = token(Some("s1"), Some(100));
        let q = Query {
            token: Some(&t),
            user: "a@x",
            authenticated_at: None,
        };
        assert_eq!(decide(q, false, None, None), None);
        assert!(decide(q, true, None, None).is_some_and(|d| d.contains("logged out")));
        assert!(decide(q, false, Some(100), None).is_some());
        assert_eq!(decide(q, false, Some(99), None), None);
        assert!(decide(q, false, None, Some(150)).is_some());
        assert_eq!(decide(q, false, None, Some(99)), None);
        let login = Query {
            token: None,
            user: "a@x",
            authenticated_at: None,
        };
        assert_eq!(decide(login, true, Some(1_000), Some(1_000)), None);
        let live = Query {
            token: None,
            user: "a@x",
            authenticated_at: Some(1_000),
        };
        assert!(decide(live, false, None, Some(1_000)).is_some());
        assert_eq!(decide(live, false, None, Some(999)), None);
    }

    #[test]
    fn revocations_round_trip_as_json() {
        for r in [
            Revocation::Session {
                issuer: "i".into(),
                sid: "s".into(),
            },
            Revocation::Subject {
                issuer: "i".into(),
                subject: "u".into(),
                before: 7,
            },
            Revocation::User {
                user: "a@x".into(),
                before: 9,
            },
        ] {
            let text = serde_json::to_string(&r).expect("serialize");
            assert_eq!(serde_json::from_str::<Revocation>(&text).ok(), Some(r));
        }
    }
}
