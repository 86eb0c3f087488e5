//! How long an unlock takes (Argon2id with the device's parameters,
//! `KdfParams::DEFAULT`): makes a key file in a temporary directory, then
//! unlocks it `N` times (default 5; first argument) and prints each time
//! and the median. Run on the host and under `qemu-aarch64-static` (see
//! pad/README.md, "Encryption at rest: figures").

use otc_pad::vault::{self, KdfParams};
use otc_pad::vfs::RealFs;
use std::time::Instant;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5);
    let base = std::env::temp_dir().join(format!("otc-unlock-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir(&base) {
        eprintln!("cannot create {}: {e}", base.display());
        std::process::exit(1);
    }
    let p = KdfParams::DEFAULT;
    let pass = b"violin orbit carpet lemon glacier";
    let res = vault::create(&RealFs, &base, pass, &p).map(|_| ());
    let mut times = Vec::new();
    let res = res.and_then(|()| {
        for _ in 0..n.max(1) {
            let t = Instant::now();
            vault::unlock(&RealFs, &base, pass, vault::DEFAULT_MAX_FAILURES)?;
            let s = t.elapsed().as_secs_f64();
            println!("unlock: {s:.3} s");
            times.push(s);
        }
        Ok(())
    });
    let _ = vault::wipe(&RealFs, &base);
    let _ = std::fs::remove_dir(&base);
    if let Err(e) = res {
        eprintln!("unlock failed: {e}");
        std::process::exit(1);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "Argon2id m={} KiB t={} p={}: median unlock {:.3} s over {} runs",
        p.m_kib,
        p.t,
        p.p,
        times[times.len() / 2],
        times.len()
    );
}
