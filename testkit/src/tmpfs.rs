//! A small tmpfs mounted for one test, to meet a full disk with real files
//! (`ENOSPC` from the kernel, not from a fake). Mounting needs root (or
//! CAP_SYS_ADMIN); [`Tmpfs::mount`] says why it cannot, so that a test can
//! print the reason and skip where it is not root, and fail where it is.
//!
//! The mount point is a fresh directory under the system's temp directory;
//! dropping the [`Tmpfs`] unmounts it (lazily, so a file still open cannot
//! keep it) and removes the directory.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

/// A mounted tmpfs; unmounted when dropped.
#[derive(Debug)]
pub struct Tmpfs {
    path: PathBuf,
}

/// Why a test that needs a tmpfs cannot have one here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoTmpfs {
    /// Not root: the test should print this and skip.
    NotRoot(String),
    /// Root, but mounting failed: the test should fail with this.
    Failed(String),
}

impl std::fmt::Display for NoTmpfs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoTmpfs::NotRoot(s) | NoTmpfs::Failed(s) => f.write_str(s),
        }
    }
}

fn is_root() -> bool {
    // The effective uid from /proc (no libc binding needed): the `Uid:`
    // line is real, effective, saved, filesystem.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

impl Tmpfs {
    /// Mount a tmpfs of `size_bytes` on a fresh directory.
    pub fn mount(size_bytes: u64) -> Result<Tmpfs, NoTmpfs> {
        if !is_root() {
            return Err(NoTmpfs::NotRoot(
                "mounting a tmpfs needs root; run the tests as root to meet a real full disk"
                    .into(),
            ));
        }
        static N: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "otc-tmpfs-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&path)
            .map_err(|e| NoTmpfs::Failed(format!("cannot create {}: {e}", path.display())))?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size_bytes},mode=0700"))
            .arg("otc-test")
            .arg(&path)
            .output()
            .map_err(|e| NoTmpfs::Failed(format!("cannot run mount: {e}")))?;
        if !out.status.success() {
            let _ = std::fs::remove_dir(&path);
            return Err(NoTmpfs::Failed(format!(
                "mount -t tmpfs on {} failed: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(Tmpfs { path })
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Fill the file system: write `name` (in the mount's root) until the
    /// kernel says there is no space left, then go on with ever smaller
    /// writes until not even one byte fits. Returns the bytes written.
    /// Panics on any other error. Remove the file to make room again.
    pub fn fill(&self, name: &str) -> u64 {
        let p = self.path.join(name);
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p)
            .unwrap_or_else(|e| panic!("cannot create the filler {}: {e}", p.display()));
        let mut written = 0u64;
        let mut chunk = 64 * 1024;
        let zeros = vec![0u8; chunk];
        while chunk > 0 {
            match f.write(&zeros[..chunk]) {
                Ok(0) => chunk /= 2,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(28) => chunk /= 2,
                Err(e) => panic!("filling {}: {e}", p.display()),
            }
        }
        let probe = self.path.join(format!("{name}.probe"));
        let full = std::fs::write(&probe, b"x")
            .err()
            .is_some_and(|e| e.raw_os_error() == Some(28));
        let _ = std::fs::remove_file(&probe);
        assert!(full, "{} is not full after the filler", self.path.display());
        written
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).output();
        let _ = std::fs::remove_dir(&self.path);
    }
}
