//! The delivery side of Sieve: each recipient's active script decides where the copy goes.
//! A script that cannot be compiled or fails at run time never loses mail: the message is kept
//! in INBOX and the reason is logged.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{Delivery, Envelope, Script};

/// Where a user's active script comes from (the ManageSieve script store).
pub trait ActiveScripts: Send + Sync {
    /// The source of the user's active script, if one is active.
    fn active_script(&self, user: &str) -> Option<String>;
}

/// No scripts at all: every message is kept.
pub struct NoScripts;

impl ActiveScripts for NoScripts {
    fn active_script(&self, _user: &str) -> Option<String> {
        None
    }
}

/// Runs recipients' active scripts, compiling each script once per version.
pub struct SieveFilter {
    scripts: Arc<dyn ActiveScripts>,
    /// User -> (source, compiled): a script is compiled again only when its source changed.
    compiled: Mutex<HashMap<String, (String, Arc<Script>)>>,
}

impl SieveFilter {
    pub fn new(scripts: Arc<dyn ActiveScripts>) -> Self {
        Self {
            scripts,
            compiled: Mutex::new(HashMap::new()),
        }
    }

    /// A filter that keeps everything (no script store).
    pub fn keep_all() -> Self {
        Self::new(Arc::new(NoScripts))
    }

    /// Where `user`'s copy of `message` goes. Never empty unless the script discarded it.
    pub fn placements(&self, user: &str, envelope_from: &str, message: &[u8]) -> Vec<Delivery> {
        let Some(script) = self.script_of(user) else {
            return keep();
        };
        let envelope = Envelope {
            from: envelope_from,
            to: user,
        };
        match script.evaluate(message, &envelope) {
            Ok(deliveries) => {
                tracing::debug!(user, ?deliveries, "sieve script ran");
                if deliveries.is_empty() {
                    tracing::info!(user, "sieve script discarded a message");
                }
                deliveries
            }
            Err(e) => {
                tracing::warn!(user, error = %e, "sieve script failed; message kept in INBOX");
                keep()
            }
        }
    }

    fn script_of(&self, user: &str) -> Option<Arc<Script>> {
        let source = self.scripts.active_script(user)?;
        let mut cache = self
            .compiled
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((cached, script)) = cache.get(user)
            && *cached == source
        {
            return Some(script.clone());
        }
        match Script::compile(&source) {
            Ok(script) => {
                let script = Arc::new(script);
                cache.insert(user.to_string(), (source, script.clone()));
                Some(script)
            }
            Err(e) => {
                // Scripts are checked at upload; this one changed rules under us (an upgrade).
                tracing::warn!(user, error = %e, "active sieve script does not compile; messages kept in INBOX");
                cache.remove(user);
                None
            }
        }
    }
}

fn keep() -> Vec<Delivery> {
    vec![Delivery {
        mailbox: "INBOX".into(),
        flags: Vec::new(),
    }]
}

#[cfg(test)]
mod tests {
    use super::*;

    struct OneScript(Mutex<Option<String>>);

    impl ActiveScripts for OneScript {
        fn active_script(&self, user: &str) -> Option<String> {
            (user == "alice@example.com")
                .then(|| self.0.lock().unwrap().clone())
                .flatten()
        }
    }

    const MSG: &[u8] = b"From: boss@example.org\r\nSubject: Weekly report\r\n\r\nHi\r\n";

    #[test]
    fn active_scripts_decide_and_changes_are_picked_up() {
        let scripts = Arc::new(OneScript(Mutex::new(Some(
            "require \"fileinto\";\nif header :contains \"subject\" \"report\" { fileinto \"Reports\"; }"
                .into(),
        ))));
        let filter = SieveFilter::new(scripts.clone());
        let placed = filter.placements("alice@example.com", "boss@example.org", MSG);
        assert_eq!(
            placed,
            vec![Delivery {
                mailbox: "Reports".into(),
                flags: vec![]
            }]
        );
        // Someone without a script keeps everything.
        assert_eq!(filter.placements("bob@example.com", "x@y", MSG), keep());
        // A new script version is compiled again.
        *scripts.0.lock().unwrap() = Some("discard;".into());
        assert_eq!(filter.placements("alice@example.com", "x@y", MSG), vec![]);
    }

    #[test]
    fn broken_or_failing_scripts_keep_the_message() {
        let scripts = Arc::new(OneScript(Mutex::new(Some("frobnicate;".into()))));
        let filter = SieveFilter::new(scripts.clone());
        assert_eq!(filter.placements("alice@example.com", "x@y", MSG), keep());
        assert!(filter.compiled.lock().unwrap().is_empty());
        // Too many actions is a run-time error: kept as well.
        *scripts.0.lock().unwrap() = Some("keep;\n".repeat(crate::sieve::MAX_ACTIONS + 5));
        assert_eq!(filter.placements("alice@example.com", "x@y", MSG), keep());
        assert_eq!(
            SieveFilter::keep_all().placements("alice@example.com", "", MSG),
            keep()
        );
    }
}
