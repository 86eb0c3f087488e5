//! The one error type of otc-proto.

use thiserror::Error;

/// Why a package could not be sealed or opened. Errors never carry pad
/// bytes, keys or plaintext.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ProtoError {
    #[error("index {0} does not fit in 48 bits")]
    IndexTooLarge(u64),
    #[error("pad slice is {got} bytes, this message needs exactly {expected}")]
    PadLength { expected: usize, got: usize },
    #[error("package is {len} bytes, shorter than the {min}-byte minimum")]
    PackageTooShort { len: usize, min: usize },
    #[error("package starts with byte {marker:#04x}, not the v3 marker 0x03")]
    NotV3 { marker: u8 },
    #[error("package failed authentication; nothing was released")]
    BadTag,
    #[error(
        "the pad's hash key is weak or its slice erased (v3 r zero after clamping, or a v1 HMAC key or body mask all zero); refused"
    )]
    WeakKey,
    #[error("unknown package format {0:?}; use v1 or v3")]
    UnknownFormat(String),
    #[error(
        "format v2 is withdrawn because a relay that knows one message can forge another; make a new pad (v3)"
    )]
    Withdrawn,
    #[error(
        "the package claims text at {text} (slot {slot}, {len} bytes) outside the sender's region"
    )]
    OutOfRegion { text: u64, slot: u32, len: u64 },
    #[error("slot {slot} was opened before: a replay")]
    Replayed { slot: u32 },
    #[error("the package's text at {text} overlaps a message opened before")]
    TextReused { text: u64 },
    #[error("no pad left to send with: the text and the tag masks have met")]
    Exhausted,
    #[error("a v3 region [{lo}, {hi}) must hold at least 32 bytes and end within 48 bits")]
    BadRegion { lo: u64, hi: u64 },
    #[error("invalid base64: {0}")]
    Base64(String),
}
