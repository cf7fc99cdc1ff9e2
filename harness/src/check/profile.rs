//! Profiles: the known deviations of a server from the specs, each with where it is documented,
//! so a failure that is a listed deviation does not fail the run, and a fork sees exactly what it
//! changed against its upstream. Only `strict` (no deviation) exists so far.

use crate::suites::{Check, Verdict};

/// The profile named on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ProfileName {
    /// Every MUST must pass: no deviation is accepted.
    #[default]
    Strict,
}

/// One known deviation: the checks whose id starts with `id_prefix` may fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deviation {
    pub id_prefix: String,
    /// Where the deviation is documented: their documentation, issue tracker, or our own run.
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub name: &'static str,
    pub deviations: Vec<Deviation>,
}

impl Profile {
    pub fn strict() -> Self {
        Self {
            name: "strict",
            deviations: Vec::new(),
        }
    }

    pub fn named(name: ProfileName) -> Self {
        match name {
            ProfileName::Strict => Self::strict(),
        }
    }

    /// Turns the failures this profile lists into deviations (with their source).
    pub fn apply(&self, checks: &mut [Check]) {
        for check in checks.iter_mut().filter(|c| c.verdict == Verdict::Fail) {
            let id = check.id().to_string();
            if let Some(d) = self
                .deviations
                .iter()
                .find(|d| id.starts_with(&d.id_prefix))
            {
                check.verdict = Verdict::Deviation {
                    source: d.source.clone(),
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suites::{Report, Spec};

    #[test]
    fn only_listed_failures_become_deviations() {
        let mut r = Report::new("t");
        let spec = |id: &str| Spec::must(id, "t", "imap", "RFC 7628 §3.2.2");
        r.check_spec(spec("sasl.imap.a"), "a", Err(anyhow::anyhow!("no")));
        r.check_spec(spec("sasl.imap.b"), "b", Err(anyhow::anyhow!("no")));
        r.check_spec(spec("sasl.imap.a2"), "a2", Ok(()));
        let profile = Profile {
            name: "test",
            deviations: vec![Deviation {
                id_prefix: "sasl.imap.a".into(),
                source: "their docs".into(),
            }],
        };
        profile.apply(&mut r.checks);
        assert_eq!(
            r.checks[0].verdict,
            Verdict::Deviation {
                source: "their docs".into()
            }
        );
        assert_eq!(r.checks[1].verdict, Verdict::Fail);
        assert_eq!(r.checks[2].verdict, Verdict::Pass);
        Profile::strict().apply(&mut r.checks);
        assert_eq!(r.checks[1].verdict, Verdict::Fail);
    }
}
