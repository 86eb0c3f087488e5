//! Issue 17: "nothing else is slowed for minutes" while a pad is made.
//! A real device in-process (real store, UI on a memory display, HTTP on
//! 127.0.0.1), the New contact flow tapped through the screen trace up to
//! Make, a pad of `OTC_BENCH_PAD_MIB` (default 64) MiB made from
//! `OTC_BENCH_HWRNG` (default `/dev/urandom`) ⊕ the kernel RNG. Meanwhile
//! one client asks `GET /v1/status` in a loop and the screen trace is
//! polled every 5 ms. Printed: the status round trip idle and during the
//! make (median, 95th percentile, worst), whether it said busy, the UI
//! loop's turns per second and how often the progress screen changed, and
//! the longest time the screen went without a change. Figures are
//! printed, never asserted.
//!
//!     cargo bench -p otc-device --bench pairing_load

#[path = "../tests/common/mod.rs"]
mod common;

use common::device::*;
use otc_device::pairing_flow::PairingOptions;
use otc_device::stick::DirStick;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn summary(name: &str, mut v: Vec<Duration>) {
    if v.is_empty() {
        println!("  {name:<28} no answers");
        return;
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "  {name:<28} {:>5} answers: median {:>6.2} ms, p95 {:>6.2} ms, worst {:>7.2} ms",
        v.len(),
        ms(pct(&mut v, 0.5)),
        ms(pct(&mut v, 0.95)),
        ms(pct(&mut v, 1.0))
    );
}

/// `GET /v1/status` until `stop`; the round trips and the busy answers.
fn ask_status(dev_addr: std::net::SocketAddr, stop: Arc<AtomicBool>) -> (Vec<Duration>, usize) {
    let mut took = Vec::new();
    let mut busy = 0;
    while !stop.load(Ordering::SeqCst) {
        let t = Instant::now();
        let r = request(dev_addr, "GET", otc_proto::routes::STATUS, None);
        took.push(t.elapsed());
        if r.json()["busy"] == true {
            busy += 1;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    (took, busy)
}

fn main() {
    let hw = PathBuf::from(std::env::var("OTC_BENCH_HWRNG").unwrap_or("/dev/urandom".into()));
    let mib: u64 = std::env::var("OTC_BENCH_PAD_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64);
    let root = tempfile::tempdir().expect("tempdir");
    let (dir, stick) = (root.path().join("alice"), root.path().join("stick"));
    otc_testkit::init(&dir, "Alice");
    std::fs::create_dir(&stick).expect("stick");
    let dev = Dev::start_with(
        &dir,
        "Alice",
        limits(),
        PairingOptions {
            stick: Some(Arc::new(DirStick::new(&stick))),
            hwrng: hw.clone(),
            reserve: 0,
            sizes: vec![mib << 20],
            ..Default::default()
        },
    );

    // Idle: the same loop for two seconds.
    let stop = Arc::new(AtomicBool::new(false));
    let addr = dev.addr;
    let s = stop.clone();
    let idle = std::thread::spawn(move || ask_status(addr, s));
    let turns0 = dev.trace.loop_turns();
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::SeqCst);
    let idle_turns = (dev.trace.loop_turns() - turns0) as f64 / 2.0;
    let (idle, _) = idle.join().expect("idle client");

    // New contact → name → size → Make.
    dev.tap("New contact");
    dev.wait_screen("the name keyboard", |t| t.screen == "keyboard");
    for c in "bob".chars() {
        dev.tap(&format!("kb-char-{c}"));
    }
    dev.wait_screen("the name typed", |t| {
        t.texts.get(1).is_some_and(|x| x.ends_with("bob"))
    });
    dev.tap("Done");
    let t = dev.wait_screen("the sizes", |t| t.screen == "new-contact-size");
    let size = t
        .buttons
        .iter()
        .find(|b| b.id.starts_with("choice:"))
        .expect("a size button")
        .id
        .clone();
    dev.tap(&size);
    dev.wait_screen("Make", |t| t.screen == "new-contact-make");
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let during = std::thread::spawn(move || ask_status(addr, s));
    let turns0 = dev.trace.loop_turns();
    let started = Instant::now();
    dev.tap("Make");
    // Poll the screen until the export step (bounded: 10 min).
    let (mut changes, mut last, mut last_at, mut longest) =
        (0u64, dev.screen(), started, Duration::ZERO);
    loop {
        let t = dev.screen();
        if t.screen == "new-contact-export" || t.screen == "new-contact-error" {
            break;
        }
        if t != last {
            changes += 1;
            longest = longest.max(last_at.elapsed());
            last_at = Instant::now();
            last = t;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "the pad was not made within 10 minutes: {}",
            last.to_json()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let made = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    let busy_turns = (dev.trace.loop_turns() - turns0) as f64 / made.as_secs_f64();
    let (during, busy) = during.join().expect("client during the make");
    let end = dev.screen();
    assert_eq!(end.screen, "new-contact-export", "{}", end.to_json());

    println!();
    println!(
        "pairing_load: a {mib} MiB pad made from {} in {:.2} s ({:.1} MiB/s)",
        hw.display(),
        made.as_secs_f64(),
        mib as f64 / made.as_secs_f64()
    );
    println!("GET /v1/status round trips:");
    summary("idle", idle);
    let n = during.len();
    summary("while the pad is made", during);
    println!("  answered busy: {busy} of {n}");
    println!(
        "UI: loop turns/s idle {idle_turns:.1}, while making {busy_turns:.1}; the screen changed \
         {changes} times, the longest stretch without a change {:.0} ms",
        longest.as_secs_f64() * 1e3
    );
    dev.tap("Cancel");
}
