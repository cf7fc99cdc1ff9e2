//! FETCH and UID FETCH.

use std::collections::HashMap;
use std::num::NonZeroU32;

use imap_codec::imap_types::command::FetchModifier;
use imap_codec::imap_types::fetch::{
    MacroOrMessageDataItemNames, MessageDataItemName, Part, Section,
};
use imap_codec::imap_types::sequence::SequenceSet;

use crate::imap::mime::{self, Content};
use crate::imap::response::{self, flag_list};
use crate::imap::selected::SyncKind;
use crate::imap::session::Session;
use crate::imap::structure;
use crate::store::StoredMessage;

/// Whether fetching this item marks the message `\Seen`.
fn sets_seen(item: &MessageDataItemName<'_>) -> bool {
    matches!(
        item,
        MessageDataItemName::BodyExt { peek: false, .. }
            | MessageDataItemName::Rfc822
            | MessageDataItemName::Rfc822Text
    )
}

/// Whether an item needs the MIME structure.
fn needs_structure(item: &MessageDataItemName<'_>) -> bool {
    !matches!(
        item,
        MessageDataItemName::Flags
            | MessageDataItemName::Uid
            | MessageDataItemName::ModSeq
            | MessageDataItemName::InternalDate
            | MessageDataItemName::Rfc822Size
            | MessageDataItemName::Rfc822
            | MessageDataItemName::BodyExt { section: None, .. }
    )
}

fn supported(item: &MessageDataItemName<'_>) -> bool {
    matches!(
        item,
        MessageDataItemName::Body
            | MessageDataItemName::BodyExt { .. }
            | MessageDataItemName::BodyStructure
            | MessageDataItemName::Envelope
            | MessageDataItemName::Flags
            | MessageDataItemName::InternalDate
            | MessageDataItemName::Rfc822
            | MessageDataItemName::Rfc822Header
            | MessageDataItemName::Rfc822Size
            | MessageDataItemName::Rfc822Text
            | MessageDataItemName::Uid
            | MessageDataItemName::ModSeq
    )
}

fn part_path(part: &Part) -> Vec<u32> {
    part.0.as_ref().iter().map(|n| n.get()).collect()
}

fn path_text(part: &Part) -> String {
    part_path(part)
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

fn prefixed(part: &Option<Part>, name: &str) -> String {
    match part {
        Some(p) => format!("{}.{name}", path_text(p)),
        None => name.to_string(),
    }
}

fn field_list(names: &[impl AsRef<[u8]>]) -> String {
    let names: Vec<String> = names
        .iter()
        .map(|n| {
            let n = n.as_ref();
            let atom = !n.is_empty()
                && n.iter().all(|&b| {
                    b.is_ascii_graphic()
                        && !matches!(b, b'(' | b')' | b'{' | b'"' | b'\\' | b']' | b'%' | b'*')
                });
            if atom {
                String::from_utf8_lossy(n).into_owned()
            } else {
                String::from_utf8_lossy(&response::string_bytes(n)).into_owned()
            }
        })
        .collect();
    format!("({})", names.join(" "))
}

/// The section spec as echoed in the response (`HEADER.FIELDS (FROM TO)`, `1.2.MIME`).
pub fn section_text(section: &Option<Section<'_>>) -> String {
    match section {
        None => String::new(),
        Some(Section::Part(p)) => path_text(p),
        Some(Section::Header(p)) => prefixed(p, "HEADER"),
        Some(Section::HeaderFields(p, names)) => {
            prefixed(p, &format!("HEADER.FIELDS {}", field_list(names.as_ref())))
        }
        Some(Section::HeaderFieldsNot(p, names)) => prefixed(
            p,
            &format!("HEADER.FIELDS.NOT {}", field_list(names.as_ref())),
        ),
        Some(Section::Text(p)) => prefixed(p, "TEXT"),
        Some(Section::Mime(p)) => format!("{}.MIME", path_text(p)),
    }
}

/// The bytes a section names; an unknown part gives an empty string (as Dovecot does).
pub fn section_bytes(data: &[u8], root: &mime::Part, section: &Option<Section<'_>>) -> Vec<u8> {
    // The message whose header/text a HEADER/TEXT section names: the root, or an
    // encapsulated message/rfc822 part.
    let message_of = |part: &Option<Part>| -> Option<&mime::Part> {
        match part {
            None => Some(root),
            Some(p) => match &mime::resolve(root, &part_path(p))?.content {
                Content::Message(inner) => Some(inner),
                _ => None,
            },
        }
    };
    let names = |list: &[imap_codec::imap_types::core::AString<'_>]| -> Vec<Vec<u8>> {
        list.iter().map(|n| n.as_ref().to_vec()).collect()
    };
    match section {
        None => data.to_vec(),
        Some(Section::Part(p)) => mime::resolve(root, &part_path(p))
            .map(|part| data[part.body.clone()].to_vec())
            .unwrap_or_default(),
        Some(Section::Mime(p)) => mime::resolve(root, &part_path(p))
            .map(|part| data[part.header.clone()].to_vec())
            .unwrap_or_default(),
        Some(Section::Header(p)) => message_of(p)
            .map(|m| data[m.header.clone()].to_vec())
            .unwrap_or_default(),
        Some(Section::Text(p)) => message_of(p)
            .map(|m| data[m.body.clone()].to_vec())
            .unwrap_or_default(),
        Some(Section::HeaderFields(p, list)) => message_of(p)
            .map(|m| mime::filter_fields(&data[m.header.clone()], &names(list.as_ref()), false))
            .unwrap_or_default(),
        Some(Section::HeaderFieldsNot(p, list)) => message_of(p)
            .map(|m| mime::filter_fields(&data[m.header.clone()], &names(list.as_ref()), true))
            .unwrap_or_default(),
    }
}

fn partial_slice(bytes: &[u8], partial: Option<(u32, NonZeroU32)>) -> &[u8] {
    match partial {
        None => bytes,
        Some((origin, length)) => {
            let start = (origin as usize).min(bytes.len());
            let end = start.saturating_add(length.get() as usize).min(bytes.len());
            &bytes[start..end]
        }
    }
}

impl Session {
    pub(in crate::imap) fn fetch(
        &mut self,
        tag: &str,
        set: &SequenceSet,
        items: MacroOrMessageDataItemNames<'_>,
        uid: bool,
        modifiers: &[FetchModifier],
    ) {
        let expanded;
        let mut items = match items {
            MacroOrMessageDataItemNames::Macro(m) => {
                expanded = m;
                expanded.expand()
            }
            MacroOrMessageDataItemNames::MessageDataItemNames(v) => v,
        };
        if let Some(bad) = items.iter().find(|i| !supported(i)) {
            if self.bad_log.allow() {
                tracing::info!(peer = ?self.peer, item = ?bad, "IMAP FETCH item not supported");
            }
            return self.bad(tag, "Unsupported FETCH item.");
        }
        if uid && !items.contains(&MessageDataItemName::Uid) {
            items.insert(0, MessageDataItemName::Uid);
        }
        let changed_since = modifiers.iter().find_map(|m| match m {
            FetchModifier::ChangedSince(n) => Some(n.get()),
            FetchModifier::Vanished => None,
        });
        let vanished = modifiers.contains(&FetchModifier::Vanished);
        if vanished && !(uid && self.qresync && changed_since.is_some()) {
            // RFC 7162 3.2.6: only in UID FETCH, with CHANGEDSINCE, once QRESYNC is enabled.
            tracing::info!(peer = ?self.peer, "IMAP FETCH VANISHED refused");
            return self.bad(
                tag,
                "VANISHED needs UID FETCH, CHANGEDSINCE and ENABLE QRESYNC.",
            );
        }
        if changed_since.is_some() || items.contains(&MessageDataItemName::ModSeq) {
            // RFC 7162 3.1: CONDSTORE-enabling; CHANGEDSINCE implies the MODSEQ item.
            self.enable_condstore();
            if !items.contains(&MessageDataItemName::ModSeq) {
                items.push(MessageDataItemName::ModSeq);
            }
        }
        let (Some(user), Some(sel)) = (self.user.clone(), self.selected.as_ref()) else {
            return self.bad(tag, "No mailbox selected.");
        };
        let targets = match sel.resolve(set, uid) {
            Ok(t) => t,
            Err(_) => {
                if self.bad_log.allow() {
                    tracing::info!(peer = ?self.peer, "IMAP FETCH: invalid message sequence set");
                }
                return self.bad(tag, "Invalid messageset.");
            }
        };
        let store = self.ctx.store.clone();
        let messages = match store.messages(&user, &sel.name) {
            Ok(m) => m,
            Err(_) => return self.no(tag, "Mailbox is gone."),
        };
        let by_uid: HashMap<u32, &StoredMessage> = messages.iter().map(|m| (m.uid, m)).collect();
        let mark_seen = !sel.read_only && items.iter().any(sets_seen);
        let mailbox = sel.name.clone();
        if vanished && let Some(since) = changed_since {
            let uid_next = match store.status(&user, &mailbox) {
                Ok(st) => st.uid_next,
                Err(e) => return self.store_error(tag, &e),
            };
            match super::condstore::vanished_since(
                store.as_ref(),
                &user,
                &mailbox,
                since,
                Some(set),
                &messages,
                uid_next,
            ) {
                Ok(gone) if !gone.is_empty() => {
                    let line = format!("VANISHED (EARLIER) {}", response::sequence_set(&gone));
                    response::untagged(&mut self.out, &line);
                }
                Ok(_) => {}
                Err(e) => return self.store_error(tag, &e),
            }
        }
        let mut missing = false;
        for (seq, uid) in targets {
            let Some(msg) = by_uid.get(&uid) else {
                missing = true;
                continue;
            };
            if changed_since.is_some_and(|n| msg.modseq <= n) {
                continue;
            }
            let mut flags = msg.flags.clone();
            let mut modseq = msg.modseq;
            let mut seen_now = false;
            if mark_seen && !flags.contains("\\Seen") {
                flags.insert("\\Seen".into());
                if let Ok(crate::store::FlagUpdate::Done { modseq: m, .. }) =
                    store.set_flags_if_unchanged(&user, &mailbox, uid, flags.clone(), None)
                {
                    seen_now = true;
                    modseq = m;
                }
            }
            let recent = self
                .selected
                .as_ref()
                .is_some_and(|s| s.recent.contains(&uid));
            let mut line = format!("* {seq} FETCH (").into_bytes();
            let data = msg.data.as_slice();
            // Parsed once per message, and only for items that look inside it.
            let root = items.iter().any(needs_structure).then(|| mime::parse(data));
            let empty = mime::parse(b"");
            let root = root.as_ref().unwrap_or(&empty);
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    line.push(b' ');
                }
                match item {
                    MessageDataItemName::Flags => {
                        line.extend_from_slice(
                            format!("FLAGS {}", flag_list(&flags, recent)).as_bytes(),
                        );
                    }
                    MessageDataItemName::Uid => {
                        line.extend_from_slice(format!("UID {uid}").as_bytes())
                    }
                    MessageDataItemName::ModSeq => {
                        line.extend_from_slice(format!("MODSEQ ({modseq})").as_bytes())
                    }
                    MessageDataItemName::InternalDate => line.extend_from_slice(
                        format!(
                            "INTERNALDATE {}",
                            response::internal_date(msg.internal_date)
                        )
                        .as_bytes(),
                    ),
                    MessageDataItemName::Rfc822Size => {
                        line.extend_from_slice(format!("RFC822.SIZE {}", data.len()).as_bytes());
                    }
                    MessageDataItemName::Envelope => {
                        line.extend_from_slice(b"ENVELOPE ");
                        structure::envelope(&mut line, &data[root.header.clone()]);
                    }
                    MessageDataItemName::BodyStructure => {
                        line.extend_from_slice(b"BODYSTRUCTURE ");
                        structure::body_structure(&mut line, data, root, true);
                    }
                    MessageDataItemName::Body => {
                        line.extend_from_slice(b"BODY ");
                        structure::body_structure(&mut line, data, root, false);
                    }
                    MessageDataItemName::BodyExt {
                        section, partial, ..
                    } => {
                        let bytes = match section {
                            None => data.to_vec(),
                            Some(_) => section_bytes(data, root, section),
                        };
                        let origin = partial.map(|(o, _)| format!("<{o}>")).unwrap_or_default();
                        line.extend_from_slice(
                            format!("BODY[{}]{origin} ", section_text(section)).as_bytes(),
                        );
                        response::literal(&mut line, partial_slice(&bytes, *partial));
                    }
                    MessageDataItemName::Rfc822 => {
                        line.extend_from_slice(b"RFC822 ");
                        response::literal(&mut line, data);
                    }
                    MessageDataItemName::Rfc822Header => {
                        line.extend_from_slice(b"RFC822.HEADER ");
                        response::literal(&mut line, &data[root.header.clone()]);
                    }
                    MessageDataItemName::Rfc822Text => {
                        line.extend_from_slice(b"RFC822.TEXT ");
                        response::literal(&mut line, &data[root.body.clone()]);
                    }
                    // Refused above.
                    _ => {}
                }
            }
            let flags_sent = items.contains(&MessageDataItemName::Flags);
            if seen_now && !flags_sent {
                line.extend_from_slice(format!(" FLAGS {}", flag_list(&flags, recent)).as_bytes());
            }
            // An implicit \Seen is a flag change: CONDSTORE clients learn its modseq.
            if seen_now && self.condstore && !items.contains(&MessageDataItemName::ModSeq) {
                line.extend_from_slice(format!(" MODSEQ ({modseq})").as_bytes());
            }
            line.extend_from_slice(b")\r\n");
            self.out.extend_from_slice(&line);
            // A revocation may end the session between two FETCH responses, never inside one.
            self.cut();
            if let Some(sel) = self.selected.as_mut().filter(|_| flags_sent || seen_now) {
                sel.note_flags(uid, &flags);
            }
        }
        self.sync(if uid {
            SyncKind::Full
        } else {
            SyncKind::NoExpunge
        });
        if missing {
            self.no_code(
                tag,
                "EXPUNGEISSUED",
                "Some messages were expunged meanwhile.",
            );
        } else {
            self.ok(tag, "Fetch completed.");
        }
    }
}

#[cfg(test)]
mod tests {
    use imap_codec::imap_types::core::AString;
    use imap_codec::imap_types::core::Vec1;

    use super::*;

    fn part(path: &[u32]) -> Part {
        let v: Vec<NonZeroU32> = path.iter().filter_map(|&n| NonZeroU32::new(n)).collect();
        Part(Vec1::try_from(v).unwrap())
    }

    const MSG: &[u8] = b"From: a@x\r\nSubject: s\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\none\r\n--B\r\nContent-Type: message/rfc822\r\n\r\nSubject: in\r\n\r\ninner body\r\n--B--\r\n";

    fn bytes(section: Option<Section<'_>>) -> String {
        let root = mime::parse(MSG);
        String::from_utf8(section_bytes(MSG, &root, &section)).unwrap()
    }

    #[test]
    fn sections() {
        assert_eq!(bytes(None).len(), MSG.len());
        assert!(bytes(Some(Section::Header(None))).ends_with("boundary=B\r\n\r\n"));
        assert!(bytes(Some(Section::Text(None))).starts_with("--B\r\n"));
        assert_eq!(bytes(Some(Section::Part(part(&[1])))), "one");
        assert_eq!(
            bytes(Some(Section::Mime(part(&[1])))),
            "Content-Type: text/plain\r\n\r\n"
        );
        assert_eq!(
            bytes(Some(Section::Part(part(&[2])))),
            "Subject: in\r\n\r\ninner body"
        );
        assert_eq!(
            bytes(Some(Section::Header(Some(part(&[2]))))),
            "Subject: in\r\n\r\n"
        );
        assert_eq!(bytes(Some(Section::Text(Some(part(&[2]))))), "inner body");
        assert_eq!(bytes(Some(Section::Part(part(&[2, 1])))), "inner body");
        assert_eq!(bytes(Some(Section::Part(part(&[9])))), "");
        let names = Vec1::try_from(vec![AString::try_from("SUBJECT").unwrap()]).unwrap();
        assert_eq!(
            bytes(Some(Section::HeaderFields(None, names.clone()))),
            "Subject: s\r\n\r\n"
        );
        assert_eq!(
            section_text(&Some(Section::HeaderFields(Some(part(&[2])), names))),
            "2.HEADER.FIELDS (SUBJECT)"
        );
        assert_eq!(
            section_text(&Some(Section::Mime(part(&[1, 2])))),
            "1.2.MIME"
        );
    }

    #[test]
    fn partials() {
        let five = NonZeroU32::new(5).unwrap();
        assert_eq!(partial_slice(b"0123456789", Some((2, five))), b"23456");
        assert_eq!(partial_slice(b"0123", Some((2, five))), b"23");
        assert_eq!(partial_slice(b"0123", Some((9, five))), b"");
    }
}
