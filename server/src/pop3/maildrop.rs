//! The maildrop of one POP3 session: a snapshot of INBOX taken at login (RFC 1939 keeps message
//! numbers and sizes fixed for the whole session), deletion marks applied to the store only in
//! the UPDATE state, the wire form of messages (CRLF, dot-stuffed), and the per-user lock that
//! keeps a second session out.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use crate::store::{MailStore, StoreError};

/// The only mailbox POP3 sees.
pub const INBOX: &str = "INBOX";

/// One message of the snapshot.
#[derive(Debug, Clone)]
struct Message {
    uid: u32,
    data: Arc<Vec<u8>>,
    /// Octets as sent: CRLF line ends, a final CRLF, no dot-stuffing.
    size: u64,
    deleted: bool,
}

/// Why a message-number command is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("no such message")]
    NoSuchMessage,
    #[error("message {0} is deleted")]
    Deleted(u64),
}

/// INBOX as it was at login, with this session's deletion marks.
#[derive(Debug, Clone)]
pub struct Maildrop {
    user: String,
    uid_validity: u32,
    messages: Vec<Message>,
}

impl Maildrop {
    /// A snapshot of `user`'s INBOX (created if absent), in UID order.
    pub fn load(store: &dyn MailStore, user: &str) -> Result<Self, StoreError> {
        store.ensure_user(user);
        let status = store.status(user, INBOX)?;
        let messages = store
            .messages(user, INBOX)?
            .into_iter()
            .map(|m| Message {
                uid: m.uid,
                size: wire_size(&m.data),
                data: m.data,
                deleted: false,
            })
            .collect();
        Ok(Self {
            user: user.to_string(),
            uid_validity: status.uid_validity,
            messages,
        })
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    /// Messages not marked deleted, and their total size (STAT).
    pub fn stat(&self) -> (usize, u64) {
        self.live()
            .fold((0, 0), |(n, size), (_, m)| (n + 1, size + m.size))
    }

    /// The size of one message (LIST n).
    pub fn size(&self, number: u64) -> Result<u64, MessageError> {
        Ok(self.get(number)?.size)
    }

    /// `(number, size)` of every message not marked deleted (LIST).
    pub fn sizes(&self) -> Vec<(usize, u64)> {
        self.live().map(|(n, m)| (n, m.size)).collect()
    }

    /// The unique id of one message (UIDL n).
    pub fn unique_id(&self, number: u64) -> Result<String, MessageError> {
        Ok(self.uid_string(self.get(number)?.uid))
    }

    /// `(number, unique id)` of every message not marked deleted (UIDL).
    pub fn unique_ids(&self) -> Vec<(usize, String)> {
        self.live()
            .map(|(n, m)| (n, self.uid_string(m.uid)))
            .collect()
    }

    /// The message for RETR (`lines: None`) or TOP: its size as announced, and its dot-stuffed
    /// wire form without the terminating `.` line.
    pub fn fetch(&self, number: u64, lines: Option<u64>) -> Result<(u64, Vec<u8>), MessageError> {
        let m = self.get(number)?;
        Ok((m.size, stuffed(&m.data, lines)))
    }

    /// Marks a message deleted (DELE).
    pub fn delete(&mut self, number: u64) -> Result<(), MessageError> {
        self.get(number)?;
        if let Some(m) = self.index(number).and_then(|i| self.messages.get_mut(i)) {
            m.deleted = true;
        }
        Ok(())
    }

    /// Unmarks every message (RSET).
    pub fn reset(&mut self) {
        for m in &mut self.messages {
            m.deleted = false;
        }
    }

    /// UIDs of the messages marked deleted, for the UPDATE state.
    pub fn deleted_uids(&self) -> Vec<u32> {
        self.messages
            .iter()
            .filter(|m| m.deleted)
            .map(|m| m.uid)
            .collect()
    }

    /// Stable across sessions (RFC 1939 7: the same message keeps its id), printable (0x21 to
    /// 0x7E): the mailbox's UIDVALIDITY and the message's UID.
    fn uid_string(&self, uid: u32) -> String {
        format!("{}.{uid}", self.uid_validity)
    }

    fn index(&self, number: u64) -> Option<usize> {
        let i = usize::try_from(number).ok()?.checked_sub(1)?;
        (i < self.messages.len()).then_some(i)
    }

    fn get(&self, number: u64) -> Result<&Message, MessageError> {
        let m = self
            .index(number)
            .and_then(|i| self.messages.get(i))
            .ok_or(MessageError::NoSuchMessage)?;
        if m.deleted {
            return Err(MessageError::Deleted(number));
        }
        Ok(m)
    }

    fn live(&self) -> impl Iterator<Item = (usize, &Message)> {
        self.messages
            .iter()
            .enumerate()
            .filter(|(_, m)| !m.deleted)
            .map(|(i, m)| (i + 1, m))
    }
}

/// The UPDATE state: removes `uids` from `user`'s INBOX; returns how many were there.
pub fn commit(store: &dyn MailStore, user: &str, uids: &[u32]) -> Result<usize, StoreError> {
    if uids.is_empty() {
        return Ok(0);
    }
    Ok(store.expunge(user, INBOX, uids)?.len())
}

/// Lines of `data`, each without its line end (LF, or CRLF); a last line without one counts.
fn lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let body = data.strip_suffix(b"\n").unwrap_or(data);
    let empty = data.is_empty();
    body.split(|&b| b == b'\n')
        .filter(move |_| !empty)
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
}

/// Octets of `data` as sent: every line ended by CRLF (a missing final one added).
pub fn wire_size(data: &[u8]) -> u64 {
    lines(data).map(|l| l.len() as u64 + 2).sum()
}

/// The wire form of `data` (CRLF line ends, lines starting with `.` doubled, RFC 1939 3),
/// without the terminating `.` line. With `body_lines` (TOP): the header, the blank line and at
/// most that many lines of the body.
pub fn stuffed(data: &[u8], body_lines: Option<u64>) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 32 + 2);
    let mut in_body = false;
    let mut body_sent = 0u64;
    for line in lines(data) {
        if in_body && body_lines.is_some_and(|k| body_sent >= k) {
            break;
        }
        if line.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
        if in_body {
            body_sent += 1;
        } else if line.is_empty() {
            in_body = true;
        }
    }
    out
}

/// The users whose maildrop a session holds (RFC 1939 8: an exclusive-access lock).
#[derive(Debug, Default)]
pub struct MaildropLocks {
    held: Mutex<HashSet<String>>,
}

impl MaildropLocks {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The lock of `user`'s maildrop, unless another session holds it.
    pub fn try_lock(self: &Arc<Self>, user: &str) -> Option<MaildropLock> {
        let key = user.to_ascii_lowercase();
        // A poisoned set is still a correct set: inserts and removes are single calls.
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if !held.insert(key.clone()) {
            return None;
        }
        Some(MaildropLock {
            locks: self.clone(),
            key,
        })
    }

    /// Whether any session holds `user`'s maildrop.
    pub fn is_locked(&self, user: &str) -> bool {
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&user.to_ascii_lowercase())
    }
}

/// Held while a session owns a maildrop; dropping it (however the session ends) releases it.
#[derive(Debug)]
pub struct MaildropLock {
    locks: Arc<MaildropLocks>,
    key: String,
}

impl Drop for MaildropLock {
    fn drop(&mut self) {
        self.locks
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.key);
        tracing::debug!(user = %self.key, "POP3 maildrop lock released");
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::store::MemoryStore;

    #[test]
    fn sizes_count_crlf_and_a_missing_final_line_end() {
        assert_eq!(wire_size(b""), 0);
        assert_eq!(wire_size(b"a\r\n"), 3);
        assert_eq!(wire_size(b"a\n"), 3, "LF becomes CRLF");
        assert_eq!(wire_size(b"a"), 3, "final CRLF added");
        assert_eq!(wire_size(b"a\r\nb"), 6);
        assert_eq!(wire_size(b"\r\n\r\n"), 4);
        assert_eq!(wire_size(b"a\nb\r\n\n"), 8);
    }

    #[test]
    fn stuffing_doubles_leading_dots_only() {
        assert_eq!(
            stuffed(b"S: x\r\n\r\n.\r\n..two\r\nmid.dle\r\n.", None),
            b"S: x\r\n\r\n..\r\n...two\r\nmid.dle\r\n..\r\n"
        );
        assert_eq!(stuffed(b"a\nb", None), b"a\r\nb\r\n");
        assert_eq!(stuffed(b"", None), b"");
    }

    #[test]
    fn the_unstuffed_wire_form_has_the_announced_size() {
        for data in [
            &b"H: 1\r\n\r\n.body\r\n"[..],
            b"H: 1\n\n.\n..\nend",
            b"no final line end",
            b"\r\n",
        ] {
            let wire = stuffed(data, None);
            let unstuffed: Vec<u8> = wire
                .split_inclusive(|&b| b == b'\n')
                .flat_map(|l| l.strip_prefix(b".").unwrap_or(l).to_vec())
                .collect();
            assert_eq!(unstuffed.len() as u64, wire_size(data), "{data:?}");
        }
    }

    #[test]
    fn top_sends_header_blank_line_and_k_body_lines() {
        let m = b"A: 1\r\nB: 2\r\n\r\nl1\r\n.l2\r\nl3\r\n";
        assert_eq!(stuffed(m, Some(0)), b"A: 1\r\nB: 2\r\n\r\n");
        assert_eq!(stuffed(m, Some(2)), b"A: 1\r\nB: 2\r\n\r\nl1\r\n..l2\r\n");
        assert_eq!(stuffed(m, Some(99)), stuffed(m, None));
        // No body at all: the header is everything.
        assert_eq!(stuffed(b"A: 1\r\nB: 2", Some(0)), b"A: 1\r\nB: 2\r\n");
    }

    fn store_with(messages: &[&[u8]]) -> MemoryStore {
        let store = MemoryStore::new();
        store.ensure_user("alice@example.com");
        for m in messages {
            store
                .append(
                    "alice@example.com",
                    INBOX,
                    m.to_vec(),
                    BTreeSet::new(),
                    None,
                )
                .expect("append");
        }
        store
    }

    #[test]
    fn numbers_marks_and_commit() {
        let store = store_with(&[b"one\r\n", b"two\r\n", b"three\r\n"]);
        let mut md = Maildrop::load(&store, "alice@example.com").expect("load");
        assert_eq!(md.stat(), (3, 5 + 5 + 7));
        assert_eq!(md.size(0), Err(MessageError::NoSuchMessage));
        assert_eq!(md.size(4), Err(MessageError::NoSuchMessage));
        assert_eq!(md.size(u64::MAX), Err(MessageError::NoSuchMessage));
        md.delete(2).expect("dele");
        assert_eq!(md.delete(2), Err(MessageError::Deleted(2)));
        assert_eq!(md.fetch(2, None), Err(MessageError::Deleted(2)));
        assert_eq!(md.stat(), (2, 12));
        assert_eq!(md.sizes(), [(1, 5), (3, 7)]);
        let ids = md.unique_ids();
        assert_eq!(ids.len(), 2);
        assert!(
            ids.iter()
                .all(|(_, id)| id.bytes().all(|b| (0x21..=0x7e).contains(&b)))
        );
        md.reset();
        assert_eq!(md.stat().0, 3);
        md.delete(1).expect("dele");
        let uids = md.deleted_uids();
        assert_eq!(commit(&store, "alice@example.com", &uids), Ok(1));
        let again = Maildrop::load(&store, "alice@example.com").expect("load");
        assert_eq!(again.stat(), (2, 12));
        assert_eq!(again.unique_id(1), md.unique_id(2), "ids survive sessions");
    }

    #[test]
    fn login_creates_the_inbox() {
        let store = MemoryStore::new();
        let md = Maildrop::load(&store, "new@example.com").expect("load");
        assert_eq!(md.stat(), (0, 0));
    }

    #[test]
    fn one_lock_per_user_released_on_drop() {
        let locks = MaildropLocks::new();
        let first = locks.try_lock("Alice@Example.com").expect("free");
        assert!(locks.try_lock("alice@example.com").is_none());
        assert!(locks.try_lock("bob@example.com").is_some());
        drop(first);
        assert!(!locks.is_locked("alice@example.com"));
        assert!(locks.try_lock("alice@example.com").is_some());
    }
}
