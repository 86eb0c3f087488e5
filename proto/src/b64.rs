//! Transport encoding: standard base64 with padding (RPC, relay).

use crate::ProtoError;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// Encode bytes as standard padded base64.
pub fn encode(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Decode standard padded base64; anything else is an error.
pub fn decode(text: &str) -> Result<Vec<u8>, ProtoError> {
    STANDARD
        .decode(text)
        .map_err(|e| ProtoError::Base64(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects() {
        assert_eq!(encode(b"hello"), "aGVsbG8=");
        assert_eq!(decode("aGVsbG8=").unwrap(), b"hello");
        assert!(decode("aGVsbG8").is_err(), "missing padding");
        assert!(decode("aGVs bG8=").is_err(), "whitespace");
        assert!(decode("aGVsbG8_").is_err(), "url-safe alphabet");
    }
}
