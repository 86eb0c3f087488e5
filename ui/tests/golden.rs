//! Golden PNGs guard the look of home, confirm-seal and confirm-open at
//! 800x480, and of the contact screens and the keyboards (a name's, and
//! Write here's message keyboard) at 800x480 and 480x320. Regenerate after an intended change with
//!
//!     OTC_UPDATE_GOLDEN=1 cargo test -p otc-ui --test golden
//!
//! and look at the files in ui/tests/golden/. On a mismatch the actual frame
//! and a diff (changed pixels in magenta) are written to
//! target/golden-out/. Snapshots of every screen at 800x480 and 480x320 are
//! written there too, for review (not compared).

mod common;

use common::*;
use otc_ui::sink::memory::frame_to_png;
use otc_ui::*;
use std::path::PathBuf;
use std::time::Duration;

fn out_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let d = target.join("golden-out");
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn decode(png_bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    let dec = png::Decoder::new(png_bytes);
    let mut reader = dec.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb);
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

fn encode(w: u32, h: u32, rgb: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, w, h);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    enc.write_header().unwrap().write_image_data(rgb).unwrap();
    out
}

fn check(name: &str, frame: &Frame) {
    let actual = frame_to_png(frame).unwrap();
    let golden = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/golden/{name}.png"));
    if std::env::var_os("OTC_UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &actual).unwrap();
        return;
    }
    let want = std::fs::read(&golden).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; create it with OTC_UPDATE_GOLDEN=1 cargo test -p otc-ui --test golden",
            golden.display()
        )
    });
    let (ww, wh, want) = decode(&want);
    let (aw, ah, got) = decode(&actual);
    assert_eq!((ww, wh), (aw, ah), "{name}: size changed");
    let mut diff = got.clone();
    let mut bad = 0usize;
    for (i, (a, b)) in got.chunks(3).zip(want.chunks(3)).enumerate() {
        // Tiny tolerance for rounding differences in anti-aliasing.
        if a.iter().zip(b).any(|(x, y)| x.abs_diff(*y) > 8) {
            bad += 1;
            diff[i * 3..i * 3 + 3].copy_from_slice(&[255, 0, 255]);
        }
    }
    // Allow at most 0.05 % of pixels to differ.
    if bad * 2000 > (aw * ah) as usize {
        let out = out_dir();
        std::fs::write(out.join(format!("{name}.actual.png")), &actual).unwrap();
        std::fs::write(out.join(format!("{name}.diff.png")), encode(aw, ah, &diff)).unwrap();
        panic!(
            "{name}: {bad} pixels differ from {}; see {}/{name}.actual.png and .diff.png \
             (if the change is intended: OTC_UPDATE_GOLDEN=1 cargo test -p otc-ui --test golden)",
            golden.display(),
            out.display()
        );
    }
}

fn snapshot(name: &str, r: &Rig) {
    std::fs::write(
        out_dir().join(format!("{name}.png")),
        frame_to_png(&r.screen.frame()).unwrap(),
    )
    .unwrap();
}

/// Home, alerts, about, the three prompts, progress and a toast at one size.
fn all_screens(w: u32, h: u32, golden: bool) {
    let size = format!("{w}x{h}");
    let mut r = Rig::new(w, h);
    r.handle.set_home(home());
    r.handle.set_alerts(alerts());
    r.step();
    snapshot(&format!("home-{size}"), &r);
    if golden {
        check("home", &r.screen.frame());
    }
    let mut crowded = home();
    crowded.contacts.push(ContactView {
        name: "Bartholomew Featherstonehaugh-Smythe".into(),
        pad_left_bytes: 999_999_999_999,
        pad_total_bytes: 1_000_000_000_000,
        messages_left: 7_575_757_575,
        damaged: false,
    });
    crowded.link = LinkView {
        up: false,
        address: None,
        loopback: false,
    };
    r.handle.set_home(crowded);
    r.step();
    snapshot(&format!("home-crowded-{size}"), &r);
    r.handle.set_home(home());
    r.step();

    r.tap("alerts");
    snapshot(&format!("alerts-{size}"), &r);
    r.tap("back");

    r.handle.set_about(about());
    r.tap("about");
    snapshot(&format!("about-{size}"), &r);
    r.tap("back");

    // The contact screens and the keyboard are checked at both sizes.
    r.tap("bob");
    r.handle.set_contact_details(ContactDetailsView {
        name: "bob".into(),
        send_left_bytes: 734_003_200,
        send_total_bytes: 1_000_000_000,
        send_messages_left: 5_560_630,
        receive_left_bytes: 999_000_000,
        receive_total_bytes: 1_000_000_000,
        receive_messages_left: 7_568_181,
        format: "v3".into(),
        fingerprint: "7f3a9c21e0b4d58a".into(),
        made_unix: Some(1_795_326_060),
        private: false,
    });
    r.step();
    check(&format!("contact-{size}"), &r.screen.frame());
    r.tap("Remove");
    check(&format!("remove-contact-{size}"), &r.screen.frame());
    r.tap("Cancel");
    r.tap("Back");

    let t = r.handle.ask_text(
        TextRequest::contact_name(),
        Box::new(|_: &str| Err("A name cannot start with a dot.".into())),
    );
    r.step();
    check(&format!("keyboard-{size}"), &r.screen.frame());
    for k in [".", "b", "o", "b", "⇧"] {
        r.tap(k);
    }
    r.tap("Done");
    check(&format!("keyboard-refused-{size}"), &r.screen.frame());
    r.handle.cancel_text(&t);
    r.step();

    // Write here (issue 19): the message keyboard, its Done saying Seal.
    let t = r
        .handle
        .ask_text(TextRequest::message("bob"), Box::new(|_: &str| Ok(())));
    r.step();
    for k in ["m", "e", "e", "t", "space", "a", "t", "space", "9"] {
        r.tap(k);
    }
    assert!(r.trace().button("Seal").is_some());
    check(&format!("keyboard-message-{size}"), &r.screen.frame());
    r.handle.cancel_text(&t);
    r.step();

    // Steps of the pairing flows, at both sizes: the size choice (the
    // longest labels) and the pairing code.
    let t = r.handle.ask_choice(ChoiceRequest {
        screen: "new-contact-size".into(),
        title: "Pad size for erin".into(),
        lines: vec!["3.20 GiB free; 256 MiB stays free for the device.".into()],
        choices: vec![
            "64 MiB · about 578,524 messages of 100 bytes · ~1 min 05 s".into(),
            "256 MiB · about 2,314,098 messages of 100 bytes · ~4 min 22 s".into(),
            "1 GiB · about 9,256,395 messages of 100 bytes · ~17 min 28 s".into(),
        ],
        cancel: Some("Cancel".into()),
        ..Default::default()
    });
    r.step();
    check(&format!("choice-size-{size}"), &r.screen.frame());
    r.handle.cancel_choice(&t);
    r.step();
    let t = r.handle.ask_choice(ChoiceRequest {
        screen: "new-contact-code".into(),
        title: "Pairing code for erin".into(),
        lines: vec!["Your partner types this code when importing. It is shown only here.".into()],
        code: Some("K7QW 2MXD 9PLA 4RTE HN3B 6VZC U".into()),
        choices: vec!["Partner has imported it".into()],
        cancel: Some("Cancel".into()),
        ..Default::default()
    });
    r.step();
    check(&format!("choice-code-{size}"), &r.screen.frame());
    r.handle.cancel_choice(&t);
    r.step();
    // Issue 19's screens, as firmware builds them (read_here.rs and
    // conversation.rs; their words are tested there): a message read on
    // the device, and the conversation kept in memory.
    let t = r.handle.ask_choice(ChoiceRequest {
        screen: "read-here".into(),
        title: "Message from bob".into(),
        lines: vec![
            "Meet me at the north gate at nine. Bring".into(),
            "the papers and come alone‹RLO›, please.".into(),
        ],
        warning: Some("1 hidden characters shown as ‹names›".into()),
        choices: vec!["Done".into()],
        ..Default::default()
    });
    r.step();
    check(&format!("read-here-{size}"), &r.screen.frame());
    r.handle.cancel_choice(&t);
    r.step();
    let t = r.handle.ask_choice(ChoiceRequest {
        screen: "conversation".into(),
        title: "Messages with bob".into(),
        // The most it shows: 4 lines of messages and the count before.
        lines: vec![
            "(12 older not shown)".into(),
            "bob: Meet me at the north gate at nine.".into(),
            "Bring the papers.".into(),
            "You: meet at 9".into(),
            "bob: fine".into(),
        ],
        warning: Some(
            "In memory only: cleared when the device locks or stops, never written to the card"
                .into(),
        ),
        choices: vec!["Done".into()],
        ..Default::default()
    });
    r.step();
    check(&format!("conversation-{size}"), &r.screen.frame());
    r.handle.cancel_choice(&t);
    r.step();
    let t = r.handle.ask_choice(ChoiceRequest {
        screen: "new-contact-full".into(),
        title: "No room for a new pad".into(),
        warning: Some(
            "The data partition has 12.0 MiB free and the device keeps 256 MiB free. \
             Remove a contact you no longer need to make room."
                .into(),
        ),
        choices: vec!["Back".into()],
        ..Default::default()
    });
    r.step();
    snapshot(&format!("choice-full-{size}"), &r);
    r.handle.cancel_choice(&t);
    r.step();

    let t = r.prompt(seal());
    snapshot(&format!("confirm-seal-{size}"), &r);
    if golden {
        check("confirm-seal", &r.screen.frame());
    }
    r.handle.cancel(&t);

    let mut noted = seal();
    if let Prompt::Seal { client_note, .. } = &mut noted {
        *client_note = Some("Re: dinner on Friday".into());
    }
    r.step();
    let t = r.prompt(noted);
    snapshot(&format!("confirm-seal-note-{size}"), &r);
    r.handle.cancel(&t);
    r.step();
    // Past the window in which the next prompt would be a changed
    // request (issue 23): these goldens show prompts as they first come.
    r.advance(Duration::from_secs(3));

    // The message on confirm-seal (issue 19), golden at both sizes: a
    // long one that scrolls, with bidi, zero-width, CJK and emoji.
    let t = r.prompt(seal_text(
        "Grüße aus Łódź! Встреча в 6, Ελλάδα.\nPay \u{202e}0001\u{202c} to bo\u{200d}b, \
         not 你好 👍.\nThe third line is long enough to be cut into two lines here.\n\
         Fourth.\nFifth and last.",
    ));
    snapshot(&format!("confirm-seal-message-{size}"), &r);
    check(&format!("confirm-seal-message-{size}"), &r.screen.frame());
    r.tap("message-down");
    snapshot(&format!("confirm-seal-message-down-{size}"), &r);
    check(
        &format!("confirm-seal-message-down-{size}"),
        &r.screen.frame(),
    );
    r.handle.cancel(&t);
    r.step();
    // Past the window in which the next prompt would be a changed
    // request (issue 23): these goldens show prompts as they first come.
    r.advance(Duration::from_secs(3));
    let mut binary = seal();
    if let Prompt::Seal { message, .. } = &mut binary {
        *message = Some(MessageView::of_bytes(&[0xff; 100]));
    }
    let t = r.prompt(binary);
    snapshot(&format!("confirm-seal-binary-{size}"), &r);
    r.handle.cancel(&t);
    r.step();
    // Past the window in which the next prompt would be a changed
    // request (issue 23): these goldens show prompts as they first come.
    r.advance(Duration::from_secs(3));

    let t = r.prompt(open());
    snapshot(&format!("confirm-open-{size}"), &r);
    if golden {
        check("confirm-open", &r.screen.frame());
    }
    r.handle.cancel(&t);
    r.step();
    // Past the window in which the next prompt would be a changed
    // request (issue 23): these goldens show prompts as they first come.
    r.advance(Duration::from_secs(3));

    let t = r.prompt(pair());
    snapshot(&format!("pairing-{size}"), &r);
    r.handle.cancel(&t);
    r.step();
    // Past the window in which the next prompt would be a changed
    // request (issue 23): these goldens show prompts as they first come.
    r.advance(Duration::from_secs(3));

    r.handle.show_progress(ProgressView {
        title: "Creating pad for erin".into(),
        done_bytes: 420_000_000,
        total_bytes: 1_000_000_000,
        cancellable: true,
        time_left: Some(std::time::Duration::from_secs(95)),
    });
    r.step();
    snapshot(&format!("progress-{size}"), &r);
    r.handle.hide_progress();
    r.handle.toast(Toast::success("Sealed 100 bytes for bob"));
    r.step();
    snapshot(&format!("toast-{size}"), &r);
}

#[test]
fn golden_800x480() {
    all_screens(800, 480, true);
}

#[test]
fn snapshots_480x320() {
    all_screens(480, 320, false);
}
