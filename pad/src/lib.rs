//! otc-pad, the pad store: one-time pads on disk, spent at most once,
//! erased after use, and never reused across a crash.
//!
//! A library of its own (issue 16; OpenSK keeps its storage the same way,
//! as `libraries/persistent_store`): the store, the storage seam and its
//! power-loss simulator, generation with its health tests, export and
//! import. It has no HTTP, no UI and no command line: it depends on
//! otc-proto and small crates only (`firmware/tests/architecture.rs` pins
//! that). The appliance, otc-device, uses it and re-exports it as
//! `otc_device::pad`. `README.md` next to this crate lists the store's
//! invariants and the test that guards each.
//!
//! Errors are this crate's [`Error`] (see [`error`] for how the error type
//! is split between this crate and otc-device); random bytes come through
//! the seam [`random::RandomSource`].
//!
//! # Layout of a data directory
//!
//! ```text
//! DIR/otc-device.data        marker "layout 2": makes the directory ours; also the lock
//! DIR/contacts/<name>.json   one JSON record per contact (send bounds, what was opened)
//! DIR/contacts/<name>.rx     its receipt journal: opens since the record was written
//! DIR/pads/<pad_id>.pad      pad bytes, plain file, pad_id = hex SHA-256
//! DIR/used/<pad_id>          every pad this directory ever held or made; never removed
//! ```
//!
//! A missing or empty directory is initialised; a non-empty one without the
//! marker is refused ([`crate::Error::NotOurs`]). One process at a time holds
//! the directory (an advisory lock on the marker). The directory and all in
//! it are made private (0700 directories, 0600 files) on every open, also
//! when they were made or restored with looser modes.
//!
//! # Why the metadata is in files of our own, not in sled
//!
//! Layout 1 kept the records in sled 0.34. Its `flush()` is not an fsync on
//! Linux: it calls `sync_file_range`, which makes neither the file's
//! metadata nor the card's write cache durable; the real fsync comes from
//! sled's background thread up to about 500 ms later. A sealed package
//! could leave the process while the new send bound was still only in the
//! page cache, and a power cut then brought the old bound back: the next
//! seal reused the same pad bytes (issue 7). So each contact's record is
//! now a small file, replaced by *write `<name>.json.tmp`, fsync it, rename
//! over `<name>.json`, fsync `contacts/`*: when [`PadStore::seal`] returns,
//! the bound that covers the message is on stable storage, and a crash at
//! any point leaves the old or the new record, never a torn one
//! (`*.tmp` leftovers are deleted on open). Creating, renaming or deleting
//! any file is followed by an fsync of its directory. The hot path costs two
//! fsyncs and a rename per reservation block (64 KiB by default) and per
//! opened message, which a pad device can afford.
//!
//! All file I/O of the store (records, pad files, marker, used-pad marks)
//! goes through the storage seam [`vfs::Vfs`]: the real one is `std::fs`;
//! tests use a recorder (which proves the sync precedes the first read of
//! the pad range) and a power-loss simulator (thousands of crash points, no
//! offset handed out twice; `tests/powerloss.rs`).
//!
//! **Layout 1 is refused, not migrated** ([`crate::Error::OldLayout`]): no
//! device image shipped with it, and a migration would keep sled as a
//! dependency for a directory nobody has. The error says what to do.
//!
//! # Formats: v3 (new pads), v1 (the original tool's), v2 withdrawn
//!
//! New pads are v3 (`shared/spec/package-formats.md`): each side's region
//! holds its text masks rising from its start and the 16-byte tag masks
//! `s_k` of numbered slots falling from its end, below a 16-byte hash key
//! `r` kept for the pad's life. Per contact and per side the record keeps
//! the text offset and the slot counter (our side: durable bounds
//! `reserved` and `slots_reserved`), and what was opened of the partner's
//! side: the opened slots and text ranges ([`otc_proto::v3::Received`],
//! field `rx`). A message costs `n + 16` pad bytes; the `send_left` and
//! quote figures count that way and never count `r`. A pad whose clamped
//! `r` is zero for either side is refused when made or imported
//! ([`crate::Error::WeakKey`], code `weak_key`). A v1 contact keeps the
//! original geometry (side B descending) and its range log.
//!
//! **Format v2 is withdrawn**: its key followed a text mask whose length
//! the package chose, so a relay that knew one message could forge
//! another. Nothing here makes, imports or opens it. The owner gets out
//! like this (decided for issue 22):
//! * an export file of format v2 is refused by `pad import` with a plain
//!   sentence ([`crate::Error::FormatWithdrawn`]): make a new pad;
//! * a data directory that holds a v2 contact still opens, so the rest of
//!   the device keeps working, but that contact is **withdrawn**: it is
//!   not among the usable contacts ([`PadStore::list`], `/v1/contacts`,
//!   the home screen), every use of its name is refused with that sentence,
//!   `pad list` names it on standard error with what to do, and
//!   `pad remove NAME` erases its pad the usual way (overwrite, sync,
//!   delete; the used-pad mark stays). [`PadStore::withdrawn`] lists them.
//!
//! Record layout 2 (`version: 2`) added the v3 fields; a version-1 record
//! (a v1 contact of an earlier build) reads as version 2.
//!
//! # Reusing a pad by importing it again, and backups
//!
//! `used/` holds one file per pad id this directory ever held or made
//! (written, fsync'ed and its directory fsync'ed when the contact is
//! added; `pad remove` leaves it). `pad import` of an export or legacy pad
//! whose id is there is refused ([`crate::Error::PadUsedBefore`]): a
//! removed pad imported again, or the export of a pad this device made,
//! would restart the send offsets and reuse pad.
//!
//! **A restored copy of the data directory cannot be detected.** A backup
//! (or a cloned SD card) holds old send offsets; running from it hands out pad
//! bytes the original already used. Nothing inside the directory can tell
//! the copy from the original, so: never back up or restore a data
//! directory, and destroy any copy.
//!
//! Pad files are read and written with positioned I/O (`pread`/`pwrite`)
//! only; no pad is ever loaded whole, so a 1 TB pad costs the same memory as
//! a 1 MB one. Pad bytes copied into memory live in `Zeroizing` buffers.
//!
//! # The rules it keeps
//!
//! * **Never reuse, even across a crash.** The send offset (v3: the text
//!   offset and the slot counter, both in the same record write) is a
//!   sequence cache: the durable record holds a "reserved up to" bound that
//!   moves ahead in blocks ([`StoreOptions::reserve_block`], 64 KiB by
//!   default but at most 1/256 of the send side, so a 64 KiB legacy pad
//!   loses at most 128 bytes to a crash, not its whole send side; or the
//!   message's cost if larger), written and made durable (record fsync,
//!   rename, directory fsync) *before* any byte of the new block is read. In memory the store
//!   keeps the next offset. After a crash the send offset restarts at the durable
//!   bound: at most one block is skipped, none is handed out twice. A clean
//!   [`PadStore::close`] gives the unused part of the block back.
//! * **Erase after use.** Every byte used to seal is overwritten with zeros
//!   (`pwrite`) before the package is returned. The pad file is fdatasync'ed
//!   each time the reserved bound moves, and the record then notes how far
//!   the send side is known durably erased, so at most one block of used
//!   bytes is ever not yet durably erased. On open the store zeroes and
//!   syncs everything between "erased" and "reserved" (a crash's leftover,
//!   used or merely reserved), so the work on start is one block, not the
//!   pad. Received ranges are recorded as opened (and as pending erase)
//!   first, then zeroed; pending erases are redone on open. The record of
//!   an open is a receipt in the contact's journal ([`journal`]): one
//!   fdatasync, after which the used bytes are zeroed; the zeros become
//!   durable with the pad's next sync, and until then the receipt names
//!   them, so a start after any cut erases them again.
//! * **Verify before the prompt.** [`PadStore::check_open`] runs, without
//!   side effects, every check up to the tag: for v3 the spec's checks 1
//!   to 5 (shape, bounds, slot opened before: [`crate::Error::Replay`],
//!   text overlapping an opened range, then the tag under `r` and `s_k`,
//!   the only pad bytes it reads); for v1 the range checks, replay, and
//!   the HMAC (it reads the body mask and key, never the text mask). So a
//!   forgery, a replay or junk is refused before the owner is asked, and
//!   what the prompt shows (the skipped count: v3's slot count) is about
//!   a package whose tag verified. A package whose range is not wholly
//!   inside the sender's region is [`crate::Error::OutOfRegion`].
//!   [`PadStore::open`] runs the checks again, then records the package
//!   as opened (and its pad as pending erase) durably, with one sync (a
//!   receipt, [`journal`]; every 64th open rewrites the record instead),
//!   erases it, and only then returns the message. A replay is refused from that record, never
//!   by finding erased bytes. A forged package burns nothing.
//! * **Never burn on failed verification.** Earlier versions erased a range
//!   after three failed verifications. That handed the relay a lever: three
//!   forgeries at the index of the partner's *next* message destroyed its
//!   pad, and the genuine message was then refused. Burning adds no
//!   security: a v3 forgery succeeds with probability about 2^-100 per
//!   try, and a v1 forgery means forging HMAC-SHA256 under a 128-bit
//!   one-time key.
//!   So a failed open uses nothing and records nothing
//!   ([`crate::Error::VerifyFailed`]); the store burns no range that no
//!   genuine message has passed. Limiting tries is the RPC layer's job (the
//!   per-contact lockout and rate limit). Records written by earlier
//!   versions may still list burned ranges; those stay refused.
//!
//! # Flash wear levelling: what erase-after-use does not promise
//!
//! On SD cards, eMMC and SSDs a flash translation layer maps logical blocks
//! to physical cells and remaps on every write. Overwriting a pad byte with
//! zeros through the filesystem writes the zeros *somewhere*; the old cells
//! may keep the old bytes until the controller garbage-collects them, and
//! neither the filesystem nor this program can see or force that. Journaling
//! and copy-on-write filesystems can keep old copies too. So on flash,
//! erase-after-use is **best effort**: it defeats someone who reads the
//! files, not someone who desolders the card and reads raw NAND.
//!
//! What to do about it: keep the data directory on a partition with
//! full-disk encryption (LUKS) whose key lives only on the device and is
//! destroyed when the device is wiped — then stale cells hold ciphertext
//! under a key that no longer exists. At the end of the device's life,
//! physically destroy the card. A pad that was copied to removable media
//! for the partner must be destroyed the same way.
//!
//! # Modules
//!
//! * [`store`]: the store ([`PadStore`]).
//! * [`durable`]: the one durable replace (tmp, fsync, rename, directory
//!   fsync) and the one shred, through the storage seam.
//! * [`error`]: the store's error type and its RPC mapping.
//! * [`random`]: where pad bytes come from (the kernel RNG, a seeded twin).
//! * [`meta`]: the per-contact record and pad geometry.
//! * [`generate`]: making a new pad (kernel RNG ⊕ optional source, health tests).
//! * [`health`]: SP 800-90B repetition-count and adaptive-proportion tests.
//! * [`export`]: the export file format and `pad import`.
//! * [`legacy`]: importing the original One Time Chat's pads.
//! * [`pairing`]: making a pad from the hardware RNG, the pairing code, the
//!   sealed export and import, the fingerprint.
//! * [`size`]: size strings (`64K`, `1G`, ...).
//! * [`vault`]: encryption at rest: the master key, its key file under
//!   the passphrase (Argon2id), the failure counter, sealed blobs, the pad
//!   cipher.
//! * [`vfs`]: the storage seam, its recorder and power-loss simulator.

pub mod durable;
pub mod error;
pub mod export;
pub mod fsutil;
pub mod generate;
pub mod health;
pub mod journal;
pub mod legacy;
pub mod meta;
pub mod pairing;
pub mod random;
pub mod size;
pub mod store;
pub mod vault;
pub mod vfs;

pub use error::{Error, Result};
pub use meta::{ContactMeta, Origin, Range, Side};
pub use store::{
    ContactSummary, OpenCheck, OpenWarning, Opened, PadStore, Quote, Sealed, StoreOptions,
    Withdrawn,
};
