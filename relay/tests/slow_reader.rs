//! A client that asks for a large reply and then takes it a trickle at a
//! time must not hold its connection (and a thread) for as long as it
//! likes: the reply must be taken at `http::MIN_TAKEN` bytes per
//! `http::WRITE_TIME` or faster. Before, the write timeout was per `write`
//! call, so a reader taking 1 KiB every third of a second kept a 6 MB
//! reply's connection open for many minutes.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;

#[test]
fn a_slow_reader_is_cut_off_after_the_write_deadline() {
    // One connection per address: while the slow reader holds it, a second
    // connection from the same address is refused (429).
    let (relay, _d) = start(|c| c.max_connections_per_ip = 1);
    let a = relay.addr();
    let big = "A".repeat(60_000);
    for _ in 0..100 {
        send(a, "alice", "victim", &big);
    }
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.set_recv_buffer_size(4096).unwrap();
    s.connect_timeout(&a.into(), Duration::from_secs(5))
        .expect("connect");
    let mut slow: TcpStream = s.into();
    slow.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    write!(
        slow,
        "GET /getmessages?recipient_uid=victim&start_ref=0&maxcount=100 HTTP/1.1\r\nHost: r\r\n\r\n"
    )
    .unwrap();
    let probe = |addr: SocketAddr| -> bool {
        let Ok(mut p) = TcpStream::connect_timeout(&addr, Duration::from_secs(5)) else {
            return false;
        };
        let _ = p.set_read_timeout(Some(Duration::from_secs(5)));
        if write!(
            p,
            "GET /check HTTP/1.1\r\nHost: r\r\nConnection: close\r\n\r\n"
        )
        .is_err()
        {
            return false;
        }
        let mut out = Vec::new();
        let _ = p.read_to_end(&mut out);
        out.starts_with(b"HTTP/1.1 200 ")
    };
    let started = Instant::now();
    let mut taken = 0usize;
    let mut chunk = [0u8; 1024];
    loop {
        // A trickle: 1 KiB about every third of a second.
        if let Ok(n) = slow.read(&mut chunk) {
            taken += n;
        }
        std::thread::sleep(Duration::from_millis(300));
        if probe(a) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the relay still held a slow reader's connection after 60 s ({taken} bytes taken)"
        );
    }
}
