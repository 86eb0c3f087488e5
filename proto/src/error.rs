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
    #[error("package does not start with the v2 marker byte 0x02")]
    NotV2,
    #[error("package failed authentication; nothing was released")]
    BadTag,
    #[error(
        "the pad slice is erased or degenerate (a one-time key of zeros: v2 r = 0, v1 HMAC key or body mask all zero); refused"
    )]
    WeakKey,
    #[error("unknown package format {0:?}; use v1 or v2")]
    UnknownFormat(String),
    #[error("invalid base64: {0}")]
    Base64(String),
}
