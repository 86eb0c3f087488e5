//! otc-ui: the pad device's face. Slint screens rendered in software, display
//! sinks, touch sources, a structured screen trace and (feature `emulator`)
//! the emulator page. It knows nothing about pads: firmware hands it view
//! models and gets decisions back.

pub mod display;
pub mod error;
pub mod sink;
pub mod source;
pub mod touch;

pub use display::{Display, Frame, Rect, Rotation};
pub use error::UiError;
pub use touch::{Touch, TouchEvent};
