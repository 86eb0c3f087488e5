//! Linux framebuffer sink: shows frames on `/dev/fb0` (or any fbdev device)
//! through a shared memory mapping.
//!
//! This is what QEMU's virtio-gpu (`-M virt -device virtio-gpu-pci`) and the
//! Raspberry Pi's DSI/HDMI outputs give. Geometry comes from the kernel with
//! `FBIOGET_VSCREENINFO` / `FBIOGET_FSCREENINFO`; RGB565 (16 bpp) and
//! XRGB8888 (32 bpp) are supported, as is any other 16/32 bpp layout whose
//! channels the kernel describes with offsets and lengths (BGR565, XBGR8888).
//!
//! The pixel work lives in [`blit`], a pure function over a byte slice with a
//! stride, so it is tested without a device. [`FbdevSink::open_file`] maps a
//! regular file with explicit [`Geometry`] (tests, docs, a poor man's
//! screenshot); [`FbdevSink::open`] maps a real device.
//!
//! ```no_run
//! use otc_ui::sink::fbdev::{FbdevConfig, FbdevSink};
//! use otc_ui::{Display, Frame, Rect, Rotation};
//!
//! let cfg = FbdevConfig { rotation: Rotation::R0, ..FbdevConfig::default() };
//! let mut fb = FbdevSink::open(&cfg)?;
//! let (w, h) = fb.size();
//! let frame = Frame::new(w, h);
//! fb.present(&frame, Rect::new(0, 0, w, h))?;
//! # Ok::<(), otc_ui::UiError>(())
//! ```

use crate::display::{Display, Frame, Rect, Rotation};
use crate::error::UiError;
use serde::Deserialize;
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Configuration of the framebuffer sink (the `[display.fbdev]` table of
/// `otc.toml`, for example `device = "/dev/fb0"`, `rotation = "90"`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FbdevConfig {
    /// Framebuffer device. Default `/dev/fb0`.
    pub device: PathBuf,
    /// Rotation of the panel relative to the UI, clockwise (`"0"`, `"90"`,
    /// `"180"`, `"270"`). Use the same value for the touch source.
    pub rotation: Rotation,
    /// Switch the console on this tty to graphics mode (`KDSETMODE
    /// KD_GRAPHICS`) while the sink is open, so the kernel's text console
    /// and its blinking cursor do not draw over the UI. Best effort: failure
    /// is ignored. Default `/dev/tty0`; set to `""` to leave the console alone.
    pub console_tty: PathBuf,
}

impl Default for FbdevConfig {
    fn default() -> Self {
        FbdevConfig {
            device: PathBuf::from("/dev/fb0"),
            rotation: Rotation::R0,
            console_tty: PathBuf::from("/dev/tty0"),
        }
    }
}

/// One colour channel of a device pixel: `length` bits starting at bit
/// `offset` of the (native-endian) pixel word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Channel {
    pub offset: u32,
    pub length: u32,
}

impl Channel {
    pub const fn new(offset: u32, length: u32) -> Self {
        Channel { offset, length }
    }
}

/// Layout of one device pixel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PixelFormat {
    /// 2 or 4.
    pub bytes_per_pixel: u32,
    pub red: Channel,
    pub green: Channel,
    pub blue: Channel,
    /// Set to all ones when present (length > 0).
    pub alpha: Channel,
}

impl PixelFormat {
    /// 16 bpp, `rrrrrggggggbbbbb`.
    pub const RGB565: PixelFormat = PixelFormat {
        bytes_per_pixel: 2,
        red: Channel::new(11, 5),
        green: Channel::new(5, 6),
        blue: Channel::new(0, 5),
        alpha: Channel::new(0, 0),
    };
    /// 32 bpp, `xxxxxxxx rrrrrrrr gggggggg bbbbbbbb`.
    pub const XRGB8888: PixelFormat = PixelFormat {
        bytes_per_pixel: 4,
        red: Channel::new(16, 8),
        green: Channel::new(8, 8),
        blue: Channel::new(0, 8),
        alpha: Channel::new(0, 0),
    };

    fn check(&self) -> Result<(), UiError> {
        let bits = self.bytes_per_pixel * 8;
        if self.bytes_per_pixel != 2 && self.bytes_per_pixel != 4 {
            return Err(UiError::Unsupported(format!(
                "{bits} bits per pixel (only 16 and 32 are supported)"
            )));
        }
        for ch in [self.red, self.green, self.blue, self.alpha] {
            if ch.length > 8 || ch.offset + ch.length > bits {
                return Err(UiError::Unsupported(format!(
                    "colour channel at bit {} length {} in a {bits}-bit pixel",
                    ch.offset, ch.length
                )));
            }
        }
        Ok(())
    }

    /// Converts one RGB565 pixel to this format's pixel word.
    #[inline]
    pub fn convert(&self, px: u16) -> u32 {
        let r5 = u32::from((px >> 11) & 0x1f);
        let g6 = u32::from((px >> 5) & 0x3f);
        let b5 = u32::from(px & 0x1f);
        let r8 = (r5 << 3) | (r5 >> 2);
        let g8 = (g6 << 2) | (g6 >> 4);
        let b8 = (b5 << 3) | (b5 >> 2);
        let put = |v8: u32, ch: Channel| -> u32 {
            if ch.length == 0 {
                0
            } else {
                (v8 >> (8 - ch.length)) << ch.offset
            }
        };
        let alpha = if self.alpha.length == 0 {
            0
        } else {
            ((1u32 << self.alpha.length) - 1) << self.alpha.offset
        };
        put(r8, self.red) | put(g8, self.green) | put(b8, self.blue) | alpha
    }
}

/// Where and how the visible panel lives in the mapped memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Panel width in device pixels (before rotation).
    pub width: u32,
    /// Panel height in device pixels.
    pub height: u32,
    /// Bytes from one row to the next (`line_length`).
    pub stride: usize,
    /// Bytes from the start of the mapping to the first visible pixel
    /// (non-zero when the kernel pans: `yoffset * stride + xoffset * bpp`).
    pub offset: usize,
    pub format: PixelFormat,
}

impl Geometry {
    /// A packed geometry (`stride = width * bpp`, no offset).
    pub fn packed(width: u32, height: u32, format: PixelFormat) -> Self {
        Geometry {
            width,
            height,
            stride: width as usize * format.bytes_per_pixel as usize,
            offset: 0,
            format,
        }
    }

    /// Bytes of memory the geometry touches (what must be mapped).
    pub fn required_len(&self) -> usize {
        if self.width == 0 || self.height == 0 {
            return self.offset;
        }
        self.offset
            + self.stride * (self.height as usize - 1)
            + self.width as usize * self.format.bytes_per_pixel as usize
    }

    /// The logical (UI) size with `rotation` applied.
    pub fn logical_size(&self, rotation: Rotation) -> (u32, u32) {
        match rotation {
            Rotation::R0 | Rotation::R180 => (self.width, self.height),
            Rotation::R90 | Rotation::R270 => (self.height, self.width),
        }
    }

    fn check(&self) -> Result<(), UiError> {
        self.format.check()?;
        if self.width == 0 || self.height == 0 {
            return Err(UiError::Unsupported(format!(
                "empty framebuffer {}x{}",
                self.width, self.height
            )));
        }
        let row = self.width as usize * self.format.bytes_per_pixel as usize;
        if self.stride < row {
            return Err(UiError::Unsupported(format!(
                "line length {} shorter than a row of {} pixels ({row} bytes)",
                self.stride, self.width
            )));
        }
        Ok(())
    }
}

/// Maps logical pixel `(x, y)` of a `lw`x`lh` logical frame to panel pixel
/// coordinates for `rotation` (the image is turned clockwise by `rotation`).
#[inline]
pub fn rotate_point(rotation: Rotation, lw: u32, lh: u32, x: u32, y: u32) -> (u32, u32) {
    match rotation {
        Rotation::R0 => (x, y),
        Rotation::R90 => (lh - 1 - y, x),
        Rotation::R180 => (lw - 1 - x, lh - 1 - y),
        Rotation::R270 => (y, lw - 1 - x),
    }
}

/// Copies `dirty` (logical coordinates, clipped to the frame) of `frame` into
/// `dst`, converting RGB565 to `geom.format` and rotating by `rotation`.
///
/// `frame` must have the logical size of `geom` under `rotation`, and `dst`
/// must hold at least [`Geometry::required_len`] bytes.
pub fn blit(
    dst: &mut [u8],
    geom: &Geometry,
    rotation: Rotation,
    frame: &Frame,
    dirty: Rect,
) -> Result<(), UiError> {
    geom.check()?;
    let (lw, lh) = geom.logical_size(rotation);
    if frame.width != lw || frame.height != lh {
        return Err(UiError::Other(format!(
            "frame is {}x{} but the display is {lw}x{lh}",
            frame.width, frame.height
        )));
    }
    if frame.pixels.len() < lw as usize * lh as usize {
        return Err(UiError::Other(format!(
            "frame has {} pixels, {lw}x{lh} needs {}",
            frame.pixels.len(),
            lw as usize * lh as usize
        )));
    }
    if dst.len() < geom.required_len() {
        return Err(UiError::Other(format!(
            "framebuffer memory is {} bytes, the geometry needs {}",
            dst.len(),
            geom.required_len()
        )));
    }
    let x0 = dirty.x.min(lw);
    let y0 = dirty.y.min(lh);
    let x1 = dirty.x.saturating_add(dirty.w).min(lw);
    let y1 = dirty.y.saturating_add(dirty.h).min(lh);
    if x0 >= x1 || y0 >= y1 {
        return Ok(());
    }
    let bpp = geom.format.bytes_per_pixel as usize;
    let fmt = geom.format;
    let identity = rotation == Rotation::R0 && fmt == PixelFormat::RGB565;
    for y in y0..y1 {
        let src_row = &frame.pixels[y as usize * lw as usize..][..lw as usize];
        if identity {
            let start = geom.offset + y as usize * geom.stride + x0 as usize * 2;
            let out = &mut dst[start..start + (x1 - x0) as usize * 2];
            for (o, &px) in out
                .chunks_exact_mut(2)
                .zip(&src_row[x0 as usize..x1 as usize])
            {
                o.copy_from_slice(&px.to_ne_bytes());
            }
            continue;
        }
        for x in x0..x1 {
            let (dx, dy) = rotate_point(rotation, lw, lh, x, y);
            let at = geom.offset + dy as usize * geom.stride + dx as usize * bpp;
            let v = fmt.convert(src_row[x as usize]);
            if bpp == 2 {
                dst[at..at + 2].copy_from_slice(&(v as u16).to_ne_bytes());
            } else {
                dst[at..at + 4].copy_from_slice(&v.to_ne_bytes());
            }
        }
    }
    Ok(())
}

// Kernel ABI (include/uapi/linux/fb.h).
const FBIOGET_VSCREENINFO: u32 = 0x4600;
const FBIOGET_FSCREENINFO: u32 = 0x4602;
// include/uapi/linux/kd.h
const KDSETMODE: u32 = 0x4B3A;
const KD_TEXT: libc::c_int = 0;
const KD_GRAPHICS: libc::c_int = 1;

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct FbBitfield {
    offset: u32,
    length: u32,
    msb_right: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct FbVarScreeninfo {
    xres: u32,
    yres: u32,
    xres_virtual: u32,
    yres_virtual: u32,
    xoffset: u32,
    yoffset: u32,
    bits_per_pixel: u32,
    grayscale: u32,
    red: FbBitfield,
    green: FbBitfield,
    blue: FbBitfield,
    transp: FbBitfield,
    nonstd: u32,
    activate: u32,
    height: u32,
    width: u32,
    accel_flags: u32,
    pixclock: u32,
    left_margin: u32,
    right_margin: u32,
    upper_margin: u32,
    lower_margin: u32,
    hsync_len: u32,
    vsync_len: u32,
    sync: u32,
    vmode: u32,
    rotate: u32,
    colorspace: u32,
    reserved: [u32; 4],
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct FbFixScreeninfo {
    id: [u8; 16],
    smem_start: libc::c_ulong,
    smem_len: u32,
    type_: u32,
    type_aux: u32,
    visual: u32,
    xpanstep: u16,
    ypanstep: u16,
    ywrapstep: u16,
    line_length: u32,
    mmio_start: libc::c_ulong,
    mmio_len: u32,
    accel: u32,
    capabilities: u16,
    reserved: [u16; 2],
}

fn geometry_from(var: &FbVarScreeninfo, fix: &FbFixScreeninfo) -> Result<Geometry, UiError> {
    let ch = |b: FbBitfield| Channel::new(b.offset, b.length);
    if var.grayscale != 0 || var.nonstd != 0 {
        return Err(UiError::Unsupported(
            "grayscale or non-standard pixel format".into(),
        ));
    }
    if var.bits_per_pixel != 16 && var.bits_per_pixel != 32 {
        return Err(UiError::Unsupported(format!(
            "{} bits per pixel (only 16 and 32 are supported)",
            var.bits_per_pixel
        )));
    }
    let bpp = var.bits_per_pixel / 8;
    let geom = Geometry {
        width: var.xres,
        height: var.yres,
        stride: fix.line_length as usize,
        offset: var.yoffset as usize * fix.line_length as usize
            + var.xoffset as usize * bpp as usize,
        format: PixelFormat {
            bytes_per_pixel: bpp,
            red: ch(var.red),
            green: ch(var.green),
            blue: ch(var.blue),
            alpha: ch(var.transp),
        },
    };
    geom.check()?;
    Ok(geom)
}

/// Puts a virtual terminal in graphics mode and back to text mode on drop.
struct ConsoleGuard(File);

impl ConsoleGuard {
    fn enter(tty: &Path) -> Option<Self> {
        if tty.as_os_str().is_empty() {
            return None;
        }
        let f = OpenOptions::new().read(true).write(true).open(tty).ok()?;
        // SAFETY: KDSETMODE takes an int argument by value; the fd is valid.
        let rc = unsafe { libc::ioctl(f.as_raw_fd(), KDSETMODE as _, KD_GRAPHICS) };
        (rc == 0).then_some(ConsoleGuard(f))
    }
}

impl Drop for ConsoleGuard {
    fn drop(&mut self) {
        // SAFETY: as in `enter`.
        unsafe { libc::ioctl(self.0.as_raw_fd(), KDSETMODE as _, KD_TEXT) };
    }
}

/// The framebuffer sink. See the module documentation.
pub struct FbdevSink {
    map: memmap2::MmapMut,
    geom: Geometry,
    rotation: Rotation,
    path: String,
    _console: Option<ConsoleGuard>,
    _file: File,
}

impl std::fmt::Debug for FbdevSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FbdevSink")
            .field("path", &self.path)
            .field("geometry", &self.geom)
            .field("rotation", &self.rotation)
            .finish()
    }
}

impl FbdevSink {
    /// Opens a framebuffer device, reads its geometry from the kernel and
    /// maps its memory.
    pub fn open(config: &FbdevConfig) -> Result<Self, UiError> {
        let path = config.device.display().to_string();
        let io = |source: std::io::Error| UiError::DisplayIo {
            path: path.clone(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&config.device)
            .map_err(io)?;
        let mut var = FbVarScreeninfo::default();
        let mut fix = FbFixScreeninfo::default();
        // SAFETY: both ioctls write exactly one struct of the kernel's layout,
        // which the `repr(C)` structs above reproduce; the fd is valid.
        let rc = unsafe {
            libc::ioctl(
                file.as_raw_fd(),
                FBIOGET_VSCREENINFO as _,
                &mut var as *mut FbVarScreeninfo,
            )
        };
        if rc != 0 {
            return Err(io(std::io::Error::other(format!(
                "FBIOGET_VSCREENINFO failed ({}); is this a framebuffer device?",
                std::io::Error::last_os_error()
            ))));
        }
        // SAFETY: as above.
        let rc = unsafe {
            libc::ioctl(
                file.as_raw_fd(),
                FBIOGET_FSCREENINFO as _,
                &mut fix as *mut FbFixScreeninfo,
            )
        };
        if rc != 0 {
            return Err(io(std::io::Error::other(format!(
                "FBIOGET_FSCREENINFO failed ({})",
                std::io::Error::last_os_error()
            ))));
        }
        let geom = geometry_from(&var, &fix)?;
        let len = (fix.smem_len as usize).max(geom.required_len());
        if (fix.smem_len as usize) < geom.required_len() {
            return Err(UiError::Unsupported(format!(
                "{path}: framebuffer memory is {} bytes, {}x{} needs {}",
                fix.smem_len,
                geom.width,
                geom.height,
                geom.required_len()
            )));
        }
        // SAFETY: a shared mapping of device memory; nothing else in this
        // process maps it, and the kernel keeps it valid while `file` lives.
        let map = unsafe { memmap2::MmapOptions::new().len(len).map_mut(&file) }.map_err(io)?;
        let console = ConsoleGuard::enter(&config.console_tty);
        Ok(FbdevSink {
            map,
            geom,
            rotation: config.rotation,
            path,
            _console: console,
            _file: file,
        })
    }

    /// Maps a regular file as if it were a framebuffer of geometry `geom`,
    /// growing it if it is too short. For tests and documentation.
    pub fn open_file(path: &Path, geom: Geometry, rotation: Rotation) -> Result<Self, UiError> {
        geom.check()?;
        let name = path.display().to_string();
        let io = |source: std::io::Error| UiError::DisplayIo {
            path: name.clone(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io)?;
        let need = geom.required_len() as u64;
        if file.metadata().map_err(io)?.len() < need {
            file.set_len(need).map_err(io)?;
        }
        // SAFETY: a shared mapping of a file this process just opened; other
        // processes changing the file at the same time only change pixels.
        let map = unsafe {
            memmap2::MmapOptions::new()
                .len(need as usize)
                .map_mut(&file)
        }
        .map_err(io)?;
        Ok(FbdevSink {
            map,
            geom,
            rotation,
            path: name,
            _console: None,
            _file: file,
        })
    }

    /// The device geometry (panel size before rotation, stride, format).
    pub fn geometry(&self) -> Geometry {
        self.geom
    }

    /// The configured rotation.
    pub fn rotation(&self) -> Rotation {
        self.rotation
    }

    /// Writes mapped memory back to the file (only useful for regular files).
    pub fn flush(&self) -> Result<(), UiError> {
        self.map.flush().map_err(|source| UiError::DisplayIo {
            path: self.path.clone(),
            source,
        })
    }
}

impl Display for FbdevSink {
    fn size(&self) -> (u32, u32) {
        self.geom.logical_size(self.rotation)
    }

    fn present(&mut self, frame: &Frame, dirty: Rect) -> Result<(), UiError> {
        blit(&mut self.map, &self.geom, self.rotation, frame, dirty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RED: u16 = 0xF800;
    const GREEN: u16 = 0x07E0;
    const BLUE: u16 = 0x001F;
    const WHITE: u16 = 0xFFFF;
    const GREY: u16 = 0x8410; // r5=16 g6=32 b5=16
    const BLACK: u16 = 0x0000;

    /// Logical 3x2 frame:
    /// ```text
    /// RED   GREEN BLUE
    /// WHITE GREY  BLACK
    /// ```
    fn frame3x2() -> Frame {
        Frame {
            width: 3,
            height: 2,
            pixels: vec![RED, GREEN, BLUE, WHITE, GREY, BLACK],
        }
    }

    fn read16(buf: &[u8], g: &Geometry, x: u32, y: u32) -> u16 {
        let at = g.offset + y as usize * g.stride + x as usize * 2;
        u16::from_ne_bytes([buf[at], buf[at + 1]])
    }

    fn read32(buf: &[u8], g: &Geometry, x: u32, y: u32) -> u32 {
        let at = g.offset + y as usize * g.stride + x as usize * 4;
        u32::from_ne_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
    }

    fn panel16(buf: &[u8], g: &Geometry) -> Vec<Vec<u16>> {
        (0..g.height)
            .map(|y| (0..g.width).map(|x| read16(buf, g, x, y)).collect())
            .collect()
    }

    fn panel32(buf: &[u8], g: &Geometry) -> Vec<Vec<u32>> {
        (0..g.height)
            .map(|y| (0..g.width).map(|x| read32(buf, g, x, y)).collect())
            .collect()
    }

    /// Panel geometry for a rotation, with padding in stride and an offset,
    /// so that stride and offset bugs show.
    fn geom_for(rot: Rotation, fmt: PixelFormat) -> Geometry {
        let (w, h) = match rot {
            Rotation::R0 | Rotation::R180 => (3, 2),
            Rotation::R90 | Rotation::R270 => (2, 3),
        };
        let bpp = fmt.bytes_per_pixel as usize;
        Geometry {
            width: w,
            height: h,
            stride: w as usize * bpp + 6,
            offset: 10,
            format: fmt,
        }
    }

    fn run(rot: Rotation, fmt: PixelFormat) -> (Vec<u8>, Geometry) {
        let g = geom_for(rot, fmt);
        let mut buf = vec![0xAAu8; g.required_len() + 7];
        blit(&mut buf, &g, rot, &frame3x2(), Rect::new(0, 0, 3, 2)).unwrap();
        // Bytes outside the visible area are untouched.
        assert!(buf[..g.offset].iter().all(|&b| b == 0xAA));
        assert!(buf[g.required_len()..].iter().all(|&b| b == 0xAA));
        for y in 0..g.height as usize {
            let pad =
                g.offset + y * g.stride + g.width as usize * g.format.bytes_per_pixel as usize;
            let end = (pad + 6).min(buf.len());
            if y + 1 < g.height as usize {
                assert!(buf[pad..end].iter().all(|&b| b == 0xAA), "row padding");
            }
        }
        (buf, g)
    }

    #[test]
    fn rgb565_all_rotations() {
        let f = PixelFormat::RGB565;
        let (b, g) = run(Rotation::R0, f);
        assert_eq!(
            panel16(&b, &g),
            vec![vec![RED, GREEN, BLUE], vec![WHITE, GREY, BLACK]]
        );
        // 90° clockwise: the left column (RED, WHITE) becomes the top row,
        // read right to left.
        let (b, g) = run(Rotation::R90, f);
        assert_eq!(
            panel16(&b, &g),
            vec![vec![WHITE, RED], vec![GREY, GREEN], vec![BLACK, BLUE]]
        );
        let (b, g) = run(Rotation::R180, f);
        assert_eq!(
            panel16(&b, &g),
            vec![vec![BLACK, GREY, WHITE], vec![BLUE, GREEN, RED]]
        );
        let (b, g) = run(Rotation::R270, f);
        assert_eq!(
            panel16(&b, &g),
            vec![vec![BLUE, BLACK], vec![GREEN, GREY], vec![RED, WHITE]]
        );
    }

    #[test]
    fn xrgb8888_all_rotations() {
        let f = PixelFormat::XRGB8888;
        let (r, gr, bl, wh, gy, bk) = (
            0x00FF_0000u32,
            0x0000_FF00,
            0x0000_00FF,
            0x00FF_FFFF,
            0x0084_8284, // r8 = 16<<3|16>>2 = 0x84, g8 = 32<<2|32>>4 = 0x82
            0,
        );
        let (b, g) = run(Rotation::R0, f);
        assert_eq!(panel32(&b, &g), vec![vec![r, gr, bl], vec![wh, gy, bk]]);
        let (b, g) = run(Rotation::R90, f);
        assert_eq!(
            panel32(&b, &g),
            vec![vec![wh, r], vec![gy, gr], vec![bk, bl]]
        );
        let (b, g) = run(Rotation::R180, f);
        assert_eq!(panel32(&b, &g), vec![vec![bk, gy, wh], vec![bl, gr, r]]);
        let (b, g) = run(Rotation::R270, f);
        assert_eq!(
            panel32(&b, &g),
            vec![vec![bl, bk], vec![gr, gy], vec![r, wh]]
        );
        // Little-endian byte order in memory on this machine: B G R X.
        if cfg!(target_endian = "little") {
            let (b, g) = run(Rotation::R0, f);
            assert_eq!(&b[g.offset..g.offset + 4], &[0x00, 0x00, 0xFF, 0x00]);
        }
    }

    #[test]
    fn other_channel_layouts() {
        let bgr565 = PixelFormat {
            red: Channel::new(0, 5),
            blue: Channel::new(11, 5),
            ..PixelFormat::RGB565
        };
        assert_eq!(bgr565.convert(RED), 0x001F);
        assert_eq!(bgr565.convert(BLUE), 0xF800);
        let argb = PixelFormat {
            alpha: Channel::new(24, 8),
            ..PixelFormat::XRGB8888
        };
        assert_eq!(argb.convert(BLACK), 0xFF00_0000);
        assert_eq!(argb.convert(GREEN), 0xFF00_FF00);
        // RGB565 converts to itself.
        for px in [RED, GREEN, BLUE, WHITE, GREY, BLACK, 0x1234, 0xBEEF] {
            assert_eq!(PixelFormat::RGB565.convert(px), u32::from(px));
        }
    }

    #[test]
    fn only_dirty_rect_is_written() {
        for rot in [Rotation::R0, Rotation::R90, Rotation::R180, Rotation::R270] {
            for fmt in [PixelFormat::RGB565, PixelFormat::XRGB8888] {
                let g = geom_for(rot, fmt);
                let mut buf = vec![0u8; g.required_len()];
                let mut frame = Frame::new(3, 2);
                frame.pixels.fill(WHITE);
                // Only logical pixel (2, 1) is dirty.
                blit(&mut buf, &g, rot, &frame, Rect::new(2, 1, 1, 1)).unwrap();
                let (dx, dy) = rotate_point(rot, 3, 2, 2, 1);
                let white = fmt.convert(WHITE);
                for y in 0..g.height {
                    for x in 0..g.width {
                        let v = if fmt.bytes_per_pixel == 2 {
                            u32::from(read16(&buf, &g, x, y))
                        } else {
                            read32(&buf, &g, x, y)
                        };
                        let want = if (x, y) == (dx, dy) { white } else { 0 };
                        assert_eq!(v, want, "{rot:?} {fmt:?} at {x},{y}");
                    }
                }
            }
        }
    }

    #[test]
    fn dirty_rect_is_clipped_and_bad_input_is_an_error() {
        let g = Geometry::packed(3, 2, PixelFormat::RGB565);
        let mut buf = vec![0u8; g.required_len()];
        // Overflowing rect: clipped, no panic.
        blit(
            &mut buf,
            &g,
            Rotation::R0,
            &frame3x2(),
            Rect::new(1, 1, u32::MAX, u32::MAX),
        )
        .unwrap();
        assert_eq!(read16(&buf, &g, 1, 1), GREY);
        assert_eq!(read16(&buf, &g, 0, 0), 0);
        // Empty and out-of-range rects do nothing.
        blit(
            &mut buf,
            &g,
            Rotation::R0,
            &frame3x2(),
            Rect::new(5, 5, 1, 1),
        )
        .unwrap();
        // Wrong frame size.
        assert!(
            blit(
                &mut buf,
                &g,
                Rotation::R90,
                &frame3x2(),
                Rect::new(0, 0, 3, 2)
            )
            .is_err()
        );
        // Too little memory.
        let mut short = vec![0u8; 4];
        assert!(
            blit(
                &mut short,
                &g,
                Rotation::R0,
                &frame3x2(),
                Rect::new(0, 0, 3, 2)
            )
            .is_err()
        );
        // Unsupported depth.
        let g24 = Geometry {
            format: PixelFormat {
                bytes_per_pixel: 3,
                ..PixelFormat::XRGB8888
            },
            ..g
        };
        assert!(
            blit(
                &mut buf,
                &g24,
                Rotation::R0,
                &frame3x2(),
                Rect::new(0, 0, 3, 2)
            )
            .is_err()
        );
    }

    #[test]
    fn geometry_from_kernel_structs() {
        let var = FbVarScreeninfo {
            xres: 800,
            yres: 480,
            xres_virtual: 800,
            yres_virtual: 960,
            yoffset: 480,
            bits_per_pixel: 32,
            red: FbBitfield {
                offset: 16,
                length: 8,
                msb_right: 0,
            },
            green: FbBitfield {
                offset: 8,
                length: 8,
                msb_right: 0,
            },
            blue: FbBitfield {
                offset: 0,
                length: 8,
                msb_right: 0,
            },
            ..FbVarScreeninfo::default()
        };
        let fix = FbFixScreeninfo {
            line_length: 3200,
            smem_len: 3200 * 960,
            ..FbFixScreeninfo::default()
        };
        let g = geometry_from(&var, &fix).unwrap();
        assert_eq!(g.format, PixelFormat::XRGB8888);
        assert_eq!(
            (g.width, g.height, g.stride, g.offset),
            (800, 480, 3200, 480 * 3200)
        );
        assert_eq!(g.logical_size(Rotation::R90), (480, 800));
        let bad = FbVarScreeninfo {
            bits_per_pixel: 24,
            ..var
        };
        assert!(geometry_from(&bad, &fix).is_err());
        // Struct sizes match the kernel ABI.
        assert_eq!(std::mem::size_of::<FbVarScreeninfo>(), 160);
        let ulong = std::mem::size_of::<libc::c_ulong>();
        assert_eq!(
            std::mem::size_of::<FbFixScreeninfo>(),
            if ulong == 8 { 80 } else { 68 }
        );
    }

    #[test]
    fn sink_over_a_regular_file() {
        let dir = std::env::temp_dir().join(format!("otc-fbdev-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("fb.raw");
        let _ = std::fs::remove_file(&path);
        let g = Geometry::packed(2, 3, PixelFormat::XRGB8888);
        let mut sink = FbdevSink::open_file(&path, g, Rotation::R90).unwrap();
        assert_eq!(sink.size(), (3, 2));
        sink.present(&frame3x2(), Rect::new(0, 0, 3, 2)).unwrap();
        sink.flush().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 2 * 3 * 4);
        assert_eq!(panel32(&bytes, &g)[0], vec![0x00FF_FFFF, 0x00FF_0000]);
        // The real-device path reports a clear error on a non-framebuffer.
        let cfg = FbdevConfig {
            device: path.clone(),
            console_tty: PathBuf::new(),
            ..FbdevConfig::default()
        };
        let err = FbdevSink::open(&cfg).unwrap_err().to_string();
        assert!(err.contains("FBIOGET_VSCREENINFO"), "{err}");
        drop(sink);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn config_parses_from_toml_like_json() {
        let c: FbdevConfig =
            serde_json::from_str(r#"{"device": "/dev/fb1", "rotation": "270"}"#).unwrap();
        assert_eq!(c.device, PathBuf::from("/dev/fb1"));
        assert_eq!(c.rotation, Rotation::R270);
        assert_eq!(c.console_tty, PathBuf::from("/dev/tty0"));
        let d: FbdevConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(d, FbdevConfig::default());
        assert!(serde_json::from_str::<FbdevConfig>(r#"{"rotation": "45"}"#).is_err());
        assert!(serde_json::from_str::<FbdevConfig>(r#"{"colour": 1}"#).is_err());
    }
}
