//! The relay's HTTP/1.1 front: hyper's server on tokio, behind a gate of
//! our own that reads the client's bytes first, and the connection caps.
//!
//! hyper (its `http1` server) writes the replies, keeps connections alive,
//! answers `Expect: 100-continue`, frames bodies and runs the handlers as
//! tokio tasks: a long poll is a parked future, not a thread. What hyper
//! has no setting for is a small layer here:
//!
//! - **The gate** ([`Gate`], the I/O hyper reads through) holds each
//!   request head until it is whole and has passed [`crate::parse`]'s
//!   strict, fuzzed parser; only then does hyper see it. hyper's own
//!   parser is more lenient (a bare LF ends a header line for it) and
//!   answers its refusals with an empty body; here every refusal is the
//!   relay's `{"error":STATUS,"message":TEXT}`, and a head whose framing
//!   another parser could read differently never reaches hyper (request
//!   smuggling). Bodies are framed by `Content-Length` only (chunked: 411),
//!   so the gate knows where each request ends, and a body over the limit
//!   is refused from its `Content-Length` before it is read (413).
//! - **Deadlines** ([`ConnState::next_deadline`], one timer per
//!   connection): no first byte of a request within `idle` (closed
//!   without a word); a request (head and body) not whole within
//!   `request_time` of its first byte (408); a reply not taken at
//!   [`MIN_TAKEN`] bytes per [`WRITE_TIME`] or faster (closed: a reader
//!   taking a trickle at a time does not hold its connection). hyper's
//!   `header_read_timeout` is set too, as a backstop (`idle` plus
//!   `request_time`), but it closes without a reply, so it is not the
//!   408.
//! - **Open connections are bounded**, idle ones included: at most
//!   `max_connections_per_ip` from one address (one more: 429; IPv6
//!   addresses count by /64) and `max_connections` in all. At the total
//!   cap, the connection idle the longest (for at least [`EVICT_AFTER`])
//!   is closed to make room; only when none is, a new one is answered 503.
//!   tower's `ConcurrencyLimit` bounds requests in flight, not connections
//!   per address, and cannot evict an idle one, so this is our own.
//! - `accept` errors (out of file descriptors, say) are logged, waited out
//!   briefly, and never stop the loop.
//!
//! No axum: five fixed endpoints are one `match` ([`crate::route`]), and
//! the gate sits below any router anyway.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, OwnedFd};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONNECTION, CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use crate::parse::{self, Head, MAX_HEAD_BYTES, Refusal};
use crate::{Shared, lock};

/// How long an open connection may wait for the first byte of a request
/// (the default of [`crate::Config::idle`]).
pub const IDLE: Duration = Duration::from_secs(30);
/// How long a request may take to arrive whole, from its first byte (the
/// default of [`crate::Config::request_time`]).
pub const REQUEST_TIME: Duration = Duration::from_secs(10);
/// How long a client may leave a reply untaken (see [`MIN_TAKEN`]).
pub const WRITE_TIME: Duration = Duration::from_secs(10);

/// A client must take at least this much of a reply per [`WRITE_TIME`]
/// (about 26 kB/s), so that a slow link still gets a large
/// `/getmessages` reply and a trickling reader does not hold a connection.
pub const MIN_TAKEN: usize = 256 * 1024;

/// An idle connection may be closed to make room after this long.
pub const EVICT_AFTER: Duration = Duration::from_secs(1);

/// How long a refused body is taken (and dropped) after the reply, so that
/// closing does not reset the connection before the client has read it.
pub const LINGER: Duration = Duration::from_secs(2);

/// File descriptors one open connection needs: its socket. A connection
/// also gets a duplicate of it, which a parked long poll watches for the
/// client going away ([`Parked`]), but only from the descriptors left over
/// beyond `--max-connections` ([`Conns::with_watches`]): connections come
/// first, and one without a watch still parks, as the relay did before
/// the watch (a client gone is then noticed when its poll ends).
pub const FDS_PER_CONNECTION: usize = 1;
/// File descriptors kept free for everything else (database, listener,
/// the runtime's own, stdio).
pub const FDS_RESERVED: usize = 16;

/// The open connections, for the caps and for eviction.
#[derive(Default)]
pub(crate) struct Conns {
    next_id: u64,
    open: HashMap<u64, Arc<ConnState>>,
    per_ip: HashMap<IpAddr, usize>,
    /// Open connections that hold a watch (a duplicate of their socket).
    watches: usize,
    /// The most that may: the descriptors beyond the connection cap.
    most_watches: usize,
    /// Long polls parked now, in all and per address: counted as they
    /// park and end (under this lock, as `Inner::parked` changes), so a
    /// new one's caps are checked without a pass over every connection,
    /// which made parking 10,000 polls quadratic (over 30 s).
    parked: usize,
    parked_per_ip: HashMap<IpAddr, usize>,
}

impl Conns {
    /// No connection yet; watches for as many as `fds` descriptors (`None`:
    /// no limit known) leave over beyond `max_connections` and the reserve.
    pub(crate) fn with_watches(fds: Option<usize>, max_connections: usize) -> Conns {
        Conns {
            most_watches: fds.map_or(usize::MAX, |f| {
                f.saturating_sub(FDS_RESERVED + max_connections * FDS_PER_CONNECTION)
            }),
            ..Conns::default()
        }
    }

    /// How many connections are open.
    pub(crate) fn open_count(&self) -> usize {
        self.open.len()
    }

    /// Makes room for one more connection: closes the connection idle the
    /// longest, if one has been idle for [`EVICT_AFTER`]; failing that,
    /// ends the longest-parked long poll early (answered with what there
    /// is, then closed). Whether one was.
    fn evict_one(&mut self) -> bool {
        let now = Instant::now();
        let victim = self
            .open
            .values()
            .filter_map(|s| s.idle_since().map(|t| (t, s)))
            .filter(|(t, _)| now.duration_since(*t) >= EVICT_AFTER)
            .min_by_key(|(t, _)| *t);
        if let Some((_, s)) = victim {
            lock(&s.inner).evict = true;
            s.changed.notify_one();
            return true;
        }
        self.cut_oldest_waiter(None, true)
    }

    /// Ends the longest-parked long poll (of address `ip`, or of any):
    /// it is answered at once with what there is (nothing), and its
    /// connection closed after that if `close`. Whether one was.
    fn cut_oldest_waiter(&mut self, ip: Option<IpAddr>, close: bool) -> bool {
        let oldest = self
            .open
            .values()
            .filter(|s| ip.is_none_or(|ip| s.ip == ip))
            .filter_map(|s| lock(&s.inner).parked.map(|t| (t, s)))
            .min_by_key(|(t, _)| *t);
        match oldest {
            Some((_, s)) => {
                let s = s.clone();
                {
                    let mut i = lock(&s.inner);
                    i.cut = true;
                    i.close_after |= close;
                }
                self.unpark(&s);
                s.cut.notify_waiters();
                true
            }
            None => false,
        }
    }

    /// Long polls parked now: from address `ip`, and in all.
    fn waiters(&self, ip: IpAddr) -> (usize, usize) {
        (
            self.parked_per_ip.get(&ip).copied().unwrap_or(0),
            self.parked,
        )
    }

    /// `s`'s long poll parks now (counted once however often it is said).
    fn park(&mut self, s: &ConnState) {
        let mut i = lock(&s.inner);
        if i.parked.is_none() {
            self.parked += 1;
            *self.parked_per_ip.entry(s.ip).or_default() += 1;
        }
        i.parked = Some(Instant::now());
    }

    /// `s`'s long poll is parked no more (ended, or cut).
    fn unpark(&mut self, s: &ConnState) {
        if lock(&s.inner).parked.take().is_none() {
            return;
        }
        self.parked -= 1;
        count_down(&mut self.parked_per_ip, s.ip);
    }
}

/// One fewer for `ip` in a per-address count, which keeps no zeros.
fn count_down(counts: &mut HashMap<IpAddr, usize>, ip: IpAddr) {
    if let Some(n) = counts.get_mut(&ip) {
        *n -= 1;
        if *n == 0 {
            counts.remove(&ip);
        }
    }
}

/// What one connection is doing, shared by its gate, its handlers and its
/// task (which enforces the deadlines).
pub(crate) struct ConnState {
    inner: Mutex<Inner>,
    /// Something changed that may move a deadline.
    changed: Notify,
    /// The address it is counted under ([`address_key`]).
    ip: IpAddr,
    /// A duplicate of its socket, which a parked long poll watches for
    /// the client going away ([`Parked`]); `None` while one does (or if
    /// there was no descriptor to spare for it, or it could not be made).
    watch: Mutex<Option<OwnedFd>>,
    /// It was given a watch (counted in [`Conns::watches`]).
    watched: bool,
    /// Ends its long poll early ([`Conns::cut_oldest_waiter`]).
    cut: Notify,
}

struct Inner {
    /// When the first byte of the request being read arrived (`None`:
    /// none is being read).
    request_started: Option<Instant>,
    /// Body bytes still to come for the request whose head passed.
    body_left: usize,
    /// Requests passed to hyper and not answered yet.
    busy: usize,
    /// When the last request was answered (or the connection opened).
    last_done: Instant,
    /// A write found the client not taking: since when, and bytes taken
    /// since then.
    write_blocked: Option<(Instant, usize)>,
    /// Closed to make room for another connection.
    evict: bool,
    /// The gate refused a request: the reply, and how many body bytes to
    /// take (and drop) after it.
    refusal: Option<(Refusal, usize)>,
    /// Since when a long poll on it has been parked (waiting for a message).
    parked: Option<Instant>,
    /// Its long poll was ended early ([`Conns::cut_oldest_waiter`]).
    cut: bool,
    /// Close it after the reply in hand (its long poll was ended to make
    /// room for another connection).
    close_after: bool,
}

/// What a passed deadline does.
enum Action {
    Close,
    Refuse(Refusal),
}

impl ConnState {
    fn new(ip: IpAddr, watch: Option<OwnedFd>) -> ConnState {
        ConnState {
            inner: Mutex::new(Inner {
                request_started: None,
                body_left: 0,
                busy: 0,
                last_done: Instant::now(),
                write_blocked: None,
                evict: false,
                refusal: None,
                parked: None,
                cut: false,
                close_after: false,
            }),
            changed: Notify::new(),
            ip,
            watched: watch.is_some(),
            watch: Mutex::new(watch),
            cut: Notify::new(),
        }
    }

    /// Since when the connection has waited for a request, if it is.
    fn idle_since(&self) -> Option<Instant> {
        let i = lock(&self.inner);
        let idle = i.busy == 0
            && i.request_started.is_none()
            && i.body_left == 0
            && i.write_blocked.is_none()
            && !i.evict
            && i.refusal.is_none();
        idle.then_some(i.last_done)
    }

    /// The next deadline and what passing it does (`None`: nothing to
    /// time, e.g. a long poll in its handler).
    fn next_deadline(&self, idle: Duration, request_time: Duration) -> Option<(Instant, Action)> {
        let i = lock(&self.inner);
        if i.evict {
            return Some((Instant::now(), Action::Close));
        }
        if let Some((t, _)) = i.write_blocked {
            return Some((t + WRITE_TIME, Action::Close));
        }
        if i.body_left > 0
            && let Some(t) = i.request_started
        {
            return Some((
                t + request_time,
                Action::Refuse(parse::err(
                    408,
                    "the request body did not arrive whole in time",
                )),
            ));
        }
        if i.busy > 0 || i.refusal.is_some() {
            return None;
        }
        match i.request_started {
            Some(t) => Some((
                t.max(i.last_done) + request_time,
                Action::Refuse(parse::err(
                    408,
                    "the request head did not arrive whole in time",
                )),
            )),
            None => Some((i.last_done + idle, Action::Close)),
        }
    }

    fn change(&self, f: impl FnOnce(&mut Inner)) {
        f(&mut lock(&self.inner));
        self.changed.notify_one();
    }
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

/// How an address key is named in refusals: IPv6 with its /64.
pub(crate) fn shown(key: IpAddr) -> String {
    match key {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("{a}/64"),
    }
}

/// How a parked long poll's wait ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum WaitEnd {
    /// What it waited for happened (a message, the deadline, the stop).
    Woken,
    /// Ended early, to make room for another long poll or connection.
    Cut,
    /// The client closed or reset the connection.
    Gone,
}

/// A long poll parked on its connection. While it lives it counts against
/// the waiter caps (`--max-waiters`, `--max-waiters-per-ip`), can be
/// ended early to make room, and watches its socket (a duplicate, through
/// epoll's read-hang-up) so that a client that closes or resets is let go
/// at once instead of holding its connection for the whole wait.
pub(crate) struct Parked<'a> {
    sh: &'a Shared,
    conn: &'a Arc<ConnState>,
    watch: Option<TcpStream>,
}

impl<'a> Parked<'a> {
    /// Parks a long poll on `conn`. At a waiter cap, the address's own
    /// longest-parked poll (at `max_waiters_per_ip`) or the longest-parked
    /// of all (at `max_waiters`) is ended first, answered with what there
    /// is (nothing): a new long poll always parks, and waiters never take
    /// the connections that sends and short polls need.
    pub(crate) fn new(sh: &'a Shared, conn: &'a Arc<ConnState>) -> Parked<'a> {
        {
            let mut c = lock(&sh.conns);
            let (mine, all) = c.waiters(conn.ip);
            if mine >= sh.cfg.max_waiters_per_ip {
                c.cut_oldest_waiter(Some(conn.ip), false);
            } else if all >= sh.cfg.max_waiters {
                c.cut_oldest_waiter(None, false);
            }
            c.park(conn);
            lock(&conn.inner).cut = false;
        }
        let watch = lock(&conn.watch)
            .take()
            .and_then(|fd| TcpStream::from_std(std::net::TcpStream::from(fd)).ok());
        Parked { sh, conn, watch }
    }

    /// Waits for `woken`, an early end, or the client going away. After
    /// `Cut` or `Gone`, the poll answers at once with what it has; after
    /// `Gone`, its connection closes after that reply.
    pub(crate) async fn wait(&self, woken: impl Future<Output = ()>) -> WaitEnd {
        let cut = self.conn.cut.notified();
        tokio::pin!(cut);
        cut.as_mut().enable();
        if lock(&self.conn.inner).cut {
            return WaitEnd::Cut;
        }
        tokio::select! {
            _ = woken => WaitEnd::Woken,
            _ = cut => WaitEnd::Cut,
            _ = gone(self.watch.as_ref()) => {
                self.conn.change(|i| i.close_after = true);
                WaitEnd::Gone
            }
        }
    }
}

impl Drop for Parked<'_> {
    fn drop(&mut self) {
        // Under the connections' lock, like the cut, so that a cut never
        // lands on a poll that has already ended.
        let mut c = lock(&self.sh.conns);
        c.unpark(self.conn);
        drop(c);
        if let Some(w) = self.watch.take()
            && let Ok(w) = w.into_std()
        {
            *lock(&self.conn.watch) = Some(OwnedFd::from(w));
        }
    }
}

/// Ends when the client behind `watch` has closed its side or reset the
/// connection (never, without a watch). Data waiting on the socket (a
/// pipelined request, TLS bytes) is not an end: the hang-up is checked
/// again every 250 ms while it waits.
async fn gone(watch: Option<&TcpStream>) {
    let Some(w) = watch else {
        return std::future::pending().await;
    };
    loop {
        match w.ready(tokio::io::Interest::READABLE).await {
            Err(_) => return,
            Ok(r) if r.is_read_closed() || r.is_error() => return,
            Ok(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// Removes its connection from [`Conns`] when the connection's task ends.
struct Slot {
    shared: Arc<Shared>,
    id: u64,
    ip: IpAddr,
    state: Arc<ConnState>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = lock(&self.shared.conns);
        c.open.remove(&self.id);
        c.watches -= usize::from(self.state.watched);
        // Its long poll, if one is somehow still counted, ends with it.
        c.unpark(&self.state);
        count_down(&mut c.per_ip, self.ip);
    }
}

/// Accepts until the relay stops; each connection gets a task, within caps.
pub(crate) async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut stop = shared.stop_rx.clone();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => return,
        };
        match accepted {
            Ok((stream, peer)) => admit(stream, peer, &shared),
            Err(e) => {
                // EMFILE and friends: wait for connections to close.
                eprintln!("otc-relay: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

fn admit(stream: TcpStream, peer: SocketAddr, shared: &Arc<Shared>) {
    let ip = address_key(peer.ip());
    let cfg = &shared.cfg;
    let mut c = lock(&shared.conns);
    let from_ip = c.per_ip.get(&ip).copied().unwrap_or(0);
    // An evicted connection leaves `open` once its task has seen the
    // eviction (microseconds), so `open` may be over the cap by the
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
        tokio::spawn(refuse_at_once(stream, r));
        return;
    }
    c.next_id += 1;
    let id = c.next_id;
    let watch = if c.watches < c.most_watches {
        stream.as_fd().try_clone_to_owned().ok()
    } else {
        None
    };
    c.watches += usize::from(watch.is_some());
    let state = Arc::new(ConnState::new(ip, watch));
    c.open.insert(id, state.clone());
    *c.per_ip.entry(ip).or_default() += 1;
    drop(c);
    let slot = Slot {
        shared: shared.clone(),
        id,
        ip,
        state,
    };
    tokio::spawn(serve(stream, peer.ip(), slot));
}

/// Answers a connection over a cap without waiting on the client: the
/// reply is small and the socket's buffer empty.
async fn refuse_at_once(mut stream: TcpStream, r: Refusal) {
    let reply = refusal_bytes(&r);
    let _ = tokio::time::timeout(Duration::from_millis(200), stream.write_all(&reply)).await;
    let _ = stream.shutdown().await;
    // Take the request the client sends (it may not have arrived yet), so
    // that closing sends FIN, not a reset that could destroy the reply
    // before the client reads it; bounded in time and bytes.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    while seen.len() < 64 * 1024 && !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => seen.extend_from_slice(&chunk[..n]),
            _ => break,
        }
    }
}

const JSON: &str = "application/json";

fn json_error(r: &Refusal) -> String {
    serde_json::to_string(&r.1).unwrap_or_else(|_| "{}".into())
}

fn reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        417 => "Expectation Failed",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// A refusal the gate (or the caps) answer themselves, hyper not having
/// seen the request: written whole, then the connection is closed.
fn refusal_bytes(r: &Refusal) -> Vec<u8> {
    let body = json_error(r);
    format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {JSON}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        r.0,
        reason(r.0),
        body.len()
    )
    .into_bytes()
}

/// The I/O hyper reads and writes through: the socket, with each request
/// head held back until [`parse::parse_head`] has passed it (see the
/// module's docs), and the write side's progress reported for the
/// slow-reader deadline.
struct Gate {
    stream: Io,
    state: Arc<ConnState>,
    /// Read from the socket, not yet looked at.
    input: Vec<u8>,
    /// Passed, for hyper to read.
    out: Vec<u8>,
    out_at: usize,
    /// Body bytes of the passed request still to pass.
    body_left: usize,
    /// The largest body accepted.
    limit: usize,
    max_message: usize,
    /// A refusal is set (or the client closed): hyper reads the end.
    done: bool,
}

/// The connection under a [`Gate`]: plain TCP, or TLS over it (rustls).
/// Shared with the connection's task, which takes it back after hyper is
/// done to write a refusal.
#[derive(Clone)]
enum Io {
    Plain(Arc<TcpStream>),
    Tls(Arc<Mutex<tokio_rustls::server::TlsStream<TcpStream>>>),
}

impl Gate {
    /// The first byte of a request is here: its deadline runs.
    fn mark_started(&self) {
        let mut i = lock(&self.state.inner);
        if i.request_started.is_none() {
            i.request_started = Some(Instant::now());
            drop(i);
            self.state.changed.notify_one();
        }
    }

    /// A write found the client not reading: the slow-reader clock runs.
    fn write_blocked(&self) {
        let mut started = false;
        {
            let mut i = lock(&self.state.inner);
            if i.write_blocked.is_none() {
                i.write_blocked = Some((Instant::now(), 0));
                started = true;
            }
        }
        if started {
            self.state.changed.notify_one();
        }
    }

    /// `n` bytes were taken by the kernel.
    fn took(&self, n: usize) {
        let mut i = lock(&self.state.inner);
        if let Some((t, taken)) = &mut i.write_blocked {
            *taken += n;
            if *taken >= MIN_TAKEN {
                *t = Instant::now();
                *taken = 0;
            }
        }
    }

    fn refuse(&mut self, r: Refusal, linger: usize) {
        self.done = true;
        self.state.change(|i| i.refusal = Some((r, linger)));
    }

    /// Moves what can be passed from `input` to `out`.
    fn examine(&mut self) {
        if self.body_left > 0 {
            let k = self.body_left.min(self.input.len());
            self.out.extend(self.input.drain(..k));
            self.body_left -= k;
            if self.body_left == 0 {
                self.state.change(|i| {
                    i.body_left = 0;
                    i.request_started = None;
                });
            }
            return;
        }
        if self.input.is_empty() {
            return;
        }
        let Some(end) = self.input.windows(4).position(|w| w == b"\r\n\r\n") else {
            if self.input.len() > MAX_HEAD_BYTES {
                self.refuse(
                    parse::err(
                        431,
                        format!("request head too large: at most {MAX_HEAD_BYTES} bytes"),
                    ),
                    0,
                );
            }
            return;
        };
        let head = match parse::parse_head(&self.input[..end + 4]) {
            Ok(h) => h,
            Err(r) => return self.refuse(r, 0),
        };
        let length = head.content_length.unwrap_or(0);
        if length > self.limit {
            let already = self.input.len() - end - 4;
            let r = parse::err(
                413,
                format!(
                    "request body too large: at most {} bytes (messages at most {} bytes)",
                    self.limit, self.max_message
                ),
            );
            return self.refuse(r, length.saturating_sub(already));
        }
        self.out.extend(self.input.drain(..end + 4));
        self.body_left = length;
        self.state.change(|i| {
            i.busy += 1;
            i.body_left = length;
            if length == 0 {
                i.request_started = None;
            }
        });
        if length > 0 {
            self.examine();
        }
    }
}

impl AsyncRead for Gate {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.out_at < this.out.len() {
                let n = buf.remaining().min(this.out.len() - this.out_at);
                buf.put_slice(&this.out[this.out_at..this.out_at + n]);
                this.out_at += n;
                if this.out_at == this.out.len() {
                    this.out.clear();
                    this.out_at = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.done {
                return Poll::Ready(Ok(()));
            }
            this.examine();
            if !this.out.is_empty() || this.done {
                continue;
            }
            if !this.input.is_empty() {
                // Part of a head (perhaps pipelined behind a body) is in.
                this.mark_started();
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = match &this.stream {
                Io::Plain(stream) => loop {
                    ready!(stream.poll_read_ready(cx))?;
                    match stream.try_read(&mut chunk) {
                        Ok(n) => break n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => return Poll::Ready(Err(e)),
                    }
                },
                Io::Tls(tls) => {
                    let mut rb = ReadBuf::new(&mut chunk);
                    let mut g = lock(tls);
                    match ready!(Pin::new(&mut *g).poll_read(cx, &mut rb)) {
                        Ok(()) => rb.filled().len(),
                        // A client that drops the connection without
                        // close_notify: the same as a close.
                        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => 0,
                        Err(e) => return Poll::Ready(Err(e)),
                    }
                }
            };
            if n == 0 {
                // The client closed its side: a request cut short is
                // answered (it may still read), then hyper reads the end.
                if this.body_left > 0 {
                    this.refuse(
                        parse::err(408, "the request body did not arrive whole in time"),
                        0,
                    );
                } else if !this.input.is_empty() {
                    this.refuse(
                        parse::err(408, "the request head did not arrive whole in time"),
                        0,
                    );
                }
                this.done = true;
                return Poll::Ready(Ok(()));
            }
            if this.body_left == 0 {
                this.mark_started();
            }
            this.input.extend_from_slice(&chunk[..n]);
        }
    }
}

impl AsyncWrite for Gate {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Io::Tls(tls) = &this.stream {
            let polled = Pin::new(&mut *lock(tls)).poll_write(cx, data);
            return match polled {
                Poll::Pending => {
                    this.write_blocked();
                    Poll::Pending
                }
                Poll::Ready(Ok(n)) => {
                    this.took(n);
                    Poll::Ready(Ok(n))
                }
                other => other,
            };
        }
        let Io::Plain(stream) = &this.stream else {
            return Poll::Ready(Err(io::ErrorKind::Unsupported.into()));
        };
        loop {
            match stream.poll_write_ready(cx) {
                Poll::Pending => {
                    this.write_blocked();
                    return Poll::Pending;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {}
            }
            match stream.try_write(data) {
                Ok(n) => {
                    this.took(n);
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Io::Tls(tls) = &this.stream {
            // TLS records still buffered go out first.
            let polled = Pin::new(&mut *lock(tls)).poll_flush(cx);
            match polled {
                Poll::Pending => {
                    this.write_blocked();
                    return Poll::Pending;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {}
            }
        }
        // Everything written is with the kernel: the client took it.
        let was = lock(&this.state.inner).write_blocked.take().is_some();
        if was {
            this.state.changed.notify_one();
        }
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The connection's task closes the socket (after any refusal).
        Poll::Ready(Ok(()))
    }
}

/// Marks a request answered when its handler ends (or is dropped).
struct Answered(Arc<ConnState>);

impl Drop for Answered {
    fn drop(&mut self) {
        self.0.change(|i| {
            i.busy = i.busy.saturating_sub(1);
            i.last_done = Instant::now();
        });
    }
}

type Reply = Response<Full<Bytes>>;

fn reply(status: u16, ctype: &'static str, body: String) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
    r
}

/// One request (its head passed by the gate) to its reply.
async fn handle(
    sh: Arc<Shared>,
    req: Request<Incoming>,
    ip: IpAddr,
    conn: Arc<ConnState>,
) -> Reply {
    let (parts, body) = req.into_parts();
    let head = Head {
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or("").to_owned(),
        content_length: None,
        content_type: parts
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        expect_continue: false,
        keep_alive: true,
    };
    let limit = sh.cfg.max_message + 4096;
    let routed = match Limited::new(body, limit).collect().await {
        Ok(b) => crate::route(&sh, &head, &b.to_bytes(), ip, Some(&conn)).await,
        Err(_) => Err(parse::err(
            408,
            "the request body did not arrive whole in time",
        )),
    };
    let mut r = match routed {
        Ok(crate::Body::Json(s)) => reply(200, JSON, s),
        Ok(crate::Body::Html(s)) => reply(200, "text/html; charset=utf-8", s),
        Err(e) => reply(e.0, JSON, json_error(&e)),
    };
    if *sh.stop_rx.borrow() || lock(&conn.inner).close_after {
        r.headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    r
}

/// Serves one connection with hyper until it closes, a deadline passes,
/// the gate refuses a request, or the relay stops.
async fn serve(stream: TcpStream, ip: IpAddr, slot: Slot) {
    let sh = slot.shared.clone();
    let state = slot.state.clone();
    let _ = stream.set_nodelay(true);
    let acceptor = sh.tls.as_ref().map(|t| lock(t).clone());
    let stream = match acceptor {
        None => Io::Plain(Arc::new(stream)),
        Some(acceptor) => {
            // The handshake is bounded like a request head.
            match tokio::time::timeout(sh.cfg.request_time, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => Io::Tls(Arc::new(Mutex::new(tls))),
                // Not TLS, a bad handshake, or too slow: nothing to answer.
                _ => return,
            }
        }
    };
    let gate = Gate {
        stream: stream.clone(),
        state: state.clone(),
        input: Vec::new(),
        out: Vec::new(),
        out_at: 0,
        body_left: 0,
        limit: sh.cfg.max_message + 4096,
        max_message: sh.cfg.max_message,
        done: false,
    };
    let svc = {
        let (sh, state) = (sh.clone(), state.clone());
        hyper::service::service_fn(move |req| {
            let (sh, conn, answered) = (sh.clone(), state.clone(), Answered(state.clone()));
            async move {
                let r = handle(sh, req, ip, conn).await;
                drop(answered);
                Ok::<_, Infallible>(r)
            }
        })
    };
    let (idle, request_time) = (sh.cfg.idle, sh.cfg.request_time);
    let mut conn = Box::pin(
        hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .half_close(true)
            .keep_alive(true)
            .title_case_headers(true)
            .auto_date_header(false)
            .header_read_timeout(idle + request_time)
            .serve_connection(TokioIo::new(gate), svc),
    );
    let mut stop = sh.stop_rx.clone();
    let mut stopping = false;
    let far = || tokio::time::Instant::now() + Duration::from_secs(3600);
    let killed = loop {
        let next = state.next_deadline(idle, request_time);
        let at = next
            .as_ref()
            .map_or_else(far, |(t, _)| tokio::time::Instant::from_std(*t));
        tokio::select! {
            _ = conn.as_mut() => break None,
            _ = state.changed.notified() => {}
            _ = tokio::time::sleep_until(at), if next.is_some() => {
                // Still due (a change may have moved it)?
                if let Some((t, action)) = state.next_deadline(idle, request_time)
                    && t <= Instant::now()
                {
                    break Some(action);
                }
            }
            _ = stop.wait_for(|s| *s), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    };
    drop(conn);
    let refusal = match killed {
        Some(Action::Refuse(r)) => Some((r, 0)),
        Some(Action::Close) => None,
        None => lock(&state.inner).refusal.take(),
    };
    // The slot is given back before the socket closes: a client that saw
    // the end and connects again at once must find it free.
    match stream {
        Io::Plain(stream) => {
            let Ok(mut stream) = Arc::try_unwrap(stream) else {
                return;
            };
            if let Some((r, linger_for)) = refusal {
                refuse_then_linger(&mut stream, &r, linger_for).await;
            }
            drop(slot);
            drop(stream);
        }
        Io::Tls(tls) => {
            let Ok(tls) = Arc::try_unwrap(tls) else {
                return;
            };
            let mut tls = tls.into_inner().unwrap_or_else(|p| p.into_inner());
            if let Some((r, linger_for)) = refusal {
                refuse_then_linger(&mut tls, &r, linger_for).await;
                drop(slot);
            } else {
                drop(slot);
                // close_notify, so that the client sees a clean end.
                let _ = tokio::time::timeout(WRITE_TIME, tls.shutdown()).await;
            }
            drop(tls);
        }
    }
}

/// Writes refusal `r`, then lingers (see [`linger`]).
async fn refuse_then_linger<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    r: &Refusal,
    linger_for: usize,
) {
    let sent = tokio::time::timeout(WRITE_TIME, async {
        stream.write_all(&refusal_bytes(r)).await?;
        stream.flush().await
    })
    .await;
    if matches!(sent, Ok(Ok(()))) {
        linger(stream, linger_for).await;
    }
}

/// After a refusal: take (and drop) what the client still sends, up to
/// `length` bytes or [`LINGER`] (a moment when `length` is 0), so that
/// closing does not reset the connection and destroy the reply before the
/// client has read it.
async fn linger<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, length: usize) {
    let _ = stream.shutdown().await;
    let time = if length > 0 {
        LINGER
    } else {
        Duration::from_millis(100)
    };
    let deadline = tokio::time::Instant::now() + time;
    let mut taken = 0;
    let mut chunk = [0u8; 16 * 1024];
    while taken < length.max(1) {
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => taken += n,
            _ => return,
        }
    }
}

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
        assert_eq!(connections_for(64), 48);
        assert_eq!(connections_for(0), 1);
    }

    /// Parked long polls are counted as they park and end (not by a pass
    /// over every connection): per address and in all, once however often
    /// a poll is said to park or end, and a cut one no longer counts.
    #[test]
    fn parked_polls_are_counted_as_they_park_and_end() {
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let mut c = Conns::with_watches(Some(64), 40);
        // 64 descriptors, 16 kept back, 40 for connections: 8 to watch with.
        assert_eq!(c.most_watches, 8);
        assert_eq!(Conns::with_watches(None, 40).most_watches, usize::MAX);
        let conns: Vec<Arc<ConnState>> = [a, a, b]
            .into_iter()
            .map(|ip| Arc::new(ConnState::new(ip, None)))
            .collect();
        for (id, s) in conns.iter().enumerate() {
            c.open.insert(id as u64, s.clone());
            c.park(s);
        }
        assert_eq!(c.waiters(a), (2, 3));
        assert_eq!(c.waiters(b), (1, 3));
        assert!(c.cut_oldest_waiter(Some(a), false));
        assert!(lock(&conns[0].inner).cut, "the oldest of a's polls is cut");
        assert_eq!(c.waiters(a), (1, 2));
        c.park(&conns[1]);
        assert_eq!(c.waiters(a), (1, 2), "a poll parked twice counts once");
        c.unpark(&conns[0]);
        c.unpark(&conns[1]);
        c.unpark(&conns[1]);
        assert_eq!(c.waiters(a), (0, 1));
        c.unpark(&conns[2]);
        assert_eq!(c.waiters(b), (0, 0));
        assert!(c.parked_per_ip.is_empty());
        assert!(!c.cut_oldest_waiter(None, false), "nothing is parked");
    }
}
