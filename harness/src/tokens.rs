//! Token forge: access tokens shaped like LemonLDAP::NG 2.21's (RS256, `typ: at+JWT`), signed with
//! the IdP's own key, so tests can present validly signed tokens with hostile claims, plus the
//! classic forgeries (foreign key, `alg: none`, HMAC keyed with the public key, unknown `kid`).

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rand::Rng;
use rand::distr::Alphanumeric;
use serde_json::{Value, json};

use crate::keys::RsaKeyPair;

/// Mints validly signed tokens with hostile claims using the IdP's own signing key.
#[derive(Debug, Clone)]
pub struct TokenForge {
    /// PKCS#1 PEM private key the IdP signs with.
    pub private_pem: String,
    /// SPKI PEM public key (for the HMAC-with-public-key forgery).
    pub public_pem: String,
    /// The IdP's `kid` for that key.
    pub kid: String,
    pub issuer: String,
    /// The audience the server accepts (a client id of the realm).
    pub audience: String,
}

/// The ways a token can be wrong. Each must be refused by the server with
/// [`expected_reason`](Hostile::expected_reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hostile {
    /// Signed by an unrelated RSA key, under the real `kid`.
    BadSignature,
    /// `exp` an hour ago (far beyond any leeway).
    Expired,
    /// `nbf` an hour ahead.
    NotYetValid,
    /// `iss` of another provider.
    WrongIssuer,
    /// `aud` naming only another client.
    WrongAudience,
    /// Header `alg: none` and an empty signature.
    AlgNone,
    /// Signed with the real key but under a `kid` the JWKS never publishes (the server refetches
    /// the JWKS once, still does not find it).
    UnknownKid,
    /// HS256 keyed with the IdP's public key PEM (the RS/HS confusion attack).
    HmacWithPublicKey,
    /// Not a JWT at all.
    Garbage,
}

impl Hostile {
    pub const ALL: [Hostile; 9] = [
        Hostile::BadSignature,
        Hostile::Expired,
        Hostile::NotYetValid,
        Hostile::WrongIssuer,
        Hostile::WrongAudience,
        Hostile::AlgNone,
        Hostile::UnknownKid,
        Hostile::HmacWithPublicKey,
        Hostile::Garbage,
    ];

    /// The server's `TokenError::code()` for this token.
    pub fn expected_reason(&self) -> &'static str {
        match self {
            Hostile::BadSignature => "bad_signature",
            Hostile::Expired => "expired",
            Hostile::NotYetValid => "not_yet_valid",
            Hostile::WrongIssuer => "wrong_issuer",
            Hostile::WrongAudience => "wrong_audience",
            Hostile::AlgNone | Hostile::HmacWithPublicKey => "alg_not_allowed",
            Hostile::UnknownKid => "unknown_kid",
            Hostile::Garbage => "malformed",
        }
    }
}

/// The ways a back-channel logout token can be wrong (OpenID Connect Back-Channel Logout 1.0
/// §2.6). Each must get 400 and end nothing. (A replayed `jti` is the valid token sent twice.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HostileLogout {
    /// Signed by an unrelated RSA key under the real `kid`.
    BadSignature,
    /// Header `alg: none`, empty signature.
    AlgNone,
    /// `iss` of another provider.
    WrongIssuer,
    /// `aud` naming only another client.
    WrongAudience,
    /// No `events` claim.
    NoEvents,
    /// A `nonce` (an ID token's claim).
    NoncePresent,
    /// Neither `sid` nor `sub`.
    NoSidNoSub,
    /// `iat` an hour ago.
    TooOld,
}

impl HostileLogout {
    /// A word the refusal's `error_description` names (this server's wording).
    pub fn expected_reason(&self) -> &'static str {
        match self {
            HostileLogout::BadSignature => "bad_signature",
            HostileLogout::AlgNone => "alg_not_allowed",
            HostileLogout::WrongIssuer => "issuer",
            HostileLogout::WrongAudience => "aud",
            HostileLogout::NoEvents => "events",
            HostileLogout::NoncePresent => "nonce",
            HostileLogout::NoSidNoSub => "neither sid nor sub",
            HostileLogout::TooOld => "issued",
        }
    }

    pub const ALL: [HostileLogout; 8] = [
        HostileLogout::BadSignature,
        HostileLogout::AlgNone,
        HostileLogout::WrongIssuer,
        HostileLogout::WrongAudience,
        HostileLogout::NoEvents,
        HostileLogout::NoncePresent,
        HostileLogout::NoSidNoSub,
        HostileLogout::TooOld,
    ];
}

/// The `events` member of a logout token.
pub const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A random alphanumeric string (jti, sid, kid suffixes).
pub fn random_id(len: usize) -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

fn b64url_json(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

/// An RSA key the IdP never heard of; generated once per test process (openssl takes ~100 ms).
fn foreign_key() -> anyhow::Result<&'static RsaKeyPair> {
    static KEY: OnceLock<RsaKeyPair> = OnceLock::new();
    if let Some(k) = KEY.get() {
        return Ok(k);
    }
    let k = RsaKeyPair::generate().context("generating the unrelated key")?;
    Ok(KEY.get_or_init(|| k))
}

impl TokenForge {
    /// Claims of a valid access token for `mail`/`sub`, like LemonLDAP::NG's: iss, sub, aud
    /// (array), exp (+300 s), iat, nbf (-5 s), jti, sid, scope, email, preferred_username,
    /// client_id.
    pub fn claims_for(&self, mail: &str, sub: &str) -> Value {
        let now = now();
        json!({
            "iss": self.issuer,
            "sub": sub,
            "aud": [self.audience],
            "exp": now + 300,
            "iat": now,
            "nbf": now - 5,
            "jti": random_id(24),
            "sid": random_id(32),
            "scope": "openid email profile offline_access",
            "email": mail,
            "preferred_username": sub,
            "client_id": self.audience,
        })
    }

    /// The header LemonLDAP::NG 2.21 puts on access tokens.
    fn header(&self) -> Header {
        let mut h = Header::new(Algorithm::RS256);
        h.typ = Some("at+JWT".into());
        h.kid = Some(self.kid.clone());
        h
    }

    /// RS256 with the IdP's key and `kid`, header `typ: at+JWT`.
    pub fn try_mint(&self, claims: &Value) -> anyhow::Result<String> {
        self.sign_rs256(&self.header(), claims, &self.private_pem)
    }

    /// [`try_mint`](Self::try_mint); panics on a bad forge key (a harness set-up bug).
    pub fn mint(&self, claims: &Value) -> String {
        self.try_mint(claims)
            .unwrap_or_else(|e| panic!("token forge cannot sign: {e:#}"))
    }

    fn sign_rs256(&self, header: &Header, claims: &Value, pem: &str) -> anyhow::Result<String> {
        let key = EncodingKey::from_rsa_pem(pem.as_bytes()).context("RSA private key PEM")?;
        jsonwebtoken::encode(header, claims, &key).context("signing RS256")
    }

    /// A token that is wrong in exactly the way `kind` says, for `mail`/`sub`.
    pub fn try_hostile(&self, kind: Hostile, mail: &str, sub: &str) -> anyhow::Result<String> {
        let mut claims = self.claims_for(mail, sub);
        let now = now();
        match kind {
            Hostile::BadSignature => {
                let foreign = foreign_key()?;
                self.sign_rs256(&self.header(), &claims, &foreign.private_pem)
            }
            Hostile::Expired => {
                claims["iat"] = json!(now - 3900);
                claims["nbf"] = json!(now - 3905);
                claims["exp"] = json!(now - 3600);
                self.try_mint(&claims)
            }
            Hostile::NotYetValid => {
                claims["nbf"] = json!(now + 3600);
                claims["exp"] = json!(now + 3900);
                self.try_mint(&claims)
            }
            Hostile::WrongIssuer => {
                claims["iss"] = json!("http://evil.invalid:8080");
                self.try_mint(&claims)
            }
            Hostile::WrongAudience => {
                claims["aud"] = json!(["someone-else"]);
                claims["client_id"] = json!("someone-else");
                self.try_mint(&claims)
            }
            Hostile::AlgNone => {
                let header = json!({"alg": "none", "typ": "at+JWT", "kid": self.kid});
                Ok(format!(
                    "{}.{}.",
                    b64url_json(&header),
                    b64url_json(&claims)
                ))
            }
            Hostile::UnknownKid => {
                let mut header = self.header();
                header.kid = Some(format!("never-published-{}", random_id(8)));
                self.sign_rs256(&header, &claims, &self.private_pem)
            }
            Hostile::HmacWithPublicKey => {
                let mut header = Header::new(Algorithm::HS256);
                header.typ = Some("at+JWT".into());
                header.kid = Some(self.kid.clone());
                let key = EncodingKey::from_secret(self.public_pem.as_bytes());
                jsonwebtoken::encode(&header, &claims, &key).context("signing HS256")
            }
            Hostile::Garbage => Ok(format!("not-a-jwt-{}", random_id(40))),
        }
    }

    /// Claims of a logout token like LemonLDAP::NG's: iss, aud (array), iat, jti, events, and
    /// the given `sid`/`sub` (no `exp`).
    pub fn logout_claims(&self, sid: Option<&str>, sub: Option<&str>) -> Value {
        let mut claims = json!({
            "iss": self.issuer,
            "aud": [self.audience],
            "iat": now(),
            "jti": random_id(16),
            "events": { BACKCHANNEL_LOGOUT_EVENT: {} },
        });
        if let Some(sid) = sid {
            claims["sid"] = json!(sid);
        }
        if let Some(sub) = sub {
            claims["sub"] = json!(sub);
        }
        claims
    }

    /// A logout token signed with the IdP's key (header `typ: JWT`, as LemonLDAP::NG sends).
    pub fn try_logout_token(&self, claims: &Value) -> anyhow::Result<String> {
        let mut header = self.header();
        header.typ = Some("JWT".into());
        self.sign_rs256(&header, claims, &self.private_pem)
    }

    /// A logout token for `sid`/`sub` that is wrong in exactly the way `kind` says.
    pub fn try_hostile_logout(
        &self,
        kind: HostileLogout,
        sid: Option<&str>,
        sub: Option<&str>,
    ) -> anyhow::Result<String> {
        let mut claims = self.logout_claims(sid, sub);
        match kind {
            HostileLogout::BadSignature => {
                let mut header = self.header();
                header.typ = Some("JWT".into());
                self.sign_rs256(&header, &claims, &foreign_key()?.private_pem)
            }
            HostileLogout::AlgNone => {
                let header = json!({"alg": "none", "typ": "JWT", "kid": self.kid});
                Ok(format!(
                    "{}.{}.",
                    b64url_json(&header),
                    b64url_json(&claims)
                ))
            }
            HostileLogout::WrongIssuer => {
                claims["iss"] = json!("http://evil.invalid:8080");
                self.try_logout_token(&claims)
            }
            HostileLogout::WrongAudience => {
                claims["aud"] = json!(["someone-else"]);
                self.try_logout_token(&claims)
            }
            HostileLogout::NoEvents => {
                if let Some(map) = claims.as_object_mut() {
                    map.remove("events");
                }
                self.try_logout_token(&claims)
            }
            HostileLogout::NoncePresent => {
                claims["nonce"] = json!(random_id(12));
                self.try_logout_token(&claims)
            }
            HostileLogout::NoSidNoSub => {
                if let Some(map) = claims.as_object_mut() {
                    map.remove("sid");
                    map.remove("sub");
                }
                self.try_logout_token(&claims)
            }
            HostileLogout::TooOld => {
                claims["iat"] = json!(now() - 3600);
                self.try_logout_token(&claims)
            }
        }
    }

    /// [`try_hostile`](Self::try_hostile); panics on a harness set-up bug (bad key, no openssl).
    pub fn hostile(&self, kind: Hostile, mail: &str, sub: &str) -> String {
        self.try_hostile(kind, mail, sub)
            .unwrap_or_else(|e| panic!("token forge cannot make {kind:?}: {e:#}"))
    }
}

/// Decodes the header and payload of a compact JWS without verifying anything (for tests and
/// for reading the nonce of an ID token).
pub fn decode_unverified(token: &str) -> anyhow::Result<(Value, Value)> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        anyhow::bail!("not a compact JWS (three dot-separated parts)");
    };
    let decode = |s: &str, what: &str| -> anyhow::Result<Value> {
        let bytes = URL_SAFE_NO_PAD
            .decode(s)
            .with_context(|| format!("JWT {what} is not base64url"))?;
        serde_json::from_slice(&bytes).with_context(|| format!("JWT {what} is not JSON"))
    };
    Ok((decode(h, "header")?, decode(p, "payload")?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};

    fn forge() -> TokenForge {
        let keys = RsaKeyPair::generate().expect("openssl");
        TokenForge {
            private_pem: keys.private_pem,
            public_pem: keys.public_pem,
            kid: "test-rs256".into(),
            issuer: "http://localhost:18080".into(),
            audience: "mail-oidc".into(),
        }
    }

    /// Verifies with the forge's public key and the server's rules (iss, aud, exp, nbf).
    fn verify(f: &TokenForge, token: &str) -> Result<Value, jsonwebtoken::errors::Error> {
        let key = DecodingKey::from_rsa_pem(f.public_pem.as_bytes()).expect("public key");
        let mut v = Validation::new(Algorithm::RS256);
        v.set_issuer(&[&f.issuer]);
        v.set_audience(&[&f.audience]);
        v.validate_nbf = true;
        v.leeway = 30;
        jsonwebtoken::decode::<Value>(token, &key, &v).map(|d| d.claims)
    }

    #[test]
    fn minted_token_looks_like_lemonldap_and_verifies() {
        let f = forge();
        let token = f.mint(&f.claims_for("a@localhost", "a"));
        let (h, c) = decode_unverified(&token).expect("decode");
        assert_eq!(h["alg"], "RS256");
        assert_eq!(h["typ"], "at+JWT");
        assert_eq!(h["kid"], "test-rs256");
        assert_eq!(c["aud"], json!(["mail-oidc"]));
        assert_eq!(c["email"], "a@localhost");
        assert_eq!(c["sub"], "a");
        for k in [
            "iss",
            "exp",
            "iat",
            "nbf",
            "jti",
            "sid",
            "client_id",
            "preferred_username",
        ] {
            assert!(c.get(k).is_some(), "claim {k} missing: {c}");
        }
        let claims = verify(&f, &token).expect("valid");
        assert_eq!(claims["email"], "a@localhost");
    }

    #[test]
    fn each_hostile_token_is_wrong_in_exactly_its_way() {
        let f = forge();
        let now = now();
        for kind in Hostile::ALL {
            let token = f.hostile(kind, "a@localhost", "a");
            if kind == Hostile::Garbage {
                assert!(decode_unverified(&token).is_err(), "{token}");
                assert!(!token.contains('.'));
                assert_eq!(kind.expected_reason(), "malformed");
                continue;
            }
            let (h, c) = decode_unverified(&token).expect("decodes");
            let verified = verify(&f, &token);
            match kind {
                Hostile::BadSignature => {
                    assert_eq!(h["kid"], "test-rs256");
                    assert_eq!(h["alg"], "RS256");
                    assert_eq!(c["iss"], f.issuer);
                    assert!(verified.is_err());
                }
                Hostile::Expired => {
                    assert!(c["exp"].as_i64().unwrap_or(i64::MAX) < now - 3000);
                    assert!(verified.is_err());
                }
                Hostile::NotYetValid => {
                    assert!(c["nbf"].as_i64().unwrap_or(0) > now + 3000);
                    assert!(c["exp"].as_i64().unwrap_or(0) > c["nbf"].as_i64().unwrap_or(0));
                    assert!(verified.is_err());
                }
                Hostile::WrongIssuer => {
                    assert_ne!(c["iss"], f.issuer);
                    assert!(verified.is_err());
                }
                Hostile::WrongAudience => {
                    assert_eq!(c["aud"], json!(["someone-else"]));
                    assert!(verified.is_err());
                }
                Hostile::AlgNone => {
                    assert_eq!(h["alg"], "none");
                    assert!(token.ends_with('.'));
                }
                Hostile::UnknownKid => {
                    assert_ne!(h["kid"], "test-rs256");
                    // Otherwise valid: only the kid is wrong.
                    assert!(verified.is_ok(), "{verified:?}");
                }
                Hostile::HmacWithPublicKey => {
                    assert_eq!(h["alg"], "HS256");
                    let key = DecodingKey::from_secret(f.public_pem.as_bytes());
                    let mut v = Validation::new(Algorithm::HS256);
                    v.set_audience(&[&f.audience]);
                    assert!(jsonwebtoken::decode::<Value>(&token, &key, &v).is_ok());
                }
                Hostile::Garbage => unreachable!(),
            }
            if !matches!(kind, Hostile::Expired | Hostile::NotYetValid) {
                assert!(
                    c["exp"].as_i64().unwrap_or(0) > now,
                    "{kind:?}: not expired"
                );
            }
        }
    }

    #[test]
    fn reasons_match_server_codes() {
        let reasons: Vec<&str> = Hostile::ALL.iter().map(|h| h.expected_reason()).collect();
        assert_eq!(
            reasons,
            [
                "bad_signature",
                "expired",
                "not_yet_valid",
                "wrong_issuer",
                "wrong_audience",
                "alg_not_allowed",
                "unknown_kid",
                "alg_not_allowed",
                "malformed"
            ]
        );
    }
}
