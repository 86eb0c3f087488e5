//! Fuzz target: opening untrusted packages, v1 and v3.
//!
//! Input layout: byte 0 picks the format (bit 0: v1/v3) and the mode
//! (bit 1), bytes 1..3 the message length the pad is cut for, the rest is
//! split into pad and package (or message). For v3 the pad's first 32
//! bytes are `r` and `s`, the rest the text mask; the package is also run
//! through a receiver's checks against a region built from the input.
//!
//! Mode 0 (untrusted package): opening must never panic; when it succeeds,
//! sealing the result again with the same pad and head must reproduce the
//! package exactly (so nothing but a genuine package can open).
//! Mode 1 (seal, then tamper): a sealed message must open to itself, and the
//! same package with one fuzzer-chosen bit flipped must be refused.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otc_proto::v3::{self, Received, Region};
use otc_proto::v1;

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let n = u16::from_le_bytes([data[1], data[2]]) as usize % 512;
    let bit = usize::from(data[1]) * 256 + usize::from(data[2]);
    let rest = &data[3..];
    if data[0] % 2 == 0 {
        fuzz_v1(data[0] & 2 != 0, n, bit, rest);
    } else {
        fuzz_v3(data[0] & 2 != 0, n, bit, rest);
    }
});

fn fuzz_v1(tamper: bool, n: usize, bit: usize, rest: &[u8]) {
    let cost = v1::pad_cost(n).min(rest.len());
    let (pad, package) = rest.split_at(cost);
    if tamper {
        let message = &package[..n.min(package.len())];
        let Ok(sealed) = v1::seal(n as u64, message, pad) else {
            return;
        };
        assert_eq!(v1::open(&sealed, pad).expect("a sealed package opens"), message);
        let mut bad = sealed.clone();
        let at = bit % (bad.len() * 8);
        bad[at / 8] ^= 1 << (at % 8);
        assert!(v1::open(&bad, pad).is_err(), "a flipped bit was accepted by v1's HMAC");
        assert!(v1::verify(&bad, pad).is_err());
        return;
    }
    let _ = v1::read_index(package);
    let verified = v1::verify(package, pad).is_ok();
    if let Ok(message) = v1::open(package, pad) {
        assert!(verified, "open accepted what verify refused");
        let index = v1::read_index(package).expect("opened packages have an index");
        let again = v1::seal(index, &message, pad).expect("re-seal");
        assert_eq!(again, package, "an opened package must be exactly what seal makes");
    }
}

fn fuzz_v3(tamper: bool, n: usize, bit: usize, rest: &[u8]) {
    if rest.len() < 32 {
        return;
    }
    let (keys, rest) = rest.split_at(32);
    let r: [u8; 16] = keys[..16].try_into().expect("16 bytes");
    let s: [u8; 16] = keys[16..].try_into().expect("16 bytes");
    let cut = n.min(rest.len());
    let (text, package) = rest.split_at(cut);
    if tamper {
        let message = &package[..cut.min(package.len())];
        let text = &text[..message.len()];
        let head = v3::Head { text: bit as u64, slot: n as u32 };
        let Ok(sealed) = v3::seal(head, message, text, &r, &s) else {
            assert!(v3::is_weak_r(&r));
            return;
        };
        assert_eq!(v3::open(&sealed, text, &r, &s).expect("a sealed package opens"), message);
        let mut bad = sealed.clone();
        let at = bit % (bad.len() * 8);
        bad[at / 8] ^= 1 << (at % 8);
        match v3::open(&bad, text, &r, &s) {
            Err(_) => {}
            // The guarantee is probabilistic over a *random* r and s; a
            // fuzzer picks them, so it can build real Poly1305 collisions.
            // Those must still be consistent: the tag is valid for what
            // was released under the head the package claims.
            Ok(m) => {
                let head = v3::parse(&bad).expect("parsed").head;
                assert_eq!(v3::seal(head, &m, text, &r, &s).expect("re-seal"), bad);
            }
        }
        return;
    }
    // Untrusted package: the receiver's checks never panic, and whatever
    // opens re-seals to itself.
    let lo = u64::from(keys[0]) * 16;
    if let Ok(region) = Region::new(lo, lo + 64 + (bit as u64 % 4096)) {
        let mut rx = Received::default();
        if let Ok(claim) = rx.check(region, package) {
            assert!(region.fits(claim.head, claim.len));
            rx.record(&claim);
            assert!(rx.check(region, package).is_err(), "a recorded slot passed again");
        }
    }
    let n = package.len().saturating_sub(v3::OVERHEAD);
    if n > text.len() {
        let _ = v3::verify(package, &r, &s);
        return;
    }
    if let Ok(message) = v3::open(package, &text[..n], &r, &s) {
        let head = v3::parse(package).expect("opened packages parse").head;
        let again = v3::seal(head, &message, &text[..n], &r, &s).expect("re-seal");
        assert_eq!(again, package, "an opened package must be exactly what seal makes");
    }
}
