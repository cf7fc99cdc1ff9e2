//! The stack's identity provider, whichever it is: LemonLDAP::NG (its own process per stack) or
//! a realm of Keycloak (a process shared by the stacks of one test binary, or the demo's own).
//! Everything else in the stack (server, gateway, clients, suites) only sees the issuer, its
//! discovery document and the signing key.

use anyhow::{Context, bail};
use serde_json::Value;

use super::keycloak::KeycloakRealm;
use super::llng::Llng;
use crate::keys::RsaKeyPair;

/// Which identity provider a stack runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Idp {
    /// LemonLDAP::NG 2.21 under Starman (Debian packages).
    #[default]
    LemonLdap,
    /// Keycloak 26 from its Maven distribution, on OpenJDK 17.
    Keycloak,
}

impl Idp {
    pub fn name(&self) -> &'static str {
        match self {
            Idp::LemonLdap => "lemonldap",
            Idp::Keycloak => "keycloak",
        }
    }

    /// For people: `LemonLDAP::NG 2.21`, `Keycloak 26.5.6`.
    pub fn title(&self) -> String {
        match self {
            Idp::LemonLdap => "LemonLDAP::NG 2.21".into(),
            Idp::Keycloak => format!("Keycloak {}", super::keycloak::VERSION),
        }
    }
}

impl std::str::FromStr for Idp {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "lemonldap" | "lemonldap-ng" | "llng" => Ok(Idp::LemonLdap),
            "keycloak" => Ok(Idp::Keycloak),
            other => Err(format!("unknown IdP {other:?} (lemonldap or keycloak)")),
        }
    }
}

/// What the IdP's discovery document says.
#[derive(Debug, Clone)]
pub struct Discovered {
    pub token_endpoint: String,
    pub jwks_uri: String,
    pub authorization_endpoint: String,
    pub introspection_endpoint: String,
    pub end_session_endpoint: Option<String>,
    pub revocation_endpoint: Option<String>,
}

/// GET `url`: 200 with `issuer` (not some other server that took the port), and the endpoints.
pub async fn discover(
    http: &reqwest::Client,
    url: &str,
    issuer: &str,
) -> anyhow::Result<Discovered> {
    let resp = http.get(url).send().await?;
    let status = resp.status();
    if !status.is_success() {
        bail!("discovery answered {status}");
    }
    let doc: Value = resp.json().await.context("discovery is not JSON")?;
    let field = |k: &str| doc.get(k).and_then(Value::as_str).map(str::to_string);
    if field("issuer").as_deref() != Some(issuer) {
        bail!(
            "discovery names issuer {:?}, expected {issuer}",
            field("issuer")
        );
    }
    Ok(Discovered {
        token_endpoint: field("token_endpoint").context("no token_endpoint in discovery")?,
        jwks_uri: field("jwks_uri").context("no jwks_uri in discovery")?,
        authorization_endpoint: field("authorization_endpoint")
            .context("no authorization_endpoint in discovery")?,
        introspection_endpoint: field("introspection_endpoint")
            .context("no introspection_endpoint in discovery")?,
        end_session_endpoint: field("end_session_endpoint"),
        revocation_endpoint: field("revocation_endpoint"),
    })
}

/// The running IdP of a stack.
pub enum Provider {
    Llng(Box<Llng>),
    Keycloak(KeycloakRealm),
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Provider::Llng(_) => f.write_str("LemonLDAP::NG"),
            Provider::Keycloak(k) => k.fmt(f),
        }
    }
}

impl Provider {
    pub fn kind(&self) -> Idp {
        match self {
            Provider::Llng(_) => Idp::LemonLdap,
            Provider::Keycloak(_) => Idp::Keycloak,
        }
    }

    pub fn issuer(&self) -> String {
        match self {
            Provider::Llng(l) => l.issuer(),
            Provider::Keycloak(k) => k.issuer(),
        }
    }

    pub fn discovery_url(&self) -> String {
        match self {
            Provider::Llng(l) => l.discovery_url(),
            Provider::Keycloak(k) => k.discovery_url(),
        }
    }

    pub fn key(&self) -> &RsaKeyPair {
        match self {
            Provider::Llng(l) => l.key(),
            Provider::Keycloak(k) => k.key(),
        }
    }

    pub fn kid(&self) -> &str {
        match self {
            Provider::Llng(l) => l.kid(),
            Provider::Keycloak(k) => k.kid(),
        }
    }

    /// The process this stack started for its IdP (none for a shared Keycloak).
    pub fn pid(&self) -> Option<u32> {
        match self {
            Provider::Llng(l) => l.pid(),
            Provider::Keycloak(k) => k.owned_pid(),
        }
    }

    /// Stops the IdP's process (a shared Keycloak keeps running).
    pub fn stop(&mut self) {
        match self {
            Provider::Llng(l) => l.stop(),
            Provider::Keycloak(k) => k.stop(),
        }
    }

    pub async fn restart(&mut self) -> anyhow::Result<()> {
        match self {
            Provider::Llng(l) => l.restart().await,
            Provider::Keycloak(_) => {
                bail!("restarting Keycloak is not supported (it may be shared); use LemonLDAP::NG")
            }
        }
    }

    /// A new signing key; returns once the JWKS serves only its `kid`.
    pub async fn rotate(&mut self, key: RsaKeyPair) -> anyhow::Result<String> {
        match self {
            Provider::Llng(l) => l.rotate(key).await,
            Provider::Keycloak(k) => k.rotate(key).await,
        }
    }
}
