//! evdev touch source: reads a Linux input device (`/dev/input/event*`) and
//! turns it into [`TouchEvent`]s in logical screen pixels.
//!
//! The device is found by capability: the first `/dev/input/event*` (in
//! numeric order) with absolute X/Y axes (`ABS_X`/`ABS_Y`, or failing that
//! `ABS_MT_POSITION_X`/`Y` of slot 0) and a press key (`BTN_TOUCH` or
//! `BTN_LEFT`). That covers the Raspberry Pi touchscreens (which report
//! `ABS_X`/`ABS_Y` + `BTN_TOUCH`) and QEMU's virtio-tablet (`ABS_X`/`ABS_Y`
//! 0..32767 + `BTN_LEFT`). A plain mouse (relative axes) is not picked.
//!
//! Raw coordinates go through, in this order: calibration (the device's
//! `EVIOCGABS` min/max, or the configured override), axis swap, inversion,
//! scaling to the panel's pixels, and finally the inverse of the display
//! rotation, so the same `rotation` value in the display and touch sections of
//! the config gives matching coordinates.
//!
//! Raw `input_event` records are read with `read(2)` and waited for with
//! `poll(2)`; decoding ([`parse_events`], [`Decoder`]) and mapping
//! ([`Mapper`]) are pure and tested with synthetic event streams. After a
//! kernel buffer overrun (`SYN_DROPPED`) the press state and position are
//! re-read from the device with `EVIOCGKEY`/`EVIOCGABS`.

use crate::display::Rotation;
use crate::error::UiError;
use crate::touch::{Touch, TouchEvent};
use serde::Deserialize;
use std::fs::OpenOptions;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

// Event types and codes (include/uapi/linux/input-event-codes.h).
pub const EV_SYN: u16 = 0x00;
pub const EV_KEY: u16 = 0x01;
pub const EV_ABS: u16 = 0x03;
pub const SYN_REPORT: u16 = 0;
pub const SYN_DROPPED: u16 = 3;
pub const ABS_X: u16 = 0x00;
pub const ABS_Y: u16 = 0x01;
pub const ABS_MT_SLOT: u16 = 0x2f;
pub const ABS_MT_POSITION_X: u16 = 0x35;
pub const ABS_MT_POSITION_Y: u16 = 0x36;
pub const BTN_LEFT: u16 = 0x110;
pub const BTN_TOUCH: u16 = 0x14a;

/// Size of `struct input_event` as the kernel writes it: two `unsigned long`
/// for the timestamp, then `u16 type`, `u16 code`, `i32 value`.
pub const EVENT_SIZE: usize = 2 * std::mem::size_of::<libc::c_ulong>() + 8;

/// Configuration of the evdev source (the `[touch.evdev]` table of
/// `otc.toml`). Every field is optional.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvdevConfig {
    /// Input device to use; when unset, `/dev/input/event*` is scanned for
    /// the first touch-capable device.
    pub device: Option<PathBuf>,
    /// Rotation of the panel relative to the UI, clockwise; use the same
    /// value as the display's.
    pub rotation: Rotation,
    /// Swap the device's X and Y axes (controllers wired the other way round).
    pub swap_xy: bool,
    /// Mirror horizontally (after swap, before rotation).
    pub invert_x: bool,
    /// Mirror vertically (after swap, before rotation).
    pub invert_y: bool,
    /// Raw values at the panel edges, overriding the device's absinfo.
    pub calibration: Calibration,
}

/// Raw device values seen at the panel's edges (`min_x` at the left edge,
/// `max_x` at the right, before swap). `min > max` is allowed and mirrors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Calibration {
    pub min_x: Option<i32>,
    pub max_x: Option<i32>,
    pub min_y: Option<i32>,
    pub max_y: Option<i32>,
}

/// Range of one absolute axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbsRange {
    pub min: i32,
    pub max: i32,
}

/// Which axes carry the position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AxisMode {
    /// `ABS_X` / `ABS_Y` (single touch, or the kernel's pointer emulation).
    Single,
    /// `ABS_MT_POSITION_X` / `Y`, first slot only.
    MultiTouch,
}

/// What was learnt about an input device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    pub path: PathBuf,
    pub name: String,
    pub mode: AxisMode,
    pub x: AbsRange,
    pub y: AbsRange,
}

/// One raw input event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawEvent {
    pub kind: u16,
    pub code: u16,
    pub value: i32,
}

/// Decodes whole `input_event` records from `buf`; returns the events and
/// how many bytes were used (a trailing partial record is left).
pub fn parse_events(buf: &[u8]) -> (Vec<RawEvent>, usize) {
    let t = EVENT_SIZE - 8;
    let events: Vec<RawEvent> = buf
        .chunks_exact(EVENT_SIZE)
        .map(|r| RawEvent {
            kind: u16::from_ne_bytes([r[t], r[t + 1]]),
            code: u16::from_ne_bytes([r[t + 2], r[t + 3]]),
            value: i32::from_ne_bytes([r[t + 4], r[t + 5], r[t + 6], r[t + 7]]),
        })
        .collect();
    let used = events.len() * EVENT_SIZE;
    (events, used)
}

/// Encodes one `input_event` record (zero timestamp); for tests and tools.
pub fn encode_event(kind: u16, code: u16, value: i32) -> Vec<u8> {
    let mut v = vec![0u8; EVENT_SIZE - 8];
    v.extend_from_slice(&kind.to_ne_bytes());
    v.extend_from_slice(&code.to_ne_bytes());
    v.extend_from_slice(&value.to_ne_bytes());
    v
}

/// Whether a touch phase started, continued or ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Down,
    Move,
    Up,
}

/// Turns raw events into press/move/release in raw device coordinates,
/// one decision per `SYN_REPORT` frame.
#[derive(Clone, Debug)]
pub struct Decoder {
    mode: AxisMode,
    x: i32,
    y: i32,
    pressed: bool,
    // Within the current frame:
    last_key: Option<bool>,
    saw_down: bool,
    saw_up: bool,
    moved: bool,
    slot: i32,
    dropped: bool,
    resync: bool,
}

impl Decoder {
    pub fn new(mode: AxisMode) -> Self {
        Decoder {
            mode,
            x: 0,
            y: 0,
            pressed: false,
            last_key: None,
            saw_down: false,
            saw_up: false,
            moved: false,
            slot: 0,
            dropped: false,
            resync: false,
        }
    }

    /// Whether the contact is currently down.
    pub fn pressed(&self) -> bool {
        self.pressed
    }

    /// Feeds one event; completed frames push `(phase, raw_x, raw_y)`.
    pub fn feed(&mut self, ev: RawEvent, out: &mut Vec<(Phase, i32, i32)>) {
        match (ev.kind, ev.code) {
            (EV_SYN, SYN_DROPPED) => self.dropped = true,
            (EV_SYN, SYN_REPORT) => self.end_frame(out),
            _ if self.dropped => {}
            (EV_KEY, BTN_TOUCH | BTN_LEFT) => {
                let down = ev.value != 0;
                self.last_key = Some(down);
                if down {
                    self.saw_down = true;
                } else {
                    self.saw_up = true;
                }
            }
            (EV_ABS, code) => match (self.mode, code) {
                (AxisMode::Single, ABS_X) => self.set_x(ev.value),
                (AxisMode::Single, ABS_Y) => self.set_y(ev.value),
                (AxisMode::MultiTouch, ABS_MT_SLOT) => self.slot = ev.value,
                (AxisMode::MultiTouch, ABS_MT_POSITION_X) if self.slot == 0 => self.set_x(ev.value),
                (AxisMode::MultiTouch, ABS_MT_POSITION_Y) if self.slot == 0 => self.set_y(ev.value),
                _ => {}
            },
            _ => {}
        }
    }

    fn set_x(&mut self, v: i32) {
        self.moved |= self.x != v;
        self.x = v;
    }

    fn set_y(&mut self, v: i32) {
        self.moved |= self.y != v;
        self.y = v;
    }

    fn end_frame(&mut self, out: &mut Vec<(Phase, i32, i32)>) {
        if self.dropped {
            // Everything up to and including this report is unreliable; the
            // owner re-reads the device state (see `needs_resync`).
            self.dropped = false;
            self.resync = true;
        } else {
            let was = self.pressed;
            let now = self.last_key.unwrap_or(was);
            let (x, y) = (self.x, self.y);
            match (was, now) {
                (false, true) => out.push((Phase::Down, x, y)),
                (true, false) => out.push((Phase::Up, x, y)),
                (false, false) if self.saw_down => {
                    out.push((Phase::Down, x, y));
                    out.push((Phase::Up, x, y));
                }
                (true, true) if self.saw_up => {
                    out.push((Phase::Up, x, y));
                    out.push((Phase::Down, x, y));
                }
                (true, true) if self.moved => out.push((Phase::Move, x, y)),
                _ => {}
            }
            self.pressed = now;
        }
        self.last_key = None;
        self.saw_down = false;
        self.saw_up = false;
        self.moved = false;
    }

    /// True once after a `SYN_DROPPED` frame ended: call [`Decoder::resync`].
    pub fn needs_resync(&mut self) -> bool {
        std::mem::take(&mut self.resync)
    }

    /// Sets the state read back from the device after an overrun, pushing
    /// the press or release that was lost, if any.
    pub fn resync(&mut self, pressed: bool, x: i32, y: i32, out: &mut Vec<(Phase, i32, i32)>) {
        self.x = x;
        self.y = y;
        self.slot = 0;
        match (self.pressed, pressed) {
            (false, true) => out.push((Phase::Down, x, y)),
            (true, false) => out.push((Phase::Up, x, y)),
            (true, true) => out.push((Phase::Move, x, y)),
            (false, false) => {}
        }
        self.pressed = pressed;
    }
}

/// Maps raw device coordinates to logical screen pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapper {
    x: AbsRange,
    y: AbsRange,
    swap_xy: bool,
    invert_x: bool,
    invert_y: bool,
    rotation: Rotation,
    /// Panel size in pixels (logical size with rotation undone).
    panel: (u32, u32),
}

impl Mapper {
    /// `device` is the axes' absinfo; `logical` the UI size (`Display::size()`).
    pub fn new(
        config: &EvdevConfig,
        device_x: AbsRange,
        device_y: AbsRange,
        logical: (u32, u32),
    ) -> Self {
        let c = config.calibration;
        let x = AbsRange {
            min: c.min_x.unwrap_or(device_x.min),
            max: c.max_x.unwrap_or(device_x.max),
        };
        let y = AbsRange {
            min: c.min_y.unwrap_or(device_y.min),
            max: c.max_y.unwrap_or(device_y.max),
        };
        let panel = match config.rotation {
            Rotation::R0 | Rotation::R180 => logical,
            Rotation::R90 | Rotation::R270 => (logical.1, logical.0),
        };
        Mapper {
            x,
            y,
            swap_xy: config.swap_xy,
            invert_x: config.invert_x,
            invert_y: config.invert_y,
            rotation: config.rotation,
            panel,
        }
    }

    /// Raw `(x, y)` to logical pixels, clamped to the screen.
    pub fn map(&self, raw_x: i32, raw_y: i32) -> (u32, u32) {
        // Position along each axis as a fraction num/den in [0, 1].
        let frac = |v: i32, r: AbsRange| -> (i64, i64) {
            let den = i64::from(r.max) - i64::from(r.min);
            if den == 0 {
                return (0, 1);
            }
            let num = i64::from(v) - i64::from(r.min);
            let (num, den) = if den < 0 { (-num, -den) } else { (num, den) };
            (num.clamp(0, den), den)
        };
        let (mut a, mut b) = (frac(raw_x, self.x), frac(raw_y, self.y));
        if self.swap_xy {
            std::mem::swap(&mut a, &mut b);
        }
        if self.invert_x {
            a.0 = a.1 - a.0;
        }
        if self.invert_y {
            b.0 = b.1 - b.0;
        }
        let (pw, ph) = self.panel;
        let scale = |(num, den): (i64, i64), size: u32| -> u32 {
            if size == 0 {
                return 0;
            }
            let px = (num * 2 * i64::from(size) + den) / (2 * den);
            px.clamp(0, i64::from(size) - 1) as u32
        };
        let (px, py) = (scale(a, pw), scale(b, ph));
        // Undo the display rotation (see `sink::fbdev::rotate_point`).
        let (pw1, ph1) = (pw.saturating_sub(1), ph.saturating_sub(1));
        match self.rotation {
            Rotation::R0 => (px, py),
            Rotation::R90 => (py, pw1 - px),
            Rotation::R180 => (pw1 - px, ph1 - py),
            Rotation::R270 => (ph1 - py, px),
        }
    }
}

/// Decides from capability bitmaps (`EVIOCGBIT`) whether a device is a
/// touch screen or tablet, and which axes it reports on.
pub fn classify(ev_bits: &[u8], abs_bits: &[u8], key_bits: &[u8]) -> Option<AxisMode> {
    let has = |bits: &[u8], n: u16| -> bool {
        bits.get(usize::from(n / 8))
            .is_some_and(|b| b & (1 << (n % 8)) != 0)
    };
    if !has(ev_bits, EV_ABS) || !has(ev_bits, EV_KEY) {
        return None;
    }
    if !has(key_bits, BTN_TOUCH) && !has(key_bits, BTN_LEFT) {
        return None;
    }
    if has(abs_bits, ABS_X) && has(abs_bits, ABS_Y) {
        Some(AxisMode::Single)
    } else if has(abs_bits, ABS_MT_POSITION_X) && has(abs_bits, ABS_MT_POSITION_Y) {
        Some(AxisMode::MultiTouch)
    } else {
        None
    }
}

// ioctl request numbers (include/uapi/asm-generic/ioctl.h, include/uapi/linux/input.h).
const fn ioc_read(nr: u32, size: usize) -> u32 {
    (2 << 30) | ((size as u32) << 16) | ((b'E' as u32) << 8) | nr
}
const fn eviocgbit(ev: u16, len: usize) -> u32 {
    ioc_read(0x20 + ev as u32, len)
}
const fn eviocgabs(abs: u16) -> u32 {
    ioc_read(0x40 + abs as u32, std::mem::size_of::<AbsInfo>())
}
const fn eviocgkey(len: usize) -> u32 {
    ioc_read(0x18, len)
}
const fn eviocgname(len: usize) -> u32 {
    ioc_read(0x06, len)
}

/// `struct input_absinfo`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct AbsInfo {
    value: i32,
    minimum: i32,
    maximum: i32,
    fuzz: i32,
    flat: i32,
    resolution: i32,
}

fn ioctl_buf(fd: &impl AsRawFd, req: u32, buf: &mut [u8]) -> std::io::Result<()> {
    // SAFETY: `req` encodes `buf.len()` as its size (the kernel writes at
    // most that many bytes into `buf`), and the fd is valid.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), req as _, buf.as_mut_ptr()) };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn abs_info(fd: &impl AsRawFd, axis: u16) -> std::io::Result<AbsInfo> {
    let mut info = AbsInfo::default();
    // SAFETY: EVIOCGABS writes one `struct input_absinfo`, which `AbsInfo`
    // reproduces; the fd is valid.
    let rc = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            eviocgabs(axis) as _,
            &mut info as *mut AbsInfo,
        )
    };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(info)
    }
}

fn axes(mode: AxisMode) -> (u16, u16) {
    match mode {
        AxisMode::Single => (ABS_X, ABS_Y),
        AxisMode::MultiTouch => (ABS_MT_POSITION_X, ABS_MT_POSITION_Y),
    }
}

/// Reads an open device's capabilities; `Ok(None)` if it is not a touch device.
fn probe_fd(fd: &impl AsRawFd, path: &Path) -> std::io::Result<Option<DeviceInfo>> {
    let mut ev = [0u8; 4];
    let mut abs = [0u8; 8];
    let mut key = [0u8; 96];
    ioctl_buf(fd, eviocgbit(0, ev.len()), &mut ev)?;
    ioctl_buf(fd, eviocgbit(EV_ABS, abs.len()), &mut abs)?;
    ioctl_buf(fd, eviocgbit(EV_KEY, key.len()), &mut key)?;
    let Some(mode) = classify(&ev, &abs, &key) else {
        return Ok(None);
    };
    let mut name = [0u8; 256];
    let name = match ioctl_buf(fd, eviocgname(name.len()), &mut name) {
        Ok(()) => {
            let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
            String::from_utf8_lossy(&name[..end]).into_owned()
        }
        Err(_) => String::new(),
    };
    let (ax, ay) = axes(mode);
    let (ix, iy) = (abs_info(fd, ax)?, abs_info(fd, ay)?);
    Ok(Some(DeviceInfo {
        path: path.to_path_buf(),
        name,
        mode,
        x: AbsRange {
            min: ix.minimum,
            max: ix.maximum,
        },
        y: AbsRange {
            min: iy.minimum,
            max: iy.maximum,
        },
    }))
}

fn open_input(path: &Path) -> std::io::Result<OwnedFd> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    Ok(f.into())
}

fn touch_io(path: &Path, source: std::io::Error) -> UiError {
    UiError::TouchIo {
        path: path.display().to_string(),
        source,
    }
}

/// Scans `dir` (normally `/dev/input`) for `event*` nodes in numeric order
/// and returns the first touch-capable one.
pub fn find_touch_device(dir: &Path) -> Result<DeviceInfo, UiError> {
    let entries = std::fs::read_dir(dir).map_err(|e| touch_io(dir, e))?;
    let mut nodes: Vec<(u32, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name();
            let n = name.to_str()?.strip_prefix("event")?.parse().ok()?;
            Some((n, e.path()))
        })
        .collect();
    nodes.sort();
    let mut seen = Vec::new();
    for (_, path) in &nodes {
        match open_input(path).and_then(|fd| probe_fd(&fd, path)) {
            Ok(Some(info)) => return Ok(info),
            Ok(None) => seen.push(format!("{} (not a touch device)", path.display())),
            Err(e) => seen.push(format!("{} ({e})", path.display())),
        }
    }
    Err(UiError::NoTouchDevice(if seen.is_empty() {
        format!(
            "no event devices in {}; is the touch driver loaded (or QEMU started with -device virtio-tablet-pci)?",
            dir.display()
        )
    } else {
        format!(
            "none with absolute X/Y and BTN_TOUCH/BTN_LEFT among: {}; set touch.evdev.device to choose one",
            seen.join(", ")
        )
    }))
}

/// The evdev touch source. See the module documentation.
#[derive(Debug)]
pub struct EvdevTouch {
    fd: OwnedFd,
    info: DeviceInfo,
    decoder: Decoder,
    mapper: Mapper,
    pending: Vec<u8>,
    last: Option<(u32, u32)>,
    probe_state: bool,
}

impl EvdevTouch {
    /// Opens the configured device, or the first touch device in
    /// `/dev/input`, for a UI of logical size `screen` (`Display::size()`).
    pub fn open(config: &EvdevConfig, screen: (u32, u32)) -> Result<Self, UiError> {
        Self::open_in(config, screen, Path::new("/dev/input"))
    }

    /// [`open`](Self::open), looking for a touch device in `input_dir`
    /// (when none is configured) instead of `/dev/input`.
    pub fn open_in(
        config: &EvdevConfig,
        screen: (u32, u32),
        input_dir: &Path,
    ) -> Result<Self, UiError> {
        let path = match &config.device {
            Some(p) => p.clone(),
            None => find_touch_device(input_dir)?.path,
        };
        let fd = open_input(&path).map_err(|e| touch_io(&path, e))?;
        let info = probe_fd(&fd, &path)
            .map_err(|e| touch_io(&path, e))?
            .ok_or_else(|| {
                UiError::NoTouchDevice(format!(
                    "{} has no absolute X/Y axes with BTN_TOUCH or BTN_LEFT",
                    path.display()
                ))
            })?;
        let mut touch = Self::from_fd(fd, info, config, screen)?;
        touch.probe_state = true;
        Ok(touch)
    }

    /// Uses an already open event stream (a device, or a pipe carrying
    /// `input_event` records in tests) with known axes. The descriptor is
    /// switched to non-blocking mode.
    pub fn from_fd(
        fd: OwnedFd,
        info: DeviceInfo,
        config: &EvdevConfig,
        screen: (u32, u32),
    ) -> Result<Self, UiError> {
        // SAFETY: F_GETFL/F_SETFL on a valid fd owned by us.
        let ok = unsafe {
            let fl = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
            fl >= 0 && libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK) >= 0
        };
        if !ok {
            return Err(touch_io(&info.path, std::io::Error::last_os_error()));
        }
        Ok(EvdevTouch {
            fd,
            decoder: Decoder::new(info.mode),
            mapper: Mapper::new(config, info.x, info.y, screen),
            info,
            pending: Vec::new(),
            last: None,
            probe_state: false,
        })
    }

    /// The device in use.
    pub fn device(&self) -> &DeviceInfo {
        &self.info
    }

    fn err(&self, e: std::io::Error) -> UiError {
        touch_io(&self.info.path, e)
    }

    /// Re-reads press state and position from the device after an overrun.
    fn resync(&mut self, raw: &mut Vec<(Phase, i32, i32)>) {
        if !self.probe_state {
            return;
        }
        let mut keys = [0u8; 96];
        if ioctl_buf(&self.fd, eviocgkey(keys.len()), &mut keys).is_err() {
            return;
        }
        let bit = |n: u16| keys[usize::from(n / 8)] & (1 << (n % 8)) != 0;
        let pressed = bit(BTN_TOUCH) || bit(BTN_LEFT);
        let (ax, ay) = axes(self.info.mode);
        if let (Ok(x), Ok(y)) = (abs_info(&self.fd, ax), abs_info(&self.fd, ay)) {
            self.decoder.resync(pressed, x.value, y.value, raw);
        }
    }

    /// Reads everything available without blocking. `Ok(false)` on end of
    /// stream (a pipe whose writer closed).
    fn drain(&mut self, out: &mut Vec<TouchEvent>) -> Result<bool, UiError> {
        let mut buf = [0u8; EVENT_SIZE * 64];
        let mut open = true;
        loop {
            // SAFETY: reading into a local buffer of the stated length.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                match e.kind() {
                    std::io::ErrorKind::WouldBlock => break,
                    std::io::ErrorKind::Interrupted => continue,
                    _ => return Err(self.err(e)),
                }
            }
            if n == 0 {
                open = false;
                break;
            }
            self.pending.extend_from_slice(&buf[..n as usize]);
        }
        let (events, used) = parse_events(&self.pending);
        self.pending.drain(..used);
        let mut raw = Vec::new();
        for ev in events {
            self.decoder.feed(ev, &mut raw);
        }
        if self.decoder.needs_resync() {
            self.resync(&mut raw);
        }
        for (phase, x, y) in raw {
            let p = self.mapper.map(x, y);
            let ev = match phase {
                Phase::Down => TouchEvent::Down { x: p.0, y: p.1 },
                Phase::Up => TouchEvent::Up { x: p.0, y: p.1 },
                Phase::Move if self.last == Some(p) => continue,
                Phase::Move => TouchEvent::Move { x: p.0, y: p.1 },
            };
            self.last = Some(p);
            out.push(ev);
        }
        Ok(open)
    }
}

impl Touch for EvdevTouch {
    fn poll(&mut self, timeout: Duration) -> Result<Vec<TouchEvent>, UiError> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            // Round up so a sub-millisecond remainder waits instead of spinning.
            let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
            if rc < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(self.err(e));
            }
            if rc == 0 {
                return Ok(out);
            }
            if pfd.revents & libc::POLLNVAL != 0 {
                return Err(self.err(std::io::Error::other("descriptor is not open")));
            }
            let open = self.drain(&mut out)?;
            if !open
                || pfd.revents & (libc::POLLERR | libc::POLLHUP) != 0
                    && pfd.revents & libc::POLLIN == 0
            {
                if out.is_empty() {
                    return Err(self.err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "input device went away",
                    )));
                }
                return Ok(out);
            }
            if !out.is_empty() || Instant::now() >= deadline {
                return Ok(out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: u16, code: u16, value: i32) -> RawEvent {
        RawEvent { kind, code, value }
    }
    const SYN: RawEvent = RawEvent {
        kind: EV_SYN,
        code: SYN_REPORT,
        value: 0,
    };

    fn decode(mode: AxisMode, evs: &[RawEvent]) -> Vec<(Phase, i32, i32)> {
        let mut d = Decoder::new(mode);
        let mut out = Vec::new();
        for &e in evs {
            d.feed(e, &mut out);
        }
        out
    }

    const TABLET: AbsRange = AbsRange { min: 0, max: 32767 };

    #[test]
    fn event_record_round_trip() {
        let mut bytes = Vec::new();
        bytes.extend(encode_event(EV_ABS, ABS_X, 16383));
        bytes.extend(encode_event(EV_KEY, BTN_LEFT, 1));
        bytes.extend(encode_event(EV_SYN, SYN_REPORT, 0));
        bytes.extend_from_slice(&[1, 2, 3]); // partial record
        let (evs, used) = parse_events(&bytes);
        assert_eq!(used, 3 * EVENT_SIZE);
        assert_eq!(
            evs,
            vec![ev(EV_ABS, ABS_X, 16383), ev(EV_KEY, BTN_LEFT, 1), SYN]
        );
        #[cfg(target_pointer_width = "64")]
        assert_eq!(EVENT_SIZE, std::mem::size_of::<libc::input_event>());
        assert_eq!(std::mem::size_of::<AbsInfo>(), 24);
    }

    #[test]
    fn tablet_click_and_drag() {
        // What QEMU's virtio-tablet sends for a click-drag-release.
        let out = decode(
            AxisMode::Single,
            &[
                ev(EV_ABS, ABS_X, 100),
                ev(EV_ABS, ABS_Y, 200),
                SYN, // hover: nothing
                ev(EV_KEY, BTN_LEFT, 1),
                SYN,
                ev(EV_ABS, ABS_X, 150),
                SYN,
                SYN, // empty frame: nothing
                ev(EV_ABS, ABS_Y, 250),
                ev(EV_KEY, BTN_LEFT, 0),
                SYN,
            ],
        );
        assert_eq!(
            out,
            vec![
                (Phase::Down, 100, 200),
                (Phase::Move, 150, 200),
                (Phase::Up, 150, 250)
            ]
        );
    }

    #[test]
    fn touchscreen_press_with_position_in_the_same_frame() {
        let out = decode(
            AxisMode::Single,
            &[
                ev(EV_ABS, ABS_X, 10),
                ev(EV_ABS, ABS_Y, 20),
                ev(EV_KEY, BTN_TOUCH, 1),
                SYN,
                ev(EV_KEY, BTN_TOUCH, 2), // autorepeat-style value: still down
                SYN,
                ev(EV_KEY, BTN_TOUCH, 0),
                SYN,
            ],
        );
        assert_eq!(out, vec![(Phase::Down, 10, 20), (Phase::Up, 10, 20)]);
    }

    #[test]
    fn tap_inside_one_frame_and_bounce() {
        let out = decode(
            AxisMode::Single,
            &[ev(EV_KEY, BTN_TOUCH, 1), ev(EV_KEY, BTN_TOUCH, 0), SYN],
        );
        assert_eq!(out, vec![(Phase::Down, 0, 0), (Phase::Up, 0, 0)]);
        let out = decode(
            AxisMode::Single,
            &[
                ev(EV_KEY, BTN_TOUCH, 1),
                SYN,
                ev(EV_KEY, BTN_TOUCH, 0),
                ev(EV_KEY, BTN_TOUCH, 1),
                SYN,
            ],
        );
        assert_eq!(
            out,
            vec![(Phase::Down, 0, 0), (Phase::Up, 0, 0), (Phase::Down, 0, 0)]
        );
    }

    #[test]
    fn multitouch_follows_slot_zero_only() {
        let out = decode(
            AxisMode::MultiTouch,
            &[
                ev(EV_ABS, ABS_MT_SLOT, 0),
                ev(EV_ABS, ABS_MT_POSITION_X, 5),
                ev(EV_ABS, ABS_MT_POSITION_Y, 6),
                ev(EV_KEY, BTN_TOUCH, 1),
                SYN,
                ev(EV_ABS, ABS_MT_SLOT, 1),
                ev(EV_ABS, ABS_MT_POSITION_X, 500),
                ev(EV_ABS, ABS_MT_POSITION_Y, 600),
                SYN, // second finger: ignored
                ev(EV_ABS, ABS_MT_SLOT, 0),
                ev(EV_ABS, ABS_MT_POSITION_X, 7),
                ev(EV_ABS, ABS_X, 9999), // emulated pointer axes ignored in MT mode
                SYN,
                ev(EV_KEY, BTN_TOUCH, 0),
                SYN,
            ],
        );
        assert_eq!(
            out,
            vec![(Phase::Down, 5, 6), (Phase::Move, 7, 6), (Phase::Up, 7, 6)]
        );
    }

    #[test]
    fn syn_dropped_discards_the_frame_and_asks_for_resync() {
        let mut d = Decoder::new(AxisMode::Single);
        let mut out = Vec::new();
        for e in [
            ev(EV_KEY, BTN_TOUCH, 1),
            SYN,
            ev(EV_SYN, SYN_DROPPED, 0),
            ev(EV_ABS, ABS_X, 99),
            ev(EV_KEY, BTN_TOUCH, 0),
            SYN,
        ] {
            d.feed(e, &mut out);
        }
        assert_eq!(out, vec![(Phase::Down, 0, 0)]);
        assert!(d.needs_resync());
        assert!(!d.needs_resync());
        d.resync(false, 40, 50, &mut out);
        assert_eq!(out.last(), Some(&(Phase::Up, 40, 50)));
        assert!(!d.pressed());
    }

    fn cfg(rotation: Rotation) -> EvdevConfig {
        EvdevConfig {
            rotation,
            ..EvdevConfig::default()
        }
    }

    #[test]
    fn qemu_tablet_scaling_inverts_qemus_own() {
        // QEMU sends abs = x * 32767 / width (integer division).
        let m = Mapper::new(&cfg(Rotation::R0), TABLET, TABLET, (800, 480));
        for x in [0u32, 1, 2, 399, 400, 401, 798, 799] {
            for y in [0u32, 1, 239, 240, 478, 479] {
                let ax = (x as i64 * 32767 / 800) as i32;
                let ay = (y as i64 * 32767 / 480) as i32;
                assert_eq!(m.map(ax, ay), (x, y), "raw {ax},{ay}");
            }
        }
        assert_eq!(m.map(32767, 32767), (799, 479));
        assert_eq!(m.map(-5, 40000), (0, 479), "clamped");
    }

    #[test]
    fn rotation_matches_the_display_sink() {
        use crate::sink::fbdev::rotate_point;
        // Logical 40x30; the panel is rotated; a touch at panel pixel (px,
        // py) must map back to the logical pixel the sink drew there.
        let (lw, lh) = (40u32, 30u32);
        for rot in [Rotation::R0, Rotation::R90, Rotation::R180, Rotation::R270] {
            let (pw, ph) = match rot {
                Rotation::R0 | Rotation::R180 => (lw, lh),
                _ => (lh, lw),
            };
            // A device whose raw units are exactly panel pixels.
            let m = Mapper::new(
                &cfg(rot),
                AbsRange {
                    min: 0,
                    max: pw as i32,
                },
                AbsRange {
                    min: 0,
                    max: ph as i32,
                },
                (lw, lh),
            );
            for (x, y) in [(0, 0), (39, 0), (0, 29), (39, 29), (7, 11)] {
                let (px, py) = rotate_point(rot, lw, lh, x, y);
                assert_eq!(m.map(px as i32, py as i32), (x, y), "{rot:?} {x},{y}");
            }
        }
    }

    #[test]
    fn rotation_by_hand() {
        // 800x480 logical; tablet at the panel's top-left corner.
        let at = |rot| Mapper::new(&cfg(rot), TABLET, TABLET, (800, 480)).map(0, 0);
        assert_eq!(at(Rotation::R0), (0, 0));
        assert_eq!(at(Rotation::R90), (0, 479)); // panel top-left = logical bottom-left
        assert_eq!(at(Rotation::R180), (799, 479));
        assert_eq!(at(Rotation::R270), (799, 0));
    }

    #[test]
    fn calibration_swap_and_invert() {
        // A resistive panel reading 200..3900 across, 3800..300 down (mirrored Y).
        let c = EvdevConfig {
            calibration: Calibration {
                min_x: Some(200),
                max_x: Some(3900),
                min_y: Some(3800),
                max_y: Some(300),
            },
            ..EvdevConfig::default()
        };
        let dev = AbsRange { min: 0, max: 4095 };
        let m = Mapper::new(&c, dev, dev, (480, 320));
        assert_eq!(m.map(200, 3800), (0, 0));
        assert_eq!(m.map(3900, 300), (479, 319));
        assert_eq!(m.map(2050, 2050), (240, 160));
        assert_eq!(m.map(0, 4095), (0, 0), "outside calibration clamps");

        // Swap: device X runs down the panel, device Y across.
        let c = EvdevConfig {
            swap_xy: true,
            ..EvdevConfig::default()
        };
        let m = Mapper::new(
            &c,
            AbsRange { min: 0, max: 100 },
            AbsRange { min: 0, max: 1000 },
            (1000, 100),
        );
        assert_eq!(m.map(25, 500), (500, 25));

        let c = EvdevConfig {
            invert_x: true,
            invert_y: true,
            ..EvdevConfig::default()
        };
        let m = Mapper::new(&c, TABLET, TABLET, (800, 480));
        assert_eq!(m.map(0, 0), (799, 479));
        assert_eq!(m.map(32767, 32767), (0, 0));

        // A degenerate range never divides by zero.
        let m = Mapper::new(
            &EvdevConfig::default(),
            AbsRange { min: 5, max: 5 },
            TABLET,
            (800, 480),
        );
        assert_eq!(m.map(5, 0), (0, 0));
    }

    #[test]
    fn classify_by_capabilities() {
        fn bits(set: &[u16], len: usize) -> Vec<u8> {
            let mut v = vec![0u8; len];
            for &n in set {
                v[usize::from(n / 8)] |= 1 << (n % 8);
            }
            v
        }
        let ev = bits(&[EV_SYN, EV_KEY, EV_ABS], 4);
        let xy = bits(&[ABS_X, ABS_Y], 8);
        let mt = bits(&[ABS_MT_SLOT, ABS_MT_POSITION_X, ABS_MT_POSITION_Y], 8);
        let left = bits(&[BTN_LEFT], 96);
        let touch = bits(&[BTN_TOUCH], 96);
        let kbd = bits(&[30, 31, 32], 96);
        assert_eq!(classify(&ev, &xy, &left), Some(AxisMode::Single)); // virtio-tablet
        assert_eq!(classify(&ev, &xy, &touch), Some(AxisMode::Single));
        assert_eq!(classify(&ev, &mt, &touch), Some(AxisMode::MultiTouch));
        assert_eq!(classify(&ev, &xy, &kbd), None);
        let rel_mouse = bits(&[EV_SYN, EV_KEY, 0x02], 4);
        assert_eq!(classify(&rel_mouse, &[0; 8], &left), None);
        assert_eq!(classify(&ev, &bits(&[ABS_X], 8), &touch), None);
        assert_eq!(classify(&[], &[], &[]), None);
    }

    #[test]
    fn config_parses() {
        let c: EvdevConfig = serde_json::from_str(
            r#"{"device": "/dev/input/event3", "rotation": "90", "swap_xy": true,
                "calibration": {"min_x": 100, "max_x": 3900}}"#,
        )
        .unwrap();
        assert_eq!(c.device, Some(PathBuf::from("/dev/input/event3")));
        assert_eq!(c.rotation, Rotation::R90);
        assert!(c.swap_xy && !c.invert_x);
        assert_eq!(c.calibration.max_x, Some(3900));
        assert_eq!(c.calibration.min_y, None);
        assert_eq!(
            serde_json::from_str::<EvdevConfig>("{}").unwrap(),
            EvdevConfig::default()
        );
        assert!(serde_json::from_str::<EvdevConfig>(r#"{"swap": true}"#).is_err());
    }

    #[test]
    fn scan_of_a_directory_without_devices_says_what_to_do() {
        let dir = std::env::temp_dir().join(format!("otc-evdev-scan-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("event0"), b"not a device").unwrap();
        let err = find_touch_device(&dir).unwrap_err();
        assert!(matches!(err, UiError::NoTouchDevice(_)), "{err}");
        assert!(err.to_string().contains("event0"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
        let err = find_touch_device(&dir).unwrap_err();
        assert!(matches!(err, UiError::TouchIo { .. }), "{err}");
    }

    fn piped(config: &EvdevConfig) -> (EvdevTouch, std::io::PipeWriter) {
        let (r, w) = std::io::pipe().unwrap();
        let info = DeviceInfo {
            path: PathBuf::from("pipe"),
            name: "test tablet".into(),
            mode: AxisMode::Single,
            x: TABLET,
            y: TABLET,
        };
        (
            EvdevTouch::from_fd(r.into(), info, config, (800, 480)).unwrap(),
            w,
        )
    }

    #[test]
    fn source_over_a_pipe() {
        use std::io::Write;
        let (mut t, mut w) = piped(&EvdevConfig::default());
        assert_eq!(t.poll(Duration::from_millis(1)).unwrap(), vec![]);
        let mut bytes = Vec::new();
        for (k, c, v) in [
            (EV_ABS, ABS_X, 16383),
            (EV_ABS, ABS_Y, 16383),
            (EV_KEY, BTN_LEFT, 1),
            (EV_SYN, SYN_REPORT, 0),
            (EV_ABS, ABS_X, 16384), // same pixel: no Move
            (EV_SYN, SYN_REPORT, 0),
            (EV_ABS, ABS_X, 32767),
            (EV_SYN, SYN_REPORT, 0),
        ] {
            bytes.extend(encode_event(k, c, v));
        }
        // Split a record across two writes: it is reassembled.
        let cut = bytes.len() - 5;
        w.write_all(&bytes[..cut]).unwrap();
        let first = t.poll(Duration::from_secs(5)).unwrap();
        assert_eq!(first, vec![TouchEvent::Down { x: 400, y: 240 }]);
        w.write_all(&bytes[cut..]).unwrap();
        w.write_all(&encode_event(EV_KEY, BTN_LEFT, 0)).unwrap();
        w.write_all(&encode_event(EV_SYN, SYN_REPORT, 0)).unwrap();
        let mut got = Vec::new();
        while got.len() < 2 {
            let more = t.poll(Duration::from_secs(5)).unwrap();
            assert!(!more.is_empty(), "timed out");
            got.extend(more);
        }
        assert_eq!(
            got,
            vec![
                TouchEvent::Move { x: 799, y: 240 },
                TouchEvent::Up { x: 799, y: 240 }
            ]
        );
        drop(w);
        assert!(matches!(
            t.poll(Duration::from_secs(5)),
            Err(UiError::TouchIo { .. })
        ));
    }
}
