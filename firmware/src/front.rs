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
//!   `limits.max_in_flight` requests are already being handled (waiting on
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
//! `Content-Type: application/json` and `Content-Length`, with the
//! canonical reason phrases (`503 Service Unavailable` for `cancelled`).
//! tiny_http stays a dev-dependency, for the RPC bench's bare echo server.
//!
//! **Parsing is not ours.** The connection handling above is; the bytes are
//! parsed by `httparse`, the parser hyper uses (fuzzed upstream): request
//! heads, chunk-size lines and trailers. On top of it this layer is stricter
//! where parsers on a request's way could disagree (issue #16): every line
//! ends with CRLF (a bare LF is `bad_request`, as at the relay); a chunk
//! size is hex digits only (no `+5`, `0x5`, leading space); the two bytes
//! after a chunk must be exactly CRLF. The fuzz target
//! `fuzz/fuzz_targets/front_request.rs` reads bytes through the same code
//! ([`fuzzing`]), split into reads of every size.
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
//! **Audit.** Limits hit here are handed, every one, to
//! [`Handler::limit_hit`], which writes them to the audit log as
//! `limit_hit`. This layer does not throttle them: the handler's audit does,
//! on the platform clock ([`crate::rpc::Service::audit`]: a few entries per
//! limit and minute, the rest summed up in one `repeated` entry), so a
//! flood cannot flood the log and there is one throttle, on one clock.

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

    /// A limit was hit: every hit, not throttled by the front layer (the
    /// handler's audit throttles them on the platform clock).
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
/// head (reading a body, handled, or answering); `ConnState::body_since`
/// of one that is not reading a body.
const BUSY: u64 = u64::MAX;
/// A connection that has been reading one body for this long may be
/// closed to make room (issue 23: bodies that stall after a byte held
/// every slot). A client on the cable sends the few kilobytes of a body
/// in milliseconds, so only a stalled or crawling one is ever this old.
const BODY_EVICT_AFTER_MS: u64 = 1000;
/// How long a connection being closed after an error may still send bytes
/// that are read and thrown away (so the client reads our answer rather
/// than a reset), and how many.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 64 * 1024;
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

/// Header lines a request may carry (hyper's default too); a head with
/// more is refused.
const MAX_HEADERS: usize = 100;

/// The first line feed in `bytes` that does not end a CRLF, if any. HTTP/1.1
/// lines end with CRLF; a bare LF is refused, as the relay refuses it, so no
/// two parsers on the way can disagree on where a line ends.
fn bare_lf(bytes: &[u8]) -> Option<usize> {
    bare_lf_from(bytes, 0)
}

/// [`bare_lf`] at or after `from` (the byte before it still tells whether
/// a LF at `from` ends a CRLF).
fn bare_lf_from(bytes: &[u8], from: usize) -> Option<usize> {
    (from..bytes.len()).find(|&i| bytes[i] == b'\n' && (i == 0 || bytes[i - 1] != b'\r'))
}

/// Parse a request head (without its final empty line) with `httparse`,
/// then hold it to what this endpoint takes: an upper-case method, a path
/// (no absolute URI, no `*`), HTTP/1.0 or 1.1, CRLF line ends, UTF-8 text
/// without control characters in header values.
fn parse_head(bytes: &[u8]) -> Result<Head, String> {
    if bare_lf(bytes).is_some() {
        return Err("a line of the request head ends with a bare LF; end lines with CRLF".into());
    }
    let mut whole = Vec::with_capacity(bytes.len() + 2);
    whole.extend_from_slice(bytes);
    whole.extend_from_slice(b"\r\n");
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    match req.parse(&whole) {
        Ok(httparse::Status::Complete(n)) if n == whole.len() => {}
        Ok(httparse::Status::Complete(_)) => {
            return Err("the request head has an empty line before its end".into());
        }
        Ok(httparse::Status::Partial) => return Err("the request head is incomplete".into()),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(format!(
                "the request has more than {MAX_HEADERS} header lines"
            ));
        }
        Err(e) => return Err(format!("malformed request head: {e}")),
    }
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Err("the request head is incomplete".into());
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
        1 => true,
        0 => false,
        v => return Err(format!("unsupported HTTP version 1.{v}; use HTTP/1.1")),
    };
    let mut headers = Vec::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let value = std::str::from_utf8(h.value)
            .map_err(|_| format!("header {:?} is not UTF-8 text", h.name))?;
        if value.bytes().any(|b| (b < b' ' && b != b'\t') || b == 0x7f) {
            return Err(format!("control characters in header {:?}", h.name));
        }
        headers.push((
            h.name.to_ascii_lowercase(),
            value.trim_matches([' ', '\t']).to_string(),
        ));
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

/// Where a connection's bytes come from: its socket, or (for the fuzz
/// target, [`fuzzing`]) a slice handed out in pieces.
trait Source {
    /// Append what arrives next to `buf`, waiting until `deadline` at most.
    fn read_more(&mut self, buf: &mut Vec<u8>, deadline: Instant) -> Result<(), ReadError>;
}

/// How far a socket's read timeout may be from what is left of the
/// deadline before it is set again (see [`Socket`]).
const TIMEOUT_SLACK: Duration = Duration::from_millis(10);

/// An accepted connection's socket as a [`Source`], and the read timeout
/// last set on it. The timeout is set again only when it is more than
/// [`TIMEOUT_SLACK`] off what is left of the deadline, so the next head on
/// a kept-alive connection costs no `setsockopt` call, and no read waits
/// more than [`TIMEOUT_SLACK`] past its deadline (one that ends early just
/// reads again with what is left).
struct Socket {
    stream: Arc<TcpStream>,
    timeout: Option<Duration>,
}

impl Socket {
    fn new(stream: Arc<TcpStream>) -> Socket {
        Socket {
            stream,
            timeout: None,
        }
    }

    /// Reads wait `left` at most, give or take [`TIMEOUT_SLACK`].
    fn wait_at_most(&mut self, left: Duration) -> std::io::Result<()> {
        if self
            .timeout
            .is_some_and(|t| t.abs_diff(left) <= TIMEOUT_SLACK)
        {
            return Ok(());
        }
        self.timeout = None;
        self.stream.set_read_timeout(Some(left))?;
        self.timeout = Some(left);
        Ok(())
    }
}

impl Source for Socket {
    fn read_more(&mut self, buf: &mut Vec<u8>, deadline: Instant) -> Result<(), ReadError> {
        let mut chunk = [0u8; 8192];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ReadError::Timeout);
            }
            if self.wait_at_most(left).is_err() {
                return Err(ReadError::Closed);
            }
            match (&*self.stream).read(&mut chunk) {
                Ok(0) => return Err(ReadError::Closed),
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
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
}

/// The longest chunk-size line (size and extensions) read.
const MAX_CHUNK_LINE: usize = 1024;
/// The most trailer bytes read after a chunked body.
const MAX_TRAILERS: usize = 8192;

/// One accepted connection and the bytes read from it but not used yet.
struct Conn<S: Source> {
    src: S,
    buf: Vec<u8>,
}

impl<S: Source> Conn<S> {
    /// Read more into `buf`, waiting until `deadline` at most.
    fn fill(&mut self, deadline: Instant) -> Result<(), ReadError> {
        self.src.read_more(&mut self.buf, deadline)
    }

    /// The next request head (without its final empty line), or
    /// `Ok(None)` when the connection ended (or idled out) cleanly between
    /// requests.
    fn read_head(&mut self, deadline: Instant, max: usize) -> Result<Option<Vec<u8>>, Refusal> {
        let mut scanned = 0;
        loop {
            // Empty lines before a request line are allowed (RFC 9112 2.2).
            let lead = self
                .buf
                .chunks(2)
                .take_while(|pair| *pair == b"\r\n")
                .count();
            if lead > 0 {
                self.buf.drain(..2 * lead);
                scanned = 0;
            }
            // Only the first `max` bytes can hold a head, and only they are
            // looked at, however many have arrived.
            match head_end(&self.buf[..self.buf.len().min(max)], scanned) {
                Err(why) => return Err(refuse(ErrorCode::BadRequest, why)),
                Ok(Some(end)) => {
                    let mut head: Vec<u8> = self.buf.drain(..end).collect();
                    head.truncate(end - 2);
                    return Ok(Some(head));
                }
                Ok(None) => {}
            }
            if self.buf.len() > max {
                break;
            }
            // A CRLF CRLF may straddle what is here and what comes next; a
            // CR at the very end is looked at again with its LF.
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
        match framing {
            Framing::Length(n) => self.take(*n, deadline).map_err(late),
            Framing::Chunked => self.read_chunked(deadline, max, late),
        }
    }

    /// A chunked body (RFC 9112 7.1): chunk sizes parsed by `httparse`,
    /// each chunk followed by exactly CRLF, the trailers bounded and
    /// dropped.
    fn read_chunked(
        &mut self,
        deadline: Instant,
        max: usize,
        late: impl Fn(ReadError) -> Refusal,
    ) -> Result<Vec<u8>, Refusal> {
        let bad = |what: &str| refuse(ErrorCode::BadRequest, format!("bad chunked body: {what}"));
        let mut body = Vec::new();
        loop {
            let size = loop {
                match chunk_size(&self.buf) {
                    Err(what) => return Err(bad(what)),
                    Ok(Some((used, size))) => {
                        self.buf.drain(..used);
                        break size;
                    }
                    Ok(None) => self.fill(deadline).map_err(&late)?,
                }
            };
            if size == 0 {
                break;
            }
            if size > max.saturating_sub(body.len()) as u64 {
                return Err(refuse(
                    ErrorCode::TooLarge,
                    format!("the request body is larger than {max} bytes"),
                )
                .audited("max_body_bytes", "a chunked body".into()));
            }
            // `size` is at most `max` here.
            body.extend(self.take(size as usize, deadline).map_err(&late)?);
            if self.take(2, deadline).map_err(&late)? != b"\r\n" {
                return Err(bad("chunk not followed by CRLF"));
            }
        }
        loop {
            match trailers_end(&self.buf) {
                Err(what) => return Err(bad(what)),
                Ok(Some(end)) => {
                    self.buf.drain(..end);
                    return Ok(body);
                }
                Ok(None) => self.fill(deadline).map_err(&late)?,
            }
        }
    }
}

/// End of the head (after its empty line), searching from `from` (where
/// the previous search stopped); a line of the head that ends with a bare
/// LF is an error. Bytes after the head (a body) are not looked at.
fn head_end(buf: &[u8], from: usize) -> Result<Option<usize>, String> {
    let from = from.min(buf.len());
    let end = buf[from..]
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| from + i + 4);
    let head = &buf[..end.unwrap_or(buf.len())];
    if bare_lf_from(head, from).is_some() {
        return Err("a line of the request head ends with a bare LF; end lines with CRLF".into());
    }
    Ok(end)
}

/// A chunk-size line at the start of `buf`, parsed by `httparse`:
/// `Some((length of the line with its CRLF, size))`, or `None` while the
/// line is incomplete. The size must have at least one hex digit (no sign,
/// no `0x`, at most 16 digits), and the line must end with CRLF within
/// [`MAX_CHUNK_LINE`] bytes.
fn chunk_size(buf: &[u8]) -> Result<Option<(usize, u64)>, &'static str> {
    if buf.first().is_some_and(|b| !b.is_ascii_hexdigit()) {
        return Err("a chunk size must start with a hex digit");
    }
    let line = &buf[..buf.len().min(MAX_CHUNK_LINE)];
    match httparse::parse_chunk_size(line) {
        Ok(httparse::Status::Partial) if line.len() == MAX_CHUNK_LINE => {
            Err("chunk size line too long")
        }
        Ok(httparse::Status::Complete((used, size))) if bare_lf(&buf[..used]).is_none() => {
            Ok(Some((used, size)))
        }
        Ok(httparse::Status::Complete(_)) => Err("a chunk size line ends with a bare LF"),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::InvalidChunkSize) => Err("malformed chunk size"),
    }
}

/// The end of the trailer section at the start of `buf` (after its empty
/// line, within [`MAX_TRAILERS`] bytes), parsed by `httparse`; `None`
/// while it is incomplete. Trailers are dropped.
fn trailers_end(buf: &[u8]) -> Result<Option<usize>, &'static str> {
    const MALFORMED: &str = "malformed trailers (or a line not ended with CRLF)";
    let section = &buf[..buf.len().min(MAX_TRAILERS)];
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    match httparse::parse_headers(section, &mut slots) {
        Ok(httparse::Status::Complete((end, _))) if bare_lf(&section[..end]).is_none() => {
            Ok(Some(end))
        }
        Ok(httparse::Status::Partial) if bare_lf(section).is_none() => {
            if section.len() == MAX_TRAILERS {
                Err("trailers too long")
            } else {
                Ok(None)
            }
        }
        _ => Err(MALFORMED),
    }
}

/// The reason phrase of `status`: its canonical one (RFC 9110, as the
/// `http` crate lists them), or none for an unregistered code.
fn reason(status: u16) -> &'static str {
    http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("")
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

/// A count of things (open connections, requests in flight, refusers,
/// closings), shared by the threads that take and give back its slots.
type Counter = Arc<AtomicUsize>;

/// One slot taken from a [`Counter`], given back when dropped. It is owned,
/// so it moves with what holds it: into a connection's thread, a refuser's
/// thread, or the state of a connection being closed.
struct Slot(Counter);

impl Slot {
    /// Take a slot if fewer than `max` are taken.
    fn take(counter: &Counter, max: usize) -> Option<Slot> {
        if counter.fetch_add(1, Ordering::AcqRel) < max {
            Some(Slot(counter.clone()))
        } else {
            counter.fetch_sub(1, Ordering::AcqRel);
            None
        }
    }

    /// Take a slot even beyond the count's cap (see [`Shared::admit`]).
    fn over_cap(counter: &Counter) -> Slot {
        counter.fetch_add(1, Ordering::AcqRel);
        Slot(counter.clone())
    }
}

impl Drop for Slot {
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
    /// When it began reading the body of the request it is reading
    /// (milliseconds since `Shared::epoch`), or [`BUSY`].
    body_since: AtomicU64,
    /// A request of it is with the handler.
    handling: AtomicBool,
    /// Closed by the accept loop to make room.
    evicted: AtomicBool,
    /// The closing slot ([`MAX_EVICTING`]) taken to close it: given back
    /// when the connection's thread lets go of this state, at its end.
    closing: Mutex<Option<Slot>>,
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
    open: Counter,
    refusing: Counter,
    in_flight: Counter,
    next_id: AtomicU64,
    evicting: Counter,
    epoch: Instant,
    /// Set at a stop: connections close after the request they are in.
    stopping: AtomicBool,
    conns: Mutex<HashMap<u64, Open>>,
}

impl<H: Handler> Shared<H> {
    /// Hand a limit hit to the handler, which audits it. Not throttled
    /// here: the handler's audit throttles limit hits on the platform
    /// clock ([`crate::rpc::Service::audit`]), the one throttle.
    fn limit_hit(&self, limit: &'static str, detail: &str) {
        self.handler.limit_hit(limit, detail);
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis().min(u128::from(BUSY - 1)) as u64
    }

    /// At the cap, make room for a new connection by closing the one that
    /// has waited longest for a request head (a slowloris, or an idle
    /// keep-alive), or else the one stalled longest in a body (over a
    /// second in it). A client that sends its request at once is then
    /// served even while others hold every slot with heads or bodies that
    /// never end. Connections being handled are never closed.
    fn evict_one(&self) -> bool {
        let Some(slot) = Slot::take(&self.evicting, MAX_EVICTING) else {
            return false;
        };
        let conns = lock(&self.conns);
        // The longest waiting for a head; among equals, the first
        // accepted. If none waits for a head, the one reading its body
        // the longest, once that is over [`BODY_EVICT_AFTER_MS`]. Each is
        // claimed by swapping its time for BUSY, which its own thread
        // does when it moves on: one of the two wins.
        let live = || {
            conns
                .iter()
                .filter(|(_, o)| !o.state.evicted.load(Ordering::Acquire))
        };
        let waiting = live()
            .filter_map(|(id, o)| {
                let t = o.state.waiting_since.load(Ordering::Acquire);
                (t != BUSY).then_some((t, *id, o, &o.state.waiting_since))
            })
            .min_by_key(|(t, id, _, _)| (*t, *id));
        let now = self.now_ms();
        let victim = waiting.or_else(|| {
            live()
                .filter_map(|(id, o)| {
                    let t = o.state.body_since.load(Ordering::Acquire);
                    (t != BUSY && now.saturating_sub(t) >= BODY_EVICT_AFTER_MS).then_some((
                        t,
                        *id,
                        o,
                        &o.state.body_since,
                    ))
                })
                .min_by_key(|(t, id, _, _)| (*t, *id))
        });
        match victim {
            Some((t, _, o, since))
                if since
                    .compare_exchange(t, BUSY, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok() =>
            {
                // Its thread gives the closing slot back when it ends.
                *lock(&o.state.closing) = Some(slot);
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

    /// An open slot for a new connection: under the cap, or over it once
    /// the connection that waited longest for a head was closed to make
    /// room (over the cap until that one's thread ends).
    fn admit(&self) -> Option<Slot> {
        let max = self.settings.max_open_connections;
        if let Some(open) = Slot::take(&self.open, max) {
            return Some(open);
        }
        if !self.evict_one() {
            return None;
        }
        self.limit_hit(
            "max_open_connections",
            &format!("{max} open; the longest waiting for a request was closed"),
        );
        Some(Slot::over_cap(&self.open))
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
        open: Counter::default(),
        refusing: Counter::default(),
        in_flight: Counter::default(),
        next_id: AtomicU64::new(0),
        evicting: Counter::default(),
        epoch: Instant::now(),
        stopping: AtomicBool::new(false),
        conns: Mutex::default(),
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

/// A new connection: a thread of its own if under the cap (or once room
/// was made), else refused.
fn accept<H: Handler>(shared: &Arc<Shared<H>>, stream: TcpStream) {
    // Accepted sockets do not inherit O_NONBLOCK on Linux; make sure.
    if stream.set_nonblocking(false).is_err() {
        return;
    }
    match shared.admit() {
        Some(open) => spawn_connection(shared, stream, open),
        None => refuse_over_cap(shared, stream),
    }
}

/// A connection as its thread holds it: registered with the accept loop
/// (which may close it to make room, or at a stop) until the thread ends,
/// and its open slot with it.
struct Registered<H: Handler> {
    shared: Arc<Shared<H>>,
    id: u64,
    state: Arc<ConnState>,
    _open: Slot,
}

impl<H: Handler> Drop for Registered<H> {
    /// Unregistered, so closed once the thread's own handle goes too; then
    /// its state (with a closing slot, if it was closed to make room) and
    /// its open slot are given back.
    fn drop(&mut self) {
        lock(&self.shared.conns).remove(&self.id);
    }
}

/// Serve an admitted connection on a thread of its own. If the thread
/// cannot start, the registration is dropped with it: the connection is
/// closed and its slot given back.
fn spawn_connection<H: Handler>(shared: &Arc<Shared<H>>, stream: TcpStream, open: Slot) {
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let stream = Arc::new(stream);
    let state = Arc::new(ConnState {
        waiting_since: AtomicU64::new(shared.now_ms()),
        body_since: AtomicU64::new(BUSY),
        ..ConnState::default()
    });
    lock(&shared.conns).insert(
        id,
        Open {
            stream: stream.clone(),
            state: state.clone(),
        },
    );
    let registered = Registered {
        shared: shared.clone(),
        id,
        state,
        _open: open,
    };
    let _ = std::thread::Builder::new()
        .name("otc-rpc-conn".into())
        .spawn(move || connection(&registered.shared, stream, &registered.state));
}

/// Over the cap with no room to make: `overloaded`, from a short-lived
/// refuser thread if one of [`MAX_REFUSERS`] is free, else at once.
fn refuse_over_cap<H: Handler>(shared: &Arc<Shared<H>>, stream: TcpStream) {
    let refusal = shared.overloaded("max_open_connections", shared.settings.max_open_connections);
    let Some(slot) = Slot::take(&shared.refusing, MAX_REFUSERS) else {
        return refuse_without_waiting(shared, &stream, refusal);
    };
    let s = shared.clone();
    // A thread that cannot start drops the slot and the connection.
    let _ = std::thread::Builder::new()
        .name("otc-rpc-refuse".into())
        .spawn(move || {
            let _slot = slot;
            let _ = stream.set_write_timeout(Some(LINGER));
            s.refuse_and_close(&stream, refusal);
        });
}

/// Not even a refuser is free: one non-blocking try at the answer, then
/// close.
fn refuse_without_waiting<H: Handler>(shared: &Shared<H>, stream: &TcpStream, refusal: Refusal) {
    if let Some((limit, detail)) = &refusal.limit {
        shared.limit_hit(limit, detail);
    }
    if stream.set_nonblocking(true).is_err() {
        return;
    }
    let _ = (&*stream).write(&reply_bytes(&refusal.reply, true));
    let _ = stream.shutdown(std::net::Shutdown::Write);
    // Whatever the client already sent is read and dropped (without
    // waiting), so closing sends a FIN after our answer, not a reset.
    let mut chunk = [0u8; 8192];
    for _ in 0..LINGER_BYTES / chunk.len() {
        if !matches!((&*stream).read(&mut chunk), Ok(n) if n > 0) {
            break;
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
        src: Socket::new(stream.clone()),
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

/// Check a request whose head `raw` was just read from `conn`, and read
/// its body: the head parsed, then Host and Origin, the body's framing and
/// size, Content-Type, then `before_body` (the server's handling slot and
/// `100 Continue`), then the body within its deadline and size. Everything
/// the head can tell is refused before a byte of the body is read.
fn checked_request<S: Source>(
    conn: &mut Conn<S>,
    raw: &[u8],
    set: &Settings,
    before_body: impl FnOnce(&Head) -> Result<(), Refusal>,
) -> Result<(Head, Vec<u8>), Refusal> {
    let head = parse_head(raw).map_err(|m| refuse(ErrorCode::BadRequest, m))?;
    check_host(&head, &set.allowed_hosts)?;
    let framing = check_framing(&head, set.max_body_bytes)?;
    check_content_type(&head, &framing)?;
    before_body(&head)?;
    let body = conn.read_body(
        &framing,
        Instant::now() + set.body_timeout,
        set.max_body_bytes,
    )?;
    Ok((head, body))
}

/// Read, check and answer one request. `Ok(true)`: keep the connection.
fn request<H: Handler>(
    shared: &Shared<H>,
    conn: &mut Conn<Socket>,
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
    let stream = conn.src.stream.clone();
    let checked = checked_request(conn, &raw, set, |head| {
        if shared.in_flight.load(Ordering::Acquire) >= set.max_in_flight {
            return Err(shared.overloaded("max_connections", set.max_in_flight));
        }
        if head.http11 && head.has_token("expect", "100-continue") {
            let _ = (&*stream).write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        // Reading the body: the accept loop may close this to make room
        // once it has stalled in it (see `Shared::evict_one`).
        state.body_since.store(shared.now_ms(), Ordering::Release);
        Ok(())
    });
    // Out of the body phase; if the accept loop claimed this connection
    // first, it is closed: nothing of its request is handled.
    let claimed = state.body_since.swap(BUSY, Ordering::AcqRel) == BUSY
        && state.evicted.load(Ordering::Acquire);
    if claimed {
        return Ok(false);
    }
    let (head, body) = checked?;
    let Some(slot) = Slot::take(&shared.in_flight, set.max_in_flight) else {
        return Err(shared.overloaded("max_connections", set.max_in_flight));
    };
    let keep = head.keep_alive() && !shared.stopping.load(Ordering::Acquire);
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
    if (&*conn.src.stream)
        .write_all(&reply_bytes(&reply, !keep))
        .is_err()
    {
        return Ok(false);
    }
    Ok(keep)
}

/// The front layer's reading and checking of requests, without a socket,
/// for the fuzz target (`fuzz/fuzz_targets/front_request.rs`) and tests.
/// Not part of the device's API.
#[doc(hidden)]
pub mod fuzzing {
    use super::*;

    /// Settings the fuzz target reads with: the device's defaults, and
    /// `device` as an allowed host name.
    pub fn settings() -> Settings {
        Settings {
            max_open_connections: 32,
            max_in_flight: 4,
            max_header_bytes: 8 * 1024,
            max_body_bytes: 64 * 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            allowed_hosts: vec!["device".into()],
        }
    }

    /// A slice that arrives `piece` bytes at a time, then ends.
    struct Pieces<'a> {
        rest: &'a [u8],
        piece: usize,
    }

    impl Source for Pieces<'_> {
        fn read_more(&mut self, buf: &mut Vec<u8>, _: Instant) -> Result<(), ReadError> {
            if self.rest.is_empty() {
                return Err(ReadError::Closed);
            }
            let (now, later) = self.rest.split_at(self.piece.clamp(1, self.rest.len()));
            buf.extend_from_slice(now);
            self.rest = later;
            Ok(())
        }
    }

    /// What became of one request read from the bytes.
    #[derive(Debug, PartialEq, Eq)]
    pub enum Outcome {
        /// Checked and read whole: what the handler would be given.
        Request {
            method: String,
            target: String,
            body: Vec<u8>,
            keep_alive: bool,
        },
        /// Refused with this reply (the connection is then closed).
        Refused { status: u16, reply: Vec<u8> },
    }

    /// Read requests from `bytes`, arriving `piece` bytes at a time, as one
    /// connection of the device reads them with `set`: heads, Host and
    /// Origin, framing and bodies, until the bytes end, a request is
    /// refused, or one does not keep the connection.
    pub fn requests(bytes: &[u8], piece: usize, set: &Settings) -> Vec<Outcome> {
        let mut conn = Conn {
            src: Pieces { rest: bytes, piece },
            buf: Vec::new(),
        };
        let mut out = Vec::new();
        loop {
            let deadline = Instant::now() + set.header_timeout;
            let read = conn
                .read_head(deadline, set.max_header_bytes)
                .and_then(|raw| match raw {
                    Some(raw) => checked_request(&mut conn, &raw, set, |_| Ok(())).map(Some),
                    None => Ok(None),
                });
            match read {
                Ok(None) => return out,
                Ok(Some((head, body))) => {
                    let keep_alive = head.keep_alive();
                    out.push(Outcome::Request {
                        method: head.method,
                        target: head.target,
                        body,
                        keep_alive,
                    });
                    if !keep_alive {
                        return out;
                    }
                }
                Err(refusal) => {
                    out.push(Outcome::Refused {
                        status: refusal.reply.0,
                        reply: reply_bytes(&refusal.reply, true),
                    });
                    return out;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A read timeout within [`TIMEOUT_SLACK`] of what is left is kept (no
    /// `setsockopt`); one further off, either way, is set again; and a
    /// read with 50 ms left gives up within the slack of them.
    #[test]
    fn a_read_timeout_is_set_again_only_when_it_is_off_by_more_than_the_slack() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let mut s = Socket::new(Arc::new(server));
        let on_socket = |s: &Socket| s.stream.read_timeout().unwrap();
        let ten = Duration::from_secs(10);
        s.wait_at_most(ten).unwrap();
        assert_eq!(on_socket(&s), Some(ten));
        for near in [
            ten - Duration::from_millis(9),
            ten + Duration::from_millis(9),
        ] {
            s.wait_at_most(near).unwrap();
            assert_eq!(on_socket(&s), Some(ten), "{near:?}");
        }
        for far in [Duration::from_secs(5), Duration::from_secs(30)] {
            s.wait_at_most(far).unwrap();
            assert_eq!(on_socket(&s), Some(far));
        }
        let start = Instant::now();
        let mut buf = Vec::new();
        assert_eq!(
            s.read_more(&mut buf, start + Duration::from_millis(50)),
            Err(ReadError::Timeout)
        );
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_millis(50) && buf.is_empty(),
            "gave up after {waited:?}"
        );
    }

    /// Counts the limit hits it is told of; answers every request 200.
    #[derive(Default)]
    struct CountsHits(AtomicUsize);

    impl Handler for CountsHits {
        fn handle(&self, _: &str, _: &str, _: &[u8], _: &dyn Fn() -> bool) -> Reply {
            (200, "{}".into())
        }
        fn limit_hit(&self, _limit: &str, _detail: &str) {
            self.0.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Issue 16: limit hits are throttled once, by the handler's audit on
    /// the platform clock, not a second time here by wall time: three
    /// oversized requests in a row reach the handler as three hits.
    #[test]
    fn every_limit_hit_reaches_the_handler_unthrottled() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let handler = Arc::new(CountsHits::default());
        let stop = Arc::new(AtomicBool::new(false));
        let settings = Settings {
            max_open_connections: 4,
            max_in_flight: 1,
            max_header_bytes: 1024,
            max_body_bytes: 16,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            allowed_hosts: Vec::new(),
        };
        let server = {
            let (h, stop) = (handler.clone(), stop.clone());
            let beat = crate::watchdog::Heartbeat::new();
            std::thread::spawn(move || serve(h, listener, stop, settings, beat))
        };
        for _ in 0..3 {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(
                b"POST /v1/package HTTP/1.1\r\nHost: 127.0.0.1\r\n\
                  Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n",
            )
            .unwrap();
            let mut answer = Vec::new();
            let _ = s.read_to_end(&mut answer);
            assert!(answer.starts_with(b"HTTP/1.1 413"), "{answer:?}");
        }
        stop.store(true, Ordering::Release);
        server.join().unwrap().unwrap();
        assert_eq!(handler.0.load(Ordering::Acquire), 3);
    }

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
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nbody", 0), Ok(Some(18)));
        // Issue #16: a bare LF ends no line (the relay refuses it too).
        assert!(head_end(b"GET / HTTP/1.1\n\nbody", 0).is_err());
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n", 0), Ok(None));
    }

    #[test]
    fn bare_lf_ends_no_line() {
        assert!(parse_head(b"GET / HTTP/1.1\nHost: 1.2.3.4").is_err());
        assert!(parse_head(b"GET / HTTP/1.1\r\nHost: 1.2.3.4\n").is_err());
        assert!(parse_head(b"GET / HTTP/1.1\r\nHost: 1.2.3.4\r\n").is_ok());
        // Searching on from where the last search stopped (at most three
        // bytes before the end of what had arrived): the CR before `from`
        // is seen, a bare LF at or after it is not missed.
        let buf = b"GET / HTTP/1.1\r\nA: b\r\n\r\n";
        for from in 0..=buf.len() - 4 {
            assert_eq!(head_end(buf, from), Ok(Some(buf.len())), "from {from}");
        }
        let buf = b"GET / HTTP/1.1\r\nA: b\n\r\n";
        for from in 0..=20 {
            assert!(head_end(buf, from).is_err(), "from {from}");
        }
        // A body after the head is not the head's business.
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\n\n\n", 0), Ok(Some(18)));
    }

    #[test]
    fn chunk_sizes_are_hex_digits_parsed_by_httparse() {
        assert_eq!(chunk_size(b"5\r\nhello"), Ok(Some((3, 5))));
        assert_eq!(chunk_size(b"1aF;x=y\r\n"), Ok(Some((9, 0x1af))));
        assert_eq!(chunk_size(b"5 ;x\r\n"), Ok(Some((6, 5))));
        assert_eq!(chunk_size(b"5"), Ok(None));
        assert_eq!(chunk_size(b""), Ok(None));
        for bad in [
            &b"+5\r\n"[..],
            b"-5\r\n",
            b"0x5\r\n",
            b" 5\r\n",
            b"\r\n",
            b"5\n",
            b"5\r5",
            b"g\r\n",
            b"5;x\n\r\n",
            b"10000000000000000\r\n",
        ] {
            assert!(
                chunk_size(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = [b"5;".as_slice(), &[b'x'; MAX_CHUNK_LINE]].concat();
        assert!(chunk_size(&long).is_err());
        assert_eq!(trailers_end(b"\r\nGET"), Ok(Some(2)));
        assert_eq!(trailers_end(b"A: b\r\n\r\n"), Ok(Some(8)));
        assert_eq!(trailers_end(b"A: b\r\n"), Ok(None));
        assert!(trailers_end(b"A: b\n\r\n").is_err());
        assert!(trailers_end(b"A: b\n").is_err());
    }

    /// Issue #16: `cancelled` went out as "503 Unknown".
    #[test]
    fn replies_use_canonical_reasons() {
        let line = |status: u16| {
            let bytes = reply_bytes(&(status, "{}".into()), true);
            let text = String::from_utf8(bytes).unwrap();
            text.split("\r\n").next().unwrap().to_string()
        };
        assert_eq!(line(503), "HTTP/1.1 503 Service Unavailable");
        assert_eq!(line(200), "HTTP/1.1 200 OK");
        assert_eq!(line(421), "HTTP/1.1 421 Misdirected Request");
        assert_eq!(line(429), "HTTP/1.1 429 Too Many Requests");
        for code in [
            ErrorCode::BadRequest,
            ErrorCode::Rejected,
            ErrorCode::NotFound,
            ErrorCode::MethodNotAllowed,
            ErrorCode::Timeout,
            ErrorCode::Busy,
            ErrorCode::Replayed,
            ErrorCode::TooLarge,
            ErrorCode::UnsupportedMediaType,
            ErrorCode::BadHost,
            ErrorCode::Overloaded,
            ErrorCode::Internal,
            ErrorCode::Cancelled,
        ] {
            let status = code.http_status();
            assert!(
                !reason(status).is_empty(),
                "{code:?}: {status} has no reason"
            );
        }
    }

    /// What the fuzz target checks, on inputs that reach every branch:
    /// the outcome does not depend on how the bytes arrive.
    #[test]
    fn reading_does_not_depend_on_how_bytes_arrive() {
        use fuzzing::{Outcome, requests, settings};
        let set = settings();
        let put = "PUT /v1/x HTTP/1.1\r\nHost: device\r\nContent-Type: application/json\r\n";
        let cases: Vec<Vec<u8>> = vec![
            format!("\r\n{put}Content-Length: 2\r\n\r\n{{}}GET / HTTP/1.1\r\nHost: device\r\nConnection: close\r\n\r\n").into_bytes(),
            format!("{put}Transfer-Encoding: chunked\r\n\r\n2;x\r\n{{}}\r\n0\r\nT: 1\r\n\r\nGET / HTTP/1.1\r\nHost: device\r\n\r\n").into_bytes(),
            format!("{put}Transfer-Encoding: chunked\r\n\r\n+2\r\n{{}}\r\n0\r\n\r\n").into_bytes(),
            format!("{put}Transfer-Encoding: chunked\r\n\r\n2\r\n{{}}\n\n0\r\n\r\n").into_bytes(),
            format!("{put}Content-Length: 99999999\r\n\r\n").into_bytes(),
            b"GET / HTTP/1.1\r\nHost: evil.com\r\n\r\n".to_vec(),
            [b"GET / HTTP/1.1\r\nX: ".as_slice(), &[b'a'; 9000], b"\n\r\n\r\n"].concat(),
            b"GET / HTTP/1.1\r\nHost: device\n\r\n".to_vec(),
        ];
        for bytes in &cases {
            let whole = requests(bytes, usize::MAX, &set);
            assert!(!whole.is_empty(), "{:?}", String::from_utf8_lossy(bytes));
            for piece in 1..=17 {
                assert_eq!(requests(bytes, piece, &set), whole, "{piece} at a time");
            }
        }
        let outcome = |i: usize| requests(&cases[i], 1, &set);
        assert!(
            matches!(&outcome(0)[..], [Outcome::Request { body, keep_alive: true, .. }, Outcome::Request { keep_alive: false, .. }] if body == b"{}")
        );
        assert!(
            matches!(&outcome(1)[..], [Outcome::Request { body, .. }, Outcome::Request { .. }] if body == b"{}")
        );
        for (i, status) in [(2, 400), (3, 400), (4, 413), (5, 421), (6, 413), (7, 400)] {
            assert!(
                matches!(outcome(i).last(), Some(Outcome::Refused { status: s, .. }) if *s == status),
                "case {i}: {:?}",
                outcome(i)
            );
        }
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
