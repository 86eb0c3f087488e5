//! SPI TFT sink (feature `spi-display`): drives a small ILI9486 or ILI9341
//! panel directly over `/dev/spidev*` with `mipidsi`.
//!
//! The sink opens nothing itself: the board code (otc-device's
//! `board::open_spi_display`) opens the spidev node and the GPIO character
//! device's lines (data/command, reset, optional backlight) and hands them
//! to [`SpiSink::new`] as an `embedded-hal` SPI device and [`SpiPins`].
//! The configuration ([`SpiConfig`], `[display.spi]`) still names them all.
//!
//! Supported panels:
//!
//! | `panel`   | native size | `bus` default       | colour on the wire |
//! |-----------|-------------|---------------------|--------------------|
//! | `ili9486` | 320x480     | `waveshare-16bit`   | RGB565 (16-bit words) |
//! | `ili9341` | 240x320     | `spi`               | RGB565 (bytes)     |
//!
//! `bus = "spi"` is a plain 4-wire SPI controller (8-bit words, D/C line);
//! an ILI9486 on such a bus only accepts 18-bit colour, so frames go out as
//! RGB666. `bus = "waveshare-16bit"` is the Waveshare 3.5" RPi LCD (A)
//! design, where the ILI9486 sits behind shift registers on a 16-bit parallel
//! bus: every command and parameter byte goes out as a 16-bit word
//! (`0x00, byte`) and pixels as big-endian RGB565 words.
//!
//! The panels are portrait; the default `rotation = "90"` turns them to
//! landscape (480x320, 320x240). Rotation is done by the controller
//! (MADCTL), so a dirty rectangle in UI coordinates is sent as one address
//! window, row by row, with no software rotation.
//!
//! # Wiring (Raspberry Pi 40-pin header, BCM numbers)
//!
//! Waveshare 3.5" RPi LCD (A), ILI9486 (plugs onto pins 1-26):
//!
//! | signal        | header pin | BCM     | config            |
//! |---------------|-----------:|---------|-------------------|
//! | LCD_SCK       | 23         | GPIO11 (SPI0 SCLK) | `spidev = "/dev/spidev0.0"` |
//! | LCD_SI (MOSI) | 19         | GPIO10 (SPI0 MOSI) |                   |
//! | LCD_CS        | 24         | GPIO8 (SPI0 CE0)   |                   |
//! | LCD_RS (D/C)  | 18         | GPIO24  | `dc_pin = 24`     |
//! | RST           | 22         | GPIO25  | `reset_pin = 25`  |
//! | TP_CS (touch) | 26         | GPIO7 (SPI0 CE1)   | kernel `ads7846` driver |
//! | TP_IRQ        | 11         | GPIO17  | kernel `ads7846` driver |
//! | backlight     | —          | always on | `backlight_pin` unset |
//!
//! Generic ILI9341 2.8"/3.2" SPI module (the common red board):
//! VCC → 3.3 V (pin 1), GND → pin 6, CS → CE0 (pin 24), RESET → GPIO25
//! (pin 22), DC → GPIO24 (pin 18), SDI/MOSI → pin 19, SCK → pin 23,
//! LED → GPIO18 (pin 12, `backlight_pin = 18`) or straight to 3.3 V,
//! SDO/MISO → pin 21 (unused by this sink).
//!
//! `/boot/firmware/config.txt` needs `dtparam=spi=on` and must *not* load an
//! fbtft overlay for the panel (e.g. `waveshare35a`), which would take the
//! SPI chip select away from spidev. The resistive touch controller
//! (XPT2046) on CE1 is read by the kernel, e.g.
//! `dtoverlay=ads7846,cs=1,penirq=17,penirq_pull=2,speed=1000000,xohms=150`,
//! and reaches the UI through the evdev source (`source::evdev`) with a
//! `calibration` and the same `rotation`. On a Raspberry Pi 5 the header
//! GPIOs are on `gpiochip4` (older kernels) or `gpiochip0` (newer ones):
//! check with `gpioinfo`.
//!
//! # What was and was not verified
//!
//! Verified here (no SPI hardware on the build machine; `cargo test -p
//! otc-ui --features spi-display`): configuration parsing and defaults; the
//! dirty-rectangle → address-window clipping; RGB565 → RGB565/RGB666
//! conversion; the exact bytes and D/C levels both bus encodings put on the
//! wire, including chunking to the spidev transfer limit; and, through
//! `mipidsi` with a recording fake SPI device and pins, the full init
//! sequence and that a present of a dirty rectangle sends CASET/PASET with
//! that window followed by RAMWR and the window's pixels, for all three
//! panel/bus combinations.
//!
//! Not verified: anything on a real panel. In particular the Waveshare
//! 16-bit framing, the colour order (`bgr`) and inversion defaults, which of
//! `"90"`/`"270"` is "upright" for a given mounting, the SPI clock the
//! panels tolerate (`speed_hz`), and that `mipidsi`'s short ILI948x init
//! sequence (no gamma/power tables) gives a good picture on these modules.

use crate::display::{Display, Frame, Rect, Rotation};
use crate::error::UiError;
use embedded_graphics_core::pixelcolor::{Rgb565, Rgb666};
use embedded_hal::digital::OutputPin;
use embedded_hal::spi::SpiDevice;
use mipidsi::interface::{Interface, InterfaceKind, InterfacePixelFormat};
use mipidsi::models::{ILI9341Rgb565, ILI9486Rgb565, ILI9486Rgb666, Model};
use mipidsi::options::{ColorInversion, ColorOrder, Orientation};
use serde::Deserialize;
use std::path::PathBuf;

/// Which controller the panel has.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PanelModel {
    /// ILI9486, 320x480 (Waveshare 3.5" RPi LCD (A)).
    #[default]
    Ili9486,
    /// ILI9341, 240x320.
    Ili9341,
}

/// How bytes reach the controller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BusKind {
    /// 4-wire SPI: 8-bit words, D/C line.
    Spi,
    /// Waveshare's SPI-to-16-bit-parallel shift registers: every byte is
    /// sent as a 16-bit word.
    #[serde(rename = "waveshare-16bit")]
    Waveshare16bit,
}

/// Configuration of the SPI TFT sink (the `[display.spi]` table of
/// `otc.toml`). Defaults fit a Waveshare 3.5" (A) in landscape.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpiConfig {
    pub panel: PanelModel,
    /// Bus encoding; default `waveshare-16bit` for `ili9486`, `spi` for `ili9341`.
    pub bus: Option<BusKind>,
    /// spidev node of the panel's chip select. Default `/dev/spidev0.0`.
    pub spidev: PathBuf,
    /// SPI clock in Hz. Default 16 MHz.
    pub speed_hz: u32,
    /// GPIO character device carrying the pins. Default `/dev/gpiochip0`.
    pub gpiochip: PathBuf,
    /// Data/command line (line offset on `gpiochip`; BCM number on a Pi). Default 24.
    pub dc_pin: u32,
    /// Reset line, active low. Default 25.
    pub reset_pin: u32,
    /// Backlight enable line, driven high; unset when the backlight is hard-wired.
    pub backlight_pin: Option<u32>,
    /// Rotation of the panel relative to the UI, clockwise. Default `"90"`
    /// (landscape).
    pub rotation: Rotation,
    /// Panel wants blue first. Default true (both module types listed above).
    pub bgr: bool,
    /// Invert colours (some IPS variants need it). Default false.
    pub invert_colors: bool,
}

impl Default for SpiConfig {
    fn default() -> Self {
        SpiConfig {
            panel: PanelModel::Ili9486,
            bus: None,
            spidev: PathBuf::from("/dev/spidev0.0"),
            speed_hz: 16_000_000,
            gpiochip: PathBuf::from("/dev/gpiochip0"),
            dc_pin: 24,
            reset_pin: 25,
            backlight_pin: None,
            rotation: Rotation::R90,
            bgr: true,
            invert_colors: false,
        }
    }
}

impl SpiConfig {
    /// The bus in effect (explicit, or the panel's default).
    pub fn bus_kind(&self) -> BusKind {
        self.bus.unwrap_or(match self.panel {
            PanelModel::Ili9486 => BusKind::Waveshare16bit,
            PanelModel::Ili9341 => BusKind::Spi,
        })
    }

    /// Native (portrait) panel size.
    pub fn native_size(&self) -> (u32, u32) {
        match self.panel {
            PanelModel::Ili9486 => (320, 480),
            PanelModel::Ili9341 => (240, 320),
        }
    }

    /// Logical size the UI renders at.
    pub fn logical_size(&self) -> (u32, u32) {
        let (w, h) = self.native_size();
        match self.rotation {
            Rotation::R0 | Rotation::R180 => (w, h),
            Rotation::R90 | Rotation::R270 => (h, w),
        }
    }
}

/// Clips `dirty` to a `size` screen and returns the inclusive address window
/// `(sx, sy, ex, ey)`, or `None` when nothing is left.
pub fn dirty_window(dirty: Rect, size: (u32, u32)) -> Option<(u16, u16, u16, u16)> {
    let (w, h) = (
        size.0.min(u32::from(u16::MAX)),
        size.1.min(u32::from(u16::MAX)),
    );
    let x0 = dirty.x.min(w);
    let y0 = dirty.y.min(h);
    let x1 = dirty.x.saturating_add(dirty.w).min(w);
    let y1 = dirty.y.saturating_add(dirty.h).min(h);
    if x0 >= x1 || y0 >= y1 {
        return None;
    }
    // All four fit in u16 because w, h do.
    Some((x0 as u16, y0 as u16, (x1 - 1) as u16, (y1 - 1) as u16))
}

/// Splits an RGB565 pixel into its 5/6/5-bit channels.
#[inline]
fn channels(px: u16) -> (u8, u8, u8) {
    (
        (px >> 11) as u8 & 0x1f,
        (px >> 5) as u8 & 0x3f,
        px as u8 & 0x1f,
    )
}

/// RGB565 to 6-bit-per-channel colour, replicating the top bits so that
/// full scale stays full scale.
#[inline]
pub fn rgb565_to_rgb666(px: u16) -> (u8, u8, u8) {
    let (r, g, b) = channels(px);
    ((r << 1) | (r >> 4), g, (b << 1) | (b >> 4))
}

/// A controller colour type the frame's RGB565 converts to.
trait FromRgb565: Sized {
    fn from_rgb565(px: u16) -> Self;
}

impl FromRgb565 for Rgb565 {
    fn from_rgb565(px: u16) -> Self {
        let (r, g, b) = channels(px);
        Rgb565::new(r, g, b)
    }
}

impl FromRgb565 for Rgb666 {
    fn from_rgb565(px: u16) -> Self {
        let (r, g, b) = rgb565_to_rgb666(px);
        Rgb666::new(r, g, b)
    }
}

/// Largest single spidev transfer (the kernel's default `bufsiz`).
const MAX_TRANSFER: usize = 4096;

fn bus_err<E: std::fmt::Debug>(what: &str, e: E) -> String {
    format!("{what}: {e:?}")
}

/// 4-wire SPI: D/C low for the command byte, high for parameters and pixels.
struct FourWire<SPI, DC> {
    spi: SPI,
    dc: DC,
    buf: Vec<u8>,
}

impl<SPI: SpiDevice, DC: OutputPin> FourWire<SPI, DC> {
    fn new(spi: SPI, dc: DC) -> Self {
        FourWire {
            spi,
            dc,
            buf: Vec::with_capacity(MAX_TRANSFER),
        }
    }

    fn flush(&mut self) -> Result<(), String> {
        if !self.buf.is_empty() {
            self.spi
                .write(&self.buf)
                .map_err(|e| bus_err("SPI write", e))?;
            self.buf.clear();
        }
        Ok(())
    }

    fn push(&mut self, bytes: &[u8]) -> Result<(), String> {
        if self.buf.len() + bytes.len() > MAX_TRANSFER {
            self.flush()?;
        }
        self.buf.extend_from_slice(bytes);
        Ok(())
    }
}

impl<SPI: SpiDevice, DC: OutputPin> Interface for FourWire<SPI, DC> {
    type Word = u8;
    type Error = String;
    const KIND: InterfaceKind = InterfaceKind::Serial4Line;

    fn send_command(&mut self, command: u8, args: &[u8]) -> Result<(), String> {
        self.dc.set_low().map_err(|e| bus_err("D/C pin", e))?;
        self.spi
            .write(&[command])
            .map_err(|e| bus_err("SPI write", e))?;
        self.dc.set_high().map_err(|e| bus_err("D/C pin", e))?;
        for chunk in args.chunks(MAX_TRANSFER) {
            self.spi.write(chunk).map_err(|e| bus_err("SPI write", e))?;
        }
        Ok(())
    }

    fn send_pixels<const N: usize>(
        &mut self,
        pixels: impl IntoIterator<Item = [u8; N]>,
    ) -> Result<(), String> {
        for p in pixels {
            self.push(&p)?;
        }
        self.flush()
    }

    fn send_repeated_pixel<const N: usize>(
        &mut self,
        pixel: [u8; N],
        count: u32,
    ) -> Result<(), String> {
        for _ in 0..count {
            self.push(&pixel)?;
        }
        self.flush()
    }
}

/// Waveshare 3.5" (A): 16 bits per word, big-endian, for commands,
/// parameters and pixels alike.
struct Shift16<SPI, DC> {
    inner: FourWire<SPI, DC>,
}

impl<SPI: SpiDevice, DC: OutputPin> Shift16<SPI, DC> {
    fn new(spi: SPI, dc: DC) -> Self {
        Shift16 {
            inner: FourWire::new(spi, dc),
        }
    }
}

impl<SPI: SpiDevice, DC: OutputPin> Interface for Shift16<SPI, DC> {
    type Word = u16;
    type Error = String;
    const KIND: InterfaceKind = InterfaceKind::Parallel16Bit;

    fn send_command(&mut self, command: u8, args: &[u8]) -> Result<(), String> {
        let w = &mut self.inner;
        w.dc.set_low().map_err(|e| bus_err("D/C pin", e))?;
        w.spi
            .write(&[0, command])
            .map_err(|e| bus_err("SPI write", e))?;
        w.dc.set_high().map_err(|e| bus_err("D/C pin", e))?;
        for &a in args {
            w.push(&[0, a])?;
        }
        w.flush()
    }

    fn send_pixels<const N: usize>(
        &mut self,
        pixels: impl IntoIterator<Item = [u16; N]>,
    ) -> Result<(), String> {
        for p in pixels {
            for word in p {
                self.inner.push(&word.to_be_bytes())?;
            }
        }
        self.inner.flush()
    }

    fn send_repeated_pixel<const N: usize>(
        &mut self,
        pixel: [u16; N],
        count: u32,
    ) -> Result<(), String> {
        self.send_pixels((0..count).map(|_| pixel))
    }
}

/// A ready panel that takes windows of RGB565 pixels.
trait Panel: Send {
    fn write(
        &mut self,
        window: (u16, u16, u16, u16),
        pixels: &mut dyn Iterator<Item = u16>,
    ) -> Result<(), String>;
}

impl<DI, M, RST> Panel for mipidsi::Display<DI, M, RST>
where
    DI: Interface + Send,
    M: Model + Send,
    M::ColorFormat: InterfacePixelFormat<DI::Word> + FromRgb565,
    RST: OutputPin + Send,
{
    fn write(
        &mut self,
        (sx, sy, ex, ey): (u16, u16, u16, u16),
        pixels: &mut dyn Iterator<Item = u16>,
    ) -> Result<(), String> {
        self.set_pixels(sx, sy, ex, ey, pixels.map(M::ColorFormat::from_rgb565))
            .map_err(|e| format!("{e:?}"))
    }
}

fn to_mipidsi(r: Rotation) -> mipidsi::options::Rotation {
    use mipidsi::options::Rotation as M;
    match r {
        Rotation::R0 => M::Deg0,
        Rotation::R90 => M::Deg90,
        Rotation::R180 => M::Deg180,
        Rotation::R270 => M::Deg270,
    }
}

/// Resets and initialises the controller, returning it as a [`Panel`].
fn init_panel<SPI, DC, RST>(
    cfg: &SpiConfig,
    spi: SPI,
    dc: DC,
    rst: RST,
    delay: &mut impl embedded_hal::delay::DelayNs,
) -> Result<Box<dyn Panel>, String>
where
    SPI: SpiDevice + Send + 'static,
    DC: OutputPin + Send + 'static,
    RST: OutputPin + Send + 'static,
{
    fn go<DI, M, RST>(
        cfg: &SpiConfig,
        model: M,
        di: DI,
        rst: RST,
        delay: &mut impl embedded_hal::delay::DelayNs,
    ) -> Result<Box<dyn Panel>, String>
    where
        DI: Interface + Send + 'static,
        M: Model + Send + 'static,
        M::ColorFormat: InterfacePixelFormat<DI::Word> + FromRgb565,
        RST: OutputPin + Send + 'static,
    {
        let display = mipidsi::Builder::new(model, di)
            .reset_pin(rst)
            .orientation(Orientation::new().rotate(to_mipidsi(cfg.rotation)))
            .color_order(if cfg.bgr {
                ColorOrder::Bgr
            } else {
                ColorOrder::Rgb
            })
            .invert_colors(if cfg.invert_colors {
                ColorInversion::Inverted
            } else {
                ColorInversion::Normal
            })
            .init(delay)
            .map_err(|e| format!("panel init failed: {e:?}"))?;
        Ok(Box::new(display))
    }
    match (cfg.panel, cfg.bus_kind()) {
        (PanelModel::Ili9486, BusKind::Waveshare16bit) => {
            go(cfg, ILI9486Rgb565, Shift16::new(spi, dc), rst, delay)
        }
        (PanelModel::Ili9486, BusKind::Spi) => {
            go(cfg, ILI9486Rgb666, FourWire::new(spi, dc), rst, delay)
        }
        (PanelModel::Ili9341, BusKind::Spi) => {
            go(cfg, ILI9341Rgb565, FourWire::new(spi, dc), rst, delay)
        }
        (PanelModel::Ili9341, BusKind::Waveshare16bit) => {
            go(cfg, ILI9341Rgb565, Shift16::new(spi, dc), rst, delay)
        }
    }
}

/// The SPI TFT sink. See the module documentation.
pub struct SpiSink {
    panel: Box<dyn Panel>,
    size: (u32, u32),
    name: String,
    /// Held so the backlight line stays driven (released on drop).
    _backlight: Option<Box<dyn Send>>,
}

impl std::fmt::Debug for SpiSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpiSink")
            .field("device", &self.name)
            .field("size", &self.size)
            .finish()
    }
}

/// The panel's lines, already opened by the board code (otc-ui never opens
/// a GPIO chip or a spidev node): data/command, reset (active low) and an
/// optional backlight enable, which the sink drives high and holds for as
/// long as it lives. Any `embedded-hal` output pin will do: the device
/// hands over GPIO character-device lines, the tests a recording twin.
pub struct SpiPins<P> {
    pub dc: P,
    pub reset: P,
    pub backlight: Option<P>,
}

impl SpiSink {
    /// Resets and initialises the panel on `spi` (an opened spidev,
    /// configured for `cfg.speed_hz`) and `pins`. `name` names the device
    /// in errors (the spidev path).
    pub fn new<SPI, P>(
        cfg: &SpiConfig,
        name: &str,
        spi: SPI,
        pins: SpiPins<P>,
        delay: &mut impl embedded_hal::delay::DelayNs,
    ) -> Result<Self, UiError>
    where
        SPI: SpiDevice + Send + 'static,
        P: OutputPin + Send + 'static,
    {
        let io_err = |msg: String| UiError::DisplayIo {
            path: name.to_string(),
            source: std::io::Error::other(msg),
        };
        let SpiPins {
            dc,
            reset,
            backlight,
        } = pins;
        let backlight = match backlight {
            Some(mut pin) => {
                pin.set_high()
                    .map_err(|e| io_err(bus_err("backlight pin", e)))?;
                Some(Box::new(pin) as Box<dyn Send>)
            }
            None => None,
        };
        let panel = init_panel(cfg, spi, dc, reset, delay).map_err(io_err)?;
        Ok(SpiSink {
            panel,
            size: cfg.logical_size(),
            name: name.to_string(),
            _backlight: backlight,
        })
    }
}

impl Display for SpiSink {
    fn size(&self) -> (u32, u32) {
        self.size
    }

    fn present(&mut self, frame: &Frame, dirty: Rect) -> Result<(), UiError> {
        present_on(&mut *self.panel, self.size, frame, dirty).map_err(|m| UiError::DisplayIo {
            path: self.name.clone(),
            source: std::io::Error::other(m),
        })
    }
}

fn present_on(
    panel: &mut dyn Panel,
    size: (u32, u32),
    frame: &Frame,
    dirty: Rect,
) -> Result<(), String> {
    if (frame.width, frame.height) != size || frame.pixels.len() < size.0 as usize * size.1 as usize
    {
        return Err(format!(
            "frame is {}x{} but the panel is {}x{}",
            frame.width, frame.height, size.0, size.1
        ));
    }
    let Some(win) = dirty_window(dirty, size) else {
        return Ok(());
    };
    let (sx, sy, ex, ey) = (
        win.0 as usize,
        win.1 as usize,
        win.2 as usize,
        win.3 as usize,
    );
    let w = size.0 as usize;
    let mut pixels = (sy..=ey).flat_map(|y| frame.pixels[y * w + sx..=y * w + ex].iter().copied());
    panel.write(win, &mut pixels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use std::sync::{Arc, Mutex};

    /// What reached the wire: D/C level changes and SPI writes, in order.
    #[derive(Clone, Debug, PartialEq, Eq)]
    enum Op {
        Dc(bool),
        Rst(bool),
        Backlight(bool),
        Write(Vec<u8>),
    }

    #[derive(Clone, Default)]
    struct Log(Arc<Mutex<Vec<Op>>>);

    impl Log {
        fn take(&self) -> Vec<Op> {
            std::mem::take(&mut *self.0.lock().unwrap())
        }
    }

    struct FakeSpi(Log);
    impl embedded_hal::spi::ErrorType for FakeSpi {
        type Error = Infallible;
    }
    impl SpiDevice for FakeSpi {
        fn transaction(
            &mut self,
            ops: &mut [embedded_hal::spi::Operation<'_, u8>],
        ) -> Result<(), Infallible> {
            for op in ops {
                if let embedded_hal::spi::Operation::Write(b) = op {
                    self.0.0.lock().unwrap().push(Op::Write(b.to_vec()));
                }
            }
            Ok(())
        }
    }

    /// Which line a [`FakePin`] twin stands for.
    #[derive(Clone, Copy)]
    enum Line {
        Dc,
        Reset,
        Backlight,
    }

    /// The pins' twin: records its level changes in the shared log.
    struct FakePin(Log, Line);
    impl embedded_hal::digital::ErrorType for FakePin {
        type Error = Infallible;
    }
    impl OutputPin for FakePin {
        fn set_low(&mut self) -> Result<(), Infallible> {
            self.set(false);
            Ok(())
        }
        fn set_high(&mut self) -> Result<(), Infallible> {
            self.set(true);
            Ok(())
        }
    }
    impl FakePin {
        fn set(&mut self, level: bool) {
            let op = match self.1 {
                Line::Dc => Op::Dc(level),
                Line::Reset => Op::Rst(level),
                Line::Backlight => Op::Backlight(level),
            };
            self.0.0.lock().unwrap().push(op);
        }
    }

    struct NoDelay;
    impl embedded_hal::delay::DelayNs for NoDelay {
        fn delay_ns(&mut self, _ns: u32) {}
    }

    /// A command byte (or word) and the bytes that followed it with D/C high.
    type Command = (Vec<u8>, Vec<u8>);

    /// Groups the log into (command, parameter/pixel bytes) as the panel
    /// sees them, checking D/C is low exactly for command bytes.
    fn commands(ops: &[Op]) -> Vec<Command> {
        let mut out: Vec<Command> = Vec::new();
        let mut dc = true;
        for op in ops {
            match op {
                Op::Dc(level) => dc = *level,
                Op::Rst(_) | Op::Backlight(_) => {}
                Op::Write(b) if !dc => out.push((b.clone(), Vec::new())),
                Op::Write(b) => out.last_mut().expect("data before any command").1.extend(b),
            }
        }
        out
    }

    #[test]
    fn config_defaults_and_parsing() {
        let d: SpiConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(d, SpiConfig::default());
        assert_eq!(d.bus_kind(), BusKind::Waveshare16bit);
        assert_eq!(d.logical_size(), (480, 320));
        let c: SpiConfig = serde_json::from_str(
            r#"{"panel": "ili9341", "rotation": "180", "backlight_pin": 18, "speed_hz": 32000000,
                "spidev": "/dev/spidev0.1", "bgr": false}"#,
        )
        .unwrap();
        assert_eq!(c.panel, PanelModel::Ili9341);
        assert_eq!(c.bus_kind(), BusKind::Spi);
        assert_eq!(c.logical_size(), (240, 320));
        assert_eq!(c.backlight_pin, Some(18));
        assert_eq!(c.dc_pin, 24);
        let c: SpiConfig = serde_json::from_str(r#"{"bus": "spi"}"#).unwrap();
        assert_eq!(c.bus_kind(), BusKind::Spi);
        let c: SpiConfig =
            serde_json::from_str(r#"{"bus": "waveshare-16bit", "panel": "ili9341"}"#).unwrap();
        assert_eq!(c.bus_kind(), BusKind::Waveshare16bit);
        assert!(serde_json::from_str::<SpiConfig>(r#"{"panel": "st7789"}"#).is_err());
        assert!(serde_json::from_str::<SpiConfig>(r#"{"dc": 24}"#).is_err());
    }

    #[test]
    fn dirty_rect_to_window() {
        let s = (480, 320);
        assert_eq!(
            dirty_window(Rect::new(0, 0, 480, 320), s),
            Some((0, 0, 479, 319))
        );
        assert_eq!(
            dirty_window(Rect::new(10, 20, 1, 1), s),
            Some((10, 20, 10, 20))
        );
        assert_eq!(
            dirty_window(Rect::new(470, 310, 100, 100), s),
            Some((470, 310, 479, 319))
        );
        assert_eq!(
            dirty_window(Rect::new(5, 5, u32::MAX, u32::MAX), s),
            Some((5, 5, 479, 319))
        );
        assert_eq!(dirty_window(Rect::new(480, 0, 10, 10), s), None);
        assert_eq!(dirty_window(Rect::new(0, 0, 0, 10), s), None);
        assert_eq!(dirty_window(Rect::new(0, 0, 10, 10), (0, 0)), None);
    }

    #[test]
    fn pixel_conversion() {
        assert_eq!(rgb565_to_rgb666(0xF800), (63, 0, 0));
        assert_eq!(rgb565_to_rgb666(0x07E0), (0, 63, 0));
        assert_eq!(rgb565_to_rgb666(0x001F), (0, 0, 63));
        assert_eq!(rgb565_to_rgb666(0xFFFF), (63, 63, 63));
        assert_eq!(rgb565_to_rgb666(0x8410), (33, 32, 33)); // r5=16 → 0b100001
        assert_eq!(rgb565_to_rgb666(0x0000), (0, 0, 0));
        use embedded_graphics_core::pixelcolor::RgbColor;
        let c = Rgb565::from_rgb565(0x8410);
        assert_eq!((c.r(), c.g(), c.b()), (16, 32, 16));
        let c = Rgb666::from_rgb565(0xF81F);
        assert_eq!((c.r(), c.g(), c.b()), (63, 0, 63));
    }

    #[test]
    fn four_wire_encoding_and_chunking() {
        let log = Log::default();
        let mut bus = FourWire::new(FakeSpi(log.clone()), FakePin(log.clone(), Line::Dc));
        bus.send_command(0x2A, &[0, 1, 0, 2]).unwrap();
        assert_eq!(
            log.take(),
            vec![
                Op::Dc(false),
                Op::Write(vec![0x2A]),
                Op::Dc(true),
                Op::Write(vec![0, 1, 0, 2])
            ]
        );
        // 3000 two-byte pixels = 6000 bytes: two transfers, none over 4096.
        bus.send_pixels((0..3000u32).map(|i| [(i >> 8) as u8, i as u8]))
            .unwrap();
        let ops = log.take();
        let sizes: Vec<usize> = ops
            .iter()
            .map(|o| match o {
                Op::Write(b) => b.len(),
                _ => panic!("pin change during pixels"),
            })
            .collect();
        assert_eq!(sizes, vec![4096, 1904]);
        bus.send_repeated_pixel([1, 2, 3], 2).unwrap();
        assert_eq!(log.take(), vec![Op::Write(vec![1, 2, 3, 1, 2, 3])]);
    }

    #[test]
    fn waveshare_encoding() {
        let log = Log::default();
        let mut bus = Shift16::new(FakeSpi(log.clone()), FakePin(log.clone(), Line::Dc));
        bus.send_command(0x36, &[0x28, 0x01]).unwrap();
        assert_eq!(
            log.take(),
            vec![
                Op::Dc(false),
                Op::Write(vec![0x00, 0x36]),
                Op::Dc(true),
                Op::Write(vec![0x00, 0x28, 0x00, 0x01])
            ]
        );
        bus.send_pixels([[0xF800u16], [0x001F]]).unwrap();
        assert_eq!(log.take(), vec![Op::Write(vec![0xF8, 0x00, 0x00, 0x1F])]);
        bus.send_command(0x29, &[]).unwrap();
        assert_eq!(
            log.take(),
            vec![Op::Dc(false), Op::Write(vec![0x00, 0x29]), Op::Dc(true)]
        );
    }

    /// Initialises the panel over fakes and presents a dirty rectangle; returns
    /// the commands seen after init.
    fn present_through_mipidsi(
        cfg: &SpiConfig,
        frame: &Frame,
        dirty: Rect,
    ) -> (Vec<Command>, Vec<Op>) {
        let log = Log::default();
        let mut panel = init_panel(
            cfg,
            FakeSpi(log.clone()),
            FakePin(log.clone(), Line::Dc),
            FakePin(log.clone(), Line::Reset),
            &mut NoDelay,
        )
        .unwrap();
        let init = log.take();
        present_on(&mut *panel, cfg.logical_size(), frame, dirty).unwrap();
        (commands(&log.take()), init)
    }

    fn test_frame(cfg: &SpiConfig) -> Frame {
        let (w, h) = cfg.logical_size();
        let mut f = Frame::new(w, h);
        for (i, p) in f.pixels.iter_mut().enumerate() {
            *p = i as u16;
        }
        f
    }

    #[test]
    fn ili9341_present_sends_the_window_and_its_pixels() {
        let cfg = SpiConfig {
            panel: PanelModel::Ili9341,
            ..SpiConfig::default()
        };
        let frame = test_frame(&cfg);
        let (cmds, init) = present_through_mipidsi(&cfg, &frame, Rect::new(300, 1, 2, 2));
        // Hardware reset pulse, then commands.
        assert_eq!(init[..2], [Op::Rst(false), Op::Rst(true)]);
        let init_cmds = commands(&init);
        let madctl = init_cmds.iter().find(|(c, _)| c == &[0x36]).unwrap();
        // Landscape (MV) with BGR: MADCTL has bits 0x20 and 0x08.
        assert_eq!(madctl.1[0] & 0x28, 0x28, "MADCTL {:#x}", madctl.1[0]);
        assert!(
            init_cmds.iter().any(|(c, a)| c == &[0x3A] && a == &[0x55]),
            "16-bit pixel format"
        );
        assert_eq!(cmds.len(), 3);
        assert_eq!(cmds[0], (vec![0x2A], vec![0x01, 0x2C, 0x01, 0x2D])); // columns 300..=301
        assert_eq!(cmds[1], (vec![0x2B], vec![0, 1, 0, 2])); // rows 1..=2
        assert_eq!(cmds[2].0, vec![0x2C]);
        let px = |x: usize, y: usize| (frame.pixels[y * 320 + x]).to_be_bytes();
        let want: Vec<u8> = [px(300, 1), px(301, 1), px(300, 2), px(301, 2)].concat();
        assert_eq!(cmds[2].1, want);
    }

    #[test]
    fn ili9486_over_plain_spi_sends_rgb666() {
        let cfg = SpiConfig {
            bus: Some(BusKind::Spi),
            rotation: Rotation::R0,
            ..SpiConfig::default()
        };
        let mut frame = Frame::new(320, 480);
        frame.pixels[0] = 0xF800;
        frame.pixels[1] = 0x8410;
        let (cmds, init) = present_through_mipidsi(&cfg, &frame, Rect::new(0, 0, 2, 1));
        assert!(
            commands(&init)
                .iter()
                .any(|(c, a)| c == &[0x3A] && a == &[0x66]),
            "18-bit pixel format"
        );
        assert_eq!(cmds[0], (vec![0x2A], vec![0, 0, 0, 1]));
        assert_eq!(cmds[1], (vec![0x2B], vec![0, 0, 0, 0]));
        assert_eq!(cmds[2], (vec![0x2C], vec![0xFC, 0, 0, 0x84, 0x80, 0x84]));
    }

    #[test]
    fn waveshare_ili9486_present() {
        let cfg = SpiConfig::default();
        let frame = test_frame(&cfg);
        let (cmds, init) = present_through_mipidsi(&cfg, &frame, Rect::new(479, 319, 5, 5));
        let init_cmds = commands(&init);
        // Every command is a 16-bit word with a zero high byte.
        assert!(
            init_cmds
                .iter()
                .all(|(c, a)| c.len() == 2 && c[0] == 0 && a.len() % 2 == 0)
        );
        assert!(
            init_cmds
                .iter()
                .any(|(c, a)| c == &[0, 0x3A] && a == &[0, 0x55])
        );
        assert_eq!(
            cmds[0],
            (vec![0, 0x2A], vec![0, 0x01, 0, 0xDF, 0, 0x01, 0, 0xDF])
        ); // 479..=479
        assert_eq!(
            cmds[1],
            (vec![0, 0x2B], vec![0, 0x01, 0, 0x3F, 0, 0x01, 0, 0x3F])
        ); // 319..=319
        assert_eq!(
            cmds[2],
            (
                vec![0, 0x2C],
                frame.pixels[319 * 480 + 479].to_be_bytes().to_vec()
            )
        );
    }

    #[test]
    fn present_checks_frame_size_and_skips_empty_rects() {
        let cfg = SpiConfig::default();
        let log = Log::default();
        let mut panel = init_panel(
            &cfg,
            FakeSpi(log.clone()),
            FakePin(log.clone(), Line::Dc),
            FakePin(log.clone(), Line::Reset),
            &mut NoDelay,
        )
        .unwrap();
        log.take();
        assert!(
            present_on(
                &mut *panel,
                (480, 320),
                &Frame::new(320, 480),
                Rect::new(0, 0, 1, 1)
            )
            .is_err()
        );
        present_on(
            &mut *panel,
            (480, 320),
            &Frame::new(480, 320),
            Rect::new(480, 0, 1, 1),
        )
        .unwrap();
        assert!(log.take().is_empty());
    }

    /// A sink made by [`SpiSink::new`] on the twins, with or without a
    /// backlight line, and the log they write to.
    fn sink_on_twins(cfg: &SpiConfig, backlight: bool) -> (SpiSink, Log) {
        let log = Log::default();
        let pins = SpiPins {
            dc: FakePin(log.clone(), Line::Dc),
            reset: FakePin(log.clone(), Line::Reset),
            backlight: backlight.then(|| FakePin(log.clone(), Line::Backlight)),
        };
        let sink = SpiSink::new(
            cfg,
            "/dev/spidev0.0",
            FakeSpi(log.clone()),
            pins,
            &mut NoDelay,
        )
        .unwrap();
        (sink, log)
    }

    #[test]
    fn the_sink_takes_opened_pins_and_holds_the_backlight_high() {
        let cfg = SpiConfig {
            backlight_pin: Some(18),
            ..SpiConfig::default()
        };
        let (mut sink, log) = sink_on_twins(&cfg, true);
        let init = log.take();
        // Backlight on, then the reset pulse, then the init commands.
        assert_eq!(
            init[..3],
            [Op::Backlight(true), Op::Rst(false), Op::Rst(true)]
        );
        assert!(
            !init[3..].iter().any(|op| matches!(op, Op::Backlight(_))),
            "the backlight is left on: {init:?}"
        );
        assert!(!commands(&init).is_empty());
        assert_eq!(sink.size(), (480, 320));
        sink.present(&Frame::new(480, 320), Rect::new(0, 0, 1, 1))
            .unwrap();
        let cmds = commands(&log.take());
        assert_eq!(
            cmds.iter().map(|(c, _)| c.clone()).collect::<Vec<_>>(),
            vec![vec![0, 0x2A], vec![0, 0x2B], vec![0, 0x2C]]
        );

        // Without a backlight line only the panel's own lines move.
        let (_sink, log) = sink_on_twins(&SpiConfig::default(), false);
        let init = log.take();
        assert_eq!(init[..2], [Op::Rst(false), Op::Rst(true)]);
        assert!(!init.iter().any(|op| matches!(op, Op::Backlight(_))));
    }
}
