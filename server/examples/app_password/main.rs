//! A SASL mechanism defined outside the server crate and registered through the library API:
//! `X-APP-PASSWORD`, per-device application passwords (the kind a phone's mail app keeps),
//! checked against SHA-256 hashes in a file of their own, for users the directory knows.
//!
//! ```sh
//! APP_PASSWORDS=app-passwords.toml cargo run -p mail-oidc-server --example app_password -- --config server.toml
//! ```
//! with `mechanisms = ["PLAIN", "X-APP-PASSWORD"]` in a listener's `auth` section, and
//! ```toml
//! [[password]]
//! user = "alice@example.com"
//! sha256 = "<hex of the app password's SHA-256>"
//! ```
//! The client message is `user NUL app-password`, like PLAIN without an authzid. The mechanism
//! sends a password, so it is offered only where PLAIN is (TLS, or `allow_plaintext_auth`).

mod mechanism;

use std::process::ExitCode;
use std::sync::Arc;

use mechanism::{AppPasswords, load};

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
        services.with_mechanism(|backends| Arc::new(AppPasswords::new(backends.clone(), passwords)))
    })
    .await
}
