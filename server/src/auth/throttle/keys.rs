//! Which keys one login attempt is counted under: its client address, the user name it tried,
//! and the pair of both (what a success forgives).

use std::net::IpAddr;

use sha2::{Digest, Sha256};

/// User names longer than this are hashed, so a client cannot make keys of any size.
const MAX_NAME_IN_KEY: usize = 256;

/// The keys of one attempt (full store keys, prefix included).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Keys {
    pub address: Option<String>,
    pub user: Option<String>,
    /// Set when both are: failures this address made for this user.
    pub pair: Option<String>,
}

impl Keys {
    pub fn new(prefix: &str, address: Option<IpAddr>, user: Option<&str>) -> Self {
        let address = address.map(address_part);
        let user = user.map(user_part).filter(|u| !u.is_empty());
        let pair = match (&address, &user) {
            (Some(a), Some(u)) => Some(format!("{prefix}throttle:pair:{a}|{u}")),
            _ => None,
        };
        Self {
            address: address.map(|a| format!("{prefix}throttle:addr:{a}")),
            user: user.map(|u| format!("{prefix}throttle:user:{u}")),
            pair,
        }
    }

    /// The keys whose delays apply: address and user (the pair only feeds forgiveness).
    pub fn checked(&self) -> Vec<&str> {
        [&self.address, &self.user]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect()
    }

    /// Every key a failure is added to.
    pub fn all(&self) -> Vec<&str> {
        [&self.address, &self.user, &self.pair]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect()
    }
}

/// IPv4 as is (an IPv4-mapped IPv6 address too); IPv6 by its /64, the block one subscriber
/// usually holds, so rotating addresses inside it does not buy fresh failures.
pub fn address_part(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// The name as the directory matches it: trimmed and lower-cased (the static directory
/// lower-cases, LDAP matches mail and uid case-insensitively). A uid and a mail address of
/// the same user are two names: each has its own budget.
pub fn user_part(name: &str) -> String {
    let name = name.trim().to_lowercase();
    if name.len() <= MAX_NAME_IN_KEY && !name.chars().any(char::is_control) {
        name
    } else {
        let digest = Sha256::digest(name.as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        format!("sha256:{hex}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalised_and_long_ones_hashed() {
        assert_eq!(user_part(" Alice@Example.COM "), "alice@example.com");
        let long = "a".repeat(300);
        assert!(user_part(&long).starts_with("sha256:"));
        assert_eq!(user_part(&long).len(), 7 + 64);
        assert!(user_part("a\r\nb").starts_with("sha256:"));
    }

    #[test]
    fn addresses_ipv6_by_64_and_mapped_ipv4_as_ipv4() {
        let v6: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("ip");
        let v6b: IpAddr = "2001:db8:1:2:bbbb::9".parse().expect("ip");
        assert_eq!(address_part(v6), "2001:db8:1:2::/64");
        assert_eq!(address_part(v6), address_part(v6b));
        let mapped: IpAddr = "::ffff:127.0.0.2".parse().expect("ip");
        assert_eq!(address_part(mapped), "127.0.0.2");
    }

    #[test]
    fn keys_of_an_attempt() {
        let ip: IpAddr = "127.0.0.1".parse().expect("ip");
        let k = Keys::new("p:", Some(ip), Some("Bob"));
        assert_eq!(k.address.as_deref(), Some("p:throttle:addr:127.0.0.1"));
        assert_eq!(k.user.as_deref(), Some("p:throttle:user:bob"));
        assert_eq!(k.pair.as_deref(), Some("p:throttle:pair:127.0.0.1|bob"));
        assert_eq!(k.checked().len(), 2);
        let token = Keys::new("p:", Some(ip), None);
        assert_eq!(token.pair, None);
        assert_eq!(token.all(), ["p:throttle:addr:127.0.0.1"]);
        assert_eq!(Keys::new("p:", Some(ip), Some("  ")).user, None);
    }
}
