//! A SASL mechanism defined outside the server crate and registered through the library API:
//! `X-APP-PASSWORD`, per-device application passwords (the kind a phone's mail app keeps),
//! checked against SHA-256 hashes in a file of their own, for users the directory knows.
//!
//! ```sh
//! APP_PASSWORDS=app-passwords.toml cargo run --example app_password -- --config server.toml
//! ```
//! with `mechanisms = ["PLAIN", "X-APP-PASSWORD"]` in a listener's `auth` section, and
//! ```toml
//! [[password]]
//! user = "alice@example.com"
//! sha256 = "<hex of the app password's SHA-256>"
//! ```
//! The client message is `user NUL app-password`, like PLAIN without an authzid. The mechanism
//! sends a password, so it is offered only where PLAIN is (TLS, or `allow_plaintext_auth`).

use std::process::ExitCode;
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
struct AppPassword {
    user: String,
    /// Lower-case hex SHA-256 of the application password.
    sha256: String,
}

struct AppPasswords {
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

    fn start(&self, _initial: Option<&[u8]>, _ctx: &SessionContext) -> Box<dyn SaslExchange> {
        Box::new(Exchange {
            backends: self.backends.clone(),
            passwords: self.passwords.clone(),
            asked: false,
        })
    }
}

struct Exchange {
    backends: AuthBackends,
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
        let canonical = match self.backends.directory.lookup(user).await {
            Ok(Some(canonical)) => canonical,
            Ok(None) => {
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
            return SaslStep::Failure(SaslFailure::InvalidCredentials {
                reason: "bad_app_password".into(),
            });
        }
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

fn load(path: &str) -> Result<Vec<AppPassword>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let file: PasswordFile = toml::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
    Ok(file.password)
}

#[tokio::main]
async fn main() -> ExitCode {
    // A missing file is a start-up error, never a mechanism that silently refuses everyone.
    let Ok(path) = std::env::var("APP_PASSWORDS") else {
        eprintln!("app_password: set APP_PASSWORDS to the application password file");
        return ExitCode::from(2);
    };
    let passwords = match load(&path) {
        Ok(p) => Arc::new(p),
        Err(e) => {
            eprintln!("app_password: {e}");
            return ExitCode::from(2);
        }
    };
    mail_oidc_server::cli::main(move |services| {
        services.with_mechanism(|backends| {
            Arc::new(AppPasswords {
                backends: backends.clone(),
                passwords,
            })
        })
    })
    .await
}
