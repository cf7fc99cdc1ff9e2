//! Token forge (placeholder until implemented).

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
