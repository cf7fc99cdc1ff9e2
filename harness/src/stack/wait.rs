//! Readiness polling with a deadline: the only waiting the harness does.

use std::time::{Duration, Instant};

/// Interval between two readiness probes.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// A deadline for one readiness condition.
#[derive(Debug, Clone)]
pub struct Deadline {
    what: String,
    started: Instant,
    end: Instant,
}

impl Deadline {
    pub fn new(what: impl Into<String>, timeout: Duration) -> Self {
        let started = Instant::now();
        Self {
            what: what.into(),
            started,
            end: started + timeout,
        }
    }

    pub fn expired(&self) -> bool {
        Instant::now() >= self.end
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Waits one poll interval, or fails naming the condition and the last probe's result once
    /// the deadline has passed.
    pub async fn tick(&self, last: impl std::fmt::Display) -> anyhow::Result<()> {
        if self.expired() {
            anyhow::bail!(
                "timed out after {:.1?} waiting for {} (last attempt: {last})",
                self.elapsed(),
                self.what
            );
        }
        tokio::time::sleep(POLL_INTERVAL).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tick_fails_after_deadline_with_reason() {
        let d = Deadline::new("the thing", Duration::from_millis(50));
        let mut ticks = 0;
        let err = loop {
            match d.tick("not yet").await {
                Ok(()) => ticks += 1,
                Err(e) => break e.to_string(),
            }
        };
        assert!(ticks >= 1);
        assert!(
            err.contains("the thing") && err.contains("not yet"),
            "{err}"
        );
    }
}
