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
//! The SPI sink still opens its GPIO chip (`/dev/gpiochip0`) itself inside
//! otc-ui; handing it pins opened here, through the platform, is the next
//! step for this module (it needs an otc-ui API that takes opened pins).
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
            let d = otc_ui::sink::spi::SpiSink::open(&cfg.spi)?;
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
}
