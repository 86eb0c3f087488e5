//! The pad store: one-time pads on disk, spent at most once, erased after
//! use, and never reused across a crash.
//!
//! # Layout of a data directory
//!
//! ```text
//! DIR/otc-device.data     marker: makes the directory ours; also the lock
//! DIR/meta.sled/          sled database: one JSON record per contact
//! DIR/pads/<pad_id>.pad   pad bytes, plain file, pad_id = hex SHA-256
//! ```
//!
//! A missing or empty directory is initialised; a non-empty one without the
//! marker is refused ([`crate::Error::NotOurs`]). One process at a time holds
//! the directory (an advisory lock on the marker).
//!
//! Pad files are read and written with positioned I/O (`pread`/`pwrite`)
//! only; no pad is ever loaded whole, so a 1 TB pad costs the same memory as
//! a 1 MB one. Pad bytes copied into memory live in `Zeroizing` buffers.
//!
//! # The rules it keeps
//!
//! * **Never reuse, even across a crash.** The send cursor is a
//!   sequence cache: the durable record holds a "reserved up to" bound that
//!   moves ahead in blocks ([`StoreOptions::reserve_block`], 64 KiB by
//!   default, or the message's cost if larger), written and fsync'ed (sled
//!   flush) *before* any byte of the new block is read. In memory the store
//!   keeps the next offset. After a crash the cursor restarts at the durable
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
//!   first, then zeroed and synced; pending erases are redone on open.
//! * **Receive safely.** A package whose range is not wholly inside the
//!   sender's region is refused ([`crate::Error::OutOfRegion`]) and uses
//!   nothing. [`PadStore::check_open`] reports, without side effects,
//!   whether the range overlaps one already opened (replay) and how many
//!   bytes were skipped since the furthest opened range in the sender's
//!   direction. A range is recorded and erased only after its tag verifies,
//!   so a forged package cannot burn the real message's pad — except that
//!   after three failed verifications of the same range it is burned
//!   (erased and recorded), which stops an attacker from trying forever.
//!   A replayed range cannot be opened again: its bytes are zero. [`PadStore::open`]
//!   therefore refuses it up front with [`crate::Error::Replay`] and counts
//!   no failure (the check is by range, so this needs no pad bytes).
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
//! * [`meta`]: the per-contact record and pad geometry.
//! * [`generate`]: making a new pad (kernel RNG ⊕ optional source, health tests).
//! * [`health`]: SP 800-90B repetition-count and adaptive-proportion tests.
//! * [`export`]: the export file format and `pad import`.
//! * [`legacy`]: importing the original One Time Chat's pads.
//! * [`size`]: size strings (`64K`, `1G`, ...).

pub mod export;
pub(crate) mod fsutil;
pub mod generate;
pub mod health;
pub mod legacy;
pub mod meta;
pub mod size;
pub mod store;

pub use meta::{ContactMeta, Origin, Range, Side};
pub use store::{
    ContactInfo, OpenCheck, OpenWarning, Opened, PadStore, Quote, Sealed, StoreOptions,
};
