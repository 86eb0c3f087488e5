//! `otc-relay`: One Time Chat's untrusted message relay.
//!
//! It speaks the original relay's API (report section 6.5; the wire types
//! are in [`otc_proto::relay`]) byte for byte in its JSON shapes, adds a
//! long-poll `wait=SECONDS` on `/getmessages`, persists every message
//! before acknowledging it ([`store`]), and enforces limits, each a 4xx
//! `{"error":STATUS,"message":TEXT}`:
//!
//! | limit                         | status | flag                 |
//! |-------------------------------|--------|----------------------|
//! | message (`contents`) size     | 413    | `--max-message`      |
//! | request body size             | 413    | (message size + 4 KiB) |
//! | messages stored per recipient | 429    | `--max-mailbox`      |
//! | requests per second per IP    | 429    | `--rate`, `--burst`  |
//! | requests in flight            | 429    | `--max-connections`  |
//!
//! Decisions:
//! - The relay knows nothing of pads: `contents` is an opaque string.
//! - One thread per request (long polls park a thread on a Condvar); the
//!   in-flight cap bounds the threads. A request over the cap is answered
//!   429 at once on the accept thread.
//! - Mischief (`--mischief`) is in memory only: pending tricks and a
//!   message held back for `reorder` are lost on restart (a held message
//!   has already been acknowledged to its sender, which is the point of
//!   the trick: the relay is untrusted).

pub mod store;

use std::collections::{HashMap, VecDeque};
use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use otc_proto::relay::{
    CHECK, CheckResponse, GET_MESSAGES, GET_NEXT_REF, GetMessagesResponse, MISCHIEF,
    MischiefResponse, NextRefResponse, RelayError, SEND, SendRequest, SendResponse,
};
use serde::Serialize;
use tiny_http::{Header, Method, Request, Response};

use store::Store;

/// The longest long-poll a client may ask for, in seconds.
pub const MAX_WAIT_SECS: u64 = 30;
/// Characters of `contents` echoed back in `echo_tail`.
pub const ECHO_TAIL_CHARS: usize = 16;
/// The longest uid accepted, in bytes.
pub const MAX_UID_BYTES: usize = 64;

/// Everything that can go wrong in the relay.
#[derive(Debug, thiserror::Error)]
pub enum RelayFailure {
    #[error("storage: {0} (check the --data directory: it must be writable and on a working disk)")]
    Storage(String),
    #[error("cannot listen on {addr}: {why} (is another program using that port?)")]
    Listen { addr: String, why: String },
}

/// The relay's settings (the command line fills it in).
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: String,
    pub data: PathBuf,
    /// Largest `contents`, in bytes.
    pub max_message: usize,
    /// Most messages stored for one recipient.
    pub max_mailbox: usize,
    /// Sustained requests per second per client address.
    pub rate: f64,
    /// Requests a client address may make in a burst.
    pub burst: f64,
    /// Most requests handled at once (long polls included).
    pub max_connections: usize,
    /// Most messages in one `/getmessages` reply.
    pub max_count: usize,
    /// Serve `/mischief`.
    pub mischief: bool,
}

impl Config {
    /// Defaults for everything but where to listen and store.
    pub fn new(listen: impl Into<String>, data: impl Into<PathBuf>) -> Config {
        Config {
            listen: listen.into(),
            data: data.into(),
            max_message: 64 * 1024,
            max_mailbox: 10_000,
            rate: 50.0,
            burst: 200.0,
            max_connections: 256,
            max_count: 100,
            mischief: false,
        }
    }
}

/// A trick `/mischief` plays on a recipient's next message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mischief {
    /// Acknowledge it but never store it.
    Drop,
    /// Change one character of its contents.
    Corrupt,
    /// Store it twice, under two refs.
    Replay,
    /// Hold it back and store it after the recipient's next message.
    Reorder,
}

impl Mischief {
    fn parse(s: &str) -> Option<Mischief> {
        Some(match s {
            "drop" => Mischief::Drop,
            "corrupt" => Mischief::Corrupt,
            "replay" => Mischief::Replay,
            "reorder" => Mischief::Reorder,
            _ => return None,
        })
    }
}

#[derive(Default)]
struct MischiefState {
    pending: HashMap<String, VecDeque<Mischief>>,
    /// Per recipient: a message held back by `reorder` (sender, contents).
    held: HashMap<String, (String, String)>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

struct Shared {
    cfg: Config,
    store: Mutex<Store>,
    arrived: Condvar,
    mischief: Mutex<MischiefState>,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
    in_flight: AtomicUsize,
    stop: AtomicBool,
}

/// A running relay.
pub struct Relay {
    addr: SocketAddr,
    server: Arc<tiny_http::Server>,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl Relay {
    /// Opens the store, binds and starts serving on a background thread.
    pub fn start(cfg: Config) -> Result<Relay, RelayFailure> {
        let store = Store::open(&cfg.data)?;
        let listen_err = |why: String| RelayFailure::Listen {
            addr: cfg.listen.clone(),
            why,
        };
        let listener =
            std::net::TcpListener::bind(&cfg.listen).map_err(|e| listen_err(e.to_string()))?;
        // Linux copies TCP_NODELAY from the listener to accepted sockets.
        // Without it, a reply over tiny_http's 1 KiB write buffer goes out
        // as two segments and the second waits for the client's delayed
        // ACK (measured: 47 ms per getmessages of ten 200-byte messages,
        // against 0.4 ms with it).
        socket2::SockRef::from(&listener)
            .set_tcp_nodelay(true)
            .map_err(|e| listen_err(format!("cannot set TCP_NODELAY: {e}")))?;
        let server = tiny_http::Server::from_listener(listener, None)
            .map_err(|e| listen_err(e.to_string()))?;
        let addr = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| RelayFailure::Listen {
                addr: cfg.listen.clone(),
                why: "not an IP address".into(),
            })?;
        let server = Arc::new(server);
        let shared = Arc::new(Shared {
            cfg,
            store: Mutex::new(store),
            arrived: Condvar::new(),
            mischief: Mutex::new(MischiefState::default()),
            buckets: Mutex::new(HashMap::new()),
            in_flight: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        });
        let (srv, sh) = (server.clone(), shared.clone());
        let accept = std::thread::Builder::new()
            .name("relay-accept".into())
            .spawn(move || accept_loop(&srv, &sh))
            .map_err(|e| RelayFailure::Listen {
                addr: addr.to_string(),
                why: format!("cannot start a thread: {e}"),
            })?;
        Ok(Relay {
            addr,
            server,
            shared,
            accept: Some(accept),
        })
    }

    /// Where it listens (the real port when asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until the process ends.
    pub fn wait(mut self) {
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.arrived.notify_all();
        self.server.unblock();
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking handler must not take the relay down with it.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn accept_loop(server: &tiny_http::Server, shared: &Arc<Shared>) {
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let req = match server.recv() {
            Ok(r) => r,
            Err(e) => {
                eprintln!("otc-relay: accept failed: {e}");
                continue;
            }
        };
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let n = shared.in_flight.fetch_add(1, Ordering::SeqCst);
        if n >= shared.cfg.max_connections {
            shared.in_flight.fetch_sub(1, Ordering::SeqCst);
            let _ = respond(
                req,
                Err(err(
                    429,
                    format!(
                        "too many connections: the relay is handling {} requests, its limit; try again shortly",
                        shared.cfg.max_connections
                    ),
                )),
            );
            continue;
        }
        let sh = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("relay-req".into())
            .spawn(move || {
                let reply = handle(&sh, req);
                sh.in_flight.fetch_sub(1, Ordering::SeqCst);
                reply
            });
        if let Err(e) = spawned {
            shared.in_flight.fetch_sub(1, Ordering::SeqCst);
            eprintln!("otc-relay: cannot start a request thread: {e}");
        }
    }
}

/// A reply: JSON body, or HTML for the mischief page.
enum Body {
    Json(String),
    Html(String),
}

type Reply = Result<Body, (u16, RelayError)>;

fn err(status: u16, message: impl Into<String>) -> (u16, RelayError) {
    (
        status,
        RelayError {
            error: status,
            message: message.into(),
        },
    )
}

fn json<T: Serialize>(v: &T) -> Reply {
    serde_json::to_string(v)
        .map(Body::Json)
        .map_err(|e| err(400, format!("cannot encode the reply: {e}")))
}

fn respond(req: Request, reply: Reply) -> std::io::Result<()> {
    let (status, body, ctype) = match reply {
        Ok(Body::Json(s)) => (200, s, "application/json"),
        Ok(Body::Html(s)) => (200, s, "text/html; charset=utf-8"),
        Err((status, e)) => (
            status,
            serde_json::to_string(&e).unwrap_or_else(|_| "{}".into()),
            "application/json",
        ),
    };
    let mut resp = Response::from_string(body).with_status_code(status);
    if let Ok(h) = Header::from_bytes(&b"Content-Type"[..], ctype.as_bytes()) {
        resp = resp.with_header(h);
    }
    req.respond(resp)
}

fn handle(sh: &Shared, mut req: Request) -> std::io::Result<()> {
    let reply = route(sh, &mut req);
    respond(req, reply)
}

fn route(sh: &Shared, req: &mut Request) -> Reply {
    if let Some(ip) = req.remote_addr().map(|a| a.ip()) {
        rate_check(sh, ip)?;
    }
    let url = req.url().to_owned();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let q: HashMap<String, String> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let method = req.method().clone();
    match (method, path) {
        (Method::Get, CHECK) => json(&CheckResponse::ok()),
        (Method::Post, SEND) => {
            let body = read_body(sh, req)?;
            send(sh, body)
        }
        (Method::Get, GET_MESSAGES) => get_messages(sh, &q),
        (Method::Get, GET_NEXT_REF) => {
            uid(&q, "recipient_uid")?;
            json(&NextRefResponse {
                nextref: lock(&sh.store).next_ref(),
            })
        }
        (Method::Get | Method::Post, MISCHIEF) if sh.cfg.mischief => {
            let m = if *req.method() == Method::Post {
                read_body(sh, req)?.fields
            } else {
                q
            };
            mischief(sh, &m)
        }
        (_, CHECK | SEND | GET_MESSAGES | GET_NEXT_REF) => {
            Err(err(405, format!("{path} does not take {}", req.method())))
        }
        _ => Err(err(404, format!("no such endpoint: {path}"))),
    }
}

fn rate_check(sh: &Shared, ip: IpAddr) -> Result<(), (u16, RelayError)> {
    let now = Instant::now();
    let mut buckets = lock(&sh.buckets);
    if buckets.len() > 100_000 {
        // Forget idle addresses rather than grow without bound.
        buckets.retain(|_, b| now.duration_since(b.at) < Duration::from_secs(60));
    }
    let b = buckets.entry(ip).or_insert(Bucket {
        tokens: sh.cfg.burst,
        at: now,
    });
    let dt = now.duration_since(b.at).as_secs_f64();
    b.tokens = (b.tokens + dt * sh.cfg.rate).min(sh.cfg.burst);
    b.at = now;
    if b.tokens < 1.0 {
        return Err(err(
            429,
            format!(
                "too many requests from {ip}: the limit is {} per second (bursts of {}); slow down",
                sh.cfg.rate, sh.cfg.burst
            ),
        ));
    }
    b.tokens -= 1.0;
    Ok(())
}

/// A request body's fields, from a form or a JSON object.
struct Fields {
    fields: HashMap<String, String>,
}

fn read_body(sh: &Shared, req: &mut Request) -> Result<Fields, (u16, RelayError)> {
    let limit = sh.cfg.max_message + 4096;
    let too_big = || {
        err(
            413,
            format!(
                "request body too large: at most {limit} bytes (messages at most {} bytes)",
                sh.cfg.max_message
            ),
        )
    };
    if req.body_length().is_some_and(|n| n > limit) {
        return Err(too_big());
    }
    let is_json = req.headers().iter().any(|h| {
        h.field.equiv("Content-Type")
            && h.value
                .as_str()
                .trim_start()
                .starts_with("application/json")
    });
    let mut body = Vec::new();
    req.as_reader()
        .take(limit as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|e| err(400, format!("cannot read the request body: {e}")))?;
    if body.len() > limit {
        return Err(too_big());
    }
    let fields = if is_json {
        let v: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&body)
            .map_err(|e| err(400, format!("the body is not a JSON object: {e}")))?;
        v.into_iter()
            .filter_map(|(k, v)| match v {
                serde_json::Value::String(s) => Some((k, s)),
                serde_json::Value::Number(n) => Some((k, n.to_string())),
                _ => None,
            })
            .collect()
    } else {
        form_urlencoded::parse(&body).into_owned().collect()
    };
    Ok(Fields { fields })
}

fn uid<'a>(f: &'a HashMap<String, String>, name: &str) -> Result<&'a str, (u16, RelayError)> {
    let v = f
        .get(name)
        .ok_or_else(|| err(400, format!("missing {name}")))?;
    if v.is_empty() || v.len() > MAX_UID_BYTES || v.chars().any(char::is_control) {
        return Err(err(
            400,
            format!("bad {name}: 1 to {MAX_UID_BYTES} bytes, no control characters"),
        ));
    }
    Ok(v)
}

fn number(f: &HashMap<String, String>, name: &str) -> Result<Option<u64>, (u16, RelayError)> {
    f.get(name)
        .map(|v| {
            v.trim()
                .parse::<u64>()
                .map_err(|_| err(400, format!("bad {name}: not a whole number: {v:?}")))
        })
        .transpose()
}

fn send(sh: &Shared, body: Fields) -> Reply {
    let f = body.fields;
    let sender = uid(&f, "sender_uid")?;
    let recipient = uid(&f, "recipient_uid")?;
    let contents = f
        .get("contents")
        .ok_or_else(|| err(400, "missing contents"))?;
    if contents.len() > sh.cfg.max_message {
        return Err(err(
            413,
            format!(
                "message too large: {} bytes, at most {}",
                contents.len(),
                sh.cfg.max_message
            ),
        ));
    }
    let req = SendRequest {
        sender_uid: sender.to_owned(),
        recipient_uid: recipient.to_owned(),
        contents: contents.to_owned(),
    };
    let msg_ref = deliver(sh, &req)?;
    let tail_start = req
        .contents
        .char_indices()
        .rev()
        .nth(ECHO_TAIL_CHARS - 1)
        .map_or(0, |(i, _)| i);
    json(&SendResponse {
        received: true,
        echo_tail: req.contents[tail_start..].to_owned(),
        msg_ref,
    })
}

/// Stores a message (through any pending mischief) and wakes long polls.
fn deliver(sh: &Shared, m: &SendRequest) -> Result<u64, (u16, RelayError)> {
    let storage = |e: RelayFailure| err(507, e.to_string());
    let mut store = lock(&sh.store);
    if store.mailbox_len(&m.recipient_uid) >= sh.cfg.max_mailbox {
        return Err(err(
            429,
            format!(
                "mailbox full: {} already holds {} messages, the limit",
                m.recipient_uid, sh.cfg.max_mailbox
            ),
        ));
    }
    // Lock order everywhere: store, then mischief.
    // Popped only once the message is accepted, so a refused send does
    // not use up a trick.
    let trick = if sh.cfg.mischief {
        lock(&sh.mischief)
            .pending
            .get_mut(&m.recipient_uid)
            .and_then(VecDeque::pop_front)
    } else {
        None
    };
    let held = if sh.cfg.mischief {
        lock(&sh.mischief).held.remove(&m.recipient_uid)
    } else {
        None
    };
    let r = match trick {
        None => store.push(&m.sender_uid, &m.recipient_uid, &m.contents),
        Some(Mischief::Drop) => store.skip(),
        Some(Mischief::Corrupt) => {
            store.push(&m.sender_uid, &m.recipient_uid, &corrupt(&m.contents))
        }
        Some(Mischief::Replay) => store
            .push(&m.sender_uid, &m.recipient_uid, &m.contents)
            .and_then(|r| {
                store.push(&m.sender_uid, &m.recipient_uid, &m.contents)?;
                Ok(r)
            }),
        Some(Mischief::Reorder) => {
            lock(&sh.mischief).held.insert(
                m.recipient_uid.clone(),
                (m.sender_uid.clone(), m.contents.clone()),
            );
            // Tell the sender the ref it would have had; the held message
            // is stored (under a later ref) after the next one.
            Ok(store.next_ref())
        }
    }
    .map_err(storage)?;
    if let Some((s, c)) = held {
        store.push(&s, &m.recipient_uid, &c).map_err(storage)?;
    }
    drop(store);
    sh.arrived.notify_all();
    Ok(r)
}

/// Changes one character in the middle of `s` (to another base64 character).
fn corrupt(s: &str) -> String {
    let mut chars: Vec<char> = s.chars().collect();
    if chars.is_empty() {
        return "A".into();
    }
    let i = chars.len() / 2;
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

fn get_messages(sh: &Shared, q: &HashMap<String, String>) -> Reply {
    let recipient = uid(q, "recipient_uid")?;
    let start_ref = number(q, "start_ref")?.ok_or_else(|| err(400, "missing start_ref"))?;
    let max = number(q, "maxcount")?.map_or(sh.cfg.max_count, |n| {
        usize::try_from(n)
            .unwrap_or(usize::MAX)
            .min(sh.cfg.max_count)
    });
    let wait = number(q, "wait")?.unwrap_or(0).min(MAX_WAIT_SECS);
    let deadline = Instant::now() + Duration::from_secs(wait);
    let mut store = lock(&sh.store);
    let (messages, complete) = loop {
        let (msgs, complete) = store.fetch(recipient, start_ref, max);
        let now = Instant::now();
        if !msgs.is_empty() || now >= deadline || sh.stop.load(Ordering::SeqCst) {
            break (msgs, complete);
        }
        store = sh
            .arrived
            .wait_timeout(store, deadline - now)
            .map(|(g, _)| g)
            .unwrap_or_else(|p| p.into_inner().0);
    };
    drop(store);
    json(&GetMessagesResponse {
        recipient_uid: recipient.to_owned(),
        count: messages.len() as u64,
        messages,
        complete,
    })
}

const MISCHIEF_PAGE: &str = "<!doctype html><title>otc-relay mischief</title>\
<h1>Mischief</h1><p>Applies to the user's next incoming message.</p>\
<form method=post action=/mischief>userid <input name=userid> kind \
<select name=kind><option>drop<option>corrupt<option>replay<option>reorder</select> \
<input type=submit></form>";

fn mischief(sh: &Shared, f: &HashMap<String, String>) -> Reply {
    if f.is_empty() {
        return Ok(Body::Html(MISCHIEF_PAGE.into()));
    }
    let userid = uid(f, "userid")?;
    let kind = f.get("kind").ok_or_else(|| err(400, "missing kind"))?;
    let trick = Mischief::parse(kind).ok_or_else(|| {
        err(
            400,
            format!("bad kind {kind:?}: one of drop, corrupt, replay, reorder"),
        )
    })?;
    let mut st = lock(&sh.mischief);
    let q = st.pending.entry(userid.to_owned()).or_default();
    q.push_back(trick);
    let pending = q.len();
    drop(st);
    eprintln!("otc-relay: MISCHIEF: {kind} queued for {userid}'s next message");
    json(&MischiefResponse {
        ok: true,
        userid: userid.to_owned(),
        kind: kind.clone(),
        pending: pending as u64,
    })
}
