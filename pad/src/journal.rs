//! The receipt journal: how an open is made durable with one sync (issue
//! 16).
//!
//! Before a plaintext leaves the device, the store must durably know that
//! the package was opened (so a replay is refused from the record) and
//! which pad bytes it used (so they are erased even if the power goes right
//! after). Rewriting the contact record for that costs two dependent syncs
//! (the temporary file, then the directory after the rename), and the erase
//! a third. Instead, each open writes one fixed-size **receipt** into a
//! slot of a small preallocated file next to the record,
//! `contacts/<name>.rx`, and fdatasyncs that file: one sync, and no
//! metadata to flush since the file never changes size.
//!
//! - A receipt names the contact's pad (`pad_id`), a sequence number, and
//!   what was opened: v3's slot, text range and tag mask; v1's range.
//! - Receipt `seq` lives in slot `seq % slots`. The contact record carries
//!   `journal_seq`, the last receipt it already includes; receipts at or
//!   below it are history. The store writes receipt `seq` only while
//!   `seq - slots` is at or below the durable record's `journal_seq`, so a
//!   slot is never overwritten before the record covers it; when the ring
//!   is full, that open takes the record path instead (record rewritten
//!   durably, every pending erase done and synced: three syncs, once per
//!   `slots` opens).
//! - The used pad bytes are zeroed right after the receipt's sync, without
//!   a sync of their own: the receipt lists them (as the record's
//!   `pending_erase` does), and every start applies the receipts after the
//!   record's `journal_seq` in order and erases what they list before
//!   anything else (see `PadStore::open_with_vfs_keyed`). The next pad
//!   sync (a seal's reservation, a full ring, a clean stop) makes the
//!   zeros durable without waiting for a start.
//! - A slot is `[len: u16 LE][payload][zeros][check: 8 bytes]`, the check
//!   being the first 8 bytes of SHA-256 over length and payload. A torn
//!   slot (a cut inside its write) fails the check and is ignored: its
//!   open had not returned. Receipts apply only in unbroken sequence from
//!   the record's `journal_seq`, so nothing after a torn slot applies
//!   either (nothing can be there: the next receipt is written only after
//!   the previous one's sync returned).
//! - In an encrypted data directory the payload is sealed under the
//!   master key (purpose `receipt`) and the file's name is hidden like the
//!   record's.

use crate::durable::replace_durably;
use crate::meta::Range;
use crate::vfs::{Kind, OpenHow, VFile, Vfs};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io;
use std::path::Path;

/// Bytes per slot.
pub const SLOT_LEN: usize = 512;
/// Slots per journal by default (`StoreOptions::journal_slots`): one
/// record rewrite per this many opens.
pub const DEFAULT_SLOTS: u64 = 64;
/// The journal file's suffix in the contacts directory.
pub const SUFFIX: &str = ".rx";
/// Length prefix and check bytes around a payload.
const FRAME: usize = 2 + CHECK;
const CHECK: usize = 8;

/// One open, as the journal records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub seq: u64,
    /// The pad the open used: a receipt of another pad (a contact removed
    /// and made again under the same name) never applies.
    pub pad_id: String,
    pub opened: Opened,
}

/// What one open used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "format", rename_all = "lowercase")]
pub enum Opened {
    /// Format v3: the slot number, the text mask's range and the slot's
    /// tag mask (`s_k`).
    V3 { slot: u64, text: Range, mask: Range },
    /// Format v1: the package's whole range.
    V1 { range: Range },
}

impl Opened {
    /// The pad ranges this open used, to be erased.
    pub fn used(&self) -> Vec<Range> {
        match *self {
            Opened::V3 { text, mask, .. } => vec![text, mask],
            Opened::V1 { range } => vec![range],
        }
    }
}

/// `payload` framed into one slot, or `None` when it does not fit.
pub fn frame(payload: &[u8]) -> Option<Vec<u8>> {
    if payload.len() > SLOT_LEN - FRAME {
        return None;
    }
    let mut slot = vec![0u8; SLOT_LEN];
    let len = payload.len() as u16;
    slot[..2].copy_from_slice(&len.to_le_bytes());
    slot[2..2 + payload.len()].copy_from_slice(payload);
    let check = check_of(&slot[..2 + payload.len()]);
    slot[SLOT_LEN - CHECK..].copy_from_slice(&check);
    Some(slot)
}

/// The payload of a whole slot; `None` for an empty, torn or foreign one.
pub fn unframe(slot: &[u8]) -> Option<&[u8]> {
    if slot.len() != SLOT_LEN {
        return None;
    }
    let len = u16::from_le_bytes([slot[0], slot[1]]) as usize;
    if len == 0 || len > SLOT_LEN - FRAME {
        return None;
    }
    (check_of(&slot[..2 + len]) == slot[SLOT_LEN - CHECK..]).then(|| &slot[2..2 + len])
}

fn check_of(bytes: &[u8]) -> [u8; CHECK] {
    let d = Sha256::digest(bytes);
    let mut c = [0u8; CHECK];
    c.copy_from_slice(&d[..CHECK]);
    c
}

/// The journal at `path` with `slots` slots, opened for writing: made
/// durably (all zeros, through [`replace_durably`]) when it is missing or
/// has another size (a different slot count; its receipts were applied
/// and recorded at start, so nothing is lost).
pub fn open_for_append(v: &dyn Vfs, path: &Path, slots: u64) -> io::Result<Box<dyn VFile>> {
    let len = slots * SLOT_LEN as u64;
    if v.kind(path)? == Some(Kind::File) {
        let f = v.open(path, OpenHow::ReadWrite)?;
        if f.size()? == len {
            return Ok(f);
        }
    }
    replace_durably(v, path, &vec![0u8; len as usize])?;
    v.open(path, OpenHow::ReadWrite)
}

/// Write `slot` (from [`frame`]) for receipt `seq` and fdatasync it: when
/// this returns `Ok`, the receipt is durable.
pub fn append(file: &dyn VFile, slots: u64, seq: u64, slot: &[u8]) -> io::Result<()> {
    file.write_all_at(slot, (seq % slots) * SLOT_LEN as u64)?;
    file.sync_data()
}

/// The payloads of every whole slot in the journal at `path` (none if it
/// is missing), in slot order.
pub fn read_payloads(v: &dyn Vfs, path: &Path) -> io::Result<Vec<Vec<u8>>> {
    let f = match v.open(path, OpenHow::Read) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let size = f.size()?;
    let mut out = Vec::new();
    let mut slot = vec![0u8; SLOT_LEN];
    let mut at = 0u64;
    while at + SLOT_LEN as u64 <= size {
        f.read_exact_at(&mut slot, at)?;
        if let Some(p) = unframe(&slot) {
            out.push(p.to_vec());
        }
        at += SLOT_LEN as u64;
    }
    Ok(out)
}

/// The receipts to apply on top of a record whose `journal_seq` is
/// `after`, for pad `pad_id`: those numbered `after + 1`, `after + 2`, …
/// without a gap, in order.
pub fn in_sequence(mut found: Vec<Receipt>, pad_id: &str, after: u64) -> Vec<Receipt> {
    found.retain(|r| r.pad_id == pad_id && r.seq > after);
    found.sort_by_key(|r| r.seq);
    (after + 1..)
        .zip(found)
        .take_while(|(next, r)| r.seq == *next)
        .map(|(_, r)| r)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vfs::{SimFs, read_all};

    fn receipt(seq: u64, pad: &str) -> Receipt {
        Receipt {
            seq,
            pad_id: pad.into(),
            opened: Opened::V1 {
                range: Range {
                    lo: seq,
                    hi: seq + 1,
                },
            },
        }
    }

    #[test]
    fn a_slot_round_trips_and_a_torn_one_is_ignored() {
        let slot = frame(b"hello").unwrap();
        assert_eq!(slot.len(), SLOT_LEN);
        assert_eq!(unframe(&slot), Some(&b"hello"[..]));
        assert_eq!(unframe(&[0u8; SLOT_LEN]), None, "an empty slot");
        for at in [0, 1, 2, 6, SLOT_LEN - 1] {
            let mut torn = slot.clone();
            torn[at] ^= 1;
            assert_eq!(unframe(&torn), None, "a change at byte {at}");
        }
        // Half written: the second half still zeros.
        let mut half = slot.clone();
        half[SLOT_LEN / 2..].fill(0);
        assert_eq!(unframe(&half), None);
        assert!(frame(&[7u8; SLOT_LEN - FRAME]).is_some());
        assert!(frame(&[7u8; SLOT_LEN - FRAME + 1]).is_none());
    }

    #[test]
    fn only_an_unbroken_sequence_of_this_pad_applies() {
        let found = vec![
            receipt(5, "p"),
            receipt(3, "p"),
            receipt(4, "other"),
            receipt(2, "p"),
            receipt(1, "p"),
        ];
        let seqs: Vec<u64> = in_sequence(found.clone(), "p", 1)
            .iter()
            .map(|r| r.seq)
            .collect();
        // 4 is another pad's: 5 does not apply after the gap.
        assert_eq!(seqs, vec![2, 3]);
        assert!(in_sequence(found, "p", 5).is_empty());
    }

    #[test]
    fn the_file_is_made_whole_and_appends_land_in_their_slots() {
        let fs = SimFs::new();
        fs.create_dir(Path::new("/c")).unwrap();
        let path = Path::new("/c/bob.rx");
        assert!(read_payloads(&fs, path).unwrap().is_empty(), "missing");
        let f = open_for_append(&fs, path, 4).unwrap();
        assert_eq!(
            read_all(&fs, path, 1 << 20).unwrap(),
            vec![0u8; 4 * SLOT_LEN]
        );
        for (seq, text) in [(1u64, "one"), (2, "two"), (5, "five")] {
            append(f.as_ref(), 4, seq, &frame(text.as_bytes()).unwrap()).unwrap();
        }
        // 5 % 4 == 1: it replaced "one".
        assert_eq!(
            read_payloads(&fs, path).unwrap(),
            vec![b"five".to_vec(), b"two".to_vec()]
        );
        // Another slot count: made again, empty.
        drop(f);
        let _f = open_for_append(&fs, path, 2).unwrap();
        assert!(read_payloads(&fs, path).unwrap().is_empty());
    }
}
