//! **Read here** (issue 19, part 2): a message the owner chose to read on
//! the device is shown on the device's screen, and its text goes nowhere
//! else (the laptop's reply says `"read_on_device": true`, see
//! `otc_proto::rpc::UnpackageResponse`).
//!
//! The screen is a flow step (`read-here` in the trace): the title names
//! the contact, the lines are the text laid out by [`otc_ui::message`]
//! (control, bidi and zero-width characters as `‹NAME›` placeholders,
//! glyphs the font lacks as `‹U+XXXX›` and counted), and **Done** takes
//! it away. Nothing of it is written anywhere.

use crate::rpc::Plaintext;
use otc_ui::{ChoiceAnswer, ChoiceRequest, MessageView, UiHandle};

/// Characters per line: what the choice screen wraps without cutting a
/// placeholder at 480x320.
const LINE_CHARS: usize = 40;

/// The screen that shows `message` from `contact`.
pub fn screen(contact: &str, message: &Plaintext) -> ChoiceRequest {
    let (lines, warning) = match MessageView::of_bytes(message.bytes()) {
        MessageView::Text(text) => {
            let laid = otc_ui::message::lay_out(&text, LINE_CHARS);
            let mut notes = Vec::new();
            if laid.hidden > 0 {
                notes.push(format!(
                    "{} hidden characters shown as ‹names›",
                    laid.hidden
                ));
            }
            if laid.undrawable > 0 {
                notes.push(format!(
                    "{} characters this screen cannot draw",
                    laid.undrawable
                ));
            }
            let warning = (!notes.is_empty()).then(|| notes.join("; "));
            (laid.lines, warning)
        }
        MessageView::Binary { bytes } => (vec![format!("binary, {bytes} bytes")], None),
    };
    ChoiceRequest {
        screen: "read-here".to_string(),
        title: format!("Message from {}", otc_ui::format::untrusted(contact, 32)),
        lines,
        code: None,
        warning,
        choices: vec!["Done".to_string()],
        cancel: None,
        target: None,
    }
}

/// How long a message waits between asks while another step holds the
/// screen.
const RETRY: std::time::Duration = std::time::Duration::from_millis(100);

/// Shows `message` from `contact` until the owner taps Done. Does not
/// wait for the tap.
///
/// The pad is already spent when this runs, so the text must not be lost
/// when another step is on screen (a first read-here message not yet
/// dismissed, a pairing step): the screen answers `Busy` and the message
/// is asked again every [`RETRY`] until it is shown (decision: queue
/// rather than refuse, since a refusal checked before the open could
/// still lose the race with a step that comes up after it). It waits only
/// in memory (wiped when dropped) and gives up when the UI stops. Two
/// messages waiting together are shown one after the other, not
/// necessarily in the order they were opened.
pub fn show(ui: &UiHandle, contact: &str, message: &Plaintext) {
    let first = ui.ask_choice(screen(contact, message));
    let ui = ui.clone();
    let contact = contact.to_string();
    let message = message.clone();
    let _ = std::thread::Builder::new()
        .name("read-here".into())
        .spawn(move || {
            let mut ticket = first;
            loop {
                match ticket.wait() {
                    ChoiceAnswer::Busy => {
                        std::thread::sleep(RETRY);
                        ticket = ui.ask_choice(screen(&contact, &message));
                    }
                    // (A target step's tap cannot answer this screen,
                    // which has none.)
                    ChoiceAnswer::Chosen(_)
                    | ChoiceAnswer::Cancelled
                    | ChoiceAnswer::Tapped { .. } => return,
                }
            }
        });
}
