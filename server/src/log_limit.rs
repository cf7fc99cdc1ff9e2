//! Rate limit of a connection's bad-command log lines, shared by every protocol. Each refused
//! command logs its reason, so a client sending junk in a loop would flood the log: the first
//! [`FIRST_LINES`] are logged, later ones only counted, with one summary line per
//! [`SUMMARY_INTERVAL`] and one when the connection ends.

use std::time::{Duration, Instant};

/// Bad-command lines of one connection logged in full.
pub const FIRST_LINES: u32 = 5;
/// At most one summary line per this interval.
pub const SUMMARY_INTERVAL: Duration = Duration::from_secs(60);

/// One connection's budget of bad-command log lines. Dropping it logs what is left to report.
#[derive(Debug)]
pub struct LogLimit {
    protocol: &'static str,
    logged: u32,
    /// Suppressed since the last summary.
    suppressed: u64,
    /// When the current summary interval began (the first suppression).
    since: Option<Instant>,
}

impl LogLimit {
    pub fn new(protocol: &'static str) -> Self {
        Self {
            protocol,
            logged: 0,
            suppressed: 0,
            since: None,
        }
    }

    /// Whether the caller should log its bad-command line now; when not, the line is counted.
    pub fn allow(&mut self) -> bool {
        self.allow_at(Instant::now())
    }

    fn allow_at(&mut self, now: Instant) -> bool {
        if self.logged < FIRST_LINES {
            self.logged += 1;
            return true;
        }
        self.suppressed += 1;
        match self.since {
            None => {
                self.since = Some(now);
                tracing::info!(
                    protocol = self.protocol,
                    first = FIRST_LINES,
                    "more bad commands on this connection; their log lines are suppressed and \
                     counted"
                );
                // This line is in the next summary.
            }
            Some(since) if now.saturating_duration_since(since) >= SUMMARY_INTERVAL => {
                self.summary();
                self.since = Some(now);
            }
            Some(_) => {}
        }
        false
    }

    fn summary(&mut self) {
        if self.suppressed > 0 {
            tracing::info!(
                protocol = self.protocol,
                suppressed = self.suppressed,
                "{} more bad-command log lines suppressed",
                self.suppressed
            );
            self.suppressed = 0;
        }
    }
}

impl Drop for LogLimit {
    fn drop(&mut self) {
        self.summary();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::logs;

    #[test]
    fn first_lines_then_one_summary_per_interval_and_at_the_end() {
        let ((), log) = logs::capture(|| {
            let start = Instant::now();
            let mut limit = LogLimit::new("TEST");
            for _ in 0..FIRST_LINES {
                assert!(limit.allow_at(start));
            }
            for _ in 0..7 {
                assert!(!limit.allow_at(start));
            }
            // Within the interval: counted, no summary yet.
            assert!(!limit.allow_at(start + SUMMARY_INTERVAL / 2));
            // Past it: one summary of the 9 so far (this line included).
            assert!(!limit.allow_at(start + SUMMARY_INTERVAL));
            for _ in 0..3 {
                assert!(!limit.allow_at(start + SUMMARY_INTERVAL));
            }
            drop(limit);
        });
        assert_eq!(
            log.matches("their log lines are suppressed").count(),
            1,
            "{log}"
        );
        let summaries: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("bad-command log lines suppressed"))
            .collect();
        assert_eq!(summaries.len(), 2, "{log}");
        assert!(summaries[0].contains("9 more bad-command"), "{log}");
        assert!(summaries[1].contains("3 more bad-command"), "{log}");
    }

    #[test]
    fn nothing_suppressed_means_no_summary() {
        let ((), log) = logs::capture(|| {
            let mut limit = LogLimit::new("TEST");
            assert!(limit.allow());
        });
        assert!(log.is_empty(), "{log}");
    }
}
