//! Refused recipients per client address, across sessions: an enumerator that opens a new
//! connection before each session's limit is reached is still cut off. Counts live in memory
//! (this instance only) for a fixed window, in a map of bounded size.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long refusals from one address are remembered (counted from the first in the window).
pub const WINDOW: Duration = Duration::from_secs(600);
/// Addresses tracked at most; when full and nothing has expired, new addresses go uncounted
/// (the per-session limit still applies).
pub const MAX_ADDRESSES: usize = 65_536;

#[derive(Debug)]
pub struct RecipientRefusals {
    limit: u32,
    counts: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl RecipientRefusals {
    /// `limit`: refusals from one address within [`WINDOW`] after which each further refusal
    /// ends its session.
    pub fn new(limit: u32) -> Self {
        Self {
            limit,
            counts: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one refusal for `ip`; true when the address is over its limit.
    pub fn record(&self, ip: IpAddr) -> bool {
        self.record_at(ip, Instant::now())
    }

    fn record_at(&self, ip: IpAddr, now: Instant) -> bool {
        let key = client_key(ip);
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if !counts.contains_key(&key) && counts.len() >= MAX_ADDRESSES {
            counts.retain(|_, (_, since)| now.saturating_duration_since(*since) < WINDOW);
            if counts.len() >= MAX_ADDRESSES {
                return false;
            }
        }
        let entry = counts.entry(key).or_insert((0, now));
        if now.saturating_duration_since(entry.1) >= WINDOW {
            *entry = (0, now);
        }
        entry.0 = entry.0.saturating_add(1);
        entry.0 >= self.limit
    }
}

/// IPv6 clients usually own a whole /64: count it as one address.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_address_within_the_window() {
        let r = RecipientRefusals::new(3);
        let now = Instant::now();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(!r.record_at(a, now));
        assert!(!r.record_at(a, now));
        assert!(!r.record_at(b, now), "another address has its own count");
        assert!(r.record_at(a, now));
        assert!(r.record_at(a, now + WINDOW / 2));
        // A new window starts afresh.
        assert!(!r.record_at(a, now + WINDOW));
    }

    #[test]
    fn an_ipv6_slash_64_counts_as_one_address() {
        let r = RecipientRefusals::new(2);
        let now = Instant::now();
        assert!(!r.record_at("2001:db8:1:2::1".parse().unwrap(), now));
        assert!(r.record_at("2001:db8:1:2:ffff::9".parse().unwrap(), now));
        assert!(!r.record_at("2001:db8:1:3::1".parse().unwrap(), now));
        assert_eq!(
            client_key("::ffff:192.0.2.7".parse().unwrap()),
            "192.0.2.7".parse::<IpAddr>().unwrap()
        );
    }
}
