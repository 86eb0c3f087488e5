//! Durable seal and open rates of the pad store: 100-byte messages through
//! reserve → read → seal → erase, and check (every check up to the tag, as
//! before a prompt) → open → record → erase, formats v3 and v1, on real
//! files in a temporary directory (real fsync at every reservation block,
//! and for every opened message).
//!
//! Each also on an encrypted store (issue 18: pads ChaCha20 by offset,
//! records sealed), in the same run, for the ratio to the plain one.
//!
//! Run: `cargo bench -p otc-pad --bench store`

mod common;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use otc_pad::generate::{NewPad, create_pad};
use otc_pad::vault::{self, KdfParams};
use otc_pad::vfs::RealFs;
use otc_pad::{PadStore, StoreOptions};
use otc_proto::Format;
use std::path::Path;
use std::time::{Duration, Instant};

const PAD: u64 = 64 << 20;

/// A store on a new directory `dir`: plain, or encrypted (tiny Argon2id
/// parameters: the unlock is not what is measured).
fn open_store(dir: &Path, opts: StoreOptions, encrypted: bool) -> PadStore {
    if !encrypted {
        return PadStore::open_dir_with(dir, opts).expect("open store");
    }
    std::fs::create_dir(dir).expect("create data dir");
    let key = vault::create(&RealFs, dir, b"bench", &KdfParams::TEST).expect("key");
    PadStore::open_dir_keyed(dir, opts, Some(key)).expect("open encrypted store")
}

struct Bench {
    _dir: tempfile::TempDir,
    store: PadStore,
    format: Format,
    n: u32,
    contact: String,
}

impl Bench {
    fn new(format: Format, opts: StoreOptions, encrypted: bool) -> Bench {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open_store(&dir.path().join("data"), opts, encrypted);
        let mut b = Bench {
            _dir: dir,
            store,
            format,
            n: 0,
            contact: String::new(),
        };
        b.fresh_pad();
        b
    }

    fn fresh_pad(&mut self) {
        if !self.contact.is_empty() {
            self.store
                .remove(&self.contact, &mut |_, _| {})
                .expect("remove");
        }
        self.n += 1;
        self.contact = format!("bob{}", self.n);
        let export = self._dir.path().join(format!("export{}", self.n));
        create_pad(
            &self.store,
            &NewPad {
                contact: self.contact.clone(),
                size: PAD,
                split: None,
                format: self.format,
                source: None,
                export: export.clone(),
            },
            &mut |_, _, _| {},
        )
        .expect("create pad");
        std::fs::remove_file(export).expect("remove export");
    }
}

fn seal_rate(c: &mut Criterion) {
    let mut g = c.benchmark_group("store_durable_seal_100B");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(5));
    let msg = [0x61u8; 100];
    let cases = [
        (Format::V3, StoreOptions::default(), false, "v3"),
        (Format::V3, StoreOptions::default(), true, "v3_encrypted"),
        (Format::V1, StoreOptions::default(), false, "v1"),
        (Format::V1, StoreOptions::default(), true, "v1_encrypted"),
        // For comparison: no sequence cache, one fsync pair per message.
        (
            Format::V3,
            StoreOptions {
                reserve_block: 1,
                ..StoreOptions::default()
            },
            false,
            "v3_fsync_every_message",
        ),
    ];
    for (format, opts, encrypted, name) in cases {
        if opts.reserve_block == 1 {
            g.sample_size(10);
        }
        let mut b = Bench::new(format, opts, encrypted);
        g.bench_function(name, |bench| {
            bench.iter_custom(|iters| {
                let cost = format.pad_cost(msg.len()) as u64;
                let mut total = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let room = b.store.contact(&b.contact).expect("contact").send_left / cost;
                    if room == 0 {
                        b.fresh_pad();
                        continue;
                    }
                    let k = room.min(left);
                    let t = Instant::now();
                    for _ in 0..k {
                        let s = b.store.seal(&b.contact, &msg).expect("seal");
                        std::hint::black_box(&s.package);
                    }
                    total += t.elapsed();
                    left -= k;
                }
                total
            })
        });
    }
    g.finish();
}

/// A pad between two stores: `alice` made it, `bob` imported it.
struct Pair {
    _dir: tempfile::TempDir,
    alice: PadStore,
    bob: PadStore,
}

fn pair(format: Format, encrypted: bool) -> Pair {
    let dir = tempfile::tempdir().expect("tempdir");
    let alice = open_store(
        &dir.path().join("alice"),
        StoreOptions::default(),
        encrypted,
    );
    let bob = PadStore::open_dir(dir.path().join("bob")).expect("bob");
    common::make_and_import(&alice, &bob, dir.path(), PAD, format);
    Pair {
        _dir: dir,
        alice,
        bob,
    }
}

fn open_rate(c: &mut Criterion) {
    let mut g = c.benchmark_group("store_durable_open_100B");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(5));
    let msg = [0x62u8; 100];
    for (format, encrypted, name) in [
        (Format::V3, false, "v3"),
        (Format::V3, true, "v3_encrypted"),
        (Format::V1, false, "v1"),
        (Format::V1, true, "v1_encrypted"),
    ] {
        let mut p = pair(format, encrypted);
        g.bench_function(name, |bench| {
            bench.iter_custom(|iters| {
                let cost = format.pad_cost(msg.len()) as u64;
                let mut total = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let room = p.bob.contact("alice").expect("contact").send_left / cost;
                    if room == 0 {
                        p = pair(format, encrypted);
                        continue;
                    }
                    let k = room.min(left).min(4096);
                    let packages: Vec<Vec<u8>> = (0..k)
                        .map(|_| p.bob.seal("alice", &msg).expect("seal").package)
                        .collect();
                    let t = Instant::now();
                    for package in &packages {
                        p.alice.check_open("bob", package).expect("check");
                        let o = p.alice.open("bob", package).expect("open");
                        std::hint::black_box(&o.message);
                    }
                    total += t.elapsed();
                    left -= k;
                }
                total
            })
        });
    }
    g.finish();
}

/// Making a pad (kernel RNG, health tests, hash, write, sync, export) of
/// 1 GiB, plain and encrypted: 10 samples each (the minimum criterion
/// takes), so about 20 GiB are written. Set OTC_BENCH_MAKE_MIB to make
/// smaller pads.
fn make_rate(c: &mut Criterion) {
    let mib: u64 = std::env::var("OTC_BENCH_MAKE_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1024);
    let size = mib << 20;
    let mut g = c.benchmark_group(format!("make_pad_{mib}MiB"));
    g.sample_size(10);
    g.throughput(Throughput::Bytes(size));
    for (encrypted, name) in [(false, "plain"), (true, "encrypted")] {
        g.bench_function(name, |bench| {
            bench.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for i in 0..iters {
                    let dir = tempfile::tempdir().expect("tempdir");
                    let store =
                        open_store(&dir.path().join("data"), StoreOptions::default(), encrypted);
                    let export = dir.path().join(format!("export{i}"));
                    let t = Instant::now();
                    create_pad(
                        &store,
                        &NewPad {
                            contact: "bob".into(),
                            size,
                            split: None,
                            format: Format::V3,
                            source: None,
                            export,
                        },
                        &mut |_, _, _| {},
                    )
                    .expect("create pad");
                    total += t.elapsed();
                }
                total
            })
        });
    }
    g.finish();
}

criterion_group!(benches, seal_rate, open_rate, make_rate);
criterion_main!(benches);
