//! SCRAM-SHA-256 arithmetic: RFC 5802 section 3 with SHA-256 as RFC 7677 asks. Pure functions;
//! the exchange and the stored secrets (RFC 5803) build on them.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// SHA-256 output size: every key, signature and proof is this long.
pub const KEY_LEN: usize = 32;

pub type Key = [u8; KEY_LEN];

type HmacSha256 = Hmac<Sha256>;

fn keyed(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length (longer ones are hashed first), so this cannot fail; the
    // error type only exists because the trait is shared with fixed-size MACs.
    HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length")
}

/// `HMAC(key, str)`.
pub fn hmac(key: &[u8], data: &[u8]) -> Key {
    let mut mac = keyed(key);
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// `H(str)`.
pub fn h(data: &[u8]) -> Key {
    Sha256::digest(data).into()
}

/// `Hi(str, salt, i)`: PBKDF2 with HMAC-SHA-256 and one output block.
pub fn hi(password: &[u8], salt: &[u8], iterations: u32) -> Key {
    // The password-keyed state is computed once and cloned per round (what PBKDF2 crates do).
    let base = keyed(password);
    let mut mac = base.clone();
    mac.update(salt);
    mac.update(&1u32.to_be_bytes());
    let mut u: Key = mac.finalize().into_bytes().into();
    let mut out = u;
    for _ in 1..iterations {
        let mut mac = base.clone();
        mac.update(&u);
        u = mac.finalize().into_bytes().into();
        xor_into(&mut out, &u);
    }
    out
}

/// `ClientKey := HMAC(SaltedPassword, "Client Key")`.
pub fn client_key(salted_password: &Key) -> Key {
    hmac(salted_password, b"Client Key")
}

/// `ServerKey := HMAC(SaltedPassword, "Server Key")`.
pub fn server_key(salted_password: &Key) -> Key {
    hmac(salted_password, b"Server Key")
}

/// `StoredKey := H(ClientKey)`.
pub fn stored_key(client_key: &Key) -> Key {
    h(client_key)
}

/// `(StoredKey, ServerKey)` for a password; `password` is used as given (no SASLprep).
pub fn derive_keys(password: &[u8], salt: &[u8], iterations: u32) -> (Key, Key) {
    let salted = hi(password, salt, iterations);
    (stored_key(&client_key(&salted)), server_key(&salted))
}

/// `ClientSignature := HMAC(StoredKey, AuthMessage)`.
pub fn client_signature(stored_key: &Key, auth_message: &[u8]) -> Key {
    hmac(stored_key, auth_message)
}

/// `ServerSignature := HMAC(ServerKey, AuthMessage)`.
pub fn server_signature(server_key: &Key, auth_message: &[u8]) -> Key {
    hmac(server_key, auth_message)
}

/// The server's check: `ClientKey := ClientProof XOR ClientSignature`, then
/// `H(ClientKey) == StoredKey`, compared in constant time.
pub fn verify_proof(stored_key: &Key, auth_message: &[u8], proof: &[u8]) -> bool {
    let Ok(proof) = <Key>::try_from(proof) else {
        return false;
    };
    let mut client_key = client_signature(stored_key, auth_message);
    xor_into(&mut client_key, &proof);
    ct_eq(&h(&client_key), stored_key)
}

/// Equality whose timing does not depend on where the inputs differ (lengths may leak).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

pub fn xor_into(acc: &mut Key, other: &Key) {
    for (a, b) in acc.iter_mut().zip(other) {
        *a ^= b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;

    #[test]
    fn hi_matches_pbkdf2_hmac_sha256_vectors() {
        // RFC 7914 section 11 (PBKDF2-HMAC-SHA256, first 32 bytes of the derived key).
        let out = hi(b"passwd", b"salt", 1);
        assert_eq!(
            out[..],
            [
                0x55, 0xac, 0x04, 0x6e, 0x56, 0xe3, 0x08, 0x9f, 0xec, 0x16, 0x91, 0xc2, 0x25, 0x44,
                0xb6, 0x05, 0xf9, 0x41, 0x85, 0x21, 0x6d, 0xde, 0x04, 0x65, 0xe6, 0x8b, 0x9d, 0x57,
                0xc2, 0x0d, 0xac, 0xbc
            ]
        );
    }

    #[test]
    fn rfc7677_keys() {
        // RFC 7677 section 3: user "user", password "pencil"; the keys are what a server stores.
        let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let (stored, server) = derive_keys(b"pencil", &salt, 4096);
        let auth_message = "n=user,r=rOprNGfwEbeRWgbNEkqO,\
            r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,\
            c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        assert_eq!(
            STANDARD.encode(server_signature(&server, auth_message.as_bytes())),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
        let proof = STANDARD
            .decode("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
            .unwrap();
        assert!(verify_proof(&stored, auth_message.as_bytes(), &proof));
        let mut bad = proof.clone();
        bad[0] ^= 1;
        assert!(!verify_proof(&stored, auth_message.as_bytes(), &bad));
        assert!(!verify_proof(
            &stored,
            auth_message.as_bytes(),
            &proof[..31]
        ));
        assert!(!verify_proof(&stored, auth_message.as_bytes(), &[]));
    }

    #[test]
    fn ct_eq_is_eq() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }
}
