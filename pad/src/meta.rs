//! Per-contact metadata (one JSON record file per contact, see
//! [`crate`]), and the pad geometry it implies.
//!
//! Offsets here are absolute pad offsets. Send progress is kept as a *count*
//! of bytes consumed from our region's starting edge in our allocation
//! direction, which makes the sequence-cache arithmetic the same for both
//! sides: for v1 up from 0 for side A and down from N for side B (the
//! original tool's layout); for v3 the text stream rises from the region's
//! start for both sides (`[0, split)` for A, `[split, N)` for B), and a
//! second count, the slot counter, numbers the 16-byte tag masks `s_k`
//! that fall from the region's end below the hash key `r`
//! ([`otc_proto::v3::Region`]).

use otc_proto::Format;
use otc_proto::v3::{self, Received};
use serde::{Deserialize, Serialize};

/// Which half of the pad a device sends with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Side {
    /// The device that generated the pad: sends with `[0, split)`, send offset up.
    A,
    /// The partner: sends with `[split, N)`, send offset down from the top.
    B,
}

impl Side {
    /// The side as one byte of an export header (`A` or `B`).
    pub fn byte(self) -> u8 {
        match self {
            Side::A => b'A',
            Side::B => b'B',
        }
    }

    /// The side an export header's byte names, if any.
    pub fn from_byte(b: u8) -> Option<Side> {
        match b {
            b'A' => Some(Side::A),
            b'B' => Some(Side::B),
            _ => None,
        }
    }

    /// The other side.
    pub fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Side::A => "A",
            Side::B => "B",
        })
    }
}

/// Where a pad came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// Made here with `pad new`.
    Generated,
    /// Imported from a partner's export file.
    Imported,
    /// Imported from the original One Time Chat tool.
    Legacy,
}

/// A half-open range of absolute pad offsets `[lo, hi)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Range {
    pub lo: u64,
    pub hi: u64,
}

impl Range {
    pub fn len(&self) -> u64 {
        self.hi - self.lo
    }
    pub fn is_empty(&self) -> bool {
        self.hi <= self.lo
    }
    pub fn overlaps(&self, o: &Range) -> bool {
        self.lo < o.hi && o.lo < self.hi
    }
}

/// The same offsets as v3's span (a text or a slot's mask).
impl From<v3::Span> for Range {
    fn from(s: v3::Span) -> Range {
        Range { lo: s.lo, hi: s.hi }
    }
}

impl From<Range> for v3::Span {
    fn from(r: Range) -> v3::Span {
        v3::Span { lo: r.lo, hi: r.hi }
    }
}

/// Failed verifications of one range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub range: Range,
    pub count: u32,
}

/// Everything the store knows about one contact.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactMeta {
    /// Record layout version.
    pub version: u32,
    pub name: String,
    /// Hex SHA-256 of the pad bytes as created or imported.
    pub pad_id: String,
    pub size: u64,
    pub split: u64,
    pub side: Side,
    pub format: Format,
    pub origin: Origin,
    /// Send: the durable "reserved up to" bound (count from our edge; for
    /// v3 the text stream's). No byte at or past it has been used; bytes
    /// before it may have been.
    pub reserved: u64,
    /// Send: bytes `[0, erased)` (counts) are known durably zero on disk.
    pub erased: u64,
    /// Send, v3: the durable bound of the slot counter. No slot at or past
    /// it has been used; slots below it may have been. Reserved ahead in
    /// blocks together with `reserved`, in the same record write.
    #[serde(default)]
    pub slots_reserved: u64,
    /// Send, v3: the tag masks of slots `[0, slots_erased)` are known
    /// durably zero on disk.
    #[serde(default)]
    pub slots_erased: u64,
    /// Receive, v1: opened ranges, sorted and coalesced.
    pub received: Vec<Range>,
    /// Receive, v1: how far (bytes from the sender's edge, in the sender's
    /// direction) the furthest opened range reaches.
    pub recv_frontier: u64,
    /// Receive, v3: the opened slots and opened text ranges of the
    /// partner's region (the spec's checks 3 and 4 read it; a replay is
    /// refused from it, not from erased bytes).
    #[serde(default)]
    pub rx: Received,
    /// Receive: ranges burned after too many failed verifications by
    /// earlier versions. No longer produced (failed verifications use
    /// nothing, see [`crate`]); still read and honoured.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub burned: Vec<Range>,
    /// Receive: failed verification counters of earlier versions. No
    /// longer produced; read and ignored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<Failure>,
    /// Ranges recorded as used whose on-disk erase may not be durable yet.
    #[serde(default)]
    pub pending_erase: Vec<Range>,
    /// The last receipt of the contact's journal ([`crate::journal`]) this
    /// record includes: receipts after it are applied at start. 0 when
    /// none was ever written.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub journal_seq: u64,
    /// Encrypted data directory only: hex of the 16-byte random salt of
    /// this pad file's key ([`crate::vault::PadCipher`]). The record
    /// itself is sealed there, so the salt is never in clear.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_salt: Option<String>,
    /// A private contact (issue 19): every message from it is read on the
    /// device only; the appliance never gives its text to the laptop.
    /// Set on the contact's screen ([`crate::PadStore::set_private`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub private: bool,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Current record layout version. Version 2 added the v3 fields
/// (`slots_reserved`, `slots_erased`, `rx`); a version-1 record (format v1
/// only: v2 records are refused as withdrawn) reads as version 2 with
/// those fields empty.
pub const META_VERSION: u32 = 2;

impl ContactMeta {
    /// A fresh record with nothing used.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: &str,
        pad_id: &str,
        size: u64,
        split: u64,
        side: Side,
        format: Format,
        origin: Origin,
    ) -> Self {
        ContactMeta {
            version: META_VERSION,
            name: name.to_string(),
            pad_id: pad_id.to_string(),
            size,
            split,
            side,
            format,
            origin,
            reserved: 0,
            erased: 0,
            slots_reserved: 0,
            slots_erased: 0,
            received: Vec::new(),
            recv_frontier: 0,
            rx: Received::default(),
            burned: Vec::new(),
            failures: Vec::new(),
            pending_erase: Vec::new(),
            journal_seq: 0,
            file_salt: None,
            private: false,
        }
    }

    /// The region a side sends with.
    pub fn region(&self, side: Side) -> Range {
        match side {
            Side::A => Range {
                lo: 0,
                hi: self.split,
            },
            Side::B => Range {
                lo: self.split,
                hi: self.size,
            },
        }
    }

    /// Bytes we can send with in total.
    pub fn send_capacity(&self) -> u64 {
        self.region(self.side).len()
    }

    /// The v3 geometry of a side's region (`None` for v1 pads, or a
    /// region too small for `r` and one slot).
    pub fn v3_region(&self, side: Side) -> Option<v3::Region> {
        if self.format != Format::V3 {
            return None;
        }
        let r = self.region(side);
        v3::Region::new(r.lo, r.hi).ok()
    }

    /// Absolute range of `cost` bytes starting at send count `used`.
    pub fn send_range(&self, used: u64, cost: u64) -> Range {
        self.count_range(self.side, used, used + cost)
    }

    /// Absolute range for counts `[a, b)` of `side`'s allocation direction
    /// (v3: the text stream, rising from the region's start).
    pub fn count_range(&self, side: Side, a: u64, b: u64) -> Range {
        if self.format == Format::V3 {
            let lo = self.region(side).lo;
            return Range {
                lo: lo + a,
                hi: lo + b,
            };
        }
        match side {
            Side::A => Range { lo: a, hi: b },
            Side::B => Range {
                lo: self.size - b,
                hi: self.size - a,
            },
        }
    }

    /// Absolute range of the v3 tag masks of slots `[a, b)` of `side`
    /// (they fall from below `r`, so slot `b - 1` is lowest), or `None`
    /// for v1 or when the slots leave the region.
    pub fn slots_range(&self, side: Side, a: u64, b: u64) -> Option<Range> {
        let g = self.v3_region(side)?;
        if b <= a {
            return Some(Range { lo: g.hi, hi: g.hi });
        }
        let top = g.slot_span(u32::try_from(a).ok()?)?;
        let bottom = g.slot_span(u32::try_from(b - 1).ok()?)?;
        Some(Range {
            lo: bottom.lo,
            hi: top.hi,
        })
    }

    /// Whether a side's bytes are consumed in descending order (v1, side B).
    pub fn descending(&self, side: Side) -> bool {
        self.format == Format::V1 && side == Side::B
    }

    /// The index a package carries for an absolute range sent by `side`.
    pub fn index_of(&self, side: Side, r: Range) -> u64 {
        if self.descending(side) {
            r.hi - 1
        } else {
            r.lo
        }
    }

    /// The absolute range a package from the partner claims, or `None` if
    /// the arithmetic leaves the pad.
    pub fn recv_range(&self, index: u64, cost: u64) -> Option<Range> {
        let sender = self.side.other();
        let r = if self.descending(sender) {
            let hi = index.checked_add(1)?;
            Range {
                lo: hi.checked_sub(cost)?,
                hi,
            }
        } else {
            Range {
                lo: index,
                hi: index.checked_add(cost)?,
            }
        };
        Some(r)
    }

    /// The frontier (bytes from the sender's edge) a received range reaches.
    pub fn frontier_of(&self, r: Range) -> u64 {
        match self.side.other() {
            Side::A => r.hi,
            Side::B => self.size - r.lo,
        }
    }

    /// Bytes skipped between the current receive frontier and `r`.
    pub fn gap_before(&self, r: Range) -> u64 {
        match self.side.other() {
            Side::A => r.lo.saturating_sub(self.recv_frontier),
            Side::B => (self.size - self.recv_frontier).saturating_sub(r.hi),
        }
    }

    /// Bytes of the sender's region not yet passed by the receive frontier
    /// (v3: pad the partner can still spend on messages to us, in the
    /// `n + 16` count, from past the furthest text and slot opened).
    pub fn receive_left(&self) -> u64 {
        if let Some(g) = self.v3_region(self.side.other()) {
            let text = self.rx.text_frontier(g);
            let slot = self.rx.highest().map_or(0, |h| h + 1);
            return g.left(text, slot);
        }
        self.region(self.side.other())
            .len()
            .saturating_sub(self.recv_frontier)
    }
}

/// Insert `r` into a sorted list of disjoint ranges, coalescing neighbours.
pub fn insert_range(list: &mut Vec<Range>, r: Range) {
    if r.is_empty() {
        return;
    }
    let mut lo = r.lo;
    let mut hi = r.hi;
    let mut out = Vec::with_capacity(list.len() + 1);
    let mut placed = false;
    for &x in list.iter() {
        if x.hi < lo {
            out.push(x);
        } else if x.lo > hi {
            if !placed {
                out.push(Range { lo, hi });
                placed = true;
            }
            out.push(x);
        } else {
            lo = lo.min(x.lo);
            hi = hi.max(x.hi);
        }
    }
    if !placed {
        out.push(Range { lo, hi });
    }
    *list = out;
}

/// Whether `r` overlaps any range in the list.
pub fn overlaps_any(list: &[Range], r: Range) -> bool {
    list.iter().any(|x| x.overlaps(&r))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(lo: u64, hi: u64) -> Range {
        Range { lo, hi }
    }

    #[test]
    fn coalescing() {
        let mut l = Vec::new();
        insert_range(&mut l, r(10, 20));
        insert_range(&mut l, r(30, 40));
        assert_eq!(l, vec![r(10, 20), r(30, 40)]);
        insert_range(&mut l, r(20, 30));
        assert_eq!(l, vec![r(10, 40)]);
        insert_range(&mut l, r(0, 5));
        insert_range(&mut l, r(50, 60));
        assert_eq!(l, vec![r(0, 5), r(10, 40), r(50, 60)]);
        insert_range(&mut l, r(3, 55));
        assert_eq!(l, vec![r(0, 60)]);
        assert!(overlaps_any(&l, r(59, 70)));
        assert!(!overlaps_any(&l, r(60, 70)));
    }

    proptest::proptest! {
        /// Coalesced insertion agrees with a plain set of offsets, and the
        /// list stays sorted, disjoint and non-adjacent.
        #[test]
        fn insert_range_matches_a_set(ops in proptest::collection::vec((0u64..200, 1u64..20), 0..40)) {
            let mut list = Vec::new();
            let mut set = std::collections::BTreeSet::new();
            for (lo, len) in ops {
                insert_range(&mut list, r(lo, lo + len));
                set.extend(lo..lo + len);
                let from_list: std::collections::BTreeSet<u64> =
                    list.iter().flat_map(|x| x.lo..x.hi).collect();
                proptest::prop_assert_eq!(&from_list, &set);
                for w in list.windows(2) {
                    proptest::prop_assert!(w[0].hi < w[1].lo);
                }
                for probe in 0..10u64 {
                    let q = r(probe * 22, probe * 22 + 5);
                    let hit = (q.lo..q.hi).any(|o| set.contains(&o));
                    proptest::prop_assert_eq!(overlaps_any(&list, q), hit);
                }
            }
        }
    }

    #[test]
    fn geometry_side_b_v1_descends() {
        let m = ContactMeta::new("x", "id", 1000, 400, Side::B, Format::V1, Origin::Imported);
        let rg = m.send_range(0, 48);
        assert_eq!(rg, r(952, 1000));
        assert_eq!(m.index_of(Side::B, rg), 999);
        // we are B, so the sender is A, ascending
        assert_eq!(m.recv_range(10, 48), Some(r(10, 58)));
        let a = ContactMeta::new("x", "id", 1000, 400, Side::A, Format::V1, Origin::Generated);
        assert_eq!(a.recv_range(999, 48), Some(r(952, 1000)));
        assert_eq!(a.recv_range(3, 48), None);
        assert_eq!(a.frontier_of(r(952, 1000)), 48);
        assert_eq!(a.gap_before(r(900, 952)), 48);
    }

    /// Records may lack the fields earlier versions wrote (`burned`,
    /// `failures`, `pending_erase`), or carry them: both read. New records
    /// leave empty `burned`/`failures` out.
    #[test]
    fn old_and_new_record_fields_read() {
        let m = ContactMeta::new("x", "id", 1000, 500, Side::A, Format::V1, Origin::Imported);
        let json = serde_json::to_value(&m).unwrap();
        assert!(json.get("burned").is_none() && json.get("failures").is_none());
        let back: ContactMeta = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back, m);
        let mut old = json;
        old["burned"] = serde_json::json!([{"lo": 10, "hi": 20}]);
        old["failures"] = serde_json::json!([{"range": {"lo": 30, "hi": 40}, "count": 2}]);
        let back: ContactMeta = serde_json::from_value(old).unwrap();
        assert_eq!(back.burned, vec![r(10, 20)]);
        assert_eq!(back.failures.len(), 1);
    }

    /// v3: both sides' text rises from their region's start; the tag
    /// masks fall from below `r` at the region's end.
    #[test]
    fn geometry_v3_both_sides_rise() {
        let m = ContactMeta::new("x", "id", 1000, 500, Side::B, Format::V3, Origin::Imported);
        let rg = m.send_range(100, 32);
        assert_eq!(rg, r(600, 632));
        assert_eq!(m.index_of(Side::B, rg), 600);
        assert_eq!(m.slots_range(Side::B, 0, 1), Some(r(968, 984)));
        assert_eq!(m.slots_range(Side::B, 0, 2), Some(r(952, 984)));
        assert_eq!(m.slots_range(Side::A, 1, 3), Some(r(436, 468)));
        assert_eq!(m.slots_range(Side::A, 3, 3), Some(r(500, 500)));
        assert_eq!(m.slots_range(Side::A, 0, 100), None);
        // Nothing opened yet: all of A's region but r (500 - 16).
        assert_eq!(m.receive_left(), 484);
        let v1 = ContactMeta::new("x", "id", 1000, 500, Side::B, Format::V1, Origin::Imported);
        assert_eq!(v1.slots_range(Side::B, 0, 1), None);
    }
}
