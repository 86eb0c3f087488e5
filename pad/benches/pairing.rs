//! Pad-making rate next to the hardware source's raw read rate (issue 17:
//! the target is a fraction of at least 0.9).
//!
//! `/dev/urandom` stands in for the hardware RNG (in QEMU, virtio-rng's
//! `/dev/hwrng`; on a Pi, bcm2835-rng or iproc-rng200: set
//! `OTC_BENCH_HWRNG`). Each run reads the source raw in the same 64 KiB
//! steps `make_pad` uses, then makes a pad of the same size (source ⊕
//! kernel RNG, both health-tested, hashed, written and synced) in a
//! temporary store, and prints both rates and their ratio; the best of
//! three runs of each is kept. `OTC_BENCH_PAD_MIB` sets the size
//! (default 64).
//!
//!     cargo bench -p otc-device --bench pairing

use otc_pad::PadStore;
use otc_pad::pairing::{self, MAKE_CHUNK};
use std::io::Read;
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn mib_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / d.as_secs_f64()
}

fn main() {
    let hw = PathBuf::from(std::env::var("OTC_BENCH_HWRNG").unwrap_or("/dev/urandom".into()));
    let mib: u64 = std::env::var("OTC_BENCH_PAD_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64);
    let size = mib << 20;
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let mut raw = Duration::MAX;
    let mut make = Duration::MAX;
    for run in 0..3 {
        let mut f = std::fs::File::open(&hw).expect("open the source");
        let mut buf = vec![0u8; MAKE_CHUNK];
        let t = Instant::now();
        let mut done = 0u64;
        while done < size {
            let n = (size - done).min(MAKE_CHUNK as u64) as usize;
            f.read_exact(&mut buf[..n]).expect("read the source");
            done += n as u64;
        }
        raw = raw.min(t.elapsed());

        let store = PadStore::open_dir(tmp.path().join(format!("d{run}"))).expect("a store");
        let t = Instant::now();
        pairing::make_pad(&store, "bob", size, Some(&hw), &mut |_, _| true).expect("make a pad");
        make = make.min(t.elapsed());
        store.remove("bob", &mut |_, _| {}).expect("remove the pad");
    }
    let (r, m) = (mib_s(size, raw), mib_s(size, make));
    println!(
        "pairing/make_pad {mib} MiB from {}: raw read {r:.1} MiB/s, make_pad {m:.1} MiB/s \
         ({:.2} s), fraction {:.2} (target >= 0.9)",
        hw.display(),
        make.as_secs_f64(),
        m / r
    );
}
