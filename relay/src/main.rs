//! The `otc-relay` binary: parses the command line and runs [`otc_relay::Relay`].

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use otc_relay::{Config, Relay};

/// One Time Chat's untrusted message relay.
///
/// Stores opaque messages from sender to recipient and hands them out by
/// ref, with the original relay's HTTP API: GET /check, POST /send
/// (form-encoded or JSON: sender_uid, recipient_uid, contents),
/// GET /getmessages?recipient_uid=..&start_ref=..[&maxcount=..][&wait=SECONDS],
/// GET /getnextref?recipient_uid=..
///
/// Messages are kept in DIR/relay.sqlite3 (SQLite, WAL, synchronous=FULL),
/// or with --database in PostgreSQL (shared by several relay processes),
/// and committed before a send is acknowledged; refs only ever increase,
/// across restarts.
/// The relay never sees a pad byte: it is untrusted by design.
///
/// EXAMPLES:
///   otc-relay --listen 127.0.0.1:8000 --data /var/lib/otc-relay
///   otc-relay --listen 0.0.0.0:443 --data /var/lib/otc-relay \
///       --tls-cert /etc/otc-relay/fullchain.pem --tls-key /etc/otc-relay/key.pem
///   otc-relay --listen 0.0.0.0:8000 --data ./relay-data --mischief
///   otc-relay --listen 0.0.0.0:8000 --database postgres://otc@db.internal/otc_relay
///   otc-relay --data /var/lib/otc-relay --import-log   (once, from an older relay)
#[derive(Parser, Debug)]
#[command(
    name = "otc-relay",
    version,
    verbatim_doc_comment,
    after_long_help = AFTER_HELP
)]
struct Args {
    /// Address and port to listen on (port 0 picks a free one, printed at start).
    #[arg(long, value_name = "ADDR", required_unless_present = "import_log")]
    listen: Option<String>,
    /// Directory for the database, relay.sqlite3 (created if missing).
    #[arg(long, value_name = "DIR", required_unless_present = "database")]
    data: Option<PathBuf>,
    /// Keep messages in PostgreSQL instead of SQLite, e.g.
    /// postgres://otc@db.internal/otc_relay: every relay process given
    /// the same database shares its messages and refs, and long polls on
    /// each are woken by sends on any (LISTEN/NOTIFY).
    #[arg(long, value_name = "URL", conflicts_with_all = ["data", "import_log"])]
    database: Option<String>,
    /// Largest message contents accepted, in bytes (larger: 413).
    #[arg(long, value_name = "BYTES", default_value_t = 64 * 1024)]
    max_message: usize,
    /// Most messages stored for one recipient (more: 429 "mailbox full").
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    max_mailbox: usize,
    /// Sustained requests per second allowed from one client address (more: 429).
    #[arg(long, value_name = "PER_SEC", default_value_t = 50.0)]
    rate: f64,
    /// Requests one client address may make in a burst before --rate applies.
    #[arg(long, value_name = "N", default_value_t = 200.0)]
    burst: f64,
    /// Most connections open at once, idle keep-alive ones and long polls
    /// included. At the cap the longest-idle connection is closed to make
    /// room; when all are busy, one more gets 503. Lowered to fit the
    /// open-files limit.
    #[arg(long, value_name = "N", default_value_t = 256)]
    max_connections: usize,
    /// Most connections open at once from one client address, IPv6 counted
    /// by /64 (one more: 429).
    #[arg(long, value_name = "N", default_value_t = 32)]
    max_connections_per_ip: usize,
    /// Most long polls (/getmessages with wait) parked at once. One more
    /// ends the longest-parked early (answered with what there is, so its
    /// client simply polls again): waiters never take the connections that
    /// sends and short polls need. At most --max-connections.
    #[arg(long, value_name = "N", default_value_t = 192)]
    max_waiters: usize,
    /// Most long polls parked at once from one client address (IPv6 by
    /// /64); one more ends that address's longest-parked.
    #[arg(long, value_name = "N", default_value_t = 16)]
    max_waiters_per_ip: usize,
    /// Most bytes of messages the relay stores in all, with K, M, G or T
    /// (powers of 1024). Each message counts its contents, sender and
    /// recipient plus 96 bytes. A send past it gets 507 "the relay is
    /// full", and nothing is dropped to make room; space comes back as
    /// messages expire (--keep-days).
    #[arg(long, value_name = "SIZE", default_value = "1G", value_parser = otc_relay::parse_size)]
    max_bytes: u64,
    /// Most bytes of messages one client address (IPv6 by /64) may store
    /// per UTC day, counted as for --max-bytes; past it: 429. With several
    /// relay processes behind one balancer, each counts its own.
    #[arg(long, value_name = "SIZE", default_value = "64M", value_parser = otc_relay::parse_size)]
    daily_bytes_per_address: u64,
    /// Days a message is kept, read or not; older ones are dropped (0: keep
    /// forever). Refs are never reused; /getmessages from a ref already
    /// dropped starts at the oldest message kept.
    #[arg(long, value_name = "DAYS", default_value_t = 30)]
    keep_days: u64,
    /// Serve HTTPS: the certificate (PEM, with any intermediates after it).
    /// Read again on SIGHUP, so a renewed certificate needs no restart.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM), with --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// For benchmarks only: sync every send on its own (no group commit).
    #[arg(long, hide = true)]
    no_group_commit: bool,
    /// DANGER, for demonstrations and tests only: serve GET/POST /mischief
    /// (userid, kind=drop|corrupt|replay|reorder), which tampers with that
    /// user's next message.
    #[arg(long)]
    mischief: bool,
    /// Once, after upgrading from a relay that kept DIR/messages.log:
    /// move its messages and refs into DIR/relay.sqlite3, rename the log
    /// messages.log.imported, and exit (the relay refuses to start beside
    /// an unimported log).
    #[arg(long)]
    import_log: bool,
}

const AFTER_HELP: &str = "\
ERRORS:
  Every refusal is a reply {\"error\": STATUS, \"message\": TEXT} with a 4xx
  status: 400 bad or missing field, bad request line or header, 404 no such
  endpoint (also /mischief without --mischief), 405 wrong method, 408 a
  request not sent whole within 10 s, 411 chunked body, 413 message or body
  too large, 417 an Expect other than 100-continue, 429 mailbox full, too
  many requests or too many connections from one address, 431 request head
  over 8 KiB, and 429 an address past --daily-bytes-per-address. Two are
  not the client's fault and are 5xx: 503 the relay has --max-connections
  open and none idle nor parked in a long poll (try again), 507 a send
  that could not be stored: the relay is full (--max-bytes) or the disk
  failed (nothing was stored either way).

CONNECTIONS:
  A connection may stay open (keep-alive) between requests; one idle for
  30 s is closed, and at --max-connections the longest-idle one (idle 1 s
  or more) is closed to make room. Open connections are capped in all and
  per address (IPv6 by /64), so idle ones cannot exhaust the relay's
  memory or files, nor lock other clients out. A long poll holds no thread.
  Long polls are capped apart (--max-waiters, --max-waiters-per-ip): one
  over a cap ends the longest-parked early with an empty answer, and at
  --max-connections with none idle, the longest-parked long poll is
  answered and closed to make room. A long poll whose client closes or
  resets its connection is let go at once.

FILES:
  DIR/relay.sqlite3  the messages and the next ref (SQLite in WAL mode, with
                     its -wal and -shm files beside it). Messages older than
                     --keep-days are deleted at start and every minute.
  DIR/messages.log   an older relay's log: import it once with --import-log.
  With --database postgres://..., no files: the tables messages and meta in
  that database (created if missing).

DURABILITY:
  A send is answered only once its transaction is committed to disk
  (synchronous=FULL: the WAL is fsynced); concurrent sends share one
  commit (group commit). A SIGKILL or power cut loses no acknowledged
  message, and refs only ever increase. With --database, a send is answered
  after PostgreSQL's COMMIT; while the database cannot be reached, sends
  are refused with 507 naming it, and nothing acknowledged is lost.

MAILBOXES:
  A message is kept --keep-days (default 30), read or not, then dropped.
  A full mailbox (--max-mailbox) refuses new sends with 429 rather than
  drop anything acknowledged.

EXIT STATUS:
  0 never in normal running (it serves until killed); 1 when it cannot open
  DIR or listen on ADDR; 2 for a bad command line.";

fn main() -> ExitCode {
    let a = Args::parse();
    if !(a.rate > 0.0 && a.burst >= 1.0) {
        eprintln!("otc-relay: --rate must be above 0 and --burst at least 1");
        return ExitCode::from(2);
    }
    if a.import_log {
        let data = a.data.unwrap_or_default();
        return match otc_relay::store::import_log(&data) {
            Ok((n, next)) => {
                println!(
                    "otc-relay: imported {n} messages from {}; refs continue at {next}",
                    data.join(otc_relay::store::LOG_NAME).display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("otc-relay: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let mut cfg = Config::new(a.listen.unwrap_or_default(), a.data.unwrap_or_default());
    cfg.database = a.database;
    cfg.max_message = a.max_message;
    cfg.max_mailbox = a.max_mailbox;
    cfg.rate = a.rate;
    cfg.burst = a.burst;
    cfg.max_connections = a.max_connections.max(1);
    cfg.max_connections_per_ip = a.max_connections_per_ip.max(1);
    cfg.max_waiters = a.max_waiters.max(1);
    cfg.max_waiters_per_ip = a.max_waiters_per_ip.max(1);
    cfg.max_bytes = a.max_bytes;
    cfg.daily_bytes_per_address = a.daily_bytes_per_address;
    cfg.mischief = a.mischief;
    cfg.group_commit = !a.no_group_commit;
    cfg.tls = a.tls_cert.zip(a.tls_key);
    cfg.keep = (a.keep_days > 0).then(|| Duration::from_secs(a.keep_days.saturating_mul(86_400)));
    if cfg.mischief {
        eprintln!("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
        eprintln!("!! otc-relay: MISCHIEF MODE IS ON. /mischief can drop, corrupt,     !!");
        eprintln!("!! replay and reorder messages. For demonstrations and tests only.  !!");
        eprintln!("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
    }
    let scheme = if cfg.tls.is_some() { "https" } else { "http" };
    match Relay::start(cfg) {
        Ok(relay) => {
            println!("otc-relay: listening on {scheme}://{}", relay.addr());
            relay.wait();
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("otc-relay: {e}");
            ExitCode::FAILURE
        }
    }
}
