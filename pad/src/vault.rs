//! Encryption at rest (issue 18): the device master key, the key file that
//! holds it wrapped under the owner's passphrase, the failure counter, and
//! the small sealed blobs (settings, read positions, contact list) the
//! appliance keeps under the master key.
//!
//! # Files (in the data directory, next to the marker)
//!
//! ```text
//! DIR/otc-device.key        the wrapped master key (108 bytes, below)
//! DIR/otc-device.failures   wrong passphrases in a row, decimal; not secret
//! ```
//!
//! Key file, version 1 (all integers little-endian):
//!
//! ```text
//!  0..8    b"OTCKEY01"
//!  8..12   Argon2id memory in KiB      12..16  passes (t)     16..20  lanes (p)
//! 20..36   salt (16 random bytes)
//! 36..60   XChaCha20-Poly1305 nonce (24 random bytes)
//! 60..108  the 32-byte master key, encrypted, and its 16-byte tag
//! ```
//!
//! The wrapping key is Argon2id (RFC 9106, version 0x13) of the passphrase
//! and the salt with the parameters in the header; bytes 0..60 are the
//! associated data, so a changed parameter or salt fails like a wrong
//! passphrase. Parameters read from a key file are bounded
//! ([`MAX_M_KIB`]) so a tampered file cannot make the device allocate more
//! than it has.
//!
//! # The failure counter, and what it does not protect
//!
//! [`unlock`] adds one to `otc-device.failures` and makes that durable
//! (tmp, fsync, rename, directory fsync) *before* it runs Argon2id, so
//! pulling the power during the check still counts the try. A right
//! passphrase writes 0. When the count reaches `max_failures` the key file
//! is shredded ([`Error::KeyDestroyed`]). The counter survives restarts;
//! the caller grows the delay from [`failures`].
//!
//! **A cloned card defeats the counter.** Whoever copies the card tries
//! passphrases against the copy (or resets the file, or runs Argon2id on
//! their own machine against the key file) as often as they like. What
//! protects the pads then is only the passphrase's strength times the cost
//! of one Argon2id evaluation. That is why [`passphrase_strength`] refuses
//! weak passphrases and why the parameters are as large as the Pi 3 can
//! bear at unlock.
//!
//! # Sealed blobs
//!
//! [`MasterKey::seal_blob`]: `b"OTCB1"`, a fresh random 24-byte nonce, then
//! XChaCha20-Poly1305 of the bytes under a key HKDF-SHA256 derives from the
//! master key (info `otc-device blob v1`); the associated data is the
//! purpose string (`"contact"`, `"cursors"`, ...), so a blob moved to a
//! file of another purpose does not open. A fresh nonce on every write
//! (192 bits, random) means rewriting a file never repeats a nonce.
//!
//! # Pad bytes
//!
//! See [`PadCipher`]: ChaCha20 (not AES: the Pi 3's Cortex-A53 has no AES
//! instructions, and table AES leaks through cache timing) under a per-pad
//! key, addressed by byte offset, so any range of a pad can be read
//! without reading the rest. Erase after use writes **raw zeros to the
//! ciphertext** ([`crate::vfs::VFile::raw`]), never zeros through the
//! cipher: encrypted zeros are the keystream itself, and two snapshots of
//! the card (before and after the erase) would then give the pad bytes by
//! XOR of the two ciphertexts. Erased ciphertext decrypts to keystream,
//! not zeros, so nothing may ever conclude "erased" from reading a pad:
//! the store's replay refusal comes from the record's ranges, checked
//! before any pad byte is read.

use crate::durable::{replace_durably, shred};
use crate::error::{Error, IoContext, Result};
use crate::vfs::{self, Kind, Vfs};
use chacha20::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use sha2::Sha256;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// The key file's name in the data directory.
pub const KEY_FILE: &str = "otc-device.key";
/// The failure counter's name in the data directory.
pub const FAILURES_FILE: &str = "otc-device.failures";
/// Wrong passphrases in a row before the key is destroyed, unless the
/// owner configured another number.
pub const DEFAULT_MAX_FAILURES: u32 = 10;
/// Largest Argon2id memory a key file may ask for (512 MiB: half a Pi 3).
pub const MAX_M_KIB: u32 = 512 * 1024;
/// Largest pass count a key file may ask for.
pub const MAX_T: u32 = 64;
/// Largest lane count a key file may ask for.
pub const MAX_P: u32 = 16;

const MAGIC: &[u8; 8] = b"OTCKEY01";
const HEADER_LEN: usize = 60;
const KEY_FILE_LEN: usize = HEADER_LEN + 32 + 16;
const BLOB_MAGIC: &[u8; 5] = b"OTCB1";
const BLOB_OVERHEAD: usize = 5 + 24 + 16;

/// The device master key: 32 random bytes, in memory only while the
/// device is unlocked, zeroed when dropped. `Debug` prints no bytes.
/// Cloning copies the key into another zeroizing buffer.
#[derive(Clone)]
pub struct MasterKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

/// Argon2id cost: memory in KiB (`m_kib`), passes (`t`), lanes (`p`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KdfParams {
    pub m_kib: u32,
    pub t: u32,
    pub p: u32,
}

impl KdfParams {
    /// The device's parameters, sized for a Raspberry Pi 3 with 1 GiB of
    /// RAM (the smallest device we support): 64 MiB, 3 passes, 1 lane.
    /// 64 MiB and 3 passes is RFC 9106's second recommended option (for
    /// memory-constrained settings); one lane because our Argon2id runs
    /// the lanes one after the other (no threads), so more lanes would
    /// cost the device as much time and buy nothing against a parallel
    /// attacker. The unlock time measured on the host and in QEMU, and the
    /// estimate for each Pi, are in `pad/README.md`.
    pub const DEFAULT: KdfParams = KdfParams {
        m_kib: 64 * 1024,
        t: 3,
        p: 1,
    };
    /// Tiny parameters for tests only (8 KiB, 1 pass): fast, and worthless
    /// against guessing. Never use for a real device.
    pub const TEST: KdfParams = KdfParams {
        m_kib: 8,
        t: 1,
        p: 1,
    };

    fn check(&self) -> std::result::Result<argon2::Params, String> {
        if self.m_kib > MAX_M_KIB || self.t > MAX_T || self.p > MAX_P {
            return Err(format!(
                "Argon2id parameters m={} KiB, t={}, p={} are beyond this device's limits",
                self.m_kib, self.t, self.p
            ));
        }
        argon2::Params::new(self.m_kib, self.t, self.p, Some(32))
            .map_err(|e| format!("Argon2id parameters are invalid: {e}"))
    }
}

impl Default for KdfParams {
    fn default() -> Self {
        KdfParams::DEFAULT
    }
}

fn key_path(dir: &Path) -> PathBuf {
    dir.join(KEY_FILE)
}

fn failures_path(dir: &Path) -> PathBuf {
    dir.join(FAILURES_FILE)
}

fn random<const N: usize>() -> Result<[u8; N]> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| Error::Rng(e.to_string()))?;
    Ok(b)
}

/// Whether `dir` has a key file (the data directory is encrypted).
pub fn is_initialized(vfs: &dyn Vfs, dir: &Path) -> bool {
    matches!(vfs.kind(&key_path(dir)), Ok(Some(Kind::File)))
}

/// Argon2id of `passphrase` and `salt` under `params`.
fn wrapping_key(
    passphrase: &[u8],
    salt: &[u8],
    params: &KdfParams,
) -> std::result::Result<Zeroizing<[u8; 32]>, String> {
    let p = params.check()?;
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, p);
    let mut out = Zeroizing::new([0u8; 32]);
    a.hash_password_into(passphrase, salt, &mut out[..])
        .map_err(|e| format!("Argon2id failed: {e}"))?;
    Ok(out)
}

/// Wrap `key` under `passphrase`: the key file's bytes.
fn wrap(key: &MasterKey, passphrase: &[u8], params: &KdfParams, dir: &Path) -> Result<Vec<u8>> {
    let salt: [u8; 16] = random()?;
    let nonce: [u8; 24] = random()?;
    let mut head = Vec::with_capacity(KEY_FILE_LEN);
    head.extend_from_slice(MAGIC);
    head.extend_from_slice(&params.m_kib.to_le_bytes());
    head.extend_from_slice(&params.t.to_le_bytes());
    head.extend_from_slice(&params.p.to_le_bytes());
    head.extend_from_slice(&salt);
    head.extend_from_slice(&nonce);
    let wk = wrapping_key(passphrase, &salt, params).map_err(|reason| Error::KeyFileCorrupt {
        path: key_path(dir),
        reason,
    })?;
    let ct = XChaCha20Poly1305::new(Key::from_slice(&wk[..]))
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: &key.0[..],
                aad: &head,
            },
        )
        .map_err(|_| Error::Rng("wrapping the master key failed".into()))?;
    head.extend_from_slice(&ct);
    Ok(head)
}

/// The parsed key file.
struct KeyFile {
    params: KdfParams,
    bytes: Vec<u8>,
}

fn read_key_file(vfs: &dyn Vfs, dir: &Path) -> Result<KeyFile> {
    let path = key_path(dir);
    let bytes = vfs::read_all(vfs, &path, 4096)
        .ctx(|| format!("cannot read the key file {}", path.display()))?;
    let corrupt = |reason: &str| Error::KeyFileCorrupt {
        path: path.clone(),
        reason: reason.to_string(),
    };
    if bytes.len() != KEY_FILE_LEN || &bytes[..8] != MAGIC {
        return Err(corrupt("wrong length or marker"));
    }
    let u = |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    let params = KdfParams {
        m_kib: u(8),
        t: u(12),
        p: u(16),
    };
    params.check().map_err(|r| corrupt(&r))?;
    Ok(KeyFile { params, bytes })
}

/// Try `passphrase` on a key file: `Ok(None)` if it is the wrong one.
fn try_unwrap(kf: &KeyFile, passphrase: &[u8], dir: &Path) -> Result<Option<MasterKey>> {
    let b = &kf.bytes;
    let wk = wrapping_key(passphrase, &b[20..36], &kf.params).map_err(|reason| {
        Error::KeyFileCorrupt {
            path: key_path(dir),
            reason,
        }
    })?;
    let plain = XChaCha20Poly1305::new(Key::from_slice(&wk[..])).decrypt(
        XNonce::from_slice(&b[36..60]),
        Payload {
            msg: &b[HEADER_LEN..],
            aad: &b[..HEADER_LEN],
        },
    );
    match plain {
        Ok(p) => {
            let p = Zeroizing::new(p);
            let mut k = Zeroizing::new([0u8; 32]);
            if p.len() != 32 {
                return Ok(None);
            }
            k.copy_from_slice(&p);
            Ok(Some(MasterKey(k)))
        }
        Err(_) => Ok(None),
    }
}

/// Make a new random master key, wrap it under `passphrase` with `params`
/// and write the key file durably (tmp, fsync, rename, directory fsync),
/// with the failure count at 0. `dir` must exist and have no key file
/// ([`Error::AlreadyInitialized`]). The passphrase's strength is the
/// caller's to check ([`passphrase_strength`]): tests use weak ones.
pub fn create(
    vfs: &dyn Vfs,
    dir: &Path,
    passphrase: &[u8],
    params: &KdfParams,
) -> Result<MasterKey> {
    if is_initialized(vfs, dir) {
        return Err(Error::AlreadyInitialized {
            path: dir.to_path_buf(),
            reason: "it already has a key file".into(),
        });
    }
    let key = MasterKey(Zeroizing::new(random()?));
    let bytes = wrap(&key, passphrase, params, dir)?;
    write_failures(vfs, dir, 0)?;
    let path = key_path(dir);
    replace_durably(vfs, &path, &bytes)
        .ctx(|| format!("cannot write the key file {}", path.display()))?;
    Ok(key)
}

fn write_failures(vfs: &dyn Vfs, dir: &Path, n: u32) -> Result<()> {
    let path = failures_path(dir);
    replace_durably(vfs, &path, format!("{n}\n").as_bytes())
        .ctx(|| format!("cannot write the failure counter {}", path.display()))
}

/// Wrong passphrases in a row so far (0 if there is no counter file). It
/// survives restarts; the caller waits longer the higher it is.
pub fn failures(vfs: &dyn Vfs, dir: &Path) -> Result<u32> {
    let path = failures_path(dir);
    if vfs
        .kind(&path)
        .ctx(|| format!("cannot stat {}", path.display()))?
        .is_none()
    {
        return Ok(0);
    }
    let bytes = vfs::read_all(vfs, &path, 64)
        .ctx(|| format!("cannot read the failure counter {}", path.display()))?;
    // A damaged counter counts as many failures as can be: it must never
    // read as fewer than were made.
    Ok(std::str::from_utf8(&bytes)
        .ok()
        .and_then(|t| t.trim().parse::<u32>().ok())
        .unwrap_or(u32::MAX))
}

/// Unlock: count the try durably, then check the passphrase.
///
/// * The failure count goes up by one and is synced *before* Argon2id
///   runs; a right passphrase sets it back to 0.
/// * A wrong one: [`Error::WrongPassphrase`] with the count and how many
///   tries are left; at `max_failures` (0 is taken as 1) the key file is
///   shredded and the answer is [`Error::KeyDestroyed`] (also on every
///   later try).
pub fn unlock(
    vfs: &dyn Vfs,
    dir: &Path,
    passphrase: &[u8],
    max_failures: u32,
) -> Result<MasterKey> {
    let max = max_failures.max(1);
    let kp = key_path(dir);
    let present = vfs
        .kind(&kp)
        .ctx(|| format!("cannot stat {}", kp.display()))?
        == Some(Kind::File);
    if !present {
        if vfs
            .kind(&failures_path(dir))
            .ctx(|| format!("cannot stat {}", dir.display()))?
            .is_some()
        {
            return Err(Error::KeyDestroyed);
        }
        return Err(Error::NotEncrypted(dir.to_path_buf()));
    }
    let kf = read_key_file(vfs, dir)?;
    let before = failures(vfs, dir)?;
    if before >= max {
        // A crash between counting the last try and the shred.
        destroy_key(vfs, dir)?;
        return Err(Error::KeyDestroyed);
    }
    let now = before + 1;
    write_failures(vfs, dir, now)?;
    match try_unwrap(&kf, passphrase, dir)? {
        Some(key) => {
            write_failures(vfs, dir, 0)?;
            Ok(key)
        }
        None if now >= max => {
            destroy_key(vfs, dir)?;
            Err(Error::KeyDestroyed)
        }
        None => Err(Error::WrongPassphrase {
            failures: now,
            left: max - now,
        }),
    }
}

/// Re-wrap the master key under `new` (checking `old` first, which counts
/// as an unlock try like [`unlock`] with [`DEFAULT_MAX_FAILURES`]). The
/// pads and blobs stay as they are: they are encrypted under the master
/// key, which does not change. The new key file replaces the old one
/// durably, so a crash leaves the old passphrase or the new one working.
pub fn change_passphrase(
    vfs: &dyn Vfs,
    dir: &Path,
    old: &[u8],
    new: &[u8],
    params: &KdfParams,
) -> Result<()> {
    let key = unlock(vfs, dir, old, DEFAULT_MAX_FAILURES)?;
    let bytes = wrap(&key, new, params, dir)?;
    let path = key_path(dir);
    replace_durably(vfs, &path, &bytes)
        .ctx(|| format!("cannot write the key file {}", path.display()))
}

/// Shred the key file (overwrite, sync, delete, directory sync). The
/// failure counter stays, so a later unlock says the key was destroyed.
/// Without the key file nothing encrypted here can be read again.
pub fn destroy_key(vfs: &dyn Vfs, dir: &Path) -> Result<()> {
    if is_initialized(vfs, dir) {
        shred(vfs, &key_path(dir), &mut |_, _| {})?;
    }
    let path = failures_path(dir);
    if vfs
        .kind(&path)
        .ctx(|| format!("cannot stat {}", path.display()))?
        .is_none()
    {
        write_failures(vfs, dir, u32::MAX)?;
    }
    Ok(())
}

/// Wipe the device's data: shred the key file first (that alone makes
/// everything unreadable), then every other file under `dir` (pads,
/// records, used-pad marks, the marker, settings, the audit log, the
/// failure counter), and remove the subdirectories, leaving `dir` empty.
/// Symbolic links are removed, never followed.
///
/// After a wipe the device no longer knows which pads it held: an export
/// of a pad made before the wipe, imported again, would reuse pad bytes
/// already sent. Destroy such exports (the wipe warning says so).
pub fn wipe(vfs: &dyn Vfs, dir: &Path) -> Result<()> {
    if is_initialized(vfs, dir) {
        shred(vfs, &key_path(dir), &mut |_, _| {})?;
    }
    wipe_below(vfs, dir)
}

fn wipe_below(vfs: &dyn Vfs, dir: &Path) -> Result<()> {
    let names = vfs
        .read_dir(dir)
        .ctx(|| format!("cannot read {}", dir.display()))?;
    for name in names {
        let p = dir.join(name);
        match vfs
            .kind(&p)
            .ctx(|| format!("cannot stat {}", p.display()))?
        {
            Some(Kind::File) => shred(vfs, &p, &mut |_, _| {})?,
            Some(Kind::Dir) => {
                wipe_below(vfs, &p)?;
                vfs.remove_dir(&p)
                    .ctx(|| format!("cannot remove {}", p.display()))?;
                vfs.sync_dir(dir)
                    .ctx(|| format!("cannot sync directory {}", dir.display()))?;
            }
            Some(Kind::Other) => {
                vfs.remove_file(&p)
                    .ctx(|| format!("cannot remove {}", p.display()))?;
                vfs.sync_dir(dir)
                    .ctx(|| format!("cannot sync directory {}", dir.display()))?;
            }
            None => {}
        }
    }
    Ok(())
}

/// A passphrase's estimated strength; `refused` says why in plain words
/// when it is too weak to use.
#[derive(Clone, Debug, PartialEq)]
pub struct Strength {
    pub bits: f64,
    pub refused: Option<String>,
}

/// The least estimated strength a passphrase must have.
///
/// Why 50 bits: a thief with a copy of the card guesses offline. One
/// guess costs an Argon2id evaluation with 64 MiB of memory; even at a
/// generous 10^5 guesses a second on rented hardware, 2^50 guesses take
/// about 350 years (half of that on average). Four random words from a
/// 7776-word list (about 52 bits) pass; a single word with digits does
/// not.
pub const MIN_BITS: f64 = 50.0;
/// The shortest passphrase accepted, whatever its estimate.
pub const MIN_CHARS: usize = 10;

/// A few of the most common passwords and phrases: any passphrase that is
/// one of these (ignoring case, digits and punctuation) is refused.
const COMMON: &[&str] = &[
    "password",
    "passphrase",
    "passwort",
    "qwerty",
    "qwertyuiop",
    "asdfghjkl",
    "letmein",
    "iloveyou",
    "welcome",
    "admin",
    "administrator",
    "monkey",
    "dragon",
    "football",
    "baseball",
    "sunshine",
    "princess",
    "trustno",
    "abc",
    "abcdef",
    "secret",
    "changeme",
    "onetimechat",
    "otcdevice",
    "correcthorsebatterystaple",
];

/// Our own estimate of a passphrase's strength (no dictionary beyond a
/// short list of the most common passwords). The rule:
///
/// * the passphrase is cut into runs: letters, digits, and single other
///   characters (spaces, punctuation, anything else);
/// * a letter run is taken as a word from a dictionary: about 13 bits
///   (a 7776-word list), or 4.7 bits a letter if it is shorter than
///   3 letters; capital letters inside it (not the first) add 1 bit each;
///   a capital first letter adds 1 bit;
/// * a digit run costs 3.3 bits a digit, but a run that is a repeat or a
///   sequence (`1111`, `1234`, `9876`) costs 3.3 bits in all;
/// * a space, `-`, `_` or `.` between words costs 1 bit (it is the usual
///   separator); any other character 5 bits, 7 if not ASCII;
/// * a run seen before (ignoring case) costs 1 bit;
/// * refused outright: fewer than [`MIN_CHARS`] characters, or one of a
///   short list of the most common passwords (ignoring case, digits and
///   punctuation); otherwise refused below [`MIN_BITS`].
///
/// So random letters count far less than they are worth (a word of 12
/// random letters is 13 bits here): the rule is meant to be cautious, and
/// its advice (a few random words, or mixed characters) passes easily.
pub fn passphrase_strength(p: &str) -> Strength {
    let chars: Vec<char> = p.chars().collect();
    let mut bits = 0.0f64;
    let mut seen: Vec<String> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let mut j = i + 1;
        let cost;
        if c.is_ascii_alphabetic() {
            while j < chars.len() && chars[j].is_ascii_alphabetic() {
                j += 1;
            }
            let run = &chars[i..j];
            let n = run.len() as f64;
            let base = if run.len() < 3 { 4.7 * n } else { 13.0 };
            let caps_inside = run[1..].iter().filter(|c| c.is_ascii_uppercase()).count() as f64;
            let cap_first = if run[0].is_ascii_uppercase() {
                1.0
            } else {
                0.0
            };
            cost = base + caps_inside + cap_first;
        } else if c.is_ascii_digit() {
            while j < chars.len() && chars[j].is_ascii_digit() {
                j += 1;
            }
            let run: Vec<i32> = chars[i..j].iter().map(|c| *c as i32 - '0' as i32).collect();
            let step_same = |d: i32| run.windows(2).all(|w| w[1] - w[0] == d);
            cost = if run.len() > 1 && (step_same(0) || step_same(1) || step_same(-1)) {
                3.3
            } else {
                3.3 * run.len() as f64
            };
        } else if matches!(c, ' ' | '-' | '_' | '.') {
            cost = 1.0;
        } else if c.is_ascii() {
            cost = 5.0;
        } else {
            cost = 7.0;
        }
        let token: String = chars[i..j].iter().collect::<String>().to_lowercase();
        if token.chars().count() > 1 && seen.contains(&token) {
            bits += 1.0;
        } else {
            bits += cost;
            seen.push(token);
        }
        i = j;
    }
    let letters: String = p
        .chars()
        .filter(|c| c.is_alphabetic())
        .collect::<String>()
        .to_lowercase();
    let refused = if chars.len() < MIN_CHARS {
        Some(format!(
            "it has {} characters; use at least {MIN_CHARS}. A few random words are easiest to type and remember",
            chars.len()
        ))
    } else if !letters.is_empty() && COMMON.contains(&letters.as_str()) {
        Some("it is one of the most common passwords, the first a thief tries".to_string())
    } else if bits < MIN_BITS {
        Some(format!(
            "it is estimated at {bits:.0} bits, and at least {MIN_BITS:.0} are needed. Add more random words (four or more), or digits and punctuation between them"
        ))
    } else {
        None
    };
    Strength { bits, refused }
}

impl MasterKey {
    fn derive(&self, info: &[u8]) -> Zeroizing<[u8; 32]> {
        let hk = Hkdf::<Sha256>::new(None, &self.0[..]);
        let mut k = Zeroizing::new([0u8; 32]);
        // 32 bytes is far below HKDF-SHA256's limit: this cannot fail.
        let _ = hk.expand(info, &mut k[..]);
        k
    }

    /// Seal a small whole-file secret (settings, read positions, a contact
    /// record): AEAD under a key derived from the master key, a fresh
    /// random nonce on every call, `purpose` as associated data.
    pub fn seal_blob(&self, purpose: &str, plain: &[u8]) -> Vec<u8> {
        let key = self.derive(b"otc-device blob v1");
        // getrandom failing means no random numbers at all: the device
        // cannot work. A nonce from a counter-free fallback would risk
        // reuse, so the process stops rather than seal with a weak nonce.
        let mut nonce = [0u8; 24];
        if let Err(e) = getrandom::fill(&mut nonce) {
            panic!("the kernel random number generator failed: {e}");
        }
        let ct = XChaCha20Poly1305::new(Key::from_slice(&key[..])).encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plain,
                aad: purpose.as_bytes(),
            },
        );
        let mut out = Vec::with_capacity(BLOB_OVERHEAD + plain.len());
        out.extend_from_slice(BLOB_MAGIC);
        out.extend_from_slice(&nonce);
        // Encryption fails only for messages longer than 256 GiB.
        out.extend_from_slice(&ct.unwrap_or_default());
        out
    }

    /// Open a blob [`MasterKey::seal_blob`] made for `purpose`. A damaged
    /// blob, one for another purpose or under another key is
    /// [`Error::CorruptMeta`].
    pub fn open_blob(&self, purpose: &str, sealed: &[u8]) -> Result<Vec<u8>> {
        let bad = |reason: &str| Error::CorruptMeta {
            what: purpose.to_string(),
            reason: reason.to_string(),
        };
        if sealed.len() < BLOB_OVERHEAD || &sealed[..5] != BLOB_MAGIC {
            return Err(bad("not an encrypted file of this device"));
        }
        let key = self.derive(b"otc-device blob v1");
        XChaCha20Poly1305::new(Key::from_slice(&key[..]))
            .decrypt(
                XNonce::from_slice(&sealed[5..29]),
                Payload {
                    msg: &sealed[29..],
                    aad: purpose.as_bytes(),
                },
            )
            .map_err(|_| {
                bad("it does not decrypt under this device's key (damaged, or another device's)")
            })
    }

    /// The key for the audit log's lines and head (HKDF label
    /// `otc-device audit v1`, a key of its own: a line can never be opened
    /// as a blob of the store, nor a blob as a line).
    pub fn record_cipher(&self) -> RecordCipher {
        RecordCipher(self.derive(b"otc-device audit v1"))
    }

    /// The keystream for a pad file whose random salt is `salt` (kept in
    /// the contact's sealed record).
    pub fn pad_cipher(&self, salt: &[u8; 16]) -> PadCipher {
        let mut info = b"otc-device pad v1 ".to_vec();
        info.extend_from_slice(salt);
        PadCipher(self.derive(&info))
    }

    /// A name for `what` (a contact name, a pad id) that hides it: hex of
    /// HKDF-SHA256 of the master key (a keyed PRF), 32 digits.
    /// Used for file names in an encrypted data directory.
    pub fn hide_name(&self, kind: &str, what: &str) -> String {
        // HKDF-Expand is HMAC-SHA256 under the pseudorandom key with the
        // info: a keyed PRF of (kind, what).
        let hk = Hkdf::<Sha256>::new(None, &self.0[..]);
        let mut info = b"otc-device names v1 ".to_vec();
        info.extend_from_slice(kind.as_bytes());
        info.push(0);
        info.extend_from_slice(what.as_bytes());
        let mut out = [0u8; 16];
        let _ = hk.expand(&info, &mut out);
        hex::encode(out)
    }
}

/// ChaCha20 under one pad's key, addressed by byte offset.
///
/// The key is HKDF-SHA256 of the master key with info `otc-device pad v1
/// ` and a 16-byte random salt made when the pad file is created and kept
/// in the contact's (sealed) record. Not the pad id, as first planned: the
/// pad id is the SHA-256 of the pad's bytes, known only once all of them
/// are written, and a random salt gives a fresh keystream even if the same
/// pad were ever stored twice. Every pad byte is written once (when the
/// pad is made or imported); erasing writes raw zeros to the ciphertext,
/// so no keystream byte ever encrypts two plaintexts.
///
/// ChaCha20 (RFC 8439) counts 64-byte blocks with a 32-bit counter, 256
/// GiB per nonce; pads may be larger (48-bit indices), so the byte offset
/// picks the nonce too: block `b = offset / 64` uses nonce `b >> 32`
/// (little-endian in the nonce's first 8 bytes) and counter `b & 0xffffffff`.
pub struct PadCipher(Zeroizing<[u8; 32]>);

const SEGMENT: u64 = 1 << 38; // 2^32 blocks of 64 bytes

impl PadCipher {
    /// XOR the keystream at byte `offset` into `buf` (encrypts and
    /// decrypts alike).
    pub fn apply(&self, offset: u64, buf: &mut [u8]) {
        let mut off = offset;
        let mut rest = buf;
        while !rest.is_empty() {
            let seg = off / SEGMENT;
            let within = off % SEGMENT;
            let n = ((SEGMENT - within) as usize).min(rest.len());
            let mut nonce = [0u8; 12];
            nonce[..8].copy_from_slice(&seg.to_le_bytes());
            let mut c = chacha20::ChaCha20::new(
                chacha20::Key::from_slice(&self.0[..]),
                chacha20::Nonce::from_slice(&nonce),
            );
            c.seek(within);
            let (now, later) = rest.split_at_mut(n);
            c.apply_keystream(now);
            rest = later;
            off += n as u64;
        }
    }
}

/// XChaCha20-Poly1305 for small records that are written one by one (the
/// audit log's lines and its head): each is sealed on its own, with a fresh
/// random 24-byte nonce, as `nonce || ciphertext || tag`
/// ([`RecordCipher::OVERHEAD`] bytes more than the plaintext, so a record
/// of fixed width seals to a fixed width). `purpose` is the associated
/// data, so a record for one file does not open as one of another.
pub struct RecordCipher(Zeroizing<[u8; 32]>);

impl RecordCipher {
    /// Bytes a sealed record adds to its plaintext.
    pub const OVERHEAD: usize = 24 + 16;

    /// Seal one record.
    pub fn seal(&self, purpose: &str, plain: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; 24];
        // As in `seal_blob`: no randomness at all means no safe nonce.
        if let Err(e) = getrandom::fill(&mut nonce) {
            panic!("the kernel random number generator failed: {e}");
        }
        let ct = XChaCha20Poly1305::new(Key::from_slice(&self.0[..])).encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plain,
                aad: purpose.as_bytes(),
            },
        );
        let mut out = Vec::with_capacity(Self::OVERHEAD + plain.len());
        out.extend_from_slice(&nonce);
        // Encryption fails only for messages longer than 256 GiB.
        out.extend_from_slice(&ct.unwrap_or_default());
        out
    }

    /// Open a record [`RecordCipher::seal`] made for `purpose`; `None` if
    /// it is damaged, too short, for another purpose or under another key.
    pub fn open(&self, purpose: &str, sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        if sealed.len() < Self::OVERHEAD {
            return None;
        }
        XChaCha20Poly1305::new(Key::from_slice(&self.0[..]))
            .decrypt(
                XNonce::from_slice(&sealed[..24]),
                Payload {
                    msg: &sealed[24..],
                    aad: purpose.as_bytes(),
                },
            )
            .ok()
            .map(Zeroizing::new)
    }
}

impl std::fmt::Debug for RecordCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecordCipher(..)")
    }
}

impl std::fmt::Debug for PadCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PadCipher(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vfs::SimFs;

    fn fresh() -> (SimFs, PathBuf) {
        let fs = SimFs::new();
        let dir = PathBuf::from("/d");
        fs.create_dir(&dir).unwrap();
        fs.sync_dir(Path::new("/")).unwrap();
        (fs, dir)
    }

    #[test]
    fn create_then_unlock_gives_the_same_key_and_debug_hides_it() {
        let (fs, dir) = fresh();
        assert!(!is_initialized(&fs, &dir));
        let k = create(&fs, &dir, b"right horse", &KdfParams::TEST).unwrap();
        assert!(is_initialized(&fs, &dir));
        let k2 = unlock(&fs, &dir, b"right horse", 10).unwrap();
        assert_eq!(*k.0, *k2.0);
        assert_eq!(format!("{k:?}"), "MasterKey(..)");
        assert!(matches!(
            create(&fs, &dir, b"again", &KdfParams::TEST),
            Err(Error::AlreadyInitialized { .. })
        ));
        // The key file holds no byte run of the key.
        let file = fs.contents(&dir.join(KEY_FILE)).unwrap();
        assert_eq!(file.len(), KEY_FILE_LEN);
        assert!(!file.windows(8).any(|w| k.0.windows(8).any(|x| x == w)));
    }

    #[test]
    fn wrong_passphrases_count_durably_and_destroy_the_key_at_the_limit() {
        let (fs, dir) = fresh();
        create(&fs, &dir, b"right horse", &KdfParams::TEST).unwrap();
        for n in 1..=2u32 {
            match unlock(&fs, &dir, b"wrong", 3) {
                Err(Error::WrongPassphrase { failures, left }) => {
                    assert_eq!((failures, left), (n, 3 - n));
                }
                other => panic!("try {n}: {other:?}"),
            }
            // Durable: a power cut keeps the count.
            let after = fs.durable_copy();
            assert_eq!(failures(&after, &dir).unwrap(), n);
        }
        assert!(matches!(
            unlock(&fs, &dir, b"wrong", 3),
            Err(Error::KeyDestroyed)
        ));
        assert!(!is_initialized(&fs, &dir));
        // Even the right passphrase cannot bring it back.
        assert!(matches!(
            unlock(&fs, &dir, b"right horse", 3),
            Err(Error::KeyDestroyed)
        ));
    }

    #[test]
    fn success_resets_the_count_and_the_count_is_synced_before_the_check() {
        let (fs, dir) = fresh();
        create(&fs, &dir, b"right horse", &KdfParams::TEST).unwrap();
        let _ = unlock(&fs, &dir, b"wrong", 10);
        assert_eq!(failures(&fs, &dir).unwrap(), 1);
        unlock(&fs, &dir, b"right horse", 10).unwrap();
        assert_eq!(failures(&fs, &dir).unwrap(), 0);
        // Pull the power at every point of an unlock with the right
        // passphrase: a returned key means the reset is durable; and
        // some runs die after the check passed but before the reset, with
        // the try counted (the count was durable before the check).
        let mut counted_then_died = 0;
        for die in 0..40 {
            let fs2 = fresh_copy(&fs);
            fs2.die_after(die);
            let res = unlock(&fs2, &dir, b"right horse", 10);
            let n = failures(&fresh_copy(&fs2), &dir).unwrap();
            match res {
                Ok(_) => assert_eq!(n, 0, "die after {die}"),
                Err(e) => {
                    assert!(matches!(e, Error::Io { .. }), "die after {die}: {e:?}");
                    assert!(n <= 1, "die after {die}: count {n}");
                    counted_then_died += usize::from(n == 1);
                }
            }
            // A wrong passphrase is only ever answered after its count is
            // durable.
            let fs3 = fresh_copy(&fs);
            fs3.die_after(die);
            if let Err(Error::WrongPassphrase { failures: f, .. }) =
                unlock(&fs3, &dir, b"wrong", 10)
            {
                assert_eq!(f, 1);
                assert_eq!(failures(&fresh_copy(&fs3), &dir).unwrap(), 1);
            }
        }
        assert!(counted_then_died > 0);
    }

    /// A second file system with the same durable state.
    fn fresh_copy(fs: &SimFs) -> SimFs {
        fs.durable_copy()
    }

    #[test]
    fn change_passphrase_rewraps_the_same_key() {
        let (fs, dir) = fresh();
        let k = create(&fs, &dir, b"old phrase", &KdfParams::TEST).unwrap();
        let sealed = k.seal_blob("settings", b"x=1");
        change_passphrase(&fs, &dir, b"old phrase", b"new phrase", &KdfParams::TEST).unwrap();
        assert!(matches!(
            unlock(&fs, &dir, b"old phrase", 10),
            Err(Error::WrongPassphrase { .. })
        ));
        let k2 = unlock(&fs, &dir, b"new phrase", 10).unwrap();
        assert_eq!(k2.open_blob("settings", &sealed).unwrap(), b"x=1");
        assert!(matches!(
            change_passphrase(&fs, &dir, b"bad", b"x", &KdfParams::TEST),
            Err(Error::WrongPassphrase { .. })
        ));
    }

    #[test]
    fn a_tampered_key_file_is_refused_or_fails_like_a_wrong_passphrase() {
        let (fs, dir) = fresh();
        create(&fs, &dir, b"pass", &KdfParams::TEST).unwrap();
        let mut b = fs.contents(&dir.join(KEY_FILE)).unwrap();
        // A huge memory cost is refused before anything is allocated.
        b[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        replace_durably(&fs, &dir.join(KEY_FILE), &b).unwrap();
        assert!(matches!(
            unlock(&fs, &dir, b"pass", 10),
            Err(Error::KeyFileCorrupt { .. })
        ));
        // A changed salt: wrong passphrase.
        b[8..12].copy_from_slice(&8u32.to_le_bytes());
        b[20] ^= 1;
        replace_durably(&fs, &dir.join(KEY_FILE), &b).unwrap();
        assert!(matches!(
            unlock(&fs, &dir, b"pass", 10),
            Err(Error::WrongPassphrase { .. })
        ));
    }

    #[test]
    fn blobs_open_only_for_their_purpose_and_key_with_fresh_nonces() {
        let (fs, dir) = fresh();
        let k = create(&fs, &dir, b"p", &KdfParams::TEST).unwrap();
        let a = k.seal_blob("cursors", b"secret cursor");
        let b = k.seal_blob("cursors", b"secret cursor");
        assert_ne!(a, b);
        assert!(!a.windows(6).any(|w| w == b"secret"));
        assert_eq!(k.open_blob("cursors", &a).unwrap(), b"secret cursor");
        assert!(k.open_blob("contact", &a).is_err());
        let (fs2, dir2) = fresh();
        let other = create(&fs2, &dir2, b"p", &KdfParams::TEST).unwrap();
        assert!(other.open_blob("cursors", &a).is_err());
        let mut bad = a.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(k.open_blob("cursors", &bad).is_err());
    }

    #[test]
    fn wipe_leaves_the_directory_empty() {
        let (fs, dir) = fresh();
        create(&fs, &dir, b"p", &KdfParams::TEST).unwrap();
        fs.create_dir(&dir.join("pads")).unwrap();
        replace_durably(&fs, &dir.join("pads/x.pad"), b"pad bytes").unwrap();
        replace_durably(&fs, &dir.join("audit.log"), b"log").unwrap();
        wipe(&fs, &dir).unwrap();
        assert!(fs.read_dir(&dir).unwrap().is_empty());
        let after = fs.durable_copy();
        assert!(after.read_dir(&dir).unwrap().is_empty());
    }

    #[test]
    fn the_pad_cipher_is_addressable_by_offset_across_segments() {
        let (fs, dir) = fresh();
        let k = create(&fs, &dir, b"p", &KdfParams::TEST).unwrap();
        let c = k.pad_cipher(&[7; 16]);
        for base in [0u64, 1000, SEGMENT - 40, (1 << 47) + 3] {
            let mut whole = [0u8; 100];
            c.apply(base, &mut whole);
            let mut part = [0u8; 60];
            c.apply(base + 40, &mut part);
            assert_eq!(whole[40..], part[..], "at {base}");
            assert!(whole.iter().any(|b| *b != 0));
        }
        // Both sides of a segment boundary differ (a fresh nonce).
        let mut a = [0u8; 64];
        let mut b = [0u8; 64];
        c.apply(0, &mut a);
        c.apply(SEGMENT, &mut b);
        assert_ne!(a, b);
        // Another salt, another keystream.
        let mut d = [0u8; 64];
        k.pad_cipher(&[8; 16]).apply(0, &mut d);
        assert_ne!(a, d);
    }

    #[test]
    fn strength_refuses_short_common_and_weak_and_accepts_words() {
        for (p, why) in [
            ("Tr0ub4dor&3", "bits"),
            ("short", "characters"),
            ("Password123!", "common"),
            ("aaaaaaaaaaaaaaaaaaaa", "bits"),
            ("1234567890123", "bits"),
            ("correct horse battery staple", "common"),
        ] {
            let s = passphrase_strength(p);
            let r = s
                .refused
                .unwrap_or_else(|| panic!("{p} accepted at {}", s.bits));
            assert!(r.contains(why), "{p}: {r}");
        }
        for p in [
            "violin orbit carpet lemon glacier",
            "Kx7!mQ2#vL9@",
            "tulip 4817 Gravel sonar",
        ] {
            let s = passphrase_strength(p);
            assert!(s.refused.is_none(), "{p}: {:?} at {}", s.refused, s.bits);
            assert!(s.bits >= MIN_BITS);
        }
    }
}
