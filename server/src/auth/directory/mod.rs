//! Who exists: the directory, not the token, decides (a user who never logged in still gets mail).

mod cache;
mod ldap;
mod scram;
mod static_file;

pub use cache::CachingDirectory;
pub use ldap::{LdapDirectory, LdapDirectoryConfig};
pub use scram::{ScramSecret, ScramSecretError, ScramUser};
pub use static_file::StaticDirectory;

use async_trait::async_trait;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirectoryError {
    /// The directory server could not be reached or answered with an operational error.
    #[error("directory unavailable: {0}")]
    Unavailable(String),
    /// The password was right but the revocation store (the user's deny-list entry) could not
    /// be asked, and `revocation.fail_open` is off.
    #[error("revocation store unavailable: {0}")]
    RevocationUnavailable(String),
}

/// User lookup, password verification and, optionally, SCRAM secrets.
#[async_trait]
pub trait Directory: Send + Sync {
    /// The canonical user name (mail address) for `name` (a mail address or uid), if the user exists.
    async fn lookup(&self, name: &str) -> Result<Option<String>, DirectoryError>;
    /// Verifies a password; returns the canonical user name when it is right, `None` when the
    /// user is unknown or the password is wrong.
    async fn verify_password(
        &self,
        name: &str,
        password: &str,
    ) -> Result<Option<String>, DirectoryError>;

    /// The user's SCRAM-SHA-256 secret, found by any of its names like [`Directory::lookup`].
    /// `None` when the user is unknown or has no such secret (the default: no directory
    /// stores one unless it says so).
    async fn scram_sha256(&self, _name: &str) -> Result<Option<ScramUser>, DirectoryError> {
        Ok(None)
    }

    /// Whether any user may have a SCRAM-SHA-256 secret: SCRAM is only offered then.
    fn has_scram_secrets(&self) -> bool {
        false
    }
}
