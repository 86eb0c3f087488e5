//! How long opening the audit log takes at start, for 10k and 200k
//! entries: the chain is checked in a stream, so the time grows with the
//! log's length (hashing every entry) while memory stays flat (see
//! `audit::scan`). The log files are written once, outside the timing.
//!
//! Run: `cargo bench -p otc-device --bench audit`

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use otc_device::audit::{AuditLog, Event};

fn log_of(entries: u64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, _) =
        AuditLog::open_with_clock(dir.path(), Box::new(|| 1_700_000_000)).expect("open log");
    for i in 0..entries {
        log.append(Event::Sealed {
            contact: "bob".into(),
            index: i * 132,
            bytes: 100,
            cost: 132,
        })
        .expect("append");
    }
    dir
}

fn open(c: &mut Criterion) {
    let mut g = c.benchmark_group("audit_open");
    g.sample_size(10);
    for n in [10_000u64, 200_000] {
        let dir = log_of(n);
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, n| {
            b.iter(|| {
                let s = otc_device::audit::scan(dir.path()).expect("scan");
                assert_eq!(s.count, *n);
                assert!(s.problems.is_empty());
            })
        });
    }
    g.finish();
}

criterion_group!(benches, open);
criterion_main!(benches);
