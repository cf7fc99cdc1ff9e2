//! STORE, COPY, MOVE and EXPUNGE (plain and UID forms).

use std::collections::BTreeSet;

use imap_codec::imap_types::command::StoreModifier;
use imap_codec::imap_types::flag::{Flag, StoreResponse, StoreType};
use imap_codec::imap_types::mailbox::Mailbox;
use imap_codec::imap_types::sequence::SequenceSet;

use super::mailbox::{flag_names, mailbox_name};
use crate::imap::response::{self, Status, flag_list, sequence_set};
use crate::imap::selected::{SyncKind, contains};
use crate::imap::session::Session;
use crate::store::{FlagUpdate, StoreError};

/// What a STORE does to each message's flags.
pub struct FlagChange<'a> {
    pub kind: &'a StoreType,
    pub reply: &'a StoreResponse,
    pub flags: &'a [Flag<'a>],
}

impl Session {
    pub(in crate::imap) fn store(
        &mut self,
        tag: &str,
        set: &SequenceSet,
        change: FlagChange<'_>,
        uid: bool,
        modifiers: &[StoreModifier],
    ) {
        let FlagChange { kind, reply, flags } = change;
        let unchanged_since = modifiers
            .iter()
            .map(|m| match m {
                StoreModifier::UnchangedSince(n) => *n,
            })
            .next();
        if unchanged_since.is_some() && self.selected.is_some() {
            // RFC 7162 3.1: a CONDSTORE-enabling command.
            self.enable_condstore();
        }
        let (Some(user), Some(sel)) = (self.user.clone(), self.selected.as_ref()) else {
            return self.bad(tag, "No mailbox selected.");
        };
        if sel.read_only {
            if self.bad_log.allow() {
                tracing::info!(peer = ?self.peer, "IMAP STORE in a read-only mailbox refused");
            }
            return self.no(tag, "Mailbox is read-only.");
        }
        let targets = match sel.resolve(set, uid) {
            Ok(t) => t,
            Err(_) => {
                if self.bad_log.allow() {
                    tracing::info!(peer = ?self.peer, "IMAP STORE: invalid message sequence set");
                }
                return self.bad(tag, "Invalid messageset.");
            }
        };
        let mailbox = sel.name.clone();
        let store = self.ctx.store.clone();
        let messages = match store.messages(&user, &mailbox) {
            Ok(m) => m,
            Err(_) => return self.no(tag, "Mailbox is gone."),
        };
        let given = flag_names(flags);
        let mut missing = false;
        // Messages changed since UNCHANGEDSINCE: left alone, named in [MODIFIED].
        let mut modified = Vec::new();
        for (seq, uid_of) in targets {
            let Ok(i) = messages.binary_search_by_key(&uid_of, |m| m.uid) else {
                missing = true;
                continue;
            };
            let old = &messages[i].flags;
            let new: BTreeSet<String> = match kind {
                StoreType::Replace => given.clone(),
                StoreType::Add => old.union(&given).cloned().collect(),
                StoreType::Remove => old.difference(&given).cloned().collect(),
            };
            // The message's flags and modseq now; with UNCHANGEDSINCE checked even when the
            // flags would not change (RFC 7162 3.1.3).
            let (new, modseq, changed) = if &new != old || unchanged_since.is_some() {
                match store.set_flags_if_unchanged(
                    &user,
                    &mailbox,
                    uid_of,
                    new.clone(),
                    unchanged_since,
                ) {
                    Ok(FlagUpdate::Done { flags, modseq }) => {
                        let changed = modseq != messages[i].modseq;
                        (flags, modseq, changed)
                    }
                    Ok(FlagUpdate::Modified) => {
                        modified.push(if uid {
                            uid_of
                        } else {
                            u32::try_from(seq).unwrap_or(u32::MAX)
                        });
                        continue;
                    }
                    Ok(FlagUpdate::Gone) => {
                        missing = true;
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(peer = ?self.peer, error = %e, "IMAP STORE failed");
                        return self.no(tag, "Store failed.");
                    }
                }
            } else {
                (new, messages[i].modseq, false)
            };
            let recent = self
                .selected
                .as_ref()
                .is_some_and(|s| s.recent.contains(&uid_of));
            let uid_part = if uid {
                format!(" UID {uid_of}")
            } else {
                String::new()
            };
            let modseq_part = self
                .selected
                .as_ref()
                .map(|s| s.modseq_item(modseq))
                .unwrap_or_default();
            if *reply == StoreResponse::Answer {
                response::untagged(
                    &mut self.out,
                    &format!(
                        "{seq} FETCH (FLAGS {}{uid_part}{modseq_part})",
                        flag_list(&new, recent)
                    ),
                );
            } else if changed && !modseq_part.is_empty() {
                // RFC 7162 3.1.3: .SILENT still tells a CONDSTORE client the new modseq.
                let items = format!("{uid_part}{modseq_part}");
                response::untagged(&mut self.out, &format!("{seq} FETCH ({})", items.trim()));
            }
            if let Some(sel) = self.selected.as_mut() {
                sel.note_flags(uid_of, &new);
            }
        }
        self.sync(if uid {
            SyncKind::Full
        } else {
            SyncKind::NoExpunge
        });
        if !modified.is_empty() {
            let code = format!("MODIFIED {}", sequence_set(&modified));
            tracing::debug!(peer = ?self.peer, %code, "IMAP conditional STORE partly refused");
            self.ok_code(tag, &code, "Conditional STORE failed.");
        } else if missing {
            self.no_code(
                tag,
                "EXPUNGEISSUED",
                "Some messages were expunged meanwhile.",
            );
        } else {
            self.ok(tag, "Store completed.");
        }
    }

    /// COPY, or MOVE when `remove` (copy, then expunge the originals).
    pub(in crate::imap) fn copy(
        &mut self,
        tag: &str,
        set: &SequenceSet,
        target: &Mailbox<'_>,
        uid: bool,
        remove: bool,
    ) {
        let verb = if remove { "Move" } else { "Copy" };
        let Some(target) = mailbox_name(target) else {
            return self.bad(tag, "Invalid mailbox name.");
        };
        let (Some(user), Some(sel)) = (self.user.clone(), self.selected.as_ref()) else {
            return self.bad(tag, "No mailbox selected.");
        };
        if remove && sel.read_only {
            if self.bad_log.allow() {
                tracing::info!(peer = ?self.peer, "IMAP MOVE from a read-only mailbox refused");
            }
            return self.no(tag, "Mailbox is read-only.");
        }
        let targets = match sel.resolve(set, uid) {
            Ok(t) => t,
            Err(_) => {
                if self.bad_log.allow() {
                    tracing::info!(peer = ?self.peer, "IMAP COPY: invalid message sequence set");
                }
                return self.bad(tag, "Invalid messageset.");
            }
        };
        let source = sel.name.clone();
        let store = self.ctx.store.clone();
        let status = match store.status(&user, &target) {
            Ok(s) => s,
            Err(StoreError::NoSuchMailbox(_)) => {
                if self.bad_log.allow() {
                    tracing::info!(peer = ?self.peer, mailbox = %target, "IMAP {verb} to a missing mailbox");
                }
                return self.no_code(tag, "TRYCREATE", "Mailbox doesn't exist.");
            }
            Err(e) => {
                if self.bad_log.allow() {
                    tracing::info!(peer = ?self.peer, error = %e, "IMAP {verb} refused");
                }
                return self.no(tag, &format!("{verb} failed."));
            }
        };
        let messages = match store.messages(&user, &source) {
            Ok(m) => m,
            Err(_) => return self.no(tag, "Mailbox is gone."),
        };
        let mut from = Vec::new();
        let mut to = Vec::new();
        for (_, uid_of) in targets {
            let Ok(i) = messages.binary_search_by_key(&uid_of, |m| m.uid) else {
                continue;
            };
            let m = &messages[i];
            // The copy shares the source's bytes.
            match store.append_shared(
                &user,
                &target,
                m.data.clone(),
                m.flags.clone(),
                Some(m.internal_date),
            ) {
                Ok(new_uid) => {
                    from.push(uid_of);
                    to.push(new_uid);
                }
                Err(e) => {
                    // All or nothing (RFC 3501 6.4.7): the copies made so far go again.
                    if let Err(e) = store.expunge(&user, &target, &to) {
                        tracing::error!(peer = ?self.peer, error = %e, "IMAP {verb} rollback failed");
                    }
                    tracing::info!(peer = ?self.peer, error = %e, "IMAP {verb} failed midway, undone");
                    return match e {
                        StoreError::OverQuota { .. } | StoreError::Unavailable(_) => {
                            self.store_error(tag, &e)
                        }
                        _ => self.no(tag, &format!("{verb} failed.")),
                    };
                }
            }
        }
        if from.is_empty() {
            self.sync(SyncKind::Full);
            return self.ok(tag, &format!("{verb} completed."));
        }
        let code = format!(
            "COPYUID {} {} {}",
            status.uid_validity,
            sequence_set(&from),
            sequence_set(&to)
        );
        if remove {
            // RFC 6851: COPYUID goes in an untagged OK before the EXPUNGEs.
            response::status(&mut self.out, "*", Status::Ok, Some(&code), "Moved.");
            if let Err(e) = store.expunge(&user, &source, &from) {
                tracing::warn!(peer = ?self.peer, error = %e, "IMAP MOVE expunge failed");
            }
            self.sync(SyncKind::Full);
            self.ok(tag, "Move completed.");
        } else {
            self.sync(SyncKind::Full);
            self.ok_code(tag, &code, "Copy completed.");
        }
    }

    /// EXPUNGE, or UID EXPUNGE limited to `only` (UIDPLUS).
    pub(in crate::imap) fn expunge(&mut self, tag: &str, only: Option<&SequenceSet>) {
        let (Some(user), Some(sel)) = (self.user.clone(), self.selected.as_ref()) else {
            return self.bad(tag, "No mailbox selected.");
        };
        if sel.read_only {
            if self.bad_log.allow() {
                tracing::info!(peer = ?self.peer, "IMAP EXPUNGE in a read-only mailbox refused");
            }
            return self.no(tag, "Mailbox is read-only.");
        }
        let mailbox = sel.name.clone();
        let largest = sel.uids.last().copied().unwrap_or(0);
        let store = self.ctx.store.clone();
        let messages = match store.messages(&user, &mailbox) {
            Ok(m) => m,
            Err(_) => return self.no(tag, "Mailbox is gone."),
        };
        let deleted: Vec<u32> = messages
            .iter()
            .filter(|m| m.flags.contains("\\Deleted"))
            .filter(|m| {
                only.is_none_or(|set| set.0.as_ref().iter().any(|s| contains(s, m.uid, largest)))
            })
            .map(|m| m.uid)
            .collect();
        if let Err(e) = store.expunge(&user, &mailbox, &deleted) {
            tracing::warn!(peer = ?self.peer, error = %e, "IMAP EXPUNGE failed");
            return self.no(tag, "Expunge failed.");
        }
        self.sync(SyncKind::Full);
        self.ok(tag, "Expunge completed.");
    }
}
