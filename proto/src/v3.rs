//! Format v3: information-theoretically authenticated (the default).
//!
//! Each side sends from its own region `[lo, hi)` of the shared pad. The
//! region holds two streams that never meet (`shared/spec/package-formats.md`):
//!
//! ```text
//! r     = pad[hi - 16 .. hi]                      the side's hash key, kept for the pad's life
//! s_k   = pad[hi - 16(k+2) .. hi - 16(k+1)]       the tag mask of slot k
//! text  : from lo upward, each message's mask right after the previous one
//!
//! head    = 0x03 || t as 6 bytes LE || k as 4 bytes LE     (11 bytes)
//! ct      = m ^ pad[t .. t + n]
//! tag     = Poly1305(key = r || s_k, data = head || ct)    (16 bytes)
//! package = head || ct || tag                              (n + 27 bytes)
//! ```
//!
//! A message costs `n + 16` pad bytes (its text mask and its slot's `s_k`).
//!
//! # Why this replaced v2
//!
//! v2 keyed Poly1305 with the pad bytes right after a text mask whose length
//! the package chose, so a relay that knew one message's text knew the
//! bytes a shorter forgery at the same index would use as its key. Here `r`
//! and every `s_k` sit in a stream that is never a text mask, so known
//! plaintext reveals nothing about them, and each `s_k` pads exactly one
//! genuine tag, so the tags reveal nothing about `r` (Wegman–Carter; a
//! forgery succeeds with probability at most 8·⌈L/16⌉ / 2^106).
//!
//! # What lives here
//!
//! Pure functions and pure state, no I/O:
//! * [`seal`], [`verify`], [`open`], [`decrypt`]: one package, given the pad
//!   bytes it names;
//! * [`Region`]: one side's geometry (where `r`, `s_k` and the text are,
//!   whether a message fits, the next [`Head`] to send with);
//! * [`Received`]: the receive-side bookkeeping (opened slots and text
//!   ranges) and [`Received::check`], the spec's opening checks 1 to 4,
//!   which need no pad byte. The pad store makes this state durable; the
//!   session vectors replay it.

use crate::{ProtoError, index_bytes, index_from_bytes, xor_into};
use poly1305::Poly1305;
use poly1305::universal_hash::KeyInit;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// The first byte of every v3 package.
pub const MARKER: u8 = 0x03;
/// Head bytes: marker, 6-byte text offset, 4-byte slot.
pub const HEAD_LEN: usize = 11;
/// Tag bytes.
pub const TAG_LEN: usize = 16;
/// Package bytes beyond the message: 11 (head) + 16 (tag).
pub const OVERHEAD: usize = HEAD_LEN + TAG_LEN;
/// Bytes of `r` and of each `s_k`.
pub const KEY_LEN: usize = 16;
/// Pad bytes a region gives up for good to its hash key `r`.
pub const REGION_OVERHEAD: u64 = KEY_LEN as u64;
/// The smallest region: `r` and one slot's `s_k` (room for one empty message).
pub const MIN_REGION: u64 = 2 * KEY_LEN as u64;

/// Pad bytes a v3 message of `n` bytes consumes: `n + 16`.
pub fn pad_cost(n: usize) -> usize {
    n.saturating_add(KEY_LEN)
}

/// Poly1305's clamp of r (RFC 8439 section 2.5.1), as a byte mask.
const CLAMP: [u8; 16] = [
    0xff, 0xff, 0xff, 0x0f, 0xfc, 0xff, 0xff, 0x0f, 0xfc, 0xff, 0xff, 0x0f, 0xfc, 0xff, 0xff, 0x0f,
];

/// True when `r` is zero after Poly1305's clamp. Then every tag equals
/// `s_k` whatever the data: a universal forgery. A pad with such an `r` for
/// either side is refused when it is made or imported (`weak_key`); fresh
/// random bytes hit this with probability 2^-106. Checked without an early
/// exit.
pub fn is_weak_r(r: &[u8; KEY_LEN]) -> bool {
    r.iter().zip(CLAMP).fold(0u8, |acc, (b, m)| acc | (b & m)) == 0
}

/// What a package's head says: its text offset `t` and slot `k`. Not
/// authenticated until [`verify`] accepts the package.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Head {
    /// Absolute pad offset of the first text-mask byte.
    pub text: u64,
    /// The slot whose `s_k` masks the tag.
    pub slot: u32,
}

impl Head {
    /// The 11 head bytes.
    pub fn to_bytes(self) -> Result<[u8; HEAD_LEN], ProtoError> {
        let t = index_bytes(self.text)?;
        let mut out = [0u8; HEAD_LEN];
        out[0] = MARKER;
        out[1..7].copy_from_slice(&t);
        out[7..].copy_from_slice(&self.slot.to_le_bytes());
        Ok(out)
    }
}

/// The parts of a v3 package, borrowed from it (check 1 of the spec).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parts<'a> {
    pub head: Head,
    /// `head || ct`: what the tag covers.
    pub data: &'a [u8],
    pub ct: &'a [u8],
    pub tag: &'a [u8],
}

/// Split a package: at least 27 bytes and first byte 0x03, else an error
/// (a `bad_package`). A v2 package (first byte 0x02) is refused here.
pub fn parse(package: &[u8]) -> Result<Parts<'_>, ProtoError> {
    if package.len() < OVERHEAD {
        return Err(ProtoError::PackageTooShort {
            len: package.len(),
            min: OVERHEAD,
        });
    }
    if package[0] != MARKER {
        return Err(ProtoError::NotV3 { marker: package[0] });
    }
    let mut slot = [0u8; 4];
    slot.copy_from_slice(&package[7..HEAD_LEN]);
    let head = Head {
        text: index_from_bytes(&package[1..7]),
        slot: u32::from_le_bytes(slot),
    };
    let (data, tag) = package.split_at(package.len() - TAG_LEN);
    Ok(Parts {
        head,
        data,
        ct: &data[HEAD_LEN..],
        tag,
    })
}

fn tag(r: &[u8; KEY_LEN], s: &[u8; KEY_LEN], data: &[u8]) -> Result<[u8; TAG_LEN], ProtoError> {
    if is_weak_r(r) {
        return Err(ProtoError::WeakKey);
    }
    let mut key = Zeroizing::new([0u8; 32]);
    key[..KEY_LEN].copy_from_slice(r);
    key[KEY_LEN..].copy_from_slice(s);
    // Poly1305 (feature `zeroize`) wipes its state when dropped.
    Ok(Poly1305::new(poly1305::Key::from_slice(&key[..]))
        .compute_unpadded(data)
        .into())
}

/// Seal `message` under `head` with its text mask (`text_pad`, exactly
/// `message.len()` bytes from offset `head.text`), the side's `r` and the
/// slot's `s`. Refuses a weak `r` ([`ProtoError::WeakKey`]).
pub fn seal(
    head: Head,
    message: &[u8],
    text_pad: &[u8],
    r: &[u8; KEY_LEN],
    s: &[u8; KEY_LEN],
) -> Result<Vec<u8>, ProtoError> {
    let n = message.len();
    crate::check_pad(n, text_pad.len())?;
    let h = head.to_bytes()?;
    let mut out = Vec::with_capacity(n + OVERHEAD);
    out.extend_from_slice(&h);
    out.resize(HEAD_LEN + n, 0);
    xor_into(&mut out[HEAD_LEN..], message, text_pad);
    let t = tag(r, s, &out)?;
    out.extend_from_slice(&t);
    Ok(out)
}

/// Check 5 of the spec: the tag verifies under `r` and the slot's `s`, in
/// constant time. Needs no text pad byte and releases nothing.
pub fn verify(package: &[u8], r: &[u8; KEY_LEN], s: &[u8; KEY_LEN]) -> Result<(), ProtoError> {
    let parts = parse(package)?;
    let expected = tag(r, s, parts.data)?;
    if bool::from(expected.ct_eq(parts.tag)) {
        Ok(())
    } else {
        Err(ProtoError::BadTag)
    }
}

/// The message of a package whose tag was verified, given its text mask.
/// Does not verify: call [`verify`] first, or use [`open`].
pub fn decrypt(package: &[u8], text_pad: &[u8]) -> Result<Vec<u8>, ProtoError> {
    let parts = parse(package)?;
    crate::check_pad(parts.ct.len(), text_pad.len())?;
    let mut message = vec![0u8; parts.ct.len()];
    xor_into(&mut message, parts.ct, text_pad);
    Ok(message)
}

/// Verify and decrypt. On a bad tag nothing of the plaintext is released.
pub fn open(
    package: &[u8],
    text_pad: &[u8],
    r: &[u8; KEY_LEN],
    s: &[u8; KEY_LEN],
) -> Result<Vec<u8>, ProtoError> {
    verify(package, r, s)?;
    decrypt(package, text_pad)
}

/// A half-open span `[lo, hi)` of pad offsets or of slot numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Span {
    pub lo: u64,
    pub hi: u64,
}

impl Span {
    pub fn len(&self) -> u64 {
        self.hi.saturating_sub(self.lo)
    }
    pub fn is_empty(&self) -> bool {
        self.hi <= self.lo
    }
    /// Whether the two share an offset (an empty span shares none).
    pub fn overlaps(&self, o: &Span) -> bool {
        !self.is_empty() && !o.is_empty() && self.lo < o.hi && o.lo < self.hi
    }
}

/// One side's region `[lo, hi)` of the shared pad.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Region {
    pub lo: u64,
    pub hi: u64,
}

impl Region {
    /// A region, if it can hold `r` and at least one slot and its offsets
    /// fit in 48 bits.
    pub fn new(lo: u64, hi: u64) -> Result<Region, ProtoError> {
        if hi > crate::MAX_INDEX + 1 || hi < lo || hi - lo < MIN_REGION {
            return Err(ProtoError::BadRegion { lo, hi });
        }
        Ok(Region { lo, hi })
    }

    /// Where the side's hash key `r` lies: `[hi - 16, hi)`.
    pub fn key_span(&self) -> Span {
        Span {
            lo: self.hi - KEY_LEN as u64,
            hi: self.hi,
        }
    }

    /// The lowest offset of slot `k`'s mask, `hi - 16(k+2)`, or `None` when
    /// it would lie below the region.
    fn floor(&self, slot: u64) -> Option<u64> {
        let down = slot.checked_add(2)?.checked_mul(KEY_LEN as u64)?;
        let f = self.hi.checked_sub(down)?;
        (f >= self.lo).then_some(f)
    }

    /// Where slot `k`'s tag mask `s_k` lies, or `None` if outside the region.
    pub fn slot_span(&self, slot: u32) -> Option<Span> {
        let lo = self.floor(u64::from(slot))?;
        Some(Span {
            lo,
            hi: lo + KEY_LEN as u64,
        })
    }

    /// Spec check 2: `lo <= t` and `t + n <= hi - 16(k+2)`, without overflow.
    pub fn fits(&self, head: Head, n: u64) -> bool {
        let Some(floor) = self.floor(u64::from(head.slot)) else {
            return false;
        };
        head.text >= self.lo && head.text.checked_add(n).is_some_and(|end| end <= floor)
    }

    /// The head for the next message of `n` bytes from a sender whose text
    /// offset is `text` and whose slot counter is `slot`, or
    /// [`ProtoError::Exhausted`] (also for an empty message when no slot is
    /// left, and when the slot counter would pass `u32::MAX`).
    pub fn next(&self, text: u64, slot: u64, n: u64) -> Result<Head, ProtoError> {
        let slot = u32::try_from(slot).map_err(|_| ProtoError::Exhausted)?;
        let head = Head { text, slot };
        if self.fits(head, n) {
            Ok(head)
        } else {
            Err(ProtoError::Exhausted)
        }
    }

    /// The longest message a sender at (`text`, `slot`) can still send: the
    /// bytes between its text offset and its slot's mask (0 when even an
    /// empty message no longer fits; see [`Region::next`] for that).
    pub fn room(&self, text: u64, slot: u64) -> u64 {
        match self.floor(slot) {
            Some(f) if text >= self.lo => f.saturating_sub(text),
            _ => 0,
        }
    }

    /// Whether a sender at (`text`, `slot`) can send any message at all
    /// (an empty one needs a slot).
    pub fn can_send(&self, text: u64, slot: u64) -> bool {
        self.floor(slot)
            .is_some_and(|f| text >= self.lo && text <= f)
    }

    /// The pad left to a sender at (`text`, `slot`), in pad bytes that
    /// messages can still consume (text masks plus tag masks): the span
    /// between its text offset and its next slot's mask's top. A message of
    /// `n` bytes costs `n + 16` of it.
    pub fn left(&self, text: u64, slot: u64) -> u64 {
        match self.floor(slot) {
            Some(f) if text >= self.lo && text <= f => f - text + KEY_LEN as u64,
            _ => 0,
        }
    }
}

/// A package that passed the spec's checks 1 to 4 against a receiver's
/// state: its claims are consistent, but not yet authentic ([`verify`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Claim {
    pub head: Head,
    /// Message length `n`.
    pub len: u64,
    /// The text mask's pad span `[t, t + n)`.
    pub text: Span,
    /// The slot's tag mask's pad span.
    pub mask: Span,
}

/// The receive side's bookkeeping for one partner region: which slots and
/// which text ranges were opened. Pure state; the pad store makes it durable
/// before a plaintext leaves the device.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Received {
    /// Opened slot numbers, as sorted, disjoint, non-adjacent spans.
    pub slots: Vec<Span>,
    /// Opened text ranges (pad offsets), sorted, disjoint, non-adjacent.
    pub texts: Vec<Span>,
}

impl Received {
    /// Checks 1 to 4 of the spec, in order, for a package from the partner
    /// whose region is `region`: shape and marker; bounds; slot opened
    /// before ([`ProtoError::Replayed`]); text overlapping an opened range
    /// ([`ProtoError::TextReused`]). Reads no pad byte and changes nothing.
    pub fn check(&self, region: Region, package: &[u8]) -> Result<Claim, ProtoError> {
        let parts = parse(package)?;
        let head = parts.head;
        let n = parts.ct.len() as u64;
        if !region.fits(head, n) {
            return Err(ProtoError::OutOfRegion {
                text: head.text,
                slot: head.slot,
                len: n,
            });
        }
        let slot = Span {
            lo: u64::from(head.slot),
            hi: u64::from(head.slot) + 1,
        };
        if overlaps_any(&self.slots, slot) {
            return Err(ProtoError::Replayed { slot: head.slot });
        }
        let text = Span {
            lo: head.text,
            hi: head.text + n,
        };
        if overlaps_any(&self.texts, text) {
            return Err(ProtoError::TextReused { text: head.text });
        }
        let mask = region.slot_span(head.slot).ok_or(ProtoError::OutOfRegion {
            text: head.text,
            slot: head.slot,
            len: n,
        })?;
        Ok(Claim {
            head,
            len: n,
            text,
            mask,
        })
    }

    /// The highest slot opened, if any.
    pub fn highest(&self) -> Option<u64> {
        self.slots.last().map(|s| s.hi - 1)
    }

    /// Step 6: messages from slots below `slot` never opened and above the
    /// highest opened slot: `slot - (highest + 1)` when positive.
    pub fn skipped(&self, slot: u32) -> u64 {
        let next = self.highest().map_or(0, |h| h + 1);
        u64::from(slot).saturating_sub(next)
    }

    /// Messages never opened below the highest opened slot (they may still
    /// arrive, or were lost).
    pub fn gaps(&self) -> u64 {
        let opened: u64 = self.slots.iter().map(Span::len).sum();
        self.highest().map_or(0, |h| h + 1 - opened)
    }

    /// Record an authentic, approved package as opened (step 7's state).
    pub fn record(&mut self, claim: &Claim) {
        self.record_slot_and_text(u64::from(claim.head.slot), claim.text);
    }

    /// [`Received::record`] from its two parts: slot `slot` and the text
    /// range `text` (how a store replays an open it kept without the
    /// package).
    pub fn record_slot_and_text(&mut self, slot: u64, text: Span) {
        insert_span(
            &mut self.slots,
            Span {
                lo: slot,
                hi: slot + 1,
            },
        );
        insert_span(&mut self.texts, text);
    }

    /// The furthest text offset any opened message reached (`lo` of the
    /// region when nothing was opened).
    pub fn text_frontier(&self, region: Region) -> u64 {
        self.texts.last().map_or(region.lo, |t| t.hi.max(region.lo))
    }
}

/// Insert `r` into a sorted list of disjoint spans, coalescing neighbours.
pub fn insert_span(list: &mut Vec<Span>, r: Span) {
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
                out.push(Span { lo, hi });
                placed = true;
            }
            out.push(x);
        } else {
            lo = lo.min(x.lo);
            hi = hi.max(x.hi);
        }
    }
    if !placed {
        out.push(Span { lo, hi });
    }
    *list = out;
}

/// Whether `r` overlaps any span of a sorted, disjoint list (binary search).
pub fn overlaps_any(list: &[Span], r: Span) -> bool {
    if r.is_empty() {
        return false;
    }
    // The first span ending after r.lo is the only candidate.
    let i = list.partition_point(|x| x.hi <= r.lo);
    list.get(i).is_some_and(|x| x.overlaps(&r))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> ([u8; 16], [u8; 16]) {
        ([0x11; 16], [0x22; 16])
    }

    #[test]
    fn sizes_and_head() {
        assert_eq!(pad_cost(0), 16);
        assert_eq!(pad_cost(100), 116);
        let (r, s) = keys();
        let head = Head {
            text: 0x0102_0304_0506,
            slot: 0x0a0b_0c0d,
        };
        let p = seal(head, b"hello", &[7; 5], &r, &s).unwrap();
        assert_eq!(p.len(), 5 + OVERHEAD);
        assert_eq!(
            &p[..HEAD_LEN],
            &[3, 6, 5, 4, 3, 2, 1, 0x0d, 0x0c, 0x0b, 0x0a]
        );
        let parts = parse(&p).unwrap();
        assert_eq!(parts.head, head);
        assert_eq!(open(&p, &[7; 5], &r, &s).unwrap(), b"hello");
    }

    #[test]
    fn v2_marker_and_short_packages_are_refused() {
        let (r, s) = keys();
        let mut p = seal(Head { text: 0, slot: 0 }, b"hi", &[1, 2], &r, &s).unwrap();
        assert_eq!(
            parse(&p[..OVERHEAD - 1]),
            Err(ProtoError::PackageTooShort {
                len: 26,
                min: OVERHEAD
            })
        );
        p[0] = 0x02;
        assert_eq!(verify(&p, &r, &s), Err(ProtoError::NotV3 { marker: 2 }));
    }

    #[test]
    fn weak_r_is_refused_whatever_the_clamped_bits() {
        let mut r = [0u8; 16];
        r[3] = 0xf0; // cleared by the clamp
        r[4] = 0x03;
        assert!(is_weak_r(&r));
        let s = [9u8; 16];
        assert_eq!(
            seal(Head { text: 0, slot: 0 }, b"", &[], &r, &s),
            Err(ProtoError::WeakKey)
        );
        r[0] = 1;
        assert!(!is_weak_r(&r));
    }

    #[test]
    fn region_geometry() {
        let g = Region::new(0, 64).unwrap();
        assert_eq!(g.key_span(), Span { lo: 48, hi: 64 });
        assert_eq!(g.slot_span(0), Some(Span { lo: 32, hi: 48 }));
        assert_eq!(g.slot_span(1), Some(Span { lo: 16, hi: 32 }));
        assert_eq!(g.slot_span(2), Some(Span { lo: 0, hi: 16 }));
        assert_eq!(g.slot_span(3), None);
        assert_eq!(g.slot_span(u32::MAX), None);
        // Slot 0 leaves 32 bytes of text; slot 1 after a 16-byte text leaves 0.
        assert_eq!(g.room(0, 0), 32);
        assert_eq!(g.next(0, 0, 32), Ok(Head { text: 0, slot: 0 }));
        assert_eq!(g.next(0, 0, 33), Err(ProtoError::Exhausted));
        assert_eq!(g.next(16, 1, 0), Ok(Head { text: 16, slot: 1 }));
        assert_eq!(g.next(17, 1, 0), Err(ProtoError::Exhausted));
        assert_eq!(g.next(0, 1 << 32, 0), Err(ProtoError::Exhausted));
        assert_eq!(g.left(0, 0), 48);
        assert!(Region::new(0, 31).is_err());
        assert!(Region::new(10, 5).is_err());
        assert!(Region::new(0, crate::MAX_INDEX + 2).is_err());
        // Overflow-proof bounds.
        let top = Region::new(crate::MAX_INDEX + 1 - 64, crate::MAX_INDEX + 1).unwrap();
        assert!(!top.fits(
            Head {
                text: u64::MAX - 2,
                slot: 0
            },
            5
        ));
    }

    #[test]
    fn receiver_checks_in_the_spec_order() {
        let (r, s) = keys();
        let g = Region::new(100, 200).unwrap();
        let mut rx = Received::default();
        let p0 = seal(Head { text: 100, slot: 0 }, b"abc", &[0; 3], &r, &s).unwrap();
        let c = rx.check(g, &p0).unwrap();
        assert_eq!(c.text, Span { lo: 100, hi: 103 });
        assert_eq!(c.mask, Span { lo: 168, hi: 184 });
        assert_eq!(rx.skipped(0), 0);
        assert_eq!(rx.skipped(3), 3);
        rx.record(&c);
        assert_eq!(rx.check(g, &p0), Err(ProtoError::Replayed { slot: 0 }));
        // Fresh slot, text inside the opened range.
        let p1 = seal(Head { text: 102, slot: 1 }, b"x", &[0], &r, &s).unwrap();
        assert_eq!(rx.check(g, &p1), Err(ProtoError::TextReused { text: 102 }));
        // Outside the region: below lo, and into the slot masks.
        let low = seal(Head { text: 99, slot: 1 }, b"x", &[0], &r, &s).unwrap();
        assert!(matches!(
            rx.check(g, &low),
            Err(ProtoError::OutOfRegion { .. })
        ));
        let deep = seal(Head { text: 150, slot: 1 }, &[0; 3], &[0; 3], &r, &s).unwrap();
        assert!(matches!(
            rx.check(g, &deep),
            Err(ProtoError::OutOfRegion { .. })
        ));
        let p3 = seal(Head { text: 110, slot: 3 }, b"x", &[0], &r, &s).unwrap();
        let c3 = rx.check(g, &p3).unwrap();
        assert_eq!(rx.skipped(3), 2);
        rx.record(&c3);
        assert_eq!(rx.gaps(), 2);
        assert_eq!(rx.skipped(1), 0);
        assert_eq!(rx.text_frontier(g), 111);
    }

    #[test]
    fn overlaps_any_agrees_with_a_scan() {
        let mut list = Vec::new();
        for (lo, hi) in [(5, 9), (20, 21), (40, 60), (9, 10)] {
            insert_span(&mut list, Span { lo, hi });
        }
        assert_eq!(
            list,
            vec![
                Span { lo: 5, hi: 10 },
                Span { lo: 20, hi: 21 },
                Span { lo: 40, hi: 60 }
            ]
        );
        for lo in 0..70 {
            for len in 0..8 {
                let q = Span { lo, hi: lo + len };
                let scan = list.iter().any(|x| x.overlaps(&q));
                assert_eq!(overlaps_any(&list, q), scan, "{q:?}");
            }
        }
    }
}
