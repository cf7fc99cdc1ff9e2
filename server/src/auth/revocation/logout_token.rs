//! OpenID Connect Back-Channel Logout 1.0 §2.4/§2.6: the checks on a logout token once its
//! signature verified (pure: the clock is an argument). The signature itself is checked by the
//! same key cache and `alg` allow-list as access tokens ([`TokenValidator::verify_signed`]).
//!
//! [`TokenValidator::verify_signed`]: crate::auth::oidc::TokenValidator::verify_signed

use serde_json::{Map, Value};

use crate::auth::oidc::TokenError;

/// The `events` member that makes a JWT a logout token.
pub const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// Header `typ` values accepted (§2.4 recommends `logout+jwt`; LemonLDAP::NG sends `JWT`).
const ACCEPTED_TYPES: [&str; 3] = ["JWT", "logout+jwt", "application/logout+jwt"];

/// What the claims must satisfy.
#[derive(Debug, Clone)]
pub struct LogoutRules<'a> {
    /// The exact issuer (from config or discovery).
    pub issuer: &'a str,
    /// `aud` must contain one of these.
    pub audiences: &'a [String],
    /// Oldest `iat` accepted, in seconds before now.
    pub max_age: u64,
    /// Clock skew allowed for `iat` in the future and for `exp`.
    pub leeway: u64,
}

/// A logout token that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutEvent {
    pub issuer: String,
    pub sid: Option<String>,
    pub subject: Option<String>,
    pub jti: String,
    pub issued_at: u64,
}

/// Why a logout token was refused. The text goes into the 400 body's `error_description`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogoutTokenError {
    /// Structure, `alg`, key or signature (or the IdP could not be asked for its keys).
    #[error("{code}: {0}", code = .0.code())]
    Token(TokenError),
    #[error("header typ {0:?} is not JWT or logout+jwt")]
    WrongType(String),
    #[error("issuer {0:?} is not the configured issuer")]
    WrongIssuer(String),
    #[error("aud does not contain an accepted logout audience")]
    WrongAudience,
    #[error("claim {0} is missing")]
    MissingClaim(&'static str),
    #[error("claim {0} has the wrong type")]
    BadClaim(&'static str),
    #[error("issued {age} s ago, more than the {max} s accepted")]
    TooOld { age: u64, max: u64 },
    #[error("iat lies in the future")]
    IssuedInFuture,
    #[error("token has expired")]
    Expired,
    #[error("events has no back-channel logout member holding a JSON object")]
    NotALogoutEvent,
    #[error("neither sid nor sub is present")]
    NoSidOrSub,
    #[error("a logout token must not contain nonce")]
    NoncePresent,
    #[error("jti was already used (replay)")]
    Replayed,
}

impl LogoutTokenError {
    /// Only an unreachable IdP is worth a retry (503); everything else is the sender's fault.
    pub fn is_temporary(&self) -> bool {
        matches!(self, LogoutTokenError::Token(e) if e.is_temporary())
    }
}

impl From<TokenError> for LogoutTokenError {
    fn from(e: TokenError) -> Self {
        LogoutTokenError::Token(e)
    }
}

/// `typ` absent, `JWT` or `logout+jwt` (any case).
pub fn check_type(typ: Option<&str>) -> Result<(), LogoutTokenError> {
    match typ {
        None => Ok(()),
        Some(t) if ACCEPTED_TYPES.iter().any(|a| a.eq_ignore_ascii_case(t)) => Ok(()),
        Some(t) => Err(LogoutTokenError::WrongType(t.to_string())),
    }
}

fn string(
    claims: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<String>, LogoutTokenError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(LogoutTokenError::BadClaim(name)),
    }
}

fn seconds(
    claims: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<u64>, LogoutTokenError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(Some(match n.as_u64() {
            Some(s) => s,
            // Fractional or negative NumericDate: `as` saturates.
            None => n.as_f64().map_or(0, |f| f as u64),
        })),
        Some(_) => Err(LogoutTokenError::BadClaim(name)),
    }
}

fn audience_ok(aud: Option<&Value>, accepted: &[String]) -> Result<bool, LogoutTokenError> {
    let accepts = |a: &str| accepted.iter().any(|want| want == a);
    match aud {
        None | Some(Value::Null) => Ok(false),
        Some(Value::String(a)) => Ok(accepts(a)),
        Some(Value::Array(list)) => Ok(list.iter().filter_map(Value::as_str).any(accepts)),
        Some(_) => Err(LogoutTokenError::BadClaim("aud")),
    }
}

/// Every claim check of §2.6 (steps 3-6), in the spec's order, at time `now`.
pub fn check(
    claims: &Map<String, Value>,
    rules: &LogoutRules<'_>,
    now: u64,
) -> Result<LogoutEvent, LogoutTokenError> {
    let issuer = string(claims, "iss")?.ok_or(LogoutTokenError::MissingClaim("iss"))?;
    if issuer != rules.issuer {
        return Err(LogoutTokenError::WrongIssuer(issuer));
    }
    if !audience_ok(claims.get("aud"), rules.audiences)? {
        return Err(LogoutTokenError::WrongAudience);
    }
    let issued_at = seconds(claims, "iat")?.ok_or(LogoutTokenError::MissingClaim("iat"))?;
    if issued_at > now.saturating_add(rules.leeway) {
        return Err(LogoutTokenError::IssuedInFuture);
    }
    let age = now.saturating_sub(issued_at);
    if age > rules.max_age {
        return Err(LogoutTokenError::TooOld {
            age,
            max: rules.max_age,
        });
    }
    // LemonLDAP::NG sends no `exp`; Keycloak does.
    if let Some(exp) = seconds(claims, "exp")?
        && exp.saturating_add(rules.leeway) < now
    {
        return Err(LogoutTokenError::Expired);
    }
    let jti = string(claims, "jti")?.ok_or(LogoutTokenError::MissingClaim("jti"))?;
    match claims.get("events") {
        Some(Value::Object(events))
            if matches!(events.get(BACKCHANNEL_LOGOUT_EVENT), Some(Value::Object(_))) => {}
        Some(Value::Object(_)) | None => return Err(LogoutTokenError::NotALogoutEvent),
        Some(_) => return Err(LogoutTokenError::BadClaim("events")),
    }
    let sid = string(claims, "sid")?;
    let subject = string(claims, "sub")?;
    if sid.is_none() && subject.is_none() {
        return Err(LogoutTokenError::NoSidOrSub);
    }
    // An ID token must never be usable as a logout token.
    if claims.contains_key("nonce") {
        return Err(LogoutTokenError::NoncePresent);
    }
    Ok(LogoutEvent {
        issuer,
        sid,
        subject,
        jti,
        issued_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: u64 = 1_700_000_000;

    fn rules(aud: &[String]) -> LogoutRules<'_> {
        LogoutRules {
            issuer: "https://idp",
            audiences: aud,
            max_age: 120,
            leeway: 30,
        }
    }

    /// What LemonLDAP::NG 2.21 sends: no `exp`, `aud` an array.
    fn good() -> Map<String, Value> {
        match json!({
            "iss": "https://idp",
            "aud": ["webmail"],
            "iat": NOW - 1,
            "jti": "abcd1234",
            "events": { BACKCHANNEL_LOGOUT_EVENT: {} },
            "sid": "s1",
            "sub": "alice",
        }) {
            Value::Object(m) => m,
            _ => unreachable!("object literal"),
        }
    }

    fn with(key: &str, value: Value) -> Map<String, Value> {
        let mut c = good();
        c.insert(key.into(), value);
        c
    }

    fn without(key: &str) -> Map<String, Value> {
        let mut c = good();
        c.remove(key);
        c
    }

    #[test]
    fn llng_and_keycloak_shapes_pass() {
        let aud = vec!["webmail".to_string()];
        assert_eq!(
            check(&good(), &rules(&aud), NOW),
            Ok(LogoutEvent {
                issuer: "https://idp".into(),
                sid: Some("s1".into()),
                subject: Some("alice".into()),
                jti: "abcd1234".into(),
                issued_at: NOW - 1,
            })
        );
        // Keycloak: `aud` a string, `exp` present, `typ` claim in the payload.
        let kc = with("aud", json!("webmail"));
        let mut kc = kc;
        kc.insert("exp".into(), json!(NOW + 120));
        kc.insert("typ".into(), json!("Logout"));
        assert!(check(&kc, &rules(&aud), NOW).is_ok());
        // sid only, sub only.
        assert!(check(&without("sub"), &rules(&aud), NOW).is_ok());
        assert!(check(&without("sid"), &rules(&aud), NOW).is_ok());
    }

    #[test]
    fn each_violation_has_its_reason() {
        let aud = vec!["webmail".to_string()];
        let r = rules(&aud);
        let cases: Vec<(Map<String, Value>, LogoutTokenError)> = vec![
            (
                with("iss", json!("https://evil")),
                LogoutTokenError::WrongIssuer("https://evil".into()),
            ),
            (without("iss"), LogoutTokenError::MissingClaim("iss")),
            (
                with("aud", json!(["other"])),
                LogoutTokenError::WrongAudience,
            ),
            (without("aud"), LogoutTokenError::WrongAudience),
            (with("aud", json!(3)), LogoutTokenError::BadClaim("aud")),
            (without("iat"), LogoutTokenError::MissingClaim("iat")),
            (
                with("iat", json!(NOW - 121)),
                LogoutTokenError::TooOld { age: 121, max: 120 },
            ),
            (
                with("iat", json!(NOW + 31)),
                LogoutTokenError::IssuedInFuture,
            ),
            (with("exp", json!(NOW - 31)), LogoutTokenError::Expired),
            (without("jti"), LogoutTokenError::MissingClaim("jti")),
            (
                with("jti", json!("")),
                LogoutTokenError::MissingClaim("jti"),
            ),
            (without("events"), LogoutTokenError::NotALogoutEvent),
            (with("events", json!({})), LogoutTokenError::NotALogoutEvent),
            (
                with("events", json!({ BACKCHANNEL_LOGOUT_EVENT: "yes" })),
                LogoutTokenError::NotALogoutEvent,
            ),
            (
                with("events", json!([1])),
                LogoutTokenError::BadClaim("events"),
            ),
            (with("nonce", json!("n")), LogoutTokenError::NoncePresent),
            (with("sid", json!(7)), LogoutTokenError::BadClaim("sid")),
        ];
        for (claims, want) in cases {
            assert_eq!(check(&claims, &r, NOW), Err(want.clone()), "{want}");
        }
        let mut neither = without("sid");
        neither.remove("sub");
        assert_eq!(check(&neither, &r, NOW), Err(LogoutTokenError::NoSidOrSub));
    }

    #[test]
    fn leeway_and_age_bounds() {
        let aud = vec!["webmail".to_string()];
        assert!(check(&with("iat", json!(NOW - 120)), &rules(&aud), NOW).is_ok());
        assert!(check(&with("iat", json!(NOW + 30)), &rules(&aud), NOW).is_ok());
        assert!(check(&with("exp", json!(NOW - 30)), &rules(&aud), NOW).is_ok());
    }

    #[test]
    fn header_types() {
        for t in [
            None,
            Some("JWT"),
            Some("logout+jwt"),
            Some("application/LOGOUT+JWT"),
        ] {
            assert_eq!(check_type(t), Ok(()), "{t:?}");
        }
        for t in ["at+jwt", "id_token", ""] {
            assert_eq!(
                check_type(Some(t)),
                Err(LogoutTokenError::WrongType(t.into()))
            );
        }
    }

    #[test]
    fn only_an_unreachable_idp_is_temporary() {
        assert!(LogoutTokenError::Token(TokenError::Unavailable("down".into())).is_temporary());
        assert!(!LogoutTokenError::Token(TokenError::BadSignature).is_temporary());
        assert!(!LogoutTokenError::Replayed.is_temporary());
        assert_eq!(
            LogoutTokenError::Token(TokenError::BadSignature).to_string(),
            "bad_signature: signature does not verify"
        );
    }
}
