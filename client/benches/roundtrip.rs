//! A chat round trip through the client library: alice's `Chat::send`
//! (contacts check, relay check, seal on her device with the owner's tap,
//! `/send`) until bob's `Chat::fetch_once` long poll has it opened on his
//! device (tap) and his read position saved. Real parts: two otc-testkit
//! devices (the thumb taps Approve), the otc-relay in-process, all on
//! 127.0.0.1.
//!
//! `N` round trips (default 200, env `OTC_BENCH_N`) of a 100-byte message
//! after 10 warm-up ones, one at a time. Prints the median, p99 and mean
//! of the round trip and of the send alone. Timing is reported, never
//! asserted. The thumb polls the screen every 2 ms, so each of the two taps
//! adds up to about 2 ms that a person would add in seconds.
//!
//! Run: `cargo bench -p otc-client --bench roundtrip`

use otc_client::chat::{Chat, Event};
use otc_proto::Format;
use otc_rpc_client::relay::RelayClient;
use otc_testkit::{TestDevice, mesh};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const WARMUP: usize = 10;

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(name: &str, mut d: Vec<Duration>) {
    d.sort();
    let mean = d.iter().sum::<Duration>() / d.len() as u32;
    println!(
        "{name:<28} n={:<5} median {:>9.3} ms   p99 {:>9.3} ms   mean {:>9.3} ms",
        d.len(),
        pct(&d, 0.5).as_secs_f64() * 1e3,
        pct(&d, 0.99).as_secs_f64() * 1e3,
        mean.as_secs_f64() * 1e3
    );
}

fn main() {
    // `cargo bench` passes --bench; nothing to parse.
    let n: usize = std::env::var("OTC_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let root = tempfile::tempdir().expect("temp dir");
    let dirs = mesh(root.path(), &["alice", "bob"], 4 << 20, Format::V3);
    let alice_dev = TestDevice::start(&dirs["alice"], "alice");
    let bob_dev = TestDevice::start(&dirs["bob"], "bob");
    let relay_dir = tempfile::tempdir().expect("relay dir");
    let mut cfg = otc_relay::Config::new("127.0.0.1:0", relay_dir.path());
    cfg.rate = 1e6;
    cfg.burst = 1e6;
    let relay = otc_relay::Relay::start(cfg).expect("relay");
    let alice = Chat::new(
        alice_dev.client(),
        RelayClient::from_addr(relay.addr()),
        "alice",
    );
    let bob = Chat::new(
        bob_dev.client(),
        RelayClient::from_addr(relay.addr()),
        "bob",
    );

    let (tx, rx) = mpsc::channel::<(u64, Instant)>();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let receiver = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let emit = |e: &Event| {
                if let Event::Message(m) = e {
                    let _ = tx.send((m.msg_ref, Instant::now()));
                }
            };
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                bob.fetch_once(Some(2), &emit).expect("bob's fetch");
            }
        })
    };
    let text = "x".repeat(100);
    let (mut round, mut send) = (Vec::new(), Vec::new());
    for i in 0..WARMUP + n {
        let t0 = Instant::now();
        let sent = alice.send("bob", &text, &|_| {}).expect("alice's send");
        let t1 = Instant::now();
        let (r, at) = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("bob did not open the message within 30 s");
        assert_eq!(r, sent.msg_ref, "bob opened another message");
        if i >= WARMUP {
            round.push(at - t0);
            send.push(t1 - t0);
        }
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    receiver.join().expect("receiver");
    println!("client round trip: relay + two testkit devices on 127.0.0.1, 100-byte messages");
    report("send (seal + relay)", send);
    report("send -> opened by bob", round);
}
