//! Touch sources: where presses come from.
//!
//! Every source reports events in *logical* screen pixels (after scaling,
//! calibration, rotation and axis swap), so the UI never sees raw device units.

use crate::error::UiError;
use std::time::Duration;

/// One touch event in logical screen pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum TouchEvent {
    Down { x: u32, y: u32 },
    Move { x: u32, y: u32 },
    Up { x: u32, y: u32 },
}

/// A source of touch events.
pub trait Touch: Send {
    /// Events that arrived, waiting at most `timeout` for the first one.
    /// Returns an empty vector on timeout.
    fn poll(&mut self, timeout: Duration) -> Result<Vec<TouchEvent>, UiError>;
}
