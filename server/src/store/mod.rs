//! Mailboxes and messages, behind a trait so a persistent store can replace the in-memory one;
//! per-user Sieve scripts in [`scripts`].

pub mod disk;
pub mod journal;
mod memory;
pub mod scripts;

pub use memory::{DELIMITER, MAX_DEPTH, MemoryStore, validate_name as validate_mailbox_name};
pub use scripts::{ScriptError, ScriptLimits, SieveScripts};

use std::collections::BTreeSet;
use std::sync::Arc;

use tokio::sync::broadcast;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("no mailbox {0:?}")]
    NoSuchMailbox(String),
    #[error("mailbox {0:?} already exists")]
    MailboxExists(String),
    #[error("invalid mailbox name {0:?}")]
    InvalidName(String),
    #[error("message too large ({0} bytes)")]
    TooLarge(usize),
    /// The user's stored bytes would exceed `store.quota_bytes`.
    #[error("quota of {user} exceeded ({needed} bytes needed, {free} free)")]
    OverQuota {
        user: String,
        needed: u64,
        free: u64,
    },
    /// The durable store failed (disk full, I/O error); nothing was changed.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The mailbox has inferiors, or it is INBOX, which cannot be deleted.
    #[error("cannot delete {0:?}")]
    CannotDelete(String),
    #[error("not supported by this store: {0}")]
    Unsupported(String),
}

/// One message as stored. `data` is the exact bytes received (CRLF line ends).
#[derive(Debug, Clone)]
pub struct StoredMessage {
    pub uid: u32,
    /// IMAP flags, e.g. `\Seen`, `\Deleted`, or keywords.
    pub flags: BTreeSet<String>,
    /// Unix seconds when the message was stored.
    pub internal_date: i64,
    pub data: Arc<Vec<u8>>,
    /// RFC 7162 mod-sequence: the mailbox's modseq at this message's last change (append or
    /// flags).
    pub modseq: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailboxStatus {
    pub uid_validity: u32,
    pub uid_next: u32,
    pub exists: u32,
    pub unseen: u32,
    pub recent: u32,
    /// RFC 7162 HIGHESTMODSEQ: the mailbox's latest mod-sequence (1 for a new mailbox).
    pub highest_modseq: u64,
}

/// What a conditional flag change did (STORE UNCHANGEDSINCE, RFC 7162 3.1.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlagUpdate {
    /// The message has these flags at this modseq now (unchanged flags keep their modseq).
    Done {
        flags: BTreeSet<String>,
        modseq: u64,
    },
    /// The message changed after the given modseq: nothing was done.
    Modified,
    /// No such message (expunged meanwhile).
    Gone,
}

/// What changed, for IDLE and (later) JMAP push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreEvent {
    Appended { mailbox: String, uid: u32 },
    FlagsChanged { mailbox: String, uid: u32 },
    Expunged { mailbox: String, uid: u32 },
}

/// Mail storage. Mailbox names are case-sensitive except `INBOX`.
pub trait MailStore: Send + Sync {
    /// Creates the user's INBOX if absent (idempotent). Delivery calls it for new recipients.
    fn ensure_user(&self, user: &str);
    fn list_mailboxes(&self, user: &str) -> Vec<String>;
    fn create_mailbox(&self, user: &str, mailbox: &str) -> Result<(), StoreError>;
    fn status(&self, user: &str, mailbox: &str) -> Result<MailboxStatus, StoreError>;
    /// Stores a message and returns its UID. `internal_date` defaults to now.
    fn append(
        &self,
        user: &str,
        mailbox: &str,
        data: Vec<u8>,
        flags: BTreeSet<String>,
        internal_date: Option<i64>,
    ) -> Result<u32, StoreError>;
    /// Stores a message whose bytes are shared: every recipient and mailbox of one delivery (and
    /// COPY) keeps the same `Arc`, so a message is held once however many copies it has. The
    /// default copies, for stores that cannot share.
    fn append_shared(
        &self,
        user: &str,
        mailbox: &str,
        data: Arc<Vec<u8>>,
        flags: BTreeSet<String>,
        internal_date: Option<i64>,
    ) -> Result<u32, StoreError> {
        self.append(user, mailbox, data.as_ref().clone(), flags, internal_date)
    }
    /// The per-user limit on stored bytes (`store.quota_bytes`); `None` = none.
    fn quota(&self) -> Option<u64> {
        None
    }
    /// Bytes the user's messages take, every mailbox copy counted (what the quota limits).
    fn usage(&self, _user: &str) -> u64 {
        0
    }
    /// Whether the user has no room left at all (SMTP refuses such a recipient at RCPT).
    fn over_quota(&self, user: &str) -> bool {
        self.quota().is_some_and(|q| self.usage(user) >= q)
    }
    /// All messages of a mailbox, ordered by UID (sequence number = index + 1).
    fn messages(&self, user: &str, mailbox: &str) -> Result<Vec<StoredMessage>, StoreError>;
    /// Replaces the flags of one message.
    fn set_flags(
        &self,
        user: &str,
        mailbox: &str,
        uid: u32,
        flags: BTreeSet<String>,
    ) -> Result<(), StoreError>;
    /// Replaces the flags of one message unless its modseq is above `unchanged_since`, in one
    /// step (no change can slip between the check and the update). The default is not atomic,
    /// for stores without mod-sequences.
    fn set_flags_if_unchanged(
        &self,
        user: &str,
        mailbox: &str,
        uid: u32,
        flags: BTreeSet<String>,
        unchanged_since: Option<u64>,
    ) -> Result<FlagUpdate, StoreError> {
        let messages = self.messages(user, mailbox)?;
        let Some(m) = messages.iter().find(|m| m.uid == uid) else {
            return Ok(FlagUpdate::Gone);
        };
        if unchanged_since.is_some_and(|n| m.modseq > n) {
            return Ok(FlagUpdate::Modified);
        }
        self.set_flags(user, mailbox, uid, flags)?;
        let now = self.messages(user, mailbox)?;
        Ok(now
            .into_iter()
            .find(|m| m.uid == uid)
            .map_or(FlagUpdate::Gone, |m| FlagUpdate::Done {
                flags: m.flags,
                modseq: m.modseq,
            }))
    }
    /// UIDs expunged from a mailbox with a modseq above `modseq` (QRESYNC's VANISHED), ascending;
    /// `None` when the store no longer remembers that far back (the caller then reports every
    /// UID it cannot find).
    fn expunged_since(
        &self,
        _user: &str,
        _mailbox: &str,
        _modseq: u64,
    ) -> Result<Option<Vec<u32>>, StoreError> {
        Ok(None)
    }
    /// Removes the given UIDs; returns those that existed, ascending.
    fn expunge(&self, user: &str, mailbox: &str, uids: &[u32]) -> Result<Vec<u32>, StoreError>;
    /// Changes to this user's mailboxes from now on.
    fn subscribe(&self, user: &str) -> broadcast::Receiver<StoreEvent>;
    /// Deletes a mailbox and its messages (never INBOX; not one with inferiors, which this store
    /// cannot keep as `\Noselect`). Subscriptions stay (RFC 3501 6.3.6).
    fn delete_mailbox(&self, _user: &str, mailbox: &str) -> Result<(), StoreError> {
        Err(StoreError::Unsupported(format!("DELETE {mailbox}")))
    }
    /// Renames a mailbox with its inferiors, keeping UIDs and UIDVALIDITY. Renaming INBOX moves
    /// its messages to the new mailbox and leaves INBOX empty (RFC 3501 6.3.5).
    fn rename_mailbox(&self, _user: &str, from: &str, _to: &str) -> Result<(), StoreError> {
        Err(StoreError::Unsupported(format!("RENAME {from}")))
    }
    /// Subscribed mailbox names, sorted (IMAP LSUB).
    fn subscriptions(&self, _user: &str) -> Vec<String> {
        Vec::new()
    }
    /// Adds (an existing mailbox) to or removes a name from the subscriptions.
    fn set_subscribed(&self, _user: &str, mailbox: &str, _on: bool) -> Result<(), StoreError> {
        Err(StoreError::Unsupported(format!("SUBSCRIBE {mailbox}")))
    }
    /// UIDs that arrived since the last call (IMAP `\Recent`, claimed by the SELECTing session).
    /// Stores that do not track it report none.
    fn take_recent(&self, _user: &str, _mailbox: &str) -> Result<BTreeSet<u32>, StoreError> {
        Ok(BTreeSet::new())
    }
}
