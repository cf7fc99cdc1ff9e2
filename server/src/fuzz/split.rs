//! Deterministic helpers both fuzz drivers share: the input split into chunks (a saved input
//! reproduces the same split under `cargo test` and cargo-fuzz) and the PRNG behind it.

/// Chunk sizes for feeding `input` in pieces, derived from the input alone (so a saved input
/// reproduces the same split): exercises every "need more bytes" path.
pub fn chunks(input: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rng = Rng::new(fnv(input));
    let mut rest = input;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let n = match rng.below(4) {
            0 => rest.len(),
            1 => 1,
            _ => 1 + rng.below(64),
        }
        .min(rest.len());
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Some(head)
    })
}

/// FNV-1a: a stable hash for seeds and file names.
pub fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// SplitMix64: tiny, fast and the same on every platform.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}
