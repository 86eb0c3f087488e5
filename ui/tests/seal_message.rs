//! What you see is what you seal (issue 19): the confirm-seal screen shows
//! the message itself, with what it cannot draw or must not obey made
//! visible and counted, and says how much of it is shown.

mod common;

use common::*;
use otc_ui::*;

#[test]
fn the_sealed_text_is_on_the_confirm_screen_labelled_as_from_the_laptop() {
    let mut r = Rig::new(800, 480);
    let ticket = r.prompt(seal_text("Meet me at the north gate at 6."));
    let t = r.trace();
    assert_eq!(t.screen, "confirm-seal");
    assert!(
        t.has_text("Meet me at the north gate at 6."),
        "{}",
        t.to_json()
    );
    assert!(
        t.has_text("Message from the laptop, all shown (31 characters)"),
        "{}",
        t.to_json()
    );
    r.tap("approve");
    assert_eq!(ticket.try_decision(), Some(Decision::Approve));
}

#[test]
fn bidi_override_and_zero_width_joiner_are_shown_as_placeholders() {
    let mut r = Rig::new(800, 480);
    let _t = r.prompt(seal_text("pay \u{202e}0001\u{202c} to bo\u{200d}b"));
    let t = r.trace();
    assert!(
        t.has_text("pay ‹RLO›0001‹PDF› to bo‹ZWJ›b"),
        "{}",
        t.to_json()
    );
    assert!(
        t.has_text("3 control, direction or invisible (‹…›)"),
        "{}",
        t.to_json()
    );
    // Nothing on the screen obeys them.
    for c in ['\u{202e}', '\u{202c}', '\u{200d}'] {
        assert!(
            !t.texts.iter().any(|x| x.contains(c)),
            "{c:?} reached the screen"
        );
    }
}

#[test]
fn cjk_and_emoji_outside_the_font_are_counted() {
    let mut r = Rig::new(480, 320);
    let _t = r.prompt(seal_text("ok 你好 👍"));
    let t = r.trace();
    assert!(
        t.has_text("3 characters this screen cannot draw (‹U+…›)"),
        "{}",
        t.to_json()
    );
    assert!(
        t.has_text("ok ‹U+4F60›‹U+597D› ‹U+1F44D›"),
        "{}",
        t.to_json()
    );
}

#[test]
fn a_binary_message_says_binary_and_its_size() {
    let mut r = Rig::new(800, 480);
    let mut p = seal();
    if let Prompt::Seal { message, .. } = &mut p {
        *message = Some(MessageView::of_bytes(&[0xff, 0xfe, 0, 1, 2]));
    }
    let _t = r.prompt(p);
    let t = r.trace();
    assert!(
        t.texts.iter().any(|x| x.contains("binary, 5 bytes")),
        "{}",
        t.to_json()
    );
}

#[test]
fn a_long_message_scrolls_and_says_how_much_is_shown() {
    let mut r = Rig::new(800, 480);
    let text: String = (1..=10).map(|i| format!("line number {i}\n")).collect();
    let ticket = r.prompt(seal_text(text.trim_end()));
    let t = r.trace();
    assert!(
        t.has_text("Message from the laptop: lines 1-3 of 10"),
        "{}",
        t.to_json()
    );
    assert!(t.has_text("line number 3") && !t.has_text("line number 4"));
    assert!(t.buttons.iter().any(|b| b.label == "Down"));
    assert!(!t.buttons.iter().any(|b| b.label == "Up"));
    for _ in 0..3 {
        r.tap("message-down");
    }
    let t = r.trace();
    assert!(
        t.has_text("Message from the laptop: lines 10-10 of 10"),
        "{}",
        t.to_json()
    );
    assert!(t.has_text("line number 10"));
    assert!(!t.buttons.iter().any(|b| b.label == "Down"));
    r.tap("message-up");
    assert!(
        r.trace()
            .has_text("Message from the laptop: lines 7-9 of 10")
    );
    // Scrolling decides nothing.
    assert_eq!(ticket.try_decision(), None);
    r.tap("approve");
    assert_eq!(ticket.try_decision(), Some(Decision::Approve));
}
