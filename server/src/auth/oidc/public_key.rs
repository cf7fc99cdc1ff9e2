//! JWKS public keys and signature verification on ring, the crypto library rustls already uses
//! here: RSA verification on jsonwebtoken's pure-Rust backend took a quarter of the server's
//! CPU under a login load. ring also refuses RSA keys under 2048 bits.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};

/// Key material as decoded from a JWK; checked by ring when a signature is verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// Modulus and exponent, big-endian, without leading zero bytes.
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// An uncompressed SEC 1 point (`04 || x || y`), P-256 or P-384.
    Ec(Vec<u8>),
    Ed25519(Vec<u8>),
}

fn decode(name: &str, value: &str) -> Result<Vec<u8>, String> {
    URL_SAFE_NO_PAD
        .decode(value)
        .map_err(|_| format!("{name} is not base64url"))
}

/// RFC 7518 forbids leading zeros in `n` and `e`, but some IdPs send one; ring wants none.
fn unsigned(mut bytes: Vec<u8>) -> Vec<u8> {
    let zeros = bytes.iter().take_while(|b| **b == 0).count();
    bytes.drain(..zeros);
    bytes
}

impl PublicKey {
    pub fn rsa(n: &str, e: &str) -> Result<Self, String> {
        Ok(PublicKey::Rsa {
            n: unsigned(decode("n", n)?),
            e: unsigned(decode("e", e)?),
        })
    }

    pub fn ec(x: &str, y: &str) -> Result<Self, String> {
        let (x, y) = (decode("x", x)?, decode("y", y)?);
        let mut point = Vec::with_capacity(1 + x.len() + y.len());
        point.push(4);
        point.extend_from_slice(&x);
        point.extend_from_slice(&y);
        Ok(PublicKey::Ec(point))
    }

    pub fn ed25519(x: &str) -> Result<Self, String> {
        Ok(PublicKey::Ed25519(decode("x", x)?))
    }

    /// Whether `signature` over `message` verifies with this key under `alg`. A key of the
    /// wrong kind for `alg`, or one ring refuses (too short, not on the curve), never verifies.
    pub fn verify(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> bool {
        use Algorithm::*;
        match self {
            PublicKey::Rsa { n, e } => {
                let params: &signature::RsaParameters = match alg {
                    RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
                    RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
                    RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
                    PS256 => &signature::RSA_PSS_2048_8192_SHA256,
                    PS384 => &signature::RSA_PSS_2048_8192_SHA384,
                    PS512 => &signature::RSA_PSS_2048_8192_SHA512,
                    _ => return false,
                };
                RsaPublicKeyComponents { n, e }
                    .verify(params, message, signature)
                    .is_ok()
            }
            PublicKey::Ec(point) => {
                let params: &'static dyn signature::VerificationAlgorithm = match alg {
                    ES256 => &signature::ECDSA_P256_SHA256_FIXED,
                    ES384 => &signature::ECDSA_P384_SHA384_FIXED,
                    _ => return false,
                };
                UnparsedPublicKey::new(params, point)
                    .verify(message, signature)
                    .is_ok()
            }
            PublicKey::Ed25519(x) => {
                alg == EdDSA
                    && UnparsedPublicKey::new(&signature::ED25519, x)
                        .verify(message, signature)
                        .is_ok()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::{Value, json};

    use super::*;
    use crate::testkit::oidc::{TestKey, keys};

    fn from_jwk(jwk: &Value) -> PublicKey {
        let s = |name: &str| jwk[name].as_str().expect("member").to_string();
        match jwk["kty"].as_str() {
            Some("RSA") => PublicKey::rsa(&s("n"), &s("e")),
            Some("EC") => PublicKey::ec(&s("x"), &s("y")),
            _ => PublicKey::ed25519(&s("x")),
        }
        .expect("key decodes")
    }

    /// `(signing input, signature)` of a JWS made by jsonwebtoken with `alg`.
    fn signed(encoding: &EncodingKey, alg: Algorithm) -> (Vec<u8>, Vec<u8>) {
        let token =
            jsonwebtoken::encode(&Header::new(alg), &json!({"sub": "x"}), encoding).expect("sign");
        let (input, sig) = token.rsplit_once('.').expect("three parts");
        (
            input.as_bytes().to_vec(),
            URL_SAFE_NO_PAD.decode(sig).expect("base64url"),
        )
    }

    fn check(key: &TestKey, algs: &[Algorithm]) {
        let public = from_jwk(&key.jwk);
        for &alg in algs {
            let (input, sig) = signed(&key.encoding, alg);
            assert!(public.verify(alg, &input, &sig), "{alg:?} verifies");
            let mut tampered = input.clone();
            tampered[0] ^= 1;
            assert!(!public.verify(alg, &tampered, &sig), "{alg:?} tampered");
            let mut bad_sig = sig.clone();
            bad_sig[0] ^= 1;
            assert!(
                !public.verify(alg, &input, &bad_sig),
                "{alg:?} bad signature"
            );
        }
    }

    #[test]
    fn every_algorithm_verifies_what_jsonwebtoken_signs() {
        use Algorithm::*;
        check(&keys().idp, &[RS256, RS384, RS512, PS256, PS384, PS512]);
        check(&keys().ec, &[ES256]);
        check(&keys().ed, &[EdDSA]);
    }

    #[test]
    fn a_key_never_verifies_another_family_or_another_key() {
        let (input, sig) = signed(&keys().idp.encoding, Algorithm::RS256);
        let rsa = from_jwk(&keys().idp.jwk);
        // The same bytes presented as another algorithm, or to another key.
        assert!(!rsa.verify(Algorithm::PS256, &input, &sig));
        assert!(!rsa.verify(Algorithm::ES256, &input, &sig));
        assert!(!rsa.verify(Algorithm::HS256, &input, &sig));
        assert!(!from_jwk(&keys().foreign.jwk).verify(Algorithm::RS256, &input, &sig));
        assert!(!from_jwk(&keys().ec.jwk).verify(Algorithm::RS256, &input, &sig));
        assert!(!from_jwk(&keys().ed.jwk).verify(Algorithm::RS256, &input, &sig));
    }

    #[test]
    fn leading_zeros_are_stripped_and_bad_base64_refused() {
        assert_eq!(
            PublicKey::rsa("AAEA", "AQAB"),
            Ok(PublicKey::Rsa {
                n: vec![1, 0],
                e: vec![1, 0, 1]
            })
        );
        assert!(PublicKey::rsa("!!", "AQAB").is_err());
        assert!(PublicKey::ec("AQAB", "%").is_err());
        assert!(PublicKey::ed25519("a b").is_err());
        // Garbage that decodes never verifies (ring checks the material, no panic).
        let junk = PublicKey::rsa("AQAB", "AQAB").expect("decodes");
        assert!(!junk.verify(Algorithm::RS256, b"m", b"s"));
        let junk = PublicKey::ec("AQAB", "AQAB").expect("decodes");
        assert!(!junk.verify(Algorithm::ES256, b"m", b"s"));
    }
}
