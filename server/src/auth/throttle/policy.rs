//! The delay rule, without I/O: how long a key must wait after its failures. Every store reads
//! the same [`Record`]s and every instance decides with this one function.

use std::time::Duration;

/// What a store keeps per key: failures counted since the key last stayed quiet for the
/// window, and when the latest one happened (Unix milliseconds).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Record {
    pub failures: u32,
    pub last_failure_ms: u64,
}

/// Free failures, then a delay that doubles with each further failure up to a cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub free_failures: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Policy {
    /// The delay a key with `failures` failures imposes after its latest one: none within the
    /// free failures, then `base`, `2 * base`, `4 * base`, ... never above `max_delay`.
    pub fn delay(&self, failures: u32) -> Duration {
        if failures <= self.free_failures {
            return Duration::ZERO;
        }
        let doublings = (failures - self.free_failures - 1).min(32);
        let factor = 1u64 << doublings;
        let millis = u64::try_from(self.base_delay.as_millis())
            .unwrap_or(u64::MAX)
            .saturating_mul(factor);
        Duration::from_millis(millis).min(self.max_delay)
    }

    /// How long the next attempt must still wait at `now_ms`; `None` when it may go ahead.
    pub fn retry_after(&self, record: Record, now_ms: u64) -> Option<Duration> {
        let delay = u64::try_from(self.delay(record.failures).as_millis()).unwrap_or(u64::MAX);
        let until = record.last_failure_ms.saturating_add(delay);
        (now_ms < until).then(|| Duration::from_millis(until - now_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: Policy = Policy {
        free_failures: 3,
        base_delay: Duration::from_secs(2),
        max_delay: Duration::from_secs(60),
    };

    #[test]
    fn free_failures_cost_nothing_then_the_delay_doubles_up_to_the_cap() {
        let delays: Vec<u64> = (0..=12).map(|n| POLICY.delay(n).as_secs()).collect();
        assert_eq!(delays, [0, 0, 0, 0, 2, 4, 8, 16, 32, 60, 60, 60, 60]);
        assert_eq!(POLICY.delay(u32::MAX), Duration::from_secs(60));
    }

    #[test]
    fn retry_after_counts_from_the_latest_failure() {
        let record = Record {
            failures: 5,
            last_failure_ms: 10_000,
        };
        assert_eq!(
            POLICY.retry_after(record, 10_000),
            Some(Duration::from_secs(4))
        );
        assert_eq!(
            POLICY.retry_after(record, 13_000),
            Some(Duration::from_secs(1))
        );
        assert_eq!(POLICY.retry_after(record, 14_000), None);
        let free = Record {
            failures: 3,
            last_failure_ms: 10_000,
        };
        assert_eq!(POLICY.retry_after(free, 10_000), None);
    }
}
