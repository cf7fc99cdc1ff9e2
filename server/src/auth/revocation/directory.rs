//! The revocation check as a layer around any [`Directory`]: a password that is right (PLAIN,
//! LOGIN, IMAP LOGIN, POP3 USER/PASS, HTTP Basic) or a SCRAM secret about to be used is then
//! checked against the user's deny-list entry, as [`super::RevocationCheckingValidator`] does
//! for tokens. Every password path asks the directory, so this is the one place they are
//! checked; recipient lookups pass through untouched (mail is still delivered).

use std::sync::Arc;

use async_trait::async_trait;

use super::{Denied, RevocationService};
use crate::auth::directory::{Directory, DirectoryError, ScramUser};

pub struct RevocationCheckingDirectory {
    inner: Arc<dyn Directory>,
    service: Arc<RevocationService>,
}

impl RevocationCheckingDirectory {
    pub fn new(inner: Arc<dyn Directory>, service: Arc<RevocationService>) -> Self {
        Self { inner, service }
    }

    /// `Ok(true)`: the login may go on; `Ok(false)`: refused like a wrong password (the
    /// reply says nothing about the revocation); `Err`: the store could not be asked and
    /// `revocation.fail_open` is off, a temporary failure like a token login's.
    async fn admitted(&self, user: &str) -> Result<bool, DirectoryError> {
        match self.service.check_password_login(user).await {
            Ok(()) => Ok(true),
            Err(Denied::Revoked(_)) => Ok(false),
            Err(Denied::Unavailable(why)) => Err(DirectoryError::RevocationUnavailable(why)),
        }
    }
}

#[async_trait]
impl Directory for RevocationCheckingDirectory {
    async fn lookup(&self, name: &str) -> Result<Option<String>, DirectoryError> {
        self.inner.lookup(name).await
    }

    async fn verify_password(
        &self,
        name: &str,
        password: &str,
    ) -> Result<Option<String>, DirectoryError> {
        match self.inner.verify_password(name, password).await? {
            Some(canonical) if self.admitted(&canonical).await? => Ok(Some(canonical)),
            Some(_) | None => Ok(None),
        }
    }

    async fn scram_sha256(&self, name: &str) -> Result<Option<ScramUser>, DirectoryError> {
        match self.inner.scram_sha256(name).await? {
            Some(user) if self.admitted(&user.canonical).await? => Ok(Some(user)),
            Some(_) | None => Ok(None),
        }
    }

    fn has_scram_secrets(&self) -> bool {
        self.inner.has_scram_secrets()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::*;
    use crate::auth::directory::StaticDirectory;
    use crate::auth::revocation::{
        MemoryRevocationStore, Revocation, RevocationStore, SessionRegistry,
    };
    use crate::testkit::RFC7677_SECRET;
    use crate::testkit::revocation::{DownStore, now};

    fn directory() -> Arc<dyn Directory> {
        let text = format!(
            "[[user]]\nname = \"user@example.com\"\naliases = [\"user\"]\n\
             scram_sha256 = \"{RFC7677_SECRET}\"\n"
        );
        Arc::new(StaticDirectory::parse(&text, Path::new("users.toml")).expect("users"))
    }

    fn wrapped(store: Arc<dyn RevocationStore>, fail_open: bool) -> RevocationCheckingDirectory {
        let service = RevocationService::new(store, SessionRegistry::new(false), fail_open);
        RevocationCheckingDirectory::new(directory(), service)
    }

    #[tokio::test]
    async fn scram_secrets_fail_closed_with_the_store_down_and_open_if_configured() {
        let closed = wrapped(Arc::new(DownStore), false);
        assert!(matches!(
            closed.scram_sha256("user").await,
            Err(DirectoryError::RevocationUnavailable(_))
        ));
        assert!(matches!(
            closed.verify_password("user", "pencil").await,
            Err(DirectoryError::RevocationUnavailable(_))
        ));
        // A wrong password is refused without asking the store.
        assert_eq!(closed.verify_password("user", "wrong").await, Ok(None));
        // Recipients are looked up whatever the store says.
        assert_eq!(
            closed.lookup("user").await,
            Ok(Some("user@example.com".into()))
        );
        let open = wrapped(Arc::new(DownStore), true);
        assert!(
            open.scram_sha256("user")
                .await
                .expect("fail open")
                .is_some()
        );
    }

    #[tokio::test]
    async fn a_scram_secret_is_withheld_until_the_revocation_time_has_passed() {
        let store = Arc::new(MemoryRevocationStore::new(Duration::from_secs(60)));
        let d = wrapped(store.clone(), false);
        assert!(d.scram_sha256("user").await.expect("up").is_some());
        store
            .revoke(&Revocation::User {
                user: "user@example.com".into(),
                before: now() + 3600,
            })
            .await
            .expect("revoke");
        assert_eq!(d.scram_sha256("user").await.map(|u| u.is_some()), Ok(false));
        assert_eq!(d.verify_password("user", "pencil").await, Ok(None));
    }
}
