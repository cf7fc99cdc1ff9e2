//! Test doubles shared by the session and connection tests, and the connection-level tests.

mod conn;

use std::collections::BTreeSet;
use std::sync::Arc;

use tokio::sync::broadcast;

use crate::auth::AuthBackends;
use crate::auth::sasl::{SaslIdentity, SaslRegistry};
use crate::store::{MailStore, MailboxStatus, MemoryStore, StoreError, StoreEvent, StoredMessage};
pub use crate::testkit::sasl::Scripted;
pub use crate::testkit::{TestDirectory, backends};

/// The shared users plus carol at other.test; `down@example.com` makes the directory fail.
pub fn directory() -> Arc<TestDirectory> {
    Arc::new(
        TestDirectory::default()
            .with_user(("carol@other.test", "carol", "carolpw"))
            .failing_for("down@example.com"),
    )
}

pub fn identity(user: &str) -> SaslIdentity {
    SaslIdentity {
        authentication_id: user.into(),
        authorization_id: user.into(),
        token: None,
    }
}

/// Real PLAIN and LOGIN plus `XSCRIPT`, enabled in that order.
pub fn registry(backends: &AuthBackends, scripted: Arc<Scripted>) -> SaslRegistry {
    let mut registry = SaslRegistry::with_builtins(backends);
    registry.register(scripted);
    registry
        .enable(&["PLAIN".into(), "LOGIN".into(), "XSCRIPT".into()])
        .unwrap()
}

/// A MemoryStore whose appends fail for one user (to test all-or-nothing delivery).
pub struct FailingStore {
    pub inner: MemoryStore,
    pub fail_for: String,
}

impl MailStore for FailingStore {
    fn ensure_user(&self, user: &str) {
        self.inner.ensure_user(user)
    }
    fn list_mailboxes(&self, user: &str) -> Vec<String> {
        self.inner.list_mailboxes(user)
    }
    fn create_mailbox(&self, user: &str, mailbox: &str) -> Result<(), StoreError> {
        self.inner.create_mailbox(user, mailbox)
    }
    fn status(&self, user: &str, mailbox: &str) -> Result<MailboxStatus, StoreError> {
        self.inner.status(user, mailbox)
    }
    fn append(
        &self,
        user: &str,
        mailbox: &str,
        data: Vec<u8>,
        flags: BTreeSet<String>,
        internal_date: Option<i64>,
    ) -> Result<u32, StoreError> {
        if user.eq_ignore_ascii_case(&self.fail_for) {
            return Err(StoreError::TooLarge(data.len()));
        }
        self.inner.append(user, mailbox, data, flags, internal_date)
    }
    fn messages(&self, user: &str, mailbox: &str) -> Result<Vec<StoredMessage>, StoreError> {
        self.inner.messages(user, mailbox)
    }
    fn set_flags(
        &self,
        user: &str,
        mailbox: &str,
        uid: u32,
        flags: BTreeSet<String>,
    ) -> Result<(), StoreError> {
        self.inner.set_flags(user, mailbox, uid, flags)
    }
    fn expunge(&self, user: &str, mailbox: &str, uids: &[u32]) -> Result<Vec<u32>, StoreError> {
        self.inner.expunge(user, mailbox, uids)
    }
    fn subscribe(&self, user: &str) -> broadcast::Receiver<StoreEvent> {
        self.inner.subscribe(user)
    }
}

/// Strips the two trace headers delivery prepends; fails if they are not there.
pub fn without_trace_headers(stored: &[u8]) -> &[u8] {
    let mut rest = stored;
    for prefix in [&b"Return-Path: "[..], b"Received: "] {
        assert!(
            rest.starts_with(prefix),
            "missing {:?} in {:?}",
            String::from_utf8_lossy(prefix),
            String::from_utf8_lossy(stored)
        );
        let end = rest.windows(2).position(|w| w == b"\r\n").unwrap();
        rest = &rest[end + 2..];
    }
    rest
}

#[test]
fn rollback_on_partial_delivery() {
    let store = FailingStore {
        inner: MemoryStore::new(),
        fail_for: "bob@example.com".into(),
    };
    let recipients = vec![
        "alice@example.com".to_string(),
        "bob@example.com".to_string(),
    ];
    let err = super::delivery::store_all(&store, &recipients, b"msg".to_vec()).unwrap_err();
    assert!(err.to_string().contains("bob@example.com"), "{err}");
    assert!(
        store
            .messages("alice@example.com", "INBOX")
            .unwrap()
            .is_empty()
    );

    let ok = vec!["alice@example.com".to_string()];
    super::delivery::store_all(&store, &ok, b"msg".to_vec()).unwrap();
    let stored = store.messages("alice@example.com", "INBOX").unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].data.as_slice(), b"msg");
}
