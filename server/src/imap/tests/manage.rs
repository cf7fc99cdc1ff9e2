//! DELETE, RENAME, SUBSCRIBE/UNSUBSCRIBE and LSUB over a session (RFC 3501 6.3.4-6.3.9).

use super::{Client, plaintext_config, setup};

const ALICE_MAIL: &str = "alice@example.com";

#[tokio::test]
async fn delete_rename_and_subscriptions() {
    let s = setup(plaintext_config());
    let store = s.ctx.store.clone();
    let (mut c, _) = Client::connect(&s.ctx).await;
    c.login().await;
    for name in ["Work/2024", "Old"] {
        c.cmd("c", &format!("CREATE {name}")).await;
    }
    c.cmd("a", "APPEND Old {3+}\r\nabc").await;
    c.cmd("a", "APPEND INBOX {4+}\r\ninbx").await;
    assert_eq!(store.usage(ALICE_MAIL), 7);

    // DELETE: INBOX never, a mailbox with inferiors not, a missing one is NONEXISTENT.
    let cannot = "NO [CANNOT] INBOX, or a mailbox with inferiors, cannot be deleted.\r\n";
    assert_eq!(c.cmd("d1", "DELETE inbox").await, format!("d1 {cannot}"));
    assert_eq!(c.cmd("d2", "DELETE Work").await, format!("d2 {cannot}"));
    assert_eq!(
        c.cmd("d3", "DELETE Nope").await,
        "d3 NO [NONEXISTENT] Mailbox doesn't exist.\r\n"
    );
    assert_eq!(
        c.cmd("s", "SUBSCRIBE Old").await,
        "s OK Subscription updated.\r\n"
    );
    assert_eq!(
        c.cmd("d4", "DELETE Old").await,
        "d4 OK Delete completed.\r\n"
    );
    assert_eq!(
        store.usage(ALICE_MAIL),
        4,
        "the deleted messages free the quota"
    );
    // The subscription outlives the mailbox (RFC 3501 6.3.6); SUBSCRIBE needs one to exist.
    assert_eq!(
        c.cmd("l", "LSUB \"\" *").await,
        "* LSUB (\\HasNoChildren) \"/\" \"Old\"\r\nl OK LSUB completed.\r\n"
    );
    assert_eq!(
        c.cmd("s2", "SUBSCRIBE Old").await,
        "s2 NO [NONEXISTENT] Mailbox doesn't exist.\r\n"
    );
    assert_eq!(
        c.cmd("u", "UNSUBSCRIBE Old").await,
        "u OK Subscription updated.\r\n"
    );
    assert_eq!(
        c.cmd("l2", "LSUB \"\" *").await,
        "l2 OK LSUB completed.\r\n"
    );

    // RENAME takes the inferiors along and creates the new superiors; UIDVALIDITY stays.
    let validity = store.status(ALICE_MAIL, "Work/2024").unwrap().uid_validity;
    assert_eq!(
        c.cmd("r1", "RENAME Work Archive/Work").await,
        "r1 OK Rename completed.\r\n"
    );
    assert_eq!(
        store.list_mailboxes(ALICE_MAIL),
        vec!["Archive", "Archive/Work", "Archive/Work/2024", "INBOX"]
    );
    assert_eq!(
        store
            .status(ALICE_MAIL, "Archive/Work/2024")
            .unwrap()
            .uid_validity,
        validity
    );
    assert_eq!(
        c.cmd("r2", "RENAME Archive INBOX").await,
        "r2 NO [ALREADYEXISTS] Mailbox already exists.\r\n"
    );
    assert_eq!(
        c.cmd("r3", "RENAME Nope X").await,
        "r3 NO [NONEXISTENT] Mailbox doesn't exist.\r\n"
    );
    // RENAME INBOX moves its messages and leaves it, empty.
    assert_eq!(
        c.cmd("r4", "RENAME INBOX Saved").await,
        "r4 OK Rename completed.\r\n"
    );
    assert!(store.messages(ALICE_MAIL, "INBOX").unwrap().is_empty());
    let saved = store.messages(ALICE_MAIL, "Saved").unwrap();
    assert_eq!(saved[0].data.as_slice(), b"inbx");
    assert_eq!(store.usage(ALICE_MAIL), 4);
}
