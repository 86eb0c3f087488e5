//! The pad store proper: data directory, contacts, durable send offsets,
//! the received-range log, erase after use. See the module docs of
//! [`crate`] for the rules it keeps.

use super::durable::{replace_durably, shred};
use super::fsutil::CHUNK;
use super::journal::{self, Opened as Used, Receipt};
use super::meta::{ContactMeta, META_VERSION, Origin, Range, Side, insert_range, overlaps_any};
use super::vfs::{self, Kind, OpenHow, RealFs, VFile, Vfs};
use crate::error::{Error, IoContext, Result};
use crate::vault::{self, MasterKey, PadCipher};
use otc_proto::rpc::ContactState;
use otc_proto::v3::{self, Claim};
use otc_proto::{Format, ProtoError};
use serde::Serialize;
use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// Name of the marker file that makes a directory ours.
pub const MARKER_FILE: &str = "otc-device.data";
/// The appliance's settings file, `DIR/otc.toml`: image/init writes it
/// before otc-device first starts (the first boot on the screen needs it
/// to draw), so a new data directory may hold it before the store is made
/// in it. The store never reads or writes it.
pub const DEVICE_SETTINGS_FILE: &str = "otc.toml";
/// First line of the marker file.
pub const MARKER_MAGIC: &str = "otc-device data directory, layout 2";
/// First line of the marker of a layout-1 directory (metadata in sled),
/// which this version refuses (see the module docs of [`crate`]).
pub const MARKER_MAGIC_LAYOUT_1: &str = "otc-device data directory, layout 1";
/// The directory holding one metadata record per contact (`<name>.json`).
pub const CONTACTS_DIR: &str = "contacts";
/// The directory holding pad files (`<pad_id>.pad`).
pub const PADS_DIR: &str = "pads";
/// The directory recording every pad id this data directory ever held
/// (one empty-ish file per id, never removed).
pub const USED_DIR: &str = "used";
/// Default reservation block: the durable send bound moves in steps of at
/// least this many bytes (sequence-cache style). The block is also at most
/// 1/256 of the contact's send side ([`RESERVE_FRACTION`]).
pub const DEFAULT_RESERVE_BLOCK: u64 = 64 * 1024;
/// The reservation block is at most `send side / RESERVE_FRACTION`, so a
/// small pad does not lose much to a crash.
pub const RESERVE_FRACTION: u64 = 256;
/// Kept for old error values: the store no longer burns ranges.
pub const MAX_FAILED_VERIFICATIONS: u32 = 3;
/// Largest metadata record read (a contact's JSON).
const MAX_RECORD: u64 = 64 << 20;
/// Smallest pad the store accepts.
pub const MIN_PAD_SIZE: u64 = 256;
/// Largest pad the store accepts: indices are 48 bits.
pub const MAX_PAD_SIZE: u64 = otc_proto::MAX_INDEX + 1;
/// Message size used for "messages left" figures.
pub const NOMINAL_MESSAGE: usize = 100;

/// How long opening waits for a data directory another process is leaving.
const LOCK_WAIT: Duration = Duration::from_secs(3);

/// Tunables of a store.
#[derive(Clone, Copy, Debug)]
pub struct StoreOptions {
    /// Reservation block in bytes (the most pad a crash can skip, and the
    /// most used pad whose erase may not yet be durable). Each contact uses
    /// at most 1/[`RESERVE_FRACTION`] of its send side
    /// ([`PadStore::reserve_block_for`]).
    pub reserve_block: u64,
    /// Slots in each contact's receipt journal ([`crate::journal`]): an
    /// open costs one sync, and every this many opens one takes the record
    /// path (record rewritten durably, erases synced: three syncs). Below
    /// 2, every open takes the record path (what the store did before
    /// issue 16; kept for the bench's comparison, and as safe as the
    /// journal).
    pub journal_slots: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            reserve_block: DEFAULT_RESERVE_BLOCK,
            journal_slots: journal::DEFAULT_SLOTS,
        }
    }
}

/// A sealed package and what it cost.
#[derive(Debug, Clone)]
pub struct Sealed {
    /// The package bytes to send.
    pub package: Vec<u8>,
    /// The pad index the package carries (v3: its text offset `t`).
    pub index: u64,
    /// The v3 slot `k` the package carries (`None` for v1).
    pub slot: Option<u32>,
    /// Pad bytes this message consumed.
    pub cost: u64,
    /// Pad bytes left for sending to this contact after this message.
    pub pad_left: u64,
}

/// What sealing a message would cost, without doing it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Quote {
    pub contact: String,
    pub format: Format,
    pub message_len: u64,
    pub cost: u64,
    pub pad_left: u64,
    pub pad_left_after: u64,
}

/// A warning about a received package whose tag verified, to show before
/// opening it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OpenWarning {
    /// Messages the partner sent before this one never arrived (lost,
    /// delayed or out of order, or a sender crash). v3: the spec's count of
    /// slots below this package's slot and above the highest opened one.
    /// v1 (no slots): the skipped pad bytes in 100-byte messages, at
    /// least 1. `bytes`: the skipped pad bytes (v1 only, else 0).
    Skipped { messages: u64, bytes: u64 },
}

/// The facts about a received package, checked without using anything:
/// the package passed every check up to its tag (the spec's checks 1 to 5
/// for v3; range, replay and HMAC for v1), so these facts are verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpenCheck {
    /// The pad index the package carries (v3: its text offset `t`).
    pub index: u64,
    /// The v3 slot `k` (`None` for v1).
    pub slot: Option<u32>,
    pub cost: u64,
    pub message_len: u64,
    pub warnings: Vec<OpenWarning>,
}

/// An opened message. Its `Debug` names the message's size, never its
/// bytes: a debug print in a log line or a panic must not carry the
/// plaintext.
#[derive(Clone)]
pub struct Opened {
    pub message: Vec<u8>,
    pub index: u64,
    pub slot: Option<u32>,
    pub cost: u64,
    pub warnings: Vec<OpenWarning>,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened")
            .field("message", &format_args!("{} bytes", self.message.len()))
            .field("index", &self.index)
            .field("slot", &self.slot)
            .field("cost", &self.cost)
            .field("warnings", &self.warnings)
            .finish()
    }
}

/// A contact as `pad list` shows it: everything the store knows about it
/// (the RPC's `otc_proto::rpc::ContactInfo` is the part the laptop sees,
/// with the same field names). `pad list --json` keeps its older names
/// `recv_left` and `recv_messages_left`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContactSummary {
    pub name: String,
    pub pad_id: String,
    pub size: u64,
    pub split: u64,
    pub side: Side,
    pub format: Format,
    pub origin: Origin,
    /// Pad bytes left for sending.
    pub send_left: u64,
    /// Pad bytes of the partner's region not yet passed by what we opened.
    #[serde(rename = "recv_left")]
    pub receive_left: u64,
    /// 100-byte messages we can still send.
    pub send_messages_left: u64,
    /// 100-byte messages the partner can still send us (at most).
    #[serde(rename = "recv_messages_left")]
    pub receive_messages_left: u64,
    /// Pad bytes burned after failed verifications.
    pub burned: u64,
    /// `ok`, or `damaged`: the pad file does not match the record (found at
    /// start); nothing can be sealed or opened, and the figures above are 0.
    pub state: ContactState,
    /// What is wrong with a damaged pad, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub damage: Option<String>,
    /// The short fingerprint the owners compare after pairing
    /// ([`super::pairing::fingerprint`]), the same on both devices.
    pub fingerprint: String,
    /// A private contact: its messages are read on the device only.
    pub private: bool,
}

/// One contact with its open pad file and in-memory send offset.
struct Live {
    meta: ContactMeta,
    /// `None` when the pad is damaged (`damage`): the contact can only be
    /// listed and removed, and its file is never written.
    file: Option<Box<dyn VFile>>,
    /// In-memory send offset (a count from our edge; "the pad cursor" in
    /// older docs): the next message starts here. Always between
    /// `meta.erased` and `meta.reserved` (inclusive).
    send_offset: u64,
    /// v3: the in-memory slot counter, between `meta.slots_erased` and
    /// `meta.slots_reserved` (inclusive). 0 for v1.
    send_slot: u64,
    /// Set at start when the pad file does not match the record.
    damage: Option<Damage>,
    /// The receipt journal, opened at the first open that writes to it.
    journal: Option<Box<dyn VFile>>,
    /// The `journal_seq` of the record last made durable by the store
    /// itself at start or on the record path: receipts after it must not
    /// be overwritten ([`crate::journal`]).
    journal_base: u64,
    /// v3: each side's hash key `r` ([A, B]), read from the pad file at
    /// its first use and kept: it is the same for every message of that
    /// side, so a seal or an open reads only its own text and slot. Zeroed
    /// when the contact is dropped (a lock, a removal, the store's end).
    keys_r: [OnceLock<Zeroizing<[u8; 16]>>; 2],
    /// v3: the send streams' pad read ahead of use, text bytes upward and
    /// slot masks downward ([`Ahead`]): a seal reads the pad file once per
    /// [`AHEAD`] bytes of each, not twice per message (issue 16). Zeroed
    /// as bytes are handed out, and when the contact is dropped.
    ahead_text: Ahead,
    ahead_masks: Ahead,
}

/// Pad bytes in memory, zeroed when dropped.
type PadBytes = Zeroizing<Vec<u8>>;

/// How much of a send stream one read of the pad file fetches ahead.
const AHEAD: u64 = 4096;

/// Pad bytes `[lo, lo + bytes.len())` of one send stream, read ahead of
/// use and never beyond what the durable reservation covers (so a text
/// window never holds a slot's mask, nor a mask window text: within the
/// reservation the two streams never claim the same byte). The store's
/// own erase is the only write to those bytes while they are held, and
/// [`Ahead::take`] zeroes the copy of what it hands out as the erase
/// zeroes the file.
#[derive(Default)]
struct Ahead {
    lo: u64,
    bytes: Zeroizing<Vec<u8>>,
}

impl Ahead {
    /// The pad bytes of `want`, from the window if it holds them, else
    /// after reading a new one from `file`: `[want.lo, want.lo + AHEAD)`
    /// for a stream that grows `up`, `[want.hi - AHEAD, want.hi)` for one
    /// that grows down, cut to `within` (the reserved part of the stream)
    /// but always all of `want`. The bytes handed out are zeroed here.
    fn take(
        &mut self,
        file: &dyn VFile,
        want: Range,
        within: Range,
        up: bool,
    ) -> std::io::Result<Zeroizing<Vec<u8>>> {
        let end = self.lo + self.bytes.len() as u64;
        if want.lo < self.lo || want.hi > end {
            let (lo, hi) = if up {
                let hi = want.lo.saturating_add(AHEAD).min(within.hi);
                (want.lo, hi.max(want.hi))
            } else {
                let lo = want.hi.saturating_sub(AHEAD).max(within.lo);
                (lo.min(want.lo), want.hi)
            };
            // The old window goes (zeroed) whether or not the read works.
            self.bytes = Zeroizing::default();
            self.lo = lo;
            let mut fresh = Zeroizing::new(vec![0u8; (hi - lo) as usize]);
            file.read_exact_at(&mut fresh, lo)?;
            self.bytes = fresh;
        }
        let at = (want.lo - self.lo) as usize;
        let held = &mut self.bytes[at..at + want.len() as usize];
        let out = Zeroizing::new(held.to_vec());
        held.fill(0);
        Ok(out)
    }
}

impl Live {
    fn new(meta: ContactMeta, file: Option<Box<dyn VFile>>) -> Live {
        let send_offset = meta.reserved;
        let send_slot = meta.slots_reserved;
        let journal_base = meta.journal_seq;
        Live {
            meta,
            file,
            send_offset,
            send_slot,
            damage: None,
            journal: None,
            journal_base,
            keys_r: Default::default(),
            ahead_text: Ahead::default(),
            ahead_masks: Ahead::default(),
        }
    }

    /// v3: `side`'s hash key `r`, at `at` in the pad file (read once, see
    /// [`Live::keys_r`]).
    fn key_r(&self, side: Side, at: u64) -> Result<&[u8; 16]> {
        let cell = &self.keys_r[usize::from(side == Side::B)];
        if let Some(r) = cell.get() {
            return Ok(r);
        }
        let r = read_key(self.file()?, at)
            .ctx(|| format!("cannot read pad file for {}", self.meta.name))?;
        Ok(cell.get_or_init(|| r))
    }

    /// v3: a message's text pad and slot mask, each `(want, within)`,
    /// from the send streams' windows ([`Live::ahead_text`]).
    fn send_pad(
        &mut self,
        (text, text_within): (Range, Range),
        (mask, masks_within): (Range, Range),
    ) -> Result<(PadBytes, PadBytes)> {
        self.usable()?;
        let Some(file) = self.file.as_deref() else {
            return Err(self.damage_error(Damage::Missing));
        };
        let read = self
            .ahead_text
            .take(file, text, text_within, true)
            .and_then(|t| Ok((t, self.ahead_masks.take(file, mask, masks_within, false)?)));
        read.ctx(|| format!("cannot read pad file for {}", self.meta.name))
    }

    /// A contact whose pad file does not match its record: listed and
    /// removable only; its file is closed and never written.
    fn damaged(meta: ContactMeta, damage: Damage) -> Live {
        Live {
            damage: Some(damage),
            ..Live::new(meta, None)
        }
    }
}

/// A contact whose record names the withdrawn format v2: kept only so its
/// pad can be erased with `pad remove` (see [`crate`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Withdrawn {
    pub name: String,
    pub pad_id: String,
}

/// How a pad file does not match its record (found at start).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Damage {
    /// No pad file.
    Missing,
    /// The file is `found` bytes long; the record says the pad is `size`.
    WrongSize { found: u64, size: u64 },
}

impl Damage {
    fn describe(self) -> String {
        match self {
            Damage::Missing => "the pad file is missing".to_string(),
            Damage::WrongSize { found, size } => format!(
                "the pad file is {found} bytes but the pad is {size} bytes{}",
                if found < size { ": truncated" } else { "" }
            ),
        }
    }
}

impl Live {
    fn file(&self) -> Result<&dyn VFile> {
        self.usable()?;
        self.file
            .as_deref()
            .ok_or_else(|| self.damage_error(Damage::Missing))
    }

    /// Refuses a damaged pad (before anything else is looked at).
    fn usable(&self) -> Result<()> {
        match self.damage {
            Some(d) => Err(self.damage_error(d)),
            None => Ok(()),
        }
    }

    fn damage_error(&self, d: Damage) -> Error {
        let contact = self.meta.name.clone();
        match d {
            Damage::Missing => Error::PadFileMissing { contact },
            Damage::WrongSize { .. } => Error::PadDamaged {
                contact,
                reason: d.describe(),
            },
        }
    }
}

/// The pad store on a data directory. All methods take `&self`; one
/// internal lock serialises them, so the store can be shared between
/// threads. A data directory is used by one process at a time.
pub struct PadStore {
    dir: PathBuf,
    vfs: Arc<dyn Vfs>,
    opts: StoreOptions,
    state: Mutex<BTreeMap<String, Live>>,
    /// Contacts whose pads are format v2 (withdrawn): listed, refused for
    /// everything but `remove`.
    withdrawn: Mutex<BTreeMap<String, Withdrawn>>,
    /// The master key of an encrypted data directory (see
    /// [`PadStore::open_with_vfs_keyed`]); `None`: a plain one.
    key: Option<MasterKey>,
    /// Salts of pad files being written (temporary path -> salt), until
    /// [`PadStore::add_contact`] puts the salt in the contact's record.
    salts: Mutex<HashMap<PathBuf, [u8; 16]>>,
    _lock: Box<dyn Any + Send + Sync>,
}

impl std::fmt::Debug for PadStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PadStore").field("dir", &self.dir).finish()
    }
}

/// Check a contact name: 1..=64 of `[A-Za-z0-9._@-]`, not starting with '.'.
pub fn validate_contact_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'));
    if ok {
        Ok(())
    } else {
        Err(Error::BadContactName(name.to_string()))
    }
}

impl PadStore {
    /// Open (or initialise) the data directory with default options.
    pub fn open_dir(dir: impl AsRef<Path>) -> Result<PadStore> {
        Self::open_dir_with(dir, StoreOptions::default())
    }

    /// Open (or initialise) the data directory on the real file system.
    ///
    /// A missing or empty directory (or one holding only the appliance's
    /// [`DEVICE_SETTINGS_FILE`]) is initialised. A non-empty directory
    /// without our marker is refused with [`Error::NotOurs`], a layout-1
    /// directory with [`Error::OldLayout`]. On open, the modes of the
    /// directory and everything in it are set to 0700/0600, any erase a
    /// crash interrupted is finished, and each contact's in-memory send
    /// send offset starts at its durable reserved bound.
    pub fn open_dir_with(dir: impl AsRef<Path>, opts: StoreOptions) -> Result<PadStore> {
        let dir = dir.as_ref();
        if !dir.exists() {
            // Create each missing component (0700) and fsync its parent, so
            // the new directory's entry survives a power cut.
            let mut missing = Vec::new();
            let mut p = dir;
            while !p.as_os_str().is_empty() && !p.exists() {
                missing.push(p);
                p = p.parent().unwrap_or(Path::new(""));
            }
            for d in missing.into_iter().rev() {
                match std::fs::DirBuilder::new().mode(0o700).create(d) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => {
                        return Err(Error::io(
                            format!("cannot create data directory {}", d.display()),
                            e,
                        ));
                    }
                }
                let parent = match d.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p,
                    _ => Path::new("."),
                };
                super::fsutil::sync_dir(parent)?;
            }
        }
        // Absolute, so the store's paths do not depend on the working directory.
        let dir = std::fs::canonicalize(dir)
            .ctx(|| format!("cannot resolve data directory {}", dir.display()))?;
        Self::open_with_vfs(Arc::new(RealFs), dir, opts)
    }

    /// Open (or initialise) the data directory `dir` (which must exist)
    /// through the storage seam `vfs`: every file operation of the store
    /// goes through it. Tests use [`vfs::Recorder`] and [`vfs::SimFs`].
    pub fn open_with_vfs(vfs: Arc<dyn Vfs>, dir: PathBuf, opts: StoreOptions) -> Result<PadStore> {
        Self::open_with_vfs_keyed(vfs, dir, opts, None)
    }

    /// [`PadStore::open_dir_with`] for an encrypted data directory when
    /// `key` is given (the master key [`vault::unlock`] returned).
    pub fn open_dir_keyed(
        dir: impl AsRef<Path>,
        opts: StoreOptions,
        key: Option<MasterKey>,
    ) -> Result<PadStore> {
        let dir = dir.as_ref();
        let canon = std::fs::canonicalize(dir)
            .ctx(|| format!("cannot resolve data directory {}", dir.display()))?;
        Self::open_with_vfs_keyed(Arc::new(RealFs), canon, opts, key)
    }

    /// Open the data directory through `vfs`, encrypted under `key` or
    /// plain (`None`).
    ///
    /// An encrypted data directory has a key file ([`vault::KEY_FILE`]);
    /// opening it without a key is [`Error::PassphraseNeeded`], opening a
    /// plain one with a key [`Error::NotEncrypted`] (there is no
    /// conversion: an encrypted directory is made empty, with
    /// `otc-device init` or the first-boot screen). In an encrypted one:
    /// * pad files are ChaCha20 under a per-pad key
    ///   ([`vault::PadCipher`]), read and written at any offset; erase
    ///   after use writes raw zeros over the ciphertext;
    /// * contact records and used-pad marks are sealed blobs
    ///   ([`MasterKey::seal_blob`], purposes `contact` and `used`);
    /// * file names hide contact names and pad ids
    ///   ([`MasterKey::hide_name`]): `contacts/<h>.json`, `pads/<h>.pad`,
    ///   `used/<h>`.
    ///
    /// The order of writes and syncs (the durable send bound before any
    /// byte of a block is read, erase after use) is the same either way:
    /// encryption sits below it, in the file wrapper and the record codec.
    pub fn open_with_vfs_keyed(
        vfs: Arc<dyn Vfs>,
        dir: PathBuf,
        opts: StoreOptions,
        key: Option<MasterKey>,
    ) -> Result<PadStore> {
        let v = vfs.as_ref();
        Self::claim_dir(v, &dir)?;
        Self::check_key(v, &dir, key.as_ref())?;
        let lock = Self::take_lock(v, &dir)?;
        Self::make_subdirs(v, &dir)?;
        fix_modes(v, &dir)?;
        let opts = StoreOptions {
            reserve_block: opts.reserve_block.max(1),
            journal_slots: opts.journal_slots,
        };
        let store = PadStore {
            dir,
            vfs,
            opts,
            state: Mutex::new(BTreeMap::new()),
            withdrawn: Mutex::new(BTreeMap::new()),
            key,
            salts: Mutex::new(HashMap::new()),
            _lock: lock,
        };
        store.load_contacts()?;
        Ok(store)
    }

    /// Check that `dir` is a data directory of ours (its marker says
    /// layout 2; layout 1 is [`Error::OldLayout`]), or make it one when it
    /// holds nothing but what may come before the store (the key file,
    /// its failure counter, the settings file).
    fn claim_dir(v: &dyn Vfs, dir: &Path) -> Result<()> {
        let marker = dir.join(MARKER_FILE);
        match v
            .kind(dir)
            .ctx(|| format!("cannot stat {}", dir.display()))?
        {
            Some(Kind::Dir) => {}
            _ => return Err(Error::NotOurs(dir.to_path_buf())),
        }
        match v
            .kind(&marker)
            .ctx(|| format!("cannot stat {}", marker.display()))?
        {
            Some(Kind::File) => {
                let text = vfs::read_all(v, &marker, 4096)
                    .ctx(|| format!("cannot read {}", marker.display()))?;
                let first = String::from_utf8_lossy(&text)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string();
                if first == MARKER_MAGIC_LAYOUT_1 {
                    return Err(Error::OldLayout(dir.to_path_buf()));
                }
                if first != MARKER_MAGIC {
                    return Err(Error::NotOurs(dir.to_path_buf()));
                }
                Ok(())
            }
            Some(_) => Err(Error::NotOurs(dir.to_path_buf())),
            None => {
                let entries = v
                    .read_dir(dir)
                    .ctx(|| format!("cannot read {}", dir.display()))?;
                // The key file (and its counter) come first in a new
                // encrypted directory; the appliance's settings file may be
                // there before either (see DEVICE_SETTINGS_FILE).
                if entries.iter().any(|e| {
                    e != vault::KEY_FILE && e != vault::FAILURES_FILE && e != DEVICE_SETTINGS_FILE
                }) {
                    return Err(Error::NotOurs(dir.to_path_buf()));
                }
                Self::init(v, dir)
            }
        }
    }

    /// An encrypted directory (it has a key file) needs a key, and a plain
    /// one takes none.
    fn check_key(v: &dyn Vfs, dir: &Path, key: Option<&MasterKey>) -> Result<()> {
        let keyfile = dir.join(vault::KEY_FILE);
        let encrypted = v
            .kind(&keyfile)
            .ctx(|| format!("cannot stat {}", keyfile.display()))?
            .is_some();
        match (encrypted, key) {
            (true, None) => Err(Error::PassphraseNeeded(dir.to_path_buf())),
            (false, Some(_)) => Err(Error::NotEncrypted(dir.to_path_buf())),
            _ => Ok(()),
        }
    }

    /// Lock the marker for this process. A process that is just exiting
    /// (or a forked child that has not yet exec'd and so still shares our
    /// descriptor) can hold the lock for a moment: retry briefly before
    /// calling the directory busy ([`Error::Locked`]).
    fn take_lock(v: &dyn Vfs, dir: &Path) -> Result<Box<dyn Any + Send + Sync>> {
        let marker = dir.join(MARKER_FILE);
        let deadline = Instant::now() + LOCK_WAIT;
        loop {
            match v
                .try_lock(&marker)
                .ctx(|| format!("cannot lock {}", marker.display()))?
            {
                Some(token) => return Ok(token),
                None if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                None => return Err(Error::Locked(dir.to_path_buf())),
            }
        }
    }

    /// Make each missing subdirectory (contacts, pads, used), durably.
    fn make_subdirs(v: &dyn Vfs, dir: &Path) -> Result<()> {
        for sub in [CONTACTS_DIR, PADS_DIR, USED_DIR] {
            let p = dir.join(sub);
            match v.kind(&p).ctx(|| format!("cannot stat {}", p.display()))? {
                Some(Kind::Dir) => {}
                Some(_) => return Err(Error::NotOurs(dir.to_path_buf())),
                None => {
                    v.create_dir(&p)
                        .ctx(|| format!("cannot create {}", p.display()))?;
                    v.sync_dir(dir)
                        .ctx(|| format!("cannot sync directory {}", dir.display()))?;
                }
            }
        }
        Ok(())
    }

    fn init(v: &dyn Vfs, dir: &Path) -> Result<()> {
        let marker = dir.join(MARKER_FILE);
        let text = format!(
            "{MARKER_MAGIC}\n# This directory holds one-time pads. They are secret.\n# Remove pads with `otc-device pad remove`, not by deleting files.\n# A copy of this directory (a backup, a cloned card) reuses pad: never restore one.\n"
        );
        replace_durably(v, &marker, text.as_bytes())
            .ctx(|| format!("cannot create {}", marker.display()))
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The options in force.
    pub fn options(&self) -> StoreOptions {
        self.opts
    }

    /// The master key of an encrypted data directory (for the appliance's
    /// own sealed files next to the store: read positions, settings).
    pub fn master_key(&self) -> Option<&MasterKey> {
        self.key.as_ref()
    }

    /// Whether the data directory is encrypted (opened with a key).
    pub fn encrypted(&self) -> bool {
        self.key.is_some()
    }

    /// A file name for `what`: itself in a plain directory, hidden
    /// ([`MasterKey::hide_name`]) in an encrypted one.
    fn file_name(&self, kind: &str, what: &str) -> String {
        match &self.key {
            Some(k) => k.hide_name(kind, what),
            None => what.to_string(),
        }
    }

    /// The path of the pad file with id `pad_id` (its name hidden in an
    /// encrypted directory).
    pub fn pad_path(&self, pad_id: &str) -> PathBuf {
        let n = self.file_name("pad", pad_id);
        self.dir.join(PADS_DIR).join(format!("{n}.pad"))
    }

    fn record_path(&self, name: &str) -> PathBuf {
        let n = self.file_name("contact", name);
        self.dir.join(CONTACTS_DIR).join(format!("{n}.json"))
    }

    /// The receipt journal of contact `name` ([`crate::journal`]), next
    /// to its record.
    fn journal_path(&self, name: &str) -> PathBuf {
        let n = self.file_name("receipts", name);
        self.dir
            .join(CONTACTS_DIR)
            .join(format!("{n}{}", journal::SUFFIX))
    }

    fn used_path(&self, pad_id: &str) -> PathBuf {
        self.dir.join(USED_DIR).join(self.file_name("used", pad_id))
    }

    /// Seal a record's bytes in an encrypted directory.
    fn encode(&self, purpose: &str, plain: &[u8]) -> Vec<u8> {
        match &self.key {
            Some(k) => k.seal_blob(purpose, plain),
            None => plain.to_vec(),
        }
    }

    /// Open a record's bytes in an encrypted directory.
    fn decode(&self, purpose: &str, path: &Path, stored: Vec<u8>) -> Result<Vec<u8>> {
        match &self.key {
            Some(k) => k.open_blob(purpose, &stored).map_err(|e| match e {
                Error::CorruptMeta { reason, .. } => Error::CorruptMeta {
                    what: path.display().to_string(),
                    reason,
                },
                e => e,
            }),
            None => Ok(stored),
        }
    }

    /// The pad file of `meta` as the store reads and writes it: through
    /// its cipher in an encrypted directory.
    fn wrap_pad(&self, file: Box<dyn VFile>, meta: &ContactMeta) -> Result<Box<dyn VFile>> {
        let Some(k) = &self.key else {
            return Ok(file);
        };
        let salt = meta
            .file_salt
            .as_deref()
            .and_then(|h| hex::decode(h).ok())
            .and_then(|b| <[u8; 16]>::try_from(b.as_slice()).ok())
            .ok_or_else(|| Error::CorruptMeta {
                what: meta.name.clone(),
                reason: "the record of an encrypted pad has no valid file salt".into(),
            })?;
        Ok(Box::new(CryptFile {
            inner: file,
            cipher: k.pad_cipher(&salt),
        }))
    }

    /// Open `meta`'s pad file for reading, decrypted (an export).
    pub(crate) fn open_pad_read(&self, meta: &ContactMeta) -> Result<Box<dyn VFile>> {
        let path = self.pad_path(&meta.pad_id);
        let f = self
            .vfs
            .open(&path, OpenHow::Read)
            .ctx(|| format!("cannot open the pad file for {}", meta.name))?;
        self.wrap_pad(f, meta)
    }

    /// The storage seam this store does its file I/O through.
    pub fn vfs(&self) -> &dyn Vfs {
        self.vfs.as_ref()
    }

    /// Create a new private temporary pad file in the pads directory (same
    /// filesystem as the final pad file, so the rename into place is
    /// atomic). On failure later, hand it to [`PadStore::discard_temp`].
    pub(crate) fn create_temp_pad(&self) -> Result<(PathBuf, Box<dyn VFile>)> {
        let tmp = self
            .dir
            .join(PADS_DIR)
            .join(format!("new-{}.tmp", super::fsutil::token()));
        let f = self
            .vfs
            .open(&tmp, OpenHow::CreateNew)
            .ctx(|| format!("cannot create {}", tmp.display()))?;
        let Some(k) = &self.key else {
            return Ok((tmp, f));
        };
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt).map_err(|e| Error::Rng(e.to_string()))?;
        lock_map(&self.salts).insert(tmp.clone(), salt);
        let f: Box<dyn VFile> = Box::new(CryptFile {
            inner: f,
            cipher: k.pad_cipher(&salt),
        });
        Ok((tmp, f))
    }

    /// Best-effort erase and delete of a temporary pad file (cleanup path;
    /// errors are ignored, and the next open deletes any leftover).
    pub(crate) fn discard_temp(&self, tmp: &Path) {
        lock_map(&self.salts).remove(tmp);
        let _ = shred(self.vfs(), tmp, &mut |_, _| {});
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Live>> {
        // A panic while holding the lock cannot leave a send offset behind a used
        // byte (the send offset moves before bytes are read), so the state is safe
        // to keep using.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Write a contact record durably: write `<name>.json.tmp`, fsync it,
    /// rename it over `<name>.json`, fsync the directory. When this
    /// returns, the record is on stable storage; a crash at any point
    /// leaves either the old or the new record, never a mix.
    fn persist(&self, meta: &ContactMeta) -> Result<()> {
        let v = self.vfs();
        let value = serde_json::to_vec(meta).map_err(|e| Error::CorruptMeta {
            what: meta.name.clone(),
            reason: e.to_string(),
        })?;
        let what = || format!("cannot write the record of {}", meta.name);
        let value = self.encode("contact", &value);
        replace_durably(v, &self.record_path(&meta.name), &value).ctx(what)
    }

    /// Delete a contact's record durably.
    fn unpersist(&self, name: &str) -> Result<()> {
        let v = self.vfs();
        let dir = self.dir.join(CONTACTS_DIR);
        let what = || format!("cannot delete the record of {name}");
        match v.remove_file(&self.record_path(name)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io(what(), e)),
        }
        v.sync_dir(&dir).ctx(what)
    }

    /// Whether this data directory ever held the pad `pad_id`.
    fn was_used(&self, pad_id: &str) -> Result<bool> {
        let p = self.used_path(pad_id);
        Ok(self
            .vfs
            .kind(&p)
            .ctx(|| format!("cannot stat {}", p.display()))?
            .is_some())
    }

    /// Record durably that this data directory holds (or made) `pad_id`.
    /// The record is never removed.
    fn mark_used(&self, pad_id: &str, origin: Origin) -> Result<()> {
        if self.was_used(pad_id)? {
            return Ok(());
        }
        let v = self.vfs();
        let p = self.used_path(pad_id);
        let what = || format!("cannot record pad {pad_id} as used");
        let f = v.open(&p, OpenHow::CreateNew).ctx(what)?;
        let text = format!("{}\n", serde_json::to_string(&origin).unwrap_or_default());
        let text = self.encode("used", text.as_bytes());
        f.write_all_at(&text, 0)
            .and_then(|_| f.sync_all())
            .ctx(what)?;
        drop(f);
        v.sync_dir(&self.dir.join(USED_DIR)).ctx(what)
    }

    /// Load all contacts, finish interrupted erases, remove orphan files.
    /// The steps, in order: drop interrupted record writes, load each
    /// record (with its pad file, finishing its erase), shred pad files
    /// nobody owns.
    fn load_contacts(&self) -> Result<()> {
        let mut state = self.lock();
        let names = self.drop_interrupted_records()?;
        let cdir = self.dir.join(CONTACTS_DIR);
        for fname in &names {
            let path = cdir.join(fname);
            let Some(name) = fname.strip_suffix(".json") else {
                continue;
            };
            let Some(mut meta) = self.read_record(&path, name)? else {
                continue;
            };
            self.replay_receipts(&mut meta)?;
            // A crash between writing the record and the used-pad mark
            // leaves the mark missing: add it.
            self.mark_used(&meta.pad_id, meta.origin)?;
            let live = self.load_pad(meta)?;
            state.insert(live.meta.name.clone(), live);
        }
        self.drop_orphan_journals(&state, &names)?;
        self.shred_orphan_pads(&state)
    }

    /// Receipt journals of no contact (a removal cut short): deleted. They
    /// hold ranges, never pad bytes.
    fn drop_orphan_journals(&self, state: &BTreeMap<String, Live>, names: &[String]) -> Result<()> {
        let v = self.vfs();
        let cdir = self.dir.join(CONTACTS_DIR);
        let known: Vec<PathBuf> = state.keys().map(|n| self.journal_path(n)).collect();
        let mut removed = false;
        for fname in names.iter().filter(|n| n.ends_with(journal::SUFFIX)) {
            let path = cdir.join(fname);
            if !known.contains(&path) {
                v.remove_file(&path)
                    .ctx(|| format!("cannot remove {}", path.display()))?;
                removed = true;
            }
        }
        if removed {
            v.sync_dir(&cdir)
                .ctx(|| format!("cannot sync directory {}", cdir.display()))?;
        }
        Ok(())
    }

    /// Remove record writes a crash interrupted (`*.tmp`): the old record
    /// (or none) is the durable truth. Returns the other file names in
    /// the contacts directory.
    fn drop_interrupted_records(&self) -> Result<Vec<String>> {
        let v = self.vfs();
        let cdir = self.dir.join(CONTACTS_DIR);
        let names = v
            .read_dir(&cdir)
            .ctx(|| format!("cannot read {}", cdir.display()))?;
        let (tmps, names): (Vec<String>, Vec<String>) = names
            .into_iter()
            .map(|n| n.to_string_lossy().to_string())
            .partition(|n| n.ends_with(".tmp"));
        for fname in &tmps {
            let path = cdir.join(fname);
            v.remove_file(&path)
                .ctx(|| format!("cannot remove {}", path.display()))?;
        }
        if !tmps.is_empty() {
            v.sync_dir(&cdir)
                .ctx(|| format!("cannot sync directory {}", cdir.display()))?;
        }
        Ok(names)
    }

    /// Read and check the record of contact `name` at `path`. A withdrawn
    /// (format v2) record is kept aside in `self.withdrawn` and gives
    /// `None`.
    fn read_record(&self, path: &Path, name: &str) -> Result<Option<ContactMeta>> {
        let bytes = vfs::read_all(self.vfs(), path, MAX_RECORD)
            .ctx(|| format!("cannot read {}", path.display()))?;
        let bytes = self.decode("contact", path, bytes)?;
        if let Some(w) = withdrawn_record(&bytes, name) {
            // Format v2 is withdrawn: keep the contact only so that
            // `pad remove` can erase its pad (see [`crate`]).
            self.mark_used(&w.pad_id, Origin::Imported)?;
            lock_map(&self.withdrawn).insert(w.name.clone(), w);
            return Ok(None);
        }
        let corrupt = |reason: String| Error::CorruptMeta {
            what: path.display().to_string(),
            reason,
        };
        let mut meta: ContactMeta =
            serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        // Version 1 records (v1 pads only; v2 is caught above) read
        // as version 2 with empty v3 fields.
        let known =
            meta.version == META_VERSION || (meta.version == 1 && meta.format == Format::V1);
        if !known || self.record_path(&meta.name) != path {
            return Err(corrupt(format!(
                "record version {} for contact {:?} is not supported here",
                meta.version, meta.name
            )));
        }
        meta.version = META_VERSION;
        if meta.format == Format::V3
            && (meta.v3_region(Side::A).is_none() || meta.v3_region(Side::B).is_none())
        {
            return Err(corrupt(format!(
                "a v3 pad of {} bytes split at {} leaves a side without room for its key",
                meta.size, meta.split
            )));
        }
        Ok(Some(meta))
    }

    /// Open the pad file of `meta` and finish any erase a crash
    /// interrupted. A missing or wrong-sized file gives a damaged contact.
    fn load_pad(&self, mut meta: ContactMeta) -> Result<Live> {
        let file = match self.open_pad_file(&meta)? {
            Ok(f) => f,
            // Keep the contact so it can be listed and removed; its file
            // is closed and never written (an interrupted erase stays in
            // the record, and is done if the right file comes back; `pad
            // remove` shreds it anyway).
            Err(damage) => return Ok(Live::damaged(meta, damage)),
        };
        self.finish_erase(&mut meta, file.as_ref())?;
        // Read a message at a time from here on (see `VFile::read_sparsely`):
        // no readahead of pad bytes nobody asked for, and nothing of the
        // pad kept in memory from before this start. Besides, small writes
        // (each erase) into pages cached as large folios (as a pad written
        // whole is, on kernels that cache ext4 files so) cost 3 to 5 times
        // as much as into pages read one at a time.
        file.read_sparsely(true);
        Ok(Live::new(meta, Some(file)))
    }

    /// The pad file of `meta`, opened for writing, or what is wrong with
    /// it (missing, wrong size).
    fn open_pad_file(
        &self,
        meta: &ContactMeta,
    ) -> Result<std::result::Result<Box<dyn VFile>, Damage>> {
        let path = self.pad_path(&meta.pad_id);
        match self.vfs().open(&path, OpenHow::ReadWrite) {
            Ok(f) => {
                let f = self.wrap_pad(f, meta)?;
                let found = f
                    .size()
                    .ctx(|| format!("cannot stat pad file {} for {}", path.display(), meta.name))?;
                if found == meta.size {
                    Ok(Ok(f))
                } else {
                    Ok(Err(Damage::WrongSize {
                        found,
                        size: meta.size,
                    }))
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Err(Damage::Missing)),
            Err(e) => Err(Error::io(
                format!("cannot open pad file {} for {}", path.display(), meta.name),
                e,
            )),
        }
    }

    /// Finish any erase a crash interrupted: everything used or reserved
    /// on the send side, and ranges recorded as opened or burned whose
    /// erase may not have reached the disk. v3: the tag masks of slots
    /// used or reserved likewise (never `r`, which lives as long as the
    /// pad).
    fn finish_erase(&self, meta: &mut ContactMeta, file: &dyn VFile) -> Result<()> {
        if meta.erased >= meta.reserved
            && meta.slots_erased >= meta.slots_reserved
            && meta.pending_erase.is_empty()
        {
            return Ok(());
        }
        let r = meta.count_range(meta.side, meta.erased, meta.reserved);
        let mut ranges = vec![r];
        if let Some(s) = meta.slots_range(meta.side, meta.slots_erased, meta.slots_reserved) {
            ranges.push(s);
        }
        ranges.extend(meta.pending_erase.iter().copied());
        for p in &ranges {
            zero_at(file, p.lo, p.len())
                .ctx(|| format!("cannot erase used pad for {}", meta.name))?;
        }
        file.sync_data()
            .ctx(|| format!("cannot sync pad file for {}", meta.name))?;
        meta.erased = meta.reserved;
        meta.slots_erased = meta.slots_reserved;
        meta.pending_erase.clear();
        self.persist(meta)
    }

    /// Pad files nobody owns (a crash during creation, import or removal)
    /// are erased and deleted.
    fn shred_orphan_pads(&self, state: &BTreeMap<String, Live>) -> Result<()> {
        let v = self.vfs();
        let mut known: Vec<PathBuf> = state
            .values()
            .map(|l| self.pad_path(&l.meta.pad_id))
            .collect();
        known.extend(
            lock_map(&self.withdrawn)
                .values()
                .map(|w| self.pad_path(&w.pad_id)),
        );
        let pads = self.dir.join(PADS_DIR);
        let entries = v
            .read_dir(&pads)
            .ctx(|| format!("cannot read {}", pads.display()))?;
        for e in entries {
            let p = pads.join(e);
            if !known.contains(&p)
                && v.kind(&p).ctx(|| format!("cannot stat {}", p.display()))? == Some(Kind::File)
            {
                shred(v, &p, &mut |_, _| {})?;
            }
        }
        Ok(())
    }

    /// Record a new contact whose pad bytes are in `tmp_pad` (a file in the
    /// pads directory). The file is renamed into place, then the metadata
    /// is written and flushed.
    pub(crate) fn add_contact(&self, mut meta: ContactMeta, tmp_pad: &Path) -> Result<()> {
        validate_contact_name(&meta.name)?;
        let mut state = self.lock();
        if state.contains_key(&meta.name) {
            return Err(Error::ContactExists(meta.name));
        }
        if let Some(l) = state.values().find(|l| l.meta.pad_id == meta.pad_id) {
            return Err(Error::PadAlreadyStored {
                existing: l.meta.name.clone(),
            });
        }
        if self.was_used(&meta.pad_id)? {
            return Err(Error::PadUsedBefore {
                pad_id: meta.pad_id.clone(),
            });
        }
        meta.version = META_VERSION;
        if self.key.is_some() {
            let salt = lock_map(&self.salts).remove(tmp_pad).ok_or_else(|| {
                Error::io(
                    format!("cannot add {}", meta.name),
                    std::io::Error::other("the new pad file was not made by this store"),
                )
            })?;
            meta.file_salt = Some(hex::encode(salt));
        }
        let v = self.vfs();
        self.check_keys(&meta, tmp_pad)?;
        let path = self.pad_path(&meta.pad_id);
        v.rename(tmp_pad, &path)
            .ctx(|| format!("cannot create {}", path.display()))?;
        let res = (|| {
            let pads = self.dir.join(PADS_DIR);
            v.sync_dir(&pads)
                .ctx(|| format!("cannot sync directory {}", pads.display()))?;
            let file = v
                .open(&path, OpenHow::ReadWrite)
                .ctx(|| format!("cannot open {}", path.display()))?;
            let file = self.wrap_pad(file, &meta)?;
            // As at start (`load_pad`), but what the making or the import
            // left cached stays: an export reads the whole pad next.
            file.read_sparsely(false);
            self.persist(&meta)?;
            self.mark_used(&meta.pad_id, meta.origin)?;
            Ok(file)
        })();
        match res {
            Ok(file) => {
                state.insert(meta.name.clone(), Live::new(meta, Some(file)));
                Ok(())
            }
            Err(e) => {
                let _ = self.unpersist(&meta.name);
                let _ = shred(v, &path, &mut |_, _| {});
                Err(e)
            }
        }
    }

    /// A v3 pad must give each side room for `r` and one slot, and
    /// neither side's `r` may be zero after Poly1305's clamp (then every
    /// tag would equal `s_k`): [`Error::WeakKey`]. Reads the two keys from
    /// the pad file `pad` before it becomes a contact's.
    fn check_keys(&self, meta: &ContactMeta, pad: &Path) -> Result<()> {
        if meta.format != Format::V3 {
            return Ok(());
        }
        let f = self
            .vfs
            .open(pad, OpenHow::ReadWrite)
            .ctx(|| format!("cannot open {}", pad.display()))?;
        let f = self.wrap_pad(f, meta)?;
        for side in [Side::A, Side::B] {
            let g = meta.v3_region(side).ok_or(Error::BadSplit {
                split: meta.split,
                size: meta.size,
            })?;
            let r = read_key(f.as_ref(), g.key_span().lo)
                .ctx(|| format!("cannot read {}", pad.display()))?;
            if v3::is_weak_r(&r) {
                return Err(Error::WeakKey {
                    contact: meta.name.clone(),
                    side,
                });
            }
        }
        Ok(())
    }

    /// Add a contact whose pad bytes are in memory already, as side `side`
    /// of a pad split at `split`: what `pad import` does with an export
    /// file, for pads a program holds (the spec's session vectors in the
    /// tests). The same checks as an import (name, pad id never held
    /// before, a weak v3 key: [`Error::WeakKey`]), except the 256-byte
    /// minimum: a side needs only room for v3's key and one slot.
    #[doc(hidden)]
    pub fn import_pad_bytes(
        &self,
        contact: &str,
        pad: &[u8],
        split: u64,
        side: Side,
        format: Format,
    ) -> Result<()> {
        use sha2::{Digest, Sha256};
        validate_contact_name(contact)?;
        self.check_new_contact(contact)?;
        let size = pad.len() as u64;
        let min = v3::MIN_REGION;
        if split < min || split >= size || size - split < min {
            return Err(Error::BadSplit { split, size });
        }
        let pad_id = hex::encode(Sha256::digest(pad));
        self.check_pad_id_free(&pad_id)?;
        let (tmp, f) = self.create_temp_pad()?;
        let written = f
            .write_all_at(pad, 0)
            .and_then(|_| f.sync_all())
            .ctx(|| format!("cannot write {}", tmp.display()));
        drop(f);
        let meta = ContactMeta::new(
            contact,
            &pad_id,
            size,
            split,
            side,
            format,
            Origin::Imported,
        );
        let res = written.and_then(|_| self.add_contact(meta, &tmp));
        if res.is_err() {
            self.discard_temp(&tmp);
        }
        res
    }

    /// The bytes of a stored pad in `r`, as the store reads them (through
    /// the cipher in an encrypted directory; an erased range there reads
    /// as keystream). For tests that look at what the store sees.
    #[doc(hidden)]
    pub fn debug_read_pad(&self, pad_id: &str, r: Range) -> Result<Vec<u8>> {
        let state = self.lock();
        let l = state
            .values()
            .find(|l| l.meta.pad_id == pad_id)
            .ok_or_else(|| Error::UnknownContact(pad_id.to_string()))?;
        let b = read_range(l.file()?, r).ctx(|| format!("cannot read pad {pad_id}"))?;
        Ok(b.to_vec())
    }

    /// Fail early (before long work) if a contact name is taken or invalid.
    pub fn check_new_contact(&self, name: &str) -> Result<()> {
        validate_contact_name(name)?;
        if self.lock().contains_key(name) || lock_map(&self.withdrawn).contains_key(name) {
            return Err(Error::ContactExists(name.to_string()));
        }
        Ok(())
    }

    /// Contacts whose pads are format v2, which is withdrawn: they can only
    /// be removed (`pad remove`), which erases their pads.
    pub fn withdrawn(&self) -> Vec<Withdrawn> {
        lock_map(&self.withdrawn).values().cloned().collect()
    }

    /// The error for a contact name that is not usable: withdrawn (v2) or
    /// unknown.
    fn missing(&self, name: &str) -> Error {
        if lock_map(&self.withdrawn).contains_key(name) {
            Error::FormatWithdrawn {
                what: format!("the pad for {name:?}"),
                remedy: format!("erase it with `otc-device pad remove {name}`"),
            }
        } else {
            Error::UnknownContact(name.to_string())
        }
    }

    /// Fail early if a pad with this fingerprint is stored now
    /// ([`Error::PadAlreadyStored`]) or was ever held or made by this data
    /// directory ([`Error::PadUsedBefore`]).
    pub(crate) fn check_pad_id_free(&self, pad_id: &str) -> Result<()> {
        if let Some(l) = self.lock().values().find(|l| l.meta.pad_id == pad_id) {
            return Err(Error::PadAlreadyStored {
                existing: l.meta.name.clone(),
            });
        }
        if self.was_used(pad_id)? {
            return Err(Error::PadUsedBefore {
                pad_id: pad_id.to_string(),
            });
        }
        Ok(())
    }

    /// Names of all contacts, sorted.
    pub fn contacts(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    /// Facts about one contact.
    pub fn contact(&self, name: &str) -> Result<ContactSummary> {
        let state = self.lock();
        let l = state.get(name).ok_or_else(|| self.missing(name))?;
        Ok(summary(l))
    }

    /// Facts about every contact, sorted by name.
    pub fn list(&self) -> Vec<ContactSummary> {
        self.lock().values().map(summary).collect()
    }

    /// Makes `contact` private (every message from it is read on the
    /// device only) or not. The record is durable before this returns; a
    /// damaged pad's record can be changed too.
    pub fn set_private(&self, contact: &str, private: bool) -> Result<()> {
        let mut state = self.lock();
        let l = state
            .get_mut(contact)
            .ok_or_else(|| self.missing(contact))?;
        if l.meta.private == private {
            return Ok(());
        }
        let mut meta = l.meta.clone();
        meta.private = private;
        self.persist(&meta)?;
        l.meta = meta;
        Ok(())
    }

    /// The metadata record of a contact (for tests and diagnostics; it
    /// holds no pad bytes).
    pub fn meta(&self, name: &str) -> Result<ContactMeta> {
        let state = self.lock();
        let l = state.get(name).ok_or_else(|| self.missing(name))?;
        Ok(l.meta.clone())
    }

    /// What sealing a message of `message_len` bytes for `contact` would
    /// cost. No side effects. Fails exactly as [`PadStore::seal`] would for
    /// an unknown contact, an exhausted pad or a message that is too large.
    pub fn quote(&self, contact: &str, message_len: usize) -> Result<Quote> {
        let state = self.lock();
        let l = state.get(contact).ok_or_else(|| self.missing(contact))?;
        l.usable()?;
        let (cost, left) = check_fits(l, contact, message_len)?;
        Ok(Quote {
            contact: contact.to_string(),
            format: l.meta.format,
            message_len: message_len as u64,
            cost,
            pad_left: left,
            pad_left_after: left - cost,
        })
    }

    /// The reservation block for a contact: the configured block, but at
    /// most 1/[`RESERVE_FRACTION`] of its send side (at least 1 byte; a
    /// message larger than the block still reserves its whole cost).
    pub fn reserve_block_for(&self, m: &ContactMeta) -> u64 {
        self.opts
            .reserve_block
            .min(m.send_capacity() / RESERVE_FRACTION)
            .max(1)
    }

    /// Seal `message` for `contact`.
    ///
    /// Order of events: the pad to use is taken from the in-memory send
    /// state (v1: the send offset; v3: the text offset and the slot
    /// counter); if it crosses a durable reserved bound, the pad file is
    /// fdatasync'ed (so every earlier erase is durable) and new bounds, at
    /// least one reservation block ahead (v3: the text bound and the slot
    /// bound, in one record write), are written to the contact's record and
    /// made durable (fsync of the record, rename, fsync of the directory)
    /// *before* any pad byte is read. Then the bytes are read (pread), the
    /// package is sealed, and the bytes are overwritten with zeros (pwrite)
    /// before the package is returned (v3: the text mask and `s_k`; `r`
    /// stays for the pad's life). A crash may skip the rest of a block; it
    /// can never hand out the same byte or slot twice.
    pub fn seal(&self, contact: &str, message: &[u8]) -> Result<Sealed> {
        let mut state = self.lock();
        let l = state
            .get_mut(contact)
            .ok_or_else(|| self.missing(contact))?;
        l.usable()?;
        if l.meta.format == Format::V3 {
            return self.seal_v3(l, contact, message);
        }
        let (cost, left) = check_fits(l, contact, message.len())?;
        let used = l.send_offset;
        let new_offset = used + cost;
        if new_offset > l.meta.reserved {
            l.file()?
                .sync_data()
                .ctx(|| format!("cannot sync pad file for {contact}"))?;
            let mut m = l.meta.clone();
            m.erased = used;
            m.reserved = new_offset
                .max(used.saturating_add(self.reserve_block_for(&m)))
                .min(m.send_capacity());
            self.persist(&m)?;
            l.meta = m;
        }
        l.send_offset = new_offset;
        let range = l.meta.send_range(used, cost);
        let index = l.meta.index_of(l.meta.side, range);
        let sealed = read_pad(l, range, l.meta.descending(l.meta.side))
            .and_then(|pad| otc_proto::v1::seal(index, message, &pad).map_err(Error::Proto));
        // Erase whether or not sealing worked: the range is spent either
        // way, and the next block crossing records it as erased.
        let erased = zero_at(l.file()?, range.lo, range.len())
            .ctx(|| format!("cannot erase used pad for {contact}"));
        let package = sealed?;
        erased?;
        Ok(Sealed {
            package,
            index,
            slot: None,
            cost,
            pad_left: left - cost,
        })
    }

    /// [`PadStore::seal`] for a v3 contact.
    fn seal_v3(&self, l: &mut Live, contact: &str, message: &[u8]) -> Result<Sealed> {
        let g = v3_region(&l.meta, l.meta.side)?;
        let (cost, left) = check_fits(l, contact, message.len())?;
        let n = message.len() as u64;
        let head = g
            .next(g.lo + l.send_offset, l.send_slot, n)
            .map_err(|_| exhausted(l, contact, message.len()))?;
        let text_end = l.send_offset + n;
        let slot_end = l.send_slot + 1;
        if text_end > l.meta.reserved || slot_end > l.meta.slots_reserved {
            l.file()?
                .sync_data()
                .ctx(|| format!("cannot sync pad file for {contact}"))?;
            let mut m = l.meta.clone();
            m.erased = l.send_offset;
            m.slots_erased = l.send_slot;
            let (text, slots) =
                self.v3_reservation(&m, g, (l.send_offset, l.send_slot), (text_end, slot_end));
            m.reserved = text;
            m.slots_reserved = slots;
            self.persist(&m)?;
            l.meta = m;
        }
        l.send_offset = text_end;
        l.send_slot = slot_end;
        let text = Range {
            lo: head.text,
            hi: head.text + n,
        };
        let mask = g.slot_span(head.slot).ok_or(Error::PadExhausted {
            contact: contact.to_string(),
            left: 0,
        })?;
        // What the reservation covers of each stream: the text up to its
        // bound, the masks down to the lowest reserved slot's.
        let text_within = Range {
            lo: g.lo,
            hi: g.lo + l.meta.reserved,
        };
        let masks_within = Range {
            lo: l
                .meta
                .slots_reserved
                .checked_sub(1)
                .and_then(|k| u32::try_from(k).ok())
                .and_then(|k| g.slot_span(k))
                .map_or(mask.lo, |lowest| lowest.lo),
            hi: mask.hi,
        };
        let sealed = (|| {
            let (text_pad, s) = l.send_pad((text, text_within), (mask.into(), masks_within))?;
            // A slot's span is 16 bytes; a window hands out exactly a span.
            let s: &[u8; 16] = s[..].try_into().map_err(|_| {
                Error::Proto(ProtoError::PadLength {
                    expected: 16,
                    got: s.len(),
                })
            })?;
            let r = l.key_r(l.meta.side, g.key_span().lo)?;
            v3::seal(head, message, &text_pad, r, s).map_err(|e| match e {
                ProtoError::WeakKey => Error::WeakKey {
                    contact: contact.to_string(),
                    side: l.meta.side,
                },
                e => Error::Proto(e),
            })
        })();
        // Erase whether or not sealing worked: the text and the slot are
        // spent either way, and the next block crossing records them as
        // erased.
        let file = l.file()?;
        let erased = zero_at(file, text.lo, text.len())
            .and_then(|_| zero_at(file, mask.lo, mask.len()))
            .ctx(|| format!("cannot erase used pad for {contact}"));
        let package = sealed?;
        erased?;
        Ok(Sealed {
            package,
            index: head.text,
            slot: Some(head.slot),
            cost,
            pad_left: left - cost,
        })
    }

    /// The durable v3 send bounds for a message that starts at text count
    /// `text` and slot `slot` and ends at `text_end` and `slot_end`: each
    /// stream reserved a block ahead of where the message starts (or to its
    /// end, if that is further), as v1's offset is; the text block is the
    /// contact's reservation block, the slot block 1/64 of it in slots (at
    /// least one). Near the end of the region, where the two reservations
    /// would overlap, they share the room left between them (the text
    /// bound never passes the lowest reserved mask), so a crash skips pad
    /// but the two streams never claim the same byte.
    fn v3_reservation(
        &self,
        m: &ContactMeta,
        g: v3::Region,
        (text, slot): (u64, u64),
        (text_end, slot_end): (u64, u64),
    ) -> (u64, u64) {
        let block = self.reserve_block_for(m);
        let want_text = text.saturating_add(block).max(text_end) - text_end;
        let want_slots = slot.saturating_add((block / 64).max(1)).max(slot_end) - slot_end;
        // The message fits, so its text ends at or below the lowest mask
        // of the slots it reserves: `hi - 16(slot_end + 1)`.
        let floor = (g.hi - 16 * (slot_end + 1)) - g.lo;
        let room = floor.saturating_sub(text_end);
        let (t, k) = if want_text.saturating_add(want_slots.saturating_mul(16)) <= room {
            (want_text, want_slots)
        } else {
            let t = want_text.min(room / 2);
            (t, want_slots.min((room - t) / 16))
        };
        (text_end + t, slot_end + k)
    }

    /// Check a received package without using anything or showing
    /// anything: for v3 the spec's opening checks 1 to 5 (shape, bounds,
    /// slot opened before, text overlapping an opened range, then the tag,
    /// which reads `r` and `s_k` only); for v1 the range checks, replay,
    /// then the HMAC (which reads the body mask and the key, never the
    /// text mask). So a forgery, a replay or junk is refused here, before
    /// any prompt: [`Error::Replay`] for a slot or range opened before,
    /// [`Error::VerifyFailed`] for a bad tag, [`Error::BadPackage`] or
    /// [`Error::OutOfRegion`] for the rest. What it returns (the skipped
    /// count) is about a package whose tag verified.
    pub fn check_open(&self, contact: &str, package: &[u8]) -> Result<OpenCheck> {
        let state = self.lock();
        let l = state.get(contact).ok_or_else(|| self.missing(contact))?;
        l.usable()?;
        if l.meta.format == Format::V3 {
            let claim = verify_v3(l, package)?;
            return Ok(v3_check(&l.meta, &claim));
        }
        let c = classify(&l.meta, package)?;
        let sender = l.meta.side.other();
        let pad = read_pad(l, c.range, l.meta.descending(sender))?;
        otc_proto::v1::verify(package, &pad).map_err(|e| v1_refusal(&l.meta, e))?;
        Ok(OpenCheck {
            index: c.index,
            slot: None,
            cost: c.range.len(),
            message_len: c.message_len,
            warnings: c.warnings,
        })
    }

    /// Open a package from `contact`.
    ///
    /// Every check of [`PadStore::check_open`] runs again (the state may
    /// have changed while the owner looked at the prompt). Nothing is used
    /// unless the tag verifies. On a good tag the package is recorded as
    /// opened (v3: its slot and its text range, in [`otc_proto::v3::Received`];
    /// v1: its range) together with the pad it used as pending erase,
    /// durably (record fsync, rename, directory fsync); then those bytes
    /// (v3: the text mask and `s_k`) are zeroed on disk and fdatasync'ed;
    /// only then is the message returned. A replay is refused from the
    /// record with [`Error::Replay`], never by finding erased bytes. A bad
    /// tag is [`Error::VerifyFailed`] and changes nothing, on disk or in
    /// memory: the store never burns pad that no genuine message has
    /// passed (see the module docs of [`crate`]).
    pub fn open(&self, contact: &str, package: &[u8]) -> Result<Opened> {
        let mut state = self.lock();
        let l = state
            .get_mut(contact)
            .ok_or_else(|| self.missing(contact))?;
        l.usable()?;
        if l.meta.format == Format::V3 {
            let claim = verify_v3(l, package)?;
            let check = v3_check(&l.meta, &claim);
            let text = Range::from(claim.text);
            let text_pad = read_range(l.file()?, text)
                .ctx(|| format!("cannot read pad file for {contact}"))?;
            let message = v3::decrypt(package, &text_pad).map_err(|e| bad(&l.meta, e))?;
            drop(text_pad);
            let mask = Range::from(claim.mask);
            let slot = u64::from(claim.head.slot);
            self.record_opened(l, Used::V3 { slot, text, mask })?;
            return Ok(Opened {
                message,
                index: check.index,
                slot: check.slot,
                cost: check.cost,
                warnings: check.warnings,
            });
        }
        let c = classify(&l.meta, package)?;
        let sender = l.meta.side.other();
        let pad = read_pad(l, c.range, l.meta.descending(sender))?;
        let result = otc_proto::v1::open(package, &pad);
        drop(pad);
        let message = result.map_err(|e| v1_refusal(&l.meta, e))?;
        self.record_opened(l, Used::V1 { range: c.range })?;
        Ok(Opened {
            message,
            index: c.index,
            slot: None,
            cost: c.range.len(),
            warnings: c.warnings,
        })
    }

    /// Make an open durable before its message is returned, then erase
    /// what it used ([`crate::journal`]). While the contact's journal has
    /// room: one receipt, one fdatasync, and the used bytes zeroed without
    /// a sync of their own (the receipt names them until the pad's next
    /// sync). Otherwise the record path: the record rewritten durably
    /// (record fsync, rename, directory fsync) with the open in it, then
    /// every pending erase done and fdatasync'ed.
    fn record_opened(&self, l: &mut Live, used: Used) -> Result<()> {
        let mut m = l.meta.clone();
        apply_opened(&mut m, &used);
        let slots = self.opts.journal_slots;
        if slots >= 2 && m.journal_seq + 1 - l.journal_base <= slots {
            let receipt = Receipt {
                seq: m.journal_seq + 1,
                pad_id: m.pad_id.clone(),
                opened: used,
            };
            if self.append_receipt(l, &receipt)? {
                m.journal_seq = receipt.seq;
                l.meta = m;
                let file = l.file()?;
                for r in used.used() {
                    zero_at(file, r.lo, r.len())
                        .ctx(|| format!("cannot erase used pad for {}", l.meta.name))?;
                }
                return Ok(());
            }
        }
        self.persist(&m)?;
        l.meta = m;
        l.journal_base = l.meta.journal_seq;
        self.erase_pending(l)
    }

    /// Write `receipt` into the contact's journal and sync it. `false`
    /// (nothing written) when it does not fit a slot: the caller takes the
    /// record path.
    fn append_receipt(&self, l: &mut Live, receipt: &Receipt) -> Result<bool> {
        let name = l.meta.name.clone();
        let what = || format!("cannot record the open for {name}");
        let json = serde_json::to_vec(receipt).map_err(|e| Error::CorruptMeta {
            what: name.clone(),
            reason: e.to_string(),
        })?;
        let Some(slot) = journal::frame(&self.encode("receipt", &json)) else {
            return Ok(false);
        };
        let slots = self.opts.journal_slots;
        let file = match &mut l.journal {
            Some(f) => f,
            none => none.insert(
                journal::open_for_append(self.vfs(), &self.journal_path(&name), slots).ctx(what)?,
            ),
        };
        journal::append(file.as_ref(), slots, receipt.seq, &slot).ctx(what)?;
        Ok(true)
    }

    /// Zero every pending range on disk and sync the pad file: those
    /// erases are durable, and leave the pending list (in memory now, in
    /// the durable record with its next write).
    fn erase_pending(&self, l: &mut Live) -> Result<()> {
        let file = l.file()?;
        let what = || format!("cannot erase used pad for {}", l.meta.name);
        for r in &l.meta.pending_erase {
            zero_at(file, r.lo, r.len()).ctx(what)?;
        }
        file.sync_data().ctx(what)?;
        l.meta.pending_erase.clear();
        Ok(())
    }

    /// Apply the receipts journaled after `meta` was written (see
    /// [`crate::journal`]); their erases join `pending_erase`.
    fn replay_receipts(&self, meta: &mut ContactMeta) -> Result<()> {
        let path = self.journal_path(&meta.name);
        let payloads = journal::read_payloads(self.vfs(), &path)
            .ctx(|| format!("cannot read {}", path.display()))?;
        let found = payloads
            .into_iter()
            .filter_map(|p| {
                let plain = self.decode("receipt", &path, p).ok()?;
                serde_json::from_slice::<Receipt>(&plain).ok()
            })
            .collect();
        for r in journal::in_sequence(found, &meta.pad_id, meta.journal_seq) {
            apply_opened(meta, &r.opened);
            meta.journal_seq = r.seq;
        }
        Ok(())
    }

    /// Erase a contact's pad (overwrite with zeros, sync, delete) and its
    /// metadata. `progress` gets (bytes done, total).
    pub fn remove(&self, contact: &str, progress: &mut dyn FnMut(u64, u64)) -> Result<()> {
        let mut state = self.lock();
        let withdrawn = lock_map(&self.withdrawn).get(contact).cloned();
        if let Some(w) = withdrawn {
            // A v2 pad (withdrawn): erase it the same way.
            self.mark_used(&w.pad_id, Origin::Imported)?;
            let path = self.pad_path(&w.pad_id);
            let v = self.vfs();
            if v.kind(&path)
                .ctx(|| format!("cannot stat {}", path.display()))?
                .is_some()
            {
                shred(v, &path, progress)?;
            }
            lock_map(&self.withdrawn).remove(contact);
            return self.unpersist(contact);
        }
        let l = state.get(contact).ok_or_else(|| self.missing(contact))?;
        // The used-pad mark stays forever: importing this pad again would
        // reuse it. (It is there already; this repairs an older crash.)
        self.mark_used(&l.meta.pad_id, l.meta.origin)?;
        let path = self.pad_path(&l.meta.pad_id);
        let v = self.vfs();
        if v.kind(&path)
            .ctx(|| format!("cannot stat {}", path.display()))?
            .is_some()
        {
            shred(v, &path, progress)?;
        }
        state.remove(contact);
        self.unpersist(contact)?;
        // After the record: a cut in between leaves an orphan journal,
        // deleted at the next start, never a record without its receipts.
        match v.remove_file(&self.journal_path(contact)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(
                format!("cannot delete the receipts of {contact}"),
                e,
            )),
        }
    }

    /// Shut down cleanly: sync pad files and give back each contact's
    /// unused reservation, so a clean stop skips no pad.
    pub fn close(self) -> Result<()> {
        self.release()
    }

    /// Give back each contact's unused reservation durably (pad files
    /// fdatasync'ed, records written and fsync'ed), without closing: the
    /// store stays usable, and the next seal reserves a new block. For a
    /// clean stop that cannot consume the store (e.g. on SIGTERM).
    pub fn release(&self) -> Result<()> {
        let mut state = self.lock();
        for l in state.values_mut() {
            if l.send_offset < l.meta.reserved
                || l.meta.erased < l.send_offset
                || l.send_slot < l.meta.slots_reserved
                || l.meta.slots_erased < l.send_slot
                || !l.meta.pending_erase.is_empty()
            {
                if l.file.is_none() {
                    continue;
                }
                self.erase_pending(l)?;
                let mut m = l.meta.clone();
                m.reserved = l.send_offset;
                m.erased = l.send_offset;
                m.slots_reserved = l.send_slot;
                m.slots_erased = l.send_slot;
                self.persist(&m)?;
                l.meta = m;
            }
        }
        Ok(())
    }
}

impl Drop for PadStore {
    fn drop(&mut self) {
        let _ = self.release();
    }
}

/// Overwrite `len` bytes at `offset` with zeros (not synced). The zeros
/// go to the file as stored ([`VFile::raw`]): in an encrypted directory
/// they overwrite the ciphertext, never pass through the cipher (see
/// [`crate::vault`] for why).
pub(crate) fn zero_at(file: &dyn VFile, offset: u64, len: u64) -> std::io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    let file = file.raw();
    let zeros = vec![0u8; len.min(CHUNK as u64) as usize];
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..n], offset + done)?;
        done += n as u64;
    }
    Ok(())
}

/// Make the data directory and everything the store keeps in it private:
/// directories 0700, files 0600 (a directory made by hand or restored with
/// looser modes is tightened on every open). Symbolic links are left alone.
fn fix_modes(v: &dyn Vfs, dir: &Path) -> Result<()> {
    let set = |p: &Path, mode: u32| {
        v.set_mode(p, mode)
            .ctx(|| format!("cannot make {} private (mode {mode:o})", p.display()))
    };
    set(dir, 0o700)?;
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        let names = v
            .read_dir(&d)
            .ctx(|| format!("cannot read {}", d.display()))?;
        for n in names {
            let p = d.join(n);
            match v.kind(&p).ctx(|| format!("cannot stat {}", p.display()))? {
                Some(Kind::Dir) => {
                    set(&p, 0o700)?;
                    dirs.push(p);
                }
                Some(Kind::File) => set(&p, 0o600)?,
                _ => {}
            }
        }
    }
    Ok(())
}

/// What an open used, recorded in `m`: v3's slot and text range as
/// opened ([`Received`](otc_proto::v3::Received)), v1's range as received
/// (with its frontier), and the used bytes as pending erase. The one
/// function both an open and the replay of its receipt at start go
/// through.
fn apply_opened(m: &mut ContactMeta, used: &Used) {
    match *used {
        Used::V3 { slot, text, .. } => m.rx.record_slot_and_text(slot, text.into()),
        Used::V1 { range } => {
            insert_range(&mut m.received, range);
            m.recv_frontier = m.recv_frontier.max(m.frontier_of(range));
            m.failures.retain(|f| !f.range.overlaps(&range));
        }
    }
    m.pending_erase.extend(used.used());
}

/// Cost of a message and pad left, or the reason it cannot be sent.
fn check_fits(l: &Live, contact: &str, message_len: usize) -> Result<(u64, u64)> {
    if let Some(g) = l.meta.v3_region(l.meta.side) {
        let text = g.lo + l.send_offset;
        let left = g.left(text, l.send_slot);
        let n = message_len as u64;
        if g.next(text, l.send_slot, n).is_err() {
            return Err(exhausted(l, contact, message_len));
        }
        return Ok((v3::pad_cost(message_len) as u64, left));
    }
    let left = l.meta.send_capacity().saturating_sub(l.send_offset);
    let min = l.meta.format.pad_cost(0) as u64;
    if left < min {
        return Err(Error::PadExhausted {
            contact: contact.to_string(),
            left,
        });
    }
    // Anything longer than a whole pad cannot fit; checking first keeps the
    // cost arithmetic from overflowing.
    let cost = if message_len as u64 >= MAX_PAD_SIZE {
        u64::MAX
    } else {
        l.meta.format.pad_cost(message_len) as u64
    };
    if cost > left {
        return Err(Error::TooLarge {
            contact: contact.to_string(),
            need: cost,
            left,
        });
    }
    Ok((cost, left))
}

/// Why a v3 message of `message_len` bytes cannot be sent: no slot (or no
/// room for even an empty message) left, or not enough room for this one.
fn exhausted(l: &Live, contact: &str, message_len: usize) -> Error {
    let Some(g) = l.meta.v3_region(l.meta.side) else {
        return Error::PadExhausted {
            contact: contact.to_string(),
            left: 0,
        };
    };
    let text = g.lo + l.send_offset;
    let left = g.left(text, l.send_slot);
    if !g.can_send(text, l.send_slot) {
        Error::PadExhausted {
            contact: contact.to_string(),
            left,
        }
    } else {
        Error::TooLarge {
            contact: contact.to_string(),
            need: v3::pad_cost(message_len) as u64,
            left,
        }
    }
}

/// The v3 geometry of `side` of a v3 contact (checked when the record was
/// read, so an error here means a damaged record).
fn v3_region(m: &ContactMeta, side: Side) -> Result<v3::Region> {
    m.v3_region(side).ok_or_else(|| Error::CorruptMeta {
        what: m.name.clone(),
        reason: format!(
            "a v3 pad of {} bytes split at {} has no room for a key on side {side}",
            m.size, m.split
        ),
    })
}

/// Read 16 bytes of `r` or `s_k` at `offset`.
pub(crate) fn read_key(file: &dyn VFile, offset: u64) -> std::io::Result<Zeroizing<[u8; 16]>> {
    let mut k = Zeroizing::new([0u8; 16]);
    file.read_exact_at(&mut k[..], offset)?;
    Ok(k)
}

/// Read a range of pad bytes in offset order.
fn read_range(file: &dyn VFile, r: Range) -> std::io::Result<Zeroizing<Vec<u8>>> {
    let len = usize::try_from(r.len())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "range too large"))?;
    let mut buf = Zeroizing::new(vec![0u8; len]);
    file.read_exact_at(&mut buf, r.lo)?;
    Ok(buf)
}

/// A package refused as malformed for this contact's format.
fn bad(meta: &ContactMeta, e: ProtoError) -> Error {
    Error::BadPackage {
        format: meta.format.to_string(),
        reason: e.to_string(),
    }
}

/// A v1 verification failure as the store's error: a bad tag (or an
/// erased pad, which no genuine package can open) is
/// [`Error::VerifyFailed`].
fn v1_refusal(meta: &ContactMeta, e: ProtoError) -> Error {
    match e {
        ProtoError::BadTag | ProtoError::WeakKey => Error::VerifyFailed {},
        e => bad(meta, e),
    }
}

/// The spec's opening checks 1 to 5 for a v3 package from the partner:
/// [`v3::Received::check`] against the durable record, then the tag under
/// the partner's `r` and the slot's `s_k` (the only pad bytes read).
/// Nothing is used.
fn verify_v3(l: &Live, package: &[u8]) -> Result<Claim> {
    let m = &l.meta;
    let g = v3_region(m, m.side.other())?;
    let claim = m.rx.check(g, package).map_err(|e| match e {
        ProtoError::Replayed { .. } => Error::Replay {
            index: v3::parse(package).map_or(0, |p| p.head.text),
        },
        ProtoError::OutOfRegion { text, len, .. } => Error::OutOfRegion {
            lo: text,
            hi: text.saturating_add(len),
            region_lo: g.lo,
            region_hi: g.hi,
        },
        e => bad(m, e),
    })?;
    let file = l.file()?;
    let what = || format!("cannot read pad file for {}", m.name);
    let r = l.key_r(m.side.other(), g.key_span().lo)?;
    let s = read_key(file, claim.mask.lo).ctx(what)?;
    v3::verify(package, r, &s).map_err(|e| match e {
        // A weak r was refused at import; an erased s_k (a slot opened
        // before is caught by the record) verifies nothing genuine.
        ProtoError::BadTag | ProtoError::WeakKey => Error::VerifyFailed {},
        e => bad(m, e),
    })?;
    Ok(claim)
}

/// What a verified v3 package is, and what the prompt may say: the spec's
/// skipped count (step 6).
fn v3_check(m: &ContactMeta, claim: &Claim) -> OpenCheck {
    let skipped = m.rx.skipped(claim.head.slot);
    let warnings = if skipped > 0 {
        vec![OpenWarning::Skipped {
            messages: skipped,
            bytes: 0,
        }]
    } else {
        Vec::new()
    };
    OpenCheck {
        index: claim.head.text,
        slot: Some(claim.head.slot),
        cost: v3::pad_cost(claim.len as usize) as u64,
        message_len: claim.len,
        warnings,
    }
}

/// The name and pad id of a record that names format v2 (withdrawn), if
/// this record does.
fn withdrawn_record(bytes: &[u8], name: &str) -> Option<Withdrawn> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    if v.get("format")?.as_str()? != "v2" {
        return None;
    }
    Some(Withdrawn {
        name: name.to_string(),
        pad_id: v.get("pad_id")?.as_str()?.to_string(),
    })
}

/// A pad file through its cipher: reads decrypt, writes encrypt, at any
/// offset. [`VFile::raw`] is the file under it, where erase writes.
struct CryptFile {
    inner: Box<dyn VFile>,
    cipher: PadCipher,
}

impl VFile for CryptFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.inner.read_exact_at(buf, offset)?;
        self.cipher.apply(offset, buf);
        Ok(())
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        let mut c = Zeroizing::new(buf.to_vec());
        self.cipher.apply(offset, &mut c);
        self.inner.write_all_at(&c, offset)
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.inner.set_len(len)
    }
    fn size(&self) -> std::io::Result<u64> {
        self.inner.size()
    }
    fn sync_data(&self) -> std::io::Result<()> {
        self.inner.sync_data()
    }
    fn sync_all(&self) -> std::io::Result<()> {
        self.inner.sync_all()
    }
    fn raw(&self) -> &dyn VFile {
        self.inner.raw()
    }
    fn start_writeback(&self, offset: u64, len: u64) {
        self.inner.start_writeback(offset, len)
    }
    fn read_sparsely(&self, drop_cached: bool) {
        self.inner.read_sparsely(drop_cached)
    }
}

fn lock_map<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Read a range of pad bytes in consumption order.
fn read_pad(l: &Live, r: Range, descending: bool) -> Result<Zeroizing<Vec<u8>>> {
    let len = usize::try_from(r.len()).map_err(|_| Error::TooLarge {
        contact: l.meta.name.clone(),
        need: r.len(),
        left: 0,
    })?;
    let mut buf = Zeroizing::new(vec![0u8; len]);
    l.file()?
        .read_exact_at(&mut buf, r.lo)
        .ctx(|| format!("cannot read pad file for {}", l.meta.name))?;
    if descending {
        buf.reverse();
    }
    Ok(buf)
}

struct Classified {
    index: u64,
    range: Range,
    message_len: u64,
    warnings: Vec<OpenWarning>,
}

/// Parse a v1 package against a contact's geometry; no side effects. A
/// range opened before is [`Error::Replay`] (from the record, before any
/// pad byte is read).
fn classify(meta: &ContactMeta, package: &[u8]) -> Result<Classified> {
    let bad = |e: otc_proto::ProtoError| bad(meta, e);
    let message_len = meta.format.message_len(package.len()).map_err(bad)?;
    let index = otc_proto::v1::read_index(package).map_err(bad)?;
    let cost = meta.format.pad_cost(message_len) as u64;
    let region = meta.region(meta.side.other());
    let out = |lo: u64, hi: u64| Error::OutOfRegion {
        lo,
        hi,
        region_lo: region.lo,
        region_hi: region.hi,
    };
    let range = meta
        .recv_range(index, cost)
        .ok_or_else(|| out(index, index.saturating_add(cost)))?;
    if range.lo < region.lo || range.hi > region.hi {
        return Err(out(range.lo, range.hi));
    }
    // Old records may list burned ranges (earlier versions burned after
    // three failed verifications); their bytes are zero, so refuse them.
    if overlaps_any(&meta.burned, range) {
        return Err(Error::RangeBurned {
            index,
            limit: MAX_FAILED_VERIFICATIONS,
        });
    }
    if overlaps_any(&meta.received, range) {
        return Err(Error::Replay { index });
    }
    let mut warnings = Vec::new();
    let gap = meta.gap_before(range);
    if gap > 0 {
        let per = meta.format.pad_cost(NOMINAL_MESSAGE) as u64;
        warnings.push(OpenWarning::Skipped {
            messages: gap.div_ceil(per).max(1),
            bytes: gap,
        });
    }
    Ok(Classified {
        index,
        range,
        message_len: message_len as u64,
        warnings,
    })
}

fn summary(l: &Live) -> ContactSummary {
    let m = &l.meta;
    // A damaged pad has nothing that can be used.
    let (send_left, receive_left) = match (l.damage, m.v3_region(m.side)) {
        (Some(_), _) => (0, 0),
        (None, Some(g)) => (g.left(g.lo + l.send_offset, l.send_slot), m.receive_left()),
        (None, None) => (
            m.send_capacity().saturating_sub(l.send_offset),
            m.receive_left(),
        ),
    };
    let per = m.format.pad_cost(NOMINAL_MESSAGE) as u64;
    ContactSummary {
        name: m.name.clone(),
        pad_id: m.pad_id.clone(),
        size: m.size,
        split: m.split,
        side: m.side,
        format: m.format,
        origin: m.origin,
        send_left,
        receive_left,
        send_messages_left: send_left / per,
        receive_messages_left: receive_left / per,
        burned: m.burned.iter().map(|r| r.len()).sum(),
        state: match l.damage {
            Some(_) => ContactState::Damaged,
            None => ContactState::Ok,
        },
        damage: l.damage.map(Damage::describe),
        fingerprint: super::pairing::fingerprint(&m.pad_id, m.size, m.split, m.format),
        private: m.private,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vfs::{Op, Recorder};

    /// A send stream's window hands out exactly the file's bytes, reads
    /// the file once per window, zeroes its copy of what it handed out,
    /// and never reads outside the reservation (`within`) unless a
    /// message itself lies there.
    #[test]
    fn a_send_window_hands_out_the_file_once_and_stays_within() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("pad");
        let pattern: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8 + 1).collect();
        std::fs::write(&path, &pattern).unwrap();
        let rec = Recorder::new(RealFs);
        let file = rec.open(&path, OpenHow::Read).unwrap();
        let reads = || -> Vec<(u64, u64)> {
            rec.take()
                .into_iter()
                .filter_map(|op| match op {
                    Op::Read { offset, len, .. } => Some((offset, offset + len)),
                    _ => None,
                })
                .collect()
        };
        let r = |lo, hi| Range { lo, hi };
        let slice = |w: Range| &pattern[w.lo as usize..w.hi as usize];

        // Text, upward, reserved up to 5,000.
        let mut up = Ahead::default();
        let within = r(100, 5_000);
        let got = up.take(file.as_ref(), r(100, 110), within, true).unwrap();
        assert_eq!(&got[..], slice(r(100, 110)));
        assert_eq!(reads(), [(100, 100 + AHEAD)]);
        assert!(up.bytes[..10].iter().all(|&b| b == 0), "handed out, zeroed");
        assert!(up.bytes[10..].iter().all(|&b| b != 0));
        let got = up.take(file.as_ref(), r(110, 130), within, true).unwrap();
        assert_eq!(&got[..], slice(r(110, 130)));
        assert_eq!(reads(), [], "served from the window");
        // Past the window's end: a new one, cut at the reservation.
        let got = up
            .take(file.as_ref(), r(4_190, 4_200), within, true)
            .unwrap();
        assert_eq!(&got[..], slice(r(4_190, 4_200)));
        assert_eq!(reads(), [(4_190, 5_000)]);
        // A message past the reservation is still read whole.
        let got = up
            .take(file.as_ref(), r(4_990, 5_020), within, true)
            .unwrap();
        assert_eq!(&got[..], slice(r(4_990, 5_020)));
        assert_eq!(reads(), [(4_990, 5_020)]);

        // Masks, downward from 8,000, reserved down to 6,000.
        let mut down = Ahead::default();
        let within = r(6_000, 8_000);
        let got = down
            .take(file.as_ref(), r(7_984, 8_000), within, false)
            .unwrap();
        assert_eq!(&got[..], slice(r(7_984, 8_000)));
        assert_eq!(reads(), [(6_000, 8_000)], "cut at the lowest reserved mask");
        for k in 1..4u64 {
            let want = r(7_984 - 16 * k, 8_000 - 16 * k);
            let got = down.take(file.as_ref(), want, within, false).unwrap();
            assert_eq!(&got[..], slice(want));
        }
        assert_eq!(reads(), []);
        let used = down.bytes.len() - 4 * 16;
        assert!(down.bytes[used..].iter().all(|&b| b == 0));
        assert!(down.bytes[..used].iter().all(|&b| b != 0));
    }
}
