//! Pad-making rate next to the hardware source's raw read rate (issue 17:
//! the target is a fraction of at least 0.9), and where the time goes.
//!
//! `/dev/urandom` stands in for the hardware RNG (in QEMU, virtio-rng's
//! `/dev/hwrng`; on a Pi, bcm2835-rng or iproc-rng200: set
//! `OTC_BENCH_HWRNG`). Each run reads the source raw in the same 64 KiB
//! steps `make_pad` uses, then makes a pad of the same size (source ⊕
//! kernel RNG, both health-tested, hashed, written and synced) in a
//! temporary store; the medians of `OTC_BENCH_RUNS` (default 5) runs of
//! each and their ratio are printed. `OTC_BENCH_PAD_MIB` sets the size
//! (default 64).
//!
//! Then the cost of each stage of `make_pad` alone, on one thread, over
//! the same size (the breakdown that says where the time goes): reading
//! the source, the kernel RNG, the health tests, the XOR, SHA-256, and
//! writing + fsync of the pad file. `make_pad` runs the two reads (each
//! with its health tests) on threads of their own and the rest on a third,
//! so on an idle machine with enough cores its time is about the slowest
//! of those three; with a source as fast as the CPU (`/dev/urandom`) the
//! kernel RNG costs as much as the source itself and the fraction is
//! bounded by the cores, not by the code. Figures are printed, never
//! asserted.
//!
//!     cargo bench -p otc-pad --bench pairing

use otc_pad::PadStore;
use otc_pad::health::HealthTests;
use otc_pad::pairing::{self, MAKE_CHUNK};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn mib_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / d.as_secs_f64()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Reads `size` bytes of `hw` in [`MAKE_CHUNK`] steps into `out` (or one
/// reused buffer).
fn read_raw(hw: &Path, size: u64, mut out: Option<&mut Vec<u8>>) -> Duration {
    let mut f = std::fs::File::open(hw).expect("open the source");
    let mut buf = vec![0u8; MAKE_CHUNK];
    let t = Instant::now();
    let mut done = 0u64;
    while done < size {
        let n = (size - done).min(MAKE_CHUNK as u64) as usize;
        f.read_exact(&mut buf[..n]).expect("read the source");
        if let Some(o) = out.as_deref_mut() {
            o.extend_from_slice(&buf[..n]);
        }
        done += n as u64;
    }
    t.elapsed()
}

fn timed(f: impl FnOnce()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

fn main() {
    let hw = PathBuf::from(std::env::var("OTC_BENCH_HWRNG").unwrap_or("/dev/urandom".into()));
    let mib: u64 = std::env::var("OTC_BENCH_PAD_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64);
    let runs: usize = std::env::var("OTC_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5)
        .max(1);
    let size = mib << 20;
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let mut raw = Vec::new();
    let mut make = Vec::new();
    for run in 0..runs {
        raw.push(read_raw(&hw, size, None));
        let store = PadStore::open_dir(tmp.path().join(format!("d{run}"))).expect("a store");
        make.push(timed(|| {
            pairing::make_pad(&store, "bob", size, Some(&hw), &mut |_, _| true)
                .expect("make a pad");
        }));
        store.remove("bob", &mut |_, _| {}).expect("remove the pad");
    }
    let (raw, make) = (median(raw), median(make));
    let (r, m) = (mib_s(size, raw), mib_s(size, make));
    println!(
        "pairing/make_pad {mib} MiB from {}, median of {runs}: raw read {r:.1} MiB/s \
         ({:.3} s), make_pad {m:.1} MiB/s ({:.3} s), fraction {:.2} (target >= 0.9)",
        hw.display(),
        raw.as_secs_f64(),
        make.as_secs_f64(),
        m / r
    );

    // Where the time goes: each stage alone, one thread.
    let mut src = Vec::with_capacity(size as usize);
    let read = read_raw(&hw, size, Some(&mut src));
    let mut kern = vec![0u8; size as usize];
    let rng = timed(|| {
        for c in kern.chunks_mut(MAKE_CHUNK) {
            getrandom::fill(c).expect("kernel RNG");
        }
    });
    let health = timed(|| {
        let mut t = HealthTests::default();
        for c in src.chunks(MAKE_CHUNK) {
            t.feed(c).expect("healthy");
        }
    });
    let xor = timed(|| {
        for (k, s) in kern.chunks_mut(MAKE_CHUNK).zip(src.chunks(MAKE_CHUNK)) {
            for (a, b) in k.iter_mut().zip(s) {
                *a ^= b;
            }
        }
    });
    let sha = timed(|| {
        let mut h = Sha256::new();
        for c in kern.chunks(MAKE_CHUNK) {
            h.update(c);
        }
        std::hint::black_box(h.finalize());
    });
    let path = tmp.path().join("write-test");
    let write = timed(|| {
        let mut f = std::fs::File::create(&path).expect("create");
        for c in kern.chunks(MAKE_CHUNK) {
            f.write_all(c).expect("write");
        }
        f.sync_all().expect("fsync");
    });
    println!("stages alone over {mib} MiB, one thread (s, MiB/s):");
    for (name, d) in [
        ("read the source", read),
        ("kernel RNG (getrandom)", rng),
        ("health tests (one stream)", health),
        ("XOR", xor),
        ("SHA-256", sha),
        ("write + fsync", write),
    ] {
        println!(
            "  {name:<26} {:>8.3} s {:>8.0} MiB/s",
            d.as_secs_f64(),
            mib_s(size, d)
        );
    }
}
