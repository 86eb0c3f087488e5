//! Fuzz target: opening untrusted packages.
//!
//! Input layout: byte 0 picks the format (even = v1, odd = v2), byte 1..3
//! the message length the pad is cut for, the rest is split into pad and
//! package. Opening must never panic; when it succeeds, sealing the result
//! again with the same pad and index must reproduce the package exactly
//! (so nothing but a genuine package can open).
#![no_main]

use libfuzzer_sys::fuzz_target;
use otc_proto::Format;

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let format = if data[0] % 2 == 0 { Format::V1 } else { Format::V2 };
    let n = u16::from_le_bytes([data[1], data[2]]) as usize % 512;
    let rest = &data[3..];
    let cost = format.pad_cost(n).min(rest.len());
    let (pad, package) = rest.split_at(cost);
    let _ = format.read_index(package);
    let _ = format.message_len(package.len());
    if let Ok(message) = format.open(package, pad) {
        let index = format.read_index(package).expect("opened packages have an index");
        let again = format.seal(index, &message, pad).expect("re-seal");
        assert_eq!(again, package, "an opened package must be exactly what seal makes");
    }
});
