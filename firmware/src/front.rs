//! The RPC endpoint's front layer: the only code that touches the laptop's
//! bytes before they become a bounded, checked request for
//! [`Handler::handle`] (which is [`crate::rpc::Service::handle`]).
//!
//! The laptop is untrusted, and so is any web page its browser shows. This
//! layer makes sure that neither can kill, wedge or exhaust the device:
//!
//! - **Our own accept loop.** The listening socket is ours; every accepted
//!   socket is owned by exactly one thread and closed on every path (it is
//!   dropped when that thread ends, whatever happened).
//! - **A connection cap** (`limits.max_open_connections`, 32): one thread
//!   per open connection, at most that many. At the cap, a new connection
//!   first makes room: the connection that has waited longest for a request
//!   head (a slowloris, an idle keep-alive) is closed, so a client that
//!   sends its request at once is served even while others hold every slot
//!   with heads that never end. Connections reading a body or being handled
//!   are never closed this way. When there is nothing to close (or
//!   [`MAX_EVICTING`] closings are still ending), the new connection is
//!   answered `overloaded` (429) on the raw socket by one of at most
//!   [`MAX_REFUSERS`] short-lived threads, or, when even those are busy,
//!   closed at once after a non-blocking attempt to write the answer.
//!   Threads and descriptors are therefore bounded by
//!   `max_open_connections + MAX_EVICTING + MAX_REFUSERS` (plus the
//!   listener), and only for as long as closed connections take to end.
//! - **Read deadlines.** The request line and headers must arrive within
//!   `limits.header_timeout_ms` (10 s) of the connection opening (or of the
//!   previous reply on a keep-alive connection); the body within
//!   `limits.body_timeout_ms` (30 s) of the headers. Each is one overall
//!   deadline: every read waits only for what is left of it, so a client
//!   trickling a byte at a time cannot extend it. A request whose head
//!   started but did not finish in time gets `timeout` (408); an idle
//!   keep-alive connection is just closed.
//! - **Hard size limits, checked before the body is read.** The head is at
//!   most `limits.max_header_bytes` (8 KiB), else `too_large`. A declared
//!   `Content-Length` above `limits.max_body_bytes` is answered `too_large`
//!   (413) at once, on the raw socket, without reading or allocating any of
//!   it. Chunked bodies are accepted and counted against the same limit as
//!   they arrive. A head with both, or with another transfer coding, is
//!   refused (`bad_request`): such requests are how request smuggling starts.
//! - **`overloaded` (429)** also answers a complete head when
//!   `limits.max_connections` requests are already being handled (waiting on
//!   the owner's tap, say); the slot is taken only once the whole body is in,
//!   so slow bodies never hold a handling slot.
//!
//! And against a hostile web page (cross-site requests, DNS rebinding),
//! before anything reaches the handler or the screen:
//!
//! - **`Host`** must be an IP address literal (`192.0.2.1`, `[::1]`, with or
//!   without a port) or a name listed in `rpc.allowed_hosts` in `otc.toml`;
//!   anything else, or no `Host`, gets `bad_host` (421). A page that
//!   rebinds its own name to the device's address still sends its own name
//!   as `Host`, so it is refused. A port forward (`ssh -L`, QEMU user
//!   networking) to `127.0.0.1:PORT` sends an IP literal and works. The port
//!   is not checked, since a forward changes it.
//! - **`Origin`**, when present, must be `http://` or `https://` and name the
//!   same host and port as `Host` (default ports filled in: 80 for `Host`,
//!   since this endpoint is plain HTTP, and the scheme's for the origin).
//!   `null`, a foreign origin, or several `Origin` headers get
//!   `forbidden_origin` (403). The endpoint serves no pages, so the only page
//!   with a matching origin would be the device's own. Non-browser clients
//!   send no `Origin` and are not affected.
//! - **`Content-Type: application/json`** (parameters such as
//!   `; charset=utf-8` are allowed) on every POST and PUT and on any request
//!   that carries a body; else `unsupported_media_type` (415). A page can
//!   send `text/plain` cross-site without asking (a CORS "simple request");
//!   it cannot send `application/json` without the preflight this endpoint
//!   never grants. The original One Time Chat client's `POST /runrpc`
//!   (python-requests' `json=`) sends `application/json` too, so it gets no
//!   exception (see `otc_proto::runrpc`).
//!
//! The order of the checks is Host, Origin, the body's size and framing,
//! Content-Type, then the handling slot: everything the head can tell is
//! refused before a byte of the body is read.
//!
//! **Why the layer speaks HTTP itself instead of feeding tiny_http.**
//! tiny_http 0.12 accepts on its own listener and offers no way to hand it an
//! already-accepted socket; putting it behind this layer would mean proxying
//! every request through a second local socket to it, which adds a copy, two
//! descriptors per request, and a second parser whose limits (it allocates a
//! declared body's whole remainder when a request is dropped) are the very
//! thing this layer exists to avoid. Once the head is parsed and checked and
//! the body is read to its bounded end, what is left of HTTP/1.1 is writing a
//! status line, three headers and a JSON body, so the layer does that itself
//! (keep-alive and `Expect: 100-continue` included). Replies keep tiny_http's
//! shape where clients could see it: the same status codes, JSON bodies,
//! `Content-Type: application/json` and `Content-Length`. tiny_http stays a
//! dev-dependency, for the RPC bench's bare echo server.
//!
//! **Hang-ups.** While a prompt waits on the owner's tap, the handler asks
//! whether the client is still there; with the socket in hand that is a
//! non-blocking peek ([`crate::net::peer_gone`]): end-of-stream or a reset
//! means the client hung up, and the prompt is withdrawn.
//!
//! **Stop.** When `serve`'s stop flag is set it stops accepting, closes
//! every connection that is not with the handler, and returns within half a
//! second; a request with the handler gets its answer (the broker withdraws
//! a waiting prompt) and its connection closes after it.
//!
//! **Audit.** Limits hit here are written to the audit log as `limit_hit`
//! through [`Handler::limit_hit`], at most one entry per limit every
//! [`AUDIT_EVERY`], the next entry saying how many were left out, so a flood
//! cannot flood the log.

use otc_proto::rpc::{ErrorBody, ErrorCode};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A reply: HTTP status and JSON body.
pub type Reply = (u16, String);

/// What the front layer hands complete, checked requests to.
pub trait Handler: Send + Sync + 'static {
    /// The protocol: `still_wanted` says whether the client is still
    /// connected (polled while a prompt waits).
    fn handle(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        still_wanted: &dyn Fn() -> bool,
    ) -> Reply;

    /// A limit was hit (already rate limited by the front layer).
    fn limit_hit(&self, limit: &str, detail: &str);
}

/// The front layer's settings (from `[limits]` and `[rpc]` of `otc.toml`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Connections open at once (reading, handled, or idle keep-alive).
    pub max_open_connections: usize,
    /// Requests handed to the handler at once.
    pub max_in_flight: usize,
    /// Request line plus headers, in bytes.
    pub max_header_bytes: usize,
    /// Request body, in bytes.
    pub max_body_bytes: usize,
    /// The whole head must arrive within this.
    pub header_timeout: Duration,
    /// The whole body must arrive within this after the head.
    pub body_timeout: Duration,
    /// Host names (besides IP literals) the endpoint answers to.
    pub allowed_hosts: Vec<String>,
}

/// Threads that answer `overloaded` beyond the connection cap.
pub const MAX_REFUSERS: usize = 4;
/// Connections closed to make room that may still be ending (each is over
/// the cap until its thread ends, which is at once).
pub const MAX_EVICTING: usize = 8;
/// `ConnState::waiting_since` of a connection that is not waiting for a
/// head (reading a body, handled, or answering).
const BUSY: u64 = u64::MAX;
/// How long a connection being closed after an error may still send bytes
/// that are read and thrown away (so the client reads our answer rather
/// than a reset), and how many.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 64 * 1024;
/// At most one audit entry per limit in this interval.
pub const AUDIT_EVERY: Duration = Duration::from_secs(5);
/// How often the accept loop looks at the stop flag.
const STOP_POLL: Duration = Duration::from_millis(200);
/// How long `serve` waits, after a stop, for the threads of connections
/// that were not being handled to end (they were shut down, so at once).
const STOP_GRACE: Duration = Duration::from_millis(500);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// An error reply in the endpoint's shape.
pub fn error_reply(code: ErrorCode, message: impl Into<String>) -> Reply {
    (
        code.http_status(),
        serde_json::to_string(&ErrorBody::new(code, message.into()))
            .unwrap_or_else(|_| "{}".to_string()),
    )
}

/// A refused request: its reply, and the limit to audit if one was hit.
struct Refusal {
    reply: Reply,
    limit: Option<(&'static str, String)>,
}

fn refuse(code: ErrorCode, message: impl Into<String>) -> Refusal {
    Refusal {
        reply: error_reply(code, message),
        limit: None,
    }
}

impl Refusal {
    fn audited(mut self, limit: &'static str, detail: String) -> Self {
        self.limit = Some((limit, detail));
        self
    }
}

// ------------------------------------------------------------------ Host ---

/// A host as `Host` or `Origin` names it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum HostName {
    Ip(IpAddr),
    /// Lower case, without a trailing dot.
    Name(String),
}

/// `host[:port]` or `[v6][:port]`.
fn parse_authority(s: &str) -> Option<(HostName, Option<u16>)> {
    let port = |p: &str| -> Option<u16> {
        if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        p.parse().ok()
    };
    if let Some(rest) = s.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        let ip: Ipv6Addr = inside.parse().ok()?;
        let p = match after {
            "" => None,
            a => Some(port(a.strip_prefix(':')?)?),
        };
        return Some((HostName::Ip(IpAddr::V6(ip)), p));
    }
    let (host, p) = match s.rsplit_once(':') {
        Some((h, p)) => (h, Some(port(p)?)),
        None => (s, None),
    };
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Some((HostName::Ip(IpAddr::V4(ip)), p));
    }
    let name = normalize_name(host)?;
    Some((HostName::Name(name), p))
}

/// A DNS name in lower case without its trailing dot, if it is one.
fn normalize_name(s: &str) -> Option<String> {
    let s = s.strip_suffix('.').unwrap_or(s);
    let ok = !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    ok.then(|| s.to_ascii_lowercase())
}

/// The names in `rpc.allowed_hosts`, normalized; entries that are not DNS
/// names are an error (so a typo is not silently ignored).
pub fn allowed_names(entries: &[String]) -> Result<Vec<String>, String> {
    entries
        .iter()
        .map(|e| {
            normalize_name(e.trim()).ok_or_else(|| {
                format!(
                    "rpc.allowed_hosts: {e:?} is not a host name (names only, no port; IP \
                     addresses are always accepted)"
                )
            })
        })
        .collect()
}

/// Check `Host` and `Origin`; `Ok` is the host the client addressed.
fn check_host(head: &Head, allowed: &[String]) -> Result<(), Refusal> {
    let bad_host = |why: &str| {
        refuse(
            ErrorCode::BadHost,
            format!(
                "{why}; address the device by its IP address, or add the name to \
                 rpc.allowed_hosts in otc.toml"
            ),
        )
    };
    let hosts: Vec<&str> = head.all("host").collect();
    let (host, host_port) = match hosts.as_slice() {
        [] => return Err(bad_host("the request has no Host header")),
        [one] => {
            parse_authority(one).ok_or_else(|| bad_host(&format!("Host {one:?} is not valid")))?
        }
        _ => return Err(bad_host("the request has more than one Host header")),
    };
    if let HostName::Name(n) = &host
        && !allowed.contains(n)
    {
        return Err(bad_host(&format!(
            "Host {n:?} is not an IP address nor an allowed name"
        )));
    }
    let origins: Vec<&str> = head.all("origin").collect();
    let forbidden = |why: String| {
        refuse(
            ErrorCode::ForbiddenOrigin,
            format!("{why}; web pages may not use this device"),
        )
    };
    match origins.as_slice() {
        [] => Ok(()),
        [origin] => {
            let (scheme, authority) = origin
                .split_once("://")
                .ok_or_else(|| forbidden(format!("Origin {origin:?} is not allowed")))?;
            let default = match scheme.to_ascii_lowercase().as_str() {
                "http" => 80,
                "https" => 443,
                _ => return Err(forbidden(format!("Origin {origin:?} is not allowed"))),
            };
            let same = parse_authority(authority)
                .is_some_and(|(h, p)| h == host && p.unwrap_or(default) == host_port.unwrap_or(80));
            if same {
                Ok(())
            } else {
                Err(forbidden(format!(
                    "Origin {origin:?} is not this device's own"
                )))
            }
        }
        _ => Err(forbidden("more than one Origin header".into())),
    }
}

// ------------------------------------------------------------------ head ---

/// A parsed request head. Header names are lower case.
#[derive(Debug)]
struct Head {
    method: String,
    target: String,
    http11: bool,
    headers: Vec<(String, String)>,
}

impl Head {
    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Does any `name` header list `token` (comma-separated, any case)?
    fn has_token(&self, name: &str, token: &str) -> bool {
        self.all(name)
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// Does the client want the connection kept open after this request?
    fn keep_alive(&self) -> bool {
        if self.has_token("connection", "close") {
            return false;
        }
        self.http11 || self.has_token("connection", "keep-alive")
    }
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Parse a request head (without its final empty line).
fn parse_head(bytes: &[u8]) -> Result<Head, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "the request head is not UTF-8 text")?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let line = lines.next().unwrap_or_default();
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(format!("malformed request line {line:?}"));
    };
    if method.is_empty() || method.len() > 16 || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(format!("malformed method {method:?}"));
    }
    if !target.starts_with('/') || target.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(format!(
            "the request target must be a path such as /v1/status, not {target:?}"
        ));
    }
    let http11 = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        v => return Err(format!("unsupported HTTP version {v:?}; use HTTP/1.1")),
    };
    let mut headers = Vec::new();
    for line in lines {
        if line.is_empty() {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            return Err("folded header lines are not accepted".into());
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("malformed header line {line:?}"))?;
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return Err(format!("malformed header name {name:?}"));
        }
        let value = value.trim_matches([' ', '\t']);
        if value.bytes().any(|b| (b < b' ' && b != b'\t') || b == 0x7f) {
            return Err(format!("control characters in header {name:?}"));
        }
        headers.push((name.to_ascii_lowercase(), value.to_string()));
    }
    Ok(Head {
        method: method.to_string(),
        target: target.to_string(),
        http11,
        headers,
    })
}

/// How the body is framed.
#[derive(Debug, PartialEq, Eq)]
enum Framing {
    Length(usize),
    Chunked,
}

/// The body's framing and size, from the head alone.
fn check_framing(head: &Head, max: usize) -> Result<Framing, Refusal> {
    let too_large = |what: String| {
        refuse(
            ErrorCode::TooLarge,
            format!("the request body is larger than {max} bytes"),
        )
        .audited("max_body_bytes", what)
    };
    let te: Vec<&str> = head.all("transfer-encoding").collect();
    let lengths: Vec<&str> = head.all("content-length").collect();
    if !te.is_empty() {
        if !lengths.is_empty() {
            return Err(refuse(
                ErrorCode::BadRequest,
                "a request may not carry both Transfer-Encoding and Content-Length",
            ));
        }
        if te.len() != 1 || !te[0].eq_ignore_ascii_case("chunked") {
            return Err(refuse(
                ErrorCode::BadRequest,
                "the only transfer coding accepted is \"chunked\"; or send Content-Length",
            ));
        }
        return Ok(Framing::Chunked);
    }
    let mut length = None;
    for v in lengths.iter().flat_map(|v| v.split(',')).map(str::trim) {
        if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
            return Err(refuse(
                ErrorCode::BadRequest,
                format!("Content-Length {v:?} is not a number"),
            ));
        }
        if length.is_some_and(|l: &str| l != v) {
            return Err(refuse(
                ErrorCode::BadRequest,
                "the request has conflicting Content-Length headers",
            ));
        }
        length = Some(v);
    }
    match length {
        None => Ok(Framing::Length(0)),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if n <= max => Ok(Framing::Length(n)),
            _ => Err(too_large(format!("Content-Length {v}"))),
        },
    }
}

/// Content-Type must be JSON on POST, PUT and anything with a body.
fn check_content_type(head: &Head, framing: &Framing) -> Result<(), Refusal> {
    let has_body = *framing != Framing::Length(0);
    if !(has_body || head.method == "POST" || head.method == "PUT") {
        return Ok(());
    }
    let types: Vec<&str> = head.all("content-type").collect();
    let json = matches!(types.as_slice(), [t] if t
        .split(';')
        .next()
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json")));
    if json {
        Ok(())
    } else {
        Err(refuse(
            ErrorCode::UnsupportedMediaType,
            format!(
                "{} requests must say Content-Type: application/json (got {})",
                head.method,
                match types.as_slice() {
                    [] => "none".to_string(),
                    t => format!("{:?}", t.join(", ")),
                }
            ),
        ))
    }
}

// ------------------------------------------------------------ connection ---

/// Why reading stopped.
#[derive(Debug, PartialEq, Eq)]
enum ReadError {
    /// The deadline passed.
    Timeout,
    /// The peer closed or reset the connection.
    Closed,
}

/// One accepted connection and the bytes read from it but not used yet.
struct Conn {
    stream: Arc<TcpStream>,
    buf: Vec<u8>,
}

impl Conn {
    /// Read more into `buf`, waiting until `deadline` at most.
    fn fill(&mut self, deadline: Instant) -> Result<(), ReadError> {
        let mut chunk = [0u8; 8192];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ReadError::Timeout);
            }
            if self.stream.set_read_timeout(Some(left)).is_err() {
                return Err(ReadError::Closed);
            }
            match (&*self.stream).read(&mut chunk) {
                Ok(0) => return Err(ReadError::Closed),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(());
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    continue;
                }
                Err(_) => return Err(ReadError::Closed),
            }
        }
    }

    /// The next request head, or `Ok(None)` when the connection ended (or
    /// idled out) cleanly between requests.
    fn read_head(&mut self, deadline: Instant, max: usize) -> Result<Option<Vec<u8>>, Refusal> {
        let mut scanned = 0;
        loop {
            // Empty lines before a request line are allowed (RFC 9112 2.2).
            let lead = self
                .buf
                .iter()
                .take_while(|b| **b == b'\r' || **b == b'\n')
                .count();
            if lead > 0 {
                self.buf.drain(..lead);
                scanned = 0;
            }
            if let Some(end) = head_end(&self.buf, scanned) {
                if end > max {
                    break;
                }
                let head: Vec<u8> = self.buf.drain(..end).collect();
                return Ok(Some(head));
            }
            if self.buf.len() > max {
                break;
            }
            scanned = self.buf.len().saturating_sub(3);
            match self.fill(deadline) {
                Ok(()) => {}
                Err(_) if self.buf.is_empty() => return Ok(None),
                Err(ReadError::Closed) => return Ok(None),
                Err(ReadError::Timeout) => {
                    return Err(refuse(
                        ErrorCode::Timeout,
                        "the request's headers did not arrive in time",
                    )
                    .audited("header_timeout", "a request head arrived too slowly".into()));
                }
            }
        }
        Err(refuse(
            ErrorCode::TooLarge,
            format!("the request line and headers are larger than {max} bytes"),
        )
        .audited("max_header_bytes", format!("more than {max} bytes")))
    }

    /// Take `n` bytes, reading until `deadline`.
    fn take(&mut self, n: usize, deadline: Instant) -> Result<Vec<u8>, ReadError> {
        while self.buf.len() < n {
            self.fill(deadline)?;
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// One CRLF-terminated line of at most `max` bytes (without its end).
    fn line(&mut self, deadline: Instant, max: usize) -> Result<Option<Vec<u8>>, ReadError> {
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                if i > max {
                    return Ok(None);
                }
                let mut l: Vec<u8> = self.buf.drain(..=i).collect();
                l.pop();
                if l.last() == Some(&b'\r') {
                    l.pop();
                }
                return Ok(Some(l));
            }
            if self.buf.len() > max {
                return Ok(None);
            }
            self.fill(deadline)?;
        }
    }

    /// The body, within `deadline` and `max` bytes.
    fn read_body(
        &mut self,
        framing: &Framing,
        deadline: Instant,
        max: usize,
    ) -> Result<Vec<u8>, Refusal> {
        let late = |e: ReadError| match e {
            ReadError::Timeout => refuse(
                ErrorCode::Timeout,
                "the request body did not arrive in time",
            )
            .audited("body_timeout", "a request body arrived too slowly".into()),
            ReadError::Closed => refuse(ErrorCode::BadRequest, "the request body was cut short"),
        };
        let n = match framing {
            Framing::Length(n) => return self.take(*n, deadline).map_err(late),
            Framing::Chunked => max,
        };
        let bad = |what: &str| refuse(ErrorCode::BadRequest, format!("bad chunked body: {what}"));
        let mut body = Vec::new();
        loop {
            let line = self
                .line(deadline, 1024)
                .map_err(late)?
                .ok_or_else(|| bad("chunk size line too long"))?;
            let text = std::str::from_utf8(&line).map_err(|_| bad("chunk size"))?;
            let size_text = text.split(';').next().unwrap_or_default().trim();
            if size_text.is_empty() || size_text.len() > 16 {
                return Err(bad("chunk size"));
            }
            let size = usize::from_str_radix(size_text, 16).map_err(|_| bad("chunk size"))?;
            if size == 0 {
                break;
            }
            if body.len().saturating_add(size) > n {
                return Err(refuse(
                    ErrorCode::TooLarge,
                    format!("the request body is larger than {max} bytes"),
                )
                .audited("max_body_bytes", "a chunked body".into()));
            }
            body.extend(self.take(size, deadline).map_err(late)?);
            if !self.take(2, deadline).map_err(late)?.ends_with(b"\n") {
                return Err(bad("chunk not followed by CRLF"));
            }
        }
        // Trailers, ignored; bounded like headers.
        let mut trailers = 0usize;
        loop {
            let line = self
                .line(deadline, 8192)
                .map_err(late)?
                .ok_or_else(|| bad("trailer too long"))?;
            if line.is_empty() {
                return Ok(body);
            }
            trailers += line.len();
            if trailers > 8192 {
                return Err(bad("trailers too long"));
            }
        }
    }
}

/// End of the head (after its empty line), searching from `from`.
fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    (from..buf.len()).find_map(|i| {
        if buf[i] != b'\n' {
            return None;
        }
        match (buf.get(i + 1), buf.get(i + 2)) {
            (Some(b'\n'), _) => Some(i + 2),
            (Some(b'\r'), Some(b'\n')) => Some(i + 3),
            _ => None,
        }
    })
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        421 => "Misdirected Request",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        _ => "Unknown",
    }
}

/// The bytes of a reply.
fn reply_bytes((status, body): &Reply, close: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{}\r\n",
        reason(*status),
        body.len(),
        if close { "Connection: close\r\n" } else { "" }
    )
    .into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

/// Close after an answer the client may not have finished sending for:
/// stop writing, then read and drop what still comes (at most
/// [`LINGER_BYTES`] for [`LINGER`]), so the client reads the answer rather
/// than a reset. The socket itself closes when its last owner drops it.
fn linger(stream: &TcpStream) {
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let deadline = Instant::now() + LINGER;
    let mut chunk = [0u8; 8192];
    let mut seen = 0;
    while seen < LINGER_BYTES {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match (&*stream).read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => seen += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

// ---------------------------------------------------------------- server ---

/// Counts a slot taken from `counter` and gives it back when dropped.
struct Slot<'a>(&'a AtomicUsize);

impl<'a> Slot<'a> {
    /// Take a slot if fewer than `max` are taken.
    fn take(counter: &'a AtomicUsize, max: usize) -> Option<Slot<'a>> {
        if counter.fetch_add(1, Ordering::AcqRel) < max {
            Some(Slot(counter))
        } else {
            counter.fetch_sub(1, Ordering::AcqRel);
            None
        }
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What the accept loop may know of a connection's thread.
#[derive(Default)]
struct ConnState {
    /// When it began waiting for a request head (milliseconds since
    /// `Shared::epoch`), or [`BUSY`].
    waiting_since: AtomicU64,
    /// A request of it is with the handler.
    handling: AtomicBool,
    /// Closed by the accept loop to make room.
    evicted: AtomicBool,
}

/// An open connection, as the accept loop sees it (to make room, and at a
/// stop).
struct Open {
    stream: Arc<TcpStream>,
    state: Arc<ConnState>,
}

/// State shared by the accept loop and the connection threads.
struct Shared<H: Handler> {
    handler: Arc<H>,
    settings: Settings,
    open: AtomicUsize,
    refusing: AtomicUsize,
    in_flight: AtomicUsize,
    next_id: AtomicU64,
    evicting: AtomicUsize,
    epoch: Instant,
    /// Set at a stop: connections close after the request they are in.
    stopping: AtomicBool,
    conns: Mutex<HashMap<u64, Open>>,
    audited: Mutex<HashMap<&'static str, (Instant, u64)>>,
}

impl<H: Handler> Shared<H> {
    /// Audit a limit, at most once per [`AUDIT_EVERY`] per limit.
    fn limit_hit(&self, limit: &'static str, detail: &str) {
        let now = Instant::now();
        let left_out = {
            let mut a = lock(&self.audited);
            match a.get_mut(limit) {
                Some((at, n)) if now.duration_since(*at) < AUDIT_EVERY => {
                    *n += 1;
                    return;
                }
                Some((at, n)) => {
                    *at = now;
                    std::mem::take(n)
                }
                None => {
                    a.insert(limit, (now, 0));
                    0
                }
            }
        };
        if left_out == 0 {
            self.handler.limit_hit(limit, detail);
        } else {
            self.handler.limit_hit(
                limit,
                &format!("{detail}; {left_out} more since the last entry"),
            );
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis().min(u128::from(BUSY - 1)) as u64
    }

    /// At the cap, make room for a new connection by closing the one that
    /// has waited longest for a request head (a slowloris, or an idle
    /// keep-alive). A client that sends its request at once is then served
    /// even while others hold every slot with heads that never end.
    /// Connections reading a body or being handled are never closed.
    fn evict_one(&self) -> bool {
        let Some(slot) = Slot::take(&self.evicting, MAX_EVICTING) else {
            return false;
        };
        let conns = lock(&self.conns);
        // The longest waiting; among equals, the first accepted.
        let victim = conns
            .iter()
            .filter(|(_, o)| !o.state.evicted.load(Ordering::Acquire))
            .filter_map(|(id, o)| {
                let t = o.state.waiting_since.load(Ordering::Acquire);
                (t != BUSY).then_some((t, *id, o))
            })
            .min_by_key(|(t, id, _)| (*t, *id));
        match victim {
            Some((t, _, o))
                if o.state
                    .waiting_since
                    .compare_exchange(t, BUSY, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok() =>
            {
                // Its thread gives the `evicting` slot back when it ends.
                std::mem::forget(slot);
                o.state.evicted.store(true, Ordering::Release);
                // Tell it why before closing: one send that never blocks
                // (MSG_DONTWAIT, so the victim's thread keeps its blocking
                // socket), then FIN both ways; its thread wakes and ends.
                let answer = reply_bytes(&self.overloaded("connections", 0).reply, true);
                let _ = nix::sys::socket::send(
                    o.stream.as_raw_fd(),
                    &answer,
                    nix::sys::socket::MsgFlags::MSG_DONTWAIT
                        | nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
                );
                let _ = o.stream.shutdown(std::net::Shutdown::Both);
                true
            }
            _ => false,
        }
    }

    fn overloaded(&self, limit: &'static str, max: usize) -> Refusal {
        refuse(
            ErrorCode::Overloaded,
            "the device is handling too many requests; try again shortly",
        )
        .audited(limit, format!("{max} at once"))
    }

    /// Answer `refusal` and close (after a short linger).
    fn refuse_and_close(&self, stream: &TcpStream, refusal: Refusal) {
        if let Some((limit, detail)) = &refusal.limit {
            self.limit_hit(limit, detail);
        }
        let _ = (&*stream).write_all(&reply_bytes(&refusal.reply, true));
        linger(stream);
    }
}

/// Serve `handler` on `listener` until `stop` is set; see the module doc.
/// Errors of single connections (or of `accept`) never end it.
///
/// `heartbeat` beats at every turn of the accept loop (at least every
/// `STOP_POLL`, 200 ms, while the loop is alive; see [`crate::watchdog`]).
pub fn serve<H: Handler>(
    handler: Arc<H>,
    listener: TcpListener,
    stop: Arc<AtomicBool>,
    settings: Settings,
    heartbeat: crate::watchdog::Heartbeat,
) -> std::io::Result<()> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    listener.set_nonblocking(true)?;
    let shared = Arc::new(Shared {
        handler,
        settings,
        open: AtomicUsize::new(0),
        refusing: AtomicUsize::new(0),
        in_flight: AtomicUsize::new(0),
        next_id: AtomicU64::new(0),
        evicting: AtomicUsize::new(0),
        epoch: Instant::now(),
        stopping: AtomicBool::new(false),
        conns: Mutex::default(),
        audited: Mutex::default(),
    });
    let poll_ms = PollTimeout::try_from(STOP_POLL).unwrap_or(PollTimeout::MAX);
    while !stop.load(Ordering::Acquire) {
        heartbeat.beat();
        let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, poll_ms) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
        match listener.accept() {
            Ok((stream, _peer)) => accept(&shared, stream),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => {
                // Out of descriptors or memory, or a connection that died
                // in the backlog: never fatal. Back off a little so a full
                // descriptor table does not spin this loop.
                shared.limit_hit("accept", &format!("accept failed: {e}"));
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    // Stop: connections not being handled are closed now; a request being
    // handled gets its answer (the broker withdraws a waiting prompt) and
    // its connection closes after it. This does not wait for those.
    shared.stopping.store(true, Ordering::Release);
    for o in lock(&shared.conns).values() {
        if !o.state.handling.load(Ordering::Acquire) {
            let _ = o.stream.shutdown(std::net::Shutdown::Both);
        }
    }
    let deadline = Instant::now() + STOP_GRACE;
    while shared.open.load(Ordering::Acquire) + shared.refusing.load(Ordering::Acquire)
        > shared.in_flight.load(Ordering::Acquire)
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// A new connection: a thread of its own if under the cap, else refused.
fn accept<H: Handler>(shared: &Arc<Shared<H>>, stream: TcpStream) {
    // Accepted sockets do not inherit O_NONBLOCK on Linux; make sure.
    if stream.set_nonblocking(false).is_err() {
        return;
    }
    let max = shared.settings.max_open_connections;
    let admitted = shared.open.fetch_add(1, Ordering::AcqRel) < max || {
        // Over the cap until the evicted connection's thread ends.
        let made_room = shared.evict_one();
        if made_room {
            shared.limit_hit(
                "max_open_connections",
                &format!("{max} open; the longest waiting for a request was closed"),
            );
        }
        made_room
    };
    if admitted {
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let stream = Arc::new(stream);
        let state = Arc::new(ConnState {
            waiting_since: AtomicU64::new(shared.now_ms()),
            ..ConnState::default()
        });
        lock(&shared.conns).insert(
            id,
            Open {
                stream: stream.clone(),
                state: state.clone(),
            },
        );
        let s = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("otc-rpc-conn".into())
            .spawn(move || {
                // Whatever happens below, the connection is unregistered
                // (and so closed) and its slot given back.
                struct Done<'a, H: Handler>(&'a Shared<H>, u64, &'a ConnState);
                impl<H: Handler> Drop for Done<'_, H> {
                    fn drop(&mut self) {
                        lock(&self.0.conns).remove(&self.1);
                        if self.2.evicted.load(Ordering::Acquire) {
                            self.0.evicting.fetch_sub(1, Ordering::AcqRel);
                        }
                        self.0.open.fetch_sub(1, Ordering::AcqRel);
                    }
                }
                let _done = Done(&s, id, &state);
                connection(&s, stream, &state);
            });
        if spawned.is_err() {
            lock(&shared.conns).remove(&id);
            shared.open.fetch_sub(1, Ordering::AcqRel);
        }
        return;
    }
    shared.open.fetch_sub(1, Ordering::AcqRel);
    let refusal = shared.overloaded("max_open_connections", max);
    if let Some(slot) = Slot::take(&shared.refusing, MAX_REFUSERS) {
        std::mem::forget(slot);
        let s = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("otc-rpc-refuse".into())
            .spawn(move || {
                let _slot = Slot(&s.refusing);
                let _ = stream.set_write_timeout(Some(LINGER));
                s.refuse_and_close(&stream, refusal);
            });
        if spawned.is_err() {
            shared.refusing.fetch_sub(1, Ordering::AcqRel);
        }
        return;
    }
    // Not even a refuser is free: one non-blocking try, then close.
    if let Some((limit, detail)) = &refusal.limit {
        shared.limit_hit(limit, detail);
    }
    if stream.set_nonblocking(true).is_ok() {
        let _ = (&stream).write(&reply_bytes(&refusal.reply, true));
        let _ = stream.shutdown(std::net::Shutdown::Write);
        // Whatever the client already sent is read and dropped (without
        // waiting), so closing sends a FIN after our answer, not a reset.
        let mut chunk = [0u8; 8192];
        for _ in 0..LINGER_BYTES / chunk.len() {
            if !matches!((&stream).read(&mut chunk), Ok(n) if n > 0) {
                break;
            }
        }
    }
}

/// Serve one connection: requests one after another while it is kept open.
fn connection<H: Handler>(shared: &Shared<H>, stream: Arc<TcpStream>, state: &ConnState) {
    let set = &shared.settings;
    let _ = stream.set_nodelay(true);
    if stream.set_write_timeout(Some(set.body_timeout)).is_err() {
        return;
    }
    let mut conn = Conn {
        stream: stream.clone(),
        buf: Vec::new(),
    };
    loop {
        match request(shared, &mut conn, state) {
            Ok(true) => continue,
            Ok(false) => return,
            Err(refusal) => return shared.refuse_and_close(&stream, refusal),
        }
    }
}

/// Read, check and answer one request. `Ok(true)`: keep the connection.
fn request<H: Handler>(
    shared: &Shared<H>,
    conn: &mut Conn,
    state: &ConnState,
) -> Result<bool, Refusal> {
    let set = &shared.settings;
    // Waiting for a head: the accept loop may close this to make room. The
    // first wait's time was set at accept.
    let _ = state.waiting_since.compare_exchange(
        BUSY,
        shared.now_ms(),
        Ordering::AcqRel,
        Ordering::Acquire,
    );
    let raw = conn.read_head(Instant::now() + set.header_timeout, set.max_header_bytes);
    state.waiting_since.store(BUSY, Ordering::Release);
    if state.evicted.load(Ordering::Acquire) {
        return Ok(false);
    }
    let Some(raw) = raw? else {
        return Ok(false);
    };
    let head = parse_head(&raw).map_err(|m| refuse(ErrorCode::BadRequest, m))?;
    check_host(&head, &set.allowed_hosts)?;
    let framing = check_framing(&head, set.max_body_bytes)?;
    check_content_type(&head, &framing)?;
    if shared.in_flight.load(Ordering::Acquire) >= set.max_in_flight {
        return Err(shared.overloaded("max_connections", set.max_in_flight));
    }
    if head.http11 && head.has_token("expect", "100-continue") {
        let _ = (&*conn.stream).write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
    }
    let body = conn.read_body(
        &framing,
        Instant::now() + set.body_timeout,
        set.max_body_bytes,
    )?;
    let Some(slot) = Slot::take(&shared.in_flight, set.max_in_flight) else {
        return Err(shared.overloaded("max_connections", set.max_in_flight));
    };
    let keep = head.keep_alive() && !shared.stopping.load(Ordering::Acquire);
    let stream = conn.stream.clone();
    let still_wanted = move || !crate::net::peer_gone(&stream);
    state.handling.store(true, Ordering::Release);
    let reply = shared
        .handler
        .handle(&head.method, &head.target, &body, &still_wanted);
    state.handling.store(false, Ordering::Release);
    // Handling is over: the slot is free before the client can read the
    // reply (and send its next request).
    drop(slot);
    drop(body);
    if (&*conn.stream)
        .write_all(&reply_bytes(&reply, !keep))
        .is_err()
    {
        return Ok(false);
    }
    Ok(keep)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(lines: &str) -> Head {
        parse_head(format!("GET / HTTP/1.1\r\n{lines}").as_bytes()).unwrap()
    }

    fn host_ok(host: &str, allowed: &[&str]) -> bool {
        let allowed: Vec<String> = allowed.iter().map(|s| s.to_string()).collect();
        check_host(&head(&format!("Host: {host}\r\n")), &allowed).is_ok()
    }

    #[test]
    fn hosts_are_ip_literals_or_allowed_names() {
        for h in [
            "127.0.0.1",
            "127.0.0.1:9051",
            "192.0.2.7:1",
            "[::1]",
            "[::1]:9051",
            "[fe80::1]:80",
        ] {
            assert!(host_ok(h, &[]), "{h}");
        }
        for h in [
            "evil.com",
            "localhost",
            "127.0.0.1.nip.io",
            "127.1",
            "0x7f.0.0.1",
            "[::1",
            "::1",
            "127.0.0.1:",
            "127.0.0.1:99999",
            "",
            "a b",
        ] {
            assert!(!host_ok(h, &[]), "{h}");
        }
        assert!(host_ok("OTC.local.:9051", &["otc.local"]));
        assert!(!host_ok("otc.local.evil.com", &["otc.local"]));
        assert!(check_host(&head(""), &[]).is_err(), "no Host");
        assert!(check_host(&head("Host: 1.2.3.4\r\nHost: 1.2.3.4\r\n"), &[]).is_err());
        assert_eq!(
            allowed_names(&["OTC.Local.".into()]).unwrap(),
            vec!["otc.local".to_string()]
        );
        assert!(allowed_names(&["otc.local:80".into()]).is_err());
    }

    #[test]
    fn origins_must_be_the_hosts_own() {
        let check = |host: &str, origin: &str| {
            check_host(&head(&format!("Host: {host}\r\nOrigin: {origin}\r\n")), &[]).is_ok()
        };
        assert!(check("127.0.0.1:9051", "http://127.0.0.1:9051"));
        assert!(check("127.0.0.1", "http://127.0.0.1"));
        assert!(check("127.0.0.1", "http://127.0.0.1:80"));
        assert!(check("[::1]:8080", "http://[::1]:8080"));
        assert!(!check("127.0.0.1:9051", "http://127.0.0.1:3000"));
        assert!(!check("127.0.0.1:9051", "http://evil.com"));
        assert!(!check("127.0.0.1:9051", "null"));
        assert!(!check("127.0.0.1", "https://127.0.0.1"));
        assert!(!check("127.0.0.1:9051", "file://127.0.0.1:9051"));
        assert!(
            check_host(
                &head("Host: 1.2.3.4\r\nOrigin: http://1.2.3.4\r\nOrigin: http://1.2.3.4\r\n"),
                &[]
            )
            .is_err()
        );
    }

    #[test]
    fn heads_parse_strictly() {
        let h = parse_head(b"POST /v1/package?x=1 HTTP/1.0\r\nContent-Type:  a/b \r\n").unwrap();
        assert_eq!(
            (h.method.as_str(), h.target.as_str(), h.http11),
            ("POST", "/v1/package?x=1", false)
        );
        assert_eq!(h.all("content-type").collect::<Vec<_>>(), ["a/b"]);
        assert!(!h.keep_alive());
        for bad in [
            &b"GET /"[..],
            b"GET / HTTP/2",
            b"get / HTTP/1.1",
            b"GET http://evil.com/ HTTP/1.1",
            b"GET / HTTP/1.1\r\nBad Name: x",
            b"GET / HTTP/1.1\r\nA: b\r\n folded",
            b"GET / HTTP/1.1\r\nA: \x01",
            b"GET / HTTP/1.1\r\nA: \xff",
        ] {
            assert!(
                parse_head(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nbody", 0), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.1\n\nbody", 0), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n", 0), None);
    }

    #[test]
    fn framing_is_decided_from_the_head() {
        let f = |lines: &str| check_framing(&head(lines), 100).map_err(|r| r.reply.0);
        assert_eq!(f(""), Ok(Framing::Length(0)));
        assert_eq!(f("Content-Length: 100\r\n"), Ok(Framing::Length(100)));
        assert_eq!(f("Content-Length: 5, 5\r\n"), Ok(Framing::Length(5)));
        assert_eq!(f("Content-Length: 101\r\n"), Err(413));
        assert_eq!(f("Content-Length: 99999999999999999999999\r\n"), Err(413));
        assert_eq!(f("Content-Length: -1\r\n"), Err(400));
        assert_eq!(f("Content-Length: 1\r\nContent-Length: 2\r\n"), Err(400));
        assert_eq!(f("Transfer-Encoding: chunked\r\n"), Ok(Framing::Chunked));
        assert_eq!(f("Transfer-Encoding: gzip, chunked\r\n"), Err(400));
        assert_eq!(
            f("Transfer-Encoding: chunked\r\nContent-Length: 1\r\n"),
            Err(400)
        );
    }

    #[test]
    fn content_type_must_be_json() {
        let ct = |method: &str, lines: &str| {
            let h = parse_head(format!("{method} / HTTP/1.1\r\n{lines}").as_bytes()).unwrap();
            let framing = check_framing(&h, 100).map_err(|r| r.reply.0)?;
            check_content_type(&h, &framing).map_err(|r| r.reply.0)
        };
        assert_eq!(ct("GET", ""), Ok(()));
        assert_eq!(ct("POST", ""), Err(415));
        assert_eq!(ct("PUT", "Content-Type: text/plain\r\n"), Err(415));
        assert_eq!(
            ct("POST", "Content-Type: text/plain\r\nContent-Length: 2\r\n"),
            Err(415)
        );
        assert_eq!(ct("GET", "Content-Length: 2\r\n"), Err(415));
        assert_eq!(
            ct("POST", "Content-Type: Application/JSON; charset=utf-8\r\n"),
            Ok(())
        );
        assert_eq!(
            ct(
                "POST",
                "Content-Type: application/json\r\nContent-Type: text/plain\r\n"
            ),
            Err(415)
        );
    }
}
