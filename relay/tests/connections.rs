//! Idle connections cannot exhaust the relay: open connections are capped
//! in all and per client address (idle keep-alive ones included), each
//! refusal is a clear JSON error, and a client from another address is
//! still served. Loopback has many addresses: the hostile client connects
//! from 127.0.0.1, the normal one from 127.0.0.2.

mod common;
#[path = "common/load.rs"]
mod load;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;

/// A connection from `from` (port chosen by the kernel) to `to`.
fn connect_from(from: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    s.bind(&SocketAddr::from((from, 0)).into())?;
    s.connect_timeout(&to.into(), Duration::from_secs(5))?;
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    Ok(s)
}

/// `GET path` on `s` with `Connection: close`: the status and body.
fn get_on(mut s: TcpStream, path: &str) -> std::io::Result<(u16, String)> {
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: r\r\nConnection: close\r\n\r\n"
    )?;
    read_reply(&mut s)
}

/// Reads until the relay closes. A refusal at the connection cap may end
/// in a reset after the reply (the relay closes without waiting for the
/// request): what arrived before it counts.
fn read_reply(s: &mut TcpStream) -> std::io::Result<(u16, String)> {
    let mut raw = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&chunk[..n]),
            Err(e) if raw.is_empty() || e.kind() != std::io::ErrorKind::ConnectionReset => {
                return Err(e);
            }
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|x| x.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    Ok((status, body))
}

/// `GET /check` from `from`, retried (bounded) until the relay answers.
fn check_from(from: Ipv4Addr, to: SocketAddr, within: Duration) -> (u16, String) {
    let deadline = Instant::now() + within;
    loop {
        let last = connect_from(from, to).and_then(|s| get_on(s, "/check"));
        match last {
            Ok((s, b)) if s != 0 => return (s, b),
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            other => panic!("no answer to /check from {from} within {within:?}: {other:?}"),
        }
    }
}

fn is_json_error(status: u16, body: &str, want: u16, words: &str) {
    assert_eq!(status, want, "{body}");
    let v: serde_json::Value = serde_json::from_str(body).expect("JSON error body");
    assert_eq!(v["error"], want);
    assert!(
        v["message"].as_str().unwrap_or("").contains(words),
        "{body}"
    );
}

#[test]
fn idle_connections_from_one_address_are_capped() {
    let (relay, _d) = start(|c| {
        c.max_connections = 64;
        c.max_connections_per_ip = 8;
    });
    let a = relay.addr();
    let local = Ipv4Addr::new(127, 0, 0, 1);
    // Hold 8 idle connections; wait until the relay has taken them all
    // (the 9th is refused).
    let mut idle: Vec<TcpStream> = (0..8)
        .map(|_| connect_from(local, a).expect("connect"))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    let (status, body) = loop {
        let s = connect_from(local, a).expect("connect");
        let r = get_on(s, "/check").expect("a reply, not a reset");
        if r.0 == 429 || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    is_json_error(status, &body, 429, "too many connections from 127.0.0.1");
    // Another address is served at once.
    let (status, body) = check_from(Ipv4Addr::new(127, 0, 0, 2), a, Duration::from_secs(10));
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
    // An idle connection closed frees its slot.
    idle.pop();
    let (status, _) = check_from(local, a, Duration::from_secs(10));
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut status = status;
    while status != 200 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        status = check_from(local, a, Duration::from_secs(10)).0;
    }
    assert_eq!(status, 200, "a freed slot is reused");
    drop(idle);
}

/// At the total cap, the connection idle the longest makes room: idle
/// connections from any number of addresses cannot lock a client out.
#[test]
fn at_the_total_cap_an_idle_connection_makes_room() {
    let (relay, _d) = start(|c| {
        c.max_connections = 4;
        c.max_connections_per_ip = 100;
    });
    let a = relay.addr();
    let mut idle: Vec<TcpStream> = (1..=4)
        .map(|i| connect_from(Ipv4Addr::new(127, 0, 0, 10 + i), a).expect("connect"))
        .collect();
    // Once they have been idle long enough, a newcomer is served.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = check_from(Ipv4Addr::new(127, 0, 0, 3), a, Duration::from_secs(10));
        if status == 200 {
            break;
        }
        is_json_error(status, &body, 503, "too many connections");
        assert!(Instant::now() < deadline, "a newcomer served within 10 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    // ... by closing one of the idle ones.
    let mut closed = 0;
    for s in &mut idle {
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut b = [0u8; 8];
        match s.read(&mut b) {
            Ok(0) => closed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => closed += 1,
            _ => {}
        }
    }
    assert!(closed >= 1, "an idle connection was closed to make room");
}

/// Sends the head of a long poll for `who` (wait 30 s) on a connection
/// from `from`, and does not read the reply.
fn park_from(from: Ipv4Addr, a: SocketAddr, who: &str) -> TcpStream {
    let mut s = connect_from(from, a).expect("connect");
    write!(
        s,
        "GET /getmessages?recipient_uid={who}&start_ref=1&wait=30 HTTP/1.1\r\nHost: r\r\n\r\n"
    )
    .expect("send a long poll");
    s
}

/// Waits (bounded) until `relay` has parked `n` long polls since its start.
fn until_parked(relay: &otc_relay::Relay, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while relay.long_polls_parked() < n {
        assert!(
            Instant::now() < deadline,
            "within 20 s the relay parked {n} long polls (it parked {})",
            relay.long_polls_parked()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// When every connection is busy with a request in hand (heads arriving
/// slowly), a newcomer gets 503, and is served again once they end.
#[test]
fn the_total_cap_answers_503_when_all_are_busy() {
    let (relay, _d) = start(|c| {
        c.max_connections = 2;
        c.max_connections_per_ip = 100;
        c.request_time = Duration::from_secs(3);
    });
    let a = relay.addr();
    // Two heads that never end: busy (not idle, not a long poll) until
    // their 408 at request_time.
    let mut slow: Vec<TcpStream> = (0..2)
        .map(|i| {
            let mut s = connect_from(Ipv4Addr::new(127, 0, 0, 20 + i), a).expect("connect");
            s.write_all(b"GET /check HTTP/1.1\r\nHost: r\r\n").unwrap();
            s
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(2);
    let (status, body) = loop {
        let r = check_from(Ipv4Addr::new(127, 0, 0, 3), a, Duration::from_secs(10));
        if r.0 == 503 || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    is_json_error(status, &body, 503, "too many connections");
    for s in &mut slow {
        let (status, _) = read_reply(s).expect("the slow head's reply");
        assert_eq!(status, 408);
    }
    // The slots come back a moment after the 408s (the relay lingers
    // 100 ms after its FIN).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, body) = check_from(Ipv4Addr::new(127, 0, 0, 3), a, Duration::from_secs(10));
        if status == 200 {
            break;
        }
        is_json_error(status, &body, 503, "too many connections");
        assert!(
            Instant::now() < deadline,
            "served again within 5 s of the 408s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Issue 23, part 5: long polls from many addresses cannot fill the
/// relay. 300 long polls (wait=30) from 10 addresses, 30 each (under the
/// per-address connection cap of 32), against the default caps (256
/// connections): a fresh address's send, short poll and check are all
/// answered; a long poll ended early to make room is answered (200, no
/// messages), never refused.
#[test]
fn long_polls_from_many_addresses_leave_room_for_sends_and_short_polls() {
    let (relay, _d) = start(|c| {
        c.rate = 100_000.0;
        c.burst = 100_000.0;
    });
    let a = relay.addr();
    let mut polls = Vec::new();
    for host in 0..10u8 {
        for _ in 0..30 {
            polls.push(park_from(Ipv4Addr::new(127, 0, 1, host + 1), a, "victim"));
        }
    }
    // The relay has seen them all (each parked, or ended to make room).
    until_parked(&relay, 200);
    let fresh = Ipv4Addr::new(127, 0, 2, 1);
    let t = Instant::now();
    let sent = connect_from(fresh, a)
        .and_then(|mut s| {
            let body = "sender_uid=alice&recipient_uid=bob&contents=aGk%3D";
            write!(
                s,
                "POST /send HTTP/1.1\r\nHost: r\r\nConnection: close\r\n\
                 Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )?;
            read_reply(&mut s)
        })
        .expect("the fresh client's send is answered");
    let send_time = t.elapsed();
    assert_eq!(
        sent.0, 200,
        "a fresh client's /send during the flood: {}",
        sent.1
    );
    let t = Instant::now();
    let short = connect_from(fresh, a)
        .and_then(|s| get_on(s, "/getmessages?recipient_uid=bob&start_ref=1"))
        .expect("the fresh client's short poll is answered");
    let poll_time = t.elapsed();
    assert_eq!(short.0, 200, "{}", short.1);
    assert!(short.1.contains("aGk="), "{}", short.1);
    let (status, _) = check_from(fresh, a, Duration::from_secs(10));
    assert_eq!(status, 200);
    eprintln!(
        "during 300 long polls from 10 addresses: a fresh /send answered in {send_time:?}, \
         a short /getmessages in {poll_time:?}"
    );
    // Every long poll ended early was answered, not refused.
    let mut answered = 0;
    for s in &mut polls {
        s.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
        let mut b = [0u8; 12];
        if let Ok(n) = s.read(&mut b)
            && n > 0
        {
            assert!(
                b.starts_with(b"HTTP/1.1 200"),
                "{:?}",
                String::from_utf8_lossy(&b[..n])
            );
            answered += 1;
        }
    }
    assert!(
        answered >= 100,
        "polls over the waiter caps were answered early: {answered}"
    );
}

/// Issue 23, part 5: a long poll whose client closes (FIN) or resets
/// (RST) is let go at once, not held for the rest of its wait.
#[test]
fn a_long_poll_whose_client_goes_away_is_let_go_at_once() {
    let (relay, _d) = start(|c| {
        c.max_connections = 16;
    });
    let a = relay.addr();
    let polls: Vec<TcpStream> = (0..8)
        .map(|i| park_from(Ipv4Addr::new(127, 0, 0, 30 + i), a, "carol"))
        .collect();
    until_parked(&relay, 8);
    assert_eq!(relay.open_connections(), 8);
    let t = Instant::now();
    for (i, s) in polls.into_iter().enumerate() {
        if i % 2 == 0 {
            // RST: close with unread data... none here, so linger 0.
            socket2::SockRef::from(&s)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
        }
        drop(s);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while relay.open_connections() > 0 {
        assert!(
            Instant::now() < deadline,
            "5 s after their clients went away, {} of 8 long polls (wait=30) still hold a connection",
            relay.open_connections()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    eprintln!(
        "8 long polls whose clients went away were let go in {:?}",
        t.elapsed()
    );
}

/// Issue 23, part 5: long polls from one address are capped apart
/// (`max_waiters_per_ip`): one more ends that address's oldest early
/// (answered, empty), and the rest still get the message when it comes.
#[test]
fn long_polls_over_the_per_address_cap_end_the_oldest_early() {
    let (relay, _d) = start(|c| {
        c.max_waiters_per_ip = 4;
        c.rate = 100_000.0;
        c.burst = 100_000.0;
    });
    let a = relay.addr();
    let from = Ipv4Addr::new(127, 0, 0, 40);
    let mut polls = Vec::new();
    for i in 0..6 {
        polls.push(park_from(from, a, "dave"));
        until_parked(&relay, i + 1);
    }
    // The two oldest were answered early, with nothing.
    for s in &mut polls[..2] {
        let (status, body) = read_reply_head_and_body(s);
        assert_eq!(status, 200);
        assert!(body.contains(r#""count":0"#), "{body}");
    }
    let sent = post_form(
        a,
        "/send",
        "sender_uid=erin&recipient_uid=dave&contents=aGk%3D",
    );
    assert_eq!(sent.status, 200, "{}", sent.body);
    for s in &mut polls[2..] {
        let (status, body) = read_reply_head_and_body(s);
        assert_eq!(status, 200);
        assert!(
            body.contains("aGk="),
            "the four kept polls get the message: {body}"
        );
    }
}

/// Reads one reply (head and a Content-Length body) without waiting for
/// the connection to close (bounded by the socket's read timeout).
fn read_reply_head_and_body(s: &mut TcpStream) -> (u16, String) {
    let mut raw = Vec::new();
    let mut b = [0u8; 4096];
    loop {
        let n = s.read(&mut b).expect("a reply within the read timeout");
        assert!(
            n > 0,
            "closed before a whole reply: {:?}",
            String::from_utf8_lossy(&raw)
        );
        raw.extend_from_slice(&b[..n]);
        let text = String::from_utf8_lossy(&raw).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap_or(0))
                })
                .unwrap_or(0);
            if body.len() >= len {
                let status = head
                    .split(' ')
                    .nth(1)
                    .and_then(|x| x.parse().ok())
                    .unwrap_or(0);
                return (status, body.to_owned());
            }
        }
    }
}

/// The real binary with only 64 file descriptors: a client opening 200
/// idle connections must not stop it serving others (tiny_http's accept
/// thread stopped for good at the first EMFILE).
#[test]
fn running_out_of_file_descriptors_does_not_stop_the_relay() {
    let dir = tempfile::tempdir().unwrap();
    let script = format!(
        "ulimit -n 64 && exec '{}' --listen 127.0.0.1:0 --data '{}' --max-connections-per-ip 8",
        env!("CARGO_BIN_EXE_otc-relay"),
        dir.path().display()
    );
    let mut child = std::process::Command::new("sh")
        .args(["-c", &script])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("sh starts the relay");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let out = child.stdout.take().expect("stdout");
    let child = Kill(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("within 20 s, otc-relay prints its address");
    let a: SocketAddr = line
        .trim()
        .rsplit("http://")
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    let local = Ipv4Addr::new(127, 0, 0, 1);
    let idle: Vec<TcpStream> = (0..200)
        .filter_map(|_| connect_from(local, a).ok())
        .collect();
    assert!(idle.len() > 64, "opened {} connections", idle.len());
    let (status, body) = check_from(Ipv4Addr::new(127, 0, 0, 2), a, Duration::from_secs(15));
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
    drop(idle);
    drop(child);
}

/// An idle connection is closed, which frees its slot; a request that
/// trickles in (slowloris) is cut off with 408.
#[test]
fn idle_and_slow_connections_are_closed() {
    let (relay, _d) = start(|c| {
        c.idle = Duration::from_millis(300);
        c.request_time = Duration::from_millis(300);
        c.max_connections_per_ip = 1;
    });
    let a = relay.addr();
    let local = Ipv4Addr::new(127, 0, 0, 1);
    let mut idle = connect_from(local, a).expect("connect");
    let t = Instant::now();
    let mut buf = [0u8; 64];
    let n = idle.read(&mut buf).expect("closed, not timed out (10 s)");
    assert_eq!(n, 0, "an idle connection is closed without a reply");
    assert!(t.elapsed() < Duration::from_secs(10));
    // Its slot is free again (the one connection this address may have;
    // the relay frees it just after closing, so allow it a moment).
    let deadline = Instant::now() + Duration::from_secs(10);
    while check_from(local, a, Duration::from_secs(10)).0 != 200 {
        assert!(Instant::now() < deadline, "the slot is freed within 10 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut slow = connect_from(local, a).expect("connect");
    slow.write_all(b"GET /check HTTP/1.1\r\nHost: r\r\n")
        .unwrap();
    let (status, body) = read_reply(&mut slow).expect("a reply");
    is_json_error(status, &body, 408, "did not arrive whole in time");
}

/// A burst of connections larger than std's listen queue (128) waits in
/// the kernel's queue while the relay is not accepting, instead of having
/// its SYNs dropped (and retried 1 s, 3 s later): with the relay stopped
/// (SIGSTOP), 400 connections from 127.0.0.3 all complete their handshake,
/// and once it runs again, a request on the last one is answered. (The
/// kernel caps the queue at net.core.somaxconn, 4096 since Linux 5.4.)
#[test]
fn a_burst_of_connections_waits_in_the_listen_queue() {
    let dir = tempfile::tempdir().unwrap();
    // SIGKILL at the end ends it even while stopped.
    let (child, a) = load::spawn_relay(
        env!("CARGO_BIN_EXE_otc-relay"),
        "127.0.0.1:0",
        dir.path(),
        &[
            "--max-connections",
            "1000",
            "--max-connections-per-ip",
            "1000",
        ],
    );
    let signal = |sig: &str| {
        let ok = std::process::Command::new("kill")
            .args([sig, &child.0.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {sig} the relay");
    };
    signal("-STOP");
    let from = Ipv4Addr::new(127, 0, 0, 3);
    let mut done = Vec::new();
    for i in 0..400 {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.bind(&SocketAddr::from((from, 0)).into()).unwrap();
        // A handshake the queue takes completes at once; a dropped SYN
        // would be retried only after a second.
        if let Err(e) = s.connect_timeout(&a.into(), Duration::from_millis(500)) {
            panic!("connection {i} of 400 was not queued while the relay was stopped: {e}");
        }
        done.push(TcpStream::from(s));
    }
    signal("-CONT");
    let last = done.pop().unwrap();
    last.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let (status, body) = get_on(last, "/getmessages?recipient_uid=bob&start_ref=0")
        .expect("the last queued connection is served once the relay runs");
    assert_eq!(status, 200, "{body}");
}
