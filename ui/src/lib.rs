//! otc-ui: the pad device's face. Slint screens rendered in software, display
//! sinks, touch sources, a structured screen trace and (feature `emulator`)
//! the emulator page. It knows nothing about pads: firmware hands it view
//! models and gets decisions back.
//!
//! ```no_run
//! use otc_ui::{sink::memory, source::scripted, SystemClock, Ui, UiConfig};
//! use std::sync::Arc;
//! let (display, _screen) = memory::MemoryDisplay::new(800, 480);
//! let (touch, _script) = scripted::ScriptedTouch::new();
//! let ui = Ui::spawn(Box::new(display), Some(Box::new(touch)),
//!                    Arc::new(SystemClock::new()), UiConfig::default())?;
//! // ui.handle is Send + Clone: give it to the confirmation broker.
//! let ticket = ui.handle.show_prompt(otc_ui::Prompt::Seal {
//!     contact: "bob".into(), message_bytes: 100, cost_bytes: 116,
//!     pad_left_after: 1_000_000, timeout: std::time::Duration::from_secs(30),
//!     client_note: None,
//!     message: None,
//! });
//! let decision = ticket.wait(); // Approve, Reject, Timeout, Cancelled or Busy
//! ui.stop()?;
//! # Ok::<(), otc_ui::UiError>(())
//! ```

pub mod choice;
pub mod clock;
pub mod display;
pub mod error;
pub mod format;
pub mod glyph_ranges;
pub mod keyboard;
pub mod message;
pub mod model;
pub mod orient;
mod platform;
mod screens;
pub mod sink;
pub mod source;
pub mod texts;
pub mod touch;
pub mod trace;
mod ui;

#[cfg(feature = "emulator")]
pub mod emulator;

mod generated {
    #![allow(clippy::all, missing_docs, unused)]
    slint::include_modules!();
}

pub use choice::{ChoiceAnswer, ChoiceRequest, Target};
pub use clock::{Clock, FakeClock, SystemClock};
pub use display::{Display, Frame, Rect, Rotation};
pub use error::UiError;
pub use keyboard::{TextAnswer, TextCheck, TextKind, TextRequest};
pub use model::{
    AboutView, AlertView, ContactDetailsView, ContactView, Decision, HomeView, LinkView,
    MessageView, ProgressView, Prompt, PushButton, Toast, ToastKind, UiEvent, WarningView,
    alerts_digest,
};
pub use orient::{Affine, FitError, Orientation};
pub use touch::{Touch, TouchEvent};
pub use trace::{ScreenTrace, TraceButton};
pub use ui::{
    ButtonRecord, ChoiceTicket, PromptTicket, TapRecord, TextTicket, TraceHandle, Ui, UiConfig,
    UiHandle, UiThread, ignored,
};
