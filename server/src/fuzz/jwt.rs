//! Bearer tokens and logout tokens: compact JWS splitting and header parsing, then the claim
//! checks (access token and back-channel logout) fed arbitrary JSON. Nothing here checks a
//! signature, so every assertion is about what the pure checks let through.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, AlgorithmFamily};
use serde_json::{Map, Value};

#[cfg(test)]
use super::engine::Target;
use crate::auth::oidc::claims::{self, ClaimRules};
use crate::auth::oidc::jws;
use crate::auth::revocation::logout_token::{self, BACKCHANNEL_LOGOUT_EVENT, LogoutRules};
use crate::auth::revocation::revocation_for;

const NOW: u64 = 1_700_000_000;
const ISSUER: &str = "https://idp.example.com/realms/mail";
const LEEWAY: u64 = 30;

#[cfg(test)]
const WORDS: &[&[u8]] = &[
    b"\"alg\":",
    b"\"typ\":",
    b"\"kid\":",
    b"\"crit\":[\"exp\"]",
    b"\"RS256\"",
    b"\"HS256\"",
    b"\"none\"",
    b"\"at+jwt\"",
    b"\"logout+jwt\"",
    b"\"iss\":\"https://idp.example.com/realms/mail\"",
    b"\"aud\":",
    b"[\"mail\",\"other\"]",
    b"\"exp\":",
    b"\"nbf\":",
    b"\"iat\":",
    b"1700000000",
    b"1.7e9",
    b"-1",
    b"1e400",
    b"null",
    b"\"sub\":",
    b"\"sid\":",
    b"\"jti\":",
    b"\"nonce\":",
    b"\"email\":",
    b"\"events\":{\"http://schemas.openid.net/event/backchannel-logout\":{}}",
    b"{}",
    b"[]",
    b"\"\\u0000\"",
    b"\"\\ud800\"",
    b",",
    b".",
];

fn allowed() -> [Algorithm; 3] {
    [Algorithm::RS256, Algorithm::ES256, Algorithm::PS256]
}

/// A whole compact token: `header.payload.signature`.
#[test]
fn fuzz_jwt_compact() {
    Target::new("jwt_compact").dictionary(WORDS).run(compact);
}

/// One compact token.
pub(super) fn compact(input: &[u8]) {
    if let Ok(token) = std::str::from_utf8(input) {
        check_token(token);
    }
}

/// Header JSON, wrapped in a token with a fixed payload and signature.
#[test]
fn fuzz_jwt_header() {
    Target::new("jwt_header").dictionary(WORDS).run(header);
}

/// One header, wrapped in a token with a fixed payload and signature.
pub(super) fn header(input: &[u8]) {
    let payload = URL_SAFE_NO_PAD.encode(br#"{"iss":"x"}"#);
    let token = format!("{}.{payload}.c2ln", URL_SAFE_NO_PAD.encode(input));
    let parsed = check_token(&token);
    let is_object = matches!(serde_json::from_slice(input), Ok(Value::Object(_)));
    if parsed.is_some() {
        assert!(is_object, "a header that is not a JSON object was accepted");
    }
}

/// Splits and parses; the header's `alg` and `typ` through their checks. Returns the header.
fn check_token(token: &str) -> Option<jws::JwsHeader> {
    let parsed = jws::parse(token).ok()?;
    assert_eq!(token.split('.').count(), 3, "not three parts but parsed");
    assert!(token.len() <= jws::MAX_TOKEN_LEN);
    if let Ok(alg) = jws::check_algorithm(&parsed.header.alg, &allowed()) {
        assert_ne!(alg.family(), AlgorithmFamily::Hmac, "HMAC accepted");
        assert!(allowed().contains(&alg), "{alg:?} is not allowed");
    }
    assert!(
        !parsed.header.alg.eq_ignore_ascii_case("none")
            || jws::check_algorithm(&parsed.header.alg, &allowed()).is_err(),
        "alg none accepted"
    );
    let _ = jws::check_type(parsed.header.typ.as_deref());
    let _ = logout_token::check_type(parsed.header.typ.as_deref());
    if let Ok(claims) = parsed.claims() {
        access_token_claims(&claims, parsed.header.typ.as_deref());
        logout_claims(&claims);
    }
    Some(parsed.header)
}

/// The access-token checks: whatever passes has the right issuer, is live at NOW, and has the
/// accepted audience.
fn access_token_claims(claims: &Map<String, Value>, header_typ: Option<&str>) -> usize {
    let mut passed = 0;
    let audience = ["mail".to_string()];
    for audience in [&audience[..], &[]] {
        let rules = ClaimRules {
            issuer: ISSUER,
            audience,
            leeway: LEEWAY,
            username_claim: "email",
        };
        let Ok(checked) = claims::check(claims, &rules, NOW) else {
            continue;
        };
        passed += 1;
        assert_eq!(checked.issuer, ISSUER);
        assert!(
            checked.expires_at.saturating_add(LEEWAY) >= NOW,
            "expired token accepted"
        );
        assert!(!checked.subject.is_empty() || claims.get("sub") == Some(&Value::from("")));
        if let Some(Value::Number(nbf)) = claims.get("nbf")
            && let Some(nbf) = nbf.as_u64()
        {
            assert!(nbf <= NOW + LEEWAY, "token not yet valid accepted");
        }
        if !audience.is_empty() {
            let aud = claims.get("aud");
            let ok = match aud {
                Some(Value::String(a)) => a == "mail",
                Some(Value::Array(list)) => list.iter().any(|a| a == "mail"),
                _ => false,
            };
            assert!(ok, "wrong audience accepted: {aud:?}");
        }
    }
    let _ = claims::check_access_token(header_typ, claims);
    passed
}

/// The back-channel logout checks: whatever passes is a logout event from our issuer, for
/// us, recent, naming a session or subject, and never an ID token.
fn logout_claims(claims: &Map<String, Value>) -> bool {
    let audiences = ["mail".to_string()];
    let rules = LogoutRules {
        issuer: ISSUER,
        audiences: &audiences,
        max_age: 120,
        leeway: LEEWAY,
    };
    let Ok(event) = logout_token::check(claims, &rules, NOW) else {
        return false;
    };
    assert_eq!(event.issuer, ISSUER);
    assert!(event.issued_at <= NOW + LEEWAY && event.issued_at.saturating_add(120) >= NOW);
    assert!(!event.jti.is_empty());
    assert!(event.sid.is_some() || event.subject.is_some());
    assert!(
        !claims.contains_key("nonce"),
        "ID token accepted as logout token"
    );
    assert!(
        claims
            .get("events")
            .and_then(|e| e.get(BACKCHANNEL_LOGOUT_EVENT))
            .is_some_and(Value::is_object),
        "no logout event"
    );
    assert!(
        revocation_for(&event).is_some(),
        "accepted but revokes nothing"
    );
    true
}

/// Claim sets as JSON: both the access-token and the logout-token checks.
#[test]
fn fuzz_jwt_claims() {
    let (mut access, mut logout) = (0, 0);
    Target::new("jwt_claims").dictionary(WORDS).run(|input| {
        let (a, l) = claim_set(input);
        access += a;
        logout += l;
    });
    // Both checks see claim sets they accept, so their invariants are exercised.
    assert!(
        access > 0 && logout > 0,
        "accepted: {access} access, {logout} logout"
    );
}

/// One claim set through the access-token and logout-token checks; returns how many of each
/// accepted it.
pub(super) fn claim_set(input: &[u8]) -> (usize, usize) {
    let Ok(Value::Object(claims)) = serde_json::from_slice(input) else {
        return (0, 0);
    };
    let access = access_token_claims(&claims, None) + access_token_claims(&claims, Some("at+jwt"));
    (access, usize::from(logout_claims(&claims)))
}
