//! The USB stick on the real device (issue 17, item 6): find it, mount it
//! for one export or import, and let go of it.
//!
//! Plain functions that the device's `Stick` implementation calls (the
//! emulator's stick is a directory, `stick.rs`). The rules:
//!
//! - **Which disk is a stick.** A disk in `/sys/block` whose device path
//!   runs through a USB bus (a path component `usbN`), that has a medium
//!   (size > 0), and that holds no mounted file system. The boot disk (the
//!   card: `/data` is on it) is never a stick, and neither is any disk
//!   something is mounted from. Exactly one such disk must be there: with
//!   none the owner is asked to insert one, with two or more to remove all
//!   but one (the device never guesses which stick is the partner's).
//! - **Which file system.** The first partition (lowest number) whose boot
//!   sector is FAT (12/16/32) or exFAT; if no partition is, the whole
//!   device (a "superfloppy" stick with no partition table). Anything else
//!   is refused with the words to format it; the device never formats a
//!   stick.
//! - **How it is mounted.** At a private mount point (a directory of mode
//!   0700 made for it, [`DEFAULT_MOUNTPOINT`] on the device), with
//!   `nosuid,nodev,noexec,noatime`, and read-only ([`Access::ReadOnly`])
//!   for an import. Files are root's with mode 0600 (`fmask=0177,dmask=0077`).
//!   [`MountedStick::finish`] syncs the stick's file system and unmounts it
//!   (the owner is then told to remove it); a [`MountedStick`] dropped
//!   without `finish` (an error path) is detached lazily, so the stick never
//!   stays mounted after the flow.
//! - **A stick pulled out** shows up as EIO, ENODEV, ENXIO or ENOMEDIUM
//!   from the kernel; [`stick_io_error`] turns those into
//!   [`StickError::Removed`], which says so in plain words.
//!
//! What runs where: the sysfs and mountinfo parsing, the file-system
//! detection, the choice of volume and the mount options are unit-tested
//! on the host against a fake sysfs tree (below); mounting needs root and
//! a block device, and is exercised in QEMU (`image/qemu-pair`).

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Component, Path, PathBuf};
use thiserror::Error;

/// The kernel's list of block devices.
pub const SYS_BLOCK: &str = "/sys/block";
/// Block devices by `major:minor`, as mountinfo names them.
pub const SYS_DEV_BLOCK: &str = "/sys/dev/block";
/// What is mounted, with the `major:minor` of each source.
pub const MOUNTINFO: &str = "/proc/self/mountinfo";
/// Where the device nodes are (devtmpfs).
pub const DEV: &str = "/dev";
/// The device's private mount point for a stick (in the initramfs's /tmp,
/// which only root can enter).
pub const DEFAULT_MOUNTPOINT: &str = "/tmp/otc-stick";

/// What can go wrong with a stick, in words for the owner.
#[derive(Debug, Error)]
pub enum StickError {
    /// No USB disk with a medium that is not in use.
    #[error("no USB stick found: insert a USB stick (FAT or exFAT) and try again")]
    NoStick,
    /// Two or more candidate sticks.
    #[error("more than one USB stick is attached ({0}): remove all but one and try again")]
    Several(String),
    /// The stick holds no FAT or exFAT file system.
    #[error(
        "the USB stick {disk} has no FAT or exFAT file system ({found}); format it as FAT32 or exFAT on a computer and try again"
    )]
    Unsupported {
        /// The disk's kernel name (sda).
        disk: String,
        /// What was found instead, per volume.
        found: String,
    },
    /// The stick went away (or failed) in the middle of something.
    #[error(
        "the USB stick was removed or stopped working while {during}; nothing was kept from this attempt: insert it again and start over"
    )]
    Removed {
        /// What the device was doing.
        during: String,
    },
    /// The stick is write-protected and an export needs to write.
    #[error("the USB stick is write-protected: slide its lock switch off, or use another stick")]
    ReadOnlyStick,
    /// The kernel refused to mount it for another reason.
    #[error(
        "the USB stick {dev} could not be mounted as {fs} ({errno}); check it on a computer, or use another stick"
    )]
    Mount {
        /// The device node.
        dev: String,
        /// The file system type tried.
        fs: &'static str,
        /// The kernel's reason.
        errno: Errno,
    },
    /// Anything else on the way (sysfs unreadable, mount point unusable).
    #[error("{what}: {source}")]
    Io {
        /// What the device was doing.
        what: String,
        /// The error.
        #[source]
        source: io::Error,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> StickError {
    let what = what.into();
    move |source| StickError::Io { what, source }
}

/// Whether an errno means the stick went away (pulled out, or its
/// controller gave up): EIO, ENODEV, ENXIO, ENOMEDIUM.
pub fn is_removal(errno: Errno) -> bool {
    matches!(
        errno,
        Errno::EIO | Errno::ENODEV | Errno::ENXIO | Errno::ENOMEDIUM
    )
}

/// An I/O error met while reading or writing on a mounted stick, as the
/// owner should read it: [`StickError::Removed`] when the stick went away,
/// [`StickError::Io`] otherwise. `during` says what the device was doing
/// ("writing the export").
pub fn stick_io_error(err: io::Error, during: &str) -> StickError {
    match err.raw_os_error().map(Errno::from_raw) {
        Some(e) if is_removal(e) => StickError::Removed {
            during: during.into(),
        },
        _ => StickError::Io {
            what: format!("the USB stick, while {during}"),
            source: err,
        },
    }
}

/// A partition of a disk, from sysfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// Kernel name (sda1).
    pub name: String,
    /// Partition number (1 for sda1).
    pub number: u32,
}

/// A whole disk, from sysfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    /// Kernel name (sda, mmcblk0, vda).
    pub name: String,
    /// Its device path runs through a USB bus.
    pub usb: bool,
    /// The kernel's `removable` flag (many sticks say 1, some say 0; the
    /// USB path is what counts).
    pub removable: bool,
    /// Size in 512-byte sectors (0: no medium, e.g. an empty card reader).
    pub sectors: u64,
    /// Its partitions, by number.
    pub partitions: Vec<Partition>,
}

fn read_trim(p: &Path) -> Option<String> {
    fs::read_to_string(p).ok().map(|s| s.trim().to_owned())
}

/// Whether a (canonical) sysfs device path runs through a USB bus: a
/// component `usb1`, `usb2`, ... (the root hub), as in
/// `/sys/devices/platform/scb/fd500000.pcie/.../usb2/2-1/2-1:1.0/host0/.../block/sda`.
pub fn path_is_usb(path: &Path) -> bool {
    path.components().any(|c| match c {
        Component::Normal(s) => s.to_str().is_some_and(|s| {
            s.strip_prefix("usb")
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        }),
        _ => false,
    })
}

/// The disks in `sys_block` (the kernel's `/sys/block`, or a fake tree),
/// without loop, RAM and zram devices, sorted by name.
pub fn scan_disks(sys_block: &Path) -> Result<Vec<Disk>, StickError> {
    let entries = fs::read_dir(sys_block).map_err(io_err(format!(
        "cannot list the block devices in {}",
        sys_block.display()
    )))?;
    let mut disks = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err(format!("cannot list {}", sys_block.display())))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if ["loop", "ram", "zram"].iter().any(|p| name.starts_with(p)) {
            continue;
        }
        let dir = entry.path();
        // /sys/block/NAME is a symbolic link into /sys/devices; its target
        // tells the bus. A disk whose link cannot be followed is skipped
        // (it is going away).
        let Ok(real) = fs::canonicalize(&dir) else {
            continue;
        };
        let mut partitions = Vec::new();
        if let Ok(sub) = fs::read_dir(&real) {
            for s in sub.flatten() {
                let Some(pname) = s.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                if let Some(n) = read_trim(&s.path().join("partition")).and_then(|n| n.parse().ok())
                {
                    partitions.push(Partition {
                        name: pname,
                        number: n,
                    });
                }
            }
        }
        partitions.sort_by_key(|p| p.number);
        disks.push(Disk {
            usb: path_is_usb(&real),
            removable: read_trim(&real.join("removable")).as_deref() == Some("1"),
            sectors: read_trim(&real.join("size"))
                .and_then(|s| s.parse().ok())
                .unwrap_or(0),
            partitions,
            name,
        });
    }
    disks.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(disks)
}

/// The disks that something is mounted from, by kernel name: each
/// mountinfo line's `major:minor` (field 3) resolved through
/// `sys_dev_block` (`/sys/dev/block`), a partition counting for its disk.
/// Virtual file systems (major 0) are skipped.
pub fn disks_in_use(mountinfo: &str, sys_dev_block: &Path) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    for line in mountinfo.lines() {
        let Some(devno) = line.split_whitespace().nth(2) else {
            continue;
        };
        if devno.starts_with("0:") || !devno.contains(':') {
            continue;
        }
        let Ok(real) = fs::canonicalize(sys_dev_block.join(devno)) else {
            continue;
        };
        let disk = if real.join("partition").exists() {
            real.parent()
        } else {
            Some(real.as_path())
        };
        if let Some(name) = disk.and_then(Path::file_name).and_then(|n| n.to_str()) {
            used.insert(name.to_owned());
        }
    }
    used
}

/// The one stick: the USB disk with a medium that holds nothing mounted
/// (see the module's rules). `disks` from [`scan_disks`], `in_use` from
/// [`disks_in_use`].
pub fn choose_stick(disks: &[Disk], in_use: &BTreeSet<String>) -> Result<Disk, StickError> {
    let mut found: Vec<&Disk> = disks
        .iter()
        .filter(|d| d.usb && d.sectors > 0 && !in_use.contains(&d.name))
        .collect();
    match found.len() {
        0 => Err(StickError::NoStick),
        1 => Ok(found.remove(0).clone()),
        _ => Err(StickError::Several(
            found
                .iter()
                .map(|d| d.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        )),
    }
}

/// A file system the device mounts on a stick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsKind {
    /// FAT12/16/32 (Linux `vfat`).
    Fat,
    /// exFAT.
    ExFat,
}

impl FsKind {
    /// The kernel's name for it (`mount -t`).
    pub fn kernel_name(self) -> &'static str {
        match self {
            FsKind::Fat => "vfat",
            FsKind::ExFat => "exfat",
        }
    }

    /// The file-system options: files root's with mode 0600, directories
    /// 0700; for FAT, `flush` (write out early: sticks get pulled) and
    /// UTF-8 file names; for exFAT, UTF-8 names.
    pub fn mount_data(self) -> &'static str {
        match self {
            FsKind::Fat => "uid=0,gid=0,fmask=0177,dmask=0077,utf8=1,flush",
            FsKind::ExFat => "uid=0,gid=0,fmask=0177,dmask=0077,iocharset=utf8",
        }
    }
}

/// What a volume's first sector says it is: FAT or exFAT, or `Err` with a
/// short description of what it is not.
pub fn detect_fs(sector: &[u8]) -> Result<FsKind, &'static str> {
    if sector.len() < 512 {
        return Err("unreadable");
    }
    if &sector[3..11] == b"EXFAT   " {
        return Ok(FsKind::ExFat);
    }
    let signed = sector[510] == 0x55 && sector[511] == 0xAA;
    let bytes_per_sector = u16::from_le_bytes([sector[11], sector[12]]);
    // The file-system type text: FAT12/FAT16 at 54, FAT32 at 82.
    let fat_name = sector[54..57] == *b"FAT" || sector[82..87] == *b"FAT32";
    if signed && fat_name && matches!(bytes_per_sector, 512 | 1024 | 2048 | 4096) {
        return Ok(FsKind::Fat);
    }
    if sector.iter().all(|&b| b == 0) {
        return Err("empty");
    }
    if signed {
        return Err("a partition table or another file system");
    }
    Err("another file system")
}

/// A file system chosen on a stick: the device node to mount and its kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    /// Kernel name of the partition or whole disk (sda1, sda).
    pub name: String,
    /// The file system.
    pub fs: FsKind,
}

/// The volume to mount on `disk`: its first FAT/exFAT partition, else the
/// whole disk if it is one. `first_sector(name)` reads the first 512 bytes
/// of a block device by kernel name ([`read_first_sector`] on the device).
pub fn choose_volume(
    disk: &Disk,
    mut first_sector: impl FnMut(&str) -> io::Result<Vec<u8>>,
) -> Result<Volume, StickError> {
    let mut found = Vec::new();
    let names = disk
        .partitions
        .iter()
        .map(|p| p.name.as_str())
        .chain(std::iter::once(disk.name.as_str()));
    for name in names {
        let sector = first_sector(name).map_err(|e| stick_io_error(e, "reading it"))?;
        match detect_fs(&sector) {
            Ok(fs) => {
                return Ok(Volume {
                    name: name.to_owned(),
                    fs,
                });
            }
            Err(what) => found.push(format!("{name}: {what}")),
        }
    }
    Err(StickError::Unsupported {
        disk: disk.name.clone(),
        found: found.join("; "),
    })
}

/// The first 512 bytes of `/dev/NAME` (under `dev`).
pub fn read_first_sector(dev: &Path, name: &str) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 512];
    fs::File::open(dev.join(name))?.read_exact(&mut buf)?;
    Ok(buf)
}

/// How the stick is mounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// An import reads the export file (and then overwrites and deletes it,
    /// which needs [`Access::ReadWrite`]; the flow remounts for that).
    ReadOnly,
    /// An export writes the partner's half.
    ReadWrite,
}

/// The mount flags: always `nosuid,nodev,noexec,noatime`, plus `ro` for
/// [`Access::ReadOnly`].
pub fn mount_flags(access: Access) -> MsFlags {
    let base = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_NOATIME;
    match access {
        Access::ReadOnly => base | MsFlags::MS_RDONLY,
        Access::ReadWrite => base,
    }
}

/// A stick mounted for one flow. [`MountedStick::finish`] syncs and
/// unmounts; dropping it without `finish` detaches it (lazily: a file
/// still open is let go when closed) and removes the mount point.
#[derive(Debug)]
pub struct MountedStick {
    mountpoint: PathBuf,
    dev: PathBuf,
    fs: FsKind,
    access: Access,
    mounted: bool,
}

impl MountedStick {
    /// Where the stick's files are.
    pub fn path(&self) -> &Path {
        &self.mountpoint
    }

    /// The device node mounted.
    pub fn device(&self) -> &Path {
        &self.dev
    }

    /// Its file system.
    pub fn fs(&self) -> FsKind {
        self.fs
    }

    /// How it is mounted.
    pub fn access(&self) -> Access {
        self.access
    }

    /// Writes out everything on the stick's file system (syncfs), unmounts
    /// it and removes the mount point. After `Ok`, the owner may pull the
    /// stick. A stick that went away gives [`StickError::Removed`] (it is
    /// detached all the same).
    pub fn finish(mut self) -> Result<(), StickError> {
        let synced = fs::File::open(&self.mountpoint)
            .map_err(|e| stick_io_error(e, "writing its files out"))
            .and_then(|dir| {
                nix::unistd::syncfs(&dir)
                    .map_err(|e| stick_io_error(io::Error::from(e), "writing its files out"))
            });
        if let Err(e) = synced {
            // Let go of it; the error says what happened.
            self.detach();
            return Err(e);
        }
        match nix::mount::umount2(&self.mountpoint, MntFlags::empty()) {
            Ok(()) => {
                self.mounted = false;
                let _ = fs::remove_dir(&self.mountpoint);
                Ok(())
            }
            Err(e) if is_removal(e) => {
                self.detach();
                Err(StickError::Removed {
                    during: "unmounting it".into(),
                })
            }
            Err(e) => {
                self.detach();
                Err(StickError::Io {
                    what: format!("unmounting the USB stick at {}", self.mountpoint.display()),
                    source: io::Error::from(e),
                })
            }
        }
    }

    fn detach(&mut self) {
        if self.mounted {
            let _ = nix::mount::umount2(&self.mountpoint, MntFlags::MNT_DETACH);
            self.mounted = false;
        }
        let _ = fs::remove_dir(&self.mountpoint);
    }
}

impl Drop for MountedStick {
    fn drop(&mut self) {
        self.detach();
    }
}

/// Makes the private mount point: a new directory of mode 0700 (its parent
/// must exist). A directory already there is taken only if it is empty and
/// not a mount point (a stale one from a crash).
pub fn make_mountpoint(mountpoint: &Path) -> Result<(), StickError> {
    match fs::DirBuilder::new().mode(0o700).create(mountpoint) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let stale = nix::mount::umount2(mountpoint, MntFlags::MNT_DETACH);
            let empty = fs::read_dir(mountpoint)
                .map(|mut d| d.next().is_none())
                .unwrap_or(false);
            if empty {
                Ok(())
            } else {
                Err(StickError::Io {
                    what: format!(
                        "the stick's mount point {} is in use (detaching it: {stale:?})",
                        mountpoint.display()
                    ),
                    source: io::Error::from(io::ErrorKind::AlreadyExists),
                })
            }
        }
        Err(e) => Err(io_err(format!(
            "cannot make the stick's mount point {}",
            mountpoint.display()
        ))(e)),
    }
}

/// Mounts `volume` (a device node under `dev`) at `mountpoint` with the
/// module's options. Needs root (CAP_SYS_ADMIN).
pub fn mount_volume(
    dev: &Path,
    volume: &Volume,
    mountpoint: &Path,
    access: Access,
) -> Result<MountedStick, StickError> {
    let node = dev.join(&volume.name);
    if !node.exists() {
        return Err(StickError::Removed {
            during: "mounting it".into(),
        });
    }
    make_mountpoint(mountpoint)?;
    let fstype = volume.fs.kernel_name();
    let r = nix::mount::mount(
        Some(&node),
        mountpoint,
        Some(fstype),
        mount_flags(access),
        Some(volume.fs.mount_data()),
    );
    match r {
        Ok(()) => Ok(MountedStick {
            mountpoint: mountpoint.to_owned(),
            dev: node,
            fs: volume.fs,
            access,
            mounted: true,
        }),
        Err(e) => {
            let _ = fs::remove_dir(mountpoint);
            Err(match e {
                e if is_removal(e) || e == Errno::ENOENT => StickError::Removed {
                    during: "mounting it".into(),
                },
                Errno::EROFS | Errno::EACCES if access == Access::ReadWrite => {
                    StickError::ReadOnlyStick
                }
                errno => StickError::Mount {
                    dev: node.display().to_string(),
                    fs: fstype,
                    errno,
                },
            })
        }
    }
}

/// The whole step on the device: find the one stick, choose its volume and
/// mount it at [`DEFAULT_MOUNTPOINT`] (or `mountpoint`).
pub fn mount_stick(access: Access, mountpoint: Option<&Path>) -> Result<MountedStick, StickError> {
    let disks = scan_disks(Path::new(SYS_BLOCK))?;
    let mountinfo =
        fs::read_to_string(MOUNTINFO).map_err(io_err(format!("cannot read {MOUNTINFO}")))?;
    let in_use = disks_in_use(&mountinfo, Path::new(SYS_DEV_BLOCK));
    let disk = choose_stick(&disks, &in_use)?;
    let dev = Path::new(DEV);
    let volume = choose_volume(&disk, |name| read_first_sector(dev, name))?;
    mount_volume(
        dev,
        &volume,
        mountpoint.unwrap_or(Path::new(DEFAULT_MOUNTPOINT)),
        access,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A fake sysfs: `/sys/devices/...` trees and the `/sys/block` and
    /// `/sys/dev/block` links into them, as the kernel lays them out.
    struct FakeSys {
        dir: tempfile::TempDir,
    }

    impl FakeSys {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            fs::create_dir_all(dir.path().join("block")).unwrap();
            fs::create_dir_all(dir.path().join("dev/block")).unwrap();
            FakeSys { dir }
        }
        fn block(&self) -> PathBuf {
            self.dir.path().join("block")
        }
        fn dev_block(&self) -> PathBuf {
            self.dir.path().join("dev/block")
        }
        /// A disk at devices/`parent`/block/`name` with `parts` partitions,
        /// numbered `(major, minor)` and on from there; removable when on
        /// USB (as most sticks say).
        fn disk(
            &self,
            parent: &str,
            name: &str,
            sectors: u64,
            parts: u32,
            (major, minor): (u32, u32),
        ) {
            let removable = path_is_usb(Path::new(parent));
            let d = self
                .dir
                .path()
                .join("devices")
                .join(parent)
                .join("block")
                .join(name);
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("size"), format!("{sectors}\n")).unwrap();
            fs::write(d.join("removable"), if removable { "1\n" } else { "0\n" }).unwrap();
            symlink(&d, self.block().join(name)).unwrap();
            symlink(&d, self.dev_block().join(format!("{major}:{minor}"))).unwrap();
            for n in 1..=parts {
                let p = d.join(format!("{name}{n}"));
                fs::create_dir_all(&p).unwrap();
                fs::write(p.join("partition"), format!("{n}\n")).unwrap();
                symlink(&p, self.dev_block().join(format!("{major}:{}", minor + n))).unwrap();
            }
        }
    }

    const USB_PARENT: &str = "platform/4010000000.pcie/pci0000:00/0000:00:02.0/usb2/2-1/2-1:1.0/host0/target0:0:0/0:0:0:0";
    const VIRTIO_PARENT: &str = "platform/4010000000.pcie/pci0000:00/0000:00:01.0/virtio0";
    const MMC_PARENT: &str = "platform/soc/fe340000.mmc/mmc_host/mmc0/mmc0:aaaa";

    fn mountinfo(lines: &[(&str, &str)]) -> String {
        let mut s = String::from(
            "22 1 0:5 / /dev rw,nosuid - devtmpfs devtmpfs rw\n23 1 0:21 / /proc rw - proc proc rw\n",
        );
        for (devno, at) in lines {
            s.push_str(&format!(
                "30 1 {devno} / {at} rw,nosuid,nodev - ext4 /dev/x rw\n"
            ));
        }
        s
    }

    #[test]
    fn usb_paths_are_told_from_others() {
        assert!(path_is_usb(
            &Path::new("/sys/devices").join(USB_PARENT).join("block/sda")
        ));
        assert!(!path_is_usb(
            &Path::new("/sys/devices")
                .join(VIRTIO_PARENT)
                .join("block/vda")
        ));
        assert!(!path_is_usb(
            &Path::new("/sys/devices")
                .join(MMC_PARENT)
                .join("block/mmcblk0")
        ));
        // A name that merely starts with "usb" is not a bus.
        assert!(!path_is_usb(Path::new(
            "/sys/devices/platform/usbphy/block/x"
        )));
    }

    #[test]
    fn scan_finds_disks_partitions_and_the_usb_one() {
        let sys = FakeSys::new();
        sys.disk(MMC_PARENT, "mmcblk0", 31_116_288, 2, (179, 0));
        sys.disk(USB_PARENT, "sda", 7_864_320, 1, (8, 0));
        fs::create_dir_all(sys.dir.path().join("devices/virtual/block/loop0")).unwrap();
        symlink(
            sys.dir.path().join("devices/virtual/block/loop0"),
            sys.block().join("loop0"),
        )
        .unwrap();
        let disks = scan_disks(&sys.block()).unwrap();
        assert_eq!(disks.len(), 2, "{disks:?}");
        assert_eq!(disks[0].name, "mmcblk0");
        assert!(!disks[0].usb);
        assert_eq!(
            disks[0]
                .partitions
                .iter()
                .map(|p| (p.name.as_str(), p.number))
                .collect::<Vec<_>>(),
            [("mmcblk01", 1), ("mmcblk02", 2)]
        );
        assert_eq!(disks[1].name, "sda");
        assert!(disks[1].usb && disks[1].removable);
        assert_eq!(disks[1].sectors, 7_864_320);
        assert_eq!(disks[1].partitions[0].name, "sda1");
    }

    #[test]
    fn the_boot_disk_is_in_use_through_its_mounted_partition() {
        let sys = FakeSys::new();
        sys.disk(VIRTIO_PARENT, "vda", 1 << 20, 2, (252, 0));
        sys.disk(USB_PARENT, "sda", 1 << 20, 1, (8, 0));
        let used = disks_in_use(&mountinfo(&[("252:2", "/data")]), &sys.dev_block());
        assert_eq!(used.into_iter().collect::<Vec<_>>(), ["vda"]);
        // A whole-disk mount counts for that disk.
        let used = disks_in_use(&mountinfo(&[("8:0", "/mnt")]), &sys.dev_block());
        assert_eq!(used.into_iter().collect::<Vec<_>>(), ["sda"]);
    }

    #[test]
    fn the_stick_is_the_one_unused_usb_disk_with_a_medium() {
        let sys = FakeSys::new();
        sys.disk(VIRTIO_PARENT, "vda", 1 << 20, 2, (252, 0));
        sys.disk(USB_PARENT, "sda", 1 << 20, 1, (8, 0));
        let disks = scan_disks(&sys.block()).unwrap();
        let used = disks_in_use(&mountinfo(&[("252:2", "/data")]), &sys.dev_block());
        assert_eq!(choose_stick(&disks, &used).unwrap().name, "sda");
        // The boot disk is never a stick, even with no USB disk around.
        let only_card: Vec<Disk> = disks.iter().filter(|d| !d.usb).cloned().collect();
        assert!(matches!(
            choose_stick(&only_card, &used),
            Err(StickError::NoStick)
        ));
        // A USB disk something is mounted from (e.g. a USB-booted system's
        // own disk) is not a stick either.
        let used_usb = disks_in_use(&mountinfo(&[("8:1", "/data")]), &sys.dev_block());
        assert!(matches!(
            choose_stick(&disks, &used_usb),
            Err(StickError::NoStick)
        ));
    }

    #[test]
    fn an_empty_reader_is_no_stick_and_two_sticks_are_refused() {
        let sys = FakeSys::new();
        sys.disk(USB_PARENT, "sda", 0, 0, (8, 0));
        let disks = scan_disks(&sys.block()).unwrap();
        let e = choose_stick(&disks, &BTreeSet::new()).unwrap_err();
        assert!(matches!(e, StickError::NoStick));
        assert!(e.to_string().contains("insert a USB stick"), "{e}");

        let sys = FakeSys::new();
        sys.disk(USB_PARENT, "sda", 100, 0, (8, 0));
        sys.disk(&USB_PARENT.replace("2-1", "2-2"), "sdb", 100, 0, (8, 16));
        let disks = scan_disks(&sys.block()).unwrap();
        let e = choose_stick(&disks, &BTreeSet::new()).unwrap_err();
        assert!(
            matches!(&e, StickError::Several(s) if s == "sda, sdb"),
            "{e:?}"
        );
        assert!(e.to_string().contains("remove all but one"), "{e}");
    }

    fn fat32_sector() -> Vec<u8> {
        let mut s = vec![0u8; 512];
        s[0..3].copy_from_slice(&[0xEB, 0x58, 0x90]);
        s[3..11].copy_from_slice(b"mkfs.fat");
        s[11..13].copy_from_slice(&512u16.to_le_bytes());
        s[82..90].copy_from_slice(b"FAT32   ");
        s[510] = 0x55;
        s[511] = 0xAA;
        s
    }

    fn fat16_sector() -> Vec<u8> {
        let mut s = fat32_sector();
        s[82..90].fill(0);
        s[54..62].copy_from_slice(b"FAT16   ");
        s
    }

    fn exfat_sector() -> Vec<u8> {
        let mut s = vec![0u8; 512];
        s[0..3].copy_from_slice(&[0xEB, 0x76, 0x90]);
        s[3..11].copy_from_slice(b"EXFAT   ");
        s[510] = 0x55;
        s[511] = 0xAA;
        s
    }

    fn mbr_sector() -> Vec<u8> {
        let mut s = vec![0u8; 512];
        s[446] = 0x80;
        s[450] = 0x0c;
        s[510] = 0x55;
        s[511] = 0xAA;
        s
    }

    #[test]
    fn file_systems_are_recognised_by_their_boot_sector() {
        assert_eq!(detect_fs(&fat32_sector()), Ok(FsKind::Fat));
        assert_eq!(detect_fs(&fat16_sector()), Ok(FsKind::Fat));
        assert_eq!(detect_fs(&exfat_sector()), Ok(FsKind::ExFat));
        assert!(detect_fs(&mbr_sector()).is_err());
        assert_eq!(detect_fs(&[0u8; 512]), Err("empty"));
        assert_eq!(detect_fs(&[0u8; 100]), Err("unreadable"));
        // An ext4 partition: its first KiB is zeros but for the boot code
        // area (the superblock is at 1024).
        let mut ext = vec![0u8; 512];
        ext[0] = 1;
        assert_eq!(detect_fs(&ext), Err("another file system"));
        // FAT's name with a nonsense sector size is not FAT.
        let mut odd = fat32_sector();
        odd[11..13].copy_from_slice(&100u16.to_le_bytes());
        assert!(detect_fs(&odd).is_err());
    }

    fn disk(name: &str, parts: &[&str]) -> Disk {
        Disk {
            name: name.into(),
            usb: true,
            removable: true,
            sectors: 1 << 20,
            partitions: parts
                .iter()
                .enumerate()
                .map(|(i, p)| Partition {
                    name: (*p).into(),
                    number: i as u32 + 1,
                })
                .collect(),
        }
    }

    #[test]
    fn the_first_fat_or_exfat_partition_is_taken_else_the_whole_disk() {
        let d = disk("sda", &["sda1", "sda2", "sda3"]);
        let v = choose_volume(&d, |n| {
            Ok(match n {
                "sda1" => vec![1u8; 512],
                "sda2" => exfat_sector(),
                "sda3" => fat32_sector(),
                _ => mbr_sector(),
            })
        })
        .unwrap();
        assert_eq!(
            v,
            Volume {
                name: "sda2".into(),
                fs: FsKind::ExFat
            }
        );

        let whole = disk("sdb", &[]);
        let v = choose_volume(&whole, |_| Ok(fat16_sector())).unwrap();
        assert_eq!(
            v,
            Volume {
                name: "sdb".into(),
                fs: FsKind::Fat
            }
        );

        let e = choose_volume(&disk("sdc", &["sdc1"]), |n| {
            Ok(if n == "sdc1" {
                vec![1u8; 512]
            } else {
                mbr_sector()
            })
        })
        .unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, StickError::Unsupported { .. }));
        assert!(
            msg.contains("format it as FAT32 or exFAT")
                && msg.contains("sdc1: another file system"),
            "{msg}"
        );
    }

    #[test]
    fn a_stick_pulled_out_while_reading_says_so() {
        let e = choose_volume(&disk("sda", &["sda1"]), |_| {
            Err(io::Error::from_raw_os_error(libc_enomedium()))
        })
        .unwrap_err();
        assert!(
            matches!(&e, StickError::Removed { during } if during == "reading it"),
            "{e:?}"
        );
        assert!(e.to_string().contains("removed"), "{e}");
        // Other errors stay what they are.
        let e = stick_io_error(
            io::Error::from_raw_os_error(Errno::ENOSPC as i32),
            "writing the export",
        );
        assert!(matches!(e, StickError::Io { .. }), "{e:?}");
        for errno in [Errno::EIO, Errno::ENODEV, Errno::ENXIO, Errno::ENOMEDIUM] {
            let e = stick_io_error(
                io::Error::from_raw_os_error(errno as i32),
                "writing the export",
            );
            assert!(
                matches!(&e, StickError::Removed { during } if during == "writing the export"),
                "{errno}: {e:?}"
            );
        }
    }

    fn libc_enomedium() -> i32 {
        Errno::ENOMEDIUM as i32
    }

    #[test]
    fn mount_options_are_nosuid_nodev_noexec_and_ro_for_an_import() {
        let safe = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        let ro = mount_flags(Access::ReadOnly);
        let rw = mount_flags(Access::ReadWrite);
        assert!(
            ro.contains(safe) && ro.contains(MsFlags::MS_RDONLY),
            "{ro:?}"
        );
        assert!(
            rw.contains(safe) && !rw.contains(MsFlags::MS_RDONLY),
            "{rw:?}"
        );
        for fs in [FsKind::Fat, FsKind::ExFat] {
            let data = fs.mount_data();
            assert!(
                data.contains("fmask=0177") && data.contains("dmask=0077"),
                "{data}"
            );
        }
        assert_eq!(FsKind::Fat.kernel_name(), "vfat");
        assert_eq!(FsKind::ExFat.kernel_name(), "exfat");
    }

    #[test]
    fn a_missing_device_node_is_a_removed_stick() {
        let dir = tempfile::tempdir().unwrap();
        let mp = dir.path().join("mnt");
        let e = mount_volume(
            dir.path(),
            &Volume {
                name: "sda1".into(),
                fs: FsKind::Fat,
            },
            &mp,
            Access::ReadOnly,
        )
        .unwrap_err();
        assert!(
            matches!(&e, StickError::Removed { during } if during == "mounting it"),
            "{e:?}"
        );
        assert!(!mp.exists(), "no mount point is left behind");
    }

    #[test]
    fn the_mount_point_is_private_and_a_busy_one_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mp = dir.path().join("stick");
        make_mountpoint(&mp).unwrap();
        assert_eq!(
            fs::metadata(&mp).unwrap().permissions().mode() & 0o777,
            0o700
        );
        // An empty leftover is reused.
        make_mountpoint(&mp).unwrap();
        fs::write(mp.join("f"), b"x").unwrap();
        assert!(make_mountpoint(&mp).is_err());
    }
}
