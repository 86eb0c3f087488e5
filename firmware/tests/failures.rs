//! Failures say what they are (issue 22, part 4).
//!
//! - A storage error while opening or sealing (disk full, I/O error) is a
//!   storage error: the store spends nothing and changes nothing, the RPC
//!   answers `internal` (500), the alert says "storage error", and it is
//!   not an integrity failure (no `integrity_failure` entry, no lockout
//!   count). The message opens once there is room. Through the store's
//!   storage seam ([`vfs::Faulty`]) and, with real files, on a small tmpfs
//!   filled to the last page (needs root; skipped with the reason when not
//!   root).
//! - A pad file that does not match its record (truncated, too long,
//!   missing) is found at start: the contact is damaged in `pad list`, in
//!   `/v1/contacts` (`"state": "damaged"`) and on the home screen; a seal
//!   or open for it is refused before any prompt with `damaged_pad` (409),
//!   and the file is never written to.
//! - A seal that fails after the owner approved it is audited and shown in
//!   the alerts.

mod common;

use common::device::{Dev, Dirs, PadSpec, limits, pad};
use common::*;
use otc_device::pad::vfs::{Fault, Faulty, RealFs};
use otc_device::pad::{PadStore, StoreOptions};
use otc_proto::Format;
use otc_proto::routes;
use otc_proto::rpc::ContactState;
use otc_testkit::tmpfs::{NoTmpfs, Tmpfs};
use serde_json::json;
use std::path::Path;
use std::sync::Arc;

const SIZE: u64 = 64 * 1024;

/// Bob's store reopened through the fault switch.
fn faulty_bob(p: Pair) -> (tempfile::TempDir, Faulty<RealFs>, PadStore, PadStore) {
    let Pair {
        dir, alice, bob, ..
    } = p;
    let bob_dir = bob.dir().to_path_buf();
    bob.close().expect("close bob");
    let faulty = Faulty::new(RealFs);
    let bob = PadStore::open_with_vfs(Arc::new(faulty.clone()), bob_dir, StoreOptions::default())
        .expect("reopen bob");
    (dir, faulty, alice, bob)
}

#[test]
fn a_storage_error_while_opening_spends_nothing_and_the_message_opens_later() {
    for fault in [Fault::NoSpace, Fault::Io] {
        let (_dir, faulty, alice, bob) = faulty_bob(pair(Format::V3, SIZE));
        let sealed = alice.seal("bob", b"the genuine message").expect("seal");
        let before = bob.meta("alice").expect("meta");
        let file = pad_file(&bob, "alice");
        let on_disk = std::fs::read(&file).expect("read the pad file");

        faulty.set(Some(fault));
        let e = bob
            .open("alice", &sealed.package)
            .expect_err("opening with a storage fault");
        faulty.set(None);
        assert_eq!(e.code(), "io", "{fault:?}: {e}");
        assert_eq!(bob.meta("alice").expect("meta"), before, "{fault:?}");
        assert_eq!(
            std::fs::read(&file).expect("read the pad file"),
            on_disk,
            "{fault:?}: the pad file changed"
        );

        let o = bob
            .open("alice", &sealed.package)
            .expect("opens once it can");
        assert_eq!(o.message, b"the genuine message");
    }
}

#[test]
fn a_storage_error_while_sealing_hands_nothing_out() {
    for fault in [Fault::NoSpace, Fault::Io] {
        let (_dir, faulty, alice, bob) = faulty_bob(pair(Format::V3, SIZE));
        let left = bob.contact("alice").expect("contact").send_left;
        faulty.set(Some(fault));
        // The first seal moves the durable bound: the record cannot be
        // written, so no pad byte is read.
        let e = bob
            .seal("alice", b"not now")
            .expect_err("sealing with a storage fault");
        faulty.set(None);
        assert_eq!(e.code(), "io", "{fault:?}: {e}");
        assert_eq!(bob.contact("alice").expect("contact").send_left, left);
        let s = bob.seal("alice", b"now").expect("seals once it can");
        assert_eq!(alice.open("bob", &s.package).expect("open").message, b"now");
    }
}

/// Make Bob's pad file for Alice `len` bytes long (or remove it), with Bob's
/// store closed; returns the path.
fn damage(bob: PadStore, len: Option<u64>) -> std::path::PathBuf {
    let file = pad_file(&bob, "alice");
    bob.close().expect("close bob");
    match len {
        Some(len) => std::fs::OpenOptions::new()
            .write(true)
            .open(&file)
            .and_then(|f| f.set_len(len))
            .expect("resize the pad file"),
        None => std::fs::remove_file(&file).expect("remove the pad file"),
    }
    file
}

fn file_len(p: &Path) -> Option<u64> {
    std::fs::metadata(p).ok().map(|m| m.len())
}

#[test]
fn a_pad_file_that_does_not_match_its_record_is_damaged_and_never_written() {
    for len in [Some(SIZE / 2), Some(SIZE + 100), Some(0), None] {
        let p = pair(Format::V3, SIZE);
        let package = p.alice.seal("bob", b"for a damaged pad").unwrap().package;
        let bob_dir = p.bob.dir().to_path_buf();
        let record = bob_dir.join("contacts").join("alice.json");
        let file = damage(p.bob, len);
        let record_before = std::fs::read(&record).expect("record");

        let bob = PadStore::open_dir(&bob_dir).expect("a damaged pad does not stop the store");
        let c = bob.contact("alice").expect("still listed");
        assert_eq!(c.state, ContactState::Damaged, "{len:?}");
        assert_eq!((c.send_left, c.receive_left), (0, 0), "{len:?}");
        assert!(c.damage.is_some(), "{len:?}: {c:?}");
        for e in [
            bob.quote("alice", 5).expect_err("quote"),
            bob.seal("alice", b"hello").expect_err("seal"),
            bob.check_open("alice", &package).expect_err("check_open"),
            bob.open("alice", &package).expect_err("open"),
        ] {
            assert!(
                matches!(e.code(), "pad_damaged" | "pad_file_missing"),
                "{len:?}: {e}"
            );
            assert_eq!(
                otc_proto::rpc::ErrorCode::from(&e),
                otc_proto::rpc::ErrorCode::DamagedPad,
                "{e}"
            );
        }
        bob.close().expect("close");
        assert_eq!(file_len(&file), len, "the damaged pad file was written");
        assert_eq!(
            std::fs::read(&record).expect("record"),
            record_before,
            "the record of a damaged pad changed"
        );
        // It can still be removed.
        let bob = PadStore::open_dir(&bob_dir).expect("reopen");
        bob.remove("alice", &mut |_, _| {})
            .expect("remove a damaged pad");
        assert!(bob.contacts().is_empty());
        assert_eq!(file_len(&file), None);
    }
}

fn two(format: Format) -> [PadSpec; 2] {
    [
        pad("bob", "alice", format, SIZE),
        pad("carol", "carol", format, SIZE),
    ]
}

#[test]
fn a_truncated_pad_file_is_refused_as_damaged_pad_before_any_prompt() {
    let d: Dirs = common::device::dirs(&two(Format::V3));
    // A package from Alice, made before Bob's pad file is damaged.
    let alice = Dev::start(&d.alice, "Alice", limits());
    let (r, _) = alice.seal("bob", "hello bob");
    let package = r.json()["package"].as_str().expect("package").to_string();
    alice.stop();

    let store = PadStore::open_dir(&d.bob).expect("bob's store");
    let file = damage(store, Some(SIZE / 2));
    let bob = Dev::start(&d.bob, "Bob", limits());

    let contacts = bob.get(routes::CONTACTS).json();
    let states: Vec<(String, String)> = contacts["contacts"]
        .as_array()
        .expect("contacts")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or_default().to_string(),
                c["state"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            ("alice".to_string(), "damaged".to_string()),
            ("carol".to_string(), "ok".to_string())
        ]
    );
    // Each contact row is its name, then its detail.
    let detail = |t: &otc_ui::ScreenTrace, name: &str| {
        let i = t.texts.iter().position(|x| x == name)?;
        t.texts.get(i + 1).cloned()
    };
    let home = bob.wait_screen("the damaged contact on the home screen", |t| {
        t.screen == "home" && detail(t, "alice").is_some()
    });
    assert_eq!(
        detail(&home, "alice").as_deref(),
        Some("Pad damaged · cannot be used"),
        "{home:#?}"
    );
    assert!(
        detail(&home, "carol").is_some_and(|d| d.contains("KiB left")),
        "{home:#?}"
    );

    // With the fake clock frozen, a request that showed a prompt would
    // hang until the client's read timeout: these answer at once.
    bob.post(
        routes::PACKAGE,
        &json!({"to": "alice", "message": "hello alice"}),
    )
    .expect_error(409, "damaged_pad");
    bob.post(
        routes::UNPACKAGE,
        &json!({"from": "alice", "package": package}),
    )
    .expect_error(409, "damaged_pad");
    assert!(!bob.screen().screen.starts_with("confirm-"));
    let kinds = bob.audit_kinds();
    assert!(!kinds.iter().any(|k| k == "approved"), "{kinds:?}");
    assert!(!kinds.iter().any(|k| k == "integrity_failure"), "{kinds:?}");
    bob.stop();
    assert_eq!(file_len(&file), Some(SIZE / 2), "the damaged pad file grew");
}

#[test]
fn a_seal_that_fails_after_approval_is_audited_and_shown_in_the_alerts() {
    let d: Dirs = common::device::dirs(&two(Format::V3));
    let alice = Dev::start(&d.alice, "Alice", limits());
    let file = {
        let service = alice.running().service().expect("unlocked");
        let store = service.store();
        pad_file(store, "bob")
    };
    // The pad file is cut short while the owner looks at the prompt: the
    // approved seal cannot read its pad.
    let pending = alice.spawn(
        "POST",
        routes::PACKAGE,
        json!({"to": "bob", "message": "cut short"}),
    );
    alice.wait_prompt("confirm-seal");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .and_then(|f| f.set_len(0))
        .expect("truncate the pad file");
    alice.tap("approve");
    pending
        .join()
        .expect("request")
        .expect_error(500, "internal");
    alice.wait_no_prompt();
    let kinds = alice.wait_audit("failed");
    assert!(!kinds.iter().any(|k| k == "sealed"), "{kinds:?}");
    alice.wait_screen("an unseen alert", |t| {
        t.button("alerts").is_some_and(|b| b.label == "Alerts (1)")
    });
    alice.tap("alerts");
    let alerts = alice.wait_screen("the alerts screen", |t| t.screen == "alerts");
    assert!(
        alerts.has_text("Seal for bob failed") && alerts.has_text("storage error"),
        "{alerts:#?}"
    );
}

/// A tmpfs for the test, or `None` (the reason printed) when not root.
fn tmpfs(size: u64) -> Option<Tmpfs> {
    match Tmpfs::mount(size) {
        Ok(t) => Some(t),
        Err(NoTmpfs::NotRoot(why)) => {
            eprintln!("SKIPPED: {why}");
            None
        }
        Err(e @ NoTmpfs::Failed(_)) => panic!("{e}"),
    }
}

#[test]
fn a_full_disk_while_opening_is_internal_then_it_opens() {
    let Some(fs) = tmpfs(4 << 20) else { return };
    let root = fs.path();
    let (alice_dir, bob_dir) = (root.join("alice"), root.join("bob"));
    otc_testkit::init(&alice_dir, "Alice");
    otc_testkit::init(&bob_dir, "Bob");
    otc_testkit::share_pad(
        root,
        (&alice_dir, "bob"),
        (&bob_dir, "alice"),
        SIZE,
        Format::V3,
    );
    let alice = Dev::start(&alice_dir, "Alice", limits());
    let (r, _) = alice.seal("bob", "meet at the north gate");
    let package = r.json()["package"].as_str().expect("package").to_string();
    alice.stop();

    // Two failures would lock a contact out if they counted.
    let mut l = limits();
    l.lockout_failures = 2;
    let bob = Dev::start(&bob_dir, "Bob", l);
    let receive_left = bob.contact("alice").receive_left;
    fs.fill("filler");
    for _ in 0..3 {
        let (r, _) = bob.open("alice", &package);
        r.expect_error(500, "internal");
    }
    assert_eq!(bob.contact("alice").receive_left, receive_left, "spent");
    bob.tap("alerts");
    let alerts = bob.wait_screen("the alerts screen", |t| t.screen == "alerts");
    assert!(alerts.has_text("storage error"), "{alerts:#?}");
    bob.tap("back");
    bob.wait_screen("home", |t| t.screen == "home");

    std::fs::remove_file(root.join("filler")).expect("make room");
    let (r, _) = bob.open("alice", &package);
    assert_eq!(
        r.json()["message"].as_str(),
        Some("meet at the north gate"),
        "{}",
        r.body
    );
    let kinds = bob.audit_kinds();
    for bad in ["integrity_failure", "locked_out"] {
        assert!(!kinds.iter().any(|k| k == bad), "{bad}: {kinds:?}");
    }
    bob.stop();
}

/// Issue 23 part 8: a damaged `cursors.json` (a convenience file: the
/// client's read positions) stopped the device from starting ("cannot
/// load the relay cursors: expected value at line 1 column 1", naming no
/// file), which under init is a restart loop with every pad out of reach.
/// Now the device starts, the file is set aside with its bytes, the read
/// position reads as unknown (0: the client reads from the start, the
/// replay check refuses what was opened), the alert names the file, and
/// a new position is saved as before.
#[test]
fn a_damaged_read_positions_file_is_set_aside_and_the_device_starts() {
    let d: Dirs = common::device::dirs(&two(Format::V3));
    std::fs::write(d.alice.join("cursors.json"), b"\x00garbage{").unwrap();
    let alice = Dev::start(&d.alice, "Alice", limits());
    assert_eq!(alice.get("/v1/status").status, 200);
    assert_eq!(
        alice.get("/v1/cursor/relay.example:443").json(),
        json!({"cursor": 0})
    );
    assert_eq!(
        std::fs::read(d.alice.join("cursors.json.damaged")).unwrap(),
        b"\x00garbage{"
    );
    alice.wait_screen("an unseen alert", |t| {
        t.button("alerts").is_some_and(|b| b.label == "Alerts (1)")
    });
    alice.tap("alerts");
    let alerts = alice.wait_screen("the alerts screen", |t| t.screen == "alerts");
    assert!(
        alerts.has_text("cursors.json"),
        "the alert names the file: {alerts:#?}"
    );
    let put = common::device::request(
        alice.addr,
        "PUT",
        "/v1/cursor/relay.example:443",
        Some(br#"{"cursor": 42}"#),
    );
    assert_eq!(put.status, 200, "{}", put.json());
    let alice = alice.restart();
    assert_eq!(
        alice.get("/v1/cursor/relay.example:443").json(),
        json!({"cursor": 42})
    );
}

/// Issue 23 part 7: with `audit.head` made a symbolic link to a file
/// outside the data directory, starting and stopping the device overwrote
/// that file (the image runs it as root). Now the start is refused with an
/// error naming the file, and the outside file is untouched; the same
/// for `audit.log` (appended to before).
#[test]
fn an_audit_file_planted_as_a_symlink_is_refused_at_start() {
    for name in ["audit.head", "audit.log"] {
        let d: Dirs = common::device::dirs(&two(Format::V3));
        Dev::start(&d.alice, "Alice", limits()).stop();
        let planted = d.alice.join(name);
        assert!(planted.exists(), "the device made {name}");
        let outside = d.root.path().join("outside.txt");
        std::fs::write(&outside, b"an operator's file\n").unwrap();
        std::fs::remove_file(&planted).unwrap();
        std::os::unix::fs::symlink(&outside, &planted).unwrap();
        let (display, _pixels) = otc_ui::sink::memory::MemoryDisplay::new(800, 480);
        let started = otc_device::device::start(
            &d.alice,
            otc_testkit::start_options("Alice"),
            Box::new(display),
            None,
            Arc::new(otc_device::platform::TestPlatform::new(1_700_000_000, 0)),
        );
        let err = match started {
            Err(e) => e.to_string(),
            Ok(running) => {
                let _ = running.stop();
                panic!("{name}: the device started with a planted symbolic link");
            }
        };
        assert!(
            err.contains(name) && err.contains("symbolic link"),
            "{name}: the error names the file and says why: {err}"
        );
        assert_eq!(
            std::fs::read(&outside).unwrap(),
            b"an operator's file\n",
            "{name}: the outside file is untouched"
        );
    }
}
