//! In-memory store: every user's mailboxes behind one lock, lost at exit.
//!
//! User names are compared ASCII-case-insensitively (the directory returns canonical addresses,
//! but SMTP recipients and IMAP logins may differ in case). `INBOX` is case-insensitive.
//! `\Recent` is approximated per mailbox: messages appended since the last [`MemoryStore::take_recent`]
//! (called by IMAP SELECT) are recent, whichever session looks first claims them.
//!
//! A message's bytes are one `Arc` shared by every copy (recipients, Sieve `fileinto`, COPY).
//! With a [`Journal`] (the disk store) this is the index of what is on disk: every change is
//! committed there first, under the lock, and applied here only once durable.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tokio::sync::broadcast;

use super::journal::{Change, Journal, RestoredMailbox};
use super::{FlagUpdate, MailStore, MailboxStatus, StoreError, StoreEvent, StoredMessage};
use crate::time::now_unix;

/// Events buffered per user before a slow subscriber sees `Lagged`.
const EVENT_CAPACITY: usize = 1024;
/// Hierarchy delimiter of mailbox names (what IMAP LIST reports).
pub const DELIMITER: char = '/';
/// Longest mailbox name accepted, in bytes.
const MAX_NAME_LEN: usize = 512;
/// Deepest hierarchy accepted, in levels.
pub const MAX_DEPTH: usize = 32;
/// Expunged UIDs remembered per mailbox for QRESYNC's VANISHED; older requests get every UID
/// the client may know of instead.
pub const MAX_VANISHED: usize = 10_000;

struct Mailbox {
    uid_validity: u32,
    uid_next: u32,
    /// UIDs below this were already reported as recent to some session.
    recent_from: u32,
    /// Ordered by UID.
    messages: Vec<StoredMessage>,
    /// RFC 7162 HIGHESTMODSEQ; every change takes the next value.
    highest_modseq: u64,
    /// The latest expunged UIDs with the modseq of their expunge, oldest first.
    vanished: VecDeque<(u32, u64)>,
    /// Every expunge with a modseq above this is in `vanished`.
    vanished_floor: u64,
}

impl Mailbox {
    fn new(uid_validity: u32) -> Self {
        Self {
            uid_validity,
            uid_next: 1,
            recent_from: 1,
            messages: Vec::new(),
            highest_modseq: 1,
            vanished: VecDeque::new(),
            vanished_floor: 0,
        }
    }

    /// Remembers expunged UIDs, forgetting the oldest beyond [`MAX_VANISHED`].
    fn remember_vanished(&mut self, uids: &[u32], modseq: u64) {
        self.vanished.extend(uids.iter().map(|&u| (u, modseq)));
        while self.vanished.len() > MAX_VANISHED {
            if let Some((_, m)) = self.vanished.pop_front() {
                self.vanished_floor = self.vanished_floor.max(m);
            }
        }
    }

    fn status(&self) -> MailboxStatus {
        let count = |f: &dyn Fn(&StoredMessage) -> bool| {
            u32::try_from(self.messages.iter().filter(|m| f(m)).count()).unwrap_or(u32::MAX)
        };
        MailboxStatus {
            uid_validity: self.uid_validity,
            uid_next: self.uid_next,
            exists: u32::try_from(self.messages.len()).unwrap_or(u32::MAX),
            unseen: count(&|m| !m.flags.contains("\\Seen")),
            recent: count(&|m| m.uid >= self.recent_from),
            highest_modseq: self.highest_modseq,
        }
    }

    fn find_mut(&mut self, uid: u32) -> Option<&mut StoredMessage> {
        self.messages
            .binary_search_by_key(&uid, |m| m.uid)
            .ok()
            .and_then(|i| self.messages.get_mut(i))
    }
}

struct UserData {
    /// Keyed by normalized name (`INBOX` upper case).
    mailboxes: BTreeMap<String, Mailbox>,
    events: broadcast::Sender<StoreEvent>,
    /// Bytes of every message copy in every mailbox (what the quota limits).
    used: u64,
    /// Subscribed names (normalized), which may outlive their mailbox.
    subscriptions: BTreeSet<String>,
}

impl UserData {
    fn new() -> Self {
        Self {
            mailboxes: BTreeMap::new(),
            events: broadcast::channel(EVENT_CAPACITY).0,
            used: 0,
            subscriptions: BTreeSet::new(),
        }
    }

    fn mailbox(&self, name: &str) -> Result<&Mailbox, StoreError> {
        self.mailboxes
            .get(&normalize(name))
            .ok_or_else(|| StoreError::NoSuchMailbox(name.to_string()))
    }

    fn mailbox_mut(&mut self, name: &str) -> Result<&mut Mailbox, StoreError> {
        self.mailboxes
            .get_mut(&normalize(name))
            .ok_or_else(|| StoreError::NoSuchMailbox(name.to_string()))
    }

    fn emit(&self, event: StoreEvent) {
        // No subscriber is the normal case; nothing to do then.
        let _ = self.events.send(event);
    }
}

/// The in-memory [`MailStore`].
pub struct MemoryStore {
    users: RwLock<HashMap<String, UserData>>,
    /// Next UIDVALIDITY; seeded from the clock so a restarted server never reuses one.
    next_validity: AtomicU32,
    /// `store.quota_bytes`: most bytes one user may store.
    quota: Option<u64>,
    /// Where changes are made durable first; none for the pure memory store.
    journal: Option<Box<dyn Journal>>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

fn target_push(d: &mut UserData, mailbox: &str, message: StoredMessage) {
    if let Some(mb) = d.mailboxes.get_mut(mailbox) {
        let uid = message.uid;
        mb.messages.push(message);
        d.emit(StoreEvent::Appended {
            mailbox: mailbox.to_string(),
            uid,
        });
    }
}

/// Runs a call that waits for the disk (a commit and its sync). Protocol sessions call the store
/// synchronously from async tasks (IMAP and JMAP are sans-IO state machines), so on the
/// multi-threaded runtime the worker hands its other tasks to another thread while it waits;
/// elsewhere (a `spawn_blocking` thread, a single-threaded test runtime) it just runs.
pub(super) fn off_the_workers<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// `INBOX` in any case is the inbox; every other name is kept as given.
fn normalize(name: &str) -> String {
    if name.eq_ignore_ascii_case("INBOX") {
        "INBOX".to_string()
    } else {
        name.to_string()
    }
}

fn user_key(user: &str) -> String {
    user.to_ascii_lowercase()
}

/// Flags a client may store; `\Recent` is session state, never stored.
fn storable(flags: BTreeSet<String>) -> BTreeSet<String> {
    flags
        .into_iter()
        .filter(|f| !f.eq_ignore_ascii_case("\\Recent"))
        .collect()
}

/// Whether `name` may name a mailbox: callers that create superior mailboxes first check the
/// whole name here, so a refusal changes nothing. `.` and `..` levels are refused now, before any
/// store maps names to paths.
pub fn validate_name(name: &str) -> Result<(), StoreError> {
    let bad = name.is_empty()
        || name.len() > MAX_NAME_LEN
        || name.starts_with(DELIMITER)
        || name.ends_with(DELIMITER)
        || name.contains("//")
        || name.split(DELIMITER).count() > MAX_DEPTH
        || name
            .split(DELIMITER)
            .any(|level| level == "." || level == "..")
        || name.chars().any(|c| c.is_control() || c == '*' || c == '%');
    if bad {
        return Err(StoreError::InvalidName(name.to_string()));
    }
    Ok(())
}

impl MemoryStore {
    pub fn new() -> Self {
        // Truncation is fine: any value works as long as it grows across restarts mostly.
        let seed = (now_unix() as u32).max(1);
        Self {
            users: RwLock::new(HashMap::new()),
            next_validity: AtomicU32::new(seed),
            quota: None,
            journal: None,
        }
    }

    /// A memory store that refuses appends past `quota` bytes per user.
    pub fn with_quota(quota: Option<u64>) -> Self {
        Self {
            quota,
            ..Self::new()
        }
    }

    /// The index of a durable store: `mailboxes` as read back, later changes committed to
    /// `journal` first.
    pub fn restore(
        quota: Option<u64>,
        journal: Box<dyn Journal>,
        mailboxes: Vec<RestoredMailbox>,
        subscriptions: HashMap<String, BTreeSet<String>>,
    ) -> Self {
        let mut users: HashMap<String, UserData> = HashMap::new();
        for (user, names) in subscriptions {
            users
                .entry(user_key(&user))
                .or_insert_with(UserData::new)
                .subscriptions = names;
        }
        let mut max_validity = 0;
        for r in mailboxes {
            let data = users.entry(user_key(&r.user)).or_insert_with(UserData::new);
            data.used += r.messages.iter().map(|m| m.data.len() as u64).sum::<u64>();
            max_validity = max_validity.max(r.uid_validity);
            let mut mb = Mailbox::new(r.uid_validity);
            mb.uid_next = r.uid_next;
            // Nothing survives a restart as recent to a session that already saw it.
            mb.recent_from = r.uid_next;
            let newest = r.messages.iter().map(|m| m.modseq).max().unwrap_or(1);
            mb.highest_modseq = r.highest_modseq.max(newest).max(1);
            // Expunges before the restart are forgotten: older QRESYNC requests get every UID.
            mb.vanished_floor = mb.highest_modseq;
            mb.messages = r.messages;
            data.mailboxes.insert(normalize(&r.mailbox), mb);
        }
        let store = Self::with_quota(quota);
        // A validity handed out before the restart is never handed out again.
        let seed = store.next_validity.load(Ordering::Relaxed);
        store
            .next_validity
            .store(seed.max(max_validity.saturating_add(1)), Ordering::Relaxed);
        *store.write() = users;
        Self {
            journal: Some(journal),
            ..store
        }
    }

    /// RENAME INBOX: a new mailbox gets INBOX's messages, INBOX stays, empty. Each step is its
    /// own commit: a crash in between can leave a message in both, never in neither.
    /// A move, so the quota is not checked.
    fn rename_inbox(&self, user: &str, to: &str) -> Result<(), StoreError> {
        self.create_mailbox(user, to)?;
        let (ukey, to_key) = (user_key(user), normalize(to));
        self.with_user_mut(user, "INBOX", |d| {
            let messages = d.mailbox("INBOX")?.messages.clone();
            let mut moved = Vec::with_capacity(messages.len());
            for m in messages {
                let target = d.mailbox_mut(to)?;
                let uid = target.uid_next;
                let modseq = target.highest_modseq.saturating_add(1);
                self.commit(&Change::Append {
                    user: &ukey,
                    mailbox: &to_key,
                    uid,
                    modseq,
                    flags: &m.flags,
                    internal_date: m.internal_date,
                    data: &m.data,
                })?;
                target.uid_next = uid.saturating_add(1);
                target.highest_modseq = modseq;
                d.used = d.used.saturating_add(m.data.len() as u64);
                moved.push(m.uid);
                target_push(d, &to_key, StoredMessage { uid, modseq, ..m });
            }
            Ok(moved)
        })
        .and_then(|moved| self.expunge(user, "INBOX", &moved))
        .map(|_| ())
    }

    fn commit(&self, change: &Change<'_>) -> Result<(), StoreError> {
        match &self.journal {
            Some(j) => off_the_workers(|| j.commit(change)),
            None => Ok(()),
        }
    }

    /// Refuses `size` more bytes for a user who has `used`.
    fn check_quota(&self, user: &str, used: u64, size: u64) -> Result<(), StoreError> {
        match self.quota {
            Some(quota) if used.saturating_add(size) > quota => Err(StoreError::OverQuota {
                user: user.to_string(),
                needed: size,
                free: quota.saturating_sub(used),
            }),
            _ => Ok(()),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, HashMap<String, UserData>> {
        // A poisoned lock means a panic elsewhere; the data is still consistent per operation.
        self.users.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, HashMap<String, UserData>> {
        self.users.write().unwrap_or_else(|e| e.into_inner())
    }

    fn new_validity(&self) -> u32 {
        let v = self.next_validity.fetch_add(1, Ordering::Relaxed);
        // UIDVALIDITY must be non-zero (RFC 3501 9, nz-number).
        if v == 0 { 1 } else { v }
    }

    fn with_user<T>(
        &self,
        user: &str,
        mailbox: &str,
        f: impl FnOnce(&UserData) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let users = self.read();
        let data = users
            .get(&user_key(user))
            .ok_or_else(|| StoreError::NoSuchMailbox(mailbox.to_string()))?;
        f(data)
    }

    fn with_user_mut<T>(
        &self,
        user: &str,
        mailbox: &str,
        f: impl FnOnce(&mut UserData) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut users = self.write();
        let data = users
            .get_mut(&user_key(user))
            .ok_or_else(|| StoreError::NoSuchMailbox(mailbox.to_string()))?;
        f(data)
    }
}

impl MailStore for MemoryStore {
    fn ensure_user(&self, user: &str) {
        let mut users = self.write();
        let key = user_key(user);
        let data = users.entry(key.clone()).or_insert_with(UserData::new);
        if !data.mailboxes.contains_key("INBOX") {
            let validity = self.new_validity();
            let change = Change::CreateMailbox {
                user: &key,
                mailbox: "INBOX",
                uid_validity: validity,
            };
            if let Err(e) = self.commit(&change) {
                // Callers then see no INBOX and refuse with a temporary error.
                tracing::error!(user, error = %e, "cannot create the INBOX");
                return;
            }
            data.mailboxes
                .insert("INBOX".to_string(), Mailbox::new(validity));
        }
    }

    fn list_mailboxes(&self, user: &str) -> Vec<String> {
        self.read()
            .get(&user_key(user))
            .map(|d| d.mailboxes.keys().cloned().collect())
            .unwrap_or_default()
    }

    fn create_mailbox(&self, user: &str, mailbox: &str) -> Result<(), StoreError> {
        validate_name(mailbox)?;
        let validity = self.new_validity();
        let mut users = self.write();
        let ukey = user_key(user);
        let data = users.entry(ukey.clone()).or_insert_with(UserData::new);
        let key = normalize(mailbox);
        if data.mailboxes.contains_key(&key) {
            return Err(StoreError::MailboxExists(mailbox.to_string()));
        }
        self.commit(&Change::CreateMailbox {
            user: &ukey,
            mailbox: &key,
            uid_validity: validity,
        })?;
        data.mailboxes.insert(key, Mailbox::new(validity));
        Ok(())
    }

    fn status(&self, user: &str, mailbox: &str) -> Result<MailboxStatus, StoreError> {
        self.with_user(user, mailbox, |d| Ok(d.mailbox(mailbox)?.status()))
    }

    fn append(
        &self,
        user: &str,
        mailbox: &str,
        data: Vec<u8>,
        flags: BTreeSet<String>,
        internal_date: Option<i64>,
    ) -> Result<u32, StoreError> {
        self.append_shared(user, mailbox, Arc::new(data), flags, internal_date)
    }

    fn append_shared(
        &self,
        user: &str,
        mailbox: &str,
        data: Arc<Vec<u8>>,
        flags: BTreeSet<String>,
        internal_date: Option<i64>,
    ) -> Result<u32, StoreError> {
        let ukey = user_key(user);
        self.with_user_mut(user, mailbox, |d| {
            let size = data.len() as u64;
            let used = d.used;
            let name = normalize(mailbox);
            let mb = d.mailbox_mut(mailbox)?;
            self.check_quota(user, used, size)?;
            let uid = mb.uid_next;
            let flags = storable(flags);
            let internal_date = internal_date.unwrap_or_else(now_unix);
            let modseq = mb.highest_modseq.saturating_add(1);
            self.commit(&Change::Append {
                user: &ukey,
                mailbox: &name,
                uid,
                modseq,
                flags: &flags,
                internal_date,
                data: &data,
            })?;
            mb.uid_next = uid.saturating_add(1);
            mb.highest_modseq = modseq;
            mb.messages.push(StoredMessage {
                uid,
                flags,
                internal_date,
                data,
                modseq,
            });
            d.used = used.saturating_add(size);
            d.emit(StoreEvent::Appended { mailbox: name, uid });
            Ok(uid)
        })
    }

    fn quota(&self) -> Option<u64> {
        self.quota
    }

    fn usage(&self, user: &str) -> u64 {
        self.read().get(&user_key(user)).map_or(0, |d| d.used)
    }

    fn messages(&self, user: &str, mailbox: &str) -> Result<Vec<StoredMessage>, StoreError> {
        self.with_user(user, mailbox, |d| Ok(d.mailbox(mailbox)?.messages.clone()))
    }

    fn set_flags(
        &self,
        user: &str,
        mailbox: &str,
        uid: u32,
        flags: BTreeSet<String>,
    ) -> Result<(), StoreError> {
        // A message expunged meanwhile by another session: nothing to change, not an error.
        self.set_flags_if_unchanged(user, mailbox, uid, flags, None)
            .map(|_| ())
    }

    fn set_flags_if_unchanged(
        &self,
        user: &str,
        mailbox: &str,
        uid: u32,
        flags: BTreeSet<String>,
        unchanged_since: Option<u64>,
    ) -> Result<FlagUpdate, StoreError> {
        let ukey = user_key(user);
        self.with_user_mut(user, mailbox, |d| {
            let mb = d.mailbox_mut(mailbox)?;
            let modseq = mb.highest_modseq.saturating_add(1);
            let Some(msg) = mb.find_mut(uid) else {
                return Ok(FlagUpdate::Gone);
            };
            if unchanged_since.is_some_and(|n| msg.modseq > n) {
                return Ok(FlagUpdate::Modified);
            }
            let flags = storable(flags);
            if msg.flags != flags {
                self.commit(&Change::Flags {
                    user: &ukey,
                    mailbox: &normalize(mailbox),
                    uid,
                    modseq,
                    flags: &flags,
                })?;
                msg.flags = flags;
                msg.modseq = modseq;
                let done = FlagUpdate::Done {
                    flags: msg.flags.clone(),
                    modseq,
                };
                mb.highest_modseq = modseq;
                d.emit(StoreEvent::FlagsChanged {
                    mailbox: normalize(mailbox),
                    uid,
                });
                return Ok(done);
            }
            Ok(FlagUpdate::Done {
                flags: msg.flags.clone(),
                modseq: msg.modseq,
            })
        })
    }

    fn expunged_since(
        &self,
        user: &str,
        mailbox: &str,
        modseq: u64,
    ) -> Result<Option<Vec<u32>>, StoreError> {
        self.with_user(user, mailbox, |d| {
            let mb = d.mailbox(mailbox)?;
            if modseq < mb.vanished_floor {
                return Ok(None);
            }
            let mut uids: Vec<u32> = mb
                .vanished
                .iter()
                .filter(|&&(_, m)| m > modseq)
                .map(|&(u, _)| u)
                .collect();
            uids.sort_unstable();
            uids.dedup();
            Ok(Some(uids))
        })
    }

    fn expunge(&self, user: &str, mailbox: &str, uids: &[u32]) -> Result<Vec<u32>, StoreError> {
        let ukey = user_key(user);
        self.with_user_mut(user, mailbox, |d| {
            let name = normalize(mailbox);
            let mb = d.mailbox_mut(mailbox)?;
            let present: Vec<u32> = uids
                .iter()
                .copied()
                .collect::<BTreeSet<u32>>()
                .into_iter()
                .filter(|&uid| mb.find_mut(uid).is_some())
                .collect();
            if present.is_empty() {
                return Ok(present);
            }
            let modseq = mb.highest_modseq.saturating_add(1);
            self.commit(&Change::Expunge {
                user: &ukey,
                mailbox: &name,
                modseq,
                uids: &present,
            })?;
            mb.highest_modseq = modseq;
            mb.remember_vanished(&present, modseq);
            let wanted: BTreeSet<u32> = present.iter().copied().collect();
            let mut removed = Vec::new();
            let mut freed = 0u64;
            mb.messages.retain(|m| {
                let gone = wanted.contains(&m.uid);
                if gone {
                    removed.push(m.uid);
                    freed += m.data.len() as u64;
                }
                !gone
            });
            d.used = d.used.saturating_sub(freed);
            for &uid in &removed {
                d.emit(StoreEvent::Expunged {
                    mailbox: name.clone(),
                    uid,
                });
            }
            Ok(removed)
        })
    }

    fn delete_mailbox(&self, user: &str, mailbox: &str) -> Result<(), StoreError> {
        let key = normalize(mailbox);
        if key == "INBOX" {
            return Err(StoreError::CannotDelete(mailbox.to_string()));
        }
        let ukey = user_key(user);
        self.with_user_mut(user, mailbox, |d| {
            let mb = d.mailbox(mailbox)?;
            let prefix = format!("{key}{DELIMITER}");
            if d.mailboxes.keys().any(|k| k.starts_with(&prefix)) {
                return Err(StoreError::CannotDelete(mailbox.to_string()));
            }
            let freed: u64 = mb.messages.iter().map(|m| m.data.len() as u64).sum();
            let uids: Vec<u32> = mb.messages.iter().map(|m| m.uid).collect();
            self.commit(&Change::DeleteMailbox {
                user: &ukey,
                mailbox: &key,
            })?;
            d.mailboxes.remove(&key);
            d.used = d.used.saturating_sub(freed);
            for uid in uids {
                d.emit(StoreEvent::Expunged {
                    mailbox: key.clone(),
                    uid,
                });
            }
            Ok(())
        })
    }

    fn rename_mailbox(&self, user: &str, from: &str, to: &str) -> Result<(), StoreError> {
        validate_name(to)?;
        let (from_key, to_key) = (normalize(from), normalize(to));
        if from_key == "INBOX" {
            return self.rename_inbox(user, to);
        }
        let ukey = user_key(user);
        let validity = self.new_validity();
        self.with_user_mut(user, from, |d| {
            d.mailbox(from)?;
            if d.mailboxes.contains_key(&to_key) {
                return Err(StoreError::MailboxExists(to.to_string()));
            }
            let prefix = format!("{from_key}{DELIMITER}");
            if to_key.starts_with(&prefix) {
                // Into its own inferior: the hierarchy would loop.
                return Err(StoreError::InvalidName(to.to_string()));
            }
            // The mailbox and its inferiors, each with its new name.
            let moves: Vec<(String, String)> = d
                .mailboxes
                .keys()
                .filter(|k| **k == from_key || k.starts_with(&prefix))
                .map(|k| (k.clone(), format!("{to_key}{}", &k[from_key.len()..])))
                .collect();
            if let Some((_, taken)) = moves.iter().find(|(_, n)| d.mailboxes.contains_key(n)) {
                return Err(StoreError::MailboxExists(taken.clone()));
            }
            // Superiors of the new name, so the hierarchy has no holes.
            let mut superior = String::new();
            let levels: Vec<&str> = to_key.split(DELIMITER).collect();
            for level in &levels[..levels.len() - 1] {
                if !superior.is_empty() {
                    superior.push(DELIMITER);
                }
                superior.push_str(level);
                if !d.mailboxes.contains_key(&superior) {
                    self.commit(&Change::CreateMailbox {
                        user: &ukey,
                        mailbox: &superior,
                        uid_validity: validity,
                    })?;
                    d.mailboxes.insert(superior.clone(), Mailbox::new(validity));
                }
            }
            for (old, new) in moves {
                self.commit(&Change::RenameMailbox {
                    user: &ukey,
                    from: &old,
                    to: &new,
                })?;
                if let Some(mb) = d.mailboxes.remove(&old) {
                    d.mailboxes.insert(new, mb);
                }
            }
            Ok(())
        })
    }

    fn subscriptions(&self, user: &str) -> Vec<String> {
        self.read()
            .get(&user_key(user))
            .map(|d| d.subscriptions.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn set_subscribed(&self, user: &str, mailbox: &str, on: bool) -> Result<(), StoreError> {
        let key = normalize(mailbox);
        let ukey = user_key(user);
        self.with_user_mut(user, mailbox, |d| {
            if on {
                // Only existing mailboxes: the list cannot grow past the mailboxes.
                d.mailbox(mailbox)?;
            }
            if d.subscriptions.contains(&key) == on {
                return Ok(());
            }
            self.commit(&Change::Subscribe {
                user: &ukey,
                mailbox: &key,
                on,
            })?;
            if on {
                d.subscriptions.insert(key);
            } else {
                d.subscriptions.remove(&key);
            }
            Ok(())
        })
    }

    fn subscribe(&self, user: &str) -> broadcast::Receiver<StoreEvent> {
        self.write()
            .entry(user_key(user))
            .or_insert_with(UserData::new)
            .events
            .subscribe()
    }

    fn take_recent(&self, user: &str, mailbox: &str) -> Result<BTreeSet<u32>, StoreError> {
        self.with_user_mut(user, mailbox, |d| {
            let mb = d.mailbox_mut(mailbox)?;
            let recent = mb
                .messages
                .iter()
                .filter(|m| m.uid >= mb.recent_from)
                .map(|m| m.uid)
                .collect();
            mb.recent_from = mb.uid_next;
            Ok(recent)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn ensure_user_creates_inbox_once() {
        let store = MemoryStore::new();
        assert!(store.list_mailboxes("alice@example.com").is_empty());
        store.ensure_user("alice@example.com");
        let before = store.status("alice@example.com", "INBOX").unwrap();
        store.ensure_user("Alice@Example.com");
        assert_eq!(store.list_mailboxes("alice@example.com"), vec!["INBOX"]);
        let after = store.status("alice@example.com", "inbox").unwrap();
        assert_eq!(before, after);
        assert_eq!(after.exists, 0);
        assert_eq!(after.uid_next, 1);
        assert_ne!(after.uid_validity, 0);
    }

    #[test]
    fn append_assigns_increasing_uids_and_counts() {
        let store = MemoryStore::new();
        store.ensure_user("bob");
        let a = store
            .append("bob", "INBOX", b"A\r\n".to_vec(), flags(&[]), Some(10))
            .unwrap();
        let b = store
            .append(
                "bob",
                "Inbox",
                b"B\r\n".to_vec(),
                flags(&["\\Seen", "\\Recent"]),
                None,
            )
            .unwrap();
        assert_eq!((a, b), (1, 2));
        let msgs = store.messages("bob", "INBOX").unwrap();
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[0].internal_date, 10);
        assert_eq!(
            msgs[1].flags,
            flags(&["\\Seen"]),
            "\\Recent is never stored"
        );
        let st = store.status("bob", "INBOX").unwrap();
        assert_eq!((st.exists, st.unseen, st.recent, st.uid_next), (2, 1, 2, 3));
    }

    #[test]
    fn recent_is_claimed_once() {
        let store = MemoryStore::new();
        store.ensure_user("bob");
        store
            .append("bob", "INBOX", b"x".to_vec(), flags(&[]), None)
            .unwrap();
        assert_eq!(store.take_recent("bob", "INBOX").unwrap(), [1].into());
        assert!(store.take_recent("bob", "INBOX").unwrap().is_empty());
        assert_eq!(store.status("bob", "INBOX").unwrap().recent, 0);
    }

    #[test]
    fn unknown_user_or_mailbox_is_an_error() {
        let store = MemoryStore::new();
        assert_eq!(
            store.status("nobody", "INBOX"),
            Err(StoreError::NoSuchMailbox("INBOX".into()))
        );
        store.ensure_user("bob");
        assert!(matches!(
            store.append("bob", "Nope", vec![], flags(&[]), None),
            Err(StoreError::NoSuchMailbox(_))
        ));
    }

    #[test]
    fn create_mailbox_validates_and_refuses_duplicates() {
        let store = MemoryStore::new();
        store.ensure_user("bob");
        store.create_mailbox("bob", "Work/2024").unwrap();
        assert_eq!(
            store.create_mailbox("bob", "inbox"),
            Err(StoreError::MailboxExists("inbox".into()))
        );
        for bad in ["", "/x", "x/", "a//b", "a*", "a%b", "a\r\nb"] {
            assert!(
                matches!(
                    store.create_mailbox("bob", bad),
                    Err(StoreError::InvalidName(_))
                ),
                "{bad:?}"
            );
        }
        let inbox = store.status("bob", "INBOX").unwrap().uid_validity;
        let work = store.status("bob", "Work/2024").unwrap().uid_validity;
        assert_ne!(inbox, work);
        assert_eq!(store.list_mailboxes("bob"), vec!["INBOX", "Work/2024"]);
    }

    #[test]
    fn set_flags_and_expunge() {
        let store = MemoryStore::new();
        store.ensure_user("bob");
        for _ in 0..3 {
            store
                .append("bob", "INBOX", b"m".to_vec(), flags(&[]), None)
                .unwrap();
        }
        store
            .set_flags("bob", "INBOX", 2, flags(&["\\Deleted"]))
            .unwrap();
        // Unknown UID: silently ignored (expunged by someone else).
        store.set_flags("bob", "INBOX", 99, flags(&[])).unwrap();
        assert_eq!(
            store.expunge("bob", "INBOX", &[2, 3, 42]).unwrap(),
            vec![2, 3]
        );
        let left: Vec<u32> = store
            .messages("bob", "INBOX")
            .unwrap()
            .iter()
            .map(|m| m.uid)
            .collect();
        assert_eq!(left, vec![1]);
        // UIDs are never reused.
        let uid = store
            .append("bob", "INBOX", b"m".to_vec(), flags(&[]), None)
            .unwrap();
        assert_eq!(uid, 4);
    }

    #[test]
    fn subscribers_see_events() {
        let store = MemoryStore::new();
        let mut rx = store.subscribe("carol");
        store.ensure_user("carol");
        let uid = store
            .append("carol", "INBOX", b"m".to_vec(), flags(&[]), None)
            .unwrap();
        store
            .set_flags("carol", "INBOX", uid, flags(&["\\Seen"]))
            .unwrap();
        store.expunge("carol", "INBOX", &[uid]).unwrap();
        let mailbox = "INBOX".to_string();
        assert_eq!(
            rx.try_recv().unwrap(),
            StoreEvent::Appended {
                mailbox: mailbox.clone(),
                uid
            }
        );
        assert_eq!(
            rx.try_recv().unwrap(),
            StoreEvent::FlagsChanged {
                mailbox: mailbox.clone(),
                uid
            }
        );
        assert_eq!(
            rx.try_recv().unwrap(),
            StoreEvent::Expunged { mailbox, uid }
        );
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn quota_counts_every_copy_and_expunge_frees_it() {
        let store = MemoryStore::with_quota(Some(10));
        store.ensure_user("eve");
        store.create_mailbox("eve", "Archive").unwrap();
        let data = Arc::new(b"12345".to_vec());
        store
            .append_shared("eve", "INBOX", data.clone(), flags(&[]), None)
            .unwrap();
        store
            .append_shared("Eve", "Archive", data.clone(), flags(&[]), None)
            .unwrap();
        assert_eq!(store.usage("eve"), 10);
        assert!(store.over_quota("EVE"));
        let stored = store.messages("eve", "Archive").unwrap();
        assert!(
            Arc::ptr_eq(&stored[0].data, &data),
            "the copy shares the bytes"
        );
        assert_eq!(
            store.append("eve", "INBOX", b"x".to_vec(), flags(&[]), None),
            Err(StoreError::OverQuota {
                user: "eve".into(),
                needed: 1,
                free: 0
            })
        );
        assert_eq!(
            store.status("eve", "INBOX").unwrap().uid_next,
            2,
            "no UID used"
        );
        store.expunge("eve", "INBOX", &[1]).unwrap();
        assert_eq!(store.usage("eve"), 5);
        assert!(!store.over_quota("eve"));
        store
            .append("eve", "INBOX", b"x".to_vec(), flags(&[]), None)
            .unwrap();
        // Other users are not affected; the plain memory store has no quota.
        assert_eq!(store.usage("nobody"), 0);
        assert_eq!(MemoryStore::new().quota(), None);
    }

    #[test]
    fn modseqs_grow_with_every_change_and_expunges_are_remembered() {
        let store = MemoryStore::new();
        store.ensure_user("bob");
        assert_eq!(store.status("bob", "INBOX").unwrap().highest_modseq, 1);
        for _ in 0..3 {
            store
                .append("bob", "INBOX", b"m".to_vec(), flags(&[]), None)
                .unwrap();
        }
        let modseqs: Vec<u64> = store
            .messages("bob", "INBOX")
            .unwrap()
            .iter()
            .map(|m| m.modseq)
            .collect();
        assert_eq!(modseqs, vec![2, 3, 4]);
        store
            .set_flags("bob", "INBOX", 1, flags(&["\\Seen"]))
            .unwrap();
        // Setting the same flags again is no change: the modseq stays.
        store
            .set_flags("bob", "INBOX", 1, flags(&["\\Seen"]))
            .unwrap();
        assert_eq!(store.messages("bob", "INBOX").unwrap()[0].modseq, 5);
        assert_eq!(
            store.set_flags_if_unchanged("bob", "INBOX", 1, flags(&[]), Some(4)),
            Ok(FlagUpdate::Modified)
        );
        assert_eq!(
            store.set_flags_if_unchanged("bob", "INBOX", 2, flags(&["$x"]), Some(3)),
            Ok(FlagUpdate::Done {
                flags: flags(&["$x"]),
                modseq: 6
            })
        );
        assert_eq!(
            store.set_flags_if_unchanged("bob", "INBOX", 9, flags(&[]), None),
            Ok(FlagUpdate::Gone)
        );
        store.expunge("bob", "INBOX", &[3]).unwrap();
        store.expunge("bob", "INBOX", &[1]).unwrap();
        assert_eq!(store.status("bob", "INBOX").unwrap().highest_modseq, 8);
        assert_eq!(
            store.expunged_since("bob", "INBOX", 6),
            Ok(Some(vec![1, 3]))
        );
        assert_eq!(store.expunged_since("bob", "INBOX", 7), Ok(Some(vec![1])));
        assert_eq!(store.expunged_since("bob", "INBOX", 8), Ok(Some(vec![])));
    }

    #[test]
    fn forgotten_expunges_make_older_requests_unanswerable() {
        let store = MemoryStore::new();
        store.ensure_user("bob");
        let n = u32::try_from(MAX_VANISHED).unwrap() + 2;
        for _ in 0..n {
            store
                .append("bob", "INBOX", b"m".to_vec(), flags(&[]), None)
                .unwrap();
        }
        let before = store.status("bob", "INBOX").unwrap().highest_modseq;
        // One expunge per UID: the first two are forgotten.
        for uid in 1..=n {
            store.expunge("bob", "INBOX", &[uid]).unwrap();
        }
        assert_eq!(store.expunged_since("bob", "INBOX", before), Ok(None));
        let kept = store
            .expunged_since("bob", "INBOX", before + 2)
            .unwrap()
            .unwrap();
        assert_eq!(kept.len(), MAX_VANISHED);
        assert_eq!(kept.first(), Some(&3));
    }

    #[test]
    fn store_is_shared_across_threads() {
        let store = Arc::new(MemoryStore::new());
        store.ensure_user("dan");
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let s = store.clone();
                std::thread::spawn(move || {
                    for _ in 0..25 {
                        s.append("dan", "INBOX", b"m".to_vec(), BTreeSet::new(), None)
                            .unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let st = store.status("dan", "INBOX").unwrap();
        assert_eq!((st.exists, st.uid_next), (100, 101));
    }
}
