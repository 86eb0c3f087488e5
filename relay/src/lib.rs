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
//! | bytes of messages stored in all | 507 | `--max-bytes`          |
//! | bytes stored per address per UTC day | 429 | `--daily-bytes-per-address` |
//!
//! Long polls are not refused but capped apart (`--max-waiters`,
//! `--max-waiters-per-ip`): one over a cap ends the longest-parked early,
//! answered with nothing (`http::Parked`).
//!
//! Modules: [`http`] reads the client's bytes (connections, caps,
//! deadlines), [`parse`] turns them into requests (pure, fuzzed), this file
//! routes them, [`store`] keeps the messages.
//!
//! Decisions:
//! - The relay knows nothing of pads: `contents` is an opaque string.
//! - A resend (same sender, recipient and contents as a message still
//!   kept) is answered with the ref the first send got, and stored only
//!   once ([`store`]: "A resend gets the ref it already has"); the reply's
//!   shape is the original's. Mischief tricks apply to new messages only.
//! - hyper on tokio serves the connections ([`http`]): a long poll is a
//!   parked future woken by a [`tokio::sync::Notify`], not a thread, so
//!   10,000 waiting clients cost memory, not threads. The connection caps
//!   bound the memory. A commit wakes only the polls of the recipients it
//!   stored for (`Arrivals`: one `Notify` per shard of recipients).
//! - Every refusal is 4xx, the client's to fix, except two that are not
//!   the client's fault: 503 (the relay is full of connections) and 507
//!   (the relay is full, `--max-bytes`, or the disk failed; nothing was
//!   stored either way).
//! - Mischief (`--mischief`) is in memory only: pending tricks and a
//!   message held back for `reorder` are lost on restart (a held message
//!   has already been acknowledged to its sender, which is the point of
//!   the trick: the relay is untrusted).

pub mod http;
pub mod parse;
pub mod pg;
pub mod store;

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};

use otc_proto::relay::{
    CHECK, CheckResponse, GET_MESSAGES, GET_NEXT_REF, GetMessagesQuery, GetMessagesResponse,
    MISCHIEF, MischiefResponse, NextRefResponse, SEND, SendRequest, SendResponse,
};
use serde::Serialize;

use parse::{Head, Refusal, err};
use store::{Sqlite, Storage, Txn};

pub use parse::MAX_UID_BYTES;

/// The longest long-poll a client may ask for, in seconds.
pub const MAX_WAIT_SECS: u64 = 30;
/// The default of `--max-bytes`: 1 GiB of messages in all.
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;
/// The default of `--daily-bytes-per-address`: 64 MiB per address per day.
pub const DEFAULT_DAILY_BYTES: u64 = 64 << 20;
/// What one stored message costs beyond its three strings (the row, its
/// index entries, the dedupe key), counted into the budgets so that tiny
/// messages cannot fill a disk for free.
pub const MESSAGE_OVERHEAD: u64 = 96;

/// The bytes a message counts for in `--max-bytes` and the daily
/// allowance: its sender, recipient and contents, plus
/// [`MESSAGE_OVERHEAD`]. The stores sum the same in SQL.
pub fn message_bytes(sender: &str, recipient: &str, contents: &str) -> u64 {
    (sender.len() + recipient.len() + contents.len()) as u64 + MESSAGE_OVERHEAD
}

/// Reads a size: a whole number of bytes with an optional suffix K, M,
/// G or T (powers of 1024; `KiB`, `MB` and the like also taken, all as
/// powers of 1024).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let bad = || {
        format!(
            "{text:?} is not a size: give a number of bytes, optionally with K, M, G or T (e.g. 512M)"
        )
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => return Err(bad()),
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{text:?} is too large a size"))
}

/// Characters of `contents` echoed back in `echo_tail`.
pub const ECHO_TAIL_CHARS: usize = 16;

/// Everything that can go wrong in the relay.
#[derive(Debug, thiserror::Error)]
pub enum RelayFailure {
    #[error("storage: {0} (check the --data directory: it must be writable and on a working disk)")]
    Storage(String),
    /// The PostgreSQL backend (`--database`): its message names the server.
    #[error("database: {0}")]
    Database(String),
    #[error("cannot listen on {addr}: {why}")]
    Listen { addr: String, why: String },
    #[error(
        "--listen {addr:?} is not an address to listen on: give HOST:PORT, e.g. 127.0.0.1:8000 (port 0 picks a free one)"
    )]
    BadListen { addr: String },
    #[error("TLS: {0}")]
    Tls(String),
}

/// The TLS settings from `cert` (PEM: the certificate, then any
/// intermediates) and `key` (PEM: its private key), read now; the
/// relay reads them again on SIGHUP (a renewed certificate).
pub fn load_tls(cert: &Path, key: &Path) -> Result<tokio_rustls::TlsAcceptor, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            format!(
                "cannot read the certificate file {} (--tls-cert): {e}; it must be PEM",
                cert.display()
            )
        })?;
    if chain.is_empty() {
        return Err(format!(
            "{} (--tls-cert) holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            cert.display()
        ));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        format!(
            "cannot read a private key from {} (--tls-key): {e}; it must be PEM (PKCS#8, PKCS#1 or SEC1)",
            key.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS versions: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| {
            format!(
                "the key {} does not fit the certificate {}, or cannot be used: {e}",
                key.display(),
                cert.display()
            )
        })?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
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
    /// Most long polls parked at once; one more ends the longest-parked.
    pub max_waiters: usize,
    /// Most long polls parked at once from one address; one more ends
    /// that address's longest-parked.
    pub max_waiters_per_ip: usize,
    /// Most bytes of messages stored in all ([`message_bytes`] each); a
    /// send past it is refused with 507.
    pub max_bytes: u64,
    /// Most bytes of messages one client address may store per UTC day
    /// (IPv6 by /64); a send past it is refused with 429.
    pub daily_bytes_per_address: u64,
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
    /// Terminate TLS with this certificate and key (PEM files), read
    /// again on SIGHUP. `None`: plain HTTP.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// `--database postgres://…`: keep messages in PostgreSQL (shared by
    /// every relay process given the same URL) instead of SQLite in `data`.
    pub database: Option<String>,
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
            max_waiters: 192,
            max_waiters_per_ip: 16,
            max_bytes: DEFAULT_MAX_BYTES,
            daily_bytes_per_address: DEFAULT_DAILY_BYTES,
            max_count: 100,
            mischief: false,
            keep: Some(Duration::from_secs(30 * 24 * 3600)),
            group_commit: true,
            tls: None,
            database: None,
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

/// Bytes each client address stored today (UTC), for
/// `--daily-bytes-per-address`. In memory, per process, bounded: at
/// [`Daily::MOST`] addresses the one that stored least today is
/// forgotten (it gets a fresh allowance, which gains an attacker at most
/// that little).
#[derive(Default)]
struct Daily {
    day: u64,
    used: HashMap<IpAddr, u64>,
}

impl Daily {
    const MOST: usize = 65_536;

    /// Charges `size` bytes to `ip`, or refuses (429) past `allowance`.
    fn charge(&mut self, ip: IpAddr, size: u64, allowance: u64) -> Result<(), Refusal> {
        let today = store::unix_now() / 86_400;
        if today != self.day {
            self.day = today;
            self.used.clear();
        }
        if !self.used.contains_key(&ip)
            && self.used.len() >= Self::MOST
            && let Some(least) = self.used.iter().min_by_key(|(_, n)| **n).map(|(k, _)| *k)
        {
            self.used.remove(&least);
        }
        let used = self.used.entry(ip).or_default();
        if used.saturating_add(size) > allowance {
            return Err(err(
                429,
                format!(
                    "{} has stored {used} bytes of messages today, and this one ({size}) would \
                     pass its allowance of {allowance} per day (--daily-bytes-per-address); \
                     try again after midnight UTC",
                    http::shown(ip)
                ),
            ));
        }
        *used += size;
        Ok(())
    }

    /// Gives back a charge whose send was not stored.
    fn refund(&mut self, ip: IpAddr, size: u64) {
        if let Some(n) = self.used.get_mut(&ip) {
            *n = n.saturating_sub(size);
        }
    }
}

/// How many [`Notify`]s long polls wait on, by a hash of the recipient.
const ARRIVAL_SHARDS: usize = 1024;

/// Long polls' wake-ups, by recipient: a commit wakes only the polls of
/// the mailboxes it stored into (and of the few sharing their shard),
/// since every poll woken looks into the store again; waking them all at
/// every commit sent most of them to the database for nothing. A poll
/// woken for another mailbox of its shard looks, finds nothing and parks
/// again, as any poll did before.
pub(crate) struct Arrivals {
    shards: Box<[Notify]>,
}

impl Arrivals {
    fn new() -> Arrivals {
        Arrivals {
            shards: (0..ARRIVAL_SHARDS).map(|_| Notify::new()).collect(),
        }
    }

    /// What `recipient`'s long polls wait on.
    fn of(&self, recipient: &str) -> &Notify {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let h = BuildHasherDefault::<DefaultHasher>::default().hash_one(recipient);
        // The modulo keeps the index below the shard count.
        #[allow(clippy::cast_possible_truncation)]
        &self.shards[(h % ARRIVAL_SHARDS as u64) as usize]
    }

    /// Wakes the long polls of these recipients.
    fn wake(&self, recipients: &[String]) {
        for r in recipients {
            self.of(r).notify_waiters();
        }
    }

    /// Wakes every long poll (stop, or messages from elsewhere).
    fn wake_all(&self) {
        for n in &self.shards {
            n.notify_waiters();
        }
    }
}

pub(crate) struct Shared {
    cfg: Config,
    daily: Mutex<Daily>,
    store: Box<dyn Storage>,
    /// Woken when messages become visible (a recipient's polls only),
    /// and at stop (all).
    arrived: Arc<Arrivals>,
    mischief: Mutex<MischiefState>,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
    conns: Mutex<http::Conns>,
    stop: AtomicBool,
    /// The same as `stop`, for tasks to wait on.
    stop_tx: watch::Sender<bool>,
    pub(crate) stop_rx: watch::Receiver<bool>,
    /// Long polls parked so far ([`Relay::long_polls_parked`]).
    parked: AtomicU64,
    /// With TLS: the settings new connections get (replaced on SIGHUP).
    pub(crate) tls: Option<Mutex<tokio_rustls::TlsAcceptor>>,
}

/// On each SIGHUP, reads the certificate and key again; new connections
/// get them, open ones keep theirs. A file that does not load leaves the
/// old settings in place (said on stderr).
async fn reload_on_hangup(mut hup: tokio::signal::unix::Signal, shared: Arc<Shared>) {
    let mut stop = shared.stop_rx.clone();
    loop {
        tokio::select! {
            got = hup.recv() => if got.is_none() { return },
            _ = stop.wait_for(|s| *s) => return,
        }
        let (Some((cert, key)), Some(current)) = (&shared.cfg.tls, &shared.tls) else {
            return;
        };
        match load_tls(cert, key) {
            Ok(acceptor) => {
                *lock(current) = acceptor;
                eprintln!(
                    "otc-relay: SIGHUP: TLS certificate {} reloaded",
                    cert.display()
                );
            }
            Err(e) => eprintln!("otc-relay: SIGHUP: keeping the old TLS certificate: {e}"),
        }
    }
}

/// Connections the kernel queues for `accept` (set in [`bind`]).
const LISTEN_BACKLOG: i32 = 4096;

/// Lowers `--max-connections` to what the process may open (ulimit -n),
/// saying so, and the waiter caps to fit the connection caps.
fn fit_caps(cfg: &mut Config) {
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
    cfg.max_waiters = cfg.max_waiters.clamp(1, cfg.max_connections);
    cfg.max_waiters_per_ip = cfg.max_waiters_per_ip.clamp(1, cfg.max_waiters);
}

/// The store `cfg` names (PostgreSQL with `--database`, else SQLite in
/// `--data`), its commits waking long polls through `arrived`.
fn open_store(cfg: &Config, arrived: &Arc<Arrivals>) -> Result<Box<dyn Storage>, RelayFailure> {
    let wake = arrived.clone();
    Ok(match &cfg.database {
        // Notifications from any process name no recipients.
        Some(url) => Box::new(pg::Postgres::open(
            url,
            cfg.keep,
            cfg.group_commit,
            Box::new(move || wake.wake_all()),
        )?),
        None => Box::new(Sqlite::open(
            &cfg.data,
            cfg.keep,
            cfg.group_commit,
            Box::new(move |to: &[String]| wake.wake(to)),
        )?),
    })
}

/// Binds `listen` (errors said in words: what is wrong and what to do),
/// with TCP_NODELAY, non-blocking, for tokio.
fn bind(listen: &str) -> Result<std::net::TcpListener, RelayFailure> {
    let listen_err = |why: String| RelayFailure::Listen {
        addr: listen.to_owned(),
        why,
    };
    if !std::net::ToSocketAddrs::to_socket_addrs(listen).is_ok_and(|mut a| a.next().is_some()) {
        return Err(RelayFailure::BadListen {
            addr: listen.to_owned(),
        });
    }
    let listener = std::net::TcpListener::bind(listen).map_err(|e| {
        listen_err(match e.kind() {
            std::io::ErrorKind::AddrInUse => format!(
                "{e}: another program is using that port; stop it or pick another port with --listen"
            ),
            std::io::ErrorKind::AddrNotAvailable => format!(
                "{e}: this machine has no such address; use one of its own (or 127.0.0.1)"
            ),
            std::io::ErrorKind::PermissionDenied => {
                format!("{e}: ports below 1024 need privileges; use a port above 1023")
            }
            _ => e.to_string(),
        })
    })?;
    // Linux copies TCP_NODELAY from the listener to accepted sockets;
    // each connection sets it again anyway (small replies must not
    // wait for the client's delayed ACK).
    socket2::SockRef::from(&listener)
        .set_tcp_nodelay(true)
        .map_err(|e| listen_err(format!("cannot set TCP_NODELAY: {e}")))?;
    // std listens with a queue of 128: a burst of connections (every
    // client reconnecting after a restart, thousands of long polls) beyond
    // it had its SYNs dropped and retried 1 s, 3 s, 7 s later. Listening
    // again only sets the queue's length (the kernel caps it at
    // net.core.somaxconn).
    socket2::SockRef::from(&listener)
        .listen(LISTEN_BACKLOG)
        .map_err(|e| listen_err(format!("cannot set the listen queue: {e}")))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| listen_err(e.to_string()))?;
    Ok(listener)
}

/// With TLS: reloads the certificate on each SIGHUP (or says on stderr
/// that a renewed one needs a restart, if SIGHUP cannot be caught).
fn reload_tls_on_hangup(runtime: &tokio::runtime::Runtime, shared: &Arc<Shared>) {
    let hup = {
        let _in = runtime.enter();
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
    };
    match hup {
        Ok(hup) => {
            runtime.spawn(reload_on_hangup(hup, shared.clone()));
        }
        Err(e) => {
            eprintln!("otc-relay: cannot catch SIGHUP ({e}): a renewed certificate needs a restart")
        }
    }
}

/// A running relay.
pub struct Relay {
    addr: SocketAddr,
    shared: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
    accept: Option<tokio::task::JoinHandle<()>>,
}

impl Relay {
    /// Opens the store, binds and starts serving on a background thread.
    pub fn start(mut cfg: Config) -> Result<Relay, RelayFailure> {
        fit_caps(&mut cfg);
        let tls = match &cfg.tls {
            Some((cert, key)) => Some(Mutex::new(load_tls(cert, key).map_err(RelayFailure::Tls)?)),
            None => None,
        };
        let arrived = Arc::new(Arrivals::new());
        let store = open_store(&cfg, &arrived)?;
        let listener = bind(&cfg.listen)?;
        let listen_err = |why: String| RelayFailure::Listen {
            addr: cfg.listen.clone(),
            why,
        };
        let addr = listener
            .local_addr()
            .map_err(|e| listen_err(e.to_string()))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("relay-worker")
            .build()
            .map_err(|e| listen_err(format!("cannot start the runtime: {e}")))?;
        let listener = {
            let _in = runtime.enter();
            tokio::net::TcpListener::from_std(listener).map_err(|e| listen_err(e.to_string()))?
        };
        let (stop_tx, stop_rx) = watch::channel(false);
        let conns = http::Conns::with_watches(http::fd_limit(), cfg.max_connections);
        let shared = Arc::new(Shared {
            cfg,
            store,
            arrived,
            mischief: Mutex::new(MischiefState::default()),
            buckets: Mutex::new(HashMap::new()),
            daily: Mutex::new(Daily::default()),
            conns: Mutex::new(conns),
            stop: AtomicBool::new(false),
            stop_tx,
            stop_rx,
            parked: AtomicU64::new(0),
            tls,
        });
        if shared.tls.is_some() {
            reload_tls_on_hangup(&runtime, &shared);
        }
        let accept = runtime.spawn(http::accept_loop(listener, shared.clone()));
        Ok(Relay {
            addr,
            shared,
            runtime: Some(runtime),
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

    /// How many connections are open now (long polls and idle ones
    /// included).
    pub fn open_connections(&self) -> usize {
        lock(&self.shared.conns).open_count()
    }

    /// Serves until the process ends.
    pub fn wait(mut self) {
        if let (Some(rt), Some(h)) = (&self.runtime, self.accept.take()) {
            let _ = rt.block_on(h);
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.stop_tx.send_replace(true);
        self.shared.arrived.wake_all();
        if let (Some(rt), Some(h)) = (&self.runtime, self.accept.take()) {
            let _ = rt.block_on(h);
        }
        // Let the connections finish (bounded): hyper closes idle ones at
        // once and answers the one request each has in hand (a long poll
        // sees `stop`), so that a relay started again on the same
        // directory is the store's only writer.
        let deadline = Instant::now() + Duration::from_secs(5);
        while lock(&self.shared.conns).open_count() > 0 && Instant::now() < deadline {
            self.shared.arrived.wake_all();
            std::thread::sleep(Duration::from_millis(2));
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(5));
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
pub(crate) async fn route(
    sh: &Arc<Shared>,
    head: &Head,
    body: &[u8],
    ip: IpAddr,
    conn: Option<&Arc<http::ConnState>>,
) -> Reply {
    rate_check(sh, http::address_key(ip))?;
    let q = parse::parse_form(head.query.as_bytes());
    match (head.method.as_str(), head.path.as_str()) {
        ("GET", CHECK) => json(&CheckResponse::ok()),
        ("POST", SEND) => {
            let f = parse::parse_body(head.content_type.as_deref(), body)?;
            send(sh, parse::send_request(&f, sh.cfg.max_message)?, ip).await
        }
        ("GET", GET_MESSAGES) => get_messages(sh, &parse::get_messages_query(&q)?, conn).await,
        ("GET", GET_NEXT_REF) => {
            parse::uid(&q, "recipient_uid")?;
            json(&NextRefResponse {
                nextref: sh.store.next_ref(),
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

async fn send(sh: &Arc<Shared>, req: SendRequest, ip: IpAddr) -> Reply {
    let echo_tail = parse::echo_tail(&req.contents, ECHO_TAIL_CHARS).to_owned();
    let size = message_bytes(&req.sender_uid, &req.recipient_uid, &req.contents);
    let ip = http::address_key(ip);
    lock(&sh.daily).charge(ip, size, sh.cfg.daily_bytes_per_address)?;
    let s = sh.clone();
    let answer = sh
        .store
        .write(Box::new(move |t: &mut dyn Txn| deliver(&s, &req, t)));
    let msg_ref = answer
        .await
        .map_err(|_| {
            err(
                507,
                "the relay's storage stopped; the message was not stored",
            )
        })
        .and_then(|r| r)
        .inspect_err(|_| lock(&sh.daily).refund(ip, size))?;
    json(&SendResponse {
        received: true,
        echo_tail,
        msg_ref,
    })
}

/// Stores a message (through any pending mischief) in the writer's
/// transaction; it is answered once the commit is durable, and the commit
/// wakes long polls (`store`).
fn deliver(sh: &Shared, m: &SendRequest, store: &mut dyn Txn) -> Result<u64, Refusal> {
    let storage = |e: RelayFailure| err(507, e.to_string());
    // A resend of a message still kept gets the first send's ref (see
    // `store`'s docs); nothing new is stored.
    if let Some(msg_ref) = store
        .find_copy(&m.sender_uid, &m.recipient_uid, &m.contents)
        .map_err(storage)?
    {
        return Ok(msg_ref);
    }
    let size = message_bytes(&m.sender_uid, &m.recipient_uid, &m.contents);
    let stored = store.stored_bytes();
    if stored.saturating_add(size) > sh.cfg.max_bytes {
        return Err(err(
            507,
            format!(
                "the relay is full: it keeps at most {} bytes of messages (--max-bytes) and \
                 holds {stored}; nothing was stored. Space comes back as messages expire; \
                 try again later",
                sh.cfg.max_bytes
            ),
        ));
    }
    if store.mailbox_len(&m.recipient_uid).map_err(storage)? >= sh.cfg.max_mailbox {
        return Err(err(
            429,
            format!(
                "mailbox full: {} already holds {} messages, the limit",
                m.recipient_uid, sh.cfg.max_mailbox
            ),
        ));
    }
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
    let msg_ref = match trick {
        None => store.put(s, r, c),
        Some(Mischief::Drop) => store.skip(),
        Some(Mischief::Corrupt) => store.put(s, r, &corrupt(c)),
        Some(Mischief::Replay) => store.put(s, r, c).and_then(|first| {
            store.put(s, r, c)?;
            Ok(first)
        }),
        Some(Mischief::Reorder) => {
            lock(&sh.mischief)
                .held
                .insert(r.clone(), (s.clone(), c.clone()));
            // Tell the sender the ref it would have had; the held message
            // is stored (under a later ref) after the next one.
            Ok(store.next_ref())
        }
    }
    .map_err(storage)?;
    if let Some((hs, hc)) = held {
        store.put(&hs, r, &hc).map_err(storage)?;
    }
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

async fn get_messages(
    sh: &Shared,
    q: &GetMessagesQuery,
    conn: Option<&Arc<http::ConnState>>,
) -> Reply {
    let max = q.maxcount.map_or(sh.cfg.max_count, |n| {
        usize::try_from(n)
            .unwrap_or(usize::MAX)
            .min(sh.cfg.max_count)
    });
    let wait = q.wait.unwrap_or(0).min(MAX_WAIT_SECS);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    // Counted against the waiter caps from its first park to its answer.
    let mut parked: Option<http::Parked<'_>> = None;
    let (messages, complete) = loop {
        // Listening before looking: a message published after the look
        // wakes this poll.
        let arrived = sh.arrived.of(&q.recipient_uid).notified();
        tokio::pin!(arrived);
        arrived.as_mut().enable();
        let (msgs, complete) = sh
            .store
            .fetch(&q.recipient_uid, q.start_ref, max)
            .map_err(|e| err(507, e.to_string()))?;
        if !msgs.is_empty()
            || tokio::time::Instant::now() >= deadline
            || sh.stop.load(Ordering::SeqCst)
        {
            break (msgs, complete);
        }
        sh.parked.fetch_add(1, Ordering::SeqCst);
        let woken = async {
            let _ = tokio::time::timeout_at(deadline, arrived).await;
        };
        let end = match conn {
            Some(c) => {
                parked
                    .get_or_insert_with(|| http::Parked::new(sh, c))
                    .wait(woken)
                    .await
            }
            None => {
                woken.await;
                http::WaitEnd::Woken
            }
        };
        if end != http::WaitEnd::Woken {
            break (msgs, complete);
        }
    };
    drop(parked);
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
