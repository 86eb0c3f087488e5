//! The one durable replace and the one shred, through the storage seam.
//!
//! Every small file the device rewrites whole (a contact record, the data
//! directory's marker, `otc.toml`, the client's read positions) is replaced
//! with [`replace_durably`], and every file it erases is erased with
//! [`shred`]. Both take a [`Vfs`], so what the power-loss simulator
//! ([`crate::vfs::SimFs`]) checks for the store holds for every caller:
//! the appliance passes [`RealFs`](crate::vfs::RealFs), tests pass the
//! simulator or the recorder.
//!
//! `replace_durably(vfs, path, bytes)`:
//! 1. remove a leftover `<path>.tmp` (a crash's, or nothing);
//! 2. create `<path>.tmp` (new, private: 0600), write `bytes`, fsync it;
//! 3. rename it over `path`;
//! 4. fsync the directory.
//!
//! When it returns `Ok`, the new contents are on stable storage; a crash at
//! any point leaves the old file or the new one, never a torn one (a
//! leftover `.tmp` is the caller's to ignore or delete). Big files (a pad,
//! an export) are written in place into their own temporary file and then
//! committed with [`rename_durably`], steps 3 and 4.

use crate::error::{IoContext, Result};
use crate::vfs::{Kind, OpenHow, Vfs};
use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};

/// The temporary name `replace_durably` writes first: `path` + `.tmp`, in
/// the same directory (so the rename is atomic).
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut name: OsString = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// The directory `path` is in (`.` for a bare name).
fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Replace the file `path` with `bytes`, durably: tmp + fsync + rename +
/// directory fsync (see the module doc). The error is the failed step's;
/// the caller says what it was writing.
pub fn replace_durably(v: &dyn Vfs, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = tmp_path(path);
    match v.remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let f = v.open(&tmp, OpenHow::CreateNew)?;
    f.write_all_at(bytes, 0).and_then(|_| f.sync_all())?;
    drop(f);
    rename_durably(v, &tmp, path)
}

/// Rename `from` over `to` (same directory) and fsync the directory: the
/// commit of a file written and synced under a temporary name.
pub fn rename_durably(v: &dyn Vfs, from: &Path, to: &Path) -> io::Result<()> {
    v.rename(from, to)?;
    v.sync_dir(&parent_of(to))
}

/// Overwrite a whole file with zeros, sync it, delete it and sync its
/// directory. Reports progress as (done, total).
pub fn shred(v: &dyn Vfs, path: &Path, progress: &mut dyn FnMut(u64, u64)) -> Result<()> {
    let file = v
        .open(path, OpenHow::ReadWrite)
        .ctx(|| format!("cannot open {} to erase it", path.display()))?;
    let len = file
        .size()
        .ctx(|| format!("cannot stat {}", path.display()))?;
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(crate::fsutil::CHUNK as u64);
        crate::store::zero_at(file.as_ref(), done, n)
            .ctx(|| format!("cannot erase {}", path.display()))?;
        done += n;
        progress(done, len);
    }
    file.sync_all()
        .ctx(|| format!("cannot sync {}", path.display()))?;
    drop(file);
    v.remove_file(path)
        .ctx(|| format!("cannot delete {}", path.display()))?;
    let dir = parent_of(path);
    v.sync_dir(&dir)
        .ctx(|| format!("cannot sync directory {}", dir.display()))
}

/// Best-effort [`shred`] for cleanup paths: errors are ignored, and a file
/// that cannot be erased is at least deleted.
pub fn shred_quietly(v: &dyn Vfs, path: &Path) {
    if matches!(v.kind(path), Ok(Some(Kind::File))) && shred(v, path, &mut |_, _| {}).is_err() {
        let _ = v.remove_file(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vfs::{Op, Recorder, SimFs, read_all};

    /// The steps, exactly, on the recorder: the temporary file is written
    /// and synced before the rename, and the directory is synced last.
    #[test]
    fn replace_is_tmp_fsync_rename_dir_fsync() {
        let rec = Recorder::new(SimFs::new());
        rec.create_dir(Path::new("/d")).unwrap();
        rec.take();
        replace_durably(&rec, Path::new("/d/f.json"), b"new").unwrap();
        let (tmp, path) = (PathBuf::from("/d/f.json.tmp"), PathBuf::from("/d/f.json"));
        assert_eq!(
            rec.take(),
            vec![
                Op::Remove(tmp.clone()),
                Op::Open(tmp.clone(), OpenHow::CreateNew),
                Op::Write {
                    path: tmp.clone(),
                    offset: 0,
                    len: 3
                },
                Op::SyncAll(tmp.clone()),
                Op::Rename(tmp, path.clone()),
                Op::SyncDir(PathBuf::from("/d")),
            ]
        );
        assert_eq!(read_all(&rec, &path, 100).unwrap(), b"new");
    }

    #[test]
    fn a_leftover_tmp_is_replaced_and_shred_leaves_nothing() {
        let fs = SimFs::new();
        fs.create_dir(Path::new("/d")).unwrap();
        let f = fs.open(Path::new("/d/f.tmp"), OpenHow::CreateNew).unwrap();
        f.write_all_at(b"torn", 0).unwrap();
        drop(f);
        replace_durably(&fs, Path::new("/d/f"), b"whole").unwrap();
        assert_eq!(read_all(&fs, Path::new("/d/f"), 100).unwrap(), b"whole");
        assert_eq!(fs.kind(Path::new("/d/f.tmp")).unwrap(), None);
        shred(&fs, Path::new("/d/f"), &mut |_, _| {}).unwrap();
        assert_eq!(
            fs.read_dir(Path::new("/d")).unwrap(),
            Vec::<OsString>::new()
        );
        // Quietly: a missing file is nothing to do.
        shred_quietly(&fs, Path::new("/d/f"));
    }

    #[test]
    fn the_tmp_name_is_next_to_the_file() {
        assert_eq!(tmp_path(Path::new("/a/b.json")), Path::new("/a/b.json.tmp"));
        assert_eq!(tmp_path(Path::new("otc.toml")), Path::new("otc.toml.tmp"));
        assert_eq!(parent_of(Path::new("otc.toml")), Path::new("."));
    }
}
