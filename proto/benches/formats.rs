//! Seal + open of v1 and v3 packages next to the bare primitives over the
//! same bytes, so the framing overhead shows as a ratio
//! (`make bench-report` prints it).
//!
//! "bare" = what any implementation must do at least: XOR the message with
//! the pad and run the MAC over the same bytes, in preallocated buffers, for
//! one seal and one open. "framed" = `seal` then `open` of the format's
//! module (v3: the text mask, `r` and `s_k` given as the pad store reads
//! them).

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hmac::{Hmac, Mac};
use otc_proto::{Format, v1, v3};
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

fn bare_v3(msg: &[u8], pad: &[u8], buf: &mut [u8], back: &mut [u8]) -> bool {
    let n = msg.len();
    // seal: ct into buf[11..], tag over buf under r || s (the pad's last 32)
    xor(&mut buf[11..11 + n], msg, &pad[..n]);
    let key = poly1305::Key::from_slice(&pad[n..n + 32]);
    let t1 = Poly1305::new(key).compute_unpadded(&buf[..11 + n]);
    // open: tag again over the same bytes, XOR back
    let t2 = Poly1305::new(key).compute_unpadded(&buf[..11 + n]);
    xor(back, &buf[11..11 + n], &pad[..n]);
    t1 == t2
}

/// The format's own seal then open. For v3, `pad` is the text mask
/// followed by `r` and `s` (the pad store reads them from three places).
fn framed(format: Format, msg: &[u8], pad: &[u8]) -> Vec<u8> {
    let n = msg.len();
    match format {
        Format::V1 => {
            let p = v1::seal(black_box(12345), black_box(msg), black_box(pad)).expect("seal");
            v1::open(black_box(&p), black_box(pad)).expect("open")
        }
        Format::V3 => {
            let r: &[u8; 16] = pad[n..n + 16].try_into().expect("r");
            let s: &[u8; 16] = pad[n + 16..n + 32].try_into().expect("s");
            let head = v3::Head {
                text: 12345,
                slot: 7,
            };
            let p = v3::seal(head, black_box(msg), black_box(&pad[..n]), r, s).expect("seal");
            v3::open(black_box(&p), black_box(&pad[..n]), r, s).expect("open")
        }
    }
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
    for format in [Format::V1, Format::V3] {
        let mut group = c.benchmark_group(format!("{format}"));
        for n in SIZES {
            let msg = pad_for(n + 1)[1..].to_vec();
            // v3: the text mask, then r and s (32 bytes; r survives the clamp).
            let pad = pad_for(match format {
                Format::V1 => format.pad_cost(n),
                Format::V3 => n + 32,
            });
            group.throughput(Throughput::Bytes(n as u64));
            group.bench_with_input(BenchmarkId::new("framed", n), &n, |b, _| {
                b.iter(|| black_box(framed(format, &msg, &pad)))
            });
            let mut buf = vec![0u8; format.package_len(n)];
            let mut back = vec![0u8; n];
            group.bench_with_input(BenchmarkId::new("bare", n), &n, |b, _| {
                b.iter(|| {
                    let ok = match format {
                        Format::V1 => {
                            bare_v1(black_box(&msg), black_box(&pad), &mut buf, &mut back)
                        }
                        Format::V3 => {
                            bare_v3(black_box(&msg), black_box(&pad), &mut buf, &mut back)
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
