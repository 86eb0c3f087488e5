//! Fuzz target: the original tool's JSON metadata. Parsing must never
//! panic, and anything accepted must be self-consistent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otc_device::pad::Side;
use otc_device::pad::legacy::parse_metadata;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(m) = parse_metadata(text) {
        assert!(m.split > 0 && m.split < m.n_bytes);
        let region = match m.side {
            Side::A => m.split,
            Side::B => m.n_bytes - m.split,
        };
        assert!(m.used() <= region);
    }
});
