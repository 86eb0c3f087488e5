//! Our `slint::platform::Platform`: one [`MinimalSoftwareWindow`] rendered in
//! software, time from the injectable [`Clock`].
//!
//! Slint keeps its platform per thread, so the platform is installed once on
//! each UI thread, and every [`crate::Ui`] created there hands it its window
//! and clock first. Cross-thread requests do not use Slint's event-loop proxy
//! (that one is process-wide); they travel through the [`crate::UiHandle`]
//! channel that the UI loop drains.

use crate::clock::Clock;
use crate::error::UiError;
use slint::platform::software_renderer::MinimalSoftwareWindow;
use slint::platform::{Platform, WindowAdapter};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

thread_local! {
    static INSTALLED: Cell<bool> = const { Cell::new(false) };
    static NEXT_WINDOW: RefCell<Option<Rc<MinimalSoftwareWindow>>> = const { RefCell::new(None) };
    static CLOCK: RefCell<Option<Arc<dyn Clock>>> = const { RefCell::new(None) };
}

struct OtcPlatform {
    start: std::time::Instant,
}

impl Platform for OtcPlatform {
    fn create_window_adapter(&self) -> Result<Rc<dyn WindowAdapter>, slint::PlatformError> {
        NEXT_WINDOW.with(|w| match w.borrow().as_ref() {
            Some(w) => Ok(w.clone() as Rc<dyn WindowAdapter>),
            None => Err(slint::PlatformError::Other(
                "otc-ui: no window prepared for this thread".into(),
            )),
        })
    }

    fn duration_since_start(&self) -> Duration {
        CLOCK.with(|c| match c.borrow().as_ref() {
            Some(c) => c.now(),
            None => self.start.elapsed(),
        })
    }
}

/// Installs the platform on this thread (once) and makes `window` and `clock`
/// the ones the next Slint component created on this thread will use.
pub(crate) fn prepare(
    window: Rc<MinimalSoftwareWindow>,
    clock: Arc<dyn Clock>,
) -> Result<(), UiError> {
    NEXT_WINDOW.with(|w| *w.borrow_mut() = Some(window));
    CLOCK.with(|c| *c.borrow_mut() = Some(clock));
    if !INSTALLED.with(|i| i.get()) {
        slint::platform::set_platform(Box::new(OtcPlatform {
            start: std::time::Instant::now(),
        }))
        .map_err(|e| {
            UiError::Other(format!(
                "cannot install the otc-ui Slint platform on this thread: {e} \
                 (another Slint backend already runs here)"
            ))
        })?;
        INSTALLED.with(|i| i.set(true));
    }
    Ok(())
}
