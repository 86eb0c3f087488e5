//! Making a new pad: kernel RNG ⊕ optional hardware source, health-tested,
//! written in 1 MiB chunks, fingerprinted, exported for the partner.
//!
//! Every pad byte is `getrandom() ^ source()` (just `getrandom()` without
//! `--source`). The raw source stream and the kernel RNG's output each pass
//! the SP 800-90B continuous health tests ([`super::health`]); on any
//! failure creation stops and everything half-made (the temporary pad file,
//! the temporary export file) is overwritten and deleted, and no metadata
//! is written. The contact is recorded only after the pad and its export
//! are complete and synced; the export is renamed into place last.

use super::export::{self, ExportHeader};
use super::fsutil::{self, CHUNK};
use super::health::HealthTests;
use super::meta::{ContactMeta, Origin, Side};
use super::store::{MAX_PAD_SIZE, MIN_PAD_SIZE, PadStore, validate_contact_name};
use super::vfs::VFile;
use crate::error::{Error, IoContext, Result};
use crate::random::{KernelRandom, RandomSource};
use otc_proto::Format;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// What to make.
#[derive(Debug, Clone)]
pub struct NewPad {
    pub contact: String,
    pub size: u64,
    /// Default: `size / 2`.
    pub split: Option<u64>,
    pub format: Format,
    /// Extra entropy source, XORed in (e.g. `/dev/hwrng`).
    pub source: Option<PathBuf>,
    /// Where to write the partner's export file.
    pub export: PathBuf,
}

/// What was made.
#[derive(Debug, Clone)]
pub struct Created {
    pub contact: String,
    pub pad_id: String,
    pub size: u64,
    pub split: u64,
    pub format: Format,
    pub export: PathBuf,
}

/// Progress phases reported to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Generating,
    Exporting,
}

/// Check a requested size and split.
pub fn check_geometry(size: u64, split: Option<u64>) -> Result<u64> {
    if !(MIN_PAD_SIZE..=MAX_PAD_SIZE).contains(&size) {
        return Err(Error::SizeOutOfRange {
            size,
            min: MIN_PAD_SIZE,
            max: MAX_PAD_SIZE,
        });
    }
    let split = split.unwrap_or(size / 2);
    // Each side needs room for v3's hash key `r` and one slot.
    let min = otc_proto::v3::MIN_REGION;
    if split < min || split >= size || size - split < min {
        return Err(Error::BadSplit { split, size });
    }
    Ok(split)
}

/// Make a new pad for `req.contact` (we are side A) and its export file.
/// `progress` gets (phase, bytes done in that phase, phase total). The
/// random bytes come from the kernel ([`KernelRandom`]).
pub fn create_pad(
    store: &PadStore,
    req: &NewPad,
    progress: &mut dyn FnMut(Phase, u64, u64),
) -> Result<Created> {
    create_pad_with(&KernelRandom, store, req, progress)
}

/// [`create_pad`], with the random bytes from `platform` (tests pass the
/// seeded [`crate::random::SeededRandom`]).
pub fn create_pad_with(
    platform: &dyn RandomSource,
    store: &PadStore,
    req: &NewPad,
    progress: &mut dyn FnMut(Phase, u64, u64),
) -> Result<Created> {
    validate_contact_name(&req.contact)?;
    store.check_new_contact(&req.contact)?;
    let split = check_geometry(req.size, req.split)?;
    if req.export.exists() {
        return Err(Error::OutputExists(req.export.clone()));
    }
    let mut source: Option<(Box<dyn Read>, String)> = match &req.source {
        Some(p) => {
            let f = File::open(p).ctx(|| format!("cannot open random source {}", p.display()))?;
            Some((Box::new(f), p.display().to_string()))
        }
        None => None,
    };

    let (tmp, pad) = store.create_temp_pad()?;
    let mut export_tmp: Option<PathBuf> = None;
    let res = (|| -> Result<Created> {
        pad.set_len(req.size)
            .ctx(|| format!("cannot size {}", tmp.display()))?;
        let pad_id = fill(
            platform,
            pad.as_ref(),
            req.size,
            source.as_mut(),
            &mut |d, t| progress(Phase::Generating, d, t),
        )?;
        pad.sync_all()
            .ctx(|| format!("cannot sync {}", tmp.display()))?;
        let header = ExportHeader {
            size: req.size,
            split,
            side: Side::B,
            format: req.format,
            pad_id,
        };
        let mut done = 0u64;
        let et = export::write_export_temp(pad.as_ref(), &header, &req.export, &mut |n| {
            done += n;
            progress(Phase::Exporting, done, req.size)
        })?;
        export_tmp = Some(et.clone());
        let pad_id = hex::encode(pad_id);
        let meta = ContactMeta::new(
            &req.contact,
            &pad_id,
            req.size,
            split,
            Side::A,
            req.format,
            Origin::Generated,
        );
        store.add_contact(meta, &tmp)?;
        if let Err(e) = export::finish_export(&et, &req.export) {
            let _ = store.remove(&req.contact, &mut |_, _| {});
            return Err(e);
        }
        Ok(Created {
            contact: req.contact.clone(),
            pad_id,
            size: req.size,
            split,
            format: req.format,
            export: req.export.clone(),
        })
    })();
    drop(pad);
    if res.is_err() {
        store.discard_temp(&tmp);
        if let Some(et) = &export_tmp {
            crate::durable::shred_quietly(&crate::vfs::RealFs, et);
        }
    }
    res
}

/// Fill `pad` with `size` random bytes; returns their SHA-256.
fn fill(
    platform: &dyn RandomSource,
    pad: &dyn VFile,
    size: u64,
    mut source: Option<&mut (Box<dyn Read>, String)>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<[u8; 32]> {
    let mut kernel_tests = HealthTests::default();
    let mut source_tests = HealthTests::default();
    let mut buf = Zeroizing::new(vec![0u8; CHUNK]);
    let mut sbuf = Zeroizing::new(vec![0u8; CHUNK]);
    let mut hash = Sha256::new();
    let mut done = 0u64;
    while done < size {
        let n = (size - done).min(CHUNK as u64) as usize;
        platform
            .fill_random(&mut buf[..n])
            .map_err(|e| Error::Rng(e.to_string()))?;
        kernel_tests
            .feed(&buf[..n])
            .map_err(|f| Error::HealthTest {
                source_name: "kernel RNG (getrandom)".into(),
                test: f.name(),
                position: kernel_tests.position(),
            })?;
        if let Some((r, name)) = source.as_mut() {
            let got = fsutil::read_full(r.as_mut(), &mut sbuf[..n])
                .ctx(|| format!("cannot read random source {name}"))?;
            if got < n {
                return Err(Error::SourceTooShort(name.clone()));
            }
            source_tests
                .feed(&sbuf[..n])
                .map_err(|f| Error::HealthTest {
                    source_name: name.clone(),
                    test: f.name(),
                    position: source_tests.position(),
                })?;
            for (b, s) in buf[..n].iter_mut().zip(sbuf[..n].iter()) {
                *b ^= s;
            }
        }
        hash.update(&buf[..n]);
        pad.write_all_at(&buf[..n], done)
            .ctx(|| "cannot write the new pad".to_string())?;
        done += n as u64;
        progress(done, size);
    }
    Ok(hash.finalize().into())
}

/// The path a failed creation must not leave behind (for tests).
pub fn export_temp_path(export: &Path) -> PathBuf {
    export::temp_path(export)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::SeededRandom;

    /// The pad bytes come from the platform's RNG: the same seed makes
    /// the same pad, another seed another one.
    fn pad_id(seed: u64) -> String {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        std::fs::create_dir(&dir).unwrap();
        let store = PadStore::open_dir(&dir).unwrap();
        let created = create_pad_with(
            &SeededRandom::new(seed),
            &store,
            &NewPad {
                contact: "bob".into(),
                size: MIN_PAD_SIZE,
                split: None,
                format: Format::V3,
                source: None,
                export: tmp.path().join("bob.otcpad"),
            },
            &mut |_, _, _| {},
        )
        .unwrap();
        created.pad_id
    }

    #[test]
    fn pad_bytes_come_from_the_platform_rng() {
        assert_eq!(pad_id(5), pad_id(5));
        assert_ne!(pad_id(5), pad_id(6));
    }
}
