//! The disk store (`store.kind = "disk"`): one redb database, `<store.path>/mail.redb`, the
//! [`Journal`] of a [`MemoryStore`] index and of the [`SieveScripts`].
//!
//! Every change is one redb write transaction committed with `Durability::Immediate` (synced)
//! before the index applies it, so whatever a client was told is stored survives a crash and a
//! transaction cut short leaves no trace (redb's commit is atomic). Message bytes are kept once
//! per content (SHA-256) with a reference count, so a delivery to many users or a COPY adds
//! only small records. The index holds every message in memory, read back at start-up.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use sha2::{Digest, Sha256};

use super::journal::{Change, Journal, RestoredMailbox};
use super::scripts::{ScriptJournal, UserScriptsState};
use super::{MemoryStore, ScriptLimits, SieveScripts, StoreError, StoredMessage};

/// (user, mailbox) -> (UIDVALIDITY, next UID).
const MAILBOXES: TableDefinition<(&str, &str), (u32, u32)> = TableDefinition::new("mailboxes");
type MessageKey = (&'static str, &'static str, u32);
/// (internal date, flags joined by spaces, content hash).
type MessageValue = (i64, &'static str, &'static [u8]);
/// (user, mailbox, uid) -> [`MessageValue`].
const MESSAGES: TableDefinition<MessageKey, MessageValue> = TableDefinition::new("messages");
/// content hash -> message bytes.
const BLOBS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("blobs");
/// content hash -> how many messages use it.
const BLOB_REFS: TableDefinition<&[u8], u64> = TableDefinition::new("blob_refs");
/// (user, script name) -> source.
const SCRIPTS: TableDefinition<(&str, &str), &str> = TableDefinition::new("scripts");
/// (user, mailbox) -> nothing: the subscribed names.
const SUBSCRIPTIONS: TableDefinition<(&str, &str), ()> = TableDefinition::new("subscriptions");
/// user -> name of the active script.
const ACTIVE_SCRIPT: TableDefinition<&str, &str> = TableDefinition::new("active_script");

/// (user, mailbox) -> HIGHESTMODSEQ (RFC 7162). A table of its own, so databases written before
/// mod-sequences still open: a missing value reads as 1.
const HIGHEST_MODSEQ: TableDefinition<(&str, &str), u64> = TableDefinition::new("highest_modseq");
/// (user, mailbox, uid) -> the message's modseq; missing reads as 1.
const MESSAGE_MODSEQ: TableDefinition<MessageKey, u64> = TableDefinition::new("message_modseq");

/// File name of the database inside `store.path`.
pub const DATABASE_FILE: &str = "mail.redb";

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("cannot create the store directory {path}: {source}")]
    Directory {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the store directory {0} is readable by others: make it owner-only (chmod 700)")]
    NotPrivate(PathBuf),
    #[error("cannot open the store database {path}: {message}")]
    Open { path: PathBuf, message: String },
    #[error("the store database {path} is damaged: {message}")]
    Corrupt { path: PathBuf, message: String },
}

/// The redb database behind the disk store.
pub struct DiskJournal {
    db: Database,
}

impl std::fmt::Debug for DiskJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskJournal").finish_non_exhaustive()
    }
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn hash(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

fn join_flags(flags: &BTreeSet<String>) -> String {
    // IMAP flags are atoms: they never contain a space.
    flags
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(" ")
}

fn split_flags(text: &str) -> BTreeSet<String> {
    text.split(' ')
        .filter(|f| !f.is_empty())
        .map(str::to_string)
        .collect()
}

/// Creates `path` owner-only, or checks that an existing one is.
fn private_directory(path: &Path) -> Result<(), DiskError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let dir_error = |source| DiskError::Directory {
        path: path.to_path_buf(),
        source,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(dir_error)?;
    let mode = std::fs::metadata(path)
        .map_err(dir_error)?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(DiskError::NotPrivate(path.to_path_buf()));
    }
    Ok(())
}

/// Opens (or creates) the disk store in `dir`: the mail index and the Sieve scripts, both
/// writing through to the same database.
pub fn open(
    dir: &Path,
    quota: Option<u64>,
    limits: ScriptLimits,
) -> Result<(MemoryStore, SieveScripts), DiskError> {
    private_directory(dir)?;
    let path = dir.join(DATABASE_FILE);
    let open_error = |e: &dyn std::fmt::Display| DiskError::Open {
        path: path.clone(),
        message: e.to_string(),
    };
    let db = Database::create(&path).map_err(|e| open_error(&e))?;
    let journal = Arc::new(DiskJournal { db });
    // Creates the tables on first use, so reading never meets a missing one.
    journal.write(|_| Ok(())).map_err(|e| open_error(&e))?;
    let corrupt = |e: redb::Error| DiskError::Corrupt {
        path: path.clone(),
        message: e.to_string(),
    };
    let mailboxes = journal.read_mailboxes().map_err(corrupt)?;
    let subscriptions = journal.read_subscriptions().map_err(corrupt)?;
    let scripts = journal.read_scripts().map_err(corrupt)?;
    let count: usize = mailboxes.iter().map(|m| m.messages.len()).sum();
    tracing::info!(path = %path.display(), mailboxes = mailboxes.len(), messages = count, "disk store opened");
    let store = MemoryStore::restore(quota, Box::new(journal.clone()), mailboxes, subscriptions);
    let scripts = SieveScripts::restore(limits, Box::new(journal), scripts);
    Ok((store, scripts))
}

impl DiskJournal {
    /// Runs `f` in one write transaction and commits it durably.
    fn write(
        &self,
        f: impl FnOnce(&WriteTransaction) -> Result<(), redb::Error>,
    ) -> Result<(), redb::Error> {
        let txn = self.db.begin_write()?;
        {
            // Every table is opened once so a fresh database has them all.
            txn.open_table(MAILBOXES)?;
            txn.open_table(MESSAGES)?;
            txn.open_table(BLOBS)?;
            txn.open_table(BLOB_REFS)?;
            txn.open_table(SCRIPTS)?;
            txn.open_table(ACTIVE_SCRIPT)?;
            txn.open_table(SUBSCRIPTIONS)?;
            txn.open_table(HIGHEST_MODSEQ)?;
            txn.open_table(MESSAGE_MODSEQ)?;
        }
        f(&txn)?;
        // Durability::Immediate is redb's default: commit returns once the data is synced.
        txn.commit()?;
        Ok(())
    }

    fn read_mailboxes(&self) -> Result<Vec<RestoredMailbox>, redb::Error> {
        let txn = self.db.begin_read()?;
        let boxes = txn.open_table(MAILBOXES)?;
        let messages = txn.open_table(MESSAGES)?;
        let blobs = txn.open_table(BLOBS)?;
        let highest = txn.open_table(HIGHEST_MODSEQ)?;
        let modseqs = txn.open_table(MESSAGE_MODSEQ)?;
        // One Arc per content, so copies stay shared after a restart too.
        let mut shared: HashMap<Vec<u8>, Arc<Vec<u8>>> = HashMap::new();
        let mut out = Vec::new();
        for entry in boxes.iter()? {
            let (key, value) = entry?;
            let (user, mailbox) = key.value();
            let (uid_validity, uid_next) = value.value();
            let mut list = Vec::new();
            let range = messages.range((user, mailbox, 0u32)..=(user, mailbox, u32::MAX))?;
            for m in range {
                let (k, v) = m?;
                let (_, _, uid) = k.value();
                let (internal_date, flags, digest) = v.value();
                let data = match shared.get(digest) {
                    Some(d) => d.clone(),
                    None => {
                        let Some(bytes) = blobs.get(digest)? else {
                            return Err(redb::Error::Corrupted(format!(
                                "message {uid} of {user}/{mailbox} has no content"
                            )));
                        };
                        let d = Arc::new(bytes.value().to_vec());
                        shared.insert(digest.to_vec(), d.clone());
                        d
                    }
                };
                let modseq = modseqs.get((user, mailbox, uid))?.map_or(1, |m| m.value());
                list.push(StoredMessage {
                    uid,
                    flags: split_flags(flags),
                    internal_date,
                    data,
                    modseq,
                });
            }
            out.push(RestoredMailbox {
                user: user.to_string(),
                mailbox: mailbox.to_string(),
                uid_validity,
                uid_next,
                highest_modseq: highest.get((user, mailbox))?.map_or(1, |m| m.value()),
                messages: list,
            });
        }
        Ok(out)
    }

    fn read_subscriptions(&self) -> Result<HashMap<String, BTreeSet<String>>, redb::Error> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(SUBSCRIPTIONS)?;
        let mut out: HashMap<String, BTreeSet<String>> = HashMap::new();
        for entry in table.iter()? {
            let (k, _) = entry?;
            let (user, mailbox) = k.value();
            out.entry(user.to_string())
                .or_default()
                .insert(mailbox.to_string());
        }
        Ok(out)
    }

    fn read_scripts(&self) -> Result<HashMap<String, UserScriptsState>, redb::Error> {
        let txn = self.db.begin_read()?;
        let scripts = txn.open_table(SCRIPTS)?;
        let active = txn.open_table(ACTIVE_SCRIPT)?;
        let mut out: HashMap<String, UserScriptsState> = HashMap::new();
        for entry in scripts.iter()? {
            let (k, v) = entry?;
            let (user, name) = k.value();
            out.entry(user.to_string())
                .or_default()
                .scripts
                .insert(name.to_string(), v.value().to_string());
        }
        for entry in active.iter()? {
            let (k, v) = entry?;
            out.entry(k.value().to_string()).or_default().active = Some(v.value().to_string());
        }
        Ok(out)
    }
}

/// Adds one reference to `data`'s content, storing the bytes if they are new.
fn add_blob(txn: &WriteTransaction, data: &[u8]) -> Result<[u8; 32], redb::Error> {
    let digest = hash(data);
    let mut refs = txn.open_table(BLOB_REFS)?;
    let count = refs.get(digest.as_slice())?.map_or(0, |c| c.value());
    if count == 0 {
        txn.open_table(BLOBS)?.insert(digest.as_slice(), data)?;
    }
    refs.insert(digest.as_slice(), count + 1)?;
    Ok(digest)
}

/// Drops one reference to a content, and the bytes with the last.
fn release_blob(txn: &WriteTransaction, digest: &[u8]) -> Result<(), redb::Error> {
    let mut refs = txn.open_table(BLOB_REFS)?;
    let count = refs.get(digest)?.map_or(0, |c| c.value());
    if count <= 1 {
        refs.remove(digest)?;
        txn.open_table(BLOBS)?.remove(digest)?;
    } else {
        refs.insert(digest, count - 1)?;
    }
    Ok(())
}

/// One mailbox's message records: (uid, internal date, flags, content hash).
type MessageRecord = (u32, i64, String, Vec<u8>);

fn messages_of(
    table: &redb::Table<MessageKey, MessageValue>,
    user: &str,
    mailbox: &str,
) -> Result<Vec<MessageRecord>, redb::Error> {
    let mut out = Vec::new();
    for entry in table.range((user, mailbox, 0u32)..=(user, mailbox, u32::MAX))? {
        let (k, v) = entry?;
        let (date, flags, digest) = v.value();
        out.push((k.value().2, date, flags.to_string(), digest.to_vec()));
    }
    Ok(out)
}

fn apply(txn: &WriteTransaction, change: &Change<'_>) -> Result<(), redb::Error> {
    match *change {
        Change::CreateMailbox {
            user,
            mailbox,
            uid_validity,
        } => {
            txn.open_table(MAILBOXES)?
                .insert((user, mailbox), (uid_validity, 1u32))?;
        }
        Change::Append {
            user,
            mailbox,
            uid,
            modseq,
            flags,
            internal_date,
            data,
        } => {
            let mut boxes = txn.open_table(MAILBOXES)?;
            let Some(validity) = boxes.get((user, mailbox))?.map(|v| v.value().0) else {
                return Err(redb::Error::Corrupted(format!(
                    "append to {user}/{mailbox}, which is not on disk"
                )));
            };
            boxes.insert((user, mailbox), (validity, uid.saturating_add(1)))?;
            let digest = add_blob(txn, data)?;
            txn.open_table(MESSAGES)?.insert(
                (user, mailbox, uid),
                (internal_date, join_flags(flags).as_str(), digest.as_slice()),
            )?;
            txn.open_table(MESSAGE_MODSEQ)?
                .insert((user, mailbox, uid), modseq)?;
            txn.open_table(HIGHEST_MODSEQ)?
                .insert((user, mailbox), modseq)?;
        }
        Change::Flags {
            user,
            mailbox,
            uid,
            modseq,
            flags,
        } => {
            let mut messages = txn.open_table(MESSAGES)?;
            let old = messages.get((user, mailbox, uid))?.map(|v| {
                let (date, _, digest) = v.value();
                (date, digest.to_vec())
            });
            if let Some((date, digest)) = old {
                messages.insert(
                    (user, mailbox, uid),
                    (date, join_flags(flags).as_str(), digest.as_slice()),
                )?;
                txn.open_table(MESSAGE_MODSEQ)?
                    .insert((user, mailbox, uid), modseq)?;
                txn.open_table(HIGHEST_MODSEQ)?
                    .insert((user, mailbox), modseq)?;
            }
        }
        Change::DeleteMailbox { user, mailbox } => {
            txn.open_table(MAILBOXES)?.remove((user, mailbox))?;
            txn.open_table(HIGHEST_MODSEQ)?.remove((user, mailbox))?;
            let mut modseqs = txn.open_table(MESSAGE_MODSEQ)?;
            let mut messages = txn.open_table(MESSAGES)?;
            for (uid, _, _, digest) in messages_of(&messages, user, mailbox)? {
                messages.remove((user, mailbox, uid))?;
                modseqs.remove((user, mailbox, uid))?;
                release_blob(txn, &digest)?;
            }
        }
        Change::RenameMailbox { user, from, to } => {
            let mut boxes = txn.open_table(MAILBOXES)?;
            let Some(value) = boxes.remove((user, from))?.map(|v| v.value()) else {
                return Err(redb::Error::Corrupted(format!(
                    "rename of {user}/{from}, which is not on disk"
                )));
            };
            boxes.insert((user, to), value)?;
            // The UIDVALIDITY stays, so the mod-sequences must too (clients keep their state).
            let mut highest = txn.open_table(HIGHEST_MODSEQ)?;
            let h = highest.remove((user, from))?.map(|v| v.value());
            if let Some(h) = h {
                highest.insert((user, to), h)?;
            }
            let mut modseqs = txn.open_table(MESSAGE_MODSEQ)?;
            let mut messages = txn.open_table(MESSAGES)?;
            for (uid, date, flags, digest) in messages_of(&messages, user, from)? {
                messages.remove((user, from, uid))?;
                messages.insert((user, to, uid), (date, flags.as_str(), digest.as_slice()))?;
                let m = modseqs.remove((user, from, uid))?.map(|v| v.value());
                if let Some(m) = m {
                    modseqs.insert((user, to, uid), m)?;
                }
            }
        }
        Change::Subscribe { user, mailbox, on } => {
            let mut table = txn.open_table(SUBSCRIPTIONS)?;
            if on {
                table.insert((user, mailbox), ())?;
            } else {
                table.remove((user, mailbox))?;
            }
        }
        Change::Expunge {
            user,
            mailbox,
            modseq,
            uids,
        } => {
            let mut messages = txn.open_table(MESSAGES)?;
            let mut modseqs = txn.open_table(MESSAGE_MODSEQ)?;
            txn.open_table(HIGHEST_MODSEQ)?
                .insert((user, mailbox), modseq)?;
            for &uid in uids {
                modseqs.remove((user, mailbox, uid))?;
                let removed = messages
                    .remove((user, mailbox, uid))?
                    .map(|v| v.value().2.to_vec());
                if let Some(digest) = removed {
                    release_blob(txn, &digest)?;
                }
            }
        }
    }
    Ok(())
}

impl Journal for Arc<DiskJournal> {
    fn commit(&self, change: &Change<'_>) -> Result<(), StoreError> {
        self.write(|txn| apply(txn, change)).map_err(|e| {
            tracing::error!(error = %e, "disk store commit failed");
            unavailable(e)
        })
    }
}

impl ScriptJournal for Arc<DiskJournal> {
    fn save(&self, user: &str, state: &UserScriptsState) -> Result<(), String> {
        self.write(|txn| {
            let mut scripts = txn.open_table(SCRIPTS)?;
            let mut old = Vec::new();
            for entry in scripts.range((user, "")..)? {
                let (k, _) = entry?;
                let (u, name) = k.value();
                if u != user {
                    break;
                }
                old.push(name.to_string());
            }
            for name in old {
                scripts.remove((user, name.as_str()))?;
            }
            for (name, source) in &state.scripts {
                scripts.insert((user, name.as_str()), source.as_str())?;
            }
            let mut active = txn.open_table(ACTIVE_SCRIPT)?;
            match &state.active {
                Some(name) => {
                    active.insert(user, name.as_str())?;
                }
                None => {
                    active.remove(user)?;
                }
            }
            Ok(())
        })
        .map_err(|e| {
            tracing::error!(user, error = %e, "disk store commit of sieve scripts failed");
            e.to_string()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MailStore;

    const LIMITS: ScriptLimits = ScriptLimits {
        max_script_size: 1024,
        max_scripts: 4,
    };

    fn flags(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn blob_count(dir: &Path) -> usize {
        let db = Database::create(dir.join(DATABASE_FILE)).unwrap();
        let txn = db.begin_read().unwrap();
        let n = txn.open_table(BLOBS).unwrap().iter().unwrap().count();
        assert_eq!(
            txn.open_table(BLOB_REFS).unwrap().iter().unwrap().count(),
            n
        );
        n
    }

    #[test]
    fn everything_survives_a_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("mail");
        let (validity, work_validity) = {
            let (store, scripts) = open(&dir, Some(1000), LIMITS).unwrap();
            store.ensure_user("Alice@Example.com");
            store.ensure_user("bob@example.com");
            store
                .create_mailbox("alice@example.com", "Work/2024")
                .unwrap();
            let data = Arc::new(b"Subject: shared\r\n\r\nhi\r\n".to_vec());
            for (user, mailbox) in [
                ("alice@example.com", "INBOX"),
                ("alice@example.com", "Work/2024"),
                ("bob@example.com", "INBOX"),
            ] {
                store
                    .append_shared(user, mailbox, data.clone(), flags(&[]), Some(7))
                    .unwrap();
            }
            store
                .append(
                    "alice@example.com",
                    "inbox",
                    b"second".to_vec(),
                    flags(&[]),
                    None,
                )
                .unwrap();
            store
                .set_flags("alice@example.com", "INBOX", 1, flags(&["\\Seen", "$x"]))
                .unwrap();
            store.expunge("alice@example.com", "INBOX", &[2]).unwrap();
            scripts
                .put("alice@example.com", "main", "keep;".into())
                .unwrap();
            scripts
                .put("alice@example.com", "old", "stop;".into())
                .unwrap();
            scripts.set_active("alice@example.com", "main").unwrap();
            scripts.rename("alice@example.com", "old", "older").unwrap();
            let validity = store
                .status("alice@example.com", "INBOX")
                .unwrap()
                .uid_validity;
            let work = store
                .status("alice@example.com", "Work/2024")
                .unwrap()
                .uid_validity;
            (validity, work)
        };
        // One content for the three copies; "second" went with its expunge.
        assert_eq!(blob_count(&dir), 1);

        let (store, scripts) = open(&dir, Some(1000), LIMITS).unwrap();
        let inbox = store.messages("alice@example.com", "INBOX").unwrap();
        assert_eq!(inbox.len(), 1);
        assert_eq!(inbox[0].uid, 1);
        assert_eq!(inbox[0].flags, flags(&["\\Seen", "$x"]));
        assert_eq!(inbox[0].internal_date, 7);
        assert_eq!(inbox[0].data.as_slice(), b"Subject: shared\r\n\r\nhi\r\n");
        let bob = store.messages("bob@example.com", "INBOX").unwrap();
        assert!(Arc::ptr_eq(&inbox[0].data, &bob[0].data), "still one copy");
        let status = store.status("alice@example.com", "INBOX").unwrap();
        assert_eq!((status.uid_validity, status.uid_next), (validity, 3));
        assert_eq!(status.recent, 0);
        assert_eq!(
            store
                .status("alice@example.com", "Work/2024")
                .unwrap()
                .uid_validity,
            work_validity
        );
        assert_eq!(
            store.list_mailboxes("alice@example.com"),
            vec!["INBOX", "Work/2024"]
        );
        assert_eq!(store.usage("alice@example.com"), 2 * 23);
        // UIDs and UIDVALIDITY are never reused after a restart.
        let uid = store
            .append(
                "alice@example.com",
                "INBOX",
                b"third".to_vec(),
                flags(&[]),
                None,
            )
            .unwrap();
        assert_eq!(uid, 3);
        store.create_mailbox("bob@example.com", "New").unwrap();
        let new = store.status("bob@example.com", "New").unwrap().uid_validity;
        assert!(new > validity.max(work_validity), "{new}");
        assert_eq!(
            scripts.list("alice@example.com"),
            vec![("main".to_string(), true), ("older".to_string(), false)]
        );
        assert_eq!(scripts.get("alice@example.com", "older").unwrap(), "stop;");
        // Quota still holds against what was read back.
        assert!(matches!(
            store.append(
                "alice@example.com",
                "INBOX",
                vec![0; 1000],
                flags(&[]),
                None
            ),
            Err(StoreError::OverQuota { .. })
        ));
    }

    #[test]
    fn modseqs_survive_a_reopen_and_keep_increasing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("mail");
        let highest = {
            let (store, _) = open(&dir, None, LIMITS).unwrap();
            store.ensure_user("u");
            for _ in 0..3 {
                store
                    .append("u", "INBOX", b"m".to_vec(), flags(&[]), None)
                    .unwrap();
            }
            store
                .set_flags("u", "INBOX", 1, flags(&["\\Seen"]))
                .unwrap();
            store.expunge("u", "INBOX", &[2]).unwrap();
            store.status("u", "INBOX").unwrap().highest_modseq
        };
        assert_eq!(highest, 6);
        let (store, _) = open(&dir, None, LIMITS).unwrap();
        assert_eq!(store.status("u", "INBOX").unwrap().highest_modseq, 6);
        let modseqs: Vec<(u32, u64)> = store
            .messages("u", "INBOX")
            .unwrap()
            .iter()
            .map(|m| (m.uid, m.modseq))
            .collect();
        assert_eq!(modseqs, vec![(1, 5), (3, 4)]);
        // Expunges before the restart are forgotten, later ones known.
        assert_eq!(store.expunged_since("u", "INBOX", 5), Ok(None));
        store.set_flags("u", "INBOX", 3, flags(&["$x"])).unwrap();
        assert_eq!(store.status("u", "INBOX").unwrap().highest_modseq, 7);
        store.expunge("u", "INBOX", &[3]).unwrap();
        assert_eq!(store.expunged_since("u", "INBOX", 6), Ok(Some(vec![3])));
    }

    /// RENAME keeps the UIDVALIDITY, so it keeps the mod-sequences too; DELETE drops them.
    #[test]
    fn rename_keeps_modseqs_and_delete_drops_them() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("mail");
        {
            let (store, _) = open(&dir, None, LIMITS).unwrap();
            store.ensure_user("u");
            for name in ["A", "B"] {
                store.create_mailbox("u", name).unwrap();
                store
                    .append("u", name, b"m".to_vec(), flags(&[]), None)
                    .unwrap();
                store.set_flags("u", name, 1, flags(&["$x"])).unwrap();
            }
            store.rename_mailbox("u", "A", "C").unwrap();
            store.delete_mailbox("u", "B").unwrap();
            store.create_mailbox("u", "B").unwrap();
        }
        let (store, _) = open(&dir, None, LIMITS).unwrap();
        assert_eq!(store.status("u", "C").unwrap().highest_modseq, 3);
        assert_eq!(store.messages("u", "C").unwrap()[0].modseq, 3);
        assert_eq!(store.status("u", "B").unwrap().highest_modseq, 1);
    }

    /// A database written before mod-sequences existed opens with every modseq at 1.
    #[test]
    fn a_database_without_modseqs_opens() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("mail");
        {
            let (store, _) = open(&dir, None, LIMITS).unwrap();
            store.ensure_user("u");
            store
                .append("u", "INBOX", b"old".to_vec(), flags(&[]), None)
                .unwrap();
        }
        {
            let db = Database::create(dir.join(DATABASE_FILE)).unwrap();
            let txn = db.begin_write().unwrap();
            txn.delete_table(HIGHEST_MODSEQ).unwrap();
            txn.delete_table(MESSAGE_MODSEQ).unwrap();
            txn.commit().unwrap();
        }
        let (store, _) = open(&dir, None, LIMITS).unwrap();
        assert_eq!(store.messages("u", "INBOX").unwrap()[0].modseq, 1);
        assert_eq!(store.status("u", "INBOX").unwrap().highest_modseq, 1);
        store
            .append("u", "INBOX", b"new".to_vec(), flags(&[]), None)
            .unwrap();
        assert_eq!(store.messages("u", "INBOX").unwrap()[1].modseq, 2);
    }

    #[test]
    fn deletes_renames_and_subscriptions_survive_a_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("mail");
        let u = "alice@example.com";
        {
            let (store, _) = open(&dir, None, LIMITS).unwrap();
            store.ensure_user(u);
            for name in ["Work", "Work/2024", "Old"] {
                store.create_mailbox(u, name).unwrap();
            }
            store
                .append(u, "Work/2024", b"w".to_vec(), flags(&["$k"]), Some(3))
                .unwrap();
            store
                .append(u, "Old", b"old".to_vec(), flags(&[]), None)
                .unwrap();
            store
                .append(u, "INBOX", b"in".to_vec(), flags(&[]), None)
                .unwrap();
            store.set_subscribed(u, "Work/2024", true).unwrap();
            store.set_subscribed(u, "Old", true).unwrap();
            store.set_subscribed(u, "Old", false).unwrap();
            store.delete_mailbox(u, "Old").unwrap();
            store.rename_mailbox(u, "Work", "Archive/Work").unwrap();
            store.rename_mailbox(u, "INBOX", "Saved").unwrap();
        }
        // "old" went with its mailbox, "in" moved, "w" was renamed along.
        assert_eq!(blob_count(&dir), 2);
        let (store, _) = open(&dir, None, LIMITS).unwrap();
        assert_eq!(
            store.list_mailboxes(u),
            vec![
                "Archive",
                "Archive/Work",
                "Archive/Work/2024",
                "INBOX",
                "Saved"
            ]
        );
        let w = store.messages(u, "Archive/Work/2024").unwrap();
        assert_eq!((w[0].uid, w[0].data.as_slice()), (1, &b"w"[..]));
        assert_eq!(w[0].flags, flags(&["$k"]));
        assert!(store.messages(u, "INBOX").unwrap().is_empty());
        assert_eq!(
            store.messages(u, "Saved").unwrap()[0].data.as_slice(),
            b"in"
        );
        assert_eq!(store.status(u, "INBOX").unwrap().uid_next, 2);
        // A subscription keeps the name it was given.
        assert_eq!(store.subscriptions(u), vec!["Work/2024"]);
        assert_eq!(store.usage(u), 3);
    }

    /// Commits leave the async worker on the multi-threaded runtime, and run in place on a
    /// single-threaded one (where `block_in_place` would panic) and on blocking threads.
    #[test]
    fn commits_run_from_any_runtime_thread() {
        let tmp = tempfile::tempdir().unwrap();
        let (store, scripts) = open(&tmp.path().join("m"), None, LIMITS).unwrap();
        let store = Arc::new(store);
        let scripts = Arc::new(scripts);
        let multi = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        let single = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        for (i, rt) in [multi, single].into_iter().enumerate() {
            let (s, sc) = (store.clone(), scripts.clone());
            rt.block_on(async move {
                let (s2, sc2) = (s.clone(), sc.clone());
                tokio::spawn(async move {
                    s2.ensure_user("u");
                    s2.append("u", "INBOX", vec![1], BTreeSet::new(), None)
                        .unwrap();
                    sc2.put("u", &format!("s{i}"), "keep;".into()).unwrap();
                })
                .await
                .unwrap();
                tokio::task::spawn_blocking(move || {
                    s.append("u", "INBOX", vec![2], BTreeSet::new(), None)
                        .unwrap();
                    sc.set_active("u", "s0").unwrap();
                })
                .await
                .unwrap();
            });
        }
        assert_eq!(store.messages("u", "INBOX").unwrap().len(), 4);
        assert_eq!(scripts.list("u").len(), 2);
    }

    #[test]
    fn a_directory_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("open");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(matches!(
            open(&dir, None, LIMITS),
            Err(DiskError::NotPrivate(_))
        ));
        let fresh = tmp.path().join("a/b");
        open(&fresh, None, LIMITS).unwrap();
        let mode = std::fs::metadata(&fresh).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}
