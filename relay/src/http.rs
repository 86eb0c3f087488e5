//! The relay's HTTP/1.1 front: our own accept loop, connection caps,
//! deadlines, and the only code that reads a client's bytes (parsing is in
//! [`crate::parse`], pure and fuzzed).
//!
//! Why not tiny_http, which the relay used first: it starts a thread for
//! every connection and keeps it for as long as the client keeps the
//! connection open, idle or not, with no read timeout; it stops accepting
//! for good after one `accept` error (a hostile client that opens
//! connections up to the file limit stopped the relay for everyone); and
//! under many concurrent keep-alive connections its pool can leave a new
//! connection unserved until another closes (seen in the load test: a
//! sender's first request waited seconds). Here:
//!
//! - **Open connections are bounded**, idle ones included: at most
//!   `max_connections_per_ip` from one address (one more: 429; IPv6
//!   addresses count by /64, which one host usually has whole) and
//!   `max_connections` in all. At the total cap, the connection idle the
//!   longest (waiting for a request, for at least [`EVICT_AFTER`]) is
//!   closed to make room; only when none is, a new one is answered 503.
//!   So idle connections, from however many addresses, never lock a
//!   client out. One thread per open connection: threads are bounded too.
//! - **Idle connections are closed**: no first byte of a request within
//!   [`IDLE`] (closed without a word); a request (head and body) must
//!   arrive whole within [`REQUEST_TIME`] of its first byte (408); a reply
//!   must be taken at [`MIN_TAKEN`] bytes per [`WRITE_TIME`] or faster
//!   (the socket timeout alone is per `write`: a reader taking a trickle
//!   at a time held its connection for as long as it liked).
//! - **Heads and bodies are bounded before they are read**: head at most
//!   [`crate::parse::MAX_HEAD_BYTES`] (431), body at most the message limit
//!   plus 4 KiB, checked on `Content-Length` (413). A refused body is not
//!   read, and the connection is closed.
//! - `accept` errors (out of file descriptors, say) are logged, waited out
//!   briefly, and never stop the loop.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::parse::{self, Head, MAX_HEAD_BYTES, Refusal};
use crate::{Shared, lock};

/// How long an open connection may wait for the first byte of a request
/// (the default of [`crate::Config::idle`]).
pub const IDLE: Duration = Duration::from_secs(30);
/// How long a request may take to arrive whole, from its first byte (the
/// default of [`crate::Config::request_time`]).
pub const REQUEST_TIME: Duration = Duration::from_secs(10);
/// How long writing one reply may take.
pub const WRITE_TIME: Duration = Duration::from_secs(10);

/// A client must take at least this much of a reply per [`WRITE_TIME`]
/// (about 26 kB/s), so that a slow link still gets a large
/// `/getmessages` reply and a trickling reader does not hold a thread.
pub const MIN_TAKEN: usize = 256 * 1024;

/// An idle connection may be closed to make room after this long.
pub const EVICT_AFTER: Duration = Duration::from_secs(1);

/// The open connections, for the caps and for closing them at stop.
#[derive(Default)]
pub(crate) struct Conns {
    next_id: u64,
    open: HashMap<u64, Open>,
    per_ip: HashMap<IpAddr, usize>,
}

struct Open {
    stream: TcpStream,
    /// Since when it has been waiting for a request (`None`: busy, or
    /// already being closed).
    idle_since: Option<Instant>,
}

/// The address a client is counted under: IPv4 as is, IPv6 by its /64
/// (IPv4-mapped IPv6 as IPv4).
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

fn shown(key: IpAddr) -> String {
    match key {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("{a}/64"),
    }
}

impl Conns {
    /// How many connections are open.
    pub(crate) fn open_count(&self) -> usize {
        self.open.len()
    }

    /// Shuts every open connection (their threads then end).
    pub(crate) fn shutdown_all(&mut self) {
        for o in self.open.values() {
            let _ = o.stream.shutdown(Shutdown::Both);
        }
    }

    /// Marks connection `id` idle (waiting for a request) or busy.
    fn mark(&mut self, id: u64, idle: bool) {
        if let Some(o) = self.open.get_mut(&id) {
            o.idle_since = idle.then(Instant::now);
        }
    }

    /// Closes the connection idle the longest, if one has been idle for
    /// [`EVICT_AFTER`]; whether one was.
    fn evict_one(&mut self) -> bool {
        let now = Instant::now();
        let victim = self
            .open
            .iter_mut()
            .filter_map(|(_, o)| o.idle_since.map(|t| (t, o)))
            .filter(|(t, _)| now.duration_since(*t) >= EVICT_AFTER)
            .min_by_key(|(t, _)| *t);
        match victim {
            Some((_, o)) => {
                let _ = o.stream.shutdown(Shutdown::Both);
                o.idle_since = None;
                true
            }
            None => false,
        }
    }
}

/// Removes its connection from [`Conns`] when the connection's thread ends.
struct Slot {
    shared: Arc<Shared>,
    id: u64,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = lock(&self.shared.conns);
        c.open.remove(&self.id);
        if let Some(n) = c.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.per_ip.remove(&self.ip);
            }
        }
    }
}

/// Accepts until `shared.stop`; each connection gets a thread, within caps.
pub(crate) fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    loop {
        let accepted = listener.accept();
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: wait for connections to close.
                eprintln!("otc-relay: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        admit(stream, peer, shared);
    }
}

fn admit(stream: TcpStream, peer: SocketAddr, shared: &Arc<Shared>) {
    let ip = address_key(peer.ip());
    let cfg = &shared.cfg;
    let (slot, clone) = {
        let mut c = lock(&shared.conns);
        let from_ip = c.per_ip.get(&ip).copied().unwrap_or(0);
        // An evicted connection leaves `open` once its thread has seen the
        // close (microseconds), so `open` may be over the cap by the
        // evictions still under way.
        let refusal = if from_ip >= cfg.max_connections_per_ip {
            Some(parse::err(
                429,
                format!(
                    "too many connections from {}: {from_ip} open, the limit per address; \
                     close some or reuse one (keep-alive)",
                    shown(ip)
                ),
            ))
        } else if c.open.len() >= cfg.max_connections && !c.evict_one() {
            Some(parse::err(
                503,
                format!(
                    "too many connections: the relay has {} open and busy, its limit; \
                     try again shortly",
                    cfg.max_connections
                ),
            ))
        } else {
            None
        };
        if let Some(r) = refusal {
            drop(c);
            refuse_at_once(stream, r);
            return;
        }
        let Ok(clone) = stream.try_clone() else {
            return;
        };
        c.next_id += 1;
        let id = c.next_id;
        c.open.insert(
            id,
            Open {
                stream: clone,
                idle_since: None,
            },
        );
        *c.per_ip.entry(ip).or_default() += 1;
        (
            Slot {
                shared: shared.clone(),
                id,
                ip,
            },
            stream,
        )
    };
    let spawned = std::thread::Builder::new()
        .name("relay-conn".into())
        .stack_size(256 * 1024)
        .spawn(move || serve(clone, peer.ip(), slot));
    if let Err(e) = spawned {
        eprintln!("otc-relay: cannot start a connection thread: {e}");
    }
}

/// Answers a connection over a cap on the accept thread, without waiting
/// on the client: the reply is small and the socket's buffer empty.
fn refuse_at_once(stream: TcpStream, r: Refusal) {
    let _ = stream.set_write_timeout(Some(Duration::from_millis(200)));
    let _ = write_reply(&stream, r.0, JSON, &json_error(&r), false);
    let _ = stream.shutdown(Shutdown::Write);
    // Take what the client already sent, so that closing sends FIN, not a
    // reset that could destroy the reply before the client reads it.
    if stream.set_nonblocking(true).is_ok() {
        let mut sink = [0u8; 4096];
        while matches!((&stream).read(&mut sink), Ok(n) if n > 0) {}
    }
}

const JSON: &str = "application/json";

fn json_error(r: &Refusal) -> String {
    serde_json::to_string(&r.1).unwrap_or_else(|_| "{}".into())
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        417 => "Expectation Failed",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        507 => "Insufficient Storage",
        _ => "Error",
    }
}

fn write_reply(
    mut s: &TcpStream,
    status: u16,
    ctype: &str,
    body: &str,
    keep_alive: bool,
) -> std::io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n{}\r\n",
        reason(status),
        body.len(),
        if keep_alive {
            ""
        } else {
            "Connection: close\r\n"
        }
    )
    .into_bytes();
    out.extend_from_slice(body.as_bytes());
    // A socket timeout is per `write`, and a client taking a trickle at a
    // time would never hit it: each [`MIN_TAKEN`] bytes must be taken
    // within the socket's write timeout (put back for the next reply).
    let budget = s.write_timeout()?.unwrap_or(WRITE_TIME);
    let mut deadline = Instant::now() + budget;
    let mut taken = 0;
    let mut left = &out[..];
    while !left.is_empty() {
        if taken >= MIN_TAKEN {
            taken = 0;
            deadline = Instant::now() + budget;
        }
        let time = deadline.saturating_duration_since(Instant::now());
        if time.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        s.set_write_timeout(Some(time))?;
        match s.write(left) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                left = &left[n..];
                taken += n;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    s.set_write_timeout(Some(budget))
}

/// Bytes read from a connection and not used yet.
struct Input<'a> {
    stream: &'a TcpStream,
    buf: Vec<u8>,
    idle: Duration,
    request_time: Duration,
}

enum Got {
    Head(Vec<u8>),
    /// The client closed (or went idle) between requests.
    Gone,
    Refused(Refusal),
}

impl Input<'_> {
    /// Reads more bytes, waiting at most until `deadline`.
    fn fill(&mut self, deadline: Instant) -> std::io::Result<usize> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        self.stream.set_read_timeout(Some(left))?;
        let mut chunk = [0u8; 4096];
        let n = (&mut self.stream).read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    fn head(&mut self) -> Got {
        let idle = Instant::now() + self.idle;
        let mut deadline = None;
        loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                return Got::Head(self.buf.drain(..i + 4).collect());
            }
            if self.buf.len() > MAX_HEAD_BYTES {
                return Got::Refused(parse::err(
                    431,
                    format!("request head too large: at most {MAX_HEAD_BYTES} bytes"),
                ));
            }
            if !self.buf.is_empty() && deadline.is_none() {
                deadline = Some(Instant::now() + self.request_time);
            }
            match self.fill(deadline.unwrap_or(idle)) {
                Ok(n) if n > 0 => {}
                _ if self.buf.is_empty() => return Got::Gone,
                _ => {
                    return Got::Refused(parse::err(
                        408,
                        "the request head did not arrive whole in time",
                    ));
                }
            }
        }
    }

    fn body(&mut self, n: usize, deadline: Instant) -> Result<Vec<u8>, Refusal> {
        while self.buf.len() < n {
            match self.fill(deadline) {
                Ok(k) if k > 0 => {}
                _ => {
                    return Err(parse::err(
                        408,
                        "the request body did not arrive whole in time",
                    ));
                }
            }
        }
        Ok(self.buf.drain(..n).collect())
    }
}

/// Serves one connection's requests in turn until it closes, idles out,
/// or a request leaves it unusable.
fn serve(stream: TcpStream, ip: IpAddr, slot: Slot) {
    let shared = &slot.shared;
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(WRITE_TIME));
    let mut input = Input {
        stream: &stream,
        buf: Vec::new(),
        idle: shared.cfg.idle,
        request_time: shared.cfg.request_time,
    };
    let limit = shared.cfg.max_message + 4096;
    while !shared.stop.load(Ordering::SeqCst) {
        lock(&shared.conns).mark(slot.id, true);
        let got = input.head();
        lock(&shared.conns).mark(slot.id, false);
        let head = match got {
            Got::Gone => return,
            Got::Refused(r) => {
                let _ = write_reply(&stream, r.0, JSON, &json_error(&r), false);
                return;
            }
            Got::Head(bytes) => bytes,
        };
        let started = Instant::now();
        let head: Head = match parse::parse_head(&head) {
            Ok(h) => h,
            Err(r) => {
                let _ = write_reply(&stream, r.0, JSON, &json_error(&r), false);
                return;
            }
        };
        let length = head.content_length.unwrap_or(0);
        if length > limit {
            let r = parse::err(
                413,
                format!(
                    "request body too large: at most {limit} bytes (messages at most {} bytes)",
                    shared.cfg.max_message
                ),
            );
            if write_reply(&stream, r.0, JSON, &json_error(&r), false).is_ok() {
                linger(&mut input, length);
            }
            return;
        }
        if head.expect_continue && length > 0 && input.buf.is_empty() {
            let _ = (&stream).write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        let body = match input.body(length, started + input.request_time) {
            Ok(b) => b,
            Err(r) => {
                let _ = write_reply(&stream, r.0, JSON, &json_error(&r), false);
                return;
            }
        };
        let (status, ctype, reply) = match crate::route(shared, &head, &body, ip) {
            Ok(crate::Body::Json(s)) => (200, JSON, s),
            Ok(crate::Body::Html(s)) => (200, "text/html; charset=utf-8", s),
            Err(r) => (r.0, JSON, json_error(&r)),
        };
        let keep = head.keep_alive && !shared.stop.load(Ordering::SeqCst);
        if write_reply(&stream, status, ctype, &reply, keep).is_err() || !keep {
            return;
        }
    }
}

/// After refusing a body without reading it: take (and drop) what the
/// client still sends, up to `length` bytes or [`LINGER`], so that closing
/// does not reset the connection and destroy the reply before the client
/// has read it.
fn linger(input: &mut Input<'_>, length: usize) {
    let _ = input.stream.shutdown(Shutdown::Write);
    let deadline = Instant::now() + LINGER;
    let mut taken = input.buf.len();
    input.buf.clear();
    while taken < length {
        match input.fill(deadline) {
            Ok(n) if n > 0 => {
                taken += n;
                input.buf.clear();
            }
            _ => return,
        }
    }
}

/// How long [`linger`] takes the rest of a refused body.
pub const LINGER: Duration = Duration::from_secs(2);

/// File descriptors one open connection uses (the socket, and its copy
/// in [`Conns`] for closing it at stop).
pub const FDS_PER_CONNECTION: usize = 2;
/// File descriptors kept free for everything else (log, listener, stdio).
pub const FDS_RESERVED: usize = 16;

/// The process's soft limit on open files (`ulimit -n`), from
/// `/proc/self/limits`; `None` when unknown or unlimited.
pub fn fd_limit() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The most connections `fds` file descriptors can hold, with a reserve.
pub fn connections_for(fds: usize) -> usize {
    (fds.saturating_sub(FDS_RESERVED) / FDS_PER_CONNECTION).max(1)
}

/// Wakes the accept loop (blocked in `accept`) so that it sees `stop`.
pub(crate) fn wake(addr: SocketAddr, shared: &Mutex<Conns>) {
    let _ = TcpStream::connect_timeout(&addr, Duration::from_secs(1));
    lock(shared).shutdown_all();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_are_counted_by_ipv4_address_or_ipv6_64() {
        let k = |s: &str| address_key(s.parse().unwrap()).to_string();
        assert_eq!(k("192.0.2.7"), "192.0.2.7");
        assert_eq!(k("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::");
        assert_eq!(k("2001:db8:1:2::1"), k("2001:db8:1:2:ffff::9"));
        assert_ne!(k("2001:db8:1:2::1"), k("2001:db8:1:3::1"));
        assert_eq!(k("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(connections_for(64), 24);
        assert_eq!(connections_for(0), 1);
    }
}
