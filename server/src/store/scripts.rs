//! Per-user Sieve scripts (what ManageSieve manages and delivery runs): scripts by name, at most
//! one active. In memory, behind one lock, lost at exit, like [`super::MemoryStore`].
//!
//! Names follow RFC 5804 1.6: UTF-8, not empty, no control characters (U+0000-001F, U+007F,
//! U+0080-009F) nor line/paragraph separators (U+2028, U+2029), at most [`MAX_NAME_CHARS`]
//! characters. User names are compared ASCII-case-insensitively, like the mail store.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

/// Longest script name, in characters (RFC 5804 1.6: servers must allow at least 128).
pub const MAX_NAME_CHARS: usize = 128;

/// Limits from `[sieve]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScriptLimits {
    /// `sieve.max_script_size`: largest script, in bytes.
    pub max_script_size: usize,
    /// `sieve.max_scripts`: scripts per user.
    pub max_scripts: usize,
}

/// Why an operation was refused; each maps to one ManageSieve response code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScriptError {
    #[error("invalid script name {0:?}")]
    InvalidName(String),
    /// `NONEXISTENT`.
    #[error("no script named {0:?}")]
    NonExistent(String),
    /// `ALREADYEXISTS`.
    #[error("a script named {0:?} already exists")]
    AlreadyExists(String),
    /// `ACTIVE`: the active script cannot be deleted.
    #[error("script {0:?} is active")]
    Active(String),
    /// `QUOTA/MAXSIZE`.
    #[error("script of {size} bytes exceeds the limit of {max}")]
    TooBig { size: u64, max: usize },
    /// `QUOTA/MAXSCRIPTS`.
    #[error("no room for another script (at most {max})")]
    TooManyScripts { max: usize },
    /// `TRYLATER`: the disk store could not commit the change; nothing changed.
    #[error("script store unavailable: {0}")]
    Unavailable(String),
}

/// One user's scripts, as kept in memory and saved whole by a [`ScriptJournal`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserScriptsState {
    /// Ordered by name, so LISTSCRIPTS is stable.
    pub scripts: BTreeMap<String, String>,
    pub active: Option<String>,
}

type UserScripts = UserScriptsState;

/// Where a durable store saves a user's scripts before the change is applied in memory.
pub trait ScriptJournal: Send + Sync {
    /// Replaces everything saved for `user` (lower-cased) with `state`, durably.
    fn save(&self, user: &str, state: &UserScriptsState) -> Result<(), String>;
}

/// Every user's scripts. Shared through an `Arc` by ManageSieve sessions and delivery.
pub struct SieveScripts {
    limits: ScriptLimits,
    users: Mutex<HashMap<String, UserScripts>>,
    journal: Option<Box<dyn ScriptJournal>>,
}

impl std::fmt::Debug for SieveScripts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SieveScripts")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// Checks a script name against RFC 5804 1.6.
pub fn validate_name(name: &str) -> Result<(), ScriptError> {
    let bad =
        |c: char| matches!(c, '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' | '\u{2028}' | '\u{2029}');
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS || name.chars().any(bad) {
        return Err(ScriptError::InvalidName(name.to_string()));
    }
    Ok(())
}

fn user_key(user: &str) -> String {
    user.to_ascii_lowercase()
}

impl SieveScripts {
    pub fn new(limits: ScriptLimits) -> Self {
        Self {
            limits,
            users: Mutex::new(HashMap::new()),
            journal: None,
        }
    }

    /// Scripts read back from a durable store; later changes are saved to `journal` first.
    pub fn restore(
        limits: ScriptLimits,
        journal: Box<dyn ScriptJournal>,
        users: HashMap<String, UserScriptsState>,
    ) -> Self {
        Self {
            limits,
            users: Mutex::new(users),
            journal: Some(journal),
        }
    }

    /// Applies `f` to a copy of the user's scripts, saves it durably, then keeps it.
    fn mutate<T>(
        &self,
        user: &str,
        f: impl FnOnce(&mut UserScripts) -> Result<T, ScriptError>,
    ) -> Result<T, ScriptError> {
        let mut users = self.users();
        let key = user_key(user);
        let mut state = users.get(&key).cloned().unwrap_or_default();
        let out = f(&mut state)?;
        if users.get(&key) == Some(&state) {
            return Ok(out);
        }
        if let Some(journal) = &self.journal {
            super::memory::off_the_workers(|| journal.save(&key, &state))
                .map_err(ScriptError::Unavailable)?;
        }
        users.insert(key, state);
        Ok(out)
    }

    pub fn limits(&self) -> ScriptLimits {
        self.limits
    }

    fn users(&self) -> MutexGuard<'_, HashMap<String, UserScripts>> {
        // Every operation is one call under the lock: the map stays consistent after a panic.
        self.users.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `user` could store a script `name` of `size` bytes now (HAVESPACE, and the
    /// first check of PUTSCRIPT). Replacing an existing script needs no new slot.
    pub fn have_space(&self, user: &str, name: &str, size: u64) -> Result<(), ScriptError> {
        validate_name(name)?;
        let users = self.users();
        self.space_in(users.get(&user_key(user)), name, size)
    }

    fn space_in(
        &self,
        scripts: Option<&UserScripts>,
        name: &str,
        size: u64,
    ) -> Result<(), ScriptError> {
        let max = self.limits.max_script_size;
        if size > max as u64 {
            return Err(ScriptError::TooBig { size, max });
        }
        let (count, replaces) = scripts.map_or((0, false), |s| {
            (s.scripts.len(), s.scripts.contains_key(name))
        });
        if !replaces && count >= self.limits.max_scripts {
            return Err(ScriptError::TooManyScripts {
                max: self.limits.max_scripts,
            });
        }
        Ok(())
    }

    /// Stores (or replaces) a script; an active script stays active with its new content.
    /// The caller has checked the script itself.
    pub fn put(&self, user: &str, name: &str, source: String) -> Result<(), ScriptError> {
        validate_name(name)?;
        self.mutate(user, |s| {
            self.space_in(Some(s), name, source.len() as u64)?;
            s.scripts.insert(name.to_string(), source);
            Ok(())
        })
    }

    pub fn get(&self, user: &str, name: &str) -> Result<String, ScriptError> {
        self.users()
            .get(&user_key(user))
            .and_then(|s| s.scripts.get(name).cloned())
            .ok_or_else(|| ScriptError::NonExistent(name.to_string()))
    }

    /// Every script of `user` by name, with whether it is the active one.
    pub fn list(&self, user: &str) -> Vec<(String, bool)> {
        let users = self.users();
        let Some(s) = users.get(&user_key(user)) else {
            return Vec::new();
        };
        s.scripts
            .keys()
            .map(|name| (name.clone(), s.active.as_deref() == Some(name.as_str())))
            .collect()
    }

    /// Makes `name` the active script; an empty name deactivates whichever is active.
    pub fn set_active(&self, user: &str, name: &str) -> Result<(), ScriptError> {
        self.mutate(user, |s| {
            if name.is_empty() {
                s.active = None;
                return Ok(());
            }
            if !s.scripts.contains_key(name) {
                return Err(ScriptError::NonExistent(name.to_string()));
            }
            s.active = Some(name.to_string());
            Ok(())
        })
    }

    /// Deletes an inactive script (RFC 5804 2.10: the active one is refused with `ACTIVE`).
    pub fn delete(&self, user: &str, name: &str) -> Result<(), ScriptError> {
        self.mutate(user, |s| {
            if !s.scripts.contains_key(name) {
                return Err(ScriptError::NonExistent(name.to_string()));
            }
            if s.active.as_deref() == Some(name) {
                return Err(ScriptError::Active(name.to_string()));
            }
            s.scripts.remove(name);
            Ok(())
        })
    }

    /// Renames a script; the active script stays active under its new name (RFC 5804 2.11.1).
    pub fn rename(&self, user: &str, old: &str, new: &str) -> Result<(), ScriptError> {
        validate_name(new)?;
        self.mutate(user, |s| {
            if !s.scripts.contains_key(old) {
                return Err(ScriptError::NonExistent(old.to_string()));
            }
            if s.scripts.contains_key(new) {
                return Err(ScriptError::AlreadyExists(new.to_string()));
            }
            if let Some(source) = s.scripts.remove(old) {
                s.scripts.insert(new.to_string(), source);
            }
            if s.active.as_deref() == Some(old) {
                s.active = Some(new.to_string());
            }
            Ok(())
        })
    }

    /// The active script of `user` as (name, source), if any: what delivery runs.
    pub fn active(&self, user: &str) -> Option<(String, String)> {
        let users = self.users();
        let s = users.get(&user_key(user))?;
        let name = s.active.as_ref()?;
        let source = s.scripts.get(name)?;
        Some((name.clone(), source.clone()))
    }
}

/// Delivery runs the user's active script (the filter compiles and caches it by source).
impl crate::sieve::ActiveScripts for SieveScripts {
    fn active_script(&self, user: &str) -> Option<String> {
        self.active(user).map(|(_, source)| source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> SieveScripts {
        SieveScripts::new(ScriptLimits {
            max_script_size: 100,
            max_scripts: 2,
        })
    }

    const ALICE: &str = "alice@example.com";

    #[test]
    fn put_get_list_and_replace() {
        let s = store();
        assert_eq!(s.list(ALICE), []);
        s.put(ALICE, "b", "keep;".into()).unwrap();
        s.put(ALICE, "a", "discard;".into()).unwrap();
        assert_eq!(s.get(ALICE, "a").unwrap(), "discard;");
        assert_eq!(
            s.list(ALICE),
            [("a".to_string(), false), ("b".to_string(), false)]
        );
        // Replacing needs no new slot, even at the limit.
        s.put(ALICE, "a", "keep;".into()).unwrap();
        assert_eq!(s.get(ALICE, "a").unwrap(), "keep;");
        assert_eq!(
            s.get(ALICE, "zzz"),
            Err(ScriptError::NonExistent("zzz".into()))
        );
    }

    #[test]
    fn users_are_apart_and_case_insensitive() {
        let s = store();
        s.put(ALICE, "a", "keep;".into()).unwrap();
        assert_eq!(s.get("ALICE@example.com", "a").unwrap(), "keep;");
        assert_eq!(s.list("bob@example.com"), []);
        assert!(s.get("bob@example.com", "a").is_err());
    }

    #[test]
    fn names_are_checked() {
        let s = store();
        for bad in [
            "",
            "a\nb",
            "tab\there",
            "nul\0",
            "del\u{7f}",
            "c1\u{85}",
            "ls\u{2028}",
        ] {
            assert_eq!(
                s.put(ALICE, bad, "keep;".into()),
                Err(ScriptError::InvalidName(bad.into())),
                "{bad:?}"
            );
        }
        let longest = "é".repeat(MAX_NAME_CHARS);
        assert!(s.put(ALICE, &longest, "keep;".into()).is_ok());
        let too_long = "x".repeat(MAX_NAME_CHARS + 1);
        assert!(matches!(
            s.put(ALICE, &too_long, "keep;".into()),
            Err(ScriptError::InvalidName(_))
        ));
        assert!(validate_name("Vacation \"2024\" — ünïcødé").is_ok());
    }

    #[test]
    fn quotas() {
        let s = store();
        assert_eq!(
            s.put(ALICE, "big", "x".repeat(101)),
            Err(ScriptError::TooBig {
                size: 101,
                max: 100
            })
        );
        s.put(ALICE, "one", "x".repeat(100)).unwrap();
        s.put(ALICE, "two", "keep;".into()).unwrap();
        assert_eq!(
            s.put(ALICE, "three", "keep;".into()),
            Err(ScriptError::TooManyScripts { max: 2 })
        );
        assert_eq!(
            s.have_space(ALICE, "three", 1),
            Err(ScriptError::TooManyScripts { max: 2 })
        );
        assert_eq!(s.have_space(ALICE, "two", 100), Ok(()));
        assert_eq!(
            s.have_space(ALICE, "two", 101),
            Err(ScriptError::TooBig {
                size: 101,
                max: 100
            })
        );
        assert_eq!(s.have_space("bob@example.com", "x", 0), Ok(()));
    }

    #[test]
    fn one_active_script_or_none() {
        let s = store();
        assert_eq!(s.active(ALICE), None);
        s.put(ALICE, "a", "keep;".into()).unwrap();
        s.put(ALICE, "b", "discard;".into()).unwrap();
        assert_eq!(
            s.set_active(ALICE, "zzz"),
            Err(ScriptError::NonExistent("zzz".into()))
        );
        s.set_active(ALICE, "a").unwrap();
        assert_eq!(s.active(ALICE), Some(("a".into(), "keep;".into())));
        s.set_active(ALICE, "b").unwrap();
        assert_eq!(
            s.list(ALICE),
            [("a".to_string(), false), ("b".to_string(), true)]
        );
        // Replacing the active script keeps it active with the new content.
        s.put(ALICE, "b", "stop;".into()).unwrap();
        assert_eq!(s.active(ALICE), Some(("b".into(), "stop;".into())));
        s.set_active(ALICE, "").unwrap();
        assert_eq!(s.active(ALICE), None);
        // Deactivating with nothing active (or no scripts at all) is fine.
        s.set_active(ALICE, "").unwrap();
        s.set_active("nobody@example.com", "").unwrap();
    }

    #[test]
    fn delete_refuses_the_active_script() {
        let s = store();
        s.put(ALICE, "a", "keep;".into()).unwrap();
        s.set_active(ALICE, "a").unwrap();
        assert_eq!(s.delete(ALICE, "a"), Err(ScriptError::Active("a".into())));
        assert_eq!(
            s.delete(ALICE, "b"),
            Err(ScriptError::NonExistent("b".into()))
        );
        s.set_active(ALICE, "").unwrap();
        s.delete(ALICE, "a").unwrap();
        assert_eq!(s.list(ALICE), []);
        assert_eq!(
            s.delete("nobody@example.com", "a"),
            Err(ScriptError::NonExistent("a".into()))
        );
    }

    #[test]
    fn rename_rules() {
        let s = store();
        s.put(ALICE, "a", "keep;".into()).unwrap();
        s.put(ALICE, "b", "discard;".into()).unwrap();
        s.set_active(ALICE, "a").unwrap();
        assert_eq!(
            s.rename(ALICE, "zzz", "c"),
            Err(ScriptError::NonExistent("zzz".into()))
        );
        assert_eq!(
            s.rename(ALICE, "a", "b"),
            Err(ScriptError::AlreadyExists("b".into()))
        );
        assert_eq!(
            s.rename(ALICE, "a", "bad\nname"),
            Err(ScriptError::InvalidName("bad\nname".into()))
        );
        s.rename(ALICE, "a", "c").unwrap();
        assert_eq!(s.active(ALICE), Some(("c".into(), "keep;".into())));
        assert_eq!(
            s.list(ALICE),
            [("b".to_string(), false), ("c".to_string(), true)]
        );
        assert_eq!(
            s.rename("nobody@example.com", "a", "b"),
            Err(ScriptError::NonExistent("a".into()))
        );
    }
}
