//! The issuer's signing keys: parsing a JWKS, choosing the key for a token, and the cache that
//! fetches them (once, on unknown `kid`, rate-limited, and when old).

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use super::TokenError;
use super::idp_client::IdpClient;
use super::jws::JwsHeader;
use super::public_key::PublicKey;

/// What a key can verify: the algorithm family follows `kty` and, for EC, the curve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Rsa,
    EcP256,
    EcP384,
    Ed25519,
}

impl KeyKind {
    pub fn verifies(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        match self {
            KeyKind::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            KeyKind::EcP256 => alg == ES256,
            KeyKind::EcP384 => alg == ES384,
            KeyKind::Ed25519 => alg == EdDSA,
        }
    }
}

/// One usable public key from the JWKS.
pub struct JwkKey {
    pub kid: Option<String>,
    pub kind: KeyKind,
    /// The JWK's own `alg` member, if it has one.
    pub alg: Option<String>,
    pub key: PublicKey,
}

/// The signature keys of a JWKS. Keys we cannot use (`use: enc`, `oct`, P-521, ...) are left out
/// so that one odd key does not make the whole set unusable.
#[derive(Default)]
pub struct KeySet {
    keys: Vec<Arc<JwkKey>>,
}

fn member<'a>(jwk: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    jwk.get(name).and_then(Value::as_str)
}

fn parse_key(jwk: &Map<String, Value>) -> Result<JwkKey, String> {
    if let Some(usage) = member(jwk, "use")
        && usage != "sig"
    {
        return Err(format!("use {usage:?}"));
    }
    let required = |name: &str| member(jwk, name).ok_or_else(|| format!("no {name}"));
    let (kind, key) = match member(jwk, "kty") {
        Some("RSA") => (KeyKind::Rsa, PublicKey::rsa(required("n")?, required("e")?)),
        Some("EC") => {
            let kind = match member(jwk, "crv") {
                Some("P-256") => KeyKind::EcP256,
                Some("P-384") => KeyKind::EcP384,
                other => return Err(format!("EC curve {other:?}")),
            };
            let key = PublicKey::ec(required("x")?, required("y")?);
            (kind, key)
        }
        Some("OKP") => match member(jwk, "crv") {
            Some("Ed25519") => (KeyKind::Ed25519, PublicKey::ed25519(required("x")?)),
            other => return Err(format!("OKP curve {other:?}")),
        },
        // `oct` (shared secrets) never belongs in a public key set.
        other => return Err(format!("kty {other:?}")),
    };
    Ok(JwkKey {
        kid: member(jwk, "kid").map(str::to_string),
        kind,
        alg: member(jwk, "alg").map(str::to_string),
        key: key.map_err(|e| format!("bad key material: {e}"))?,
    })
}

impl KeySet {
    /// Parses `{"keys": [...]}`. A document without a `keys` array is the IdP's fault.
    pub fn from_json(doc: &Value) -> Result<Self, TokenError> {
        let Some(entries) = doc.get("keys").and_then(Value::as_array) else {
            return Err(TokenError::Unavailable("JWKS has no \"keys\" array".into()));
        };
        let mut keys = Vec::new();
        for entry in entries {
            let Some(jwk) = entry.as_object() else {
                tracing::debug!("JWKS entry is not an object; skipped");
                continue;
            };
            match parse_key(jwk) {
                Ok(key) => keys.push(Arc::new(key)),
                Err(reason) => {
                    tracing::debug!(kid = ?member(jwk, "kid"), %reason, "JWKS key skipped")
                }
            }
        }
        Ok(Self { keys })
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// The key for a token's header: by `kid`, or the only key of the algorithm's family when
    /// the token names none. The key's type and its own `alg` must fit the token's algorithm.
    pub fn select(&self, kid: Option<&str>, alg: Algorithm) -> Result<Arc<JwkKey>, TokenError> {
        let not_allowed = || TokenError::AlgorithmNotAllowed(format!("{alg:?}"));
        let key = match kid {
            Some(kid) => {
                let mut same_kid = self
                    .keys
                    .iter()
                    .filter(|k| k.kid.as_deref() == Some(kid))
                    .peekable();
                if same_kid.peek().is_none() {
                    return Err(TokenError::UnknownKey(kid.to_string()));
                }
                // Several keys may share a kid across key types; take the one that fits.
                same_kid
                    .find(|k| k.kind.verifies(alg))
                    .ok_or_else(not_allowed)?
            }
            None => {
                let mut family = self.keys.iter().filter(|k| k.kind.verifies(alg));
                match (family.next(), family.next()) {
                    (Some(only), None) => only,
                    _ => return Err(TokenError::UnknownKey(String::new())),
                }
            }
        };
        if let Some(jwk_alg) = &key.alg
            && *jwk_alg != format!("{alg:?}")
        {
            return Err(not_allowed());
        }
        Ok(key.clone())
    }
}

/// The last good key set and when it arrived.
#[derive(Clone)]
struct Snapshot {
    keys: Arc<KeySet>,
    fetched_at: Instant,
}

/// Bookkeeping of fetches; held (tokio lock) across a fetch so only one runs at a time.
#[derive(Default)]
struct FetchState {
    last_unknown_kid_refetch: Option<Instant>,
    last_failure: Option<(Instant, TokenError)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    /// Nothing cached yet.
    Initial,
    /// The cached set is older than the maximum age.
    Stale,
    /// A token names a kid we do not have (key rotation).
    UnknownKid,
}

pub struct JwksCache {
    http: IdpClient,
    refetch_interval: Duration,
    max_age: Duration,
    current: RwLock<Option<Snapshot>>,
    fetch: tokio::sync::Mutex<FetchState>,
}

impl JwksCache {
    pub fn new(http: IdpClient, refetch_interval: Duration, max_age: Duration) -> Self {
        Self {
            http,
            refetch_interval,
            max_age,
            current: RwLock::new(None),
            fetch: tokio::sync::Mutex::new(FetchState::default()),
        }
    }

    fn snapshot(&self) -> Option<Snapshot> {
        // A poisoned lock still holds a consistent Option (it is only ever replaced whole).
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The key that must verify a token with this header, fetching the JWKS when needed.
    pub async fn key_for(
        &self,
        jwks_url: &str,
        header: &JwsHeader,
        alg: Algorithm,
    ) -> Result<Arc<JwkKey>, TokenError> {
        // Taken before looking at the cache: any fetch that ends after this is newer than
        // what we saw, so waiters reuse it instead of fetching again.
        let asked = Instant::now();
        let keys = match self.snapshot() {
            None => self
                .refresh(jwks_url, Why::Initial, asked)
                .await?
                .ok_or_else(|| TokenError::Unavailable("JWKS not fetched".into()))?,
            Some(cached) if cached.fetched_at.elapsed() >= self.max_age => {
                match self.refresh(jwks_url, Why::Stale, asked).await {
                    Ok(Some(fresh)) => fresh,
                    Ok(None) => cached.keys,
                    Err(e) => {
                        // Logins keep working while the IdP is down.
                        tracing::warn!(error = %e, "JWKS refresh failed; using cached keys");
                        cached.keys
                    }
                }
            }
            Some(cached) => cached.keys,
        };
        let kid = header.kid.as_deref();
        match keys.select(kid, alg) {
            Err(TokenError::UnknownKey(unknown)) if kid.is_some() => {
                match self.refresh(jwks_url, Why::UnknownKid, asked).await? {
                    Some(fresh) => fresh.select(kid, alg),
                    None => Err(TokenError::UnknownKey(unknown)),
                }
            }
            other => other,
        }
    }

    /// Fetches the JWKS unless someone else just did (then their result is shared) or the
    /// reason is rate-limited (`Ok(None)`).
    async fn refresh(
        &self,
        url: &str,
        why: Why,
        asked: Instant,
    ) -> Result<Option<Arc<KeySet>>, TokenError> {
        let mut state = self.fetch.lock().await;
        if let Some(current) = self.snapshot()
            && current.fetched_at >= asked
        {
            return Ok(Some(current.keys));
        }
        if let Some((at, error)) = &state.last_failure
            && *at >= asked
        {
            return Err(error.clone());
        }
        match why {
            Why::Initial => {}
            Why::Stale => {
                // While the IdP is down, do not make every login wait for it.
                if let Some((at, _)) = &state.last_failure
                    && at.elapsed() < self.refetch_interval
                {
                    return Ok(None);
                }
            }
            Why::UnknownKid => {
                if let Some(at) = state.last_unknown_kid_refetch
                    && at.elapsed() < self.refetch_interval
                {
                    tracing::debug!("unknown kid: JWKS refetch rate-limited");
                    return Ok(None);
                }
                state.last_unknown_kid_refetch = Some(Instant::now());
            }
        }
        tracing::debug!(?why, %url, "fetching JWKS");
        let fetched = match self.http.get_json("JWKS", url).await {
            Ok(doc) => KeySet::from_json(&doc),
            Err(e) => Err(e),
        };
        match fetched {
            Ok(keys) => {
                tracing::info!(%url, keys = keys.len(), "JWKS fetched");
                let keys = Arc::new(keys);
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(Snapshot {
                    keys: keys.clone(),
                    fetched_at: Instant::now(),
                });
                state.last_failure = None;
                Ok(Some(keys))
            }
            Err(e) => {
                tracing::warn!(%url, error = %e, "JWKS fetch failed");
                state.last_failure = Some((Instant::now(), e.clone()));
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // A syntactically valid RSA modulus/exponent is enough for selection tests.
    fn rsa(kid: Option<&str>, alg: Option<&str>) -> Value {
        let mut k = json!({"kty": "RSA", "n": "AQAB", "e": "AQAB"});
        if let Some(kid) = kid {
            k["kid"] = kid.into();
        }
        if let Some(alg) = alg {
            k["alg"] = alg.into();
        }
        k
    }

    fn ec(kid: &str, crv: &str) -> Value {
        json!({"kty": "EC", "crv": crv, "kid": kid, "x": "AQAB", "y": "AQAB"})
    }

    fn set(keys: Vec<Value>) -> KeySet {
        KeySet::from_json(&json!({ "keys": keys })).expect("valid JWKS")
    }

    #[test]
    fn unusable_keys_are_skipped() {
        let s = set(vec![
            json!({"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"}),
            json!({"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB", "kid": "enc"}),
            json!({"kty": "EC", "crv": "P-521", "x": "AQAB", "y": "AQAB", "kid": "p521"}),
            json!({"kty": "RSA", "kid": "no-n", "e": "AQAB"}),
            json!("not an object"),
            rsa(Some("good"), None),
        ]);
        assert_eq!(s.len(), 1);
        assert!(KeySet::from_json(&json!({"nokeys": []})).is_err());
    }

    #[test]
    fn key_type_must_fit_the_algorithm() {
        let s = set(vec![
            rsa(Some("r"), None),
            ec("e256", "P-256"),
            ec("e384", "P-384"),
        ]);
        assert!(s.select(Some("r"), Algorithm::PS512).is_ok());
        assert!(s.select(Some("e256"), Algorithm::ES256).is_ok());
        assert!(s.select(Some("e384"), Algorithm::ES384).is_ok());
        for (kid, alg) in [
            ("r", Algorithm::ES256),
            ("e256", Algorithm::ES384),
            ("e384", Algorithm::RS256),
        ] {
            assert!(
                matches!(
                    s.select(Some(kid), alg),
                    Err(TokenError::AlgorithmNotAllowed(_))
                ),
                "{kid} {alg:?}"
            );
        }
        assert_eq!(
            s.select(Some("zz"), Algorithm::RS256).err(),
            Some(TokenError::UnknownKey("zz".into()))
        );
    }

    #[test]
    fn jwk_alg_must_equal_header_alg() {
        let s = set(vec![rsa(Some("r"), Some("RS256"))]);
        assert!(s.select(Some("r"), Algorithm::RS256).is_ok());
        assert!(matches!(
            s.select(Some("r"), Algorithm::PS256),
            Err(TokenError::AlgorithmNotAllowed(_))
        ));
    }

    #[test]
    fn no_kid_uses_the_only_key_of_the_family() {
        let one = set(vec![rsa(Some("r"), None), ec("e", "P-256")]);
        assert!(one.select(None, Algorithm::RS256).is_ok());
        assert!(one.select(None, Algorithm::ES256).is_ok());
        assert!(matches!(
            one.select(None, Algorithm::EdDSA),
            Err(TokenError::UnknownKey(_))
        ));
        let two = set(vec![rsa(Some("a"), None), rsa(Some("b"), None)]);
        assert!(matches!(
            two.select(None, Algorithm::RS256),
            Err(TokenError::UnknownKey(_))
        ));
    }
}
