//! CONDSTORE and QRESYNC (RFC 7162) over a real session: mod-sequences in SELECT, FETCH, STORE,
//! SEARCH and STATUS; ENABLE; VANISHED instead of EXPUNGE; resynchronisation at SELECT.

use std::collections::BTreeSet;

use super::{Client, MAIL, deliver, plaintext_config, setup};

const ALICE: &str = "alice@example.com";

#[tokio::test]
async fn condstore_modseqs_in_select_fetch_store_search_and_status() {
    let s = setup(plaintext_config());
    deliver(&s.ctx, MAIL);
    deliver(&s.ctx, MAIL);
    let (mut c, greeting) = Client::connect(&s.ctx).await;
    assert!(
        greeting.contains(" ENABLE CONDSTORE QRESYNC "),
        "{greeting}"
    );
    c.login().await;
    assert_eq!(
        c.cmd("s", "STATUS INBOX (HIGHESTMODSEQ MESSAGES)").await,
        "* STATUS \"INBOX\" (HIGHESTMODSEQ 3 MESSAGES 2)\r\ns OK Status completed.\r\n"
    );
    let reply = c.cmd("a", "SELECT INBOX (CONDSTORE)").await;
    assert!(
        reply.ends_with(
            "* OK [UIDNEXT 3] Predicted next UID.\r\n* OK [HIGHESTMODSEQ 3] Highest\r\n\
             a OK [READ-WRITE] Select completed.\r\n"
        ),
        "{reply}"
    );
    assert_eq!(
        c.cmd("b", "FETCH 1:* (FLAGS MODSEQ)").await,
        "* 1 FETCH (FLAGS (\\Recent) MODSEQ (2))\r\n* 2 FETCH (FLAGS (\\Recent) MODSEQ (3))\r\n\
         b OK Fetch completed.\r\n"
    );
    assert_eq!(
        c.cmd("c", "STORE 1 +FLAGS (\\Seen)").await,
        "* 1 FETCH (FLAGS (\\Seen \\Recent) MODSEQ (4))\r\nc OK Store completed.\r\n"
    );
    assert_eq!(
        c.cmd("d", "FETCH 1:* (FLAGS) (CHANGEDSINCE 3)").await,
        "* 1 FETCH (FLAGS (\\Seen \\Recent) MODSEQ (4))\r\nd OK Fetch completed.\r\n"
    );
    // Message 1 changed after modseq 3: left alone and named; message 2 is stored, and even
    // .SILENT tells its new modseq.
    assert_eq!(
        c.cmd(
            "e",
            "STORE 1:2 (UNCHANGEDSINCE 3) +FLAGS.SILENT (\\Flagged)"
        )
        .await,
        "* 2 FETCH (MODSEQ (5))\r\ne OK [MODIFIED 1] Conditional STORE failed.\r\n"
    );
    assert_eq!(
        c.cmd("f", "UID STORE 1 (UNCHANGEDSINCE 4) FLAGS (\\Answered)")
            .await,
        "* 1 FETCH (FLAGS (\\Answered \\Recent) UID 1 MODSEQ (6))\r\nf OK Store completed.\r\n"
    );
    assert_eq!(
        c.cmd("f2", "UID STORE 1:2 (UNCHANGEDSINCE 5) -FLAGS (\\Answered)")
            .await,
        "* 2 FETCH (FLAGS (\\Flagged \\Recent) UID 2 MODSEQ (5))\r\n\
         f2 OK [MODIFIED 1] Conditional STORE failed.\r\n"
    );
    assert_eq!(
        c.cmd("g", "SEARCH MODSEQ 5").await,
        "* SEARCH 1 2 (MODSEQ 6)\r\ng OK Search completed.\r\n"
    );
    assert_eq!(
        c.cmd("g2", "UID SEARCH MODSEQ 7").await,
        "* SEARCH\r\ng2 OK Search completed.\r\n"
    );
    // A change made elsewhere is reported with its modseq.
    s.ctx
        .store
        .set_flags(ALICE, "INBOX", 2, BTreeSet::new())
        .unwrap();
    assert_eq!(
        c.cmd("h", "NOOP").await,
        "* 2 FETCH (FLAGS (\\Recent) MODSEQ (7))\r\nh OK NOOP completed.\r\n"
    );
    assert_eq!(
        c.cmd("i", "STATUS INBOX (HIGHESTMODSEQ)").await,
        "* STATUS \"INBOX\" (HIGHESTMODSEQ 7)\r\ni OK Status completed.\r\n"
    );
}

#[tokio::test]
async fn condstore_is_off_until_enabled_or_used() {
    let s = setup(plaintext_config());
    deliver(&s.ctx, MAIL);
    let (mut c, _) = Client::connect(&s.ctx).await;
    assert_eq!(
        c.cmd("a", "ENABLE CONDSTORE").await,
        "a BAD Log in first.\r\n"
    );
    c.login().await;
    c.cmd("b", "SELECT INBOX").await;
    assert_eq!(
        c.cmd("c", "STORE 1 +FLAGS (\\Seen)").await,
        "* 1 FETCH (FLAGS (\\Seen \\Recent))\r\nc OK Store completed.\r\n",
        "no MODSEQ before CONDSTORE is on"
    );
    assert_eq!(
        c.cmd("d", "FETCH 1 (MODSEQ)").await,
        "* 1 FETCH (MODSEQ (3))\r\nd OK Fetch completed.\r\n"
    );
    assert_eq!(
        c.cmd("e", "STORE 1 -FLAGS (\\Seen)").await,
        "* 1 FETCH (FLAGS (\\Recent) MODSEQ (4))\r\ne OK Store completed.\r\n",
        "FETCH MODSEQ turned CONDSTORE on"
    );

    let (mut c, _) = Client::connect(&s.ctx).await;
    c.login().await;
    assert_eq!(
        c.cmd("a", "ENABLE CONDSTORE X-UNKNOWN").await,
        "* ENABLED CONDSTORE\r\na OK ENABLE completed.\r\n"
    );
    assert_eq!(
        c.cmd("b", "ENABLE CONDSTORE").await,
        "* ENABLED\r\nb OK ENABLE completed.\r\n",
        "already enabled"
    );
    c.cmd("c", "SELECT INBOX").await;
    s.ctx
        .store
        .set_flags(ALICE, "INBOX", 1, ["\\Flagged".to_string()].into())
        .unwrap();
    assert_eq!(
        c.cmd("d", "NOOP").await,
        "* 1 FETCH (FLAGS (\\Flagged) MODSEQ (5))\r\nd OK NOOP completed.\r\n"
    );
    assert_eq!(
        c.cmd("e", "STORE 1 (UNCHANGEDSINCE 0) +FLAGS (\\Seen)")
            .await,
        "e OK [MODIFIED 1] Conditional STORE failed.\r\n"
    );
}
