//! Per-user quota over the wire: a full recipient is refused at RCPT (`452 4.2.2`), a message
//! that does not fit is refused after DATA (`552 5.2.2`) and then stored for nobody; delivered
//! copies share one buffer.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::{Client, Setup, TestServer};
use crate::smtp::SmtpListenerKind;
use crate::store::MemoryStore;

const ALICE: &str = "alice@example.com";
const BOB: &str = "bob@example.com";

async fn server(quota: u64) -> TestServer {
    let mut setup = Setup::new(SmtpListenerKind::Inbound);
    setup.store = Some(Arc::new(MemoryStore::with_quota(Some(quota))));
    TestServer::start(setup).await
}

/// Stores `size` bytes for `user` directly.
fn fill(server: &TestServer, user: &str, size: usize) {
    server.store.ensure_user(user);
    server
        .store
        .append(user, "INBOX", vec![b'x'; size], BTreeSet::new(), None)
        .unwrap();
}

async fn transaction(c: &mut Client, recipients: &[&str], body: &[u8]) -> String {
    c.command("MAIL FROM:<s@remote.test>").await;
    for r in recipients {
        assert_eq!(c.command(&format!("RCPT TO:<{r}>")).await, "250 2.1.5 Ok");
    }
    c.command("DATA").await;
    let mut data = body.to_vec();
    data.extend_from_slice(b".\r\n");
    c.write(&data).await;
    c.reply().await
}

#[tokio::test]
async fn recipient_at_quota_is_refused_at_rcpt() {
    let server = server(1000).await;
    fill(&server, ALICE, 1000);
    let mut c = Client::connect(server.addr).await;
    c.reply().await;
    c.command("EHLO a.test").await;
    c.command("MAIL FROM:<s@remote.test>").await;
    assert_eq!(
        c.command("RCPT TO:<alice@example.com>").await,
        "452 4.2.2 <alice@example.com>: Mailbox full"
    );
    // The others still get mail in the same transaction.
    assert_eq!(c.command("RCPT TO:<bob@example.com>").await, "250 2.1.5 Ok");
    c.command("DATA").await;
    c.write(b"hi\r\n.\r\n").await;
    assert!(c.reply().await.starts_with("250 2.0.0 Ok: queued as "));
    assert_eq!(server.inbox(ALICE).len(), 1, "only the filler");
    assert_eq!(server.inbox(BOB).len(), 1);
}

#[tokio::test]
async fn message_over_the_quota_of_its_only_recipient_gets_552() {
    let server = server(1000).await;
    // Room for a short message with its trace headers, not for 400 bytes more.
    fill(&server, BOB, 700);
    let mut c = Client::connect(server.addr).await;
    c.reply().await;
    c.command("EHLO a.test").await;
    let body: Vec<u8> = [b'y'; 400].iter().chain(b"\r\n").copied().collect();
    let reply = transaction(&mut c, &[BOB], &body).await;
    assert_eq!(
        reply,
        "552 5.2.2 <bob@example.com>: Mailbox full, message not delivered to any recipient"
    );
    assert_eq!(server.inbox(BOB).len(), 1, "only the filler");
    assert_eq!(server.store.usage(BOB), 700);
    // A message that fits still goes through.
    let reply = transaction(&mut c, &[BOB], b"hi\r\n").await;
    assert!(reply.starts_with("250 2.0.0 Ok: queued as "), "{reply}");
}

#[tokio::test]
async fn message_over_one_recipients_quota_is_stored_for_none() {
    let server = server(1000).await;
    fill(&server, BOB, 900);
    let mut c = Client::connect(server.addr).await;
    c.reply().await;
    c.command("EHLO a.test").await;
    let body: Vec<u8> = [b'y'; 200].iter().chain(b"\r\n").copied().collect();
    let reply = transaction(&mut c, &[ALICE, BOB], &body).await;
    assert_eq!(
        reply,
        "552 5.2.2 <bob@example.com>: Mailbox full, message not delivered to any recipient"
    );
    assert!(
        server.inbox(ALICE).is_empty(),
        "nothing acknowledged, nothing kept"
    );
    assert_eq!(server.store.usage(ALICE), 0);
    assert_eq!(server.inbox(BOB).len(), 1);
}

#[tokio::test]
async fn recipients_share_one_copy() {
    let server = server(1 << 20).await;
    let mut c = Client::connect(server.addr).await;
    c.reply().await;
    c.command("EHLO a.test").await;
    let reply = transaction(&mut c, &[ALICE, BOB], b"Subject: x\r\n\r\nshared\r\n").await;
    assert!(reply.starts_with("250 2.0.0 Ok: queued as "), "{reply}");
    let a = server.store.messages(ALICE, "INBOX").unwrap();
    let b = server.store.messages(BOB, "INBOX").unwrap();
    assert!(Arc::ptr_eq(&a[0].data, &b[0].data), "one buffer for both");
    // Each user's quota counts the copy.
    assert_eq!(server.store.usage(ALICE), a[0].data.len() as u64);
    assert_eq!(server.store.usage(BOB), a[0].data.len() as u64);
}
