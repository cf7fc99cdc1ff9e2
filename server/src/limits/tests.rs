use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use super::*;

const A: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
const B: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));

#[test]
fn per_address_cap_refuses_the_next_connection_from_that_address_only() {
    let caps = ConnectionLimiter::new("test", 10, 2);
    let _a1 = caps.try_acquire(A).unwrap();
    let a2 = caps.try_acquire(A).unwrap();
    assert_eq!(
        caps.try_acquire(A).err(),
        Some(CapExceeded::PerAddress { limit: 2 })
    );
    let _b1 = caps.try_acquire(B).unwrap();
    drop(a2);
    assert!(caps.try_acquire(A).is_ok());
}

#[test]
fn global_cap_refuses_any_address_and_permits_free_their_slot() {
    let caps = ConnectionLimiter::new("test", 2, 5);
    let a = caps.try_acquire(A).unwrap();
    let _b = caps.try_acquire(B).unwrap();
    assert_eq!(
        caps.try_acquire(B).err(),
        Some(CapExceeded::Total { limit: 2 })
    );
    drop(a);
    assert_eq!(caps.open(), 1);
    assert!(caps.try_acquire(A).is_ok());
}

#[tokio::test]
async fn command_deadline_runs_from_the_first_byte_until_the_answer() {
    let mut d = ReadDeadlines::new(Duration::from_secs(10), None);
    assert_eq!(d.next(Duration::from_secs(60)).1, Expiry::Idle);
    let before = tokio::time::Instant::now();
    d.input();
    let (first, expiry) = d.next(Duration::from_secs(60));
    assert_eq!(expiry, Expiry::Command);
    // More bytes of the same command do not push the deadline back.
    d.input();
    assert_eq!(d.next(Duration::from_secs(60)).0, first);
    assert!(first >= before + Duration::from_secs(10));
    assert!(first <= tokio::time::Instant::now() + Duration::from_secs(10));
    d.answered();
    assert_eq!(d.next(Duration::from_secs(60)).1, Expiry::Idle);
}

#[tokio::test]
async fn login_deadline_applies_until_logged_in() {
    let mut d = ReadDeadlines::new(Duration::from_secs(10), Some(Duration::from_secs(30)));
    assert_eq!(d.next(Duration::from_secs(60)).1, Expiry::Login);
    assert_eq!(d.next(Duration::from_secs(20)).1, Expiry::Idle);
    d.logged_in();
    assert_eq!(d.next(Duration::from_secs(60)).1, Expiry::Idle);
}

#[tokio::test]
async fn shutdown_signal_fires_for_every_copy() {
    let shutdown = Shutdown::new();
    let mut a = shutdown.signal();
    let b = a.clone();
    assert!(!b.is_requested());
    shutdown.trigger();
    a.requested().await;
    assert!(b.is_requested());
    assert!(!ShutdownSignal::never().is_requested());
}

#[tokio::test]
async fn write_to_a_peer_that_never_reads_fails_after_the_deadline() {
    let (ours, _theirs) = tokio::io::duplex(64);
    let mut stream = WriteDeadline::new(ours, Duration::from_millis(50));
    let err = stream.write_all(&[b'x'; 4096]).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
}

fn parse(extra: &str) -> Result<crate::config::Config, crate::config::ConfigError> {
    crate::config::Config::parse(
        &format!("[directory]\nkind = \"static\"\npath = \"/nonexistent\"\n{extra}"),
        std::path::Path::new("limits.toml"),
    )
}

#[test]
fn limits_default_when_absent_and_bad_values_name_their_key() {
    let config = parse("").expect("no [limits] is fine");
    assert_eq!(config.limits.imap.max_connections_per_address, 64);
    assert_eq!(config.limits.http.header_timeout_seconds, 30);
    let err = parse("[limits.imap]\nmax_connections = 0\n").unwrap_err();
    assert!(
        err.to_string().contains("limits.imap.max_connections"),
        "{err}"
    );
    let err = parse("[limits.sieve]\ncommand_timeout_seconds = 0\n").unwrap_err();
    assert!(
        err.to_string()
            .contains("limits.sieve.command_timeout_seconds"),
        "{err}"
    );
    let err = parse("[limits.http]\nwebsocket_ping_seconds = 30\nwebsocket_idle_seconds = 30\n")
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("limits.http.websocket_idle_seconds"),
        "{err}"
    );
    let err = parse("[limits.pop3]\nmax_conections = 5\n").unwrap_err();
    assert!(err.to_string().contains("max_conections"), "{err}");
}
