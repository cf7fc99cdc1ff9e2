//! OIDC validator (placeholder until implemented).

use std::sync::Arc;

use async_trait::async_trait;

use super::{TokenError, TokenValidator, ValidatedToken};
use crate::auth::directory::Directory;
use crate::config::{ConfigError, OidcSection};

pub struct OidcValidatorConfig {
    pub section: OidcSection,
}

impl OidcValidatorConfig {
    pub fn from_section(section: &OidcSection) -> Result<Self, ConfigError> {
        Ok(Self {
            section: section.clone(),
        })
    }
}

pub struct OidcValidator {
    config: OidcValidatorConfig,
    directory: Arc<dyn Directory>,
}

impl OidcValidator {
    pub fn new(
        config: OidcValidatorConfig,
        directory: Arc<dyn Directory>,
    ) -> Result<Self, ConfigError> {
        Ok(Self { config, directory })
    }
}

#[async_trait]
impl TokenValidator for OidcValidator {
    async fn validate(&self, _token: &str) -> Result<ValidatedToken, TokenError> {
        let _ = (&self.config, &self.directory);
        todo!()
    }
    fn discovery_url(&self) -> String {
        todo!()
    }
    fn required_scope(&self) -> String {
        todo!()
    }
}
