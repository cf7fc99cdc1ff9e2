//! HTTP auth helpers for the HTTP auth and router tests; the directory and validator doubles
//! are the crate's testkit (the validator here is [`TestValidator::named`]).

use std::sync::Arc;

use crate::auth::request_auth::{HttpAuthSettings, HttpAuthenticator};
use crate::config::{HttpAuthSection, HttpStrategy};
pub use crate::testkit::{ISSUER, TestDirectory, TestValidator, token_error};

pub const SECRET: &str = "s3cret-from-the-gateway";
pub const ALICE_BASIC: &str = "Basic YWxpY2U6YWxpY2Vwdw=="; // alice:alicepw

/// The token session a gateway forwards beside `x-user` (a token without `sid` and `iat`).
pub const SESSION: [(&str, &str); 4] = [
    ("x-user-sub", "sub-of-the-token"),
    ("x-user-sid", ""),
    ("x-user-iat", ""),
    ("x-user-exp", "4102444800"),
];

/// `pairs` followed by [`SESSION`].
pub fn with_session<'a>(pairs: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    pairs.iter().copied().chain(SESSION).collect()
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
    let directory = TestDirectory::new();
    let settings = match HttpAuthSettings::from_section(section) {
        Ok(s) => s,
        Err(e) => panic!("test settings refused: {e}"),
    };
    let authenticator = HttpAuthenticator::with_settings(
        settings,
        directory.clone(),
        Some(Arc::new(TestValidator::named())),
    );
    (authenticator, directory)
}
