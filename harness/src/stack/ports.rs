//! Free loopback ports: bind 127.0.0.1:0, read the port, release it. Another process can take the
//! port before ours binds it, so every start that uses one retries with a fresh port when the
//! process fails to bind.

use std::net::{Ipv4Addr, TcpListener};

/// How many fresh ports a process gets before its start-up is declared failed.
pub const START_ATTEMPTS: usize = 5;

/// A port that was free a moment ago.
pub fn free_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

/// `N` distinct ports that were free a moment ago: all are held until every one is chosen, since
/// two [`free_port`] calls in a row may return the same port.
pub fn free_ports<const N: usize>() -> std::io::Result<[u16; N]> {
    let listeners = (0..N)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
        .collect::<std::io::Result<Vec<_>>>()?;
    let mut ports = [0; N];
    for (port, listener) in ports.iter_mut().zip(&listeners) {
        *port = listener.local_addr()?.port();
    }
    Ok(ports)
}

/// Whether a start-up log says the listen address was taken (slapd, redis, Starman wording).
pub fn is_bind_failure(log: &str) -> bool {
    let log = log.to_ascii_lowercase();
    log.contains("address already in use")
        || log.contains("bind(")
        || log.contains("can't bind")
        || log.contains("cannot bind")
        || log.contains("could not create server tcp listening socket")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_port_is_bindable() {
        let port = free_port().expect("port");
        assert_ne!(port, 0);
        TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("still free");
    }

    #[test]
    fn free_ports_are_distinct() {
        for _ in 0..200 {
            let [a, b, c] = free_ports().expect("ports");
            assert!(a != b && b != c && a != c, "{a} {b} {c}");
        }
    }

    #[test]
    fn recognises_bind_failures() {
        assert!(is_bind_failure(
            "daemon: bind(7) failed errno=98 (Address already in use)"
        ));
        assert!(is_bind_failure(
            "# Could not create server TCP listening socket 127.0.0.1:6379: bind: Address already in use"
        ));
        assert!(!is_bind_failure("syntax error in slapd.conf"));
    }
}
