//! The deny-list in Redis, shared by every server instance and read by the gateway. Writes are
//! one Lua script (set the key with its TTL, keep the larger "revoked before", publish); reads
//! are one MGET. A background task holds the subscription to the channel and reconnects; after
//! a reconnect it asks for a resync, since notices may have been missed meanwhile.

use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use super::{JtiUse, Notice, Query, Revocation, RevocationStore, StoreError, decide, keys};

/// Notices buffered for a slow listener before it sees `Lagged` (and resyncs).
const NOTICE_BUFFER: usize = 1024;
/// Longest wait between two subscription attempts while Redis is down.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Sets `KEYS[1]` to max(current, ARGV[1]) with TTL ARGV[2], then publishes ARGV[4] on ARGV[3].
const REVOKE_SCRIPT: &str = r"
local current = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
local value = tonumber(ARGV[1])
if value > current then current = value end
redis.call('SET', KEYS[1], current, 'EX', ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return current
";

/// Where and how to reach Redis.
#[derive(Debug, Clone)]
pub struct RedisRevocationConfig {
    /// `redis://host:port[/db]`.
    pub url: String,
    pub key_prefix: String,
    /// Lifetime of every key.
    pub ttl: Duration,
    /// Deadline of each operation (connecting included).
    pub timeout: Duration,
}

pub struct RedisRevocationStore {
    prefix: String,
    ttl_seconds: u64,
    timeout: Duration,
    commands: ConnectionManager,
    script: redis::Script,
    notices: broadcast::Sender<Notice>,
    subscriber: JoinHandle<()>,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

impl RedisRevocationStore {
    /// Checks the URL and starts the subscription task; does not need Redis to be up (until it
    /// is, every operation fails and the caller decides: fail closed by default).
    pub fn start(config: RedisRevocationConfig) -> Result<Self, StoreError> {
        let client = redis::Client::open(config.url.as_str()).map_err(unavailable)?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.timeout))
            .set_response_timeout(Some(config.timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let commands = ConnectionManager::new_lazy_with_config(client.clone(), manager_config)
            .map_err(unavailable)?;
        let notices = broadcast::channel(NOTICE_BUFFER).0;
        let subscriber = tokio::spawn(subscribe_forever(
            client,
            keys::channel(&config.key_prefix),
            config.timeout,
            notices.clone(),
        ));
        Ok(Self {
            prefix: config.key_prefix,
            ttl_seconds: config.ttl.as_secs().max(1),
            timeout: config.timeout,
            commands,
            script: redis::Script::new(REVOKE_SCRIPT),
            notices,
            subscriber,
        })
    }

    /// Runs one operation with the deadline; any failure is "unavailable".
    async fn within<T>(
        &self,
        what: &str,
        op: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, op).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(StoreError(format!("{what}: {e}"))),
            Err(_) => Err(StoreError(format!(
                "{what}: no answer within {:?}",
                self.timeout
            ))),
        }
    }
}

impl Drop for RedisRevocationStore {
    fn drop(&mut self) {
        self.subscriber.abort();
    }
}

#[async_trait]
impl RevocationStore for RedisRevocationStore {
    async fn revoke(&self, revocation: &Revocation) -> Result<(), StoreError> {
        let (key, value) = match revocation {
            Revocation::Session { issuer, sid } => (keys::sid(&self.prefix, issuer, sid), 1),
            Revocation::Subject {
                issuer,
                subject,
                before,
            } => (keys::subject(&self.prefix, issuer, subject), *before),
            Revocation::User { user, before } => (keys::user(&self.prefix, user), *before),
        };
        let message = serde_json::to_string(revocation).map_err(unavailable)?;
        let mut conn = self.commands.clone();
        let mut invocation = self.script.key(&key);
        invocation
            .arg(value)
            .arg(self.ttl_seconds)
            .arg(keys::channel(&self.prefix))
            .arg(message);
        self.within("revoke", invocation.invoke_async::<u64>(&mut conn))
            .await
            .map(|_| ())
    }

    async fn lookup(&self, query: Query<'_>) -> Result<Option<String>, StoreError> {
        // A key nothing can produce stands in for what the query lacks: one MGET shape always.
        let none = format!("{}revoked:none", self.prefix);
        let token = query.token;
        let sid_key = token
            .and_then(|t| {
                t.sid
                    .as_deref()
                    .map(|sid| keys::sid(&self.prefix, &t.issuer, sid))
            })
            .unwrap_or_else(|| none.clone());
        let subject_key = token
            .map(|t| keys::subject(&self.prefix, &t.issuer, &t.subject))
            .unwrap_or(none);
        let mut conn = self.commands.clone();
        let values: Vec<Option<u64>> = self
            .within(
                "lookup",
                redis::cmd("MGET")
                    .arg(&sid_key)
                    .arg(&subject_key)
                    .arg(keys::user(&self.prefix, query.user))
                    .query_async(&mut conn),
            )
            .await?;
        let get = |i: usize| values.get(i).copied().flatten();
        let sid_revoked = token.is_some_and(|t| t.sid.is_some()) && get(0).is_some();
        Ok(decide(query, sid_revoked, get(1), get(2)))
    }

    async fn first_use(
        &self,
        issuer: &str,
        jti: &str,
        fingerprint: &str,
    ) -> Result<JtiUse, StoreError> {
        let mut conn = self.commands.clone();
        let key = keys::logout_jti(&self.prefix, issuer, jti);
        let set: Option<String> = self
            .within(
                "jti",
                redis::cmd("SET")
                    .arg(&key)
                    .arg(fingerprint)
                    .arg("NX")
                    .arg("EX")
                    .arg(self.ttl_seconds)
                    .query_async(&mut conn),
            )
            .await?;
        if set.is_some() {
            return Ok(JtiUse::First);
        }
        // Written once with NX, never changed: reading it after the failed SET is safe. Gone
        // meanwhile (expired) or anything else than this token's fingerprint: a reuse.
        let seen: Option<String> = self
            .within("jti", redis::cmd("GET").arg(&key).query_async(&mut conn))
            .await?;
        Ok(if seen.as_deref() == Some(fingerprint) {
            JtiUse::SameToken
        } else {
            JtiUse::OtherToken
        })
    }

    fn subscribe(&self) -> broadcast::Receiver<Notice> {
        self.notices.subscribe()
    }

    fn kind(&self) -> &'static str {
        "redis"
    }
}

/// Holds the subscription for the life of the store, reconnecting with backoff. Every
/// subscription after the first (or after a failed start) is followed by `Resync`.
async fn subscribe_forever(
    client: redis::Client,
    channel: String,
    timeout: Duration,
    notices: broadcast::Sender<Notice>,
) {
    let mut backoff = Duration::from_millis(50);
    let mut lost = false;
    loop {
        let attempt = tokio::time::timeout(timeout, async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            redis::RedisResult::Ok(pubsub)
        })
        .await;
        match attempt {
            Ok(Ok(pubsub)) => {
                backoff = Duration::from_millis(50);
                if lost {
                    tracing::info!(%channel, "revocation channel subscribed again; resyncing live sessions");
                    let _ = notices.send(Notice::Resync);
                } else {
                    tracing::info!(%channel, "revocation channel subscribed");
                }
                let mut messages = pubsub.into_on_message();
                while let Some(msg) = messages.next().await {
                    let payload: Vec<u8> = msg.get_payload_bytes().to_vec();
                    match serde_json::from_slice::<Revocation>(&payload) {
                        Ok(r) => {
                            let _ = notices.send(Notice::Revoked(r));
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "ignoring a malformed revocation notice")
                        }
                    }
                }
                tracing::warn!(%channel, "revocation channel lost; reconnecting");
                lost = true;
            }
            Ok(Err(e)) => {
                if !lost {
                    tracing::warn!(error = %e, "cannot subscribe to the revocation channel; retrying");
                }
                lost = true;
            }
            Err(_) => {
                if !lost {
                    tracing::warn!("subscribing to the revocation channel timed out; retrying");
                }
                lost = true;
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
