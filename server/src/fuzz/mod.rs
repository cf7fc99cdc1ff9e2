//! Fuzz targets for every parser a client reaches before authentication. `cargo test` runs them
//! with a small deterministic mutation engine (`engine`, test-only); with the `fuzzing`
//! feature, [`targets`] exposes the same one-input checks to cargo-fuzz (`server/fuzz/`, README
//! "Fuzzing").
//!
//! Each target feeds a sans-IO core (a session state machine, a framer, a mechanism's exchange,
//! a claim check) with corpus inputs and mutations of them, and asserts what must hold besides
//! "no panic": a reply is produced and is a well-formed line of the protocol, buffers stay
//! within their limits, and nothing authenticates without credentials. The backends below know
//! users but accept no password, token or SCRAM proof.

#[cfg(test)]
mod engine;
mod imap;
mod jmap;
mod jwt;
mod managesieve;
mod pop3;
mod sasl;
mod sieve;
mod smtp;
mod split;
pub mod targets;

use std::sync::Arc;

use async_trait::async_trait;
use futures_util::FutureExt as _;

use crate::auth::AuthBackends;
use crate::auth::directory::{Directory, DirectoryError, ScramUser};
use crate::auth::oidc::{TokenError, TokenValidator, ValidatedToken};
use crate::auth::sasl::driver::{self, AuthDone};
use crate::auth::sasl::{AuthWork, Protocol, SaslFailure, SaslRegistry, default_mechanisms};

/// Every address `@example.com` exists; no password is ever right and no SCRAM secret is
/// stored (SCRAM then answers with a stand-in secret, as for an unknown user).
struct NoPasswords;

#[async_trait]
impl Directory for NoPasswords {
    async fn lookup(&self, name: &str) -> Result<Option<String>, DirectoryError> {
        let name = name.to_ascii_lowercase();
        Ok(name.ends_with("@example.com").then_some(name))
    }

    async fn verify_password(
        &self,
        _name: &str,
        _password: &str,
    ) -> Result<Option<String>, DirectoryError> {
        Ok(None)
    }

    async fn scram_sha256(&self, _name: &str) -> Result<Option<ScramUser>, DirectoryError> {
        Ok(None)
    }

    fn has_scram_secrets(&self) -> bool {
        true
    }
}

/// Every token has a bad signature (the validator itself is not what these targets fuzz).
struct NoTokens;

#[async_trait]
impl TokenValidator for NoTokens {
    async fn validate(&self, _token: &str) -> Result<ValidatedToken, TokenError> {
        Err(TokenError::BadSignature)
    }

    fn discovery_url(&self) -> String {
        "https://idp.example.com/.well-known/openid-configuration".into()
    }

    fn required_scope(&self) -> String {
        "openid email".into()
    }
}

/// Backends that refuse every credential: the validator calls every token a bad signature.
pub fn backends() -> AuthBackends {
    AuthBackends {
        directory: Arc::new(NoPasswords),
        validator: Some(Arc::new(NoTokens)),
        admins: Arc::from(vec!["admin@example.com".to_string()]),
        revocation: None,
        throttle: None,
    }
}

/// Every built-in mechanism enabled: the protocol's defaults plus LOGIN and SCRAM-SHA-256.
pub fn registry(protocol: Protocol, backends: &AuthBackends) -> SaslRegistry {
    let mut names = default_mechanisms(protocol);
    for extra in ["LOGIN", "SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"] {
        if !names.iter().any(|n| n == extra) {
            names.push(extra.to_string());
        }
    }
    SaslRegistry::with_builtins(backends)
        .enable(&names)
        .expect("built-in mechanisms are known")
}

/// Runs SASL work as a connection would; the backends never wait, so it is ready at once.
pub fn run_auth(work: AuthWork) -> AuthDone {
    driver::run(work)
        .now_or_never()
        .expect("fuzz backends answer without waiting")
}

/// A password check as a connection would run it: always refused by [`NoPasswords`].
pub fn check_password(user: &[u8], password: &[u8]) -> Result<String, SaslFailure> {
    driver::verify_password(&NoPasswords, user, password)
        .now_or_never()
        .expect("fuzz backends answer without waiting")
}

/// Splits server output into lines, asserting each ends with CRLF and has no other CR or LF.
pub fn crlf_lines(output: &[u8]) -> Vec<&[u8]> {
    let text = || String::from_utf8_lossy(output);
    output
        .split_inclusive(|&b| b == b'\n')
        .map(|line| {
            let content = line
                .strip_suffix(b"\r\n")
                .unwrap_or_else(|| panic!("line without CRLF in output {:?}", text()));
            assert!(!content.contains(&b'\r'), "bare CR in output {:?}", text());
            content
        })
        .collect()
}
