//! Issue #17, items 1 (part) and 2: the contact screen and the on-screen
//! keyboard on a running device (real store in a temp dir, real UI on a
//! memory display, taps through the scripted touch source), read through
//! the screen trace.

mod common;

use common::device::*;
use otc_device::device;
use otc_proto::Format;
use otc_proto::routes;
use otc_ui::{TextAnswer, TextRequest};
use serde_json::json;
use std::time::Duration;

const SIZE: u64 = 16 * 1024;

fn home_with(dev: &Dev, name: &'static str) {
    dev.wait_screen(&format!("home with a row for {name}"), |t| {
        t.screen == "home" && t.button(name).is_some()
    });
}

/// From home, tap `name` and wait for its facts.
fn open_contact(dev: &Dev, name: &str) -> otc_ui::ScreenTrace {
    dev.tap(name);
    dev.wait_screen(&format!("{name}'s facts"), |t| {
        t.screen == "contact" && t.has_text("Fingerprint")
    })
}

#[test]
fn the_contact_screen_shows_the_stores_facts() {
    let d = dirs(&[pad("bob", "alice", Format::V3, SIZE)]);
    let alice = Dev::start(&d.alice, "Alice", limits());
    home_with(&alice, "bob");
    let (resp, _) = alice.seal("bob", "attack at dawn");
    assert_eq!(resp.status, 200, "{}", resp.body);
    let c = alice
        .running()
        .service()
        .expect("unlocked")
        .store()
        .contact("bob")
        .expect("bob in the store");
    let t = open_contact(&alice, "bob");
    assert_eq!(t.texts[0], "bob");
    let send = format!(
        "{} · {}",
        otc_ui::format::bytes(c.send_left),
        otc_ui::format::messages(c.send_messages_left)
    );
    let receive = format!(
        "{} · {}",
        otc_ui::format::bytes(c.receive_left),
        otc_ui::format::messages(c.receive_messages_left)
    );
    assert!(c.send_left < SIZE / 2, "the seal used pad: {c:?}");
    let fingerprint = otc_ui::format::fingerprint_rows(&c.pad_id[..16], 4).join("  ");
    for s in [
        "You can send",
        send.as_str(),
        "They can send",
        receive.as_str(),
        "Format",
        "v3",
        "Fingerprint",
        fingerprint.as_str(),
    ] {
        assert!(t.has_text(s), "{s:?} missing from {}", t.to_json());
    }
    assert!(!t.has_text("Made"), "the store does not know when: {t:?}");
    alice.tap("Back");
    alice.wait_screen("home", |t| t.screen == "home");
}

#[test]
fn remove_after_confirmation_erases_the_pad_and_is_audited() {
    let d = dirs(&[
        pad("bob", "alice", Format::V3, SIZE),
        pad("carol", "alice2", Format::V3, SIZE),
    ]);
    let alice = Dev::start(&d.alice, "Alice", limits());
    home_with(&alice, "bob");
    let pad_id = alice
        .running()
        .service()
        .expect("unlocked")
        .store()
        .contact("bob")
        .unwrap()
        .pad_id;
    let pad_file = d.alice.join("pads").join(format!("{pad_id}.pad"));
    assert!(pad_file.exists(), "{}", pad_file.display());

    open_contact(&alice, "bob");
    alice.tap("Remove");
    let t = alice.wait_screen("the question", |t| t.screen == "remove-contact");
    assert!(t.has_text("Remove bob?"), "{t:?}");
    alice.tap("remove-confirm");
    let t = alice.wait_screen("home without bob, and the toast", |t| {
        t.screen == "home" && t.button("bob").is_none() && t.has_text("Removed bob")
    });
    assert!(t.button("carol").is_some(), "only bob goes: {t:?}");
    assert_eq!(
        alice
            .running()
            .service()
            .expect("unlocked")
            .store()
            .contacts(),
        vec!["carol".to_string()]
    );
    assert!(!pad_file.exists(), "the pad file is erased and gone");
    alice.wait_audit("pad_removed");
    // The laptop sees it gone too, and it stays gone after a restart.
    assert!(alice.contacts().iter().all(|c| c.name != "bob"));
    let alice = alice.restart();
    home_with(&alice, "carol");
    assert!(alice.screen().button("bob").is_none());
}

#[test]
fn cancel_keeps_the_contact() {
    let d = dirs(&[pad("bob", "alice", Format::V3, SIZE)]);
    let alice = Dev::start(&d.alice, "Alice", limits());
    home_with(&alice, "bob");
    open_contact(&alice, "bob");
    alice.tap("Remove");
    alice.wait_screen("the question", |t| t.screen == "remove-contact");
    alice.tap("Cancel");
    alice.wait_screen("bob's facts again", |t| t.screen == "contact");
    alice.tap("Back");
    home_with(&alice, "bob");
    assert_eq!(
        alice
            .running()
            .service()
            .expect("unlocked")
            .store()
            .contacts(),
        vec!["bob".to_string()]
    );
    assert!(!alice.audit_kinds().iter().any(|k| k == "pad_removed"));
    // Still usable.
    let (resp, _) = alice.seal("bob", "still here");
    assert_eq!(resp.status, 200, "{}", resp.body);
}

#[test]
fn remove_is_refused_while_a_prompt_waits() {
    let d = dirs(&[pad("bob", "alice", Format::V3, SIZE)]);
    let alice = Dev::start(&d.alice, "Alice", limits());
    home_with(&alice, "bob");
    let req = alice.spawn(
        "POST",
        routes::PACKAGE,
        json!({"to": "bob", "message": "wait for me"}),
    );
    alice.wait_prompt("confirm-seal");
    // As if the owner's confirmation crossed the prompt's arrival.
    alice.running().remove_contact("bob");
    assert_eq!(
        alice
            .running()
            .service()
            .expect("unlocked")
            .store()
            .contacts(),
        vec!["bob".to_string()]
    );
    alice.tap("approve");
    let resp = req.join().expect("request thread");
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert!(!alice.audit_kinds().iter().any(|k| k == "pad_removed"));
    // Once the prompt is gone, Remove works.
    alice.wait_no_prompt();
    alice.running().remove_contact("bob");
    assert!(
        alice
            .running()
            .service()
            .expect("unlocked")
            .store()
            .contacts()
            .is_empty()
    );
    alice.wait_audit("pad_removed");
}

#[test]
fn the_keyboard_takes_a_name_by_the_stores_rule() {
    let d = dirs(&[pad("bob", "alice", Format::V3, SIZE)]);
    let alice = Dev::start(&d.alice, "Alice", limits());
    home_with(&alice, "bob");
    let ui = alice.running().ui.handle.clone();
    let taken = alice
        .running()
        .service()
        .expect("unlocked")
        .store()
        .contacts();
    let ticket = ui.ask_text(
        TextRequest::contact_name(),
        device::contact_name_check(taken),
    );
    let on_keyboard = |what: &str, pred: &dyn Fn(&otc_ui::ScreenTrace) -> bool| {
        alice.wait_screen(what, |t| t.screen == "keyboard" && pred(t))
    };
    on_keyboard("the keyboard", &|_| true);
    // Keys by id: a label changes with the case key, an id never.
    for k in ["kb-char-b", "kb-char-o", "kb-char-b"] {
        alice.tap(k);
    }
    on_keyboard("bob typed", &|t| t.texts[1] == "bob");
    alice.tap("Done");
    on_keyboard("the reason", &|t| {
        t.has_text("You already have a contact with this name.")
    });
    for k in ["⇧", "kb-char-x"] {
        alice.tap(k);
    }
    on_keyboard("bobX typed", &|t| t.texts[1] == "bobX");
    alice.tap("⌫");
    alice.tap("⇧");
    for k in ["space", "kb-char-2"] {
        alice.tap(k);
    }
    on_keyboard("bob 2 typed", &|t| t.texts[1] == "bob 2");
    alice.tap("Done");
    on_keyboard("no spaces", &|t| t.has_text("No spaces in a name"));
    assert_eq!(ticket.try_answer(), None);
    alice.tap("⌫");
    alice.tap("⌫");
    alice.tap("kb-char-.");
    alice.tap("kb-char-2");
    alice.tap("Done");
    assert_eq!(
        ticket.wait_timeout(Duration::from_secs(10)),
        Some(TextAnswer::Done("bob.2".into())),
        "Done on an accepted name answers"
    );
    alice.wait_screen("home again", |t| t.screen == "home");
    // The name is one the store takes.
    otc_device::pad::store::validate_contact_name("bob.2").expect("valid");
}
