//! Fuzz target: opening untrusted packages.
//!
//! Input layout: byte 0 picks the format (bit 0: v1/v2) and the mode
//! (bit 1), bytes 1..3 the message length the pad is cut for, the rest is
//! split into pad and package (or message).
//!
//! Mode 0 (untrusted package): opening must never panic; when it succeeds,
//! sealing the result again with the same pad and index must reproduce the
//! package exactly (so nothing but a genuine package can open).
//! Mode 1 (seal, then tamper): a sealed message must open to itself, and the
//! same package with one fuzzer-chosen bit flipped must be rejected.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otc_proto::Format;

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let format = if data[0] % 2 == 0 {
        Format::V1
    } else {
        Format::V2
    };
    let n = u16::from_le_bytes([data[1], data[2]]) as usize % 512;
    let rest = &data[3..];
    let cost = format.pad_cost(n).min(rest.len());
    let (pad, package) = rest.split_at(cost);
    if data[0] & 2 != 0 {
        let message = package;
        let Ok(sealed) = format.seal(n as u64, &message[..n.min(message.len())], pad) else {
            return;
        };
        let opened = format.open(&sealed, pad).expect("a sealed package opens");
        assert_eq!(opened, &message[..n.min(message.len())]);
        let bit = usize::from(data[1]) * 256 + usize::from(data[2]);
        let mut bad = sealed.clone();
        let at = bit % (bad.len() * 8);
        bad[at / 8] ^= 1 << (at % 8);
        match format.open(&bad, pad) {
            Err(_) => {}
            // v2's guarantee is probabilistic over a *random* key (forgery
            // chance 8*ceil(L/16)/2^106); a fuzzer picks the key, so it can
            // build genuine Poly1305 collisions. Those must still be
            // consistent: the tag really is valid for what was released.
            Ok(m) if format == Format::V2 => {
                let index = format.read_index(&bad).expect("index");
                assert_eq!(format.seal(index, &m, pad).expect("re-seal"), bad);
            }
            Ok(_) => panic!("a flipped bit was accepted by v1's HMAC"),
        }
        return;
    }
    let _ = format.read_index(package);
    let _ = format.message_len(package.len());
    if let Ok(message) = format.open(package, pad) {
        let index = format
            .read_index(package)
            .expect("opened packages have an index");
        let again = format.seal(index, &message, pad).expect("re-seal");
        assert_eq!(
            again, package,
            "an opened package must be exactly what seal makes"
        );
    }
});
