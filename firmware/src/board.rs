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
//! - the Raspberry Pi's extras, each behind a small trait with a real
//!   implementation and a test twin (after OpenSK's style): the status LED
//!   ([`led`]), the Approve/Reject push buttons ([`buttons`]), both on the
//!   GPIO through `rppal` ([`gpio`]), and the screen's backlight
//!   ([`backlight`]: the SPI panel's line, or `/sys/class/backlight`);
//!   [`Board`] is their state machines in one, driven by [`spawn`]'s
//!   thread from the UI's state and [`BoardStatus`] (alerts, lock);
//! - the board's model ([`board_model`]), for the About screen.
//!
//! [`crate::device`] receives what this module opened; it never decides
//! which screen there is.

pub mod backlight;
pub mod buttons;
pub mod gpio;
pub mod led;

use crate::config::{DisplayConfig, DisplayKind};
use crate::error::Result;
use backlight::{Backlight, BacklightDriver};
use buttons::{ButtonReader, Buttons};
use led::{LedDriver, LedInputs, StatusLed};
use otc_ui::{Clock, Display, PushButton, Touch};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Which screen to open, resolved from the command line and `otc.toml`.
#[derive(Clone, Debug)]
pub struct ScreenOptions {
    pub kind: DisplayKind,
    /// `[display]`, with `--emulator-listen` applied.
    pub display: DisplayConfig,
    /// `[touch]`.
    pub touch: otc_ui::source::evdev::EvdevConfig,
}

/// A display, its touch source, its backlight, and the emulator's parts
/// if it is one.
pub struct ScreenParts {
    pub display: Box<dyn Display>,
    pub touch: Option<Box<dyn Touch>>,
    /// The backlight to switch off when idle, if it can be switched.
    pub backlight: Option<Box<dyn Backlight>>,
    /// What the About screen says of the backlight.
    pub backlight_fact: Option<(String, String)>,
    pub emulator: Option<EmulatorParts>,
}

/// The backlight's idle time from `[display] backlight_idle_secs` (0:
/// never).
pub fn backlight_idle(cfg: &DisplayConfig) -> Option<Duration> {
    (cfg.backlight_idle_secs > 0).then(|| Duration::from_secs(cfg.backlight_idle_secs))
}

/// The About screen's line for a backlight that was found (`what`).
fn backlight_fact(cfg: &DisplayConfig, what: &str) -> (String, String) {
    let when = match backlight_idle(cfg) {
        Some(d) => format!("off after {} s idle", d.as_secs()),
        None => "always on (backlight_idle_secs = 0)".into(),
    };
    ("Backlight".into(), format!("{when} ({what})"))
}

/// The framebuffer screen's backlight: the kernel's backlight class under
/// `root`, or none (said once, when it was meant to go off when idle).
fn sysfs_backlight(
    cfg: &DisplayConfig,
    root: &std::path::Path,
) -> (Option<Box<dyn Backlight>>, (String, String)) {
    match backlight::SysfsBacklight::find(root) {
        Some(b) => {
            let fact = backlight_fact(cfg, &b.dir().display().to_string());
            (Some(Box::new(b)), fact)
        }
        None => {
            if backlight_idle(cfg).is_some() {
                eprintln!(
                    "otc-device: no backlight under {}; the screen stays lit (backlight_idle_secs \
                     has nothing to switch)",
                    root.display()
                );
            }
            (
                None,
                (
                    "Backlight".into(),
                    format!("always on (none under {})", root.display()),
                ),
            )
        }
    }
}

/// A framebuffer that does not exist is said as what it means: the kernel
/// drives no screen (issue 24, item 4). Other errors stay as they are.
fn no_display(e: otc_ui::UiError) -> crate::Error {
    match e {
        otc_ui::UiError::DisplayIo { path, source }
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            crate::Error::io(
                format!(
                    "no display: {path} does not exist, so the kernel drives no screen (a panel \
                     that the device tree or config.txt does not describe; see hw/README.md, \
                     \"What makes the screen exist\"); otc-device is tried again, once a minute \
                     at most"
                ),
                source,
            )
        }
        e => e.into(),
    }
}

/// Open the display/touch pair `opts` names, and its backlight.
pub fn open_screen(opts: &ScreenOptions) -> Result<ScreenParts> {
    let cfg = &opts.display;
    let bare = |display: Box<dyn Display>| ScreenParts {
        display,
        touch: None,
        backlight: None,
        backlight_fact: None,
        emulator: None,
    };
    match opts.kind {
        DisplayKind::Memory => {
            let (d, _screen) =
                otc_ui::sink::memory::MemoryDisplay::new(cfg.width, cfg.height);
            Ok(bare(Box::new(d)))
        }
        DisplayKind::Fbdev => {
            let d = otc_ui::sink::fbdev::FbdevSink::open(&cfg.fbdev).map_err(no_display)?;
            let size = d.size();
            let t = otc_ui::source::evdev::EvdevTouch::open(&opts.touch, size)?;
            let (backlight, fact) =
                sysfs_backlight(cfg, std::path::Path::new(backlight::SYSFS_BACKLIGHTS));
            Ok(ScreenParts {
                touch: Some(Box::new(t)),
                backlight,
                backlight_fact: Some(fact),
                ..bare(Box::new(d))
            })
        }
        #[cfg(feature = "spi-display")]
        DisplayKind::Spi => {
            let (d, line) = open_spi_display(&cfg.spi)?;
            let size = d.size();
            let t = otc_ui::source::evdev::EvdevTouch::open(&opts.touch, size)?;
            let (backlight, fact): (Option<Box<dyn Backlight>>, _) = match (line, cfg.spi.backlight_pin) {
                (Some(line), Some(pin)) => (
                    Some(Box::new(SpiBacklight(line))),
                    backlight_fact(cfg, &format!("line {pin}")),
                ),
                _ => (
                    None,
                    ("Backlight".into(), "always on (no backlight_pin)".into()),
                ),
            };
            Ok(ScreenParts {
                touch: Some(Box::new(t)),
                backlight,
                backlight_fact: Some(fact),
                ..bare(Box::new(d))
            })
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
            Ok(ScreenParts {
                touch: Some(Box::new(t)),
                emulator: Some(EmulatorParts { screen, script }),
                ..bare(Box::new(d))
            })
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
/// to otc-ui's SPI sink, which resets and initialises the panel. The
/// backlight line (on from the start) is not the sink's: it is returned,
/// for the idle timer to switch ([`backlight`]).
#[cfg(feature = "spi-display")]
pub fn open_spi_display(
    cfg: &otc_ui::sink::spi::SpiConfig,
) -> std::result::Result<
    (
        otc_ui::sink::spi::SpiSink,
        Option<linux_embedded_hal::gpio_cdev::LineHandle>,
    ),
    otc_ui::UiError,
> {
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
    let mut line = |line: u32, initial: u8, what: &str| {
        chip.get_line(line)
            .and_then(|l| l.request(LineRequestFlags::OUTPUT, initial, what))
            .map_err(|e| io_err(&chip_name, format!("{what} line {line}: {e}")))
    };
    let backlight = match cfg.backlight_pin {
        Some(n) => Some(line(n, 1, "otc-display-backlight")?),
        None => None,
    };
    let mut out = |n: u32, initial: u8, what: &str| -> std::result::Result<CdevPin, UiError> {
        CdevPin::new(line(n, initial, what)?)
            .map_err(|e| io_err(&chip_name, format!("{what} line {n}: {e}")))
    };
    let pins = SpiPins::<CdevPin> {
        dc: out(cfg.dc_pin, 0, "otc-display-dc")?,
        reset: out(cfg.reset_pin, 1, "otc-display-reset")?,
        backlight: None,
    };
    let sink = SpiSink::new(cfg, &name, spi, pins, &mut linux_embedded_hal::Delay)?;
    Ok((sink, backlight))
}

/// The SPI panel's backlight line, driven high to light.
#[cfg(feature = "spi-display")]
struct SpiBacklight(linux_embedded_hal::gpio_cdev::LineHandle);

#[cfg(feature = "spi-display")]
impl Backlight for SpiBacklight {
    fn set(&mut self, on: bool) -> std::io::Result<()> {
        self.0
            .set_value(u8::from(on))
            .map_err(|e| std::io::Error::other(format!("the backlight line: {e}")))
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

/// What the board's lights show that the UI does not know: whether an
/// alert waits to be acknowledged (the device sets it as the alerts
/// change), and whether the device is locked. There is no lock yet:
/// [`set_locked`](Self::set_locked) is the input later work drives.
#[derive(Debug, Default)]
pub struct BoardStatus {
    unacked_alert: AtomicBool,
    locked: AtomicBool,
}

impl BoardStatus {
    pub fn set_unacked_alert(&self, yes: bool) {
        self.unacked_alert.store(yes, Ordering::Relaxed);
    }
    pub fn set_locked(&self, yes: bool) {
        self.locked.store(yes, Ordering::Relaxed);
    }
    pub fn unacked_alert(&self) -> bool {
        self.unacked_alert.load(Ordering::Relaxed)
    }
    pub fn locked(&self) -> bool {
        self.locked.load(Ordering::Relaxed)
    }
}

/// The board's optional pieces, as opened (each absent when not there).
#[derive(Default)]
pub struct Hardware {
    pub led: Option<Box<dyn StatusLed>>,
    pub buttons: Option<Box<dyn Buttons>>,
    pub backlight: Option<Box<dyn Backlight>>,
    /// The backlight's idle time; `None`: never off.
    pub backlight_idle: Option<Duration>,
}

/// One look at what the board's pieces follow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Inputs {
    /// The UI's activity count ([`otc_ui::TraceHandle::activity`]).
    pub activity: u64,
    pub prompt_waiting: bool,
    pub unacked_alert: bool,
    pub locked: bool,
}

/// The LED, buttons and backlight state machines, in one: call
/// [`tick`](Self::tick) every [`poll_every`](Self::poll_every).
pub struct Board {
    led: Option<LedDriver>,
    buttons: Option<ButtonReader>,
    backlight: Option<BacklightDriver>,
}

impl Board {
    pub fn new(hw: Hardware) -> Self {
        Board {
            led: hw.led.map(LedDriver::new),
            buttons: hw.buttons.map(ButtonReader::new),
            backlight: hw
                .backlight
                .map(|b| BacklightDriver::new(b, hw.backlight_idle)),
        }
    }

    /// Nothing to drive.
    pub fn is_empty(&self) -> bool {
        self.led.is_none() && self.buttons.is_none() && self.backlight.is_none()
    }

    /// How often to tick: often enough to debounce the buttons (10 ms), or
    /// to blink the LED (50 ms) when there are none.
    pub fn poll_every(&self) -> Duration {
        if self.buttons.is_some() {
            Duration::from_millis(10)
        } else {
            Duration::from_millis(50)
        }
    }

    /// One look at `now`: the LED and backlight follow `inputs`; returns
    /// the buttons' debounced presses (true) and releases (false), for
    /// the UI ([`otc_ui::UiHandle::push_button`]).
    pub fn tick(&mut self, inputs: &Inputs, now: Duration) -> Vec<(PushButton, bool)> {
        let pushes = match self.buttons.as_mut() {
            Some(b) => b.poll(now),
            None => Vec::new(),
        };
        if let Some(l) = self.led.as_mut() {
            let leds = LedInputs {
                prompt_waiting: inputs.prompt_waiting,
                unacked_alert: inputs.unacked_alert,
                locked: inputs.locked,
            };
            l.update(&leds, now);
        }
        if let Some(b) = self.backlight.as_mut() {
            // A push seen now is activity now, even before the UI counts it.
            let activity = inputs.activity.wrapping_add(pushes.len() as u64);
            b.update(activity, inputs.prompt_waiting, now);
        }
        pushes
    }
}

/// The board's thread: ticks `board` until `stop`, reading the UI's state
/// from `trace` and the rest from `status`, and handing button pushes to
/// `ui`. None when there is nothing to drive.
pub fn spawn(
    mut board: Board,
    ui: otc_ui::UiHandle,
    trace: otc_ui::TraceHandle,
    status: Arc<BoardStatus>,
    clock: Arc<dyn Clock>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<Option<std::thread::JoinHandle<()>>> {
    if board.is_empty() {
        return Ok(None);
    }
    let every = board.poll_every();
    std::thread::Builder::new()
        .name("otc-board".into())
        .spawn(move || {
            while !stop.load(Ordering::Acquire) {
                let inputs = Inputs {
                    activity: trace.activity(),
                    prompt_waiting: trace.prompt_waiting(),
                    unacked_alert: status.unacked_alert(),
                    locked: status.locked(),
                };
                for (button, pressed) in board.tick(&inputs, clock.now()) {
                    ui.push_button(button, pressed);
                }
                std::thread::sleep(every);
            }
        })
        .map(Some)
}

/// Where the device tree names the board, in the order they are read.
pub const MODEL_FILES: [&str; 2] = [
    "/proc/device-tree/model",
    "/sys/firmware/devicetree/base/model",
];

/// The board's model as the device tree names it (e.g. "Raspberry Pi 4
/// Model B Rev 1.5"), from the first of `files` that has one; `None` on a
/// machine without a device tree (a PC, QEMU's x86).
pub fn board_model_from(files: &[&std::path::Path]) -> Option<String> {
    files.iter().find_map(|f| {
        let bytes = std::fs::read(f).ok()?;
        let text = String::from_utf8_lossy(&bytes);
        let model = text.trim_end_matches('\0').trim();
        // At most one line, printable: it is shown on screen.
        let model: String = model
            .chars()
            .take_while(|c| *c != '\0' && *c != '\n')
            .filter(|c| !c.is_control())
            .take(80)
            .collect();
        (!model.is_empty()).then_some(model)
    })
}

/// [`board_model_from`] the kernel's own files ([`MODEL_FILES`]).
pub fn board_model() -> Option<String> {
    let files: Vec<&std::path::Path> = MODEL_FILES.iter().map(std::path::Path::new).collect();
    board_model_from(&files)
}

/// Where the kernel lists network interfaces.
pub const SYS_CLASS_NET: &str = "/sys/class/net";

/// True if interface `name` can carry traffic, by the kernel's own files
/// under [`SYS_CLASS_NET`]: see [`link_up_in`].
pub fn link_up(name: &str) -> bool {
    link_up_in(std::path::Path::new(SYS_CLASS_NET), name)
}

/// True if interface `name` under `root` (a `/sys/class/net`) can carry
/// traffic, as the kernel's operstates documentation
/// (Documentation/networking/operstates.rst) says to read it:
/// - `operstate` "up": usable;
/// - `operstate` "unknown": the driver does not report an operational state
///   (QEMU's cdc_ether `usb-net`, many USB adapters, virtio): the document
///   says to treat it as usable, so `carrier` decides: "1" up, "0" down,
///   unreadable (the kernel refuses to read it while the interface is
///   administratively down) usable;
/// - "down", "lowerlayerdown", "notpresent", "dormant", "testing", or no
///   such interface: down.
pub fn link_up_in(root: &std::path::Path, name: &str) -> bool {
    let dir = root.join(name);
    let Ok(state) = std::fs::read_to_string(dir.join("operstate")) else {
        return false;
    };
    match state.trim() {
        "up" => true,
        "unknown" => match std::fs::read_to_string(dir.join("carrier")) {
            Ok(c) => c.trim() != "0",
            Err(_) => true,
        },
        _ => false,
    }
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

    use backlight::twin::TwinBacklight;
    use buttons::twin::TwinButtons;
    use led::twin::TwinLed;
    use otc_ui::sink::memory::MemoryDisplay;
    use otc_ui::{Decision, FakeClock, Prompt, Ui, UiConfig, ignored};

    /// A real UI on a memory display with a fake clock, and a board of
    /// twins ticked on the same clock; pushes go to the UI as the device's
    /// board thread hands them.
    struct Rig {
        ui: Ui,
        clock: FakeClock,
        board: Board,
        led: TwinLed,
        buttons: TwinButtons,
        light: TwinBacklight,
        status: BoardStatus,
    }

    impl Rig {
        fn new() -> Rig {
            let (display, _screen) = MemoryDisplay::new(800, 480);
            let clock = FakeClock::new();
            let ui = Ui::new(
                Box::new(display),
                None,
                Arc::new(clock.clone()),
                UiConfig::default(),
            )
            .unwrap();
            let (led, buttons, light) = (
                TwinLed::default(),
                TwinButtons::default(),
                TwinBacklight::default(),
            );
            let board = Board::new(Hardware {
                led: Some(Box::new(led.clone())),
                buttons: Some(Box::new(buttons.clone())),
                backlight: Some(Box::new(light.clone())),
                backlight_idle: Some(Duration::from_secs(60)),
            });
            let mut rig = Rig {
                ui,
                clock,
                board,
                led,
                buttons,
                light,
                status: BoardStatus::default(),
            };
            rig.run(Duration::from_millis(10));
            rig
        }

        /// Let `d` pass in 10 ms steps: the board ticks, its pushes go to
        /// the UI, the UI steps.
        fn run(&mut self, d: Duration) {
            let step = Duration::from_millis(10);
            let end = self.clock.now() + d;
            while self.clock.now() < end {
                let trace = self.ui.trace_handle();
                let inputs = Inputs {
                    activity: trace.activity(),
                    prompt_waiting: trace.prompt_waiting(),
                    unacked_alert: self.status.unacked_alert(),
                    locked: self.status.locked(),
                };
                let handle = self.ui.handle();
                for (b, pressed) in self.board.tick(&inputs, self.clock.now()) {
                    handle.push_button(b, pressed);
                }
                self.ui.step(Duration::ZERO).unwrap();
                self.clock.advance(step);
            }
        }

        fn prompt(&mut self) -> otc_ui::PromptTicket {
            let t = self.ui.handle().show_prompt(Prompt::Seal {
                contact: "bob".into(),
                message_bytes: 5,
                cost_bytes: 37,
                pad_left_after: 1000,
                timeout: Duration::from_secs(30),
                client_note: None,
                message: None,
            });
            // The UI takes it at its next step, the board at its next tick.
            self.run(Duration::from_millis(20));
            t
        }

        fn last_push(&self) -> Option<&'static str> {
            let records = self.ui.trace_handle().button_records();
            records.last().expect("a push was recorded").ignored
        }
    }

    /// A bouncing press and release of the Approve button on an armed
    /// prompt approves it; Reject rejects the next.
    #[test]
    fn twin_buttons_answer_an_armed_prompt() {
        let mut r = Rig::new();
        let t = r.prompt();
        r.run(Duration::from_millis(500)); // armed
        for level in [true, false, true] {
            r.buttons.set(level, false);
            r.run(Duration::from_millis(10));
        }
        r.run(Duration::from_millis(50));
        assert_eq!(t.try_decision(), None, "a press alone decides nothing");
        r.buttons.set(false, false);
        r.run(Duration::from_millis(50));
        assert_eq!(t.try_decision(), Some(Decision::Approve));
        assert_eq!(r.last_push(), None);
        assert_eq!(
            r.ui.trace_handle().button_records().len(),
            1,
            "bounces are one push"
        );

        let t = r.prompt();
        r.run(Duration::from_millis(500));
        r.buttons.set(false, true);
        r.run(Duration::from_millis(50));
        r.buttons.set(false, false);
        r.run(Duration::from_millis(50));
        assert_eq!(t.try_decision(), Some(Decision::Reject));
    }

    /// Both ends on one armed prompt: Approve held down while prompt A is
    /// withdrawn and prompt B appears and arms does nothing to B when let
    /// go; a press during B's arm delay does nothing either.
    #[test]
    fn a_twin_button_held_across_a_prompt_change_is_ignored() {
        let mut r = Rig::new();
        let a = r.prompt();
        r.run(Duration::from_millis(500));
        r.buttons.set(true, false);
        r.run(Duration::from_millis(50));
        r.ui.handle().cancel(&a);
        r.run(Duration::from_millis(10));
        assert_eq!(a.try_decision(), Some(Decision::Cancelled));
        let b = r.prompt();
        r.run(Duration::from_millis(500));
        r.buttons.set(false, false);
        r.run(Duration::from_millis(50));
        assert_eq!(b.try_decision(), None, "B approved by a press on A");
        assert_eq!(r.last_push(), Some(ignored::PROMPT_CHANGED));
        r.ui.handle().cancel(&b);

        let c = r.prompt();
        r.buttons.set(true, false);
        r.run(Duration::from_millis(100)); // pressed before the 400 ms arm delay
        r.run(Duration::from_millis(500));
        r.buttons.set(false, false);
        r.run(Duration::from_millis(50));
        assert_eq!(c.try_decision(), None, "a press before arming counted");
        assert_eq!(r.last_push(), Some(ignored::NOT_ARMED));
        // C follows the withdrawn B: a changed request, armed 1.5 s after
        // it appeared (issue 23), so the honest push comes after that.
        r.run(Duration::from_millis(1000));
        // C is still answerable by an honest push.
        r.buttons.set(false, true);
        r.run(Duration::from_millis(50));
        r.buttons.set(false, false);
        r.run(Duration::from_millis(50));
        assert_eq!(c.try_decision(), Some(Decision::Reject));
        assert_eq!(b.try_decision(), Some(Decision::Cancelled));
    }

    /// The LED follows the UI's prompt and the board status: steady, blink
    /// while the prompt waits, fast blink for an alert, off when locked.
    #[test]
    fn the_twin_led_follows_prompts_alerts_and_the_lock() {
        let mut r = Rig::new();
        r.run(Duration::from_secs(1));
        assert_eq!(
            r.board.led.as_ref().unwrap().pattern(),
            Some(led::Pattern::Steady)
        );
        assert!(r.led.lit());
        let t = r.prompt();
        assert_eq!(
            r.board.led.as_ref().unwrap().pattern(),
            Some(led::Pattern::Blink)
        );
        r.ui.handle().cancel(&t);
        r.status.set_unacked_alert(true);
        r.run(Duration::from_millis(20));
        assert_eq!(
            r.board.led.as_ref().unwrap().pattern(),
            Some(led::Pattern::FastBlink)
        );
        r.status.set_locked(true);
        r.run(Duration::from_secs(1));
        assert_eq!(
            r.board.led.as_ref().unwrap().pattern(),
            Some(led::Pattern::Off)
        );
        assert!(!r.led.lit());
        r.status.set_locked(false);
        r.status.set_unacked_alert(false);
        r.run(Duration::from_millis(20));
        assert!(r.led.lit(), "steady again");
    }

    /// The backlight goes dark after the idle time, and a push-button
    /// press or a prompt lights it again.
    #[test]
    fn the_twin_backlight_sleeps_and_wakes() {
        let mut r = Rig::new();
        r.run(Duration::from_secs(59));
        assert!(r.light.on());
        r.run(Duration::from_secs(2));
        assert!(!r.light.on(), "dark after 60 s idle");
        r.buttons.set(false, true);
        r.run(Duration::from_millis(50));
        assert!(r.light.on(), "a press wakes it");
        r.buttons.set(false, false);
        r.run(Duration::from_secs(61));
        assert!(!r.light.on());
        let t = r.prompt();
        assert!(r.light.on(), "a prompt wakes it");
        r.run(Duration::from_secs(25));
        assert!(r.light.on(), "lit while the prompt waits");
        drop(t);
    }

    #[test]
    fn the_board_model_comes_from_the_device_tree() {
        let tmp = tempfile::tempdir().unwrap();
        let proc_model = tmp.path().join("proc-model");
        let sys_model = tmp.path().join("sys-model");
        let files = [proc_model.as_path(), sys_model.as_path()];
        assert_eq!(board_model_from(&files), None, "no device tree");
        std::fs::write(&sys_model, b"Raspberry Pi 3 Model B Plus Rev 1.3\0").unwrap();
        assert_eq!(
            board_model_from(&files).as_deref(),
            Some("Raspberry Pi 3 Model B Plus Rev 1.3")
        );
        std::fs::write(&proc_model, b"Raspberry Pi 4 Model B Rev 1.5\0").unwrap();
        assert_eq!(
            board_model_from(&files).as_deref(),
            Some("Raspberry Pi 4 Model B Rev 1.5"),
            "/proc/device-tree first"
        );
        std::fs::write(&proc_model, b"\0").unwrap();
        assert_eq!(
            board_model_from(&files).as_deref(),
            Some("Raspberry Pi 3 Model B Plus Rev 1.3"),
            "an empty model is none"
        );
        std::fs::write(&proc_model, b"Evil\x1b[2J\nsecond line\0").unwrap();
        assert_eq!(board_model_from(&files).as_deref(), Some("Evil[2J"));
    }

    /// A framebuffer screen with no kernel backlight runs without one and
    /// says which directory had none; one with a backlight uses it.
    #[test]
    fn the_fbdev_backlight_is_found_or_said_missing() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = DisplayConfig::default();
        let (none, fact) = sysfs_backlight(&cfg, tmp.path());
        assert!(none.is_none());
        assert_eq!(
            fact.1,
            format!("always on (none under {})", tmp.path().display())
        );
        std::fs::create_dir(tmp.path().join("rpi_backlight")).unwrap();
        std::fs::write(tmp.path().join("rpi_backlight/bl_power"), "0\n").unwrap();
        let (some, fact) = sysfs_backlight(&cfg, tmp.path());
        assert!(some.is_some());
        assert!(fact.1.starts_with("off after 120 s idle ("), "{fact:?}");
    }

    /// No framebuffer: the error says there is no display, and where to
    /// look (issue 24, item 4).
    #[test]
    fn a_missing_framebuffer_is_said_as_no_display() {
        let mut display = DisplayConfig::default();
        display.fbdev.device = "/nonexistent/fb9".into();
        let opts = ScreenOptions {
            kind: DisplayKind::Fbdev,
            display,
            touch: Default::default(),
        };
        let err = match open_screen(&opts) {
            Ok(_) => panic!("opened a framebuffer that does not exist"),
            Err(e) => e.to_string(),
        };
        assert!(
            err.starts_with("no display: /nonexistent/fb9 does not exist")
                && err.contains("hw/README.md"),
            "{err}"
        );
    }

    #[test]
    fn an_absent_interface_is_down() {
        assert!(!link_up("otc-no-such0"));
    }

    /// A simulated /sys/class/net entry: `operstate`, and `carrier` if given.
    fn sys_net(root: &std::path::Path, name: &str, operstate: &str, carrier: Option<&str>) {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("operstate"), format!("{operstate}\n")).unwrap();
        if let Some(c) = carrier {
            std::fs::write(dir.join("carrier"), format!("{c}\n")).unwrap();
        }
    }

    /// The kernel's operstates document: "unknown" (a driver that does not
    /// report it, such as QEMU's cdc_ether usb-net) is usable and `carrier`
    /// decides; only a link that is really down is down (issue 24, item 3).
    #[test]
    fn link_state_follows_the_kernels_operstates_document() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        sys_net(root, "up0", "up", Some("1"));
        sys_net(root, "cdc0", "unknown", Some("1"));
        sys_net(root, "nocable0", "unknown", Some("0"));
        sys_net(root, "nocarrierfile0", "unknown", None);
        sys_net(root, "down0", "down", Some("0"));
        sys_net(root, "lower0", "lowerlayerdown", None);
        sys_net(root, "dormant0", "dormant", Some("1"));
        sys_net(root, "gone0", "notpresent", None);
        let seen: Vec<(&str, bool)> = [
            "up0",
            "cdc0",
            "nocable0",
            "nocarrierfile0",
            "down0",
            "lower0",
            "dormant0",
            "gone0",
            "absent0",
        ]
        .into_iter()
        .map(|n| (n, link_up_in(root, n)))
        .collect();
        assert_eq!(
            seen,
            vec![
                ("up0", true),
                ("cdc0", true),
                ("nocable0", false),
                ("nocarrierfile0", true),
                ("down0", false),
                ("lower0", false),
                ("dormant0", false),
                ("gone0", false),
                ("absent0", false),
            ]
        );
    }

    #[cfg(feature = "spi-display")]
    #[test]
    fn opening_missing_hardware_is_a_clear_error() {
        let cfg = otc_ui::sink::spi::SpiConfig {
            spidev: std::path::PathBuf::from("/nonexistent/spidev9.9"),
            ..Default::default()
        };
        let err = match open_spi_display(&cfg) {
            Ok(_) => panic!("opened an SPI display that does not exist"),
            Err(e) => e.to_string(),
        };
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
