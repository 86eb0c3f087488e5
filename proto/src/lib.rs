//! otc-proto: the wire contract of One Time Chat.
//!
//! Modules: [`routes`] (the RPC route table), [`rpc`] (the device RPC
//! bodies), [`runrpc`] (the original client's `/runrpc` calls), [`relay`]
//! (the relay API of the original One Time Chat), and the package formats
//! as pure functions over pad slices: [`v3`] (the default: a Wegman–Carter
//! tag under a hash key `r` and per-slot masks `s_k` that are never text
//! masks) and [`v1`] (compatible with the original One Time Chat, HMAC
//! tag). No I/O, no allocation of pad copies that outlive a call,
//! constant-time tag comparison, and no plaintext released on a bad tag.
//! See `shared/spec/package-formats.md` for the byte layout.
//!
//! Format v2 is withdrawn: its key followed a text mask whose length the
//! package chose, so a relay that knew one message could forge another.
//! Nothing here makes or opens it; `"v2"` parses to
//! [`ProtoError::Withdrawn`], and a v2 package is refused by
//! [`v3::parse`] (its marker is 0x02).
//!
//! v1 functions take the pad bytes a message consumes *in consumption
//! order* (for v1 side B that is descending pad offsets; the pad store
//! reverses them before calling in here). v3 functions take the text mask,
//! `r` and `s_k` separately, each in increasing offset order.

pub mod b64;
pub mod error;
pub mod relay;
pub mod routes;
pub mod rpc;
pub mod runrpc;
pub mod v1;
pub mod v3;

pub use error::ProtoError;

use std::fmt;
use std::str::FromStr;

/// The largest index a package can carry (48 bits).
pub const MAX_INDEX: u64 = (1 << 48) - 1;

/// A package format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum Format {
    /// Original One Time Chat: `2n + 48` pad bytes, HMAC-SHA256 tag.
    V1,
    /// Default: `n + 16` pad bytes a message (plus 16 per side for `r`),
    /// Poly1305 as a Wegman–Carter one-time MAC.
    V3,
}

impl Format {
    /// Pad bytes a message of `message_len` bytes consumes.
    pub fn pad_cost(self, message_len: usize) -> usize {
        match self {
            Format::V1 => v1::pad_cost(message_len),
            Format::V3 => v3::pad_cost(message_len),
        }
    }

    /// Package bytes beyond the message.
    pub fn overhead(self) -> usize {
        match self {
            Format::V1 => v1::OVERHEAD,
            Format::V3 => v3::OVERHEAD,
        }
    }

    /// Length of the package for a message of `message_len` bytes.
    pub fn package_len(self, message_len: usize) -> usize {
        message_len.saturating_add(self.overhead())
    }

    /// Message length carried by a package of `package_len` bytes.
    pub fn message_len(self, package_len: usize) -> Result<usize, ProtoError> {
        let overhead = self.overhead();
        package_len
            .checked_sub(overhead)
            .ok_or(ProtoError::PackageTooShort {
                len: package_len,
                min: overhead,
            })
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::V1 => "v1",
            Format::V3 => "v3",
        })
    }
}

impl FromStr for Format {
    type Err = ProtoError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "v1" | "1" => Ok(Format::V1),
            "v3" | "3" => Ok(Format::V3),
            "v2" | "2" => Err(ProtoError::Withdrawn),
            other => Err(ProtoError::UnknownFormat(other.to_string())),
        }
    }
}

impl TryFrom<String> for Format {
    type Error = ProtoError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
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
