//! LDAP directory: users are found by a search (as the service account, or anonymously) and
//! passwords checked by binding as the user. One connection per operation: logins are rare
//! enough, and nothing stale survives a directory restart.

use std::time::Duration;

use async_trait::async_trait;
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError, Scope, SearchEntry, ldap_escape};

use super::{Directory, DirectoryError};
use crate::config::LdapSection;

/// LDAP result code for a wrong password (or a DN without one).
const INVALID_CREDENTIALS: u32 = 49;

#[derive(Debug, Clone)]
pub struct LdapDirectoryConfig {
    pub url: String,
    pub base_dn: String,
    /// Service account `(dn, password)` for searches; `None` searches anonymously.
    pub bind: Option<(String, String)>,
    /// `{user}` is replaced by the escaped login name.
    pub user_filter: String,
    pub mail_attribute: String,
    /// Limit for connecting and for each operation.
    pub timeout: Duration,
}

impl From<&LdapSection> for LdapDirectoryConfig {
    fn from(section: &LdapSection) -> Self {
        let bind = section.bind_dn.as_ref().map(|dn| {
            (
                dn.clone(),
                section.bind_password.clone().unwrap_or_default(),
            )
        });
        Self {
            url: section.url.clone(),
            base_dn: section.base_dn.clone(),
            bind,
            user_filter: section.user_filter.clone(),
            mail_attribute: section.mail_attribute.clone(),
            timeout: Duration::from_secs(section.timeout_seconds.max(1)),
        }
    }
}

/// A user entry found by the search.
struct Found {
    dn: String,
    mail: Option<String>,
}

pub struct LdapDirectory {
    config: LdapDirectoryConfig,
}

impl LdapDirectory {
    pub fn new(config: LdapDirectoryConfig) -> Self {
        Self { config }
    }

    /// The search filter for `name`, escaped so a login name cannot change the filter.
    fn filter(&self, name: &str) -> String {
        self.config
            .user_filter
            .replace("{user}", &ldap_escape(name))
    }

    async fn connect(&self) -> Result<Ldap, DirectoryError> {
        let settings = LdapConnSettings::new().set_conn_timeout(self.config.timeout);
        let (conn, ldap) = LdapConnAsync::with_settings(settings, &self.config.url)
            .await
            .map_err(|e| unavailable("connect", e))?;
        ldap3::drive!(conn);
        Ok(ldap)
    }

    /// Searches the user's entry; the first match wins (a second one is logged).
    async fn find(&self, name: &str) -> Result<Option<Found>, DirectoryError> {
        let mut ldap = self.connect().await?;
        let result = self.search(&mut ldap, name).await;
        // Best effort: the server drops the connection anyway when we go.
        let _ = ldap.unbind().await;
        result
    }

    async fn search(&self, ldap: &mut Ldap, name: &str) -> Result<Option<Found>, DirectoryError> {
        let timeout = self.config.timeout;
        if let Some((dn, password)) = &self.config.bind {
            ldap.with_timeout(timeout)
                .simple_bind(dn, password)
                .await
                .and_then(|r| r.success())
                .map_err(|e| unavailable("service account bind", e))?;
        }
        let (entries, _) = ldap
            .with_timeout(timeout)
            .search(
                &self.config.base_dn,
                Scope::Subtree,
                &self.filter(name),
                vec![self.config.mail_attribute.as_str()],
            )
            .await
            .and_then(|r| r.success())
            .map_err(|e| unavailable("search", e))?;
        if entries.len() > 1 {
            tracing::warn!(user = %name, matches = entries.len(), "LDAP user filter matches several entries; using the first");
        }
        Ok(entries.into_iter().next().map(|entry| {
            let entry = SearchEntry::construct(entry);
            let mail = entry
                .attrs
                .iter()
                .find(|(attr, _)| attr.eq_ignore_ascii_case(&self.config.mail_attribute))
                .and_then(|(_, values)| values.first().cloned());
            Found { dn: entry.dn, mail }
        }))
    }

    /// Binds as `dn`; `Ok(false)` when the password is wrong.
    async fn bind_as(&self, dn: &str, password: &str) -> Result<bool, DirectoryError> {
        let mut ldap = self.connect().await?;
        let result = ldap
            .with_timeout(self.config.timeout)
            .simple_bind(dn, password)
            .await;
        let _ = ldap.unbind().await;
        match result {
            Ok(r) if r.rc == 0 => Ok(true),
            Ok(r) if r.rc == INVALID_CREDENTIALS => Ok(false),
            Ok(r) => Err(unavailable("user bind", LdapError::from(r))),
            Err(e) => Err(unavailable("user bind", e)),
        }
    }
}

fn unavailable(what: &str, e: LdapError) -> DirectoryError {
    tracing::warn!(error = %e, "LDAP {what} failed");
    DirectoryError::Unavailable(format!("LDAP {what} failed: {e}"))
}

/// The canonical name of a found entry; entries without a mail address cannot receive mail.
fn canonical(name: &str, found: Found) -> Option<String> {
    if found.mail.is_none() {
        tracing::warn!(user = %name, dn = %found.dn, "LDAP entry has no mail attribute; ignoring it");
    }
    found.mail
}

#[async_trait]
impl Directory for LdapDirectory {
    async fn lookup(&self, name: &str) -> Result<Option<String>, DirectoryError> {
        if name.is_empty() {
            return Ok(None);
        }
        Ok(self.find(name).await?.and_then(|f| canonical(name, f)))
    }

    async fn verify_password(
        &self,
        name: &str,
        password: &str,
    ) -> Result<Option<String>, DirectoryError> {
        // An empty password makes a simple bind anonymous, and anonymous binds succeed.
        if name.is_empty() || password.is_empty() {
            return Ok(None);
        }
        let Some(found) = self.find(name).await? else {
            tracing::info!(user = %name, "password refused: no such LDAP user");
            return Ok(None);
        };
        if !self.bind_as(&found.dn, password).await? {
            tracing::info!(user = %name, dn = %found.dn, "password refused: LDAP bind rejected");
            return Ok(None);
        }
        Ok(canonical(name, found))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section() -> LdapSection {
        LdapSection {
            url: "ldap://127.0.0.1:1/".into(),
            base_dn: "ou=people,dc=example,dc=com".into(),
            bind_dn: None,
            bind_password: None,
            user_filter: "(&(objectClass=inetOrgPerson)(|(mail={user})(uid={user})))".into(),
            mail_attribute: "mail".into(),
            timeout_seconds: 0,
            cache_seconds: 10,
            cache_capacity: 10,
        }
    }

    #[test]
    fn filter_escapes_the_login_name() {
        let d = LdapDirectory::new(LdapDirectoryConfig::from(&section()));
        assert_eq!(
            d.filter("a*)(uid=*"),
            r"(&(objectClass=inetOrgPerson)(|(mail=a\2a\29\28uid=\2a)(uid=a\2a\29\28uid=\2a)))"
        );
        let config = LdapDirectoryConfig::from(&section());
        assert_eq!(config.timeout, Duration::from_secs(1));
        assert_eq!(config.bind, None);
    }

    #[tokio::test]
    async fn empty_password_never_reaches_the_server() {
        // A port nobody listens on: reaching the server would be an error, not `None`.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let mut s = section();
        s.url = format!("ldap://127.0.0.1:{port}/");
        let d = LdapDirectory::new(LdapDirectoryConfig::from(&s));
        assert_eq!(d.verify_password("alice", "").await, Ok(None));
        assert!(matches!(
            d.verify_password("alice", "x").await,
            Err(DirectoryError::Unavailable(_))
        ));
        assert!(matches!(
            d.lookup("alice").await,
            Err(DirectoryError::Unavailable(_))
        ));
    }
}
