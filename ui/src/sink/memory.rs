//! In-memory display: keeps the latest frame for tests, PNG snapshots and
//! the emulator page.
//!
//! [`MemoryDisplay`] is the [`Display`] handed to the UI; [`MemoryScreen`] is
//! a cloneable, thread-safe view of what it shows, with a generation counter
//! that goes up on every present (and a condvar to wait for that).

use crate::display::{Display, Frame, Rect};
use crate::error::UiError;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

struct State {
    frame: Frame,
    generation: u64,
    last_dirty: Rect,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

/// The sink side: give it to [`crate::Ui::new`].
pub struct MemoryDisplay {
    width: u32,
    height: u32,
    shared: Arc<Shared>,
}

/// The viewer side: read frames, wait for changes, write PNGs.
#[derive(Clone)]
pub struct MemoryScreen {
    shared: Arc<Shared>,
}

impl MemoryDisplay {
    /// A `width`x`height` memory display and its viewer.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(width: u32, height: u32) -> (MemoryDisplay, MemoryScreen) {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                frame: Frame::new(width, height),
                generation: 0,
                last_dirty: Rect::default(),
            }),
            changed: Condvar::new(),
        });
        (
            MemoryDisplay {
                width,
                height,
                shared: shared.clone(),
            },
            MemoryScreen { shared },
        )
    }
}

impl Display for MemoryDisplay {
    fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    fn present(&mut self, frame: &Frame, dirty: Rect) -> Result<(), UiError> {
        let mut st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        if frame.width != st.frame.width || frame.height != st.frame.height {
            return Err(UiError::Unsupported(format!(
                "frame {}x{} on a {}x{} memory display",
                frame.width, frame.height, st.frame.width, st.frame.height
            )));
        }
        let w = frame.width as usize;
        let x0 = (dirty.x as usize).min(w);
        let x1 = (dirty.x as usize + dirty.w as usize).min(w);
        let y1 = (dirty.y + dirty.h).min(frame.height) as usize;
        for y in dirty.y as usize..y1 {
            let row = y * w;
            st.frame.pixels[row + x0..row + x1].copy_from_slice(&frame.pixels[row + x0..row + x1]);
        }
        st.generation += 1;
        st.last_dirty = dirty;
        self.shared.changed.notify_all();
        Ok(())
    }
}

impl MemoryScreen {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of what is on screen.
    pub fn frame(&self) -> Frame {
        self.lock().frame.clone()
    }

    /// How many times the screen was updated.
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// The region of the last update.
    pub fn last_dirty(&self) -> Rect {
        self.lock().last_dirty
    }

    /// Waits until the generation is past `seen` or `timeout` passes;
    /// returns the generation then.
    pub fn wait_for_change(&self, seen: u64, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        let mut st = self.lock();
        while st.generation <= seen {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            st = match self.shared.changed.wait_timeout(st, deadline - now) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
        st.generation
    }

    /// The screen as a PNG (8-bit RGB).
    pub fn png(&self) -> Result<Vec<u8>, UiError> {
        frame_to_png(&self.frame())
    }

    /// Writes the screen to `path` as a PNG.
    pub fn save_png(&self, path: &std::path::Path) -> Result<(), UiError> {
        let data = self.png()?;
        std::fs::write(path, data).map_err(|source| UiError::DisplayIo {
            path: path.display().to_string(),
            source,
        })
    }
}

/// RGB565 to 8-bit RGB, replicating high bits into the low ones.
pub fn rgb565_to_rgb888(p: u16) -> [u8; 3] {
    let r = ((p >> 11) & 0x1f) as u8;
    let g = ((p >> 5) & 0x3f) as u8;
    let b = (p & 0x1f) as u8;
    [
        (r << 3) | (r >> 2),
        (g << 2) | (g >> 4),
        (b << 3) | (b >> 2),
    ]
}

/// Encodes a frame as an 8-bit RGB PNG.
pub fn frame_to_png(frame: &Frame) -> Result<Vec<u8>, UiError> {
    let mut rgb = Vec::with_capacity(frame.pixels.len() * 3);
    for p in &frame.pixels {
        rgb.extend_from_slice(&rgb565_to_rgb888(*p));
    }
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, frame.width, frame.height);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc
            .write_header()
            .map_err(|e| UiError::Other(format!("png: {e}")))?;
        w.write_image_data(&rgb)
            .map_err(|e| UiError::Other(format!("png: {e}")))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn present_copies_only_the_dirty_rect() {
        let (mut d, screen) = MemoryDisplay::new(4, 3);
        let mut f = Frame::new(4, 3);
        f.pixels.iter_mut().for_each(|p| *p = 0xffff);
        d.present(&f, Rect::new(1, 1, 2, 1)).unwrap();
        let got = screen.frame();
        assert_eq!(
            got.pixels,
            vec![0, 0, 0, 0, 0, 0xffff, 0xffff, 0, 0, 0, 0, 0]
        );
        assert_eq!(screen.generation(), 1);
        assert_eq!(screen.wait_for_change(0, Duration::ZERO), 1);
        assert_eq!(screen.last_dirty(), Rect::new(1, 1, 2, 1));
    }

    #[test]
    fn colours_expand_to_full_range() {
        assert_eq!(rgb565_to_rgb888(0xffff), [255, 255, 255]);
        assert_eq!(rgb565_to_rgb888(0), [0, 0, 0]);
        assert_eq!(rgb565_to_rgb888(0xf800), [255, 0, 0]);
    }

    #[test]
    fn png_round_trip_header() {
        let (_, screen) = MemoryDisplay::new(2, 2);
        let png = screen.png().unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    }
}
