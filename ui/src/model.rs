//! View models: what firmware tells the UI to show, and what comes back.
//!
//! Plain data with no pad knowledge. Every figure here is a fact from the
//! device's own state, except fields named `client_note`, which the screens
//! label "From the computer".

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The idle screen.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HomeView {
    /// The device owner's name.
    pub owner: String,
    pub contacts: Vec<ContactView>,
    pub link: LinkView,
    /// Audit events the owner has not looked at yet.
    pub unseen_alerts: u32,
    /// The device has a passphrase: the home screen offers **Lock now**.
    #[serde(default)]
    pub lockable: bool,
    /// The data directory is not encrypted (a development or test card):
    /// the home screen says so in red.
    #[serde(default)]
    pub not_encrypted: bool,
    /// The device is locked (issue 18): the home screen, which shows for a
    /// moment between two steps of the lock screen or the first-boot
    /// setup, says "Locked" and shows nothing else (no owner, contacts or
    /// buttons), and taps on it do nothing.
    #[serde(default)]
    pub locked: bool,
}

/// One contact and how much pad is left with them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactView {
    pub name: String,
    pub pad_left_bytes: u64,
    pub pad_total_bytes: u64,
    /// Typical messages the pad left still covers (firmware's estimate).
    pub messages_left: u64,
    /// The pad file does not match the device's record of it: the pad
    /// cannot be used (the row says so instead of the figures).
    #[serde(default)]
    pub damaged: bool,
}

/// Everything the details screen of one contact shows (from the device's
/// store; no pad bytes). Sent by firmware after [`UiEvent::ContactOpened`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactDetailsView {
    pub name: String,
    /// Pad left for our messages, and the size of our sending region.
    pub send_left_bytes: u64,
    pub send_total_bytes: u64,
    pub send_messages_left: u64,
    /// Pad left for the partner's messages, and the size of their region.
    pub receive_left_bytes: u64,
    pub receive_total_bytes: u64,
    pub receive_messages_left: u64,
    /// The package format's name, e.g. "v2".
    pub format: String,
    /// The pad's fingerprint, short form (hex); shown in groups of 4.
    pub fingerprint: String,
    /// When the pad was made (unix seconds), if the store knows.
    #[serde(default)]
    pub made_unix: Option<u64>,
    /// A private contact: its messages are read on the device only.
    #[serde(default)]
    pub private: bool,
}

/// The Ethernet link to the computer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkView {
    pub up: bool,
    /// The device's address on the link, e.g. "10.77.0.1".
    pub address: Option<String>,
    /// The endpoint listens on loopback (development), not on Ethernet.
    #[serde(default)]
    pub loopback: bool,
}

/// Something that spends pad bytes (or commits to a pad) and needs the
/// owner's tap. Shown one at a time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Prompt {
    /// Encrypt a message for `contact`.
    Seal {
        contact: String,
        message_bytes: u64,
        cost_bytes: u64,
        pad_left_after: u64,
        timeout: Duration,
        /// Text the computer sent along; shown labelled "From the computer".
        #[serde(default)]
        client_note: Option<String>,
        /// The message itself, shown labelled "Message from the laptop"
        /// (issue 19); `None` only for prompts made without it.
        #[serde(default)]
        message: Option<MessageView>,
    },
    /// Decrypt a message from `contact`. The screen offers **Read here**
    /// ([`Decision::ReadHere`]: the text is shown on the device only) and,
    /// when `for_laptop`, **Open for laptop** ([`Decision::Approve`]).
    Open {
        contact: String,
        cost_bytes: u64,
        warnings: Vec<WarningView>,
        timeout: Duration,
        #[serde(default)]
        client_note: Option<String>,
        /// The laptop may get the text (false for a private contact: the
        /// screen has no Open for laptop, and Approve does nothing).
        #[serde(default = "yes")]
        for_laptop: bool,
    },
    /// Compare a new pad's fingerprint with the partner's screen.
    Pair {
        contact: String,
        pad_bytes: u64,
        /// The fingerprint as characters; shown in groups of 4.
        fingerprint: String,
        timeout: Duration,
    },
}

fn yes() -> bool {
    true
}

impl Prompt {
    pub fn timeout(&self) -> Duration {
        match self {
            Prompt::Seal { timeout, .. }
            | Prompt::Open { timeout, .. }
            | Prompt::Pair { timeout, .. } => *timeout,
        }
    }
}

/// The message a seal prompt shows: its text, or the fact that it is
/// not text (see [`crate::message`] for how text is shown).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "lowercase")]
pub enum MessageView {
    /// The message is UTF-8 text.
    Text(String),
    /// The message is not UTF-8: only its size is shown.
    Binary { bytes: u64 },
}

impl MessageView {
    /// The view of a message's bytes: text if they are UTF-8.
    pub fn of_bytes(bytes: &[u8]) -> Self {
        match std::str::from_utf8(bytes) {
            Ok(t) => MessageView::Text(t.to_string()),
            Err(_) => MessageView::Binary {
                bytes: bytes.len() as u64,
            },
        }
    }
}

/// Why opening this message deserves a second look. Shown in red.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum WarningView {
    /// This message's pad range was already used: a replayed package.
    Replay { index: u64 },
    /// `count` earlier messages from this contact never arrived.
    Skipped { count: u64 },
}

/// What became of a prompt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Approve,
    /// **Read here** on confirm-open: open, and show the text on the
    /// device only (issue 19). Only an open prompt gives it.
    ReadHere,
    Reject,
    /// Nobody answered before the prompt's timeout.
    Timeout,
    /// Withdrawn by [`crate::UiHandle::cancel`], or the UI stopped.
    Cancelled,
    /// Another prompt was on screen; this one was never shown.
    Busy,
}

/// A short message after something happened ("Sealed for bob").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Toast {
    pub kind: ToastKind,
    pub text: String,
    pub duration: Duration,
}

impl Toast {
    pub fn success(text: impl Into<String>) -> Self {
        Toast {
            kind: ToastKind::Success,
            text: text.into(),
            duration: Duration::from_secs(3),
        }
    }
    pub fn info(text: impl Into<String>) -> Self {
        Toast {
            kind: ToastKind::Info,
            text: text.into(),
            duration: Duration::from_secs(3),
        }
    }
    pub fn error(text: impl Into<String>) -> Self {
        Toast {
            kind: ToastKind::Error,
            text: text.into(),
            duration: Duration::from_secs(5),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ToastKind {
    Success,
    Info,
    Error,
}

/// One audit event on the alerts screen.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AlertView {
    /// When, already formatted by firmware (e.g. "22 Nov 05:41").
    pub at: String,
    pub text: String,
    /// Shown in red.
    pub severe: bool,
    /// Not acknowledged by the owner yet (a red alert from this run, or
    /// reloaded from the audit log): listed first, oldest first, and
    /// acknowledged only by the Acknowledge button once it was on screen.
    #[serde(default)]
    pub unacked: bool,
}

/// A digest of an alerts list, to tell whether an acknowledgement was
/// made on the list firmware has now ([`UiEvent::AlertsAcknowledged`]).
pub fn alerts_digest(alerts: &[AlertView]) -> u64 {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut h = DefaultHasher::new();
    alerts.hash(&mut h);
    h.finish()
}

/// A long job, e.g. creating a pad.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProgressView {
    pub title: String,
    pub done_bytes: u64,
    pub total_bytes: u64,
    /// Show a Cancel button; a tap sends [`UiEvent::ProgressCancelled`].
    pub cancellable: bool,
    /// How long the rest will take, if known (shown as "about … left").
    #[serde(default)]
    pub time_left: Option<Duration>,
}

/// The About screen: what this device is and runs on. Every string is a
/// fact firmware read (the board's model, the software version, which
/// optional hardware it drives); the UI only lays them out.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AboutView {
    /// The software, e.g. "otc-device 0.1.0".
    pub software: String,
    /// The board's model as the device tree names it, e.g. "Raspberry Pi 4
    /// Model B Rev 1.5"; empty when unknown.
    pub board: String,
    /// Further (label, value) rows, e.g. ("Status LED", "GPIO 17").
    pub facts: Vec<(String, String)>,
}

/// A physical push button beside the screen, for panels without touch
/// (firmware reads and debounces it, and tells the UI through
/// [`crate::UiHandle::push_button`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PushButton {
    /// Acts as the prompt's Approve button.
    Approve,
    /// Acts as the prompt's Reject button.
    Reject,
}

/// Things the owner did that firmware may want to know about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UiEvent {
    /// The alerts screen was opened (nothing is acknowledged by that).
    AlertsOpened,
    /// The owner tapped Acknowledge: the `count` oldest unacknowledged
    /// alerts of the list whose [`alerts_digest`] is `list` were on the
    /// screen (the screen lists them first, oldest first, and counts only
    /// those shown). Firmware acknowledges them only if its list is still
    /// that one: a list changed meanwhile (older alerts found by a check)
    /// reaches the screen, which then counts again.
    AlertsAcknowledged { count: u32, list: u64 },
    /// Cancel was tapped on the progress screen.
    ProgressCancelled,
    /// A contact was tapped on the home screen: firmware answers with
    /// [`crate::UiHandle::set_contact_details`].
    ContactOpened { name: String },
    /// **Messages** was tapped on this contact's screen: firmware shows
    /// the conversation read and written on the device (a flow step).
    ConversationOpened { name: String },
    /// **Private contact** was tapped on this contact's screen: firmware
    /// makes it private (`private`) or not, and sends the details again.
    SetPrivate { name: String, private: bool },
    /// The owner confirmed removing this contact and its pad. The screen
    /// is back home; firmware removes it (or says why not, in a toast).
    RemoveContact { name: String },
    /// **New contact** was tapped on the home screen: firmware runs the
    /// maker's flow (its steps are [`crate::UiHandle::ask_choice`] and
    /// [`crate::UiHandle::ask_text`]).
    NewContact,
    /// **Import contact** was tapped on the home screen.
    ImportContact,
    /// **Lock now** was tapped on the home screen.
    LockNow,
    /// **Settings** was tapped on the About screen: firmware runs the
    /// settings steps ([`crate::UiHandle::ask_choice`]).
    SettingsOpened,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_json_round_trip() {
        let p = Prompt::Open {
            contact: "bob".into(),
            cost_bytes: 164,
            warnings: vec![
                WarningView::Replay { index: 4 },
                WarningView::Skipped { count: 2 },
            ],
            timeout: Duration::from_secs(30),
            client_note: None,
            for_laptop: true,
        };
        let j = serde_json::to_value(&p).unwrap();
        assert_eq!(j["kind"], "open");
        assert_eq!(j["warnings"][0]["kind"], "replay");
        assert_eq!(serde_json::from_value::<Prompt>(j).unwrap(), p);
        assert_eq!(p.timeout(), Duration::from_secs(30));
        assert_eq!(
            serde_json::to_string(&Decision::Approve).unwrap(),
            "\"approve\""
        );
    }
}
