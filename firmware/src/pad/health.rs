//! SP 800-90B continuous health tests on byte samples.
//!
//! Two tests from NIST SP 800-90B section 4.4 run over every byte of a raw
//! entropy stream (the `--source` device, and the kernel RNG output too,
//! which costs little):
//!
//! * **Repetition count test** (4.4.1): fails when one byte value repeats
//!   `C` times in a row, with `C = 1 + ceil(-log2(alpha) / H)`.
//! * **Adaptive proportion test** (4.4.2): in consecutive windows of
//!   `W = 512` bytes, the first byte of the window is the reference; the test
//!   fails when the reference occurs `C` or more times in the window, with
//!   `C = 1 + CRITBINOM(W, 2^-H, 1 - alpha)`, i.e. the smallest count whose
//!   upper tail under a binomial(W, 2^-H) is at most alpha. We compute that
//!   critical value in code ([`apt_cutoff`]); the same code reproduces
//!   SP 800-90B's Table 2, which is for alpha = 2^-20 (e.g. 62 for H = 4),
//!   and gives 78 for our alpha = 2^-40 and H = 4.
//!
//! Both use the false-positive rate alpha = 2^-40.
//!
//! **Claimed entropy.** We claim a conservative `H = 4` bits per byte for
//! the raw source ([`CLAIMED_ENTROPY_BITS_PER_BYTE`]). A hardware RNG such
//! as the Raspberry Pi's bcm2835 delivers close to 8; claiming half of that
//! keeps false alarms at the alpha rate for any healthy source while still
//! catching the failures these tests exist for (stuck output, a source that
//! collapsed to a few values). With H = 4 the cutoffs are RCT C = 11 and
//! APT C = 78 (of 512). These tests only detect gross failure; the pad's
//! secrecy rests on XOR with the kernel RNG, which is never weaker than the
//! better of the two inputs.

/// Claimed min-entropy of one raw byte sample, in bits.
pub const CLAIMED_ENTROPY_BITS_PER_BYTE: f64 = 4.0;
/// False-positive probability per test: alpha = 2^-ALPHA_EXP.
pub const ALPHA_EXP: i32 = 40;
/// Adaptive proportion window for non-binary (byte) samples.
pub const APT_WINDOW: usize = 512;

/// Repetition count cutoff `1 + ceil(-log2(alpha) / H)`.
pub fn rct_cutoff(h: f64) -> u32 {
    1 + (f64::from(ALPHA_EXP) / h).ceil() as u32
}

/// Adaptive proportion cutoff `1 + CRITBINOM(W, 2^-H, 1 - alpha)`: the
/// smallest count `c` such that P[X >= c] <= alpha for X ~ Binomial(W, 2^-H).
pub fn apt_cutoff(window: usize, h: f64) -> u32 {
    apt_cutoff_alpha(window, h, ALPHA_EXP)
}

/// [`apt_cutoff`] for alpha = 2^-`alpha_exp`.
pub fn apt_cutoff_alpha(window: usize, h: f64, alpha_exp: i32) -> u32 {
    let p = (-h).exp2();
    let alpha = f64::from(-alpha_exp).exp2();
    let n = window;
    // pmf(k) computed in log space, then the tail summed from the top.
    let ln_p = p.ln();
    let ln_q = (1.0 - p).ln();
    let mut ln_pmf = vec![0.0f64; n + 1];
    ln_pmf[0] = n as f64 * ln_q;
    for k in 0..n {
        ln_pmf[k + 1] = ln_pmf[k] + ((n - k) as f64).ln() - ((k + 1) as f64).ln() + ln_p - ln_q;
    }
    // tail(c) = P[X >= c]; find smallest c with tail(c) <= alpha.
    let mut tail = 0.0f64;
    let mut cutoff = n + 1;
    for c in (0..=n).rev() {
        tail += ln_pmf[c].exp();
        if tail > alpha {
            break;
        }
        cutoff = c;
    }
    cutoff as u32
}

/// Which test failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthFailure {
    RepetitionCount,
    AdaptiveProportion,
}

impl HealthFailure {
    /// Name for messages.
    pub fn name(self) -> &'static str {
        match self {
            HealthFailure::RepetitionCount => "repetition count",
            HealthFailure::AdaptiveProportion => "adaptive proportion",
        }
    }
}

/// Continuous health tests over a byte stream, fed in chunks of any size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthTests {
    rct_cutoff: u32,
    apt_cutoff: u32,
    // repetition count state
    last: Option<u8>,
    run: u32,
    // adaptive proportion state
    apt_ref: u8,
    apt_seen: usize,
    apt_count: u32,
    // bytes processed
    position: u64,
}

impl Default for HealthTests {
    fn default() -> Self {
        Self::new(CLAIMED_ENTROPY_BITS_PER_BYTE)
    }
}

impl HealthTests {
    /// Tests for a source with claimed min-entropy `h` bits per byte.
    pub fn new(h: f64) -> Self {
        HealthTests {
            rct_cutoff: rct_cutoff(h),
            apt_cutoff: apt_cutoff(APT_WINDOW, h),
            last: None,
            run: 0,
            apt_ref: 0,
            apt_seen: 0,
            apt_count: 0,
            position: 0,
        }
    }

    /// Bytes tested so far (on failure: the position of the failing byte).
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Feed bytes; stops at the first failure.
    ///
    /// The stream is taken in blocks that end where an adaptive proportion
    /// window ends (512 bytes, fewer at the ends of `bytes`). A block is
    /// first judged whole, with counts that compile to vector code: the
    /// reference byte's count in the window, and the number of neighbours
    /// equal to the byte before them. When those counts show that neither
    /// test can fail anywhere in the block, which is the case for any
    /// healthy source but about once in tens of thousands of blocks, the
    /// state simply moves to the block's end. Otherwise the block is tested
    /// byte by byte ([`feed_bytewise`](Self::feed_bytewise)), which finds
    /// the failing byte and its position exactly as a byte-at-a-time test
    /// does. Either way the state after the block is the same.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), HealthFailure> {
        let mut rest = bytes;
        while !rest.is_empty() {
            let n = (APT_WINDOW - self.apt_seen).min(rest.len());
            let (block, tail) = rest.split_at(n);
            if !self.pass_block(block) {
                self.feed_bytewise(block)?;
            }
            rest = tail;
        }
        Ok(())
    }

    /// Move the state past `block` (at most the rest of one adaptive
    /// proportion window, not empty) if neither test can fail in it, and
    /// say so; else leave the state as it is and return false.
    fn pass_block(&mut self, block: &[u8]) -> bool {
        let (Some(&first), Some(&last)) = (block.first(), block.last()) else {
            return true;
        };
        // Adaptive proportion: the count only grows within a window, so it
        // reaches the cutoff somewhere in the block if and only if it has
        // reached it at the block's end.
        let (apt_ref, apt_count) = if self.apt_seen == 0 {
            (first, count_of(block, first))
        } else {
            (self.apt_ref, self.apt_count + count_of(block, self.apt_ref))
        };
        if apt_count >= self.apt_cutoff {
            return false;
        }
        // Repetition count: a run of length L ending in the block has L - 1
        // neighbours equal to the byte before them; those in the block
        // (the first byte's neighbour being the last byte fed before) are
        // at most `pairs`, and a run coming in from before brings at most
        // `run - 1` more. So no run in the block reaches run + pairs + 1
        // (pairs + 1 when nothing came before).
        let carried = u32::from(self.last == Some(first));
        let pairs = carried + equal_neighbours(block);
        if self.run.max(1).saturating_add(pairs) >= self.rct_cutoff {
            return false;
        }
        // Nothing can fail: the state at the block's end.
        let trailing = block.iter().rev().take_while(|&&b| b == last).count() as u32;
        self.run = if trailing as usize == block.len() && self.last == Some(last) {
            self.run + trailing
        } else {
            trailing
        };
        self.last = Some(last);
        self.apt_ref = apt_ref;
        self.apt_count = apt_count;
        self.apt_seen = (self.apt_seen + block.len()) % APT_WINDOW;
        self.position += block.len() as u64;
        true
    }

    /// The tests one byte at a time, as SP 800-90B states them; stops at the
    /// first failure, with [`position`](Self::position) at the failing byte.
    fn feed_bytewise(&mut self, bytes: &[u8]) -> Result<(), HealthFailure> {
        for &b in bytes {
            self.position += 1;
            // Repetition count test.
            if self.last == Some(b) {
                self.run += 1;
                if self.run >= self.rct_cutoff {
                    return Err(HealthFailure::RepetitionCount);
                }
            } else {
                self.last = Some(b);
                self.run = 1;
            }
            // Adaptive proportion test.
            if self.apt_seen == 0 {
                self.apt_ref = b;
                self.apt_count = 1;
            } else if b == self.apt_ref {
                self.apt_count += 1;
                if self.apt_count >= self.apt_cutoff {
                    return Err(HealthFailure::AdaptiveProportion);
                }
            }
            self.apt_seen += 1;
            if self.apt_seen == APT_WINDOW {
                self.apt_seen = 0;
            }
        }
        Ok(())
    }
}

/// How many bytes of `block` are `value` (counted in byte-wide lanes, 255
/// bytes at a time, so that the loop compiles to vector code).
fn count_of(block: &[u8], value: u8) -> u32 {
    block
        .chunks(255)
        .map(|c| u32::from(c.iter().fold(0u8, |n, &b| n + u8::from(b == value))))
        .sum()
}

/// How many bytes of `block` equal the byte before them in it.
fn equal_neighbours(block: &[u8]) -> u32 {
    let (Some(head), Some(tail)) = (
        block.len().checked_sub(1).map(|n| &block[..n]),
        block.get(1..),
    ) else {
        return 0;
    };
    head.chunks(255)
        .zip(tail.chunks(255))
        .map(|(a, b)| u32::from(a.iter().zip(b).fold(0u8, |n, (x, y)| n + u8::from(x == y))))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cutoffs_match_sp800_90b_table_2() {
        // SP 800-90B Table 2 (W = 512, non-binary) is computed for
        // alpha = 2^-20; the same code must reproduce it.
        assert_eq!(apt_cutoff_alpha(512, 0.5, 20), 410);
        assert_eq!(apt_cutoff_alpha(512, 1.0, 20), 311);
        assert_eq!(apt_cutoff_alpha(512, 2.0, 20), 177);
        assert_eq!(apt_cutoff_alpha(512, 4.0, 20), 62);
        assert_eq!(apt_cutoff_alpha(512, 8.0, 20), 13);
        // Ours: alpha = 2^-40, H = 4.
        assert_eq!(apt_cutoff(512, 4.0), 78);
        assert_eq!(rct_cutoff(4.0), 11);
        assert_eq!(rct_cutoff(8.0), 6);
        assert_eq!(rct_cutoff(1.0), 41);
    }

    #[test]
    fn stuck_source_fails_rct() {
        let mut t = HealthTests::default();
        assert_eq!(t.feed(&[0u8; 100]), Err(HealthFailure::RepetitionCount));
        assert_eq!(t.position(), 11);
    }

    #[test]
    fn biased_source_fails_apt() {
        // 7 in every other byte: no long runs, but 7 dominates each window.
        let mut t = HealthTests::default();
        let data: Vec<u8> = (0..4096u32)
            .map(|i| if i % 2 == 0 { 7 } else { (i % 251) as u8 })
            .collect();
        assert_eq!(t.feed(&data), Err(HealthFailure::AdaptiveProportion));
    }

    #[test]
    fn counter_passes_and_random_passes() {
        let mut t = HealthTests::default();
        let data: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        assert_eq!(t.feed(&data), Ok(()));
        let mut t = HealthTests::default();
        let mut buf = vec![0u8; 1 << 20];
        getrandom::fill(&mut buf).unwrap();
        assert_eq!(t.feed(&buf), Ok(()));
    }

    /// A small deterministic generator for the agreement test.
    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    /// Streams a source might give, good and failing: uniform bytes, few
    /// distinct values, runs around the cutoff, one value dominating.
    fn streams() -> Vec<Vec<u8>> {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut out = Vec::new();
        for kind in 0..6u64 {
            for len in [1usize, 2, 511, 512, 513, 1500, 20_000] {
                let mut v = Vec::with_capacity(len);
                while v.len() < len {
                    let r = xorshift(&mut seed);
                    match kind {
                        0 => v.push(r as u8),
                        1 => v.push((r % 3) as u8),
                        2 => {
                            let run = 1 + (r >> 8) as usize % 12;
                            v.extend(std::iter::repeat_n((r & 0xff) as u8, run));
                        }
                        3 => v.push(if r % 7 < 1 { 42 } else { (r >> 8) as u8 }),
                        4 => v.push(if r % 8 < 1 { 9 } else { (r >> 8) as u8 % 16 }),
                        _ => {
                            let run = 1 + (r >> 8) as usize % 6;
                            v.extend(std::iter::repeat_n((r % 2) as u8, run));
                        }
                    }
                }
                v.truncate(len);
                out.push(v);
            }
        }
        out
    }

    /// Whole blocks judged at once end in the very state, failure and
    /// position of the tests taken one byte at a time, at any cutoff and
    /// however the stream is cut.
    #[test]
    fn the_block_path_agrees_with_the_bytewise_tests() {
        let mut seed = 7u64;
        let mut failures = [0usize; 2];
        for h in [1.0, 2.0, 4.0, 8.0] {
            for data in streams() {
                let mut fast = HealthTests::new(h);
                let mut slow = HealthTests::new(h);
                let mut rest = &data[..];
                while !rest.is_empty() {
                    let n = 1 + (xorshift(&mut seed) as usize % 1100).min(rest.len() - 1);
                    let (now, later) = rest.split_at(n);
                    let (a, b) = (fast.feed(now), slow.feed_bytewise(now));
                    assert_eq!(a, b, "h {h}");
                    assert_eq!(fast, slow, "h {h}");
                    if let Err(f) = a {
                        failures[f as usize] += 1;
                        break;
                    }
                    rest = later;
                }
            }
        }
        assert!(failures[0] > 0 && failures[1] > 0, "{failures:?}");
    }

    #[test]
    fn chunking_does_not_matter() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 13) as u8).collect();
        let mut a = HealthTests::default();
        let ra = a.feed(&data);
        let mut b = HealthTests::default();
        let mut rb = Ok(());
        for c in data.chunks(37) {
            rb = b.feed(c);
            if rb.is_err() {
                break;
            }
        }
        assert_eq!(ra, rb);
        assert_eq!(a.position(), b.position());
    }
}
