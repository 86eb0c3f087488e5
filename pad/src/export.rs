//! The pad export file (`pad new --export`) and `pad import`.
//!
//! An export file carries the partner's view of a new pad: all `N` pad
//! bytes and the partner's side (B). **It is as secret as the pad itself**:
//! carry it to the partner's device only (e.g. on removable media), import
//! it there, then destroy it and the media's copy.
//!
//! # Format, version 1
//!
//! All integers little-endian. Total length `N + 128` bytes.
//!
//! ```text
//! offset  len  field
//!      0    6  magic "OTCPAD"
//!      6    2  format version, u16 = 1
//!      8    8  pad size N, u64
//!     16    8  split, u64 (side A sends with [0, split), side B with [split, N))
//!     24    1  side of whoever imports this file: b'A' or b'B' (pad new writes b'B')
//!     25    1  package format: 1 = v1, 3 = v3 (2 = v2, withdrawn: refused)
//!     26    6  reserved, zero
//!     32   32  pad id: SHA-256 of the N pad bytes
//!     64   32  header checksum: SHA-256 of bytes 0..64
//!     96    N  pad bytes
//!   96+N   32  trailer: SHA-256 of bytes 0..96+N (everything before it)
//! ```
//!
//! Import checks, before creating anything: the magic, version and header
//! checksum, that the file is exactly `N + 128` bytes (else
//! [`Error::ExportTruncated`]), and the header's values. The pad bytes are
//! then streamed into a temporary file in the pads directory while both
//! hashes are computed; a mismatch of the pad id or the trailer
//! ([`Error::ExportCorrupt`]) shreds the temporary file and nothing is kept.
//!
//! An export of format v2 (format byte 2) is refused before anything is
//! copied ([`Error::FormatWithdrawn`]): v2 is withdrawn because a relay that
//! knows one message can forge another. A v3 pad whose hash key `r` is
//! zero after clamping for either side is refused ([`Error::WeakKey`]).

use super::durable::{rename_durably, shred_quietly};
use super::fsutil::{self, CHUNK};
use super::meta::{ContactMeta, Origin, Side};
use super::store::{MAX_PAD_SIZE, MIN_PAD_SIZE, PadStore, validate_contact_name};
use super::vfs::{RealFs, VFile};
use crate::error::{Error, IoContext, Result};
use otc_proto::Format;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// File magic.
pub const MAGIC: &[u8; 6] = b"OTCPAD";
/// Current version.
pub const VERSION: u16 = 1;
/// Bytes before the pad bytes.
pub const HEADER_LEN: u64 = 96;
/// Bytes after the pad bytes.
pub const TRAILER_LEN: u64 = 32;
/// The format byte of the withdrawn format v2.
pub const FORMAT_BYTE_V2: u8 = 2;

/// The header fields of an export file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportHeader {
    pub size: u64,
    pub split: u64,
    /// The side of whoever imports the file.
    pub side: Side,
    pub format: Format,
    /// SHA-256 of the pad bytes.
    pub pad_id: [u8; 32],
}

impl ExportHeader {
    /// The 96 header bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN as usize] {
        let mut h = [0u8; HEADER_LEN as usize];
        h[0..6].copy_from_slice(MAGIC);
        h[6..8].copy_from_slice(&VERSION.to_le_bytes());
        h[8..16].copy_from_slice(&self.size.to_le_bytes());
        h[16..24].copy_from_slice(&self.split.to_le_bytes());
        h[24] = self.side.byte();
        h[25] = super::pairing::format_byte(self.format);
        h[32..64].copy_from_slice(&self.pad_id);
        let sum = Sha256::digest(&h[0..64]);
        h[64..96].copy_from_slice(&sum);
        h
    }

    /// Parse and check the 96 header bytes. `Err` carries the reason.
    pub fn decode(h: &[u8]) -> std::result::Result<ExportHeader, String> {
        if h.len() < HEADER_LEN as usize {
            return Err("header too short".into());
        }
        if &h[0..6] != MAGIC {
            return Err("no OTCPAD magic at the start".into());
        }
        let version = u16::from_le_bytes([h[6], h[7]]);
        if version != VERSION {
            return Err(format!("unsupported export version {version}"));
        }
        if Sha256::digest(&h[0..64]).as_slice() != &h[64..96] {
            return Err("header checksum mismatch".into());
        }
        let u64_at = |o: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&h[o..o + 8]);
            u64::from_le_bytes(b)
        };
        let size = u64_at(8);
        let split = u64_at(16);
        let side = Side::from_byte(h[24]).ok_or_else(|| format!("unknown side byte {}", h[24]))?;
        let format = match h[25] {
            1 => Format::V1,
            3 => Format::V3,
            FORMAT_BYTE_V2 => return Err(otc_proto::ProtoError::Withdrawn.to_string()),
            x => return Err(format!("unknown package format {x}")),
        };
        if h[26..32].iter().any(|&b| b != 0) {
            return Err("reserved header bytes are not zero".into());
        }
        if !(MIN_PAD_SIZE..=MAX_PAD_SIZE).contains(&size) {
            return Err(format!("pad size {size} out of range"));
        }
        if split == 0 || split >= size {
            return Err(format!("split {split} outside the pad"));
        }
        let min = otc_proto::v3::MIN_REGION;
        if format == Format::V3 && (split < min || size - split < min) {
            return Err(format!(
                "split {split} leaves a side of this v3 pad without room for its key"
            ));
        }
        let mut pad_id = [0u8; 32];
        pad_id.copy_from_slice(&h[32..64]);
        Ok(ExportHeader {
            size,
            split,
            side,
            format,
            pad_id,
        })
    }

    /// Total file length for this header.
    pub fn file_len(&self) -> u64 {
        HEADER_LEN + self.size + TRAILER_LEN
    }
}

/// Path of the temporary file an export is written to before the rename.
pub fn temp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

/// Write an export of the pad in `pad` to `path.tmp` and sync it; the
/// caller renames it into place with [`finish_export`]. Progress is
/// reported as bytes of pad copied.
///
/// If anything is at `path.tmp` already (a file, a directory, a symbolic
/// link, dangling or not), it is refused with [`Error::OutputExists`] and
/// left untouched: it may be someone else's file, and erasing it through a
/// link would destroy whatever the link points to. The new file is created
/// with `O_CREAT | O_EXCL`, which never follows a link.
pub fn write_export_temp(
    pad: &dyn VFile,
    header: &ExportHeader,
    path: &Path,
    progress: &mut dyn FnMut(u64),
) -> Result<PathBuf> {
    if path.exists() {
        return Err(Error::OutputExists(path.to_path_buf()));
    }
    let tmp = temp_path(path);
    if std::fs::symlink_metadata(&tmp).is_ok() {
        return Err(Error::OutputExists(tmp));
    }
    let out = fsutil::create_private(&tmp).ctx(|| format!("cannot create {}", tmp.display()))?;
    let res = (|| {
        let mut all = Sha256::new();
        let head = header.encode();
        out.write_all_at(&head, 0)
            .ctx(|| format!("cannot write {}", tmp.display()))?;
        all.update(head);
        let mut buf = Zeroizing::new(vec![0u8; CHUNK]);
        let mut done = 0u64;
        while done < header.size {
            let n = (header.size - done).min(CHUNK as u64) as usize;
            pad.read_exact_at(&mut buf[..n], done)
                .ctx(|| "cannot read the new pad".to_string())?;
            out.write_all_at(&buf[..n], HEADER_LEN + done)
                .ctx(|| format!("cannot write {}", tmp.display()))?;
            all.update(&buf[..n]);
            done += n as u64;
            progress(n as u64);
        }
        out.write_all_at(&all.finalize(), HEADER_LEN + header.size)
            .ctx(|| format!("cannot write {}", tmp.display()))?;
        out.sync_all()
            .ctx(|| format!("cannot sync {}", tmp.display()))?;
        Ok(())
    })();
    match res {
        Ok(()) => Ok(tmp),
        Err(e) => {
            drop(out);
            shred_quietly(&RealFs, &tmp);
            Err(e)
        }
    }
}

/// Rename a finished temporary export into place and sync the directory.
pub fn finish_export(tmp: &Path, path: &Path) -> Result<()> {
    rename_durably(&RealFs, tmp, path).ctx(|| format!("cannot create {}", path.display()))
}

/// What an import made.
#[derive(Debug, Clone)]
pub struct Imported {
    pub contact: String,
    pub pad_id: String,
    pub size: u64,
    pub side: Side,
    pub format: Format,
}

/// Import an export file as a new contact. Nothing is created unless the
/// whole file checks out.
pub fn import(
    store: &PadStore,
    path: &Path,
    contact: &str,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Imported> {
    validate_contact_name(contact)?;
    store.check_new_contact(contact)?;
    let file = File::open(path).ctx(|| format!("cannot open {}", path.display()))?;
    let (header, head) = read_header(&file, path)?;
    let pad_id = hex::encode(header.pad_id);
    store.check_pad_id_free(&pad_id)?;

    let (tmp, out) = store.create_temp_pad()?;
    let res = copy_checked(&file, path, &*out, &tmp, &header, &head, progress);
    drop(out);
    if let Err(e) = res {
        store.discard_temp(&tmp);
        return Err(e);
    }
    let meta = ContactMeta::new(
        contact,
        &pad_id,
        header.size,
        header.split,
        header.side,
        header.format,
        Origin::Imported,
    );
    if let Err(e) = store.add_contact(meta, &tmp) {
        store.discard_temp(&tmp);
        return Err(e);
    }
    Ok(Imported {
        contact: contact.to_string(),
        pad_id,
        size: header.size,
        side: header.side,
        format: header.format,
    })
}

/// Read and decode the header of the export file `file` (at `path`), and
/// check the file's length against it. Returns the header and its bytes
/// (the trailing checksum covers them).
fn read_header(file: &File, path: &Path) -> Result<(ExportHeader, [u8; HEADER_LEN as usize])> {
    let corrupt = |reason: String| Error::ExportCorrupt {
        path: path.to_path_buf(),
        reason,
    };
    let len = file
        .metadata()
        .ctx(|| format!("cannot stat {}", path.display()))?
        .len();
    let mut head = [0u8; HEADER_LEN as usize];
    if len < HEADER_LEN + TRAILER_LEN {
        // Too short for even a header: if what is there starts like an
        // export, call it truncated, otherwise corrupt.
        let n = fsutil::read_full(&mut &*file, &mut head)
            .ctx(|| format!("cannot read {}", path.display()))?;
        if n >= MAGIC.len() && &head[..MAGIC.len()] == MAGIC {
            return Err(Error::ExportTruncated {
                path: path.to_path_buf(),
                len,
                expected: HEADER_LEN + MIN_PAD_SIZE + TRAILER_LEN,
            });
        }
        return Err(corrupt("not an otc-device pad export".into()));
    }
    file.read_exact_at(&mut head, 0)
        .ctx(|| format!("cannot read {}", path.display()))?;
    let header = ExportHeader::decode(&head).map_err(|reason| {
        // A well-formed header of the withdrawn format v2 gets its own
        // plain sentence.
        let mut as_v1 = head;
        as_v1[25] = 1;
        let sum = Sha256::digest(&as_v1[0..64]);
        as_v1[64..96].copy_from_slice(&sum);
        if head[25] == FORMAT_BYTE_V2
            && Sha256::digest(&head[0..64]).as_slice() == &head[64..96]
            && ExportHeader::decode(&as_v1).is_ok()
        {
            Error::FormatWithdrawn {
                what: format!("the pad file {}", path.display()),
                remedy: "destroy this file".into(),
            }
        } else {
            corrupt(reason)
        }
    })?;
    if len != header.file_len() {
        return Err(Error::ExportTruncated {
            path: path.to_path_buf(),
            len,
            expected: header.file_len(),
        });
    }
    Ok((header, head))
}

/// Copy the pad bytes of `file` into the temporary pad `out` (at `tmp`),
/// checking the pad id and the trailing checksum, and sync it. Nothing is
/// kept by the caller unless this succeeds.
fn copy_checked(
    file: &File,
    path: &Path,
    out: &dyn VFile,
    tmp: &Path,
    header: &ExportHeader,
    head: &[u8; HEADER_LEN as usize],
    progress: &mut dyn FnMut(u64, u64),
) -> Result<()> {
    let corrupt = |reason: String| Error::ExportCorrupt {
        path: path.to_path_buf(),
        reason,
    };
    out.set_len(header.size)
        .ctx(|| format!("cannot size {}", tmp.display()))?;
    let mut all = Sha256::new();
    all.update(head);
    let mut pad_hash = Sha256::new();
    let mut buf = Zeroizing::new(vec![0u8; CHUNK]);
    let mut done = 0u64;
    while done < header.size {
        let n = (header.size - done).min(CHUNK as u64) as usize;
        file.read_exact_at(&mut buf[..n], HEADER_LEN + done)
            .ctx(|| format!("cannot read {}", path.display()))?;
        all.update(&buf[..n]);
        pad_hash.update(&buf[..n]);
        out.write_all_at(&buf[..n], done)
            .ctx(|| format!("cannot write {}", tmp.display()))?;
        done += n as u64;
        progress(done, header.size);
    }
    if pad_hash.finalize().as_slice() != header.pad_id {
        return Err(corrupt("the pad bytes do not match the pad id".into()));
    }
    let mut trailer = [0u8; TRAILER_LEN as usize];
    file.read_exact_at(&mut trailer, HEADER_LEN + header.size)
        .ctx(|| format!("cannot read {}", path.display()))?;
    if all.finalize().as_slice() != trailer {
        return Err(corrupt("trailing checksum mismatch".into()));
    }
    out.sync_all()
        .ctx(|| format!("cannot sync {}", tmp.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_checks() {
        let h = ExportHeader {
            size: 4096,
            split: 2048,
            side: Side::B,
            format: Format::V3,
            pad_id: [7; 32],
        };
        let b = h.encode();
        assert_eq!(ExportHeader::decode(&b).unwrap(), h);
        let mut bad = b;
        bad[9] ^= 1;
        assert!(ExportHeader::decode(&bad).unwrap_err().contains("checksum"));
        let mut bad = b;
        bad[0] = b'X';
        assert!(ExportHeader::decode(&bad).unwrap_err().contains("magic"));
        assert_eq!(h.file_len(), 4096 + 128);
    }

    /// A v2 header (format byte 2, checksum right) is refused with the
    /// withdrawal's sentence, not as unknown.
    #[test]
    fn a_v2_header_is_refused_as_withdrawn() {
        let h = ExportHeader {
            size: 4096,
            split: 2048,
            side: Side::B,
            format: Format::V1,
            pad_id: [7; 32],
        };
        let mut b = h.encode();
        b[25] = FORMAT_BYTE_V2;
        let sum = Sha256::digest(&b[0..64]);
        b[64..96].copy_from_slice(&sum);
        let e = ExportHeader::decode(&b).unwrap_err();
        assert!(e.contains("withdrawn"), "{e}");
        assert!(e.contains("make a new pad"), "{e}");
    }
}
