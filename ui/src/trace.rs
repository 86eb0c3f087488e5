//! The screen trace: what the current screen says, as data.
//!
//! Tests and the emulator page read the trace instead of OCR'ing pixels.
//! Texts are the exact strings handed to the screen; buttons carry their
//! geometry in screen (logical) pixels, read back from the laid-out Slint
//! items, and whether each one takes taps yet (`armed`).

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ScreenTrace {
    /// "home", "confirm-seal", "confirm-open", "pairing", "alerts", "about",
    /// "progress", "contact", "remove-contact", "keyboard".
    pub screen: String,
    pub texts: Vec<String>,
    pub buttons: Vec<TraceButton>,
    /// The toast shown over the screen, if any.
    #[serde(default)]
    pub toast: Option<String>,
    /// The id of the prompt on screen, if any: a new id for every prompt
    /// shown, so a test (or the testkit's thumb) can tell one prompt from
    /// the next even when they look alike.
    #[serde(default)]
    pub prompt: Option<u64>,
    /// `Some([width, height])` while the screen is drawn upside down (the
    /// owner's rotation of 180°, [`crate::Orientation`]): what shows at
    /// logical `(x, y)` is at panel `(width-1-x, height-1-y)`, where a
    /// finger taps it ([`ScreenTrace::panel_point`]). Left out when the
    /// screen is the right way up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upside_down: Option<[u32; 2]>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TraceButton {
    /// Stable id ("approve", "reject", "alerts", "about", "back", "cancel",
    /// "dismiss-toast", "contact:0" for the first contact row, "remove",
    /// "remove-confirm", "remove-cancel", keyboard keys "kb-char-a",
    /// "kb-shift", "kb-done", ...).
    pub id: String,
    /// What the button says.
    pub label: String,
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
    /// Whether a tap on it counts now. A prompt's buttons are armed only
    /// its arm delay after it appeared; a tap before that is ignored (the
    /// emulator page answers `"ignored": "not_armed"`).
    #[serde(default = "armed_by_default")]
    pub armed: bool,
}

fn armed_by_default() -> bool {
    true
}

impl Default for TraceButton {
    fn default() -> Self {
        TraceButton {
            id: String::new(),
            label: String::new(),
            x: 0,
            y: 0,
            w: 0,
            h: 0,
            armed: true,
        }
    }
}

impl TraceButton {
    /// The button's centre, where a finger would tap.
    pub fn center(&self) -> (u32, u32) {
        (self.x + self.w / 2, self.y + self.h / 2)
    }
}

impl ScreenTrace {
    /// The button with this id or label.
    pub fn button(&self, id_or_label: &str) -> Option<&TraceButton> {
        self.buttons
            .iter()
            .find(|b| b.id == id_or_label || b.label == id_or_label)
    }

    /// Whether any text on screen contains `needle`.
    pub fn has_text(&self, needle: &str) -> bool {
        self.texts.iter().any(|t| t.contains(needle))
    }

    /// Where on the panel (the touch source's coordinates) a finger taps
    /// what shows at logical `(x, y)`.
    pub fn panel_point(&self, (x, y): (u32, u32)) -> (u32, u32) {
        match self.upside_down {
            Some([w, h]) => (
                w.saturating_sub(1).saturating_sub(x),
                h.saturating_sub(1).saturating_sub(y),
            ),
            None => (x, y),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
    }
}
