//! Durable seal rate of the pad store: 100-byte messages through
//! reserve → read → seal → erase, formats v2 and v1, on a real file in a
//! temporary directory (real fsync at every reservation block).
//!
//! Run: `cargo bench -p otc-device --bench store`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use otc_device::pad::generate::{NewPad, create_pad};
use otc_device::pad::{PadStore, StoreOptions};
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
        (Format::V2, StoreOptions::default(), "v2"),
        (Format::V1, StoreOptions::default(), "v1"),
        // For comparison: no sequence cache, one fsync pair per message.
        (
            Format::V2,
            StoreOptions { reserve_block: 1 },
            "v2_fsync_every_message",
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

criterion_group!(benches, seal_rate);
criterion_main!(benches);
