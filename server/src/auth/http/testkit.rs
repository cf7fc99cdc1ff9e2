//! In-test directory and token validator for the HTTP auth and router tests.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use async_trait::async_trait;

use super::{HttpAuthSettings, HttpAuthenticator};
use crate::auth::directory::{Directory, DirectoryError};
use crate::auth::oidc::{TokenError, TokenValidator, ValidatedToken};
use crate::config::{HttpAuthSection, HttpStrategy};

pub const ISSUER: &str = "https://idp.example.com/realms/mail";
pub const SECRET: &str = "s3cret-from-the-gateway";
pub const ALICE_BASIC: &str = "Basic YWxpY2U6YWxpY2Vwdw=="; // alice:alicepw

/// alice@example.com (uid alice, password alicepw) and bob@example.com (uid bob, bobpw).
#[derive(Default)]
pub struct TestDirectory {
    pub down: AtomicBool,
    pub calls: AtomicUsize,
}

const USERS: &[(&str, &str, &str)] = &[
    ("alice@example.com", "alice", "alicepw"),
    ("bob@example.com", "bob", "bobpw"),
];

impl TestDirectory {
    fn find(&self, name: &str) -> Result<Option<(&'static str, &'static str)>, DirectoryError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return Err(DirectoryError::Unavailable("test directory is down".into()));
        }
        Ok(USERS
            .iter()
            .find(|(mail, uid, _)| *mail == name || *uid == name)
            .map(|(mail, _, pw)| (*mail, *pw)))
    }
}

#[async_trait]
impl Directory for TestDirectory {
    async fn lookup(&self, name: &str) -> Result<Option<String>, DirectoryError> {
        Ok(self.find(name)?.map(|(mail, _)| mail.to_string()))
    }

    async fn verify_password(
        &self,
        name: &str,
        password: &str,
    ) -> Result<Option<String>, DirectoryError> {
        Ok(self
            .find(name)?
            .filter(|(_, pw)| *pw == password)
            .map(|(mail, _)| mail.to_string()))
    }
}

/// Tokens are names: `good-alice` is valid for alice; `expired`, `bad-signature`,
/// `wrong-audience`, `wrong-issuer`, `unknown-user` and `idp-down` fail as named; anything
/// else is malformed.
pub struct TestValidator {
    pub issuer: Option<String>,
}

impl Default for TestValidator {
    fn default() -> Self {
        Self {
            issuer: Some(ISSUER.into()),
        }
    }
}

pub fn token_error(token: &str) -> TokenError {
    match token {
        "expired" => TokenError::Expired,
        "bad-signature" => TokenError::BadSignature,
        "wrong-audience" => TokenError::WrongAudience,
        "wrong-issuer" => TokenError::WrongIssuer("https://evil.example".into()),
        "unknown-user" => TokenError::UnknownUser("carol@example.com".into()),
        "idp-down" => TokenError::Unavailable("connection refused".into()),
        _ => TokenError::Malformed("not three dot-separated parts".into()),
    }
}

#[async_trait]
impl TokenValidator for TestValidator {
    async fn validate(&self, token: &str) -> Result<ValidatedToken, TokenError> {
        if token == "good-alice" {
            return Ok(ValidatedToken {
                username: "alice@example.com".into(),
                issuer: ISSUER.into(),
                subject: "sub-alice".into(),
                sid: Some("sid-1".into()),
                expires_at: 4_000_000_000,
            });
        }
        Err(token_error(token))
    }

    fn discovery_url(&self) -> String {
        format!("{ISSUER}/.well-known/openid-configuration")
    }

    fn required_scope(&self) -> String {
        "openid email".into()
    }

    fn issuer(&self) -> Option<String> {
        self.issuer.clone()
    }
}

pub fn section(strategies: &[HttpStrategy]) -> HttpAuthSection {
    HttpAuthSection {
        strategies: strategies.to_vec(),
        ..HttpAuthSection::default()
    }
}

/// x-user with the secret and/or the source network `10.0.0.0/8`.
pub fn gateway_section(strategies: &[HttpStrategy], secret: bool, cidr: bool) -> HttpAuthSection {
    HttpAuthSection {
        x_user_secret: secret.then(|| SECRET.to_string()),
        x_user_trusted_sources: if cidr {
            vec!["10.0.0.0/8".into()]
        } else {
            Vec::new()
        },
        ..section(strategies)
    }
}

pub fn authenticator(section: &HttpAuthSection) -> (HttpAuthenticator, Arc<TestDirectory>) {
    let directory = Arc::new(TestDirectory::default());
    let settings = match HttpAuthSettings::from_section(section) {
        Ok(s) => s,
        Err(e) => panic!("test settings refused: {e}"),
    };
    let authenticator = HttpAuthenticator::with_settings(
        settings,
        directory.clone(),
        Some(Arc::new(TestValidator::default())),
    );
    (authenticator, directory)
}
