//! Test doubles shared by the session and connection tests, and the connection-level tests.

mod conn;
mod sieve_quota;

use std::collections::BTreeSet;
use std::sync::Arc;

use tokio::sync::broadcast;

use crate::auth::AuthBackends;
use crate::auth::sasl::{SaslIdentity, SaslRegistry};
use crate::sieve::{ActiveScripts, SieveFilter};
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
    let keep = SieveFilter::keep_all();
    let err =
        super::delivery::store_all(&store, &keep, "", &recipients, b"msg".to_vec()).unwrap_err();
    assert!(err.to_string().contains("bob@example.com"), "{err}");
    assert!(
        store
            .messages("alice@example.com", "INBOX")
            .unwrap()
            .is_empty()
    );

    let ok = vec!["alice@example.com".to_string()];
    super::delivery::store_all(&store, &keep, "", &ok, b"msg".to_vec()).unwrap();
    let stored = store.messages("alice@example.com", "INBOX").unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].data.as_slice(), b"msg");
}

/// Scripts by user, for delivery tests.
struct Scripts(Vec<(&'static str, &'static str)>);

impl ActiveScripts for Scripts {
    fn active_script(&self, user: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(u, _)| *u == user)
            .map(|(_, s)| s.to_string())
    }
}

const REPORT: &[u8] = b"From: boss@example.org\r\nSubject: weekly report\r\n\r\nnumbers\r\n";

#[test]
fn sieve_files_copies_creates_mailboxes_and_sets_flags() {
    let store = MemoryStore::new();
    let filter = SieveFilter::new(Arc::new(Scripts(vec![(
        "alice@example.com",
        "require [\"fileinto\", \"copy\", \"imap4flags\", \"envelope\"];\n\
         if envelope :is \"from\" \"boss@example.org\" {\n\
           fileinto :copy :flags \"\\\\Flagged\" \"Work/Reports\";\n\
         }\n\
         if header :contains \"subject\" \"spam\" { discard; }",
    )])));
    let recipients = vec![
        "alice@example.com".to_string(),
        "bob@example.com".to_string(),
    ];
    super::delivery::store_all(
        &store,
        &filter,
        "boss@example.org",
        &recipients,
        REPORT.to_vec(),
    )
    .unwrap();
    let filed = store.messages("alice@example.com", "Work/Reports").unwrap();
    assert_eq!(filed.len(), 1);
    assert!(filed[0].flags.contains("\\Flagged"), "{:?}", filed[0].flags);
    // :copy keeps the implicit keep; bob has no script.
    assert_eq!(
        store.messages("alice@example.com", "INBOX").unwrap().len(),
        1
    );
    assert_eq!(store.messages("bob@example.com", "INBOX").unwrap().len(), 1);
    // Another sender: only the implicit keep.
    super::delivery::store_all(&store, &filter, "", &recipients[..1], REPORT.to_vec()).unwrap();
    assert_eq!(
        store
            .messages("alice@example.com", "Work/Reports")
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        store.messages("alice@example.com", "INBOX").unwrap().len(),
        2
    );
    // Discarded: nothing stored for alice, and that is a success.
    let spam = b"Subject: spam\r\n\r\nx\r\n".to_vec();
    super::delivery::store_all(&store, &filter, "", &recipients[..1], spam).unwrap();
    assert_eq!(
        store.messages("alice@example.com", "INBOX").unwrap().len(),
        2
    );
}

#[test]
fn sieve_delivery_is_all_or_nothing_and_bad_names_fall_back_to_inbox() {
    let store = FailingStore {
        inner: MemoryStore::new(),
        fail_for: "bob@example.com".into(),
    };
    let filter = SieveFilter::new(Arc::new(Scripts(vec![(
        "alice@example.com",
        "require [\"fileinto\", \"copy\"]; fileinto :copy \"A\"; fileinto \"B\";",
    )])));
    let recipients = vec![
        "alice@example.com".to_string(),
        "bob@example.com".to_string(),
    ];
    assert!(super::delivery::store_all(&store, &filter, "", &recipients, REPORT.to_vec()).is_err());
    for mailbox in ["A", "B"] {
        assert!(
            store
                .messages("alice@example.com", mailbox)
                .unwrap()
                .is_empty(),
            "{mailbox}"
        );
    }
    let filter = SieveFilter::new(Arc::new(Scripts(vec![(
        "alice@example.com",
        "require \"fileinto\"; fileinto \"bad*name\";",
    )])));
    super::delivery::store_all(&store, &filter, "", &recipients[..1], REPORT.to_vec()).unwrap();
    assert_eq!(
        store.messages("alice@example.com", "INBOX").unwrap().len(),
        1
    );
}
