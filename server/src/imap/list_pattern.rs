//! LIST/LSUB patterns (RFC 3501 6.3.8): `*` matches anything, `%` anything but the hierarchy
//! delimiter. A pattern is compiled once per command, with its complexity bounded, then matched
//! against each mailbox name in time linear in the name per pattern part.
//!
//! Runs of wildcards collapse (`%*%` is `*`, `%%` is `%`), so after compilation every wildcard is
//! followed by literal bytes; a pattern with more literal bytes than a name cannot match it. The
//! caps keep one command's work small however many mailboxes there are.

use crate::store::DELIMITER;

/// Longest pattern (reference + mailbox argument) accepted, in bytes.
pub const MAX_PATTERN_LEN: usize = 1024;
/// Most wildcard runs in one pattern, after collapsing.
pub const MAX_WILDCARDS: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("pattern of {0} bytes is longer than {MAX_PATTERN_LEN}")]
    TooLong(usize),
    #[error("pattern has {0} wildcard runs, more than {MAX_WILDCARDS}")]
    TooManyWildcards(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(Vec<u8>),
    /// `*`: any bytes.
    Any,
    /// `%`: any bytes except the delimiter.
    Level,
}

#[derive(Debug, Clone)]
pub struct ListPattern {
    parts: Vec<Part>,
    /// Literal bytes in `parts`: a shorter name never matches.
    literal_len: usize,
}

impl ListPattern {
    pub fn compile(pattern: &[u8]) -> Result<Self, PatternError> {
        if pattern.len() > MAX_PATTERN_LEN {
            return Err(PatternError::TooLong(pattern.len()));
        }
        let mut parts: Vec<Part> = Vec::new();
        let mut wildcards = 0;
        for &b in pattern {
            let wildcard = match b {
                b'*' => Some(Part::Any),
                b'%' => Some(Part::Level),
                _ => None,
            };
            match (wildcard, parts.last_mut()) {
                (Some(w), Some(last @ (Part::Any | Part::Level))) => {
                    if w == Part::Any {
                        *last = Part::Any;
                    }
                }
                (Some(w), _) => {
                    wildcards += 1;
                    parts.push(w);
                }
                (None, Some(Part::Literal(lit))) => lit.push(b),
                (None, _) => parts.push(Part::Literal(vec![b])),
            }
        }
        if wildcards > MAX_WILDCARDS {
            return Err(PatternError::TooManyWildcards(wildcards));
        }
        let literal_len = parts
            .iter()
            .map(|p| match p {
                Part::Literal(l) => l.len(),
                _ => 0,
            })
            .sum();
        Ok(Self { parts, literal_len })
    }

    /// Whether `name` matches. `reach[j]`: the parts so far can consume exactly `name[..j]`.
    pub fn matches(&self, name: &[u8]) -> bool {
        if self.literal_len > name.len() {
            return false;
        }
        let n = name.len();
        let mut reach = vec![false; n + 1];
        reach[0] = true;
        let mut next = vec![false; n + 1];
        for part in &self.parts {
            next.iter_mut().for_each(|r| *r = false);
            match part {
                Part::Literal(lit) => {
                    for j in 0..=n.saturating_sub(lit.len()) {
                        if reach[j] && name[j..].starts_with(lit) {
                            next[j + lit.len()] = true;
                        }
                    }
                }
                Part::Any => {
                    let mut seen = false;
                    for j in 0..=n {
                        seen |= reach[j];
                        next[j] = seen;
                    }
                }
                Part::Level => {
                    let mut run = false;
                    for j in 0..=n {
                        // Extends a match over one more non-delimiter byte, or starts one here.
                        run = reach[j] || (run && name[j - 1] != DELIMITER as u8);
                        next[j] = run;
                    }
                }
            }
            std::mem::swap(&mut reach, &mut next);
        }
        reach[n]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, name: &str) -> bool {
        ListPattern::compile(pattern.as_bytes())
            .unwrap()
            .matches(name.as_bytes())
    }

    #[test]
    fn wildcards() {
        assert!(m("*", "INBOX"));
        assert!(m("*", "a/b/c"));
        assert!(m("*", ""));
        assert!(m("%", "Work"));
        assert!(!m("%", "Work/2024"));
        assert!(m("Work/%", "Work/2024"));
        assert!(m("W*4", "Work/2024"));
        assert!(!m("W%4", "Work/2024"));
        assert!(m("Work", "Work"));
        assert!(!m("Work", "work"));
        assert!(!m("Work", "Work2"));
        assert!(m("%/%", "a/b"));
        assert!(!m("%/%", "a/b/c"));
        assert!(m("%*%", "a/b/c"), "a run with * is *");
        assert!(m("%%", "ab"));
        assert!(!m("%%", "a/b"), "a run of % is %");
        assert!(m("a%b%c", "aXbYc"));
        assert!(m("*b*b", "abab"));
        assert!(!m("*b*b", "abac"));
        assert!(m("", ""));
        assert!(!m("", "a"));
    }

    #[test]
    fn complexity_is_capped() {
        let long = vec![b'a'; MAX_PATTERN_LEN + 1];
        assert_eq!(
            ListPattern::compile(&long).unwrap_err(),
            PatternError::TooLong(MAX_PATTERN_LEN + 1)
        );
        let many = "a*".repeat(MAX_WILDCARDS + 1);
        assert_eq!(
            ListPattern::compile(many.as_bytes()).unwrap_err(),
            PatternError::TooManyWildcards(MAX_WILDCARDS + 1)
        );
        // Wildcard runs count once, however long: this is just `*`.
        let run = "%*".repeat(400);
        assert!(
            ListPattern::compile(run.as_bytes())
                .unwrap()
                .matches(b"x/y")
        );
        assert!(ListPattern::compile("a*".repeat(MAX_WILDCARDS).as_bytes()).is_ok());
    }

    #[test]
    fn worst_allowed_pattern_against_long_names_agrees_with_a_naive_matcher() {
        // The naive recursive matcher, as a reference on small inputs.
        fn naive(p: &[u8], n: &[u8]) -> bool {
            match p.split_first() {
                None => n.is_empty(),
                Some((b'*', rest)) => (0..=n.len()).any(|i| naive(rest, &n[i..])),
                Some((b'%', rest)) => (0..=n.len())
                    .take_while(|&i| i == 0 || n[i - 1] != b'/')
                    .any(|i| naive(rest, &n[i..])),
                Some((c, rest)) => n.first() == Some(c) && naive(rest, &n[1..]),
            }
        }
        let patterns = ["a*b%a", "%a%", "*a*a*a*b", "a/%/*", "*/*", "%%a**b"];
        let names = ["aab", "a/b/a", "aaab", "a/x/y/z", "ba/ab", "xaxb", "a/aa/b"];
        for p in patterns {
            for n in names {
                assert_eq!(m(p, n), naive(p.as_bytes(), n.as_bytes()), "{p} vs {n}");
            }
        }
    }
}
