//! Where pad bytes come from: the random-source seam of pad generation.
//!
//! [`RandomSource`] is the one thing [`crate::generate`] asks of the world.
//! [`KernelRandom`] reads the kernel RNG (`getrandom`); [`SeededRandom`] is
//! its twin for tests, a seeded sequence (predictable by design). The
//! device's platform bundle (otc-device's `Platform`, which also has the
//! clocks and the link state) has this trait as a supertrait, so the
//! device's test twin hands the same seeded bytes to pad generation.

use std::sync::Mutex;

/// The random source failed (the text says how; [`crate::Error::Rng`]
/// tells the user).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RngError(pub String);

/// A source of random bytes.
pub trait RandomSource: Send + Sync {
    /// Fill `buf` with random bytes.
    fn fill_random(&self, buf: &mut [u8]) -> Result<(), RngError>;
}

/// The kernel RNG.
#[derive(Debug, Default, Clone, Copy)]
pub struct KernelRandom;

impl RandomSource for KernelRandom {
    fn fill_random(&self, buf: &mut [u8]) -> Result<(), RngError> {
        getrandom::fill(buf).map_err(|e| RngError(e.to_string()))
    }
}

/// The test twin: SplitMix64 from a seed. Its bytes are predictable by
/// design; nothing in a device binary builds one (only tests and benches).
#[derive(Debug)]
pub struct SeededRandom {
    state: Mutex<u64>,
}

impl SeededRandom {
    /// A sequence seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        SeededRandom {
            state: Mutex::new(seed),
        }
    }
}

/// SplitMix64: a small, well-mixed sequence from a seed (test use only).
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl RandomSource for SeededRandom {
    fn fill_random(&self, buf: &mut [u8]) -> Result<(), RngError> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for chunk in buf.chunks_mut(8) {
            let word = splitmix64(&mut state).to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_twin_is_seeded_and_moves_on() {
        let (a, b, c) = (
            SeededRandom::new(1),
            SeededRandom::new(1),
            SeededRandom::new(2),
        );
        let (mut x, mut y, mut z) = ([0u8; 13], [0u8; 13], [0u8; 13]);
        a.fill_random(&mut x).unwrap();
        b.fill_random(&mut y).unwrap();
        c.fill_random(&mut z).unwrap();
        assert_eq!(x, y);
        assert_ne!(x, z);
        let mut next = [0u8; 13];
        a.fill_random(&mut next).unwrap();
        assert_ne!(x, next, "the sequence moves on");
    }
}
