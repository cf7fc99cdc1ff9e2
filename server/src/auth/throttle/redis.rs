//! The failure budget in Redis, shared by every server instance. Each key is a hash
//! (`n` failures, `t` latest failure in Unix ms) expiring a window after its latest failure;
//! every operation is one Lua script, so concurrent instances never lose a count.

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{BudgetError, FailureBudget, Record};

/// Returns `n, t` of every key, 0 for a missing one.
const READ_SCRIPT: &str = r"
local out = {}
for i, key in ipairs(KEYS) do
  local v = redis.call('HMGET', key, 'n', 't')
  out[#out + 1] = tonumber(v[1]) or 0
  out[#out + 1] = tonumber(v[2]) or 0
end
return out
";

/// One more failure at ARGV[1] (ms) on every key, each expiring ARGV[2] ms later.
const FAIL_SCRIPT: &str = r"
for i, key in ipairs(KEYS) do
  redis.call('HINCRBY', key, 'n', 1)
  redis.call('HSET', key, 't', ARGV[1])
  redis.call('PEXPIRE', key, ARGV[2])
end
return #KEYS
";

/// Deletes the pair KEYS[1] and takes its count off every other key that still exists.
const FORGIVE_SCRIPT: &str = r"
local p = tonumber(redis.call('HGET', KEYS[1], 'n') or '0') or 0
redis.call('DEL', KEYS[1])
if p > 0 then
  for i = 2, #KEYS do
    if redis.call('EXISTS', KEYS[i]) == 1 then
      local n = redis.call('HINCRBY', KEYS[i], 'n', -p)
      if n <= 0 then redis.call('DEL', KEYS[i]) end
    end
  end
end
return p
";

pub struct RedisBudget {
    timeout: Duration,
    commands: ConnectionManager,
    read: redis::Script,
    fail: redis::Script,
    forgive: redis::Script,
}

impl RedisBudget {
    /// Checks the URL; does not need Redis to be up (until it is, every operation fails and
    /// the throttle decides: fail closed by default).
    pub fn start(url: &str, timeout: Duration) -> Result<Self, BudgetError> {
        let client = redis::Client::open(url).map_err(|e| BudgetError(e.to_string()))?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let commands = ConnectionManager::new_lazy_with_config(client, manager_config)
            .map_err(|e| BudgetError(e.to_string()))?;
        Ok(Self {
            timeout,
            commands,
            read: redis::Script::new(READ_SCRIPT),
            fail: redis::Script::new(FAIL_SCRIPT),
            forgive: redis::Script::new(FORGIVE_SCRIPT),
        })
    }

    /// Runs one script with the deadline; any failure is "unavailable".
    async fn invoke<T: redis::FromRedisValue>(
        &self,
        what: &str,
        invocation: redis::ScriptInvocation<'_>,
    ) -> Result<T, BudgetError> {
        let mut conn = self.commands.clone();
        match tokio::time::timeout(self.timeout, invocation.invoke_async::<T>(&mut conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(BudgetError(format!("{what}: {e}"))),
            Err(_) => Err(BudgetError(format!(
                "{what}: no answer within {:?}",
                self.timeout
            ))),
        }
    }
}

#[async_trait]
impl FailureBudget for RedisBudget {
    async fn read(&self, keys: &[&str], _now_ms: u64) -> Result<Vec<Record>, BudgetError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut invocation = self.read.prepare_invoke();
        for key in keys {
            invocation.key(*key);
        }
        let flat: Vec<u64> = self.invoke("read", invocation).await?;
        Ok(flat
            .chunks(2)
            .map(|c| Record {
                failures: u32::try_from(c.first().copied().unwrap_or(0)).unwrap_or(u32::MAX),
                last_failure_ms: c.get(1).copied().unwrap_or(0),
            })
            .collect())
    }

    async fn add_failure(
        &self,
        keys: &[&str],
        now_ms: u64,
        window: Duration,
    ) -> Result<(), BudgetError> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut invocation = self.fail.prepare_invoke();
        for key in keys {
            invocation.key(*key);
        }
        invocation
            .arg(now_ms)
            .arg(u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1));
        self.invoke::<u64>("record failure", invocation)
            .await
            .map(drop)
    }

    async fn forgive(
        &self,
        pair: &str,
        counters: &[&str],
        _now_ms: u64,
    ) -> Result<u32, BudgetError> {
        let mut invocation = self.forgive.prepare_invoke();
        invocation.key(pair);
        for key in counters {
            invocation.key(*key);
        }
        let p: u64 = self.invoke("forgive", invocation).await?;
        Ok(u32::try_from(p).unwrap_or(u32::MAX))
    }

    fn kind(&self) -> &'static str {
        "redis"
    }
}
