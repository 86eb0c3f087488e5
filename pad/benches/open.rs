//! Durable opens per second and syncs per open (issue 16): the receipt
//! journal (the default) next to the record path every open took before
//! (`StoreOptions::journal_slots = 0`: record fsync, rename, directory
//! fsync, erase fdatasync), and next to one bare fdatasync of a 512-byte
//! in-place write, the floor of anything durable. Format v3, 100-byte
//! messages, plain store, real files in a temporary directory under
//! `TMPDIR` (on this machine's disk, not tmpfs: say so when quoting).
//!
//! Rounds alternate the three so a noisy neighbour hits all of them; the
//! report gives each one's median over the rounds and the ratios measured
//! in the same run. Syncs are counted through the storage seam's recorder
//! (`vfs::Recorder` over `RealFs`) on the same opens that are timed.
//!
//! Run: `cargo bench -p otc-pad --bench open` (OTC_BENCH_ROUNDS,
//! OTC_BENCH_OPENS to change the 9 rounds of 400 opens).

mod common;

use otc_pad::vfs::{Op, RealFs, Recorder};
use otc_pad::{PadStore, StoreOptions};
use otc_proto::Format;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::Instant;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Bob seals, alice opens through a recorder.
struct Pair {
    _dir: tempfile::TempDir,
    rec: Recorder<RealFs>,
    alice: PadStore,
    bob: PadStore,
}

fn pair(journal_slots: u64) -> Pair {
    let dir = tempfile::tempdir().expect("tempdir");
    let rec = Recorder::new(RealFs);
    let adir = dir.path().join("alice");
    std::fs::create_dir(&adir).expect("alice dir");
    let opts = StoreOptions {
        journal_slots,
        ..StoreOptions::default()
    };
    let alice = PadStore::open_with_vfs(Arc::new(rec.clone()), adir, opts).expect("alice");
    let bob = PadStore::open_dir(dir.path().join("bob")).expect("bob");
    common::make_and_import(&alice, &bob, dir.path(), 16 << 20, Format::V3);
    Pair {
        _dir: dir,
        rec,
        alice,
        bob,
    }
}

/// `n` opens: (opens per second, syncs per open).
fn opens(p: &Pair, n: usize) -> (f64, f64) {
    let msg = [0x62u8; 100];
    let packages: Vec<Vec<u8>> = (0..n)
        .map(|_| p.bob.seal("alice", &msg).expect("seal").package)
        .collect();
    p.rec.take();
    let t = Instant::now();
    for package in &packages {
        let o = p.alice.open("bob", package).expect("open");
        std::hint::black_box(&o.message);
    }
    let secs = t.elapsed().as_secs_f64();
    let syncs = p
        .rec
        .take()
        .iter()
        .filter(|op| matches!(op, Op::SyncData(_) | Op::SyncAll(_) | Op::SyncDir(_)))
        .count();
    (n as f64 / secs, syncs as f64 / n as f64)
}

/// `n` in-place 512-byte writes, each fdatasync'ed: per second.
fn fdatasyncs(file: &std::fs::File, n: usize) -> f64 {
    let t = Instant::now();
    for i in 0..n {
        file.write_all_at(&[i as u8; 512], (i % 64) as u64 * 512)
            .expect("write");
        file.sync_data().expect("fdatasync");
    }
    n as f64 / t.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    // Criterion's harness flags (`--bench`) are not ours: ignored.
    let rounds = env("OTC_BENCH_ROUNDS", 9).max(1);
    let n = env("OTC_BENCH_OPENS", 400).max(1);
    let journal = pair(otc_pad::journal::DEFAULT_SLOTS);
    let record = pair(0);
    let floor_dir = tempfile::tempdir().expect("tempdir");
    let floor_file = std::fs::File::create(floor_dir.path().join("floor")).expect("floor file");
    floor_file.write_all_at(&[0u8; 64 * 512], 0).expect("floor");
    floor_file.sync_all().expect("floor sync");
    // Warm up: the journal file is made at the first open.
    opens(&journal, 8);
    opens(&record, 8);
    let (mut j, mut r, mut f, mut js, mut rs) = (vec![], vec![], vec![], vec![], vec![]);
    for round in 0..rounds {
        let (rate, syncs) = opens(&journal, n);
        j.push(rate);
        js.push(syncs);
        let (rate, syncs) = opens(&record, n);
        r.push(rate);
        rs.push(syncs);
        f.push(fdatasyncs(&floor_file, n));
        eprint!("\rround {}/{rounds}", round + 1);
        std::io::stderr().flush().ok();
    }
    eprintln!();
    let (j, r, f) = (median(j), median(r), median(f));
    let (js, rs) = (median(js), median(rs));
    println!("durable opens, v3, 100-byte messages, {rounds} rounds of {n} (medians):");
    println!("  receipt journal (now)      {j:>8.0} opens/s   {js:.3} syncs per open");
    println!("  record path (before)       {r:>8.0} opens/s   {rs:.3} syncs per open");
    println!("  bare fdatasync (floor)     {f:>8.0} syncs/s");
    println!(
        "  journal / record path: {:.2}x   journal / floor: {:.2}   target: 1 sync per open",
        j / r,
        j / f
    );
}
