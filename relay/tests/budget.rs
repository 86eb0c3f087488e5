//! Issue 23, part 1: the relay keeps within a budget. The real binary,
//! flooded from several loopback addresses past a small `--max-bytes`:
//! what it stored stays within the budget, the sends past it get 507 with
//! a plain reason, and its memory stays flat (under 64 MiB) during the
//! flood, after a restart on the full store, and while everything is read
//! back. A second test: the per-address daily allowance.

#[path = "common/load.rs"]
mod load;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use load::{Running, spawn_relay};

const BIN: &str = env!("CARGO_BIN_EXE_otc-relay");
const MIB: u64 = 1 << 20;
/// The memory the issue allows the relay, whatever it holds.
const RSS_LIMIT_KIB: u64 = 64 * 1024;

/// The resident memory of `pid`, in KiB (VmRSS).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

/// Samples `pid`'s memory every 20 ms until stopped; the highest seen.
struct Sampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    fn start(pid: u32) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let (s, p) = (stop.clone(), peak.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status"))
                    && let Some(kib) = status
                        .lines()
                        .find_map(|l| l.strip_prefix("VmRSS:"))
                        .and_then(|v| v.split_whitespace().next()?.parse().ok())
                {
                    p.fetch_max(kib, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Sampler {
            stop,
            peak,
            thread: Some(thread),
        }
    }

    fn peak_kib(mut self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().expect("the sampler");
        }
        self.peak.load(Ordering::SeqCst)
    }
}

/// One keep-alive connection from a chosen loopback address.
struct Client {
    out: TcpStream,
    input: BufReader<TcpStream>,
}

impl Client {
    fn connect(from: Ipv4Addr, to: SocketAddr) -> Client {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("a socket");
        s.bind(&SocketAddr::from((from, 0)).into())
            .unwrap_or_else(|e| panic!("binding to {from}: {e}"));
        s.connect_timeout(&to.into(), Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connecting from {from} to the relay at {to}: {e}"));
        let s: TcpStream = s.into();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
        Client {
            input: BufReader::new(s.try_clone().unwrap()),
            out: s,
        }
    }

    /// One request; status and body (each read bounded by 20 s).
    fn request(&mut self, method: &str, path: &str, body: &str) -> (u16, String) {
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: r\r\nContent-Length: {}\r\n",
            body.len()
        );
        if !body.is_empty() {
            req.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
        }
        req.push_str("\r\n");
        req.push_str(body);
        self.out
            .write_all(req.as_bytes())
            .unwrap_or_else(|e| panic!("sending {method} {path}: {e}"));
        let mut line = String::new();
        self.input
            .read_line(&mut line)
            .unwrap_or_else(|e| panic!("waiting 20 s for the reply to {method} {path}: {e}"));
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status line: {line:?}"));
        let mut length = 0;
        loop {
            line.clear();
            self.input.read_line(&mut line).expect("a header line");
            let l = line.trim_end().to_ascii_lowercase();
            if l.is_empty() {
                break;
            }
            if let Some(v) = l.strip_prefix("content-length:") {
                length = v.trim().parse().expect("a length");
            }
        }
        let mut b = vec![0; length];
        self.input.read_exact(&mut b).expect("the reply's body");
        (status, String::from_utf8(b).expect("UTF-8"))
    }
}

/// A message's contents: about 60 KB of base64, unique per (from, n).
fn contents(from: u8, n: usize) -> String {
    let mut s = format!("{from:03}{n:06}");
    while s.len() < 60_000 {
        s.push_str("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3");
    }
    s
}

fn send_body(from: &str, to: &str, c: &str) -> String {
    format!("sender_uid={from}&recipient_uid={to}&contents={c}")
}

/// The bytes the relay's database holds, counted as `--max-bytes` counts
/// them, read straight from the file.
fn bytes_in_db(dir: &std::path::Path) -> (u64, u64) {
    let c = rusqlite::Connection::open(dir.join(otc_relay::store::DB_NAME)).expect("the db");
    c.query_row(
        &format!(
            "SELECT COUNT(*), COALESCE(SUM(length(CAST(sender AS BLOB)) + \
             length(CAST(recipient AS BLOB)) + length(CAST(contents AS BLOB)) + {}), 0) \
             FROM messages",
            otc_relay::MESSAGE_OVERHEAD
        ),
        [],
        |r| Ok((r.get::<_, u64>(0)?, r.get::<_, u64>(1)?)),
    )
    .expect("counting the messages")
}

#[test]
fn a_flood_past_max_bytes_is_refused_with_507_and_memory_stays_flat() {
    let dir = tempfile::tempdir().unwrap();
    let budget = 96 * MIB;
    let args = [
        "--max-bytes",
        "96M",
        "--daily-bytes-per-address",
        "1G",
        "--rate",
        "100000",
        "--burst",
        "100000",
    ];
    let (relay, addr) = spawn_relay(BIN, "127.0.0.1:0", dir.path(), &args);
    let pid = relay.0.id();
    let before = rss_kib(pid);
    let sampler = Sampler::start(pid);
    // Four addresses flood at once, each until it has had ten 507s.
    let acked = Arc::new(Mutex::new(Vec::<u64>::new()));
    let refusal = Arc::new(Mutex::new(None::<String>));
    let t = Instant::now();
    let floods: Vec<_> = (0..4u8)
        .map(|i| {
            let (acked, refusal) = (acked.clone(), refusal.clone());
            std::thread::spawn(move || {
                let mut c = Client::connect(Ipv4Addr::new(127, 0, 3, 10 + i), addr);
                let mut full = 0;
                for n in 0..4000 {
                    let body = send_body(&format!("flood{i}"), &format!("box{i}"), &contents(i, n));
                    let (status, reply) = c.request("POST", "/send", &body);
                    match status {
                        200 => {
                            let v: serde_json::Value = serde_json::from_str(&reply).unwrap();
                            acked.lock().unwrap().push(v["ref"].as_u64().unwrap());
                        }
                        507 => {
                            *refusal.lock().unwrap() = Some(reply);
                            full += 1;
                            if full == 10 {
                                return;
                            }
                        }
                        s => panic!("a flood send got {s}: {reply}"),
                    }
                }
                panic!("4000 sends of 60 KB from one address never reached a 96 MiB budget");
            })
        })
        .collect();
    for f in floods {
        f.join().expect("a flood thread");
    }
    let flood_time = t.elapsed();
    let during = sampler.peak_kib();
    let acked = acked.lock().unwrap().len() as u64;
    let reason = refusal.lock().unwrap().clone().expect("a 507 reply");
    let v: serde_json::Value = serde_json::from_str(&reason).expect("a JSON error");
    assert_eq!(v["error"], 507, "{reason}");
    let msg = v["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("the relay is full") && msg.contains("--max-bytes"),
        "{reason}"
    );
    // What is stored is every acknowledged message and no more than the
    // budget (a 60 KB message less than it: the flood did reach it).
    let (rows, stored) = bytes_in_db(dir.path());
    assert_eq!(
        rows, acked,
        "every acknowledged message is stored, nothing else"
    );
    assert!(
        stored <= budget,
        "stored {stored} bytes, over the budget {budget}"
    );
    assert!(
        stored > budget - 61_000,
        "stored {stored} bytes: the budget ({budget}) was not what stopped the flood"
    );
    eprintln!(
        "flood: {acked} messages of 60 KB acknowledged in {flood_time:?}, {stored} bytes \
         stored of a {budget}-byte budget, 40 answered 507; relay memory {before} KiB at start, \
         {during} KiB at most during the flood"
    );
    assert!(
        during < RSS_LIMIT_KIB,
        "the relay's memory reached {during} KiB during the flood"
    );
    // Restart on the full store: memory stays flat at start, while the
    // whole store is read back, and the budget still holds.
    drop(relay);
    let (relay, addr) = spawn_relay(BIN, "127.0.0.1:0", dir.path(), &args);
    let pid = relay.0.id();
    let at_start = rss_kib(pid);
    let sampler = Sampler::start(pid);
    let mut c = Client::connect(Ipv4Addr::new(127, 0, 3, 20), addr);
    let mut read_back = 0;
    for i in 0..4 {
        let mut start = 1;
        loop {
            let (status, reply) = c.request(
                "GET",
                &format!("/getmessages?recipient_uid=box{i}&start_ref={start}"),
                "",
            );
            assert_eq!(status, 200, "{reply}");
            let v: serde_json::Value = serde_json::from_str(&reply).unwrap();
            let msgs = v["messages"].as_array().unwrap();
            if msgs.is_empty() {
                break;
            }
            read_back += msgs.len() as u64;
            start = msgs.last().unwrap()["ref"].as_u64().unwrap() + 1;
        }
    }
    let (status, reply) = c.request("POST", "/send", &send_body("late", "box0", &contents(9, 0)));
    assert_eq!(status, 507, "the budget holds after a restart: {reply}");
    let reading = sampler.peak_kib();
    assert_eq!(
        read_back, acked,
        "every stored message reads back after the restart"
    );
    eprintln!(
        "after a restart on the full store: {at_start} KiB at start, {reading} KiB at most \
         while reading all {read_back} messages back"
    );
    assert!(at_start < RSS_LIMIT_KIB && reading < RSS_LIMIT_KIB);
    drop::<Running>(relay);
}

#[test]
fn an_address_past_its_daily_allowance_gets_429_and_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--daily-bytes-per-address",
        "1M",
        "--rate",
        "100000",
        "--burst",
        "100000",
    ];
    let (relay, addr) = spawn_relay(BIN, "127.0.0.1:0", dir.path(), &args);
    let mut greedy = Client::connect(Ipv4Addr::new(127, 0, 4, 1), addr);
    let mut ok = 0;
    let reason = loop {
        let (status, reply) =
            greedy.request("POST", "/send", &send_body("g", "box", &contents(1, ok)));
        match status {
            200 => ok += 1,
            429 => break reply,
            s => panic!("{s}: {reply}"),
        }
        assert!(
            ok <= 20,
            "20 sends of 60 KB never reached a 1 MiB daily allowance"
        );
    };
    // 1 MiB holds 17 of these messages (60,000 + 4 + 3 + 96 bytes each).
    assert_eq!(ok, 17);
    assert!(
        reason.contains("allowance") && reason.contains("127.0.4.1"),
        "{reason}"
    );
    // Another address has its own allowance.
    let mut other = Client::connect(Ipv4Addr::new(127, 0, 4, 2), addr);
    let (status, reply) = other.request("POST", "/send", &send_body("o", "box", &contents(2, 0)));
    assert_eq!(status, 200, "{reply}");
    // A refused send stored nothing.
    let (rows, _) = bytes_in_db(dir.path());
    assert_eq!(rows, 18);
    drop(relay);
}
