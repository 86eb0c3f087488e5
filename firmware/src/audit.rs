//! The device-local audit log: append-only, hash-chained, never sent over RPC.
//!
//! `DIR/audit.log` holds one JSON object a line:
//! `{"seq":N,"time":UNIX_SECONDS,"event":{..},"prev":HEX,"hash":HEX}` where
//! `hash = SHA-256(prev_hash_bytes || seq_le || time_le || event_json)` and
//! the first entry's `prev` is 32 zero bytes. Editing any entry breaks the
//! chain from there on. Cutting entries off the end leaves a valid chain, so
//! a recent `(seq, hash)` is also kept in `DIR/audit.head`; a log shorter
//! than its head, or a head that disagrees with the entry it names, is
//! truncation or tampering. Both findings are
//! reported by [`AuditLog::open`] as [`Integrity`] problems, shown on the
//! device's alerts screen, and the log is then continued from what is there
//! (with a `TamperDetected` entry), never silently repaired.
//!
//! The head file has two fixed-width slots, `SEQ HASH CHECK\n` (CHECK: the
//! start of a SHA-256 over the rest, so a torn slot is told from a whole
//! one). Each new head goes to the slot that does not hold the standing
//! one, so a power cut in that write leaves the other standing; the newest
//! whole slot is the head. A new log's head is written whole (aside, then
//! renamed into place) naming no entry yet. A head file of the first
//! format (one line, `SEQ HASH`, rewritten in place) is still read.
//!
//! **Power cuts are not tampering.** A cut may leave the end of the log
//! torn: half a line, a line without its newline, a hole of zeros where a
//! write was lost before one that was kept. All of that lies past the
//! entry the head names (the head moves only after the log is synced
//! through its entry), so when everything up to and including that entry
//! checks, the damage after it is a torn tail ([`Scan::torn_tail`]): the
//! open cuts it off, durably, and reports nothing; only entries that were
//! never durable are lost. Damage at or before the head's entry is
//! reported as before. The quick open checks the entries after the head's
//! one before it defers the rest ([`tail_chains`]).
//! `tests/powerloss_audit.rs` cuts the power under the log and its head
//! in the simulator, plain and sealed, and checks exactly this.
//!
//! The device opens the log with [`AuditLog::open_quick`], which reads only
//! the head and the newest entry, so start-up time is flat in the log's
//! length; the chain is then checked by [`Deferred::check`] on a thread.
//! A check ([`scan`]) reads the log once, line by line (a line longer than
//! 64 KiB is unreadable, never held whole), and keeps only the running
//! hash, the newest entry and the alerts ([`Event::is_alert`]) that no
//! [`Event::Ack`] followed (the newest [`ALERTS_KEPT`]): memory is flat in
//! the log's length. Those alerts are shown again after a
//! restart until the owner acknowledges them on the alerts screen (the
//! Acknowledge button), which appends the `ack` (for the oldest N). A finding of damage is appended once as `tamper_detected` and is
//! such an alert, so a cut log stays on the screen even though the log
//! checks clean again once it is continued.
//!
//! **Encrypted data directory (issue 18).** When the directory has a key
//! file, the log's contents are sealed under a key derived from the
//! master key ([`crate::pad::vault::MasterKey::record_cipher`], HKDF label
//! `otc-device audit v1`): each line is the lowercase hex of
//! `nonce(24) || XChaCha20-Poly1305(entry JSON)` (random nonce, associated
//! data `otc-device audit.log line v1`), and the head is the hex of the
//! plain head slot sealed the same way (associated data `otc-device
//! audit.head slot v2`; the first format's `otc-device audit.head v1` is
//! still read), 271 bytes with its newline: fixed width, so the slots are
//! rewritten in place. The chain is over the plaintext entries,
//! exactly as in a plain log. A line that does not open is
//! [`Integrity::Unreadable`], a head that does not open a
//! [`Integrity::HeadMismatch`]: reported, never a crash, never dropped.
//! Plain directories keep the plain format byte for byte. All of the
//! log's files go through the storage seam ([`Files`], `pad::vfs`).
//!
//! What this protects against, honestly: accidental corruption, and an
//! attacker with brief write access who does not also rewrite the head and
//! every later hash. Someone who owns the SD card can rewrite the whole
//! chain; the log is tamper-evident for the owner, not proof for others.
//!
//! Durability is grouped, like a database's group commit: every entry is
//! written to the file when it is appended (a request may hold its first
//! entry in memory until its next one, [`AuditLog::hold`], so that a seal
//! writes its two, approved and sealed, in one write: issue 16, where they
//! were two of the request's eight system calls; the endpoint writes any
//! held line out before the reply). Routine entries (approve, reject,
//! seal, open, ...) are made durable by [`AuditLog::flush`], which the
//! running device calls every [`FLUSH_INTERVAL`] and at stop; severe
//! entries (tamper, integrity failure, replay, burn, lockout, limits, pad
//! creation/import/removal, start) are flushed before `append` returns. A
//! flush `fdatasync`s the log, then writes the head into its other slot
//! and syncs it, so the head never names an entry that is not
//! durable. The running device's routine flush is begun under the log's
//! lock and synced outside it ([`AuditLog::begin_flush`], [`Flush`]), so
//! requests never wait on those syncs to append; the head never moves
//! back to an older entry. A power cut may lose routine entries of the last interval;
//! it can never make the pad store reuse a byte (the store's own send offset is
//! durable before any package leaves), and it never loses a severe entry.
//! The head may lag the log by that interval, so cutting off entries newer
//! than the head is not detected; anything at or before it is.

use crate::pad::durable::replace_durably;
use crate::pad::vault::{MasterKey, RecordCipher};
use crate::pad::vfs::{self, OpenHow, RealFs, VFile, Vfs};
use crate::platform::system_unix_now;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Routine lines waiting in memory past this many bytes are written out
/// at the next append, flush or not (a bound on the memory they hold).
pub const WRITE_BEHIND: usize = 64 * 1024;

/// How often the running device makes routine entries durable.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// What happened. Names and numbers only: never pad bytes or plaintext.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// The owner approved a prompt.
    Approved { action: String, contact: String },
    /// The owner rejected a prompt.
    Rejected { action: String, contact: String },
    /// A prompt timed out.
    TimedOut { action: String, contact: String },
    /// The client hung up while its prompt was on screen.
    Cancelled { action: String, contact: String },
    /// A message was sealed.
    Sealed {
        contact: String,
        index: u64,
        bytes: u64,
        cost: u64,
    },
    /// A package was opened.
    Opened {
        contact: String,
        index: u64,
        bytes: u64,
        cost: u64,
    },
    /// A package failed verification.
    IntegrityFailure { contact: String, index: u64 },
    /// A package's range overlaps one already opened.
    Replay { contact: String, index: u64 },
    /// A gap since the last opened message: messages were skipped.
    /// `messages`: how many (v3: the spec's slot count; v1: an estimate
    /// from `bytes`, the skipped pad bytes, 0 for v3). Entries written
    /// before `messages` existed read it as 0, and a 0 is not written, so
    /// they hash (and chain) exactly as they did.
    Skipped {
        contact: String,
        index: u64,
        bytes: u64,
        #[serde(default, skip_serializing_if = "is_zero")]
        messages: u64,
    },
    /// A range was burned after repeated failed verifications. Written
    /// only by versions before the store stopped burning (layout 2, commit
    /// "no burning on failed verification"); read, never written: logs of
    /// those versions still parse, verify and show it. A range such a
    /// version burned is refused before any prompt as `bad_package`
    /// (`firmware/tests/legacy_burned.rs`).
    Burned {
        contact: String,
        index: u64,
        bytes: u64,
    },
    /// A contact was locked out after repeated failed opens.
    LockedOut { contact: String, seconds: u64 },
    /// A seal or open (`action`) the owner approved did not complete:
    /// nothing was handed out. `reason` says why ("storage error: ..." for
    /// a disk that is full or failing).
    Failed {
        action: String,
        contact: String,
        reason: String,
    },
    /// A request hit a limit (size, body, connections).
    LimitHit { limit: String, detail: String },
    /// A pad was created.
    PadCreated {
        contact: String,
        pad_id: String,
        bytes: u64,
    },
    /// A pad was imported.
    PadImported {
        contact: String,
        pad_id: String,
        bytes: u64,
    },
    /// A pad was removed (and erased).
    PadRemoved { contact: String, pad_id: String },
    /// The audit log itself was found damaged at start.
    TamperDetected { detail: String },
    /// The device started.
    Started { version: String },
    /// The device stopped cleanly: the store was closed (its unused
    /// reservation given back) and this is the last entry of the run.
    Stop,
    /// The owner tapped Acknowledge on the alerts screen: the `alerts`
    /// oldest alerts not acknowledged before (those the screen showed; it
    /// lists them first, oldest first) are acknowledged and not shown
    /// again after a restart. (Before issue 15, opening the screen wrote
    /// it for every alert; such an entry acknowledges as many.)
    Ack { alerts: u64 },
    /// `count` more events of `what` for `contact` were refused by the
    /// rate limit and are summed up here instead of one entry each.
    Repeated {
        what: String,
        contact: String,
        count: u64,
    },
    /// The device was locked again while running (issue 18): `why` is
    /// `lock now` (the owner's tap) or `idle` (the idle lock).
    Locked { why: String },
    /// The owner unlocked the device on its screen after it was locked
    /// again. `failures`: wrong passphrases typed before the right one
    /// (an alert when not 0).
    Unlocked {
        #[serde(default, skip_serializing_if = "is_zero")]
        failures: u64,
    },
    /// The owner changed a setting on the device's screen (issue 18):
    /// `setting` is its name, `value` the new value in words (never a
    /// passphrase: a new passphrase says only `changed`).
    SettingChanged { setting: String, value: String },
}

impl Event {
    /// Severe events are made durable before `append` returns.
    pub fn is_severe(&self) -> bool {
        !matches!(
            self,
            Event::Approved { .. }
                | Event::Rejected { .. }
                | Event::TimedOut { .. }
                | Event::Cancelled { .. }
                | Event::Sealed { .. }
                | Event::Opened { .. }
                | Event::Stop
                | Event::Locked { .. }
                | Event::Unlocked { failures: 0 }
        )
    }

    /// Alerts are what the owner must see and acknowledge: they are red on
    /// the alerts screen, counted on the home screen, and reloaded at start
    /// until an [`Event::Ack`] follows them.
    pub fn is_alert(&self) -> bool {
        matches!(
            self,
            Event::IntegrityFailure { .. }
                | Event::Replay { .. }
                | Event::Skipped { .. }
                | Event::Burned { .. }
                | Event::LockedOut { .. }
                | Event::Failed { .. }
                | Event::LimitHit { .. }
                | Event::TamperDetected { .. }
                | Event::Repeated { .. }
        ) || matches!(self, Event::Unlocked { failures } if *failures > 0)
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Alerts kept for the alerts screen; older unacknowledged ones are still
/// in the log, only not shown.
pub const ALERTS_KEPT: usize = 100;

/// Longest line read from the log; a longer one is unreadable (and is
/// never held in memory whole).
const MAX_LINE: u64 = 64 * 1024;

/// One line of the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub seq: u64,
    pub time: u64,
    pub event: Event,
    pub prev: String,
    pub hash: String,
}

/// A problem found when checking the chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Integrity {
    /// Line `line` (1-based) is not a valid entry.
    Unreadable { line: u64 },
    /// Entry `seq` does not chain to the one before it, or its hash is wrong.
    Broken { seq: u64 },
    /// The log ends at `found` entries but the head says `expected`
    /// (at least).
    Truncated { expected: u64, found: u64 },
    /// The head file is missing, unreadable or names another hash.
    HeadMismatch,
}

impl std::fmt::Display for Integrity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Integrity::Unreadable { line } => write!(f, "audit log line {line} is unreadable"),
            Integrity::Broken { seq } => {
                write!(f, "audit log entry {seq} was altered (hash chain broken)")
            }
            Integrity::Truncated { expected, found } => write!(
                f,
                "audit log was cut short: {found} entries, {expected} expected"
            ),
            Integrity::HeadMismatch => write!(f, "audit log head does not match the log"),
        }
    }
}

/// Errors of the audit log.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> AuditError + '_ {
    move |source| AuditError::Io {
        path: path.to_path_buf(),
        source,
    }
}

const GENESIS: [u8; 32] = [0; 32];

/// Associated data of a sealed log line.
const LINE_PURPOSE: &str = "otc-device audit.log line v1";
/// Associated data of a sealed head of the first format (one line,
/// rewritten in place; read, never written).
const HEAD_PURPOSE: &str = "otc-device audit.head v1";
/// Associated data of a sealed head slot.
const HEAD_SLOT_PURPOSE: &str = "otc-device audit.head slot v2";
/// The sequence field of the slot a new log starts with (no entry yet).
const NO_ENTRY: &str = "--------------------";

/// The check at the end of a head slot: the first 4 bytes of
/// SHA-256(`"otc-device audit.head slot v2 " || body`), in hex.
fn slot_check(body: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"otc-device audit.head slot v2 ");
    h.update(body.as_bytes());
    hex::encode(&h.finalize()[..4])
}

/// What the head file says.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Head {
    /// No head file, or one that was created and never written.
    Absent,
    /// The head of a new log: no entry is vouched for yet.
    Nothing,
    /// Entry `seq` (counted from 0) has this hash (hex).
    Names(u64, String),
    /// Bytes that are no head: tampering, or damage.
    Unreadable,
}
/// Longest head file read (two sealed slots are 542 bytes).
const MAX_HEAD: u64 = 4096;

/// Where the audit log lives and how its lines are written: the storage
/// seam ([`crate::pad::vfs`], so the power-loss simulator can run under
/// it), the data directory, and, for an encrypted data directory, the
/// key of its lines (see the module doc: plain directories keep the
/// plain format byte for byte).
#[derive(Clone, Debug)]
pub struct Files {
    vfs: Arc<dyn Vfs>,
    dir: PathBuf,
    key: Option<Arc<RecordCipher>>,
}

impl Files {
    /// The plain log of `dir` on the real file system.
    pub fn plain(dir: &Path) -> Files {
        Files::new(Arc::new(RealFs), dir, None)
    }

    /// The log of `dir` through `vfs`; sealed under a key derived from
    /// `key` when the data directory is encrypted.
    pub fn new(vfs: Arc<dyn Vfs>, dir: &Path, key: Option<&MasterKey>) -> Files {
        Files {
            vfs,
            dir: dir.to_path_buf(),
            key: key.map(|k| Arc::new(k.record_cipher())),
        }
    }

    /// The log of `dir` on the real file system, sealed if `key` is given.
    pub fn real(dir: &Path, key: Option<&MasterKey>) -> Files {
        Files::new(Arc::new(RealFs), dir, key)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("audit.log")
    }

    fn head_path(&self) -> PathBuf {
        self.dir.join("audit.head")
    }

    /// One line of the log, with its newline, added to the end of `out`:
    /// the entry's JSON, or (sealed) the hex of
    /// `nonce || XChaCha20-Poly1305(JSON)`. `event_json` is the JSON of
    /// the entry's event ([`entry_json`]).
    fn encode_line_into(&self, entry: &Entry, event_json: &[u8], out: &mut Vec<u8>) {
        match &self.key {
            None => entry_json(entry, event_json, out),
            Some(k) => {
                let mut json = zeroize::Zeroizing::new(Vec::new());
                entry_json(entry, event_json, &mut json);
                out.extend_from_slice(to_hex(k.seal(LINE_PURPOSE, &json)).as_bytes());
            }
        }
        out.push(b'\n');
    }

    /// The entry a line (without its newline) holds; `None` if it is not
    /// one (garbage, or a sealed line that does not open).
    fn decode_line(&self, line: &[u8]) -> Option<Entry> {
        match &self.key {
            None => serde_json::from_slice(line).ok(),
            Some(k) => {
                let sealed = hex::decode(line).ok()?;
                serde_json::from_slice(&k.open(LINE_PURPOSE, &sealed)?).ok()
            }
        }
    }

    /// One slot of the head naming entry `seq` of hash `hash` (`None`:
    /// the slot a new log starts with, naming no entry yet): the text
    /// `SEQ(20 digits) HASH(64 hex) CHECK(8 hex)\n`, where CHECK is the
    /// start of a SHA-256 over the rest, so that a slot a power cut tore
    /// is told from a whole one; or (sealed) the hex of that text sealed,
    /// and a newline. Fixed width ([`Files::slot_width`]).
    fn encode_head(&self, named: Option<(u64, &[u8; 32])>) -> Vec<u8> {
        let body = match named {
            Some((seq, hash)) => format!("{seq:020} {}", to_hex(hash)),
            None => format!("{NO_ENTRY} {}", to_hex(GENESIS)),
        };
        let plain = format!("{body} {}\n", slot_check(&body));
        match &self.key {
            None => plain.into_bytes(),
            Some(k) => {
                let mut out = to_hex(k.seal(HEAD_SLOT_PURPOSE, plain.as_bytes())).into_bytes();
                out.push(b'\n');
                out
            }
        }
    }

    /// Bytes of one head slot: 95 plain, 271 sealed.
    fn slot_width(&self) -> usize {
        const PLAIN: usize = 20 + 1 + 64 + 1 + 8 + 1;
        match &self.key {
            None => PLAIN,
            Some(_) => 2 * (24 + PLAIN + 16) + 1,
        }
    }

    /// What one slot's bytes say, if they are a whole slot.
    fn decode_slot(&self, raw: &[u8]) -> Option<Head> {
        let opened;
        let plain: &[u8] = match &self.key {
            None => raw,
            Some(k) => {
                let sealed = hex::decode(raw.strip_suffix(b"\n")?).ok()?;
                opened = k.open(HEAD_SLOT_PURPOSE, &sealed)?;
                &opened
            }
        };
        let text = std::str::from_utf8(plain.strip_suffix(b"\n")?).ok()?;
        let (body, check) = text.rsplit_once(' ')?;
        if check != slot_check(body) {
            return None;
        }
        let (seq, hash) = body.split_once(' ')?;
        let hash = decode32(hash)?;
        if seq == NO_ENTRY {
            return Some(Head::Nothing);
        }
        Some(Head::Names(seq.parse().ok()?, to_hex(hash)))
    }

    /// The head file: the newest of its whole slots, and the slot the
    /// next head is written to (the other one, so a write the power cuts
    /// never tears the head that stands). A head file of the first
    /// format (one line, `SEQ HASH`, written in place by earlier
    /// versions) is read when no slot is whole; its bytes are all before
    /// the second slot, which is written first. A file that was created
    /// but never written counts as absent; one with bytes but no whole
    /// slot names nothing that checks ([`Head::Unreadable`]).
    fn read_head(&self) -> (Head, usize) {
        let raw = match vfs::read_all(self.vfs.as_ref(), &self.head_path(), MAX_HEAD) {
            Ok(raw) if !raw.iter().all(|b| b.is_ascii_whitespace()) => raw,
            _ => return (Head::Absent, 0),
        };
        let w = self.slot_width();
        let newest = (0..2)
            .filter_map(|i| Some((self.decode_slot(raw.get(i * w..(i + 1) * w)?)?, i)))
            .max_by_key(|(h, _)| match h {
                Head::Names(seq, _) => Some(*seq),
                _ => None,
            });
        if let Some((head, slot)) = newest {
            return (head, 1 - slot);
        }
        (self.read_first_format(&raw), 1)
    }

    /// A head of the first format: `SEQ HASH` on one line, or (sealed)
    /// its hex sealed under the first head purpose.
    fn read_first_format(&self, raw: &[u8]) -> Head {
        let text = String::from_utf8_lossy(raw).trim().to_string();
        let plain = match &self.key {
            None => Some(text),
            Some(k) => hex::decode(&text)
                .ok()
                .and_then(|b| k.open(HEAD_PURPOSE, &b))
                .map(|p| String::from_utf8_lossy(&p).into_owned()),
        };
        match plain.as_deref().and_then(parse_head) {
            Some((seq, hash)) => Head::Names(seq, hash),
            None => Head::Unreadable,
        }
    }

    /// Open a file of the log for reading; `None` if it does not exist.
    fn open_read(&self, path: &Path) -> std::io::Result<Option<Box<dyn VFile>>> {
        match self.vfs.open(path, OpenHow::Read) {
            Ok(f) => Ok(Some(f)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Open a file of the log for writing, making it (and syncing the
    /// directory, so the new name is durable) if it does not exist.
    fn open_write(&self, path: &Path) -> std::io::Result<Box<dyn VFile>> {
        match self.vfs.open(path, OpenHow::ReadWrite) {
            Ok(f) => Ok(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let f = self.vfs.open(path, OpenHow::CreateNew)?;
                self.vfs.sync_dir(&self.dir)?;
                Ok(f)
            }
            Err(e) => Err(e),
        }
    }
}

/// A file of the seam read from the start, up to `end`, as a [`Read`].
struct VRead {
    file: Box<dyn VFile>,
    pos: u64,
    end: u64,
}

impl Read for VRead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (self.end.saturating_sub(self.pos)).min(buf.len() as u64) as usize;
        if n == 0 {
            return Ok(0);
        }
        self.file.read_exact_at(&mut buf[..n], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

fn chain_hash(prev: &[u8; 32], seq: u64, time: u64, event: &Event) -> [u8; 32] {
    // serde_json of our own enum cannot fail; an empty body would still chain.
    chain_hash_of(
        prev,
        seq,
        time,
        &serde_json::to_vec(event).unwrap_or_default(),
    )
}

/// [`chain_hash`] of an event already serialized (`event_json`).
fn chain_hash_of(prev: &[u8; 32], seq: u64, time: u64, event_json: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(seq.to_le_bytes());
    h.update(time.to_le_bytes());
    h.update(event_json);
    h.finalize().into()
}

/// Lowercase hex, as `hex::encode` writes it, without building it a
/// character at a time (a seal's entries hex two hashes each).
fn to_hex(bytes: impl AsRef<[u8]>) -> String {
    let bytes = bytes.as_ref();
    let mut out = vec![0u8; bytes.len() * 2];
    // `out` is exactly twice as long: this cannot fail.
    let _ = hex::encode_to_slice(bytes, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// The JSON of `entry` (what `serde_json::to_vec(entry)` writes, byte for
/// byte: `an_entry_is_written_as_serde_writes_it`) from its event's JSON,
/// which the chain hash has serialized already: an entry is serialized
/// once, not twice. The other fields are numbers and hex, which need no
/// escaping.
fn entry_json(entry: &Entry, event_json: &[u8], out: &mut Vec<u8>) {
    use std::io::Write as _;
    // Writing to a Vec cannot fail.
    let _ = write!(
        out,
        "{{\"seq\":{},\"time\":{},\"event\":",
        entry.seq, entry.time
    );
    out.extend_from_slice(event_json);
    out.extend_from_slice(b",\"prev\":\"");
    out.extend_from_slice(entry.prev.as_bytes());
    out.extend_from_slice(b"\",\"hash\":\"");
    out.extend_from_slice(entry.hash.as_bytes());
    out.extend_from_slice(b"\"}");
}

/// Result of reading and checking a log, with every entry (for tests and
/// diagnostics; the device itself uses the streaming [`scan`]).
#[derive(Debug, Default)]
pub struct Checked {
    pub entries: Vec<Entry>,
    pub problems: Vec<Integrity>,
}

/// What one streaming pass over the log keeps: a fixed amount, whatever
/// the log's length (at most [`ALERTS_KEPT`] alerts and a few problems).
#[derive(Debug, Default)]
pub struct Scan {
    /// Entries read (lines that parse as entries).
    pub count: u64,
    pub problems: Vec<Integrity>,
    /// The newest entry.
    pub last: Option<Entry>,
    /// Alerts ([`Event::is_alert`]) after the last [`Event::Ack`], oldest
    /// first, at most [`ALERTS_KEPT`] (the newest ones).
    pub unacked: VecDeque<Entry>,
    /// The detail of the newest `TamperDetected` entry.
    pub last_tamper: Option<String>,
    /// Where the damage begins when all of it is past the entry the head
    /// names, and the head and everything up to it check: what a power
    /// cut leaves of writes never synced (a torn line, a hole, lines
    /// after one). The head is only moved past an entry once the log is
    /// synced through it, so nothing there was ever durable, and
    /// [`AuditLog::open_in`] cuts it off instead of reporting it.
    pub torn_tail: Option<u64>,
}

/// Problems recorded per pass; past this a damaged log is damaged enough.
const PROBLEMS_KEPT: usize = 16;

/// An `ack` of `n` alerts: the `n` oldest unacknowledged ones.
fn ack_oldest(unacked: &mut VecDeque<Entry>, n: u64) {
    let n = usize::try_from(n).unwrap_or(usize::MAX).min(unacked.len());
    unacked.drain(..n);
}

impl Scan {
    fn problem(&mut self, p: Integrity) {
        if self.problems.len() < PROBLEMS_KEPT {
            self.problems.push(p);
        }
    }

    /// A problem with the line that starts at byte `at`; `vouched`: every
    /// line before it checks, up to and past the entry the head names.
    /// The first such problem begins the [`Scan::torn_tail`].
    fn found_at(&mut self, p: Integrity, at: u64, vouched: bool) {
        if self.problems.is_empty() && vouched {
            self.torn_tail = Some(at);
        }
        self.problem(p);
    }

    fn note(&mut self, e: &Entry) {
        match &e.event {
            Event::Ack { alerts } => ack_oldest(&mut self.unacked, *alerts),
            Event::TamperDetected { detail } => self.last_tamper = Some(detail.clone()),
            _ => {}
        }
        if e.event.is_alert() {
            self.unacked.push_back(e.clone());
            if self.unacked.len() > ALERTS_KEPT {
                self.unacked.pop_front();
            }
        }
    }
}

/// Read the next line of at most [`MAX_LINE`] bytes into `buf` (without
/// its newline). `Ok(None)` at the end; `Ok(Some(false))` for a line that
/// is not a whole line of the log: too long (its rest is skipped, never
/// held in memory), or the last one without its newline (every entry is
/// written with one: a write a power cut tore, even if what is left
/// happens to parse).
fn next_line(r: &mut impl BufRead, buf: &mut Vec<u8>) -> std::io::Result<Option<bool>> {
    buf.clear();
    let n = r.by_ref().take(MAX_LINE + 1).read_until(b'\n', buf)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        return Ok(Some(true));
    }
    if (buf.len() as u64) <= MAX_LINE {
        return Ok(Some(false)); // the last line, without a newline
    }
    loop {
        let (done, used) = {
            let b = r.fill_buf()?;
            match b.iter().position(|c| *c == b'\n') {
                Some(i) => (true, i + 1),
                None => (b.is_empty(), b.len()),
            }
        };
        r.consume(used);
        if done {
            return Ok(Some(false));
        }
    }
}

/// Check the log's chain and head in one pass, line by line, handing each
/// entry to `each`. Memory stays flat in the log's length: only the running
/// hash, the newest entry and the unacknowledged alerts are kept. Never
/// fails on bad content (that is a finding); only on I/O errors.
pub fn scan_with(dir: &Path, each: impl FnMut(&Entry)) -> Result<Scan, AuditError> {
    scan_in(&Files::plain(dir), each)
}

/// [`scan_with`] of the log `files` name (a sealed one, or through
/// another storage seam).
pub fn scan_in(files: &Files, each: impl FnMut(&Entry)) -> Result<Scan, AuditError> {
    scan_part(files, files.read_head().0, u64::MAX, &|| true, each)
}

/// [`scan_with`] over the first `limit` bytes of the log, against `head`
/// as read earlier; stops early (with what it has) when `keep_going` says
/// no.
fn scan_part(
    files: &Files,
    head: Head,
    limit: u64,
    keep_going: &dyn Fn() -> bool,
    mut each: impl FnMut(&Entry),
) -> Result<Scan, AuditError> {
    let log_path = files.log_path();
    let mut out = Scan::default();
    // The hash of the entry the head names (by position), once read.
    let mut at_head: Option<String> = None;
    // Whether every line so far is a whole entry in the chain, up to and
    // including the one the head names (a new log's head names none).
    let mut vouched = head == Head::Nothing;
    let mut prev = GENESIS;
    let mut chain_ok = true;
    match files.open_read(&log_path) {
        Ok(None) => {}
        Ok(Some(file)) => {
            let end = file.size().map_err(io(&log_path))?.min(limit);
            let mut reader = BufReader::new(VRead { file, pos: 0, end });
            let mut buf = Vec::new();
            let mut line_no = 0u64;
            loop {
                let starts_at = reader.get_ref().pos - reader.buffer().len() as u64;
                let Some(whole) = next_line(&mut reader, &mut buf).map_err(io(&log_path))? else {
                    break;
                };
                if !keep_going() {
                    return Ok(out);
                }
                line_no += 1;
                let entry: Entry = match whole.then(|| files.decode_line(&buf)).flatten() {
                    Some(e) => e,
                    None => {
                        out.found_at(Integrity::Unreadable { line: line_no }, starts_at, vouched);
                        chain_ok = false;
                        continue;
                    }
                };
                let expect = chain_hash(&prev, entry.seq, entry.time, &entry.event);
                if chain_ok
                    && (entry.seq != out.count
                        || entry.prev != to_hex(prev)
                        || entry.hash != to_hex(expect))
                {
                    out.found_at(Integrity::Broken { seq: entry.seq }, starts_at, vouched);
                    chain_ok = false;
                }
                prev = decode32(&entry.hash).unwrap_or(GENESIS);
                if let Head::Names(s, hash) = &head
                    && *s == out.count
                {
                    at_head = Some(entry.hash.clone());
                    vouched = chain_ok && entry.hash == *hash;
                }
                out.count += 1;
                out.note(&entry);
                each(&entry);
                out.last = Some(entry);
            }
        }
        Err(e) => return Err(io(&log_path)(e)),
    }
    let last_seq = out.last.as_ref().map(|e| e.seq);
    let before = out.problems.len();
    match (&head, last_seq) {
        (Head::Absent, None) | (Head::Nothing, _) => {}
        (Head::Names(seq, hash), Some(last_seq)) => {
            if *seq > last_seq {
                out.problem(Integrity::Truncated {
                    expected: seq + 1,
                    found: out.count,
                });
            } else if at_head.is_none_or(|h| h != *hash) {
                // The head may lag the log (group commit), but the entry it
                // names must be there, unchanged.
                out.problem(Integrity::HeadMismatch);
            }
        }
        (Head::Names(seq, _), None) => out.problem(Integrity::Truncated {
            expected: seq + 1,
            found: 0,
        }),
        _ => out.problem(Integrity::HeadMismatch),
    }
    if out.problems.len() > before {
        out.torn_tail = None;
    }
    Ok(out)
}

/// [`scan_with`] keeping nothing but the [`Scan`].
pub fn scan(dir: &Path) -> Result<Scan, AuditError> {
    scan_with(dir, |_| {})
}

/// Read `log` and check its chain against `head`, keeping every entry.
pub fn check(dir: &Path) -> Result<Checked, AuditError> {
    check_in(&Files::plain(dir))
}

/// [`check`] of the log `files` name (a sealed one: give the key).
pub fn check_in(files: &Files) -> Result<Checked, AuditError> {
    let mut entries = Vec::new();
    let scanned = scan_in(files, |e| entries.push(e.clone()))?;
    Ok(Checked {
        entries,
        problems: scanned.problems,
    })
}

fn parse_head(s: &str) -> Option<(u64, String)> {
    let (seq, hash) = s.trim().split_once(' ')?;
    Some((seq.parse().ok()?, hash.to_string()))
}

fn decode32(s: &str) -> Option<[u8; 32]> {
    hex::decode(s).ok()?.try_into().ok()
}

/// What [`AuditLog::open_quick`] left for [`Deferred::check`]: the log as
/// it was when opened (its first `len` bytes, and the head read then).
#[derive(Debug)]
pub struct Deferred {
    files: Files,
    head: Head,
    len: u64,
}

impl Deferred {
    /// Check the chain up to where the log was when it was opened (the
    /// device goes on appending meanwhile). Stops early, with no finding
    /// worth reporting, when `keep_going` says no (the device is stopping).
    pub fn check(self, keep_going: &dyn Fn() -> bool) -> Result<Scan, AuditError> {
        scan_part(&self.files, self.head, self.len, keep_going, |_| {})
    }
}

/// How [`AuditLog::open_quick`] checked the log.
#[derive(Debug)]
pub enum Opened {
    /// Checked in full already (a small, empty or damaged-looking log):
    /// these are the problems.
    Checked(Vec<Integrity>),
    /// Only the newest entry was read; the chain is checked later.
    Deferred(Deferred),
}

/// Most bytes read back from the end of the log by a quick open, to find
/// the entry the head names.
const TAIL_WINDOW: u64 = 1 << 20;

/// Whether the log's first `len` bytes end in whole entries that chain,
/// from the entry `head` names (or, for a new log's head, from the start)
/// to the last: then nothing a power cut tore is there, and the quick
/// open may check the rest later. Reads at most [`TAIL_WINDOW`] bytes
/// back; `false` sends the open to the full check, which cuts a torn tail.
fn tail_chains(files: &Files, head: &Head, len: u64) -> std::io::Result<bool> {
    let Some(f) = files.open_read(&files.log_path())? else {
        return Ok(false);
    };
    let from = len.saturating_sub(TAIL_WINDOW);
    if from > 0 && *head == Head::Nothing {
        return Ok(false);
    }
    let mut tail = vec![0u8; (len - from) as usize];
    f.read_exact_at(&mut tail, from)?;
    let mut lines = tail.split(|b| *b == b'\n');
    if from > 0 {
        lines.next(); // the end of a line that starts before the window
    }
    // The hash the next entry must chain to, once the head's entry is found.
    let mut prev: Option<[u8; 32]> = (*head == Head::Nothing).then_some(GENESIS);
    let mut next_seq = 0;
    for line in lines.filter(|l| !l.is_empty()) {
        let Some(e) = files.decode_line(line) else {
            if prev.is_some() {
                return Ok(false);
            }
            continue;
        };
        match prev {
            Some(p) => {
                let hash = chain_hash(&p, e.seq, e.time, &e.event);
                if e.seq != next_seq || e.prev != to_hex(p) || e.hash != to_hex(hash) {
                    return Ok(false);
                }
                prev = Some(hash);
            }
            None => {
                if matches!(head, Head::Names(s, h) if *s == e.seq && *h == e.hash) {
                    prev = decode32(&e.hash);
                }
            }
        }
        next_seq = e.seq + 1;
    }
    Ok(prev.is_some())
}

/// The newest complete line of the log, if its end is a whole entry: the
/// log's length and that entry. Reads at most [`MAX_LINE`] bytes.
fn last_entry(files: &Files) -> std::io::Result<Option<(u64, Entry)>> {
    let Some(f) = files.open_read(&files.log_path())? else {
        return Ok(None);
    };
    let len = f.size()?;
    let from = len.saturating_sub(MAX_LINE + 1);
    let mut tail = vec![0u8; (len - from) as usize];
    f.read_exact_at(&mut tail, from)?;
    if tail.pop() != Some(b'\n') {
        return Ok(None);
    }
    let start = match tail.iter().rposition(|b| *b == b'\n') {
        Some(i) => i + 1,
        None if from == 0 => 0,
        None => return Ok(None),
    };
    Ok(files.decode_line(&tail[start..]).map(|e| (len, e)))
}

/// The open log, ready for appends.
pub struct AuditLog {
    dir: PathBuf,
    files: Files,
    file: Arc<dyn VFile>,
    /// Where the waiting lines go: the length of the log on disk, as far
    /// as this log wrote it.
    written: u64,
    /// Lines appended but not yet written, in order (see [`WRITE_BEHIND`]).
    pending: Vec<u8>,
    head: Arc<Mutex<HeadFile>>,
    next_seq: u64,
    prev: [u8; 32],
    /// Entries written since the last flush began (set again when a flush
    /// fails).
    dirty: Arc<AtomicBool>,
    /// Alerts not yet acknowledged (see [`Scan::unacked`]); while the
    /// check is deferred, only those appended since the open.
    unacked: VecDeque<Entry>,
    /// An `ack` was appended since the open.
    acked_since_open: bool,
    clock: Box<dyn Fn() -> u64 + Send + Sync>,
}

/// `DIR/audit.head`, and the newest entry it names (never moved back).
struct HeadFile {
    file: Box<dyn VFile>,
    names: Option<u64>,
    /// The slot the next head goes to: never the one that stands.
    next_slot: usize,
    /// Bytes of a slot.
    width: usize,
}

/// A flush begun under the log's lock ([`AuditLog::begin_flush`]) and done
/// without it ([`Flush::complete`]): the two syncs need no lock on the
/// log, so appends (every request's audit entries) never wait for a disk
/// sync of a routine flush.
#[must_use = "a begun flush does nothing until it is completed"]
pub struct Flush {
    /// The write of the waiting lines failed ([`AuditLog::write_out`]):
    /// what [`Flush::complete`] reports, without syncing.
    unwritten: Option<AuditError>,
    log: Arc<dyn VFile>,
    head: Arc<Mutex<HeadFile>>,
    dirty: Arc<AtomicBool>,
    seq: u64,
    /// The head's line naming entry `seq` (sealed on an encrypted
    /// directory, [`Files::encode_head`]).
    line: Vec<u8>,
    dir: PathBuf,
}

impl Flush {
    /// Make every entry up to the one this flush was begun at durable:
    /// fdatasync the log, then point the head at that entry (rewritten in
    /// place at a fixed width, so it is never half a line; and only if no
    /// later flush has moved it past already) and sync it.
    pub fn complete(mut self) -> Result<(), AuditError> {
        let done = match self.unwritten.take() {
            Some(e) => Err(e),
            None => self.sync(),
        };
        if done.is_err() {
            self.dirty.store(true, Ordering::Release);
        }
        done
    }

    fn sync(&self) -> Result<(), AuditError> {
        self.log
            .sync_data()
            .map_err(io(&self.dir.join("audit.log")))?;
        let mut head = self.head.lock().unwrap_or_else(|p| p.into_inner());
        if head.names.is_some_and(|n| n >= self.seq) {
            return Ok(());
        }
        // Into the slot that does not hold the standing head: a cut here
        // tears only this one, and the other still names a durable entry.
        let at = (head.next_slot * head.width) as u64;
        head.file
            .write_all_at(&self.line, at)
            .and_then(|_| head.file.sync_data())
            .map_err(io(&self.dir.join("audit.head")))?;
        head.names = Some(self.seq);
        head.next_slot = 1 - head.next_slot;
        Ok(())
    }
}

impl AuditLog {
    /// Open (or create) the log in `dir`, check it, and report what was
    /// wrong. Problems are also appended as a `TamperDetected` entry.
    pub fn open(dir: &Path) -> Result<(AuditLog, Vec<Integrity>), AuditError> {
        Self::open_with_clock(dir, Box::new(system_unix_now))
    }

    /// Open the log for appending after reading only its newest entry and
    /// the head: start-up time does not grow with the log. The chain itself
    /// is checked by [`Deferred::check`] (the device runs it on a thread,
    /// then [`AuditLog::checked`]). A log that is empty, ends in a torn
    /// line, or is shorter than its head is checked in full here instead.
    pub fn open_quick(dir: &Path) -> Result<(AuditLog, Opened), AuditError> {
        Self::open_quick_with_clock(dir, Box::new(system_unix_now))
    }

    /// Like [`AuditLog::open_quick`], with entries stamped by `clock`
    /// (Unix seconds): the device passes its platform's wall clock.
    pub fn open_quick_with_clock(
        dir: &Path,
        clock: Box<dyn Fn() -> u64 + Send + Sync>,
    ) -> Result<(AuditLog, Opened), AuditError> {
        Self::open_quick_in(Files::plain(dir), clock)
    }

    /// [`AuditLog::open_quick_with_clock`] of the log `files` name: the
    /// device passes the storage seam and, for an encrypted data
    /// directory, the master key.
    pub fn open_quick_in(
        files: Files,
        clock: Box<dyn Fn() -> u64 + Send + Sync>,
    ) -> Result<(AuditLog, Opened), AuditError> {
        let log_path = files.log_path();
        let (head, _) = files.read_head();
        let last = last_entry(&files).map_err(io(&log_path))?;
        let whole = match &last {
            Some((len, _)) => tail_chains(&files, &head, *len).map_err(io(&log_path))?,
            None => false,
        };
        let Some((len, last)) = last.filter(|_| whole) else {
            let (log, problems) = AuditLog::open_in(files, clock)?;
            return Ok((log, Opened::Checked(problems)));
        };
        let log = AuditLog::from_parts(
            files.clone(),
            last.seq + 1,
            decode32(&last.hash).unwrap_or(GENESIS),
            VecDeque::new(),
            clock,
        )?;
        Ok((log, Opened::Deferred(Deferred { files, head, len })))
    }

    /// The deferred check is done: alerts it found unacknowledged come
    /// before the ones appended since (unless the owner acknowledged since
    /// the open, which covers them too). Returns those older alerts, to
    /// show, and the damage to log (once) as `tamper_detected`, if any.
    pub fn checked(&mut self, scan: Scan) -> (Vec<Entry>, Option<String>) {
        let older: Vec<Entry> = if self.acked_since_open {
            Vec::new()
        } else {
            scan.unacked.into_iter().collect()
        };
        let mut all: VecDeque<Entry> = older.iter().cloned().collect();
        all.extend(self.unacked.drain(..));
        while all.len() > ALERTS_KEPT {
            all.pop_front();
        }
        self.unacked = all;
        let tamper = (!scan.problems.is_empty())
            .then(|| {
                scan.problems
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .filter(|d| scan.last_tamper.as_deref() != Some(d.as_str()));
        (older, tamper)
    }

    /// Like [`AuditLog::open`] with an injected clock (tests).
    pub fn open_with_clock(
        dir: &Path,
        clock: Box<dyn Fn() -> u64 + Send + Sync>,
    ) -> Result<(AuditLog, Vec<Integrity>), AuditError> {
        Self::open_in(Files::plain(dir), clock)
    }

    /// [`AuditLog::open_with_clock`] of the log `files` name (sealed, or
    /// through another storage seam).
    pub fn open_in(
        files: Files,
        clock: Box<dyn Fn() -> u64 + Send + Sync>,
    ) -> Result<(AuditLog, Vec<Integrity>), AuditError> {
        let mut checked = scan_in(&files, |_| {})?;
        if let Some(at) = checked.torn_tail {
            // What a power cut left of writes never synced: cut it off
            // (durably) and read the log again.
            let log_path = files.log_path();
            let f = files.open_write(&log_path).map_err(io(&log_path))?;
            f.set_len(at)
                .and_then(|_| f.sync_data())
                .map_err(io(&log_path))?;
            checked = scan_in(&files, |_| {})?;
        }
        let (next_seq, prev) = match &checked.last {
            Some(e) => (e.seq + 1, decode32(&e.hash).unwrap_or(GENESIS)),
            None => (0, GENESIS),
        };
        let mut log = AuditLog::from_parts(files, next_seq, prev, checked.unacked, clock)?;
        if !checked.problems.is_empty() {
            let detail = checked
                .problems
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join("; ");
            // Log the finding once: a damaged log stays damaged, and is
            // reported at every start, but not appended again and again
            // (its alert stays until the owner acknowledges it).
            if checked.last_tamper.as_deref() != Some(detail.as_str()) {
                log.append(Event::TamperDetected { detail })?;
            }
        }
        Ok((log, checked.problems))
    }

    fn from_parts(
        files: Files,
        next_seq: u64,
        prev: [u8; 32],
        unacked: VecDeque<Entry>,
        clock: Box<dyn Fn() -> u64 + Send + Sync>,
    ) -> Result<AuditLog, AuditError> {
        let log_path = files.log_path();
        let file: Arc<dyn VFile> = Arc::from(files.open_write(&log_path).map_err(io(&log_path))?);
        let written = file.size().map_err(io(&log_path))?;
        let head_path = files.head_path();
        let head = match files.vfs.open(&head_path, OpenHow::ReadWrite) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // A new head names no entry yet, and is whole from the
                // start (written aside, synced, renamed into place).
                replace_durably(files.vfs.as_ref(), &head_path, &files.encode_head(None))
                    .and_then(|_| files.vfs.open(&head_path, OpenHow::ReadWrite))
            }
            other => other,
        }
        .map_err(io(&head_path))?;
        let (_, next_slot) = files.read_head();
        let width = files.slot_width();
        Ok(AuditLog {
            dir: files.dir.clone(),
            files,
            file,
            written,
            pending: Vec::new(),
            head: Arc::new(Mutex::new(HeadFile {
                file: head,
                names: None,
                next_slot,
                width,
            })),
            next_seq,
            prev,
            dirty: Arc::default(),
            unacked,
            acked_since_open: false,
            clock,
        })
    }

    /// Append one event and write it (with any line [held](Self::hold)
    /// before it) to the file. Severe events are durable when this
    /// returns; routine ones after the next [`flush`](Self::flush). If the
    /// write fails, the error is returned and the entry waits in memory
    /// for the next write out or flush.
    pub fn append(&mut self, event: Event) -> Result<Entry, AuditError> {
        let entry = self.hold(event)?;
        self.write_out()?;
        Ok(entry)
    }

    /// Append one event, its line waiting in memory for the next
    /// [`append`](Self::append), [`write_out`](Self::write_out) or
    /// [`flush`](Self::flush) (or [`WRITE_BEHIND`]): what lets a request
    /// write all its entries in one write. Severe events are still written
    /// and durable when this returns.
    pub fn hold(&mut self, event: Event) -> Result<Entry, AuditError> {
        let severe = event.is_severe();
        let time = (self.clock)();
        let event_json = zeroize::Zeroizing::new(serde_json::to_vec(&event).unwrap_or_default());
        let hash = chain_hash_of(&self.prev, self.next_seq, time, &event_json);
        let entry = Entry {
            seq: self.next_seq,
            time,
            event,
            prev: to_hex(self.prev),
            hash: to_hex(hash),
        };
        if self.pending.len() >= WRITE_BEHIND {
            // Before this entry joins them: if the write fails, the entry
            // is not appended at all.
            self.write_out()?;
        }
        self.files
            .encode_line_into(&entry, &event_json, &mut self.pending);
        self.next_seq += 1;
        self.prev = hash;
        self.dirty.store(true, Ordering::Release);
        if let Event::Ack { alerts } = entry.event {
            ack_oldest(&mut self.unacked, alerts);
            self.acked_since_open = true;
        }
        if entry.event.is_alert() {
            self.unacked.push_back(entry.clone());
            if self.unacked.len() > ALERTS_KEPT {
                self.unacked.pop_front();
            }
        }
        if severe {
            self.flush()?;
        }
        Ok(entry)
    }

    /// Make every entry written so far durable: fdatasync the log, then
    /// point the head at the newest entry (written into the slot that
    /// does not hold the standing head) and sync it.
    pub fn flush(&mut self) -> Result<(), AuditError> {
        match self.begin_flush() {
            Some(flush) => flush.complete(),
            None => Ok(()),
        }
    }

    /// A flush of every entry written so far, to complete without holding
    /// the log ([`Flush::complete`]); `None` if there is nothing to flush.
    pub fn begin_flush(&mut self) -> Option<Flush> {
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return None;
        }
        // Under the log's lock, so the file is always written in order
        // and any flush's sync covers every line written before it.
        let unwritten = self.write_out().err();
        let seq = self.next_seq - 1;
        Some(Flush {
            unwritten,
            log: self.file.clone(),
            head: self.head.clone(),
            dirty: self.dirty.clone(),
            seq,
            line: self.files.encode_head(Some((seq, &self.prev))),
            dir: self.dir.clone(),
        })
    }

    /// Write the waiting lines in one write after those already written
    /// (not synced: that is [`flush`](Self::flush)'s). If it fails they
    /// stay waiting, to be written at the same place by the next try.
    pub fn write_out(&mut self) -> Result<(), AuditError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.file
            .write_all_at(&self.pending, self.written)
            .map_err(|e| io(&self.files.log_path())(e))?;
        self.written += self.pending.len() as u64;
        self.pending.clear();
        Ok(())
    }

    /// Alerts not acknowledged yet, oldest first (at most [`ALERTS_KEPT`]):
    /// what the alerts screen shows after a restart.
    pub fn unacked_alerts(&self) -> impl DoubleEndedIterator<Item = &Entry> {
        self.unacked.iter()
    }

    /// Number of entries written so far.
    pub fn len(&self) -> u64 {
        self.next_seq
    }

    /// True when nothing was ever logged.
    pub fn is_empty(&self) -> bool {
        self.next_seq == 0
    }
}

impl Drop for AuditLog {
    /// A clean close makes everything durable; errors here can only be
    /// ignored (the next start checks the chain).
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;
    use std::io::Write;

    /// A `skipped` entry written before the `messages` field existed
    /// re-serializes to the same bytes, so its chain hash still holds.
    #[test]
    fn an_old_skipped_entry_hashes_as_it_did() {
        let old = r#"{"kind":"skipped","contact":"bob","index":5,"bytes":132}"#;
        let e: Event = serde_json::from_str(old).unwrap();
        assert_eq!(serde_json::to_string(&e).unwrap(), old);
        let new = Event::Skipped {
            contact: "bob".into(),
            index: 5,
            bytes: 0,
            messages: 2,
        };
        let text = serde_json::to_string(&new).unwrap();
        assert!(text.contains(r#""messages":2"#), "{text}");
    }

    fn ev(i: u64) -> Event {
        Event::Sealed {
            contact: "bob".into(),
            index: i * 132,
            bytes: 100,
            cost: 132,
        }
    }

    fn fresh(dir: &Path, n: u64) {
        let (mut log, problems) =
            AuditLog::open_with_clock(dir, Box::new(|| 1_700_000_000)).unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        for i in 0..n {
            log.append(ev(i)).unwrap();
        }
    }

    #[test]
    fn a_clean_log_checks_and_continues() {
        let d = tempfile::tempdir().unwrap();
        fresh(d.path(), 5);
        let (mut log, problems) = AuditLog::open(d.path()).unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(log.len(), 5);
        log.append(ev(5)).unwrap();
        let c = check(d.path()).unwrap();
        assert!(c.problems.is_empty());
        assert_eq!(c.entries.len(), 6);
        assert_eq!(c.entries[5].event, ev(5));
    }

    #[test]
    fn an_edited_entry_breaks_the_chain() {
        let d = tempfile::tempdir().unwrap();
        fresh(d.path(), 5);
        let p = d.path().join("audit.log");
        let text = std::fs::read_to_string(&p).unwrap();
        std::fs::write(&p, text.replacen("\"index\":264", "\"index\":265", 1)).unwrap();
        let (log, problems) = AuditLog::open(d.path()).unwrap();
        assert_eq!(problems, vec![Integrity::Broken { seq: 2 }]);
        // The finding is itself logged, and the log goes on from there.
        let c = check(d.path()).unwrap();
        assert_eq!(log.len(), 6);
        assert!(matches!(
            c.entries.last().unwrap().event,
            Event::TamperDetected { .. }
        ));
        drop(log);
        // Still reported at the next start, but not logged a second time.
        let (log, problems) = AuditLog::open(d.path()).unwrap();
        assert_eq!(problems, vec![Integrity::Broken { seq: 2 }]);
        assert_eq!(log.len(), 6);
    }

    #[test]
    fn cutting_entries_off_the_end_is_detected() {
        let d = tempfile::tempdir().unwrap();
        fresh(d.path(), 5);
        let p = d.path().join("audit.log");
        let text = std::fs::read_to_string(&p).unwrap();
        let kept: Vec<&str> = text.lines().take(3).collect();
        std::fs::write(&p, kept.join("\n") + "\n").unwrap();
        let (_, problems) = AuditLog::open(d.path()).unwrap();
        assert_eq!(
            problems,
            vec![Integrity::Truncated {
                expected: 5,
                found: 3
            }]
        );
    }

    #[test]
    fn a_deleted_log_with_a_head_is_detected() {
        let d = tempfile::tempdir().unwrap();
        fresh(d.path(), 2);
        std::fs::remove_file(d.path().join("audit.log")).unwrap();
        let (_, problems) = AuditLog::open(d.path()).unwrap();
        assert_eq!(
            problems,
            vec![Integrity::Truncated {
                expected: 2,
                found: 0
            }]
        );
    }

    /// The entry line written from its event's JSON is what serde writes
    /// for the entry, for events with and without strings to escape.
    #[test]
    fn an_entry_is_written_as_serde_writes_it() {
        let events = [
            ev(3),
            Event::Stop,
            Event::Ack { alerts: 2 },
            Event::TamperDetected {
                detail: "a \"quoted\" line\nwith \\ and \u{7} and é".into(),
            },
            Event::Skipped {
                contact: "bob".into(),
                index: 5,
                bytes: 132,
                messages: 0,
            },
        ];
        for (i, event) in events.into_iter().enumerate() {
            let event_json = serde_json::to_vec(&event).unwrap();
            let entry = Entry {
                seq: u64::MAX - i as u64,
                time: 1_700_000_000 + i as u64,
                prev: to_hex([i as u8; 32]),
                hash: to_hex(chain_hash(&GENESIS, 0, 0, &event)),
                event,
            };
            assert_eq!(entry.prev, hex::encode([i as u8; 32]));
            let mut line = Vec::new();
            entry_json(&entry, &event_json, &mut line);
            assert_eq!(
                String::from_utf8(line).unwrap(),
                serde_json::to_string(&entry).unwrap()
            );
        }
    }

    /// Issue 16: held routine entries cost no write of their own. They
    /// wait in memory and reach the file in one write with the next
    /// append, or at the flush before its sync; a severe entry is written
    /// and synced at once, and [`WRITE_BEHIND`] bytes waiting are written
    /// without either.
    #[test]
    fn held_entries_reach_the_file_in_one_write() {
        use crate::pad::vfs::{Op, Recorder};
        let d = tempfile::tempdir().unwrap();
        let recorder = Recorder::new(RealFs);
        let files = Files::new(Arc::new(recorder.clone()), d.path(), None);
        let (mut log, _) = AuditLog::open_in(files, Box::new(|| 1_700_000_000)).unwrap();
        let log_path = d.path().join("audit.log");
        let writes = |ops: &[Op]| -> Vec<(u64, u64)> {
            ops.iter()
                .filter_map(|op| match op {
                    Op::Write { path, offset, len } if *path == log_path => Some((*offset, *len)),
                    _ => None,
                })
                .collect()
        };
        let synced_after_write = |ops: &[Op]| {
            let write = ops
                .iter()
                .position(|op| matches!(op, Op::Write { path, .. } if *path == log_path));
            let sync = ops
                .iter()
                .rposition(|op| *op == Op::SyncData(log_path.clone()));
            matches!((write, sync), (Some(w), Some(s)) if w < s)
        };
        recorder.take();

        for i in 0..3 {
            log.hold(ev(i)).unwrap();
        }
        assert_eq!(writes(&recorder.take()), [], "held entries wait");
        log.flush().unwrap();
        let ops = recorder.take();
        let size = std::fs::metadata(&log_path).unwrap().len();
        assert_eq!(writes(&ops), [(0, size)], "one write of all three: {ops:?}");
        assert!(synced_after_write(&ops), "{ops:?}");
        assert_eq!(check(d.path()).unwrap().entries.len(), 3);

        log.hold(ev(3)).unwrap();
        log.append(ev(4)).unwrap();
        let ops = recorder.take();
        let grown = std::fs::metadata(&log_path).unwrap().len();
        assert_eq!(
            writes(&ops),
            [(size, grown - size)],
            "held + appended: {ops:?}"
        );
        assert!(
            !ops.contains(&Op::SyncData(log_path.clone())),
            "routine: {ops:?}"
        );
        assert_eq!(check(d.path()).unwrap().entries.len(), 5);

        log.hold(Event::Replay {
            contact: "bob".into(),
            index: 7,
        })
        .unwrap();
        let ops = recorder.take();
        assert_eq!(writes(&ops).len(), 1, "{ops:?}");
        assert!(
            synced_after_write(&ops),
            "a severe entry is durable: {ops:?}"
        );
        assert_eq!(check(d.path()).unwrap().entries.len(), 6);

        let size = std::fs::metadata(&log_path).unwrap().len();
        let mut held = 0;
        while writes(&recorder.take()).is_empty() {
            assert!(held <= WRITE_BEHIND, "nothing written without a flush");
            log.hold(ev(held as u64)).unwrap();
            held += 1;
        }
        let on_disk = check(d.path()).unwrap().entries.len();
        assert!(on_disk > 6 && on_disk < 6 + held, "{on_disk} of {held}");
        assert!(
            std::fs::metadata(&log_path).unwrap().len() >= size + WRITE_BEHIND as u64,
            "written once {WRITE_BEHIND} bytes waited"
        );
        drop(log);
        assert_eq!(check(d.path()).unwrap().entries.len(), 6 + held);
    }

    #[test]
    fn routine_entries_wait_for_flush_severe_ones_do_not() {
        let d = tempfile::tempdir().unwrap();
        // The entry the standing head names (the newest whole slot).
        let head = || match Files::plain(d.path()).read_head().0 {
            Head::Names(seq, _) => Some(seq),
            _ => None,
        };
        let (mut log, _) = AuditLog::open(d.path()).unwrap();
        assert_eq!(head(), None, "a new log's head names no entry");
        log.append(Event::Started {
            version: "test".into(),
        })
        .unwrap();
        assert_eq!(head(), Some(0));
        log.append(ev(0)).unwrap();
        assert_eq!(head(), Some(0), "a routine entry does not move the head");
        assert!(check(d.path()).unwrap().problems.is_empty());
        log.append(Event::Replay {
            contact: "bob".into(),
            index: 7,
        })
        .unwrap();
        assert_eq!(head(), Some(2));
        log.append(ev(2)).unwrap();
        // The head lags the log by the unflushed entry: that is not damage.
        assert!(check(d.path()).unwrap().problems.is_empty());
        log.flush().unwrap();
        assert_eq!(head(), Some(3));
        // Two slots of `SEQ HASH CHECK\n`, written in turn.
        let raw = std::fs::read_to_string(d.path().join("audit.head")).unwrap();
        assert_eq!(raw.len(), 2 * (20 + 1 + 64 + 1 + 8 + 1), "{raw}");
        assert!(
            raw.starts_with("00000000000000000003 ") || raw.contains("\n00000000000000000003 ")
        );
        drop(log);
        let (log, problems) = AuditLog::open(d.path()).unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(log.len(), 4);
    }

    #[test]
    fn a_head_slot_torn_by_a_power_cut_leaves_the_other_standing() {
        let d = tempfile::tempdir().unwrap();
        fresh(d.path(), 3);
        let p = d.path().join("audit.head");
        let before = std::fs::read(&p).unwrap();
        let (mut log, _) = AuditLog::open(d.path()).unwrap();
        log.append(ev(3)).unwrap();
        log.flush().unwrap();
        drop(log);
        // Tear the slot the last flush wrote: its first bytes new, the
        // rest as they were.
        let after = std::fs::read(&p).unwrap();
        let w = after.len() / 2;
        let slot = (0..2)
            .find(|i| {
                after[i * w..(i + 1) * w] != before.get(i * w..(i + 1) * w).unwrap_or(&[])[..]
            })
            .expect("a slot was written");
        let mut torn = after.clone();
        let old = before
            .get(slot * w..(slot + 1) * w)
            .map(<[u8]>::to_vec)
            .unwrap_or(vec![0; w]);
        torn[slot * w + 10..(slot + 1) * w].copy_from_slice(&old[10..]);
        std::fs::write(&p, &torn).unwrap();
        let (log, problems) = AuditLog::open(d.path()).unwrap();
        assert!(
            problems.is_empty(),
            "a torn slot is not damage: {problems:?}"
        );
        assert_eq!(log.len(), 4);
        drop(log);
        // Both slots unreadable is damage, as a head that does not match.
        std::fs::write(&p, vec![b'x'; after.len()]).unwrap();
        let (_, problems) = AuditLog::open(d.path()).unwrap();
        assert_eq!(problems, vec![Integrity::HeadMismatch]);
    }

    #[test]
    fn a_tail_a_power_cut_tore_is_cut_off_not_reported() {
        // Half a line, and the last line again without its newline (what
        // is left parses, but every entry is written with one): both after
        // the entry the head names, as a power cut leaves them.
        for torn_last_line in [false, true] {
            let d = tempfile::tempdir().unwrap();
            fresh(d.path(), 3);
            let p = d.path().join("audit.log");
            let whole = std::fs::read(&p).unwrap();
            let tail = if torn_last_line {
                whole[..whole.len() - 1]
                    .rsplit(|b| *b == b'\n')
                    .next()
                    .unwrap()
                    .to_vec()
            } else {
                b"{\"seq\":3,\"ti".to_vec()
            };
            let mut f = OpenOptions::new().append(true).open(&p).unwrap();
            f.write_all(&tail).unwrap();
            drop(f);
            assert!(
                !scan(d.path()).unwrap().problems.is_empty(),
                "a check reports it"
            );
            let (mut log, problems) = AuditLog::open(d.path()).unwrap();
            assert!(problems.is_empty(), "an open cuts it off: {problems:?}");
            assert_eq!(log.len(), 3);
            assert_eq!(
                std::fs::read(&p).unwrap(),
                whole,
                "cut back to the whole entries"
            );
            log.append(ev(3)).unwrap();
            drop(log);
            let c = check(d.path()).unwrap();
            assert!(c.problems.is_empty(), "{:?}", c.problems);
            assert_eq!(c.entries.len(), 4);
        }
    }

    /// Replace entry `seq` with `event` and give it a correct hash over its
    /// own `prev`, as an attacker who knows the scheme would.
    fn rehash_entry(dir: &Path, seq: usize, event: Event) {
        let p = dir.join("audit.log");
        let text = std::fs::read_to_string(&p).unwrap();
        let mut entries: Vec<Entry> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let e = &mut entries[seq];
        e.event = event;
        let prev = decode32(&e.prev).unwrap();
        e.hash = hex::encode(chain_hash(&prev, e.seq, e.time, &e.event));
        let out: Vec<String> = entries
            .iter()
            .map(|e| serde_json::to_string(e).unwrap())
            .collect();
        std::fs::write(&p, out.join("\n") + "\n").unwrap();
    }

    #[test]
    fn a_head_naming_an_altered_entry_is_a_mismatch() {
        let d = tempfile::tempdir().unwrap();
        fresh(d.path(), 3);
        // Replace the last entry with a validly chained different one:
        // the chain is fine, but the head's hash no longer matches.
        rehash_entry(d.path(), 2, ev(42));
        let (_, problems) = AuditLog::open(d.path()).unwrap();
        assert_eq!(problems, vec![Integrity::HeadMismatch]);
    }

    #[test]
    fn garbage_lines_and_missing_head_are_reported() {
        let d = tempfile::tempdir().unwrap();
        fresh(d.path(), 2);
        let p = d.path().join("audit.log");
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"not json\n").unwrap();
        std::fs::remove_file(d.path().join("audit.head")).unwrap();
        let (_, problems) = AuditLog::open(d.path()).unwrap();
        assert_eq!(
            problems,
            vec![Integrity::Unreadable { line: 3 }, Integrity::HeadMismatch]
        );
    }

    #[test]
    fn a_long_log_is_checked_in_a_stream() {
        // 200k entries: the chain verifies and the scan hands back a count,
        // the newest entry and the unacknowledged alerts, never the entries
        // (the `Scan` type has no place to keep them).
        let d = tempfile::tempdir().unwrap();
        let n = 200_000u64;
        {
            let (mut log, _) = AuditLog::open_with_clock(d.path(), Box::new(|| 7)).unwrap();
            log.append(Event::Replay {
                contact: "mallory".into(),
                index: 1,
            })
            .unwrap();
            for i in 1..n {
                log.append(ev(i)).unwrap();
            }
        }
        let mut seen = 0u64;
        let s = scan_with(d.path(), |_| seen += 1).unwrap();
        assert!(s.problems.is_empty(), "{:?}", s.problems);
        assert_eq!((s.count, seen), (n, n));
        assert_eq!(s.last.map(|e| e.event), Some(ev(n - 1)));
        assert_eq!(s.unacked.len(), 1);
        let (log, problems) = AuditLog::open(d.path()).unwrap();
        assert!(problems.is_empty());
        assert_eq!(log.len(), n);
    }

    #[test]
    fn unacknowledged_alerts_come_back_until_an_ack() {
        let d = tempfile::tempdir().unwrap();
        let replay = |i| Event::Replay {
            contact: "bob".into(),
            index: i,
        };
        {
            let (mut log, _) = AuditLog::open(d.path()).unwrap();
            log.append(replay(1)).unwrap();
            log.append(ev(1)).unwrap();
            log.append(replay(2)).unwrap();
        }
        let (mut log, _) = AuditLog::open(d.path()).unwrap();
        let alerts: Vec<Event> = log.unacked_alerts().map(|e| e.event.clone()).collect();
        assert_eq!(alerts, [replay(1), replay(2)]);
        log.append(Event::Ack { alerts: 2 }).unwrap();
        assert_eq!(log.unacked_alerts().count(), 0);
        log.append(replay(3)).unwrap();
        drop(log);
        let (mut log, _) = AuditLog::open(d.path()).unwrap();
        let alerts: Vec<Event> = log.unacked_alerts().map(|e| e.event.clone()).collect();
        assert_eq!(alerts, [replay(3)]);
        // An ack covers as many as the owner was shown, the oldest first
        // (issue 15: never one that was not on screen).
        log.append(replay(4)).unwrap();
        log.append(replay(5)).unwrap();
        log.append(Event::Ack { alerts: 2 }).unwrap();
        let alerts: Vec<Event> = log.unacked_alerts().map(|e| e.event.clone()).collect();
        assert_eq!(alerts, [replay(5)]);
        drop(log);
        let (log, _) = AuditLog::open(d.path()).unwrap();
        let alerts: Vec<Event> = log.unacked_alerts().map(|e| e.event.clone()).collect();
        assert_eq!(alerts, [replay(5)], "the same after a restart");
    }

    #[test]
    fn a_quick_open_reads_the_newest_entry_and_defers_the_chain() {
        let d = tempfile::tempdir().unwrap();
        fresh(d.path(), 5);
        // An edit in the middle: the quick open does not see it ...
        let p = d.path().join("audit.log");
        let text = std::fs::read_to_string(&p).unwrap();
        std::fs::write(&p, text.replacen("\"index\":264", "\"index\":265", 1)).unwrap();
        let (mut log, opened) = AuditLog::open_quick(d.path()).unwrap();
        assert_eq!(log.len(), 5);
        let Opened::Deferred(deferred) = opened else {
            panic!("a log whose end is whole is checked later: {opened:?}")
        };
        log.append(ev(5)).unwrap();
        // ... the deferred check does, up to where the log was.
        let s = deferred.check(&|| true).unwrap();
        assert_eq!(s.problems, vec![Integrity::Broken { seq: 2 }]);
        assert_eq!(s.count, 5);
        let (older, tamper) = log.checked(s);
        assert!(older.is_empty());
        let detail = tamper.expect("damage to log");
        assert!(detail.contains("entry 2 was altered"), "{detail}");
        log.append(Event::TamperDetected { detail }).unwrap();
        drop(log);
        // Logged once: the next check finds the same damage, already logged.
        let (mut log, opened) = AuditLog::open_quick(d.path()).unwrap();
        let Opened::Deferred(deferred) = opened else {
            panic!("{opened:?}")
        };
        let (older, tamper) = log.checked(deferred.check(&|| true).unwrap());
        assert_eq!(tamper, None);
        assert_eq!(older.len(), 1, "the tamper alert is still unacknowledged");
    }

    #[test]
    fn a_quick_open_of_a_cut_log_checks_it_in_full() {
        let d = tempfile::tempdir().unwrap();
        fresh(d.path(), 5);
        let p = d.path().join("audit.log");
        let text = std::fs::read_to_string(&p).unwrap();
        let kept: Vec<&str> = text.lines().take(3).collect();
        std::fs::write(&p, kept.join("\n") + "\n").unwrap();
        let (log, opened) = AuditLog::open_quick(d.path()).unwrap();
        let Opened::Checked(problems) = opened else {
            panic!("{opened:?}")
        };
        assert_eq!(
            problems,
            vec![Integrity::Truncated {
                expected: 5,
                found: 3
            }]
        );
        assert_eq!(log.unacked_alerts().count(), 1, "the tamper alert");
    }

    #[test]
    fn an_endless_line_is_unreadable_not_loaded() {
        let d = tempfile::tempdir().unwrap();
        fresh(d.path(), 2);
        let p = d.path().join("audit.log");
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(&vec![b'x'; 3 * MAX_LINE as usize]).unwrap();
        f.write_all(b"\n").unwrap();
        drop(f);
        let s = scan(d.path()).unwrap();
        assert_eq!(s.count, 2);
        assert_eq!(s.problems, vec![Integrity::Unreadable { line: 3 }]);
    }

    #[test]
    fn rewriting_an_entry_with_a_matching_hash_still_breaks_the_next_link() {
        // An attacker who recomputes one entry's hash must recompute all
        // later ones and the head too; one recomputed entry is caught.
        let d = tempfile::tempdir().unwrap();
        fresh(d.path(), 3);
        rehash_entry(d.path(), 1, ev(99));
        let (_, problems) = AuditLog::open(d.path()).unwrap();
        assert_eq!(problems, vec![Integrity::Broken { seq: 2 }]);
    }
}
