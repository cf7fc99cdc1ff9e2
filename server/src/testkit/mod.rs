//! The one test kit: doubles shared by the module tests (a directory with fixed users, a token
//! validator answering from a table), and per-area helpers in the submodules (a fake IdP with
//! real keys, a real `redis-server`, SASL runs, HTTP request authentication, revocation, a TLS
//! certificate).

pub mod logs;
pub mod oidc;
pub mod redis_server;
pub mod request_auth;
pub mod revocation;
pub mod sasl;
pub mod tls;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::auth::AuthBackends;
use crate::auth::directory::{Directory, DirectoryError};
use crate::auth::oidc::{TokenError, TokenValidator, ValidatedToken};

/// The issuer the validator reports; a path, so tests see it survive discovery-URL handling.
pub const ISSUER: &str = "https://idp.example.com/realms/mail";
pub const DISCOVERY: &str = "https://idp.example.com/realms/mail/.well-known/openid-configuration";
pub const SCOPE: &str = "openid email";

/// RFC 7677 section 3's user ("user", password "pencil") as an RFC 5803 stored secret.
pub const RFC7677_SECRET: &str = "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=";

/// A directory user: (mail, uid, password).
pub type User = (&'static str, &'static str, &'static str);

/// Everyone's users: alice@example.com (uid alice, password alicepw) and bob@example.com
/// (uid bob, bobpw).
pub const USERS: &[User] = &[
    ("alice@example.com", "alice", "alicepw"),
    ("bob@example.com", "bob", "bobpw"),
];

/// Directory over [`USERS`] (plus any extra ones); names match the mail or the uid, ignoring
/// ASCII case, like the real directories. Can be switched down; counts every call.
pub struct TestDirectory {
    users: Vec<User>,
    /// Names whose lookups fail as if the directory were down (one bad recipient among good ones).
    failing: Vec<&'static str>,
    down: AtomicBool,
    calls: AtomicUsize,
}

impl Default for TestDirectory {
    fn default() -> Self {
        Self {
            users: USERS.to_vec(),
            failing: Vec::new(),
            down: AtomicBool::new(false),
            calls: AtomicUsize::new(0),
        }
    }
}

impl TestDirectory {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn with_user(mut self, user: User) -> Self {
        self.users.push(user);
        self
    }

    pub fn failing_for(mut self, name: &'static str) -> Self {
        self.failing.push(name);
        self
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Lookups and password checks so far.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn find(&self, name: &str) -> Result<Option<(&'static str, &'static str)>, DirectoryError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst)
            || self.failing.iter().any(|f| f.eq_ignore_ascii_case(name))
        {
            return Err(DirectoryError::Unavailable("test directory is down".into()));
        }
        Ok(self
            .users
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

/// Answers each token from a table, any other token through `unknown`; counts calls.
pub struct TestValidator {
    results: Mutex<HashMap<String, Result<ValidatedToken, TokenError>>>,
    unknown: fn(&str) -> TokenError,
    issuer: Option<String>,
    calls: AtomicUsize,
}

/// An empty table: every token is `BadSignature`.
impl Default for TestValidator {
    fn default() -> Self {
        Self {
            results: Mutex::default(),
            unknown: |_| TokenError::BadSignature,
            issuer: Some(ISSUER.into()),
            calls: AtomicUsize::new(0),
        }
    }
}

impl TestValidator {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Tokens are names: `good-alice` is valid for alice; the others fail as [`token_error`]
    /// names them.
    pub fn named() -> Self {
        let v = Self {
            unknown: token_error,
            ..Self::default()
        };
        v.set(
            "good-alice",
            Ok(ValidatedToken {
                issuer: ISSUER.into(),
                subject: "sub-alice".into(),
                ..token_for("alice@example.com")
            }),
        );
        v
    }

    /// `None`: an issuer not known yet (the HTTP layer falls back to the discovery URL).
    pub fn with_issuer(mut self, issuer: Option<&str>) -> Self {
        self.issuer = issuer.map(str::to_string);
        self
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
            .unwrap_or_else(|| Err((self.unknown)(token)))
    }

    fn discovery_url(&self) -> String {
        DISCOVERY.into()
    }

    fn required_scope(&self) -> String {
        SCOPE.into()
    }

    fn issuer(&self) -> Option<String> {
        self.issuer.clone()
    }
}

/// `expired`, `bad-signature`, `wrong-audience`, `wrong-issuer`, `unknown-user` and `idp-down`
/// fail as named; anything else is malformed.
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

pub fn token_for(username: &str) -> ValidatedToken {
    ValidatedToken {
        username: username.into(),
        issuer: "https://idp.example.com".into(),
        subject: format!("sub-{username}"),
        sid: Some("sid-1".into()),
        expires_at: 4_000_000_000,
        issued_at: Some(1_700_000_000),
    }
}

pub fn backends(
    directory: Arc<TestDirectory>,
    validator: Option<Arc<TestValidator>>,
    admins: &[&str],
) -> AuthBackends {
    AuthBackends {
        directory,
        validator: validator.map(|v| v as Arc<dyn TokenValidator>),
        admins: admins.iter().map(|a| a.to_string()).collect(),
        revocation: None,
        throttle: None,
    }
}

/// Public base URL the HTTP tests serve under.
pub const BASE: &str = "https://mail.example.com";

/// A header map from name/value pairs; repeated names are appended (for duplicate-header tests).
pub fn headers(pairs: &[(&str, &str)]) -> http::HeaderMap {
    let mut map = http::HeaderMap::new();
    for (name, value) in pairs {
        let name = http::HeaderName::from_bytes(name.as_bytes()).expect("test header name");
        map.append(
            name,
            http::HeaderValue::from_str(value).expect("test header value"),
        );
    }
    map
}
