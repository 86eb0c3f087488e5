//! Throughput of the SP 800-90B health tests (`pad::health`) over 64 MiB of
//! kernel RNG output fed in 1 MiB chunks, as `pad new` feeds them, next to
//! reading those bytes from the RNG itself. Prints MiB/s (median of 5
//! passes); timing is reported, never asserted.
//!
//! Run: `cargo bench -p otc-device --bench health`

use otc_device::pad::health::HealthTests;
use std::time::{Duration, Instant};

const TOTAL: usize = 64 << 20;
const CHUNK: usize = 1 << 20;
const PASSES: usize = 5;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn mib_per_s(d: Duration) -> f64 {
    (TOTAL as f64 / f64::from(1u32 << 20)) / d.as_secs_f64()
}

fn main() {
    let mut data = vec![0u8; TOTAL];
    let rng: Vec<Duration> = (0..PASSES)
        .map(|_| {
            let t = Instant::now();
            for c in data.chunks_mut(CHUNK) {
                getrandom::fill(c).expect("kernel RNG");
            }
            t.elapsed()
        })
        .collect();
    let health: Vec<Duration> = (0..PASSES)
        .map(|_| {
            let mut tests = HealthTests::default();
            let t = Instant::now();
            for c in data.chunks(CHUNK) {
                tests.feed(c).expect("random bytes pass the health tests");
            }
            let took = t.elapsed();
            assert_eq!(tests.position(), TOTAL as u64);
            took
        })
        .collect();
    let (rng, health) = (median(rng), median(health));
    println!();
    println!("health tests: 64 MiB of kernel RNG output in 1 MiB chunks, median of {PASSES}");
    println!(
        "{:<28} {:>10.3} s {:>10.0} MiB/s",
        "kernel RNG read",
        rng.as_secs_f64(),
        mib_per_s(rng)
    );
    println!(
        "{:<28} {:>10.3} s {:>10.0} MiB/s",
        "health tests (RCT + APT)",
        health.as_secs_f64(),
        mib_per_s(health)
    );
    println!(
        "health tests / RNG read: {:.2}",
        health.as_secs_f64() / rng.as_secs_f64()
    );
}
