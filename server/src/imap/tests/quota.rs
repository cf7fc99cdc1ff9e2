//! `NO [OVERQUOTA]` (RFC 9208) for APPEND, COPY and MOVE past `store.quota_bytes`; a refused
//! COPY leaves nothing behind.

use std::sync::Arc;

use super::Client;
use super::{plaintext_config, setup_with_store};
use crate::store::{MailStore, MemoryStore};

const ALICE: &str = "alice@example.com";

#[tokio::test]
async fn append_copy_and_move_past_the_quota_are_refused() {
    let store = Arc::new(MemoryStore::with_quota(Some(100)));
    let s = setup_with_store(plaintext_config(), store.clone());
    let (mut c, _) = Client::connect(&s.ctx).await;
    c.login().await;
    let msg = "Subject: q\r\n\r\n".to_string() + &"x".repeat(28) + "\r\n";
    assert_eq!(msg.len(), 44);
    let append = format!("APPEND INBOX {{{}+}}\r\n{msg}", msg.len());
    assert!(c.cmd("a1", &append).await.starts_with("a1 OK [APPENDUID"));
    assert!(c.cmd("a2", &append).await.starts_with("a2 OK [APPENDUID"));
    assert_eq!(
        c.cmd("a3", &append).await,
        "a3 NO [OVERQUOTA] Quota exceeded.\r\n"
    );
    assert_eq!(store.usage(ALICE), 88);

    assert_eq!(
        c.cmd("c", "CREATE Keep").await,
        "c OK Create completed.\r\n"
    );
    c.cmd("s", "SELECT INBOX").await;
    // Two messages of 44 bytes do not fit in the 12 left: nothing is copied, not even the first.
    assert_eq!(
        c.cmd("k", "COPY 1:2 Keep").await,
        "k NO [OVERQUOTA] Quota exceeded.\r\n"
    );
    assert!(store.messages(ALICE, "Keep").unwrap().is_empty());
    assert_eq!(store.usage(ALICE), 88);
    assert_eq!(
        c.cmd("m", "MOVE 1 Keep").await,
        "m NO [OVERQUOTA] Quota exceeded.\r\n"
    );
    assert_eq!(
        store.messages(ALICE, "INBOX").unwrap().len(),
        2,
        "nothing moved"
    );
    // Room made by EXPUNGE is usable again.
    c.cmd("f", "STORE 2 +FLAGS (\\Deleted)").await;
    c.cmd("e", "EXPUNGE").await;
    assert!(c.cmd("k2", "COPY 1 Keep").await.contains("k2 OK [COPYUID"));
    let inbox = store.messages(ALICE, "INBOX").unwrap();
    let keep = store.messages(ALICE, "Keep").unwrap();
    assert!(
        Arc::ptr_eq(&inbox[0].data, &keep[0].data),
        "COPY shares the bytes"
    );
}
