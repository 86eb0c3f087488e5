//! The pad store proper: data directory, contacts, durable send offsets,
//! the received-range log, erase after use. See the module docs of
//! [`crate::pad`] for the rules it keeps.

use super::fsutil::CHUNK;
use super::meta::{ContactMeta, META_VERSION, Origin, Range, Side, insert_range, overlaps_any};
use super::vfs::{self, Kind, OpenHow, RealFs, VFile, Vfs};
use crate::error::{Error, IoContext, Result};
use otc_proto::Format;
use otc_proto::rpc::ContactState;
use serde::Serialize;
use std::any::Any;
use std::collections::BTreeMap;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// Name of the marker file that makes a directory ours.
pub const MARKER_FILE: &str = "otc-device.data";
/// First line of the marker file.
pub const MARKER_MAGIC: &str = "otc-device data directory, layout 2";
/// First line of the marker of a layout-1 directory (metadata in sled),
/// which this version refuses (see the module docs of [`crate::pad`]).
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
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            reserve_block: DEFAULT_RESERVE_BLOCK,
        }
    }
}

/// A sealed package and what it cost.
#[derive(Debug, Clone)]
pub struct Sealed {
    /// The package bytes to send.
    pub package: Vec<u8>,
    /// The pad index the package carries.
    pub index: u64,
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

/// A warning about a received package, to show before opening it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OpenWarning {
    /// The package's range overlaps one already opened; its pad bytes are
    /// erased, so opening will fail with [`Error::Replay`].
    Replay,
    /// Pad bytes between the last opened package and this one were skipped
    /// (messages lost, delayed or out of order, or a sender crash).
    Skipped { bytes: u64 },
}

/// The facts about a received package, checked without using anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpenCheck {
    pub index: u64,
    pub cost: u64,
    pub message_len: u64,
    pub warnings: Vec<OpenWarning>,
}

/// An opened message.
#[derive(Debug, Clone)]
pub struct Opened {
    pub message: Vec<u8>,
    pub index: u64,
    pub cost: u64,
    pub warnings: Vec<OpenWarning>,
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
    /// Set at start when the pad file does not match the record.
    damage: Option<Damage>,
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
    /// A missing or empty directory is initialised. A non-empty directory
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
        let v = vfs.as_ref();
        let marker = dir.join(MARKER_FILE);
        match v
            .kind(&dir)
            .ctx(|| format!("cannot stat {}", dir.display()))?
        {
            Some(Kind::Dir) => {}
            _ => return Err(Error::NotOurs(dir)),
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
                    return Err(Error::OldLayout(dir));
                }
                if first != MARKER_MAGIC {
                    return Err(Error::NotOurs(dir));
                }
            }
            Some(_) => return Err(Error::NotOurs(dir)),
            None => {
                let entries = v
                    .read_dir(&dir)
                    .ctx(|| format!("cannot read {}", dir.display()))?;
                if !entries.is_empty() {
                    return Err(Error::NotOurs(dir));
                }
                Self::init(v, &dir)?;
            }
        }
        // A process that is just exiting (or a forked child that has not
        // yet exec'd and so still shares our descriptor) can hold the lock
        // for a moment: retry briefly before calling the directory busy.
        let deadline = Instant::now() + LOCK_WAIT;
        let lock = loop {
            match v
                .try_lock(&marker)
                .ctx(|| format!("cannot lock {}", marker.display()))?
            {
                Some(token) => break token,
                None if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                None => return Err(Error::Locked(dir)),
            }
        };
        for sub in [CONTACTS_DIR, PADS_DIR, USED_DIR] {
            let p = dir.join(sub);
            match v.kind(&p).ctx(|| format!("cannot stat {}", p.display()))? {
                Some(Kind::Dir) => {}
                Some(_) => return Err(Error::NotOurs(dir)),
                None => {
                    v.create_dir(&p)
                        .ctx(|| format!("cannot create {}", p.display()))?;
                    v.sync_dir(&dir)
                        .ctx(|| format!("cannot sync directory {}", dir.display()))?;
                }
            }
        }
        fix_modes(v, &dir)?;
        let opts = StoreOptions {
            reserve_block: opts.reserve_block.max(1),
        };
        let store = PadStore {
            dir,
            vfs,
            opts,
            state: Mutex::new(BTreeMap::new()),
            _lock: lock,
        };
        store.load_contacts()?;
        Ok(store)
    }

    fn init(v: &dyn Vfs, dir: &Path) -> Result<()> {
        let marker = dir.join(MARKER_FILE);
        let tmp = dir.join(format!("{MARKER_FILE}.tmp"));
        let text = format!(
            "{MARKER_MAGIC}\n# This directory holds one-time pads. They are secret.\n# Remove pads with `otc-device pad remove`, not by deleting files.\n# A copy of this directory (a backup, a cloned card) reuses pad: never restore one.\n"
        );
        let f = v
            .open(&tmp, OpenHow::CreateNew)
            .ctx(|| format!("cannot create {}", tmp.display()))?;
        f.write_all_at(text.as_bytes(), 0)
            .and_then(|_| f.sync_all())
            .ctx(|| format!("cannot write {}", tmp.display()))?;
        drop(f);
        v.rename(&tmp, &marker)
            .ctx(|| format!("cannot create {}", marker.display()))?;
        v.sync_dir(dir)
            .ctx(|| format!("cannot sync directory {}", dir.display()))
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The options in force.
    pub fn options(&self) -> StoreOptions {
        self.opts
    }

    pub(crate) fn pad_path(&self, pad_id: &str) -> PathBuf {
        self.dir.join(PADS_DIR).join(format!("{pad_id}.pad"))
    }

    fn record_path(&self, name: &str) -> PathBuf {
        self.dir.join(CONTACTS_DIR).join(format!("{name}.json"))
    }

    fn used_path(&self, pad_id: &str) -> PathBuf {
        self.dir.join(USED_DIR).join(pad_id)
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
        Ok((tmp, f))
    }

    /// Best-effort erase and delete of a temporary pad file (cleanup path;
    /// errors are ignored, and the next open deletes any leftover).
    pub(crate) fn discard_temp(&self, tmp: &Path) {
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
        let dir = self.dir.join(CONTACTS_DIR);
        let path = self.record_path(&meta.name);
        let tmp = dir.join(format!("{}.json.tmp", meta.name));
        let what = || format!("cannot write the record of {}", meta.name);
        match v.remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(what(), e)),
        }
        let f = v.open(&tmp, OpenHow::CreateNew).ctx(what)?;
        f.write_all_at(&value, 0)
            .and_then(|_| f.sync_all())
            .ctx(what)?;
        drop(f);
        v.rename(&tmp, &path).ctx(what)?;
        v.sync_dir(&dir).ctx(what)?;
        Ok(())
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
        f.write_all_at(text.as_bytes(), 0)
            .and_then(|_| f.sync_all())
            .ctx(what)?;
        drop(f);
        v.sync_dir(&self.dir.join(USED_DIR)).ctx(what)
    }

    /// Load all contacts, finish interrupted erases, remove orphan files.
    fn load_contacts(&self) -> Result<()> {
        let v = self.vfs();
        let mut state = self.lock();
        let cdir = self.dir.join(CONTACTS_DIR);
        let names = v
            .read_dir(&cdir)
            .ctx(|| format!("cannot read {}", cdir.display()))?;
        // Record writes a crash interrupted (`*.tmp`) go first: the old
        // record (or none) is the durable truth.
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
        for fname in names {
            let path = cdir.join(&fname);
            let Some(name) = fname.strip_suffix(".json") else {
                continue;
            };
            let bytes = vfs::read_all(v, &path, MAX_RECORD)
                .ctx(|| format!("cannot read {}", path.display()))?;
            let mut meta: ContactMeta =
                serde_json::from_slice(&bytes).map_err(|e| Error::CorruptMeta {
                    what: path.display().to_string(),
                    reason: e.to_string(),
                })?;
            if meta.version != META_VERSION || meta.name != name {
                return Err(Error::CorruptMeta {
                    what: path.display().to_string(),
                    reason: format!(
                        "record version {} for contact {:?} is not supported here",
                        meta.version, meta.name
                    ),
                });
            }
            // A crash between writing the record and the used-pad mark
            // leaves the mark missing: add it.
            self.mark_used(&meta.pad_id, meta.origin)?;
            let path = self.pad_path(&meta.pad_id);
            let opened = match v.open(&path, OpenHow::ReadWrite) {
                Ok(f) => {
                    let found = f.size().ctx(|| {
                        format!("cannot stat pad file {} for {}", path.display(), meta.name)
                    })?;
                    if found == meta.size {
                        Ok(f)
                    } else {
                        Err(Damage::WrongSize {
                            found,
                            size: meta.size,
                        })
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Damage::Missing),
                Err(e) => {
                    return Err(Error::io(
                        format!("cannot open pad file {} for {}", path.display(), meta.name),
                        e,
                    ));
                }
            };
            let file = match opened {
                Ok(f) => f,
                Err(damage) => {
                    // Keep the contact so it can be listed and removed; its
                    // file is closed and never written (an interrupted
                    // erase stays in the record, and is done if the right
                    // file comes back; `pad remove` shreds it anyway).
                    let send_offset = meta.reserved;
                    let name = meta.name.clone();
                    state.insert(
                        name,
                        Live {
                            meta,
                            file: None,
                            send_offset,
                            damage: Some(damage),
                        },
                    );
                    continue;
                }
            };
            // Finish any erase a crash interrupted: everything used or
            // reserved on the send side, and ranges recorded as opened or
            // burned whose erase may not have reached the disk.
            if meta.erased < meta.reserved || !meta.pending_erase.is_empty() {
                let r = meta.count_range(meta.side, meta.erased, meta.reserved);
                zero_at(file.as_ref(), r.lo, r.len())
                    .ctx(|| format!("cannot erase used pad for {}", meta.name))?;
                for p in &meta.pending_erase {
                    zero_at(file.as_ref(), p.lo, p.len())
                        .ctx(|| format!("cannot erase used pad for {}", meta.name))?;
                }
                file.sync_data()
                    .ctx(|| format!("cannot sync pad file for {}", meta.name))?;
                meta.erased = meta.reserved;
                meta.pending_erase.clear();
                self.persist(&meta)?;
            }
            let send_offset = meta.reserved;
            let file = Some(file);
            state.insert(
                meta.name.clone(),
                Live {
                    meta,
                    file,
                    send_offset,
                    damage: None,
                },
            );
        }
        // Pad files nobody owns (a crash during creation, import or removal)
        // are erased and deleted.
        let known: Vec<PathBuf> = state
            .values()
            .map(|l| self.pad_path(&l.meta.pad_id))
            .collect();
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
        let v = self.vfs();
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
            self.persist(&meta)?;
            self.mark_used(&meta.pad_id, meta.origin)?;
            Ok(file)
        })();
        match res {
            Ok(file) => {
                let send_offset = meta.reserved;
                let file = Some(file);
                state.insert(
                    meta.name.clone(),
                    Live {
                        meta,
                        file,
                        send_offset,
                        damage: None,
                    },
                );
                Ok(())
            }
            Err(e) => {
                let _ = self.unpersist(&meta.name);
                let _ = shred(v, &path, &mut |_, _| {});
                Err(e)
            }
        }
    }

    /// Fail early (before long work) if a contact name is taken or invalid.
    pub fn check_new_contact(&self, name: &str) -> Result<()> {
        validate_contact_name(name)?;
        if self.lock().contains_key(name) {
            return Err(Error::ContactExists(name.to_string()));
        }
        Ok(())
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
        let l = state
            .get(name)
            .ok_or_else(|| Error::UnknownContact(name.to_string()))?;
        Ok(summary(l))
    }

    /// Facts about every contact, sorted by name.
    pub fn list(&self) -> Vec<ContactSummary> {
        self.lock().values().map(summary).collect()
    }

    /// The metadata record of a contact (for tests and diagnostics; it
    /// holds no pad bytes).
    pub fn meta(&self, name: &str) -> Result<ContactMeta> {
        let state = self.lock();
        let l = state
            .get(name)
            .ok_or_else(|| Error::UnknownContact(name.to_string()))?;
        Ok(l.meta.clone())
    }

    /// What sealing a message of `message_len` bytes for `contact` would
    /// cost. No side effects. Fails exactly as [`PadStore::seal`] would for
    /// an unknown contact, an exhausted pad or a message that is too large.
    pub fn quote(&self, contact: &str, message_len: usize) -> Result<Quote> {
        let state = self.lock();
        let l = state
            .get(contact)
            .ok_or_else(|| Error::UnknownContact(contact.to_string()))?;
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
    /// Order of events: the range is taken from the in-memory send offset; if it
    /// crosses the durable reserved bound, the pad file is fdatasync'ed (so
    /// every earlier erase is durable) and a new bound, at least one
    /// reservation block ahead, is written to the contact's record and
    /// made durable (fsync of the record, rename, fsync of the directory)
    /// *before* any pad byte is read. Then the bytes are read (pread), the package is
    /// sealed, and the bytes are overwritten with zeros (pwrite) before the
    /// package is returned. A crash may skip the rest of a block; it can
    /// never hand out the same byte twice.
    pub fn seal(&self, contact: &str, message: &[u8]) -> Result<Sealed> {
        let mut state = self.lock();
        let l = state
            .get_mut(contact)
            .ok_or_else(|| Error::UnknownContact(contact.to_string()))?;
        l.usable()?;
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
        let sealed = read_pad(l, range, l.meta.descending(l.meta.side)).and_then(|pad| {
            l.meta
                .format
                .seal(index, message, &pad)
                .map_err(Error::Proto)
        });
        // Erase whether or not sealing worked: the range is spent either
        // way, and the next block crossing records it as erased.
        let erased = zero_at(l.file()?, range.lo, range.len())
            .ctx(|| format!("cannot erase used pad for {contact}"));
        let package = sealed?;
        erased?;
        Ok(Sealed {
            package,
            index,
            cost,
            pad_left: left - cost,
        })
    }

    /// Check a received package without using anything: its index, its
    /// cost, and warnings (replay, skipped pad). Errors for a malformed
    /// package, a range outside the sender's region, or a burned range.
    pub fn check_open(&self, contact: &str, package: &[u8]) -> Result<OpenCheck> {
        let state = self.lock();
        let l = state
            .get(contact)
            .ok_or_else(|| Error::UnknownContact(contact.to_string()))?;
        l.usable()?;
        let c = classify(&l.meta, package)?;
        Ok(OpenCheck {
            index: c.index,
            cost: c.range.len(),
            message_len: c.message_len,
            warnings: c.warnings,
        })
    }

    /// Open a package from `contact`.
    ///
    /// Nothing is used unless the tag verifies. On a good tag the range is
    /// recorded as opened (durably: record fsync, rename, directory fsync),
    /// then its bytes are zeroed on disk and fdatasync'ed, then the message
    /// is returned. A replayed range (already opened, so already erased) is
    /// refused with [`Error::Replay`]. A bad tag is [`Error::VerifyFailed`]
    /// and changes nothing, on disk or in memory: the store never burns a
    /// range no genuine message has passed (see the module docs of
    /// [`crate::pad`]); limiting tries is the RPC layer's lockout.
    pub fn open(&self, contact: &str, package: &[u8]) -> Result<Opened> {
        let mut state = self.lock();
        let l = state
            .get_mut(contact)
            .ok_or_else(|| Error::UnknownContact(contact.to_string()))?;
        l.usable()?;
        let c = classify(&l.meta, package)?;
        if c.warnings.contains(&OpenWarning::Replay) {
            return Err(Error::Replay { index: c.index });
        }
        let sender = l.meta.side.other();
        let pad = read_pad(l, c.range, l.meta.descending(sender))?;
        let result = l.meta.format.open(package, &pad);
        drop(pad);
        match result {
            Ok(message) => {
                let mut m = l.meta.clone();
                insert_range(&mut m.received, c.range);
                m.recv_frontier = m.recv_frontier.max(m.frontier_of(c.range));
                m.failures.retain(|f| !f.range.overlaps(&c.range));
                m.pending_erase.push(c.range);
                self.persist(&m)?;
                l.meta = m;
                self.erase_now(l, c.range)?;
                Ok(Opened {
                    message,
                    index: c.index,
                    cost: c.range.len(),
                    warnings: c.warnings,
                })
            }
            Err(otc_proto::ProtoError::BadTag) => Err(Error::VerifyFailed {}),
            Err(e) => Err(Error::BadPackage {
                format: l.meta.format.to_string(),
                reason: e.to_string(),
            }),
        }
    }

    /// Zero a received range on disk and sync. The record already lists it
    /// as pending, so a crash before the sync is repaired on the next open;
    /// the pending entry is dropped in memory and leaves the durable record
    /// with its next write.
    fn erase_now(&self, l: &mut Live, r: Range) -> Result<()> {
        let file = l.file()?;
        zero_at(file, r.lo, r.len())
            .and_then(|_| file.sync_data())
            .ctx(|| format!("cannot erase used pad for {}", l.meta.name))?;
        l.meta.pending_erase.retain(|p| *p != r);
        Ok(())
    }

    /// Erase a contact's pad (overwrite with zeros, sync, delete) and its
    /// metadata. `progress` gets (bytes done, total).
    pub fn remove(&self, contact: &str, progress: &mut dyn FnMut(u64, u64)) -> Result<()> {
        let mut state = self.lock();
        let l = state
            .get(contact)
            .ok_or_else(|| Error::UnknownContact(contact.to_string()))?;
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
        self.unpersist(contact)
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
                || !l.meta.pending_erase.is_empty()
            {
                let Some(file) = l.file.as_deref() else {
                    continue;
                };
                file.sync_data()
                    .ctx(|| format!("cannot sync pad file for {}", l.meta.name))?;
                let mut m = l.meta.clone();
                m.reserved = l.send_offset;
                m.erased = l.send_offset;
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

/// Overwrite `len` bytes at `offset` with zeros (not synced).
pub(crate) fn zero_at(file: &dyn VFile, offset: u64, len: u64) -> std::io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    let zeros = vec![0u8; len.min(CHUNK as u64) as usize];
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..n], offset + done)?;
        done += n as u64;
    }
    Ok(())
}

/// Overwrite a whole file with zeros, sync it, delete it and sync its
/// directory. Reports progress as (done, total).
pub(crate) fn shred(v: &dyn Vfs, path: &Path, progress: &mut dyn FnMut(u64, u64)) -> Result<()> {
    let file = v
        .open(path, OpenHow::ReadWrite)
        .ctx(|| format!("cannot open {} to erase it", path.display()))?;
    let len = file
        .size()
        .ctx(|| format!("cannot stat {}", path.display()))?;
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(CHUNK as u64);
        zero_at(file.as_ref(), done, n).ctx(|| format!("cannot erase {}", path.display()))?;
        done += n;
        progress(done, len);
    }
    file.sync_all()
        .ctx(|| format!("cannot sync {}", path.display()))?;
    drop(file);
    v.remove_file(path)
        .ctx(|| format!("cannot delete {}", path.display()))?;
    if let Some(parent) = path.parent() {
        v.sync_dir(parent)
            .ctx(|| format!("cannot sync directory {}", parent.display()))?;
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

/// Cost of a message and pad left, or the reason it cannot be sent.
fn check_fits(l: &Live, contact: &str, message_len: usize) -> Result<(u64, u64)> {
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

/// Parse a package against a contact's geometry; no side effects.
fn classify(meta: &ContactMeta, package: &[u8]) -> Result<Classified> {
    let bad = |e: otc_proto::ProtoError| Error::BadPackage {
        format: meta.format.to_string(),
        reason: e.to_string(),
    };
    let message_len = meta.format.message_len(package.len()).map_err(bad)?;
    let index = meta.format.read_index(package).map_err(bad)?;
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
    let mut warnings = Vec::new();
    if overlaps_any(&meta.received, range) {
        warnings.push(OpenWarning::Replay);
    } else {
        let gap = meta.gap_before(range);
        if gap > 0 {
            warnings.push(OpenWarning::Skipped { bytes: gap });
        }
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
    let (send_left, receive_left) = match l.damage {
        Some(_) => (0, 0),
        None => (
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
    }
}
