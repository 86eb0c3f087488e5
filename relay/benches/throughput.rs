//! Relay throughput next to a bare tiny_http echo, measured in the same run
//! (as `firmware/benches/rpc.rs` does for the device).
//!
//! The relay runs in-process ([`otc_relay::Relay`] on 127.0.0.1:0, a fresh
//! data directory, limits opened up), durable as shipped: every send is
//! fsynced before its reply. The echo server is tiny_http answering each
//! request body as JSON on its receiving thread, nothing else.
//!
//! One client, one keep-alive HTTP/1.1 connection, sequential requests,
//! `N` of each (default 3000, env `OTC_BENCH_N`) after 300 warm-up:
//! `POST /send` (form-encoded, 200-byte contents, as the original client
//! sends), `GET /getmessages` of one stored message, and the echo of the
//! same form body. Prints requests/s, p50 and p99 and the ratios to the
//! echo. One sequential sender cannot share an fsync; group commit's gain
//! under concurrency is in `benches/load.rs`. Timing is reported, never
//! asserted.
//!
//! Run: `cargo bench -p otc-relay --bench throughput`

#[path = "../tests/common/load.rs"]
mod load;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use load::Conn;
use otc_relay::{Config, Relay};
use otc_testkit::bench::{Figures, echo_server};

const WARMUP: usize = 300;

/// `WARMUP` then `n` timed requests made by `req(i)`, one at a time.
fn measure(
    addr: SocketAddr,
    n: usize,
    mut req: impl FnMut(&mut Conn, usize) -> std::io::Result<(u16, String)>,
) -> Figures {
    let mut c = Conn::connect(addr, Duration::from_secs(30)).expect("connect");
    for i in 0..WARMUP {
        let (status, body) = req(&mut c, i).expect("warm-up request");
        assert_eq!(status, 200, "{body}");
    }
    let mut lat = Vec::with_capacity(n);
    let start = Instant::now();
    for i in 0..n {
        let t = Instant::now();
        let (status, body) = req(&mut c, WARMUP + i).expect("request");
        lat.push(t.elapsed());
        assert_eq!(status, 200, "{body}");
    }
    Figures::of(n, start.elapsed(), lat)
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    let n: usize = std::env::var("OTC_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let form = format!(
        "sender_uid=alice&recipient_uid=bob&contents={}",
        "Q".repeat(200)
    );
    let ctype = Some("application/x-www-form-urlencoded");

    let (echo, echo_addr, echo_thread) = echo_server();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = Config::new("127.0.0.1:0", dir.path());
    cfg.rate = 1e9;
    cfg.burst = 1e9;
    cfg.max_mailbox = usize::MAX;
    let relay = Relay::start(cfg).expect("relay starts");
    let addr = relay.addr();

    let echo_fig = measure(echo_addr, n, |c, _| {
        c.request("POST", "/echo", ctype, form.as_bytes())
    });
    let send_fig = measure(addr, n, |c, _| {
        c.request("POST", "/send", ctype, form.as_bytes())
    });
    let stored = (WARMUP + n) as u64;
    let get_fig = measure(addr, n, |c, i| {
        let path = format!(
            "/getmessages?recipient_uid=bob&start_ref={}&maxcount=1",
            1 + i as u64 % stored
        );
        c.request("GET", &path, None, b"")
    });
    echo.unblock();
    let _ = echo_thread.join();
    drop(relay);

    println!();
    println!(
        "relay throughput: {n} sequential requests after {WARMUP} warm-up, one keep-alive \
         HTTP/1.1 connection, 200-byte contents"
    );
    println!("{:<36} {:>10} {:>12} {:>12}", "", "req/s", "p50", "p99");
    for (name, f) in [
        ("send (POST /send, fsynced)", &send_fig),
        ("getmessages (one message)", &get_fig),
        ("bare tiny_http echo", &echo_fig),
    ] {
        println!(
            "{name:<36} {:>10.0} {:>12} {:>12}",
            f.rate,
            ms(f.p50),
            ms(f.p99)
        );
    }
    println!(
        "ratio send/echo: {:.2}   getmessages/echo: {:.2}",
        send_fig.rate / echo_fig.rate,
        get_fig.rate / echo_fig.rate
    );
}
