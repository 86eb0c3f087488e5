//! Seal over HTTP next to a bare tiny_http echo, measured in the same run.
//!
//! The device runs in-process ([`device::start`] on 127.0.0.1:0, memory
//! display, no touch) with a real durable store in a temporary directory
//! holding a 64 MiB v3 pad. The broker asks a screen twin that approves
//! every prompt by itself ([`AutoApprove`], defined here only), so the figures are the endpoint's own cost:
//! HTTP, JSON, broker, durable pad reservation, seal, erase, audit log and
//! screen updates. The echo server is tiny_http answering each request
//! body as JSON on its receiving thread, nothing else.
//!
//! One client (the shared `otc-rpc-client`, one kept-alive HTTP/1.1
//! connection: `Client::keep_alive`), sequential requests of a
//! 100-byte message, `N` of them (default 5000, env `OTC_BENCH_N`) after
//! 500 warm-up requests, in `OTC_BENCH_ROUNDS` rounds (default 11; each
//! round measures both, alternating which goes first). Prints requests/s, p50 and p99 latency of both and
//! the ratio seal/echo (issue #4 set at least 0.5; issue #16, 0.85); and, to tell the
//! HTTP cost from the device's own, the same seal called in-process through
//! `Service::handle`. Timing is reported, never asserted.
//!
//! Run: `cargo bench -p otc-device --bench rpc` (`OTC_BENCH_VERBOSE=1`
//! prints each round's figures as it ends).

use otc_device::confirm::{Decision, Screen};
use otc_device::device::{self, StartOptions};
use otc_device::net::Bind;
use otc_device::pad::PadStore;
use otc_device::pad::generate::{NewPad, create_pad};
use otc_device::platform::RealPlatform;
use otc_device::rpc::{ApprovalPrompt, Limits};
use otc_proto::Format;
use otc_testkit::bench::{Figures, echo_server};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

const PAD: u64 = 64 << 20;
const WARMUP: usize = 500;
const MESSAGE_LEN: usize = 100;

/// `WARMUP` then `n` timed requests of `body` to `path`, one at a time.
/// On one kept-alive connection of the shared client
/// ([`otc_rpc_client::Client::keep_alive`]).
fn measure(addr: SocketAddr, path: &str, body: &[u8], n: usize) -> Figures {
    let mut session = otc_rpc_client::Client::new(addr)
        .with_timeout(Duration::from_secs(30))
        .keep_alive();
    let mut post = || {
        let reply = session
            .send("POST", path, Some(body))
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        assert_eq!(
            reply.status,
            200,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
    };
    (0..WARMUP).for_each(|_| post());
    let mut lat = Vec::with_capacity(n);
    let start = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        post();
        lat.push(t.elapsed());
    }
    assert_eq!(
        session.connections(),
        1,
        "{addr} did not keep the connection alive"
    );
    Figures::of(n, start.elapsed(), lat)
}

/// The same seal without HTTP: `Service::handle` called in-process, to tell
/// the endpoint's HTTP cost from the device's own (broker, store, audit
/// log, screen updates).
fn measure_in_process(running: &device::Running<AutoApprove>, body: &[u8], n: usize) -> Figures {
    let call = || {
        let (status, reply) =
            running
                .service()
                .expect("unlocked")
                .handle("POST", "/v1/package", body, &|| true);
        assert_eq!(status, 200, "{reply}");
    };
    (0..WARMUP).for_each(|_| call());
    let mut lat = Vec::with_capacity(n);
    let start = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        call();
        lat.push(t.elapsed());
    }
    Figures::of(n, start.elapsed(), lat)
}

/// The bench's screen twin: approves every prompt at once. It exists only
/// here, so no build of the device can approve by itself.
struct AutoApprove;

impl Screen for AutoApprove {
    type Prompt = ApprovalPrompt;
    type Ticket = ();
    fn show(&self, _: ApprovalPrompt) {}
    fn wait(&self, _: &(), _: Duration) -> Option<Decision> {
        Some(Decision::Approve)
    }
    fn withdraw(&self, _: &()) {}
}

/// The device on 127.0.0.1:0 with a fresh 64 MiB v3 pad for "bob".
fn start_device(dir: &std::path::Path) -> device::Running<AutoApprove> {
    let store = PadStore::open_dir(dir).expect("open store");
    let export = dir.with_extension("export");
    create_pad(
        &store,
        &NewPad {
            contact: "bob".into(),
            size: PAD,
            split: None,
            format: Format::V3,
            source: None,
            export: export.clone(),
        },
        &mut |_, _, _| {},
    )
    .expect("create pad");
    std::fs::remove_file(export).expect("remove export");
    store.close().expect("close store");

    let (display, _screen) = otc_ui::sink::memory::MemoryDisplay::new(800, 480);
    device::start_with_screen(
        dir,
        StartOptions {
            owner: "Alice".into(),
            bind: Bind::Loopback("127.0.0.1:0".parse().expect("address")),
            prompt_timeout: Duration::from_secs(30),
            limits: Limits::default(),
            ui: otc_ui::UiConfig::default(),
            allowed_hosts: Vec::new(),
            pairing: Default::default(),
            lock: Default::default(),
        },
        Box::new(display),
        None,
        Arc::new(RealPlatform::new()),
        |_, _| AutoApprove,
    )
    .expect("start the device")
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    let n: usize = std::env::var("OTC_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let message = "m".repeat(MESSAGE_LEN);
    let seal_body = serde_json::json!({ "to": "bob", "message": message }).to_string();

    let (echo, echo_addr, echo_thread) = echo_server();
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let running = start_device(&data);

    let rounds: usize = std::env::var("OTC_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(11)
        .max(1);
    // Rounds alternate which goes first, so a noisy neighbour hits both;
    // the figures printed are each one's median round, the ratio the
    // median of the rounds' own ratios.
    let mut echoes = Vec::new();
    let mut seals = Vec::new();
    for round in 0..rounds {
        let (e, s) = if round % 2 == 0 {
            let e = measure(echo_addr, "/v1/echo", seal_body.as_bytes(), n);
            (
                e,
                measure(running.addr, "/v1/package", seal_body.as_bytes(), n),
            )
        } else {
            let s = measure(running.addr, "/v1/package", seal_body.as_bytes(), n);
            (measure(echo_addr, "/v1/echo", seal_body.as_bytes(), n), s)
        };
        if std::env::var_os("OTC_BENCH_VERBOSE").is_some() {
            eprintln!(
                "round {round}: seal {:.0}/s p50 {}, echo {:.0}/s p50 {}, ratio {:.2}",
                s.rate,
                ms(s.p50),
                e.rate,
                ms(e.p50),
                s.rate / e.rate
            );
        }
        echoes.push(e);
        seals.push(s);
    }
    let mut ratios: Vec<f64> = seals
        .iter()
        .zip(&echoes)
        .map(|(s, e)| s.rate / e.rate)
        .collect();
    ratios.sort_by(|a, b| a.total_cmp(b));
    let median_of = |mut v: Vec<Figures>| {
        v.sort_by(|a, b| a.rate.total_cmp(&b.rate));
        v.swap_remove(v.len() / 2)
    };
    let echo_fig = median_of(echoes);
    let seal_fig = median_of(seals);
    let direct_fig = measure_in_process(&running, seal_body.as_bytes(), n);

    echo.unblock();
    let _ = echo_thread.join();
    running.stop().expect("stop the device");

    println!();
    println!(
        "rpc: {rounds} rounds of {n} sequential requests after {WARMUP} warm-up, one \
         keep-alive HTTP/1.1 connection, {MESSAGE_LEN}-byte messages (median round)"
    );
    println!("{:<34} {:>10} {:>12} {:>12}", "", "req/s", "p50", "p99");
    for (name, f) in [
        ("seal (POST /v1/package, durable)", &seal_fig),
        ("bare tiny_http echo", &echo_fig),
        ("seal in-process, no HTTP", &direct_fig),
    ] {
        println!(
            "{name:<34} {:>10.0} {:>12} {:>12}",
            f.rate,
            ms(f.p50),
            ms(f.p99)
        );
    }
    let ratio = ratios[ratios.len() / 2];
    println!(
        "ratio seal/echo, median of {rounds} rounds: {ratio:.2} (range {:.2}-{:.2}; target >= 0.85: {})",
        ratios[0],
        ratios[ratios.len() - 1],
        if ratio >= 0.85 { "met" } else { "NOT met" }
    );
}
