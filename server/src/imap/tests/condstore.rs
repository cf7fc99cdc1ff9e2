//! CONDSTORE and QRESYNC (RFC 7162) over a real session: mod-sequences in SELECT, FETCH, STORE,
//! SEARCH and STATUS; ENABLE; VANISHED instead of EXPUNGE; resynchronisation at SELECT.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::{Client, MAIL, deliver, plaintext_config, setup, setup_with_store};
use crate::store::{MailStore, ScriptLimits};

const ALICE: &str = "alice@example.com";

#[tokio::test]
async fn condstore_modseqs_in_select_fetch_store_search_and_status() {
    let s = setup(plaintext_config());
    deliver(&s.ctx, MAIL);
    deliver(&s.ctx, MAIL);
    let (mut c, greeting) = Client::connect(&s.ctx).await;
    assert!(
        greeting.contains(" ENABLE NAMESPACE CONDSTORE QRESYNC "),
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
    assert_eq!(
        c.cmd("c2", "ENABLE QRESYNC").await,
        "c2 BAD ENABLE is not allowed while a mailbox is selected.\r\n"
    );
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

#[tokio::test]
async fn qresync_select_reports_vanished_and_changed_messages() {
    let s = setup(plaintext_config());
    for _ in 0..3 {
        deliver(&s.ctx, MAIL);
    }
    let validity = s.ctx.store.status(ALICE, "INBOX").unwrap().uid_validity;
    let (mut c, _) = Client::connect(&s.ctx).await;
    c.login().await;
    assert_eq!(
        c.cmd("q", &format!("SELECT INBOX (QRESYNC ({validity} 4))"))
            .await,
        "q BAD QRESYNC is not enabled.\r\n"
    );
    assert_eq!(
        c.cmd("a", "ENABLE QRESYNC").await,
        "* ENABLED QRESYNC\r\na OK ENABLE completed.\r\n"
    );
    c.cmd("b", "SELECT INBOX").await;
    c.cmd("c", "STORE 1 +FLAGS.SILENT (\\Seen)").await;
    c.cmd("d", "STORE 2 +FLAGS.SILENT (\\Deleted)").await;
    // Once QRESYNC is on, expunges are told by UID.
    assert_eq!(
        c.cmd("e", "EXPUNGE").await,
        "* VANISHED 2\r\ne OK Expunge completed.\r\n"
    );

    // A client that knew the mailbox at modseq 4 learns what vanished and what changed.
    let (mut d, _) = Client::connect(&s.ctx).await;
    d.login().await;
    d.cmd("a", "ENABLE QRESYNC").await;
    let reply = d
        .cmd("b", &format!("SELECT INBOX (QRESYNC ({validity} 4))"))
        .await;
    assert!(
        reply.ends_with(
            "* OK [UIDNEXT 4] Predicted next UID.\r\n* OK [HIGHESTMODSEQ 7] Highest\r\n\
             * VANISHED (EARLIER) 2\r\n* 1 FETCH (UID 1 FLAGS (\\Seen) MODSEQ (5))\r\n\
             b OK [READ-WRITE] Select completed.\r\n"
        ),
        "{reply}"
    );
    // Known UIDs limit the answer; the mailbox it replaces is marked CLOSED.
    let reply = d
        .cmd("c", &format!("EXAMINE INBOX (QRESYNC ({validity} 4 3))"))
        .await;
    assert!(
        reply.starts_with("* OK [CLOSED] Previous mailbox closed.\r\n* FLAGS "),
        "{reply}"
    );
    assert!(
        reply
            .ends_with("* OK [HIGHESTMODSEQ 7] Highest\r\nc OK [READ-ONLY] Examine completed.\r\n"),
        "{reply}"
    );
    // Another UIDVALIDITY: the client's cache is void, nothing is resynchronised.
    let reply = d.cmd("d", "SELECT INBOX (QRESYNC (1 4))").await;
    assert!(
        reply
            .ends_with("* OK [HIGHESTMODSEQ 7] Highest\r\nd OK [READ-WRITE] Select completed.\r\n"),
        "{reply}"
    );
    assert_eq!(
        d.cmd("f", "UID FETCH 1:* (FLAGS) (CHANGEDSINCE 4 VANISHED)")
            .await,
        "* VANISHED (EARLIER) 2\r\n* 1 FETCH (UID 1 FLAGS (\\Seen) MODSEQ (5))\r\nf OK Fetch completed.\r\n"
    );
    assert_eq!(
        d.cmd("g", "UID FETCH 3 (FLAGS) (CHANGEDSINCE 1 VANISHED)")
            .await,
        "* 2 FETCH (UID 3 FLAGS () MODSEQ (4))\r\ng OK Fetch completed.\r\n",
        "VANISHED only within the UIDs asked for"
    );
    assert_eq!(
        d.cmd("h", "FETCH 1:* (FLAGS) (CHANGEDSINCE 4 VANISHED)")
            .await,
        "h BAD VANISHED needs UID FETCH, CHANGEDSINCE and ENABLE QRESYNC.\r\n"
    );
    assert_eq!(
        d.cmd("i", "UID FETCH 1:* (FLAGS) (VANISHED)").await,
        "i BAD VANISHED needs UID FETCH, CHANGEDSINCE and ENABLE QRESYNC.\r\n"
    );
    // Expunged by the other session: reported as VANISHED, with the UID in flag updates.
    c.cmd("j", "STORE 2 +FLAGS.SILENT (\\Deleted)").await;
    c.cmd("k", "EXPUNGE").await;
    c.cmd("l", "STORE 1 -FLAGS.SILENT (\\Seen)").await;
    assert_eq!(
        d.cmd("m", "NOOP").await,
        "* VANISHED 3\r\n* 1 FETCH (FLAGS () UID 1 MODSEQ (10))\r\nm OK NOOP completed.\r\n"
    );
}

/// The disk store keeps mod-sequences across a restart but not the expunges before it: a
/// client resynchronising from before the restart is told every UID that is gone.
#[tokio::test]
async fn disk_store_restart_keeps_highestmodseq_and_reports_every_gone_uid() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("mail");
    let limits = ScriptLimits {
        max_script_size: 1024,
        max_scripts: 1,
    };
    let validity = {
        let (store, _) = crate::store::disk::open(&dir, None, limits).unwrap();
        store.ensure_user(ALICE);
        for _ in 0..4 {
            store
                .append(ALICE, "INBOX", b"m\r\n".to_vec(), BTreeSet::new(), None)
                .unwrap();
        }
        store.expunge(ALICE, "INBOX", &[2]).unwrap();
        assert_eq!(store.status(ALICE, "INBOX").unwrap().highest_modseq, 6);
        store.status(ALICE, "INBOX").unwrap().uid_validity
    };
    let (store, _) = crate::store::disk::open(&dir, None, limits).unwrap();
    let s = setup_with_store(plaintext_config(), Arc::new(store));
    let (mut c, _) = Client::connect(&s.ctx).await;
    c.login().await;
    c.cmd("a", "ENABLE QRESYNC").await;
    let reply = c
        .cmd("b", &format!("SELECT INBOX (QRESYNC ({validity} 2))"))
        .await;
    assert!(
        reply.ends_with(
            "* OK [HIGHESTMODSEQ 6] Highest\r\n* VANISHED (EARLIER) 2\r\n\
             * 2 FETCH (UID 3 FLAGS () MODSEQ (4))\r\n* 3 FETCH (UID 4 FLAGS () MODSEQ (5))\r\n\
             b OK [READ-WRITE] Select completed.\r\n"
        ),
        "{reply}"
    );
    assert_eq!(
        c.cmd("c", "UID STORE 4 +FLAGS (\\Seen)").await,
        "* 3 FETCH (FLAGS (\\Seen) UID 4 MODSEQ (7))\r\nc OK Store completed.\r\n",
        "the modseq keeps increasing after the restart"
    );
}

#[tokio::test]
async fn vanished_earlier_from_remembered_expunges() {
    let s = setup(plaintext_config());
    for _ in 0..4 {
        deliver(&s.ctx, MAIL);
    }
    s.ctx.store.expunge(ALICE, "INBOX", &[2]).unwrap();
    let validity = s.ctx.store.status(ALICE, "INBOX").unwrap().uid_validity;
    let (mut c, _) = Client::connect(&s.ctx).await;
    c.login().await;
    c.cmd("a", "ENABLE QRESYNC").await;
    // Every expunge of this mailbox is remembered with its modseq (6): a client that saw it
    // is told nothing, one from before is told the UID.
    let reply = c
        .cmd("b", &format!("SELECT INBOX (QRESYNC ({validity} 6))"))
        .await;
    assert!(!reply.contains("VANISHED"), "{reply}");
    let reply = c
        .cmd("c", &format!("SELECT INBOX (QRESYNC ({validity} 5 1:4))"))
        .await;
    assert!(reply.contains("* VANISHED (EARLIER) 2\r\n"), "{reply}");
    let reply = c
        .cmd("d", &format!("SELECT INBOX (QRESYNC ({validity} 5 3:4))"))
        .await;
    assert!(
        !reply.contains("VANISHED"),
        "not among the known UIDs: {reply}"
    );
}

#[tokio::test]
async fn malformed_condstore_arguments_are_refused() {
    let s = setup(plaintext_config());
    deliver(&s.ctx, MAIL);
    let (mut c, _) = Client::connect(&s.ctx).await;
    c.login().await;
    c.cmd("a", "ENABLE QRESYNC").await;
    for (tag, command, name) in [
        ("b", "SELECT INBOX (QRESYNC (0 0))", "SELECT"),
        ("c", "SELECT INBOX (QRESYNC)", "SELECT"),
        ("d", "STATUS INBOX (HIGHESTMODSEQ", "STATUS"),
    ] {
        assert_eq!(
            c.cmd(tag, command).await,
            format!("{tag} BAD Error in IMAP command {name}: invalid arguments.\r\n")
        );
    }
    c.cmd("e", "SELECT INBOX").await;
    for (tag, command, name) in [
        ("f", "FETCH 1 (FLAGS) (CHANGEDSINCE 0)", "FETCH"),
        ("g", "STORE 1 (UNCHANGEDSINCE x) +FLAGS (\\Seen)", "STORE"),
        ("h", "SEARCH MODSEQ", "SEARCH"),
    ] {
        assert_eq!(
            c.cmd(tag, command).await,
            format!("{tag} BAD Error in IMAP command {name}: invalid arguments.\r\n")
        );
    }
    // The session goes on.
    assert_eq!(
        c.cmd("i", "FETCH 1 (MODSEQ)").await,
        "* 1 FETCH (MODSEQ (2))\r\ni OK Fetch completed.\r\n"
    );
}
