//! Mailboxes and messages, behind a trait so a persistent store can replace the in-memory one;
//! per-user Sieve scripts in [`scripts`].

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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailboxStatus {
    pub uid_validity: u32,
    pub uid_next: u32,
    pub exists: u32,
    pub unseen: u32,
    pub recent: u32,
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
    /// Removes the given UIDs; returns those that existed, ascending.
    fn expunge(&self, user: &str, mailbox: &str, uids: &[u32]) -> Result<Vec<u32>, StoreError>;
    /// Changes to this user's mailboxes from now on.
    fn subscribe(&self, user: &str) -> broadcast::Receiver<StoreEvent>;
    /// UIDs that arrived since the last call (IMAP `\Recent`, claimed by the SELECTing session).
    /// Stores that do not track it report none.
    fn take_recent(&self, _user: &str, _mailbox: &str) -> Result<BTreeSet<u32>, StoreError> {
        Ok(BTreeSet::new())
    }
}
