//! Issue 16, knot 5: nothing writes a burned range any more, but records
//! written by older versions may list them. A package for such a range is
//! refused before any prompt (`range_burned` in the store, `bad_package` on
//! the wire), spends nothing and writes no `burned` audit entry: the
//! endpoint's old `Event::Burned` write after an approval was unreachable.

mod common;

use common::device::*;
use otc_device::pad::{ContactMeta, Error as PadError};
use otc_proto::Format;
use otc_proto::b64;
use otc_proto::routes;
use otc_proto::rpc::{ErrorCode, PackageResponse};
use serde_json::json;

const SIZE: u64 = 16 * 1024;

#[test]
fn a_range_an_old_version_burned_is_refused_before_any_prompt_and_spends_nothing() {
    let d = dirs(&[pad("bob", "alice", Format::V1, SIZE)]);
    let bob = Dev::start(&d.bob, "Bob", limits());
    let (r, _) = bob.seal("alice", "sent before the range was burned");
    let package = r.ok::<PackageResponse>().package;
    bob.stop();

    // Alice's record for bob, as an older version left it: the whole
    // receiving region burned.
    let record = d.alice.join("contacts").join("bob.json");
    let mut meta: ContactMeta = serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
    assert!(meta.burned.is_empty());
    meta.burned = vec![meta.region(meta.side.other())];
    std::fs::write(&record, serde_json::to_vec(&meta).unwrap()).unwrap();

    let alice = Dev::start(&d.alice, "Alice", limits());
    let service = alice.running().service().expect("unlocked");
    let bytes = b64::decode(&package).unwrap();
    assert!(
        matches!(
            service.store().check_open("bob", &bytes),
            Err(PadError::RangeBurned { .. })
        ),
        "the store refuses the range as burned"
    );
    // The running device must be the service's only holder at its stop.
    drop(service);
    let record_before = std::fs::read(&record).unwrap();
    let pads_before = common::files_under(&d.alice.join("pads"))
        .into_iter()
        .map(|p| (std::fs::read(&p).unwrap(), p))
        .collect::<Vec<_>>();
    let contact_before = alice.contact("bob");
    let audit_before = alice.audit_kinds().len();

    // No prompt: the fake clock is frozen, so one would never end.
    alice
        .post(
            routes::UNPACKAGE,
            &json!({"from": "bob", "package": package}),
        )
        .expect_error(ErrorCode::BadPackage.http_status(), "bad_package");
    assert_eq!(alice.screen().screen, "home", "no prompt");

    assert_eq!(alice.contact("bob"), contact_before, "nothing spent");
    assert_eq!(std::fs::read(&record).unwrap(), record_before);
    let pads_after = common::files_under(&d.alice.join("pads"))
        .into_iter()
        .map(|p| (std::fs::read(&p).unwrap(), p))
        .collect::<Vec<_>>();
    assert_eq!(pads_after, pads_before, "no pad byte changed");
    let kinds = alice.audit_kinds();
    let new = &kinds[audit_before..];
    for k in ["approved", "opened", "burned", "failed", "locked_out"] {
        assert!(!new.iter().any(|x| x == k), "{k} in {new:?}");
    }
    alice.stop();
}
