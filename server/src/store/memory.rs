//! In-memory store (placeholder until implemented).

use std::collections::BTreeSet;

use tokio::sync::broadcast;

use super::{MailStore, MailboxStatus, StoreError, StoreEvent, StoredMessage};

#[derive(Default)]
pub struct MemoryStore {}

impl MemoryStore {
    pub fn new() -> Self {
        Self {}
    }
}

impl MailStore for MemoryStore {
    fn ensure_user(&self, _user: &str) {
        todo!()
    }
    fn list_mailboxes(&self, _user: &str) -> Vec<String> {
        todo!()
    }
    fn create_mailbox(&self, _user: &str, _mailbox: &str) -> Result<(), StoreError> {
        todo!()
    }
    fn status(&self, _user: &str, _mailbox: &str) -> Result<MailboxStatus, StoreError> {
        todo!()
    }
    fn append(
        &self,
        _user: &str,
        _mailbox: &str,
        _data: Vec<u8>,
        _flags: BTreeSet<String>,
        _internal_date: Option<i64>,
    ) -> Result<u32, StoreError> {
        todo!()
    }
    fn messages(&self, _user: &str, _mailbox: &str) -> Result<Vec<StoredMessage>, StoreError> {
        todo!()
    }
    fn set_flags(
        &self,
        _user: &str,
        _mailbox: &str,
        _uid: u32,
        _flags: BTreeSet<String>,
    ) -> Result<(), StoreError> {
        todo!()
    }
    fn expunge(&self, _user: &str, _mailbox: &str, _uids: &[u32]) -> Result<Vec<u32>, StoreError> {
        todo!()
    }
    fn subscribe(&self, _user: &str) -> broadcast::Receiver<StoreEvent> {
        todo!()
    }
}
