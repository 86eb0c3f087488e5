//! The screen's backlight: off after the owner has left the device alone
//! for `[display] backlight_idle_secs` (0: never), on again at any touch,
//! push-button press or prompt, and on for as long as a prompt waits.
//!
//! [`IdleTimer`] is the decision, a pure function of the UI's activity
//! count ([`otc_ui::TraceHandle::activity`]), whether a prompt waits, and
//! the monotonic clock. [`BacklightDriver`] writes it to a [`Backlight`]:
//! - the SPI panel's backlight line (`[display.spi] backlight_pin`, a GPIO
//!   line the board opened, see `board::open_spi_display`);
//! - on a framebuffer screen, the kernel's backlight class
//!   ([`SysfsBacklight`]: the first device under `/sys/class/backlight`,
//!   switched with its `bl_power` attribute, which leaves the brightness
//!   as the owner set it); with none there, nothing is switched and the
//!   device says so once;
//! - a twin in tests.
//!
//! The touch that wakes a dark screen also reaches the screen (a tap on
//! the home screen's Alerts button opens the alerts); a prompt is never
//! dark, so no tap on a dark screen can answer one.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The backlight itself: on or off.
pub trait Backlight: Send {
    fn set(&mut self, on: bool) -> std::io::Result<()>;
}

/// When the backlight should be on (see the module doc).
#[derive(Clone, Debug)]
pub struct IdleTimer {
    /// Off after this long without activity; `None`: never.
    idle: Option<Duration>,
    seen: Option<u64>,
    last_active: Duration,
}

impl IdleTimer {
    /// Off after `idle` without activity (`None`: always on).
    pub fn new(idle: Option<Duration>) -> Self {
        IdleTimer {
            idle,
            seen: None,
            last_active: Duration::ZERO,
        }
    }

    /// Whether the backlight should be on at `now`, given the UI's
    /// activity count and whether a prompt waits. The first call starts
    /// the idle time.
    pub fn update(&mut self, activity: u64, prompt_waiting: bool, now: Duration) -> bool {
        if self.seen != Some(activity) || prompt_waiting {
            self.seen = Some(activity);
            self.last_active = now;
        }
        match self.idle {
            None => true,
            Some(idle) => now.saturating_sub(self.last_active) < idle,
        }
    }
}

/// Drives a [`Backlight`] with an [`IdleTimer`]; writes only changes.
pub struct BacklightDriver {
    light: Box<dyn Backlight>,
    timer: IdleTimer,
    written: Option<bool>,
    failed: bool,
}

impl BacklightDriver {
    pub fn new(light: Box<dyn Backlight>, idle: Option<Duration>) -> Self {
        BacklightDriver {
            light,
            timer: IdleTimer::new(idle),
            written: None,
            failed: false,
        }
    }

    /// See [`IdleTimer::update`].
    pub fn update(&mut self, activity: u64, prompt_waiting: bool, now: Duration) {
        let on = self.timer.update(activity, prompt_waiting, now);
        if self.written == Some(on) {
            return;
        }
        match self.light.set(on) {
            Ok(()) => self.written = Some(on),
            Err(e) if !self.failed => {
                self.failed = true;
                eprintln!("otc-device: cannot switch the backlight: {e} (tried again quietly)");
            }
            Err(_) => {}
        }
    }
}

/// Where the kernel lists backlights.
pub const SYSFS_BACKLIGHTS: &str = "/sys/class/backlight";

/// A backlight of the kernel's backlight class, e.g. the official 7" DSI
/// screen's (`rpi_backlight`, or `10-0045` on newer kernels). `bl_power`
/// 0 is on (FB_BLANK_UNBLANK), 4 is off (FB_BLANK_POWERDOWN).
pub struct SysfsBacklight {
    dir: PathBuf,
}

impl SysfsBacklight {
    /// The first backlight (by name) under `root`, if there is one.
    pub fn find(root: &Path) -> Option<SysfsBacklight> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(root)
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join("bl_power").exists())
            .collect();
        names.sort();
        names.into_iter().next().map(|dir| SysfsBacklight { dir })
    }

    /// Its directory, e.g. `/sys/class/backlight/rpi_backlight`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Backlight for SysfsBacklight {
    fn set(&mut self, on: bool) -> std::io::Result<()> {
        let path = self.dir.join("bl_power");
        std::fs::write(&path, if on { "0\n" } else { "4\n" })
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))
    }
}

#[cfg(test)]
pub(crate) mod twin {
    use super::Backlight;
    use std::sync::{Arc, Mutex};

    /// The backlight's twin: every level it was set to.
    #[derive(Clone, Default)]
    pub struct TwinBacklight(pub Arc<Mutex<Vec<bool>>>);

    impl TwinBacklight {
        /// On until told otherwise (a backlight starts lit).
        pub fn on(&self) -> bool {
            self.0.lock().unwrap().last().copied().unwrap_or(true)
        }
    }

    impl Backlight for TwinBacklight {
        fn set(&mut self, on: bool) -> std::io::Result<()> {
            self.0.lock().unwrap().push(on);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::twin::TwinBacklight;
    use super::*;

    const S: Duration = Duration::from_secs(1);

    /// Off after the idle time, on at the next activity, on all the time
    /// a prompt waits, and the idle time counts from the prompt's end.
    #[test]
    fn the_backlight_goes_dark_when_idle_and_wakes_at_activity() {
        let light = TwinBacklight::default();
        let mut d = BacklightDriver::new(Box::new(light.clone()), Some(60 * S));
        let mut activity = 7;
        d.update(activity, false, Duration::ZERO);
        assert!(light.on());
        d.update(activity, false, 59 * S);
        assert!(light.on(), "59 s is not yet idle");
        d.update(activity, false, 60 * S);
        assert!(!light.on(), "dark after 60 s without activity");
        activity += 1; // a touch
        d.update(activity, false, 61 * S);
        assert!(light.on(), "a touch lights it");
        d.update(activity, false, 120 * S);
        assert!(light.on());
        d.update(activity, false, 121 * S);
        assert!(!light.on());
        // A prompt: on at once and for as long as it waits.
        activity += 1;
        for t in [122, 200, 300] {
            d.update(activity, true, t * S);
            assert!(light.on(), "a waiting prompt at {t} s is lit");
        }
        d.update(activity, false, 359 * S);
        assert!(light.on(), "idle counts from the prompt's end (300 s)");
        d.update(activity, false, 360 * S);
        assert!(!light.on());
        assert_eq!(
            *light.0.lock().unwrap(),
            [true, false, true, false, true, false],
            "only changes are written"
        );
    }

    #[test]
    fn an_idle_time_of_none_never_darkens() {
        let light = TwinBacklight::default();
        let mut d = BacklightDriver::new(Box::new(light.clone()), None);
        for t in [0, 3_600, 86_400] {
            d.update(0, false, t * S);
        }
        assert_eq!(*light.0.lock().unwrap(), [true]);
    }

    /// The real sysfs backlight, on a directory laid out like
    /// /sys/class/backlight: the first one with `bl_power` is used, and
    /// off/on are written as the kernel expects.
    #[test]
    fn the_sysfs_backlight_writes_bl_power() {
        let root = tempfile::tempdir().unwrap();
        assert!(SysfsBacklight::find(root.path()).is_none(), "none there");
        assert!(SysfsBacklight::find(&root.path().join("absent")).is_none());
        for name in ["rpi_backlight", "10-0045"] {
            let dir = root.path().join(name);
            std::fs::create_dir(&dir).unwrap();
            std::fs::write(dir.join("bl_power"), "0\n").unwrap();
        }
        std::fs::create_dir(root.path().join("0-no-power-file")).unwrap();
        let mut b = SysfsBacklight::find(root.path()).unwrap();
        assert_eq!(b.dir(), root.path().join("10-0045"));
        b.set(false).unwrap();
        assert_eq!(
            std::fs::read_to_string(root.path().join("10-0045/bl_power")).unwrap(),
            "4\n"
        );
        b.set(true).unwrap();
        assert_eq!(
            std::fs::read_to_string(root.path().join("10-0045/bl_power")).unwrap(),
            "0\n"
        );
        std::fs::remove_dir_all(root.path().join("10-0045")).unwrap();
        let e = b.set(false).unwrap_err().to_string();
        assert!(e.contains("10-0045/bl_power"), "{e}");
    }
}
