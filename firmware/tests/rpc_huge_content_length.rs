//! A request that declares an enormous body and does not send it.
//!
//! tiny_http 0.12, which used to serve the endpoint, drained an unread
//! request body when the request was dropped, allocating the whole declared
//! remainder at once (`vec![0; remaining]` in `EqualReader::drop`): a
//! declared terabyte aborted the device, and did so on main even after the
//! first patches whenever every handling slot was busy (the `overloaded`
//! path dropped the request). The front layer (`otc_device::front`) checks
//! `Content-Length` from the head, before the slot and before reading
//! anything, and answers on the raw socket. In its own test binary because,
//! if that ever regresses, it aborts the process it runs in.

mod common;

use common::device::*;
use otc_proto::Format;
use otc_proto::routes;
use otc_proto::rpc::StatusResponse;
use serde_json::json;

#[test]
fn a_terabyte_content_length_is_too_large_and_the_device_lives_on() {
    let d = dirs(&[pad("bob", "alice", Format::V3, 16 * 1024)]);
    let alice = Dev::start(&d.alice, "Alice", limits());
    for path in [routes::PACKAGE, routes::UNPACKAGE, routes::STATUS] {
        let h = format!(
            "POST {path} HTTP/1.1\r\nHost: device\r\nConnection: close\r\nContent-Length: 1000000000000\r\n\r\n"
        );
        raw(alice.addr, h.as_bytes(), b"{").expect_error(413, "too_large");
    }
    let status: StatusResponse = alice.get(routes::STATUS).ok();
    assert_eq!(status.owner, "Alice");
}

#[test]
fn a_terabyte_while_every_slot_is_busy_is_too_large_and_the_device_lives_on() {
    let d = dirs(&[pad("bob", "alice", Format::V3, 16 * 1024)]);
    let one = otc_device::rpc::Limits {
        max_in_flight: 1,
        ..limits()
    };
    let alice = Dev::start(&d.alice, "Alice", one);
    // The only handling slot waits on the owner's tap.
    let held = alice.spawn(
        "POST",
        routes::PACKAGE,
        json!({"to": "bob", "message": "hold"}),
    );
    alice.wait_prompt("confirm-seal");
    for _ in 0..20 {
        let h = "POST /v1/package HTTP/1.1\r\nHost: device\r\nConnection: close\r\n\
                 Content-Type: application/json\r\nContent-Length: 1000000000000\r\n\r\n";
        raw(alice.addr, h.as_bytes(), b"{").expect_error(413, "too_large");
    }
    alice.get(routes::STATUS).expect_error(429, "overloaded");
    alice.tap("approve");
    held.join()
        .expect("the held request")
        .ok::<otc_proto::rpc::PackageResponse>();
    alice.wait_no_prompt();
    let status: StatusResponse = alice.get(routes::STATUS).ok();
    assert_eq!(status.owner, "Alice");
}
