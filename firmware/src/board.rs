//! Board support: what the appliance runs on, as opposed to what it does.
//!
//! Today this is:
//! - the choice and opening of the screen: which display sink and touch
//!   source `otc-device run` drives ([`open_screen`]: the Linux framebuffer
//!   with evdev touch, the SPI TFT, memory only, or the emulator page);
//! - link detection ([`link_up`]: the kernel's operstate of the Ethernet
//!   interface), which the rest of the device reads only through the
//!   platform seam (`RealPlatform::link_up` calls it; tests use the twin).
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
}
