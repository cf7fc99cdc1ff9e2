//! `overQuota` SetErrors (RFC 8620 5.3) from Email/set create and Email/import past
//! `store.quota_bytes`; nothing is stored for a refused email.

use std::sync::Arc;

use serde_json::json;

use super::{ALICE, harness_over};
use crate::store::{MailStore, MemoryStore};

#[tokio::test]
async fn create_and_import_past_the_quota_are_over_quota() {
    let h = harness_over(Arc::new(MemoryStore::with_quota(Some(300))), false);
    let acc = h.account(ALICE);
    let inbox = h.mailbox_id(ALICE, "inbox").await;
    let drafts = h.mailbox_id(ALICE, "drafts").await;
    let message = format!("Subject: big\r\n\r\n{}\r\n", "x".repeat(400));
    let blob = h
        .ctx
        .blobs
        .put(&acc, message.into_bytes(), "message/rfc822".into());
    let v = h
        .ok(
            ALICE,
            "Email/import",
            json!({"accountId": acc, "emails": {
                "i": {"blobId": blob, "mailboxIds": {inbox.as_str(): true}},
            }}),
        )
        .await;
    assert_eq!(v["notCreated"]["i"]["type"], json!("overQuota"), "{v}");
    let s = h
        .ok(
            ALICE,
            "Email/set",
            json!({"accountId": acc, "create": {"d": {
                "mailboxIds": {drafts.as_str(): true, inbox.as_str(): true},
                "from": [{"email": ALICE}],
                "subject": "Draft",
                "bodyValues": {"1": {"value": "y".repeat(100)}},
                "textBody": [{"partId": "1", "type": "text/plain"}],
            }}}),
        )
        .await;
    // Two copies do not fit: neither is kept.
    assert_eq!(s["notCreated"]["d"]["type"], json!("overQuota"), "{s}");
    assert_eq!(h.store.usage(ALICE), 0);
    assert!(h.store.messages(ALICE, "INBOX").unwrap().is_empty());
    assert!(h.store.messages(ALICE, "Drafts").unwrap().is_empty());
}
