//! Per-user JMAP state: the current [`Snapshot`], monotonically increasing state strings per
//! data type, and a bounded change log for `/changes`.
//!
//! The store only broadcasts events; the tracker subscribes BEFORE its first scan, so every
//! change after a state was handed out either is in the log or marks the tracker dirty. A
//! refresh drains the events (a lagged receiver just means "rescan"), compares the mailbox list
//! (creating a mailbox sends no event), rescans if needed and logs the diff under a new state.
//! State strings are `<epoch>-<n>`: the epoch changes at every start, so a client's state from
//! a previous run gets `cannotCalculateChanges` instead of a wrong answer.

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Semaphore;
use tokio::sync::broadcast::{self, error::TryRecvError};

use super::view::{self, Delta, MetaCache, Snapshot};
use crate::store::{MailStore, StoreEvent};

/// Log entries kept per user; older states get `cannotCalculateChanges`.
const LOG_CAPACITY: usize = 4096;

/// Mailboxes created on first JMAP use, so clients can save drafts and sent copies.
const AUTO_MAILBOXES: [(&str, &str); 2] = [("drafts", "Drafts"), ("sent", "Sent")];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    Mailbox,
    Email,
    Thread,
}

/// The counter value at the last change of each type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct States {
    pub mailbox: u64,
    pub email: u64,
    pub thread: u64,
    /// Bumped when an email arrives in the inbox (RFC 8621 `EmailDelivery` push type).
    pub email_delivery: u64,
    pub submission: u64,
}

impl States {
    fn get(&self, kind: DataType) -> u64 {
        match kind {
            DataType::Mailbox => self.mailbox,
            DataType::Email => self.email,
            DataType::Thread => self.thread,
        }
    }
}

struct Entry {
    state: u64,
    mailbox: Delta,
    email: Delta,
    thread: Delta,
}

impl Entry {
    fn delta(&self, kind: DataType) -> &Delta {
        match kind {
            DataType::Mailbox => &self.mailbox,
            DataType::Email => &self.email,
            DataType::Thread => &self.thread,
        }
    }
}

struct Inner {
    rx: broadcast::Receiver<StoreEvent>,
    names: Vec<String>,
    cache: MetaCache,
    snapshot: Arc<Snapshot>,
    counter: u64,
    states: States,
    log: VecDeque<Entry>,
    /// Changes are known for every state >= floor.
    floor: u64,
}

/// The result of a `/changes` computation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changes {
    pub old_state: String,
    pub new_state: String,
    pub has_more_changes: bool,
    pub created: Vec<String>,
    pub updated: Vec<String>,
    pub destroyed: Vec<String>,
    /// Only counts changed (Mailbox/changes `updatedProperties`).
    pub counts_only: bool,
}

/// Why changes cannot be computed (always `cannotCalculateChanges` on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CannotCalculate;

pub struct Tracker {
    user: String,
    epoch: Arc<str>,
    inner: Mutex<Inner>,
    /// `maxConcurrentRequests` for this user.
    pub requests: Arc<Semaphore>,
    /// `maxConcurrentUpload` for this user.
    pub uploads: Arc<Semaphore>,
    /// EmailSubmission records (in memory, bounded).
    pub submissions: Mutex<super::methods::submission::Submissions>,
}

impl Tracker {
    pub fn new(
        store: &dyn MailStore,
        user: &str,
        epoch: Arc<str>,
        max_requests: usize,
        max_uploads: usize,
    ) -> Self {
        store.ensure_user(user);
        let rx = store.subscribe(user);
        let mut cache = MetaCache::new();
        let mut snapshot = view::scan(store, user, &mut cache);
        let mut created = false;
        for (role, name) in AUTO_MAILBOXES {
            if snapshot.mailbox_by_role(role).is_none() {
                match store.create_mailbox(user, name) {
                    Ok(()) => created = true,
                    Err(e) => {
                        tracing::warn!(user, mailbox = name, error = %e, "could not create mailbox")
                    }
                }
            }
        }
        if created {
            snapshot = view::scan(store, user, &mut cache);
        }
        Self {
            user: user.to_string(),
            epoch,
            inner: Mutex::new(Inner {
                rx,
                names: store.list_mailboxes(user),
                cache,
                snapshot: Arc::new(snapshot),
                counter: 0,
                states: States::default(),
                log: VecDeque::new(),
                floor: 0,
            }),
            requests: Arc::new(Semaphore::new(max_requests)),
            uploads: Arc::new(Semaphore::new(max_uploads)),
            submissions: Mutex::new(Default::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every operation leaves Inner consistent; a panic elsewhere must not wedge the user.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn state_string(&self, n: u64) -> String {
        format!("{}-{n}", self.epoch)
    }

    /// Parses one of our state strings; None for anything else (other epoch, garbage).
    pub fn parse_state(&self, s: &str) -> Option<u64> {
        let (epoch, n) = s.rsplit_once('-')?;
        if epoch != &*self.epoch {
            return None;
        }
        n.parse().ok()
    }

    /// Brings the snapshot up to date with the store and returns it with the current states.
    pub fn refresh(&self, store: &dyn MailStore) -> (Arc<Snapshot>, States) {
        let mut inner = self.lock();
        let mut dirty = false;
        let mut delivered = false;
        loop {
            match inner.rx.try_recv() {
                Ok(StoreEvent::Appended { mailbox, .. }) => {
                    dirty = true;
                    delivered |= mailbox.eq_ignore_ascii_case("INBOX");
                }
                Ok(_) => dirty = true,
                Err(TryRecvError::Lagged(n)) => {
                    tracing::debug!(user = %self.user, missed = n, "store events lagged; rescanning");
                    dirty = true;
                    delivered = true;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Closed) => {
                    inner.rx = store.subscribe(&self.user);
                    dirty = true;
                    break;
                }
            }
        }
        let names = store.list_mailboxes(&self.user);
        if names != inner.names {
            inner.names = names;
            dirty = true;
        }
        if dirty {
            let inner = &mut *inner;
            let next = Arc::new(view::scan(store, &self.user, &mut inner.cache));
            let (mailbox, email, thread) = view::diff(&inner.snapshot, &next);
            inner.snapshot = next;
            if !(mailbox.is_empty() && email.is_empty() && thread.is_empty()) {
                inner.counter += 1;
                let n = inner.counter;
                if !mailbox.is_empty() {
                    inner.states.mailbox = n;
                }
                if !email.is_empty() {
                    inner.states.email = n;
                    if delivered && !email.created.is_empty() {
                        inner.states.email_delivery = n;
                    }
                }
                if !thread.is_empty() {
                    inner.states.thread = n;
                }
                inner.log.push_back(Entry {
                    state: n,
                    mailbox,
                    email,
                    thread,
                });
                while inner.log.len() > LOG_CAPACITY {
                    if let Some(old) = inner.log.pop_front() {
                        inner.floor = old.state;
                    }
                }
            }
        }
        (inner.snapshot.clone(), inner.states)
    }

    /// Records a change that the store does not see (EmailSubmission).
    pub fn bump_submission(&self) -> u64 {
        let mut inner = self.lock();
        inner.counter += 1;
        inner.states.submission = inner.counter;
        inner.counter
    }

    pub fn states(&self) -> States {
        self.lock().states
    }

    /// Changes of `kind` since `since` (a state string we handed out), at most `max` ids.
    pub fn changes(
        &self,
        kind: DataType,
        since: &str,
        max: Option<usize>,
    ) -> Result<Changes, CannotCalculate> {
        let inner = self.lock();
        let since_n = self.parse_state(since).ok_or(CannotCalculate)?;
        if since_n < inner.floor || since_n > inner.counter {
            return Err(CannotCalculate);
        }
        let mut created = BTreeSet::new();
        let mut updated = BTreeSet::new();
        let mut destroyed = BTreeSet::new();
        let mut counts_only = true;
        let mut new_state = since_n.max(inner.states.get(kind));
        let mut has_more = false;
        let mut total = 0usize;
        for entry in inner.log.iter().filter(|e| e.state > since_n) {
            let delta = entry.delta(kind);
            if delta.is_empty() {
                continue;
            }
            let size = delta.created.len() + delta.updated.len() + delta.destroyed.len();
            if let Some(max) = max
                && total + size > max
            {
                if total == 0 {
                    // One step bigger than the client allows: it must resync.
                    return Err(CannotCalculate);
                }
                has_more = true;
                break;
            }
            total += size;
            merge(&mut created, &mut updated, &mut destroyed, delta);
            counts_only &= !delta.non_count_update;
            new_state = entry.state;
        }
        if !has_more {
            new_state = new_state.max(inner.states.get(kind));
        }
        Ok(Changes {
            old_state: since.to_string(),
            new_state: self.state_string(new_state),
            has_more_changes: has_more,
            created: created.into_iter().collect(),
            updated: updated.into_iter().collect(),
            destroyed: destroyed.into_iter().collect(),
            counts_only,
        })
    }
}

/// Folds one step into the running result, so an id appears in at most one list.
fn merge(
    created: &mut BTreeSet<String>,
    updated: &mut BTreeSet<String>,
    destroyed: &mut BTreeSet<String>,
    delta: &Delta,
) {
    for id in &delta.created {
        if destroyed.remove(id) {
            // Existed at the old state, gone, back again: the client must refetch it.
            updated.insert(id.clone());
        } else {
            created.insert(id.clone());
        }
    }
    for id in &delta.updated {
        if !created.contains(id) {
            updated.insert(id.clone());
        }
    }
    for id in &delta.destroyed {
        updated.remove(id);
        if !created.remove(id) {
            destroyed.insert(id.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn tracker(store: &MemoryStore, user: &str) -> Tracker {
        Tracker::new(store, user, Arc::from("ep"), 4, 4)
    }

    #[test]
    fn first_use_creates_drafts_and_sent() {
        let store = MemoryStore::new();
        let t = tracker(&store, "u");
        let (snap, states) = t.refresh(&store);
        assert_eq!(states, States::default());
        assert!(snap.mailbox_by_role("drafts").is_some());
        assert!(snap.mailbox_by_role("sent").is_some());
        assert_eq!(store.list_mailboxes("u"), vec!["Drafts", "INBOX", "Sent"]);
    }

    #[test]
    fn states_advance_and_changes_merge() {
        let store = MemoryStore::new();
        let t = tracker(&store, "u");
        let s0 = t.state_string(t.refresh(&store).1.email);
        let uid = store
            .append(
                "u",
                "INBOX",
                b"Subject: a\r\n\r\nx\r\n".to_vec(),
                BTreeSet::new(),
                None,
            )
            .unwrap();
        let (_, st1) = t.refresh(&store);
        assert_eq!((st1.email, st1.email_delivery, st1.mailbox), (1, 1, 1));
        let s1 = t.state_string(st1.email);
        store
            .set_flags("u", "INBOX", uid, ["\\Seen".to_string()].into())
            .unwrap();
        let (_, st2) = t.refresh(&store);
        assert_eq!((st2.email, st2.thread, st2.email_delivery), (2, 1, 1));

        let c = t.changes(DataType::Email, &s0, None).unwrap();
        assert_eq!(
            (c.created.len(), c.updated.len()),
            (1, 0),
            "created then updated = created"
        );
        assert_eq!(c.new_state, t.state_string(2));
        let c = t.changes(DataType::Email, &s1, None).unwrap();
        assert_eq!((c.created.len(), c.updated.len()), (0, 1));
        let c = t.changes(DataType::Mailbox, &s1, None).unwrap();
        assert!(c.counts_only);
        assert_eq!(c.updated.len(), 1);

        store.expunge("u", "INBOX", &[uid]).unwrap();
        t.refresh(&store);
        let c = t.changes(DataType::Email, &s0, None).unwrap();
        assert!(c.created.is_empty() && c.destroyed.is_empty() && c.updated.is_empty());
        let c = t.changes(DataType::Email, &s1, None).unwrap();
        assert_eq!(c.destroyed.len(), 1);
        // Nothing new: same state back.
        let now = t.state_string(t.states().email);
        let c = t.changes(DataType::Email, &now, None).unwrap();
        assert_eq!(c.new_state, now);
    }

    #[test]
    fn max_changes_pages_and_bad_states_fail() {
        let store = MemoryStore::new();
        let t = tracker(&store, "u");
        let s0 = t.state_string(0);
        for i in 0..3 {
            store
                .append(
                    "u",
                    "INBOX",
                    format!("Subject: {i}\r\n\r\n").into_bytes(),
                    BTreeSet::new(),
                    None,
                )
                .unwrap();
            t.refresh(&store);
        }
        let c = t.changes(DataType::Email, &s0, Some(2)).unwrap();
        assert!(c.has_more_changes);
        assert_eq!(c.created.len(), 2);
        let c2 = t.changes(DataType::Email, &c.new_state, Some(2)).unwrap();
        assert!(!c2.has_more_changes);
        assert_eq!(c2.created.len(), 1);
        assert_eq!(
            t.changes(DataType::Email, "other-0", None),
            Err(CannotCalculate)
        );
        assert_eq!(
            t.changes(DataType::Email, "ep-99", None),
            Err(CannotCalculate)
        );
        assert_eq!(
            t.changes(DataType::Email, "garbage", None),
            Err(CannotCalculate)
        );
    }

    #[test]
    fn lagged_events_still_refresh() {
        let store = MemoryStore::new();
        let t = tracker(&store, "u");
        for i in 0..1100 {
            store
                .append(
                    "u",
                    "INBOX",
                    format!("{i}").into_bytes(),
                    BTreeSet::new(),
                    None,
                )
                .unwrap();
        }
        let (snap, states) = t.refresh(&store);
        assert_eq!(snap.mailbox_by_role("inbox").unwrap().total_emails, 1100);
        assert_eq!(states.email, 1);
    }
}
