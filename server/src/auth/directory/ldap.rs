//! LDAP directory (placeholder until implemented).

use async_trait::async_trait;

use super::{Directory, DirectoryError};
use crate::config::LdapSection;

pub struct LdapDirectoryConfig {
    pub section: LdapSection,
}

impl From<&LdapSection> for LdapDirectoryConfig {
    fn from(section: &LdapSection) -> Self {
        Self {
            section: section.clone(),
        }
    }
}

pub struct LdapDirectory {
    config: LdapDirectoryConfig,
}

impl LdapDirectory {
    pub fn new(config: LdapDirectoryConfig) -> Self {
        Self { config }
    }
}

#[async_trait]
impl Directory for LdapDirectory {
    async fn lookup(&self, _name: &str) -> Result<Option<String>, DirectoryError> {
        let _ = &self.config;
        todo!()
    }
    async fn verify_password(
        &self,
        _name: &str,
        _password: &str,
    ) -> Result<Option<String>, DirectoryError> {
        todo!()
    }
}
