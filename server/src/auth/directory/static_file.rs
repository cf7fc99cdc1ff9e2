//! Static file directory (placeholder until implemented).

use std::path::Path;

use async_trait::async_trait;

use super::{Directory, DirectoryError};

pub struct StaticDirectory {}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StaticDirectoryError(String);

impl StaticDirectory {
    pub fn load(_path: &Path) -> Result<Self, StaticDirectoryError> {
        todo!()
    }
}

#[async_trait]
impl Directory for StaticDirectory {
    async fn lookup(&self, _name: &str) -> Result<Option<String>, DirectoryError> {
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
