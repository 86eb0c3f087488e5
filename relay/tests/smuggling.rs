//! Request smuggling: a head whose framing another HTTP parser could read
//! differently (a proxy in front of the relay, say) is refused with 400 and
//! the connection closed, so the bytes after it never run as a second,
//! hidden request. The relay frames bodies by `Content-Length` only; these
//! heads hide a `Content-Length` or `Transfer-Encoding` from it.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::*;

/// Writes `bytes` on one connection, closes our side, and returns every
/// reply's status line in the order they came.
fn status_lines(addr: std::net::SocketAddr, bytes: &[u8]) -> Vec<String> {
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connecting to the relay at {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(bytes).expect("writing the request");
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .unwrap_or_else(|e| panic!("waiting 15 s for the relay to answer and close: {e}"));
    // A reply's body is not followed by a line break: find each status
    // line where it starts.
    let text = String::from_utf8_lossy(&raw).into_owned();
    text.match_indices("HTTP/1.1 ")
        .map(|(i, _)| text[i..].lines().next().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn heads_with_hidden_framing_are_refused_and_nothing_after_them_runs() {
    let (relay, _d) = start(|_| {});
    let a = relay.addr();
    // What a smuggler hides in the body: a request of its own.
    let hidden = "GET /getnextref?recipient_uid=victim HTTP/1.1\r\nHost: r\r\n\r\n";
    let n = hidden.len();
    for framing in [
        format!("Content-Length : {n}\r\n"),
        format!("Content-Length\t: {n}\r\n"),
        format!(" Content-Length: {n}\r\n"),
        "Transfer-Encoding : chunked\r\n".to_owned(),
        format!("X-A: 1\nContent-Length: {n}\r\n"),
        format!("X-A: 1\rContent-Length: {n}\r\n"),
        format!("Content-Length: +{n}\r\n"),
        format!("Content-Length: {n}\r\nContent-Length: +{n}\r\n"),
    ] {
        let req = format!("POST /send HTTP/1.1\r\nHost: r\r\n{framing}\r\n{hidden}");
        let lines = status_lines(a, req.as_bytes());
        assert!(
            lines.len() == 1 && lines[0].starts_with("HTTP/1.1 400 "),
            "{framing:?}: want one 400 and a close, got {lines:?}"
        );
    }
    // A plain request on a fresh connection is still served.
    assert_eq!(get(a, "/check").status, 200);
}
