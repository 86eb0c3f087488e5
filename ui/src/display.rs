//! Display sinks: where rendered frames go.
//!
//! The UI renders into an RGB565 [`Frame`] at the *logical* screen size (what
//! the Slint window sees, after rotation). A [`Display`] copies dirty regions of
//! that frame to a real device (Linux framebuffer, SPI TFT) or keeps them in
//! memory for tests and the emulator page. Rotation is applied by the sink.

use crate::error::UiError;

/// A rectangle in logical screen pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Rect {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
}

impl Rect {
    pub fn new(x: u32, y: u32, w: u32, h: u32) -> Self {
        Rect { x, y, w, h }
    }
    pub fn is_empty(&self) -> bool {
        self.w == 0 || self.h == 0
    }
}

/// Rotation of the panel relative to the logical (UI) orientation, clockwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum Rotation {
    #[default]
    #[serde(rename = "0")]
    R0,
    #[serde(rename = "90")]
    R90,
    #[serde(rename = "180")]
    R180,
    #[serde(rename = "270")]
    R270,
}

/// A full logical frame in RGB565 (`r:5 g:6 b:5`, native-endian `u16`), row-major.
#[derive(Clone, Debug)]
pub struct Frame {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u16>,
}

impl Frame {
    pub fn new(width: u32, height: u32) -> Self {
        Frame {
            width,
            height,
            pixels: vec![0; width as usize * height as usize],
        }
    }
}

/// A place frames are shown.
pub trait Display: Send {
    /// Logical size the UI must render at (panel size with rotation applied).
    fn size(&self) -> (u32, u32);
    /// Show `dirty` (logical coordinates) of `frame` on the device.
    fn present(&mut self, frame: &Frame, dirty: Rect) -> Result<(), UiError>;
}
