//! Whether a request came through the trusted gateway (the precondition of `x-user`).

use std::net::SocketAddr;

use http::HeaderMap;
use sha2::{Digest, Sha256};

use super::settings::HttpAuthSettings;

/// Checks every configured proof: the shared secret header and/or the source network. When
/// both are configured both must hold. `Err` is the reason, for logs only.
pub fn check_trusted(
    settings: &HttpAuthSettings,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
) -> Result<(), String> {
    let secret_configured = settings.x_user_secret.is_some();
    let sources_configured = !settings.x_user_trusted_sources.is_empty();
    if !secret_configured && !sources_configured {
        // Refused at start-up; kept so a hand-built setting can never trust everyone.
        return Err("neither a secret nor trusted sources are configured".into());
    }
    if let Some(expected) = &settings.x_user_secret {
        let name = &settings.x_user_secret_header;
        let mut values = headers.get_all(name).iter();
        let sent = match (values.next(), values.next()) {
            (Some(v), None) => v.as_bytes(),
            (None, _) => return Err(format!("no {name} header")),
            (Some(_), Some(_)) => return Err(format!("more than one {name} header")),
        };
        if !secret_matches(sent, expected.as_bytes()) {
            return Err(format!(
                "{name} header does not match the configured secret"
            ));
        }
    }
    if sources_configured {
        // An IPv4 client on a dual-stack socket shows up as ::ffff:a.b.c.d.
        let ip = peer
            .map(|p| p.ip().to_canonical())
            .ok_or_else(|| "peer address unknown".to_string())?;
        if !settings
            .x_user_trusted_sources
            .iter()
            .any(|net| net.contains(&ip))
        {
            return Err(format!(
                "peer {ip} is not in http.auth.x_user_trusted_sources"
            ));
        }
    }
    Ok(())
}

/// Constant-time comparison: both sides are hashed first, so neither the position of the first
/// difference nor the secret's length shows in the timing.
pub fn secret_matches(sent: &[u8], expected: &[u8]) -> bool {
    let a = Sha256::digest(sent);
    let b = Sha256::digest(expected);
    let diff = a
        .iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}
