//! The pad store's error type.
//!
//! Every variant has a stable machine code ([`Error::code`]) that the
//! device's command line prints (`error[bad_tag]: ...`) and tests match on,
//! and a message that tells a person what to do next. Errors never carry
//! pad bytes, keys or plaintext.
//!
//! # How the error type is split (decided for issue 16)
//!
//! The store's variants (contacts, sending, receiving, the data directory,
//! pad creation, import and export, I/O, wire format) live here, in
//! [`Error`]. otc-device's `Error` keeps only the appliance's own
//! (`otc.toml`, owner, network, audit log, screen, build features, and
//! I/O on its own files) and wraps this one as `Error::Pad`, with
//! `#[error(transparent)]` and `#[from]`: `?` converts, the message is
//! this one's, and otc-device's `code()` and RPC mapping hand a wrapped
//! error to [`Error::code`] and to the mapping below, so every code is
//! what it was before the split.
//!
//! The RPC endpoint does not hand these codes to clients: it sends the
//! coarser [`ErrorCode`] of otc-proto, through the mapping
//! `impl From<&Error> for ErrorCode` below (otc-device's own variants are
//! all `internal`). Every reason a package fails to open (`bad_tag`,
//! `out_of_region`, ...) is `bad_package` there, so an untrusted client
//! learns nothing about why, except a replay, which is `replayed` (the
//! laptop already knows which ranges were opened; see
//! `ErrorCode::Replayed`); anything else that is not the client's to fix
//! is `internal`. The mapping lives next to the variants, so a new
//! variant does not compile without a decision about what a client is
//! told.

use otc_proto::rpc::ErrorCode;
use std::path::PathBuf;
use thiserror::Error;

/// Result with the store's error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the pad store.
#[derive(Debug, Error)]
pub enum Error {
    // ---- contacts -------------------------------------------------------
    /// No pad is stored for this contact.
    #[error("no pad for contact {0:?}; see `otc-device pad list` for the contacts you have")]
    UnknownContact(String),

    /// A pad for this contact name already exists.
    #[error(
        "contact {0:?} already has a pad; pick another name or remove the old pad first with `otc-device pad remove {0}`"
    )]
    ContactExists(String),

    /// This data directory held or made this pad before (it was removed,
    /// or it is our own export coming back): importing it again would send
    /// with pad bytes already used.
    #[error(
        "this pad (id {pad_id}) was held or made by this device before; importing it again would reuse pad bytes, so it is refused. Make a new pad with `otc-device pad new`"
    )]
    PadUsedBefore { pad_id: String },

    /// The same pad (same fingerprint) is already stored under another name.
    #[error(
        "this pad is already stored for contact {existing:?}; a pad may be used by one contact only"
    )]
    PadAlreadyStored { existing: String },

    /// Contact names are short, printable and without path characters.
    #[error(
        "invalid contact name {0:?}: use 1 to 64 letters, digits, '.', '_', '-' or '@', not starting with '.'"
    )]
    BadContactName(String),

    /// The contact's pad file is gone from the data directory.
    #[error(
        "the pad file for {contact:?} is missing from the data directory, so this pad cannot be used; remove the contact with `otc-device pad remove {contact}`"
    )]
    PadFileMissing { contact: String },

    /// The contact's pad file does not match its record (truncated, too
    /// long): found at start. The pad is never used or written.
    #[error(
        "the pad file for {contact:?} does not match its record ({reason}), so this pad cannot be used and is left untouched; if you cannot put the right file back, remove the contact with `otc-device pad remove {contact}` and make a new pad"
    )]
    PadDamaged { contact: String, reason: String },

    // ---- sending --------------------------------------------------------
    /// Our send region is used up (not even an empty message fits).
    #[error(
        "the pad for {contact:?} is used up for sending ({left} bytes left); make a new pad with `otc-device pad new`"
    )]
    PadExhausted { contact: String, left: u64 },

    /// The message needs more pad than is left.
    #[error(
        "this message needs {need} pad bytes but only {left} are left for {contact:?}; send a shorter message or make a new pad"
    )]
    TooLarge {
        contact: String,
        need: u64,
        left: u64,
    },

    /// A v3 pad one of whose sides has a hash key `r` that is zero after
    /// Poly1305's clamp: every tag would equal the slot's mask, so anyone
    /// could forge. Refused when the pad is made or imported.
    #[error(
        "this pad's hash key for side {side} is zero after clamping, so anyone could forge packages with it; it was refused and nothing was kept for {contact:?}. Make a new pad with `otc-device pad new`"
    )]
    WeakKey {
        contact: String,
        side: crate::meta::Side,
    },
    /// Format v2 (a pad, an export file or a record naming it).
    #[error(
        "{what} uses package format v2, which is withdrawn because a relay that knows one message can forge another; it cannot be used. Make a new pad with `otc-device pad new` (format v3), and {remedy}"
    )]
    FormatWithdrawn { what: String, remedy: String },
    // ---- encryption at rest (vault.rs) ----------------------------------
    /// The passphrase did not unwrap the master key.
    #[error(
        "wrong passphrase ({failures} failed in a row; {left} more and the key is destroyed, which makes every pad on this device unreadable for good)"
    )]
    WrongPassphrase { failures: u32, left: u32 },

    /// Too many wrong passphrases: the key file was shredded.
    #[error(
        "too many wrong passphrases: the device key was destroyed, so nothing on this data directory can be read any more. Wipe the device and set it up again; make new pads with your contacts"
    )]
    KeyDestroyed,

    /// The data directory is encrypted and no master key was given.
    #[error(
        "{0} is encrypted: unlock it with the passphrase first (`--passphrase-file PATH`, `-` for standard input)"
    )]
    PassphraseNeeded(PathBuf),

    /// A master key was given for a data directory that has no key file.
    #[error(
        "{0} is not an encrypted data directory (it has no key file), so a passphrase cannot be used with it; make an encrypted one with `otc-device --data DIR init`"
    )]
    NotEncrypted(PathBuf),

    /// `init` (or `vault::create`) on a directory that already has a key
    /// file or already holds data.
    #[error("{path} cannot be set up as a new encrypted data directory: {reason}")]
    AlreadyInitialized { path: PathBuf, reason: String },

    /// A passphrase the strength rule refuses.
    #[error("this passphrase is too weak: {0}")]
    WeakPassphrase(String),

    /// The key file is damaged or of an unknown format.
    #[error(
        "the key file {path} is damaged or of an unknown format ({reason}); without it nothing here can be read. Wipe the device and set it up again"
    )]
    KeyFileCorrupt { path: PathBuf, reason: String },

    // ---- receiving ------------------------------------------------------
    /// The package is malformed (too short, wrong marker, ...).
    #[error("not a valid package for this contact's pad format ({format}): {reason}")]
    BadPackage { format: String, reason: String },

    /// The package claims pad bytes outside the sender's region.
    #[error(
        "the package claims pad bytes {lo}..{hi}, outside the sender's region {region_lo}..{region_hi}; it was not made with this pad, nothing was used"
    )]
    OutOfRegion {
        lo: u64,
        hi: u64,
        region_lo: u64,
        region_hi: u64,
    },

    /// The package uses pad bytes that were already used to open a message.
    #[error(
        "replay: the pad bytes at index {index} were already used to open a message and have been erased; this package cannot be opened again"
    )]
    Replay { index: u64 },

    /// The package failed authentication (forged, corrupted or wrong pad).
    /// Code `bad_tag` on the command line; RPC clients get `bad_package`
    /// like every other opening failure. Nothing was used: the genuine package for these pad bytes still opens.
    #[error(
        "the package failed authentication; nothing was released and no pad was used. It is forged, damaged or not for this pad"
    )]
    VerifyFailed {},

    /// The range was burned after too many failed verifications (by an
    /// earlier version; the store no longer burns).
    #[error(
        "the pad bytes at index {index} were burned after {limit} failed verifications; ask the sender to send the message again"
    )]
    RangeBurned { index: u64, limit: u32 },

    // ---- data directory -------------------------------------------------
    /// The directory is not empty and was not made by otc-device.
    #[error(
        "{0} is not an otc-device data directory (it is not empty and has no otc-device marker); point --data at an empty or new directory"
    )]
    NotOurs(PathBuf),

    /// A data directory of the old layout 1 (metadata in sled).
    #[error(
        "{0} is an otc-device data directory of layout 1 (metadata in meta.sled), which this version does not read; no release used it. Destroy its pads with the build that made it (`otc-device pad remove`), or move the directory away and start with an empty one"
    )]
    OldLayout(PathBuf),

    /// Another process holds the data directory.
    #[error("{0} is in use by another otc-device process; stop it first")]
    Locked(PathBuf),

    /// A metadata record is damaged or from an unknown version.
    #[error("the metadata for {what} is damaged or from an unknown version: {reason}")]
    CorruptMeta { what: String, reason: String },

    // ---- pad creation ---------------------------------------------------
    /// A size string could not be parsed.
    #[error(
        "invalid size {0:?}: use a whole number of bytes, optionally followed by K, M, G or T (powers of 1024), e.g. 1000, 64K, 512M, 1G, 1T"
    )]
    BadSize(String),

    /// The pad size is outside what the store supports.
    #[error("a pad must be between {min} and {max} bytes, not {size}")]
    SizeOutOfRange { size: u64, min: u64, max: u64 },

    /// The split point is outside the pad.
    #[error(
        "the split {split} must be strictly between 0 and the pad size {size}, leaving each side at least 32 bytes"
    )]
    BadSplit { split: u64, size: u64 },

    /// An entropy source failed an SP 800-90B health test.
    #[error(
        "the random source {source_name} failed the SP 800-90B {test} health test after {position} bytes; nothing was kept. Check the device (is it a real hardware RNG?) and try again"
    )]
    HealthTest {
        source_name: String,
        test: &'static str,
        position: u64,
    },

    /// The --source stream ended before the pad was full.
    #[error(
        "the random source {0} ended before the pad was full; nothing was kept. Use a device such as /dev/hwrng or a file at least as large as the pad"
    )]
    SourceTooShort(String),

    /// The kernel RNG failed.
    #[error("the kernel random number generator failed: {0}")]
    Rng(String),

    // ---- import / export ------------------------------------------------
    /// The export file ended early or has extra bytes.
    #[error(
        "the pad file {path} is truncated or has the wrong length ({len} bytes, expected {expected}); nothing was imported. Copy it again from the partner's export"
    )]
    ExportTruncated {
        path: PathBuf,
        len: u64,
        expected: u64,
    },

    /// The export file is damaged or not an export file.
    #[error(
        "the pad file {path} is damaged or not an otc-device export ({reason}); nothing was imported. Copy it again from the partner's export"
    )]
    ExportCorrupt { path: PathBuf, reason: String },

    /// The legacy store does not have the size the metadata claims.
    #[error(
        "the legacy store {path} is {len} bytes but its metadata says n_bytes = {expected}; nothing was imported. Check that the store and metadata files belong together"
    )]
    LegacyWrongSize {
        path: PathBuf,
        len: u64,
        expected: u64,
    },

    /// The legacy metadata is unreadable or inconsistent.
    #[error(
        "the legacy metadata {path} is unusable: {reason}; nothing was imported. Check that it is the original tool's .metadata file"
    )]
    LegacyMetadata { path: PathBuf, reason: String },

    // ---- pairing (pad/pairing.rs) -----------------------------------------
    /// What was typed is not a pairing code.
    #[error("that is not a pairing code: {reason}. Type the code the maker's screen shows")]
    BadPairingCode { reason: String },

    /// The pairing code does not open this sealed export.
    #[error(
        "the pairing code does not open {path}: it was mistyped, belongs to another export, or the file's key fields were changed; nothing was imported. Check the code on the maker's screen and try again"
    )]
    WrongPairingCode { path: PathBuf },

    /// A plain (unsealed) export file of an earlier version.
    #[error(
        "{path} is an unsealed pad export of an earlier version, which anyone carrying it could read or change (its side byte can be flipped so both devices send with the same pad); it is refused. Destroy it, and make a new pad with `otc-device pad new --contact NAME --size SIZE --export FILE`, which seals the export with a pairing code; import that with `otc-device pad import FILE --contact NAME --code-file PATH`"
    )]
    PlainExport { path: PathBuf },

    /// A sealed export needs its pairing code.
    #[error(
        "{path} is sealed with a pairing code; give it with --code-file PATH (or --code-file - to type it on standard input)"
    )]
    CodeNeeded { path: PathBuf },

    /// The hardware random source is missing or unreadable.
    #[error(
        "no hardware random source at {path} ({reason}); nothing was made. A pad is made from the hardware RNG and the kernel RNG together: load the RNG driver (bcm2835-rng or iproc-rng200 on a Raspberry Pi, virtio-rng in QEMU) or name the source with --hwrng PATH"
    )]
    NoHardwareRng { path: PathBuf, reason: String },

    /// Making a pad was cancelled.
    #[error("making the pad was cancelled; everything half-made was erased")]
    Cancelled,

    /// This contact's pad cannot be exported.
    #[error("the pad for {contact} cannot be exported: {reason}")]
    NotExportable { contact: String, reason: String },

    /// A file the user named for output already exists.
    #[error("{0} already exists; choose another path or move the old file away first")]
    OutputExists(PathBuf),

    // ---- plumbing -------------------------------------------------------
    /// An I/O error, with what we were doing.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },

    /// A wire-format error that is not about the input package.
    #[error("package format error: {0}")]
    Proto(otc_proto::ProtoError),
}

impl Error {
    /// A stable, machine-readable code for the error kind.
    pub fn code(&self) -> &'static str {
        match self {
            Error::UnknownContact(_) => "unknown_contact",
            Error::ContactExists(_) => "contact_exists",
            Error::PadAlreadyStored { .. } => "pad_already_stored",
            Error::PadUsedBefore { .. } => "pad_used_before",
            Error::BadContactName(_) => "bad_contact_name",
            Error::PadFileMissing { .. } => "pad_file_missing",
            Error::PadDamaged { .. } => "pad_damaged",
            Error::PadExhausted { .. } => "pad_exhausted",
            Error::TooLarge { .. } => "too_large",
            Error::BadPackage { .. } => "bad_package",
            Error::OutOfRegion { .. } => "out_of_region",
            Error::Replay { .. } => "replay",
            Error::VerifyFailed { .. } => "bad_tag",
            Error::RangeBurned { .. } => "range_burned",
            Error::NotOurs(_) => "data_dir_not_ours",
            Error::OldLayout(_) => "data_dir_old_layout",
            Error::Locked(_) => "data_dir_locked",
            Error::CorruptMeta { .. } => "corrupt_metadata",
            Error::BadSize(_) => "bad_size",
            Error::SizeOutOfRange { .. } => "size_out_of_range",
            Error::BadSplit { .. } => "bad_split",
            Error::HealthTest { .. } => "health_test_failed",
            Error::SourceTooShort(_) => "source_too_short",
            Error::Rng(_) => "rng_failed",
            Error::ExportTruncated { .. } => "export_truncated",
            Error::ExportCorrupt { .. } => "export_corrupt",
            Error::LegacyWrongSize { .. } => "legacy_wrong_size",
            Error::LegacyMetadata { .. } => "legacy_metadata",
            Error::OutputExists(_) => "output_exists",
            Error::BadPairingCode { .. } => "bad_pairing_code",
            Error::WrongPairingCode { .. } => "wrong_pairing_code",
            Error::PlainExport { .. } => "plain_export",
            Error::CodeNeeded { .. } => "code_needed",
            Error::NoHardwareRng { .. } => "no_hardware_rng",
            Error::Cancelled => "cancelled",
            Error::NotExportable { .. } => "not_exportable",
            Error::Io { .. } => "io",
            Error::Proto(_) => "proto",
            Error::WeakKey { .. } => "weak_key",
            Error::FormatWithdrawn { .. } => "format_withdrawn",
            Error::WrongPassphrase { .. } => "wrong_passphrase",
            Error::KeyDestroyed => "key_destroyed",
            Error::PassphraseNeeded(_) => "passphrase_needed",
            Error::NotEncrypted(_) => "not_encrypted",
            Error::AlreadyInitialized { .. } => "already_initialized",
            Error::WeakPassphrase(_) => "weak_passphrase",
            Error::KeyFileCorrupt { .. } => "key_file_corrupt",
        }
    }

    /// Wrap an I/O error with a description of what was being done.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }
}

/// The one mapping from the store's errors to the RPC's stable codes.
impl From<&Error> for ErrorCode {
    fn from(e: &Error) -> ErrorCode {
        match e {
            Error::UnknownContact(_) | Error::BadContactName(_) => ErrorCode::UnknownContact,
            Error::PadExhausted { .. } => ErrorCode::PadExhausted,
            Error::TooLarge { .. } => ErrorCode::TooLarge,
            // Why a package did not open is never told to the client,
            // except that its range was opened before (which the laptop,
            // having handed over every package, knows already).
            Error::Replay { .. } => ErrorCode::Replayed,
            // A pad file that does not match its record: nothing can be
            // sealed or opened with it until the owner deals with it.
            Error::PadDamaged { .. } | Error::PadFileMissing { .. } => ErrorCode::DamagedPad,
            Error::BadPackage { .. }
            | Error::OutOfRegion { .. }
            | Error::VerifyFailed {}
            | Error::RangeBurned { .. } => ErrorCode::BadPackage,
            Error::ContactExists(_)
            | Error::PadUsedBefore { .. }
            | Error::PadAlreadyStored { .. }
            | Error::NotOurs(_)
            | Error::OldLayout(_)
            | Error::Locked(_)
            | Error::CorruptMeta { .. }
            | Error::BadSize(_)
            | Error::SizeOutOfRange { .. }
            | Error::BadSplit { .. }
            | Error::HealthTest { .. }
            | Error::SourceTooShort(_)
            | Error::Rng(_)
            | Error::ExportTruncated { .. }
            | Error::ExportCorrupt { .. }
            | Error::LegacyWrongSize { .. }
            | Error::LegacyMetadata { .. }
            | Error::OutputExists(_)
            | Error::BadPairingCode { .. }
            | Error::WrongPairingCode { .. }
            | Error::PlainExport { .. }
            | Error::CodeNeeded { .. }
            | Error::NoHardwareRng { .. }
            | Error::Cancelled
            | Error::NotExportable { .. }
            | Error::Io { .. }
            | Error::Proto(_)
            // Pads are made and imported on the device, never over the
            // RPC, so a weak key never reaches a client; a withdrawn (v2)
            // contact is not listed there.
            | Error::WeakKey { .. }
            | Error::FormatWithdrawn { .. }
            // The passphrase is typed on the device's own screen, never
            // sent over the RPC; a locked device answers `locked` before
            // the store is reached (otc-device's rpc.rs).
            | Error::WrongPassphrase { .. }
            | Error::KeyDestroyed
            | Error::PassphraseNeeded(_)
            | Error::NotEncrypted(_)
            | Error::AlreadyInitialized { .. }
            | Error::WeakPassphrase(_)
            | Error::KeyFileCorrupt { .. } => ErrorCode::Internal,
        }
    }
}

/// Attach context to `std::io::Result`s.
pub(crate) trait IoContext<T> {
    fn ctx<F: FnOnce() -> String>(self, what: F) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx<F: FnOnce() -> String>(self, what: F) -> Result<T> {
        self.map_err(|e| Error::io(what(), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_opening_failure_but_a_replay_is_bad_package_over_rpc() {
        let opening = [
            Error::VerifyFailed {},
            Error::OutOfRegion {
                lo: 0,
                hi: 1,
                region_lo: 2,
                region_hi: 3,
            },
            Error::BadPackage {
                format: "v2".into(),
                reason: "short".into(),
            },
            Error::RangeBurned { index: 0, limit: 5 },
        ];
        for e in &opening {
            assert_eq!(ErrorCode::from(e), ErrorCode::BadPackage, "{e}");
        }
        assert_eq!(
            ErrorCode::from(&Error::Replay { index: 3 }),
            ErrorCode::Replayed
        );
        // The command line's code for a bad tag is not what RPC sends.
        assert_eq!(Error::VerifyFailed {}.code(), "bad_tag");
    }

    #[test]
    fn client_fixable_errors_keep_their_code() {
        assert_eq!(
            ErrorCode::from(&Error::UnknownContact("x".into())),
            ErrorCode::UnknownContact
        );
        assert_eq!(
            ErrorCode::from(&Error::BadContactName("../x".into())),
            ErrorCode::UnknownContact
        );
        assert_eq!(
            ErrorCode::from(&Error::PadExhausted {
                contact: "x".into(),
                left: 0
            }),
            ErrorCode::PadExhausted
        );
        assert_eq!(
            ErrorCode::from(&Error::TooLarge {
                contact: "x".into(),
                need: 9,
                left: 1
            }),
            ErrorCode::TooLarge
        );
        assert_eq!(
            ErrorCode::from(&Error::io("reading", std::io::Error::other("disk"))),
            ErrorCode::Internal
        );
    }
}
