//! A request that declares an enormous body and does not send it.
//!
//! tiny_http 0.12 drains an unread request body when the request is
//! dropped, and allocates the whole declared remainder for it at once
//! (`vec![0; remaining]` in `EqualReader::drop`): a declared terabyte would
//! abort the device. `rpc::refuse_undroppable` answers such requests on the
//! socket itself and never drops them. In its own test binary because, if
//! that ever regresses, it aborts the process it runs in.

mod common;

use common::device::*;
use otc_proto::Format;
use otc_proto::routes;
use otc_proto::rpc::StatusResponse;

#[test]
fn a_terabyte_content_length_is_too_large_and_the_device_lives_on() {
    let d = dirs(&[pad("bob", "alice", Format::V2, 16 * 1024)]);
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
