//! A small deterministic mutation fuzzer that runs under plain `cargo test` on stable Rust.
//!
//! Each target replays its corpus (`server/fuzz/corpus/<target>/`, real protocol samples, valid
//! and malformed, plus every input that ever crashed), then runs a fixed number of mutated
//! inputs built from it with a PRNG seeded from the target's name: the same inputs on every
//! run, so a CI failure reproduces locally. Environment, for longer local runs:
//! - `MAIL_OIDC_FUZZ_ITERATIONS=N`: mutated inputs per target (default: the target's own);
//! - `MAIL_OIDC_FUZZ_SECONDS=S`: run each target for S seconds instead of a fixed count;
//! - `MAIL_OIDC_FUZZ_SEED=N`: another PRNG seed (other inputs, still reproducible).
//!
//! A panicking input is written to `target/fuzz-crashes/<target>/<hash>` and shown escaped
//! before the panic goes on; copy it into the corpus once the parser is fixed.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::split::{Rng, fnv};

/// Bytes that often flip a parser's decision.
const INTERESTING: &[u8] = b"\0\x01\r\n \t\"\\{}()[]<>+-*=,.:;@/%~\x7f\x80\xc3\xff0";

/// Mutated inputs per target in a plain `cargo test` run: a few seconds each.
const CI_ITERATIONS: u64 = 2_000;

/// Numbers at the edges of common integer types and limits.
const NUMBERS: &[&[u8]] = &[
    b"0",
    b"1",
    b"-1",
    b"255",
    b"4294967295",
    b"4294967296",
    b"9223372036854775807",
    b"18446744073709551615",
    b"99999999999999999999999",
];

/// One fuzz target: its corpus directory name, a protocol dictionary and its longest input.
pub struct Target {
    name: &'static str,
    dictionary: &'static [&'static [u8]],
    max_len: usize,
}

impl Target {
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            dictionary: &[],
            max_len: 64 * 1024,
        }
    }

    /// Protocol words the mutator inserts (command names, keys, separators).
    pub fn dictionary(mut self, words: &'static [&'static [u8]]) -> Self {
        self.dictionary = words;
        self
    }

    /// Longest generated input.
    pub fn max_len(mut self, n: usize) -> Self {
        self.max_len = n;
        self
    }

    /// Replays the corpus, then runs mutated inputs; panics (after saving the input) when
    /// `check` does. Returns how many inputs ran.
    pub fn run(self, mut check: impl FnMut(&[u8])) -> u64 {
        let corpus = load_corpus(self.name);
        assert!(
            !corpus.is_empty(),
            "fuzz target {} has no corpus in {}",
            self.name,
            corpus_dir(self.name).display()
        );
        for input in &corpus {
            self.one(input, &mut check);
        }
        let seed = env_u64("MAIL_OIDC_FUZZ_SEED").unwrap_or(0);
        let mut rng = Rng::new(fnv(self.name.as_bytes()) ^ seed);
        let deadline =
            env_u64("MAIL_OIDC_FUZZ_SECONDS").map(|s| Instant::now() + Duration::from_secs(s));
        let iterations = env_u64("MAIL_OIDC_FUZZ_ITERATIONS").unwrap_or(CI_ITERATIONS);
        let mut ran = corpus.len() as u64;
        let mut i = 0u64;
        loop {
            match deadline {
                Some(d) if Instant::now() >= d => break,
                None if i >= iterations => break,
                _ => {}
            }
            let input = self.mutate(&corpus, &mut rng);
            self.one(&input, &mut check);
            i += 1;
            ran += 1;
        }
        ran
    }

    fn one(&self, input: &[u8], check: &mut impl FnMut(&[u8])) {
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| check(input))) {
            let saved = save_crash(self.name, input);
            eprintln!(
                "fuzz target {} failed on {} bytes (saved to {}): {}",
                self.name,
                input.len(),
                saved.display(),
                String::from_utf8_lossy(&crate::log_escape::escape(
                    &input[..input.len().min(2048)]
                ))
            );
            resume_unwind(panic);
        }
    }

    /// A corpus entry with 1 to 8 stacked mutations.
    fn mutate(&self, corpus: &[Vec<u8>], rng: &mut Rng) -> Vec<u8> {
        let mut data = corpus[rng.below(corpus.len())].clone();
        for _ in 0..=rng.below(8) {
            self.mutate_once(&mut data, corpus, rng);
        }
        data.truncate(self.max_len);
        data
    }

    fn mutate_once(&self, data: &mut Vec<u8>, corpus: &[Vec<u8>], rng: &mut Rng) {
        let pos = rng.below(data.len() + 1);
        match rng.below(11) {
            0 if !data.is_empty() => {
                let i = rng.below(data.len());
                data[i] ^= 1 << rng.below(8);
            }
            1 if !data.is_empty() => {
                let i = rng.below(data.len());
                data[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            2 | 3 if !self.dictionary.is_empty() => {
                let word = self.dictionary[rng.below(self.dictionary.len())];
                insert(data, pos, word);
            }
            4 => {
                let n = 1 + rng.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                insert(data, pos, &bytes);
            }
            5 if !data.is_empty() => {
                let end = (pos + 1 + rng.below(32)).min(data.len());
                data.drain(pos.min(end)..end);
            }
            6 if !data.is_empty() => {
                let start = rng.below(data.len());
                let end = (start + 1 + rng.below(64)).min(data.len());
                let chunk = data[start..end].to_vec();
                insert(data, pos, &chunk);
            }
            7 => {
                // Splice in part of another entry (a second command, another field).
                let other = &corpus[rng.below(corpus.len())];
                if !other.is_empty() {
                    let start = rng.below(other.len());
                    let end = (start + 1 + rng.below(other.len() - start)).min(other.len());
                    insert(data, pos, &other[start..end]);
                }
            }
            8 => {
                // A long run, to reach size limits and length arithmetic.
                let byte = INTERESTING[rng.below(INTERESTING.len())] | (rng.below(2) as u8 * b'a');
                let n = [64, 1_000, 9_000, 17_000, 70_000][rng.below(5)];
                insert(data, pos, &vec![byte; n]);
            }
            9 => {
                let number = NUMBERS[rng.below(NUMBERS.len())];
                // Replace a run of digits when there is one at or after pos.
                match data[pos..].iter().position(u8::is_ascii_digit) {
                    Some(off) => {
                        let start = pos + off;
                        let len = data[start..]
                            .iter()
                            .take_while(|b| b.is_ascii_digit())
                            .count();
                        data.splice(start..start + len, number.iter().copied());
                    }
                    None => insert(data, pos, number),
                }
            }
            _ => data.truncate(pos),
        }
    }
}

fn insert(data: &mut Vec<u8>, pos: usize, bytes: &[u8]) {
    data.splice(pos..pos, bytes.iter().copied());
}

pub fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join("corpus")
        .join(target)
}

fn load_corpus(target: &str) -> Vec<Vec<u8>> {
    let Ok(entries) = std::fs::read_dir(corpus_dir(target)) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    paths.iter().filter_map(|p| std::fs::read(p).ok()).collect()
}

fn save_crash(target: &str, input: &[u8]) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("fuzz-crashes")
        .join(target);
    let path = dir.join(format!("{:016x}", fnv(input)));
    if std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(&path, input))
        .is_err()
    {
        eprintln!("could not save the crashing input to {}", path.display());
    }
    path
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzz::split::chunks;

    #[test]
    fn chunks_cover_the_input_in_order() {
        let input: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
        let joined: Vec<u8> = chunks(&input).flatten().copied().collect();
        assert_eq!(joined, input);
    }

    #[test]
    fn mutations_are_reproducible() {
        let corpus = vec![b"a LOGIN user pass\r\n".to_vec(), b"b NOOP\r\n".to_vec()];
        let target = Target::new("x").dictionary(&[b"AUTHENTICATE"]);
        let run = |seed| {
            let mut rng = Rng::new(seed);
            (0..50)
                .map(|_| target.mutate(&corpus, &mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }
}
