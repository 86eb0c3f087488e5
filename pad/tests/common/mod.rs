//! Shared helpers for the integration tests: real directories, real files.
#![allow(dead_code)]

use otc_pad::export::HEADER_LEN;
use otc_pad::generate::{Created, NewPad, create_pad};
use otc_pad::{PadStore, Range, StoreOptions};
use otc_proto::Format;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Alice (side A, made the pad) and Bob (side B, imported it), each with
/// their own data directory, plus the original pad bytes.
pub struct Pair {
    pub dir: tempfile::TempDir,
    pub alice: PadStore,
    pub bob: PadStore,
    pub pad: Vec<u8>,
    pub export: PathBuf,
}

pub fn data_dir(root: &Path, name: &str) -> PathBuf {
    root.join(name)
}

/// `create_pad` of a plain pad: `size` bytes in `format` for `contact`,
/// from the kernel RNG, exported to `export`, no progress report.
pub fn new_pad(
    store: &PadStore,
    contact: &str,
    size: u64,
    format: Format,
    export: &Path,
) -> otc_pad::Result<Created> {
    create_pad(
        store,
        &NewPad {
            contact: contact.into(),
            size,
            split: None,
            format,
            source: None,
            export: export.to_path_buf(),
        },
        &mut |_, _, _| {},
    )
}

/// Make a pad in `store` for `contact`; returns (export path, pad bytes).
pub fn make_pad(
    store: &PadStore,
    root: &Path,
    contact: &str,
    size: u64,
    format: Format,
) -> (PathBuf, Vec<u8>) {
    let export = root.join(format!("{contact}.otcpad"));
    new_pad(store, contact, size, format, &export).expect("create pad");
    let bytes = std::fs::read(&export).expect("read export");
    let pad = bytes[HEADER_LEN as usize..HEADER_LEN as usize + size as usize].to_vec();
    (export, pad)
}

pub fn pair(format: Format, size: u64) -> Pair {
    pair_with(format, size, StoreOptions::default())
}

pub fn pair_with(format: Format, size: u64, opts: StoreOptions) -> Pair {
    let dir = tempfile::tempdir().expect("tempdir");
    let alice = PadStore::open_dir_with(dir.path().join("alice"), opts).expect("alice");
    let (export, pad) = make_pad(&alice, dir.path(), "bob", size, format);
    let bob = PadStore::open_dir_with(dir.path().join("bob"), opts).expect("bob");
    otc_pad::export::import(&bob, &export, "alice", &mut |_, _| {}).expect("import");
    Pair {
        dir,
        alice,
        bob,
        pad,
        export,
    }
}

/// Path of a contact's pad file.
pub fn pad_file(store: &PadStore, contact: &str) -> PathBuf {
    let meta = store.meta(contact).expect("meta");
    store
        .dir()
        .join("pads")
        .join(format!("{}.pad", meta.pad_id))
}

/// Read a range of a contact's pad file from disk.
pub fn read_disk(store: &PadStore, contact: &str, r: Range) -> Vec<u8> {
    read_disk_path(&pad_file(store, contact), r)
}

pub fn read_disk_path(path: &Path, r: Range) -> Vec<u8> {
    let f = std::fs::File::open(path).expect("open pad file");
    let mut buf = vec![0u8; (r.hi - r.lo) as usize];
    f.read_exact_at(&mut buf, r.lo).expect("read pad file");
    buf
}

pub fn is_zero(b: &[u8]) -> bool {
    b.iter().all(|&x| x == 0)
}

/// Every file under a directory, recursively (for "nothing half-written").
pub fn tree(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    fn walk(d: &Path, out: &mut Vec<(PathBuf, u64)>) {
        if let Ok(rd) = std::fs::read_dir(d) {
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, out);
                } else {
                    let len = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
                    out.push((p, len));
                }
            }
        }
    }
    walk(dir, &mut out);
    out.sort();
    out
}

/// Files in the pads directory.
pub fn pad_files(store_dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(store_dir.join("pads"))
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// A tiny deterministic PRNG for tests (xorshift64*).
pub struct Rng(pub u64);

impl Rng {
    pub fn from_entropy() -> Rng {
        let mut b = [0u8; 8];
        getrandom::fill(&mut b).expect("getrandom");
        Rng(u64::from_le_bytes(b) | 1)
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
