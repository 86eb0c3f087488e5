//! Test helpers: a minimal HTTP/1.1 client over `TcpStream` (every read
//! bounded by a timeout) and a relay started on 127.0.0.1 port 0.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use otc_relay::{Config, Relay};

/// A reply: status and body.
pub struct Reply {
    pub status: u16,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("reply is not JSON ({e}): {}", self.body))
    }
}

/// Sends one request and reads the whole reply, giving up after `timeout`.
pub fn request_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    ctype: Option<&str>,
    body: &[u8],
    timeout: Duration,
) -> Reply {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connecting to the relay at {addr}: {e}"));
    s.set_read_timeout(Some(timeout)).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(c) = ctype {
        head.push_str(&format!("Content-Type: {c}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .unwrap_or_else(|e| panic!("waiting {timeout:?} for the reply to {method} {path}: {e}"));
    let text = String::from_utf8(raw).expect("reply is UTF-8");
    let (head, body) = text.split_once("\r\n\r\n").expect("reply has a header");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line");
    // tiny_http may answer chunked; our bodies are small and sent whole.
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Reply { status, body }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((len, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(len.trim(), 16).expect("chunk length");
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

pub fn get(addr: SocketAddr, path: &str) -> Reply {
    request_with(addr, "GET", path, None, b"", Duration::from_secs(10))
}

pub fn post_form(addr: SocketAddr, path: &str, body: &str) -> Reply {
    request_with(
        addr,
        "POST",
        path,
        Some("application/x-www-form-urlencoded"),
        body.as_bytes(),
        Duration::from_secs(10),
    )
}

pub fn post_json(addr: SocketAddr, path: &str, body: &str) -> Reply {
    request_with(
        addr,
        "POST",
        path,
        Some("application/json"),
        body.as_bytes(),
        Duration::from_secs(10),
    )
}

/// Sends `contents` from `from` to `to` (form-encoded), returns the ref.
pub fn send(addr: SocketAddr, from: &str, to: &str, contents: &str) -> u64 {
    let r = post_form(
        addr,
        "/send",
        &format!("sender_uid={from}&recipient_uid={to}&contents={contents}"),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["ref"].as_u64().expect("ref")
}

/// The contents of `who`'s messages from `start` on.
pub fn contents(addr: SocketAddr, who: &str, start: u64) -> Vec<String> {
    let r = get(
        addr,
        &format!("/getmessages?recipient_uid={who}&start_ref={start}"),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["contents"].as_str().expect("contents").to_owned())
        .collect()
}

/// A relay on 127.0.0.1:0 with a fresh data directory.
pub fn start(tweak: impl FnOnce(&mut Config)) -> (Relay, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::new("127.0.0.1:0", dir.path());
    tweak(&mut cfg);
    (Relay::start(cfg).expect("relay starts"), dir)
}

pub mod pg;

/// A relay on 127.0.0.1:0 keeping its messages in `server`'s database.
pub fn start_pg(server: &pg::PgServer, tweak: impl FnOnce(&mut Config)) -> Relay {
    let mut cfg = Config::new("127.0.0.1:0", "");
    cfg.database = Some(server.url());
    tweak(&mut cfg);
    Relay::start(cfg).expect("relay starts on PostgreSQL")
}
