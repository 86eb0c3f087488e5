//! How things look on the terminal: one line per message or warning,
//! colour only when the output is a terminal and `NO_COLOR` is not set
//! (<https://no-color.org>), and every character that could move the
//! cursor or change the terminal escaped (message text and names come from
//! other people and from the untrusted relay).

use crate::chat::{Event, Incoming, Notice};
use std::fmt;
use std::io::IsTerminal;

/// Text that may go to the terminal (issue 23): every character of it
/// that came from elsewhere went through [`clean`], and the only escapes
/// in it are this module's own colours. The interactive client's printer
/// takes nothing else ([`crate::lineedit::Printer::print`]), so a device's
/// or a relay's text cannot reach the terminal without the cleaner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shown(String);

impl Shown {
    /// `s`, cleaned: one terminal line.
    pub fn text(s: &str) -> Shown {
        Shown(clean(s))
    }

    /// Several lines, each cleaned (a table of ours, say, whose cells were
    /// cleaned already: a cell cannot add a line).
    pub fn lines(s: &str) -> Shown {
        Shown(s.lines().map(clean).collect::<Vec<_>>().join("\n"))
    }

    /// `plain` (cleaned) followed by `rest`.
    pub fn prefixed(plain: &str, rest: Shown) -> Shown {
        Shown(format!("{}{}", clean(plain), rest.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Shown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Colour or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Style {
    pub color: bool,
}

impl Style {
    /// Colour when stdout is a terminal and `NO_COLOR` is unset or empty.
    pub fn detect() -> Style {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Style {
            color: !no_color && std::io::stdout().is_terminal(),
        }
    }

    pub fn plain() -> Style {
        Style { color: false }
    }

    /// `s` cleaned, in colour `code` when colour is on.
    fn paint(&self, code: &str, s: &str) -> Shown {
        let s = clean(s);
        Shown(if self.color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s
        })
    }

    /// `NAME: TEXT`.
    pub fn message(&self, m: &Incoming) -> Shown {
        Shown(format!(
            "{}: {}",
            self.paint("1;36", &m.from),
            message_text(m)
        ))
    }

    /// A warning or notice; security warnings in red, others in yellow.
    pub fn notice(&self, n: &Notice) -> Shown {
        let code = if n.is_security() { "1;31" } else { "33" };
        self.paint(code, &n.text())
    }

    /// The "approve on the device…" line.
    pub fn approve(&self, what: &str) -> Shown {
        self.paint("2", what)
    }

    pub fn error(&self, s: &str) -> Shown {
        self.paint("31", s)
    }

    pub fn ok(&self, s: &str) -> Shown {
        self.paint("32", s)
    }

    /// Any event as one line.
    pub fn event(&self, e: &Event) -> Shown {
        match e {
            Event::Approve(w) => self.approve(w),
            Event::Message(m) => self.message(m),
            Event::Notice(n) => self.notice(n),
        }
    }
}

/// What is shown in place of the text of a message the owner read on
/// the device (issue 19): the laptop never had it.
pub const READ_ON_DEVICE: &str = "(read on the device)";

/// The text of a message for a terminal line: control characters
/// (newlines included) escaped; a binary message as its size; a message
/// read on the device as [`READ_ON_DEVICE`].
pub fn message_text(m: &Incoming) -> String {
    if m.read_on_device {
        return READ_ON_DEVICE.to_string();
    }
    match &m.text {
        Some(t) => clean(t),
        None => format!(
            "[{} bytes, not text: {}]",
            m.text_b64.len() / 4 * 3,
            m.text_b64
        ),
    }
}

/// `s` with every character that could move the cursor or change the
/// terminal shown as a visible placeholder instead: C0 controls as their
/// Unicode control pictures (ESC as `␛`, a newline as `␊`, DEL as `␡`),
/// and C1 controls and the invisible characters that reorder or break the
/// rest of a terminal line (bidi controls: a U+202E in a sender's name
/// would show the warning after it backwards; the line and paragraph
/// separators) as `�`.
pub fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() || reorders_the_line(c) {
            out.push(placeholder(c));
        } else {
            out.push(c);
        }
    }
    out
}

/// The visible stand-in for a control or reordering character.
fn placeholder(c: char) -> char {
    match u32::from(c) {
        n @ 0..=0x1f => char::from_u32(0x2400 + n).unwrap_or('\u{fffd}'),
        0x7f => '\u{2421}',
        _ => '\u{fffd}',
    }
}

/// Unicode's bidi formatting characters (UAX #9: ALM, LRM, RLM, the
/// embeddings, overrides and isolates) and U+2028/U+2029.
fn reorders_the_line(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_colour() {
        let m = Incoming {
            msg_ref: 1,
            from: "al\x1bice".into(),
            text: Some("hi\nthere\x1b[2J".into()),
            text_b64: String::new(),
            warnings: vec![],
            read_on_device: false,
        };
        // Issue 15: visible placeholders, not Rust escapes.
        assert_eq!(Style::plain().message(&m).as_str(), "al␛ice: hi␊there␛[2J");
        let coloured = Style { color: true }.message(&m);
        let coloured = coloured.as_str();
        assert!(
            coloured.starts_with("\x1b[1;36m") && coloured.contains("hi␊there"),
            "{coloured}"
        );
        assert_eq!(clean("a\u{7f}b\u{202e}c\u{85}d\te"), "a␡b�c�d␉e");
    }

    /// Issue 19: a message the owner read on the device is a line of its
    /// own, never an empty message nor the `[0 bytes, not text]` of a
    /// binary one; the sender's name is still cleaned.
    #[test]
    fn a_message_read_on_the_device() {
        let m = Incoming {
            msg_ref: 7,
            from: "bo\u{202e}b".into(),
            text: None,
            text_b64: String::new(),
            warnings: vec![],
            read_on_device: true,
        };
        assert_eq!(
            Style::plain().message(&m).as_str(),
            "bo�b: (read on the device)"
        );
        assert_eq!(
            Style::plain().event(&Event::Message(m.clone())).as_str(),
            "bo�b: (read on the device)"
        );
        // Even if a reply carried text along with the flag, none is shown.
        let m = Incoming {
            text: Some("secret".into()),
            text_b64: "c2VjcmV0".into(),
            ..m
        };
        assert_eq!(message_text(&m), "(read on the device)");
    }
}

#[cfg(test)]
mod shown_tests {
    use super::*;

    /// Whatever a [`Shown`] is made from, a foreign escape does not get
    /// into it; our own colours are the only escapes.
    #[test]
    fn shown_text_has_no_foreign_escape() {
        let nasty = "\x1b]0;T\x07\x1b[2J\u{9b}2J\u{202e}x\u{2028}";
        for s in [
            Shown::text(nasty),
            Shown::lines(&format!("{nasty}\n{nasty}")),
            Shown::prefixed(nasty, Style { color: true }.error(nasty)),
            Style { color: true }.ok(nasty),
            Style::plain().approve(nasty),
        ] {
            let t = s.as_str();
            assert!(
                !t.contains('\u{9b}') && !t.contains('\u{202e}') && !t.contains('\u{2028}'),
                "{t:?}"
            );
            for (i, _) in t.match_indices('\x1b') {
                assert!(
                    t[i..].starts_with("\x1b[31m")
                        || t[i..].starts_with("\x1b[32m")
                        || t[i..].starts_with("\x1b[0m"),
                    "{t:?}"
                );
            }
        }
        assert_eq!(Shown::lines("a\nb").as_str(), "a\nb");
    }
}
