//! The storage seam: every file operation of the pad store goes through
//! [`Vfs`] and [`VFile`], so that tests can watch the order of operations
//! ([`Recorder`]) and simulate power loss ([`SimFs`]).
//!
//! * [`RealFs`] is the real thing: `std::fs`, `pread`/`pwrite`, `fdatasync`
//!   (`sync_data`), `fsync` (`sync_all`), `fsync` of directories.
//! * [`Recorder`] wraps any `Vfs` and logs every operation ([`Op`]).
//! * [`Faulty`] wraps any `Vfs` and fails operations on demand, as a full
//!   disk (`ENOSPC` on anything that writes) or a failing one (`EIO` on
//!   everything), until the fault is cleared ([`Fault`]).
//! * [`SimFs`] is an in-memory file system that knows what is durable: per
//!   file, the synced contents and the writes since; per directory, the
//!   synced entries and the creates, renames and removes since (they become
//!   durable when the directory is synced). [`SimFs::crash`] returns the file
//!   system a power cut would leave: every unsynced write and directory
//!   change dropped, except a random subset the caller's RNG chooses to keep
//!   (writes may also be torn). Modelled on SQLite's crash-test VFS and
//!   FoundationDB's simulation. [`SimFs::die_after`] makes every operation
//!   after the next `n` fail, which puts the crash point *inside* a store
//!   operation, between its writes and syncs.
//!
//! Paths are absolute paths as the store builds them. The simulator has one
//! root directory, `/`, that always exists.

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// How to open a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenHow {
    /// Existing file, read only.
    Read,
    /// Existing file, read and write.
    ReadWrite,
    /// A new private (0600) file, read and write; fails if the name exists
    /// (also if it is a symbolic link).
    CreateNew,
}

/// What a name in a directory is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    /// A symbolic link or anything else: the store never follows or uses it.
    Other,
}

/// An open file.
pub trait VFile: Send + Sync {
    /// Fill `buf` from `offset` (`pread`); a short file is an error.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Write all of `buf` at `offset` (`pwrite`), not synced.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Truncate or extend (with zeros), not synced.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Current length in bytes.
    fn size(&self) -> io::Result<u64>;
    /// `fdatasync`: the contents (and length) are durable.
    fn sync_data(&self) -> io::Result<()>;
    /// `fsync`: contents and metadata are durable.
    fn sync_all(&self) -> io::Result<()>;
    /// The file as stored, under any encryption layer: erase after use
    /// writes its zeros here, to the ciphertext, never through the cipher
    /// (see [`crate::vault`]). A plain file is its own raw file.
    fn raw(&self) -> &dyn VFile;
    /// Start writing `len` bytes from `offset` to the medium now, without
    /// waiting for them. A hint, never a promise: nothing is durable until a
    /// sync says so, and a failure shows at that sync. It lets a big file's
    /// writeback run while its next chunk is made, so the final sync waits
    /// only for the tail. Default: nothing (a simulated file has no medium).
    fn start_writeback(&self, offset: u64, len: u64) {
        let _ = (offset, len);
    }
    /// A hint that this open file is read in small pieces at a few places
    /// that move slowly (a message's text, a 16-byte slot key at the other
    /// end of the region), never streamed: the kernel's readahead is off,
    /// and each read that touches a [`READ_AHEAD`] window not touched lately
    /// asks for that window and its two neighbours instead. With
    /// `drop_cached`, what is cached of the file now is let go too (pages
    /// already synced; the rest is written back first). On Linux,
    /// `posix_fadvise` RANDOM, WILLNEED and DONTNEED. Default: nothing.
    ///
    /// What it brings: no pad byte comes into memory far from where it is
    /// used, and the pages come in one at a time, which newer kernels would
    /// otherwise cache as large folios, where each small write (an erase
    /// after use) costs 3 to 5 times as much.
    fn read_sparsely(&self, drop_cached: bool) {
        let _ = drop_cached;
    }
}

/// [`VFile::start_writeback`] for a real file: Linux's
/// `sync_file_range(SYNC_FILE_RANGE_WRITE)`; elsewhere, nothing.
pub fn start_writeback(file: &std::fs::File, offset: u64, len: u64) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use std::os::fd::AsRawFd;
        let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
            return;
        };
        // SAFETY: the descriptor is open for as long as `file` is borrowed,
        // and sync_file_range reads no memory of ours. Its result is a hint's
        // (see VFile::start_writeback): errors surface at the next sync.
        let _ = unsafe {
            libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE)
        };
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = (file, offset, len);
}

/// The window [`VFile::read_sparsely`] reads ahead by: the default
/// reservation block, so a block of messages costs one request.
pub const READ_AHEAD: u64 = 64 * 1024;

/// `posix_fadvise(advice)` over `len` bytes from `offset` (0: to the end)
/// on Linux; elsewhere, nothing. Its result is a hint's: ignored.
fn advise(file: &std::fs::File, offset: u64, len: u64, advice: Advice) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use std::os::fd::AsRawFd;
        let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
            return;
        };
        let advice = match advice {
            Advice::Random => libc::POSIX_FADV_RANDOM,
            Advice::WillNeed => libc::POSIX_FADV_WILLNEED,
            Advice::DontNeed => libc::POSIX_FADV_DONTNEED,
        };
        // SAFETY: the descriptor is open for as long as `file` is borrowed,
        // and posix_fadvise reads no memory of ours; a hint changes no data.
        let _ = unsafe { libc::posix_fadvise(file.as_raw_fd(), offset, len, advice) };
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = (file, offset, len, advice);
}

#[derive(Debug, Clone, Copy)]
enum Advice {
    Random,
    WillNeed,
    DontNeed,
}

/// The [`READ_AHEAD`] windows a sparsely read file asked for lately, most
/// recent first (`u64::MAX`: none).
type Windows = [u64; 4];

/// A file system as the store uses it.
pub trait Vfs: Send + Sync + std::fmt::Debug {
    fn open(&self, path: &Path, how: OpenHow) -> io::Result<Box<dyn VFile>>;
    /// Rename within one directory (atomic); durable once the directory is synced.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Remove a file; durable once the directory is synced.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Create one private (0700) directory; fails if the name exists.
    fn create_dir(&self, path: &Path) -> io::Result<()>;
    /// Remove an empty directory; durable once its parent is synced.
    fn remove_dir(&self, path: &Path) -> io::Result<()>;
    /// Names in a directory, sorted.
    fn read_dir(&self, path: &Path) -> io::Result<Vec<OsString>>;
    /// `fsync` a directory: creates, renames and removes in it are durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// What `path` is, without following symbolic links; `None` if missing.
    fn kind(&self, path: &Path) -> io::Result<Option<Kind>>;
    /// Set the permission bits of a file or directory (never through a
    /// symbolic link).
    fn set_mode(&self, path: &Path, mode: u32) -> io::Result<()>;
    /// Take an exclusive advisory lock on an existing file, without
    /// waiting. `Ok(None)`: someone else holds it. The lock lasts as long
    /// as the returned token.
    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn Any + Send + Sync>>>;
}

/// Read a whole (small) file.
pub fn read_all(vfs: &dyn Vfs, path: &Path, max: u64) -> io::Result<Vec<u8>> {
    let f = vfs.open(path, OpenHow::Read)?;
    let len = f.size()?;
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{len} bytes, more than the {max} expected"),
        ));
    }
    let mut buf = vec![0u8; len as usize];
    f.read_exact_at(&mut buf, 0)?;
    Ok(buf)
}

// ---------------------------------------------------------------- real ----

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealFs;

struct RealFile(std::fs::File, Mutex<Option<Windows>>);

impl RealFile {
    fn new(file: std::fs::File) -> RealFile {
        RealFile(file, Mutex::new(None))
    }

    /// Read sparsely: ask for each window `buf` at `offset` touches that
    /// was not asked for lately, with its neighbours.
    fn read_ahead(&self, offset: u64, len: usize) {
        let mut windows = lock(&self.1);
        let Some(seen) = windows.as_mut() else {
            return;
        };
        for w in new_windows(seen, offset, len).into_iter().flatten() {
            let lo = w.saturating_sub(1) * READ_AHEAD;
            advise(&self.0, lo, 3 * READ_AHEAD, Advice::WillNeed);
        }
    }
}

/// The windows a read of `len` bytes at `offset` touches that are not in
/// `seen` (at most two: a read is far shorter than a window); they are
/// noted in it, the oldest forgotten.
fn new_windows(seen: &mut Windows, offset: u64, len: usize) -> [Option<u64>; 2] {
    let last = offset.saturating_add(len.saturating_sub(1) as u64);
    let mut new = [None; 2];
    for (i, w) in [offset / READ_AHEAD, last / READ_AHEAD]
        .into_iter()
        .enumerate()
    {
        if !seen.contains(&w) {
            seen.rotate_right(1);
            seen[0] = w;
            new[i] = Some(w);
        }
    }
    new
}

impl VFile for RealFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.read_ahead(offset, buf.len());
        self.0.read_exact_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn size(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn sync_all(&self) -> io::Result<()> {
        self.0.sync_all()
    }
    fn raw(&self) -> &dyn VFile {
        self
    }
    fn start_writeback(&self, offset: u64, len: u64) {
        start_writeback(&self.0, offset, len)
    }
    fn read_sparsely(&self, drop_cached: bool) {
        advise(&self.0, 0, 0, Advice::Random);
        if drop_cached {
            advise(&self.0, 0, 0, Advice::DontNeed);
        }
        *lock(&self.1) = Some([u64::MAX; 4]);
    }
}

impl Vfs for RealFs {
    /// Opens `path`, never following it elsewhere (issue 23): the data
    /// directory is on a card anyone may have held, and the device runs as
    /// root. An existing file must be a regular file with one name: a
    /// symbolic link, or a file with a second hard link (whose other name
    /// may be outside the data directory), is refused with an error that
    /// names it. The check is the name's `lstat` against the opened file's
    /// `fstat` (same device and inode), so a link swapped in between is
    /// caught too. A new file is `O_EXCL`, which never follows a link.
    fn open(&self, path: &Path, how: OpenHow) -> io::Result<Box<dyn VFile>> {
        use std::os::unix::fs::MetadataExt;
        let mut o = OpenOptions::new();
        match how {
            OpenHow::Read => o.read(true),
            OpenHow::ReadWrite => o.read(true).write(true),
            OpenHow::CreateNew => {
                o.read(true).write(true).create_new(true).mode(0o600);
                return Ok(Box::new(RealFile::new(o.open(path)?)));
            }
        };
        let refused = |why: String| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} {why}: refused, never followed", path.display()),
            )
        };
        let named = std::fs::symlink_metadata(path)?;
        if named.file_type().is_symlink() {
            return Err(refused("is a symbolic link".into()));
        }
        if !named.file_type().is_file() {
            return Err(refused("is not a regular file".into()));
        }
        let f = o.open(path)?;
        let opened = f.metadata()?;
        if (opened.dev(), opened.ino()) != (named.dev(), named.ino()) {
            return Err(refused("changed while it was opened".into()));
        }
        if opened.nlink() > 1 {
            return Err(refused(format!(
                "has {} hard links (another name may be outside the data directory)",
                opened.nlink()
            )));
        }
        Ok(Box::new(RealFile::new(f)))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
    fn create_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::DirBuilder::new().mode(0o700).create(path)
    }
    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir(path)
    }
    fn read_dir(&self, path: &Path) -> io::Result<Vec<OsString>> {
        let mut v = std::fs::read_dir(path)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<Vec<_>>>()?;
        v.sort();
        Ok(v)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::File::open(path)?.sync_all()
    }
    fn kind(&self, path: &Path) -> io::Result<Option<Kind>> {
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_file() => Ok(Some(Kind::File)),
            Ok(m) if m.file_type().is_dir() => Ok(Some(Kind::Dir)),
            Ok(_) => Ok(Some(Kind::Other)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
    fn set_mode(&self, path: &Path, mode: u32) -> io::Result<()> {
        let m = std::fs::symlink_metadata(path)?;
        if m.file_type().is_symlink() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "is a symbolic link; not changing what it points to",
            ));
        }
        if m.permissions().mode() & 0o7777 != mode {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
        }
        Ok(())
    }
    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn Any + Send + Sync>>> {
        let f = OpenOptions::new().read(true).open(path)?;
        match f.try_lock() {
            Ok(()) => Ok(Some(Box::new(f))),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }
}

// ------------------------------------------------------------ recorder ----

/// One recorded operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Open(PathBuf, OpenHow),
    Read {
        path: PathBuf,
        offset: u64,
        len: u64,
    },
    Write {
        path: PathBuf,
        offset: u64,
        len: u64,
    },
    SetLen(PathBuf, u64),
    SyncData(PathBuf),
    SyncAll(PathBuf),
    Rename(PathBuf, PathBuf),
    Remove(PathBuf),
    CreateDir(PathBuf),
    RemoveDir(PathBuf),
    ReadDir(PathBuf),
    SyncDir(PathBuf),
    SetMode(PathBuf, u32),
    /// A label a test put in the log ([`Recorder::mark`]) to place an
    /// event that is not a file operation (a prompt, a reply).
    Mark(String),
}

/// A [`Vfs`] that logs every operation, then does it on the inner one.
#[derive(Debug, Clone)]
pub struct Recorder<V> {
    inner: V,
    log: Arc<Mutex<Vec<Op>>>,
}

impl<V: Vfs> Recorder<V> {
    pub fn new(inner: V) -> Self {
        Recorder {
            inner,
            log: Arc::new(Mutex::new(Vec::new())),
        }
    }
    /// The operations logged since the last call (the log is emptied).
    pub fn take(&self) -> Vec<Op> {
        std::mem::take(&mut *lock(&self.log))
    }
    /// Put a label in the log (see [`Op::Mark`]).
    pub fn mark(&self, label: &str) {
        self.push(Op::Mark(label.to_string()));
    }
    fn push(&self, op: Op) {
        lock(&self.log).push(op);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct RecFile {
    inner: Box<dyn VFile>,
    path: PathBuf,
    log: Arc<Mutex<Vec<Op>>>,
}

impl RecFile {
    fn push(&self, op: Op) {
        lock(&self.log).push(op);
    }
}

impl VFile for RecFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.push(Op::Read {
            path: self.path.clone(),
            offset,
            len: buf.len() as u64,
        });
        self.inner.read_exact_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.push(Op::Write {
            path: self.path.clone(),
            offset,
            len: buf.len() as u64,
        });
        self.inner.write_all_at(buf, offset)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.push(Op::SetLen(self.path.clone(), len));
        self.inner.set_len(len)
    }
    fn size(&self) -> io::Result<u64> {
        self.inner.size()
    }
    fn sync_data(&self) -> io::Result<()> {
        self.push(Op::SyncData(self.path.clone()));
        self.inner.sync_data()
    }
    fn sync_all(&self) -> io::Result<()> {
        self.push(Op::SyncAll(self.path.clone()));
        self.inner.sync_all()
    }
    fn raw(&self) -> &dyn VFile {
        self
    }
    // Not recorded: a hint that orders and promises nothing.
    fn start_writeback(&self, offset: u64, len: u64) {
        self.inner.start_writeback(offset, len)
    }
    fn read_sparsely(&self, drop_cached: bool) {
        self.inner.read_sparsely(drop_cached)
    }
}

impl<V: Vfs> Vfs for Recorder<V> {
    fn open(&self, path: &Path, how: OpenHow) -> io::Result<Box<dyn VFile>> {
        self.push(Op::Open(path.to_path_buf(), how));
        Ok(Box::new(RecFile {
            inner: self.inner.open(path, how)?,
            path: path.to_path_buf(),
            log: self.log.clone(),
        }))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.push(Op::Rename(from.to_path_buf(), to.to_path_buf()));
        self.inner.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.push(Op::Remove(path.to_path_buf()));
        self.inner.remove_file(path)
    }
    fn create_dir(&self, path: &Path) -> io::Result<()> {
        self.push(Op::CreateDir(path.to_path_buf()));
        self.inner.create_dir(path)
    }
    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        self.push(Op::RemoveDir(path.to_path_buf()));
        self.inner.remove_dir(path)
    }
    fn read_dir(&self, path: &Path) -> io::Result<Vec<OsString>> {
        self.push(Op::ReadDir(path.to_path_buf()));
        self.inner.read_dir(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.push(Op::SyncDir(path.to_path_buf()));
        self.inner.sync_dir(path)
    }
    fn kind(&self, path: &Path) -> io::Result<Option<Kind>> {
        self.inner.kind(path)
    }
    fn set_mode(&self, path: &Path, mode: u32) -> io::Result<()> {
        self.push(Op::SetMode(path.to_path_buf(), mode));
        self.inner.set_mode(path, mode)
    }
    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn Any + Send + Sync>>> {
        self.inner.try_lock(path)
    }
}

// -------------------------------------------------------------- faults ----

/// A storage fault [`Faulty`] injects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The disk is full: every operation that writes (file writes, length
    /// changes, creating files or directories, renames) fails with
    /// `ENOSPC`; reads, syncs and removals still work.
    NoSpace,
    /// The disk fails: every operation fails with `EIO`.
    Io,
}

impl Fault {
    fn error(self) -> io::Error {
        match self {
            // The kernel's errors, so that callers see what they would see.
            Fault::NoSpace => io::Error::from_raw_os_error(28),
            Fault::Io => io::Error::from_raw_os_error(5),
        }
    }
}

/// A [`Vfs`] that passes every operation to the inner one, except while a
/// [`Fault`] is set ([`Faulty::set`]). Cloning gives another handle on the
/// same switch.
#[derive(Debug, Clone)]
pub struct Faulty<V> {
    inner: V,
    fault: Arc<Mutex<Option<Fault>>>,
}

impl<V: Vfs> Faulty<V> {
    pub fn new(inner: V) -> Self {
        Faulty {
            inner,
            fault: Arc::new(Mutex::new(None)),
        }
    }
    /// Set (or, with `None`, clear) the fault.
    pub fn set(&self, fault: Option<Fault>) {
        *lock(&self.fault) = fault;
    }
}

/// Fails with the fault if one is set and it hits an operation that
/// writes (`writes`) or any operation (`Fault::Io`).
fn check_fault(fault: &Mutex<Option<Fault>>, writes: bool) -> io::Result<()> {
    match *lock(fault) {
        Some(Fault::Io) => Err(Fault::Io.error()),
        Some(Fault::NoSpace) if writes => Err(Fault::NoSpace.error()),
        _ => Ok(()),
    }
}

struct FaultyFile {
    inner: Box<dyn VFile>,
    fault: Arc<Mutex<Option<Fault>>>,
}

impl VFile for FaultyFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        check_fault(&self.fault, false)?;
        self.inner.read_exact_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        check_fault(&self.fault, true)?;
        self.inner.write_all_at(buf, offset)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        check_fault(&self.fault, true)?;
        self.inner.set_len(len)
    }
    fn size(&self) -> io::Result<u64> {
        check_fault(&self.fault, false)?;
        self.inner.size()
    }
    fn sync_data(&self) -> io::Result<()> {
        check_fault(&self.fault, false)?;
        self.inner.sync_data()
    }
    fn sync_all(&self) -> io::Result<()> {
        check_fault(&self.fault, false)?;
        self.inner.sync_all()
    }
    fn raw(&self) -> &dyn VFile {
        self
    }
}

impl<V: Vfs> Vfs for Faulty<V> {
    fn open(&self, path: &Path, how: OpenHow) -> io::Result<Box<dyn VFile>> {
        check_fault(&self.fault, how == OpenHow::CreateNew)?;
        Ok(Box::new(FaultyFile {
            inner: self.inner.open(path, how)?,
            fault: self.fault.clone(),
        }))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        check_fault(&self.fault, true)?;
        self.inner.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        check_fault(&self.fault, false)?;
        self.inner.remove_file(path)
    }
    fn create_dir(&self, path: &Path) -> io::Result<()> {
        check_fault(&self.fault, true)?;
        self.inner.create_dir(path)
    }
    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        check_fault(&self.fault, false)?;
        self.inner.remove_dir(path)
    }
    fn read_dir(&self, path: &Path) -> io::Result<Vec<OsString>> {
        check_fault(&self.fault, false)?;
        self.inner.read_dir(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        check_fault(&self.fault, false)?;
        self.inner.sync_dir(path)
    }
    fn kind(&self, path: &Path) -> io::Result<Option<Kind>> {
        check_fault(&self.fault, false)?;
        self.inner.kind(path)
    }
    fn set_mode(&self, path: &Path, mode: u32) -> io::Result<()> {
        check_fault(&self.fault, false)?;
        self.inner.set_mode(path, mode)
    }
    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn Any + Send + Sync>>> {
        check_fault(&self.fault, false)?;
        self.inner.try_lock(path)
    }
}

// ----------------------------------------------------------- simulator ----

/// One write not yet synced.
#[derive(Clone, Debug)]
enum Pending {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

#[derive(Clone, Debug, Default)]
struct Inode {
    durable: Vec<u8>,
    current: Vec<u8>,
    pending: Vec<Pending>,
    mode: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Entry {
    File(u64),
    Dir,
}

/// A directory change not yet synced.
#[derive(Clone, Debug)]
enum DirOp {
    Link(PathBuf, Entry),
    Unlink(PathBuf),
    Rename(PathBuf, PathBuf),
}

#[derive(Clone, Debug, Default)]
struct SimState {
    inodes: HashMap<u64, Inode>,
    next_ino: u64,
    names: BTreeMap<PathBuf, Entry>,
    durable_names: BTreeMap<PathBuf, Entry>,
    /// Unsynced changes, per parent directory, in order.
    dir_log: BTreeMap<PathBuf, Vec<DirOp>>,
}

#[derive(Debug, Default)]
struct SimShared {
    state: Mutex<SimState>,
    dead: AtomicBool,
    /// Operations left before the power goes (`u64::MAX`: never).
    budget: AtomicU64,
    ops: AtomicU64,
}

/// The power-loss simulator (see the module docs). Cloning gives another
/// handle to the same file system.
#[derive(Debug, Clone)]
pub struct SimFs(Arc<SimShared>);

impl Default for SimFs {
    fn default() -> Self {
        SimFs::new()
    }
}

fn apply(buf: &mut Vec<u8>, p: &Pending) {
    match p {
        Pending::Write { offset, data } => {
            let end = *offset as usize + data.len();
            if buf.len() < end {
                buf.resize(end, 0);
            }
            buf[*offset as usize..end].copy_from_slice(data);
        }
        Pending::SetLen(n) => buf.resize(*n as usize, 0),
    }
}

fn apply_dir(names: &mut BTreeMap<PathBuf, Entry>, op: &DirOp) {
    match op {
        DirOp::Link(p, e) => {
            names.insert(p.clone(), *e);
        }
        DirOp::Unlink(p) => {
            names.remove(p);
        }
        DirOp::Rename(a, b) => {
            if let Some(e) = names.remove(a) {
                names.insert(b.clone(), e);
            }
        }
    }
}

fn not_found(p: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file", p.display()),
    )
}

fn parent(p: &Path) -> PathBuf {
    p.parent().map(Path::to_path_buf).unwrap_or_default()
}

/// What a crash keeps of the writes and directory changes not yet synced.
pub trait CrashRng {
    /// A number in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64;
}

impl SimFs {
    /// An empty file system with only `/`.
    pub fn new() -> SimFs {
        let mut st = SimState::default();
        st.names.insert(PathBuf::from("/"), Entry::Dir);
        st.durable_names.insert(PathBuf::from("/"), Entry::Dir);
        let shared = SimShared {
            state: Mutex::new(st),
            dead: AtomicBool::new(false),
            budget: AtomicU64::new(u64::MAX),
            ops: AtomicU64::new(0),
        };
        SimFs(Arc::new(shared))
    }

    /// After `n` more operations, the power goes: that operation and every
    /// later one fail (as if the process had died there).
    pub fn die_after(&self, n: u64) {
        self.0.budget.store(n, Ordering::SeqCst);
    }

    /// Operations done so far (for choosing crash points).
    pub fn ops(&self) -> u64 {
        self.0.ops.load(Ordering::SeqCst)
    }

    /// Whether the power has gone.
    pub fn is_dead(&self) -> bool {
        self.0.dead.load(Ordering::SeqCst)
    }

    /// Cut the power: this file system is dead from now on (every
    /// operation on it or its open files fails), and the returned one is
    /// what the disk holds after the reboot. Unsynced writes are dropped,
    /// except that each is kept with probability `keep_percent`% (and a
    /// kept write is torn, a random prefix only, one time in four);
    /// each directory keeps a random prefix of its unsynced changes when
    /// `keep_percent > 0`. Names whose directory did not survive are gone.
    pub fn crash(&self, rng: &mut dyn CrashRng, keep_percent: u64) -> SimFs {
        self.0.dead.store(true, Ordering::SeqCst);
        self.after_power_loss(rng, keep_percent)
    }

    /// What a power cut right now would leave with nothing unsynced kept,
    /// without cutting the power on this one (for tests that look at the
    /// durable state and go on).
    pub fn durable_copy(&self) -> SimFs {
        struct Never;
        impl CrashRng for Never {
            fn below(&mut self, _n: u64) -> u64 {
                0
            }
        }
        self.after_power_loss(&mut Never, 0)
    }

    fn after_power_loss(&self, rng: &mut dyn CrashRng, keep_percent: u64) -> SimFs {
        let st = lock(&self.0.state);
        let mut inodes = HashMap::new();
        for (&ino, node) in &st.inodes {
            let mut d = node.durable.clone();
            for p in &node.pending {
                if keep_percent > 0 && rng.below(100) < keep_percent {
                    match p {
                        Pending::Write { offset, data } if rng.below(4) == 0 => {
                            let cut = rng.below(data.len() as u64 + 1) as usize;
                            apply(
                                &mut d,
                                &Pending::Write {
                                    offset: *offset,
                                    data: data[..cut].to_vec(),
                                },
                            );
                        }
                        _ => apply(&mut d, p),
                    }
                }
            }
            inodes.insert(
                ino,
                Inode {
                    durable: d.clone(),
                    current: d,
                    pending: Vec::new(),
                    mode: node.mode,
                },
            );
        }
        let mut names = st.durable_names.clone();
        for ops in st.dir_log.values() {
            let keep = if keep_percent > 0 {
                rng.below(ops.len() as u64 + 1) as usize
            } else {
                0
            };
            for op in &ops[..keep] {
                apply_dir(&mut names, op);
            }
        }
        // Drop names whose parent directory is gone (repeat for nesting).
        loop {
            let orphans: Vec<PathBuf> = names
                .keys()
                .filter(|p| p.as_os_str() != "/" && !names.contains_key(&parent(p)))
                .cloned()
                .collect();
            if orphans.is_empty() {
                break;
            }
            for o in orphans {
                names.remove(&o);
            }
        }
        let next_ino = st.next_ino;
        drop(st);
        let new = SimState {
            inodes,
            next_ino,
            durable_names: names.clone(),
            names,
            dir_log: BTreeMap::new(),
        };
        SimFs(Arc::new(SimShared {
            state: Mutex::new(new),
            dead: AtomicBool::new(false),
            budget: AtomicU64::new(u64::MAX),
            ops: AtomicU64::new(0),
        }))
    }

    /// The current contents of a file (for tests).
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        let st = lock(&self.0.state);
        match st.names.get(path) {
            Some(Entry::File(ino)) => st.inodes.get(ino).map(|n| n.current.clone()),
            _ => None,
        }
    }

    /// Count an operation; fail if the power is gone.
    fn tick(&self) -> io::Result<MutexGuard<'_, SimState>> {
        if self.0.dead.load(Ordering::SeqCst) {
            return Err(io::Error::other("simulated power loss"));
        }
        let left = self.0.budget.load(Ordering::SeqCst);
        if left == 0 {
            self.0.dead.store(true, Ordering::SeqCst);
            return Err(io::Error::other("simulated power loss"));
        }
        if left != u64::MAX {
            self.0.budget.store(left - 1, Ordering::SeqCst);
        }
        self.0.ops.fetch_add(1, Ordering::SeqCst);
        Ok(lock(&self.0.state))
    }

    fn dir_change(st: &mut SimState, dir: PathBuf, op: DirOp) {
        apply_dir(&mut st.names, &op);
        st.dir_log.entry(dir).or_default().push(op);
    }
}

struct SimFile {
    fs: SimFs,
    ino: u64,
    write: bool,
}

impl SimFile {
    fn with<T>(&self, f: impl FnOnce(&mut Inode) -> io::Result<T>) -> io::Result<T> {
        let mut st = self.fs.tick()?;
        let node = st
            .inodes
            .get_mut(&self.ino)
            .ok_or_else(|| io::Error::other("inode vanished"))?;
        f(node)
    }
    fn writable(&self) -> io::Result<()> {
        if self.write {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "file opened read-only",
            ))
        }
    }
}

impl VFile for SimFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.with(|n| {
            let end = offset as usize + buf.len();
            if end > n.current.len() {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "read past the end of the file",
                ));
            }
            buf.copy_from_slice(&n.current[offset as usize..end]);
            Ok(())
        })
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.writable()?;
        self.with(|n| {
            let p = Pending::Write {
                offset,
                data: buf.to_vec(),
            };
            apply(&mut n.current, &p);
            n.pending.push(p);
            Ok(())
        })
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.writable()?;
        self.with(|n| {
            let p = Pending::SetLen(len);
            apply(&mut n.current, &p);
            n.pending.push(p);
            Ok(())
        })
    }
    fn size(&self) -> io::Result<u64> {
        self.with(|n| Ok(n.current.len() as u64))
    }
    fn sync_data(&self) -> io::Result<()> {
        self.with(|n| {
            n.durable = n.current.clone();
            n.pending.clear();
            Ok(())
        })
    }
    fn sync_all(&self) -> io::Result<()> {
        self.sync_data()
    }
    fn raw(&self) -> &dyn VFile {
        self
    }
}

impl Vfs for SimFs {
    fn open(&self, path: &Path, how: OpenHow) -> io::Result<Box<dyn VFile>> {
        let mut st = self.tick()?;
        let ino = match (st.names.get(path).copied(), how) {
            (Some(_), OpenHow::CreateNew) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} exists", path.display()),
                ));
            }
            (Some(Entry::File(ino)), _) => ino,
            (Some(Entry::Dir), _) => {
                return Err(io::Error::other(format!(
                    "{} is a directory",
                    path.display()
                )));
            }
            (None, OpenHow::CreateNew) => {
                let dir = parent(path);
                if st.names.get(&dir) != Some(&Entry::Dir) {
                    return Err(not_found(&dir));
                }
                let ino = st.next_ino;
                st.next_ino += 1;
                st.inodes.insert(
                    ino,
                    Inode {
                        mode: 0o600,
                        ..Inode::default()
                    },
                );
                Self::dir_change(
                    &mut st,
                    dir,
                    DirOp::Link(path.to_path_buf(), Entry::File(ino)),
                );
                ino
            }
            (None, _) => return Err(not_found(path)),
        };
        drop(st);
        Ok(Box::new(SimFile {
            fs: self.clone(),
            ino,
            write: how != OpenHow::Read,
        }))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.tick()?;
        let dir = parent(from);
        if dir != parent(to) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "the simulator renames within one directory only",
            ));
        }
        match st.names.get(from) {
            Some(Entry::File(_)) => {}
            _ => return Err(not_found(from)),
        }
        Self::dir_change(
            &mut st,
            dir,
            DirOp::Rename(from.to_path_buf(), to.to_path_buf()),
        );
        Ok(())
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut st = self.tick()?;
        match st.names.get(path) {
            Some(Entry::File(_)) => {}
            _ => return Err(not_found(path)),
        }
        Self::dir_change(&mut st, parent(path), DirOp::Unlink(path.to_path_buf()));
        Ok(())
    }
    fn create_dir(&self, path: &Path) -> io::Result<()> {
        let mut st = self.tick()?;
        if st.names.contains_key(path) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists", path.display()),
            ));
        }
        let dir = parent(path);
        if st.names.get(&dir) != Some(&Entry::Dir) {
            return Err(not_found(&dir));
        }
        Self::dir_change(&mut st, dir, DirOp::Link(path.to_path_buf(), Entry::Dir));
        Ok(())
    }
    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        let mut st = self.tick()?;
        if st.names.get(path) != Some(&Entry::Dir) || path == Path::new("/") {
            return Err(not_found(path));
        }
        if st.names.keys().any(|p| p.parent() == Some(path)) {
            return Err(io::Error::new(
                io::ErrorKind::DirectoryNotEmpty,
                format!("{} is not empty", path.display()),
            ));
        }
        Self::dir_change(&mut st, parent(path), DirOp::Unlink(path.to_path_buf()));
        Ok(())
    }
    fn read_dir(&self, path: &Path) -> io::Result<Vec<OsString>> {
        let st = self.tick()?;
        if st.names.get(path) != Some(&Entry::Dir) {
            return Err(not_found(path));
        }
        Ok(st
            .names
            .keys()
            .filter(|p| p.parent() == Some(path) && p.as_path() != path)
            .filter_map(|p| p.file_name().map(|n| n.to_os_string()))
            .collect())
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut st = self.tick()?;
        if st.names.get(path) != Some(&Entry::Dir) {
            return Err(not_found(path));
        }
        if let Some(ops) = st.dir_log.remove(path) {
            for op in &ops {
                apply_dir(&mut st.durable_names, op);
            }
        }
        Ok(())
    }
    fn kind(&self, path: &Path) -> io::Result<Option<Kind>> {
        let st = self.tick()?;
        Ok(st.names.get(path).map(|e| match e {
            Entry::File(_) => Kind::File,
            Entry::Dir => Kind::Dir,
        }))
    }
    fn set_mode(&self, path: &Path, mode: u32) -> io::Result<()> {
        let mut st = self.tick()?;
        match st.names.get(path).copied() {
            Some(Entry::File(ino)) => {
                if let Some(n) = st.inodes.get_mut(&ino) {
                    n.mode = mode;
                }
                Ok(())
            }
            Some(Entry::Dir) => Ok(()),
            None => Err(not_found(path)),
        }
    }
    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn Any + Send + Sync>>> {
        let st = self.tick()?;
        if !st.names.contains_key(path) {
            return Err(not_found(path));
        }
        // One simulated process at a time: the lock always succeeds.
        Ok(Some(Box::new(())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(u64);
    impl CrashRng for Fixed {
        fn below(&mut self, n: u64) -> u64 {
            self.0 % n
        }
    }

    #[test]
    fn only_synced_data_and_entries_survive_a_crash() {
        let fs = SimFs::new();
        let d = Path::new("/d");
        fs.create_dir(d).unwrap();
        fs.sync_dir(Path::new("/")).unwrap();
        let a = d.join("a");
        let f = fs.open(&a, OpenHow::CreateNew).unwrap();
        f.write_all_at(b"hello", 0).unwrap();
        f.sync_data().unwrap();
        // Synced data but no directory sync: the name is lost.
        let after = fs.crash(&mut Fixed(0), 0);
        assert_eq!(after.kind(&a).unwrap(), None);
        assert!(fs.kind(&a).is_err(), "the old file system is dead");

        let f = after.open(&a, OpenHow::CreateNew).unwrap();
        f.write_all_at(b"hello", 0).unwrap();
        f.sync_data().unwrap();
        after.sync_dir(d).unwrap();
        f.write_all_at(b"J", 0).unwrap();
        let tmp = d.join("t");
        after.open(&tmp, OpenHow::CreateNew).unwrap();
        after.rename(&tmp, &d.join("u")).unwrap();
        let again = after.crash(&mut Fixed(0), 0);
        assert_eq!(again.contents(&a).unwrap(), b"hello");
        assert_eq!(again.kind(&d.join("u")).unwrap(), None);
        assert_eq!(again.read_dir(d).unwrap(), vec![OsString::from("a")]);
    }

    /// `start_writeback` and `read_sparsely` are hints: on a real file they
    /// leave the bytes and the length as they were (also for a range past
    /// the end, and for bytes not synced when the cache is dropped), and on
    /// the simulator a hinted write that was never synced is lost in a
    /// crash.
    #[test]
    fn a_writeback_hint_changes_nothing_and_promises_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("f");
        let f = RealFs.open(&p, OpenHow::CreateNew).unwrap();
        f.write_all_at(b"pad bytes", 0).unwrap();
        f.start_writeback(0, 9);
        f.start_writeback(4, 1 << 30);
        f.sync_data().unwrap();
        let mut back = [0u8; 9];
        f.read_exact_at(&mut back, 0).unwrap();
        assert_eq!(&back, b"pad bytes");
        assert_eq!(f.size().unwrap(), 9);
        // Not synced, then its cache dropped: still read back, still there.
        f.write_all_at(b"PAD", 0).unwrap();
        f.read_sparsely(true);
        f.read_exact_at(&mut back, 0).unwrap();
        assert_eq!(&back, b"PAD bytes");
        f.read_sparsely(false);
        f.write_all_at(b"p", 0).unwrap();
        f.read_exact_at(&mut back, 0).unwrap();
        assert_eq!(&back, b"pAD bytes");

        let fs = SimFs::new();
        let d = Path::new("/d");
        fs.create_dir(d).unwrap();
        fs.sync_dir(Path::new("/")).unwrap();
        let a = d.join("a");
        let f = fs.open(&a, OpenHow::CreateNew).unwrap();
        fs.sync_dir(d).unwrap();
        f.write_all_at(b"hello", 0).unwrap();
        f.start_writeback(0, 5);
        let after = fs.crash(&mut Fixed(0), 0);
        assert_eq!(after.contents(&a).unwrap(), b"");
    }

    /// A sparse reader asks for a window (and its neighbours) the first
    /// time a read touches it, not again while it is among the last four
    /// asked for: a text moving up and slot keys moving down ask once per
    /// window each.
    #[test]
    fn sparse_reads_ask_for_each_window_once() {
        let mut seen = [u64::MAX; 4];
        let w = READ_AHEAD;
        assert_eq!(new_windows(&mut seen, 100, 14), [Some(0), None]);
        assert_eq!(new_windows(&mut seen, 8 * w - 16, 16), [Some(7), None]);
        assert_eq!(new_windows(&mut seen, 200, 100), [None, None]);
        assert_eq!(new_windows(&mut seen, 7 * w + 5, 16), [None, None]);
        // A text across a window's end: only the new one.
        assert_eq!(new_windows(&mut seen, w - 50, 100), [None, Some(1)]);
        assert_eq!(new_windows(&mut seen, w + 50, 100), [None, None]);
        assert_eq!(new_windows(&mut seen, 6 * w + 1, 16), [Some(6), None]);
        // Four newer windows push the first out: asked for again.
        assert_eq!(new_windows(&mut seen, 9 * w, 1), [Some(9), None]);
        assert_eq!(new_windows(&mut seen, 0, 1), [Some(0), None]);
    }

    #[test]
    fn die_after_fails_every_later_operation() {
        let fs = SimFs::new();
        fs.die_after(1);
        fs.create_dir(Path::new("/x")).unwrap();
        assert!(fs.create_dir(Path::new("/y")).is_err());
        assert!(fs.is_dead());
        assert!(fs.kind(Path::new("/x")).is_err());
    }
}
