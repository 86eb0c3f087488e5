//! **Read here** (issue 19, part 2): a message the owner chose to read on
//! the device is shown on the device's screen, and its text goes nowhere
//! else (the laptop's reply says `"read_on_device": true`, see
//! `otc_proto::rpc::UnpackageResponse`).
//!
//! The screen is a flow step (`read-here` in the trace): the title names
//! the contact, the lines are the text laid out by [`otc_ui::message`]
//! (control, bidi and zero-width characters as `‹NAME›` placeholders,
//! glyphs the font lacks as `‹U+XXXX›` and counted), [`PAGE_LINES`] lines
//! a page (**Next** for the next page), and **Done** takes it away.
//! Nothing of it is written anywhere.

use crate::rpc::Plaintext;
use otc_ui::{ChoiceAnswer, ChoiceRequest, MessageView, UiHandle};

/// Characters per line: what the choice screen wraps without cutting a
/// placeholder at 480x320.
const LINE_CHARS: usize = 40;

/// Lines per page: what the 480x320 screen holds under the title with a
/// two-line warning and its button (a longer message is shown a page at a
/// time, **Next** below and **Done** at the top).
pub const PAGE_LINES: usize = 4;

/// The screen that shows `message` from `contact` (its first page).
pub fn screen(contact: &str, message: &Plaintext) -> ChoiceRequest {
    page(contact, message, 0)
}

/// How many pages `message` takes.
pub fn pages(message: &Plaintext) -> usize {
    laid_out(message).0.len().div_ceil(PAGE_LINES).max(1)
}

/// The message's lines and the warning about what they show differently.
fn laid_out(message: &Plaintext) -> (Vec<String>, Option<String>) {
    match MessageView::of_bytes(message.bytes()) {
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
    }
}

/// Page `n` (from 0) of the screen that shows `message` from `contact`.
pub fn page(contact: &str, message: &Plaintext, n: usize) -> ChoiceRequest {
    let (lines, warning) = laid_out(message);
    let pages = lines.len().div_ceil(PAGE_LINES).max(1);
    let n = n.min(pages - 1);
    let shown: Vec<String> = lines
        .iter()
        .skip(n * PAGE_LINES)
        .take(PAGE_LINES)
        .cloned()
        .collect();
    let name = otc_ui::format::untrusted(contact, 32);
    let last = n + 1 == pages;
    ChoiceRequest {
        screen: "read-here".to_string(),
        title: if pages > 1 {
            format!("From {name} ({}/{pages})", n + 1)
        } else {
            format!("Message from {name}")
        },
        lines: shown,
        code: None,
        warning,
        choices: vec![if last { "Done" } else { "Next" }.to_string()],
        cancel: (!last).then(|| "Done".to_string()),
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
            let (mut n, pages) = (0, pages(&message));
            loop {
                match ticket.wait() {
                    ChoiceAnswer::Busy => {
                        std::thread::sleep(RETRY);
                        ticket = ui.ask_choice(page(&contact, &message, n));
                    }
                    // Next.
                    ChoiceAnswer::Chosen(0) if n + 1 < pages => {
                        n += 1;
                        ticket = ui.ask_choice(page(&contact, &message, n));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_message_is_shown_a_page_at_a_time_and_nothing_is_lost() {
        let words: Vec<String> = (0..60).map(|i| format!("w{i:02}")).collect();
        let text = words.join(" ");
        let m = Plaintext::new(text.as_bytes());
        let n = pages(&m);
        assert!(n > 1, "{n}");
        let mut seen = Vec::new();
        for i in 0..n {
            let p = page("bob", &m, i);
            assert!(p.lines.len() <= PAGE_LINES, "{:?}", p.lines);
            assert_eq!(p.title, format!("From bob ({}/{n})", i + 1));
            let last = i + 1 == n;
            assert_eq!(p.choices, [if last { "Done" } else { "Next" }]);
            assert_eq!(p.cancel.as_deref(), (!last).then_some("Done"));
            seen.extend(p.lines);
        }
        assert_eq!(seen.join(" ").split_whitespace().collect::<Vec<_>>(), words);
        let short = screen("bob", &Plaintext::new(b"hi"));
        assert_eq!(short.title, "Message from bob");
        assert_eq!(short.lines, ["hi"]);
        assert_eq!(short.choices, ["Done"]);
        assert_eq!(short.cancel, None);
    }
}
