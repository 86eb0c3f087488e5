//! The relay load run as a report: the same run as `tests/load.rs` (16
//! senders, 16 long-polling receivers, a SIGKILL and restart half way; all
//! its correctness checks), printing messages per second and p50/p99 send
//! latency, once with group commit (the relay as shipped) and once with
//! every send synced on its own (`--no-group-commit`), and the gain.
//! Timing is reported, never asserted.
//!
//! Run: `cargo bench -p otc-relay --bench load` (env `OTC_LOAD_SECONDS`:
//! sending time per half, default 5).

#[path = "../tests/common/load.rs"]
mod load;

use std::time::Duration;

fn main() {
    let half: f64 = std::env::var("OTC_LOAD_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5.0);
    let plan = |extra: &[&str]| load::Plan {
        senders: 16,
        mailboxes: 16,
        half: Duration::from_secs_f64(half),
        contents_len: 200,
        extra: extra.iter().map(|s| s.to_string()).collect(),
    };
    let ms = |d: Duration| format!("{:.3} ms", d.as_secs_f64() * 1e3);
    let mut rates = Vec::new();
    let p = plan(&[]);
    println!();
    println!(
        "relay load: {} senders, {} mailboxes with long-polling receivers, {}-byte messages, \
         SIGKILL + restart half way ({half} s each half)",
        p.senders, p.mailboxes, p.contents_len
    );
    println!(
        "{:<26} {:>9} {:>8} {:>6} {:>10} {:>12} {:>12}",
        "", "acked", "unknown", "lost", "msg/s", "send p50", "send p99"
    );
    for (name, extra) in [
        ("group commit", &[][..]),
        ("one fsync per send", &["--no-group-commit"][..]),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = load::run(env!("CARGO_BIN_EXE_otc-relay"), dir.path(), &plan(extra));
        out.check();
        let (rate, p50, p99) = out.figures();
        println!(
            "{name:<26} {:>9} {:>8} {:>6} {rate:>10.0} {:>12} {:>12}",
            out.acks.len(),
            out.unknown.len(),
            0,
            ms(p50),
            ms(p99)
        );
        rates.push(rate);
    }
    println!(
        "group commit gain: {:.2}x messages/s (none lost or duplicated in either run)",
        rates[0] / rates[1]
    );
}
