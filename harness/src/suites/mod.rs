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

/// How binding a requirement is (RFC 2119).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Level {
    Must,
    Should,
}

/// Where a check comes from: a stable id (`sasl.imap.oauthbearer.error-challenge`), a title,
/// the protocol it is grouped under, the spec section and how binding it is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Spec {
    pub id: String,
    pub title: String,
    /// `imap`, `smtp`, `pop3`, `sieve`, `jmap`, `gateway`, `backchannel`, ...
    pub protocol: String,
    /// e.g. "RFC 7628 §3.2.2".
    pub section: String,
    pub level: Level,
}

impl Spec {
    pub fn new(
        id: impl Into<String>,
        title: impl Into<String>,
        protocol: impl Into<String>,
        section: impl Into<String>,
        level: Level,
    ) -> Self {
        Self {
            id: id.into(),
            title: title.into(),
            protocol: protocol.into(),
            section: section.into(),
            level,
        }
    }

    pub fn must(
        id: impl Into<String>,
        title: impl Into<String>,
        protocol: impl Into<String>,
        section: impl Into<String>,
    ) -> Self {
        Self::new(id, title, protocol, section, Level::Must)
    }

    pub fn should(
        id: impl Into<String>,
        title: impl Into<String>,
        protocol: impl Into<String>,
        section: impl Into<String>,
    ) -> Self {
        Self::new(id, title, protocol, section, Level::Should)
    }
}

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "verdict", rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Fail,
    /// Failed, but a known deviation of the chosen profile (with where that is documented).
    Deviation {
        source: String,
    },
    /// Not run, and why (an endpoint not given, the IdP's key unknown, ...).
    Skip {
        reason: String,
    },
}

impl Verdict {
    pub fn word(&self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Deviation { .. } => "deviation",
            Verdict::Skip { .. } => "skip",
        }
    }
}

/// One verdict. `name` and `result` are what the flows always recorded; `spec`, `verdict` and
/// `evidence` are what `mail-oidc check` reports.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: String,
    pub result: Result<(), String>,
    /// Where the check comes from; `None` for checks recorded with [`Report::check`] only.
    pub spec: Option<Spec>,
    pub verdict: Verdict,
    /// What shows the failure (the reply or exchange), redacted and cut short; `None` on a pass.
    pub evidence: Option<String>,
}

impl Check {
    /// The stable id, or (for a check without a spec) its name.
    pub fn id(&self) -> &str {
        self.spec.as_ref().map_or(&self.name, |s| &s.id)
    }

    /// A MUST check, or one without a spec (the flows' own checks count as MUST).
    pub fn is_must(&self) -> bool {
        self.spec.as_ref().is_none_or(|s| s.level == Level::Must)
    }
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
        self.record(None, name.into(), result);
    }

    /// Records a check with where it comes from.
    pub fn check_spec(&mut self, spec: Spec, name: impl Into<String>, result: anyhow::Result<()>) {
        self.record(Some(spec), name.into(), result);
    }

    /// Records a check that was not run, and why. It is neither a pass nor a failure.
    pub fn skip(&mut self, spec: Spec, name: impl Into<String>, reason: impl Into<String>) {
        let name = name.into();
        let reason = reason.into();
        tracing::info!(suite = self.suite, check = %name, %reason, "skipped");
        self.checks.push(Check {
            name,
            result: Ok(()),
            spec: Some(spec),
            verdict: Verdict::Skip { reason },
            evidence: None,
        });
    }

    fn record(&mut self, spec: Option<Spec>, name: String, result: anyhow::Result<()>) {
        let result = result.map_err(|e| format!("{e:#}"));
        match &result {
            Ok(()) => tracing::info!(suite = self.suite, check = %name, "passed"),
            Err(e) => tracing::warn!(suite = self.suite, check = %name, error = %e, "FAILED"),
        }
        let (verdict, evidence) = match &result {
            Ok(()) => (Verdict::Pass, None),
            // Generic redaction here; `check` redacts the run's own secrets again on top.
            Err(e) => (Verdict::Fail, Some(crate::check::redact::evidence(e, &[]))),
        };
        self.checks.push(Check {
            name,
            result,
            spec,
            verdict,
            evidence,
        });
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

    /// [`step`](Self::step) with where it comes from.
    pub fn step_spec<T>(
        &mut self,
        spec: Spec,
        name: impl Into<String>,
        result: anyhow::Result<T>,
    ) -> Option<T> {
        match result {
            Ok(v) => {
                self.check_spec(spec, name, Ok(()));
                Some(v)
            }
            Err(e) => {
                self.check_spec(spec, name, Err(e));
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
            match (&c.result, &c.verdict) {
                (Ok(()), Verdict::Skip { reason }) => writeln!(f, "  skip  {}: {reason}", c.name)?,
                (Ok(()), _) => writeln!(f, "  ok    {}", c.name)?,
                (Err(e), _) => writeln!(f, "  FAIL  {}: {e}", c.name)?,
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

    #[test]
    fn spec_checks_carry_id_level_verdict_and_evidence() {
        let mut r = Report::new("demo");
        let spec = Spec::must("sasl.imap.x", "X", "imap", "RFC 7628 §3.2.2");
        r.check_spec(spec.clone(), "x", Err(anyhow::anyhow!("got NO")));
        r.skip(
            Spec::should("sasl.imap.y", "Y", "imap", "RFC 7628 §3.1"),
            "y",
            "no --pop3",
        );
        let got = r.step_spec(spec, "z", Ok(7));
        assert_eq!(got, Some(7));
        assert_eq!(r.checks[0].id(), "sasl.imap.x");
        assert_eq!(r.checks[0].verdict, Verdict::Fail);
        assert_eq!(r.checks[0].evidence.as_deref(), Some("got NO"));
        assert!(r.checks[0].is_must());
        assert_eq!(
            r.checks[1].verdict,
            Verdict::Skip {
                reason: "no --pop3".into()
            }
        );
        assert!(!r.checks[1].is_must());
        // A skip is not a failure.
        assert_eq!(r.failures().len(), 1);
        assert_eq!(r.checks[2].verdict, Verdict::Pass);
        assert!(r.to_string().contains("skip  y: no --pop3"));
    }
}
