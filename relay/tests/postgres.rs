//! `--database postgres://…` against a real PostgreSQL server
//! (`common::pg`): several relay processes on one database, SIGKILL, and
//! the database restarting in the middle of sends.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use common::pg::PgServer;
use common::*;

/// A relay process, SIGKILLed on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `otc-relay --database URL` on port 0 and reads its address.
fn spawn(url: &str) -> (Running, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_otc-relay"))
        .args(["--listen", "127.0.0.1:0", "--database", url])
        .args(["--rate", "1000000", "--burst", "1000000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("otc-relay starts");
    let out = child.stdout.take().expect("stdout");
    let running = Running(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(out).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("within 30 s, otc-relay prints the address it listens on");
    let addr = line
        .trim()
        .rsplit("http://")
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    (running, addr)
}

/// Every message of `who` as (ref, contents), page by page (the relay
/// hands out at most 100 at a time), each page retried for up to 30 s
/// while the relay answers anything but 200 (it may be reconnecting).
fn all_of(a: SocketAddr, who: &str) -> Vec<(u64, String)> {
    let mut out: Vec<(u64, String)> = Vec::new();
    loop {
        let start = out.last().map_or(0, |m| m.0 + 1);
        let deadline = Instant::now() + Duration::from_secs(30);
        let r = loop {
            let r = get(
                a,
                &format!("/getmessages?recipient_uid={who}&start_ref={start}"),
            );
            if r.status == 200 {
                break r;
            }
            assert!(
                Instant::now() < deadline,
                "gave up after 30 s waiting for /getmessages to answer 200; last: {} {}",
                r.status,
                r.body
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        let j = r.json();
        out.extend(j["messages"].as_array().unwrap().iter().map(|m| {
            (
                m["ref"].as_u64().unwrap(),
                m["contents"].as_str().unwrap().to_owned(),
            )
        }));
        if j["complete"] == true {
            return out;
        }
    }
}

/// One sender's acknowledged (ref, contents) and refusals (status, body).
type Outcome = (Vec<(u64, String)>, Vec<(u16, String)>);

/// Sends from `threads` threads until `stop`; every acknowledged
/// (ref, contents) and every refusal (status, body).
fn sending(
    a: SocketAddr,
    threads: usize,
    stop: Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<Outcome>> {
    (0..threads)
        .map(|t| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let (mut acked, mut refused) = (Vec::new(), Vec::new());
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    let c = format!("T{t}M{i}");
                    i += 1;
                    // A connection the relay's kill cut is neither.
                    let Ok(r) = std::panic::catch_unwind(|| {
                        post_form(
                            a,
                            "/send",
                            &format!("sender_uid=s{t}&recipient_uid=bob&contents={c}"),
                        )
                    }) else {
                        continue;
                    };
                    if r.status == 200 {
                        acked.push((r.json()["ref"].as_u64().unwrap(), c));
                    } else {
                        refused.push((r.status, r.body));
                    }
                }
                (acked, refused)
            })
        })
        .collect()
}

/// Waits (up to `secs`) until `f` holds, naming `what` if it never does.
fn until(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(
            Instant::now() < deadline,
            "gave up after {secs} s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn tables_are_in_the_database() {
    let server = PgServer::start();
    let relay = start_pg(&server, |_| {});
    assert_eq!(send(relay.addr(), "alice", "bob", "QUJD"), 1);
    assert_eq!(
        server.sql("SELECT ref, recipient, sender, contents FROM messages"),
        "1|bob|alice|QUJD"
    );
    assert_eq!(server.sql("SELECT v FROM meta WHERE k = 'next_ref'"), "2");
}

/// Two relays on one database: a long poll on one is woken by a send on
/// the other (LISTEN/NOTIFY), a resend on the other gets the first ref,
/// and concurrent sends on both get distinct
/// refs, increasing for each sender, all visible on both in ref order.
#[test]
fn two_processes_share_refs_and_wake_each_others_long_polls() {
    let server = PgServer::start();
    let (_proc, a) = spawn(&server.url());
    let b_relay = start_pg(&server, |c| {
        c.rate = 1e6;
        c.burst = 1e6;
    });
    let b = b_relay.addr();
    let poll = std::thread::spawn(move || {
        request_with(
            b,
            "GET",
            "/getmessages?recipient_uid=carol&start_ref=0&wait=30",
            None,
            b"",
            Duration::from_secs(40),
        )
    });
    until(20, "the long poll on relay B to park", || {
        b_relay.long_polls_parked() >= 1
    });
    let r = send(a, "alice", "carol", "RlJPTUE=");
    let got = poll.join().unwrap();
    assert_eq!(got.status, 200);
    assert_eq!(got.json()["messages"][0]["ref"], r, "{}", got.body);
    assert_eq!(got.json()["messages"][0]["contents"], "RlJPTUE=");
    // A resend through the other process gets the ref it already has.
    assert_eq!(send(b, "alice", "carol", "RlJPTUE="), r, "resend on B");
    assert_eq!(all_of(b, "carol").len(), 1, "the resend was stored again");

    let acked = Arc::new(Mutex::new(Vec::new()));
    let senders: Vec<_> = [a, b, a, b]
        .into_iter()
        .enumerate()
        .map(|(t, addr)| {
            let acked = acked.clone();
            std::thread::spawn(move || {
                let mut mine: Vec<u64> = Vec::new();
                for i in 0..40 {
                    let c = format!("T{t}M{i}");
                    let r = send(addr, &format!("s{t}"), "bob", &c);
                    if let Some(last) = mine.last() {
                        assert!(r > *last, "sender {t}: ref {r} after {last}");
                    }
                    mine.push(r);
                    acked.lock().unwrap().push((r, c));
                }
            })
        })
        .collect();
    for s in senders {
        s.join().unwrap();
    }
    let mut acked = acked.lock().unwrap().clone();
    acked.sort();
    let refs: Vec<u64> = acked.iter().map(|x| x.0).collect();
    let mut distinct = refs.clone();
    distinct.dedup();
    assert_eq!(distinct.len(), 160, "refs reused: {refs:?}");
    assert!(refs[0] > r, "refs went back below {r}: {refs:?}");
    assert_eq!(all_of(a, "bob"), acked, "relay A's view");
    assert_eq!(all_of(b, "bob"), acked, "relay B's view");
    let next_a = get(a, "/getnextref?recipient_uid=bob").json()["nextref"]
        .as_u64()
        .unwrap();
    assert!(
        next_a > *refs.last().unwrap(),
        "A's nextref {next_a} is behind"
    );
}

/// SIGKILL in the middle of concurrent sends: everything acknowledged is
/// there, under its ref, for the next relay process.
#[test]
fn no_acknowledged_message_lost_across_sigkill() {
    let server = PgServer::start();
    let (mut proc, a) = spawn(&server.url());
    let stop = Arc::new(AtomicBool::new(false));
    let senders = sending(a, 4, stop.clone());
    until(30, "200 messages in the database", || {
        server
            .sql("SELECT COUNT(*) FROM messages")
            .parse::<u64>()
            .unwrap()
            >= 200
    });
    proc.0.kill().expect("SIGKILL the relay");
    let _ = proc.0.wait();
    stop.store(true, Ordering::SeqCst);
    let mut acked = Vec::new();
    for s in senders {
        acked.extend(s.join().unwrap().0);
    }
    assert!(acked.len() >= 100, "only {} acknowledged", acked.len());
    let (_proc2, a2) = spawn(&server.url());
    let kept = all_of(a2, "bob");
    for m in &acked {
        assert!(kept.contains(m), "acknowledged {m:?} is lost");
    }
    let next = send(a2, "zed", "bob", "AFTER");
    assert!(next > kept.last().unwrap().0, "ref {next} reused");
}

/// PostgreSQL stops in the middle of sends: sends meanwhile are refused
/// with a 507 naming it; once it is back, sends work again on the same
/// relay process, and nothing acknowledged, before or after, is lost.
#[test]
fn a_postgres_restart_mid_sends_loses_nothing_acknowledged() {
    let server = PgServer::start();
    let (_proc, a) = spawn(&server.url());
    let stop = Arc::new(AtomicBool::new(false));
    let senders = sending(a, 2, stop.clone());
    until(30, "100 messages in the database", || {
        server
            .sql("SELECT COUNT(*) FROM messages")
            .parse::<u64>()
            .unwrap()
            >= 100
    });
    server.pg_ctl_stop();
    // While it is down, a send is refused and says why.
    let r = post_form(
        a,
        "/send",
        "sender_uid=x&recipient_uid=bob&contents=RE9XTg==",
    );
    assert_eq!(r.status, 507, "{}", r.body);
    assert!(r.body.contains("PostgreSQL at 127.0.0.1"), "{}", r.body);
    assert!(r.body.contains("not stored"), "{}", r.body);
    server.pg_ctl_start();
    let before = server
        .sql("SELECT COUNT(*) FROM messages")
        .parse::<u64>()
        .unwrap();
    until(30, "100 more messages after the restart", || {
        server
            .sql("SELECT COUNT(*) FROM messages")
            .parse::<u64>()
            .unwrap()
            >= before + 100
    });
    stop.store(true, Ordering::SeqCst);
    let mut acked = Vec::new();
    let mut refused = Vec::new();
    for s in senders {
        let (a, r) = s.join().unwrap();
        // One sender's refs only ever increase.
        assert!(a.windows(2).all(|w| w[0].0 < w[1].0), "{a:?}");
        acked.extend(a);
        refused.extend(r);
    }
    for (status, body) in &refused {
        assert_eq!(*status, 507, "{body}");
    }
    let kept = all_of(a, "bob");
    for m in &acked {
        assert!(kept.contains(m), "acknowledged {m:?} is lost");
    }
    assert!(
        !kept.iter().any(|m| m.1 == "RE9XTg=="),
        "a refused send was stored"
    );
}

/// Issue 23, part 1 on PostgreSQL: `--max-bytes` is one budget for every
/// relay process on the database (the count is a row in `meta`, updated
/// under the same lock as the next ref), kept across restarts.
#[test]
fn two_processes_share_one_byte_budget() {
    let server = PgServer::start();
    let contents = "QUJD".repeat(2_500); // 10,000 bytes
    let each = otc_relay::message_bytes("alice", "bob", &contents);
    let budget = 10 * each + each / 2; // room for ten
    let tweak = |c: &mut otc_relay::Config| {
        c.max_bytes = budget;
        c.rate = 100_000.0;
        c.burst = 100_000.0;
    };
    let one = start_pg(&server, tweak);
    let two = start_pg(&server, tweak);
    let mut stored = 0;
    let mut refused = None;
    for i in 0..20 {
        let a = if i % 2 == 0 { one.addr() } else { two.addr() };
        let body = format!("sender_uid=alice&recipient_uid=bob&contents={contents}{i:04}");
        let r = post_form(a, "/send", &body);
        match r.status {
            200 => stored += 1,
            507 => refused = Some(r),
            s => panic!("{s}: {}", r.body),
        }
    }
    // Contents are 4 bytes longer than `each` counted: ten still fit.
    assert_eq!(
        stored, 10,
        "ten messages fit the shared budget, across both processes"
    );
    let r = refused.expect("a 507");
    assert!(r.body.contains("the relay is full"), "{}", r.body);
    let in_db: i64 = server
        .sql("SELECT v FROM meta WHERE k = 'stored_bytes'")
        .trim()
        .parse()
        .expect("the count in meta");
    assert_eq!(in_db as u64, 10 * (each + 4));
    drop(one);
    drop(two);
    let again = start_pg(&server, tweak);
    let r = post_form(
        again.addr(),
        "/send",
        &format!("sender_uid=alice&recipient_uid=bob&contents={contents}late"),
    );
    assert_eq!(
        r.status, 507,
        "the budget holds after a restart: {}",
        r.body
    );
}
