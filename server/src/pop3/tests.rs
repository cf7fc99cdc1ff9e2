//! Doubles and fixtures shared by the POP3 session transcripts (`session`) and the
//! connection-level tests (`conn`).

mod conn;
mod session;

use std::collections::BTreeSet;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::auth::AuthBackends;
use crate::auth::sasl::{SaslIdentity, SaslRegistry};
use crate::store::{MailStore, MemoryStore};
pub use crate::testkit::sasl::Scripted;
use crate::testkit::{TestDirectory, TestValidator, backends};

pub const HOST: &str = "pop.example.com";
pub const ALICE: &str = "alice@example.com";

/// Lines starting with dots, a line that is only a dot, and CRLF throughout.
pub const DOTS: &[u8] =
    b"From: bob@example.com\r\nSubject: dots\r\n\r\n.leading dot\r\n..two dots\r\n.\r\nend\r\n";
/// No line end after the last line.
pub const NO_FINAL_CRLF: &[u8] = b"Subject: no final line end\r\n\r\nlast line";
/// Bare LF line ends.
pub const LF_ONLY: &[u8] = b"Subject: lf\n\nline 1\nline 2\n";

/// The directory and token validator the tests share: alice and bob; tokens named like
/// `good-alice`, `expired`, `idp-down` (see [`TestValidator::named`]).
pub fn auth_backends() -> AuthBackends {
    backends(
        TestDirectory::new(),
        Some(Arc::new(TestValidator::named())),
        &[],
    )
}

/// Real PLAIN, OAUTHBEARER and XOAUTH2 plus `XSCRIPT` (offered without TLS), in that order.
pub fn registry(backends: &AuthBackends, scripted: Arc<Scripted>) -> SaslRegistry {
    let mut registry = SaslRegistry::with_builtins(backends);
    registry.register(scripted);
    registry
        .enable(&[
            "PLAIN".into(),
            "OAUTHBEARER".into(),
            "XOAUTH2".into(),
            "XSCRIPT".into(),
        ])
        .expect("mechanisms known")
}

pub fn identity(user: &str) -> SaslIdentity {
    SaslIdentity {
        authentication_id: user.into(),
        authorization_id: user.into(),
        token: None,
    }
}

pub fn b64(bytes: &[u8]) -> String {
    BASE64.encode(bytes)
}

pub fn oauthbearer(authzid: &str, token: &str) -> String {
    b64(format!("n,a={authzid},\x01auth=Bearer {token}\x01\x01").as_bytes())
}

/// A store where alice's INBOX holds `messages`.
pub fn store_with(messages: &[&[u8]]) -> Arc<MemoryStore> {
    let store = Arc::new(MemoryStore::new());
    store.ensure_user(ALICE);
    for m in messages {
        store
            .append(ALICE, "INBOX", m.to_vec(), BTreeSet::new(), None)
            .expect("append");
    }
    store
}

pub fn inbox(store: &dyn MailStore, user: &str) -> Vec<Vec<u8>> {
    store
        .messages(user, "INBOX")
        .map(|m| m.iter().map(|m| m.data.to_vec()).collect())
        .unwrap_or_default()
}
