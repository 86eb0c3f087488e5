//! Issue #4, "Prove": the running device over real HTTP. Two devices
//! (Alice and Bob, each its own data directory and one side of each pad)
//! run `device::start` on 127.0.0.1:0 with a memory display, a scripted
//! touch source that taps Approve/Reject on the real UI, and a fake clock.

mod common;

use common::device::*;
use otc_device::audit;
use otc_proto::Format;
use otc_proto::b64;
use otc_proto::routes;
use otc_proto::rpc::{PackageResponse, StatusResponse, UnpackageResponse, Warning};
use serde_json::json;
use std::time::Duration;

const SIZE: u64 = 16 * 1024;

#[test]
fn seal_and_open_round_trip_between_two_devices() {
    let d = dirs(&[
        pad("bob", "alice", Format::V3, SIZE),
        pad("bob-v1", "alice-v1", Format::V1, SIZE),
    ]);
    let alice = Dev::start(&d.alice, "Alice", limits());
    let bob = Dev::start(&d.bob, "Bob", limits());
    let status: StatusResponse = alice.get(routes::STATUS).ok();
    assert_eq!(
        (status.owner.as_str(), status.contacts, status.busy),
        ("Alice", 2, false)
    );

    for (to_bob, to_alice, format) in [
        ("bob", "alice", Format::V3),
        ("bob-v1", "alice-v1", Format::V1),
    ] {
        // Alice -> Bob, text.
        let a0 = alice.contact(to_bob);
        let b0 = bob.contact(to_alice);
        assert_eq!(a0.format, format);
        // v3 never counts the side's 16-byte r.
        let side = SIZE / 2 - if format == Format::V3 { 16 } else { 0 };
        assert_eq!((a0.send_left, a0.receive_left), (side, side));
        let text = "Hello Bob, this is Alice. ✓";
        let (r, prompt) = alice.seal(to_bob, text);
        let sealed: PackageResponse = r.ok();
        let cost = format.pad_cost(text.len()) as u64;
        assert_eq!(
            sealed.pad_left,
            a0.send_left - cost,
            "{format}: pad_left shrinks by the cost"
        );
        assert_eq!(
            alice.contact(to_bob).send_left,
            sealed.pad_left,
            "/v1/contacts agrees"
        );
        assert_eq!(alice.contact(to_bob).receive_left, a0.receive_left);
        // The prompt said who, what and what it costs, from the device's state.
        assert!(prompt.has_text("Encrypt this message?"), "{prompt:#?}");
        assert!(prompt.has_text(to_bob), "{prompt:#?}");
        let package = b64::decode(&sealed.package).unwrap();
        assert_eq!(package.len(), format.package_len(text.len()));

        let (r, prompt) = bob.open(to_alice, &sealed.package);
        let opened: UnpackageResponse = r.ok();
        assert_eq!(opened.message.as_deref(), Some(text));
        assert_eq!(opened.message_b64, b64::encode(text.as_bytes()));
        assert!(opened.warnings.is_empty());
        assert!(
            prompt.has_text("Decrypt a message?") && prompt.has_text(to_alice),
            "{prompt:#?}"
        );
        let b1 = bob.contact(to_alice);
        assert_eq!(
            b1.receive_left,
            b0.receive_left - cost,
            "{format}: receive_left shrinks"
        );
        assert_eq!(
            b1.send_left, b0.send_left,
            "opening does not touch the send region"
        );

        // Bob -> Alice, binary (not UTF-8).
        let bytes: Vec<u8> = (0..=255u8).rev().chain([0xff, 0xfe, 0x00]).collect();
        let (r, _) = bob.answered(
            routes::PACKAGE,
            json!({"to": to_alice, "message_b64": b64::encode(&bytes)}),
            "confirm-seal",
            "approve",
        );
        let sealed: PackageResponse = r.ok();
        let cost = format.pad_cost(bytes.len()) as u64;
        assert_eq!(sealed.pad_left, b1.send_left - cost);
        assert_eq!(bob.contact(to_alice).send_left, sealed.pad_left);
        let a1 = alice.contact(to_bob);
        let (r, _) = alice.open(to_bob, &sealed.package);
        let opened: UnpackageResponse = r.ok();
        assert_eq!(opened.message, None, "not UTF-8: no text");
        assert_eq!(b64::decode(&opened.message_b64).unwrap(), bytes);
        assert_eq!(alice.contact(to_bob).receive_left, a1.receive_left - cost);
    }
    alice.stop();
    bob.stop();
    for dir in [&d.alice, &d.bob] {
        let c = audit::check(dir).unwrap();
        assert!(c.problems.is_empty(), "{:?}", c.problems);
    }
}

/// Everything a contact's pad state shows over RPC and in the store.
fn state(dev: &Dev, contact: &str) -> (otc_proto::rpc::ContactInfo, otc_device::pad::ContactMeta) {
    let meta = dev
        .running()
        .service()
        .expect("unlocked")
        .store()
        .meta(contact)
        .expect("meta");
    (dev.contact(contact), meta)
}

#[test]
fn error_codes_that_need_no_prompt() {
    let d = dirs(&[
        pad("bob", "alice", Format::V3, SIZE),
        pad("tiny", "alice-tiny", Format::V3, 256),
    ]);
    let alice = Dev::start(&d.alice, "Alice", limits());
    let before = state(&alice, "bob");

    // bad_request: not JSON, and a request the endpoint cannot parse.
    alice
        .post_bytes(routes::PACKAGE, b"{not json")
        .expect_error(400, "bad_request");
    alice
        .post(routes::PACKAGE, &json!({"to": "bob"}))
        .expect_error(400, "bad_request");
    // unknown_contact, both ways.
    alice
        .post(routes::PACKAGE, &json!({"to": "carol", "message": "hi"}))
        .expect_error(404, "unknown_contact");
    alice
        .post(
            routes::UNPACKAGE,
            &json!({"from": "carol", "package": b64::encode(&[2u8; 40])}),
        )
        .expect_error(404, "unknown_contact");
    // too_large: over the message limit ...
    let big = "x".repeat(alice.limits.max_message_bytes + 1);
    alice
        .post(routes::PACKAGE, &json!({"to": "bob", "message": big}))
        .expect_error(413, "too_large");
    // ... and bigger than the pad left (8 KiB to send with).
    let r = alice.post(
        routes::PACKAGE,
        &json!({"to": "bob", "message": "y".repeat(SIZE as usize / 2)}),
    );
    r.expect_error(413, "too_large");
    assert!(
        r.body.contains(&format!("{}", SIZE / 2 - 16)),
        "says how much is left (less v3's 16-byte r): {}",
        r.body
    );
    // bad_package: garbage, and a package that does not verify's cousin
    // (too short to be one).
    alice
        .post(
            routes::UNPACKAGE,
            &json!({"from": "bob", "package": b64::encode(&[7u8; 60])}),
        )
        .expect_error(400, "bad_package");
    alice
        .post(
            routes::UNPACKAGE,
            &json!({"from": "bob", "package": b64::encode(&[2u8; 5])}),
        )
        .expect_error(400, "bad_package");
    // not_found and method_not_allowed.
    for path in ["/", "/v1", "/v1/nothing", "/v2/package", "/v1/contacts/bob"] {
        request(alice.addr, "GET", path, None).expect_error(404, "not_found");
    }
    for (method, path) in [
        ("GET", routes::PACKAGE),
        ("PUT", routes::UNPACKAGE),
        ("POST", routes::CONTACTS),
        ("DELETE", routes::STATUS),
        ("DELETE", "/v1/cursor/relay1"),
    ] {
        request(alice.addr, method, path, Some(b"{}")).expect_error(405, "method_not_allowed");
    }
    assert_eq!(state(&alice, "bob"), before, "no error consumed anything");

    // pad_exhausted: spend the tiny pad's 128 bytes (a 96-byte v2 message
    // costs 128), then even an empty message finds nothing left.
    let (r, _) = alice.seal("tiny", &"z".repeat(96));
    assert_eq!(r.ok::<PackageResponse>().pad_left, 0);
    let tiny = state(&alice, "tiny");
    for m in ["", "a"] {
        alice
            .post(routes::PACKAGE, &json!({"to": "tiny", "message": m}))
            .expect_error(410, "pad_exhausted");
    }
    assert_eq!(state(&alice, "tiny"), tiny);

    // Cursors: the client's relay position, kept on the device.
    assert_eq!(
        alice.get("/v1/cursor/relay.example:443").json(),
        json!({"cursor": 0})
    );
    request(
        alice.addr,
        "PUT",
        "/v1/cursor/relay.example:443",
        Some(br#"{"cursor": 42}"#),
    )
    .ok::<serde_json::Value>();
    assert_eq!(
        alice.get("/v1/cursor/relay.example:443").json(),
        json!({"cursor": 42})
    );
    request(
        alice.addr,
        "PUT",
        "/v1/cursor/a%2Fb",
        Some(br#"{"cursor": 1}"#),
    )
    .expect_error(400, "bad_request");
    request(
        alice.addr,
        "PUT",
        "/v1/cursor/r",
        Some(br#"{"cursor": -1}"#),
    )
    .expect_error(400, "bad_request");
    let alice = alice.restart();
    assert_eq!(
        alice.get("/v1/cursor/relay.example:443").json(),
        json!({"cursor": 42}),
        "kept across restarts"
    );

    // The limit that was hit is in the audit log.
    let kinds = alice.audit_kinds();
    assert!(kinds.contains(&"limit_hit".to_string()), "{kinds:?}");
    for k in ["approved", "rejected", "timed_out", "cancelled"] {
        assert_eq!(
            kinds.iter().filter(|x| *x == k).count(),
            usize::from(k == "approved"),
            "{kinds:?}"
        );
    }
}

#[test]
fn reject_consumes_nothing() {
    let d = dirs(&[pad("bob", "alice", Format::V3, SIZE)]);
    let alice = Dev::start(&d.alice, "Alice", limits());
    let bob = Dev::start(&d.bob, "Bob", limits());
    let a0 = state(&alice, "bob");
    let (r, prompt) = alice.answered(
        routes::PACKAGE,
        json!({"to": "bob", "message": "no"}),
        "confirm-seal",
        "reject",
    );
    r.expect_error(403, "rejected");
    assert!(prompt.has_text("Encrypt this message?"));
    assert_eq!(state(&alice, "bob"), a0, "a rejected seal spends nothing");
    // Issue 15: home again, with a word.
    alice.wait_screen("a Rejected toast", |t| {
        t.toast.as_deref() == Some("Rejected: seal for bob; nothing spent")
    });

    let (r, _) = alice.seal("bob", "yes");
    let package = r.ok::<PackageResponse>().package;
    let b0 = state(&bob, "alice");
    let (r, _) = bob.answered(
        routes::UNPACKAGE,
        json!({"from": "alice", "package": package}),
        "confirm-open",
        "reject",
    );
    r.expect_error(403, "rejected");
    assert_eq!(state(&bob, "alice"), b0, "a rejected open spends nothing");
    // ... so the same package still opens afterwards, without warnings.
    let (r, _) = bob.open("alice", &package);
    let opened: UnpackageResponse = r.ok();
    assert_eq!(
        (opened.message.as_deref(), opened.warnings.len()),
        (Some("yes"), 0)
    );
    let kinds = alice.audit_kinds();
    let tail: Vec<&str> = kinds
        .iter()
        .map(String::as_str)
        .skip_while(|k| *k != "started")
        .collect();
    assert_eq!(tail, ["started", "rejected", "approved", "sealed"]);
    let kinds = bob.wait_audit("opened");
    let tail: Vec<&str> = kinds
        .iter()
        .map(String::as_str)
        .skip_while(|k| *k != "started")
        .collect();
    assert_eq!(tail, ["started", "rejected", "approved", "opened"]);
}

#[test]
fn a_prompt_times_out_on_the_fake_clock() {
    let d = dirs(&[pad("bob", "alice", Format::V3, SIZE)]);
    let alice = Dev::start(&d.alice, "Alice", limits());
    let a0 = state(&alice, "bob");
    let pending = alice.spawn(
        "POST",
        routes::PACKAGE,
        json!({"to": "bob", "message": "late"}),
    );
    let shown = alice.wait_prompt("confirm-seal");
    assert!(
        shown.has_text("0:30"),
        "the countdown starts at the timeout: {shown:#?}"
    );
    alice.clock.advance(PROMPT_TIMEOUT - Duration::from_secs(1));
    alice.wait_screen("the countdown to reach 0:01", |t| t.has_text("0:01"));
    let status: StatusResponse = alice.get(routes::STATUS).ok();
    assert!(status.busy, "29 s is not yet the timeout");
    assert!(!pending.is_finished(), "29 s is not yet the timeout");
    alice.clock.advance(Duration::from_secs(2));
    let r = pending.join().unwrap();
    r.expect_error(408, "timeout");
    let home = alice.wait_no_prompt();
    assert_eq!(home.screen, "home");
    alice.wait_screen("a Timed out toast", |t| {
        t.toast.as_deref() == Some("Timed out: seal for bob; nothing spent")
    });
    assert_eq!(
        state(&alice, "bob"),
        a0,
        "a timed-out prompt spends nothing"
    );
    assert!(!alice.get(routes::STATUS).ok::<StatusResponse>().busy);
    alice.wait_audit("timed_out");
    // The device takes the next request as usual.
    let (r, _) = alice.seal("bob", "on time");
    r.ok::<PackageResponse>();
}

#[test]
fn a_second_request_while_a_prompt_is_up_is_busy() {
    let d = dirs(&[pad("bob", "alice", Format::V3, SIZE)]);
    let alice = Dev::start(&d.alice, "Alice", limits());
    let bob = Dev::start(&d.bob, "Bob", limits());
    // A genuine package: it verifies, so it gets as far as the prompt.
    let (r, _) = bob.seal("alice", "for later");
    let genuine = r.ok::<PackageResponse>().package;
    let a0 = state(&alice, "bob");
    let first = alice.spawn(
        "POST",
        routes::PACKAGE,
        json!({"to": "bob", "message": "first!"}),
    );
    let shown = alice.wait_prompt("confirm-seal");
    for body in [
        json!({"to": "bob", "message": "second, much longer message"}),
        json!({"to": "bob", "message": "third"}),
    ] {
        alice.post(routes::PACKAGE, &body).expect_error(409, "busy");
    }
    alice
        .post(
            routes::UNPACKAGE,
            &json!({"from": "bob", "package": genuine}),
        )
        .expect_error(409, "busy");
    // Reads still work, and say busy.
    assert!(alice.get(routes::STATUS).ok::<StatusResponse>().busy);
    assert_eq!(state(&alice, "bob"), a0);
    // The owner still sees the first prompt, unchanged.
    assert_eq!(alice.screen().texts, shown.texts);
    alice.tap("approve");
    let sealed: PackageResponse = first.join().unwrap().ok();
    assert_eq!(
        sealed.pad_left,
        a0.0.send_left - Format::V3.pad_cost(6) as u64
    );
    alice.wait_no_prompt();
    assert!(!alice.get(routes::STATUS).ok::<StatusResponse>().busy);
}

#[test]
fn overloaded_when_every_connection_is_in_use() {
    let d = dirs(&[pad("bob", "alice", Format::V3, SIZE)]);
    let one = otc_device::rpc::Limits {
        max_in_flight: 1,
        ..limits()
    };
    let alice = Dev::start(&d.alice, "Alice", one);
    let held = alice.spawn(
        "POST",
        routes::PACKAGE,
        json!({"to": "bob", "message": "hold"}),
    );
    alice.wait_prompt("confirm-seal");
    alice.get(routes::STATUS).expect_error(429, "overloaded");
    alice
        .post(routes::PACKAGE, &json!({"to": "bob", "message": "x"}))
        .expect_error(429, "overloaded");
    // A client that declares a body and never sends it is told the same,
    // and does not stop the endpoint (it stays connected throughout).
    let mut slow = connect(alice.addr);
    std::io::Write::write_all(
        &mut slow,
        head("POST", routes::PACKAGE, Some(2000)).as_bytes(),
    )
    .unwrap();
    read_response(&mut slow).expect_error(429, "overloaded");
    alice.tap("approve");
    held.join().unwrap().ok::<PackageResponse>();
    alice.wait_no_prompt();
    // The slot is free again once the held request is answered.
    wait_until("the connection slot to be free", || {
        (alice.get(routes::STATUS).status == 200).then_some(())
    });
    let (r, _) = alice.seal("bob", "after");
    r.ok::<PackageResponse>();
    drop(slow);
    let kinds = alice.audit_kinds();
    assert!(kinds.contains(&"limit_hit".to_string()), "{kinds:?}");
}

// Issue 22: packages refused before the prompt (forgeries, junk,
// replays) no longer count towards the lockout, so the test that locked a
// contact out with three of them is gone; `tests/rpc_forgery.rs` proves
// that junk and forgeries never lock a contact out.

#[test]
fn a_client_that_hangs_up_cancels_its_prompt() {
    let d = dirs(&[pad("bob", "alice", Format::V3, SIZE)]);
    let alice = Dev::start(&d.alice, "Alice", limits());
    let bob = Dev::start(&d.bob, "Bob", limits());
    let (r, _) = bob.seal("alice", "wait for it");
    let package = r.ok::<PackageResponse>().package;
    let a0 = state(&alice, "bob");
    for (n, (path, body, prompt)) in [
        (
            routes::PACKAGE,
            json!({"to": "bob", "message": "never mind"}),
            "confirm-seal",
        ),
        (
            routes::UNPACKAGE,
            json!({"from": "bob", "package": package}),
            "confirm-open",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let body = serde_json::to_vec(&body).unwrap();
        let mut s = connect(alice.addr);
        std::io::Write::write_all(&mut s, head("POST", path, Some(body.len())).as_bytes()).unwrap();
        std::io::Write::write_all(&mut s, &body).unwrap();
        alice.wait_prompt(prompt);
        drop(s);
        let home = alice.wait_no_prompt();
        assert_eq!(home.screen, "home", "the prompt left the screen");
        wait_until("a cancelled audit event", || {
            (alice
                .audit_kinds()
                .iter()
                .filter(|k| *k == "cancelled")
                .count()
                == n + 1)
                .then_some(())
        });
        assert_eq!(
            state(&alice, "bob"),
            a0,
            "a cancelled {prompt} spends nothing"
        );
        assert!(!alice.get(routes::STATUS).ok::<StatusResponse>().busy);
    }
    // Nothing was used: the same package still opens, and seals go on.
    let (r, _) = alice.open("bob", &package);
    assert_eq!(
        r.ok::<UnpackageResponse>().message.as_deref(),
        Some("wait for it")
    );
    let (r, _) = alice.seal("bob", "now");
    assert_eq!(
        r.ok::<PackageResponse>().pad_left,
        a0.0.send_left - Format::V3.pad_cost(3) as u64
    );
    let kinds = alice.audit_kinds();
    let tail: Vec<&str> = kinds
        .iter()
        .map(String::as_str)
        .skip_while(|k| *k != "started")
        .collect();
    assert_eq!(
        tail,
        [
            "started",
            "cancelled",
            "cancelled",
            "approved",
            "opened",
            "approved",
            "sealed"
        ]
    );
}

#[test]
fn replayed_and_skipped_packages() {
    let d = dirs(&[pad("bob", "alice", Format::V3, SIZE)]);
    let alice = Dev::start(&d.alice, "Alice", limits());
    let bob = Dev::start(&d.bob, "Bob", limits());
    let mut sent = Vec::new();
    for m in ["message 1", "message 2", "message 3"] {
        let (r, _) = bob.seal("alice", m);
        sent.push(r.ok::<PackageResponse>().package);
    }
    let (r, shown) = alice.open("bob", &sent[0]);
    let opened: UnpackageResponse = r.ok();
    assert_eq!(
        (opened.message.as_deref(), opened.warnings.len()),
        (Some("message 1"), 0)
    );
    assert!(!shown.has_text("Skipped"), "{shown:#?}");

    // Replay: refused before any prompt (the frozen clock would keep a
    // prompt up forever), nothing used, and the owner is told.
    let before = state(&alice, "bob");
    alice
        .post(
            routes::UNPACKAGE,
            &json!({"from": "bob", "package": sent[0]}),
        )
        .expect_error(410, "replayed");
    assert_eq!(state(&alice, "bob"), before);
    alice.wait_audit("replay");

    // Message 3 before message 2: the prompt warns, the reply says so.
    let (r, shown) = alice.open("bob", &sent[2]);
    let opened: UnpackageResponse = r.ok();
    assert_eq!(opened.message.as_deref(), Some("message 3"));
    assert_eq!(opened.warnings, vec![Warning::Skipped]);
    assert!(
        shown.has_text("Skipped: 1 earlier message never arrived"),
        "the open prompt shows the warning: {shown:#?}"
    );
    // Message 2 arrives late: it opens, without a warning.
    let (r, shown) = alice.open("bob", &sent[1]);
    let opened: UnpackageResponse = r.ok();
    assert_eq!(
        (opened.message.as_deref(), opened.warnings.len()),
        (Some("message 2"), 0)
    );
    assert!(!shown.has_text("Skipped"), "{shown:#?}");
    // And now every one of them is a replay.
    for p in &sent {
        alice
            .post(routes::UNPACKAGE, &json!({"from": "bob", "package": p}))
            .expect_error(410, "replayed");
    }
    alice.stop();
    let kinds = audit_kinds(&d.alice);
    let tail: Vec<&str> = kinds
        .iter()
        .map(String::as_str)
        .skip_while(|k| *k != "started")
        .collect();
    assert_eq!(
        tail,
        [
            "started", "approved", "opened", "replay", "approved", "skipped", "opened", "approved",
            "opened", "replay", "replay", "replay", "stop",
        ]
    );
}

#[test]
fn replays_never_lock_a_contact_out() {
    // A client re-fetching old packages from a relay is not guessing tags:
    // more replays than the lockout limit still leave bob's new messages
    // openable.
    let d = dirs(&[pad("bob", "alice", Format::V3, SIZE)]);
    let alice = Dev::start(&d.alice, "Alice", limits());
    let bob = Dev::start(&d.bob, "Bob", limits());
    let (r, _) = bob.seal("alice", "first");
    let first = r.ok::<PackageResponse>().package;
    let (r, _) = bob.seal("alice", "second");
    let second = r.ok::<PackageResponse>().package;
    alice.open("bob", &first).0.ok::<UnpackageResponse>();
    for _ in 0..=limits().lockout_failures {
        alice
            .post(routes::UNPACKAGE, &json!({"from": "bob", "package": first}))
            .expect_error(410, "replayed");
    }
    let (r, _) = alice.open("bob", &second);
    assert_eq!(
        r.ok::<UnpackageResponse>().message.as_deref(),
        Some("second")
    );
    alice.stop();
    bob.stop();
}

#[test]
fn a_replay_gets_its_own_code_and_a_corrupted_package_does_not() {
    // Issue 10: the client must tell a replay from a forgery even when it
    // did not open the first copy itself. A replay is refused by range,
    // before any prompt and without reading pad, with `replayed`; a
    // corrupted package at a fresh range is still `bad_package` once the
    // owner approved it, and burns nothing.
    let d = dirs(&[pad("bob", "alice", Format::V3, SIZE)]);
    let alice = Dev::start(&d.alice, "Alice", limits());
    let bob = Dev::start(&d.bob, "Bob", limits());
    let mut sent = Vec::new();
    for m in ["first", "second"] {
        let (r, _) = bob.seal("alice", m);
        sent.push(r.ok::<PackageResponse>().package);
    }
    alice.open("bob", &sent[0]).0.ok::<UnpackageResponse>();
    let before = state(&alice, "bob");

    // The replay: no prompt (the clock is frozen, so a prompt would hang
    // until the client gave up), nothing spent.
    let r = alice.post(
        routes::UNPACKAGE,
        &json!({"from": "bob", "package": sent[0]}),
    );
    r.expect_error(410, "replayed");
    let message = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(message.contains("opened before"), "{message}");
    assert_eq!(alice.screen().screen, "home", "no prompt for a replay");
    assert_eq!(state(&alice, "bob"), before, "a replay spends nothing");
    assert_eq!(alice.contact("bob").receive_left, before.0.receive_left);
    // A tampered copy of an opened range is refused by range as well: its
    // pad is erased, so no tag is checked and none could verify.
    let mut tampered = b64::decode(&sent[0]).unwrap();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    alice
        .post(
            routes::UNPACKAGE,
            &json!({"from": "bob", "package": b64::encode(&tampered)}),
        )
        .expect_error(410, "replayed");
    assert_eq!(state(&alice, "bob").0, before.0);

    // A corrupted package at a slot never opened: its tag does not
    // verify, so it is refused before any prompt: `bad_package`, and
    // nothing burned.
    let mut corrupted = b64::decode(&sent[1]).unwrap();
    let last = corrupted.len() - 1;
    corrupted[last] ^= 1;
    let r = alice.post(
        routes::UNPACKAGE,
        &json!({"from": "bob", "package": b64::encode(&corrupted)}),
    );
    r.expect_error(400, "bad_package");
    assert_eq!(alice.screen().screen, "home", "no prompt for a forgery");
    assert_eq!(
        r.json()["error"]["message"],
        "the package could not be opened",
        "a failed open says nothing more"
    );
    assert_eq!(alice.contact("bob").receive_left, before.0.receive_left);
    // The genuine package still opens.
    let (r, _) = alice.open("bob", &sent[1]);
    assert_eq!(
        r.ok::<UnpackageResponse>().message.as_deref(),
        Some("second")
    );
    alice.stop();
    bob.stop();
    let kinds = audit_kinds(&d.alice);
    let after_first: Vec<&str> = kinds
        .iter()
        .map(String::as_str)
        .skip_while(|k| *k != "opened")
        .skip(1)
        .collect();
    assert_eq!(
        after_first,
        [
            "replay",
            "replay",
            "integrity_failure",
            "approved",
            "opened",
            "stop"
        ]
    );
}

/// A session on Alice's device that leaves every kind of routine event.
fn session(alice: &Dev, bob: &Dev) {
    let (r, _) = alice.seal("bob", "SECRET-PLAINTEXT-1");
    r.ok::<PackageResponse>();
    let (r, _) = alice.answered(
        routes::PACKAGE,
        json!({"to": "bob", "message": "no"}),
        "confirm-seal",
        "reject",
    );
    r.expect_error(403, "rejected");
    let (r, _) = bob.seal("alice", "SECRET-PLAINTEXT-2");
    let package = r.ok::<PackageResponse>().package;
    let (r, _) = alice.open("bob", &package);
    r.ok::<UnpackageResponse>();
    alice
        .post(
            routes::UNPACKAGE,
            &json!({"from": "bob", "package": package}),
        )
        .expect_error(410, "replayed");
    let big = "x".repeat(alice.limits.max_message_bytes + 1);
    alice
        .post(routes::PACKAGE, &json!({"to": "bob", "message": big}))
        .expect_error(413, "too_large");
    let pending = alice.spawn(
        "POST",
        routes::PACKAGE,
        json!({"to": "bob", "message": "late"}),
    );
    alice.wait_prompt("confirm-seal");
    alice.clock.advance(PROMPT_TIMEOUT + Duration::from_secs(1));
    pending.join().unwrap().expect_error(408, "timeout");
    alice.wait_no_prompt();
}

/// The home screen's alerts button: "Alerts (N)" counts unseen red alerts.
fn alerts_label(t: &otc_ui::ScreenTrace) -> String {
    t.button("alerts")
        .map(|b| b.label.clone())
        .unwrap_or_default()
}

const SESSION: [&str; 11] = [
    "pad_created",
    "started",
    "approved",
    "sealed",
    "rejected",
    "approved",
    "opened",
    "replay",
    "limit_hit",
    "timed_out",
    "stop",
];

#[test]
fn the_audit_log_chains_a_session_and_shows_an_edit_at_the_next_start() {
    let d = dirs(&[pad("bob", "alice", Format::V3, SIZE)]);
    let alice = Dev::start(&d.alice, "Alice", limits());
    let bob = Dev::start(&d.bob, "Bob", limits());
    session(&alice, &bob);
    alice.stop();
    let c = audit::check(&d.alice).unwrap();
    assert!(c.problems.is_empty(), "{:?}", c.problems);
    let kinds: Vec<String> = c.entries.iter().map(|e| kind(&e.event)).collect();
    assert_eq!(kinds, SESSION);
    assert_eq!(
        c.entries[3].event,
        audit::Event::Sealed {
            contact: "bob".into(),
            index: 0,
            bytes: 18,
            cost: 34
        }
    );
    let log_path = d.alice.join("audit.log");
    let text = std::fs::read_to_string(&log_path).unwrap();
    for secret in ["SECRET-PLAINTEXT", "U0VDUkVU"] {
        assert!(!text.contains(secret), "the audit log holds no plaintext");
    }
    // The session's alerts (the replay, the limit hit) were never seen:
    // they come back at the next start until the owner opens the alerts.
    let alice = Dev::start(&d.alice, "Alice", limits());
    let home = alice.wait_screen("the session's alerts on the home screen", |t| {
        alerts_label(t) == "Alerts (2)"
    });
    assert!(home.has_text("Alice"), "{home:#?}");
    alice.tap("alerts");
    let alerts = alice.wait_screen("the alerts screen", |t| t.screen == "alerts");
    assert!(alerts.has_text("Replayed package from bob"), "{alerts:#?}");
    // Seeing them is not acknowledging them (issue 15): back without a
    // tap on Acknowledge leaves the count.
    alice.tap("back");
    alice.wait_screen("home with the count still", |t| {
        t.screen == "home" && alerts_label(t) == "Alerts (2)"
    });
    alice.tap("alerts");
    alice.wait_screen("the Acknowledge button", |t| {
        t.screen == "alerts" && t.button("acknowledge").is_some()
    });
    alice.tap("acknowledge");
    alice.wait_screen("nothing left to acknowledge", |t| {
        t.button("acknowledge").is_none()
    });
    alice.tap("back");
    alice.wait_screen("home without an alert count", |t| {
        t.screen == "home" && alerts_label(t) == "Alerts"
    });
    alice.stop();
    let text = std::fs::read_to_string(&log_path).unwrap();

    // Edit one entry: 18 bytes sealed becomes 17.
    let edited = text.replacen("\"bytes\":18", "\"bytes\":17", 1);
    assert_ne!(edited, text);
    std::fs::write(&log_path, &edited).unwrap();
    let c = audit::check(&d.alice).unwrap();
    assert_eq!(c.problems, vec![audit::Integrity::Broken { seq: 3 }]);

    let alice = Dev::start(&d.alice, "Alice", limits());
    let home = alice.wait_screen("a red alert count on the home screen", |t| {
        alerts_label(t) == "Alerts (1)"
    });
    assert_eq!(home.screen, "home");
    alice.tap("alerts");
    let alerts = alice.wait_screen("the alerts screen", |t| t.screen == "alerts");
    assert!(
        alerts.has_text("AUDIT LOG DAMAGED: audit log entry 3 was altered"),
        "{alerts:#?}"
    );
    // Acknowledged: the count goes away, the finding stays in the log.
    alice.wait_screen("the Acknowledge button", |t| {
        t.button("acknowledge").is_some()
    });
    alice.tap("acknowledge");
    alice.wait_screen("nothing left to acknowledge", |t| {
        t.button("acknowledge").is_none()
    });
    alice.tap("back");
    alice.wait_screen("home without an alert count", |t| {
        t.screen == "home" && alerts_label(t) == "Alerts"
    });
    alice.stop();
    let c = audit::check(&d.alice).unwrap();
    assert_eq!(
        c.problems,
        vec![audit::Integrity::Broken { seq: 3 }],
        "still reported"
    );
    let kinds: Vec<String> = c.entries.iter().map(|e| kind(&e.event)).collect();
    assert_eq!(
        &kinds[SESSION.len()..],
        [
            "started",
            "ack",
            "stop",
            // The chain is checked after start (start-up time is flat in
            // the log's length), so the finding follows `started`.
            "started",
            "tamper_detected",
            "ack",
            "stop"
        ]
    );
    drop(bob);
}

#[test]
fn cutting_entries_off_the_audit_log_is_an_alert_at_the_next_start() {
    let d = dirs(&[pad("bob", "alice", Format::V3, SIZE)]);
    let alice = Dev::start(&d.alice, "Alice", limits());
    let bob = Dev::start(&d.bob, "Bob", limits());
    session(&alice, &bob);
    alice.stop();
    let log_path = d.alice.join("audit.log");
    let text = std::fs::read_to_string(&log_path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), SESSION.len());
    std::fs::write(&log_path, lines[..lines.len() - 2].join("\n") + "\n").unwrap();
    let c = audit::check(&d.alice).unwrap();
    assert_eq!(
        c.problems,
        vec![audit::Integrity::Truncated {
            expected: SESSION.len() as u64,
            found: SESSION.len() as u64 - 2
        }]
    );

    // The truncation is an alert, with the session's replay and limit hit
    // (never seen), and it stays across restarts until the owner sees it,
    // although the log itself checks clean again after the first start.
    let cut = "AUDIT LOG DAMAGED: audit log was cut short: 9 entries, 11 expected";
    let alice = Dev::start(&d.alice, "Alice", limits());
    alice.wait_screen("a red alert count on the home screen", |t| {
        alerts_label(t) == "Alerts (3)"
    });
    let alice = alice.restart();
    alice.wait_screen("the same alerts after a restart", |t| {
        alerts_label(t) == "Alerts (3)"
    });
    alice.tap("alerts");
    let alerts = alice.wait_screen("the alerts screen", |t| t.screen == "alerts");
    assert!(alerts.has_text(cut), "{alerts:#?}");
    alice.wait_screen("the Acknowledge button", |t| {
        t.button("acknowledge").is_some()
    });
    alice.tap("acknowledge");
    alice.wait_screen("nothing left to acknowledge", |t| {
        t.button("acknowledge").is_none()
    });
    alice.tap("back");
    alice.wait_screen("home without an alert count", |t| {
        t.screen == "home" && alerts_label(t) == "Alerts"
    });
    // Acknowledged: gone at the next start, and the ack is on record.
    let alice = alice.restart();
    let home = alice.screen();
    assert_eq!(alerts_label(&home), "Alerts", "{home:#?}");
    alice.tap("alerts");
    let alerts = alice.wait_screen("the alerts screen", |t| t.screen == "alerts");
    assert!(!alerts.has_text(cut), "{alerts:#?}");
    alice.stop();
    let kinds = audit_kinds(&d.alice);
    assert_eq!(
        &kinds[SESSION.len() - 2..],
        [
            "tamper_detected",
            "started",
            "stop",
            "started",
            "ack",
            "stop",
            "started",
            "stop"
        ]
    );
    let c = audit::check(&d.alice).unwrap();
    assert!(
        c.entries
            .iter()
            .any(|e| e.event == audit::Event::Ack { alerts: 3 }),
        "the ack says what it acknowledged"
    );
    drop(bob);
}

#[test]
fn failed_opens_and_replays_are_rate_limited() {
    // A forged package, then replays: each is refused before any prompt
    // and audited, and counts towards the rate limit (never the lockout).
    // Past the limit, refused packages from that contact get
    // `rate_limited` until the window is over; a genuine one still opens.
    let d = dirs(&[pad("bob", "alice", Format::V3, SIZE)]);
    let three = otc_device::rpc::Limits {
        lockout_failures: 100,
        refused_per_minute: 3,
        ..limits()
    };
    let alice = Dev::start(&d.alice, "Alice", three);
    let bob = Dev::start(&d.bob, "Bob", limits());
    let mut sent = Vec::new();
    for m in ["first", "second"] {
        let (r, _) = bob.seal("alice", m);
        sent.push(r.ok::<PackageResponse>().package);
    }
    alice.open("bob", &sent[0]).0.ok::<UnpackageResponse>();
    let mut forged = b64::decode(&sent[1]).unwrap();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    alice
        .post(
            routes::UNPACKAGE,
            &json!({"from": "bob", "package": b64::encode(&forged)}),
        )
        .expect_error(400, "bad_package");
    for _ in 0..2 {
        alice
            .post(
                routes::UNPACKAGE,
                &json!({"from": "bob", "package": sent[0]}),
            )
            .expect_error(410, "replayed");
    }
    let before = state(&alice, "bob");
    for p in [sent[0].clone(), b64::encode(&forged)] {
        let r = alice.post(routes::UNPACKAGE, &json!({"from": "bob", "package": p}));
        r.expect_error(429, "rate_limited");
    }
    assert_eq!(state(&alice, "bob"), before, "nothing used");
    // The genuine package is not held back: it verifies, so it is shown.
    let (r, _) = alice.open("bob", &sent[1]);
    assert_eq!(
        r.ok::<UnpackageResponse>().message.as_deref(),
        Some("second")
    );
    alice.stop();
    let c = audit::check(&d.alice).unwrap();
    let kinds: Vec<String> = c.entries.iter().map(|e| kind(&e.event)).collect();
    let tail: Vec<&str> = kinds
        .iter()
        .map(String::as_str)
        .skip_while(|k| *k != "integrity_failure")
        .collect();
    assert_eq!(
        tail,
        [
            "integrity_failure",
            "replay",
            "replay",
            "approved",
            "opened",
            "repeated",
            "stop"
        ]
    );
    assert!(c.entries.iter().any(|e| e.event
        == audit::Event::Repeated {
            what: "packages".into(),
            contact: "bob".into(),
            count: 2
        }));
    drop(bob);
}

#[test]
fn a_flood_of_replays_adds_a_few_audit_entries() {
    let d = dirs(&[pad("bob", "alice", Format::V3, SIZE)]);
    let alice = Dev::start(&d.alice, "Alice", limits());
    let bob = Dev::start(&d.bob, "Bob", limits());
    let (r, _) = bob.seal("alice", "once");
    let package = r.ok::<PackageResponse>().package;
    alice.open("bob", &package).0.ok::<UnpackageResponse>();
    let before = alice.audit_kinds().len();
    let body = json!({"from": "bob", "package": package});
    let mut codes = std::collections::BTreeMap::new();
    for _ in 0..1000 {
        *codes
            .entry(alice.post(routes::UNPACKAGE, &body).error_code())
            .or_insert(0) += 1;
    }
    let limit = limits().refused_per_minute as usize;
    assert_eq!(
        codes,
        [
            ("rate_limited".to_string(), 1000 - limit),
            ("replayed".to_string(), limit)
        ]
        .into()
    );
    alice.stop();
    let c = audit::check(&d.alice).unwrap();
    let new = &c.entries[before..];
    let kinds: Vec<String> = new.iter().map(|e| kind(&e.event)).collect();
    let mut want = vec!["replay"; limit];
    want.extend(["repeated", "stop"]);
    assert_eq!(kinds, want, "a few entries for 1,000 replays");
    assert_eq!(
        new[limit].event,
        audit::Event::Repeated {
            what: "packages".into(),
            contact: "bob".into(),
            count: 1000 - limit as u64
        }
    );
    drop(bob);
}

#[test]
fn a_stop_withdraws_the_prompt_and_gives_the_reservation_back() {
    // In process (`Running::stop`, what SIGTERM calls; tests/stop.rs sends
    // the real signal to the real binary).
    let d = dirs(&[pad("bob", "alice", Format::V3, SIZE)]);
    let alice = Dev::start(&d.alice, "Alice", limits());
    let (r, _) = alice.seal("bob", "one");
    let cost = Format::V3.pad_cost(3) as u64;
    // v3: the side less its 16-byte r, less the message's n + 16.
    assert_eq!(r.ok::<PackageResponse>().pad_left, SIZE / 2 - 16 - cost);
    let pending = alice.spawn(
        "POST",
        routes::PACKAGE,
        json!({"to": "bob", "message": "never approved"}),
    );
    alice.wait_prompt("confirm-seal");
    alice.stop();
    pending
        .join()
        .expect("request thread")
        .expect_error(503, "cancelled");
    let kinds = audit_kinds(&d.alice);
    assert_eq!(kinds.last().map(String::as_str), Some("stop"), "{kinds:?}");
    let alice = Dev::start(&d.alice, "Alice", limits());
    assert_eq!(
        alice.contact("bob").send_left,
        SIZE / 2 - 16 - cost,
        "only the message's own pad is gone"
    );
    let (r, _) = alice.seal("bob", "two");
    assert_eq!(
        r.ok::<PackageResponse>().index,
        3,
        "the text offset continues after \"one\""
    );
}

#[test]
fn a_flood_of_oversized_requests_adds_a_few_audit_entries() {
    let d = dirs(&[pad("bob", "alice", Format::V3, SIZE)]);
    let small = otc_device::rpc::Limits {
        max_message_bytes: 10,
        ..limits()
    };
    let alice = Dev::start(&d.alice, "Alice", small);
    let before = alice.audit_kinds().len();
    for _ in 0..1000 {
        alice
            .post(
                routes::PACKAGE,
                &json!({"to": "bob", "message": "x".repeat(11)}),
            )
            .expect_error(413, "too_large");
    }
    alice.stop();
    let c = audit::check(&d.alice).unwrap();
    let new = &c.entries[before..];
    let kinds: Vec<String> = new.iter().map(|e| kind(&e.event)).collect();
    let limit = limits().refused_per_minute as usize;
    let mut want = vec!["limit_hit"; limit];
    want.extend(["repeated", "stop"]);
    assert_eq!(kinds, want);
    assert_eq!(
        new[limit].event,
        audit::Event::Repeated {
            what: "max_message_bytes limit hits".into(),
            contact: String::new(),
            count: 1000 - limit as u64
        }
    );
}

/// Issue #9: `device::start` is given a wall clock, and every audit entry
/// the device writes (from `started` to `stop`, the seal in between) is
/// stamped by it, not by the real time.
#[test]
fn audit_entries_are_stamped_by_the_injected_wall_clock() {
    let d = dirs(&[pad("bob", "alice", Format::V3, SIZE)]);
    let alice = Dev::start(&d.alice, "Alice", limits());
    let (r, _) = alice.seal("bob", "hello");
    r.ok::<PackageResponse>();
    alice.stop();
    let entries = audit::check(&d.alice).expect("read the audit log").entries;
    let kinds: Vec<String> = entries.iter().map(|e| kind(&e.event)).collect();
    for k in ["started", "sealed", "stop"] {
        assert!(kinds.iter().any(|x| x == k), "no {k:?} entry in {kinds:?}");
    }
    // The pad was made by the command line before the device started;
    // everything from `started` on is the device's.
    let first = kinds.iter().position(|k| k == "started").unwrap_or(0);
    for e in &entries[first..] {
        assert_eq!(
            e.time,
            WALL,
            "audit entry {} ({}) is not stamped by the injected wall clock",
            e.seq,
            kind(&e.event)
        );
    }
}

/// Issue #9, item 4: the shared client's opt-in keep-alive session serves
/// reads and a seal (waiting on the owner's tap) on one connection.
#[test]
fn a_keep_alive_session_uses_one_connection() {
    let d = dirs(&[pad("bob", "alice", Format::V3, SIZE)]);
    let alice = Dev::start(&d.alice, "Alice", limits());
    let mut session = otc_rpc_client::Client::new(alice.addr)
        .with_timeout(READ_TIMEOUT)
        .keep_alive();
    assert_eq!(session.status().expect("status").owner, "Alice");
    let before = session.contacts().expect("contacts")[0].send_left;
    let sealed = std::thread::scope(|s| {
        let h = s.spawn(|| {
            session.package(&otc_proto::rpc::PackageRequest {
                to: "bob".into(),
                message: Some("kept alive".into()),
                message_b64: None,
            })
        });
        alice.wait_prompt("confirm-seal");
        alice.tap("approve");
        h.join().expect("the seal thread")
    })
    .expect("sealed");
    assert_eq!(sealed.pad_left, before - Format::V3.pad_cost(10) as u64);
    assert_eq!(session.set_cursor("r1", 3).expect("put"), 3);
    assert_eq!(session.cursor("r1").expect("get"), 3);
    assert_eq!(session.connections(), 1, "the device kept the connection");
}

/// A hostile laptop cannot fill the device's data partition (where the
/// pads live) with read positions: every new relay name used to add an
/// entry to `cursors.json`, rewritten and fsynced whole on every save.
/// Past the cap a new relay is refused with `too_large`, through `/v1`
/// and `/runrpc` alike; the relays already kept still save.
#[test]
fn read_positions_are_kept_for_a_bounded_number_of_relays() {
    let d = dirs(&[pad("bob", "alice", Format::V3, SIZE)]);
    let alice = Dev::start(&d.alice, "Alice", limits());
    let max = otc_device::rpc::MAX_RELAYS;
    for i in 0..max {
        request(
            alice.addr,
            "PUT",
            &format!("/v1/cursor/relay{i}"),
            Some(br#"{"cursor": 7}"#),
        )
        .ok::<serde_json::Value>();
    }
    request(
        alice.addr,
        "PUT",
        "/v1/cursor/one-too-many",
        Some(br#"{"cursor": 7}"#),
    )
    .expect_error(413, "too_large");
    let r = alice.post(
        "/runrpc",
        &json!({"method": "save_next_ref", "args": ["Alice", "http://another:1", 3]}),
    );
    assert!(
        r.json()["error"]
            .as_str()
            .is_some_and(|e| e.contains("relays")),
        "{}",
        r.json()
    );
    // A relay already kept still moves.
    request(
        alice.addr,
        "PUT",
        "/v1/cursor/relay0",
        Some(br#"{"cursor": 9}"#),
    )
    .ok::<serde_json::Value>();
    assert_eq!(alice.get("/v1/cursor/relay0").json(), json!({"cursor": 9}));
    let saved = std::fs::read(d.alice.join("cursors.json")).expect("cursors.json");
    let saved: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&saved).expect("cursors.json is JSON");
    assert_eq!(saved.len(), max);
}

/// Issue 19: the confirm screen shows what the laptop asked to seal, as
/// text, with a bidi override and a zero-width joiner shown as
/// placeholders (never obeyed), and a binary message as its size.
#[test]
fn the_confirm_screen_shows_the_message_the_laptop_sent() {
    let d = dirs(&[pad("bob", "alice", Format::V3, SIZE)]);
    let alice = Dev::start(&d.alice, "Alice", limits());
    let (r, prompt) = alice.seal("bob", "attack at dawn");
    let _: PackageResponse = r.ok();
    assert!(prompt.has_text("attack at dawn"), "{prompt:#?}");
    assert!(prompt.has_text("Message from the laptop"), "{prompt:#?}");

    let (r, prompt) = alice.seal("bob", "pay \u{202E}0001\u{202C} to a\u{200D}b");
    let _: PackageResponse = r.ok();
    assert!(prompt.has_text("‹RLO›"), "{prompt:#?}");
    assert!(prompt.has_text("‹ZWJ›"), "{prompt:#?}");
    assert!(
        !prompt
            .texts
            .iter()
            .any(|t| t.contains('\u{202E}') || t.contains('\u{200D}')),
        "no raw bidi or zero-width character reaches the screen: {prompt:#?}"
    );

    let (r, prompt) = alice.answered(
        routes::PACKAGE,
        json!({"to": "bob", "message_b64": b64::encode(&[0xff, 0xfe, 0, 1])}),
        "confirm-seal",
        "approve",
    );
    let _: PackageResponse = r.ok();
    assert!(prompt.has_text("binary, 4 bytes"), "{prompt:#?}");
    alice.stop();
}

/// image/init says "otc-device ready" as soon as the endpoint listens, so a
/// plain data directory's store must be open by the time the port takes
/// connections: a request that arrives while the device starts waits for
/// its answer and is never refused as `locked` (seen in QEMU: after a power
/// cut, the first seal got 423 `locked` from a device that has no lock).
#[test]
fn a_request_made_while_a_plain_device_starts_is_never_refused_as_locked() {
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::sync::Arc;
    use std::time::Instant;

    let d = dirs(&[
        pad("bob", "alice", Format::V3, SIZE),
        pad("carol", "alice2", Format::V3, SIZE),
        pad("dave", "alice3", Format::V1, SIZE),
    ]);
    // A port that was free a moment ago, so the probe knows it before the
    // device binds it.
    let addr: SocketAddr = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port");
    // Connects as fast as it can from before the device starts; the first
    // connection that is taken sends one request and returns its answer.
    let probe = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(mut s) = TcpStream::connect(addr) {
                s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                s.write_all(
                    b"GET /v1/contacts HTTP/1.1\r\nHost: device\r\nConnection: close\r\n\r\n",
                )
                .expect("send the probe's request");
                let mut answer = String::new();
                let _ = s.read_to_string(&mut answer);
                return answer;
            }
            assert!(
                Instant::now() < deadline,
                "gave up after 30 s waiting for the device to listen on {addr}"
            );
            std::thread::sleep(Duration::from_micros(200));
        }
    });
    let platform = otc_device::platform::TestPlatform::new(WALL, 0);
    let (running, _script) = otc_testkit::start_device(
        &d.alice,
        otc_device::device::StartOptions {
            bind: otc_device::net::Bind::Loopback(addr),
            allowed_hosts: vec!["device".into()],
            ..otc_testkit::start_options("Alice")
        },
        Arc::new(platform),
    );
    let answer = probe.join().expect("the probe thread");
    let head = answer.lines().next().unwrap_or("").to_string();
    assert!(
        head.starts_with("HTTP/1.1 200"),
        "the first request answered {head:?}, whole answer: {answer}"
    );
    assert!(answer.contains("\"bob\""), "{answer}");
    running.stop().expect("stop the device");
}
