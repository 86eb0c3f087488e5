//! The audit log at start, for 10k and 200k entries:
//!
//! * `audit_start`: what `device::start` waits for
//!   (`AuditLog::open_quick`: the head and the newest entry), flat in the
//!   log's length;
//! * `audit_check`: the full chain check in a stream (`audit::scan`), which
//!   the device runs on a thread after start: time grows with the log
//!   (hashing every entry), memory stays flat.
//!
//! The log files are written once, outside the timing.
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
    let logs: Vec<(u64, tempfile::TempDir)> = [10_000u64, 200_000].map(|n| (n, log_of(n))).into();
    let mut g = c.benchmark_group("audit_start");
    for (n, dir) in &logs {
        g.bench_with_input(BenchmarkId::from_parameter(n), n, |b, n| {
            b.iter(|| {
                let (log, _) = AuditLog::open_quick(dir.path()).expect("open");
                assert_eq!(log.len(), *n);
            })
        });
    }
    g.finish();
    let mut g = c.benchmark_group("audit_check");
    g.sample_size(10);
    for (n, dir) in &logs {
        g.bench_with_input(BenchmarkId::from_parameter(n), n, |b, n| {
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
