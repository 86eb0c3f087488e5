//! Issue 18: the locked state, the lock screen and the first boot, on
//! real devices (real key files and stores in temp dirs, real UIs on
//! memory displays, real HTTP on 127.0.0.1), driven by taps found by
//! label in the screen trace. The platform's clock is a fake one: the
//! delay after wrong passphrases and the idle lock move only when a test
//! advances it, so nothing here measures time.

mod common;

use common::device::{READ_TIMEOUT, WALL, request};
use otc_device::device::{Running, StartOptions};
use otc_device::lock::{LockOptions, Settings};
use otc_device::pad::vault;
use otc_device::pad::vfs::RealFs;
use otc_device::platform::TestPlatform;
use otc_proto::routes;
use otc_proto::rpc::StatusResponse;
use otc_ui::sink::memory::MemoryDisplay;
use otc_ui::source::scripted::{ScriptedTouch, TouchScript};
use otc_ui::{FakeClock, ScreenTrace};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

const PASS: &str = "lantern gravel oyster 73 mingle";

/// An encrypted data directory as the first boot leaves it: a key file
/// for `PASS` and the sealed settings.
fn encrypted_dir(dir: &Path, owner: &str, idle_lock_seconds: u64) {
    otc_device::PadStore::open_dir(dir)
        .expect("make the data directory")
        .close()
        .expect("close it");
    let key = vault::create(&RealFs, dir, PASS.as_bytes(), &vault::KdfParams::TEST)
        .expect("make the key file");
    let mut s = Settings::new(owner);
    s.idle_lock_seconds = idle_lock_seconds;
    s.save(dir, &key).expect("write the settings");
}

struct Dev {
    dir: PathBuf,
    lock: LockOptions,
    running: Option<Running>,
    script: TouchScript,
    clock: FakeClock,
}

impl Dev {
    /// Starts a device on `dir` and returns at once (it may be locked).
    fn start(dir: &Path, lock: LockOptions) -> Dev {
        let platform = TestPlatform::new(WALL, 0);
        let clock = platform.fake_clock();
        let (display, _pixels) = MemoryDisplay::new(800, 480);
        let (touch, script) = ScriptedTouch::new();
        let running = otc_device::device::start(
            dir,
            StartOptions {
                lock: lock.clone(),
                ..otc_testkit::start_options("")
            },
            Box::new(display),
            Some(Box::new(touch)),
            Arc::new(platform),
        )
        .expect("start the device");
        Dev {
            dir: dir.to_path_buf(),
            lock,
            running: Some(running),
            script,
            clock,
        }
    }

    fn running(&self) -> &Running {
        self.running.as_ref().expect("running")
    }

    fn restart(mut self) -> Dev {
        self.running.take().expect("running").stop().expect("stop");
        Dev::start(&self.dir.clone(), self.lock.clone())
    }

    fn wait(&self, what: &str, pred: impl Fn(&ScreenTrace) -> bool) -> ScreenTrace {
        otc_testkit::wait_screen(&self.running().ui.trace, what, pred)
    }

    fn on(&self, screen: &str) -> ScreenTrace {
        self.wait(&format!("the {screen} screen"), |t| t.screen == screen)
    }

    fn tap(&self, label: &str) {
        let t = self.running().ui.trace.get();
        let b = t
            .button(label)
            .unwrap_or_else(|| panic!("no button {label:?} on screen: {t:#?}"));
        self.script.tap_button(b);
    }

    /// Types `text` on the keyboard (keys by id: lower case) and taps Done.
    fn type_done(&self, title: &str, text: &str) {
        self.wait(&format!("the keyboard for {title}"), |t| {
            t.screen == "keyboard" && t.texts.first().is_some_and(|x| x == title)
        });
        for c in text.chars() {
            match c {
                ' ' => self.tap("kb-space"),
                c => self.tap(&format!("kb-char-{c}")),
            }
        }
        let n = text.chars().count().min(30);
        self.wait("the text typed", |t| {
            t.texts.get(1).is_some_and(|x| x.chars().count() >= n)
        });
        self.tap("Done");
    }

    fn status(&self) -> StatusResponse {
        request(self.running().addr, "GET", routes::STATUS, None).ok()
    }

    /// Unlock by taps with `pass`.
    fn unlock(&self, pass: &str) {
        self.on("lock");
        self.tap("Unlock");
        self.type_done("Passphrase", pass);
    }

    /// Waits for the home screen with `owner`'s name on it (the home
    /// screen shows blank for a moment before the store is open).
    fn home(&self, owner: &str) -> ScreenTrace {
        self.wait(&format!("{owner}'s home screen"), |t| {
            t.screen == "home" && t.has_text(owner)
        })
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            let _ = r.stop();
        }
    }
}

fn opts(max_failures: u32) -> LockOptions {
    LockOptions {
        max_failures,
        kdf: vault::KdfParams::TEST,
        ..Default::default()
    }
}

/// The audit log's kinds, read with the key (the log of an encrypted
/// directory is sealed; issue 18).
fn audit_kinds(dir: &Path) -> Vec<String> {
    let key = vault::is_initialized(&RealFs, dir)
        .then(|| vault::unlock(&RealFs, dir, PASS.as_bytes(), 10).expect("the key"));
    otc_device::audit::check_in(&otc_device::audit::Files::real(dir, key.as_ref()))
        .expect("read the audit log")
        .entries
        .iter()
        .map(|e| common::device::kind(&e.event))
        .collect()
}

/// Before the passphrase, every request but `/v1/status` is refused with
/// `locked` (423), status says `locked: true` and names no owner; after
/// it, the same requests are answered and status says the owner.
#[test]
fn the_endpoint_answers_locked_until_the_passphrase_is_typed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    encrypted_dir(tmp.path(), "Alice", 0);
    let dev = Dev::start(tmp.path(), opts(10));
    let t = dev.on("lock");
    assert!(t.button("Unlock").is_some(), "{t:#?}");
    assert!(dev.running().is_locked());
    let st = dev.status();
    assert!(st.locked, "{st:?}");
    assert_eq!((st.owner.as_str(), st.contacts), ("", 0));
    let addr = dev.running().addr;
    let body = br#"{"to":"bob","message":"hi"}"#;
    for (method, path, body) in [
        ("GET", routes::CONTACTS, None),
        ("POST", routes::PACKAGE, Some(&body[..])),
        (
            "POST",
            routes::UNPACKAGE,
            Some(&br#"{"from":"bob","package":"x"}"#[..]),
        ),
        ("GET", "/v1/cursor/relay", None),
        ("GET", "/nowhere", None),
    ] {
        request(addr, method, path, body).expect_error(423, "locked");
    }
    let r = request(
        addr,
        "POST",
        routes::RUNRPC,
        Some(br#"{"fn":"get_contacts"}"#),
    );
    assert!(r.body.contains("locked"), "{}", r.body);
    dev.unlock(PASS);
    let t = dev.home("Alice");
    assert!(t.has_text("Alice"), "{t:#?}");
    let service = dev.running().service().expect("unlocked");
    assert!(service.store().encrypted(), "the store is opened encrypted");
    drop(service);
    assert!(t.button("Lock now").is_some(), "{t:#?}");
    let st = dev.status();
    assert!(!st.locked, "{st:?}");
    assert_eq!(st.owner, "Alice");
    let r = request(addr, "GET", routes::CONTACTS, None);
    assert_eq!(r.status, 200, "{}", r.body);
    let _ = READ_TIMEOUT;
}

/// A plain data directory (the test kit's, today's images) keeps working
/// unlocked, without Lock now, and says `locked: false`.
#[test]
fn a_plain_directory_starts_unlocked_without_lock_now() {
    let tmp = tempfile::tempdir().expect("tempdir");
    otc_testkit::init(tmp.path(), "Bob");
    let dev = Dev::start(tmp.path(), opts(10));
    let t = dev.on("home");
    assert!(t.button("Lock now").is_none(), "{t:#?}");
    assert!(!dev.status().locked);
}

/// Wrong passphrases: counted (the count shown), a growing wait from the
/// third on, and the count survives a restart.
#[test]
fn wrong_passphrases_wait_longer_each_time_and_are_counted_across_a_restart() {
    let tmp = tempfile::tempdir().expect("tempdir");
    encrypted_dir(tmp.path(), "Alice", 0);
    let dev = Dev::start(tmp.path(), opts(10));
    for n in 1..=2 {
        dev.unlock("wrong guess");
        let t = dev.wait(&format!("the count after {n}"), |t| {
            t.screen == "lock" && t.has_text(&format!("{n} wrong passphrase"))
        });
        assert!(t.has_text("Wrong passphrase."), "{t:#?}");
    }
    dev.unlock("wrong again");
    let t = dev.on("lock-wait");
    assert!(t.has_text("3 wrong passphrases in a row"), "{t:#?}");
    assert!(t.has_text("Wait 5 s"), "{t:#?}");
    assert!(t.buttons.iter().all(|b| b.label != "Unlock"), "{t:#?}");
    dev.clock.advance(Duration::from_secs(5));
    dev.unlock("wrong still");
    let t = dev.on("lock-wait");
    assert!(t.has_text("4 wrong passphrases in a row"), "{t:#?}");
    assert!(t.has_text("Wait 10 s"), "{t:#?}");
    // A restart forgets nothing: the count is in the key file's counter.
    let dev = dev.restart();
    let t = dev.on("lock-wait");
    assert!(t.has_text("4 wrong passphrases in a row"), "{t:#?}");
    assert!(t.has_text("Wait 10 s"), "{t:#?}");
    assert_eq!(vault::failures(&RealFs, tmp.path()).expect("failures"), 4);
    dev.clock.advance(Duration::from_secs(10));
    dev.unlock(PASS);
    dev.home("Alice");
    assert_eq!(vault::failures(&RealFs, tmp.path()).expect("failures"), 0);
    // The wrong ones are an alert the owner sees after the unlock.
    dev.wait("the alert for the wrong passphrases", |t| {
        t.screen == "home" && t.button("Alerts (1)").is_some()
    });
    let kinds = audit_kinds(tmp.path());
    assert!(kinds.contains(&"unlocked".to_string()), "{kinds:?}");
}

/// The last allowed wrong passphrase destroys the key file, and the
/// screen says so; a restart finds no key (nothing can unlock it).
#[test]
fn the_key_is_destroyed_after_the_last_allowed_failure() {
    let tmp = tempfile::tempdir().expect("tempdir");
    encrypted_dir(tmp.path(), "Alice", 0);
    let dev = Dev::start(tmp.path(), opts(3));
    dev.unlock("one");
    dev.wait("one failure", |t| {
        t.screen == "lock" && t.has_text("1 wrong")
    });
    dev.unlock("two");
    dev.wait("two failures", |t| {
        t.screen == "lock" && t.has_text("2 wrong")
    });
    dev.unlock("three");
    let t = dev.on("lock-wiped");
    assert!(t.has_text("destroyed its key file"), "{t:#?}");
    assert!(!vault::is_initialized(&RealFs, tmp.path()));
    assert!(dev.status().locked);
}

/// Lock now and the idle lock close the endpoint and bring the lock
/// screen back; the passphrase opens both again; both are audited.
#[test]
fn lock_now_and_the_idle_lock_lock_the_running_device() {
    let tmp = tempfile::tempdir().expect("tempdir");
    encrypted_dir(tmp.path(), "Alice", 60);
    let dev = Dev::start(tmp.path(), opts(10));
    dev.unlock(PASS);
    dev.home("Alice");
    dev.tap("Lock now");
    dev.on("lock");
    assert!(dev.status().locked);
    request(dev.running().addr, "GET", routes::CONTACTS, None).expect_error(423, "locked");
    dev.unlock(PASS);
    dev.home("Alice");
    assert!(!dev.status().locked);
    // Idle: nothing touched for the owner's 60 s.
    dev.clock.advance(Duration::from_secs(59));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(dev.running().ui.trace.get().screen, "home");
    dev.clock.advance(Duration::from_secs(2));
    dev.on("lock");
    assert!(dev.status().locked);
    dev.unlock(PASS);
    dev.home("Alice");
    let kinds = audit_kinds(tmp.path());
    let locks: Vec<_> = kinds.iter().filter(|k| *k == "locked").collect();
    let unlocks: Vec<_> = kinds.iter().filter(|k| *k == "unlocked").collect();
    assert_eq!((locks.len(), unlocks.len()), (2, 2), "{kinds:?}");
}

/// The first boot by taps: name, a weak passphrase refused with its
/// reason, a strong one twice, address, rotation, the touch targets, then
/// home; the next start is locked and the passphrase opens it.
#[test]
fn the_first_boot_by_taps_ends_at_home_and_the_next_start_is_locked() {
    let tmp = tempfile::tempdir().expect("tempdir");
    first_boot_by_taps(&tmp.path().join("data"));
}

/// The first boot on a card: image/init writes `DIR/otc.toml` (the boot
/// partition's settings, no owner line) before otc-device first starts,
/// so the data directory is not empty when the setup makes the store in
/// it. The setup must still end at home, encrypted.
#[test]
fn the_first_boot_works_in_a_directory_that_holds_only_otc_toml() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    std::fs::create_dir(&dir).expect("make the data directory");
    std::fs::write(
        dir.join("otc.toml"),
        "[rpc]\nport = 9051\n\n[display]\nkind = \"fbdev\"\n",
    )
    .expect("write otc.toml as image/init does");
    first_boot_by_taps(&dir);
    assert!(dir.join("otc.toml").exists(), "otc.toml is kept");
}

/// The first boot by taps on a device started on `dir`, then a restart:
/// locked, and the passphrase opens it.
fn first_boot_by_taps(dir: &Path) {
    let dir = dir.to_path_buf();
    let lock = LockOptions {
        first_boot: true,
        ..opts(10)
    };
    let dev = Dev::start(&dir, lock.clone());
    assert!(dev.status().locked);
    dev.on("first-boot");
    dev.tap("Start");
    dev.type_done("Your name", "alice");
    dev.type_done("New passphrase", "abc");
    // The reason is the pad crate's own words for "abc".
    let why = vault::passphrase_strength("abc")
        .refused
        .expect("abc is refused");
    let start: String = why.chars().take(40).collect();
    let t = dev.wait("the weak passphrase refused with its reason", |t| {
        t.screen == "keyboard" && t.texts.get(2).is_some_and(|r| r.starts_with(&start))
    });
    assert!(!t.texts.iter().any(|x| x.contains("abc")), "masked: {t:#?}");
    for _ in 0..3 {
        dev.tap("kb-backspace");
    }
    dev.wait("the field emptied", |t| {
        t.texts.get(1).is_some_and(|x| x.is_empty())
    });
    for c in PASS.chars() {
        match c {
            ' ' => dev.tap("kb-space"),
            c => dev.tap(&format!("kb-char-{c}")),
        }
    }
    dev.wait("the passphrase typed", |t| {
        t.texts.get(1).is_some_and(|x| x.chars().count() >= 30)
    });
    dev.tap("Done");
    let t = dev.on("first-boot-strength");
    assert!(t.has_text("bits"), "{t:#?}");
    dev.tap("Continue");
    dev.type_done("Passphrase again", PASS);
    dev.wait("the address keyboard", |t| {
        t.screen == "keyboard" && t.texts.first().is_some_and(|x| x == "Network address")
    });
    dev.tap("Done");
    dev.on("first-boot-rotation");
    dev.tap("Right way up");
    for target in ["Top", "Middle", "Bottom"] {
        dev.wait(&format!("the target {target}"), |t| {
            t.screen == "touch-check" && t.has_text(&format!("Tap the target {target}"))
        });
        dev.tap(target);
    }
    let t = dev.home("alice");
    assert!(t.has_text("alice"), "{t:#?}");
    assert!(vault::is_initialized(&RealFs, &dir));
    let st = dev.status();
    assert!(!st.locked);
    assert_eq!(st.owner, "alice");
    let service = dev.running().service().expect("unlocked");
    assert!(service.store().encrypted(), "the store is opened encrypted");
    drop(service);
    let dev = dev.restart();
    dev.unlock(PASS);
    dev.home("alice");
    assert_eq!(dev.status().owner, "alice");
}

/// Settings, from the About screen: a change is saved sealed and
/// audited; Wipe device (warning, then the passphrase) destroys the key
/// and the data directory's files and locks the endpoint.
#[test]
fn a_setting_change_is_audited_and_wipe_device_destroys_the_key() {
    let tmp = tempfile::tempdir().expect("tempdir");
    encrypted_dir(tmp.path(), "Alice", 0);
    let dev = Dev::start(tmp.path(), opts(10));
    dev.unlock(PASS);
    dev.home("Alice");
    dev.tap("About");
    dev.wait("the About screen's Settings", |t| {
        t.button("Settings").is_some()
    });
    dev.tap("Settings");
    dev.wait("the settings", |t| t.button("Timeouts").is_some());
    dev.tap("Timeouts");
    dev.wait("the timeouts", |t| t.button("Idle lock").is_some());
    dev.tap("Idle lock");
    dev.type_done("Seconds", "120");
    let kinds = otc_testkit::wait_until("the setting_changed audit entry", || {
        let k = audit_kinds(tmp.path());
        k.iter().any(|x| x == "setting_changed").then_some(k)
    });
    assert!(kinds.contains(&"setting_changed".to_string()), "{kinds:?}");
    let key = vault::unlock(&RealFs, tmp.path(), PASS.as_bytes(), 10).expect("the key");
    let s = Settings::load(tmp.path(), &key)
        .expect("read the settings")
        .expect("settings");
    assert_eq!(s.idle_lock_seconds, 120);
    // Wipe device.
    dev.wait("the settings again", |t| {
        t.button("Passphrase and wipe").is_some()
    });
    dev.tap("Passphrase and wipe");
    dev.wait("the wipe button", |t| t.button("Wipe device").is_some());
    dev.tap("Wipe device");
    let t = dev.wait("the wipe warning", |t| {
        t.has_text("destroys the key and every pad")
    });
    assert!(t.button("Cancel").is_some(), "{t:#?}");
    dev.tap("Wipe device");
    dev.type_done("Passphrase", PASS);
    dev.on("wiped");
    assert!(!vault::is_initialized(&RealFs, tmp.path()));
    assert!(dev.status().locked);
}

/// After the key is destroyed (too many wrong passphrases), the next
/// start is a first boot, not a device that cannot start: what the old
/// key sealed is shredded before a new key is made, and no file of the
/// old directory is left beside the new key.
#[test]
fn after_the_key_is_destroyed_the_next_start_is_a_clean_first_boot() {
    let tmp = tempfile::tempdir().expect("tempdir");
    encrypted_dir(tmp.path(), "Alice", 0);
    {
        // A contact, so that the directory holds sealed records and a pad.
        let key = vault::unlock(&RealFs, tmp.path(), PASS.as_bytes(), 10).expect("the key");
        let store = otc_device::PadStore::open_dir_keyed(tmp.path(), Default::default(), Some(key))
            .expect("open the encrypted store");
        store
            .import_pad_bytes(
                "carol",
                &[7u8; 64 * 1024],
                32 * 1024,
                otc_device::pad::Side::A,
                otc_proto::Format::V3,
            )
            .expect("a contact");
        store.close().expect("close");
    }
    let before: Vec<PathBuf> = common::files_under(tmp.path())
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n != vault::KEY_FILE))
        .collect();
    assert!(!before.is_empty(), "the encrypted directory has files");
    let lock = LockOptions {
        first_boot: true,
        ..opts(1)
    };
    let dev = Dev::start(tmp.path(), lock);
    dev.unlock("wrong");
    dev.on("lock-wiped");
    let dev = dev.restart();
    dev.on("first-boot");
    assert!(dev.status().locked);
    dev.tap("Start");
    dev.type_done("Your name", "bob");
    dev.type_done("New passphrase", PASS);
    dev.on("first-boot-strength");
    dev.tap("Continue");
    dev.type_done("Passphrase again", PASS);
    dev.wait("the address keyboard", |t| {
        t.screen == "keyboard" && t.texts.first().is_some_and(|x| x == "Network address")
    });
    dev.tap("Done");
    dev.on("first-boot-rotation");
    dev.tap("Right way up");
    for target in ["Top", "Middle", "Bottom"] {
        dev.wait(&format!("the target {target}"), |t| {
            t.screen == "touch-check" && t.has_text(&format!("Tap the target {target}"))
        });
        dev.tap(target);
    }
    dev.home("bob");
    assert_eq!(dev.status().owner, "bob");
    assert_eq!(
        vault::failures(&RealFs, tmp.path()).expect("the counter"),
        0
    );
    let service = dev.running().service().expect("unlocked");
    assert!(service.store().contacts().is_empty(), "carol is gone");
    drop(service);
    let again = [
        otc_device::lock::SETTINGS_FILE,
        otc_device::pad::store::MARKER_FILE,
        vault::FAILURES_FILE,
    ];
    for path in &before {
        if path.parent() == Some(tmp.path())
            && path
                .file_name()
                .is_some_and(|n| again.iter().any(|a| n == *a))
        {
            continue; // made again by the new first boot
        }
        assert!(
            !path.exists(),
            "{} of the destroyed key's directory is still there",
            path.display()
        );
    }
}
