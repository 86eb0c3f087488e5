//! The optional Approve and Reject push buttons, for panels without touch.
//!
//! [`Buttons`] reads the two raw levels (the rppal input pins on a device,
//! with the Pi's pull-ups: a button connects its pin to ground, so pressed
//! reads low; a twin in tests). [`Debouncer`] turns the bouncing raw level
//! into clean presses and releases: a change counts once the new level has
//! held for [`DEBOUNCE`]. [`ButtonReader`] does both buttons and says what
//! happened, which the board loop hands to the UI
//! ([`otc_ui::UiHandle::push_button`]). The UI, not this module, decides
//! whether a push answers a prompt: both its press and its release must
//! fall on the same armed prompt, exactly as with taps.

use otc_ui::PushButton;
use std::time::Duration;

/// How long a new level must hold before it counts. Contact bounce of
/// small tactile switches is a few milliseconds; 30 ms is well past it
/// and well below what a person notices.
pub const DEBOUNCE: Duration = Duration::from_millis(30);

/// The two buttons' raw levels: true while pressed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Levels {
    pub approve: bool,
    pub reject: bool,
}

/// The buttons themselves.
pub trait Buttons: Send {
    /// The raw levels now (they may bounce).
    fn read(&mut self) -> std::io::Result<Levels>;
}

/// One button's debouncer. Starts released.
#[derive(Clone, Debug, Default)]
pub struct Debouncer {
    stable: bool,
    candidate: bool,
    since: Duration,
}

impl Debouncer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed the raw level at `now`; returns the new stable level when it
    /// changes (true: pressed, false: released).
    pub fn update(&mut self, raw: bool, now: Duration) -> Option<bool> {
        if raw != self.candidate {
            self.candidate = raw;
            self.since = now;
        }
        if self.candidate != self.stable && now.saturating_sub(self.since) >= DEBOUNCE {
            self.stable = self.candidate;
            return Some(self.stable);
        }
        None
    }

    /// The debounced level.
    pub fn pressed(&self) -> bool {
        self.stable
    }
}

/// Both buttons, read and debounced.
pub struct ButtonReader {
    buttons: Box<dyn Buttons>,
    approve: Debouncer,
    reject: Debouncer,
    failed: bool,
}

impl ButtonReader {
    pub fn new(buttons: Box<dyn Buttons>) -> Self {
        ButtonReader {
            buttons,
            approve: Debouncer::new(),
            reject: Debouncer::new(),
            failed: false,
        }
    }

    /// Read the buttons at `now`: the debounced presses (true) and
    /// releases (false) this reading completed.
    pub fn poll(&mut self, now: Duration) -> Vec<(PushButton, bool)> {
        let levels = match self.buttons.read() {
            Ok(l) => l,
            Err(e) => {
                if !self.failed {
                    self.failed = true;
                    eprintln!(
                        "otc-device: cannot read the push buttons: {e} (tried again quietly)"
                    );
                }
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        if let Some(p) = self.approve.update(levels.approve, now) {
            out.push((PushButton::Approve, p));
        }
        if let Some(p) = self.reject.update(levels.reject, now) {
            out.push((PushButton::Reject, p));
        }
        out
    }
}

#[cfg(test)]
pub(crate) mod twin {
    use super::{Buttons, Levels};
    use std::sync::{Arc, Mutex};

    /// The buttons' twin: the test sets the raw levels.
    #[derive(Clone, Default)]
    pub struct TwinButtons(pub Arc<Mutex<Levels>>);

    impl TwinButtons {
        pub fn set(&self, approve: bool, reject: bool) {
            *self.0.lock().unwrap() = Levels { approve, reject };
        }
    }

    impl Buttons for TwinButtons {
        fn read(&mut self) -> std::io::Result<Levels> {
            Ok(*self.0.lock().unwrap())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::twin::TwinButtons;
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// A press that bounces for 12 ms counts once, after it has held for
    /// the debounce time; so does its bouncing release.
    #[test]
    fn bounces_make_one_press_and_one_release() {
        let mut d = Debouncer::new();
        let mut events = Vec::new();
        // (time in ms, raw level): bounce, settle pressed, bounce, settle released.
        let script = [
            (0, true),
            (2, false),
            (4, true),
            (7, false),
            (12, true),
            (200, false),
            (203, true),
            (205, false),
        ];
        let mut i = 0;
        let mut raw = false;
        for t in (0..400).step_by(2) {
            while i < script.len() && script[i].0 <= t {
                raw = script[i].1;
                i += 1;
            }
            if let Some(p) = d.update(raw, t * MS) {
                events.push((t, p));
            }
        }
        assert_eq!(events.len(), 2, "{events:?}");
        assert_eq!(events[0], (42, true), "pressed 30 ms after the last bounce");
        assert_eq!(
            events[1],
            (236, false),
            "released 30 ms after the last bounce"
        );
    }

    /// A glitch shorter than the debounce time is no press at all.
    #[test]
    fn a_short_glitch_is_no_press() {
        let mut d = Debouncer::new();
        assert_eq!(d.update(true, Duration::ZERO), None);
        assert_eq!(d.update(true, 29 * MS), None);
        assert_eq!(d.update(false, 30 * MS), None);
        assert_eq!(d.update(false, 500 * MS), None);
        assert!(!d.pressed());
    }

    #[test]
    fn the_reader_reports_each_button() {
        let twin = TwinButtons::default();
        let mut r = ButtonReader::new(Box::new(twin.clone()));
        twin.set(true, false);
        assert!(r.poll(Duration::ZERO).is_empty());
        assert_eq!(r.poll(30 * MS), vec![(PushButton::Approve, true)]);
        twin.set(false, true);
        assert!(r.poll(40 * MS).is_empty());
        assert_eq!(
            r.poll(70 * MS),
            vec![(PushButton::Approve, false), (PushButton::Reject, true)]
        );
    }
}
