//! The owner's orientation of the screen, set on the device's own screen
//! (issue 18): the panel the right way up or upside down, and a touch
//! correction fitted from three taps on targets.
//!
//! Both sit between the sinks and sources and the UI, in the UI loop, so
//! every display (framebuffer, SPI, memory, the emulator page) and every
//! touch source (evdev, scripted, [`crate::UiHandle::touch`]) honours them
//! the same way:
//! - a frame is drawn at the logical size as always and turned by 180°
//!   on its way to the display when [`Orientation::upside_down`];
//! - a touch arrives in the source's coordinates ("panel" coordinates:
//!   after `otc.toml`'s calibration, axis swap and rotation, which the
//!   sources apply), goes through the correction [`Affine`] (panel space:
//!   the touch panel's error belongs to the panel, whichever way up it is
//!   mounted), and is then turned back by 180° when upside down.
//!
//! The correction is fitted by [`fit`] from where three taps landed
//! (panel coordinates, before any correction) against where their targets
//! were drawn (panel coordinates). A fit that would turn the touch panel
//! inside out, shrink or stretch it by more than 2×, or move any corner
//! of the screen by more than half its shorter side is refused
//! ([`FitError`]): three taps that were that far off are a slip of the
//! finger or a panel that needs `otc.toml`'s calibration, not a fit.

use serde::{Deserialize, Serialize};

/// `x' = a·x + b·y + c`, `y' = d·x + e·y + f`, in panel pixels.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Affine {
    pub a: f64,
    pub b: f64,
    pub c: f64,
    pub d: f64,
    pub e: f64,
    pub f: f64,
}

impl Default for Affine {
    fn default() -> Self {
        Affine::IDENTITY
    }
}

impl Affine {
    /// No correction.
    pub const IDENTITY: Affine = Affine {
        a: 1.0,
        b: 0.0,
        c: 0.0,
        d: 0.0,
        e: 1.0,
        f: 0.0,
    };

    pub fn apply(&self, x: f64, y: f64) -> (f64, f64) {
        (
            self.a * x + self.b * y + self.c,
            self.d * x + self.e * y + self.f,
        )
    }

    /// The determinant of the linear part: the factor areas are scaled by
    /// (negative: mirrored).
    pub fn det(&self) -> f64 {
        self.a * self.e - self.b * self.d
    }

    /// Whether the correction is one a screen of `size` may use: finite,
    /// not mirrored, area scaled by 1/4 to 4 (2× per axis), each axis
    /// stretched by at most 2×, and no corner of the screen moved by
    /// more than half its shorter side.
    pub fn check(&self, size: (u32, u32)) -> Result<(), FitError> {
        let all = [self.a, self.b, self.c, self.d, self.e, self.f];
        if all.iter().any(|v| !v.is_finite()) {
            return Err(FitError::Degenerate);
        }
        let det = self.det();
        if det <= 0.0 {
            return Err(FitError::Mirrored);
        }
        if !(0.25..=4.0).contains(&det) {
            return Err(FitError::TooFar);
        }
        // The images of the unit axes.
        let sx = (self.a * self.a + self.d * self.d).sqrt();
        let sy = (self.b * self.b + self.e * self.e).sqrt();
        if !(0.5..=2.0).contains(&sx) || !(0.5..=2.0).contains(&sy) {
            return Err(FitError::TooFar);
        }
        let (w, h) = (f64::from(size.0), f64::from(size.1));
        let limit = w.min(h) / 2.0;
        for (x, y) in [(0.0, 0.0), (w, 0.0), (0.0, h), (w, h)] {
            let (u, v) = self.apply(x, y);
            if ((u - x).powi(2) + (v - y).powi(2)).sqrt() > limit {
                return Err(FitError::TooFar);
            }
        }
        Ok(())
    }

    /// The point `(x, y)` corrected and kept on a `size` screen.
    pub fn map_clamped(&self, x: u32, y: u32, size: (u32, u32)) -> (u32, u32) {
        let (u, v) = self.apply(f64::from(x), f64::from(y));
        let clamp = |t: f64, n: u32| -> u32 {
            let max = f64::from(n.saturating_sub(1));
            if t.is_nan() {
                0
            } else {
                t.round().clamp(0.0, max) as u32
            }
        };
        (clamp(u, size.0), clamp(v, size.1))
    }
}

/// Why three taps give no correction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FitError {
    /// The taps (or the targets) lie on one line, or two are the same.
    #[error("the three taps lie on one line, so they say nothing about the other direction")]
    Degenerate,
    /// The taps are in the other order around the screen than the targets.
    #[error(
        "the taps are mirrored against the targets (set swap_xy or invert_x/invert_y in otc.toml)"
    )]
    Mirrored,
    /// The correction would stretch or move the touch panel too far.
    #[error("the taps are too far from the targets for a correction")]
    TooFar,
}

/// The correction that takes each `landed[i]` to `targets[i]` exactly
/// (three point pairs fix an affine map), checked with
/// [`Affine::check`] for a screen of `size`.
pub fn fit(
    targets: [(f64, f64); 3],
    landed: [(f64, f64); 3],
    size: (u32, u32),
) -> Result<Affine, FitError> {
    let [(x0, y0), (x1, y1), (x2, y2)] = landed;
    // Solve [x y 1]·(a b c) = X for the three points (Cramer's rule).
    let det = x0 * (y1 - y2) - y0 * (x1 - x2) + (x1 * y2 - x2 * y1);
    let area_t = {
        let [(u0, v0), (u1, v1), (u2, v2)] = targets;
        (u0 * (v1 - v2) - v0 * (u1 - u2) + (u1 * v2 - u2 * v1)).abs()
    };
    // Taps within a pixel or two of a line: the other axis is a guess.
    if det.abs() < 1e-3 * area_t.max(1.0) || area_t < 1.0 {
        return Err(FitError::Degenerate);
    }
    let solve = |r0: f64, r1: f64, r2: f64| -> (f64, f64, f64) {
        let a = (r0 * (y1 - y2) - y0 * (r1 - r2) + (r1 * y2 - r2 * y1)) / det;
        let b = (x0 * (r1 - r2) - r0 * (x1 - x2) + (x1 * r2 - x2 * r1)) / det;
        let c =
            (x0 * (y1 * r2 - y2 * r1) - y0 * (x1 * r2 - x2 * r1) + r0 * (x1 * y2 - x2 * y1)) / det;
        (a, b, c)
    };
    let (a, b, c) = solve(targets[0].0, targets[1].0, targets[2].0);
    let (d, e, f) = solve(targets[0].1, targets[1].1, targets[2].1);
    let m = Affine { a, b, c, d, e, f };
    m.check(size)?;
    Ok(m)
}

/// How the UI turns frames and touches (see the module doc).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Orientation {
    /// The panel is mounted upside down: frames are turned by 180°.
    pub upside_down: bool,
    /// The touch correction, in panel coordinates.
    pub touch: Affine,
}

impl Orientation {
    /// A touch at panel `(x, y)` on a `size` screen, in logical pixels.
    pub fn touch_to_logical(&self, x: u32, y: u32, size: (u32, u32)) -> (u32, u32) {
        let (x, y) = self.touch.map_clamped(x, y, size);
        self.turn(x, y, size)
    }

    /// Logical `(x, y)` to panel pixels and back (a half turn is its own
    /// inverse); no correction.
    pub fn turn(&self, x: u32, y: u32, size: (u32, u32)) -> (u32, u32) {
        if self.upside_down {
            (
                size.0.saturating_sub(1).saturating_sub(x),
                size.1.saturating_sub(1).saturating_sub(y),
            )
        } else {
            (x, y)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZE: (u32, u32) = (800, 480);
    const TARGETS: [(f64, f64); 3] = [(120.0, 96.0), (680.0, 240.0), (240.0, 384.0)];

    fn moved(dx: f64, dy: f64) -> [(f64, f64); 3] {
        TARGETS.map(|(x, y)| (x + dx, y + dy))
    }

    #[test]
    fn exact_taps_fit_the_identity() {
        let m = fit(TARGETS, TARGETS, SIZE).unwrap();
        for (x, y) in [(0, 0), (799, 479), (400, 240), (13, 400)] {
            assert_eq!(m.map_clamped(x, y, SIZE), (x, y));
        }
    }

    #[test]
    fn offset_taps_fit_the_offset_back() {
        let m = fit(TARGETS, moved(30.0, -20.0), SIZE).unwrap();
        assert_eq!(m.map_clamped(430, 220, SIZE), (400, 240));
        // Scaled taps (a panel whose range is 10% short) fit a stretch.
        let landed = TARGETS.map(|(x, y)| (x * 0.9 + 8.0, y * 0.9));
        let m = fit(TARGETS, landed, SIZE).unwrap();
        let (u, v) = m.apply(0.9 * 500.0 + 8.0, 0.9 * 300.0);
        assert!(
            (u - 500.0).abs() < 1e-9 && (v - 300.0).abs() < 1e-9,
            "{u} {v}"
        );
    }

    #[test]
    fn degenerate_mirrored_and_far_fits_are_refused() {
        let line = [(100.0, 100.0), (400.0, 100.5), (700.0, 101.0)];
        assert_eq!(fit(TARGETS, line, SIZE), Err(FitError::Degenerate));
        let same = [(100.0, 100.0), (100.0, 100.0), (300.0, 300.0)];
        assert_eq!(fit(TARGETS, same, SIZE), Err(FitError::Degenerate));
        let mirrored = TARGETS.map(|(x, y)| (800.0 - x, y));
        assert_eq!(fit(TARGETS, mirrored, SIZE), Err(FitError::Mirrored));
        assert_eq!(fit(TARGETS, moved(300.0, 0.0), SIZE), Err(FitError::TooFar));
        let squeezed = TARGETS.map(|(x, y)| (x * 0.3, y));
        assert_eq!(fit(TARGETS, squeezed, SIZE), Err(FitError::TooFar));
        let nan = [(f64::NAN, 1.0), (2.0, 3.0), (5.0, 1.0)];
        assert!(fit(TARGETS, nan, SIZE).is_err());
    }

    #[test]
    fn upside_down_turns_touches_and_the_correction_comes_first() {
        let o = Orientation {
            upside_down: true,
            touch: Affine {
                c: -10.0,
                ..Affine::IDENTITY
            },
        };
        assert_eq!(o.turn(0, 0, SIZE), (799, 479));
        assert_eq!(o.turn(799, 479, SIZE), (0, 0));
        // Panel (110, 40) is corrected to (100, 40), then turned.
        assert_eq!(o.touch_to_logical(110, 40, SIZE), (699, 439));
        // Clamped to the screen.
        assert_eq!(o.touch_to_logical(0, 0, SIZE), (799, 479));
    }
}
