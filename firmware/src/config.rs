//! `DIR/otc.toml`: the device's settings. Every key is optional; the
//! defaults below are what a Raspberry Pi with a DSI/HDMI touchscreen and
//! the laptop on `eth0` needs. Flags of `otc-device run` override the file.
//!
//! ```toml
//! owner = "Alice"                 # set once by `otc-device init --owner`
//!
//! [rpc]
//! interface = "eth0"              # serve this interface only (SO_BINDTODEVICE)
//! # listen = "127.0.0.1:9051"     # development: loopback only
//! port = 9051
//! prompt_timeout_seconds = 30
//! # Host names the endpoint answers to, besides IP addresses (which it
//! # always does). Requests with any other `Host` get `bad_host`: this is
//! # what stops a web page from reaching the device by DNS rebinding. Names
//! # only, no port; e.g. ["otc.local"] if the laptop resolves that name.
//! allowed_hosts = []
//!
//! [limits]
//! max_message_bytes = 65536
//! max_body_bytes = 131072
//! max_in_flight = 8               # requests handled at once (also read as max_connections)
//! lockout_failures = 5            # failed opens from one contact ...
//! lockout_seconds = 300           # ... lock it out this long
//! refused_per_minute = 10         # replays/failed opens per contact, then rate_limited
//! max_open_connections = 32       # connections open at once (src/front.rs)
//! max_header_bytes = 8192         # request line + headers
//! header_timeout_ms = 10000       # headers must arrive within this ...
//! body_timeout_ms = 30000         # ... and the body within this after them
//!
//! [display]
//! kind = "fbdev"                  # fbdev | spi | memory | emulator
//! emulator_listen = "127.0.0.1:9080"
//! fbdev = { device = "/dev/fb0", rotation = "0" }
//! # spi = { panel = "ili9486", ... }   (builds with feature spi-display)
//! backlight_idle_secs = 120       # backlight off after this long untouched; 0 = never
//!
//! [touch]
//! # device = "/dev/input/event0", rotation = "0", swap_xy = false, ...
//!
//! # Optional Raspberry Pi extras, by BCM GPIO number (0 to 27); see hw/.
//! # Without the section, the piece is not used.
//! [status_led]
//! # pin = 17                      # GPIO → resistor → LED → ground
//!
//! [buttons]                       # for panels without touch; both pins
//! # approve_pin = 5               # button between the pin and ground
//! # reject_pin = 6
//! ```
//!
//! Unknown keys are an error, so a typo never silently falls back to a
//! default.

use crate::error::{Error, Result};
use crate::pad::durable::replace_durably;
use crate::pad::vfs::RealFs;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::Path;

/// File name inside the data directory.
pub const FILE: &str = "otc.toml";

/// The whole file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The owner's name, shown on the home screen and in `/v1/status`.
    pub owner: Option<String>,
    pub rpc: RpcConfig,
    pub limits: Limits,
    pub display: DisplayConfig,
    pub touch: otc_ui::source::evdev::EvdevConfig,
    /// `[status_led]`: the status LED, if there is one.
    pub status_led: Option<StatusLedConfig>,
    /// `[buttons]`: the Approve/Reject push buttons, if there are any.
    pub buttons: Option<ButtonsConfig>,
    /// `[lock]`: the passphrase's limits (issue 18).
    pub lock: LockConfig,
}

/// `[limits]`: what one request may ask for, and what the laptop may hold
/// open (the front layer's, see [`crate::front`]). Read by the endpoint
/// ([`crate::rpc`]) and the front layer; it lives here so that the
/// settings depend on no part of the endpoint.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest message to seal, in bytes.
    pub max_message_bytes: usize,
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// Requests in flight (handled at once, a prompt waiting counts);
    /// more get `overloaded`. The file's key is still `max_connections`,
    /// its name before it said what it counts; both are read.
    #[serde(alias = "max_connections")]
    pub max_in_flight: usize,
    /// Opens from one contact that failed after the owner approved them,
    /// before it is locked out. Packages refused before the prompt
    /// (forgeries, replays, junk) never count: they cannot block genuine
    /// mail.
    pub lockout_failures: u32,
    /// How long a lockout lasts, in seconds.
    pub lockout_seconds: u64,
    /// Refused packages (replays, forgeries, junk) from one contact per
    /// minute that are answered and audited one by one; past it, refused
    /// packages from that contact get `rate_limited` until the minute is
    /// over (a package that verifies still reaches the prompt), and the
    /// audit log sums them up in one `repeated` entry.
    pub refused_per_minute: u32,
    /// Connections open at once (one thread each); more get `overloaded`
    /// on the raw socket.
    pub max_open_connections: usize,
    /// Largest request line plus headers, in bytes.
    pub max_header_bytes: usize,
    /// A request's headers must arrive within this, in milliseconds.
    pub header_timeout_ms: u64,
    /// A request's body must arrive within this after its headers, in
    /// milliseconds.
    pub body_timeout_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 64 * 1024,
            // base64 of the largest message (4/3) plus JSON framing.
            max_body_bytes: 128 * 1024,
            max_in_flight: 8,
            lockout_failures: 5,
            lockout_seconds: 300,
            refused_per_minute: 10,
            max_open_connections: 32,
            max_header_bytes: 8 * 1024,
            header_timeout_ms: 10_000,
            body_timeout_ms: 30_000,
        }
    }
}

/// `[lock]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LockConfig {
    /// Wrong passphrases in a row before the device destroys its key file
    /// (1 to 100; default 10).
    pub max_failures: u32,
}

impl Default for LockConfig {
    fn default() -> Self {
        LockConfig {
            max_failures: crate::pad::vault::DEFAULT_MAX_FAILURES,
        }
    }
}

/// The highest BCM GPIO number on the Pi's 40-pin header.
pub const MAX_HEADER_GPIO: u8 = 27;

/// `[status_led]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusLedConfig {
    /// BCM GPIO number, driven high to light the LED.
    pub pin: u8,
}

/// `[buttons]`: both are needed.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ButtonsConfig {
    /// BCM GPIO number of the Approve button (to ground; pulled up).
    pub approve_pin: u8,
    /// BCM GPIO number of the Reject button (to ground; pulled up).
    pub reject_pin: u8,
}

/// `[rpc]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RpcConfig {
    pub interface: Option<String>,
    pub listen: Option<SocketAddr>,
    pub port: u16,
    pub prompt_timeout_seconds: u64,
    /// Names (besides IP literals) accepted in `Host`; see the module doc.
    pub allowed_hosts: Vec<String>,
}

impl Default for RpcConfig {
    fn default() -> Self {
        RpcConfig {
            interface: None,
            listen: None,
            port: 9051,
            prompt_timeout_seconds: 30,
            allowed_hosts: Vec::new(),
        }
    }
}

/// Which screen to drive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DisplayKind {
    /// Linux framebuffer (/dev/fb0): DSI/HDMI screens, QEMU's virtio-gpu.
    #[default]
    Fbdev,
    /// SPI TFT (ILI9486/ILI9341); builds with feature `spi-display`.
    Spi,
    /// No screen: frames stay in memory (development; nobody can approve).
    Memory,
    /// The emulator page on loopback; builds with feature `emulator`.
    Emulator,
}

/// The `[display]` sizes taken (issue 23): from the smallest SPI panel's
/// short side to a 4K panel's long side. Outside them the UI cannot lay
/// the screens out (and a huge size asked for gigabytes of frame buffer).
pub const DISPLAY_WIDTH: std::ops::RangeInclusive<u32> = 160..=3840;
pub const DISPLAY_HEIGHT: std::ops::RangeInclusive<u32> = 120..=2160;

/// `[display]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DisplayConfig {
    pub kind: DisplayKind,
    pub emulator_listen: SocketAddr,
    /// Logical size for `memory` and `emulator`.
    pub width: u32,
    pub height: u32,
    pub fbdev: otc_ui::sink::fbdev::FbdevConfig,
    #[cfg(feature = "spi-display")]
    pub spi: otc_ui::sink::spi::SpiConfig,
    #[cfg(not(feature = "spi-display"))]
    pub spi: Option<toml::Value>,
    /// Seconds without a touch, a push-button press or a prompt before the
    /// backlight goes off; 0: never. Default 120.
    pub backlight_idle_secs: u64,
}

impl Default for DisplayConfig {
    fn default() -> Self {
        DisplayConfig {
            kind: DisplayKind::default(),
            emulator_listen: SocketAddr::from(([127, 0, 0, 1], 9080)),
            width: 800,
            height: 480,
            fbdev: Default::default(),
            spi: Default::default(),
            backlight_idle_secs: 120,
        }
    }
}

impl Config {
    /// Read `DIR/otc.toml`; a missing file means all defaults.
    pub fn load(dir: &Path) -> Result<Config> {
        let path = dir.join(FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(e) => return Err(Error::io(format!("cannot read {}", path.display()), e)),
        };
        let mut cfg: Config = toml::from_str(&text).map_err(|e| Error::Config {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        cfg.check_pins().map_err(|reason| Error::Config {
            path: path.clone(),
            reason,
        })?;
        for (key, value, range) in [
            ("width", cfg.display.width, DISPLAY_WIDTH),
            ("height", cfg.display.height, DISPLAY_HEIGHT),
        ] {
            if !range.contains(&value) {
                return Err(Error::Config {
                    path: path.clone(),
                    reason: format!(
                        "[display] {key} = {value}: give {} to {} pixels",
                        range.start(),
                        range.end()
                    ),
                });
            }
        }
        if !(1..=100).contains(&cfg.lock.max_failures) {
            return Err(Error::Config {
                path: path.clone(),
                reason: format!(
                    "[lock] max_failures = {}: give 1 to 100 wrong passphrases before the key \
                     is destroyed",
                    cfg.lock.max_failures
                ),
            });
        }
        cfg.rpc.allowed_hosts =
            crate::front::allowed_names(&cfg.rpc.allowed_hosts).map_err(|reason| {
                Error::Config {
                    path: path.clone(),
                    reason,
                }
            })?;
        Ok(cfg)
    }
}

impl Config {
    /// The GPIO pins `[status_led]`, `[buttons]` and (with an SPI display)
    /// `[display.spi]` name: each on the header, none used twice.
    fn check_pins(&self) -> std::result::Result<(), String> {
        let mut used: Vec<(String, u32)> = Vec::new();
        if let Some(l) = &self.status_led {
            used.push(("[status_led] pin".into(), u32::from(l.pin)));
        }
        if let Some(b) = &self.buttons {
            used.push(("[buttons] approve_pin".into(), u32::from(b.approve_pin)));
            used.push(("[buttons] reject_pin".into(), u32::from(b.reject_pin)));
        }
        for (name, pin) in &used {
            if *pin > u32::from(MAX_HEADER_GPIO) {
                return Err(format!(
                    "{name} = {pin}: the 40-pin header has BCM GPIO 0 to {MAX_HEADER_GPIO}"
                ));
            }
        }
        #[cfg(feature = "spi-display")]
        if self.display.kind == DisplayKind::Spi && !used.is_empty() {
            let spi = &self.display.spi;
            used.push(("[display.spi] dc_pin".into(), spi.dc_pin));
            used.push(("[display.spi] reset_pin".into(), spi.reset_pin));
            if let Some(b) = spi.backlight_pin {
                used.push(("[display.spi] backlight_pin".into(), b));
            }
        }
        for (i, (a, pa)) in used.iter().enumerate() {
            if let Some((b, _)) = used[i + 1..].iter().find(|(_, pb)| pb == pa) {
                return Err(format!(
                    "{a} and {b} are both GPIO {pa}: each needs its own pin"
                ));
            }
        }
        Ok(())
    }
}

/// Write the owner's name into `DIR/otc.toml`, once. The file keeps any
/// other settings; a second `init` is refused.
pub fn set_owner(dir: &Path, owner: &str) -> Result<()> {
    let owner = owner.trim();
    if owner.is_empty() || owner.chars().count() > 64 || owner.chars().any(char::is_control) {
        return Err(Error::Config {
            path: dir.join(FILE),
            reason: "the owner's name must be 1 to 64 printable characters".into(),
        });
    }
    let existing = Config::load(dir)?;
    if let Some(o) = existing.owner {
        return Err(Error::OwnerAlreadySet(o));
    }
    let path = dir.join(FILE);
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    let quoted = toml::Value::String(owner.to_string()).to_string();
    let text = format!(
        "# One Time Chat pad device settings; see `otc-device run --help`.\nowner = {quoted}\n{old}"
    );
    replace_durably(&RealFs, &path, text.as_bytes())
        .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_in_flight_are_read_under_the_new_key_and_the_old_one() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(Config::load(d.path()).unwrap().limits.max_in_flight, 8);
        for key in ["max_in_flight", "max_connections"] {
            std::fs::write(d.path().join(FILE), format!("[limits]\n{key} = 3\n")).unwrap();
            assert_eq!(
                Config::load(d.path()).unwrap().limits.max_in_flight,
                3,
                "{key}"
            );
        }
    }

    #[test]
    fn the_failure_limit_is_read_and_kept_in_range() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(Config::load(d.path()).unwrap().lock.max_failures, 10);
        std::fs::write(d.path().join(FILE), "[lock]\nmax_failures = 5\n").unwrap();
        assert_eq!(Config::load(d.path()).unwrap().lock.max_failures, 5);
        for bad in ["0", "101"] {
            std::fs::write(
                d.path().join(FILE),
                format!("[lock]\nmax_failures = {bad}\n"),
            )
            .unwrap();
            let e = Config::load(d.path()).unwrap_err();
            assert!(e.to_string().contains("max_failures"), "{e}");
        }
    }

    /// Issue 23 part 8: `[display] width = 100000, height = 100000` made
    /// the UI thread panic (and, unchecked, ask for gigabytes); a size
    /// outside what a panel can be is refused at start with the key's name.
    #[test]
    fn a_display_size_out_of_range_is_refused_with_its_key() {
        let d = tempfile::tempdir().unwrap();
        for (w, h, key) in [
            (100_000, 480, "width"),
            (800, 100_000, "height"),
            (0, 480, "width"),
            (800, 10, "height"),
        ] {
            std::fs::write(
                d.path().join(FILE),
                format!("[display]\nwidth = {w}\nheight = {h}\n"),
            )
            .unwrap();
            let e = Config::load(d.path()).unwrap_err().to_string();
            assert!(e.contains(&format!("[display] {key}")), "{w}x{h}: {e}");
        }
        for (w, h) in [(800, 480), (480, 320), (1920, 1080)] {
            std::fs::write(
                d.path().join(FILE),
                format!("[display]\nwidth = {w}\nheight = {h}\n"),
            )
            .unwrap();
            let c = Config::load(d.path()).unwrap();
            assert_eq!((c.display.width, c.display.height), (w, h));
        }
    }

    #[test]
    fn defaults_and_unknown_keys() {
        let d = tempfile::tempdir().unwrap();
        let c = Config::load(d.path()).unwrap();
        assert_eq!(c.rpc.port, 9051);
        assert_eq!(c.limits.max_message_bytes, 65536);
        std::fs::write(d.path().join(FILE), "[rpc]\nprot = 1\n").unwrap();
        let e = Config::load(d.path()).unwrap_err();
        assert!(e.to_string().contains("prot"), "{e}");
        assert!(c.rpc.allowed_hosts.is_empty());
    }

    #[test]
    fn allowed_hosts_are_names() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join(FILE),
            "[rpc]\nallowed_hosts = [\"OTC.local.\"]\n",
        )
        .unwrap();
        let c = Config::load(d.path()).unwrap();
        assert_eq!(c.rpc.allowed_hosts, ["otc.local"]);
        std::fs::write(
            d.path().join(FILE),
            "[rpc]\nallowed_hosts = [\"otc.local:9051\"]\n",
        )
        .unwrap();
        let e = Config::load(d.path()).unwrap_err();
        assert!(e.to_string().contains("allowed_hosts"), "{e}");
    }

    /// The keys `hw/` documents: `[status_led] pin`, `[buttons]
    /// approve_pin`/`reject_pin`, `[display] backlight_idle_secs`.
    #[test]
    fn board_pins_and_backlight_idle() {
        let d = tempfile::tempdir().unwrap();
        let c = Config::load(d.path()).unwrap();
        assert_eq!((c.status_led, c.buttons), (None, None));
        assert_eq!(c.display.backlight_idle_secs, 120);
        std::fs::write(
            d.path().join(FILE),
            "[display]\nbacklight_idle_secs = 0\n[status_led]\npin = 17\n\
             [buttons]\napprove_pin = 5\nreject_pin = 6\n",
        )
        .unwrap();
        let c = Config::load(d.path()).unwrap();
        assert_eq!(c.status_led, Some(StatusLedConfig { pin: 17 }));
        assert_eq!(
            c.buttons,
            Some(ButtonsConfig {
                approve_pin: 5,
                reject_pin: 6
            })
        );
        assert_eq!(c.display.backlight_idle_secs, 0);
        for (text, says) in [
            ("[status_led]\npin = 28\n", "[status_led] pin = 28"),
            ("[buttons]\napprove_pin = 5\n", "reject_pin"),
            (
                "[buttons]\napprove_pin = 5\nreject_pin = 5\n",
                "[buttons] approve_pin and [buttons] reject_pin are both GPIO 5",
            ),
            (
                "[status_led]\npin = 6\n[buttons]\napprove_pin = 5\nreject_pin = 6\n",
                "[status_led] pin and [buttons] reject_pin are both GPIO 6",
            ),
            ("[status_led]\npin = 17\nactive_low = true\n", "active_low"),
        ] {
            std::fs::write(d.path().join(FILE), text).unwrap();
            let e = Config::load(d.path()).unwrap_err().to_string();
            assert!(e.contains(says), "{text:?}: {e}");
        }
    }

    /// With an SPI display, the LED and buttons cannot take its lines.
    #[cfg(feature = "spi-display")]
    #[test]
    fn board_pins_do_not_clash_with_the_spi_display() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join(FILE),
            "[display]\nkind = \"spi\"\nspi = { backlight_pin = 18 }\n[status_led]\npin = 18\n",
        )
        .unwrap();
        let e = Config::load(d.path()).unwrap_err().to_string();
        assert!(
            e.contains("[status_led] pin and [display.spi] backlight_pin are both GPIO 18"),
            "{e}"
        );
    }

    #[test]
    fn owner_is_set_once() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(FILE), "[rpc]\nport = 9999\n").unwrap();
        set_owner(d.path(), "Alice \"A\"").unwrap();
        let c = Config::load(d.path()).unwrap();
        assert_eq!(c.owner.as_deref(), Some("Alice \"A\""));
        assert_eq!(c.rpc.port, 9999, "other settings are kept");
        assert!(matches!(
            set_owner(d.path(), "Mallory"),
            Err(Error::OwnerAlreadySet(_))
        ));
        assert!(set_owner(tempfile::tempdir().unwrap().path(), " ").is_err());
    }
}
