//! Importing pads made by the original One Time Chat tool.
//!
//! The original keeps a pad as two files: `alice.bob.random.store` (the raw
//! pad bytes) and `alice.bob.random.metadata`, JSON such as
//!
//! ```json
//! {"direction": 1, "split_index": 500000, "encrypt_index": 1234,
//!  "n_bytes": 1000000, "checksum": "..."}
//! ```
//!
//! * `direction`: 1 = side A (sends with `[0, split)`, send offset moving up from
//!   0), -1 = side B (sends with `[split, N)`, send offset moving down from N-1).
//! * `split_index`: the split, strictly inside the pad.
//! * `encrypt_index`: the next offset the sender will read: for side A the
//!   count of bytes used so far (0..=split), for side B the next offset to
//!   read downwards (split-1..=N-1; N-1 means nothing used yet).
//! * `n_bytes`: the pad size; the store file must be exactly this long
//!   ([`Error::LegacyWrongSize`] otherwise).
//! * `checksum`: not portable between implementations, ignored.
//!
//! Inconsistent metadata (a direction other than ±1, a split outside the
//! pad, an encrypt index outside our region, missing fields) is refused with
//! [`Error::LegacyMetadata`]. Legacy pads use format v1. The pad id is the
//! SHA-256 of the store file as it was read. Bytes of our send region that
//! the original already used are written as zeros in our copy. The
//! original's files are not touched: destroy them after the import.
//!
//! The original's metadata has no receive position, so the first package
//! opened after an import may carry a "skipped" warning.

use super::fsutil::CHUNK;
use super::meta::{ContactMeta, Origin, Range, Side};
use super::store::{MAX_PAD_SIZE, MIN_PAD_SIZE, PadStore, validate_contact_name};
use super::vfs::VFile;
use crate::error::{Error, IoContext, Result};
use otc_proto::Format;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use zeroize::Zeroizing;

/// Largest metadata file we read.
const MAX_METADATA: u64 = 1 << 20;

/// The parsed, checked legacy metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyMeta {
    pub side: Side,
    pub split: u64,
    pub encrypt_index: u64,
    pub n_bytes: u64,
}

impl LegacyMeta {
    /// Bytes of our send region the original already used.
    pub fn used(&self) -> u64 {
        match self.side {
            Side::A => self.encrypt_index,
            Side::B => self.n_bytes - 1 - self.encrypt_index,
        }
    }
}

/// Parse and check legacy metadata JSON.
pub fn parse_metadata(text: &str) -> std::result::Result<LegacyMeta, String> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not valid JSON ({e})"))?;
    let int = |k: &str| -> std::result::Result<i128, String> {
        let f = v.get(k).ok_or_else(|| format!("field {k:?} is missing"))?;
        if let Some(i) = f.as_i64() {
            Ok(i128::from(i))
        } else if let Some(u) = f.as_u64() {
            Ok(i128::from(u))
        } else if let Some(x) = f.as_f64().filter(|x| x.fract() == 0.0 && x.abs() < 9.0e15) {
            Ok(x as i128)
        } else {
            Err(format!("field {k:?} is not a whole number"))
        }
    };
    let direction = int("direction")?;
    let split = int("split_index")?;
    let ei = int("encrypt_index")?;
    let n = int("n_bytes")?;
    let side = match direction {
        1 => Side::A,
        -1 => Side::B,
        d => {
            return Err(format!(
                "direction is {d}, expected 1 (side A) or -1 (side B)"
            ));
        }
    };
    if n < i128::from(MIN_PAD_SIZE) || n > i128::from(MAX_PAD_SIZE) {
        return Err(format!(
            "n_bytes {n} is outside the supported {MIN_PAD_SIZE}..={MAX_PAD_SIZE}"
        ));
    }
    if split <= 0 || split >= n {
        return Err(format!(
            "split_index {split} is not strictly inside the pad of {n} bytes"
        ));
    }
    let ok = match side {
        Side::A => (0..=split).contains(&ei),
        Side::B => (split - 1..=n - 1).contains(&ei),
    };
    if !ok {
        let region = match side {
            Side::A => format!("0..={split}"),
            Side::B => format!("{}..={}", split - 1, n - 1),
        };
        return Err(format!(
            "encrypt_index {ei} is outside side {side}'s range {region}"
        ));
    }
    Ok(LegacyMeta {
        side,
        split: split as u64,
        encrypt_index: ei as u64,
        n_bytes: n as u64,
    })
}

/// What a legacy import made.
#[derive(Debug, Clone)]
pub struct LegacyImported {
    pub contact: String,
    pub pad_id: String,
    pub size: u64,
    pub side: Side,
    /// Send bytes the original had already used (now zero in our copy).
    pub already_used: u64,
}

/// Import an original One Time Chat pad (store + metadata) as a contact.
pub fn import_legacy(
    store: &PadStore,
    store_path: &Path,
    metadata_path: &Path,
    contact: &str,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<LegacyImported> {
    validate_contact_name(contact)?;
    store.check_new_contact(contact)?;
    let lm = read_metadata(metadata_path)?;

    let src = File::open(store_path).ctx(|| format!("cannot open {}", store_path.display()))?;
    let len = src
        .metadata()
        .ctx(|| format!("cannot stat {}", store_path.display()))?
        .len();
    if len != lm.n_bytes {
        return Err(Error::LegacyWrongSize {
            path: store_path.to_path_buf(),
            len,
            expected: lm.n_bytes,
        });
    }

    // Refuse a pad this directory held before, and fail before long work
    // when the id is known up front: it is not (the id is the hash of the
    // store file), so it is checked after the copy below, and again when
    // the contact is added.
    let (tmp, out) = store.create_temp_pad()?;
    let used = lm.used();
    let mut probe = ContactMeta::new(
        contact,
        "",
        lm.n_bytes,
        lm.split,
        lm.side,
        Format::V1,
        Origin::Legacy,
    );
    let used_range = probe.send_range(0, used);
    let res = copy_zeroing_used(
        &src, store_path, &*out, &tmp, lm.n_bytes, used_range, progress,
    );
    drop(out);
    let pad_id = match res {
        Ok(id) => id,
        Err(e) => {
            store.discard_temp(&tmp);
            return Err(e);
        }
    };
    if let Err(e) = store.check_pad_id_free(&pad_id) {
        store.discard_temp(&tmp);
        return Err(e);
    }
    probe.pad_id = pad_id.clone();
    probe.reserved = used;
    probe.erased = used;
    if let Err(e) = store.add_contact(probe, &tmp) {
        store.discard_temp(&tmp);
        return Err(e);
    }
    Ok(LegacyImported {
        contact: contact.to_string(),
        pad_id,
        size: lm.n_bytes,
        side: lm.side,
        already_used: used,
    })
}

/// Read and parse the original's metadata file (at most
/// [`MAX_METADATA`] bytes of UTF-8 JSON).
fn read_metadata(metadata_path: &Path) -> Result<LegacyMeta> {
    let md_err = |reason: String| Error::LegacyMetadata {
        path: metadata_path.to_path_buf(),
        reason,
    };
    let md_len = std::fs::metadata(metadata_path)
        .ctx(|| format!("cannot open {}", metadata_path.display()))?
        .len();
    if md_len > MAX_METADATA {
        return Err(md_err(format!("it is {md_len} bytes, far too large")));
    }
    let text =
        std::fs::read(metadata_path).ctx(|| format!("cannot read {}", metadata_path.display()))?;
    let text = String::from_utf8(text).map_err(|_| md_err("it is not UTF-8 text".into()))?;
    parse_metadata(&text).map_err(md_err)
}

/// Copy the original's store `src` (at `store_path`) into the temporary
/// pad `out` (at `tmp`), zeroing the `used` range the original already
/// sent with, and sync it. Returns the pad id: the SHA-256 of the store as
/// it was (before zeroing).
fn copy_zeroing_used(
    src: &File,
    store_path: &Path,
    out: &dyn VFile,
    tmp: &Path,
    n_bytes: u64,
    used_range: Range,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<String> {
    out.set_len(n_bytes)
        .ctx(|| format!("cannot size {}", tmp.display()))?;
    let mut hash = Sha256::new();
    let mut buf = Zeroizing::new(vec![0u8; CHUNK]);
    let mut done = 0u64;
    while done < n_bytes {
        let n = (n_bytes - done).min(CHUNK as u64) as usize;
        src.read_exact_at(&mut buf[..n], done)
            .ctx(|| format!("cannot read {}", store_path.display()))?;
        hash.update(&buf[..n]);
        // Zero what the original already used to send.
        let lo = used_range.lo.max(done);
        let hi = used_range.hi.min(done + n as u64);
        if lo < hi {
            buf[(lo - done) as usize..(hi - done) as usize].fill(0);
        }
        out.write_all_at(&buf[..n], done)
            .ctx(|| format!("cannot write {}", tmp.display()))?;
        done += n as u64;
        progress(done, n_bytes);
    }
    out.sync_all()
        .ctx(|| format!("cannot sync {}", tmp.display()))?;
    Ok(hex::encode(hash.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_good_metadata() {
        let m = parse_metadata(
            r#"{"direction": -1, "split_index": 500, "encrypt_index": 999, "n_bytes": 1000, "checksum": "x"}"#,
        )
        .unwrap();
        assert_eq!(m.side, Side::B);
        assert_eq!(m.used(), 0);
        let m = parse_metadata(
            r#"{"direction": 1, "split_index": 50, "encrypt_index": 10, "n_bytes": 100}"#,
        );
        // n_bytes below the minimum pad size
        assert!(m.is_err());
        let m = parse_metadata(
            r#"{"direction": 1, "split_index": 5000, "encrypt_index": 100, "n_bytes": 10000}"#,
        )
        .unwrap();
        assert_eq!(m.used(), 100);
    }

    #[test]
    fn rejects_inconsistent_metadata() {
        for (j, want) in [
            (
                r#"{"direction": 2, "split_index": 5000, "encrypt_index": 0, "n_bytes": 10000}"#,
                "direction",
            ),
            (
                r#"{"direction": 1, "split_index": 10000, "encrypt_index": 0, "n_bytes": 10000}"#,
                "split_index",
            ),
            (
                r#"{"direction": 1, "split_index": 0, "encrypt_index": 0, "n_bytes": 10000}"#,
                "split_index",
            ),
            (
                r#"{"direction": 1, "split_index": 5000, "encrypt_index": 5001, "n_bytes": 10000}"#,
                "encrypt_index",
            ),
            (
                r#"{"direction": -1, "split_index": 5000, "encrypt_index": 4998, "n_bytes": 10000}"#,
                "encrypt_index",
            ),
            (
                r#"{"direction": -1, "split_index": 5000, "encrypt_index": 10000, "n_bytes": 10000}"#,
                "encrypt_index",
            ),
            (
                r#"{"direction": 1, "split_index": 5000, "n_bytes": 10000}"#,
                "missing",
            ),
            (
                r#"{"direction": "1", "split_index": 5000, "encrypt_index": 0, "n_bytes": 10000}"#,
                "whole number",
            ),
            (r#"[1,2,3]"#, "missing"),
            (r#"not json"#, "JSON"),
        ] {
            let e = parse_metadata(j).unwrap_err();
            assert!(e.contains(want), "{j}: {e}");
        }
    }
}
