//! The conversation with each contact (issue 19, part 4): the messages
//! read (**Read here**) or written (**Write here**) on the device since it
//! was last unlocked (or since it started, for a device without a lock),
//! shown from **Messages** on the contact's screen.
//!
//! Kept in RAM only, as [`Plaintext`] (wiped when dropped): never written
//! to the card, cleared when the device locks (Lock now, the idle lock)
//! and gone with a stop or a power cut. The screen says so. Messages the
//! owner opened *for the laptop* are not here: the laptop has those.
//!
//! Decisions: at most [`KEEP`] messages per contact (the oldest go); the
//! screen (a flow step, `conversation` in the trace) shows the newest that
//! fit in [`SHOWN_LINES`] lines, oldest first, each line starting with who
//! wrote it, and says how many older ones it leaves out.

use crate::rpc::Plaintext;
use otc_ui::{ChoiceRequest, MessageView, UiHandle};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// Messages kept per contact.
pub const KEEP: usize = 50;
/// Lines of the screen given to messages: with the count of older ones
/// above them, what the 480x320 screen holds above its warning and Done
/// (the golden `conversation-480x320.png`).
pub const SHOWN_LINES: usize = 4;
/// Characters per line, as the read-here screen.
const LINE_CHARS: usize = 40;
/// What the screen says about where the messages are kept.
pub const IN_MEMORY_ONLY: &str =
    "In memory only: cleared when the device locks or stops, never written to the card";

/// One message of a conversation.
#[derive(Clone)]
struct Entry {
    /// Written here by the owner (else read here, from the contact).
    mine: bool,
    text: Plaintext,
}

/// Every contact's conversation since the last unlock.
#[derive(Default)]
pub struct Conversations {
    by_contact: Mutex<HashMap<String, VecDeque<Entry>>>,
}

impl Conversations {
    /// Adds a message read from (`mine` false) or written to `contact`.
    pub fn add(&self, contact: &str, mine: bool, text: &Plaintext) {
        if let Ok(mut m) = self.by_contact.lock() {
            let q = m.entry(contact.to_string()).or_default();
            q.push_back(Entry {
                mine,
                text: text.clone(),
            });
            while q.len() > KEEP {
                q.pop_front();
            }
        }
    }

    /// Forgets every conversation (the device locked). The texts are wiped
    /// as they drop.
    pub fn clear(&self) {
        if let Ok(mut m) = self.by_contact.lock() {
            m.clear();
        }
    }

    /// How many messages are kept for `contact`.
    pub fn len(&self, contact: &str) -> usize {
        self.by_contact
            .lock()
            .map(|m| m.get(contact).map_or(0, VecDeque::len))
            .unwrap_or(0)
    }

    /// Whether no conversation is kept at all.
    pub fn is_empty(&self) -> bool {
        self.by_contact.lock().map(|m| m.is_empty()).unwrap_or(true)
    }

    /// The screen for `contact`'s conversation.
    pub fn screen(&self, contact: &str) -> ChoiceRequest {
        let entries: Vec<Entry> = self
            .by_contact
            .lock()
            .ok()
            .and_then(|m| m.get(contact).map(|q| q.iter().cloned().collect()))
            .unwrap_or_default();
        let name = otc_ui::format::untrusted(contact, 24);
        let mut blocks: Vec<Vec<String>> = Vec::new();
        for e in &entries {
            let who = if e.mine {
                "You".to_string()
            } else {
                name.clone()
            };
            let body = match MessageView::of_bytes(e.text.bytes()) {
                MessageView::Text(t) => t,
                MessageView::Binary { bytes } => format!("(binary, {bytes} bytes)"),
            };
            blocks.push(otc_ui::message::lay_out(&format!("{who}: {body}"), LINE_CHARS).lines);
        }
        // The newest that fit, oldest first.
        let mut lines: Vec<String> = Vec::new();
        let mut shown = 0;
        for b in blocks.iter().rev() {
            if lines.len() + b.len() > SHOWN_LINES && shown > 0 {
                break;
            }
            let mut b = b.clone();
            b.truncate(SHOWN_LINES);
            b.append(&mut lines);
            lines = b;
            shown += 1;
        }
        let older = entries.len() - shown;
        if entries.is_empty() {
            lines.push(format!(
                "Nothing read or written here with {name} since the device was unlocked."
            ));
        } else if older > 0 {
            lines.insert(0, format!("({older} older not shown)"));
        }
        ChoiceRequest {
            screen: "conversation".to_string(),
            title: format!("Messages with {name}"),
            lines,
            code: None,
            warning: Some(IN_MEMORY_ONLY.to_string()),
            choices: vec!["Done".to_string()],
            cancel: None,
            target: None,
        }
    }

    /// Shows `contact`'s conversation until the owner taps Done (on a
    /// thread of its own; a screen busy with another step shows nothing).
    pub fn show(&self, ui: &UiHandle, contact: &str) {
        let ticket = ui.ask_choice(self.screen(contact));
        let _ = std::thread::Builder::new()
            .name("conversation".into())
            .spawn(move || {
                let _ = ticket.wait();
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Plaintext {
        Plaintext::new(s.as_bytes())
    }

    #[test]
    fn the_screen_shows_the_newest_in_order_and_says_it_is_in_memory_only() {
        let c = Conversations::default();
        assert!(c.screen("bob").lines[0].starts_with("Nothing read or written"));
        c.add("bob", false, &text("hello from bob"));
        c.add("bob", true, &text("hi bob"));
        c.add("carol", false, &text("not bob's"));
        let s = c.screen("bob");
        assert_eq!(s.screen, "conversation");
        assert_eq!(s.title, "Messages with bob");
        assert_eq!(s.lines, ["bob: hello from bob", "You: hi bob"]);
        assert_eq!(s.warning.as_deref(), Some(IN_MEMORY_ONLY));
        for i in 0..20 {
            c.add("bob", i % 2 == 0, &text(&format!("message {i}")));
        }
        let s = c.screen("bob");
        assert_eq!(s.lines.len(), SHOWN_LINES + 1, "{:?}", s.lines);
        assert_eq!(s.lines[0], "(18 older not shown)");
        assert_eq!(s.lines.last().unwrap(), "bob: message 19");
        c.clear();
        assert!(c.is_empty());
        assert_eq!(c.len("bob"), 0);
    }

    #[test]
    fn at_most_keep_messages_per_contact() {
        let c = Conversations::default();
        for i in 0..KEEP + 5 {
            c.add("bob", true, &text(&i.to_string()));
        }
        assert_eq!(c.len("bob"), KEEP);
    }
}
