//! Format v1: byte-compatible with the original One Time Chat.
//!
//! Pad consumption order: `p_text` (n) || `p_body` (n + 32) || `p_key` (16).
//!
//! ```text
//! i       = index as 6 bytes little-endian
//! ct      = m ^ p_text
//! tag     = HMAC-SHA256(key = p_key, data = i || ct)
//! package = i || ((ct || tag) ^ p_body)          (n + 38 bytes)
//! ```
//!
//! The HMAC tag is only computationally secure; v1 exists for pads made by
//! the original tool. New pads use [`crate::v3`].
//!
//! [`verify`] checks a package's tag without releasing the message, so the
//! device refuses a forgery before any prompt (it reads `p_body` and
//! `p_key`, spends nothing, and never touches `p_text`).
//!
//! # Erased pad is refused
//!
//! The device zeroes pad bytes after use. A v1 seal over zeros would send
//! the message in clear under a known HMAC key, and an open over zeros
//! would accept a package anyone can forge. So both refuse with
//! [`ProtoError::WeakKey`] when `p_key` (16 bytes) or `p_body` (at least 32
//! bytes) is all zeros; a random pad does that with probability 2^-128 at
//! most. `p_text` alone is not checked: for a one-byte message it is zero
//! one time in 256 by chance, and it cannot be zero on an erased pad
//! without `p_body` being zero too. The check ORs every byte (no early
//! exit), so its time does not depend on where a non-zero byte sits.

use crate::{ProtoError, check_pad, index_bytes, index_from_bytes, xor_in_place, xor_into};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

/// Package bytes beyond the message: 6 (index) + 32 (tag).
pub const OVERHEAD: usize = 38;
const INDEX_LEN: usize = 6;
const TAG_LEN: usize = 32;
const KEY_LEN: usize = 16;

/// Pad bytes a v1 message of `n` bytes consumes: `2n + 48`.
pub fn pad_cost(n: usize) -> usize {
    n.saturating_mul(2).saturating_add(TAG_LEN + KEY_LEN)
}

/// Whether every byte of `b` is zero (no early exit).
fn all_zero(b: &[u8]) -> bool {
    b.iter().fold(0u8, |acc, &x| acc | x) == 0
}

/// Whether the pad slice for a message of `n` bytes (consumption order)
/// would be refused as erased: its body mask or its HMAC key is all zeros.
/// A slice of the wrong length is not judged here (`false`).
pub fn is_weak_pad(pad: &[u8], n: usize) -> bool {
    if pad.len() != pad_cost(n) {
        return false;
    }
    let (p_body, p_key) = pad[n..].split_at(n + TAG_LEN);
    all_zero(p_key) | all_zero(p_body)
}

/// Refuse an erased or degenerate pad slice (see the module docs).
fn check_not_erased(p_body: &[u8], p_key: &[u8]) -> Result<(), ProtoError> {
    if all_zero(p_key) | all_zero(p_body) {
        return Err(ProtoError::WeakKey);
    }
    Ok(())
}

fn tag(key: &[u8], index: &[u8], ct: &[u8]) -> [u8; TAG_LEN] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(index);
    mac.update(ct);
    mac.finalize().into_bytes().into()
}

/// The index a v1 package claims.
pub fn read_index(package: &[u8]) -> Result<u64, ProtoError> {
    if package.len() < OVERHEAD {
        return Err(ProtoError::PackageTooShort {
            len: package.len(),
            min: OVERHEAD,
        });
    }
    Ok(index_from_bytes(package))
}

/// Seal `message` at `index` with `pad` (`2n + 48` bytes, consumption order).
pub fn seal(index: u64, message: &[u8], pad: &[u8]) -> Result<Vec<u8>, ProtoError> {
    let n = message.len();
    check_pad(pad_cost(n), pad.len())?;
    let i = index_bytes(index)?;
    let (p_text, rest) = pad.split_at(n);
    let (p_body, p_key) = rest.split_at(n + TAG_LEN);
    check_not_erased(p_body, p_key)?;

    let mut out = Vec::with_capacity(n + OVERHEAD);
    out.extend_from_slice(&i);
    out.resize(INDEX_LEN + n, 0);
    xor_into(&mut out[INDEX_LEN..], message, p_text);
    let t = tag(p_key, &i, &out[INDEX_LEN..]);
    out.extend_from_slice(&t);
    xor_in_place(&mut out[INDEX_LEN..], p_body);
    Ok(out)
}

/// Check a v1 `package`'s tag with `pad` (`2n + 48` bytes, consumption
/// order) and release nothing: [`ProtoError::BadTag`] on a wrong tag. The
/// text mask `p_text` is not used, so it may be given as anything (zeros).
pub fn verify(package: &[u8], pad: &[u8]) -> Result<(), ProtoError> {
    let mut inner = open_masked(package, pad)?;
    inner.zeroize();
    Ok(())
}

/// Open a v1 `package` with `pad` (`2n + 48` bytes, consumption order).
/// Returns [`ProtoError::BadTag`] and releases nothing if the tag is wrong.
pub fn open(package: &[u8], pad: &[u8]) -> Result<Vec<u8>, ProtoError> {
    let mut message = open_masked(package, pad)?;
    let n = message.len();
    xor_in_place(&mut message, &pad[..n]);
    Ok(message)
}

/// The verified ciphertext `ct` (still masked by `p_text`).
fn open_masked(package: &[u8], pad: &[u8]) -> Result<Vec<u8>, ProtoError> {
    read_index(package)?;
    let n = package.len() - OVERHEAD;
    check_pad(pad_cost(n), pad.len())?;
    let (p_body, p_key) = pad[n..].split_at(n + TAG_LEN);
    check_not_erased(p_body, p_key)?;
    let (i, body) = package.split_at(INDEX_LEN);

    // ct = body ^ p_body, recovered straight into the output buffer; the
    // claimed tag on the stack. Both are pad-derived: wiped on failure.
    let mut message = vec![0u8; n];
    xor_into(&mut message, &body[..n], &p_body[..n]);
    let mut claimed = Zeroizing::new([0u8; TAG_LEN]);
    xor_into(&mut claimed[..], &body[n..], &p_body[n..]);
    let expected = Zeroizing::new(tag(p_key, i, &message));
    if !bool::from(expected.ct_eq(&claimed[..])) {
        message.zeroize();
        return Err(ProtoError::BadTag);
    }
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(pad_cost(0), 48);
        assert_eq!(pad_cost(100), 248);
        let pad = vec![7u8; pad_cost(5)];
        assert_eq!(seal(1, b"hello", &pad).unwrap().len(), 5 + OVERHEAD);
    }

    #[test]
    fn wrong_pad_length_is_an_error() {
        let pad = vec![0u8; pad_cost(5) - 1];
        assert_eq!(
            seal(0, b"hello", &pad),
            Err(ProtoError::PadLength {
                expected: 58,
                got: 57
            })
        );
    }

    #[test]
    fn index_over_48_bits_is_an_error() {
        let pad = vec![0u8; pad_cost(1)];
        assert_eq!(
            seal(1 << 48, b"x", &pad),
            Err(ProtoError::IndexTooLarge(1 << 48))
        );
    }

    #[test]
    fn erased_pad_is_refused_for_seal_and_open() {
        for n in [0usize, 1, 5, 100] {
            let msg = vec![0x41u8; n];
            let zero = vec![0u8; pad_cost(n)];
            assert_eq!(seal(3, &msg, &zero), Err(ProtoError::WeakKey), "seal n={n}");
            let good = vec![9u8; pad_cost(n)];
            let package = seal(3, &msg, &good).unwrap();
            assert_eq!(
                open(&package, &zero),
                Err(ProtoError::WeakKey),
                "open n={n}"
            );
            // Only the key erased (the rest intact): still refused.
            let mut key_gone = good.clone();
            let len = key_gone.len();
            key_gone[len - KEY_LEN..].fill(0);
            assert_eq!(seal(3, &msg, &key_gone), Err(ProtoError::WeakKey));
            assert_eq!(open(&package, &key_gone), Err(ProtoError::WeakKey));
            // Only the body mask erased: refused.
            let mut body_gone = good.clone();
            body_gone[n..2 * n + TAG_LEN].fill(0);
            assert_eq!(seal(3, &msg, &body_gone), Err(ProtoError::WeakKey));
            assert_eq!(open(&package, &body_gone), Err(ProtoError::WeakKey));
        }
        // p_text alone being zero is a legitimate chance event: sealing works.
        let mut pad = vec![9u8; pad_cost(1)];
        pad[0] = 0;
        let package = seal(0, b"x", &pad).unwrap();
        assert_eq!(open(&package, &pad).unwrap(), b"x");
    }

    #[test]
    fn short_package_is_an_error() {
        assert!(matches!(
            open(&[0u8; 37], &[]),
            Err(ProtoError::PackageTooShort { len: 37, min: 38 })
        ));
    }

    #[test]
    fn verify_needs_no_text_mask_and_refuses_a_changed_byte() {
        let pad: Vec<u8> = (0..pad_cost(9)).map(|i| (i * 7 + 1) as u8).collect();
        let package = seal(40, b"verify me", &pad).unwrap();
        let mut no_text = pad.clone();
        no_text[..9].fill(0);
        assert_eq!(verify(&package, &no_text), Ok(()));
        for i in 0..package.len() {
            let mut bad = package.clone();
            bad[i] ^= 0x40;
            assert_eq!(verify(&bad, &pad), Err(ProtoError::BadTag), "byte {i}");
        }
        assert_eq!(open(&package, &pad).unwrap(), b"verify me");
    }
}
