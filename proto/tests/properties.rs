//! Property tests: every sealed package opens to its message, and every
//! single-bit flip anywhere in a package is refused, for v1 and v3; a v3
//! package that passes the receiver's checks never opens under another
//! slot's mask or another side's key.

use otc_proto::v3::{self, Head, Received, Region};
use otc_proto::{MAX_INDEX, ProtoError, v1};
use proptest::prelude::*;

/// An index, a message and a v1 pad of exactly the right length.
fn v1_case() -> impl Strategy<Value = (u64, Vec<u8>, Vec<u8>)> {
    (0..=MAX_INDEX, prop::collection::vec(any::<u8>(), 0..300)).prop_flat_map(|(index, msg)| {
        let cost = v1::pad_cost(msg.len());
        (
            Just(index),
            Just(msg),
            prop::collection::vec(any::<u8>(), cost..=cost),
        )
    })
}

/// A head, a message, its text mask, a strong r and an s.
fn v3_case() -> impl Strategy<Value = (Head, Vec<u8>, Vec<u8>, [u8; 16], [u8; 16])> {
    (
        0..=MAX_INDEX,
        any::<u32>(),
        prop::collection::vec(any::<u8>(), 0..300),
        any::<[u8; 16]>(),
        any::<[u8; 16]>(),
    )
        .prop_filter("r must survive the clamp", |(_, _, _, r, _)| {
            !v3::is_weak_r(r)
        })
        .prop_flat_map(|(text, slot, msg, r, s)| {
            let n = msg.len();
            (
                Just(Head { text, slot }),
                Just(msg),
                prop::collection::vec(any::<u8>(), n..=n),
                Just(r),
                Just(s),
            )
        })
}

proptest! {
    #[test]
    fn v1_round_trip((index, msg, pad) in v1_case()) {
        let package = v1::seal(index, &msg, &pad).unwrap();
        prop_assert_eq!(package.len(), msg.len() + v1::OVERHEAD);
        prop_assert_eq!(v1::read_index(&package), Ok(index));
        prop_assert_eq!(v1::open(&package, &pad), Ok(msg));
    }

    #[test]
    fn v1_every_single_bit_flip_is_refused((index, msg, pad) in v1_case()) {
        let package = v1::seal(index, &msg, &pad).unwrap();
        for bit in 0..package.len() * 8 {
            let mut bad = package.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            prop_assert_eq!(v1::open(&bad, &pad), Err(ProtoError::BadTag), "bit {}", bit);
        }
    }

    #[test]
    fn v3_round_trip((head, msg, text, r, s) in v3_case()) {
        let package = v3::seal(head, &msg, &text, &r, &s).unwrap();
        prop_assert_eq!(package.len(), msg.len() + v3::OVERHEAD);
        prop_assert_eq!(v3::parse(&package).map(|p| p.head), Ok(head));
        prop_assert_eq!(v3::verify(&package, &r, &s), Ok(()));
        prop_assert_eq!(v3::open(&package, &text, &r, &s), Ok(msg));
    }

    #[test]
    fn v3_every_single_bit_flip_is_refused((head, msg, text, r, s) in v3_case()) {
        let package = v3::seal(head, &msg, &text, &r, &s).unwrap();
        for bit in 0..package.len() * 8 {
            let mut bad = package.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            let got = v3::open(&bad, &text, &r, &s);
            prop_assert!(
                matches!(got, Err(ProtoError::BadTag | ProtoError::NotV3 { .. })),
                "flip of bit {} accepted: {:?}", bit, got
            );
        }
    }

    #[test]
    fn v3_another_mask_or_key_does_not_verify(
        (head, msg, text, r, s) in v3_case(), flip in 0usize..32, bit in 0u8..8
    ) {
        let package = v3::seal(head, &msg, &text, &r, &s).unwrap();
        let (mut r2, mut s2) = (r, s);
        if flip < 16 { r2[flip] ^= 1 << bit } else { s2[flip - 16] ^= 1 << bit }
        // A flip in a bit the clamp clears changes nothing: that r is the same key.
        let clamp_cleared = flip < 16 && {
            let mut a = r; a[flip] &= [0xff,0xff,0xff,0x0f,0xfc,0xff,0xff,0x0f,0xfc,0xff,0xff,0x0f,0xfc,0xff,0xff,0x0f][flip];
            let mut b = r2; b[flip] &= [0xff,0xff,0xff,0x0f,0xfc,0xff,0xff,0x0f,0xfc,0xff,0xff,0x0f,0xfc,0xff,0xff,0x0f][flip];
            a == b
        };
        let got = v3::verify(&package, &r2, &s2);
        if clamp_cleared {
            prop_assert_eq!(got, Ok(()));
        } else {
            prop_assert!(matches!(got, Err(ProtoError::BadTag | ProtoError::WeakKey)), "{:?}", got);
        }
    }

    #[test]
    fn truncated_packages_never_open((head, msg, text, r, s) in v3_case(), cut in 1usize..40) {
        let package = v3::seal(head, &msg, &text, &r, &s).unwrap();
        let short = &package[..package.len().saturating_sub(cut)];
        // Whatever the cut, the shorter package needs a shorter text mask.
        let n = short.len().saturating_sub(v3::OVERHEAD);
        prop_assert!(v3::open(short, &text[..n.min(text.len())], &r, &s).is_err());
    }

    /// A sender that follows `Region::next` never reuses a text byte or a
    /// slot, never lets text reach a slot mask in use, and every package it
    /// makes passes a fresh receiver's checks exactly once.
    #[test]
    fn a_sender_never_overlaps(
        lo in 0u64..1000, len in 32u64..600, msgs in prop::collection::vec(0u64..80, 0..40)
    ) {
        let g = Region::new(lo, lo + len).unwrap();
        let (mut t, mut k) = (g.lo, 0u64);
        let mut rx = Received::default();
        let mut used = std::collections::BTreeSet::new();
        for n in msgs {
            let left = g.left(t, k);
            match g.next(t, k, n) {
                Ok(head) => {
                    prop_assert!(n + 16 <= left);
                    let mask = g.slot_span(head.slot).unwrap();
                    for o in (head.text..head.text + n).chain(mask.lo..mask.hi) {
                        prop_assert!(o >= g.lo && o < g.key_span().lo, "offset {} outside", o);
                        prop_assert!(used.insert(o), "offset {} used twice", o);
                    }
                    let package = v3::seal(head, &vec![0; n as usize], &vec![0; n as usize], &[1; 16], &[2; 16]).unwrap();
                    let claim = rx.check(g, &package).unwrap();
                    rx.record(&claim);
                    prop_assert_eq!(rx.check(g, &package), Err(ProtoError::Replayed { slot: head.slot }));
                    t = head.text + n;
                    k += 1;
                    if g.can_send(t, k) {
                        prop_assert_eq!(g.left(t, k), left - n - 16);
                    } else {
                        // Fewer than 16 bytes are stranded: no room for a slot.
                        prop_assert_eq!(g.left(t, k), 0);
                        prop_assert!(left - n - 16 < 16);
                    }
                }
                Err(e) => {
                    prop_assert_eq!(e, ProtoError::Exhausted);
                    prop_assert!(n + 16 > left);
                }
            }
        }
    }
}
