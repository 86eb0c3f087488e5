//! The relay load run as a report: the same run as `tests/load.rs` (16
//! senders, 16 long-polling receivers, a SIGKILL and restart half way; all
//! its correctness checks), printing messages per second and p50/p99 send
//! latency. Timing is reported, never asserted.
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
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = load::Plan {
        senders: 16,
        mailboxes: 16,
        half: Duration::from_secs_f64(half),
        contents_len: 200,
    };
    let out = load::run(env!("CARGO_BIN_EXE_otc-relay"), dir.path(), &plan);
    out.check();
    let (rate, p50, p99) = out.figures();
    let ms = |d: Duration| format!("{:.3} ms", d.as_secs_f64() * 1e3);
    println!();
    println!(
        "relay load: {} senders, {} mailboxes with long-polling receivers, {}-byte messages, \
         SIGKILL + restart half way",
        plan.senders, plan.mailboxes, plan.contents_len
    );
    println!(
        "  acknowledged {:>8}   unknown at the kill {:>4}   lost 0   duplicated 0",
        out.acks.len(),
        out.unknown.len()
    );
    println!(
        "  send rate    {rate:>8.0} msg/s   send p50 {}   p99 {}",
        ms(p50),
        ms(p99)
    );
}
