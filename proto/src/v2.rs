//! Format v2: information-theoretically authenticated (the default).
//!
//! The message takes `p = pad[index .. index + n + 32]`, ascending:
//!
//! ```text
//! head    = 0x02 || index as 6 bytes little-endian     (7 bytes)
//! ct      = m ^ p[0 .. n]
//! tag     = Poly1305(one-time key = p[n .. n + 32], data = head || ct)
//! package = head || ct || tag                          (n + 23 bytes)
//! ```
//!
//! Poly1305 with a fresh key per message is a Wegman–Carter one-time MAC:
//! forgery succeeds with probability at most 8·⌈L/16⌉ / 2^106 per attempt
//! for L bytes of data, against an unbounded adversary.

use crate::{ProtoError, check_pad, index_bytes, index_from_bytes, xor_into};
use poly1305::Poly1305;
use poly1305::universal_hash::KeyInit;
use subtle::ConstantTimeEq;

/// Package bytes beyond the message: 7 (head) + 16 (tag).
pub const OVERHEAD: usize = 23;
/// The first byte of every v2 package.
pub const MARKER: u8 = 0x02;
const HEAD_LEN: usize = 7;
const KEY_LEN: usize = 32;

/// Pad bytes a v2 message of `n` bytes consumes: `n + 32`.
pub fn pad_cost(n: usize) -> usize {
    n.saturating_add(KEY_LEN)
}

/// Poly1305's clamp of r (RFC 8439 section 2.5.1), as a byte mask.
const CLAMP: [u8; 16] = [
    0xff, 0xff, 0xff, 0x0f, 0xfc, 0xff, 0xff, 0x0f, 0xfc, 0xff, 0xff, 0x0f, 0xfc, 0xff, 0xff, 0x0f,
];

/// True when the clamped `r` half of a one-time key is zero. With r = 0 the
/// tag is `s` whatever the data, so every ciphertext verifies: a universal
/// forgery. Fresh pad bytes hit this with probability 2^-106; erased pad
/// (all zeros) hits it always, which is exactly the state a replayed range
/// is in. Such keys are refused on both seal and open.
pub fn is_weak_key(key: &[u8]) -> bool {
    key.iter().zip(CLAMP).all(|(k, m)| k & m == 0)
}

fn tag(key: &[u8], data: &[u8]) -> Result<[u8; 16], ProtoError> {
    if is_weak_key(key) {
        return Err(ProtoError::WeakKey);
    }
    // Poly1305 (feature `zeroize`) wipes r and s when dropped.
    Ok(Poly1305::new(poly1305::Key::from_slice(key))
        .compute_unpadded(data)
        .into())
}

/// The index a v2 package claims.
pub fn read_index(package: &[u8]) -> Result<u64, ProtoError> {
    if package.len() < OVERHEAD {
        return Err(ProtoError::PackageTooShort {
            len: package.len(),
            min: OVERHEAD,
        });
    }
    if package[0] != MARKER {
        return Err(ProtoError::NotV2);
    }
    Ok(index_from_bytes(&package[1..]))
}

/// Seal `message` at `index` with `pad` (`n + 32` bytes, ascending offsets).
pub fn seal(index: u64, message: &[u8], pad: &[u8]) -> Result<Vec<u8>, ProtoError> {
    let n = message.len();
    check_pad(pad_cost(n), pad.len())?;
    let i = index_bytes(index)?;
    let (p_text, key) = pad.split_at(n);

    let mut out = Vec::with_capacity(n + OVERHEAD);
    out.push(MARKER);
    out.extend_from_slice(&i);
    out.resize(HEAD_LEN + n, 0);
    xor_into(&mut out[HEAD_LEN..], message, p_text);
    let t = tag(key, &out)?;
    out.extend_from_slice(&t);
    Ok(out)
}

/// Open a v2 `package` with `pad` (`n + 32` bytes, ascending offsets).
/// Returns [`ProtoError::BadTag`] and releases nothing if the tag is wrong.
pub fn open(package: &[u8], pad: &[u8]) -> Result<Vec<u8>, ProtoError> {
    read_index(package)?;
    let n = package.len() - OVERHEAD;
    check_pad(pad_cost(n), pad.len())?;
    let (p_text, key) = pad.split_at(n);
    let (data, claimed) = package.split_at(HEAD_LEN + n);
    let expected = tag(key, data)?;
    if !bool::from(expected.ct_eq(claimed)) {
        return Err(ProtoError::BadTag);
    }
    let mut message = vec![0u8; n];
    xor_into(&mut message, &data[HEAD_LEN..], p_text);
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(pad_cost(0), 32);
        assert_eq!(pad_cost(100), 132);
        let pad = vec![7u8; pad_cost(5)];
        let p = seal(9, b"hello", &pad).unwrap();
        assert_eq!(p.len(), 5 + OVERHEAD);
        assert_eq!(p[0], MARKER);
        assert_eq!(read_index(&p), Ok(9));
    }

    #[test]
    fn wrong_marker_is_rejected_before_any_work() {
        let pad = vec![7u8; pad_cost(5)];
        let mut p = seal(9, b"hello", &pad).unwrap();
        p[0] = 0x01;
        assert_eq!(open(&p, &pad), Err(ProtoError::NotV2));
    }

    #[test]
    fn weak_keys_are_refused_both_ways() {
        let mut pad = vec![0u8; pad_cost(3)];
        assert_eq!(seal(0, b"abc", &pad), Err(ProtoError::WeakKey));
        // Bits cleared by the clamp do not make a key strong; s does not either.
        pad[3 + 3] = 0xf0;
        pad[3 + 20] = 0xff;
        assert!(is_weak_key(&pad[3..]));
        assert_eq!(seal(0, b"abc", &pad), Err(ProtoError::WeakKey));
        // One bit of r that survives the clamp is enough.
        pad[3] = 1;
        let p = seal(0, b"abc", &pad).unwrap();
        assert_eq!(open(&p, &pad).unwrap(), b"abc");
        let mut zero = vec![0u8; pad_cost(3)];
        zero[..3].copy_from_slice(&pad[..3]);
        assert_eq!(open(&p, &zero), Err(ProtoError::WeakKey));
    }

    #[test]
    fn wrong_pad_length_is_an_error() {
        let pad = vec![7u8; pad_cost(5)];
        let p = seal(9, b"hello", &pad).unwrap();
        assert!(matches!(
            open(&p, &pad[1..]),
            Err(ProtoError::PadLength { .. })
        ));
    }
}
