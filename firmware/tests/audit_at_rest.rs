//! Issue 18: the audit log of an encrypted data directory is sealed too.
//! Real devices (real key files and stores in temp dirs, real UIs on
//! memory displays, real HTTP on 127.0.0.1), driven by taps found in the
//! screen trace; the other side is a plain device whose thumb approves.

mod common;

use common::device::{WALL, request};
use otc_device::audit::{self, Files, Integrity};
use otc_device::device::Running;
use otc_device::lock::LockOptions;
use otc_device::pad::vault;
use otc_device::platform::TestPlatform;
use otc_proto::routes;
use otc_proto::rpc::{PackageRequest, PackageResponse, UnpackageRequest, UnpackageResponse};
use otc_testkit::{TEST_PASSPHRASE, TestDevice, init, init_encrypted, otc_device, unlock};
use otc_ui::ScreenTrace;
use otc_ui::sink::memory::MemoryDisplay;
use otc_ui::source::scripted::{ScriptedTouch, TouchScript};
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

const OWNER: &str = "Annabelle";
const CONTACT: &str = "Bartholomew";
const SECRET_TEXT: &str = "rendezvous at the old mill";
const REPLY_TEXT: &str = "bring the lantern";

/// An encrypted device on a memory display, unlocked by taps.
struct Dev {
    running: Option<Running>,
    script: TouchScript,
}

impl Dev {
    fn start(dir: &Path) -> Dev {
        let platform = TestPlatform::new(WALL, 0);
        let (display, _pixels) = MemoryDisplay::new(800, 480);
        let (touch, script) = ScriptedTouch::new();
        let running = otc_device::device::start(
            dir,
            otc_device::device::StartOptions {
                lock: LockOptions {
                    kdf: vault::KdfParams::TEST,
                    ..Default::default()
                },
                ..otc_testkit::start_options("")
            },
            Box::new(display),
            Some(Box::new(touch)),
            Arc::new(platform),
        )
        .expect("start the device");
        let dev = Dev {
            running: Some(running),
            script,
        };
        dev.unlock();
        dev
    }

    /// From the lock screen, types the passphrase and waits for home.
    fn unlock(&self) {
        let dev = self;
        dev.wait("the lock screen", |t| t.screen == "lock");
        dev.tap("Unlock");
        dev.wait("the passphrase keyboard", |t| t.screen == "keyboard");
        for c in TEST_PASSPHRASE.chars() {
            match c {
                ' ' => dev.tap("kb-space"),
                c => dev.tap(&format!("kb-char-{c}")),
            }
        }
        dev.wait("the passphrase typed", |t| {
            t.texts
                .get(1)
                .is_some_and(|x| x.chars().count() >= TEST_PASSPHRASE.len().min(30))
        });
        dev.tap("Done");
        dev.wait("the home screen with the contact", |t| {
            t.screen == "home" && t.has_text(CONTACT)
        });
    }

    fn running(&self) -> &Running {
        self.running.as_ref().expect("running")
    }

    fn wait(&self, what: &str, pred: impl Fn(&ScreenTrace) -> bool) -> ScreenTrace {
        otc_testkit::wait_screen(&self.running().ui.trace, what, pred)
    }

    fn tap(&self, id: &str) {
        let t = self.running().ui.trace.get();
        let b = t
            .button(id)
            .unwrap_or_else(|| panic!("no button {id:?} on screen: {t:#?}"));
        self.script.tap_button(b);
    }

    /// POST `body` to `path`, answer the prompt `screen` with Approve.
    fn approved(&self, path: &str, body: serde_json::Value, screen: &str) -> common::device::Resp {
        let addr = self.running().addr;
        let path2 = path.to_string();
        let h = std::thread::spawn(move || {
            let body = serde_json::to_vec(&body).expect("json");
            request(addr, "POST", &path2, Some(&body))
        });
        self.wait(&format!("the {screen} prompt"), |t| t.screen == screen);
        self.tap("approve");
        h.join().expect("the request thread")
    }

    fn stop(mut self) {
        self.running.take().expect("running").stop().expect("stop");
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            let _ = r.stop();
        }
    }
}

/// A plain device `bob` and an encrypted one `ann` sharing a pad that
/// `bob` made (Ann imports it with the passphrase). Returns the pad's
/// bytes as `bob` holds them before any use.
fn pair(root: &Path, ann: &Path, bob: &Path) -> Vec<u8> {
    use otc_device::pad::pairing;
    let pf = init_encrypted(ann, OWNER);
    init(bob, CONTACT);
    let first = root.join("first.otcpad");
    otc_device(
        bob,
        &[
            "pad",
            "new",
            "--contact",
            OWNER,
            "--size",
            "16K",
            "--export",
            first.to_str().expect("utf-8"),
        ],
    );
    let export = root.join("ann.otcpad");
    let code_file = root.join("ann.code");
    let pad = {
        let store = otc_device::PadStore::open_dir(bob).expect("open bob's store");
        let code = pairing::PairingCode::generate().expect("a pairing code");
        pairing::export_sealed(&store, OWNER, &export, &code).expect("export");
        store.close().expect("close bob's store");
        std::fs::write(&code_file, code.groups()).expect("write the code");
        // Bob's plain pad file is the only file of the pad's size.
        let pads: Vec<Vec<u8>> = common::files_under(bob)
            .into_iter()
            .filter(|p| std::fs::metadata(p).map(|m| m.len()).ok() == Some(16 * 1024))
            .map(|p| std::fs::read(p).expect("read bob's pad"))
            .collect();
        assert_eq!(pads.len(), 1, "one pad file of 16 KiB in bob's directory");
        pads.into_iter().next().expect("the pad")
    };
    otc_device(
        ann,
        &[
            "pad",
            "import",
            export.to_str().expect("utf-8"),
            "--contact",
            CONTACT,
            "--code-file",
            code_file.to_str().expect("utf-8"),
            "--passphrase-file",
            pf.to_str().expect("utf-8"),
        ],
    );
    pad
}

/// Issue 18's stolen card: after pads are made and messages sealed and
/// opened over real HTTP with approvals on the screen, no file under the
/// data directory holds a contact name, the owner's name, audit text, a
/// message, or any 16-byte run of the pad.
#[test]
fn a_stolen_card_shows_no_names_no_audit_text_and_no_pad_bytes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (ann, bob_dir) = (tmp.path().join("ann"), tmp.path().join("bob"));
    let pad = pair(tmp.path(), &ann, &bob_dir);
    let dev = Dev::start(&ann);
    let sealed: PackageResponse = dev
        .approved(
            routes::PACKAGE,
            serde_json::json!({"to": CONTACT, "message": SECRET_TEXT}),
            "confirm-seal",
        )
        .ok();
    let bob = TestDevice::start(&bob_dir, CONTACT);
    let client = bob.client();
    let got = client
        .unpackage(&UnpackageRequest {
            from: OWNER.into(),
            package: sealed.package.clone(),
        })
        .expect("bob opens");
    assert_eq!(got.message.as_deref(), Some(SECRET_TEXT));
    let reply = client
        .package(&PackageRequest {
            to: OWNER.into(),
            message: Some(REPLY_TEXT.into()),
            message_b64: None,
        })
        .expect("bob seals");
    bob.stop();
    let opened: UnpackageResponse = dev
        .approved(
            routes::UNPACKAGE,
            serde_json::json!({"from": CONTACT, "package": reply.package}),
            "confirm-open",
        )
        .ok();
    assert_eq!(opened.message.as_deref(), Some(REPLY_TEXT));
    dev.stop();

    // What the device logged is readable with the key ...
    let key = unlock(&ann);
    let c = audit::check_in(&Files::real(&ann, Some(&key))).expect("read the sealed log");
    assert!(c.problems.is_empty(), "{:?}", c.problems);
    let kinds: Vec<String> = c
        .entries
        .iter()
        .map(|e| common::device::kind(&e.event))
        .collect();
    for k in [
        "pad_imported",
        "started",
        "approved",
        "sealed",
        "opened",
        "stop",
    ] {
        assert!(kinds.iter().any(|x| x == k), "{k} in {kinds:?}");
    }
    // ... and nothing of it, or of the pads, is on the card in clear.
    let words = [
        OWNER,
        CONTACT,
        SECRET_TEXT,
        REPLY_TEXT,
        "seal",
        "approve",
        "opened",
        "started",
        "\"kind\"",
        "\"contact\"",
        "\"seq\"",
        "\"prev\"",
        "\"hash\"",
    ];
    let runs: HashSet<&[u8]> = pad
        .windows(16)
        .filter(|w| w.iter().any(|b| *b != 0))
        .collect();
    assert!(runs.len() > 16_000, "the pad is random bytes");
    let files = common::files_under(&ann);
    assert!(
        files.iter().any(|p| p.ends_with("audit.log"))
            && files.iter().any(|p| p.ends_with("audit.head")),
        "{files:?}"
    );
    for p in files {
        let bytes = std::fs::read(&p).expect("read a file");
        let lower = bytes.to_ascii_lowercase();
        for w in words {
            let w = w.to_ascii_lowercase();
            assert!(
                !lower.windows(w.len()).any(|x| x == w.as_bytes()),
                "{} holds {w:?}",
                p.display()
            );
        }
        if let Some(at) = bytes.windows(16).position(|w| runs.contains(w)) {
            panic!("{} holds 16 pad bytes at offset {at}", p.display());
        }
    }
}

/// A flipped byte in a sealed line is tampering, found after a restart
/// (never a crash, never dropped silently); the alert stays across
/// another restart until acknowledged.
#[test]
fn a_flipped_byte_in_a_sealed_line_is_tampering_and_its_alert_survives_restarts() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (ann, bob_dir) = (tmp.path().join("ann"), tmp.path().join("bob"));
    pair(tmp.path(), &ann, &bob_dir);
    Dev::start(&ann).stop();
    let log = ann.join("audit.log");
    let text = std::fs::read_to_string(&log).expect("read the log");
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 3, "{text}");
    assert!(
        lines
            .iter()
            .all(|l| l.bytes().all(|b| b.is_ascii_hexdigit())),
        "every line is sealed (hex): {text}"
    );
    // Flip one bit of the second line's ciphertext (still valid hex).
    let at = lines[0].len() + 1 + 60;
    let mut bytes = text.clone().into_bytes();
    bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
    std::fs::write(&log, &bytes).expect("write the log");

    let key = unlock(&ann);
    let files = Files::real(&ann, Some(&key));
    let c = audit::check_in(&files).expect("check");
    // The line does not open: unreadable (and the head, which names
    // entries by position, no longer matches either).
    assert_eq!(c.problems.first(), Some(&Integrity::Unreadable { line: 2 }));

    let alerts = |t: &ScreenTrace| {
        t.button("alerts")
            .map(|b| b.label.clone())
            .unwrap_or_default()
    };
    let dev = Dev::start(&ann);
    dev.wait("a tamper alert on the home screen", |t| {
        alerts(t) == "Alerts (1)"
    });
    dev.stop();
    let dev = Dev::start(&ann);
    dev.wait("the same alert after a restart", |t| {
        alerts(t) == "Alerts (1)"
    });
    dev.tap("alerts");
    // The home's count and the alert rows reach the screen separately:
    // wait for the row (looking once failed in one CI run here, the
    // alerts screen still saying "Nothing to report.").
    let shown = dev.wait("the alerts screen listing the damage", |t| {
        t.screen == "alerts"
            && t.texts
                .iter()
                .any(|x| x.contains("AUDIT LOG DAMAGED: audit log line 2 is unreadable"))
    });
    assert!(
        shown.texts.iter().any(|x| x.contains("line 2")),
        "{shown:#?}"
    );
    dev.stop();
    let c = audit::check_in(&files).expect("check");
    let tampers = c
        .entries
        .iter()
        .filter(|e| matches!(e.event, audit::Event::TamperDetected { .. }))
        .count();
    assert_eq!(tampers, 1, "logged once, however many restarts");
}

/// Issue 19, part 4: the conversation screen is forgotten when the device
/// locks. Ann (encrypted) writes to Bartholomew on her keyboard; Messages
/// shows it; after Lock now and the passphrase, Messages is empty.
#[test]
fn the_conversation_is_forgotten_when_the_device_locks() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (ann, bob_dir) = (tmp.path().join("ann"), tmp.path().join("bob"));
    pair(tmp.path(), &ann, &bob_dir);
    let dev = Dev::start(&ann);
    let addr = dev.running().addr;
    let h = std::thread::spawn(move || {
        let body = serde_json::to_vec(&serde_json::json!({"to": CONTACT})).expect("json");
        request(addr, "POST", routes::COMPOSE, Some(&body))
    });
    dev.wait("the message keyboard", |t| t.button("Seal").is_some());
    for c in "zq7vkx".chars() {
        dev.tap(&format!("kb-char-{c}"));
    }
    dev.wait("the text typed", |t| {
        t.texts.get(1).is_some_and(|x| x == "zq7vkx")
    });
    dev.tap("Seal");
    let r = h.join().expect("the compose request");
    assert_eq!(r.status, 200, "{}", r.body);
    let messages = |dev: &Dev| {
        dev.wait("home with the contact", |t| {
            t.screen == "home" && t.button(CONTACT).is_some()
        });
        dev.tap(CONTACT);
        dev.wait("the contact screen", |t| t.button("Messages").is_some());
        dev.tap("Messages");
        let t = dev.wait("the conversation", |t| t.screen == "conversation");
        dev.tap("Done");
        dev.wait("the contact screen", |t| t.screen == "contact");
        dev.tap("back");
        t
    };
    let t = messages(&dev);
    assert!(t.has_text("You: zq7vkx"), "{t:#?}");
    dev.wait("home", |t| t.button("Lock now").is_some());
    dev.tap("Lock now");
    dev.unlock();
    let t = messages(&dev);
    assert!(!t.has_text("zq7vkx"), "{t:#?}");
    assert!(t.has_text("Nothing read or written here"), "{t:#?}");
    dev.stop();
}
