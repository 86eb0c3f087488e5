//! The relay load run as a report: the same run as `tests/load.rs` (16
//! senders, 16 long-polling receivers, a SIGKILL and restart half way; all
//! its correctness checks), printing messages per second and p50/p99 send
//! latency, once with group commit (the relay as shipped) and once with
//! every send committed on its own (`--no-group-commit`), and the gain;
//! next to them, in the same run, a bare hyper echo server taking the same
//! 16 senders' requests (the ceiling the HTTP layer and this machine set),
//! and, when `OTC_OLD_RELAY` names another `otc-relay` binary (say, one
//! built from an earlier commit), the same run against it.
//! A third run keeps the messages in PostgreSQL (`--database`, a real
//! server the bench starts, `tests/common/pg.rs`).
//! Timing is reported, never asserted.
//!
//! Run: `cargo bench -p otc-relay --bench load` (env `OTC_LOAD_SECONDS`:
//! sending time per half, default 5; `OTC_LOAD_SQLITE_ONLY=1`: SQLite with
//! group commit, the old relay and the echo only).

#[path = "../tests/common/load.rs"]
mod load;
#[path = "../tests/common/pg.rs"]
mod pg;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Response;
use hyper_util::rt::TokioIo;

/// A bare hyper HTTP/1.1 server on tokio (two worker threads, as the
/// relay has here) answering every request with a JSON of its body's
/// length: no parsing, no storage. Runs until the process ends.
fn echo_server() -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        rt.block_on(async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind the echo server");
            tx.send(l.local_addr().expect("its address"))
                .expect("report the address");
            loop {
                let Ok((s, _)) = l.accept().await else {
                    continue;
                };
                let _ = s.set_nodelay(true);
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        |req: hyper::Request<hyper::body::Incoming>| async move {
                            let n = req
                                .into_body()
                                .collect()
                                .await
                                .map_or(0, |b| b.to_bytes().len());
                            let body = format!(r#"{{"received":true,"echo_tail":"","ref":{n}}}"#);
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(s), svc)
                        .await;
                });
            }
        });
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("the echo server starts within 10 s")
}

/// `senders` threads, each on one keep-alive connection, POSTing the
/// load run's form bodies to `addr` for `time`: (requests/s, p50, p99).
fn echo_load(addr: SocketAddr, senders: usize, time: Duration) -> (f64, Duration, Duration) {
    let go = Arc::new(AtomicBool::new(true));
    let start = Instant::now();
    let threads: Vec<_> = (0..senders)
        .map(|s| {
            let go = go.clone();
            std::thread::spawn(move || {
                let mut c = load::Conn::connect(addr, Duration::from_secs(10)).expect("connect");
                let mut lat = Vec::new();
                let mut n = 0;
                while go.load(Ordering::Relaxed) {
                    let body = format!(
                        "sender_uid=snd{s}&recipient_uid=rcpt{}&contents=s{s}n{n}x{}",
                        n % 16,
                        "A".repeat(190)
                    );
                    n += 1;
                    let t = Instant::now();
                    let (status, reply) = c
                        .request(
                            "POST",
                            "/send",
                            Some("application/x-www-form-urlencoded"),
                            body.as_bytes(),
                        )
                        .expect("the echo answers");
                    assert_eq!(status, 200, "{reply}");
                    lat.push(t.elapsed());
                }
                lat
            })
        })
        .collect();
    std::thread::sleep(time);
    go.store(false, Ordering::Relaxed);
    let lat: Vec<Duration> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("an echo sender"))
        .collect();
    let f = otc_testkit::bench::Figures::of(lat.len(), start.elapsed(), lat);
    (f.rate, f.p50, f.p99)
}

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
        "{:<34} {:>9} {:>8} {:>6} {:>10} {:>12} {:>12}",
        "", "acked", "unknown", "lost", "msg/s", "send p50", "send p99"
    );
    let this = env!("CARGO_BIN_EXE_otc-relay").to_owned();
    // OTC_LOAD_SQLITE_ONLY=1: only SQLite with group commit (and the old
    // relay, and the echo), for quick comparisons.
    let quick = std::env::var_os("OTC_LOAD_SQLITE_ONLY").is_some();
    let server = (!quick).then(pg::PgServer::start);
    let url = server.as_ref().map(|s| s.url()).unwrap_or_default();
    let mut runs = vec![("SQLite, group commit", this.clone(), vec![])];
    if !quick {
        runs.push((
            "SQLite, one commit per send",
            this.clone(),
            vec!["--no-group-commit"],
        ));
        runs.push((
            "PostgreSQL 15, group commit",
            this,
            vec!["--database", url.as_str()],
        ));
    }
    let old = std::env::var("OTC_OLD_RELAY").ok();
    if let Some(old) = &old {
        runs.push(("OTC_OLD_RELAY, group commit", old.clone(), vec![]));
    }
    for (name, bin, extra) in runs {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = load::run(&bin, dir.path(), &plan(&extra));
        out.check();
        let (rate, p50, p99) = out.figures();
        println!(
            "{name:<34} {:>9} {:>8} {:>6} {rate:>10.0} {:>12} {:>12}",
            out.acks.len(),
            out.unknown.len(),
            0,
            ms(p50),
            ms(p99)
        );
        rates.push(rate);
    }
    let echo = echo_server();
    let (rate, p50, p99) = echo_load(echo, p.senders, Duration::from_secs_f64(2.0 * half));
    println!(
        "{:<34} {:>9} {:>8} {:>6} {rate:>10.0} {:>12} {:>12}",
        "bare hyper echo (no storage)",
        "-",
        "-",
        "-",
        ms(p50),
        ms(p99)
    );
    if !quick {
        println!("group commit gain: {:.2}x messages/s", rates[0] / rates[1]);
    }
    if old.is_some() {
        println!(
            "SQLite / OTC_OLD_RELAY: {:.2} (target: at least 1)",
            rates[0] / rates[rates.len() - 1]
        );
    }
    println!(
        "SQLite relay / bare echo: {:.2} (none lost or duplicated in any relay run)",
        rates[0] / rate
    );
}
