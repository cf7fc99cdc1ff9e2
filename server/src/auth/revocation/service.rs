//! The revocation service of one instance: asks the store before a token is accepted, writes
//! revocations, and turns the store's notices into ended sessions.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;

use super::registry::{EndReason, SessionRegistry};
use super::{Notice, Query, Revocation, RevocationStore, StoreError};
use crate::auth::oidc::{TokenError, TokenValidator};
use crate::auth::sasl::TokenSession;

/// Why a token may not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("revoked: {0}")]
    Revoked(String),
    /// The store could not be asked and `revocation.fail_open` is false.
    #[error("revocation store unavailable: {0}")]
    Unavailable(String),
}

impl From<Denied> for TokenError {
    fn from(d: Denied) -> Self {
        match d {
            Denied::Revoked(why) => TokenError::Revoked(why),
            Denied::Unavailable(why) => {
                TokenError::Unavailable(format!("revocation store unavailable: {why}"))
            }
        }
    }
}

pub struct RevocationService {
    store: Arc<dyn RevocationStore>,
    registry: Arc<SessionRegistry>,
    fail_open: bool,
}

impl std::fmt::Debug for RevocationService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevocationService")
            .field("store", &self.store.kind())
            .field("registry", &self.registry)
            .field("fail_open", &self.fail_open)
            .finish()
    }
}

impl RevocationService {
    pub fn new(
        store: Arc<dyn RevocationStore>,
        registry: Arc<SessionRegistry>,
        fail_open: bool,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            registry,
            fail_open,
        })
    }

    pub fn registry(&self) -> &Arc<SessionRegistry> {
        &self.registry
    }

    pub fn store(&self) -> &Arc<dyn RevocationStore> {
        &self.store
    }

    /// Whether a password login of `user` (canonical) may go on. It has no `iat`: it is judged
    /// as a session authenticated now against the user's "revoked before" time (as
    /// `/admin/revoke` writes it), so it is refused when that time is now or later (the same
    /// second, or another instance's clock ahead) and a later login works, as for tokens.
    /// Like a token login, it fails closed when the store cannot be asked (unless
    /// `revocation.fail_open`).
    pub async fn check_password_login(&self, user: &str) -> Result<(), Denied> {
        let now = crate::time::now_unix().max(0) as u64;
        let query = Query {
            token: None,
            user,
            authenticated_at: Some(now),
        };
        match self.store.lookup(query).await {
            Ok(None) => Ok(()),
            Ok(Some(why)) => {
                tracing::info!(%user, %why, "password login refused: revoked");
                Err(Denied::Revoked(why))
            }
            Err(e) if self.fail_open => {
                tracing::warn!(error = %e, %user, "revocation store unreachable; accepting the password login (revocation.fail_open)");
                Ok(())
            }
            Err(e) => {
                tracing::warn!(error = %e, %user, "revocation store unreachable; refusing the password login (fail closed)");
                Err(Denied::Unavailable(e.0))
            }
        }
    }

    /// Whether a (new) token session may be used.
    pub async fn check(&self, token: &TokenSession, user: &str) -> Result<(), Denied> {
        let query = Query {
            token: Some(token),
            user,
            authenticated_at: None,
        };
        match self.store.lookup(query).await {
            Ok(None) => Ok(()),
            Ok(Some(why)) => {
                tracing::info!(%user, sub = %token.subject, sid = ?token.sid, %why, "token refused: revoked");
                Err(Denied::Revoked(why))
            }
            Err(e) if self.fail_open => {
                tracing::warn!(error = %e, %user, "revocation store unreachable; accepting the token (revocation.fail_open)");
                Ok(())
            }
            Err(e) => {
                tracing::warn!(error = %e, %user, "revocation store unreachable; refusing the token (fail closed)");
                Err(Denied::Unavailable(e.0))
            }
        }
    }

    /// Ends this instance's matching sessions at once (a lost subscription cannot delay them),
    /// then writes `revocation` so every instance hears of it and new logins are refused.
    /// Returns how many ended here. When the store cannot be written, the local sessions are
    /// ended all the same (the safe side) and the error says the rest did not happen.
    pub async fn revoke(&self, revocation: Revocation) -> Result<usize, StoreError> {
        // Before the write: the store's own notice would otherwise race this count.
        let ended = self.registry.end_matching(&revocation);
        self.store.revoke(&revocation).await?;
        tracing::info!(?revocation, ended, "revocation recorded");
        Ok(ended)
    }

    /// Listens to the store's notices until the store goes away (spawn it).
    pub fn listen(self: Arc<Self>) -> impl std::future::Future<Output = ()> + Send + 'static {
        let me = self;
        let mut notices = me.store.subscribe();
        async move {
            loop {
                match notices.recv().await {
                    Ok(Notice::Revoked(r)) => {
                        let ended = me.registry.end_matching(&r);
                        if ended > 0 {
                            tracing::info!(ended, "sessions ended by a revocation notice");
                        }
                    }
                    Ok(Notice::Resync) => me.resync().await,
                    Err(RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "revocation notices missed; resyncing");
                        me.resync().await;
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        }
    }

    /// Checks every live session against the store once (after notices may have been lost).
    /// A session the store cannot be asked about keeps running: it was validated.
    pub async fn resync(&self) {
        let sessions = self.registry.sessions();
        let mut ended = 0;
        for (id, s) in &sessions {
            let query = Query {
                token: s.token.as_ref(),
                user: &s.user,
                authenticated_at: Some(s.authenticated_at),
            };
            match self.store.lookup(query).await {
                Ok(Some(why)) => {
                    if self.registry.end(*id, EndReason::Revoked(why)) {
                        ended += 1;
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "resync interrupted: store unreachable");
                    return;
                }
            }
        }
        tracing::info!(
            checked = sessions.len(),
            ended,
            "live sessions resynced with the revocation store"
        );
    }
}

/// Re-introspects every live bearer session every `interval` (for IdPs whose logout sends no
/// back-channel call); a token the IdP no longer knows ends its session. Spawn it.
pub async fn introspection_recheck(
    registry: Arc<SessionRegistry>,
    validator: Arc<dyn TokenValidator>,
    interval: Duration,
) {
    {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            for (id, s) in registry.sessions() {
                let Some(bearer) = s.token.as_ref().and_then(|t| t.bearer.clone()) else {
                    continue;
                };
                match validator.recheck(bearer.expose()).await {
                    Ok(()) => {}
                    Err(TokenError::Unavailable(e)) => {
                        tracing::warn!(error = %e, "introspection re-check skipped: IdP unreachable");
                        break;
                    }
                    Err(e) => {
                        tracing::info!(id, user = %s.user, code = e.code(), "re-check: token no longer active; ending the session");
                        registry.end(id, EndReason::Inactive);
                    }
                }
            }
        }
    }
}
