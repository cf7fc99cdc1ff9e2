//! Redis key and channel names. The gateway reads the same keys, so they are part of the
//! interface (README: "Redis keys"). `<prefix>` is `revocation.key_prefix` (default
//! `mail-oidc:`); `<iss>` is the issuer exactly as in the token. An OIDC issuer has no fragment
//! (OpenID Connect Discovery 1.0 §2), so `#` separates it from what follows without ambiguity.
//!
//! | key | value |
//! |---|---|
//! | `<prefix>revoked:sid:<iss>#<sid>` | `1`: the IdP session is logged out |
//! | `<prefix>revoked:sub:<iss>#<sub>` | Unix seconds: tokens of `sub` issued at or before it are revoked |
//! | `<prefix>revoked:user:<user>` | Unix seconds: the same for a directory user (lower case) |
//! | `<prefix>logout-jti:<iss>#<jti>` | SHA-256 (hex) of the logout token that used this `jti` |
//!
//! Every key expires after `revocation.ttl_seconds`. Instances announce each revocation as JSON
//! on the channel `<prefix>revocations`.

/// `<prefix>revoked:sid:<iss>#<sid>`.
pub fn sid(prefix: &str, issuer: &str, sid: &str) -> String {
    format!("{prefix}revoked:sid:{issuer}#{sid}")
}

/// `<prefix>revoked:sub:<iss>#<sub>`.
pub fn subject(prefix: &str, issuer: &str, subject: &str) -> String {
    format!("{prefix}revoked:sub:{issuer}#{subject}")
}

/// `<prefix>revoked:user:<user>`, user in lower case (directory names match case-insensitively).
pub fn user(prefix: &str, user: &str) -> String {
    format!("{prefix}revoked:user:{}", user.to_lowercase())
}

/// `<prefix>logout-jti:<iss>#<jti>`.
pub fn logout_jti(prefix: &str, issuer: &str, jti: &str) -> String {
    format!("{prefix}logout-jti:{issuer}#{jti}")
}

/// `<prefix>revocations`.
pub fn channel(prefix: &str) -> String {
    format!("{prefix}revocations")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_names() {
        let p = "mail-oidc:";
        let iss = "http://localhost:8080/realms/mail";
        assert_eq!(
            sid(p, iss, "abc"),
            "mail-oidc:revoked:sid:http://localhost:8080/realms/mail#abc"
        );
        assert_eq!(
            subject(p, iss, "u:1"),
            "mail-oidc:revoked:sub:http://localhost:8080/realms/mail#u:1"
        );
        assert_eq!(
            user(p, "Alice@Example.COM"),
            "mail-oidc:revoked:user:alice@example.com"
        );
        assert_eq!(
            logout_jti(p, iss, "j1"),
            "mail-oidc:logout-jti:http://localhost:8080/realms/mail#j1"
        );
        assert_eq!(channel(p), "mail-oidc:revocations");
    }
}
