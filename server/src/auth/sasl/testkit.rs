//! In-memory directory and token validator for mechanism tests.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::{Protocol, SaslExchange, SaslMechanism, SaslStep, SessionContext};
use crate::auth::AuthBackends;
use crate::auth::directory::{Directory, DirectoryError};
use crate::auth::oidc::{TokenError, TokenValidator, ValidatedToken};

pub const SCOPE: &str = "openid email";
pub const DISCOVERY: &str = "https://idp.example.com/.well-known/openid-configuration";

/// alice@example.com (uid alice, password alicepw) and bob@example.com (uid bob, bobpw).
pub struct TestDirectory {
    down: AtomicBool,
    pub lookups: AtomicUsize,
}

const USERS: &[(&str, &str, &str)] = &[
    ("alice@example.com", "alice", "alicepw"),
    ("bob@example.com", "bob", "bobpw"),
];

impl TestDirectory {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            down: AtomicBool::new(false),
            lookups: AtomicUsize::new(0),
        })
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    fn find(&self, name: &str) -> Result<Option<(&'static str, &'static str)>, DirectoryError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(DirectoryError::Unavailable("test directory is down".into()));
        }
        Ok(USERS
            .iter()
            .find(|(mail, uid, _)| {
                mail.eq_ignore_ascii_case(name) || uid.eq_ignore_ascii_case(name)
            })
            .map(|(mail, _, pw)| (*mail, *pw)))
    }
}

#[async_trait]
impl Directory for TestDirectory {
    async fn lookup(&self, name: &str) -> Result<Option<String>, DirectoryError> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
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

/// Answers each token from a table; unknown tokens are `BadSignature`. Counts calls.
#[derive(Default)]
pub struct TestValidator {
    results: Mutex<HashMap<String, Result<ValidatedToken, TokenError>>>,
    pub calls: AtomicUsize,
}

impl TestValidator {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn set(&self, token: &str, result: Result<ValidatedToken, TokenError>) {
        if let Ok(mut results) = self.results.lock() {
            results.insert(token.to_string(), result);
        }
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl TokenValidator for TestValidator {
    async fn validate(&self, token: &str) -> Result<ValidatedToken, TokenError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let results = self
            .results
            .lock()
            .map_err(|_| TokenError::Unavailable("poisoned".into()))?;
        results
            .get(token)
            .cloned()
            .unwrap_or(Err(TokenError::BadSignature))
    }

    fn discovery_url(&self) -> String {
        DISCOVERY.into()
    }

    fn required_scope(&self) -> String {
        SCOPE.into()
    }
}

pub fn token_for(username: &str) -> ValidatedToken {
    ValidatedToken {
        username: username.into(),
        issuer: "https://idp.example.com".into(),
        subject: format!("sub-{username}"),
        sid: Some("sid-1".into()),
        expires_at: 4_000_000_000,
    }
}

pub fn backends(
    directory: Arc<TestDirectory>,
    validator: Option<Arc<TestValidator>>,
    allow_delegation: bool,
) -> AuthBackends {
    AuthBackends {
        directory,
        validator: validator.map(|v| v as Arc<dyn TokenValidator>),
        allow_delegation,
    }
}

pub fn ctx(tls: bool) -> SessionContext {
    SessionContext {
        protocol: Protocol::Imap,
        tls,
        allow_plaintext_without_tls: false,
        peer: None,
    }
}

/// Starts an exchange and feeds it the initial response (as the first `step(None)`), then each
/// later message; returns the last step.
pub async fn run(mech: &dyn SaslMechanism, initial: Option<&[u8]>, later: &[&[u8]]) -> SaslStep {
    let mut ex: Box<dyn SaslExchange> = mech.start(initial, &ctx(true));
    let mut step = ex.step(None).await;
    for message in later {
        step = ex.step(Some(message)).await;
    }
    step
}

/// Inputs that must never make an exchange panic.
pub fn odd_inputs() -> Vec<Vec<u8>> {
    let mut inputs: Vec<Vec<u8>> = vec![
        vec![],
        vec![0],
        vec![0, 0],
        vec![0, 0, 0],
        vec![1],
        vec![1, 1],
        vec![0xff, 0xfe],
        b"=".to_vec(),
        b",".to_vec(),
        b",,".to_vec(),
        b"n,".to_vec(),
        b"n,,".to_vec(),
        b"n,a=,\x01\x01".to_vec(),
        b"n,a==,\x01auth=Bearer x\x01\x01".to_vec(),
        b"n,a==2,\x01auth=Bearer x\x01\x01".to_vec(),
        b"n,,\x01auth=\x01\x01".to_vec(),
        b"n,,\x01auth=Bearer\x01\x01".to_vec(),
        b"n,,\x01auth=Bearer \xc3\x01\x01".to_vec(),
        b"user=\x01auth=Bearer \x01\x01".to_vec(),
        b"user=\xe2\x82\x01auth=Bearer t\x01\x01".to_vec(),
        "\0\u{e9}\0\u{1F600}".as_bytes().to_vec(),
        b"*".to_vec(),
    ];
    inputs.push(vec![b'A'; 20_000]);
    inputs.push((0..=255u8).collect());
    inputs
}
