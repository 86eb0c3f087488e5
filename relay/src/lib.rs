//! `otc-relay`: One Time Chat's untrusted message relay.
//!
//! It speaks the original relay's API (report section 6.5; the wire types
//! are in [`otc_proto::relay`]) byte for byte in its JSON shapes, adds a
//! long-poll `wait=SECONDS` on `/getmessages`, persists every message
//! before acknowledging it ([`store`]), and enforces limits, each a
//! `{"error":STATUS,"message":TEXT}`:
//!
//! | limit                         | status | flag                 |
//! |-------------------------------|--------|----------------------|
//! | message (`contents`) size     | 413    | `--max-message`      |
//! | request body size             | 413    | (message size + 4 KiB) |
//! | messages stored per recipient | 429    | `--max-mailbox`      |
//! | requests per second per IP    | 429    | `--rate`, `--burst`  |
//! | open connections per IP (v6: /64) | 429 | `--max-connections-per-ip` |
//! | open connections in all, none idle | 503 | `--max-connections`  |
//!
//! Modules: [`http`] reads the client's bytes (connections, caps,
//! deadlines), [`parse`] turns them into requests (pure, fuzzed), this file
//! routes them, [`store`] keeps the messages.
//!
//! Decisions:
//! - The relay knows nothing of pads: `contents` is an opaque string.
//! - One thread per open connection (long polls park it on a Condvar);
//!   the connection caps bound the threads.
//! - Every refusal is 4xx, the client's to fix, except two that are not
//!   the client's fault: 503 (the relay is full of connections) and 507
//!   (the disk failed; nothing was stored).
//! - Mischief (`--mischief`) is in memory only: pending tricks and a
//!   message held back for `reorder` are lost on restart (a held message
//!   has already been acknowledged to its sender, which is the point of
//!   the trick: the relay is untrusted).

pub mod http;
pub mod parse;
pub mod store;

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use otc_proto::relay::{
    CHECK, CheckResponse, GET_MESSAGES, GET_NEXT_REF, GetMessagesQuery, GetMessagesResponse,
    MISCHIEF, MischiefResponse, NextRefResponse, SEND, SendRequest, SendResponse,
};
use serde::Serialize;

use parse::{Head, Refusal, err};
use store::Store;

pub use parse::MAX_UID_BYTES;

/// The longest long-poll a client may ask for, in seconds.
pub const MAX_WAIT_SECS: u64 = 30;
/// Characters of `contents` echoed back in `echo_tail`.
pub const ECHO_TAIL_CHARS: usize = 16;

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
    /// Most connections open at once, idle keep-alive ones included.
    pub max_connections: usize,
    /// Most connections open at once from one client address.
    pub max_connections_per_ip: usize,
    /// Most messages in one `/getmessages` reply.
    pub max_count: usize,
    /// Serve `/mischief`.
    pub mischief: bool,
    /// How long a message is kept, read or not (`None`: forever).
    pub keep: Option<Duration>,
    /// An open connection with no request for this long is closed.
    pub idle: Duration,
    /// A request must arrive whole within this long of its first byte (408).
    pub request_time: Duration,
    /// Concurrent sends share one fsync. Off (for the bench's comparison
    /// only): sends are written and synced one at a time.
    pub group_commit: bool,
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
            max_connections_per_ip: 32,
            max_count: 100,
            mischief: false,
            keep: Some(Duration::from_secs(30 * 24 * 3600)),
            group_commit: true,
            idle: http::IDLE,
            request_time: http::REQUEST_TIME,
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

pub(crate) struct Shared {
    cfg: Config,
    store: Mutex<Store>,
    commit: store::Commit,
    arrived: Condvar,
    mischief: Mutex<MischiefState>,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
    conns: Mutex<http::Conns>,
    /// Held across a whole send when group commit is off.
    one_at_a_time: Mutex<()>,
    stop: AtomicBool,
    /// Long polls parked so far ([`Relay::long_polls_parked`]).
    parked: AtomicU64,
}

/// A running relay.
pub struct Relay {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl Relay {
    /// Opens the store, binds and starts serving on a background thread.
    pub fn start(mut cfg: Config) -> Result<Relay, RelayFailure> {
        if let Some(most) = http::fd_limit().map(http::connections_for)
            && cfg.max_connections > most
        {
            eprintln!(
                "otc-relay: --max-connections lowered from {} to {most}: the process may open \
                 only so many files (ulimit -n)",
                cfg.max_connections
            );
            cfg.max_connections = most;
        }
        let store = Store::open(&cfg.data, cfg.keep)?;
        let listen_err = |why: String| RelayFailure::Listen {
            addr: cfg.listen.clone(),
            why,
        };
        let listener = TcpListener::bind(&cfg.listen).map_err(|e| listen_err(e.to_string()))?;
        // Linux copies TCP_NODELAY from the listener to accepted sockets;
        // each connection sets it again anyway (small replies must not
        // wait for the client's delayed ACK).
        socket2::SockRef::from(&listener)
            .set_tcp_nodelay(true)
            .map_err(|e| listen_err(format!("cannot set TCP_NODELAY: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| listen_err(e.to_string()))?;
        let shared = Arc::new(Shared {
            cfg,
            store: Mutex::new(store),
            commit: store::Commit::default(),
            arrived: Condvar::new(),
            mischief: Mutex::new(MischiefState::default()),
            buckets: Mutex::new(HashMap::new()),
            conns: Mutex::new(http::Conns::default()),
            one_at_a_time: Mutex::new(()),
            stop: AtomicBool::new(false),
            parked: AtomicU64::new(0),
        });
        let sh = shared.clone();
        let accept = std::thread::Builder::new()
            .name("relay-accept".into())
            .spawn(move || http::accept_loop(&listener, &sh))
            .map_err(|e| RelayFailure::Listen {
                addr: addr.to_string(),
                why: format!("cannot start a thread: {e}"),
            })?;
        Ok(Relay {
            addr,
            shared,
            accept: Some(accept),
        })
    }

    /// Where it listens (the real port when asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many times a long poll (`/getmessages` with `wait`) found
    /// nothing and parked to wait for a message, since the start. A poll
    /// counts here while it holds the store, just before it waits, so a
    /// message sent after the count moved wakes it (and is not already
    /// there when it looked).
    pub fn long_polls_parked(&self) -> u64 {
        self.shared.parked.load(Ordering::SeqCst)
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
        let mut wake = self.addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake.ip() {
                IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        http::wake(wake, &self.shared.conns);
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
        // Let the connection threads finish (bounded), so that a relay
        // started again on the same directory is the log's only writer.
        // (Again: one may have been admitted while the first call ran.)
        lock(&self.shared.conns).shutdown_all();
        let deadline = Instant::now() + Duration::from_secs(5);
        while lock(&self.shared.conns).open_count() > 0 && Instant::now() < deadline {
            self.shared.arrived.notify_all();
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking handler must not take the relay down with it.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A reply: JSON body, or HTML for the mischief page.
pub(crate) enum Body {
    Json(String),
    Html(String),
}

type Reply = Result<Body, Refusal>;

fn json<T: Serialize>(v: &T) -> Reply {
    serde_json::to_string(v)
        .map(Body::Json)
        .map_err(|e| err(400, format!("cannot encode the reply: {e}")))
}

/// One request, read whole by [`http`], to its reply.
pub(crate) fn route(sh: &Shared, head: &Head, body: &[u8], ip: IpAddr) -> Reply {
    rate_check(sh, http::address_key(ip))?;
    let q = parse::parse_form(head.query.as_bytes());
    match (head.method.as_str(), head.path.as_str()) {
        ("GET", CHECK) => json(&CheckResponse::ok()),
        ("POST", SEND) => {
            let f = parse::parse_body(head.content_type.as_deref(), body)?;
            send(sh, &parse::send_request(&f, sh.cfg.max_message)?)
        }
        ("GET", GET_MESSAGES) => get_messages(sh, &parse::get_messages_query(&q)?),
        ("GET", GET_NEXT_REF) => {
            parse::uid(&q, "recipient_uid")?;
            json(&NextRefResponse {
                nextref: lock(&sh.store).next_ref(),
            })
        }
        ("GET" | "POST", MISCHIEF) if sh.cfg.mischief => {
            let m = if head.method == "POST" {
                parse::parse_body(head.content_type.as_deref(), body)?
            } else {
                q
            };
            mischief(sh, &m)
        }
        (_, CHECK | SEND | GET_MESSAGES | GET_NEXT_REF) => Err(err(
            405,
            format!("{} does not take {}", head.path, head.method),
        )),
        _ => Err(err(404, format!("no such endpoint: {}", head.path))),
    }
}

fn rate_check(sh: &Shared, ip: IpAddr) -> Result<(), Refusal> {
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

fn send(sh: &Shared, req: &SendRequest) -> Reply {
    let msg_ref = deliver(sh, req)?;
    json(&SendResponse {
        received: true,
        echo_tail: parse::echo_tail(&req.contents, ECHO_TAIL_CHARS).to_owned(),
        msg_ref,
    })
}

/// Stores a message (through any pending mischief), waits until it is
/// durable (sharing the fsync with concurrent sends), and wakes long polls.
fn deliver(sh: &Shared, m: &SendRequest) -> Result<u64, Refusal> {
    let storage = |e: RelayFailure| err(507, e.to_string());
    let _alone = (!sh.cfg.group_commit).then(|| lock(&sh.one_at_a_time));
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
    let (trick, held) = if sh.cfg.mischief {
        let mut mis = lock(&sh.mischief);
        let trick = mis
            .pending
            .get_mut(&m.recipient_uid)
            .and_then(VecDeque::pop_front);
        let held = mis.held.remove(&m.recipient_uid);
        (trick, held)
    } else {
        (None, None)
    };
    let (s, r, c) = (&m.sender_uid, &m.recipient_uid, &m.contents);
    // (ref, sequence number of the last record staged; 0: nothing staged)
    let (msg_ref, mut seq) = match trick {
        None => store.stage_message(s, r, c),
        Some(Mischief::Drop) => store.stage_skip(),
        Some(Mischief::Corrupt) => store.stage_message(s, r, &corrupt(c)),
        Some(Mischief::Replay) => store.stage_message(s, r, c).and_then(|(first, _)| {
            let (_, seq) = store.stage_message(s, r, c)?;
            Ok((first, seq))
        }),
        Some(Mischief::Reorder) => {
            lock(&sh.mischief)
                .held
                .insert(r.clone(), (s.clone(), c.clone()));
            // Tell the sender the ref it would have had; the held message
            // is stored (under a later ref) after the next one.
            Ok((store.next_ref(), 0))
        }
    }
    .map_err(storage)?;
    if let Some((hs, hc)) = held {
        seq = store.stage_message(&hs, r, &hc).map_err(storage)?.1;
    }
    drop(store);
    Store::wait_durable(&sh.store, &sh.commit, seq, || sh.arrived.notify_all()).map_err(storage)?;
    Ok(msg_ref)
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

fn get_messages(sh: &Shared, q: &GetMessagesQuery) -> Reply {
    let max = q.maxcount.map_or(sh.cfg.max_count, |n| {
        usize::try_from(n)
            .unwrap_or(usize::MAX)
            .min(sh.cfg.max_count)
    });
    let wait = q.wait.unwrap_or(0).min(MAX_WAIT_SECS);
    let deadline = Instant::now() + Duration::from_secs(wait);
    let mut store = lock(&sh.store);
    let (messages, complete) = loop {
        let (msgs, complete) = store.fetch(&q.recipient_uid, q.start_ref, max);
        let now = Instant::now();
        if !msgs.is_empty() || now >= deadline || sh.stop.load(Ordering::SeqCst) {
            break (msgs, complete);
        }
        sh.parked.fetch_add(1, Ordering::SeqCst);
        store = sh
            .arrived
            .wait_timeout(store, deadline - now)
            .map(|(g, _)| g)
            .unwrap_or_else(|p| p.into_inner().0);
    };
    drop(store);
    json(&GetMessagesResponse {
        recipient_uid: q.recipient_uid.clone(),
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
    let userid = parse::uid(f, "userid")?;
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
