//! CONDSTORE and QRESYNC (RFC 7162): ENABLE, the QRESYNC parameter of SELECT/EXAMINE, and the
//! VANISHED (EARLIER) answer shared with `UID FETCH (CHANGEDSINCE n VANISHED)`.

use std::collections::HashSet;

use imap_codec::imap_types::command::SelectParameter;
use imap_codec::imap_types::extensions::enable::CapabilityEnable;
use imap_codec::imap_types::sequence::SequenceSet;

use crate::imap::response::{self, flag_list, sequence_set};
use crate::imap::session::Session;
use crate::store::{MailStore, StoreError, StoredMessage};

/// A QRESYNC parameter of SELECT/EXAMINE, as this module uses it.
pub struct Qresync<'a> {
    pub uid_validity: u32,
    pub modseq: u64,
    /// The UIDs the client knows of; `None` is all of them.
    pub known_uids: Option<&'a SequenceSet>,
}

/// The QRESYNC parameter among SELECT/EXAMINE parameters, if any.
pub fn qresync_parameter(parameters: &[SelectParameter]) -> Option<Qresync<'_>> {
    parameters.iter().find_map(|p| match p {
        SelectParameter::QResync {
            uid_validity,
            mod_sequence_value,
            known_uids,
            // A hint to narrow VANISHED when the store forgot old expunges; every UID that
            // may have vanished is reported instead, which RFC 7162 3.2.5.2 allows.
            seq_match_data: _,
        } => Some(Qresync {
            uid_validity: uid_validity.get(),
            modseq: mod_sequence_value.get(),
            known_uids: known_uids.as_ref(),
        }),
        SelectParameter::CondStore => None,
    })
}

/// A UID set as sorted, merged inclusive ranges (`*` being `largest`), so membership is a
/// binary search: a client's set of thousands of ranges against thousands of UIDs stays cheap.
pub struct UidRanges(Vec<(u32, u32)>);

impl UidRanges {
    pub fn new(set: &SequenceSet, largest: u32) -> Self {
        use imap_codec::imap_types::sequence::{SeqOrUid, Sequence};
        let value = |v: &SeqOrUid| match v {
            SeqOrUid::Value(n) => n.get(),
            SeqOrUid::Asterisk => largest,
        };
        let mut ranges: Vec<(u32, u32)> = set
            .0
            .as_ref()
            .iter()
            .map(|s| match s {
                Sequence::Single(v) => (value(v), value(v)),
                Sequence::Range(a, b) => {
                    let (a, b) = (value(a), value(b));
                    (a.min(b), a.max(b))
                }
            })
            .collect();
        ranges.sort_unstable();
        let mut merged: Vec<(u32, u32)> = Vec::with_capacity(ranges.len());
        for (low, high) in ranges {
            match merged.last_mut() {
                Some(last) if low <= last.1.saturating_add(1) => last.1 = last.1.max(high),
                _ => merged.push((low, high)),
            }
        }
        Self(merged)
    }

    pub fn contains(&self, uid: u32) -> bool {
        let i = self.0.partition_point(|&(low, _)| low <= uid);
        i > 0 && self.0[i - 1].1 >= uid
    }
}

/// UIDs expunged after `since` among those `within` names (all when `None`), ascending. When
/// the store no longer remembers that far back, every UID below `uid_next` that is not in
/// `messages` is reported: the client may have known any of them.
pub fn vanished_since(
    store: &dyn MailStore,
    user: &str,
    mailbox: &str,
    since: u64,
    within: Option<&SequenceSet>,
    messages: &[StoredMessage],
    uid_next: u32,
) -> Result<Vec<u32>, StoreError> {
    let ranges = within.map(|set| UidRanges::new(set, uid_next.saturating_sub(1)));
    let inside = |uid: u32| ranges.as_ref().is_none_or(|r| r.contains(uid));
    let uids = match store.expunged_since(user, mailbox, since)? {
        Some(uids) => uids.into_iter().filter(|&u| inside(u)).collect(),
        None => {
            let present: HashSet<u32> = messages.iter().map(|m| m.uid).collect();
            (1..uid_next)
                .filter(|u| !present.contains(u) && inside(*u))
                .collect()
        }
    };
    Ok(uids)
}

impl Session {
    /// Turns CONDSTORE on for the rest of the session (RFC 7162 3.1: ENABLE CONDSTORE, SELECT
    /// (CONDSTORE), and the first use of MODSEQ, CHANGEDSINCE or UNCHANGEDSINCE).
    pub(in crate::imap) fn enable_condstore(&mut self) {
        self.condstore = true;
        if let Some(sel) = self.selected.as_mut() {
            sel.condstore = true;
        }
    }

    /// RFC 5161 ENABLE: CONDSTORE and QRESYNC (which implies CONDSTORE); other names are
    /// ignored, as the RFC asks. `ENABLED` lists what this command turned on. Only before
    /// SELECT (authenticated state), so a selected mailbox never changes its reporting midway.
    pub(in crate::imap) fn enable(&mut self, tag: &str, requested: &[CapabilityEnable<'_>]) {
        if self.selected.is_some() {
            tracing::info!(peer = ?self.peer, "IMAP ENABLE while a mailbox is selected refused");
            return self.bad(tag, "ENABLE is not allowed while a mailbox is selected.");
        }
        let mut enabled = Vec::new();
        for cap in requested {
            let name = cap.to_string().to_ascii_uppercase();
            match name.as_str() {
                "CONDSTORE" if !self.condstore => {
                    self.enable_condstore();
                    enabled.push("CONDSTORE");
                }
                "QRESYNC" if !self.qresync => {
                    self.qresync = true;
                    if !self.condstore {
                        self.enable_condstore();
                    }
                    enabled.push("QRESYNC");
                }
                _ => {}
            }
        }
        tracing::debug!(peer = ?self.peer, enabled = ?enabled, "IMAP ENABLE");
        let line = if enabled.is_empty() {
            "ENABLED".to_string()
        } else {
            format!("ENABLED {}", enabled.join(" "))
        };
        response::untagged(&mut self.out, &line);
        self.ok(tag, "ENABLE completed.");
    }

    /// After a SELECT with QRESYNC whose UIDVALIDITY matches: `VANISHED (EARLIER)` for what
    /// was expunged since the client's modseq, then FETCH for every message changed since.
    pub(in crate::imap) fn qresync_select(
        &mut self,
        q: &Qresync<'_>,
        messages: &[StoredMessage],
        uid_next: u32,
    ) -> Result<(), StoreError> {
        let (Some(user), Some(sel)) = (self.user.clone(), self.selected.as_ref()) else {
            return Ok(());
        };
        let name = sel.name.clone();
        let store = self.ctx.store.clone();
        let vanished = vanished_since(
            store.as_ref(),
            &user,
            &name,
            q.modseq,
            q.known_uids,
            messages,
            uid_next,
        )?;
        if !vanished.is_empty() {
            let set = sequence_set(&vanished);
            response::untagged(&mut self.out, &format!("VANISHED (EARLIER) {set}"));
        }
        let known_uids = q
            .known_uids
            .map(|set| UidRanges::new(set, uid_next.saturating_sub(1)));
        for (i, m) in messages.iter().enumerate() {
            let known = known_uids.as_ref().is_none_or(|r| r.contains(m.uid));
            if m.modseq <= q.modseq || !known {
                continue;
            }
            let recent = sel.recent.contains(&m.uid);
            let line = format!(
                "{} FETCH (UID {} FLAGS {} MODSEQ ({}))",
                i + 1,
                m.uid,
                flag_list(&m.flags, recent),
                m.modseq
            );
            response::untagged(&mut self.out, &line);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_ranges_merge_and_answer_membership() {
        let set: SequenceSet = "9,1:3,4,20:*,7:6".parse().unwrap();
        let r = UidRanges::new(&set, 25);
        assert_eq!(r.0, vec![(1, 4), (6, 7), (9, 9), (20, 25)]);
        let inside: Vec<u32> = (0..30).filter(|&u| r.contains(u)).collect();
        assert_eq!(inside, vec![1, 2, 3, 4, 6, 7, 9, 20, 21, 22, 23, 24, 25]);
    }
}
