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
}

/// How a step ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChoiceAnswer {
    /// The button of this index in [`ChoiceRequest::choices`] was tapped.
    Chosen(usize),
    /// Cancel was tapped, the step was withdrawn, or the UI stopped.
    Cancelled,
    /// Another step was on screen; this one was never shown.
    Busy,
}

/// The action id of a step's Cancel button.
pub(crate) const CANCEL_ID: &str = "choice-cancel";

/// Choices a step shows at most: 3 buttons, with the title, Cancel and
/// two short lines, fit at 480x320 and at 800x480. Choices past this are
/// not shown (firmware offers no more).
pub const MAX_CHOICES: usize = 3;
