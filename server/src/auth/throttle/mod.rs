//! The failed-login budget, shared by every protocol (and, with Redis, every instance).
//!
//! Each attempt that checks a secret (password, token) is counted under its client address,
//! the user name it tried (normalised like the directory matches names) and the pair of both.
//! After `free_failures` failures on a key, the next attempt must wait a delay that doubles
//! with each further failure, up to `max_delay`; a key's count is forgotten once it saw no
//! failure for `window`. An attempt made while its address or its user name must wait is
//! refused *without* asking the directory or the IdP ([`Refusal::Throttled`]), and is not
//! counted: the delay is bounded, so an attacker cannot lock a user out for good, only slow
//! down the password logins tried under that name (a token login names no user beforehand,
//! so only its address is checked). An expired or revoked token is not counted: it was issued,
//! and clients present one routinely before refreshing ([`token_refusal_counts`]).
//!
//! A success forgives what its own pair did: the failures this address made for this user
//! (the user's typos) are taken off the address and the user keys. Failures from other
//! addresses against the user, and from this address against other users, stay until their
//! window passes, so logging in to one's own account does not buy fresh guesses elsewhere.
//!
//! Store unreachable: the attempt is refused as a temporary failure ([`Refusal::Unavailable`])
//! unless `fail_open`, like the revocation store.

mod keys;
mod memory;
mod policy;
mod redis;

#[cfg(test)]
mod protocol_tests;
#[cfg(test)]
mod tests;

pub use keys::{Keys, address_part, user_part};
pub use memory::MemoryBudget;
pub use policy::{Policy, Record};
pub use redis::RedisBudget;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

/// The store could not be asked or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("login throttle store unavailable: {0}")]
pub struct BudgetError(pub String);

/// Failure counts per key. Implementations: [`MemoryBudget`] (one instance) and
/// [`RedisBudget`] (every instance).
#[async_trait]
pub trait FailureBudget: Send + Sync {
    /// The records of `keys`, in order (a missing or expired key reads as zero failures).
    async fn read(&self, keys: &[&str], now_ms: u64) -> Result<Vec<Record>, BudgetError>;
    /// One more failure at `now_ms` on every key; each expires `window` after it.
    async fn add_failure(
        &self,
        keys: &[&str],
        now_ms: u64,
        window: Duration,
    ) -> Result<(), BudgetError>;
    /// Deletes `pair` and takes its count off each of `counters`; returns that count.
    async fn forgive(&self, pair: &str, counters: &[&str], now_ms: u64)
    -> Result<u32, BudgetError>;
    /// For logs: `memory` or `redis`.
    fn kind(&self) -> &'static str;
}

/// The numbers of `[login_throttle]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleSettings {
    pub per_address: Policy,
    pub per_user: Policy,
    /// A key is forgotten this long after its latest failure.
    pub window: Duration,
    /// Admit attempts (uncounted) while the store is unreachable.
    pub fail_open: bool,
}

/// Why an attempt is not even checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Its address or user name must still wait this long.
    #[error("too many failed logins; retry in {}s", retry_after_seconds(*.retry_after))]
    Throttled { retry_after: Duration },
    /// The store could not be asked (and `fail_open` is off).
    #[error("{0}")]
    Unavailable(String),
}

/// Whole seconds to announce (Retry-After), never 0 for a delay still running.
pub fn retry_after_seconds(delay: Duration) -> u64 {
    delay.as_secs() + u64::from(delay.subsec_nanos() > 0)
}

/// Whether a refused token (by its [`crate::auth::oidc::TokenError::code`]) counts as a failed
/// login. An expired or revoked token was genuinely issued: clients present one routinely before
/// refreshing, so it is no guess and costs nothing. Everything else (bad signature, unknown key,
/// wrong audience, a forgery) counts.
pub fn token_refusal_counts(code: &str) -> bool {
    !matches!(code, "expired" | "revoked")
}

/// Unix milliseconds; a clock is injectable so tests can pass a delay without waiting.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

fn system_clock() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The budget of one server: settings, a store and a clock.
pub struct LoginThrottle {
    budget: Arc<dyn FailureBudget>,
    settings: ThrottleSettings,
    prefix: String,
    clock: Clock,
}

impl std::fmt::Debug for LoginThrottle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginThrottle")
            .field("store", &self.budget.kind())
            .field("settings", &self.settings)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl LoginThrottle {
    pub fn new(
        budget: Arc<dyn FailureBudget>,
        settings: ThrottleSettings,
        prefix: impl Into<String>,
    ) -> Arc<Self> {
        Self::with_clock(budget, settings, prefix, Arc::new(system_clock))
    }

    pub fn with_clock(
        budget: Arc<dyn FailureBudget>,
        settings: ThrottleSettings,
        prefix: impl Into<String>,
        clock: Clock,
    ) -> Arc<Self> {
        Arc::new(Self {
            budget,
            settings,
            prefix: prefix.into(),
            clock,
        })
    }

    pub fn settings(&self) -> &ThrottleSettings {
        &self.settings
    }

    /// Whether an attempt from `address` for `user` (`None`: not known before the check, as
    /// with a token) may be checked now. `Ok` is the attempt to report the outcome on.
    pub async fn admit(
        self: &Arc<Self>,
        address: Option<IpAddr>,
        user: Option<&str>,
    ) -> Result<Attempt, Refusal> {
        let keys = Keys::new(&self.prefix, address, user);
        let checked = keys.checked();
        if checked.is_empty() {
            return Ok(Attempt::unthrottled());
        }
        let now = (self.clock)();
        let records = match self.budget.read(&checked, now).await {
            Ok(records) => records,
            Err(e) if self.settings.fail_open => {
                tracing::warn!(error = %e, ?address, "login throttle store unreachable; admitting the attempt uncounted (login_throttle.fail_open)");
                return Ok(Attempt::unthrottled());
            }
            Err(e) => {
                tracing::warn!(error = %e, ?address, "login throttle store unreachable; refusing the attempt (fail closed)");
                return Err(Refusal::Unavailable(e.to_string()));
            }
        };
        let mut wait: Option<Duration> = None;
        for (key, record) in checked.iter().zip(records) {
            let policy = if keys.address.as_deref() == Some(*key) {
                &self.settings.per_address
            } else {
                &self.settings.per_user
            };
            if let Some(d) = policy.retry_after(record, now) {
                wait = Some(wait.map_or(d, |w| w.max(d)));
                tracing::info!(?address, key = %key, failures = record.failures, retry_after_ms = d.as_millis() as u64, "login attempt throttled");
            }
        }
        match wait {
            Some(retry_after) => Err(Refusal::Throttled { retry_after }),
            None => Ok(Attempt {
                throttle: Some(self.clone()),
                keys,
            }),
        }
    }

    /// The failures counted now under `address` and `user` (for tests and diagnostics).
    pub async fn failures(
        &self,
        address: Option<IpAddr>,
        user: Option<&str>,
    ) -> Result<(u32, u32), BudgetError> {
        let keys = Keys::new(&self.prefix, address, user);
        let wanted = [keys.address.as_deref(), keys.user.as_deref()];
        let present: Vec<&str> = wanted.iter().flatten().copied().collect();
        let records = self.budget.read(&present, (self.clock)()).await?;
        let mut records = records.into_iter();
        let mut next = |k: Option<&str>| k.and_then(|_| records.next()).map_or(0, |r| r.failures);
        Ok((next(wanted[0]), next(wanted[1])))
    }
}

/// One admitted attempt: report how it ended with [`Attempt::failed`] or [`Attempt::succeeded`]
/// (dropping it reports nothing, e.g. for an unreachable directory).
#[derive(Debug)]
pub struct Attempt {
    throttle: Option<Arc<LoginThrottle>>,
    keys: Keys,
}

impl Attempt {
    /// An attempt nothing counts (no throttle configured, or the store failed open).
    pub fn unthrottled() -> Self {
        Self {
            throttle: None,
            keys: Keys::default(),
        }
    }

    /// The secret was wrong: one failure on the address, user and pair keys.
    pub async fn failed(self) {
        let Some(throttle) = self.throttle else {
            return;
        };
        let keys = self.keys.all();
        let now = (throttle.clock)();
        if let Err(e) = throttle
            .budget
            .add_failure(&keys, now, throttle.settings.window)
            .await
        {
            tracing::warn!(error = %e, "login throttle store unreachable; the failure is not counted");
        }
    }

    /// The secret was right: the pair's failures are forgiven (see the module docs).
    pub async fn succeeded(self) {
        let (Some(throttle), Some(pair)) = (self.throttle, self.keys.pair.as_deref()) else {
            return;
        };
        let counters = self.keys.checked();
        let now = (throttle.clock)();
        match throttle.budget.forgive(pair, &counters, now).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(
                forgiven = n,
                "login succeeded; its own earlier failures are forgiven"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "login throttle store unreachable; earlier failures not forgiven")
            }
        }
    }
}
