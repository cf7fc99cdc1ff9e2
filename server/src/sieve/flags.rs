//! IMAP flags for imap4flags (RFC 5232): parsing flag lists and the internal flag variable.

use super::RuntimeError;

/// Flags the internal variable may hold at once; each delivery copies them.
pub const MAX_FLAGS: usize = 128;

const SYSTEM_FLAGS: [&str; 5] = ["\\Answered", "\\Deleted", "\\Draft", "\\Flagged", "\\Seen"];

/// Splits flag strings on spaces (RFC 5232 section 3: each string may hold several flags) and
/// keeps the valid ones. System flags take their canonical spelling; invalid flags (including
/// `\Recent`, which no one may set) are dropped, as the RFC asks, with a debug log.
pub(crate) fn parse_flag_list(strings: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for flag in strings.iter().flat_map(|s| s.split_ascii_whitespace()) {
        match normalize(flag) {
            Some(flag) => {
                if !out.iter().any(|f| f.eq_ignore_ascii_case(&flag)) {
                    out.push(flag);
                }
            }
            None => tracing::debug!(flag, "sieve: ignoring invalid IMAP flag"),
        }
    }
    out
}

fn normalize(flag: &str) -> Option<String> {
    if let Some(name) = flag.strip_prefix('\\') {
        return SYSTEM_FLAGS
            .iter()
            .find(|f| f[1..].eq_ignore_ascii_case(name))
            .map(|f| (*f).to_owned());
    }
    // An IMAP atom (RFC 3501 section 9): printable ASCII without atom-specials.
    let valid = !flag.is_empty()
        && flag
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"(){%*\"\\]".contains(&b));
    valid.then(|| flag.to_owned())
}

/// The imap4flags internal variable. Flag names compare case-insensitively (RFC 5232
/// section 3); the first spelling seen is kept.
#[derive(Debug, Default, Clone)]
pub(crate) struct FlagSet {
    flags: Vec<String>,
}

impl FlagSet {
    pub(crate) fn set(&mut self, flags: &[String]) -> Result<(), RuntimeError> {
        self.flags.clear();
        self.add(flags)
    }

    pub(crate) fn add(&mut self, flags: &[String]) -> Result<(), RuntimeError> {
        for flag in flags {
            if !self.contains(flag) {
                if self.flags.len() >= MAX_FLAGS {
                    return Err(RuntimeError(format!(
                        "more than {MAX_FLAGS} IMAP flags set"
                    )));
                }
                self.flags.push(flag.clone());
            }
        }
        Ok(())
    }

    pub(crate) fn remove(&mut self, flags: &[String]) {
        self.flags
            .retain(|have| !flags.iter().any(|f| f.eq_ignore_ascii_case(have)));
    }

    fn contains(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f.eq_ignore_ascii_case(flag))
    }

    pub(crate) fn as_slice(&self) -> &[String] {
        &self.flags
    }
}

/// Merges `more` into `into`, deduplicated case-insensitively, then sorted.
pub(crate) fn merge_sorted(into: &mut Vec<String>, more: &[String]) {
    for flag in more {
        if !into.iter().any(|f| f.eq_ignore_ascii_case(flag)) {
            into.push(flag.clone());
        }
    }
    into.sort();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn flag_lists_split_normalize_and_drop_invalid() {
        assert_eq!(
            parse_flag_list(&strings(&["\\seen \\FLAGGED", "$Label1", "\\Seen", "junk"])),
            strings(&["\\Seen", "\\Flagged", "$Label1", "junk"])
        );
        assert_eq!(
            parse_flag_list(&strings(&[
                "\\Recent", "\\Bogus", "bad(flag", "a\"b", "", "  "
            ])),
            Vec::<String>::new()
        );
        assert_eq!(parse_flag_list(&strings(&["$A $a"])), strings(&["$A"]));
    }

    #[test]
    fn flag_set_is_case_insensitive() {
        let mut set = FlagSet::default();
        assert!(set.add(&strings(&["\\Seen", "Junk"])).is_ok());
        assert!(set.add(&strings(&["junk", "$X"])).is_ok());
        assert_eq!(
            set.as_slice(),
            strings(&["\\Seen", "Junk", "$X"]).as_slice()
        );
        set.remove(&strings(&["JUNK", "absent"]));
        assert_eq!(set.as_slice(), strings(&["\\Seen", "$X"]).as_slice());
        assert!(set.set(&strings(&["$Y"])).is_ok());
        assert_eq!(set.as_slice(), strings(&["$Y"]).as_slice());
    }

    #[test]
    fn flag_set_is_bounded() {
        let many: Vec<String> = (0..=MAX_FLAGS).map(|i| format!("k{i}")).collect();
        let mut set = FlagSet::default();
        assert!(set.add(&many[..MAX_FLAGS]).is_ok());
        assert!(set.add(&many).is_err());
    }

    #[test]
    fn merge_sorts_and_dedupes() {
        let mut flags = strings(&["\\Seen", "b"]);
        merge_sorted(&mut flags, &strings(&["\\seen", "$a", "B"]));
        assert_eq!(flags, strings(&["$a", "\\Seen", "b"]));
    }
}
