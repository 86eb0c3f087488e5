//! A step of a flow: a title, a few lines, perhaps a big code, and buttons.
//!
//! The device's longer flows (a new contact, an import) are run by
//! firmware on a thread of their own, one step at a time: each step that
//! needs an answer is a [`ChoiceRequest`] shown with
//! [`crate::UiHandle::ask_choice`], and the ticket gets the index of the
//! button the owner tapped ([`ChoiceAnswer::Chosen`]) or
//! [`ChoiceAnswer::Cancelled`]. The screen trace names the screen after
//! the request (`screen`), reports `lines`, `code` and `warning` as texts
//! (the code as one text) and every choice as a button labelled with its
//! words (ids `choice:0`, `choice:1`, …, and `choice-cancel`).
//!
//! Prompts, progress and the keyboard come first; a step waits under them
//! and is back when they are gone.
//!
//! A step with a [`Target`] is a touch calibration step: the target is
//! drawn as a button (labelled, id `target`) centred at its place, and
//! the first tap anywhere on the screen ends the step with
//! [`ChoiceAnswer::Tapped`]: where the tap landed and where the target's
//! centre is, both in the touch source's (panel) coordinates, before the
//! owner's touch correction (see [`crate::orient`]). Such a step has no
//! Cancel and no choices (a tap that misses a button must still count).

/// One step of a flow, with the buttons that end it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChoiceRequest {
    /// The trace's screen name, e.g. `new-contact-size`.
    pub screen: String,
    pub title: String,
    /// Plain lines under the title (wrapped on screen).
    pub lines: Vec<String>,
    /// A big text of its own, e.g. a pairing code or a fingerprint.
    pub code: Option<String>,
    /// A red box, e.g. why nothing can be made.
    pub warning: Option<String>,
    /// The buttons, top to bottom; the answer is an index into this.
    pub choices: Vec<String>,
    /// The label of the Cancel button in the header (`None`: no Cancel).
    pub cancel: Option<String>,
    /// A calibration target (see the module doc); `choices` and `cancel`
    /// are not shown with one.
    pub target: Option<Target>,
}

/// A calibration target: its label and its centre, in thousandths of the
/// screen's logical width and height.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Target {
    pub label: String,
    pub x_permille: u16,
    pub y_permille: u16,
}

/// The size of a target's button, in logical pixels (even, so its centre
/// in the trace is the target's exact pixel).
pub const TARGET_SIZE: (u32, u32) = (120, 56);

/// How a step ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChoiceAnswer {
    /// The button of this index in [`ChoiceRequest::choices`] was tapped.
    Chosen(usize),
    /// Cancel was tapped, the step was withdrawn, or the UI stopped.
    Cancelled,
    /// Another step was on screen; this one was never shown.
    Busy,
    /// A target step was tapped: where (`at`) and where the target's
    /// centre was drawn (`target`), in panel pixels, before correction,
    /// on a screen of `size` pixels.
    Tapped {
        at: (u32, u32),
        target: (u32, u32),
        size: (u32, u32),
    },
}

/// The action id of a step's Cancel button.
pub(crate) const CANCEL_ID: &str = "choice-cancel";

/// Choices a step shows at most: 3 buttons, with the title, Cancel and
/// two short lines, fit at 480x320 and at 800x480. Choices past this are
/// not shown (firmware offers no more).
pub const MAX_CHOICES: usize = 3;
