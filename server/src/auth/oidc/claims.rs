//! Claim checks on a verified token (pure: the clock is an argument).

use serde_json::{Map, Value};

use super::TokenError;

/// What the claims must satisfy.
pub struct ClaimRules<'a> {
    /// The exact issuer (from config or discovery).
    pub issuer: &'a str,
    /// Accepted audiences; empty = `aud` not checked.
    pub audience: &'a [String],
    /// Allowed clock skew for `exp` and `nbf`, in seconds.
    pub leeway: u64,
    pub username_claim: &'a str,
}

/// The claims we use, once checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedClaims {
    pub issuer: String,
    pub subject: String,
    pub sid: Option<String>,
    pub expires_at: u64,
    pub issued_at: Option<u64>,
    /// The raw value of the username claim (not yet mapped through the directory).
    pub username: String,
}

fn string_claim(claims: &Map<String, Value>, name: &str) -> Result<Option<String>, TokenError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(TokenError::Malformed(format!(
            "claim {name} is not a string"
        ))),
    }
}

fn required_string(claims: &Map<String, Value>, name: &str) -> Result<String, TokenError> {
    string_claim(claims, name)?
        .filter(|s| !s.is_empty())
        .ok_or_else(|| TokenError::MissingClaim(name.to_string()))
}

/// A NumericDate (RFC 7519 2): seconds, possibly fractional; negative counts as 0.
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<u64>, TokenError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(Some(match n.as_u64() {
            Some(secs) => secs,
            // `as` saturates: negative -> 0, huge -> u64::MAX.
            None => n.as_f64().map_or(0, |f| f as u64),
        })),
        Some(_) => Err(TokenError::Malformed(format!(
            "claim {name} is not a number"
        ))),
    }
}

fn audience_matches(aud: Option<&Value>, accepted: &[String]) -> Result<bool, TokenError> {
    let accepts = |a: &str| accepted.iter().any(|want| want == a);
    match aud {
        None | Some(Value::Null) => Ok(false),
        Some(Value::String(a)) => Ok(accepts(a)),
        Some(Value::Array(list)) => Ok(list.iter().filter_map(Value::as_str).any(accepts)),
        Some(_) => Err(TokenError::Malformed(
            "claim aud is not a string or an array".into(),
        )),
    }
}

/// Checks `iss`, `exp`, `nbf`, `aud`, `sub` and the username claim at time `now` (Unix seconds).
pub fn check(
    claims: &Map<String, Value>,
    rules: &ClaimRules<'_>,
    now: u64,
) -> Result<CheckedClaims, TokenError> {
    let issuer = required_string(claims, "iss")?;
    if issuer != rules.issuer {
        return Err(TokenError::WrongIssuer(issuer));
    }
    let expires_at =
        numeric_date(claims, "exp")?.ok_or_else(|| TokenError::MissingClaim("exp".into()))?;
    if expires_at.saturating_add(rules.leeway) < now {
        return Err(TokenError::Expired);
    }
    if let Some(nbf) = numeric_date(claims, "nbf")?
        && nbf > now.saturating_add(rules.leeway)
    {
        return Err(TokenError::NotYetValid);
    }
    if !rules.audience.is_empty() && !audience_matches(claims.get("aud"), rules.audience)? {
        return Err(TokenError::WrongAudience);
    }
    Ok(CheckedClaims {
        issuer,
        subject: required_string(claims, "sub")?,
        sid: string_claim(claims, "sid")?,
        expires_at,
        issued_at: numeric_date(claims, "iat")?,
        username: required_string(claims, rules.username_claim)?,
    })
}

/// Claims only an ID token carries (OpenID Connect Core 1.0 §2, §3.1.3.6, §3.3.2.11).
const ID_TOKEN_CLAIMS: [&str; 3] = ["nonce", "at_hash", "c_hash"];

/// Refuses an ID token presented as an access token. Both are signed by the same key with the
/// same `iss` and often the same `aud` (the client id), so the signature says nothing:
/// - header `typ: at+jwt` (RFC 9068; LemonLDAP::NG 2.21) marks an access token;
/// - a payload `typ` claim (Keycloak) must be `Bearer` (`ID`, `Refresh`, `Logout` are not);
/// - otherwise `nonce`, `at_hash` or `c_hash` mark an ID token (LemonLDAP::NG ID tokens carry
///   `at_hash`; Keycloak 25+ puts `nonce` only in ID tokens).
pub fn check_access_token(
    header_typ: Option<&str>,
    claims: &Map<String, Value>,
) -> Result<(), TokenError> {
    let refuse = |why: String| Err(TokenError::NotAnAccessToken(why));
    match claims.get("typ") {
        Some(Value::String(t)) if t.eq_ignore_ascii_case("Bearer") => return Ok(()),
        Some(Value::String(t)) => return refuse(format!("payload typ {t:?} is not Bearer")),
        Some(Value::Null) | None => {}
        Some(_) => return Err(TokenError::Malformed("claim typ is not a string".into())),
    }
    let rfc9068 = header_typ.is_some_and(|t| {
        t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("application/at+jwt")
    });
    if rfc9068 {
        return Ok(());
    }
    match ID_TOKEN_CLAIMS.iter().find(|c| claims.contains_key(**c)) {
        Some(claim) => refuse(format!("it carries {claim}, an ID token claim")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: u64 = 1_700_000_000;

    fn rules(audience: &[String]) -> ClaimRules<'_> {
        ClaimRules {
            issuer: "https://idp.example",
            audience,
            leeway: 30,
            username_claim: "email",
        }
    }

    fn good() -> Map<String, Value> {
        match json!({
            "iss": "https://idp.example",
            "sub": "u1",
            "aud": ["other", "mail"],
            "exp": NOW + 60,
            "nbf": NOW - 5,
            "sid": "s1",
            "email": "alice@example.com",
        }) {
            Value::Object(m) => m,
            _ => unreachable!("literal object"),
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
    fn good_claims_pass() {
        let aud = vec!["mail".to_string()];
        assert_eq!(
            check(&good(), &rules(&aud), NOW),
            Ok(CheckedClaims {
                issuer: "https://idp.example".into(),
                subject: "u1".into(),
                sid: Some("s1".into()),
                expires_at: NOW + 60,
                issued_at: None,
                username: "alice@example.com".into(),
            })
        );
        // Fractional NumericDate and a plain-string aud.
        let c = with("exp", json!((NOW + 60) as f64 + 0.5));
        let c = {
            let mut c = c;
            c.insert("aud".into(), json!("mail"));
            c
        };
        assert!(check(&c, &rules(&aud), NOW).is_ok());
    }

    #[test]
    fn each_failure_has_its_reason() {
        let aud = vec!["mail".to_string()];
        let r = rules(&aud);
        let cases: Vec<(Map<String, Value>, TokenError)> = vec![
            (
                with("iss", json!("https://idp.example/")),
                TokenError::WrongIssuer("https://idp.example/".into()),
            ),
            (without("iss"), TokenError::MissingClaim("iss".into())),
            (with("exp", json!(NOW - 31)), TokenError::Expired),
            (with("exp", json!(-5)), TokenError::Expired),
            (without("exp"), TokenError::MissingClaim("exp".into())),
            (with("nbf", json!(NOW + 31)), TokenError::NotYetValid),
            (with("aud", json!(["other"])), TokenError::WrongAudience),
            (with("aud", json!("other")), TokenError::WrongAudience),
            (without("aud"), TokenError::WrongAudience),
            (without("sub"), TokenError::MissingClaim("sub".into())),
            (without("email"), TokenError::MissingClaim("email".into())),
            (
                with("email", json!("")),
                TokenError::MissingClaim("email".into()),
            ),
        ];
        for (claims, want) in cases {
            assert_eq!(check(&claims, &r, NOW), Err(want.clone()), "{want:?}");
        }
        for bad_type in [
            with("exp", json!("soon")),
            with("aud", json!(7)),
            with("sub", json!(1)),
        ] {
            assert!(matches!(
                check(&bad_type, &r, NOW),
                Err(TokenError::Malformed(_))
            ));
        }
    }

    #[test]
    fn id_tokens_are_told_apart_from_access_tokens() {
        let obj = |v: Value| match v {
            Value::Object(m) => m,
            _ => unreachable!("object literal"),
        };
        // LemonLDAP::NG: the access token has header typ at+JWT, the ID token at_hash.
        let llng_access = obj(json!({"client_id": "mail", "scope": "openid"}));
        assert_eq!(check_access_token(Some("at+JWT"), &llng_access), Ok(()));
        let llng_id = obj(json!({"azp": "mail", "at_hash": "x", "auth_time": 1}));
        assert!(matches!(
            check_access_token(Some("JWT"), &llng_id),
            Err(TokenError::NotAnAccessToken(_))
        ));
        // Keycloak: payload typ Bearer / ID; a nonce only in ID tokens.
        let kc_access = obj(json!({"typ": "Bearer", "azp": "mail"}));
        assert_eq!(check_access_token(Some("JWT"), &kc_access), Ok(()));
        for typ in ["ID", "Refresh", "Logout"] {
            let kc_other = obj(json!({"typ": typ}));
            assert!(
                matches!(
                    check_access_token(Some("JWT"), &kc_other),
                    Err(TokenError::NotAnAccessToken(_))
                ),
                "{typ}"
            );
        }
        let with_nonce = obj(json!({"nonce": "n"}));
        assert!(check_access_token(None, &with_nonce).is_err());
        // Even an at+jwt header does not excuse a payload typ that is not Bearer.
        assert!(check_access_token(Some("at+jwt"), &obj(json!({"typ": "ID"}))).is_err());
        // A plain token with none of the markers passes (generic IdPs).
        assert_eq!(
            check_access_token(None, &obj(json!({"scope": "x"}))),
            Ok(())
        );
        assert!(matches!(
            check_access_token(None, &obj(json!({"typ": 1}))),
            Err(TokenError::Malformed(_))
        ));
    }

    #[test]
    fn leeway_is_honoured_and_aud_unchecked_when_unconfigured() {
        let aud = vec!["mail".to_string()];
        assert!(check(&with("exp", json!(NOW - 30)), &rules(&aud), NOW).is_ok());
        assert!(check(&with("nbf", json!(NOW + 30)), &rules(&aud), NOW).is_ok());
        assert!(check(&without("aud"), &rules(&[]), NOW).is_ok());
    }
}
