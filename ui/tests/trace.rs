//! Every screen and every button, through the screen trace and the scripted
//! touch source, with a fake clock.

mod common;

use common::*;
use otc_ui::*;
use std::time::Duration;

#[test]
fn home_reports_owner_contacts_link_and_alerts() {
    let mut r = Rig::new(800, 480);
    r.handle.set_home(home());
    r.step();
    let t = r.trace();
    assert_eq!(t.screen, "home");
    for s in [
        "Alice",
        "Ethernet connected · 10.77.0.1",
        "bob",
        "700 MiB left · 5,560,630 messages",
        "Carol Jiménez",
        "dave",
    ] {
        assert!(t.has_text(s), "{s:?} missing from {}", t.to_json());
    }
    let b = t.button("alerts").expect("alerts button");
    assert_eq!(b.label, "Alerts (2)");
    assert!(b.h >= 60, "touch target too small: {b:?}");
    assert!(b.x + b.w <= 800 && b.y + b.h <= 480);
}

#[test]
fn home_says_when_the_endpoint_is_on_loopback_not_ethernet() {
    let mut r = Rig::new(800, 480);
    let mut home = common::home();
    home.link = LinkView {
        up: true,
        address: Some("127.0.0.1:9051".into()),
        loopback: true,
    };
    r.handle.set_home(home);
    r.step();
    let t = r.trace();
    assert!(t.has_text("Development: loopback only · 127.0.0.1:9051"));
    assert!(!t.texts.iter().any(|x| x.contains("Ethernet")), "{t:?}");
}

#[test]
fn home_link_down_and_empty() {
    let mut r = Rig::new(800, 480);
    r.handle.set_home(HomeView {
        owner: "Alice".into(),
        ..HomeView::default()
    });
    r.step();
    let t = r.trace();
    assert!(t.has_text("Ethernet not connected"));
    assert!(t.has_text("No contacts yet"));
    assert_eq!(t.button("alerts").unwrap().label, "Alerts");
}

#[test]
fn home_with_many_contacts_says_how_many_more() {
    let mut r = Rig::new(800, 480);
    let mut h = home();
    for i in 0..5 {
        h.contacts.push(ContactView {
            name: format!("friend{i}"),
            pad_left_bytes: 1,
            pad_total_bytes: 2,
            messages_left: 0,
        });
    }
    r.handle.set_home(h);
    r.step();
    assert!(r.trace().has_text("+ 5 more contacts"));
}

#[test]
fn alerts_button_opens_alerts_and_back_returns() {
    let mut r = Rig::new(800, 480);
    let events = r.ui.take_events().unwrap();
    r.handle.set_home(home());
    r.handle.set_alerts(alerts());
    r.step();
    r.tap("alerts");
    let t = r.trace();
    assert_eq!(t.screen, "alerts");
    assert!(t.has_text("Replayed package from bob refused (message #41)"));
    assert!(t.has_text("11-22 05:41"));
    assert_eq!(events.try_recv(), Ok(UiEvent::AlertsOpened));
    r.tap("back");
    assert_eq!(r.trace().screen, "home");
}

#[test]
fn alerts_empty() {
    let mut r = Rig::new(800, 480);
    r.tap("alerts");
    assert!(r.trace().has_text("Nothing to report."));
}

#[test]
fn seal_prompt_shows_facts_and_approve_arrives() {
    let mut r = Rig::new(800, 480);
    r.handle.set_home(home());
    let ticket = r.prompt(seal());
    let t = r.trace();
    assert_eq!(t.screen, "confirm-seal");
    for s in [
        "Encrypt a message?",
        "bob",
        "100 bytes",
        "132 bytes",
        "699 MiB",
        "0:30",
    ] {
        assert!(t.has_text(s), "{s:?} missing from {}", t.to_json());
    }
    let a = t.button("Approve").unwrap();
    let j = t.button("Reject").unwrap();
    assert!(a.h >= 60 && j.h >= 60);
    assert!(a.x > j.x + j.w, "approve right of reject");
    assert_eq!(ticket.try_decision(), None);
    r.tap("approve");
    assert_eq!(ticket.try_decision(), Some(Decision::Approve));
    assert_eq!(r.trace().screen, "home");
}

#[test]
fn seal_reject() {
    let mut r = Rig::new(800, 480);
    let ticket = r.prompt(seal());
    r.tap("reject");
    assert_eq!(ticket.try_decision(), Some(Decision::Reject));
    assert_eq!(r.trace().screen, "home");
}

#[test]
fn seal_counts_down_and_times_out() {
    let mut r = Rig::new(800, 480);
    let ticket = r.prompt(seal());
    // 0.5 s have passed: still shows 0:30 (rounded up).
    assert!(r.trace().has_text("0:30"));
    r.advance(Duration::from_millis(1500));
    assert!(r.trace().has_text("0:28"), "{}", r.trace().to_json());
    r.advance(Duration::from_secs(27));
    assert!(r.trace().has_text("0:01"));
    assert_eq!(ticket.try_decision(), None);
    r.advance(Duration::from_secs(1));
    assert_eq!(ticket.try_decision(), Some(Decision::Timeout));
    assert_eq!(r.trace().screen, "home");
}

#[test]
fn client_note_is_labelled_as_from_the_computer() {
    let mut r = Rig::new(800, 480);
    let mut p = seal();
    if let Prompt::Seal { client_note, .. } = &mut p {
        *client_note = Some("lunch at 12?\u{1b}[2J".into());
    }
    let _t = r.prompt(p);
    let tr = r.trace();
    assert!(
        tr.texts
            .iter()
            .any(|t| t.starts_with("From the computer: ") && t.contains("lunch at 12?")),
        "{}",
        tr.to_json()
    );
    assert!(!tr.texts.iter().any(|t| t.contains('\u{1b}')));
}

#[test]
fn open_prompt_shows_warnings_and_both_buttons_work() {
    let mut r = Rig::new(800, 480);
    let ticket = r.prompt(open());
    let t = r.trace();
    assert_eq!(t.screen, "confirm-open");
    assert!(t.has_text("Decrypt a message?"));
    assert!(t.has_text("164 bytes"));
    assert!(t.has_text("⚠ Replay: message #41 was already opened once"));
    assert!(t.has_text("⚠ Skipped: 3 earlier messages never arrived"));
    r.tap("approve");
    assert_eq!(ticket.try_decision(), Some(Decision::Approve));

    let ticket = r.prompt(open());
    r.tap("reject");
    assert_eq!(ticket.try_decision(), Some(Decision::Reject));
}

#[test]
fn pairing_shows_fingerprint_in_groups_of_four() {
    let mut r = Rig::new(800, 480);
    let ticket = r.prompt(pair());
    let t = r.trace();
    assert_eq!(t.screen, "pairing");
    assert!(t.has_text("erin"));
    assert!(t.has_text("7F3A  9C21  E0B4  D58A"));
    assert!(t.has_text("6C1F  0E9B  2D7A  4C83"));
    assert_eq!(t.button("approve").unwrap().label, "They match");
    assert_eq!(t.button("reject").unwrap().label, "Different");
    r.tap("They match");
    assert_eq!(ticket.try_decision(), Some(Decision::Approve));
    let ticket = r.prompt(pair());
    r.tap("Different");
    assert_eq!(ticket.try_decision(), Some(Decision::Reject));
}

#[test]
fn taps_before_the_prompt_is_armed_are_ignored() {
    let mut r = Rig::new(800, 480);
    let ticket = r.handle.show_prompt(seal());
    r.step();
    let a = r.trace().button("approve").unwrap().clone();
    assert!(!a.armed, "the trace must say the button is not armed yet");
    assert!(r.trace().to_json().contains(r#""armed":false"#));
    let taps = r.ui.trace_handle();
    r.script.tap_button(&a);
    r.step();
    assert_eq!(ticket.try_decision(), None, "tap during arm delay counted");
    let (x, y) = a.center();
    let rec = taps
        .wait_tap(0, x, y, Duration::ZERO)
        .expect("tap recorded");
    assert_eq!(rec.ignored, Some(otc_ui::ignored::NOT_ARMED));
    r.advance(Duration::from_millis(500));
    // Arming changes no pixel, yet the published trace says so.
    let now = taps.get().button("approve").unwrap().clone();
    assert!(now.armed, "{}", taps.get().to_json());
    r.script.tap_button(&a);
    r.step();
    assert_eq!(ticket.try_decision(), Some(Decision::Approve));
    let rec = taps
        .wait_tap(1, x, y, Duration::ZERO)
        .expect("tap recorded");
    assert_eq!(rec.ignored, None);
}

/// Both ends of a tap must fall on the same armed prompt: a finger that
/// went down on prompt A and comes up after prompt B was swapped in (and
/// armed) approves nothing, and the next honest tap still works.
#[test]
fn a_press_on_one_prompt_and_a_release_on_the_next_does_nothing() {
    use otc_ui::TouchEvent;
    let mut r = Rig::new(800, 480);
    let first = r.prompt(seal());
    let a = r.trace().button("approve").unwrap().clone();
    let (x, y) = a.center();
    r.script.push(TouchEvent::Down { x, y });
    r.step();
    // While the finger is down, A goes away and B takes its place.
    r.handle.cancel(&first);
    r.step();
    assert_eq!(first.try_decision(), Some(Decision::Cancelled));
    let second = r.prompt(seal());
    assert_eq!(r.trace().button("approve"), Some(&a), "same place");
    r.script.push(TouchEvent::Up { x, y });
    r.step();
    assert_eq!(
        second.try_decision(),
        None,
        "a release on B of a press on A approved B"
    );
    let rec =
        r.ui.trace_handle()
            .wait_tap(0, x, y, Duration::ZERO)
            .expect("tap recorded");
    assert_eq!(rec.ignored, Some(otc_ui::ignored::PROMPT_CHANGED));
    // Nothing stays pressed: an honest tap on B approves it.
    r.script.tap_button(&a);
    r.step();
    assert_eq!(second.try_decision(), Some(Decision::Approve));
}

/// Same rule the other way round: a press on the home screen, then a prompt
/// arrives and arms under the finger; the release does nothing.
#[test]
fn a_press_before_a_prompt_and_a_release_on_it_does_nothing() {
    use otc_ui::TouchEvent;
    let mut r = Rig::new(800, 480);
    let probe = r.prompt(seal());
    let a = r.trace().button("approve").unwrap().clone();
    r.handle.cancel(&probe);
    r.step();
    let (x, y) = a.center();
    r.script.push(TouchEvent::Down { x, y });
    r.step();
    let ticket = r.prompt(seal());
    r.script.push(TouchEvent::Up { x, y });
    r.step();
    assert_eq!(ticket.try_decision(), None);
}

#[test]
fn second_prompt_is_busy_and_cancel_withdraws() {
    let mut r = Rig::new(800, 480);
    let first = r.prompt(seal());
    let second = r.handle.show_prompt(open());
    r.step();
    assert_eq!(second.try_decision(), Some(Decision::Busy));
    assert_eq!(r.trace().screen, "confirm-seal");
    r.handle.cancel(&first);
    r.step();
    assert_eq!(first.try_decision(), Some(Decision::Cancelled));
    assert_eq!(r.trace().screen, "home");
}

#[test]
fn dropping_the_ui_cancels_open_prompts() {
    let mut r = Rig::new(800, 480);
    let ticket = r.prompt(seal());
    let queued = r.handle.show_prompt(open());
    drop(r);
    assert_eq!(ticket.wait(), Decision::Cancelled);
    assert_eq!(queued.wait(), Decision::Cancelled);
}

#[test]
fn toasts_show_expire_and_dismiss() {
    let mut r = Rig::new(800, 480);
    r.handle.toast(Toast::success("Sealed 100 bytes for bob"));
    r.step();
    let t = r.trace();
    assert_eq!(t.toast.as_deref(), Some("Sealed 100 bytes for bob"));
    assert!(t.has_text("Sealed 100 bytes for bob"));
    r.advance(Duration::from_secs(3));
    assert_eq!(r.trace().toast, None);

    r.handle.toast(Toast::error("Wrong contact"));
    r.step();
    r.tap("dismiss-toast");
    assert_eq!(r.trace().toast, None);
}

#[test]
fn prompt_clears_toast() {
    let mut r = Rig::new(800, 480);
    r.handle.toast(Toast::info("hello"));
    r.step();
    let _t = r.prompt(seal());
    assert_eq!(r.trace().toast, None);
    assert!(r.trace().button("dismiss-toast").is_none());
}

#[test]
fn progress_screen_and_cancel() {
    let mut r = Rig::new(800, 480);
    let events = r.ui.take_events().unwrap();
    r.handle.show_progress(ProgressView {
        title: "Creating pad for erin".into(),
        done_bytes: 420_000_000,
        total_bytes: 1_000_000_000,
        cancellable: true,
    });
    r.step();
    let t = r.trace();
    assert_eq!(t.screen, "progress");
    assert!(t.has_text("Creating pad for erin"));
    assert!(t.has_text("42 %"));
    assert!(t.has_text("400 MiB of 953 MiB"));
    r.tap("cancel");
    assert_eq!(events.try_recv(), Ok(UiEvent::ProgressCancelled));
    r.handle.show_progress(ProgressView {
        title: "Creating pad for erin".into(),
        done_bytes: 1,
        total_bytes: 2,
        cancellable: false,
    });
    r.step();
    assert!(r.trace().buttons.is_empty());
    r.handle.hide_progress();
    r.step();
    assert_eq!(r.trace().screen, "home");
}

#[test]
fn every_screen_fits_480x320_with_big_buttons() {
    let mut r = Rig::new(480, 320);
    r.handle.set_home(home());
    r.step();
    let mut traces = vec![r.trace()];
    r.tap("alerts");
    traces.push(r.trace());
    r.tap("back");
    r.tap("bob");
    traces.push(r.trace());
    r.tap("Remove");
    traces.push(r.trace());
    r.tap("Cancel");
    r.tap("Back");
    for p in [seal(), open(), pair()] {
        let t = r.prompt(p);
        traces.push(r.trace());
        r.handle.cancel(&t);
        r.step();
    }
    for t in &traces {
        assert!(!t.buttons.is_empty(), "{}", t.to_json());
        for b in &t.buttons {
            if b.id.starts_with("contact:") {
                // A contact row is a list item: not as tall as a button
                // (4 rows must fit), but 7 mm and nearly the screen wide.
                assert!(b.h >= 44 && b.w >= 400, "{} {b:?} too small", t.screen);
            } else {
                assert!(b.h >= 60, "{} {b:?} too small", t.screen);
            }
            assert!(
                b.x + b.w <= 480 && b.y + b.h <= 320,
                "{} {b:?} off screen",
                t.screen
            );
        }
    }
}

#[test]
fn trace_json_shape() {
    let mut r = Rig::new(800, 480);
    let _t = r.prompt(seal());
    let v: serde_json::Value = serde_json::from_str(&r.trace().to_json()).unwrap();
    assert_eq!(v["screen"], "confirm-seal");
    assert!(v["texts"].as_array().unwrap().len() > 3);
    let b = &v["buttons"][1];
    assert_eq!(b["label"], "Approve");
    for k in ["x", "y", "w", "h"] {
        assert!(b[k].is_u64(), "{k}");
    }
}

#[test]
fn memory_screen_sees_every_change() {
    let mut r = Rig::new(800, 480);
    let g = r.screen.generation();
    assert!(g >= 1, "first frame presented");
    let _t = r.prompt(seal());
    assert!(r.screen.generation() > g);
}

#[test]
fn spawned_ui_answers_prompts_from_other_threads() {
    use otc_ui::sink::memory::MemoryDisplay;
    use otc_ui::source::scripted::ScriptedTouch;
    let (display, screen) = MemoryDisplay::new(800, 480);
    let (touch, script) = ScriptedTouch::new();
    let clock = FakeClock::new();
    let ui = Ui::spawn(
        Box::new(display),
        Some(Box::new(touch)),
        std::sync::Arc::new(clock.clone()),
        UiConfig::default(),
    )
    .unwrap();
    let ticket = ui.handle.show_prompt(seal());
    // Wait until the prompt is on screen, let it arm, tap Approve.
    let mut seen = 0;
    let give_up = std::time::Instant::now() + Duration::from_secs(10);
    let approve = loop {
        seen = screen.wait_for_change(seen, Duration::from_secs(1));
        if let Some(b) = ui.trace.get().button("approve") {
            break b.clone();
        }
        assert!(
            std::time::Instant::now() < give_up,
            "gave up after 10 s waiting for the prompt's Approve button on screen"
        );
    };
    clock.advance(Duration::from_secs(1));
    script.tap_button(&approve);
    assert_eq!(
        ticket.wait_timeout(Duration::from_secs(10)),
        Some(Decision::Approve)
    );
    assert!(ui.trace.get().has_text("EMULATOR") == cfg!(feature = "emulator"));
    ui.stop().unwrap();
}

#[test]
fn countdown_tick_repaints_only_the_countdown() {
    let mut r = Rig::new(800, 480);
    let _t = r.prompt(seal());
    r.clock.advance(Duration::from_secs(1));
    r.step();
    let d = r.screen.last_dirty();
    // The countdown text and bar live in the top band of the screen.
    assert!(d.y + d.h <= 100, "countdown repaint too big: {d:?}");
    assert!(d.h < 100, "countdown repaint too big: {d:?}");
}

#[test]
fn repaint_all_redraws_the_same_picture() {
    let mut r = Rig::new(800, 480);
    r.handle.set_home(home());
    r.step();
    let before = r.screen.frame().pixels;
    let d = r.ui.repaint_all().unwrap();
    assert_eq!(d, Rect::new(0, 0, 800, 480));
    assert_eq!(r.screen.frame().pixels, before);
}

#[test]
fn a_second_ui_on_the_same_thread_works() {
    let r = Rig::new(800, 480);
    drop(r);
    let mut r = Rig::new(480, 320);
    let t = r.prompt(seal());
    r.tap("approve");
    assert_eq!(t.try_decision(), Some(Decision::Approve));
}

#[test]
fn hidden_screens_do_not_take_taps() {
    let mut r = Rig::new(800, 480);
    let events = r.ui.take_events().unwrap();
    r.handle.set_home(home());
    r.step();
    let alerts = r.trace().button("alerts").unwrap().clone();
    let t = r.prompt(seal());
    // Where the home screen's Alerts button is, under the prompt.
    r.script.tap_button(&alerts);
    r.step();
    assert_eq!(r.trace().screen, "confirm-seal");
    assert!(events.try_recv().is_err());
    assert_eq!(t.try_decision(), None);
    r.tap("reject");
    // Where Approve was, on the home screen: nothing happens.
    r.script.tap(600, 420);
    r.step();
    assert_eq!(r.trace().screen, "home");
}
