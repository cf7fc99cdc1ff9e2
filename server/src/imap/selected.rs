//! The selected mailbox as this session sees it: sequence numbers, cached flags, and how it is
//! brought up to date with the shared store (other sessions, SMTP delivery).

use std::collections::{BTreeSet, HashMap};

use imap_codec::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};

use super::response::{self, flag_list};
use crate::store::{MailStore, StoreError, StoredMessage};

pub struct Selected {
    /// Store name (INBOX normalized).
    pub name: String,
    pub read_only: bool,
    /// UIDs by sequence number (index + 1).
    pub uids: Vec<u32>,
    /// Flags last reported to the client, to notice changes made elsewhere.
    flags: HashMap<u32, BTreeSet<String>>,
    /// `\Recent` messages of this session.
    pub recent: BTreeSet<u32>,
    /// CONDSTORE is on (RFC 7162): unsolicited FETCH responses carry MODSEQ.
    pub condstore: bool,
    /// QRESYNC is on: expunges are reported as `VANISHED` UIDs, not `EXPUNGE` numbers.
    pub qresync: bool,
}

/// What a sync may report: EXPUNGE responses are forbidden during FETCH, STORE and SEARCH
/// (RFC 3501 section 7.4.1), because sequence numbers would shift under the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncKind {
    Full,
    NoExpunge,
}

/// A sequence set that names messages that do not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadSequence;

impl Selected {
    /// A fresh view; `recent` are the UIDs this session claimed.
    pub fn new(
        name: String,
        read_only: bool,
        messages: &[StoredMessage],
        recent: BTreeSet<u32>,
    ) -> Self {
        Self {
            name,
            read_only,
            uids: messages.iter().map(|m| m.uid).collect(),
            flags: messages.iter().map(|m| (m.uid, m.flags.clone())).collect(),
            recent,
            condstore: false,
            qresync: false,
        }
    }

    /// Records flags the client was told about (after its own STORE or FETCH).
    pub fn note_flags(&mut self, uid: u32, flags: &BTreeSet<String>) {
        self.flags.insert(uid, flags.clone());
    }

    /// Reads the store and writes the untagged updates (EXPUNGE, EXISTS, RECENT, FETCH FLAGS).
    /// Returns the current messages, ordered by UID.
    pub fn sync(
        &mut self,
        store: &dyn MailStore,
        user: &str,
        kind: SyncKind,
        out: &mut Vec<u8>,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let messages = store.messages(user, &self.name)?;
        let present: HashMap<u32, &StoredMessage> = messages.iter().map(|m| (m.uid, m)).collect();
        if kind == SyncKind::Full {
            let mut vanished = Vec::new();
            // Highest sequence number first, so the numbers sent stay valid one after another.
            for seq in (1..=self.uids.len()).rev() {
                let uid = self.uids[seq - 1];
                if !present.contains_key(&uid) {
                    if self.qresync {
                        vanished.push(uid);
                    } else {
                        response::untagged(out, &format!("{seq} EXPUNGE"));
                    }
                    self.uids.remove(seq - 1);
                    self.flags.remove(&uid);
                    self.recent.remove(&uid);
                }
            }
            if !vanished.is_empty() {
                // RFC 7162 3.2.10: one response for all, by UID.
                let set = response::sequence_set(&vanished);
                response::untagged(out, &format!("VANISHED {set}"));
            }
        }
        let last = self.uids.last().copied().unwrap_or(0);
        let new: Vec<&StoredMessage> = messages.iter().filter(|m| m.uid > last).collect();
        if !new.is_empty() {
            if !self.read_only {
                let claimed = store.take_recent(user, &self.name).unwrap_or_default();
                self.recent.extend(claimed);
            }
            for m in &new {
                self.uids.push(m.uid);
                self.flags.insert(m.uid, m.flags.clone());
            }
            response::untagged(out, &format!("{} EXISTS", self.uids.len()));
            response::untagged(out, &format!("{} RECENT", self.recent.len()));
        }
        for (i, uid) in self.uids.iter().enumerate() {
            let Some(m) = present.get(uid) else { continue };
            if self.flags.get(uid) != Some(&m.flags) {
                let flags = flag_list(&m.flags, self.recent.contains(uid));
                let modseq = self.modseq_item(m.modseq);
                // With QRESYNC the UID goes along, so clients can match without numbers.
                let uid_item = if self.qresync {
                    format!(" UID {uid}")
                } else {
                    String::new()
                };
                response::untagged(
                    out,
                    &format!("{} FETCH (FLAGS {flags}{uid_item}{modseq})", i + 1),
                );
                self.flags.insert(*uid, m.flags.clone());
            }
        }
        Ok(messages)
    }

    /// ` MODSEQ (n)` to append to a FETCH response once CONDSTORE is on, else nothing.
    pub fn modseq_item(&self, modseq: u64) -> String {
        if self.condstore {
            format!(" MODSEQ ({modseq})")
        } else {
            String::new()
        }
    }

    /// The (sequence number, UID) pairs a set names, ascending. With sequence numbers, a
    /// number beyond the mailbox is an error; UIDs that do not exist are simply skipped.
    pub fn resolve(&self, set: &SequenceSet, uid: bool) -> Result<Vec<(usize, u32)>, BadSequence> {
        let mut wanted = BTreeSet::new();
        if uid {
            let largest = self.uids.last().copied().unwrap_or(0);
            for (i, &u) in self.uids.iter().enumerate() {
                if set.0.as_ref().iter().any(|s| contains(s, u, largest)) {
                    wanted.insert((i + 1, u));
                }
            }
            return Ok(wanted.into_iter().collect());
        }
        let largest = u32::try_from(self.uids.len()).unwrap_or(u32::MAX);
        // `1:*` on an empty mailbox names nothing; clients send it blindly, so no error.
        let star = |v: &SeqOrUid| *v == SeqOrUid::Asterisk;
        let has_star = set.0.as_ref().iter().any(|s| match s {
            Sequence::Single(v) => star(v),
            Sequence::Range(a, b) => star(a) || star(b),
        });
        if largest == 0 && has_star {
            return Ok(Vec::new());
        }
        for seq in set.0.as_ref() {
            let (low, high) = bounds(seq, largest);
            if low == 0 || high > largest {
                return Err(BadSequence);
            }
            for n in low..=high {
                let index = n as usize - 1;
                if let Some(&u) = self.uids.get(index) {
                    wanted.insert((n as usize, u));
                }
            }
        }
        Ok(wanted.into_iter().collect())
    }
}

fn value(v: &SeqOrUid, largest: u32) -> u32 {
    match v {
        SeqOrUid::Value(n) => n.get(),
        SeqOrUid::Asterisk => largest,
    }
}

/// Inclusive bounds of one element, `*` being `largest` (ranges may be written backwards).
fn bounds(seq: &Sequence, largest: u32) -> (u32, u32) {
    match seq {
        Sequence::Single(v) => {
            let v = value(v, largest);
            (v, v)
        }
        Sequence::Range(a, b) => {
            let (a, b) = (value(a, largest), value(b, largest));
            (a.min(b), a.max(b))
        }
    }
}

/// Whether `n` is in one element of a set.
pub fn contains(seq: &Sequence, n: u32, largest: u32) -> bool {
    let (low, high) = bounds(seq, largest);
    (low..=high).contains(&n)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::store::MemoryStore;

    fn set(s: &str) -> SequenceSet {
        s.parse().unwrap()
    }

    fn store_with(n: usize) -> MemoryStore {
        let store = MemoryStore::new();
        store.ensure_user("u");
        for _ in 0..n {
            store
                .append("u", "INBOX", b"x".to_vec(), BTreeSet::new(), None)
                .unwrap();
        }
        store
    }

    fn view(store: &MemoryStore) -> Selected {
        let msgs = store.messages("u", "INBOX").unwrap();
        let recent = store.take_recent("u", "INBOX").unwrap();
        Selected::new("INBOX".into(), false, &msgs, recent)
    }

    #[test]
    fn resolves_sequence_numbers_and_uids() {
        let store = store_with(5);
        store.expunge("u", "INBOX", &[2]).unwrap();
        let v = view(&store);
        assert_eq!(v.uids, vec![1, 3, 4, 5]);
        assert_eq!(v.resolve(&set("2:3"), false), Ok(vec![(2, 3), (3, 4)]));
        assert_eq!(v.resolve(&set("*"), false), Ok(vec![(4, 5)]));
        assert_eq!(v.resolve(&set("5"), false), Err(BadSequence));
        assert_eq!(v.resolve(&set("2:4"), true), Ok(vec![(2, 3), (3, 4)]));
        assert_eq!(v.resolve(&set("9:*"), true), Ok(vec![(4, 5)]), "9:* is 5:9");
        assert_eq!(v.resolve(&set("1:4294967295"), true).unwrap().len(), 4);
    }

    #[test]
    fn empty_mailbox() {
        let store = store_with(0);
        let v = view(&store);
        assert_eq!(v.resolve(&set("1:*"), true), Ok(vec![]));
        assert_eq!(v.resolve(&set("1:*"), false), Ok(vec![]));
        assert_eq!(v.resolve(&set("1"), false), Err(BadSequence));
    }

    #[test]
    fn sync_reports_changes_made_elsewhere() {
        let store = Arc::new(store_with(3));
        let mut v = view(&store);
        store.expunge("u", "INBOX", &[2]).unwrap();
        store
            .append("u", "INBOX", b"y".to_vec(), BTreeSet::new(), None)
            .unwrap();
        store
            .set_flags("u", "INBOX", 3, ["\\Seen".to_string()].into())
            .unwrap();
        let mut out = Vec::new();
        v.sync(store.as_ref(), "u", SyncKind::NoExpunge, &mut out)
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains("EXPUNGE"), "{text}");
        assert!(text.contains("* 4 EXISTS\r\n"), "{text}");
        assert!(text.contains("* 4 RECENT\r\n"), "{text}");
        assert!(
            text.contains("* 3 FETCH (FLAGS (\\Seen \\Recent))\r\n"),
            "{text}"
        );
        let mut out = Vec::new();
        v.sync(store.as_ref(), "u", SyncKind::Full, &mut out)
            .unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "* 2 EXPUNGE\r\n");
        assert_eq!(v.uids, vec![1, 3, 4]);
        let mut out = Vec::new();
        v.sync(store.as_ref(), "u", SyncKind::Full, &mut out)
            .unwrap();
        assert!(out.is_empty(), "nothing new");
    }
}
