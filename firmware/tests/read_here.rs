//! Issue 19, part 2 ("Read here"): confirm-open offers **Read here** and
//! **Open for laptop**; a read-here open shows the text on the device only
//! and the laptop's reply carries `"read_on_device": true` and none of the
//! text. Real HTTP to a running device, the real UI tapped by a script.

mod common;

use common::device::*;
use otc_proto::Format;
use otc_proto::b64;
use otc_proto::routes;
use otc_proto::rpc::{PackageResponse, UnpackageResponse};
use serde_json::json;

const SIZE: u64 = 16 * 1024;

/// Fails if `body` holds any 4-byte run of `secret`, or any 6-character
/// run of the base64 of `secret` taken from each of its 3 alignments
/// (6 base64 characters are 4.5 bytes: longer than chance in a short body).
fn assert_holds_nothing_of(body: &str, secret: &str) {
    let s = secret.as_bytes();
    let b = body.as_bytes();
    for w in s.windows(4) {
        assert!(
            !b.windows(4).any(|x| x == w),
            "the reply holds {:?} of the plaintext: {body}",
            String::from_utf8_lossy(w)
        );
    }
    for off in 0..3 {
        let enc = b64::encode(&s[off..]);
        // The last 4 characters may carry padding or partial bits.
        let enc = &enc.as_bytes()[..enc.len().saturating_sub(4)];
        for w in enc.windows(6) {
            assert!(
                !b.windows(6).any(|x| x == w),
                "the reply holds base64 {:?} of the plaintext: {body}",
                String::from_utf8_lossy(w)
            );
        }
    }
}

#[test]
fn read_here_shows_the_text_on_the_device_and_gives_the_laptop_none_of_it() {
    let d = dirs(&[pad("bob", "alice", Format::V3, SIZE)]);
    let alice = Dev::start(&d.alice, "Alice", limits());
    let bob = Dev::start(&d.bob, "Bob", limits());
    // Runs of letters no reply's English or JSON holds by chance (a
    // 4-byte run such as "ing " would be found in any error text).
    let text = "zq7Vkx pjw93Lmq Rtuf Y0bd Qhx8 wvZe 3kPj";
    let (r, _) = alice.seal("bob", text);
    let sealed: PackageResponse = r.ok();
    let before = bob.contact("alice").receive_left;

    let h = bob.spawn(
        "POST",
        routes::UNPACKAGE,
        json!({"from": "alice", "package": sealed.package}),
    );
    let shown = bob.wait_prompt("confirm-open");
    let label = |id: &str| shown.button(id).map(|b| b.label.clone());
    assert_eq!(
        label("read-here").as_deref(),
        Some("Read here"),
        "{shown:#?}"
    );
    assert_eq!(
        label("approve").as_deref(),
        Some("Open for laptop"),
        "{shown:#?}"
    );
    assert!(label("reject").is_some(), "{shown:#?}");
    bob.tap("read-here");
    let resp = h.join().expect("request thread");

    // The text is on the device's screen, and only there.
    let screen = bob.wait_screen("the message read on the device", |t| {
        t.screen == "read-here"
    });
    // Laid out in lines: compare without the spaces a line break takes.
    let squeeze = |s: &str| s.split_whitespace().collect::<String>();
    assert!(
        squeeze(&screen.texts.join(" ")).contains(&squeeze(text)),
        "{screen:#?}"
    );
    bob.tap("Done");
    bob.wait_screen("the message to leave the screen", |t| {
        t.screen != "read-here"
    });

    let v = resp.json();
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(v["read_on_device"], json!(true), "{}", resp.body);
    assert_eq!(v["message"], json!(null), "{}", resp.body);
    assert_eq!(v["message_b64"], json!(""), "{}", resp.body);
    assert_holds_nothing_of(&resp.body, text);
    let parsed: UnpackageResponse = resp.ok();
    assert!(parsed.read_on_device);

    // The pad was spent exactly once, and the package cannot be opened again.
    let cost = Format::V3.pad_cost(text.len()) as u64;
    assert_eq!(bob.contact("alice").receive_left, before - cost);
    let again = bob.post(
        routes::UNPACKAGE,
        &json!({"from": "alice", "package": sealed.package}),
    );
    again.expect_error(410, "replayed");
    assert_holds_nothing_of(&again.body, text);
    assert_eq!(bob.contact("alice").receive_left, before - cost);

    // Open for laptop still gives the laptop the text.
    let (r, _) = alice.seal("bob", "second");
    let sealed: PackageResponse = r.ok();
    let (r, _) = bob.open("alice", &sealed.package);
    let opened: UnpackageResponse = r.ok();
    assert_eq!(opened.message.as_deref(), Some("second"));
    assert!(!opened.read_on_device);
    alice.stop();
    bob.stop();
}

#[test]
fn runrpc_unpackage_read_here_gives_the_original_client_a_note_not_the_text() {
    let d = dirs(&[pad("bob", "alice", Format::V3, SIZE)]);
    let alice = Dev::start(&d.alice, "Alice", limits());
    let bob = Dev::start(&d.bob, "Bob", limits());
    let text = "Wq9z Kx4v pJ7m Tz0q";
    let (r, _) = alice.seal("bob", text);
    let sealed: PackageResponse = r.ok();
    let (resp, _) = bob.answered(
        routes::RUNRPC,
        json!({"method": "unpackage", "args": ["alice", "Bob", sealed.package], "kwargs": {}}),
        "confirm-open",
        "read-here",
    );
    assert_eq!(resp.status, 200, "{}", resp.body);
    let v = resp.json();
    assert_eq!(v["return"]["success"], json!(true), "{}", resp.body);
    assert_eq!(
        v["return"]["message"],
        json!("(read on the device)"),
        "{}",
        resp.body
    );
    assert_holds_nothing_of(&resp.body, text);
    let screen = bob.wait_screen("the message read on the device", |t| {
        t.screen == "read-here"
    });
    assert!(screen.has_text(text), "{screen:#?}");
    alice.stop();
    bob.stop();
}

/// A Read-here open while another message is still on the device's
/// screen (the screen answers Busy to a second step) spends the pad, so
/// its text must not be lost: it is shown once the owner taps Done on the
/// first.
#[test]
fn a_read_here_open_while_another_message_is_on_screen_is_shown_after_it() {
    let d = dirs(&[pad("bob", "alice", Format::V3, SIZE)]);
    let alice = Dev::start(&d.alice, "Alice", limits());
    let bob = Dev::start(&d.bob, "Bob", limits());
    let squeeze = |s: &str| s.split_whitespace().collect::<String>();
    let first = "Fq2x Wpl7 first";
    let second = "Zt9k Jrm4 second";
    for text in [first, second] {
        let (r, _) = alice.seal("bob", text);
        let sealed: PackageResponse = r.ok();
        let h = bob.spawn(
            "POST",
            routes::UNPACKAGE,
            json!({"from": "alice", "package": sealed.package}),
        );
        bob.wait_prompt("confirm-open");
        bob.tap("read-here");
        let resp = h.join().expect("request thread");
        assert_eq!(resp.status, 200, "{}", resp.body);
        assert_eq!(resp.json()["read_on_device"], json!(true), "{}", resp.body);
    }
    // The first is on screen; the second waits behind it.
    let screen = bob.wait_screen("the first message on the device", |t| {
        t.screen == "read-here" && squeeze(&t.texts.join(" ")).contains(&squeeze(first))
    });
    assert!(!squeeze(&screen.texts.join(" ")).contains(&squeeze(second)));
    bob.tap("Done");
    bob.wait_screen("the second message after Done on the first", |t| {
        t.screen == "read-here" && squeeze(&t.texts.join(" ")).contains(&squeeze(second))
    });
    bob.tap("Done");
    bob.wait_screen("the second message to leave the screen", |t| {
        t.screen != "read-here"
    });
    alice.stop();
    bob.stop();
}
