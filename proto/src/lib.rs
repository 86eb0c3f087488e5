//! otc-proto: the wire contract of One Time Chat.
//!
//! Modules: [`routes`] (the RPC route table), [`rpc`] (the device RPC
//! bodies), [`runrpc`] (the original client's `/runrpc` calls), [`relay`] (the relay API of the original One Time Chat), and
//! package formats v1 (compatible with the original One Time Chat, HMAC tag)
//! and v2 (Poly1305 one-time authenticator, the default) as pure functions
//! over pad slices: no I/O, no allocation of pad copies that outlive a call,
//! constant-time tag comparison, and no plaintext released on a bad tag.
//! See `shared/spec/package-formats.md` for the byte layout.
//!
//! Every `pad` argument holds exactly the bytes a message consumes, *in
//! consumption order* (for v1 side B that is descending pad offsets; the pad
//! store reverses them before calling in here).

pub mod b64;
pub mod error;
pub mod relay;
pub mod routes;
pub mod rpc;
pub mod runrpc;
pub mod v1;
pub mod v2;

pub use error::ProtoError;

use std::fmt;
use std::str::FromStr;

/// The largest index a package can carry (48 bits).
pub const MAX_INDEX: u64 = (1 << 48) - 1;

/// A package format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Original One Time Chat: `2n + 48` pad bytes, HMAC-SHA256 tag.
    V1,
    /// Default: `n + 32` pad bytes, Poly1305 one-time MAC.
    V2,
}

impl Format {
    /// Pad bytes a message of `message_len` bytes consumes.
    pub fn pad_cost(self, message_len: usize) -> usize {
        match self {
            Format::V1 => v1::pad_cost(message_len),
            Format::V2 => v2::pad_cost(message_len),
        }
    }

    /// Length of the package for a message of `message_len` bytes.
    pub fn package_len(self, message_len: usize) -> usize {
        match self {
            Format::V1 => message_len + v1::OVERHEAD,
            Format::V2 => message_len + v2::OVERHEAD,
        }
    }

    /// Message length carried by a package of `package_len` bytes.
    pub fn message_len(self, package_len: usize) -> Result<usize, ProtoError> {
        let overhead = match self {
            Format::V1 => v1::OVERHEAD,
            Format::V2 => v2::OVERHEAD,
        };
        package_len
            .checked_sub(overhead)
            .ok_or(ProtoError::PackageTooShort {
                len: package_len,
                min: overhead,
            })
    }

    /// The pad index a package claims (not authenticated until opened).
    pub fn read_index(self, package: &[u8]) -> Result<u64, ProtoError> {
        match self {
            Format::V1 => v1::read_index(package),
            Format::V2 => v2::read_index(package),
        }
    }

    /// Seal `message` at `index` with `pad` (consumption order).
    pub fn seal(self, index: u64, message: &[u8], pad: &[u8]) -> Result<Vec<u8>, ProtoError> {
        match self {
            Format::V1 => v1::seal(index, message, pad),
            Format::V2 => v2::seal(index, message, pad),
        }
    }

    /// Open `package` with `pad` (consumption order). On a bad tag nothing
    /// of the plaintext is released.
    pub fn open(self, package: &[u8], pad: &[u8]) -> Result<Vec<u8>, ProtoError> {
        match self {
            Format::V1 => v1::open(package, pad),
            Format::V2 => v2::open(package, pad),
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::V1 => "v1",
            Format::V2 => "v2",
        })
    }
}

impl FromStr for Format {
    type Err = ProtoError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "v1" | "1" => Ok(Format::V1),
            "v2" | "2" => Ok(Format::V2),
            other => Err(ProtoError::UnknownFormat(other.to_string())),
        }
    }
}

/// 48-bit little-endian index bytes.
pub(crate) fn index_bytes(index: u64) -> Result<[u8; 6], ProtoError> {
    if index > MAX_INDEX {
        return Err(ProtoError::IndexTooLarge(index));
    }
    let le = index.to_le_bytes();
    Ok([le[0], le[1], le[2], le[3], le[4], le[5]])
}

pub(crate) fn index_from_bytes(b: &[u8]) -> u64 {
    let mut le = [0u8; 8];
    le[..6].copy_from_slice(&b[..6]);
    u64::from_le_bytes(le)
}

pub(crate) fn check_pad(expected: usize, got: usize) -> Result<(), ProtoError> {
    if expected == got {
        Ok(())
    } else {
        Err(ProtoError::PadLength { expected, got })
    }
}

/// `out[i] = a[i] ^ b[i]` for the common length.
pub(crate) fn xor_into(out: &mut [u8], a: &[u8], b: &[u8]) {
    for ((o, x), y) in out.iter_mut().zip(a).zip(b) {
        *o = x ^ y;
    }
}

/// `buf[i] ^= pad[i]`.
pub(crate) fn xor_in_place(buf: &mut [u8], pad: &[u8]) {
    for (o, p) in buf.iter_mut().zip(pad) {
        *o ^= p;
    }
}
