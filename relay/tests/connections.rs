//! Idle connections cannot exhaust the relay: open connections are capped
//! in all and per client address (idle keep-alive ones included), each
//! refusal is a clear JSON error, and a client from another address is
//! still served. Loopback has many addresses: the hostile client connects
//! from 127.0.0.1, the normal one from 127.0.0.2.

mod common;

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

/// When every connection is busy (long polls), a newcomer gets 503, and is
/// served again once they end.
#[test]
fn the_total_cap_answers_503_when_all_are_busy() {
    let (relay, _d) = start(|c| {
        c.max_connections = 2;
        c.max_connections_per_ip = 100;
    });
    let a = relay.addr();
    let polls: Vec<_> = (0..2)
        .map(|_| {
            std::thread::spawn(move || {
                // The checks below may hold a slot for a moment: retry.
                for _ in 0..500 {
                    let r = request_with(
                        a,
                        "GET",
                        "/getmessages?recipient_uid=bob&start_ref=1&wait=4",
                        None,
                        b"",
                        Duration::from_secs(15),
                    );
                    if r.status != 503 {
                        return r;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                panic!("a long poll never got a slot in 500 tries");
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    let (status, body) = loop {
        let r = check_from(Ipv4Addr::new(127, 0, 0, 3), a, Duration::from_secs(10));
        if r.0 == 503 || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    is_json_error(status, &body, 503, "too many connections");
    for p in polls {
        assert_eq!(p.join().expect("a long poll").status, 200);
    }
    let (status, _) = check_from(Ipv4Addr::new(127, 0, 0, 3), a, Duration::from_secs(10));
    assert_eq!(status, 200);
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
