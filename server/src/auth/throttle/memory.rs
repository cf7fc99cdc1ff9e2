//! The failure budget in this process: enough for one instance (and for tests). Entries expire
//! a window after their latest failure, like the Redis keys.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use super::{BudgetError, FailureBudget, Record};

/// Expired entries are swept once this many failures were added since the last sweep.
const SWEEP_EVERY: u32 = 1024;

#[derive(Default)]
struct Entries {
    /// Key -> (record, expiry in Unix ms).
    map: HashMap<String, (Record, u64)>,
    since_sweep: u32,
}

#[derive(Default)]
pub struct MemoryBudget {
    entries: Mutex<Entries>,
}

impl MemoryBudget {
    pub fn new() -> Self {
        Self::default()
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl FailureBudget for MemoryBudget {
    async fn read(&self, keys: &[&str], now_ms: u64) -> Result<Vec<Record>, BudgetError> {
        let entries = self.entries();
        Ok(keys
            .iter()
            .map(|k| match entries.map.get(*k) {
                Some((record, expires)) if *expires > now_ms => *record,
                _ => Record::default(),
            })
            .collect())
    }

    async fn add_failure(
        &self,
        keys: &[&str],
        now_ms: u64,
        window: Duration,
    ) -> Result<(), BudgetError> {
        let expires = now_ms.saturating_add(u64::try_from(window.as_millis()).unwrap_or(u64::MAX));
        let mut entries = self.entries();
        entries.since_sweep += 1;
        if entries.since_sweep >= SWEEP_EVERY {
            entries.since_sweep = 0;
            entries.map.retain(|_, (_, until)| *until > now_ms);
        }
        for key in keys {
            let entry = entries
                .map
                .entry((*key).to_string())
                .or_insert((Record::default(), 0));
            if entry.1 <= now_ms {
                entry.0 = Record::default();
            }
            entry.0.failures = entry.0.failures.saturating_add(1);
            entry.0.last_failure_ms = now_ms;
            entry.1 = expires;
        }
        Ok(())
    }

    async fn forgive(
        &self,
        pair: &str,
        counters: &[&str],
        now_ms: u64,
    ) -> Result<u32, BudgetError> {
        let mut entries = self.entries();
        let forgiven = match entries.map.remove(pair) {
            Some((record, expires)) if expires > now_ms => record.failures,
            _ => 0,
        };
        if forgiven > 0 {
            for key in counters {
                if let Some((record, _)) = entries.map.get_mut(*key) {
                    record.failures = record.failures.saturating_sub(forgiven);
                    if record.failures == 0 {
                        entries.map.remove(*key);
                    }
                }
            }
        }
        Ok(forgiven)
    }

    fn kind(&self) -> &'static str {
        "memory"
    }
}
