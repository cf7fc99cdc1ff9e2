//! Match types (`:is`, `:contains`, `:matches`) under the two comparators. Every comparison is
//! charged to a work budget, so a hostile script can't keep a delivery busy: `:matches` runs in
//! O(n*m) steps (no exponential backtracking), and the budget bounds n*m summed over a run.

use std::borrow::Cow;

use super::RuntimeError;
use super::program::{Comparator, MatchType, Matcher};

/// Work units (about one byte compared or one matcher step each) one evaluation may spend.
/// Enough to scan a 30 MB body against a dozen keys; small enough to end in about a second.
pub const MAX_MATCH_WORK: u64 = 500_000_000;

#[derive(Debug)]
pub(crate) struct Budget {
    remaining: u64,
}

impl Budget {
    pub(crate) fn new(units: u64) -> Self {
        Self { remaining: units }
    }

    pub(crate) fn charge(&mut self, units: usize) -> Result<(), RuntimeError> {
        let units = u64::try_from(units).unwrap_or(u64::MAX);
        match self.remaining.checked_sub(units) {
            Some(left) => {
                self.remaining = left;
                Ok(())
            }
            None => {
                self.remaining = 0;
                Err(RuntimeError(format!(
                    "script exceeded its matching work limit ({MAX_MATCH_WORK} units)"
                )))
            }
        }
    }
}

impl Matcher {
    /// Whether `value` matches `key` (the key is the pattern for `:matches`).
    #[cfg(test)]
    pub(crate) fn matches(
        &self,
        value: &str,
        key: &str,
        budget: &mut Budget,
    ) -> Result<bool, RuntimeError> {
        self.any([value], &[key.to_owned()], budget)
    }

    /// Whether any value matches any key. Each key is folded and compiled once, each value
    /// folded once.
    pub(crate) fn any<'v>(
        &self,
        values: impl IntoIterator<Item = &'v str>,
        keys: &[String],
        budget: &mut Budget,
    ) -> Result<bool, RuntimeError> {
        let keys: Vec<Key<'_>> = keys
            .iter()
            .map(|key| {
                let folded = self.fold(key);
                let pattern =
                    (self.kind == MatchType::Matches).then(|| compile_pattern(folded.as_bytes()));
                Key { folded, pattern }
            })
            .collect();
        for value in values {
            let folded = self.fold(value);
            for key in &keys {
                budget.charge(value.len() + key.folded.len())?;
                let hit = match &key.pattern {
                    None if self.kind == MatchType::Contains => {
                        folded.contains(key.folded.as_ref())
                    }
                    None => folded == key.folded,
                    Some(pattern) => {
                        wildcard_match(pattern, folded.as_bytes(), self.step(), budget)?
                    }
                };
                if hit {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// i;ascii-casemap folds ASCII letters only (RFC 4790 section 9.2); i;octet nothing.
    fn fold<'s>(&self, text: &'s str) -> Cow<'s, str> {
        match self.comparator {
            Comparator::Octet => Cow::Borrowed(text),
            Comparator::AsciiCasemap if text.bytes().any(|b| b.is_ascii_uppercase()) => {
                Cow::Owned(text.to_ascii_lowercase())
            }
            Comparator::AsciiCasemap => Cow::Borrowed(text),
        }
    }

    /// How far `?` and a `*` retry advance: one octet for i;octet (RFC 4790 section 9.3),
    /// one character for i;ascii-casemap.
    fn step(&self) -> fn(u8) -> usize {
        match self.comparator {
            Comparator::Octet => |_| 1,
            Comparator::AsciiCasemap => utf8_len,
        }
    }
}

struct Key<'k> {
    folded: Cow<'k, str>,
    pattern: Option<Vec<Pat>>,
}

/// Length of the UTF-8 sequence a byte starts; 1 for anything else, so progress is certain.
fn utf8_len(first: u8) -> usize {
    match first {
        0xf0..=0xf7 => 4,
        0xe0..=0xef => 3,
        0xc0..=0xdf => 2,
        _ => 1,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pat {
    Lit(u8),
    /// `?`: exactly one octet or character.
    One,
    /// `*`: any run, runs of `*` collapsed into one.
    Star,
}

/// Reads `*`, `?` and `\` escapes (RFC 5228 section 2.7.1: `\` quotes the next character; a
/// trailing lone `\` stands for itself). Escaping the first byte of a multi-byte character
/// is the same as escaping the character: its other bytes are literals anyway.
fn compile_pattern(key: &[u8]) -> Vec<Pat> {
    let mut out = Vec::with_capacity(key.len());
    let mut bytes = key.iter().copied();
    while let Some(byte) = bytes.next() {
        let pat = match byte {
            b'*' if out.last() == Some(&Pat::Star) => continue,
            b'*' => Pat::Star,
            b'?' => Pat::One,
            b'\\' => Pat::Lit(bytes.next().unwrap_or(b'\\')),
            other => Pat::Lit(other),
        };
        out.push(pat);
    }
    out
}

/// Greedy glob matching that only ever backtracks to the most recent `*`: a later `*` can
/// absorb whatever an earlier one could retry, so this is exact and O(text * pattern).
/// `step` keeps `?` and star retries on character boundaries; literal bytes of a valid UTF-8
/// pattern can only match starting at a boundary, so the result equals a per-character match.
fn wildcard_match(
    pattern: &[Pat],
    text: &[u8],
    step: fn(u8) -> usize,
    budget: &mut Budget,
) -> Result<bool, RuntimeError> {
    let (mut p, mut t) = (0, 0);
    // Pattern position after the last `*`, and the text position that `*` absorbs up to.
    let mut resume: Option<(usize, usize)> = None;
    let mut steps = 0usize;
    while t < text.len() {
        steps += 1;
        if steps >= 1 << 16 {
            budget.charge(steps)?;
            steps = 0;
        }
        match pattern.get(p) {
            Some(Pat::Star) => {
                p += 1;
                resume = Some((p, t));
            }
            Some(Pat::One) => {
                p += 1;
                t += step(text[t]);
            }
            Some(Pat::Lit(c)) if *c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match resume {
                Some((after_star, absorbed)) => {
                    let absorbed = absorbed + step(text[absorbed]);
                    p = after_star;
                    t = absorbed;
                    resume = Some((after_star, absorbed));
                }
                None => {
                    budget.charge(steps)?;
                    return Ok(false);
                }
            },
        }
    }
    budget.charge(steps)?;
    // A `?` may step past the end on truncated input; that is no match.
    Ok(t == text.len()
        && pattern
            .get(p..)
            .is_some_and(|rest| rest.iter().all(|pat| *pat == Pat::Star)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(kind: MatchType, comparator: Comparator, value: &str, key: &str) -> bool {
        let matcher = Matcher { kind, comparator };
        let mut budget = Budget::new(MAX_MATCH_WORK);
        match matcher.matches(value, key, &mut budget) {
            Ok(result) => result,
            Err(e) => panic!("{e}"),
        }
    }

    fn glob(value: &str, key: &str) -> bool {
        check(MatchType::Matches, Comparator::AsciiCasemap, value, key)
    }

    #[test]
    fn is_under_both_comparators() {
        assert!(check(
            MatchType::Is,
            Comparator::AsciiCasemap,
            "Hello",
            "hELLO"
        ));
        assert!(!check(MatchType::Is, Comparator::Octet, "Hello", "hello"));
        assert!(check(MatchType::Is, Comparator::Octet, "Hello", "Hello"));
        assert!(!check(
            MatchType::Is,
            Comparator::AsciiCasemap,
            "Hello",
            "Hell"
        ));
        // Only ASCII letters fold under i;ascii-casemap.
        assert!(!check(
            MatchType::Is,
            Comparator::AsciiCasemap,
            "\u{c9}",
            "\u{e9}"
        ));
        assert!(check(MatchType::Is, Comparator::AsciiCasemap, "", ""));
    }

    #[test]
    fn contains_under_both_comparators() {
        assert!(check(
            MatchType::Contains,
            Comparator::AsciiCasemap,
            "Make MONEY fast",
            "money"
        ));
        assert!(!check(
            MatchType::Contains,
            Comparator::Octet,
            "Make MONEY fast",
            "money"
        ));
        assert!(check(
            MatchType::Contains,
            Comparator::Octet,
            "Make MONEY fast",
            "MONEY"
        ));
        assert!(check(
            MatchType::Contains,
            Comparator::Octet,
            "anything",
            ""
        ));
        assert!(!check(
            MatchType::Contains,
            Comparator::AsciiCasemap,
            "short",
            "longer than it"
        ));
    }

    #[test]
    fn matches_wildcards() {
        assert!(glob("hello world", "hello*"));
        assert!(glob("hello world", "*WORLD"));
        assert!(glob("hello world", "h?llo*w*d"));
        assert!(glob("", "*"));
        assert!(glob("", "**"));
        assert!(!glob("", "?"));
        assert!(glob("abc", "???"));
        assert!(!glob("abc", "????"));
        assert!(!glob("abc", "??"));
        assert!(glob("abc", "a*c"));
        assert!(!glob("abcd", "a*c"));
        assert!(glob("aXbXc", "*b*c"));
        assert!(glob("mississippi", "m*iss*ppi"));
        assert!(!glob("mississippi", "m*iss*ppx"));
        assert!(glob("abcabc", "*abc"));
        assert!(!glob("abc", ""));
        assert!(glob("", ""));
    }

    #[test]
    fn matches_escapes() {
        // The Sieve string "\\*" reaches the matcher as `\*`: a literal star.
        assert!(glob("a*", "a\\*"));
        assert!(!glob("ab", "a\\*"));
        assert!(glob("what?", "what\\?"));
        assert!(!glob("whats", "what\\?"));
        assert!(glob("a\\b", "a\\\\b"));
        // A lone trailing backslash stands for itself.
        assert!(glob("a\\", "a\\"));
    }

    #[test]
    fn question_mark_counts_octets_or_characters() {
        assert!(glob("caf\u{e9}", "caf?"));
        assert!(!check(
            MatchType::Matches,
            Comparator::Octet,
            "caf\u{e9}",
            "caf?"
        ));
        assert!(check(
            MatchType::Matches,
            Comparator::Octet,
            "caf\u{e9}",
            "caf??"
        ));
        assert!(!check(MatchType::Matches, Comparator::Octet, "ABC", "a*"));
        // Stars retry and `?` steps by whole characters under i;ascii-casemap.
        assert!(!glob("\u{e9}", "*??"));
        assert!(glob("\u{e9}a", "*??"));
        assert!(glob("\u{e9}\u{e9}", "?\u{e9}"));
        assert!(glob("a\u{e9}", "*\u{e9}"));
        assert!(glob("\u{e9}", "\\\u{e9}"));
        assert!(glob("\u{1f600}x", "?x"));
        assert!(!glob("\u{1f600}x", "??x"));
        assert!(check(
            MatchType::Matches,
            Comparator::Octet,
            "\u{1f600}x",
            "????x"
        ));
        assert!(glob("ABC", "a*"));
    }

    #[test]
    fn pathological_patterns_finish_fast() {
        let text = "a".repeat(20_000);
        let pattern = format!("{}b", "*a".repeat(2_000));
        let started = std::time::Instant::now();
        assert!(!glob(&text, &pattern));
        let pattern = format!("*{}b", "a".repeat(1_000));
        assert!(!glob(&text, &pattern));
        assert!(glob(&text, &format!("*{}", "a".repeat(1_000))));
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    }

    #[test]
    fn the_budget_stops_runaway_matching() {
        let matcher = Matcher {
            kind: MatchType::Matches,
            comparator: Comparator::Octet,
        };
        let text = "a".repeat(100_000);
        let pattern = format!("*{}b", "a".repeat(10_000));
        let mut budget = Budget::new(10_000_000);
        let result = matcher.matches(&text, &pattern, &mut budget);
        assert!(matches!(result, Err(RuntimeError(ref m)) if m.contains("work limit")));
        let mut budget = Budget::new(10);
        assert!(matcher.matches("0123456789", "x", &mut budget).is_err());
    }
}
