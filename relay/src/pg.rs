//! The PostgreSQL backend ([`Postgres`], `--database postgres://…`), for
//! several relay processes, on several machines, sharing one database.
//!
//! # Why `postgres` (tokio-postgres's blocking wrapper)
//!
//! `tokio-postgres` is the well-kept PostgreSQL driver of the Rust
//! ecosystem (MIT or Apache-2.0, by the rust-postgres project); the
//! `postgres` crate is the same project's blocking client on top of it.
//! The [`Storage`] trait is synchronous and its writes run in one writer
//! thread that batches them into one transaction (group commit), exactly
//! as for SQLite: the blocking client fits that shape with no second
//! runtime to thread through, and exposes `LISTEN`'s notifications as an
//! iterator. No pool crate: the writer owns one connection, a few reader
//! threads own one each, and the listener one more, all re-opened when
//! PostgreSQL goes away. Connections are made without TLS (`NoTls`): run
//! the database on a Unix socket or a private network.
//!
//! # Refs across processes: a counter row locked by the send's transaction
//!
//! Each group commit reads the next ref with `SELECT … FOR UPDATE` on the
//! `meta` row, stores its messages under the refs that follow, writes the
//! counter back and commits. The row lock makes the commits of every
//! relay process on the database take turns, so refs are monotonic,
//! never reused (pruning and restarts never lower the counter), and, more
//! than a sequence would give, *visible in ref order*: a message with a
//! lower ref is never committed after one with a higher ref, so a
//! client's `start_ref` cursor never skips one. One lock per batch, not
//! per message, so group commit pays for it.
//!
//! # Acknowledged means committed
//!
//! A send is answered after `COMMIT` returns (PostgreSQL's default
//! `synchronous_commit=on`: the WAL is flushed). A failed commit, or a
//! database that cannot be reached, answers 507 and names PostgreSQL;
//! the next batch connects again.
//!
//! # Waking long polls on every process: LISTEN/NOTIFY
//!
//! Each commit that stored something runs `pg_notify('otc_relay', NEXT)`
//! inside its transaction (delivered only if it commits). Every relay
//! process keeps one connection in `LISTEN otc_relay`; a notification
//! wakes its long polls. (`/getnextref` reads the counter row itself.)
//! After the listener reconnects it wakes every poll once, since
//! notifications sent while it was away are lost.
//!
//! # Resends and pruning
//!
//! As with SQLite, a resend of a message still kept gets its first ref;
//! here the key is looked up in an index (`messages_by_dedupe`), since
//! another process may have stored the first copy. Messages older than
//! `--keep-days` are deleted at open and by each writer at most once per
//! [`PRUNE_EVERY`].

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use otc_proto::relay::RelayMessage;
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, NoTls, Statement};
use tokio::sync::oneshot;

use crate::RelayFailure;
use crate::parse::{Refusal, err};
use crate::store::{MAX_BATCH, PRUNE_EVERY, Storage, Txn, WriteOp, dedupe_key, unix_now};

/// The channel every relay process listens on.
pub const CHANNEL: &str = "otc_relay";
/// Reader threads (each with its own connection).
const READERS: usize = 4;
/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

const SCHEMA: &str = "
SELECT pg_advisory_xact_lock(7040417);
CREATE TABLE IF NOT EXISTS messages (
    ref BIGINT PRIMARY KEY,
    recipient TEXT NOT NULL,
    sender TEXT NOT NULL,
    contents TEXT NOT NULL,
    at BIGINT NOT NULL,
    dedupe BYTEA NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_recipient ON messages (recipient, ref);
CREATE INDEX IF NOT EXISTS messages_by_age ON messages (at);
CREATE INDEX IF NOT EXISTS messages_by_dedupe ON messages (dedupe);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v BIGINT NOT NULL);
INSERT INTO meta (k, v) VALUES ('next_ref', 1) ON CONFLICT (k) DO NOTHING;
";

/// Where the database is, for messages: host, port and database, never
/// the password.
fn describe(cfg: &postgres::Config) -> String {
    let host = match cfg.get_hosts().first() {
        Some(postgres::config::Host::Tcp(h)) => h.clone(),
        Some(postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = cfg.get_ports().first().copied().unwrap_or(5432);
    format!(
        "PostgreSQL at {host}:{port}/{}",
        cfg.get_dbname().unwrap_or("(default database)")
    )
}

#[derive(Clone)]
struct Target {
    cfg: postgres::Config,
    name: String,
}

impl Target {
    fn parse(url: &str) -> Result<Target, RelayFailure> {
        let mut cfg = postgres::Config::from_str(url).map_err(|e| {
            RelayFailure::Database(format!(
                "--database: not a PostgreSQL URL ({e}); expected postgres://USER@HOST:PORT/DB"
            ))
        })?;
        if cfg.get_connect_timeout().is_none() {
            cfg.connect_timeout(CONNECT_TIMEOUT);
        }
        cfg.application_name("otc-relay");
        let name = describe(&cfg);
        Ok(Target { cfg, name })
    }

    fn connect(&self) -> Result<Client, RelayFailure> {
        self.cfg
            .connect(NoTls)
            .map_err(|e| RelayFailure::Database(format!("cannot reach {}: {e}", self.name)))
    }

    fn err<'a>(&'a self, what: &'a str) -> impl Fn(postgres::Error) -> RelayFailure + 'a {
        move |e| RelayFailure::Database(format!("{}: {what}: {e}", self.name))
    }
}

fn big(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A row's size as [`crate::message_bytes`] counts it, in SQL.
const ROW_BYTES: &str =
    "octet_length(sender) + octet_length(recipient) + octet_length(contents) + 96";

/// Drops messages older than `keep` and their bytes from the count, in
/// one transaction; how many were dropped.
fn prune(c: &mut Client, t: &Target, keep: Duration) -> Result<u64, RelayFailure> {
    let oldest = big(unix_now().saturating_sub(keep.as_secs()));
    let mut tx = c.transaction().map_err(t.err("cannot drop old messages"))?;
    let freed: i64 = tx
        .query_one(
            &format!("SELECT COALESCE(SUM({ROW_BYTES}), 0)::BIGINT FROM messages WHERE at < $1"),
            &[&oldest],
        )
        .map_err(t.err("cannot drop old messages"))?
        .get(0);
    let n = tx
        .execute("DELETE FROM messages WHERE at < $1", &[&oldest])
        .map_err(t.err("cannot drop old messages"))?;
    tx.execute(
        "UPDATE meta SET v = GREATEST(v - $1, 0) WHERE k = 'stored_bytes'",
        &[&freed],
    )
    .map_err(t.err("cannot drop old messages"))?;
    tx.commit().map_err(t.err("cannot drop old messages"))?;
    Ok(n)
}

/// Counts the bytes stored into `meta` once, for a database made by an
/// older relay (which kept no count).
fn count_bytes(c: &mut Client, t: &Target) -> Result<(), RelayFailure> {
    c.execute(
        &format!(
            "INSERT INTO meta (k, v) SELECT 'stored_bytes', COALESCE(SUM({ROW_BYTES}), 0)::BIGINT \
             FROM messages WHERE NOT EXISTS (SELECT 1 FROM meta WHERE k = 'stored_bytes') \
             ON CONFLICT (k) DO NOTHING"
        ),
        &[],
    )
    .map_err(t.err("cannot count the bytes stored"))?;
    Ok(())
}

struct Job {
    op: WriteOp,
    reply: oneshot::Sender<Result<u64, Refusal>>,
}

type FetchReply = Result<(Vec<RelayMessage>, bool), RelayFailure>;

enum Fetch {
    Messages {
        recipient: String,
        start: u64,
        max: usize,
        reply: mpsc::Sender<FetchReply>,
    },
    NextRef(mpsc::Sender<Result<u64, RelayFailure>>),
}

/// The PostgreSQL backend.
pub struct Postgres {
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    reads: Mutex<Option<mpsc::Sender<Fetch>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    stop: Arc<AtomicBool>,
    next_ref: Arc<AtomicU64>,
    commits: Arc<AtomicU64>,
}

impl Postgres {
    /// Connects to `url`, creates the tables if missing, drops messages
    /// older than `keep`, and starts the writer, readers and listener.
    /// `on_commit` runs whenever messages may have become visible (a
    /// commit here or a notification from any process).
    pub fn open(
        url: &str,
        keep: Option<Duration>,
        group: bool,
        on_commit: Box<dyn Fn() + Send + Sync>,
    ) -> Result<Postgres, RelayFailure> {
        let t = Target::parse(url)?;
        let mut c = t.connect()?;
        c.batch_execute(&format!("BEGIN;{SCHEMA}COMMIT;"))
            .map_err(t.err("cannot create the tables"))?;
        count_bytes(&mut c, &t)?;
        if let Some(keep) = keep {
            prune(&mut c, &t, keep)?;
        }
        let next: i64 = c
            .query_one("SELECT v FROM meta WHERE k = 'next_ref'", &[])
            .map_err(t.err("cannot read the next ref"))?
            .get(0);
        let next_ref = Arc::new(AtomicU64::new(u64::try_from(next).unwrap_or(1)));
        let commits = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let on_commit: Arc<dyn Fn() + Send + Sync> = Arc::from(on_commit);
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(f)
                .map_err(|e| RelayFailure::Database(format!("cannot start a thread: {e}")))
        };
        let mut threads = Vec::new();
        let (jobs_tx, jobs_rx) = mpsc::channel();
        let w = Writer {
            t: t.clone(),
            client: Some(c),
            stmts: None,
            next: next_ref.clone(),
            commits: commits.clone(),
            keep,
            group,
            on_commit: on_commit.clone(),
        };
        threads.push(spawn("relay-pg-writer", Box::new(move || w.run(&jobs_rx)))?);
        let (reads_tx, reads_rx) = mpsc::channel::<Fetch>();
        let reads_rx = Arc::new(Mutex::new(reads_rx));
        for _ in 0..READERS {
            let (t, rx) = (t.clone(), reads_rx.clone());
            threads.push(spawn("relay-pg-reader", Box::new(move || reader(&t, &rx)))?);
        }
        let (lt, ls, ln) = (t.clone(), stop.clone(), next_ref.clone());
        threads.push(spawn(
            "relay-pg-listen",
            Box::new(move || listen(&lt, &ls, &ln, &*on_commit)),
        )?);
        Ok(Postgres {
            jobs: Mutex::new(Some(jobs_tx)),
            reads: Mutex::new(Some(reads_tx)),
            threads: Mutex::new(threads),
            stop,
            next_ref,
            commits,
        })
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // The writer ends once it has answered what is queued; the readers
        // when their channel closes; the listener within its poll period.
        crate::lock(&self.jobs).take();
        crate::lock(&self.reads).take();
        self.stop.store(true, Ordering::SeqCst);
        for h in crate::lock(&self.threads).drain(..) {
            let _ = h.join();
        }
    }
}

impl Storage for Postgres {
    fn write(&self, op: WriteOp) -> oneshot::Receiver<Result<u64, Refusal>> {
        let (reply, rx) = oneshot::channel();
        if let Some(tx) = crate::lock(&self.jobs).as_ref() {
            let _ = tx.send(Job { op, reply });
        }
        rx
    }

    fn fetch(
        &self,
        recipient: &str,
        start_ref: u64,
        max: usize,
    ) -> Result<(Vec<RelayMessage>, bool), RelayFailure> {
        let (reply, rx) = mpsc::channel();
        let sent = crate::lock(&self.reads).as_ref().is_some_and(|tx| {
            tx.send(Fetch::Messages {
                recipient: recipient.to_owned(),
                start: start_ref,
                max,
                reply,
            })
            .is_ok()
        });
        if !sent {
            return Err(RelayFailure::Database("the relay's storage stopped".into()));
        }
        rx.recv()
            .map_err(|_| RelayFailure::Database("the relay's storage stopped".into()))?
    }

    /// Read from the database (another process may have committed since
    /// the last notification); the last known value if it cannot be read.
    fn next_ref(&self) -> u64 {
        let (reply, rx) = mpsc::channel();
        let sent = crate::lock(&self.reads)
            .as_ref()
            .is_some_and(|tx| tx.send(Fetch::NextRef(reply)).is_ok());
        let known = self.next_ref.load(Ordering::SeqCst);
        match rx.recv() {
            Ok(Ok(v)) if sent => self.next_ref.fetch_max(v, Ordering::SeqCst).max(v),
            _ => known,
        }
    }

    fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }
}

/// A reader's connection and its prepared read.
type ReadConn = (Client, Statement);

/// The reader's connection, made again if it is missing or closed.
fn reader_conn<'a>(
    t: &Target,
    conn: &'a mut Option<ReadConn>,
) -> Result<&'a mut ReadConn, RelayFailure> {
    if conn.as_ref().is_none_or(|(c, _)| c.is_closed()) {
        *conn = None;
        let mut c = t.connect()?;
        let st = c
            .prepare(
                "SELECT ref, sender, contents FROM messages \
                 WHERE recipient = $1 AND ref >= $2 ORDER BY ref LIMIT $3",
            )
            .map_err(t.err("cannot prepare a read"))?;
        *conn = Some((c, st));
    }
    match conn.as_mut() {
        Some(rc) => Ok(rc),
        None => Err(RelayFailure::Database("no connection".into())),
    }
}

/// A reader thread: answers fetches on its own connection, connecting
/// again after a failure.
fn reader(t: &Target, rx: &Mutex<mpsc::Receiver<Fetch>>) {
    let mut conn: Option<ReadConn> = None;
    loop {
        let Ok(f) = crate::lock(rx).recv() else {
            return;
        };
        match f {
            Fetch::NextRef(reply) => {
                let got = reader_conn(t, &mut conn).and_then(|(c, _)| {
                    c.query_one("SELECT v FROM meta WHERE k = 'next_ref'", &[])
                        .map(|r| u64::try_from(r.get::<_, i64>(0)).unwrap_or(1))
                        .map_err(t.err("cannot read the next ref"))
                });
                if got.is_err() {
                    conn = None;
                }
                let _ = reply.send(got);
            }
            Fetch::Messages {
                recipient,
                start,
                max,
                reply,
            } => {
                let got = reader_conn(t, &mut conn).and_then(|(c, st)| {
                    let limit = big(u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1));
                    let rows = c
                        .query(&*st, &[&recipient, &big(start), &limit])
                        .map_err(t.err("cannot read messages"))?;
                    let mut msgs = rows
                        .iter()
                        .map(|r| RelayMessage {
                            msg_ref: u64::try_from(r.get::<_, i64>(0)).unwrap_or(0),
                            recipient_uid: recipient.clone(),
                            sender_uid: r.get(1),
                            contents: r.get(2),
                        })
                        .collect::<Vec<_>>();
                    let complete = msgs.len() <= max;
                    msgs.truncate(max);
                    Ok((msgs, complete))
                });
                if got.is_err() {
                    conn = None;
                }
                let _ = reply.send(got);
            }
        }
    }
}

/// The listener thread: `LISTEN otc_relay`, waking long polls on every
/// notification, until `stop`.
fn listen(t: &Target, stop: &AtomicBool, next: &AtomicU64, on_commit: &(dyn Fn() + Send + Sync)) {
    let mut failed_at: Option<Instant> = None;
    while !stop.load(Ordering::SeqCst) {
        let mut c = match t.connect().and_then(|mut c| {
            match c.batch_execute(&format!("LISTEN {CHANNEL}")) {
                Ok(()) => Ok(c),
                Err(e) => Err(t.err("cannot LISTEN")(e)),
            }
        }) {
            Ok(c) => c,
            Err(e) => {
                if failed_at.is_none() {
                    eprintln!("otc-relay: long polls wake only for this process's sends: {e}");
                    failed_at = Some(Instant::now());
                }
                std::thread::sleep(Duration::from_millis(250));
                continue;
            }
        };
        if failed_at.take().is_some() {
            eprintln!("otc-relay: listening to {} again", t.name);
        }
        // Notifications sent while away are lost: every poll looks again.
        on_commit();
        let mut n = c.notifications();
        let mut it = n.timeout_iter(Duration::from_millis(250));
        while !stop.load(Ordering::SeqCst) {
            match it.next() {
                Ok(Some(note)) => {
                    if let Ok(v) = note.payload().parse::<u64>() {
                        next.fetch_max(v, Ordering::SeqCst);
                    }
                    on_commit();
                }
                Ok(None) => {}
                Err(e) => {
                    eprintln!("otc-relay: lost the LISTEN connection to {}: {e}", t.name);
                    break;
                }
            }
        }
        drop(it);
        drop(n);
        if c.is_closed() {
            failed_at = Some(Instant::now());
        }
    }
}

struct Stmts {
    lock_next: Statement,
    set_next: Statement,
    find: Statement,
    count: Statement,
    insert: Statement,
    lock_bytes: Statement,
    set_bytes: Statement,
}

/// The writer thread: owns the one write connection of this process.
struct Writer {
    t: Target,
    client: Option<Client>,
    stmts: Option<Stmts>,
    next: Arc<AtomicU64>,
    commits: Arc<AtomicU64>,
    keep: Option<Duration>,
    group: bool,
    on_commit: Arc<dyn Fn() + Send + Sync>,
}

struct PgTxn<'a> {
    c: &'a mut Client,
    s: &'a Stmts,
    t: &'a Target,
    next: u64,
    now: i64,
    /// Bytes stored, this transaction's so far included.
    bytes: u64,
}

impl Txn for PgTxn<'_> {
    fn find_copy(
        &mut self,
        sender: &str,
        recipient: &str,
        contents: &str,
    ) -> Result<Option<u64>, RelayFailure> {
        let key = dedupe_key(sender, recipient, contents);
        let row = self
            .c
            .query_opt(&self.s.find, &[&&key[..]])
            .map_err(self.t.err("cannot look for a resend"))?;
        Ok(row.map(|r| u64::try_from(r.get::<_, i64>(0)).unwrap_or(0)))
    }

    fn mailbox_len(&mut self, recipient: &str) -> Result<usize, RelayFailure> {
        let n: i64 = self
            .c
            .query_one(&self.s.count, &[&recipient])
            .map_err(self.t.err("cannot count a mailbox"))?
            .get(0);
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn next_ref(&self) -> u64 {
        self.next
    }

    fn stored_bytes(&self) -> u64 {
        self.bytes
    }

    fn put(&mut self, sender: &str, recipient: &str, contents: &str) -> Result<u64, RelayFailure> {
        let r = self.next;
        let key = dedupe_key(sender, recipient, contents);
        self.c
            .execute(
                &self.s.insert,
                &[
                    &big(r),
                    &recipient,
                    &sender,
                    &contents,
                    &self.now,
                    &&key[..],
                ],
            )
            .map_err(self.t.err("cannot store a message"))?;
        self.next += 1;
        self.bytes += crate::message_bytes(sender, recipient, contents);
        Ok(r)
    }

    fn skip(&mut self) -> Result<u64, RelayFailure> {
        self.next += 1;
        Ok(self.next - 1)
    }
}

impl Writer {
    fn run(mut self, jobs: &mpsc::Receiver<Job>) {
        let mut last_prune = Instant::now();
        while let Ok(first) = jobs.recv() {
            let mut batch = vec![first];
            while self.group && batch.len() < MAX_BATCH {
                match jobs.try_recv() {
                    Ok(j) => batch.push(j),
                    Err(_) => break,
                }
            }
            if let Some(keep) = self.keep
                && last_prune.elapsed() >= PRUNE_EVERY
                && let Some(c) = self.client.as_mut()
            {
                last_prune = Instant::now();
                if let Err(e) = prune(c, &self.t, keep) {
                    eprintln!("otc-relay: {e}");
                }
            }
            self.commit(batch);
        }
    }

    /// The write connection and its statements, connecting if needed.
    fn ready(&mut self) -> Result<(), RelayFailure> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.client = None;
            self.stmts = None;
            self.client = Some(self.t.connect()?);
        }
        if self.stmts.is_none()
            && let Some(c) = self.client.as_mut()
        {
            let e = self.t.err("cannot prepare the writer's statements");
            let mut p = |sql: &str| c.prepare(sql).map_err(&e);
            self.stmts = Some(Stmts {
                lock_next: p("SELECT v FROM meta WHERE k = 'next_ref' FOR UPDATE")?,
                set_next: p("UPDATE meta SET v = $1 WHERE k = 'next_ref'")?,
                find: p("SELECT ref FROM messages WHERE dedupe = $1 ORDER BY ref DESC LIMIT 1")?,
                count: p("SELECT COUNT(*) FROM messages WHERE recipient = $1")?,
                insert: p(
                    "INSERT INTO messages (ref, recipient, sender, contents, at, dedupe) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )?,
                lock_bytes: p("SELECT v FROM meta WHERE k = 'stored_bytes' FOR UPDATE")?,
                set_bytes: p("UPDATE meta SET v = $1 WHERE k = 'stored_bytes'")?,
            });
        }
        Ok(())
    }

    /// Runs a batch in one transaction and answers it once committed.
    fn commit(&mut self, batch: Vec<Job>) {
        let stored = |e: RelayFailure| err(507, format!("{e}; the message was not stored"));
        let answers = match self.run_batch(batch) {
            Ok(answers) => answers,
            Err((e, replies)) => {
                eprintln!("otc-relay: a commit failed: {e}");
                if let Some(c) = self.client.as_mut()
                    && !c.is_closed()
                {
                    let _ = c.batch_execute("ROLLBACK");
                }
                let e = stored(e);
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
                return;
            }
        };
        for (reply, r) in answers {
            let _ = reply.send(r);
        }
        (self.on_commit)();
    }

    #[allow(clippy::type_complexity)]
    fn run_batch(
        &mut self,
        batch: Vec<Job>,
    ) -> Result<
        Vec<(oneshot::Sender<Result<u64, Refusal>>, Result<u64, Refusal>)>,
        (RelayFailure, Vec<oneshot::Sender<Result<u64, Refusal>>>),
    > {
        if let Err(e) = self.ready() {
            return Err((e, batch.into_iter().map(|j| j.reply).collect()));
        }
        let (Some(c), Some(s)) = (self.client.as_mut(), self.stmts.as_ref()) else {
            unreachable!("ready connects")
        };
        let t = &self.t;
        let begin = c
            .batch_execute("BEGIN")
            .map_err(t.err("cannot begin a transaction"))
            .and_then(|()| {
                c.query_one(&s.lock_next, &[])
                    .map_err(t.err("cannot lock the next ref"))
            })
            .and_then(|next| {
                c.query_one(&s.lock_bytes, &[])
                    .map_err(t.err("cannot read the bytes stored"))
                    .map(|bytes| (next, bytes))
            });
        let (start, bytes) = match begin {
            Ok((next, bytes)) => (
                u64::try_from(next.get::<_, i64>(0)).unwrap_or(1),
                u64::try_from(bytes.get::<_, i64>(0)).unwrap_or(0),
            ),
            Err(e) => return Err((e, batch.into_iter().map(|j| j.reply).collect())),
        };
        self.commits.fetch_add(1, Ordering::Relaxed);
        let mut txn = PgTxn {
            c,
            s,
            t,
            next: start,
            now: big(unix_now()),
            bytes,
        };
        let mut answers = Vec::with_capacity(batch.len());
        let mut broken = None;
        for j in batch {
            if broken.is_some() {
                answers.push((j.reply, Ok(0)));
                continue;
            }
            let (before, bytes_before) = (txn.next, txn.bytes);
            if let Err(e) = txn.c.batch_execute("SAVEPOINT op") {
                broken = Some(t.err("cannot start a savepoint")(e));
                answers.push((j.reply, Ok(0)));
                continue;
            }
            let r = (j.op)(&mut txn);
            let end = if r.is_ok() {
                txn.c.batch_execute("RELEASE SAVEPOINT op")
            } else {
                txn.next = before;
                txn.bytes = bytes_before;
                txn.c
                    .batch_execute("ROLLBACK TO SAVEPOINT op; RELEASE SAVEPOINT op")
            };
            if let Err(e) = end {
                broken = Some(t.err("cannot end a savepoint")(e));
            }
            answers.push((j.reply, r));
        }
        let (next, bytes) = (txn.next, txn.bytes);
        let done = match broken {
            Some(e) => Err(e),
            None => txn
                .c
                .execute(&s.set_next, &[&big(next)])
                .and_then(|_| txn.c.execute(&s.set_bytes, &[&big(bytes)]))
                .and_then(|_| {
                    txn.c
                        .execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &next.to_string()])
                })
                .and_then(|_| txn.c.batch_execute("COMMIT"))
                .map_err(t.err("the database refused the commit")),
        };
        match done {
            Ok(()) => {
                self.next.fetch_max(next, Ordering::SeqCst);
                Ok(answers)
            }
            Err(e) => Err((e, answers.into_iter().map(|(r, _)| r).collect())),
        }
    }
}
