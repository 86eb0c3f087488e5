//! The USB stick that carries a sealed export from one device to the other.
//!
//! A stick is mounted only for an export (read-write) or an import
//! (read-only), and unmounted as soon as that is done: [`Stick::mount`]
//! gives a [`MountedStick`] whose directory is the stick's file system,
//! and dropping it unmounts. Two implementations:
//! - [`DirStick`] (this file): a directory stands for the stick
//!   (`run --display emulator --stick DIR`, and the tests). "Inserted"
//!   means the directory exists; nothing is mounted.
//! - [`UsbStick`] (this file, on [`crate::stick_mount`]): the real USB block
//!   device of the Pi image, the one USB disk that is not in use (never the
//!   boot disk), mounted `nosuid,nodev,noexec`, read-only for an import;
//!   [`MountedStick::finish`] syncs and unmounts it and reports a stick
//!   pulled out before that.
//!
//! A stick can be pulled out at any moment. The flows ask
//! [`MountedStick::still_there`] after every chunk they write or read, so a
//! pulled stick stops an export or import at once (a pulled stick's file
//! system may go on taking writes into memory until a sync fails), and say
//! so in words; the I/O errors a pulled stick gives (EIO, ENODEV, ENXIO,
//! ENOMEDIUM, [`crate::stick_mount::is_removal`]) are said the same way.
//!
//! Errors say what happened and what to do, in words for the screen.

use std::path::{Path, PathBuf};

/// How a stick is mounted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// For an import: nothing on the stick is changed while it is read.
    ReadOnly,
    /// For an export (and for erasing an imported file afterwards).
    ReadWrite,
}

/// Why a stick cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StickError {
    /// No stick is inserted.
    #[error("No USB stick found. Insert a stick (FAT or exFAT) and try again.")]
    Missing,
    /// A stick is there but could not be mounted or read.
    #[error("The USB stick cannot be used: {0}")]
    Unusable(String),
}

/// A stick's file system, mounted until this is dropped.
pub struct MountedStick {
    dir: PathBuf,
    mode: Mode,
    /// Undoes the mount (the real stick's sync + unmount); `None` for a
    /// directory.
    unmount: Option<Unmount>,
    /// Says whether the stick is still in its port (`None`: always).
    check: Option<Presence>,
}

/// What undoes a mount: syncs and unmounts, and says if that failed.
pub type Unmount = Box<dyn FnOnce() -> Result<(), StickError> + Send>;

/// Whether a mounted stick is still there (false once it was pulled out).
pub type Presence = Box<dyn Fn() -> bool + Send>;

impl MountedStick {
    /// A mounted stick at `dir`; `unmount` runs on drop.
    pub fn new(dir: PathBuf, mode: Mode, unmount: Option<Unmount>) -> Self {
        MountedStick {
            dir,
            mode,
            unmount,
            check: None,
        }
    }

    /// The same, with `check` saying whether the stick is still there.
    pub fn with_presence(mut self, check: Presence) -> Self {
        self.check = Some(check);
        self
    }

    /// Whether the stick is still in its port: false once it was pulled
    /// out (the directory of a [`DirStick`] gone or replaced; the real
    /// stick's device node gone).
    pub fn still_there(&self) -> bool {
        self.check.as_ref().is_none_or(|c| c())
    }

    /// Writes everything out and unmounts; after `Ok` the owner may pull
    /// the stick. A stick pulled out before that gives an error (dropping
    /// instead unmounts all the same, and forgets the error).
    pub fn finish(mut self) -> Result<(), StickError> {
        match self.unmount.take() {
            Some(u) => u(),
            None => Ok(()),
        }
    }

    /// The root directory of the stick's file system.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }
}

impl Drop for MountedStick {
    fn drop(&mut self) {
        if let Some(u) = self.unmount.take() {
            let _ = u();
        }
    }
}

/// Where the device finds a USB stick.
pub trait Stick: Send + Sync {
    /// Mounts the inserted stick in `mode`, or says why not.
    fn mount(&self, mode: Mode) -> Result<MountedStick, StickError>;
}

/// A directory that stands for the stick (emulator builds and tests).
pub struct DirStick {
    dir: PathBuf,
}

impl DirStick {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        DirStick { dir: dir.into() }
    }
}

impl Stick for DirStick {
    fn mount(&self, mode: Mode) -> Result<MountedStick, StickError> {
        use std::os::unix::fs::MetadataExt;
        match std::fs::metadata(&self.dir) {
            Ok(m) if m.is_dir() => {
                // Still there: the same directory (not one made anew).
                let (dir, dev, ino) = (self.dir.clone(), m.dev(), m.ino());
                let check: Presence = Box::new(move || {
                    std::fs::metadata(&dir).is_ok_and(|n| n.dev() == dev && n.ino() == ino)
                });
                Ok(MountedStick::new(self.dir.clone(), mode, None).with_presence(check))
            }
            Ok(_) => Err(StickError::Unusable(format!(
                "{} is not a directory",
                self.dir.display()
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(StickError::Missing),
            Err(e) => Err(StickError::Unusable(e.to_string())),
        }
    }
}

/// The Pi's USB stick: [`crate::stick_mount::mount_stick`] finds the one
/// USB disk with nothing mounted from it (the boot disk never qualifies, as
/// `/data` is on it), picks its FAT or exFAT volume and mounts it at a
/// private mount point; [`MountedStick::finish`] (or drop) syncs and
/// unmounts.
pub struct UsbStick;

impl Stick for UsbStick {
    fn mount(&self, mode: Mode) -> Result<MountedStick, StickError> {
        use crate::stick_mount::{self as sm, Access};
        let access = match mode {
            Mode::ReadOnly => Access::ReadOnly,
            Mode::ReadWrite => Access::ReadWrite,
        };
        match sm::mount_stick(access, None) {
            Ok(m) => {
                let dir = m.path().to_path_buf();
                // devtmpfs removes a pulled stick's device node.
                let node = m.device().to_path_buf();
                let unmount: Unmount =
                    Box::new(move || m.finish().map_err(|e| StickError::Unusable(e.to_string())));
                Ok(MountedStick::new(dir, mode, Some(unmount))
                    .with_presence(Box::new(move || node.exists())))
            }
            Err(sm::StickError::NoStick) => Err(StickError::Missing),
            Err(e) => Err(StickError::Unusable(e.to_string())),
        }
    }
}

/// The export files on a mounted stick: regular files in its root whose
/// name ends in `.otcpad`, sorted by name (temporary `.tmp` files of an
/// export cut short are not listed).
pub fn export_files(stick: &MountedStick) -> Result<Vec<String>, StickError> {
    let rd = std::fs::read_dir(stick.dir()).map_err(|e| StickError::Unusable(e.to_string()))?;
    let mut names: Vec<String> = rd
        .flatten()
        .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.ends_with(".otcpad") && !n.starts_with('.'))
        .collect();
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_is_a_stick_while_it_exists() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("stick");
        let s = DirStick::new(&dir);
        assert!(matches!(s.mount(Mode::ReadOnly), Err(StickError::Missing)));
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("b.otcpad"), b"x").unwrap();
        std::fs::write(dir.join("a.otcpad"), b"x").unwrap();
        std::fs::write(dir.join("c.otcpad.tmp"), b"x").unwrap();
        std::fs::write(dir.join("notes.txt"), b"x").unwrap();
        let m = s.mount(Mode::ReadWrite).unwrap();
        assert_eq!(m.dir(), dir);
        assert_eq!(export_files(&m).unwrap(), vec!["a.otcpad", "b.otcpad"]);
        assert!(m.still_there());
        // Pulled out: gone, and a new directory in its place is another stick.
        std::fs::rename(&dir, tmp.path().join("aside")).unwrap();
        assert!(!m.still_there());
        std::fs::create_dir(&dir).unwrap();
        assert!(!m.still_there());
        assert!(s.mount(Mode::ReadOnly).unwrap().still_there());
    }

    #[test]
    fn dropping_unmounts() {
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let d = done.clone();
        let m = MountedStick::new(
            "/nonexistent".into(),
            Mode::ReadOnly,
            Some(Box::new(move || {
                d.store(true, std::sync::atomic::Ordering::SeqCst);
                Ok(())
            })),
        );
        assert!(!done.load(std::sync::atomic::Ordering::SeqCst));
        drop(m);
        assert!(done.load(std::sync::atomic::Ordering::SeqCst));
    }
}
