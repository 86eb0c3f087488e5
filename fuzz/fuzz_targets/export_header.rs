//! Fuzz target: the export file header (untrusted: it arrives on removable
//! media). Decoding must never panic; whatever decodes must re-encode to
//! the same bytes and describe a pad the store accepts.
//!
//! Byte 0 picks the mode: raw bytes (exercises the magic and checksum
//! checks) or bytes with a valid header checksum patched in (exercises the
//! field checks behind it).
#![no_main]

use libfuzzer_sys::fuzz_target;
use otc_device::pad::export::{ExportHeader, HEADER_LEN};
use sha2::{Digest, Sha256};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut bytes = rest.to_vec();
    if mode & 1 == 1 && bytes.len() >= HEADER_LEN as usize {
        bytes[0..6].copy_from_slice(b"OTCPAD");
        let sum = Sha256::digest(&bytes[0..64]);
        bytes[64..96].copy_from_slice(&sum);
    }
    if let Ok(h) = ExportHeader::decode(&bytes) {
        assert_eq!(&h.encode()[..], &bytes[..HEADER_LEN as usize]);
        assert!(h.split > 0 && h.split < h.size);
        // v2 is withdrawn: never decoded; a v3 side holds r and a slot.
        assert_ne!(bytes[25], 2);
        if h.format == otc_proto::Format::V3 {
            assert!(h.split >= 32 && h.size - h.split >= 32);
        }
        assert!(h.file_len() > h.size);
    }
});
