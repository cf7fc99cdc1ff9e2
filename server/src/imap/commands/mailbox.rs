//! Mailbox commands: SELECT/EXAMINE, CREATE, (UN)SUBSCRIBE, LIST/LSUB, STATUS, APPEND, CLOSE.

use std::collections::BTreeSet;

use imap_codec::imap_types::command::SelectParameter;
use imap_codec::imap_types::datetime::DateTime;
use imap_codec::imap_types::extensions::binary::LiteralOrLiteral8;
use imap_codec::imap_types::flag::Flag;
use imap_codec::imap_types::mailbox::{ListMailbox, Mailbox};
use imap_codec::imap_types::status::StatusDataItemName;

use crate::imap::list_pattern::ListPattern;
use crate::imap::response::{self, Status};
use crate::imap::selected::{Selected, SyncKind};
use crate::imap::session::{Event, HeavyFinish, Next, Session};
use crate::store::{DELIMITER, StoreError};

/// Flags clients may set; `\*` in PERMANENTFLAGS adds keywords.
const SYSTEM_FLAGS: &str = "\\Answered \\Flagged \\Deleted \\Seen \\Draft";

/// The store name of a mailbox argument (`INBOX` in any case is the inbox).
pub fn mailbox_name(mailbox: &Mailbox<'_>) -> Option<String> {
    match mailbox {
        Mailbox::Inbox => Some("INBOX".into()),
        Mailbox::Other(other) => {
            let name = std::str::from_utf8(other.as_ref()).ok()?;
            if name.eq_ignore_ascii_case("INBOX") {
                Some("INBOX".into())
            } else {
                Some(name.to_string())
            }
        }
    }
}

/// Flag names as stored (`\Seen`, `$Label1`); `\Recent` cannot be set by clients.
pub fn flag_names(flags: &[Flag<'_>]) -> BTreeSet<String> {
    flags
        .iter()
        .map(|f| f.to_string())
        .filter(|f| !f.eq_ignore_ascii_case("\\Recent"))
        .collect()
}

/// The untagged LIST/LSUB responses for the names matching `pattern` (`inbox_pattern` is its
/// upper-case form: INBOX matches in any case).
/// `listed`: the names to match (all mailboxes, or the subscriptions for LSUB); `names`: every
/// mailbox, for the children attributes.
fn list_responses(
    names: &[String],
    listed: &[String],
    pattern: &ListPattern,
    inbox_pattern: &ListPattern,
    verb: &str,
) -> Vec<u8> {
    // Sorted, so "has children" is one range lookup instead of a scan of every name.
    let sorted: BTreeSet<&str> = names.iter().map(String::as_str).collect();
    let mut out = Vec::new();
    for name in listed {
        let matched = if name == "INBOX" {
            inbox_pattern.matches(b"INBOX")
        } else {
            pattern.matches(name.as_bytes())
        };
        if !matched {
            continue;
        }
        let child_prefix = format!("{name}{DELIMITER}");
        let children = sorted
            .range(child_prefix.as_str()..)
            .next()
            .is_some_and(|n| n.starts_with(&child_prefix));
        let attr = if children {
            "\\HasChildren"
        } else {
            "\\HasNoChildren"
        };
        out.extend_from_slice(format!("* {verb} ({attr}) \"{DELIMITER}\" ").as_bytes());
        response::string(&mut out, name.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

impl Session {
    pub(in crate::imap) fn user_name(&self) -> String {
        self.user.clone().unwrap_or_default()
    }

    pub(in crate::imap) fn name_or_bad(
        &mut self,
        tag: &str,
        mailbox: &Mailbox<'_>,
    ) -> Option<String> {
        let name = mailbox_name(mailbox);
        if name.is_none() {
            if self.bad_log.allow() {
                tracing::info!(peer = ?self.peer, "IMAP mailbox name is not UTF-8");
            }
            self.bad(tag, "Invalid mailbox name.");
        }
        name
    }

    pub(in crate::imap) fn store_error(&mut self, tag: &str, error: &StoreError) {
        if self.bad_log.allow() {
            tracing::info!(peer = ?self.peer, user = ?self.user, error = %error, "IMAP mailbox operation refused");
        }
        match error {
            StoreError::NoSuchMailbox(_) => {
                self.no_code(tag, "NONEXISTENT", "Mailbox doesn't exist.")
            }
            StoreError::MailboxExists(_) => {
                self.no_code(tag, "ALREADYEXISTS", "Mailbox already exists.")
            }
            StoreError::InvalidName(_) => self.no_code(tag, "CANNOT", "Invalid mailbox name."),
            StoreError::TooLarge(_) => self.no_code(tag, "TOOBIG", "Message too large."),
            StoreError::OverQuota { .. } => self.no_code(tag, "OVERQUOTA", "Quota exceeded."),
            StoreError::CannotDelete(_) => self.no_code(
                tag,
                "CANNOT",
                "INBOX, or a mailbox with inferiors, cannot be deleted.",
            ),
            StoreError::Unsupported(_) => self.no_code(tag, "CANNOT", "Not supported."),
            StoreError::Unavailable(_) => self.no_code(
                tag,
                "UNAVAILABLE",
                "Try again later, the store is unavailable.",
            ),
        }
    }

    pub(in crate::imap) fn select(
        &mut self,
        tag: &str,
        mailbox: &Mailbox<'_>,
        read_only: bool,
        parameters: &[SelectParameter],
    ) {
        let qresync = super::condstore::qresync_parameter(parameters);
        if qresync.is_some() && !self.qresync {
            // RFC 7162 3.2.5: QRESYNC must be enabled first; the command is not run.
            tracing::info!(peer = ?self.peer, "IMAP SELECT (QRESYNC) without ENABLE QRESYNC");
            return self.bad(tag, "QRESYNC is not enabled.");
        }
        if parameters.contains(&SelectParameter::CondStore) {
            self.enable_condstore();
        }
        // A failed SELECT leaves no mailbox selected (RFC 3501 6.3.1). RFC 7162 3.2.11: the
        // mailbox closed by this SELECT is marked, so its late responses are told apart.
        if self.selected.take().is_some() {
            response::status(
                &mut self.out,
                "*",
                Status::Ok,
                Some("CLOSED"),
                "Previous mailbox closed.",
            );
        }
        let Some(name) = self.name_or_bad(tag, mailbox) else {
            return;
        };
        let user = self.user_name();
        let store = self.ctx.store.clone();
        let status = match store.status(&user, &name) {
            Ok(s) => s,
            Err(e) => return self.store_error(tag, &e),
        };
        let recent = if read_only {
            BTreeSet::new()
        } else {
            store.take_recent(&user, &name).unwrap_or_default()
        };
        let messages = match store.messages(&user, &name) {
            Ok(m) => m,
            Err(e) => return self.store_error(tag, &e),
        };
        let recent_count = if read_only {
            status.recent as usize
        } else {
            recent.len()
        };
        let mut sel = Selected::new(name.clone(), read_only, &messages, recent);
        sel.condstore = self.condstore;
        sel.qresync = self.qresync;
        let out = &mut self.out;
        response::untagged(out, &format!("FLAGS ({SYSTEM_FLAGS})"));
        let permanent = if read_only {
            "PERMANENTFLAGS ()".to_string()
        } else {
            format!("PERMANENTFLAGS ({SYSTEM_FLAGS} \\*)")
        };
        response::status(out, "*", Status::Ok, Some(&permanent), "Flags permitted.");
        response::untagged(out, &format!("{} EXISTS", messages.len()));
        response::untagged(out, &format!("{recent_count} RECENT"));
        if let Some(i) = messages.iter().position(|m| !m.flags.contains("\\Seen")) {
            let code = format!("UNSEEN {}", i + 1);
            response::status(out, "*", Status::Ok, Some(&code), "First unseen.");
        }
        let code = format!("UIDVALIDITY {}", status.uid_validity);
        response::status(out, "*", Status::Ok, Some(&code), "UIDs valid.");
        let next = messages.last().map_or(status.uid_next, |m| {
            status.uid_next.max(m.uid.saturating_add(1))
        });
        let code = format!("UIDNEXT {next}");
        response::status(out, "*", Status::Ok, Some(&code), "Predicted next UID.");
        // RFC 7162 3.1.2.1: sent on every SELECT/EXAMINE, the store keeps mod-sequences.
        let code = format!("HIGHESTMODSEQ {}", status.highest_modseq);
        response::status(out, "*", Status::Ok, Some(&code), "Highest");
        self.selected = Some(sel);
        if let Some(q) = qresync.filter(|q| q.uid_validity == status.uid_validity)
            && let Err(e) = self.qresync_select(&q, &messages, next)
        {
            self.selected = None;
            return self.store_error(tag, &e);
        }
        tracing::debug!(peer = ?self.peer, mailbox = %name, read_only, "IMAP mailbox selected");
        if read_only {
            self.ok_code(tag, "READ-ONLY", "Examine completed.");
        } else {
            self.ok_code(tag, "READ-WRITE", "Select completed.");
        }
    }

    pub(in crate::imap) fn create(&mut self, tag: &str, mailbox: &Mailbox<'_>) {
        let Some(name) = self.name_or_bad(tag, mailbox) else {
            return;
        };
        // A trailing delimiter only says the name will have children (RFC 3501 6.3.3).
        let name = name.trim_end_matches(DELIMITER).to_string();
        // The whole name first: a refusal must not leave superior mailboxes behind.
        if let Err(e) = crate::store::validate_mailbox_name(&name) {
            return self.store_error(tag, &e);
        }
        let user = self.user_name();
        let store = self.ctx.store.clone();
        // Superior names are created too, so LIST never shows holes in the hierarchy.
        let mut prefix = String::new();
        let parts: Vec<&str> = name.split(DELIMITER).collect();
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                prefix.push(DELIMITER);
            }
            prefix.push_str(part);
            if i + 1 == parts.len() {
                break;
            }
            match store.create_mailbox(&user, &prefix) {
                Ok(()) | Err(StoreError::MailboxExists(_)) => {}
                Err(e) => return self.store_error(tag, &e),
            }
        }
        match store.create_mailbox(&user, &name) {
            Ok(()) => self.ok(tag, "Create completed."),
            Err(e) => self.store_error(tag, &e),
        }
    }

    /// SUBSCRIBE (an existing mailbox) or UNSUBSCRIBE (any name), kept by the store.
    pub(in crate::imap) fn subscribe(&mut self, tag: &str, mailbox: &Mailbox<'_>, on: bool) {
        let Some(name) = self.name_or_bad(tag, mailbox) else {
            return;
        };
        match self.ctx.store.set_subscribed(&self.user_name(), &name, on) {
            Ok(()) => self.ok(tag, "Subscription updated."),
            Err(e) => self.store_error(tag, &e),
        }
    }

    /// LIST/LSUB. Matching every mailbox name is the heavy part: it runs as an [`Event::Heavy`]
    /// off the async workers, and a pattern too complex to match cheaply is refused first.
    pub(in crate::imap) fn list(
        &mut self,
        tag: &str,
        reference: &Mailbox<'_>,
        pattern: &ListMailbox<'_>,
        verb: &'static str,
    ) -> Next {
        let pattern: &[u8] = match pattern {
            ListMailbox::Token(t) => t.as_ref(),
            ListMailbox::String(s) => s.as_ref(),
        };
        let reference = match reference {
            Mailbox::Inbox => b"INBOX".to_vec(),
            Mailbox::Other(o) => o.as_ref().to_vec(),
        };
        if pattern.is_empty() {
            // The hierarchy delimiter and root (RFC 3501 6.3.8).
            response::untagged(
                &mut self.out,
                &format!("{verb} (\\Noselect) \"{DELIMITER}\" \"\""),
            );
            self.ok(tag, &format!("{verb} completed."));
            return Next::Continue;
        }
        let mut full = reference;
        full.extend_from_slice(pattern);
        let compiled = ListPattern::compile(&full)
            .and_then(|p| Ok((p, ListPattern::compile(&full.to_ascii_uppercase())?)));
        let (pattern, inbox_pattern) = match compiled {
            Ok(p) => p,
            Err(e) => {
                if self.bad_log.allow() {
                    tracing::info!(peer = ?self.peer, user = ?self.user, error = %e, "IMAP {verb} pattern refused");
                }
                self.no_code(tag, "LIMIT", "Mailbox pattern too complex.");
                return Next::Continue;
            }
        };
        let store = self.ctx.store.clone();
        let user = self.user_name();
        self.heavy = Some(HeavyFinish::List {
            tag: tag.to_string(),
            verb,
        });
        Next::Event(Event::Heavy(Box::new(move || {
            let names = store.list_mailboxes(&user);
            // LSUB lists the subscribed names (which may outlive their mailbox).
            let listed = if verb == "LSUB" {
                store.subscriptions(&user)
            } else {
                names.clone()
            };
            list_responses(&names, &listed, &pattern, &inbox_pattern, verb)
        })))
    }

    pub(in crate::imap) fn status(
        &mut self,
        tag: &str,
        mailbox: &Mailbox<'_>,
        items: &[StatusDataItemName],
    ) {
        let Some(name) = self.name_or_bad(tag, mailbox) else {
            return;
        };
        let status = match self.ctx.store.status(&self.user_name(), &name) {
            Ok(s) => s,
            Err(e) => return self.store_error(tag, &e),
        };
        let mut values = Vec::new();
        for item in items {
            let value = match item {
                StatusDataItemName::Messages => format!("MESSAGES {}", status.exists),
                StatusDataItemName::Recent => format!("RECENT {}", status.recent),
                StatusDataItemName::UidNext => format!("UIDNEXT {}", status.uid_next),
                StatusDataItemName::UidValidity => format!("UIDVALIDITY {}", status.uid_validity),
                StatusDataItemName::Unseen => format!("UNSEEN {}", status.unseen),
                StatusDataItemName::HighestModSeq => {
                    format!("HIGHESTMODSEQ {}", status.highest_modseq)
                }
                _ => {
                    if self.bad_log.allow() {
                        tracing::info!(peer = ?self.peer, item = ?item, "IMAP STATUS item not supported");
                    }
                    return self.bad(tag, "Unsupported STATUS item.");
                }
            };
            values.push(value);
        }
        if items.contains(&StatusDataItemName::HighestModSeq) {
            // RFC 7162 3.1: STATUS HIGHESTMODSEQ is a CONDSTORE-enabling command.
            self.enable_condstore();
        }
        let mut line = b"* STATUS ".to_vec();
        response::string(&mut line, name.as_bytes());
        line.extend_from_slice(format!(" ({})\r\n", values.join(" ")).as_bytes());
        self.out.extend_from_slice(&line);
        // STATUS of the selected mailbox is allowed; its own updates come as usual.
        self.sync(SyncKind::Full);
        self.ok(tag, "Status completed.");
    }

    pub(in crate::imap) fn append(
        &mut self,
        tag: &str,
        mailbox: &Mailbox<'_>,
        flags: &[Flag<'_>],
        date: Option<&DateTime>,
        message: &LiteralOrLiteral8<'_>,
    ) {
        let Some(name) = self.name_or_bad(tag, mailbox) else {
            return;
        };
        let data: &[u8] = match message {
            LiteralOrLiteral8::Literal(l) => l.data(),
            LiteralOrLiteral8::Literal8(l) => &l.data,
        };
        if data.is_empty() {
            if self.bad_log.allow() {
                tracing::info!(peer = ?self.peer, "IMAP APPEND of an empty message refused");
            }
            return self.no(tag, "Can't save a zero byte message.");
        }
        let user = self.user_name();
        let store = self.ctx.store.clone();
        let status = match store.status(&user, &name) {
            Ok(s) => s,
            Err(StoreError::NoSuchMailbox(_)) => {
                if self.bad_log.allow() {
                    tracing::info!(peer = ?self.peer, mailbox = %name, "IMAP APPEND to a missing mailbox");
                }
                return self.no_code(tag, "TRYCREATE", "Mailbox doesn't exist.");
            }
            Err(e) => return self.store_error(tag, &e),
        };
        let date = date.map(|d| d.as_ref().timestamp());
        match store.append(&user, &name, data.to_vec(), flag_names(flags), date) {
            Ok(uid) => {
                tracing::debug!(peer = ?self.peer, mailbox = %name, uid, "IMAP APPEND stored");
                self.sync(SyncKind::Full);
                let code = format!("APPENDUID {} {uid}", status.uid_validity);
                self.ok_code(tag, &code, "Append completed.");
            }
            Err(e) => self.store_error(tag, &e),
        }
    }

    pub(in crate::imap) fn close(&mut self, tag: &str) {
        let selected = self.selected.take().filter(|s| !s.read_only);
        if let (Some(user), Some(sel)) = (self.user.clone(), selected) {
            // CLOSE expunges silently (no EXPUNGE responses).
            if let Ok(messages) = self.ctx.store.messages(&user, &sel.name) {
                let deleted: Vec<u32> = messages
                    .iter()
                    .filter(|m| m.flags.contains("\\Deleted"))
                    .map(|m| m.uid)
                    .collect();
                if let Err(e) = self.ctx.store.expunge(&user, &sel.name, &deleted) {
                    tracing::warn!(peer = ?self.peer, error = %e, "IMAP CLOSE expunge failed");
                }
            }
        }
        self.ok(tag, "Close completed.");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mailbox_names() {
        let inbox: Mailbox<'_> = "inbox".try_into().unwrap();
        assert_eq!(mailbox_name(&inbox).as_deref(), Some("INBOX"));
        let other: Mailbox<'_> = "Sent Items".try_into().unwrap();
        assert_eq!(mailbox_name(&other).as_deref(), Some("Sent Items"));
    }
}
