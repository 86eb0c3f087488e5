//! Board support: what the appliance runs on, as opposed to what it does.
//!
//! Today this is:
//! - the choice and opening of the screen: which display sink and touch
//!   source `otc-device run` drives ([`open_screen`]: the Linux framebuffer
//!   with evdev touch, the SPI TFT, memory only, or the emulator page);
//! - link detection ([`link_up`]: the kernel's operstate of the Ethernet
//!   interface), which the rest of the device reads only through the
//!   platform seam (`RealPlatform::link_up` calls it; tests use the twin);
//! - the hardware watchdog's opening ([`open_watchdog`]: `/dev/watchdog`
//!   and its timeout); when to pet it is [`crate::watchdog`]'s business.
//!
//! - the SPI display's hardware ([`open_spi_display`], feature
//!   `spi-display`): the spidev node and the GPIO character device's lines
//!   (`/dev/gpiochip0` by default) are opened here and handed to otc-ui's
//!   sink, which opens nothing itself.
//!
//! [`crate::device`] receives what this module opened; it never decides
//! which screen there is.

use crate::config::{DisplayConfig, DisplayKind};
use crate::error::Result;
use otc_ui::{Display, Touch};

/// Which screen to open, resolved from the command line and `otc.toml`.
#[derive(Clone, Debug)]
pub struct ScreenOptions {
    pub kind: DisplayKind,
    /// `[display]`, with `--emulator-listen` applied.
    pub display: DisplayConfig,
    /// `[touch]`.
    pub touch: otc_ui::source::evdev::EvdevConfig,
}

/// A display, its touch source, and the emulator's parts if it is one.
pub type ScreenParts = (
    Box<dyn Display>,
    Option<Box<dyn Touch>>,
    Option<EmulatorParts>,
);

/// Open the display/touch pair `opts` names.
pub fn open_screen(opts: &ScreenOptions) -> Result<ScreenParts> {
    let cfg = &opts.display;
    match opts.kind {
        DisplayKind::Memory => {
            let (d, _screen) =
                otc_ui::sink::memory::MemoryDisplay::new(cfg.width, cfg.height);
            Ok((Box::new(d), None, None))
        }
        DisplayKind::Fbdev => {
            let d = otc_ui::sink::fbdev::FbdevSink::open(&cfg.fbdev)?;
            let size = d.size();
            let t = otc_ui::source::evdev::EvdevTouch::open(&opts.touch, size)?;
            Ok((Box::new(d), Some(Box::new(t)), None))
        }
        #[cfg(feature = "spi-display")]
        DisplayKind::Spi => {
            let d = open_spi_display(&cfg.spi)?;
            let size = d.size();
            let t = otc_ui::source::evdev::EvdevTouch::open(&opts.touch, size)?;
            Ok((Box::new(d), Some(Box::new(t)), None))
        }
        #[cfg(not(feature = "spi-display"))]
        DisplayKind::Spi => Err(crate::Error::NotInThisBuild(
            "this build has no SPI display; build with feature spi-display".into(),
        )),
        #[cfg(feature = "emulator")]
        DisplayKind::Emulator => {
            let (d, screen) =
                otc_ui::sink::memory::MemoryDisplay::new(cfg.width, cfg.height);
            let (t, script) = otc_ui::source::scripted::ScriptedTouch::new();
            Ok((
                Box::new(d),
                Some(Box::new(t)),
                Some(EmulatorParts { screen, script }),
            ))
        }
        #[cfg(not(feature = "emulator"))]
        DisplayKind::Emulator => Err(crate::Error::NotInThisBuild(
            "this build has no emulator page; build with feature emulator (never for a device image)"
                .into(),
        )),
    }
}

/// Open the SPI panel's bus (`cfg.spidev`, configured for mode 0, 8-bit
/// words, `cfg.speed_hz`) and its lines on `cfg.gpiochip` (data/command
/// starting low, reset starting high, the backlight if any), and hand them
/// to otc-ui's SPI sink, which resets and initialises the panel.
#[cfg(feature = "spi-display")]
pub fn open_spi_display(
    cfg: &otc_ui::sink::spi::SpiConfig,
) -> std::result::Result<otc_ui::sink::spi::SpiSink, otc_ui::UiError> {
    use linux_embedded_hal::gpio_cdev::{Chip, LineRequestFlags};
    use linux_embedded_hal::spidev::{SpiModeFlags, SpidevOptions};
    use linux_embedded_hal::{CdevPin, SpidevDevice};
    use otc_ui::UiError;
    use otc_ui::sink::spi::{SpiPins, SpiSink};

    let name = cfg.spidev.display().to_string();
    let io_err = |path: &str, msg: String| UiError::DisplayIo {
        path: path.to_string(),
        source: std::io::Error::other(msg),
    };
    let mut spi = SpidevDevice::open(&cfg.spidev).map_err(|e| UiError::DisplayIo {
        path: name.clone(),
        source: std::io::Error::new(
            e.inner().kind(),
            format!("{e}; is dtparam=spi=on set and no fbtft overlay loaded?"),
        ),
    })?;
    spi.configure(
        &SpidevOptions::new()
            .bits_per_word(8)
            .max_speed_hz(cfg.speed_hz)
            .mode(SpiModeFlags::SPI_MODE_0)
            .build(),
    )
    .map_err(|source| UiError::DisplayIo {
        path: name.clone(),
        source,
    })?;
    let chip_name = cfg.gpiochip.display().to_string();
    let mut chip = Chip::new(&cfg.gpiochip).map_err(|e| io_err(&chip_name, e.to_string()))?;
    let mut out = |line: u32, initial: u8, what: &str| -> std::result::Result<CdevPin, UiError> {
        let handle = chip
            .get_line(line)
            .and_then(|l| l.request(LineRequestFlags::OUTPUT, initial, what))
            .map_err(|e| io_err(&chip_name, format!("{what} line {line}: {e}")))?;
        CdevPin::new(handle).map_err(|e| io_err(&chip_name, format!("{what} line {line}: {e}")))
    };
    let pins = SpiPins {
        dc: out(cfg.dc_pin, 0, "otc-display-dc")?,
        reset: out(cfg.reset_pin, 1, "otc-display-reset")?,
        backlight: match cfg.backlight_pin {
            Some(n) => Some(out(n, 1, "otc-display-backlight")?),
            None => None,
        },
    };
    SpiSink::new(cfg, &name, spi, pins, &mut linux_embedded_hal::Delay)
}

/// What the emulator page needs (feature `emulator`).
#[cfg(feature = "emulator")]
pub struct EmulatorParts {
    pub screen: otc_ui::sink::memory::MemoryScreen,
    pub script: otc_ui::source::scripted::TouchScript,
}

/// Without feature `emulator` there is never an emulator page.
#[cfg(not(feature = "emulator"))]
pub enum EmulatorParts {}

/// True if the kernel says interface `name` is up (`/sys/class/net/NAME/
/// operstate` is `up`); false when it is down, unknown or absent.
pub fn link_up(name: &str) -> bool {
    std::fs::read_to_string(format!("/sys/class/net/{name}/operstate"))
        .map(|s| s.trim() == "up")
        .unwrap_or(false)
}

/// The hardware watchdog `otc-device run --watchdog` pets (see
/// [`crate::watchdog`] for when).
#[derive(Clone, Debug)]
pub struct WatchdogOptions {
    /// The device, e.g. `/dev/watchdog` (bcm2835_wdt on the Pi, i6300esb
    /// in the QEMU test).
    pub device: std::path::PathBuf,
    /// The hardware timeout to set: no pet for this long resets the board.
    pub timeout: std::time::Duration,
}

/// Open the watchdog for writing (the Linux watchdog API: opening arms it,
/// every write pets it) and, when it is a character device, set its
/// timeout (`WDIOC_SETTIMEOUT`; a timeout the hardware cannot do is a
/// warning, and it keeps its own; a device that is no watchdog is an
/// error). A FIFO or a regular file is opened as it
/// is, with no timeout to set: the tests' stand-ins for the device.
/// Only one process may hold a watchdog open: `EBUSY` means another one
/// (e.g. a watchdog daemon) has it.
pub fn open_watchdog(opts: &WatchdogOptions) -> Result<std::fs::File> {
    use std::os::unix::fs::FileTypeExt;
    let name = opts.device.display();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&opts.device)
        .map_err(|e| {
            let hint = if e.raw_os_error() == Some(nix::libc::EBUSY) {
                " (another process, e.g. a watchdog daemon, holds it)"
            } else {
                ""
            };
            crate::Error::io(format!("cannot open the watchdog {name}{hint}"), e)
        })?;
    let kind = f
        .metadata()
        .map_err(|e| crate::Error::io(format!("cannot stat the watchdog {name}"), e))?
        .file_type();
    if kind.is_char_device() {
        let want = opts.timeout.as_secs();
        match set_watchdog_timeout(&f, want) {
            Ok(got) if got == want => {}
            Ok(got) => {
                eprintln!(
                    "otc-device: the watchdog {name} took a timeout of {got} s (asked {want} s)"
                )
            }
            // A timeout this hardware cannot do: it is still a watchdog,
            // petted every second, with the timeout it has (better than a
            // device that never starts).
            Err(nix::errno::Errno::EINVAL) => {
                let has = get_watchdog_timeout(&f)
                    .map(|t| format!("{t} s"))
                    .unwrap_or_else(|e| format!("unknown: {e}"));
                eprintln!(
                    "otc-device: the watchdog {name} cannot time out after {want} s; it keeps its \
                     own timeout ({has})"
                );
            }
            Err(e) => {
                return Err(crate::Error::io(
                    format!("cannot set the timeout of the watchdog {name} to {want} s"),
                    e.into(),
                ));
            }
        }
    }
    Ok(f)
}

nix::ioctl_readwrite!(wdioc_settimeout, b'W', 6, nix::libc::c_int);
nix::ioctl_read!(wdioc_gettimeout, b'W', 7, nix::libc::c_int);

/// `WDIOC_GETTIMEOUT`: the driver's timeout, in seconds.
fn get_watchdog_timeout(f: &std::fs::File) -> nix::Result<i64> {
    use std::os::fd::AsRawFd;
    let mut t: nix::libc::c_int = 0;
    // SAFETY: the descriptor is open for the call's length, and `t` is the
    // `int` the ioctl writes.
    unsafe { wdioc_gettimeout(f.as_raw_fd(), &mut t) }?;
    Ok(i64::from(t))
}

/// `WDIOC_SETTIMEOUT`: returns the timeout the driver took (it may round).
fn set_watchdog_timeout(f: &std::fs::File, seconds: u64) -> nix::Result<u64> {
    use std::os::fd::AsRawFd;
    let mut t = nix::libc::c_int::try_from(seconds).map_err(|_| nix::errno::Errno::EINVAL)?;
    // SAFETY: the descriptor is open for the call's length, and `t` is the
    // `int` the ioctl reads and writes.
    unsafe { wdioc_settimeout(f.as_raw_fd(), &mut t) }?;
    Ok(u64::try_from(t).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_absent_interface_is_down() {
        assert!(!link_up("otc-no-such0"));
    }

    #[cfg(feature = "spi-display")]
    #[test]
    fn opening_missing_hardware_is_a_clear_error() {
        let cfg = otc_ui::sink::spi::SpiConfig {
            spidev: std::path::PathBuf::from("/nonexistent/spidev9.9"),
            ..Default::default()
        };
        let err = open_spi_display(&cfg).unwrap_err().to_string();
        assert!(
            err.contains("/nonexistent/spidev9.9") && err.contains("dtparam=spi=on"),
            "{err}"
        );
    }

    fn watchdog_at(device: std::path::PathBuf) -> WatchdogOptions {
        WatchdogOptions {
            device,
            timeout: std::time::Duration::from_secs(15),
        }
    }

    #[test]
    fn a_watchdog_stand_in_file_opens_and_a_missing_one_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("watchdog");
        std::fs::write(&file, b"").unwrap();
        open_watchdog(&watchdog_at(file)).unwrap();
        let missing = tmp.path().join("no-watchdog");
        let e = open_watchdog(&watchdog_at(missing.clone())).unwrap_err();
        assert!(
            e.to_string().contains(&missing.display().to_string()),
            "{e}"
        );
    }

    /// A character device that is not a watchdog (/dev/null) is refused:
    /// petting it would protect nothing.
    #[test]
    fn a_char_device_that_is_no_watchdog_is_refused() {
        let e = open_watchdog(&watchdog_at("/dev/null".into())).unwrap_err();
        assert!(
            e.to_string().contains("timeout of the watchdog /dev/null"),
            "{e}"
        );
    }
}
