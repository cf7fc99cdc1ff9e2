//! A directory read once from a TOML file, for tests and tiny installations:
//!
//! ```toml
//! [[user]]
//! name = "alice@example.com"   # canonical name (mail address)
//! password = "secret"
//! aliases = ["alice"]          # optional other login names
//!
//! [[user]]
//! name = "bob@example.com"
//! # RFC 5803 secret from `mail-oidc-server scram-secret`: enables SCRAM-SHA-256 for bob
//! # without storing his password; PLAIN and LOGIN check passwords against it too.
//! scram_sha256 = "SCRAM-SHA-256$4096:<salt>$<StoredKey>:<ServerKey>"
//! ```
//!
//! Each user needs `password`, `scram_sha256` or both (then they must agree). Secrets with
//! fewer than 4096 iterations are refused (RFC 7677).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde::Deserialize;

use super::{Directory, DirectoryError, ScramSecret, ScramUser};

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
    password: Option<String>,
    /// RFC 5803 `SCRAM-SHA-256$...` secret.
    scram_sha256: Option<String>,
    #[serde(default)]
    aliases: Vec<String>,
}

struct User {
    name: String,
    /// At least one of `password` and `scram` is set (checked at load).
    password: Option<String>,
    scram: Option<ScramSecret>,
}

pub struct StaticDirectory {
    users: Vec<User>,
    /// Lower-cased name or alias -> index into `users`.
    index: HashMap<String, usize>,
    /// How many users have a SCRAM-SHA-256 secret.
    scram_users: usize,
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
            if entry.password.as_deref() == Some("") {
                return Err(invalid(format!(
                    "user {:?} has an empty password",
                    entry.name
                )));
            }
            let scram = match entry.scram_sha256.as_deref().map(str::parse::<ScramSecret>) {
                None => None,
                Some(Ok(secret)) => Some(secret),
                Some(Err(e)) => {
                    return Err(invalid(format!(
                        "user {:?} has a bad scram_sha256: {e}",
                        entry.name
                    )));
                }
            };
            match (&entry.password, &scram) {
                (None, None) => {
                    return Err(invalid(format!(
                        "user {:?} needs a password or a scram_sha256 secret",
                        entry.name
                    )));
                }
                (_, Some(secret)) if secret.iterations < ScramSecret::MIN_ITERATIONS => {
                    return Err(invalid(format!(
                        "user {:?} has a scram_sha256 secret with {} iterations; at least {} are required",
                        entry.name,
                        secret.iterations,
                        ScramSecret::MIN_ITERATIONS
                    )));
                }
                // Two credentials that disagree would let PLAIN and SCRAM accept different
                // passwords for the same user.
                (Some(password), Some(secret)) if !secret.verify_password(password) => {
                    return Err(invalid(format!(
                        "user {:?} has a password and a scram_sha256 secret that do not match",
                        entry.name
                    )));
                }
                _ => {}
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
                scram,
            });
        }
        let scram_users = users.iter().filter(|u| u.scram.is_some()).count();
        Ok(Self {
            users,
            index,
            scram_users,
        })
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
        let right = match (&user.password, &user.scram) {
            (Some(stored), _) => constant_time_eq(stored.as_bytes(), password.as_bytes()),
            // Only the secret is known: derive the keys from this password and compare.
            (None, Some(secret)) => secret.verify_password(password),
            (None, None) => false,
        };
        if right {
            Ok(Some(user.name.clone()))
        } else {
            tracing::info!(user = %user.name, "password refused: wrong password");
            Ok(None)
        }
    }

    async fn scram_sha256(&self, name: &str) -> Result<Option<ScramUser>, DirectoryError> {
        Ok(self.find(name).and_then(|user| {
            user.scram.clone().map(|secret| ScramUser {
                canonical: user.name.clone(),
                secret,
            })
        }))
    }

    fn has_scram_secrets(&self) -> bool {
        self.scram_users > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::RFC7677_SECRET;

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

    fn scram_dir() -> StaticDirectory {
        let text = format!(
            "{USERS}
[[user]]
name = \"user@example.com\"
aliases = [\"user\"]
scram_sha256 = \"{RFC7677_SECRET}\"

[[user]]
name = \"both@example.com\"
password = \"pencil\"
scram_sha256 = \"{RFC7677_SECRET}\"
"
        );
        StaticDirectory::parse(&text, Path::new("users.toml")).unwrap()
    }

    #[tokio::test]
    async fn scram_secrets_are_served_by_any_name() {
        assert!(!dir().has_scram_secrets());
        let d = scram_dir();
        assert!(d.has_scram_secrets());
        let secret: ScramSecret = RFC7677_SECRET.parse().unwrap();
        for name in ["user", "USER@example.com"] {
            assert_eq!(
                d.scram_sha256(name).await,
                Ok(Some(ScramUser {
                    canonical: "user@example.com".into(),
                    secret: secret.clone(),
                })),
                "{name}"
            );
        }
        // A user with only a password, and an unknown one: no secret either way.
        assert_eq!(d.scram_sha256("alice").await, Ok(None));
        assert_eq!(d.scram_sha256("nobody").await, Ok(None));
    }

    #[tokio::test]
    async fn password_checked_against_the_scram_secret_alone() {
        let d = scram_dir();
        assert_eq!(
            d.verify_password("user", "pencil").await,
            Ok(Some("user@example.com".to_string()))
        );
        assert_eq!(d.verify_password("user", "pencil2").await, Ok(None));
        assert_eq!(d.verify_password("user", "").await, Ok(None));
        assert_eq!(
            d.verify_password("both@example.com", "pencil").await,
            Ok(Some("both@example.com".to_string()))
        );
        assert_eq!(
            d.verify_password("alice", "alicepw").await,
            Ok(Some("alice@example.com".to_string()))
        );
    }

    #[test]
    fn scram_load_errors_name_the_user() {
        let weak = RFC7677_SECRET.replace("$4096:", "$4095:");
        let other_salt = ScramSecret::derive("pencil", b"another salt", 4096).to_string();
        for (entry, needle) in [
            (
                "scram_sha256 = \"SCRAM-SHA-256$4096:x\"".to_string(),
                "bad scram_sha256",
            ),
            (
                format!(
                    "scram_sha256 = \"{}\"",
                    RFC7677_SECRET.replace("SCRAM-SHA-256", "SCRAM-SHA-1")
                ),
                "bad scram_sha256",
            ),
            (format!("scram_sha256 = \"{weak}\""), "4095 iterations"),
            (
                format!("password = \"pencil2\"\nscram_sha256 = \"{RFC7677_SECRET}\""),
                "do not match",
            ),
            (String::new(), "needs a password or a scram_sha256 secret"),
            ("scram_sha256 = 1".to_string(), "scram_sha256"),
        ] {
            let text = format!("[[user]]\nname = \"carol\"\n{entry}\n");
            let err = StaticDirectory::parse(&text, Path::new("users.toml"))
                .err()
                .unwrap()
                .to_string();
            assert!(err.contains(needle), "{needle}: {err}");
            assert!(err.contains("carol") || needle == "scram_sha256", "{err}");
        }
        // A secret with another salt but the same password agrees with it.
        let text = format!(
            "[[user]]\nname = \"carol\"\npassword = \"pencil\"\nscram_sha256 = \"{other_salt}\"\n"
        );
        assert!(StaticDirectory::parse(&text, Path::new("users.toml")).is_ok());
    }

    #[test]
    fn empty_file_is_an_empty_directory() {
        let d = StaticDirectory::parse("", Path::new("u.toml")).unwrap();
        assert!(d.users.is_empty());
    }
}
