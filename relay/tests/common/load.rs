//! The relay load run, shared by the test (`tests/load.rs`, which asserts
//! correctness only) and the report (`benches/load.rs`, which also prints
//! rates and latencies).
//!
//! The real `otc-relay` binary on 127.0.0.1; `senders` threads send
//! uniquely numbered messages round robin to `mailboxes` recipients, each on
//! one keep-alive connection; one long-polling receiver per mailbox reads
//! from its cursor. Half way, the relay is SIGKILLed and started again on
//! the same port and data directory; everyone reconnects. [`Outcome::check`]
//! then asserts: every acknowledged message was delivered, under the ref
//! its ack named, exactly once; nothing was delivered that was not sent;
//! refs per mailbox strictly increase; every ref handed out after the
//! restart is above every ref handed out before it.
//!
//! Every wait is bounded: a relay that does not come back, or a receiver
//! that never catches up, panics saying what it waited for.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// The real binary; killed and reaped when dropped.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `otc-relay --listen LISTEN --data DATA EXTRA..` (without
/// `--data` when EXTRA says `--database`) and reads the address it prints
/// (bounded: 20 s).
pub fn spawn_relay(bin: &str, listen: &str, data: &Path, extra: &[&str]) -> (Running, SocketAddr) {
    let mut cmd = Command::new(bin);
    cmd.args(["--listen", listen]);
    if !extra.contains(&"--database") {
        cmd.arg("--data").arg(data);
    }
    let mut child = cmd
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("otc-relay starts");
    let out = child.stdout.take().expect("stdout");
    let running = Running(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut r = BufReader::new(out);
        let mut line = String::new();
        let _ = r.read_line(&mut line);
        let _ = tx.send(line);
        // Keep draining so the relay never blocks on a full pipe.
        let _ = std::io::copy(&mut r, &mut std::io::sink());
    });
    let line = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("within 20 s, otc-relay prints the address it listens on");
    let addr = line
        .trim()
        .rsplit("http://")
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    (running, addr)
}

/// One keep-alive HTTP/1.1 connection; every read bounded by a timeout.
pub struct Conn {
    out: TcpStream,
    input: BufReader<TcpStream>,
    host: String,
}

impl Conn {
    pub fn connect(addr: SocketAddr, timeout: Duration) -> std::io::Result<Conn> {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(Duration::from_secs(5)))?;
        Ok(Conn {
            input: BufReader::new(s.try_clone()?),
            out: s,
            host: addr.to_string(),
        })
    }

    /// One request; the status and body. Any I/O trouble is an error (the
    /// caller reconnects).
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        ctype: Option<&str>,
        body: &[u8],
    ) -> std::io::Result<(u16, String)> {
        let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_owned());
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n",
            self.host,
            body.len()
        );
        if let Some(c) = ctype {
            req.push_str(&format!("Content-Type: {c}\r\n"));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        self.out.write_all(&bytes)?;
        let mut line = String::new();
        if self.input.read_line(&mut line)? == 0 {
            return Err(bad("connection closed"));
        }
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("no status line"))?;
        let mut length = None;
        loop {
            line.clear();
            if self.input.read_line(&mut line)? == 0 {
                return Err(bad("connection closed in the head"));
            }
            let l = line.trim_end().to_ascii_lowercase();
            if l.is_empty() {
                break;
            }
            if let Some(v) = l.strip_prefix("content-length:") {
                length = v.trim().parse::<usize>().ok();
            }
        }
        let mut reply = vec![0; length.ok_or_else(|| bad("no Content-Length"))?];
        self.input.read_exact(&mut reply)?;
        String::from_utf8(reply)
            .map(|b| (status, b))
            .map_err(|_| bad("reply not UTF-8"))
    }
}

/// How big a run is.
#[derive(Clone, Debug)]
pub struct Plan {
    pub senders: usize,
    pub mailboxes: usize,
    /// Sending time before the SIGKILL, and again after the restart.
    pub half: Duration,
    /// Bytes of each message's contents (at least the id's length).
    pub contents_len: usize,
    /// More arguments for `otc-relay`.
    pub extra: Vec<String>,
}

/// One acknowledged send.
#[derive(Clone, Debug)]
pub struct Ack {
    pub mailbox: usize,
    pub contents: String,
    pub msg_ref: u64,
    /// 0: sent to the first relay process, 1: to the restarted one.
    pub epoch: u32,
    pub latency: Duration,
}

/// What a run saw.
pub struct Outcome {
    pub acks: Vec<Ack>,
    /// Sends whose outcome is unknown (the relay died under them).
    pub unknown: HashSet<String>,
    /// Per mailbox, what its receiver got, in order: (ref, contents).
    pub received: Vec<Vec<(u64, String)>>,
    /// Per mailbox, everything stored, read in one go at the end.
    pub stored: Vec<Vec<(u64, String)>>,
    /// Sending time, both halves, without the restart.
    pub sending: Duration,
    /// The whole run, restart included.
    pub total: Duration,
    /// Refused sends (not 200), with the reply: should be none.
    pub refused: Vec<String>,
}

fn mailbox_name(i: usize) -> String {
    format!("rcpt{i}")
}

/// Connects, retrying for up to 20 s (the relay may be restarting), then
/// panics saying `what` waited.
fn connect_retry(addr: &Mutex<SocketAddr>, timeout: Duration, what: &str) -> Conn {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let a = *addr.lock().unwrap();
        match Conn::connect(a, timeout) {
            Ok(c) => return c,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("{what}: the relay at {a} did not accept within 20 s: {e}"),
        }
    }
}

fn parse_messages(body: &str) -> Option<Vec<(u64, String)>> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    v["messages"]
        .as_array()?
        .iter()
        .map(|m| Some((m["ref"].as_u64()?, m["contents"].as_str()?.to_owned())))
        .collect()
}

/// Runs the plan against the binary `bin`; `data` is the relay's directory.
pub fn run(bin: &str, data: &Path, plan: &Plan) -> Outcome {
    let mut limits = vec![
        "--rate",
        "1000000000",
        "--burst",
        "1000000000",
        "--max-connections",
        "1024",
        "--max-connections-per-ip",
        "1024",
    ];
    limits.extend(plan.extra.iter().map(String::as_str));
    let started = Instant::now();
    let (first, addr) = spawn_relay(bin, "127.0.0.1:0", data, &limits);
    let addr = Arc::new(Mutex::new(addr));
    let epoch = Arc::new(AtomicU32::new(0));
    let sending = Arc::new(AtomicBool::new(true));
    let senders_done = Arc::new(AtomicBool::new(false));

    let mut send_threads = Vec::new();
    for s in 0..plan.senders {
        let (addr, epoch, sending) = (addr.clone(), epoch.clone(), sending.clone());
        let plan = plan.clone();
        send_threads.push(std::thread::spawn(move || {
            let mut acks = Vec::new();
            let mut unknown = HashSet::new();
            let mut refused = Vec::new();
            let mut conn = None;
            let mut n = 0usize;
            while sending.load(Ordering::SeqCst) {
                let mailbox = (s + n) % plan.mailboxes;
                let mut contents = format!("s{s}n{n}x");
                n += 1;
                while contents.len() < plan.contents_len {
                    contents.push('A');
                }
                let body = format!(
                    "sender_uid=snd{s}&recipient_uid={}&contents={contents}",
                    mailbox_name(mailbox)
                );
                let c = conn.get_or_insert_with(|| {
                    connect_retry(&addr, Duration::from_secs(10), "a sender")
                });
                let ep = epoch.load(Ordering::SeqCst);
                let t = Instant::now();
                match c.request(
                    "POST",
                    "/send",
                    Some("application/x-www-form-urlencoded"),
                    body.as_bytes(),
                ) {
                    Ok((200, reply)) => {
                        let latency = t.elapsed();
                        let v: serde_json::Value =
                            serde_json::from_str(&reply).expect("send reply is JSON");
                        assert_eq!(v["received"], true, "{reply}");
                        acks.push(Ack {
                            mailbox,
                            contents,
                            msg_ref: v["ref"].as_u64().expect("ref in the send reply"),
                            epoch: ep,
                            latency,
                        });
                    }
                    Ok((status, reply)) => refused.push(format!("{status} {reply}")),
                    Err(_) => {
                        unknown.insert(contents);
                        conn = None;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
            }
            (acks, unknown, refused)
        }));
    }

    let mut recv_threads = Vec::new();
    for m in 0..plan.mailboxes {
        let (addr, done) = (addr.clone(), senders_done.clone());
        recv_threads.push(std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut got: Vec<(u64, String)> = Vec::new();
            let mut cursor = 0u64;
            let mut conn = None;
            loop {
                assert!(
                    Instant::now() < deadline,
                    "receiver {m} did not finish within 60 s"
                );
                let finishing = done.load(Ordering::SeqCst);
                let path = format!(
                    "/getmessages?recipient_uid={}&start_ref={cursor}&wait={}",
                    mailbox_name(m),
                    if finishing { 0 } else { 1 }
                );
                let c = conn.get_or_insert_with(|| {
                    connect_retry(&addr, Duration::from_secs(10), "a receiver")
                });
                match c.request("GET", &path, None, b"") {
                    Ok((200, body)) => {
                        let msgs = parse_messages(&body)
                            .unwrap_or_else(|| panic!("bad getmessages reply: {body}"));
                        if msgs.is_empty() && finishing {
                            return got;
                        }
                        for (r, contents) in msgs {
                            cursor = cursor.max(r + 1);
                            got.push((r, contents));
                        }
                    }
                    Ok((status, body)) => panic!("getmessages refused: {status} {body}"),
                    Err(_) => {
                        conn = None;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
            }
        }));
    }

    std::thread::sleep(plan.half);
    let mut relay = first;
    relay.0.kill().expect("SIGKILL the relay");
    relay.0.wait().expect("reap the relay");
    epoch.store(1, Ordering::SeqCst);
    let killed_at = Instant::now();
    let port_addr = *addr.lock().unwrap();
    let (second, again) = spawn_relay(bin, &port_addr.to_string(), data, &limits);
    assert_eq!(again, port_addr, "restarted on the same address");
    let restart = killed_at.elapsed();
    std::thread::sleep(plan.half);
    sending.store(false, Ordering::SeqCst);

    let mut out = Outcome {
        acks: Vec::new(),
        unknown: HashSet::new(),
        received: Vec::new(),
        stored: Vec::new(),
        sending: started.elapsed().saturating_sub(restart),
        total: Duration::ZERO,
        refused: Vec::new(),
    };
    for t in send_threads {
        let (acks, unknown, refused) = t.join().expect("a sender panicked");
        out.acks.extend(acks);
        out.unknown.extend(unknown);
        out.refused.extend(refused);
    }
    out.sending = started.elapsed().saturating_sub(restart);
    senders_done.store(true, Ordering::SeqCst);
    for t in recv_threads {
        out.received.push(t.join().expect("a receiver panicked"));
    }
    let mut c = Conn::connect(port_addr, Duration::from_secs(10)).expect("connect at the end");
    for m in 0..plan.mailboxes {
        let mut all = Vec::new();
        let mut start = 0;
        loop {
            let (status, body) = c
                .request(
                    "GET",
                    &format!(
                        "/getmessages?recipient_uid={}&start_ref={start}",
                        mailbox_name(m)
                    ),
                    None,
                    b"",
                )
                .expect("read a mailbox at the end");
            assert_eq!(status, 200, "{body}");
            let msgs = parse_messages(&body).expect("getmessages reply");
            if msgs.is_empty() {
                break;
            }
            start = msgs.last().map_or(start, |(r, _)| r + 1);
            all.extend(msgs);
        }
        out.stored.push(all);
    }
    drop(second);
    out.total = started.elapsed();
    out
}

impl Outcome {
    /// Panics, saying what, unless the run kept every promise.
    pub fn check(&self) {
        assert!(
            self.refused.is_empty(),
            "sends refused: {:?}",
            &self.refused[..self.refused.len().min(5)]
        );
        assert!(
            self.acks.iter().any(|a| a.epoch == 0) && self.acks.iter().any(|a| a.epoch == 1),
            "messages acknowledged both before and after the restart"
        );
        for (m, (got, stored)) in self.received.iter().zip(&self.stored).enumerate() {
            assert!(
                got.windows(2).all(|w| w[0].0 < w[1].0)
                    && stored.windows(2).all(|w| w[0].0 < w[1].0),
                "mailbox {m}: refs delivered in strictly increasing order"
            );
            // The receiver saw what is stored, in order; only a send whose
            // outcome its sender never learned (its connection died) may
            // have landed after the receiver's last look.
            let i = got.iter().zip(stored).take_while(|(a, b)| a == b).count();
            let late_ok = stored[i..].iter().all(|(_, c)| self.unknown.contains(c));
            if i != got.len() || !late_ok {
                panic!(
                    "mailbox {m}: the receiver saw {} messages, {} are stored; first \
                     difference at #{i}: saw {:?}, stored {:?}",
                    got.len(),
                    stored.len(),
                    got.get(i).map(|(r, c)| (r, &c[..c.len().min(12)])),
                    stored.get(i).map(|(r, c)| (r, &c[..c.len().min(12)])),
                );
            }
        }
        let mut seen: HashMap<&str, (usize, u64)> = HashMap::new();
        // Built from what is stored: the receivers saw all of it but late
        // unknowns (checked above).
        for (m, stored) in self.stored.iter().enumerate() {
            for (r, c) in stored {
                if let Some(first) = seen.insert(c, (m, *r)) {
                    panic!("{c:?} delivered twice: {first:?} and {:?}", (m, r));
                }
            }
        }
        for a in &self.acks {
            let at = seen.get(a.contents.as_str());
            assert_eq!(
                at,
                Some(&(a.mailbox, a.msg_ref)),
                "acknowledged {:?} (ref {}, mailbox {}) was delivered there",
                a.contents,
                a.msg_ref,
                a.mailbox
            );
        }
        let acked: HashSet<&str> = self.acks.iter().map(|a| a.contents.as_str()).collect();
        for c in seen.keys() {
            assert!(
                acked.contains(c) || self.unknown.contains(*c),
                "{c:?} delivered but never sent"
            );
        }
        let before = self.acks.iter().filter(|a| a.epoch == 0).map(|a| a.msg_ref);
        let after = self.acks.iter().filter(|a| a.epoch == 1).map(|a| a.msg_ref);
        let (max_before, min_after) = (before.max().unwrap(), after.min().unwrap());
        assert!(
            max_before < min_after,
            "refs after the restart ({min_after}..) are above those before (..{max_before})"
        );
    }

    /// Messages per second acknowledged, and p50/p99 send latency.
    pub fn figures(&self) -> (f64, Duration, Duration) {
        let lat: Vec<Duration> = self.acks.iter().map(|a| a.latency).collect();
        let f = otc_testkit::bench::Figures::of(self.acks.len(), self.sending, lat);
        (f.rate, f.p50, f.p99)
    }
}
