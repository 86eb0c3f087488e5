//! Hardware-backend integration: a QEMU-style virtio-tablet event stream fed
//! through a pipe into the evdev source, checked against where the fbdev sink
//! draws, for every rotation. (No `/dev/uinput` on the build machine, so the
//! device layer itself is covered by unit tests of its pure parts.)
#![cfg(target_os = "linux")]

use otc_ui::sink::fbdev::{FbdevSink, Geometry, PixelFormat};
use otc_ui::source::evdev::{
    ABS_X, ABS_Y, AbsRange, AxisMode, BTN_LEFT, DeviceInfo, EV_ABS, EV_KEY, EV_SYN, EvdevConfig,
    EvdevTouch, SYN_REPORT, encode_event,
};
use otc_ui::{Display, Frame, Rect, Rotation, Touch, TouchEvent};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

const MARK: u16 = 0xF800;

/// Where on the panel (device pixels) the sink draws logical pixel (x, y).
fn panel_pixel_of(rotation: Rotation, logical: (u32, u32), x: u32, y: u32) -> (u32, u32) {
    let (pw, ph) = match rotation {
        Rotation::R0 | Rotation::R180 => logical,
        _ => (logical.1, logical.0),
    };
    let dir = std::env::temp_dir().join(format!("otc-hw-evdev-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("fb-{rotation:?}.raw"));
    let _ = std::fs::remove_file(&path);
    let geom = Geometry::packed(pw, ph, PixelFormat::RGB565);
    let mut sink = FbdevSink::open_file(&path, geom, rotation).unwrap();
    assert_eq!(sink.size(), logical);
    let mut frame = Frame::new(logical.0, logical.1);
    frame.pixels[(y * logical.0 + x) as usize] = MARK;
    sink.present(&frame, Rect::new(0, 0, logical.0, logical.1))
        .unwrap();
    sink.flush().unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let at = bytes
        .chunks_exact(2)
        .position(|p| u16::from_ne_bytes([p[0], p[1]]) == MARK)
        .unwrap() as u32;
    (at % pw, at / pw)
}

#[test]
fn a_tablet_click_lands_where_the_sink_drew() {
    let logical = (800, 480);
    for rotation in [Rotation::R0, Rotation::R90, Rotation::R180, Rotation::R270] {
        let (pw, ph) = match rotation {
            Rotation::R0 | Rotation::R180 => logical,
            _ => (logical.1, logical.0),
        };
        let cfg = EvdevConfig {
            rotation,
            ..EvdevConfig::default()
        };
        let (r, mut w) = std::io::pipe().unwrap();
        let info = DeviceInfo {
            path: PathBuf::from("virtio-tablet (pipe)"),
            name: "QEMU Virtio Tablet".into(),
            mode: AxisMode::Single,
            x: AbsRange { min: 0, max: 32767 },
            y: AbsRange { min: 0, max: 32767 },
        };
        let mut touch = EvdevTouch::from_fd(r.into(), info, &cfg, logical).unwrap();
        for (x, y) in [
            (0, 0),
            (799, 0),
            (0, 479),
            (799, 479),
            (123, 456),
            (400, 240),
        ] {
            let (px, py) = panel_pixel_of(rotation, logical, x, y);
            // QEMU's scaling of a host click at panel pixel (px, py).
            let ax = (i64::from(px) * 32767 / i64::from(pw)) as i32;
            let ay = (i64::from(py) * 32767 / i64::from(ph)) as i32;
            let mut bytes = Vec::new();
            for (k, c, v) in [
                (EV_ABS, ABS_X, ax),
                (EV_ABS, ABS_Y, ay),
                (EV_SYN, SYN_REPORT, 0),
                (EV_KEY, BTN_LEFT, 1),
                (EV_SYN, SYN_REPORT, 0),
                (EV_KEY, BTN_LEFT, 0),
                (EV_SYN, SYN_REPORT, 0),
            ] {
                bytes.extend(encode_event(k, c, v));
            }
            w.write_all(&bytes).unwrap();
            let mut got = Vec::new();
            while got.len() < 2 {
                let more = touch.poll(Duration::from_secs(5)).unwrap();
                assert!(!more.is_empty(), "no events for {rotation:?} {x},{y}");
                got.extend(more);
            }
            assert_eq!(
                got,
                vec![TouchEvent::Down { x, y }, TouchEvent::Up { x, y }],
                "{rotation:?}: logical {x},{y} drawn at panel {px},{py}"
            );
        }
    }
}

#[test]
fn opening_without_input_devices_explains() {
    // The real `/dev/input`, where a machine has none.
    if !std::path::Path::new("/dev/input").exists() {
        let err = EvdevTouch::open(&EvdevConfig::default(), (800, 480)).unwrap_err();
        assert!(err.to_string().contains("/dev/input"), "{err}");
    }
    // On every machine: an input directory that is missing, then one
    // without event devices. Each error names the directory, and the
    // second says what to check.
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("input");
    let named = input.display().to_string();
    let open = || EvdevTouch::open_in(&EvdevConfig::default(), (800, 480), &input).unwrap_err();
    let err = open();
    assert!(err.to_string().contains(&named), "{err}");
    std::fs::create_dir(&input).unwrap();
    let err = open();
    assert!(err.to_string().contains(&named), "{err}");
    assert!(err.to_string().contains("touch driver"), "{err}");
}
