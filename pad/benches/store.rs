//! Durable seal and open rates of the pad store: 100-byte messages through
//! reserve → read → seal → erase, and check (every check up to the tag, as
//! before a prompt) → open → record → erase, formats v3 and v1, on real
//! files in a temporary directory (real fsync at every reservation block,
//! and for every opened message).
//!
//! Run: `cargo bench -p otc-pad --bench store`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use otc_pad::generate::{NewPad, create_pad};
use otc_pad::{PadStore, StoreOptions};
use otc_proto::Format;
use std::time::{Duration, Instant};

const PAD: u64 = 64 << 20;

struct Bench {
    _dir: tempfile::TempDir,
    store: PadStore,
    format: Format,
    n: u32,
    contact: String,
}

impl Bench {
    fn new(format: Format, opts: StoreOptions) -> Bench {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = PadStore::open_dir_with(dir.path().join("data"), opts).expect("open store");
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
        (Format::V3, StoreOptions::default(), "v3"),
        (Format::V1, StoreOptions::default(), "v1"),
        // For comparison: no sequence cache, one fsync pair per message.
        (
            Format::V3,
            StoreOptions { reserve_block: 1 },
            "v3_fsync_every_message",
        ),
    ];
    for (format, opts, name) in cases {
        if opts.reserve_block == 1 {
            g.sample_size(10);
        }
        let mut b = Bench::new(format, opts);
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

fn pair(format: Format) -> Pair {
    let dir = tempfile::tempdir().expect("tempdir");
    let alice = PadStore::open_dir(dir.path().join("alice")).expect("alice");
    let bob = PadStore::open_dir(dir.path().join("bob")).expect("bob");
    let export = dir.path().join("export");
    create_pad(
        &alice,
        &NewPad {
            contact: "bob".into(),
            size: PAD,
            split: None,
            format,
            source: None,
            export: export.clone(),
        },
        &mut |_, _, _| {},
    )
    .expect("create pad");
    otc_pad::export::import(&bob, &export, "alice", &mut |_, _| {}).expect("import");
    std::fs::remove_file(export).expect("remove export");
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
    for (format, name) in [(Format::V3, "v3"), (Format::V1, "v1")] {
        let mut p = pair(format);
        g.bench_function(name, |bench| {
            bench.iter_custom(|iters| {
                let cost = format.pad_cost(msg.len()) as u64;
                let mut total = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let room = p.bob.contact("alice").expect("contact").send_left / cost;
                    if room == 0 {
                        p = pair(format);
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

criterion_group!(benches, seal_rate, open_rate);
criterion_main!(benches);
