//! Pairing two devices: making a pad from the hardware RNG, the pairing
//! code, the sealed export a USB stick carries, and the fingerprint the two
//! owners compare.
//!
//! # The flow
//!
//! 1. The maker runs [`make_pad`]: every pad byte is hardware RNG ⊕ kernel
//!    RNG, both raw streams pass the SP 800-90B continuous health tests
//!    ([`super::health`]) for the whole pad, and the contact is recorded as
//!    side A. Progress is reported per chunk; the callback returning
//!    `false` cancels, and everything half-made is erased.
//! 2. The maker draws a [`PairingCode`] ([`PairingCode::generate`]), shows
//!    [`PairingCode::groups`] on its screen (never on the card or the
//!    stick), and writes the partner's half with [`export_sealed`].
//! 3. The partner types the code ([`PairingCode::parse`]) and runs
//!    [`import_sealed`]: a wrong code, or any changed byte of the file,
//!    fails and writes nothing to the store.
//! 4. Both screens show [`fingerprint`] (also in
//!    [`super::ContactSummary::fingerprint`]) for the owners to compare.
//!
//! # The pairing code
//!
//! 26 random symbols of Crockford's base32 (`0-9 A-Z` without `I L O U`),
//! 130 bits from `getrandom`, then 2 check symbols: 28 symbols shown as
//! 7 groups of 4, `7K3M-Q9ZD-...`. The check symbols make the 28 symbols a
//! codeword of a Reed–Solomon code over GF(32) with distance 3, so every
//! single mistyped symbol and every swap of two symbols is caught when the
//! code is typed ([`Error::BadPairingCode`], "a typo"), before any file is
//! read. Parsing ignores case, spaces and dashes, and reads `O` as `0` and
//! `I`, `L` as `1` as Crockford's alphabet says; any other character is
//! refused by name.
//!
//! # Sealed export, version 2 of the `OTCPAD` file
//!
//! All integers little-endian.
//!
//! ```text
//! offset  len  field
//!      0    6  magic "OTCPAD"
//!      6    2  version, u16 = 2 (sealed). Version 1, the plain file, is refused.
//!      8    8  pad size N
//!     16    8  split (side A sends with [0, split), side B with [split, N))
//!     24    1  side of whoever imports the file: b'B'
//!     25    1  package format: 1 = v1, 3 = v3
//!     26    6  reserved, zero
//!     32   32  pad id: SHA-256 of the N pad bytes
//!     64    8  created: when the export was written, Unix seconds
//!     72    4  chunk size C, u32 = 1 MiB (the only value accepted)
//!     76    4  reserved, zero
//!     80   32  salt: 32 random bytes
//!    112   32  key check: HKDF-Expand(PRK, "otc-device sealed export v2 check", 32)
//!    144  ...  chunk i = 0..k, k = ceil(N / C): XChaCha20-Poly1305 of
//!              min(C, N - i*C) pad bytes, then its 16-byte tag
//! ```
//!
//! The file is `144 + N + 16k` bytes. Every chunk is sealed under
//! `K = HKDF-Expand(PRK, "otc-device sealed export v2 key", 32)` with
//! `PRK = HKDF-Extract(salt, the 26 code symbols in ASCII)` (HKDF-SHA256),
//! with the **whole 144-byte header as associated data** (so the side,
//! split, size, format, pad id, creation time and salt are authenticated
//! by every chunk), and the 24-byte nonce `i (u64) ‖ 15 zero bytes ‖ last`,
//! where `last` is 1 for the final chunk and 0 otherwise (the STREAM
//! construction). A reordered, dropped or repeated chunk, a file cut at a
//! chunk boundary, or any changed byte fails a tag. Memory stays at one
//! chunk, whatever N is.
//!
//! **Why HKDF and not a password hash.** The code carries 130 bits from the
//! kernel RNG, not a password a person chose: a guess succeeds with
//! probability 2^-130, so stretching (Argon2, scrypt) would add nothing
//! but time on a Pi. HKDF-SHA256 is the standard way to turn a high-entropy
//! secret into keys. The salt is fresh for every export, so two exports
//! never share a key even if a code were ever drawn twice, and each key
//! seals exactly one file (which is why a counter nonce is safe).
//!
//! The key check lets the importer tell "wrong code" ([`Error::WrongPairingCode`])
//! from "the file was changed" ([`Error::ExportCorrupt`]) before it reads
//! any chunk. It gives an attacker nothing a tag does not already give: a
//! way to test a guess of 130 bits.
//!
//! An import checks, before anything is written: the magic and version, the
//! header's values, the file's exact length ([`Error::ExportTruncated`]),
//! the key check, that the pad id is not stored now or held before, and the
//! contact name. Each chunk's tag is verified before its bytes are written
//! to a temporary pad file; any failure shreds that file, and the contact
//! is recorded only after the last chunk verified and the pad's SHA-256
//! matched its id.
//!
//! The export is written to `FILE.tmp`, fsync'ed, renamed to `FILE`, and
//! the directory fsync'ed: a stick pulled mid-write leaves at most a
//! `.tmp` file of the wrong length, which no import accepts.
//!
//! # The plain export (version 1)
//!
//! The plain export of earlier versions (`pad/export.rs`) carried the pad in
//! clear with unkeyed checksums, so whoever carried it could read it or flip
//! its side byte. `pad import` refuses it ([`Error::PlainExport`]) and says
//! how to make a sealed one. The library keeps its reader and writer only
//! for the store's own tests.

use super::fsutil::{self, sync_dir};
use super::generate::check_geometry;
use super::health::HealthTests;
use super::meta::{ContactMeta, Origin, Side};
use super::store::{MAX_PAD_SIZE, MIN_PAD_SIZE, PadStore, validate_contact_name};
use super::vfs::VFile;
use crate::error::{Error, IoContext, Result};
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Key, Tag, XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use otc_proto::Format;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

// ---- the pairing code ---------------------------------------------------

/// Crockford's base32 alphabet: digits and letters without I, L, O, U.
pub const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Random symbols in a code (5 bits each: 130 bits).
pub const CODE_RANDOM_SYMBOLS: usize = 26;
/// Symbols in a code, with the 2 check symbols.
pub const CODE_SYMBOLS: usize = CODE_RANDOM_SYMBOLS + 2;
/// Symbols per group in [`PairingCode::groups`].
pub const GROUP: usize = 4;

/// A pairing code: 26 random base32 symbols (130 bits) and 2 check
/// symbols. Zeroized when dropped; never written to disk.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct PairingCode {
    /// Symbol values 0..32, check symbols last.
    symbols: [u8; CODE_SYMBOLS],
}

impl std::fmt::Debug for PairingCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PairingCode(..)")
    }
}

/// Multiply in GF(32) = GF(2)[x] / (x^5 + x^2 + 1).
fn gf_mul(mut a: u8, mut b: u8) -> u8 {
    let mut p = 0u8;
    while b != 0 {
        if b & 1 != 0 {
            p ^= a;
        }
        b >>= 1;
        a <<= 1;
        if a & 0x20 != 0 {
            a ^= 0x25;
        }
    }
    p
}

/// `a^n` in GF(32).
fn gf_pow(a: u8, n: u32) -> u8 {
    (0..n).fold(1u8, |acc, _| gf_mul(acc, a))
}

/// The primitive element x (order 31).
const ALPHA: u8 = 2;

/// The two syndromes `Σ v_i` and `Σ α^i v_i` of a sequence of symbols.
fn syndromes(symbols: &[u8]) -> (u8, u8) {
    let mut s1 = 0u8;
    let mut s2 = 0u8;
    let mut w = 1u8;
    for &v in symbols {
        s1 ^= v;
        s2 ^= gf_mul(w, v);
        w = gf_mul(w, ALPHA);
    }
    (s1, s2)
}

/// The check symbols `c26, c27` that make both syndromes of the 28 symbols
/// zero: `c26 + c27 = S1` and `α^26 c26 + α^27 c27 = S2`.
fn check_symbols(data: &[u8; CODE_RANDOM_SYMBOLS]) -> (u8, u8) {
    let (s1, s2) = syndromes(data);
    let a26 = gf_pow(ALPHA, 26);
    let a27 = gf_pow(ALPHA, 27);
    // c26 = (S2 + α^27 S1) / (α^26 + α^27); the inverse of d is d^30.
    let inv = gf_pow(a26 ^ a27, 30);
    let c26 = gf_mul(s2 ^ gf_mul(a27, s1), inv);
    (c26, s1 ^ c26)
}

impl PairingCode {
    /// A fresh code from the kernel RNG.
    pub fn generate() -> Result<PairingCode> {
        let mut raw = Zeroizing::new([0u8; CODE_RANDOM_SYMBOLS]);
        getrandom::fill(&mut raw[..]).map_err(|e| Error::Rng(e.to_string()))?;
        // One random byte per symbol, keeping 5 bits: uniform over 32.
        let mut data = Zeroizing::new([0u8; CODE_RANDOM_SYMBOLS]);
        for (d, r) in data.iter_mut().zip(raw.iter()) {
            *d = r & 0x1f;
        }
        Ok(Self::from_data(&data))
    }

    fn from_data(data: &[u8; CODE_RANDOM_SYMBOLS]) -> PairingCode {
        let (c26, c27) = check_symbols(data);
        let mut symbols = [0u8; CODE_SYMBOLS];
        symbols[..CODE_RANDOM_SYMBOLS].copy_from_slice(data);
        symbols[CODE_RANDOM_SYMBOLS] = c26;
        symbols[CODE_RANDOM_SYMBOLS + 1] = c27;
        PairingCode { symbols }
    }

    /// The display form: 7 groups of 4 symbols joined by `-`.
    pub fn groups(&self) -> String {
        let mut s = String::with_capacity(CODE_SYMBOLS + CODE_SYMBOLS / GROUP);
        for (i, &v) in self.symbols.iter().enumerate() {
            if i > 0 && i % GROUP == 0 {
                s.push('-');
            }
            s.push(char::from(ALPHABET[usize::from(v & 0x1f)]));
        }
        s
    }

    /// Read a code as a person types it: any case, spaces and dashes
    /// anywhere, `O` for `0`, `I` or `L` for `1`. A wrong length, a
    /// character outside the alphabet (named in the error) or a typo the
    /// check symbols catch is [`Error::BadPairingCode`].
    pub fn parse(text: &str) -> Result<PairingCode> {
        let bad = |reason: String| Error::BadPairingCode { reason };
        let mut symbols = Zeroizing::new(Vec::with_capacity(CODE_SYMBOLS));
        for c in text.chars() {
            if c == '-' || c.is_whitespace() {
                continue;
            }
            let up = c.to_ascii_uppercase();
            let up = match up {
                'O' => '0',
                'I' | 'L' => '1',
                other => other,
            };
            let v = ALPHABET
                .iter()
                .position(|&a| char::from(a) == up)
                .ok_or_else(|| {
                    bad(format!(
                        "{c:?} is not one of its characters (digits and letters but U)"
                    ))
                })?;
            symbols.push(v as u8);
        }
        if symbols.len() != CODE_SYMBOLS {
            return Err(bad(format!(
                "it has {} characters, not {CODE_SYMBOLS} (spaces and dashes do not count)",
                symbols.len()
            )));
        }
        if syndromes(&symbols) != (0, 0) {
            return Err(bad(
                "it has a typo (its last two characters do not match the rest): compare it with the maker's screen group by group"
                    .into(),
            ));
        }
        let mut out = [0u8; CODE_SYMBOLS];
        out.copy_from_slice(&symbols);
        let code = PairingCode { symbols: out };
        out.zeroize();
        Ok(code)
    }

    /// The 26 random symbols in ASCII: the key material.
    fn ikm(&self) -> Zeroizing<[u8; CODE_RANDOM_SYMBOLS]> {
        let mut k = Zeroizing::new([0u8; CODE_RANDOM_SYMBOLS]);
        for (o, &v) in k.iter_mut().zip(self.symbols.iter()) {
            *o = ALPHABET[usize::from(v & 0x1f)];
        }
        k
    }
}

// ---- the fingerprint ----------------------------------------------------

/// The short fingerprint both owners compare after pairing: the first 64
/// bits of SHA-256 over a label, the pad id (its 64 lowercase hex digits),
/// the size, split and format, as 4 groups of 4 upper-case hex digits,
/// `3F9A-0C12-77E4-B1D0`. Identical on both devices, since both hold the
/// same four facts.
pub fn fingerprint(pad_id: &str, size: u64, split: u64, format: Format) -> String {
    let mut h = Sha256::new();
    h.update(b"otc-device pad fingerprint v1\0");
    h.update(pad_id.to_ascii_lowercase().as_bytes());
    h.update(size.to_le_bytes());
    h.update(split.to_le_bytes());
    h.update([format_byte(format)]);
    let d = h.finalize();
    let hexs = hex::encode_upper(&d[..8]);
    let mut s = String::with_capacity(19);
    for (i, c) in hexs.chars().enumerate() {
        if i > 0 && i % 4 == 0 {
            s.push('-');
        }
        s.push(c);
    }
    s
}

/// The package format as one byte of an export header (plain or sealed).
pub(crate) fn format_byte(f: Format) -> u8 {
    match f {
        Format::V1 => 1,
        Format::V3 => 3,
    }
}

// ---- making a pad -------------------------------------------------------

/// The default hardware random source of a device.
pub const DEFAULT_HWRNG: &str = "/dev/hwrng";
/// Bytes made per step: progress and cancel are checked this often. Small
/// enough that a slow hardware RNG (a Pi's gives tens to hundreds of KiB a
/// second) still reports progress and answers Cancel within a second or so.
pub const MAKE_CHUNK: usize = 64 * 1024;

/// What to make (see [`make_pad_with`]).
#[derive(Debug, Clone)]
pub struct MakeOptions {
    pub contact: String,
    pub size: u64,
    /// Default: `size / 2`.
    pub split: Option<u64>,
    pub format: Format,
    /// The hardware random source (`/dev/hwrng` on a device). `None`: the
    /// kernel RNG alone (the command line on a laptop, which then saw the pad).
    pub hw: Option<PathBuf>,
}

/// A pad made by [`make_pad`]: this device is side A.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Made {
    pub contact: String,
    pub pad_id: String,
    pub size: u64,
    pub split: u64,
    pub format: Format,
    pub fingerprint: String,
    /// The hardware source mixed in, if any.
    pub hw: Option<PathBuf>,
}

/// Make a v3 pad of `size` bytes for `contact`, split in half, from the
/// hardware source `hw` ⊕ the kernel RNG, and record it as side A.
///
/// `progress(done, total)` is called after each [`MAKE_CHUNK`]; returning
/// `false` cancels: [`Error::Cancelled`], and everything half-made is
/// erased. Nothing is recorded unless the whole pad was made, passed the
/// health tests and was synced. Blocking: run it on a worker thread.
pub fn make_pad(
    store: &PadStore,
    contact: &str,
    size: u64,
    hw: Option<&Path>,
    progress: &mut dyn FnMut(u64, u64) -> bool,
) -> Result<Made> {
    make_pad_with(
        store,
        &MakeOptions {
            contact: contact.to_string(),
            size,
            split: None,
            format: Format::V3,
            hw: hw.map(Path::to_path_buf),
        },
        progress,
    )
}

/// [`make_pad`] with every choice spelled out.
///
/// With a hardware source, every pad byte is `hw ⊕ getrandom`, and the
/// SP 800-90B repetition-count and adaptive-proportion tests run on both
/// raw streams for the whole pad. A source that cannot be opened is
/// [`Error::NoHardwareRng`]; one that ends early is
/// [`Error::SourceTooShort`]. The two streams are read on two threads
/// while this one mixes, hashes and writes, so the rate is close to the
/// slower source's raw rate.
pub fn make_pad_with(
    store: &PadStore,
    opts: &MakeOptions,
    progress: &mut dyn FnMut(u64, u64) -> bool,
) -> Result<Made> {
    validate_contact_name(&opts.contact)?;
    store.check_new_contact(&opts.contact)?;
    let split = check_geometry(opts.size, opts.split)?;
    let hw = match &opts.hw {
        Some(p) => Some((
            File::open(p).map_err(|e| Error::NoHardwareRng {
                path: p.clone(),
                reason: e.to_string(),
            })?,
            p.display().to_string(),
        )),
        None => None,
    };
    let (tmp, pad) = store.create_temp_pad()?;
    let res = (|| -> Result<String> {
        pad.set_len(opts.size)
            .ctx(|| format!("cannot size {}", tmp.display()))?;
        let id = fill(pad.as_ref(), opts.size, hw, progress)?;
        pad.sync_all()
            .ctx(|| format!("cannot sync {}", tmp.display()))?;
        let pad_id = hex::encode(id);
        let meta = ContactMeta::new(
            &opts.contact,
            &pad_id,
            opts.size,
            split,
            Side::A,
            opts.format,
            Origin::Generated,
        );
        store.add_contact(meta, &tmp)?;
        Ok(pad_id)
    })();
    drop(pad);
    match res {
        Ok(pad_id) => Ok(Made {
            contact: opts.contact.clone(),
            fingerprint: fingerprint(&pad_id, opts.size, split, opts.format),
            pad_id,
            size: opts.size,
            split,
            format: opts.format,
            hw: opts.hw.clone(),
        }),
        Err(e) => {
            store.discard_temp(&tmp);
            Err(e)
        }
    }
}

type Chunk = Result<Zeroizing<Vec<u8>>>;

/// Read `size` bytes in [`MAKE_CHUNK`]s from `next` (which fills a buffer)
/// through the health tests, and hand them over `tx` until done, an error,
/// or the receiver is gone.
fn produce(
    size: u64,
    name: &str,
    tx: mpsc::SyncSender<Chunk>,
    next: &mut dyn FnMut(&mut [u8]) -> Result<()>,
) {
    let mut tests = HealthTests::default();
    let mut done = 0u64;
    while done < size {
        let n = (size - done).min(MAKE_CHUNK as u64) as usize;
        let mut buf = Zeroizing::new(vec![0u8; n]);
        let r = next(&mut buf).and_then(|()| {
            tests.feed(&buf).map_err(|f| Error::HealthTest {
                source_name: name.to_string(),
                test: f.name(),
                position: tests.position(),
            })
        });
        let failed = r.is_err();
        if tx.send(r.map(|()| buf)).is_err() || failed {
            return;
        }
        done += n as u64;
    }
}

/// Fill `pad` with `size` bytes of kernel RNG ⊕ `hw`; returns their SHA-256.
fn fill(
    pad: &dyn VFile,
    size: u64,
    hw: Option<(File, String)>,
    progress: &mut dyn FnMut(u64, u64) -> bool,
) -> Result<[u8; 32]> {
    std::thread::scope(|s| {
        let (ktx, krx) = mpsc::sync_channel::<Chunk>(2);
        s.spawn(move || {
            produce(size, "kernel RNG (getrandom)", ktx, &mut |b| {
                getrandom::fill(b).map_err(|e| Error::Rng(e.to_string()))
            })
        });
        let hrx = hw.map(|(mut f, name)| {
            let (htx, hrx) = mpsc::sync_channel::<Chunk>(2);
            s.spawn(move || {
                produce(size, &name.clone(), htx, &mut |b| {
                    let got = fsutil::read_full(&mut f as &mut dyn Read, b)
                        .ctx(|| format!("cannot read the hardware random source {name}"))?;
                    if got < b.len() {
                        return Err(Error::SourceTooShort(name.clone()));
                    }
                    Ok(())
                })
            });
            hrx
        });
        let gone = || Error::Rng("a random source stopped early".into());
        let mut hash = Sha256::new();
        let mut done = 0u64;
        while done < size {
            let mut buf = krx.recv().map_err(|_| gone())??;
            if let Some(hrx) = &hrx {
                let h = hrx.recv().map_err(|_| gone())??;
                for (b, x) in buf.iter_mut().zip(h.iter()) {
                    *b ^= x;
                }
            }
            hash.update(&buf[..]);
            pad.write_all_at(&buf, done)
                .ctx(|| "cannot write the new pad".to_string())?;
            // Its writeback runs while the next chunk is made: the sync at
            // the end waits for the tail only.
            pad.start_writeback(done, buf.len() as u64);
            done += buf.len() as u64;
            if !progress(done, size) {
                return Err(Error::Cancelled);
            }
        }
        Ok(hash.finalize().into())
        // Returning drops the receivers: a producer still running stops at
        // its next send, and the scope waits for it.
    })
}

// ---- the sealed export --------------------------------------------------

/// File magic (shared with the plain export of version 1).
pub const MAGIC: &[u8; 6] = b"OTCPAD";
/// The sealed export's version.
pub const SEALED_VERSION: u16 = 2;
/// The plain export's version (refused).
pub const PLAIN_VERSION: u16 = 1;
/// Header bytes.
pub const SEALED_HEADER_LEN: usize = 144;
/// Pad bytes per sealed chunk.
pub const SEAL_CHUNK: usize = 1 << 20;
/// Tag bytes per chunk.
pub const TAG_LEN: usize = 16;
/// The file name ending of an export (what the screens list on a stick).
pub const EXPORT_EXTENSION: &str = "otcpad";

const INFO_KEY: &[u8] = b"otc-device sealed export v2 key";
const INFO_CHECK: &[u8] = b"otc-device sealed export v2 check";

/// The header of a sealed export (everything but salt and key check is
/// what the partner's store records).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedHeader {
    pub size: u64,
    pub split: u64,
    /// The side of whoever imports the file.
    pub side: Side,
    pub format: Format,
    pub pad_id: [u8; 32],
    /// When the export was written, Unix seconds.
    pub created: u64,
    pub salt: [u8; 32],
    pub check: [u8; 32],
}

impl SealedHeader {
    /// The 144 header bytes.
    pub fn encode(&self) -> [u8; SEALED_HEADER_LEN] {
        let mut h = [0u8; SEALED_HEADER_LEN];
        h[0..6].copy_from_slice(MAGIC);
        h[6..8].copy_from_slice(&SEALED_VERSION.to_le_bytes());
        h[8..16].copy_from_slice(&self.size.to_le_bytes());
        h[16..24].copy_from_slice(&self.split.to_le_bytes());
        h[24] = self.side.byte();
        h[25] = format_byte(self.format);
        h[32..64].copy_from_slice(&self.pad_id);
        h[64..72].copy_from_slice(&self.created.to_le_bytes());
        h[72..76].copy_from_slice(&(SEAL_CHUNK as u32).to_le_bytes());
        h[80..112].copy_from_slice(&self.salt);
        h[112..144].copy_from_slice(&self.check);
        h
    }

    /// Parse the header bytes and check its values (not its authenticity:
    /// the chunks' tags do that). `Err` carries the reason.
    pub fn decode(h: &[u8; SEALED_HEADER_LEN]) -> std::result::Result<SealedHeader, String> {
        let u64_at = |o: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&h[o..o + 8]);
            u64::from_le_bytes(b)
        };
        if &h[0..6] != MAGIC {
            return Err("no OTCPAD magic at the start".into());
        }
        let version = u16::from_le_bytes([h[6], h[7]]);
        if version != SEALED_VERSION {
            return Err(format!("unsupported export version {version}"));
        }
        let size = u64_at(8);
        let split = u64_at(16);
        if !(MIN_PAD_SIZE..=MAX_PAD_SIZE).contains(&size) {
            return Err(format!("pad size {size} out of range"));
        }
        check_geometry(size, Some(split)).map_err(|e| e.to_string())?;
        let side = Side::from_byte(h[24]).ok_or_else(|| format!("bad side byte {:#04x}", h[24]))?;
        let format = match h[25] {
            1 => Format::V1,
            3 => Format::V3,
            x => return Err(format!("unknown package format {x}")),
        };
        let chunk = u32::from_le_bytes([h[72], h[73], h[74], h[75]]);
        if chunk as usize != SEAL_CHUNK {
            return Err(format!("unsupported chunk size {chunk}"));
        }
        if h[26..32].iter().chain(&h[76..80]).any(|&b| b != 0) {
            return Err("reserved bytes are not zero".into());
        }
        let mut pad_id = [0u8; 32];
        pad_id.copy_from_slice(&h[32..64]);
        let mut salt = [0u8; 32];
        salt.copy_from_slice(&h[80..112]);
        let mut check = [0u8; 32];
        check.copy_from_slice(&h[112..144]);
        Ok(SealedHeader {
            size,
            split,
            side,
            format,
            pad_id,
            created: u64_at(64),
            salt,
            check,
        })
    }

    /// Chunks in the file.
    pub fn chunks(&self) -> u64 {
        self.size.div_ceil(SEAL_CHUNK as u64)
    }

    /// Total file length.
    pub fn file_len(&self) -> u64 {
        SEALED_HEADER_LEN as u64 + self.size + TAG_LEN as u64 * self.chunks()
    }

    /// The fingerprint of the pad the file carries.
    pub fn fingerprint(&self) -> String {
        fingerprint(
            &hex::encode(self.pad_id),
            self.size,
            self.split,
            self.format,
        )
    }
}

/// The encryption key and the key check for `code` and `salt`.
fn derive(code: &PairingCode, salt: &[u8; 32]) -> (Zeroizing<[u8; 32]>, [u8; 32]) {
    let hk = Hkdf::<Sha256>::new(Some(salt), &code.ikm()[..]);
    let mut key = Zeroizing::new([0u8; 32]);
    let mut check = [0u8; 32];
    // 32 bytes is far below HKDF-SHA256's limit of 8160: these cannot fail.
    let _ = hk.expand(INFO_KEY, &mut key[..]);
    let _ = hk.expand(INFO_CHECK, &mut check);
    (key, check)
}

fn nonce(i: u64, last: bool) -> XNonce {
    let mut n = [0u8; 24];
    n[0..8].copy_from_slice(&i.to_le_bytes());
    n[23] = u8::from(last);
    XNonce::from(n)
}

/// What [`export_sealed`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSummary {
    pub contact: String,
    pub pad_id: String,
    pub size: u64,
    pub split: u64,
    pub format: Format,
    pub fingerprint: String,
    pub path: PathBuf,
    /// Bytes of the file.
    pub file_len: u64,
}

/// Write the partner's half of `contact`'s pad (made here, nothing used
/// yet) to `out`, sealed with `code` (format in the module docs).
///
/// Refused ([`Error::NotExportable`]) for a pad this device imported, or
/// one it has used (its used bytes are erased, so the partner's copy would
/// not match). `out` and `out.tmp` must not exist
/// ([`Error::OutputExists`]). Written to `out.tmp`, fsync'ed, renamed,
/// directory fsync'ed; on any failure the temporary file is erased (as far
/// as the medium still allows) and nothing named `out` exists.
pub fn export_sealed(
    store: &PadStore,
    contact: &str,
    out: &Path,
    code: &PairingCode,
) -> Result<ExportSummary> {
    export_sealed_with(store, contact, out, code, &mut |_, _| true)
}

/// [`export_sealed`] with progress (bytes done, total); `false` cancels.
pub fn export_sealed_with(
    store: &PadStore,
    contact: &str,
    out: &Path,
    code: &PairingCode,
    progress: &mut dyn FnMut(u64, u64) -> bool,
) -> Result<ExportSummary> {
    let meta = store.meta(contact)?;
    let pad_id = exportable_pad_id(&meta, contact)?;
    let tmp = free_output(out)?;
    let pad = store.open_pad_read(&meta)?;
    let (header, key) = new_sealed_header(&meta, pad_id, code)?;
    let f = fsutil::create_private(&tmp).ctx(|| format!("cannot create {}", tmp.display()))?;
    let res = write_sealed(&f, &tmp, &header, &key, &*pad, contact, progress)
        .and_then(|()| publish(&f, &tmp, out));
    drop(f);
    match res {
        Ok(()) => Ok(ExportSummary {
            contact: contact.to_string(),
            fingerprint: header.fingerprint(),
            pad_id: meta.pad_id,
            size: meta.size,
            split: meta.split,
            format: meta.format,
            path: out.to_path_buf(),
            file_len: header.file_len(),
        }),
        Err(e) => {
            super::durable::shred_quietly(&super::vfs::RealFs, &tmp);
            Err(e)
        }
    }
}

/// Why `contact`'s pad is not exported.
fn not_exportable(contact: &str, reason: &str) -> Error {
    Error::NotExportable {
        contact: contact.to_string(),
        reason: reason.to_string(),
    }
}

/// Export, step 1: the pad may be exported (made here, side A, never
/// used); returns its id as bytes.
fn exportable_pad_id(meta: &ContactMeta, contact: &str) -> Result<[u8; 32]> {
    if meta.origin != Origin::Generated || meta.side != Side::A {
        return Err(not_exportable(
            contact,
            "it was not made on this device (only the maker exports a pad, once for its partner)",
        ));
    }
    if meta.reserved != 0
        || meta.slots_reserved != 0
        || meta.erased != 0
        || meta.slots_erased != 0
        || !meta.received.is_empty()
        || meta.rx != Default::default()
    {
        return Err(not_exportable(
            contact,
            "it has been used already, so part of it is erased here; make a new pad",
        ));
    }
    let mut pad_id = [0u8; 32];
    hex::decode_to_slice(&meta.pad_id, &mut pad_id).map_err(|_| Error::CorruptMeta {
        what: contact.to_string(),
        reason: format!("pad id {:?} is not 64 hex digits", meta.pad_id),
    })?;
    Ok(pad_id)
}

/// Export, step 2: neither `out` nor its temporary file exists; returns
/// the temporary file's path.
fn free_output(out: &Path) -> Result<PathBuf> {
    if std::fs::symlink_metadata(out).is_ok() {
        return Err(Error::OutputExists(out.to_path_buf()));
    }
    let tmp = super::export::temp_path(out);
    if std::fs::symlink_metadata(&tmp).is_ok() {
        return Err(Error::OutputExists(tmp));
    }
    Ok(tmp)
}

/// Export, step 3: the partner's header (side B) with a fresh salt, and
/// the key the code gives with it.
fn new_sealed_header(
    meta: &ContactMeta,
    pad_id: [u8; 32],
    code: &PairingCode,
) -> Result<(SealedHeader, Zeroizing<[u8; 32]>)> {
    let mut salt = [0u8; 32];
    getrandom::fill(&mut salt).map_err(|e| Error::Rng(e.to_string()))?;
    let (key, check) = derive(code, &salt);
    let header = SealedHeader {
        size: meta.size,
        split: meta.split,
        side: Side::B,
        format: meta.format,
        pad_id,
        created: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        salt,
        check,
    };
    Ok((header, key))
}

/// Export, step 4: writes the header, then the pad chunk by chunk, each
/// sealed with its tag; the bytes read must still hash to the pad id.
fn write_sealed(
    f: &File,
    tmp: &Path,
    header: &SealedHeader,
    key: &[u8; 32],
    pad: &dyn VFile,
    contact: &str,
    progress: &mut dyn FnMut(u64, u64) -> bool,
) -> Result<()> {
    let head = header.encode();
    f.write_all_at(&head, 0)
        .ctx(|| format!("cannot write {}", tmp.display()))?;
    let cipher = XChaCha20Poly1305::new(Key::from_slice(&key[..]));
    // A chunk and its tag, written with one call.
    let mut buf = Zeroizing::new(vec![0u8; SEAL_CHUNK + TAG_LEN]);
    let chunks = header.chunks();
    // The bytes read are hashed on a thread of their own (a copy of each
    // chunk, before it is sealed in place), beside the sealing and writing
    // here: the export's pass costs the slower of the two, not their sum.
    let (to_hash, hashed) = std::sync::mpsc::sync_channel::<Zeroizing<Vec<u8>>>(4);
    let digest = std::thread::scope(|scope| -> Result<[u8; 32]> {
        let hasher = scope.spawn(move || {
            let mut hash = Sha256::new();
            for chunk in hashed {
                hash.update(&chunk[..]);
            }
            <[u8; 32]>::from(hash.finalize())
        });
        let mut at = SEALED_HEADER_LEN as u64;
        for i in 0..chunks {
            let lo = i * SEAL_CHUNK as u64;
            let n = (header.size - lo).min(SEAL_CHUNK as u64) as usize;
            let (b, tag_at) = buf[..n + TAG_LEN].split_at_mut(n);
            pad.read_exact_at(b, lo)
                .ctx(|| format!("cannot read the pad for {contact}"))?;
            // The hasher ends only when this sender is dropped.
            let _ = to_hash.send(Zeroizing::new(b.to_vec()));
            let tag = cipher
                .encrypt_in_place_detached(&nonce(i, i + 1 == chunks), &head, b)
                .map_err(|_| Error::Rng("sealing a chunk failed".into()))?;
            tag_at.copy_from_slice(&tag);
            f.write_all_at(&buf[..n + TAG_LEN], at)
                .ctx(|| format!("cannot write {}", tmp.display()))?;
            super::vfs::start_writeback(f, at, (n + TAG_LEN) as u64);
            at += (n + TAG_LEN) as u64;
            if !progress(lo + n as u64, header.size) {
                return Err(Error::Cancelled);
            }
        }
        drop(to_hash);
        hasher
            .join()
            .map_err(|_| Error::Rng("hashing the exported pad failed".into()))
    })?;
    if digest != header.pad_id {
        return Err(not_exportable(
            contact,
            "its pad file no longer matches its pad id (was it used meanwhile?)",
        ));
    }
    Ok(())
}

/// Export, step 5: syncs the temporary file and renames it to `out`,
/// then syncs `out`'s directory.
fn publish(f: &File, tmp: &Path, out: &Path) -> Result<()> {
    f.sync_all()
        .ctx(|| format!("cannot sync {}", tmp.display()))?;
    std::fs::rename(tmp, out).ctx(|| format!("cannot create {}", out.display()))?;
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    sync_dir(&parent)
}

/// What [`import_sealed`] made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportSummary {
    pub contact: String,
    pub pad_id: String,
    pub size: u64,
    pub split: u64,
    pub side: Side,
    pub format: Format,
    pub fingerprint: String,
    /// When the maker wrote the export, Unix seconds.
    pub created: u64,
}

/// What kind of pad file is at a path (for `pad import` and for the
/// screens' list of files on a stick).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportKind {
    /// A sealed export; its header (not yet authenticated).
    Sealed(SealedHeader),
    /// A plain export of version 1 (refused).
    Plain,
}

/// Read the header of a pad file without the code: [`ExportKind::Sealed`]
/// with its (unauthenticated) header, [`ExportKind::Plain`], or an error
/// saying why it is neither.
pub fn probe(path: &Path) -> Result<ExportKind> {
    let f = File::open(path).ctx(|| format!("cannot open {}", path.display()))?;
    let (kind, _) = read_header(&f, path)?;
    Ok(kind)
}

fn read_header(f: &File, path: &Path) -> Result<(ExportKind, [u8; SEALED_HEADER_LEN])> {
    let corrupt = |reason: String| Error::ExportCorrupt {
        path: path.to_path_buf(),
        reason,
    };
    let mut head = [0u8; SEALED_HEADER_LEN];
    let n =
        fsutil::read_full(&mut &*f, &mut head).ctx(|| format!("cannot read {}", path.display()))?;
    if n < 8 || &head[0..6] != MAGIC {
        return Err(corrupt("not an otc-device pad export".into()));
    }
    let version = u16::from_le_bytes([head[6], head[7]]);
    if version == PLAIN_VERSION {
        return Ok((ExportKind::Plain, head));
    }
    if n < SEALED_HEADER_LEN {
        let len = f
            .metadata()
            .ctx(|| format!("cannot stat {}", path.display()))?
            .len();
        return Err(Error::ExportTruncated {
            path: path.to_path_buf(),
            len,
            expected: SEALED_HEADER_LEN as u64 + MIN_PAD_SIZE + TAG_LEN as u64,
        });
    }
    let header = SealedHeader::decode(&head).map_err(corrupt)?;
    Ok((ExportKind::Sealed(header), head))
}

/// Import the sealed export `file` as `contact`, opened with `code`.
///
/// Checks, before anything is written: the contact name (and that it is
/// free), the header, the exact length, the code (the key check:
/// [`Error::WrongPairingCode`]), the pad id (not stored now, never held
/// before). Then each chunk is authenticated before its bytes go to a
/// temporary pad file; a failed tag is [`Error::ExportCorrupt`] and the
/// temporary file is shredded. The contact is recorded only after all of
/// it checked out. A plain export is [`Error::PlainExport`].
pub fn import_sealed(
    store: &PadStore,
    file: &Path,
    code: &PairingCode,
    contact: &str,
) -> Result<ImportSummary> {
    import_sealed_with(store, file, code, contact, &mut |_, _| true)
}

/// [`import_sealed`] with progress (bytes done, total); `false` cancels.
pub fn import_sealed_with(
    store: &PadStore,
    file: &Path,
    code: &PairingCode,
    contact: &str,
    progress: &mut dyn FnMut(u64, u64) -> bool,
) -> Result<ImportSummary> {
    validate_contact_name(contact)?;
    store.check_new_contact(contact)?;
    let f = File::open(file).ctx(|| format!("cannot open {}", file.display()))?;
    let src = open_sealed(&f, file)?;
    let key = key_for(code, &src)?;
    let header = &src.header;
    let pad_id = hex::encode(header.pad_id);
    store.check_pad_id_free(&pad_id)?;
    let (tmp, out) = store.create_temp_pad()?;
    let res = unseal_into(&src, &key, &*out, &tmp, progress);
    drop(out);
    let res = res.and_then(|()| {
        let meta = ContactMeta::new(
            contact,
            &pad_id,
            header.size,
            header.split,
            header.side,
            header.format,
            Origin::Imported,
        );
        store.add_contact(meta, &tmp)
    });
    if let Err(e) = res {
        store.discard_temp(&tmp);
        return Err(e);
    }
    Ok(ImportSummary {
        contact: contact.to_string(),
        fingerprint: header.fingerprint(),
        pad_id,
        size: header.size,
        split: header.split,
        side: header.side,
        format: header.format,
        created: header.created,
    })
}

/// A sealed export being imported: the open file, its path, its header
/// as read (the associated data of every chunk) and as parsed.
struct SealedFile<'a> {
    f: &'a File,
    path: &'a Path,
    head: [u8; SEALED_HEADER_LEN],
    header: SealedHeader,
}

/// Import, step 1: the file's header, if it is a sealed export of the
/// length its header says.
fn open_sealed<'a>(f: &'a File, path: &'a Path) -> Result<SealedFile<'a>> {
    let (kind, head) = read_header(f, path)?;
    let header = match kind {
        ExportKind::Sealed(h) => h,
        ExportKind::Plain => {
            return Err(Error::PlainExport {
                path: path.to_path_buf(),
            });
        }
    };
    let len = f
        .metadata()
        .ctx(|| format!("cannot stat {}", path.display()))?
        .len();
    if len != header.file_len() {
        return Err(Error::ExportTruncated {
            path: path.to_path_buf(),
            len,
            expected: header.file_len(),
        });
    }
    Ok(SealedFile {
        f,
        path,
        head,
        header,
    })
}

/// Import, step 2: the key `code` gives with the header's salt, if the
/// header's check value says it is the right code (compared in constant
/// time).
fn key_for(code: &PairingCode, src: &SealedFile) -> Result<Zeroizing<[u8; 32]>> {
    let (key, check) = derive(code, &src.header.salt);
    let differ = check
        .iter()
        .zip(src.header.check.iter())
        .fold(0u8, |d, (a, b)| d | (a ^ b));
    if differ != 0 {
        return Err(Error::WrongPairingCode {
            path: src.path.to_path_buf(),
        });
    }
    Ok(key)
}

/// Import, step 3: opens the export chunk by chunk into the temporary
/// pad file `out` (at `tmp`), each chunk authenticated before it is
/// written; the bytes must hash to the pad id; then syncs `out`.
fn unseal_into(
    src: &SealedFile,
    key: &[u8; 32],
    out: &dyn VFile,
    tmp: &Path,
    progress: &mut dyn FnMut(u64, u64) -> bool,
) -> Result<()> {
    let (f, header) = (src.f, &src.header);
    let corrupt = |reason: String| Error::ExportCorrupt {
        path: src.path.to_path_buf(),
        reason,
    };
    out.set_len(header.size)
        .ctx(|| format!("cannot size {}", tmp.display()))?;
    let cipher = XChaCha20Poly1305::new(Key::from_slice(&key[..]));
    let mut buf = Zeroizing::new(vec![0u8; SEAL_CHUNK]);
    let mut tag = [0u8; TAG_LEN];
    let mut hash = Sha256::new();
    let chunks = header.chunks();
    let mut at = SEALED_HEADER_LEN as u64;
    for i in 0..chunks {
        let lo = i * SEAL_CHUNK as u64;
        let n = (header.size - lo).min(SEAL_CHUNK as u64) as usize;
        let b = &mut buf[..n];
        f.read_exact_at(b, at)
            .and_then(|()| f.read_exact_at(&mut tag, at + n as u64))
            .ctx(|| format!("cannot read {}", src.path.display()))?;
        cipher
            .decrypt_in_place_detached(&nonce(i, i + 1 == chunks), &src.head, b, Tag::from_slice(&tag))
            .map_err(|_| {
                corrupt(format!(
                    "part {} of {chunks} does not authenticate: a byte of the file was changed (on purpose or by a damaged medium)",
                    i + 1
                ))
            })?;
        hash.update(&*b);
        out.write_all_at(b, lo)
            .ctx(|| format!("cannot write {}", tmp.display()))?;
        at += (n + TAG_LEN) as u64;
        if !progress(lo + n as u64, header.size) {
            return Err(Error::Cancelled);
        }
    }
    if hash.finalize().as_slice() != header.pad_id {
        return Err(corrupt("the pad bytes do not match the pad id".into()));
    }
    out.sync_all()
        .ctx(|| format!("cannot sync {}", tmp.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gf32_is_a_field() {
        for a in 1..32u8 {
            assert_eq!(gf_mul(a, gf_pow(a, 30)), 1, "inverse of {a}");
        }
        assert_eq!(gf_pow(ALPHA, 31), 1);
        assert!((1..31).all(|n| gf_pow(ALPHA, n) != 1), "alpha has order 31");
    }

    /// The export hashes what it read (on its own thread) and refuses a
    /// pad file changed since it was made; a cancel stops it. Either way
    /// nothing is left at the export's path or its temporary one.
    #[test]
    fn an_export_refuses_a_changed_pad_and_stops_on_cancel() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        std::fs::create_dir(&dir).unwrap();
        let store = PadStore::open_dir(&dir).unwrap();
        make_pad(&store, "bob", 300_000, None, &mut |_, _| true).unwrap();
        let code = PairingCode::generate().unwrap();
        let out = tmp.path().join("bob.otcpad");
        let left = || out.exists() || super::super::export::temp_path(&out).exists();
        let e = export_sealed_with(&store, "bob", &out, &code, &mut |done, _| done < 100_000)
            .unwrap_err();
        assert!(matches!(e, Error::Cancelled), "{e}");
        assert!(!left());

        let meta = store.meta("bob").unwrap();
        let pad = store.pad_path(&meta.pad_id);
        let mut bytes = std::fs::read(&pad).unwrap();
        bytes[250_000] ^= 1;
        std::fs::write(&pad, bytes).unwrap();
        let e = export_sealed(&store, "bob", &out, &code).unwrap_err();
        assert!(
            e.to_string().contains("no longer matches its pad id"),
            "{e}"
        );
        assert!(!left());
    }

    #[test]
    fn generated_codes_read_back() {
        for _ in 0..50 {
            let c = PairingCode::generate().unwrap();
            let g = c.groups();
            assert_eq!(g.len(), CODE_SYMBOLS + 6);
            assert_eq!(g.split('-').count(), 7);
            assert!(g.split('-').all(|p| p.len() == 4));
            assert_eq!(PairingCode::parse(&g).unwrap(), c);
            assert_eq!(PairingCode::parse(&g.to_lowercase()).unwrap(), c);
            assert_eq!(PairingCode::parse(&g.replace('-', " ")).unwrap(), c);
            assert_eq!(PairingCode::parse(&g.replace('-', "")).unwrap(), c);
        }
    }
}
