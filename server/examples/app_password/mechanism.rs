//! `X-APP-PASSWORD`: the mechanism itself, apart from `main` so tests can build it in-process.

use std::sync::Arc;

use async_trait::async_trait;
use mail_oidc_server::auth::AuthBackends;
use mail_oidc_server::auth::sasl::{
    SaslExchange, SaslFailure, SaslIdentity, SaslMechanism, SaslStep, SessionContext,
};
use serde::Deserialize;
use sha2::{Digest, Sha256};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordFile {
    #[serde(default)]
    password: Vec<AppPassword>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct AppPassword {
    user: String,
    /// Lower-case hex SHA-256 of the application password.
    sha256: String,
}

pub struct AppPasswords {
    backends: AuthBackends,
    passwords: Arc<Vec<AppPassword>>,
}

impl SaslMechanism for AppPasswords {
    fn name(&self) -> &str {
        "X-APP-PASSWORD"
    }

    fn available(&self, ctx: &SessionContext) -> bool {
        ctx.plaintext_allowed()
    }

    fn start(&self, _initial: Option<&[u8]>, ctx: &SessionContext) -> Box<dyn SaslExchange> {
        Box::new(Exchange {
            backends: self.backends.clone(),
            peer: ctx.peer,
            passwords: self.passwords.clone(),
            asked: false,
        })
    }
}

struct Exchange {
    backends: AuthBackends,
    /// The client's address: the server's failed-login budget counts by it.
    peer: Option<std::net::SocketAddr>,
    passwords: Arc<Vec<AppPassword>>,
    asked: bool,
}

#[async_trait]
impl SaslExchange for Exchange {
    async fn step(&mut self, client: Option<&[u8]>) -> SaslStep {
        let Some(message) = client else {
            if self.asked {
                return SaslStep::Failure(SaslFailure::Malformed("no response".into()));
            }
            // No initial response: ask for it with an empty challenge, like PLAIN.
            self.asked = true;
            return SaslStep::Challenge(Vec::new());
        };
        let Some((user, password)) = std::str::from_utf8(message)
            .ok()
            .and_then(|m| m.split_once('\0'))
        else {
            return SaslStep::Failure(SaslFailure::Malformed("expected user NUL password".into()));
        };
        // The server's failed-login budget first: a throttled attempt is refused unchecked.
        let attempt = match self.backends.admit_login(self.peer, Some(user)).await {
            Ok(attempt) => attempt,
            Err(refusal) => return SaslStep::Failure(refusal.into()),
        };
        let canonical = match self.backends.directory.lookup(user).await {
            Ok(Some(canonical)) => canonical,
            Ok(None) => {
                attempt.failed().await;
                return SaslStep::Failure(SaslFailure::InvalidCredentials {
                    reason: "unknown_user".into(),
                });
            }
            Err(e) => return SaslStep::Failure(SaslFailure::TemporaryFailure(e.to_string())),
        };
        let hash = hex(&Sha256::digest(password.as_bytes()));
        let known = self
            .passwords
            .iter()
            .any(|p| p.user.eq_ignore_ascii_case(&canonical) && p.sha256 == hash);
        if !known {
            attempt.failed().await;
            return SaslStep::Failure(SaslFailure::InvalidCredentials {
                reason: "bad_app_password".into(),
            });
        }
        attempt.succeeded().await;
        SaslStep::Success {
            identity: SaslIdentity {
                authentication_id: canonical.clone(),
                authorization_id: canonical,
                token: None,
            },
            server_data: None,
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl AppPasswords {
    pub fn new(backends: AuthBackends, passwords: Arc<Vec<AppPassword>>) -> Self {
        Self {
            backends,
            passwords,
        }
    }
}

/// Reads the application password file.
pub fn load(path: &str) -> Result<Vec<AppPassword>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let file: PasswordFile = toml::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
    Ok(file.password)
}
