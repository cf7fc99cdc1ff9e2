//! Who exists: the directory, not the token, decides (a user who never logged in still gets mail).

mod ldap;
mod static_file;

pub use ldap::{LdapDirectory, LdapDirectoryConfig};
pub use static_file::StaticDirectory;

use async_trait::async_trait;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirectoryError {
    /// The directory server could not be reached or answered with an operational error.
    #[error("directory unavailable: {0}")]
    Unavailable(String),
}

/// User lookup and password verification.
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
}
