//! 10,000 concurrent long polls held by one relay process: its resident
//! memory and thread count before and while they wait (from
//! `/proc/PID/status`), and how long a message takes to reach the poller
//! at the end of the queue. Reported, never asserted (the checks that it
//! arrives at all, and that no other poll was answered, are asserted).
//!
//! The real `otc-relay` binary, its long-poll caps opened up; this process
//! holds the client ends. The relay needs one descriptor a connection and
//! gives a parked poll a second (its hang-up watch) from what is left, so
//! the bench tries to raise its `ulimit -n` to three times the count first
//! (`prlimit`, as root); without it the polls still park, unwatched.
//!
//! Run: `cargo bench -p otc-relay --bench longpoll` (env `OTC_POLLS`:
//! how many, default 10000).

#[path = "../tests/common/load.rs"]
mod load;

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn status(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("Threads:"))
}

/// Raise this process's `ulimit -n` (soft and hard; the relay it starts
/// inherits it) with util-linux's `prlimit`, which needs root past the hard
/// limit. Says so when it cannot: the relay then lowers its connection cap
/// to what the limit allows, and the run ends early.
fn raise_open_files(n: usize) {
    let ok = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &std::process::id().to_string(),
            &format!("--nofile={n}:{n}"),
        ])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("longpoll: could not raise ulimit -n to {n} (prlimit, as root)");
    }
}

fn main() {
    let n: usize = std::env::var("OTC_POLLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    // The relay holds up to two descriptors a connection (the socket, and
    // a duplicate a parked poll watches for hang-ups), this process one.
    raise_open_files(3 * n + 1000);
    let dir = tempfile::tempdir().expect("tempdir");
    let cap = (n + 100).to_string();
    let (relay, addr) = load::spawn_relay(
        env!("CARGO_BIN_EXE_otc-relay"),
        "127.0.0.1:0",
        dir.path(),
        &[
            "--max-connections",
            &cap,
            "--max-connections-per-ip",
            &cap,
            // Long polls have caps of their own (192, and 16 an address, by
            // default), past which the oldest are ended early.
            "--max-waiters",
            &cap,
            "--max-waiters-per-ip",
            &cap,
            "--rate",
            "1000000000",
            "--burst",
            "1000000000",
        ],
    );
    let pid = relay.0.id();
    let (rss0, threads0) = status(pid);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    rt.block_on(async move {
        let mut polls = Vec::with_capacity(n);
        for i in 0..n {
            let mut s = tokio::time::timeout(
                Duration::from_secs(10),
                tokio::net::TcpStream::connect(addr),
            )
            .await
            .unwrap_or_else(|_| panic!("poll {i}: no connection within 10 s"))
            .unwrap_or_else(|e| panic!("poll {i}: {e} (ulimit -n above {n}?)"));
            s.write_all(
                format!(
                    "GET /getmessages?recipient_uid=lp{i}&start_ref=0&wait=30 HTTP/1.1\r\nHost: r\r\n\r\n"
                )
                .as_bytes(),
            )
            .await
            .expect("send the long poll");
            polls.push(s);
        }
        // Give the relay a moment to read and park the last of them.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (rss1, threads1) = status(pid);
        let mut last = polls.pop().expect("at least one poll");
        let mut sender = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let body = format!("sender_uid=a&recipient_uid=lp{}&contents=HELLO", n - 1);
        let t = Instant::now();
        sender
            .write_all(
                format!(
                    "POST /send HTTP/1.1\r\nHost: r\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            )
            .await
            .expect("send");
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        while !String::from_utf8_lossy(&got).contains("HELLO") {
            let k = tokio::time::timeout(Duration::from_secs(10), last.read(&mut chunk))
                .await
                .expect("the last poller's reply within 10 s")
                .expect("read the reply");
            assert!(k > 0, "the relay closed the last poll without its message");
            got.extend_from_slice(&chunk[..k]);
        }
        let delivered = t.elapsed();
        // No other poll was answered.
        let mut answered = 0;
        for p in &polls {
            let mut b = [0u8; 1];
            if matches!(p.try_read(&mut b), Ok(k) if k > 0) {
                answered += 1;
            }
        }
        assert_eq!(answered, 0, "polls for other mailboxes were answered");
        println!();
        println!("relay long polls: {n} connections, each a /getmessages with wait=30, one process");
        println!("{:<36} {:>12} {:>8}", "", "RSS", "threads");
        println!("{:<36} {:>9} kB {threads0:>8}", "relay idle", rss0);
        println!("{:<36} {:>9} kB {threads1:>8}", format!("relay holding {n} long polls"), rss1);
        println!(
            "per long poll: {:.1} kB; the message to the last poller arrived in {:.3} ms",
            (rss1.saturating_sub(rss0)) as f64 / n as f64,
            delivered.as_secs_f64() * 1e3
        );
        drop(polls);
    });
    drop(relay);
}
