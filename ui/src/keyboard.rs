//! The on-screen keyboard: what a key does, and where each key goes.
//!
//! The device asks for text (a contact's name now; a pairing code, a
//! passphrase, settings and messages later) with
//! [`crate::UiHandle::ask_text`]: a [`TextRequest`] says what for, and a
//! [`TextCheck`] says whether a text is acceptable. The keyboard stays on
//! screen until the owner taps **Done** on a text the check accepts (the
//! ticket gets [`TextAnswer::Done`]) or **Cancel**; a refused text stays in
//! the field with the check's reason under it, in red.
//!
//! Keys are laid out here, in Rust, as plain rectangles (five rows of ten
//! units; the Slint screen draws each key at the rectangle it is given),
//! so the screen trace reports exactly where each key is: a button
//! labelled by its character, `space` for the space bar, `Done` and
//! `Cancel`, `⇧` for the case key and `⌫` for backspace.
//!
//! The check runs on the UI thread when Done is tapped: it must be quick
//! and must not wait for anything (no lock another thread may hold for
//! long). Whatever needs the store for long is done after the answer.

/// What the text is for: decides the screen's title and hint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextKind {
    /// The name of a contact (as the pad store will know it).
    ContactName,
    /// The pairing code shown on the partner's screen.
    PairingCode,
    /// The passphrase that unlocks the device (the lock screen). Masked.
    Passphrase,
    /// A new passphrase (first boot, change passphrase). Masked.
    NewPassphrase,
    /// The new passphrase again, to catch a typo. Masked.
    RepeatPassphrase,
    /// The device owner's name (first boot).
    OwnerName,
    /// The device's IPv4 address on the cable, e.g. `192.168.7.2` (the
    /// keyboard has no `/`: the network is a /24; first boot, Settings).
    NetworkAddress,
    /// A number of seconds (Settings: prompt timeout, idle lock).
    Seconds,
    /// A message written on the device (issue 19, Write here): Done says
    /// **Seal**, and the title names the contact
    /// ([`TextRequest::message`]). The keys are the same as every kind's
    /// (letters, digits, `@ . _ -` and space).
    Message,
}

impl TextKind {
    /// Whether the field shows `•` for each character instead of the
    /// text (the screen and its trace alike: a passphrase is never drawn
    /// and never in a trace).
    pub fn is_secret(self) -> bool {
        matches!(
            self,
            TextKind::Passphrase | TextKind::NewPassphrase | TextKind::RepeatPassphrase
        )
    }
}

/// A request for text from the owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TextRequest {
    pub kind: TextKind,
    /// What the field holds at first.
    pub initial: String,
    /// Characters beyond this are not taken (0: no limit).
    pub max_chars: usize,
    /// The keyboard's title, if not the kind's own (a message names its
    /// contact).
    pub title: Option<String>,
}

/// The most characters a message written on the device may have.
pub const MESSAGE_MAX_CHARS: usize = 500;

impl TextRequest {
    /// A message to `contact`, written on the device: at most
    /// [`MESSAGE_MAX_CHARS`] characters, titled with the contact's name.
    pub fn message(contact: &str) -> Self {
        TextRequest {
            kind: TextKind::Message,
            initial: String::new(),
            max_chars: MESSAGE_MAX_CHARS,
            title: Some(format!(
                "Message to {}",
                crate::format::untrusted(contact, 24)
            )),
        }
    }

    /// A contact's name: at most 64 characters, as the pad store's rule.
    pub fn contact_name() -> Self {
        TextRequest {
            kind: TextKind::ContactName,
            initial: String::new(),
            max_chars: 64,
            title: None,
        }
    }

    /// A passphrase of `kind` (one of the masked kinds): at most 128
    /// characters.
    pub fn passphrase(kind: TextKind) -> Self {
        TextRequest {
            kind,
            initial: String::new(),
            max_chars: 128,
            title: None,
        }
    }

    /// Text of `kind` starting as `initial`, at most `max_chars`.
    pub fn of(kind: TextKind, initial: &str, max_chars: usize) -> Self {
        TextRequest {
            kind,
            initial: initial.to_string(),
            max_chars,
            title: None,
        }
    }

    /// A pairing code: room for its characters and the spaces between
    /// its groups, and a few more (the check says what is wrong).
    pub fn pairing_code() -> Self {
        TextRequest {
            kind: TextKind::PairingCode,
            initial: String::new(),
            max_chars: 48,
            title: None,
        }
    }
}

/// Whether a text may be taken: `Err(reason)` keeps the keyboard on
/// screen with `reason` shown under the field. Runs on the UI thread (see
/// the module docs). Words for common reasons are in [`crate::texts`].
pub type TextCheck = Box<dyn Fn(&str) -> Result<(), String> + Send>;

/// How a request for text ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TextAnswer {
    /// Done was tapped on this text, and the check accepted it.
    Done(String),
    /// Cancel was tapped, the request was withdrawn, or the UI stopped.
    Cancelled,
    /// Another request for text was on screen; this one was never shown.
    Busy,
}

/// What a key does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Key {
    Char(char),
    Shift,
    Backspace,
    Space,
    Cancel,
    Done,
}

/// The action id (and the trace's button id) of every key starts so.
pub(crate) const KEY_PREFIX: &str = "kb-";

impl Key {
    /// Its action id: stable, whatever the case.
    pub fn id(self) -> String {
        match self {
            Key::Char(c) => format!("{KEY_PREFIX}char-{}", c.to_ascii_lowercase()),
            Key::Shift => format!("{KEY_PREFIX}shift"),
            Key::Backspace => format!("{KEY_PREFIX}backspace"),
            Key::Space => format!("{KEY_PREFIX}space"),
            Key::Cancel => format!("{KEY_PREFIX}cancel"),
            Key::Done => format!("{KEY_PREFIX}done"),
        }
    }

    /// What it says (and its label in the trace).
    pub fn label(self, upper: bool) -> String {
        match self {
            Key::Char(c) if upper => c.to_ascii_uppercase().to_string(),
            Key::Char(c) => c.to_string(),
            Key::Shift => "⇧".into(),
            Key::Backspace => "⌫".into(),
            Key::Space => "space".into(),
            Key::Cancel => "Cancel".into(),
            Key::Done => "Done".into(),
        }
    }

    /// The key for an action id, if it is one.
    pub fn from_id(id: &str) -> Option<Key> {
        let rest = id.strip_prefix(KEY_PREFIX)?;
        Some(match rest {
            "shift" => Key::Shift,
            "backspace" => Key::Backspace,
            "space" => Key::Space,
            "cancel" => Key::Cancel,
            "done" => Key::Done,
            _ => {
                let mut chars = rest.strip_prefix("char-")?.chars();
                let c = chars.next()?;
                let known = ROWS.iter().any(|r| r.contains(c)) || MARKS.contains(c);
                if chars.next().is_some() || !known {
                    return None;
                }
                Key::Char(c)
            }
        })
    }
}

/// The character rows, lowercase; the rest of the keys are added around
/// them in [`layout`].
const ROWS: [&str; 4] = ["1234567890", "qwertyuiop", "asdfghjkl@", "zxcvbnm"];
/// The marks on the bottom row, beside the space bar.
const MARKS: &str = "._-";

/// A key and where it is, in screen pixels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct KeyRect {
    pub key: Key,
    pub x: f32,
    pub y: f32,
    pub w: f32,
    pub h: f32,
}

/// The keyboard's geometry on a `width` x `height` screen.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct KeyboardLayout {
    /// Where the keys begin: the title, field and reason go above.
    pub keys_top: f32,
    pub keys: Vec<KeyRect>,
}

/// Five rows of ten units, filling the bottom of the screen:
///
/// ```text
/// 1 2 3 4 5 6 7 8 9 0
/// q w e r t y u i o p
/// a s d f g h j k l @
/// ⇧  z x c v b n m  ⌫      (⇧ and ⌫ are 1.5 units)
/// Cancel . _ - space Done  (Cancel and Done 2 units, space 3)
/// ```
pub(crate) fn layout(width: u32, height: u32, compact: bool) -> KeyboardLayout {
    // Margins and gaps as Theme.pad (10 / 20 px); keys about 6.5 mm on a
    // 3.5" 480x320 panel and 11 mm on a 7" 800x480 one.
    let (pad, gap, key_h) = if compact {
        (10.0, 4.0, 42.0)
    } else {
        (20.0, 8.0, 58.0)
    };
    let (w, h) = (width as f32, height as f32);
    let unit = ((w - 2.0 * pad - 9.0 * gap) / 10.0).max(1.0);
    let rows_h = 5.0 * key_h + 4.0 * gap;
    let keys_top = (h - pad - rows_h).max(0.0);
    let mut keys = Vec::new();
    let mut row = |r: usize, items: &[(Key, f32)]| {
        let y = keys_top + r as f32 * (key_h + gap);
        let mut at = 0.0f32;
        for &(key, units) in items {
            keys.push(KeyRect {
                key,
                x: (pad + at * (unit + gap)).round(),
                y: y.round(),
                w: (units * unit + (units - 1.0) * gap).round(),
                h: key_h,
            });
            at += units;
        }
    };
    let chars = |s: &str| s.chars().map(|c| (Key::Char(c), 1.0)).collect::<Vec<_>>();
    row(0, &chars(ROWS[0]));
    row(1, &chars(ROWS[1]));
    row(2, &chars(ROWS[2]));
    let mut fourth = vec![(Key::Shift, 1.5)];
    fourth.extend(chars(ROWS[3]));
    fourth.push((Key::Backspace, 1.5));
    row(3, &fourth);
    let mut fifth = vec![(Key::Cancel, 2.0)];
    fifth.extend(chars(MARKS));
    fifth.extend([(Key::Space, 3.0), (Key::Done, 2.0)]);
    row(4, &fifth);
    KeyboardLayout { keys_top, keys }
}

/// The text being typed, and what each key does to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Typing {
    pub text: String,
    pub upper: bool,
    pub max_chars: usize,
}

impl Typing {
    pub fn new(req: &TextRequest) -> Self {
        let mut t = Typing {
            text: String::new(),
            upper: false,
            max_chars: req.max_chars,
        };
        for c in req.initial.chars() {
            t.push(c);
        }
        t
    }

    fn push(&mut self, c: char) {
        if self.max_chars == 0 || self.text.chars().count() < self.max_chars {
            self.text.push(c);
        }
    }

    /// Applies an editing key (Done and Cancel are the caller's). Returns
    /// whether the text changed.
    pub fn press(&mut self, key: Key) -> bool {
        let before = self.text.len();
        match key {
            Key::Char(c) if self.upper => self.push(c.to_ascii_uppercase()),
            Key::Char(c) => self.push(c),
            Key::Space => self.push(' '),
            Key::Backspace => {
                self.text.pop();
            }
            Key::Shift => self.upper = !self.upper,
            Key::Cancel | Key::Done => {}
        }
        self.text.len() != before
    }

    /// The end of the text, at most `max` characters, with `…` in front
    /// when the start is cut off (the field shows where typing goes).
    pub fn tail(&self, max: usize) -> String {
        let n = self.text.chars().count();
        if n <= max {
            return self.text.clone();
        }
        let skip = n - max.saturating_sub(1);
        let mut s = String::from("…");
        s.extend(self.text.chars().skip(skip));
        s
    }

    /// What the field shows: [`Typing::tail`], or for a secret one `•`
    /// for each character (as many as fit).
    pub fn shown(&self, max: usize, secret: bool) -> String {
        if !secret {
            return self.tail(max);
        }
        let n = self.text.chars().count();
        if n <= max {
            "•".repeat(n)
        } else {
            format!("…{}", "•".repeat(max.saturating_sub(1)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(keys: &[Key]) -> Typing {
        let mut t = Typing::new(&TextRequest::contact_name());
        for k in keys {
            t.press(*k);
        }
        t
    }

    #[test]
    fn keys_type_shift_changes_case_and_backspace_deletes() {
        let t = typed(&[
            Key::Char('b'),
            Key::Shift,
            Key::Char('o'),
            Key::Shift,
            Key::Char('b'),
            Key::Char('x'),
            Key::Backspace,
            Key::Char('@'),
            Key::Space,
            Key::Char('2'),
        ]);
        assert_eq!(t.text, "bOb@ 2");
        assert!(!t.upper);
        let mut e = typed(&[]);
        assert!(
            !e.press(Key::Backspace),
            "backspace on nothing changes nothing"
        );
    }

    #[test]
    fn a_secret_field_shows_dots_never_the_text() {
        let mut t = Typing::new(&TextRequest::passphrase(TextKind::Passphrase));
        for c in "horse battery".chars() {
            t.press(if c == ' ' { Key::Space } else { Key::Char(c) });
        }
        assert_eq!(t.shown(30, true), "•".repeat(13));
        assert_eq!(t.shown(5, true), "…••••");
        assert_eq!(t.shown(30, false), "horse battery");
        assert!(TextKind::Passphrase.is_secret());
        assert!(TextKind::NewPassphrase.is_secret() && TextKind::RepeatPassphrase.is_secret());
        assert!(!TextKind::OwnerName.is_secret() && !TextKind::ContactName.is_secret());
    }

    #[test]
    fn the_limit_is_kept() {
        let mut t = Typing::new(&TextRequest {
            kind: TextKind::ContactName,
            initial: "abcd".into(),
            max_chars: 5,
            title: None,
        });
        assert!(t.press(Key::Char('e')));
        assert!(!t.press(Key::Char('f')));
        assert_eq!(t.text, "abcde");
        assert_eq!(t.tail(3), "…de");
        assert_eq!(t.tail(5), "abcde");
    }

    #[test]
    fn ids_round_trip_and_strangers_are_not_keys() {
        for k in layout(800, 480, false).keys {
            assert_eq!(Key::from_id(&k.key.id()), Some(k.key), "{k:?}");
        }
        for bad in [
            "kb-char-",
            "kb-char-ab",
            "kb-char-!",
            "kb-char-Q",
            "back",
            "kb-x",
        ] {
            assert_eq!(Key::from_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn every_key_is_on_screen_apart_and_big_enough() {
        for (w, h, compact, min_h) in [(800, 480, false, 56.0), (480, 320, true, 40.0)] {
            let l = layout(w, h, compact);
            assert_eq!(l.keys.len(), 10 + 10 + 10 + 9 + 6);
            assert!(l.keys_top >= if compact { 80.0 } else { 130.0 }, "{l:?}");
            for (i, a) in l.keys.iter().enumerate() {
                assert!(a.x >= 0.0 && a.y >= 0.0, "{a:?}");
                assert!(
                    a.x + a.w <= w as f32 && a.y + a.h <= h as f32,
                    "{a:?} off {w}x{h}"
                );
                assert!(a.h >= min_h && a.w >= min_h, "{a:?} too small");
                for b in &l.keys[i + 1..] {
                    let apart = a.x + a.w <= b.x
                        || b.x + b.w <= a.x
                        || a.y + a.h <= b.y
                        || b.y + b.h <= a.y;
                    assert!(apart, "{a:?} overlaps {b:?}");
                }
            }
        }
    }
}
