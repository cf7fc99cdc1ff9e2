//! The JMAP view of one user's mail: a snapshot built from the IMAP-shaped store, with
//! mailbox/email/thread ids, roles, keywords and counts. Parsing results are cached per stored
//! message, so a rescan after a change costs a listing, not a re-parse.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use mail_parser::{Address, HeaderValue, Message, MessageParser};

use super::ids;
use crate::store::{DELIMITER, MailStore};

/// What parsing a stored message once tells us.
#[derive(Debug)]
pub struct MessageMeta {
    pub email_id: String,
    pub blob_id: String,
    pub thread_id: String,
    pub size: usize,
    pub received_at: i64,
    pub data: Arc<Vec<u8>>,
    /// Decoded subject ("" if none).
    pub subject: String,
    /// Lower-case "name address" texts, for filters.
    pub from: String,
    pub to: String,
    pub cc: String,
    pub bcc: String,
    /// Sort keys (RFC 8621 §4.4.2: the name, else the address).
    pub from_sort: String,
    pub to_sort: String,
    pub sent_at: Option<i64>,
    pub has_attachment: bool,
    pub message_id: Option<String>,
}

impl MessageMeta {
    pub fn parse(data: Arc<Vec<u8>>, internal_date: i64) -> Self {
        let email_id = ids::email_id(internal_date, &data);
        let blob_id = ids::blob_id(&data);
        let size = data.len();
        let parsed = parse_message(data.as_slice());
        let mut meta = MessageMeta {
            thread_id: ids::thread_id(&email_id),
            email_id,
            blob_id,
            size,
            received_at: internal_date,
            data: data.clone(),
            subject: String::new(),
            from: String::new(),
            to: String::new(),
            cc: String::new(),
            bcc: String::new(),
            from_sort: String::new(),
            to_sort: String::new(),
            sent_at: None,
            has_attachment: false,
            message_id: None,
        };
        let Some(msg) = parsed else {
            return meta;
        };
        meta.subject = msg.subject().unwrap_or_default().to_string();
        meta.from = address_text(msg.from());
        meta.to = address_text(msg.to());
        meta.cc = address_text(msg.cc());
        meta.bcc = address_text(msg.bcc());
        meta.from_sort = sort_key(msg.from());
        meta.to_sort = sort_key(msg.to());
        meta.sent_at = msg.date().map(|d| d.to_timestamp());
        meta.has_attachment = msg.attachment_count() > 0;
        meta.message_id = msg.message_id().map(str::to_string);
        // Thread root: the first References entry, else In-Reply-To, else our own Message-ID.
        let root = first_id(msg.references())
            .or_else(|| first_id(msg.in_reply_to()))
            .or_else(|| meta.message_id.clone());
        if let Some(root) = root {
            meta.thread_id = ids::thread_id(&root);
        }
        meta
    }
}

/// Parses a message; None when it has no header at all (mail-parser indexes part 0 freely).
pub fn parse_message(data: &[u8]) -> Option<Message<'_>> {
    MessageParser::new()
        .parse(data)
        .filter(|m| !m.parts.is_empty())
}

fn first_id(value: &HeaderValue<'_>) -> Option<String> {
    match value {
        HeaderValue::Text(t) => Some(t.to_string()),
        HeaderValue::TextList(l) => l.first().map(|t| t.to_string()),
        _ => None,
    }
}

fn address_text(addr: Option<&Address<'_>>) -> String {
    let Some(addr) = addr else {
        return String::new();
    };
    let mut out = String::new();
    for a in addr.iter() {
        if let Some(n) = a.name() {
            out.push_str(n);
            out.push(' ');
        }
        if let Some(e) = a.address() {
            out.push_str(e);
            out.push(' ');
        }
    }
    out.to_lowercase()
}

fn sort_key(addr: Option<&Address<'_>>) -> String {
    addr.and_then(|a| a.first())
        .and_then(|a| a.name().or(a.address()))
        .unwrap_or_default()
        .to_lowercase()
}

/// IMAP flag -> JMAP keyword (RFC 8621 §4.1.1); flags without a keyword (`\Deleted`) -> None.
pub fn flag_to_keyword(flag: &str) -> Option<String> {
    let lower = flag.to_ascii_lowercase();
    match lower.as_str() {
        "\\seen" => Some("$seen".into()),
        "\\flagged" => Some("$flagged".into()),
        "\\answered" => Some("$answered".into()),
        "\\draft" => Some("$draft".into()),
        f if f.starts_with('\\') => None,
        _ => Some(lower),
    }
}

/// JMAP keyword -> IMAP flag.
pub fn keyword_to_flag(keyword: &str) -> String {
    match keyword.to_ascii_lowercase().as_str() {
        "$seen" => "\\Seen".into(),
        "$flagged" => "\\Flagged".into(),
        "$answered" => "\\Answered".into(),
        "$draft" => "\\Draft".into(),
        other => other.into(),
    }
}

/// RFC 8621 §4.1.1 keyword syntax (an IMAP atom, no `\`).
pub fn valid_keyword(keyword: &str) -> bool {
    (1..=255).contains(&keyword.len())
        && keyword
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && !b"(){]%*\"\\".contains(&b))
}

/// Mailbox role by (top-level) name.
fn role_for(name: &str) -> Option<&'static str> {
    if name.contains(DELIMITER) {
        return None;
    }
    match name.to_lowercase().as_str() {
        "inbox" => Some("inbox"),
        "drafts" | "draft" => Some("drafts"),
        "sent" | "sent items" | "sent messages" | "sent mail" => Some("sent"),
        "trash" | "deleted items" | "deleted messages" | "bin" => Some("trash"),
        "junk" | "spam" | "junk e-mail" | "junk email" => Some("junk"),
        "archive" | "archives" => Some("archive"),
        _ => None,
    }
}

fn role_order(role: Option<&str>) -> u32 {
    match role {
        Some("inbox") => 1,
        Some("drafts") => 2,
        Some("sent") => 3,
        Some("archive") => 4,
        Some("junk") => 5,
        Some("trash") => 6,
        _ => 10,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxView {
    pub id: String,
    /// Full store name (`Work/2024`).
    pub name: String,
    /// JMAP `name`: the part below the parent.
    pub display_name: String,
    pub parent_id: Option<String>,
    pub role: Option<&'static str>,
    pub sort_order: u32,
    pub total_emails: usize,
    pub unread_emails: usize,
    pub total_threads: usize,
    pub unread_threads: usize,
}

impl MailboxView {
    /// Everything but the counts, to tell a count-only update from a real one.
    fn identity(&self) -> (&str, &str, &Option<String>, Option<&str>, u32) {
        (
            &self.name,
            &self.display_name,
            &self.parent_id,
            self.role,
            self.sort_order,
        )
    }
}

/// One stored copy of an email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub mailbox: String,
    pub mailbox_id: String,
    pub uid: u32,
    pub flags: BTreeSet<String>,
}

#[derive(Debug, Clone)]
pub struct EmailView {
    pub meta: Arc<MessageMeta>,
    pub copies: Vec<Location>,
    /// Union of the copies' keywords.
    pub keywords: BTreeSet<String>,
}

impl EmailView {
    pub fn id(&self) -> &str {
        &self.meta.email_id
    }

    pub fn mailbox_ids(&self) -> BTreeSet<&str> {
        self.copies.iter().map(|c| c.mailbox_id.as_str()).collect()
    }

    pub fn is_unread(&self) -> bool {
        !self.keywords.contains("$seen")
    }
}

#[derive(Debug, Default)]
pub struct Snapshot {
    /// Sorted by store name.
    pub mailboxes: Vec<MailboxView>,
    pub emails: BTreeMap<String, EmailView>,
    /// Thread id -> email ids, oldest first.
    pub threads: BTreeMap<String, Vec<String>>,
}

impl Snapshot {
    pub fn mailbox(&self, id: &str) -> Option<&MailboxView> {
        self.mailboxes.iter().find(|m| m.id == id)
    }

    pub fn mailbox_by_role(&self, role: &str) -> Option<&MailboxView> {
        self.mailboxes.iter().find(|m| m.role == Some(role))
    }

    pub fn email_by_blob(&self, blob_id: &str) -> Option<&EmailView> {
        self.emails.values().find(|e| e.meta.blob_id == blob_id)
    }
}

/// Parsed messages by (mailbox, UIDVALIDITY, UID).
pub type MetaCache = HashMap<(String, u32, u32), Arc<MessageMeta>>;

/// Reads the user's whole mailbox tree. Mailboxes that vanish meanwhile are skipped.
pub fn scan(store: &dyn MailStore, user: &str, cache: &mut MetaCache) -> Snapshot {
    let names = store.list_mailboxes(user);
    let mut seen_keys = HashSet::new();
    let mut emails: BTreeMap<String, EmailView> = BTreeMap::new();
    let mut boxes: Vec<(String, String)> = Vec::new();
    for name in names {
        let Ok(status) = store.status(user, &name) else {
            continue;
        };
        let Ok(messages) = store.messages(user, &name) else {
            continue;
        };
        let mailbox_id = ids::mailbox_id(&name, status.uid_validity);
        for m in messages {
            let key = (name.clone(), status.uid_validity, m.uid);
            let meta = cache
                .entry(key.clone())
                .or_insert_with(|| Arc::new(MessageMeta::parse(m.data.clone(), m.internal_date)))
                .clone();
            seen_keys.insert(key);
            let email = emails
                .entry(meta.email_id.clone())
                .or_insert_with(|| EmailView {
                    meta,
                    copies: Vec::new(),
                    keywords: BTreeSet::new(),
                });
            email
                .keywords
                .extend(m.flags.iter().filter_map(|f| flag_to_keyword(f)));
            email.copies.push(Location {
                mailbox: name.clone(),
                mailbox_id: mailbox_id.clone(),
                uid: m.uid,
                flags: m.flags,
            });
        }
        boxes.push((name, mailbox_id));
    }
    cache.retain(|k, _| seen_keys.contains(k));

    let mut threads: BTreeMap<String, Vec<(i64, String)>> = BTreeMap::new();
    for e in emails.values() {
        threads
            .entry(e.meta.thread_id.clone())
            .or_default()
            .push((e.meta.received_at, e.id().to_string()));
    }
    let threads = threads
        .into_iter()
        .map(|(t, mut list)| {
            list.sort();
            (t, list.into_iter().map(|(_, id)| id).collect())
        })
        .collect();

    let mailboxes = mailbox_views(&boxes, &emails);
    Snapshot {
        mailboxes,
        emails,
        threads,
    }
}

fn mailbox_views(
    boxes: &[(String, String)],
    emails: &BTreeMap<String, EmailView>,
) -> Vec<MailboxView> {
    let by_name: HashMap<&str, &str> = boxes
        .iter()
        .map(|(n, id)| (n.as_str(), id.as_str()))
        .collect();
    // Each email once per mailbox, however many copies it has there.
    let mut by_mailbox: HashMap<&str, Vec<&EmailView>> = HashMap::new();
    for e in emails.values() {
        let ids: BTreeSet<&str> = e.mailbox_ids();
        for id in ids {
            by_mailbox.entry(id).or_default().push(e);
        }
    }
    let mut roles_taken = HashSet::new();
    let mut out = Vec::with_capacity(boxes.len());
    for (name, id) in boxes {
        // The nearest existing ancestor is the parent; the rest of the path is the name.
        let mut parent = None;
        let mut display = name.clone();
        let mut cut = name.as_str();
        while let Some((head, _)) = cut.rsplit_once(DELIMITER) {
            if let Some(pid) = by_name.get(head) {
                parent = Some(pid.to_string());
                display = name[head.len() + 1..].to_string();
                break;
            }
            cut = head;
        }
        let role = role_for(name).filter(|r| roles_taken.insert(*r));
        let members = by_mailbox
            .get(id.as_str())
            .map(Vec::as_slice)
            .unwrap_or_default();
        let mut unread = 0;
        let mut threads = HashSet::new();
        let mut unread_threads = HashSet::new();
        for e in members {
            threads.insert(&e.meta.thread_id);
            if e.is_unread() {
                unread += 1;
                unread_threads.insert(&e.meta.thread_id);
            }
        }
        let total = members.len();
        out.push(MailboxView {
            id: id.clone(),
            name: name.clone(),
            display_name: display,
            parent_id: parent,
            role,
            sort_order: role_order(role),
            total_emails: total,
            unread_emails: unread,
            total_threads: threads.len(),
            unread_threads: unread_threads.len(),
        });
    }
    out
}

/// Created/updated/destroyed ids of one type between two snapshots.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delta {
    pub created: BTreeSet<String>,
    pub updated: BTreeSet<String>,
    pub destroyed: BTreeSet<String>,
    /// Some update changed more than the counts (mailboxes only).
    pub non_count_update: bool,
}

impl Delta {
    pub fn is_empty(&self) -> bool {
        self.created.is_empty() && self.updated.is_empty() && self.destroyed.is_empty()
    }
}

/// (mailbox, email, thread) deltas.
pub fn diff(old: &Snapshot, new: &Snapshot) -> (Delta, Delta, Delta) {
    let mut mailboxes = Delta::default();
    let old_boxes: HashMap<&str, &MailboxView> =
        old.mailboxes.iter().map(|m| (m.id.as_str(), m)).collect();
    let new_boxes: HashMap<&str, &MailboxView> =
        new.mailboxes.iter().map(|m| (m.id.as_str(), m)).collect();
    for (id, m) in &new_boxes {
        match old_boxes.get(id) {
            None => {
                mailboxes.created.insert(id.to_string());
            }
            Some(o) if o != m => {
                mailboxes.updated.insert(id.to_string());
                if o.identity() != m.identity() {
                    mailboxes.non_count_update = true;
                }
            }
            Some(_) => {}
        }
    }
    for id in old_boxes.keys().filter(|id| !new_boxes.contains_key(*id)) {
        mailboxes.destroyed.insert(id.to_string());
    }

    let mut emails = Delta::default();
    for (id, e) in &new.emails {
        match old.emails.get(id) {
            None => {
                emails.created.insert(id.clone());
            }
            Some(o) if o.keywords != e.keywords || o.mailbox_ids() != e.mailbox_ids() => {
                emails.updated.insert(id.clone());
            }
            Some(_) => {}
        }
    }
    for id in old.emails.keys().filter(|id| !new.emails.contains_key(*id)) {
        emails.destroyed.insert(id.clone());
    }

    let mut threads = Delta::default();
    for (id, list) in &new.threads {
        match old.threads.get(id) {
            None => {
                threads.created.insert(id.clone());
            }
            Some(o) if o != list => {
                threads.updated.insert(id.clone());
            }
            Some(_) => {}
        }
    }
    for id in old
        .threads
        .keys()
        .filter(|id| !new.threads.contains_key(*id))
    {
        threads.destroyed.insert(id.clone());
    }
    (mailboxes, emails, threads)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn flags(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn keywords_map_both_ways() {
        assert_eq!(flag_to_keyword("\\Seen").as_deref(), Some("$seen"));
        assert_eq!(flag_to_keyword("\\Deleted"), None);
        assert_eq!(flag_to_keyword("$Forwarded").as_deref(), Some("$forwarded"));
        assert_eq!(keyword_to_flag("$seen"), "\\Seen");
        assert_eq!(keyword_to_flag("$Junk"), "$junk");
        assert!(valid_keyword("$seen"));
        assert!(!valid_keyword("a b"));
        assert!(!valid_keyword("\\Seen"));
        assert!(!valid_keyword(""));
    }

    #[test]
    fn scan_builds_tree_roles_counts_and_threads() {
        let store = MemoryStore::new();
        let u = "u@example.com";
        store.ensure_user(u);
        store.create_mailbox(u, "Sent").unwrap();
        store.create_mailbox(u, "Work").unwrap();
        store.create_mailbox(u, "Work/2024").unwrap();
        store.create_mailbox(u, "A/B").unwrap();
        let root = b"Message-ID: <r@x>\r\nSubject: hi\r\n\r\nroot\r\n".to_vec();
        let reply =
            b"Message-ID: <s@x>\r\nReferences: <r@x>\r\nSubject: Re: hi\r\n\r\nreply\r\n".to_vec();
        store
            .append(u, "INBOX", root.clone(), flags(&["\\Seen"]), Some(1))
            .unwrap();
        store
            .append(u, "INBOX", reply, flags(&[]), Some(2))
            .unwrap();
        // An IMAP copy of the root: same email, two mailboxes.
        store
            .append(u, "Work", root, flags(&["$x"]), Some(1))
            .unwrap();
        let mut cache = MetaCache::new();
        let snap = scan(&store, u, &mut cache);
        assert_eq!(snap.emails.len(), 2);
        assert_eq!(cache.len(), 3);
        let inbox = snap.mailbox_by_role("inbox").unwrap();
        assert_eq!((inbox.total_emails, inbox.unread_emails), (2, 1));
        assert_eq!((inbox.total_threads, inbox.unread_threads), (1, 1));
        assert_eq!(snap.mailbox_by_role("sent").unwrap().name, "Sent");
        let work = snap.mailboxes.iter().find(|m| m.name == "Work").unwrap();
        let sub = snap
            .mailboxes
            .iter()
            .find(|m| m.name == "Work/2024")
            .unwrap();
        assert_eq!(sub.parent_id.as_deref(), Some(work.id.as_str()));
        assert_eq!(sub.display_name, "2024");
        let orphan = snap.mailboxes.iter().find(|m| m.name == "A/B").unwrap();
        assert_eq!(
            (orphan.parent_id.as_deref(), orphan.display_name.as_str()),
            (None, "A/B")
        );
        assert_eq!(snap.threads.len(), 1);
        let root = snap.emails.values().find(|e| e.copies.len() == 2).unwrap();
        assert_eq!(root.keywords, flags(&["$seen", "$x"]));
        assert_eq!(root.meta.subject, "hi");
    }

    #[test]
    fn diff_reports_each_type() {
        let store = MemoryStore::new();
        let u = "d@example.com";
        store.ensure_user(u);
        let mut cache = MetaCache::new();
        let a = scan(&store, u, &mut cache);
        let uid = store
            .append(
                u,
                "INBOX",
                b"Subject: x\r\n\r\ny\r\n".to_vec(),
                flags(&[]),
                Some(5),
            )
            .unwrap();
        let b = scan(&store, u, &mut cache);
        let (m, e, t) = diff(&a, &b);
        assert_eq!(
            (m.updated.len(), e.created.len(), t.created.len()),
            (1, 1, 1)
        );
        assert!(!m.non_count_update);
        store
            .set_flags(u, "INBOX", uid, flags(&["\\Seen"]))
            .unwrap();
        let c = scan(&store, u, &mut cache);
        let (_, e, t) = diff(&b, &c);
        assert_eq!(e.updated.len(), 1);
        assert!(t.is_empty());
        store.create_mailbox(u, "New").unwrap();
        store.expunge(u, "INBOX", &[uid]).unwrap();
        let d = scan(&store, u, &mut cache);
        let (m, e, t) = diff(&c, &d);
        assert_eq!(
            (m.created.len(), e.destroyed.len(), t.destroyed.len()),
            (1, 1, 1)
        );
    }
}
