//! The relay's messages: a [`Storage`] trait, and its SQLite backend
//! ([`Sqlite`], `DIR/relay.sqlite3`), the default for one machine.
//!
//! # Why rusqlite (and not sqlx)
//!
//! sqlx covers SQLite and PostgreSQL with one async API, but its SQLite
//! driver runs every statement on a worker thread behind a channel
//! anyway, and its pool hides which connection a statement runs on. Group
//! commit wants the opposite: one writer connection, owned by one thread,
//! running a batch of sends in one transaction. rusqlite gives exactly
//! that, synchronously, with SQLite built from source (`bundled`: no
//! system library to match); `tokio-postgres` (through its blocking
//! wrapper, the `postgres` crate) is its counterpart for the PostgreSQL
//! backend, [`crate::pg`], with the same writer-thread shape and
//! LISTEN/NOTIFY exposed directly (see there why). rusqlite is MIT,
//! rust-postgres MIT or Apache-2.0; SQLite is public domain.
//!
//! # Durability and group commit
//!
//! The database is in WAL mode with `synchronous=FULL`: a `COMMIT`
//! returns only once the write-ahead log is fsynced. Every write goes
//! through one writer thread: it takes the first send waiting, then every
//! other send already waiting (up to [`MAX_BATCH`]), runs them all in one
//! transaction (a refused send undoes only itself: the rows it wrote, the
//! refs it took last, are deleted again in the same transaction, so no
//! send pays for a savepoint), commits once, and only then answers each
//! sender. Concurrent
//! sends so share one fsync, and a send is acknowledged only once its
//! message is durable ("acknowledged means durable"). If the commit
//! fails, every send in the batch is answered 507 and nothing of it was
//! stored. Readers use their own connections and see only committed
//! messages, each commit's in ref order.
//!
//! SQLite is built with `HAVE_FDATASYNC` (`.cargo/config.toml`), so it
//! syncs with `fdatasync`, as the old log did and as Debian's libsqlite3
//! does; the bundled build otherwise calls `fsync`, which also waits for a
//! journal commit of the file's times.
//!
//! The writer never checkpoints (`wal_autocheckpoint=0`): with long polls
//! reading all the time, SQLite's automatic checkpoint at commit could
//! rarely finish, and then ran again (with its own fsyncs) at nearly every
//! commit, a third of the throughput. A checkpointer thread on its own
//! connection runs a passive checkpoint every [`CHECKPOINT_EVERY`]
//! instead, beside the writer.
//!
//! # Refs: monotonic, never reused
//!
//! Refs are global (the original relay kept one table with an
//! auto-increment key). The next ref is a counter in the `meta` table,
//! updated in the same transaction as the messages, so pruning, a ref
//! used up without a message (mischief `drop`) and restarts never make it
//! go back.
//!
//! # Pruning: mailboxes shrink, refs are never reused
//!
//! A message is kept for `keep` (`--keep-days`, default 30; 0 keeps
//! forever) and then dropped, read or not: at open, and by the writer at
//! most once per [`PRUNE_EVERY`]. Pruning drops the oldest refs up to the
//! first message still young enough, so it needs no index on the time (an
//! index costs one more page in every commit); a message that came after
//! a younger one (the wall clock went back) waits for it, so no message is
//! ever dropped early. A database of an earlier relay loses its
//! `messages_by_age` index at open. `/getmessages` with a `start_ref` below
//! the oldest kept message simply starts at the oldest kept one.
//! `--max-mailbox` still refuses a send (429) when a mailbox is full:
//! nothing acknowledged is dropped to make room.
//!
//! # A resend gets the ref it already has
//!
//! A message whose (sender, recipient, contents) equals one still kept is
//! not stored again; the reply is the one the first send got (its ref,
//! once durable: a resend in the same batch is answered after the same
//! commit). The key is SHA-256 over the three length-prefixed fields
//! ([`dedupe_key`]), a column, and in the writer's memory a map from key
//! to ref (rebuilt from the column at open and after pruning), not an
//! index: random keys put one more page into every commit per message,
//! which cost a third of the throughput.
//!
//! # The hand-written log of earlier versions
//!
//! Earlier relays kept `DIR/messages.log` (one JSON record a line). This
//! one refuses to start beside it, with an error that names the one-shot
//! import: `otc-relay --data DIR --import-log` ([`import_log`]) reads every
//! whole record (a torn last line, never acknowledged, is dropped), stores
//! the messages and the next ref in the database in one transaction, and
//! renames the log to `messages.log.imported`. Refs continue above every
//! ref the log used, so clients' cursors stay right.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use otc_proto::relay::RelayMessage;
use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

use crate::RelayFailure;
use crate::parse::{Refusal, err};

/// The database's file name inside the data directory.
pub const DB_NAME: &str = "relay.sqlite3";
/// The message log of earlier versions (see [`import_log`]).
pub const LOG_NAME: &str = "messages.log";
/// How often, at most, old messages are pruned while running.
pub const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// The most sends committed together.
pub const MAX_BATCH: usize = 1024;
/// Read connections kept open for reuse.
const READERS: usize = 4;
/// How often the checkpointer moves the WAL's pages into the database.
pub const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// What a send does inside a write transaction.
pub trait Txn {
    /// The ref of a kept message with this sender, recipient and contents.
    fn find_copy(
        &mut self,
        sender: &str,
        recipient: &str,
        contents: &str,
    ) -> Result<Option<u64>, RelayFailure>;
    /// How many messages `recipient` has kept.
    fn mailbox_len(&mut self, recipient: &str) -> Result<usize, RelayFailure>;
    /// The ref the next message will get.
    fn next_ref(&self) -> u64;
    /// Bytes of messages stored in all, as [`crate::message_bytes`]
    /// counts them (what `--max-bytes` bounds), this transaction's
    /// messages included.
    fn stored_bytes(&self) -> u64;
    /// Stores a message under the next ref; the ref.
    fn put(&mut self, sender: &str, recipient: &str, contents: &str) -> Result<u64, RelayFailure>;
    /// Uses up the next ref without a message; the ref.
    fn skip(&mut self) -> Result<u64, RelayFailure>;
}

/// A write: runs in the next group commit; its result is answered once
/// the commit is durable (an error undoes the write's own changes only).
pub type WriteOp = Box<dyn FnOnce(&mut dyn Txn) -> Result<u64, Refusal> + Send>;

/// Run by the SQLite writer after each commit, with the recipients it
/// stored messages for (each once): it wakes their long polls.
pub type OnCommit = Box<dyn Fn(&[String]) + Send>;

/// Where the relay keeps messages.
pub trait Storage: Send + Sync {
    /// Queues `op` for the next group commit; its result once durable.
    fn write(&self, op: WriteOp) -> oneshot::Receiver<Result<u64, Refusal>>;
    /// Up to `max` of `recipient`'s messages with ref >= `start_ref`, and
    /// whether that was all of them.
    fn fetch(
        &self,
        recipient: &str,
        start_ref: u64,
        max: usize,
    ) -> Result<(Vec<RelayMessage>, bool), RelayFailure>;
    /// The ref the next message will get (as of the last commit).
    fn next_ref(&self) -> u64;
    /// Commits made for writes (the bench's and tests' sends per commit).
    fn commits(&self) -> u64;
}

/// The key a resend is recognised by: SHA-256 over sender, recipient and
/// contents, each preceded by its length (8 bytes, little-endian), so
/// that no two different triples share an input.
pub fn dedupe_key(sender_uid: &str, recipient_uid: &str, contents: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in [sender_uid, recipient_uid, contents] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().into()
}

/// The current time in Unix seconds.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn sql_err(what: &str) -> impl Fn(rusqlite::Error) -> RelayFailure + '_ {
    move |e| RelayFailure::Storage(format!("{what}: {e}"))
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS messages (
    ref INTEGER PRIMARY KEY,
    recipient TEXT NOT NULL,
    sender TEXT NOT NULL,
    contents TEXT NOT NULL,
    at INTEGER NOT NULL,
    dedupe BLOB NOT NULL
);
DROP INDEX IF EXISTS messages_by_recipient;
DROP INDEX IF EXISTS messages_by_age;
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (k, v) VALUES ('next_ref', 1);
";

/// One message by its ref (the refs come from [`Mailboxes`]). No `LIMIT ?`
/// anywhere: SQLite (with STAT4, as rusqlite bundles it) marks a statement
/// whose LIMIT is a bound parameter for a new plan at every bind, so each
/// fetch parsed and planned its query again (12% of the relay's CPU under
/// the load bench).
const FETCH_SQL: &str = "SELECT sender, contents FROM messages WHERE ref = ?1";

/// A row's size as [`crate::message_bytes`] counts it, in SQL.
const ROW_BYTES: &str = "length(CAST(sender AS BLOB)) + length(CAST(recipient AS BLOB)) \
     + length(CAST(contents AS BLOB)) + 96";

/// How many of the latest messages' resend keys the writer keeps in
/// memory (about 6 MiB): a resend of an older message is stored again.
pub const COPIES_KEPT: usize = 65_536;

/// The bytes stored, from `meta` (counted once from the messages if an
/// older relay's database has no count yet).
fn stored_bytes(conn: &Connection) -> Result<u64, RelayFailure> {
    let kept: Option<i64> = conn
        .query_row("SELECT v FROM meta WHERE k = 'stored_bytes'", [], |r| {
            r.get(0)
        })
        .map(Some)
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            e => Err(e),
        })
        .map_err(sql_err("cannot read the bytes stored"))?;
    if let Some(v) = kept {
        return Ok(u64::try_from(v).unwrap_or(0));
    }
    conn.execute(
        &format!(
            "INSERT INTO meta (k, v) SELECT 'stored_bytes', COALESCE(SUM({ROW_BYTES}), 0) \
             FROM messages"
        ),
        [],
    )
    .map_err(sql_err("cannot count the bytes stored"))?;
    stored_bytes(conn)
}

fn connect(path: &Path) -> Result<Connection, RelayFailure> {
    let c = Connection::open(path).map_err(sql_err("cannot open the database"))?;
    c.busy_timeout(Duration::from_secs(10))
        .map_err(sql_err("cannot set the database's busy timeout"))?;
    let mode: String = c
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .map_err(sql_err("cannot put the database in WAL mode"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(RelayFailure::Storage(format!(
            "the database at {} refused WAL mode ({mode}); is it on a network file system?",
            path.display()
        )));
    }
    c.pragma_update(None, "synchronous", "FULL")
        .map_err(sql_err("cannot set synchronous=FULL"))?;
    Ok(c)
}

struct Job {
    op: WriteOp,
    reply: oneshot::Sender<Result<u64, Refusal>>,
}

/// The SQLite backend.
pub struct Sqlite {
    path: PathBuf,
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    checkpointer: Mutex<Option<(mpsc::Sender<()>, JoinHandle<()>)>>,
    readers: Mutex<Vec<Connection>>,
    mailboxes: Arc<RwLock<Mailboxes>>,
    next_ref: Arc<AtomicU64>,
    commits: Arc<AtomicU64>,
}

impl Sqlite {
    /// Opens (or creates) `DIR/relay.sqlite3`, drops messages older than
    /// `keep`, and starts the writer. `group`: batch concurrent sends into
    /// one commit (off only for the bench's comparison). `on_commit` runs
    /// after each commit, with the recipients it stored messages for (it
    /// wakes their long polls).
    pub fn open(
        dir: &Path,
        keep: Option<Duration>,
        group: bool,
        on_commit: OnCommit,
    ) -> Result<Sqlite, RelayFailure> {
        check_data_dir(dir)?;
        let path = dir.join(DB_NAME);
        let (conn, next) = open_for_writing(&path, keep)?;
        let mailboxes = Arc::new(RwLock::new(Mailboxes::load(&conn)?));
        let next_ref = Arc::new(AtomicU64::new(next));
        let commits = Arc::new(AtomicU64::new(0));
        let checkpointer = spawn_checkpointer(&path)?;
        let (tx, rx) = mpsc::channel();
        let w = Writer {
            copies: Copies::load(&conn)?,
            bytes: stored_bytes(&conn)?,
            conn,
            next: next_ref.clone(),
            commits: commits.clone(),
            keep,
            group,
            on_commit,
            mailboxes: mailboxes.clone(),
        };
        let writer = std::thread::Builder::new()
            .name("relay-writer".into())
            .spawn(move || w.run(&rx))
            .map_err(|e| RelayFailure::Storage(format!("cannot start the writer thread: {e}")))?;
        Ok(Sqlite {
            path,
            jobs: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            checkpointer: Mutex::new(Some(checkpointer)),
            readers: Mutex::new(Vec::new()),
            mailboxes,
            next_ref,
            commits,
        })
    }
}

/// Creates the data directory if missing; refuses one that still holds
/// an earlier version's message log, naming the one-shot import.
fn check_data_dir(dir: &Path) -> Result<(), RelayFailure> {
    std::fs::create_dir_all(dir).map_err(|e| {
        RelayFailure::Storage(format!(
            "cannot create the data directory {}: {e}",
            dir.display()
        ))
    })?;
    if dir.join(LOG_NAME).exists() {
        return Err(RelayFailure::Storage(format!(
            "{} holds {LOG_NAME}, the message log of an older otc-relay; this version keeps \
             messages in {DB_NAME}. Import it once with `otc-relay --data {} --import-log` \
             (every message and ref is kept; the log is renamed {LOG_NAME}.imported), then \
             start the relay again",
            dir.display(),
            dir.display()
        )));
    }
    Ok(())
}

/// The writer's connection: the tables created if missing, automatic
/// checkpoints off, messages older than `keep` dropped; and the next ref.
fn open_for_writing(
    path: &Path,
    keep: Option<Duration>,
) -> Result<(Connection, u64), RelayFailure> {
    let conn = connect(path)?;
    conn.execute_batch(SCHEMA)
        .map_err(sql_err("cannot create the database's tables"))?;
    conn.pragma_update(None, "wal_autocheckpoint", 0)
        .map_err(sql_err("cannot turn off automatic checkpoints"))?;
    if let Some(keep) = keep {
        prune(&conn, keep)?;
    }
    let next: u64 = conn
        .query_row("SELECT v FROM meta WHERE k = 'next_ref'", [], |r| r.get(0))
        .map_err(sql_err("cannot read the next ref"))?;
    Ok((conn, next))
}

/// The checkpointer thread, on its own connection: a passive checkpoint
/// every [`CHECKPOINT_EVERY`] until its sender is dropped.
fn spawn_checkpointer(path: &Path) -> Result<(mpsc::Sender<()>, JoinHandle<()>), RelayFailure> {
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let ck = connect(path)?;
    let h = std::thread::Builder::new()
        .name("relay-checkpoint".into())
        .spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) = stop_rx.recv_timeout(CHECKPOINT_EVERY)
            {
                if let Err(e) = ck.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    eprintln!("otc-relay: a checkpoint failed (retried): {e}");
                }
            }
        })
        .map_err(|e| RelayFailure::Storage(format!("cannot start the checkpoint thread: {e}")))?;
    Ok((stop_tx, h))
}

impl Drop for Sqlite {
    fn drop(&mut self) {
        // The writer ends once it has answered what is queued.
        crate::lock(&self.jobs).take();
        if let Some(h) = crate::lock(&self.writer).take() {
            let _ = h.join();
        }
        if let Some((stop, h)) = crate::lock(&self.checkpointer).take() {
            drop(stop);
            let _ = h.join();
        }
    }
}

impl Storage for Sqlite {
    fn write(&self, op: WriteOp) -> oneshot::Receiver<Result<u64, Refusal>> {
        let (reply, rx) = oneshot::channel();
        if let Some(tx) = crate::lock(&self.jobs).as_ref() {
            // A send error drops the job and its reply: the receiver sees
            // the writer gone.
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
        let pooled = crate::lock(&self.readers).pop();
        let conn = match pooled {
            Some(c) => c,
            None => connect(&self.path)?,
        };
        // One more than asked for says whether that was all.
        let refs =
            read_lock(&self.mailboxes).refs_from(recipient, start_ref, max.saturating_add(1));
        let got = (|| {
            let mut st = conn.prepare_cached(FETCH_SQL)?;
            let mut msgs = Vec::with_capacity(refs.len());
            for &r in &refs {
                // A row pruned since the refs were read is skipped.
                let row = st
                    .query_row(params![i64::try_from(r).unwrap_or(i64::MAX)], |row| {
                        Ok(RelayMessage {
                            msg_ref: r,
                            recipient_uid: recipient.to_owned(),
                            sender_uid: row.get(0)?,
                            contents: row.get(1)?,
                        })
                    })
                    .optional()?;
                msgs.extend(row);
            }
            Ok::<_, rusqlite::Error>(msgs)
        })();
        {
            let mut pool = crate::lock(&self.readers);
            if pool.len() < READERS {
                pool.push(conn);
            }
        }
        let mut msgs = got.map_err(sql_err("cannot read messages"))?;
        let complete = refs.len() <= max;
        msgs.truncate(max);
        Ok((msgs, complete))
    }

    fn next_ref(&self) -> u64 {
        self.next_ref.load(Ordering::SeqCst)
    }

    fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }
}

/// One statement without parameters, parsed once per connection.
fn run_sql(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// Drops messages older than `keep` and their bytes from the count, in
/// one transaction; how many were dropped, and the ref every dropped one
/// was below.
fn prune(conn: &Connection, keep: Duration) -> Result<(usize, u64), RelayFailure> {
    let oldest = i64::try_from(unix_now().saturating_sub(keep.as_secs())).unwrap_or(i64::MAX);
    let run = || -> rusqlite::Result<(usize, u64)> {
        run_sql(conn, "BEGIN IMMEDIATE")?;
        // The first message young enough to keep, in ref order: a scan
        // from the oldest ref that reads only the rows it then deletes.
        let cut: Option<i64> = conn
            .query_row(
                "SELECT ref FROM messages WHERE at >= ?1 ORDER BY ref LIMIT 1",
                params![oldest],
                |r| r.get(0),
            )
            .optional()?;
        let cut = cut.unwrap_or(i64::MAX);
        let freed: i64 = conn.query_row(
            &format!("SELECT COALESCE(SUM({ROW_BYTES}), 0) FROM messages WHERE ref < ?1"),
            params![cut],
            |r| r.get(0),
        )?;
        let n = conn.execute("DELETE FROM messages WHERE ref < ?1", params![cut])?;
        conn.execute(
            "UPDATE meta SET v = max(v - ?1, 0) WHERE k = 'stored_bytes'",
            params![freed],
        )?;
        run_sql(conn, "COMMIT")?;
        Ok((n, u64::try_from(cut).unwrap_or(0)))
    };
    run().map_err(|e| {
        let _ = conn.execute_batch("ROLLBACK");
        sql_err("cannot drop old messages")(e)
    })
}

/// Every kept message's ref, per recipient, ascending: the relay's index
/// by recipient, in memory. An index in the database (`messages_by_recipient`,
/// dropped at open) put one more page into every commit for every
/// recipient in it, up to 16 of the 18 pages a commit of 16 sends wrote
/// (4 KiB each, to the WAL and again at the checkpoint), for 200-byte
/// messages. Built from the table at open (one pass in ref order), added to
/// by the writer after each commit and before any poll is woken, trimmed
/// when it prunes; readers take the refs from here and each row by its
/// ref, so a fetch sees only committed messages. About 8 bytes a message.
/// The PostgreSQL backend keeps its index: several relay processes write
/// there, and none sees the others' commits in its memory.
#[derive(Default)]
struct Mailboxes {
    by: HashMap<String, std::collections::VecDeque<u64>>,
}

impl Mailboxes {
    fn load(conn: &Connection) -> Result<Mailboxes, RelayFailure> {
        let mut m = Mailboxes::default();
        let mut read = || -> rusqlite::Result<()> {
            let mut st = conn.prepare("SELECT recipient, ref FROM messages ORDER BY ref")?;
            let mut rows = st.query([])?;
            while let Some(row) = rows.next()? {
                let (who, r): (String, u64) = (row.get(0)?, row.get(1)?);
                m.add(who, r);
            }
            Ok(())
        };
        read().map_err(sql_err("cannot read the mailboxes"))?;
        Ok(m)
    }

    /// A committed message (refs come in ascending order).
    fn add(&mut self, who: String, r: u64) {
        self.by.entry(who).or_default().push_back(r);
    }

    /// Messages kept for `who`.
    fn len(&self, who: &str) -> usize {
        self.by.get(who).map_or(0, |d| d.len())
    }

    /// Up to `n` of `who`'s refs from `start` on.
    fn refs_from(&self, who: &str, start: u64, n: usize) -> Vec<u64> {
        let Some(d) = self.by.get(who) else {
            return Vec::new();
        };
        let at = d.partition_point(|&r| r < start);
        d.range(at..).take(n).copied().collect()
    }

    /// Pruning dropped every ref below `cut`.
    fn cut(&mut self, cut: u64) {
        self.by.retain(|_, d| {
            while d.front().is_some_and(|&r| r < cut) {
                d.pop_front();
            }
            !d.is_empty()
        });
    }
}

/// The resend keys ([`dedupe_key`]) of the latest [`COPIES_KEPT`]
/// messages, and their refs (the latest copy's): bounded, so that the
/// writer's memory stays flat whatever the database holds. An index on
/// the key would do the same from disk, but random keys put one more page
/// into every commit per message, a third of the throughput; and a resend
/// comes seconds after its first send (the sender did not see the reply),
/// not 65,536 messages later.
#[derive(Default)]
struct Copies {
    map: HashMap<[u8; 32], u64>,
    /// Insertion order, for forgetting the oldest (entries whose key has
    /// since moved on are skipped).
    order: std::collections::VecDeque<([u8; 32], u64)>,
}

impl Copies {
    fn load(conn: &Connection) -> Result<Copies, RelayFailure> {
        let mut st = conn
            .prepare("SELECT dedupe, ref FROM messages ORDER BY ref DESC LIMIT ?1")
            .map_err(sql_err("cannot read the resend keys"))?;
        let rows = st
            .query_map(params![COPIES_KEPT as i64], |r| {
                Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, u64>(1)?))
            })
            .map_err(sql_err("cannot read the resend keys"))?;
        let mut latest = Vec::new();
        for row in rows {
            let (k, r) = row.map_err(sql_err("cannot read the resend keys"))?;
            if let Ok(k) = <[u8; 32]>::try_from(k.as_slice()) {
                latest.push((k, r));
            }
        }
        let mut c = Copies::default();
        for (k, r) in latest.into_iter().rev() {
            c.insert(k, r);
        }
        Ok(c)
    }

    fn get(&self, key: &[u8; 32]) -> Option<u64> {
        self.map.get(key).copied()
    }

    fn insert(&mut self, key: [u8; 32], r: u64) -> Option<u64> {
        self.order.push_back((key, r));
        self.map.insert(key, r)
    }

    fn remove(&mut self, key: &[u8; 32]) {
        self.map.remove(key);
    }

    /// Forgets the oldest keys beyond [`COPIES_KEPT`].
    fn trim(&mut self) {
        while self.order.len() > COPIES_KEPT {
            if let Some((k, r)) = self.order.pop_front()
                && self.map.get(&k) == Some(&r)
            {
                self.map.remove(&k);
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.len()
    }
}

/// The writer thread: owns the one write connection.
struct Writer {
    conn: Connection,
    /// The next ref as of the last commit.
    next: Arc<AtomicU64>,
    commits: Arc<AtomicU64>,
    keep: Option<Duration>,
    group: bool,
    on_commit: OnCommit,
    /// The latest messages' resend keys.
    copies: Copies,
    /// Bytes stored, as committed.
    bytes: u64,
    /// The refs kept per recipient, shared with the readers.
    mailboxes: Arc<RwLock<Mailboxes>>,
}

/// A write transaction in progress.
struct SqlTxn<'a> {
    conn: &'a Connection,
    next: u64,
    now: i64,
    copies: &'a mut Copies,
    /// Bytes stored, this transaction's so far included.
    bytes: u64,
    /// Keys this op set, with what they held before (put back if it is
    /// rolled back).
    keyed: Vec<([u8; 32], Option<u64>)>,
    /// The messages stored, (recipient, ref), ascending: added to the
    /// mailboxes once committed (a rolled-back op's taken out again).
    stored: Vec<(String, u64)>,
    /// How many of `stored` each recipient has (a mailbox's length is its
    /// committed messages and these).
    pending: HashMap<String, usize>,
    mailboxes: &'a RwLock<Mailboxes>,
}

impl SqlTxn<'_> {
    /// Takes back the messages stored from `stored[from]` on (a refused op's).
    fn unstore(&mut self, from: usize) {
        for (who, _) in self.stored.drain(from..) {
            if let Some(n) = self.pending.get_mut(&who) {
                *n -= 1;
            }
        }
    }

    /// Undoes a refused op that began at `at`: its refs, bytes, stored
    /// messages and resend keys are taken back, and its rows deleted.
    /// Without a savepoint (two more statements for every send): `put` is
    /// a Txn's only SQL write, and the rows this op put are the refs it
    /// took, the last ones.
    fn undo(&mut self, at: OpStart) -> rusqlite::Result<()> {
        let took = self.next;
        self.next = at.next;
        self.bytes = at.bytes;
        self.unstore(at.stored);
        for (key, before) in std::mem::take(&mut self.keyed).into_iter().rev() {
            match before {
                Some(r) => {
                    self.copies.insert(key, r);
                }
                None => self.copies.remove(&key),
            }
        }
        if took > at.next {
            self.conn
                .prepare_cached("DELETE FROM messages WHERE ref >= ?1 AND ref < ?2")?
                .execute(params![
                    i64::try_from(at.next).unwrap_or(i64::MAX),
                    i64::try_from(took).unwrap_or(i64::MAX)
                ])?;
        }
        Ok(())
    }
}

/// Where a transaction stood when an op began ([`SqlTxn::undo`]).
#[derive(Clone, Copy)]
struct OpStart {
    next: u64,
    bytes: u64,
    stored: usize,
}

/// The end of a batch's transaction: the next ref and the bytes stored
/// into `meta`, then COMMIT.
fn end_transaction(conn: &Connection, next: u64, bytes: u64) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE meta SET v = ?1 WHERE k = 'next_ref'")?
        .execute(params![i64::try_from(next).unwrap_or(i64::MAX)])?;
    conn.prepare_cached("UPDATE meta SET v = ?1 WHERE k = 'stored_bytes'")?
        .execute(params![i64::try_from(bytes).unwrap_or(i64::MAX)])?;
    run_sql(conn, "COMMIT")
}

/// A batch's senders and what each is answered once the batch commits.
type Answers = Vec<(oneshot::Sender<Result<u64, Refusal>>, Result<u64, Refusal>)>;

impl Txn for SqlTxn<'_> {
    fn find_copy(
        &mut self,
        sender: &str,
        recipient: &str,
        contents: &str,
    ) -> Result<Option<u64>, RelayFailure> {
        Ok(self.copies.get(&dedupe_key(sender, recipient, contents)))
    }

    fn mailbox_len(&mut self, recipient: &str) -> Result<usize, RelayFailure> {
        let pending = self.pending.get(recipient).copied().unwrap_or(0);
        Ok(read_lock(self.mailboxes).len(recipient) + pending)
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
        self.conn
            .prepare_cached(
                "INSERT INTO messages (ref, recipient, sender, contents, at, dedupe) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .and_then(|mut st| {
                st.execute(params![
                    i64::try_from(r).unwrap_or(i64::MAX),
                    recipient,
                    sender,
                    contents,
                    self.now,
                    &key[..]
                ])
            })
            .map_err(sql_err("cannot store a message"))?;
        let before = self.copies.insert(key, r);
        self.keyed.push((key, before));
        self.stored.push((recipient.to_owned(), r));
        *self.pending.entry(recipient.to_owned()).or_default() += 1;
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
            {
                last_prune = Instant::now();
                match prune(&self.conn, keep) {
                    Ok((0, _)) => {}
                    Ok((_, cut)) => {
                        write_lock(&self.mailboxes).cut(cut);
                        self.reload();
                    }
                    Err(e) => eprintln!("otc-relay: {e}"),
                }
            }
            self.commit(batch);
        }
    }

    /// Reads the resend keys and the bytes stored again from the database
    /// (after pruning, or a failed commit).
    fn reload(&mut self) {
        match Copies::load(&self.conn) {
            Ok(c) => self.copies = c,
            Err(e) => eprintln!("otc-relay: {e}"),
        }
        match stored_bytes(&self.conn) {
            Ok(b) => self.bytes = b,
            Err(e) => eprintln!("otc-relay: {e}"),
        }
    }

    /// Runs a batch in one transaction and answers it once committed.
    fn commit(&mut self, batch: Vec<Job>) {
        let stored = |e: RelayFailure| {
            err(
                507,
                format!("{e}; the message was not stored (check the --data disk)"),
            )
        };
        if let Err(e) = run_sql(&self.conn, "BEGIN IMMEDIATE") {
            let e = stored(sql_err("cannot begin a transaction")(e));
            for j in batch {
                let _ = j.reply.send(Err(e.clone()));
            }
            return;
        }
        let start = self.next.load(Ordering::SeqCst);
        let now = i64::try_from(unix_now()).unwrap_or(i64::MAX);
        let conn = &self.conn;
        let mut txn = SqlTxn {
            conn,
            next: start,
            now,
            copies: &mut self.copies,
            bytes: self.bytes,
            keyed: Vec::new(),
            stored: Vec::new(),
            pending: HashMap::new(),
            mailboxes: &self.mailboxes,
        };
        let mut answers: Answers = Vec::with_capacity(batch.len());
        // A refused op whose rows could not be deleted again: nothing of
        // the batch is committed.
        let mut undo_failed = None;
        for j in batch {
            let at = OpStart {
                next: txn.next,
                bytes: txn.bytes,
                stored: txn.stored.len(),
            };
            txn.keyed.clear();
            let r = (j.op)(&mut txn);
            if r.is_err()
                && let Err(e) = txn.undo(at)
            {
                undo_failed.get_or_insert(e);
            }
            answers.push((j.reply, r));
        }
        let (next, bytes, new) = (txn.next, txn.bytes, txn.stored);
        let committed = match undo_failed {
            Some(e) => Err(e),
            None => end_transaction(conn, next, bytes),
        };
        self.commits.fetch_add(1, Ordering::Relaxed);
        match committed {
            Ok(()) => self.committed(next, bytes, new, answers),
            Err(e) => {
                eprintln!("otc-relay: a commit failed: {e}");
                let _ = self.conn.execute_batch("ROLLBACK");
                self.reload();
                let e = stored(sql_err("the disk refused the commit")(e));
                for (reply, _) in answers {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }

    /// A batch is committed: readers find its messages (`new`), before
    /// any sender hears back or any poll of their recipients is woken.
    fn committed(&mut self, next: u64, bytes: u64, new: Vec<(String, u64)>, answers: Answers) {
        let mut to: Vec<String> = new.iter().map(|(who, _)| who.clone()).collect();
        let mut m = write_lock(&self.mailboxes);
        for (who, r) in new {
            m.add(who, r);
        }
        drop(m);
        self.next.store(next, Ordering::SeqCst);
        self.bytes = bytes;
        self.copies.trim();
        for (reply, r) in answers {
            let _ = reply.send(r);
        }
        to.sort_unstable();
        to.dedup();
        (self.on_commit)(&to);
    }
}

fn read_lock<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write_lock<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

/// One line of an earlier version's `messages.log`.
#[derive(serde::Deserialize)]
#[serde(tag = "t")]
enum Record {
    #[serde(rename = "m")]
    Message {
        #[serde(rename = "ref")]
        msg_ref: u64,
        recipient_uid: String,
        sender_uid: String,
        contents: String,
        #[serde(default)]
        at: Option<u64>,
    },
    #[serde(rename = "s")]
    Skip {
        #[serde(rename = "ref")]
        msg_ref: u64,
    },
}

/// `--import-log`: moves an earlier version's `DIR/messages.log` into the
/// database (which must hold no messages yet), in one transaction, then
/// renames the log `messages.log.imported`. A torn last line (a crash
/// mid-write, never acknowledged) ends the log. Returns (messages
/// imported, next ref).
pub fn import_log(dir: &Path) -> Result<(usize, u64), RelayFailure> {
    let log = dir.join(LOG_NAME);
    let text = std::fs::read(&log)
        .map_err(|e| RelayFailure::Storage(format!("cannot read {}: {e}", log.display())))?;
    let mut msgs = Vec::new();
    let mut next = 1u64;
    let mut rest = &text[..];
    while let Some(i) = rest.iter().position(|&b| b == b'\n') {
        let Ok(rec) = serde_json::from_slice::<Record>(&rest[..i]) else {
            break;
        };
        rest = &rest[i + 1..];
        let r = match rec {
            Record::Message {
                msg_ref,
                recipient_uid,
                sender_uid,
                contents,
                at,
            } => {
                msgs.push((msg_ref, recipient_uid, sender_uid, contents, at));
                msg_ref
            }
            Record::Skip { msg_ref } => msg_ref,
        };
        next = next.max(r.saturating_add(1));
    }
    let path = dir.join(DB_NAME);
    let mut conn = connect(&path)?;
    conn.execute_batch(SCHEMA)
        .map_err(sql_err("cannot create the database's tables"))?;
    let tx = conn
        .transaction()
        .map_err(sql_err("cannot begin the import"))?;
    let have: i64 = tx
        .query_row("SELECT COUNT(*) FROM messages", [], |r| r.get(0))
        .map_err(sql_err("cannot count messages"))?;
    if have > 0 {
        return Err(RelayFailure::Storage(format!(
            "{} already holds {have} messages: the log can only be imported into an empty one",
            path.display()
        )));
    }
    let now = unix_now();
    let big = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    for (r, to, from, contents, at) in &msgs {
        let key = dedupe_key(from, to, contents);
        tx.execute(
            "INSERT INTO messages (ref, recipient, sender, contents, at, dedupe) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                big(*r),
                to,
                from,
                contents,
                big(at.unwrap_or(now)),
                &key[..]
            ],
        )
        .map_err(sql_err("cannot import a message"))?;
    }
    tx.execute(
        "UPDATE meta SET v = max(v, ?1) WHERE k = 'next_ref'",
        params![big(next)],
    )
    .map_err(sql_err("cannot import the next ref"))?;
    // Counted again from the messages at the next open.
    tx.execute("DELETE FROM meta WHERE k = 'stored_bytes'", [])
        .map_err(sql_err("cannot reset the bytes stored"))?;
    tx.commit().map_err(sql_err("cannot commit the import"))?;
    let done = dir.join(format!("{LOG_NAME}.imported"));
    std::fs::rename(&log, &done)
        .and_then(|()| std::fs::File::open(dir)?.sync_all())
        .map_err(|e| {
            RelayFailure::Storage(format!(
                "imported, but cannot rename {} to {}: {e}; rename it by hand",
                log.display(),
                done.display()
            ))
        })?;
    Ok((msgs.len(), next))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path, keep: Option<Duration>) -> Sqlite {
        Sqlite::open(dir, keep, true, Box::new(|_| {})).unwrap()
    }

    fn put(s: &Sqlite, to: &str, c: &str) -> oneshot::Receiver<Result<u64, Refusal>> {
        let (to, c) = (to.to_owned(), c.to_owned());
        s.write(Box::new(move |t| {
            t.put("a", &to, &c).map_err(|e| err(507, e.to_string()))
        }))
    }

    fn wait(rx: oneshot::Receiver<Result<u64, Refusal>>) -> Result<u64, Refusal> {
        rx.blocking_recv().expect("the writer answers")
    }

    fn msgs(s: &Sqlite, who: &str) -> Vec<(u64, String)> {
        s.fetch(who, 0, usize::MAX)
            .unwrap()
            .0
            .into_iter()
            .map(|m| (m.msg_ref, m.contents))
            .collect()
    }

    #[test]
    fn queued_sends_share_one_commit_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path(), None);
        // Hold the writer busy so that the next three queue up behind it.
        let (hold_tx, hold_rx) = std::sync::mpsc::channel::<()>();
        let first = s.write(Box::new(move |t| {
            let _ = hold_rx.recv_timeout(Duration::from_secs(10));
            t.put("a", "bob", "A").map_err(|e| err(507, e.to_string()))
        }));
        let rest: Vec<_> = ["B", "C", "D"].iter().map(|c| put(&s, "bob", c)).collect();
        hold_tx.send(()).unwrap();
        assert_eq!(wait(first), Ok(1));
        let refs: Vec<_> = rest.into_iter().map(|r| wait(r).unwrap()).collect();
        assert_eq!(refs, [2, 3, 4]);
        // The first may or may not have been batched with the others; the
        // three queued behind it shared a commit either way.
        assert!(s.commits() <= 2, "4 sends took {} commits", s.commits());
        assert_eq!(s.next_ref(), 5);
        drop(s);
        let s = open(dir.path(), None);
        assert_eq!(msgs(&s, "bob").len(), 4);
        assert_eq!(s.next_ref(), 5);
    }

    #[test]
    fn a_refused_write_undoes_only_itself() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path(), None);
        let bad = s.write(Box::new(|t| {
            t.put("a", "bob", "HALF")
                .map_err(|e| err(507, e.to_string()))?;
            Err(err(429, "refused after writing"))
        }));
        let good = put(&s, "bob", "OK");
        assert_eq!(wait(bad).unwrap_err().0, 429);
        assert_eq!(wait(good), Ok(1), "the refused write's ref is not used");
        assert_eq!(msgs(&s, "bob"), [(1, "OK".into())]);
    }

    /// The in-memory index: refs per recipient in order, a fetch's window
    /// from any start, and pruning's cut dropping every ref below it (and
    /// a mailbox left empty).
    #[test]
    fn the_mailboxes_index_refs_in_order_and_prune_below_the_cut() {
        let mut m = Mailboxes::default();
        for (who, r) in [("bob", 1), ("eve", 2), ("bob", 3), ("bob", 5), ("eve", 6)] {
            m.add(who.into(), r);
        }
        assert_eq!(m.len("bob"), 3);
        assert_eq!(m.len("nobody"), 0);
        assert_eq!(m.refs_from("bob", 0, 10), [1, 3, 5]);
        assert_eq!(m.refs_from("bob", 2, 10), [3, 5]);
        assert_eq!(m.refs_from("bob", 3, 1), [3]);
        assert_eq!(m.refs_from("bob", 6, 10), Vec::<u64>::new());
        assert_eq!(m.refs_from("nobody", 0, 10), Vec::<u64>::new());
        m.cut(3);
        assert_eq!(m.refs_from("bob", 0, 10), [3, 5]);
        assert_eq!(m.refs_from("eve", 0, 10), [6]);
        m.cut(6);
        assert!(!m.by.contains_key("bob"), "an emptied mailbox is forgotten");
        assert_eq!(m.len("eve"), 1);
    }

    /// A mailbox's length, as a send sees it, is its committed messages
    /// and those stored before it in its own batch; a refused send's
    /// messages do not count, whether or not it shared the batch.
    #[test]
    fn a_mailbox_counts_what_is_kept_and_stored_not_what_was_refused() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path(), None);
        wait(put(&s, "bob", "ONE")).unwrap();
        let two = put(&s, "bob", "TWO");
        let refused = s.write(Box::new(|t| {
            t.put("a", "bob", "HALF")
                .map_err(|e| err(507, e.to_string()))?;
            Err(err(429, "refused after writing"))
        }));
        let len = s.write(Box::new(|t| {
            let n = t.mailbox_len("bob").map_err(|e| err(507, e.to_string()))?;
            let eve = t.mailbox_len("eve").map_err(|e| err(507, e.to_string()))?;
            Ok((n * 10 + eve) as u64)
        }));
        assert_eq!(wait(two), Ok(2));
        assert_eq!(wait(refused).unwrap_err().0, 429);
        assert_eq!(wait(len), Ok(20), "bob has ONE and TWO, eve nothing");
    }

    #[test]
    fn pruning_needs_no_age_index_and_never_drops_a_young_message() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path(), Some(Duration::from_secs(100)));
        for c in ["OLD1", "YOUNG", "OLD2", "NEW"] {
            wait(put(&s, "bob", c)).unwrap();
        }
        drop(s);
        // An older relay's database had an index on `at`; and the clock
        // went back once: OLD2 came after YOUNG.
        let c = Connection::open(dir.path().join(DB_NAME)).unwrap();
        c.execute_batch(
            "CREATE INDEX IF NOT EXISTS messages_by_age ON messages (at);
             UPDATE messages SET at = 0 WHERE contents LIKE 'OLD%';",
        )
        .unwrap();
        drop(c);
        let s = open(dir.path(), Some(Duration::from_secs(100)));
        // OLD1 goes; OLD2 waits behind YOUNG (a later prune takes it).
        assert_eq!(
            msgs(&s, "bob"),
            [(2, "YOUNG".into()), (3, "OLD2".into()), (4, "NEW".into())]
        );
        drop(s);
        let c = Connection::open(dir.path().join(DB_NAME)).unwrap();
        let indexes: Vec<String> = c
            .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'messages' ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        // No index at all (the mailboxes are indexed in memory): a commit
        // writes the rows and the meta page, nothing else.
        assert_eq!(indexes, Vec::<String>::new());
    }

    #[test]
    fn old_messages_are_pruned_and_refs_never_reused() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path(), Some(Duration::from_secs(100)));
        for c in ["OLD1", "OLD2", "NEW"] {
            wait(put(&s, "bob", c)).unwrap();
        }
        let skipped = wait(s.write(Box::new(|t| t.skip().map_err(|e| err(507, e.to_string())))));
        assert_eq!(skipped, Ok(4));
        drop(s);
        let c = Connection::open(dir.path().join(DB_NAME)).unwrap();
        c.execute("UPDATE messages SET at = 0 WHERE contents LIKE 'OLD%'", [])
            .unwrap();
        drop(c);
        let s = open(dir.path(), Some(Duration::from_secs(100)));
        // A start_ref below the oldest kept starts at the oldest kept.
        assert_eq!(msgs(&s, "bob"), [(3, "NEW".into())]);
        assert_eq!(wait(put(&s, "bob", "NEXT")), Ok(5));
    }

    fn stored(s: &Sqlite) -> u64 {
        wait(s.write(Box::new(|t| Ok(t.stored_bytes())))).unwrap()
    }

    #[test]
    fn the_bytes_stored_are_counted_kept_across_a_reopen_and_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path(), Some(Duration::from_secs(100)));
        assert_eq!(stored(&s), 0);
        for c in ["OLD1", "OLD2", "NEWER"] {
            wait(put(&s, "bob", c)).unwrap();
        }
        let each = |c: &str| crate::message_bytes("a", "bob", c);
        assert_eq!(stored(&s), each("OLD1") + each("OLD2") + each("NEWER"));
        // A refused write gives its bytes back.
        let bad = s.write(Box::new(|t| {
            t.put("a", "bob", "HALF")
                .map_err(|e| err(507, e.to_string()))?;
            Err(err(429, "refused after writing"))
        }));
        assert_eq!(wait(bad).unwrap_err().0, 429);
        assert_eq!(stored(&s), each("OLD1") + each("OLD2") + each("NEWER"));
        drop(s);
        let c = Connection::open(dir.path().join(DB_NAME)).unwrap();
        c.execute("UPDATE messages SET at = 0 WHERE contents LIKE 'OLD%'", [])
            .unwrap();
        drop(c);
        let s = open(dir.path(), Some(Duration::from_secs(100)));
        assert_eq!(stored(&s), each("NEWER"), "pruning frees its bytes");
        drop(s);
        // A database from before the count: counted once at open.
        let c = Connection::open(dir.path().join(DB_NAME)).unwrap();
        c.execute("DELETE FROM meta WHERE k = 'stored_bytes'", [])
            .unwrap();
        drop(c);
        let s = open(dir.path(), None);
        assert_eq!(stored(&s), each("NEWER"));
    }

    #[test]
    fn the_resend_keys_kept_in_memory_are_bounded_to_the_latest() {
        let mut c = Copies::default();
        let key = |i: usize| {
            let mut k = [0u8; 32];
            k[..8].copy_from_slice(&(i as u64).to_le_bytes());
            k
        };
        for i in 0..COPIES_KEPT + 1000 {
            c.insert(key(i), i as u64);
            if i % 1024 == 0 {
                c.trim();
            }
        }
        c.trim();
        assert_eq!(c.len(), COPIES_KEPT);
        assert_eq!(c.get(&key(999)), None, "the oldest are forgotten");
        assert_eq!(c.get(&key(1000)), Some(1000));
        assert_eq!(
            c.get(&key(COPIES_KEPT + 999)),
            Some((COPIES_KEPT + 999) as u64)
        );
        // A key stored again is kept by its latest copy.
        c.insert(key(1000), 7);
        for i in 0..COPIES_KEPT - 1 {
            c.insert(key(10_000_000 + i), 0);
        }
        c.trim();
        assert_eq!(c.get(&key(1000)), Some(7));
        assert_eq!(c.len(), COPIES_KEPT);
    }

    #[test]
    fn a_fetch_reuses_its_query_plan() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path(), None);
        for i in 0..3 {
            wait(put(&s, "bob", &format!("m{i}"))).unwrap();
        }
        for (start, max) in [(0, 10), (1, 1), (2, 5), (0, 2)] {
            s.fetch("bob", start, max).unwrap();
        }
        let conn = crate::lock(&s.readers).pop().expect("a pooled reader");
        let st = conn.prepare_cached(FETCH_SQL).unwrap();
        assert_eq!(
            st.get_status(rusqlite::StatementStatus::RePrepare),
            0,
            "a fetch prepared its query again"
        );
    }

    #[test]
    fn fetch_says_whether_it_was_all() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path(), None);
        for c in ["A", "B", "C"] {
            wait(put(&s, "bob", c)).unwrap();
        }
        let (m, complete) = s.fetch("bob", 2, 1).unwrap();
        assert_eq!((m.len(), m[0].msg_ref, complete), (1, 2, false));
        let (m, complete) = s.fetch("bob", 2, 2).unwrap();
        assert_eq!((m.len(), complete), (2, true));
        assert_eq!(s.fetch("nobody", 0, 5).unwrap(), (Vec::new(), true));
    }
}
