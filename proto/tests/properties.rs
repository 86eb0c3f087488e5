//! Property tests: every sealed package opens to its message, and every
//! single-bit flip anywhere in a package is rejected, for both formats.

use otc_proto::{Format, MAX_INDEX, ProtoError};
use proptest::prelude::*;

fn format() -> impl Strategy<Value = Format> {
    prop_oneof![Just(Format::V1), Just(Format::V2)]
}

/// A format, an index, a message and a pad of exactly the right length.
fn case() -> impl Strategy<Value = (Format, u64, Vec<u8>, Vec<u8>)> {
    (
        format(),
        0..=MAX_INDEX,
        prop::collection::vec(any::<u8>(), 0..300),
    )
        .prop_flat_map(|(f, index, msg)| {
            let cost = f.pad_cost(msg.len());
            (
                Just(f),
                Just(index),
                Just(msg),
                prop::collection::vec(any::<u8>(), cost..=cost),
            )
        })
}

proptest! {
    #[test]
    fn round_trip((f, index, msg, pad) in case()) {
        let package = f.seal(index, &msg, &pad).unwrap();
        prop_assert_eq!(package.len(), f.package_len(msg.len()));
        prop_assert_eq!(f.message_len(package.len()), Ok(msg.len()));
        prop_assert_eq!(f.read_index(&package), Ok(index));
        prop_assert_eq!(f.open(&package, &pad), Ok(msg));
    }

    #[test]
    fn every_single_bit_flip_is_rejected((f, index, msg, pad) in case()) {
        let package = f.seal(index, &msg, &pad).unwrap();
        for bit in 0..package.len() * 8 {
            let mut bad = package.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            let r = f.open(&bad, &pad);
            prop_assert!(
                matches!(r, Err(ProtoError::BadTag | ProtoError::NotV2)),
                "flip of bit {} accepted: {:?}", bit, r
            );
        }
    }

    #[test]
    fn wrong_pad_is_rejected((f, index, msg, pad) in case(), pos in any::<prop::sample::Index>()) {
        // A pad that differs in one byte of the MAC key or body must not open.
        let package = f.seal(index, &msg, &pad).unwrap();
        let key_start = pad.len() - if f == Format::V1 { 16 } else { 32 };
        let mut other = pad.clone();
        let at = key_start + pos.index(pad.len() - key_start);
        other[at] ^= 0x5a;
        prop_assert_eq!(f.open(&package, &other), Err(ProtoError::BadTag));
    }

    #[test]
    fn truncated_packages_never_open((f, index, msg, pad) in case(), cut in 1usize..40) {
        let package = f.seal(index, &msg, &pad).unwrap();
        let short = &package[..package.len().saturating_sub(cut)];
        prop_assert!(f.open(short, &pad).is_err());
    }
}
