//! A stand-in for the original One Time Chat relay (`server/server.py`,
//! report section 6.5), written from its API table, to show that our
//! programs work with the original ones.
//!
//! It is deliberately as plain as the original: one table of messages with
//! one global, increasing ref (so one recipient's refs have gaps, as with
//! the original's single SQL table), `POST /send` form-encoded only,
//! `GET /getmessages` answering at once (no long poll: a `wait` parameter
//! is ignored, as the original ignores unknown parameters), no limits, no
//! persistence. One thread per connection, `Connection: close`.
//!
//! | request | reply |
//! |---|---|
//! | `GET /check` | `{"status":"ok"}` |
//! | `POST /send` (form: `sender_uid`, `recipient_uid`, `contents`) | `{"received":true,"echo_tail":LAST_10_CHARS,"ref":N}` |
//! | `GET /getmessages?recipient_uid=..&start_ref=..[&maxcount=..]` | `{"recipient_uid","count","messages":[{"ref","recipient_uid","sender_uid","contents"}],"complete"}` |
//! | `GET /getnextref?recipient_uid=..` | `{"nextref":N}` |
//! | anything else | `{"error":STATUS,"message":TEXT}` with that 4xx status |
//!
//! Replies are written as Python's `json.dumps` writes them (keys in the
//! order the original builds its dicts, `", "` and `": "` separators,
//! non-ASCII escaped), by hand rather than through our wire types, so that a
//! mistake in those cannot hide here.
//!
//! It records every request line it served ([`Relay::requests`]) so a test
//! can show which endpoints a client used.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

#[derive(Default)]
struct Table {
    /// (ref, recipient, sender, contents), refs increasing from 1.
    rows: Vec<(u64, String, String, String)>,
    requests: Vec<String>,
}

/// A running stand-in original relay on 127.0.0.1. Stopped on drop.
pub struct Relay {
    pub addr: SocketAddr,
    table: Arc<Mutex<Table>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Relay {
    pub fn start() -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the stand-in relay");
        let addr = listener.local_addr().expect("its address");
        listener.set_nonblocking(true).expect("non-blocking accept");
        let table = Arc::new(Mutex::new(Table::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let (table, stop) = (table.clone(), stop.clone());
            move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((s, _)) => {
                            let table = table.clone();
                            std::thread::spawn(move || serve(s, &table));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(2)),
                    }
                }
            }
        });
        Relay {
            addr,
            table,
            stop,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The request lines served so far (`GET /check`, `POST /send`, ...,
    /// without the query string).
    pub fn requests(&self) -> Vec<String> {
        self.table.lock().expect("table").requests.clone()
    }

    /// Every stored message: (ref, recipient, sender, contents).
    pub fn messages(&self) -> Vec<(u64, String, String, String)> {
        self.table.lock().expect("table").rows.clone()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(s: TcpStream, table: &Mutex<Table>) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = s.set_nonblocking(false);
    let mut out = match s.try_clone() {
        Ok(o) => o,
        Err(_) => return,
    };
    let mut r = BufReader::new(s);
    let mut line = String::new();
    if r.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let mut length = 0usize;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.trim().eq_ignore_ascii_case("content-length")
        {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length.min(1 << 20)];
    if r.read_exact(&mut body).is_err() {
        return;
    }
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let (status, reply) = answer(
        &method,
        path,
        &form(query),
        &form(&String::from_utf8_lossy(&body)),
        table,
    );
    let _ = write!(
        out,
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{reply}",
        if status == 200 { "OK" } else { "Bad Request" },
        reply.len()
    );
}

fn answer(
    method: &str,
    path: &str,
    query: &[(String, String)],
    form: &[(String, String)],
    table: &Mutex<Table>,
) -> (u16, String) {
    let get = |from: &[(String, String)], k: &str| {
        from.iter()
            .find(|(name, _)| name == k)
            .map(|(_, v)| v.clone())
    };
    let err = |status: u16, m: &str| {
        (
            status,
            format!(r#"{{"error": {status}, "message": {}}}"#, q(m)),
        )
    };
    let mut t = table.lock().expect("table");
    t.requests.push(format!("{method} {path}"));
    match (method, path) {
        ("GET", "/check") => (200, r#"{"status": "ok"}"#.to_string()),
        ("POST", "/send") => {
            let (Some(s), Some(r), Some(c)) = (
                get(form, "sender_uid"),
                get(form, "recipient_uid"),
                get(form, "contents"),
            ) else {
                return err(400, "sender_uid, recipient_uid and contents are required");
            };
            let r#ref = t.rows.last().map_or(1, |row| row.0 + 1);
            let tail: String = c
                .chars()
                .rev()
                .take(10)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            t.rows.push((r#ref, r, s, c));
            (
                200,
                format!(
                    r#"{{"received": true, "echo_tail": {}, "ref": {}}}"#,
                    q(&tail),
                    r#ref
                ),
            )
        }
        ("GET", "/getmessages") => {
            let Some(who) = get(query, "recipient_uid") else {
                return err(400, "recipient_uid is required");
            };
            let start: u64 = match get(query, "start_ref").map(|v| v.parse()) {
                Some(Ok(n)) => n,
                _ => return err(400, "start_ref must be a number"),
            };
            let max: usize = get(query, "maxcount")
                .and_then(|v| v.parse().ok())
                .unwrap_or(usize::MAX);
            let all: Vec<String> = t
                .rows
                .iter()
                .filter(|row| row.1 == who && row.0 >= start)
                .map(|row| {
                    format!(
                        r#"{{"ref": {}, "recipient_uid": {}, "sender_uid": {}, "contents": {}}}"#,
                        row.0,
                        q(&row.1),
                        q(&row.2),
                        q(&row.3)
                    )
                })
                .collect();
            let complete = all.len() <= max;
            let messages: Vec<String> = all.into_iter().take(max).collect();
            (
                200,
                format!(
                    r#"{{"recipient_uid": {}, "count": {}, "messages": [{}], "complete": {}}}"#,
                    q(&who),
                    messages.len(),
                    messages.join(", "),
                    if complete { "true" } else { "false" }
                ),
            )
        }
        ("GET", "/getnextref") => {
            if get(query, "recipient_uid").is_none() {
                return err(400, "recipient_uid is required");
            }
            (
                200,
                format!(
                    r#"{{"nextref": {}}}"#,
                    t.rows.last().map_or(1, |row| row.0 + 1)
                ),
            )
        }
        _ => err(404, "no such endpoint"),
    }
}

/// A JSON string literal, escaped as Python's `json.dumps` does by default
/// (non-ASCII as `\uXXXX`).
fn q(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7f => {
                let mut buf = [0u16; 2];
                for u in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{:04x}", u));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `a=1&b=x+y%21` as pairs, `+` and `%XX` decoded.
fn form(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'+', _, _) => out.push(b' '),
            (b'%', Some(hi), Some(lo)) => {
                out.push(hi << 4 | lo);
                i += 2;
            }
            (c, _, _) => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
