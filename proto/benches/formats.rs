//! Seal + open of v1 and v2 packages next to the bare primitives over the
//! same bytes, so the framing overhead shows as a ratio
//! (`make bench-report` prints it).
//!
//! "bare" = what any implementation must do at least: XOR the message with
//! the pad and run the MAC over the same bytes, in preallocated buffers, for
//! one seal and one open. "framed" = `Format::seal` then `Format::open`.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hmac::{Hmac, Mac};
use otc_proto::Format;
use poly1305::Poly1305;
use poly1305::universal_hash::KeyInit;
use sha2::Sha256;
use std::hint::black_box;

const SIZES: [usize; 3] = [100, 4 * 1024, 64 * 1024];

fn pad_for(len: usize) -> Vec<u8> {
    // Deterministic filler; the content does not matter for speed.
    (0..len)
        .map(|i| (i as u8).wrapping_mul(167).wrapping_add(13))
        .collect()
}

fn xor(out: &mut [u8], a: &[u8], b: &[u8]) {
    for ((o, x), y) in out.iter_mut().zip(a).zip(b) {
        *o = x ^ y;
    }
}

fn bare_v2(msg: &[u8], pad: &[u8], buf: &mut [u8], back: &mut [u8]) -> bool {
    let n = msg.len();
    // seal: ct into buf[7..], tag over buf
    xor(&mut buf[7..7 + n], msg, &pad[..n]);
    let key = poly1305::Key::from_slice(&pad[n..n + 32]);
    let t1 = Poly1305::new(key).compute_unpadded(&buf[..7 + n]);
    // open: tag again over the same bytes, XOR back
    let t2 = Poly1305::new(key).compute_unpadded(&buf[..7 + n]);
    xor(back, &buf[7..7 + n], &pad[..n]);
    t1 == t2
}

fn bare_v1(msg: &[u8], pad: &[u8], buf: &mut [u8], back: &mut [u8]) -> bool {
    let n = msg.len();
    let (p_text, rest) = pad.split_at(n);
    let (p_body, p_key) = rest.split_at(n + 32);
    // seal: ct, HMAC over i || ct, then XOR ct || tag with p_body
    xor(&mut buf[6..6 + n], msg, p_text);
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(p_key).expect("any key length");
    mac.update(&buf[..6 + n]);
    let t1 = mac.finalize().into_bytes();
    buf[6 + n..6 + n + 32].copy_from_slice(&t1);
    for (b, p) in buf[6..].iter_mut().zip(p_body) {
        *b ^= p;
    }
    // open: XOR back with p_body, HMAC again, XOR with p_text
    for (b, p) in buf[6..].iter_mut().zip(p_body) {
        *b ^= p;
    }
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(p_key).expect("any key length");
    mac.update(&buf[..6 + n]);
    let t2 = mac.finalize().into_bytes();
    xor(back, &buf[6..6 + n], p_text);
    t1 == t2
}

fn formats(c: &mut Criterion) {
    for format in [Format::V1, Format::V2] {
        let mut group = c.benchmark_group(format!("{format}"));
        for n in SIZES {
            let msg = pad_for(n + 1)[1..].to_vec();
            let pad = pad_for(format.pad_cost(n));
            group.throughput(Throughput::Bytes(n as u64));
            group.bench_with_input(BenchmarkId::new("framed", n), &n, |b, _| {
                b.iter(|| {
                    let p = format
                        .seal(black_box(12345), black_box(&msg), black_box(&pad))
                        .expect("seal");
                    let m = format.open(black_box(&p), black_box(&pad)).expect("open");
                    black_box(m)
                })
            });
            let mut buf = vec![0u8; format.package_len(n)];
            let mut back = vec![0u8; n];
            group.bench_with_input(BenchmarkId::new("bare", n), &n, |b, _| {
                b.iter(|| {
                    let ok = match format {
                        Format::V1 => {
                            bare_v1(black_box(&msg), black_box(&pad), &mut buf, &mut back)
                        }
                        Format::V2 => {
                            bare_v2(black_box(&msg), black_box(&pad), &mut buf, &mut back)
                        }
                    };
                    assert!(ok);
                    black_box(&back);
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, formats);
criterion_main!(benches);
