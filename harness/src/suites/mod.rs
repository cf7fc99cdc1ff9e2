//! Server-agnostic end-to-end flows: endpoints and credentials in, verdicts out. The tests in
//! `harness/tests/` wrap them against the stack's own server; nothing in them depends on that
//! server, so they can run against any server (James, Dovecot, Stalwart) on the network.
//!
//! A flow never panics: every check it makes becomes a [`Check`] in its [`Report`], so one run
//! says everything that is wrong at once. Steps that later checks depend on (a login, opening
//! a session) end the flow with a failed check when they fail.

pub mod access;
pub mod live;
pub mod revocation;
pub mod sasl;
pub mod sieve;
pub mod slo;
pub mod sso;

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use crate::idp::IdpSettings;
use crate::stack::Endpoints;

/// How long a session may take to end after a logout or revocation before the check fails
/// (generous for a loaded CI machine; the bench measures the real latency).
pub const END_DEADLINE: Duration = Duration::from_secs(10);

/// The mail server under test.
#[derive(Debug, Clone)]
pub struct MailTarget {
    /// IMAP over implicit TLS, if the server speaks IMAP (checks needing it are skipped).
    pub imaps: Option<SocketAddr>,
    /// Submission over implicit TLS, if the server takes submissions.
    pub submissions: Option<SocketAddr>,
    /// POP3 over implicit TLS, if the server speaks POP3.
    pub pop3s: Option<SocketAddr>,
    /// ManageSieve (STARTTLS), if the server speaks it.
    pub sieve: Option<SocketAddr>,
    /// The server's own JMAP session URL (bearer tokens sent directly), if it speaks JMAP.
    pub jmap_session: Option<String>,
    /// The JMAP session URL through the OIDC gateway, if there is one.
    pub gateway_jmap_session: Option<String>,
    /// PEM of the CA that signed the server's (and the gateway's) certificate.
    pub ca_pem: String,
}

impl MailTarget {
    /// The stack's own server and gateway.
    pub fn from_endpoints(ep: &Endpoints) -> Self {
        Self {
            imaps: Some(ep.imaps),
            submissions: Some(ep.submissions),
            pop3s: Some(ep.pop3s).filter(|a| a.port() != 0),
            sieve: Some(ep.sieve).filter(|a| a.port() != 0),
            jmap_session: Some(ep.jmap_session.clone()),
            gateway_jmap_session: (!ep.gateway.is_empty())
                .then(|| format!("{}/oidc/.well-known/jmap", ep.gateway)),
            ca_pem: ep.ca_pem.clone(),
        }
    }

    /// The IMAPS address, or why a flow needing it cannot run.
    pub fn imaps_addr(&self) -> anyhow::Result<SocketAddr> {
        self.imaps
            .ok_or_else(|| anyhow::anyhow!("the target has no IMAPS endpoint"))
    }

    /// The submissions (implicit TLS) address, or why a flow needing it cannot run.
    pub fn submissions_addr(&self) -> anyhow::Result<SocketAddr> {
        self.submissions
            .ok_or_else(|| anyhow::anyhow!("the target has no submissions endpoint"))
    }

    /// The server's own JMAP session URL, or why a flow needing it cannot run.
    pub fn jmap_url(&self) -> anyhow::Result<&str> {
        self.jmap_session
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("the target has no JMAP session URL"))
    }
}

/// The identity provider's side: two clients of one realm and where a browser logs out.
#[derive(Debug, Clone)]
pub struct IdpTarget {
    /// A confidential client (auth code, password, client credentials).
    pub confidential: IdpSettings,
    /// A public web client (auth code + PKCE).
    pub web: IdpSettings,
    /// What a browser visits (with its SSO cookie) to log out at the IdP.
    pub logout_url: String,
}

/// A user of the realm.
#[derive(Debug, Clone)]
pub struct Account {
    pub mail: String,
    pub password: String,
}

/// One verdict.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: String,
    pub result: Result<(), String>,
}

/// Everything one flow found.
#[derive(Debug, Clone)]
pub struct Report {
    pub suite: &'static str,
    pub checks: Vec<Check>,
}

impl Report {
    pub fn new(suite: &'static str) -> Self {
        Self {
            suite,
            checks: Vec::new(),
        }
    }

    /// Records a check.
    pub fn check(&mut self, name: impl Into<String>, result: anyhow::Result<()>) {
        let name = name.into();
        let result = result.map_err(|e| format!("{e:#}"));
        match &result {
            Ok(()) => tracing::info!(suite = self.suite, check = %name, "passed"),
            Err(e) => tracing::warn!(suite = self.suite, check = %name, error = %e, "FAILED"),
        }
        self.checks.push(Check { name, result });
    }

    /// Records a step the rest depends on; `None` (and a failed check) when it failed.
    pub fn step<T>(&mut self, name: impl Into<String>, result: anyhow::Result<T>) -> Option<T> {
        match result {
            Ok(v) => {
                self.check(name, Ok(()));
                Some(v)
            }
            Err(e) => {
                self.check(name, Err(e));
                None
            }
        }
    }

    pub fn failures(&self) -> Vec<&Check> {
        self.checks.iter().filter(|c| c.result.is_err()).collect()
    }

    pub fn passed(&self) -> bool {
        !self.checks.is_empty() && self.failures().is_empty()
    }

    /// For tests: panics with every failed check (and the whole report).
    ///
    /// # Panics
    /// When a check failed, or when nothing was checked at all.
    pub fn assert_passed(&self) {
        assert!(self.passed(), "{self}");
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let failed = self.failures().len();
        writeln!(
            f,
            "{}: {} checks, {} failed",
            self.suite,
            self.checks.len(),
            failed
        )?;
        for c in &self.checks {
            match &c.result {
                Ok(()) => writeln!(f, "  ok    {}", c.name)?,
                Err(e) => writeln!(f, "  FAIL  {}: {e}", c.name)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_passes_only_with_checks_and_no_failure() {
        let mut r = Report::new("demo");
        assert!(!r.passed(), "an empty report proves nothing");
        r.check("one", Ok(()));
        assert!(r.passed());
        let got: Option<u8> = r.step("two", Err(anyhow::anyhow!("boom")));
        assert_eq!(got, None);
        assert!(!r.passed());
        let text = r.to_string();
        assert!(text.contains("2 checks, 1 failed"), "{text}");
        assert!(text.contains("FAIL  two: boom"), "{text}");
    }
}
