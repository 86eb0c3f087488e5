//! Fuzz target: size strings from the command line.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(v) = otc_device::pad::size::parse_size(s) {
            assert!(v > 0);
        }
    }
});
