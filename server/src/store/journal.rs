//! What a durable store must commit before the in-memory index applies a change: the
//! [`MemoryStore`](super::MemoryStore) calls [`Journal::commit`] under its lock and applies the
//! change only once it returns `Ok`, so nothing is acknowledged before it is durable and the
//! index never holds what the disk lacks.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::{StoreError, StoredMessage};

/// One change, with user keys lower-cased and `INBOX` upper-cased (the index's own keys).
#[derive(Debug)]
pub enum Change<'a> {
    /// A new mailbox.
    CreateMailbox {
        user: &'a str,
        mailbox: &'a str,
        uid_validity: u32,
    },
    /// A new message; the mailbox's next UID becomes `uid + 1`, its HIGHESTMODSEQ `modseq`.
    Append {
        user: &'a str,
        mailbox: &'a str,
        uid: u32,
        modseq: u64,
        flags: &'a BTreeSet<String>,
        internal_date: i64,
        data: &'a Arc<Vec<u8>>,
    },
    /// New flags; the message's and the mailbox's modseq become `modseq`.
    Flags {
        user: &'a str,
        mailbox: &'a str,
        uid: u32,
        modseq: u64,
        flags: &'a BTreeSet<String>,
    },
    /// The mailbox and every message in it.
    DeleteMailbox { user: &'a str, mailbox: &'a str },
    /// One mailbox (not INBOX) gets a new name; its messages and UIDs go with it.
    RenameMailbox {
        user: &'a str,
        from: &'a str,
        to: &'a str,
    },
    Subscribe {
        user: &'a str,
        mailbox: &'a str,
        on: bool,
    },
    /// UIDs that exist in the mailbox; the mailbox's HIGHESTMODSEQ becomes `modseq`.
    Expunge {
        user: &'a str,
        mailbox: &'a str,
        modseq: u64,
        uids: &'a [u32],
    },
}

/// A durable log of changes (see [`super::disk`]).
pub trait Journal: Send + Sync {
    /// Makes `change` durable (committed and synced) or fails without a trace of it.
    fn commit(&self, change: &Change<'_>) -> Result<(), StoreError>;
}

/// One mailbox as read back from a journal at start-up.
#[derive(Debug)]
pub struct RestoredMailbox {
    pub user: String,
    pub mailbox: String,
    pub uid_validity: u32,
    pub uid_next: u32,
    /// HIGHESTMODSEQ (at least every message's modseq).
    pub highest_modseq: u64,
    /// Ordered by UID.
    pub messages: Vec<StoredMessage>,
}
