//! The pad store proper: data directory, contacts, durable send cursors,
//! the received-range log, erase after use. See the module docs of
//! [`crate::pad`] for the rules it keeps.

use super::fsutil::{self, sync_dir, zero_at};
use super::meta::{
    ContactMeta, Failure, MAX_FAILURE_RECORDS, META_VERSION, Origin, Range, Side, insert_range,
    overlaps_any,
};
use crate::error::{Error, IoContext, Result};
use otc_proto::Format;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, FileExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// Name of the marker file that makes a directory ours.
pub const MARKER_FILE: &str = "otc-device.data";
/// First line of the marker file.
pub const MARKER_MAGIC: &str = "otc-device data directory, layout 1";
/// The sled database inside the data directory.
pub const META_DB: &str = "meta.sled";
/// The directory holding pad files (`<pad_id>.pad`).
pub const PADS_DIR: &str = "pads";
/// Default reservation block: the durable send bound moves in steps of at
/// least this many bytes (sequence-cache style).
pub const DEFAULT_RESERVE_BLOCK: u64 = 64 * 1024;
/// Failed verifications of one range before it is burned.
pub const MAX_FAILED_VERIFICATIONS: u32 = 3;
/// Smallest pad the store accepts.
pub const MIN_PAD_SIZE: u64 = 256;
/// Largest pad the store accepts: indices are 48 bits.
pub const MAX_PAD_SIZE: u64 = otc_proto::MAX_INDEX + 1;
/// Message size used for "messages left" figures.
pub const NOMINAL_MESSAGE: usize = 100;

const CONTACT_PREFIX: &str = "contact/";

/// How long opening waits for a data directory another process is leaving.
const LOCK_WAIT: Duration = Duration::from_secs(3);

/// Tunables of a store.
#[derive(Clone, Copy, Debug)]
pub struct StoreOptions {
    /// Reservation block in bytes (the most pad a crash can skip, and the
    /// most used pad whose erase may not yet be durable).
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

/// A contact as `pad list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContactInfo {
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
    pub recv_left: u64,
    /// 100-byte messages we can still send.
    pub send_messages_left: u64,
    /// 100-byte messages the partner can still send us (at most).
    pub recv_messages_left: u64,
    /// Pad bytes burned after failed verifications.
    pub burned: u64,
}

/// One contact with its open pad file and in-memory cursor.
struct Live {
    meta: ContactMeta,
    /// `None` when the pad file is missing: the contact can only be listed
    /// and removed.
    file: Option<File>,
    /// In-memory send count: the next message starts here. Always between
    /// `meta.erased` and `meta.reserved` (inclusive).
    next: u64,
}

impl Live {
    fn file(&self) -> Result<&File> {
        self.file.as_ref().ok_or_else(|| Error::PadFileMissing {
            contact: self.meta.name.clone(),
        })
    }
}

/// The pad store on a data directory. All methods take `&self`; one
/// internal lock serialises them, so the store can be shared between
/// threads. A data directory is used by one process at a time.
pub struct PadStore {
    dir: PathBuf,
    db: sled::Db,
    tree: sled::Tree,
    opts: StoreOptions,
    state: Mutex<BTreeMap<String, Live>>,
    _lock: File,
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

fn db_err(e: sled::Error) -> Error {
    Error::Db(e)
}

impl PadStore {
    /// Open (or initialise) the data directory with default options.
    pub fn open_dir(dir: impl AsRef<Path>) -> Result<PadStore> {
        Self::open_dir_with(dir, StoreOptions::default())
    }

    /// Open (or initialise) the data directory.
    ///
    /// A missing or empty directory is initialised. A non-empty directory
    /// without our marker is refused with [`Error::NotOurs`]. On open, any
    /// erase a crash interrupted is finished, and each contact's in-memory
    /// send cursor starts at its durable reserved bound.
    pub fn open_dir_with(dir: impl AsRef<Path>, opts: StoreOptions) -> Result<PadStore> {
        let dir = dir.as_ref().to_path_buf();
        let marker = dir.join(MARKER_FILE);
        if dir.exists() {
            if !dir.is_dir() {
                return Err(Error::NotOurs(dir));
            }
            if marker.exists() {
                let text = std::fs::read_to_string(&marker)
                    .ctx(|| format!("cannot read {}", marker.display()))?;
                if text.lines().next() != Some(MARKER_MAGIC) {
                    return Err(Error::NotOurs(dir));
                }
            } else {
                let mut entries =
                    std::fs::read_dir(&dir).ctx(|| format!("cannot read {}", dir.display()))?;
                if entries.next().is_some() {
                    return Err(Error::NotOurs(dir));
                }
                Self::init(&dir)?;
            }
        } else {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .ctx(|| format!("cannot create data directory {}", dir.display()))?;
            Self::init(&dir)?;
        }
        let lock = OpenOptions::new()
            .read(true)
            .open(&marker)
            .ctx(|| format!("cannot open {}", marker.display()))?;
        // A process that is just exiting (or a forked child that has not
        // yet exec'd and so still shares our descriptor) can hold the lock
        // for a moment: retry briefly before calling the directory busy.
        let deadline = Instant::now() + LOCK_WAIT;
        loop {
            match lock.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(std::fs::TryLockError::WouldBlock) => return Err(Error::Locked(dir)),
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(Error::io(format!("cannot lock {}", marker.display()), e));
                }
            }
        }
        let pads = dir.join(PADS_DIR);
        if !pads.is_dir() {
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&pads)
                .ctx(|| format!("cannot create {}", pads.display()))?;
        }
        remove_interrupted_snapshots(&dir.join(META_DB))?;
        // sled takes its own lock, released a moment after the previous
        // owner's last handle (its flusher thread) goes away.
        let db = loop {
            match sled::Config::new().path(dir.join(META_DB)).open() {
                Ok(db) => break db,
                Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                    if Instant::now() >= deadline {
                        return Err(Error::Locked(dir));
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(db_err(e)),
            }
        };
        let tree = db.open_tree("contacts").map_err(db_err)?;
        let opts = StoreOptions {
            reserve_block: opts.reserve_block.max(1),
        };
        let store = PadStore {
            dir,
            db,
            tree,
            opts,
            state: Mutex::new(BTreeMap::new()),
            _lock: lock,
        };
        store.load_contacts()?;
        Ok(store)
    }

    fn init(dir: &Path) -> Result<()> {
        let marker = dir.join(MARKER_FILE);
        let tmp = dir.join(format!("{MARKER_FILE}.tmp"));
        let text = format!(
            "{MARKER_MAGIC}\n# This directory holds one-time pads. They are secret.\n# Remove pads with `otc-device pad remove`, not by deleting files.\n"
        );
        let f = fsutil::create_private(&tmp).ctx(|| format!("cannot create {}", tmp.display()))?;
        f.write_all_at(text.as_bytes(), 0)
            .and_then(|_| f.sync_all())
            .ctx(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &marker).ctx(|| format!("cannot create {}", marker.display()))?;
        sync_dir(dir)
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

    /// A fresh temporary path inside the pads directory (same filesystem as
    /// the final pad file, so a rename is atomic).
    pub(crate) fn temp_pad_path(&self) -> PathBuf {
        self.dir
            .join(PADS_DIR)
            .join(format!("new-{}.tmp", fsutil::token()))
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Live>> {
        // A panic while holding the lock cannot leave a cursor behind a used
        // byte (the cursor moves before bytes are read), so the state is safe
        // to keep using.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn key(name: &str) -> Vec<u8> {
        format!("{CONTACT_PREFIX}{name}").into_bytes()
    }

    /// Write a contact record and fsync the database.
    fn persist(&self, meta: &ContactMeta) -> Result<()> {
        let value = serde_json::to_vec(meta).map_err(|e| Error::CorruptMeta {
            what: meta.name.clone(),
            reason: e.to_string(),
        })?;
        self.tree
            .insert(Self::key(&meta.name), value)
            .map_err(db_err)?;
        self.tree.flush().map_err(db_err)?;
        Ok(())
    }

    /// Load all contacts, finish interrupted erases, remove orphan files.
    fn load_contacts(&self) -> Result<()> {
        let mut state = self.lock();
        for item in self.tree.iter() {
            let (k, v) = item.map_err(db_err)?;
            let key = String::from_utf8_lossy(&k).to_string();
            let mut meta: ContactMeta =
                serde_json::from_slice(&v).map_err(|e| Error::CorruptMeta {
                    what: key.clone(),
                    reason: e.to_string(),
                })?;
            if meta.version != META_VERSION {
                return Err(Error::CorruptMeta {
                    what: key,
                    reason: format!("record version {} is not supported", meta.version),
                });
            }
            let path = self.pad_path(&meta.pad_id);
            let file = match OpenOptions::new().read(true).write(true).open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    // Keep the contact so it can be listed and removed.
                    let next = meta.reserved;
                    let name = meta.name.clone();
                    state.insert(
                        name,
                        Live {
                            meta,
                            file: None,
                            next,
                        },
                    );
                    continue;
                }
                Err(e) => {
                    return Err(Error::io(
                        format!("cannot open pad file {} for {}", path.display(), meta.name),
                        e,
                    ));
                }
            };
            // Finish any erase a crash interrupted: everything used or
            // reserved on the send side, and ranges recorded as opened or
            // burned whose erase may not have reached the disk.
            if meta.erased < meta.reserved || !meta.pending_erase.is_empty() {
                let r = meta.count_range(meta.side, meta.erased, meta.reserved);
                zero_at(&file, r.lo, r.len())
                    .ctx(|| format!("cannot erase used pad for {}", meta.name))?;
                for p in &meta.pending_erase {
                    zero_at(&file, p.lo, p.len())
                        .ctx(|| format!("cannot erase used pad for {}", meta.name))?;
                }
                file.sync_data()
                    .ctx(|| format!("cannot sync pad file for {}", meta.name))?;
                meta.erased = meta.reserved;
                meta.pending_erase.clear();
                self.persist(&meta)?;
            }
            let next = meta.reserved;
            let file = Some(file);
            state.insert(meta.name.clone(), Live { meta, file, next });
        }
        // Pad files nobody owns (a crash during creation, import or removal)
        // are erased and deleted.
        let known: Vec<PathBuf> = state
            .values()
            .map(|l| self.pad_path(&l.meta.pad_id))
            .collect();
        let pads = self.dir.join(PADS_DIR);
        if let Ok(entries) = std::fs::read_dir(&pads) {
            for e in entries.flatten() {
                let p = e.path();
                if p.is_file() && !known.contains(&p) {
                    fsutil::shred_quietly(&p);
                }
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
        meta.version = META_VERSION;
        let path = self.pad_path(&meta.pad_id);
        std::fs::rename(tmp_pad, &path).ctx(|| format!("cannot create {}", path.display()))?;
        let res = (|| {
            sync_dir(&self.dir.join(PADS_DIR))?;
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .ctx(|| format!("cannot open {}", path.display()))?;
            self.persist(&meta)?;
            Ok(file)
        })();
        match res {
            Ok(file) => {
                let next = meta.reserved;
                let file = Some(file);
                state.insert(meta.name.clone(), Live { meta, file, next });
                Ok(())
            }
            Err(e) => {
                let _ = self.tree.remove(Self::key(&meta.name));
                let _ = self.tree.flush();
                fsutil::shred_quietly(&path);
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

    /// Fail early if a pad with this fingerprint is already stored.
    pub(crate) fn check_pad_id_free(&self, pad_id: &str) -> Result<()> {
        if let Some(l) = self.lock().values().find(|l| l.meta.pad_id == pad_id) {
            return Err(Error::PadAlreadyStored {
                existing: l.meta.name.clone(),
            });
        }
        Ok(())
    }

    /// Names of all contacts, sorted.
    pub fn contacts(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    /// Facts about one contact.
    pub fn contact(&self, name: &str) -> Result<ContactInfo> {
        let state = self.lock();
        let l = state
            .get(name)
            .ok_or_else(|| Error::UnknownContact(name.to_string()))?;
        Ok(info(l))
    }

    /// Facts about every contact, sorted by name.
    pub fn list(&self) -> Vec<ContactInfo> {
        self.lock().values().map(info).collect()
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

    /// Seal `message` for `contact`.
    ///
    /// Order of events: the range is taken from the in-memory cursor; if it
    /// crosses the durable reserved bound, the pad file is fdatasync'ed (so
    /// every earlier erase is durable) and a new bound, at least one
    /// reservation block ahead, is written and flushed to sled *before* any
    /// pad byte is read. Then the bytes are read (pread), the package is
    /// sealed, and the bytes are overwritten with zeros (pwrite) before the
    /// package is returned. A crash may skip the rest of a block; it can
    /// never hand out the same byte twice.
    pub fn seal(&self, contact: &str, message: &[u8]) -> Result<Sealed> {
        let mut state = self.lock();
        let l = state
            .get_mut(contact)
            .ok_or_else(|| Error::UnknownContact(contact.to_string()))?;
        let (cost, left) = check_fits(l, contact, message.len())?;
        let used = l.next;
        let new_next = used + cost;
        if new_next > l.meta.reserved {
            l.file()?
                .sync_data()
                .ctx(|| format!("cannot sync pad file for {contact}"))?;
            let mut m = l.meta.clone();
            m.erased = used;
            m.reserved = new_next
                .max(used.saturating_add(self.opts.reserve_block))
                .min(m.send_capacity());
            self.persist(&m)?;
            l.meta = m;
        }
        l.next = new_next;
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
    /// recorded as opened (sled flush), then its bytes are zeroed on disk
    /// and fdatasync'ed, then the message is returned. A replayed range
    /// (already opened, so already erased) is refused with
    /// [`Error::Replay`] without counting a failure. A bad tag counts a
    /// failure for that exact range (durably); the third failure burns the
    /// range: its bytes are erased and it is recorded as burned
    /// ([`Error::RangeBurned`]).
    pub fn open(&self, contact: &str, package: &[u8]) -> Result<Opened> {
        let mut state = self.lock();
        let l = state
            .get_mut(contact)
            .ok_or_else(|| Error::UnknownContact(contact.to_string()))?;
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
            Err(otc_proto::ProtoError::BadTag) => {
                let mut m = l.meta.clone();
                let count = match m.failures.iter_mut().find(|f| f.range == c.range) {
                    Some(f) => {
                        f.count += 1;
                        f.count
                    }
                    None => {
                        if m.failures.len() >= MAX_FAILURE_RECORDS {
                            m.failures.remove(0);
                        }
                        m.failures.push(Failure {
                            range: c.range,
                            count: 1,
                        });
                        1
                    }
                };
                if count >= MAX_FAILED_VERIFICATIONS {
                    m.failures.retain(|f| f.range != c.range);
                    insert_range(&mut m.burned, c.range);
                    m.pending_erase.push(c.range);
                    self.persist(&m)?;
                    l.meta = m;
                    self.erase_now(l, c.range)?;
                    Err(Error::RangeBurned {
                        index: c.index,
                        limit: MAX_FAILED_VERIFICATIONS,
                    })
                } else {
                    self.persist(&m)?;
                    l.meta = m;
                    Err(Error::VerifyFailed {
                        attempt: count,
                        limit: MAX_FAILED_VERIFICATIONS,
                    })
                }
            }
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
        let path = self.pad_path(&l.meta.pad_id);
        if path.exists() {
            fsutil::shred(&path, progress)?;
        }
        state.remove(contact);
        self.tree.remove(Self::key(contact)).map_err(db_err)?;
        self.tree.flush().map_err(db_err)?;
        Ok(())
    }

    /// Shut down cleanly: sync pad files and give back each contact's
    /// unused reservation, so a clean stop skips no pad.
    pub fn close(self) -> Result<()> {
        self.release()
    }

    fn release(&self) -> Result<()> {
        let mut state = self.lock();
        for l in state.values_mut() {
            if l.next < l.meta.reserved
                || l.meta.erased < l.next
                || !l.meta.pending_erase.is_empty()
            {
                let Some(file) = l.file.as_ref() else {
                    continue;
                };
                file.sync_data()
                    .ctx(|| format!("cannot sync pad file for {}", l.meta.name))?;
                let mut m = l.meta.clone();
                m.reserved = l.next;
                m.erased = l.next;
                self.persist(&m)?;
                l.meta = m;
            }
        }
        self.db.flush().map_err(db_err)?;
        Ok(())
    }
}

impl Drop for PadStore {
    fn drop(&mut self) {
        let _ = self.release();
    }
}

/// Work around a crash-recovery bug of sled 0.34: while opening, sled
/// writes a new snapshot to `snap.<lsn>.generating`, syncs it and renames
/// it to `snap.<lsn>`; but when it looks for the latest snapshot it also
/// considers `*.generating` files, so a process killed while writing one
/// leaves a database that no longer opens ("Corruption"). Such a file is
/// by construction an unfinished temporary: the complete previous snapshot
/// (or none, meaning "replay the log from the start") is still there, since
/// sled removes old snapshots only after the rename. Deleting it restores
/// the state from before the interrupted open. Found by the SIGKILL test.
fn remove_interrupted_snapshots(db_dir: &Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(db_dir) else {
        return Ok(()); // no database yet
    };
    let mut removed = false;
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            let p = e.path();
            std::fs::remove_file(&p)
                .ctx(|| format!("cannot remove unfinished snapshot {}", p.display()))?;
            removed = true;
        }
    }
    if removed {
        sync_dir(db_dir)?;
    }
    Ok(())
}

/// Cost of a message and pad left, or the reason it cannot be sent.
fn check_fits(l: &Live, contact: &str, message_len: usize) -> Result<(u64, u64)> {
    let left = l.meta.send_capacity().saturating_sub(l.next);
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

fn info(l: &Live) -> ContactInfo {
    let m = &l.meta;
    let send_left = m.send_capacity().saturating_sub(l.next);
    let recv_left = m.recv_left();
    let per = m.format.pad_cost(NOMINAL_MESSAGE) as u64;
    ContactInfo {
        name: m.name.clone(),
        pad_id: m.pad_id.clone(),
        size: m.size,
        split: m.split,
        side: m.side,
        format: m.format,
        origin: m.origin,
        send_left,
        recv_left,
        send_messages_left: send_left / per,
        recv_messages_left: recv_left / per,
        burned: m.burned.iter().map(|r| r.len()).sum(),
    }
}
