//! IdP client (placeholder until implemented).

use serde::{Deserialize, Serialize};

/// Where the IdP is and which client we are.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdpSettings {
    /// Issuer URL; discovery is `<issuer>/.well-known/openid-configuration`.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    /// Registered redirect URI for the auth-code flow (never actually served).
    pub redirect_uri: String,
}

/// Tokens from one grant.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenSet {
    pub access_token: String,
    pub id_token: Option<String>,
    pub refresh_token: Option<String>,
    pub expires_in: Option<u64>,
}

pub struct IdpClient {
    pub settings: IdpSettings,
}

impl IdpClient {
    pub fn new(settings: IdpSettings) -> anyhow::Result<Self> {
        Ok(Self { settings })
    }
}
