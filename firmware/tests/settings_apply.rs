//! Issue 18, the screen settings applied: the rotation and the touch
//! correction chosen in Settings take effect at once and from the next
//! start (the lock screen included), kept in the clear `DIR/device.toml`
//! (`otc_device::clear_settings`). Real devices on memory displays, real
//! key files, taps found by label in the screen trace and sent where a
//! finger would touch the panel (`ScreenTrace::panel_point`), plus, for
//! the touch tests, a panel that reports every touch off by a fixed
//! offset from a chosen moment on.

mod common;

use common::device::WALL;
use otc_device::clear_settings::ClearSettings;
use otc_device::device::{Running, StartOptions};
use otc_device::lock::{LockOptions, Settings};
use otc_device::pad::vault;
use otc_device::pad::vfs::RealFs;
use otc_device::platform::TestPlatform;
use otc_ui::sink::memory::MemoryDisplay;
use otc_ui::source::scripted::{ScriptedTouch, TouchScript};
use otc_ui::{ScreenTrace, TraceButton};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

const PASS: &str = "lantern gravel oyster 73 mingle";

fn encrypted_dir(dir: &Path, owner: &str) {
    otc_device::PadStore::open_dir(dir)
        .expect("make the data directory")
        .close()
        .expect("close it");
    let key = vault::create(&RealFs, dir, PASS.as_bytes(), &vault::KdfParams::TEST)
        .expect("make the key file");
    let mut s = Settings::new(owner);
    s.idle_lock_seconds = 0;
    s.save(dir, &key).expect("write the settings");
}

struct Dev {
    dir: PathBuf,
    running: Option<Running>,
    script: TouchScript,
    /// The panel's error: every tap is reported this far off (x, y).
    off: (AtomicI64, AtomicI64),
}

impl Dev {
    fn start(dir: &Path) -> Dev {
        Dev::start_with(dir, false)
    }

    /// With `first_boot`: an empty directory starts with the setup.
    fn start_with(dir: &Path, first_boot: bool) -> Dev {
        let platform = TestPlatform::new(WALL, 0);
        let (display, _pixels) = MemoryDisplay::new(800, 480);
        let (touch, script) = ScriptedTouch::new();
        let running = otc_device::device::start(
            dir,
            StartOptions {
                lock: LockOptions {
                    kdf: vault::KdfParams::TEST,
                    first_boot,
                    ..Default::default()
                },
                ..otc_testkit::start_options("")
            },
            Box::new(display),
            Some(Box::new(touch)),
            Arc::new(platform),
        )
        .expect("start the device");
        Dev {
            dir: dir.to_path_buf(),
            running: Some(running),
            script,
            off: (AtomicI64::new(0), AtomicI64::new(0)),
        }
    }

    fn restart(mut self) -> Dev {
        self.running.take().expect("running").stop().expect("stop");
        Dev::start(&self.dir.clone())
    }

    fn running(&self) -> &Running {
        self.running.as_ref().expect("running")
    }

    fn wait(&self, what: &str, pred: impl Fn(&ScreenTrace) -> bool) -> ScreenTrace {
        otc_testkit::wait_screen(&self.running().ui.trace, what, pred)
    }

    fn on(&self, screen: &str) -> ScreenTrace {
        self.wait(&format!("the {screen} screen"), |t| t.screen == screen)
    }

    /// From now on the panel reports every touch `(dx, dy)` off.
    fn panel_off_by(&self, dx: i64, dy: i64) {
        self.off.0.store(dx, Ordering::SeqCst);
        self.off.1.store(dy, Ordering::SeqCst);
    }

    /// Where the panel reports a finger on `b` (its turned place when the
    /// screen is upside down, plus the panel's error).
    fn reported(&self, t: &ScreenTrace, b: &TraceButton) -> (u32, u32) {
        let (x, y) = t.panel_point(b.center());
        let dx = self.off.0.load(Ordering::SeqCst);
        let dy = self.off.1.load(Ordering::SeqCst);
        (
            (i64::from(x) + dx).max(0) as u32,
            (i64::from(y) + dy).max(0) as u32,
        )
    }

    /// A finger on the button `label`; returns where the panel said.
    fn tap(&self, label: &str) -> (u32, u32) {
        let t = self.running().ui.trace.get();
        let b = t
            .button(label)
            .unwrap_or_else(|| panic!("no button {label:?} on screen: {t:#?}"))
            .clone();
        let (x, y) = self.reported(&t, &b);
        self.script.tap(x, y);
        (x, y)
    }

    fn type_done(&self, title: &str, text: &str) {
        self.wait(&format!("the keyboard for {title}"), |t| {
            t.screen == "keyboard" && t.texts.first().is_some_and(|x| x == title)
        });
        for c in text.chars() {
            match c {
                ' ' => self.tap("kb-space"),
                c => self.tap(&format!("kb-char-{c}")),
            };
        }
        let n = text.chars().count().min(30);
        self.wait("the text typed", |t| {
            t.texts.get(1).is_some_and(|x| x.chars().count() >= n)
        });
        self.tap("Done");
    }

    fn unlock(&self) {
        self.on("lock");
        self.tap("Unlock");
        self.type_done("Passphrase", PASS);
        self.home("Alice");
    }

    fn home(&self, owner: &str) -> ScreenTrace {
        self.wait(&format!("{owner}'s home"), |t| {
            t.screen == "home" && t.has_text(owner)
        })
    }

    /// Home → About → Settings → Network and screen.
    fn network_and_screen(&self) {
        self.tap("About");
        self.wait("About's Settings", |t| t.button("Settings").is_some());
        self.tap("Settings");
        self.wait("the settings", |t| t.button("Network and screen").is_some());
        self.tap("Network and screen");
        self.on("settings-network");
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            let _ = r.stop();
        }
    }
}

/// The `setting_changed` entries' (setting, value) so far.
fn settings_changed(dir: &Path) -> Vec<(String, String)> {
    let key = vault::unlock(&RealFs, dir, PASS.as_bytes(), 10).expect("the key");
    otc_device::audit::check_in(&otc_device::audit::Files::real(dir, Some(&key)))
        .expect("read the audit log")
        .entries
        .iter()
        .filter_map(|e| match &e.event {
            otc_device::audit::Event::SettingChanged { setting, value } => {
                Some((setting.clone(), value.clone()))
            }
            _ => None,
        })
        .collect()
}

/// Whether any button of `t` covers logical `(x, y)`.
fn hits_a_button(t: &ScreenTrace, (x, y): (u32, u32)) -> bool {
    t.buttons
        .iter()
        .any(|b| x >= b.x && x < b.x + b.w && y >= b.y && y < b.y + b.h)
}

/// Upside down in Settings turns the screen at once (the trace says so and
/// taps on the turned places work), is written to `device.toml` and
/// audited, and holds from the first screen of the next start: the lock
/// screen is drawn upside down and unlocks by taps on the turned places.
#[test]
fn upside_down_applies_at_once_and_from_the_lock_screen_of_the_next_start() {
    let tmp = tempfile::tempdir().expect("tempdir");
    encrypted_dir(tmp.path(), "Alice");
    let dev = Dev::start(tmp.path());
    assert_eq!(dev.on("lock").upside_down, None);
    dev.unlock();
    dev.network_and_screen();
    dev.tap("Rotation");
    let t = dev.on("settings-rotation");
    assert!(t.has_text("at once"), "the step says what happens: {t:#?}");
    dev.tap("Upside down");
    let t = dev.wait("the screen turned", |t| t.upside_down.is_some());
    assert_eq!(t.upside_down, Some([800, 480]));
    assert_eq!(
        ClearSettings::load(tmp.path())
            .expect("device.toml")
            .rotation,
        180
    );
    // Taps land on the turned places: Back from the settings page.
    dev.on("settings");
    dev.tap("Back");
    dev.wait("About, still upside down", |t| {
        t.screen == "about" && t.upside_down.is_some()
    });
    assert!(
        settings_changed(tmp.path()).contains(&("rotation".into(), "180°".into())),
        "{:?}",
        settings_changed(tmp.path())
    );

    let dev = dev.restart();
    let t = dev.on("lock");
    assert_eq!(t.upside_down, Some([800, 480]), "the lock screen is turned");
    dev.unlock();
    // Back the right way up.
    dev.network_and_screen();
    dev.tap("Rotation");
    dev.on("settings-rotation");
    dev.tap("Upside down");
    dev.wait("the screen upright again", |t| {
        t.screen == "settings" && t.upside_down.is_none()
    });
    assert_eq!(
        ClearSettings::load(tmp.path())
            .expect("device.toml")
            .rotation,
        0
    );
}

/// The touch check on a panel that reports every touch 40 px right and 70
/// px low: before it, a finger on Back misses; the three targets, tapped
/// as that panel reports them, fit the correction; from then on (and
/// after a restart, on the lock screen) every finger lands where it is
/// aimed.
#[test]
fn offset_taps_on_the_targets_fit_a_correction_that_makes_buttons_tappable() {
    let tmp = tempfile::tempdir().expect("tempdir");
    encrypted_dir(tmp.path(), "Alice");
    let dev = Dev::start(tmp.path());
    dev.unlock();
    dev.tap("About");
    dev.wait("About's Settings", |t| t.button("Settings").is_some());
    dev.tap("Settings");
    let t = dev.wait("the settings", |t| t.button("Network and screen").is_some());

    // The panel goes off. A finger on Back is reported where no button is.
    dev.panel_off_by(40, 70);
    let back = t.button("Back").expect("Back").clone();
    let landed = dev.reported(&t, &back);
    assert!(
        !hits_a_button(&t, landed),
        "the test's premise: {landed:?} {t:#?}"
    );
    let before = dev.running().ui.trace.taps_handled();
    dev.tap("Back");
    dev.running()
        .ui
        .trace
        .wait_tap(before, landed.0, landed.1, common::device::WAIT)
        .expect("the UI handled the off tap");
    assert_eq!(dev.on("settings").screen, "settings", "the off tap missed");

    // The touch check's targets: the off taps count wherever they land.
    dev.panel_off_by(0, 0);
    dev.tap("Network and screen");
    dev.on("settings-network");
    dev.tap("Touch check");
    dev.panel_off_by(40, 70);
    for target in ["Top", "Middle", "Bottom"] {
        dev.wait(&format!("the target {target}"), |t| {
            t.screen == "touch-check" && t.has_text(&format!("Tap the target {target}."))
        });
        dev.tap(target);
    }
    dev.on("settings");
    let saved = ClearSettings::load(tmp.path())
        .expect("device.toml")
        .touch
        .expect("a correction");
    assert!(
        (saved.c + 40.0).abs() < 1e-6 && (saved.f + 70.0).abs() < 1e-6,
        "{saved:?}"
    );
    // The same finger on Back now goes back.
    dev.tap("Back");
    dev.on("about");
    assert!(
        settings_changed(tmp.path())
            .iter()
            .any(|(s, _)| s == "touch correction"),
        "{:?}",
        settings_changed(tmp.path())
    );

    // From the lock screen of the next start on, with the same panel.
    let dev = dev.restart();
    dev.panel_off_by(40, 70);
    dev.unlock();
}

/// Three taps on one spot fit nothing: the screen says why, nothing is
/// written or audited, and the correction before stays in force.
#[test]
fn a_degenerate_fit_is_refused_with_its_reason_and_the_old_correction_stays() {
    let tmp = tempfile::tempdir().expect("tempdir");
    encrypted_dir(tmp.path(), "Alice");
    let old = ClearSettings {
        touch: Some(otc_ui::Affine {
            c: 5.0,
            ..otc_ui::Affine::IDENTITY
        }),
        ..Default::default()
    };
    old.save(tmp.path()).expect("write device.toml");
    let dev = Dev::start(tmp.path());
    // The correction before moves taps 5 px right: aim 5 px left.
    dev.panel_off_by(-5, 0);
    dev.unlock();
    dev.network_and_screen();
    let changes = settings_changed(tmp.path()).len();
    dev.tap("Touch check");
    for target in ["Top", "Middle", "Bottom"] {
        dev.wait(&format!("the target {target}"), |t| {
            t.screen == "touch-check" && t.has_text(&format!("Tap the target {target}."))
        });
        dev.script.tap(400, 240);
    }
    let t = dev.on("touch-check-failed");
    assert!(
        t.has_text("Touch not changed") && t.has_text("one line"),
        "{t:#?}"
    );
    assert_eq!(ClearSettings::load(tmp.path()).expect("device.toml"), old);
    // Still corrected as before: the buttons work with the same aim.
    dev.tap("Keep the one there is");
    dev.on("settings");
    dev.tap("Back");
    dev.on("about");
    assert_eq!(
        settings_changed(tmp.path()).len(),
        changes,
        "nothing audited"
    );
}

/// The first boot on a panel mounted upside down: "Upside down" turns the
/// screen at once, the touch targets are tapped where the turned screen
/// shows them (fitting no correction: the taps are exact), and the next
/// start's lock screen is turned from its first frame. `device.toml`
/// holds the rotation and the address typed; the sealed settings hold
/// neither.
#[test]
fn the_first_boot_upside_down_turns_the_screen_at_once_and_keeps_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    let dev = Dev::start_with(&dir, true);
    assert_eq!(dev.on("first-boot").upside_down, None);
    dev.tap("Start");
    dev.type_done("Your name", "alice");
    dev.type_done("New passphrase", PASS);
    dev.on("first-boot-strength");
    dev.tap("Continue");
    dev.type_done("Passphrase again", PASS);
    dev.wait("the address keyboard", |t| {
        t.screen == "keyboard" && t.texts.first().is_some_and(|x| x == "Network address")
    });
    dev.tap("Done");
    dev.on("first-boot-rotation");
    dev.tap("Upside down");
    for target in ["Top", "Middle", "Bottom"] {
        let t = dev.wait(&format!("the target {target}, turned"), |t| {
            t.screen == "touch-check"
                && t.has_text(&format!("Tap the target {target}."))
                && t.upside_down.is_some()
        });
        let b = t.button(target).expect("the target");
        assert_ne!(t.panel_point(b.center()), b.center());
        dev.tap(target);
    }
    let t = dev.home("alice");
    assert_eq!(t.upside_down, Some([800, 480]));
    let clear = ClearSettings::load(&dir).expect("device.toml");
    assert_eq!(clear.rotation, 180);
    assert!(clear.address.is_some(), "{clear:?}");
    let touch = clear.touch.expect("the fitted correction");
    let (x, y) = touch.apply(123.0, 321.0);
    assert!(
        (x - 123.0).abs() < 1e-6 && (y - 321.0).abs() < 1e-6,
        "exact taps fit the identity: {touch:?}"
    );
    let key = vault::unlock(&RealFs, &dir, PASS.as_bytes(), 10).expect("the key");
    let sealed = Settings::load(&dir, &key).expect("read").expect("settings");
    assert_eq!(
        (sealed.address.clone(), sealed.rotation),
        (None, 0),
        "{sealed:?}"
    );

    let dev = dev.restart();
    let t = dev.on("lock");
    assert_eq!(
        t.upside_down,
        Some([800, 480]),
        "turned from the first frame"
    );
    dev.tap("Unlock");
    dev.type_done("Passphrase", PASS);
    dev.home("alice");
}

/// A new address in Settings is written to `device.toml` (where init
/// reads it before each start: `otc-device network-address`) and audited,
/// and the step says when it applies: from the next start.
#[test]
fn a_new_address_is_kept_in_device_toml_and_the_step_says_when_it_applies() {
    let tmp = tempfile::tempdir().expect("tempdir");
    encrypted_dir(tmp.path(), "Alice");
    let dev = Dev::start(tmp.path());
    dev.unlock();
    dev.network_and_screen();
    dev.tap("Network address");
    dev.type_done("Network address", "192.168.7.9");
    let t = dev.on("settings-address-saved");
    assert!(
        t.has_text("192.168.7.9") && t.has_text("when it next starts"),
        "{t:#?}"
    );
    dev.tap("OK");
    dev.on("settings");
    assert_eq!(
        ClearSettings::load(tmp.path())
            .expect("device.toml")
            .address,
        Some("192.168.7.9".parse().expect("an address"))
    );
    assert!(
        settings_changed(tmp.path()).contains(&("network address".into(), "192.168.7.9".into())),
        "{:?}",
        settings_changed(tmp.path())
    );
}
