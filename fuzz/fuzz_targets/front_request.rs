//! Fuzz target: everything the device's RPC front layer reads from a
//! client before the handler sees it (`otc_device::front::fuzzing`): request
//! heads (through `httparse`), Host and Origin, the body's framing
//! (Content-Length or chunked, chunk sizes through `httparse`), chunked
//! bodies and their trailers, keep-alive, one connection's requests one
//! after another. The first byte says how many bytes arrive at a time, so
//! reads that split a CRLF, a chunk size or a head are fuzzed too.
//!
//! Nothing may panic, and what is read must make sense: it must not depend
//! on how the bytes arrived; every body is within the limit; every request
//! passed on has a path and an upper-case method; every refusal is a
//! complete reply with its canonical reason; only the last request may
//! close the connection, and a refusal always does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otc_device::front::fuzzing::{Outcome, requests, settings};

fuzz_target!(|data: &[u8]| {
    let Some((&first, bytes)) = data.split_first() else {
        return;
    };
    let set = settings();
    let piece = usize::from(first % 16) + 1;
    let outcomes = requests(bytes, piece, &set);
    assert_eq!(
        outcomes,
        requests(bytes, usize::MAX, &set),
        "the outcome depends on how the bytes arrived ({piece} at a time)"
    );
    for (i, o) in outcomes.iter().enumerate() {
        let last = i + 1 == outcomes.len();
        match o {
            Outcome::Request {
                method,
                target,
                body,
                keep_alive,
            } => {
                assert!(body.len() <= set.max_body_bytes);
                assert!(target.starts_with('/'));
                assert!(!method.is_empty() && method.bytes().all(|b| b.is_ascii_uppercase()));
                assert!(*keep_alive || last, "read on after a request that closes");
            }
            Outcome::Refused { status, reply } => {
                assert!(last, "read on after a refusal");
                assert!(matches!(status, 400 | 403 | 408 | 413 | 415 | 421), "{status}");
                let text = String::from_utf8_lossy(reply);
                let line = text.split("\r\n").next().unwrap_or_default();
                let reason = line.splitn(3, ' ').nth(2).unwrap_or_default();
                assert!(!reason.is_empty(), "no reason phrase: {line:?}");
                assert!(text.contains("\r\nConnection: close\r\n"), "{text}");
            }
        }
    }
});
