//! Mechanism registry: every known mechanism by name, and the ordered list one protocol offers.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{
    Login, OAuthBearer, Plain, Protocol, SaslMechanism, ScramSha256, SessionContext, XOAuth2,
};
use crate::auth::AuthBackends;

/// Mechanisms a protocol offers when its `[<proto>.auth] mechanisms` key is absent. SCRAM is
/// not among them: it needs SCRAM secrets in the directory, so operators enable it by name.
pub fn default_mechanisms(protocol: Protocol) -> Vec<String> {
    let names: &[&str] = match protocol {
        Protocol::Smtp => &["PLAIN", "LOGIN", "OAUTHBEARER", "XOAUTH2"],
        Protocol::Imap | Protocol::Pop3 | Protocol::ManageSieve => {
            &["PLAIN", "OAUTHBEARER", "XOAUTH2"]
        }
    };
    names.iter().map(|n| n.to_string()).collect()
}

/// Unknown mechanism named in configuration.
#[derive(Debug, thiserror::Error)]
#[error("unknown SASL mechanism {0:?} (known: {1})")]
pub struct UnknownMechanism(pub String, pub String);

/// All mechanisms known to this server, plus the ordered selection one listener offers.
#[derive(Clone)]
pub struct SaslRegistry {
    known: BTreeMap<String, Arc<dyn SaslMechanism>>,
    enabled: Vec<Arc<dyn SaslMechanism>>,
}

impl SaslRegistry {
    /// A registry knowing the built-in mechanisms, none enabled yet.
    pub fn with_builtins(backends: &AuthBackends) -> Self {
        let mut registry = Self {
            known: BTreeMap::new(),
            enabled: Vec::new(),
        };
        registry.register(Arc::new(Plain::new(backends.clone())));
        registry.register(Arc::new(Login::new(backends.clone())));
        registry.register(Arc::new(OAuthBearer::new(backends.clone())));
        registry.register(Arc::new(XOAuth2::new(backends.clone())));
        registry.register(Arc::new(ScramSha256::new(backends.clone())));
        registry.register(Arc::new(ScramSha256::plus(backends.clone())));
        registry
    }

    /// Adds (or replaces) a mechanism; how another crate plugs in its own.
    pub fn register(&mut self, mechanism: Arc<dyn SaslMechanism>) {
        self.known
            .insert(mechanism.name().to_ascii_uppercase(), mechanism);
    }

    /// Enables the named mechanisms, in this order (the order CAPABILITY and EHLO show).
    pub fn enable(mut self, names: &[String]) -> Result<Self, UnknownMechanism> {
        let mut enabled = Vec::with_capacity(names.len());
        for name in names {
            let key = name.to_ascii_uppercase();
            let Some(mech) = self.known.get(&key) else {
                let known = self.known.keys().cloned().collect::<Vec<_>>().join(", ");
                return Err(UnknownMechanism(name.clone(), known));
            };
            if !enabled
                .iter()
                .any(|m: &Arc<dyn SaslMechanism>| m.name().eq_ignore_ascii_case(&key))
            {
                enabled.push(mech.clone());
            }
        }
        let offered: Vec<String> = enabled
            .iter()
            .map(|m| m.name().to_ascii_uppercase())
            .collect();
        self.enabled = enabled
            .into_iter()
            .map(|m| m.with_siblings(&offered).unwrap_or(m))
            .collect();
        Ok(self)
    }

    /// Names of the enabled mechanisms available in this session, in configured order.
    pub fn advertised(&self, ctx: &SessionContext) -> Vec<String> {
        self.enabled
            .iter()
            .filter(|m| m.available(ctx))
            .map(|m| m.name().to_string())
            .collect()
    }

    /// The enabled mechanism with this name (case-insensitive) if it is available in `ctx`.
    pub fn get(&self, name: &str, ctx: &SessionContext) -> Option<Arc<dyn SaslMechanism>> {
        self.enabled
            .iter()
            .find(|m| m.name().eq_ignore_ascii_case(name) && m.available(ctx))
            .cloned()
    }

    /// Whether the mechanism is enabled at all, regardless of the session (to tell "unknown"
    /// from "needs TLS" in replies).
    pub fn is_enabled(&self, name: &str) -> bool {
        self.enabled
            .iter()
            .any(|m| m.name().eq_ignore_ascii_case(name))
    }
}
