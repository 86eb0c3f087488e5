//! Issue #16, knot 3: the front layer reads HTTP/1.1 as the relay does and
//! as RFC 9112 says, over real sockets to a running device. A line that
//! ends with a bare LF, a chunk size that is not hex digits (`+5`, `0x5`,
//! ` 5`, none), and a chunk not followed by exactly CRLF are each refused
//! `bad_request` before anything reaches the handler; the same requests
//! written properly are served. (Where two parsers on a request's way read
//! such bytes differently, requests can be smuggled past one of them.)

mod common;

use common::device::*;
use otc_proto::Format;
use serde_json::json;

const PUT_CHUNKED: &str = "PUT /v1/cursor/r HTTP/1.1\r\nHost: device\r\n\
     Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";

#[test]
fn bare_lf_in_a_head_is_refused() {
    let d = dirs(&[pad("bob", "alice", Format::V2, 16 * 1024)]);
    let alice = Dev::start(&d.alice, "Alice", limits());
    let ok = raw(
        alice.addr,
        b"GET /v1/status HTTP/1.1\r\nHost: device\r\nConnection: close\r\n\r\n",
        b"",
    );
    assert_eq!(ok.status, 200, "{}", ok.body);
    for head in [
        &b"GET /v1/status HTTP/1.1\nHost: device\nConnection: close\n\n"[..],
        b"GET /v1/status HTTP/1.1\r\nHost: device\nConnection: close\r\n\r\n",
        b"GET /v1/status HTTP/1.1\r\nHost: device\r\nConnection: close\r\n\n",
        b"\nGET /v1/status HTTP/1.1\r\nHost: device\r\nConnection: close\r\n\r\n",
    ] {
        raw(alice.addr, head, b"").expect_error(400, "bad_request");
    }
}

#[test]
fn chunk_sizes_are_hex_digits_and_chunks_end_with_crlf() {
    let d = dirs(&[pad("bob", "alice", Format::V2, 16 * 1024)]);
    let alice = Dev::start(&d.alice, "Alice", limits());
    let put = |body: &[u8]| raw(alice.addr, PUT_CHUNKED.as_bytes(), body);
    // Written properly (an extension and whitespace before it are allowed).
    let r = put(b"5\r\n{\"cur\r\n8 ;x=y\r\nsor\": 9}\r\n0\r\n\r\n");
    assert_eq!(r.json(), json!({"cursor": 9}), "{}", r.body);
    for body in [
        &b"+5\r\n{\"cur\r\n9\r\nsor\": 10}\r\n0\r\n\r\n"[..],
        b"0x5\r\n{\"cur\r\n9\r\nsor\": 10}\r\n0\r\n\r\n",
        b" 5\r\n{\"cur\r\n9\r\nsor\": 10}\r\n0\r\n\r\n",
        b"\r\n{\"cur\r\n9\r\nsor\": 10}\r\n0\r\n\r\n",
        b"5\n{\"cur\r\n9\r\nsor\": 10}\r\n0\r\n\r\n",
        // The CRLF after a chunk, checked whole.
        b"5\r\n{\"cur\n\n9\r\nsor\": 10}\r\n0\r\n\r\n",
        b"5\r\n{\"curX\n9\r\nsor\": 10}\r\n0\r\n\r\n",
        b"5\r\n{\"cur\r\r9\r\nsor\": 10}\r\n0\r\n\r\n",
        // A trailer line with a bare LF.
        b"5\r\n{\"cur\r\n9\r\nsor\": 10}\r\n0\r\nX-T: 1\n\r\n",
    ] {
        put(body).expect_error(400, "bad_request");
    }
    // None of those reached the handler (each would have moved the cursor
    // to 10): the cursor is the first request's.
    let r = request(alice.addr, "GET", "/v1/cursor/r", None);
    assert_eq!(r.json(), json!({"cursor": 9}), "{}", r.body);
}
