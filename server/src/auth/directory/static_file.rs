//! A directory read once from a TOML file, for tests and tiny installations:
//!
//! ```toml
//! [[user]]
//! name = "alice@example.com"   # canonical name (mail address)
//! password = "secret"
//! aliases = ["alice"]          # optional other login names
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde::Deserialize;

use super::{Directory, DirectoryError};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    #[serde(default)]
    user: Vec<UserEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserEntry {
    name: String,
    password: String,
    #[serde(default)]
    aliases: Vec<String>,
}

struct User {
    name: String,
    password: String,
}

pub struct StaticDirectory {
    users: Vec<User>,
    /// Lower-cased name or alias -> index into `users`.
    index: HashMap<String, usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum StaticDirectoryError {
    #[error("cannot read user file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid user file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl StaticDirectory {
    pub fn load(path: &Path) -> Result<Self, StaticDirectoryError> {
        let text = std::fs::read_to_string(path).map_err(|source| StaticDirectoryError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses the file's text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, StaticDirectoryError> {
        let invalid = |message: String| StaticDirectoryError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let file: UsersFile = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let mut users = Vec::with_capacity(file.user.len());
        let mut index = HashMap::new();
        for (i, entry) in file.user.into_iter().enumerate() {
            if entry.name.trim().is_empty() {
                return Err(invalid(format!("user #{} has an empty name", i + 1)));
            }
            if entry.password.is_empty() {
                return Err(invalid(format!(
                    "user {:?} has an empty password",
                    entry.name
                )));
            }
            let this = users.len();
            for key in std::iter::once(&entry.name).chain(&entry.aliases) {
                if key.trim().is_empty() {
                    return Err(invalid(format!("user {:?} has an empty alias", entry.name)));
                }
                match index.insert(key.to_lowercase(), this) {
                    // A name that means two users would make logins ambiguous.
                    Some(other) if other != this => {
                        let other = users.get(other).map_or("", |u: &User| u.name.as_str());
                        return Err(invalid(format!(
                            "{key:?} names both {other:?} and {:?}",
                            entry.name
                        )));
                    }
                    _ => {}
                }
            }
            users.push(User {
                name: entry.name,
                password: entry.password,
            });
        }
        Ok(Self { users, index })
    }

    fn find(&self, name: &str) -> Option<&User> {
        self.index
            .get(&name.to_lowercase())
            .and_then(|&i| self.users.get(i))
    }
}

/// Compares without stopping at the first difference, so timing says little about the password.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let len = a.len().max(b.len());
    let mut diff = a.len() ^ b.len();
    for i in 0..len {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    diff == 0
}

#[async_trait]
impl Directory for StaticDirectory {
    async fn lookup(&self, name: &str) -> Result<Option<String>, DirectoryError> {
        Ok(self.find(name).map(|u| u.name.clone()))
    }

    async fn verify_password(
        &self,
        name: &str,
        password: &str,
    ) -> Result<Option<String>, DirectoryError> {
        if password.is_empty() {
            return Ok(None);
        }
        let Some(user) = self.find(name) else {
            tracing::info!(user = %name, "password refused: unknown user");
            return Ok(None);
        };
        if constant_time_eq(user.password.as_bytes(), password.as_bytes()) {
            Ok(Some(user.name.clone()))
        } else {
            tracing::info!(user = %user.name, "password refused: wrong password");
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const USERS: &str = r#"
[[user]]
name = "alice@example.com"
password = "alicepw"
aliases = ["alice", "a.smith"]

[[user]]
name = "Bob@Example.com"
password = "bobpw"
"#;

    fn dir() -> StaticDirectory {
        StaticDirectory::parse(USERS, Path::new("users.toml")).unwrap()
    }

    #[tokio::test]
    async fn lookup_by_name_or_alias_case_insensitive() {
        let d = dir();
        for name in ["alice@example.com", "ALICE@example.com", "alice", "A.Smith"] {
            assert_eq!(
                d.lookup(name).await,
                Ok(Some("alice@example.com".to_string())),
                "{name}"
            );
        }
        // Canonical names are returned as written.
        assert_eq!(
            d.lookup("bob@example.com").await,
            Ok(Some("Bob@Example.com".to_string()))
        );
        assert_eq!(d.lookup("carol").await, Ok(None));
        assert_eq!(d.lookup("").await, Ok(None));
    }

    #[tokio::test]
    async fn verify_password() {
        let d = dir();
        assert_eq!(
            d.verify_password("Alice", "alicepw").await,
            Ok(Some("alice@example.com".to_string()))
        );
        assert_eq!(d.verify_password("alice", "AlicePW").await, Ok(None));
        assert_eq!(d.verify_password("alice", "alicepw2").await, Ok(None));
        assert_eq!(d.verify_password("alice", "").await, Ok(None));
        assert_eq!(d.verify_password("carol", "alicepw").await, Ok(None));
        assert_eq!(d.verify_password("alice", "bobpw").await, Ok(None));
    }

    #[test]
    fn constant_time_eq_is_eq() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(constant_time_eq(b"", b""));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"", b"\0"));
    }

    #[test]
    fn load_from_file_and_errors_name_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("users.toml");
        std::fs::write(&path, USERS).unwrap();
        assert!(StaticDirectory::load(&path).is_ok());

        let missing = tmp.path().join("missing.toml");
        let err = StaticDirectory::load(&missing).err().unwrap().to_string();
        assert!(err.contains("missing.toml"), "{err}");

        for (text, needle) in [
            ("[[user]]\nname = \"a\"\n", "password"),
            (
                "[[user]]\nname = \"a\"\npassword = \"x\"\ncolour = 1\n",
                "colour",
            ),
            ("[[user]]\nname = \"\"\npassword = \"x\"\n", "empty name"),
            (
                "[[user]]\nname = \"a\"\npassword = \"\"\n",
                "empty password",
            ),
            (
                "[[user]]\nname = \"a\"\npassword = \"x\"\n[[user]]\nname = \"A\"\npassword = \"y\"\n",
                "names both",
            ),
            (
                "[[user]]\nname = \"a\"\npassword = \"x\"\naliases = [\"b\"]\n[[user]]\nname = \"b\"\npassword = \"y\"\n",
                "names both",
            ),
            ("not toml [", "users.toml"),
        ] {
            std::fs::write(&path, text).unwrap();
            let err = StaticDirectory::load(&path).err().unwrap().to_string();
            assert!(err.contains("users.toml"), "{err}");
            assert!(err.contains(needle), "{needle}: {err}");
        }
    }

    #[test]
    fn empty_file_is_an_empty_directory() {
        let d = StaticDirectory::parse("", Path::new("u.toml")).unwrap();
        assert!(d.users.is_empty());
    }
}
