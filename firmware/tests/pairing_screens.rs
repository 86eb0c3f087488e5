//! Issue #17: the New contact and Import contact flows on two running
//! devices (real stores in temp dirs, real UIs on memory displays, taps
//! by label through the screen trace) sharing a directory that stands for
//! the USB stick (`stick::DirStick`). Hardware RNG: `/dev/urandom`, or a
//! FIFO the test feeds (to hold a pad's making at a known point, so Cancel
//! and `busy` are checked without any timing).

mod common;

use common::device::*;
use otc_device::pad::pairing::PairingCode;
use otc_device::pairing_flow::{PairingOptions, STICK_PULLED_EXPORT, STICK_PULLED_IMPORT};
use otc_device::stick::{DirStick, Mode, MountedStick, Stick, StickError};
use otc_ui::ScreenTrace;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

const SIZE_LABEL: &str = "256 KiB";

fn options(stick: &Path, hwrng: &Path) -> PairingOptions {
    PairingOptions {
        stick: Some(Arc::new(DirStick::new(stick))),
        hwrng: hwrng.to_path_buf(),
        reserve: 0,
        sizes: vec![64 << 10, 256 << 10],
        ..Default::default()
    }
}

struct Two {
    _root: tempfile::TempDir,
    stick: PathBuf,
    alice: Dev,
    bob: Dev,
}

fn two() -> Two {
    let root = tempfile::tempdir().expect("tempdir");
    let (a, b, stick) = (
        root.path().join("alice"),
        root.path().join("bob"),
        root.path().join("stick"),
    );
    otc_testkit::init(&a, "Alice");
    otc_testkit::init(&b, "Bob");
    std::fs::create_dir(&stick).expect("stick dir");
    let urandom = Path::new("/dev/urandom");
    let alice = Dev::start_with(&a, "Alice", limits(), options(&stick, urandom));
    let bob = Dev::start_with(&b, "Bob", limits(), options(&stick, urandom));
    Two {
        _root: root,
        stick,
        alice,
        bob,
    }
}

fn on(dev: &Dev, screen: &str) -> ScreenTrace {
    dev.wait_screen(&format!("the {screen} screen"), |t| t.screen == screen)
}

/// Types `text` on the keyboard (keys by id, so case needs no shift; the
/// code's parser ignores case and spaces) and taps Done.
fn type_and_done(dev: &Dev, title: &str, text: &str) {
    dev.wait_screen(&format!("the keyboard for {title}"), |t| {
        t.screen == "keyboard" && t.texts.first().is_some_and(|x| x == title)
    });
    for c in text.chars().filter(|c| *c != ' ') {
        dev.tap(&format!("kb-char-{}", c.to_ascii_lowercase()));
    }
    let want = text.replace(' ', "").to_ascii_lowercase();
    dev.wait_screen("the text typed", |t| {
        t.texts
            .get(1)
            .is_some_and(|x| x.ends_with(&want[want.len().saturating_sub(10)..]))
    });
    dev.tap("Done");
}

/// The button whose label starts with `prefix`.
fn tap_starting(dev: &Dev, prefix: &str) {
    let t = dev.screen();
    let b = t
        .buttons
        .iter()
        .find(|b| b.label.starts_with(prefix))
        .unwrap_or_else(|| panic!("no button starting {prefix:?}: {}", t.to_json()))
        .label
        .clone();
    dev.tap(&b);
}

/// Alice's side up to the code: New contact → name → size → Make →
/// Export. Returns the code as the screen shows it.
fn make_and_export(alice: &Dev, name: &str) -> String {
    make_and_export_sized(alice, name, SIZE_LABEL)
}

/// [`make_and_export`] with the size button starting `size`.
fn make_and_export_sized(alice: &Dev, name: &str, size: &str) -> String {
    alice.tap("New contact");
    type_and_done(alice, "Name", name);
    let t = on(alice, "new-contact-size");
    let sizes: Vec<_> = t
        .buttons
        .iter()
        .filter(|b| b.id.starts_with("choice:"))
        .collect();
    assert_eq!(sizes.len(), 2, "{}", t.to_json());
    assert!(
        sizes[0].label.starts_with("64 KiB · about "),
        "{}",
        t.to_json()
    );
    tap_starting(alice, size);
    on(alice, "new-contact-make");
    alice.tap("Make");
    on(alice, "new-contact-export");
    alice.tap("Export");
    let t = on(alice, "new-contact-code");
    assert!(t.has_text("Remove the stick."), "{}", t.to_json());
    code_of(&t)
}

/// The pairing code: one text of 7 groups of base32 characters.
fn code_of(t: &ScreenTrace) -> String {
    t.texts
        .iter()
        .find(|x| {
            let groups: Vec<&str> = x.split(' ').collect();
            groups.len() == 7
                && groups
                    .iter()
                    .all(|g| !g.is_empty() && g.chars().all(|c| c.is_ascii_alphanumeric()))
        })
        .unwrap_or_else(|| panic!("no code on screen: {}", t.to_json()))
        .clone()
}

fn export_file(stick: &Path) -> String {
    let files: Vec<String> = std::fs::read_dir(stick)
        .expect("stick")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files.len(), 1, "one export on the stick: {files:?}");
    assert!(files[0].ends_with(".otcpad"), "{files:?}");
    files[0].clone()
}

/// Bob's side up to the Import button's result screen.
fn import(bob: &Dev, file: &str, code: &str, name: &str) -> ScreenTrace {
    bob.tap("Import contact");
    on(bob, "import-insert");
    bob.tap("Continue");
    on(bob, "import-files");
    bob.tap(file);
    type_and_done(bob, "Code", code);
    type_and_done(bob, "Name", name);
    on(bob, "import-confirm");
    bob.tap("Import");
    bob.wait_screen("the import's end", |t| {
        t.screen == "import-done" || t.screen == "import-error"
    })
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn pair_two_devices_through_the_stick_then_seal_and_open() {
    let d = two();
    let code = make_and_export(&d.alice, "bob");
    let file = export_file(&d.stick);
    // The code is on the screen only: not in any file of the card or stick.
    let bare = code.replace(' ', "");
    for (p, _) in common::tree(&d.alice.dir)
        .into_iter()
        .chain(common::tree(&d.stick))
    {
        let bytes = std::fs::read(&p).unwrap_or_default();
        assert!(
            !contains(&bytes, bare.as_bytes()),
            "the code is in {}",
            p.display()
        );
    }
    let t = import(&d.bob, &file, &code, "alice");
    assert_eq!(t.screen, "import-done", "{}", t.to_json());
    assert!(
        t.has_text(
            "The export file was overwritten and deleted from the stick. Its flash memory may \
             keep old blocks; they are useless without the code."
        ),
        "{}",
        t.to_json()
    );
    assert!(
        !d.stick.join(&file).exists(),
        "the export is gone from the stick"
    );
    let bob_fp = t.texts[3].clone();
    d.bob.tap("Done");
    on(&d.bob, "home");
    d.alice.tap("Partner has imported it");
    let t = on(&d.alice, "new-contact-done");
    assert!(!t.has_text(&code), "the code is forgotten");
    assert!(
        t.has_text(&bob_fp),
        "same fingerprint on both: {} vs {bob_fp}",
        t.to_json()
    );
    d.alice.tap("Done");
    on(&d.alice, "home");
    d.alice.wait_audit("pad_created");
    d.bob.wait_audit("pad_imported");
    // A seal on one opens on the other.
    let (resp, _) = d.alice.seal("bob", "attack at dawn");
    assert_eq!(resp.status, 200, "{}", resp.body);
    let package = resp.json()["package"]
        .as_str()
        .expect("package")
        .to_string();
    let (resp, _) = d.bob.open("alice", &package);
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.json()["message"], "attack at dawn");
    // And back.
    let (resp, _) = d.bob.seal("alice", "retreat at ten");
    assert_eq!(resp.status, 200, "{}", resp.body);
    let package = resp.json()["package"]
        .as_str()
        .expect("package")
        .to_string();
    let (resp, _) = d.alice.open("bob", &package);
    assert_eq!(resp.json()["message"], "retreat at ten");
}

#[test]
fn a_wrong_code_writes_nothing() {
    let d = two();
    let _code = make_and_export(&d.alice, "bob");
    let file = export_file(&d.stick);
    let wrong = PairingCode::generate()
        .expect("code")
        .groups()
        .replace('-', " ");
    let t = import(&d.bob, &file, &wrong, "alice");
    assert_eq!(t.screen, "import-error");
    assert!(t.has_text("Wrong code"), "{}", t.to_json());
    assert!(t.has_text("Nothing was written."), "{}", t.to_json());
    assert!(
        d.bob
            .running()
            .service()
            .expect("unlocked")
            .store()
            .contacts()
            .is_empty()
    );
    assert!(common::pad_files(&d.bob.dir).is_empty());
    assert!(
        d.stick.join(&file).exists(),
        "the export stays for a second try"
    );
    d.bob.tap("Cancel");
    on(&d.bob, "home");
}

#[test]
fn a_changed_byte_on_the_stick_fails_the_import() {
    // The side byte (24) and a byte in the pad's ciphertext.
    for at in [24usize, 5000] {
        let d = two();
        let code = make_and_export(&d.alice, "bob");
        let file = export_file(&d.stick);
        let path = d.stick.join(&file);
        let mut bytes = std::fs::read(&path).expect("export");
        bytes[at] ^= 0x03;
        std::fs::write(&path, &bytes).expect("tamper");
        let t = import(&d.bob, &file, &code, "alice");
        assert_eq!(t.screen, "import-error", "byte {at}: {}", t.to_json());
        assert!(t.has_text("Not imported"), "byte {at}: {}", t.to_json());
        assert!(
            d.bob
                .running()
                .service()
                .expect("unlocked")
                .store()
                .contacts()
                .is_empty(),
            "byte {at}"
        );
        assert!(common::pad_files(&d.bob.dir).is_empty(), "byte {at}");
    }
}

#[test]
fn a_stick_gone_at_export_leaves_nothing_half_made() {
    let d = two();
    d.alice.tap("New contact");
    type_and_done(&d.alice, "Name", "bob");
    on(&d.alice, "new-contact-size");
    tap_starting(&d.alice, SIZE_LABEL);
    on(&d.alice, "new-contact-make");
    d.alice.tap("Make");
    on(&d.alice, "new-contact-export");
    std::fs::remove_dir(&d.stick).expect("pull the stick");
    d.alice.tap("Export");
    let t = on(&d.alice, "new-contact-error");
    assert!(t.has_text("No USB stick found"), "{}", t.to_json());
    d.alice.tap("Cancel");
    d.alice.wait_screen("home, with the pad erased", |t| {
        t.screen == "home" && t.has_text("Cancelled: the new pad was erased")
    });
    assert!(
        d.alice
            .running()
            .service()
            .expect("unlocked")
            .store()
            .contacts()
            .is_empty()
    );
    assert!(common::pad_files(&d.alice.dir).is_empty());
    assert!(!d.stick.exists(), "nothing written where the stick was");
}

#[test]
fn a_full_data_partition_offers_no_size() {
    let root = tempfile::tempdir().expect("tempdir");
    let (a, stick) = (root.path().join("alice"), root.path().join("stick"));
    otc_testkit::init(&a, "Alice");
    // The test seam for statvfs: 1 MiB free, 256 MiB kept free.
    let opts = PairingOptions {
        reserve: 256 << 20,
        free_space: Arc::new(|_: &Path| Ok(1 << 20)),
        ..options(&stick, Path::new("/dev/urandom"))
    };
    let alice = Dev::start_with(&a, "Alice", limits(), opts);
    alice.tap("New contact");
    type_and_done(&alice, "Name", "bob");
    let t = on(&alice, "new-contact-full");
    assert!(t.has_text("No room for a new pad"), "{}", t.to_json());
    assert!(t.button("Make").is_none());
    assert!(
        !t.buttons.iter().any(|b| b.label.contains("KiB")),
        "{}",
        t.to_json()
    );
    alice.tap("Back");
    on(&alice, "home");
    assert!(
        alice
            .running()
            .service()
            .expect("unlocked")
            .store()
            .contacts()
            .is_empty()
    );
}

/// A hardware RNG the test controls: a FIFO fed with kernel random bytes,
/// which stops after the rate measurement and the pad's first chunk until
/// `gate` is opened (a write to a FIFO whose reader closed fails with
/// EPIPE: SIGPIPE is ignored in Rust programs).
fn gated_rng(path: &Path) -> (std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>) {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
    let (gate, wait) = std::sync::mpsc::channel::<()>();
    let path = path.to_path_buf();
    let t = std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 << 10];
        // The flow's rate measurement: as much as it reads, until it closes
        // (only then does the next open wait for the next reader).
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("fifo");
        loop {
            getrandom::fill(&mut buf).expect("getrandom");
            if f.write_all(&buf[..4096]).is_err() {
                break;
            }
        }
        drop(f);
        // The pad: one chunk, then wait for the test, then as much as read.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("fifo");
        getrandom::fill(&mut buf).expect("getrandom");
        let _ = f.write_all(&buf);
        let _ = wait.recv_timeout(WAIT);
        loop {
            getrandom::fill(&mut buf).expect("getrandom");
            if f.write_all(&buf).is_err() {
                return;
            }
        }
    });
    (gate, t)
}

#[test]
fn cancel_while_making_erases_everything_and_the_endpoint_is_busy_meanwhile() {
    let root = tempfile::tempdir().expect("tempdir");
    let (a, stick, fifo) = (
        root.path().join("alice"),
        root.path().join("stick"),
        root.path().join("hwrng"),
    );
    otc_testkit::init(&a, "Alice");
    std::fs::create_dir(&stick).expect("stick");
    let (gate, feeder) = gated_rng(&fifo);
    let alice = Dev::start_with(&a, "Alice", limits(), options(&stick, &fifo));
    alice.tap("New contact");
    type_and_done(&alice, "Name", "bob");
    on(&alice, "new-contact-size");
    tap_starting(&alice, SIZE_LABEL);
    on(&alice, "new-contact-make");
    alice.tap("Make");
    let t = alice.wait_screen("the progress with Cancel", |t| {
        t.screen == "progress" && t.button("Cancel").is_some()
    });
    assert!(t.has_text("Making a pad for bob"), "{}", t.to_json());
    // The endpoint says busy while the pad is made.
    let status = alice.get(otc_proto::routes::STATUS);
    assert_eq!(status.json()["busy"], true, "{}", status.body);
    alice.tap("Cancel");
    if gate.send(()).is_err() {
        panic!("the RNG feeder stopped early: {:?}", feeder.join());
    }
    alice.wait_screen("home, nothing kept", |t| {
        t.screen == "home" && t.has_text("Cancelled: nothing was kept")
    });
    feeder.join().expect("feeder");
    assert!(
        alice
            .running()
            .service()
            .expect("unlocked")
            .store()
            .contacts()
            .is_empty()
    );
    assert!(common::pad_files(&alice.dir).is_empty());
    assert!(!alice.audit_kinds().iter().any(|k| k == "pad_created"));
    let status = alice.get(otc_proto::routes::STATUS);
    assert_eq!(status.json()["busy"], false, "{}", status.body);
    assert!(std::fs::read_dir(&stick).expect("stick").next().is_none());
}

/// A stick the test pulls out at a known point: a real directory (real
/// files, fsync) that leaves its port, with whatever it holds, at the
/// `pull_at`-th time the device asks whether it is still there (the flows
/// ask after every 1 MiB written or read): it is renamed to `aside`, so
/// every later look at the stick's path finds nothing, as after a pull.
/// The test puts it back (`reinsert`) with what it held.
struct PullableStick {
    dir: PathBuf,
    aside: PathBuf,
    pull_at: usize,
    checks: Arc<AtomicUsize>,
}

impl Stick for PullableStick {
    fn mount(&self, mode: Mode) -> Result<MountedStick, StickError> {
        let real = DirStick::new(&self.dir).mount(mode)?;
        let (dir, aside, pull_at, checks) = (
            self.dir.clone(),
            self.aside.clone(),
            self.pull_at,
            self.checks.clone(),
        );
        Ok(
            MountedStick::new(self.dir.clone(), mode, None).with_presence(Box::new(move || {
                if checks.fetch_add(1, Ordering::SeqCst) + 1 == pull_at {
                    std::fs::rename(&dir, &aside).expect("pull the stick out");
                }
                real.still_there()
            })),
        )
    }
}

const BIG_LABEL: &str = "4 MiB";

/// Sizes 64 KiB and 4 MiB (4 chunks of export), the stick pulled out at
/// the `pull_at`-th check of an export or import on this device.
fn pull_options(stick: &Path, aside: &Path, pull_at: usize) -> PairingOptions {
    PairingOptions {
        stick: Some(Arc::new(PullableStick {
            dir: stick.to_path_buf(),
            aside: aside.to_path_buf(),
            pull_at,
            checks: Arc::new(AtomicUsize::new(0)),
        })),
        sizes: vec![64 << 10, 4 << 20],
        ..options(stick, Path::new("/dev/urandom"))
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Seals on `a` to `b_name`, opens on `b` from `a_name`.
fn seal_and_open(a: &Dev, b_name: &str, b: &Dev, a_name: &str, text: &str) {
    let (resp, _) = a.seal(b_name, text);
    assert_eq!(resp.status, 200, "{}", resp.body);
    let package = resp.json()["package"]
        .as_str()
        .expect("package")
        .to_string();
    let (resp, _) = b.open(a_name, &package);
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.json()["message"], text);
}

#[test]
fn a_stick_pulled_out_mid_export_says_so_leaves_nothing_importable_and_a_new_try_works() {
    let root = tempfile::tempdir().expect("tempdir");
    let (a, b, stick, aside) = (
        root.path().join("alice"),
        root.path().join("bob"),
        root.path().join("stick"),
        root.path().join("stick-pulled"),
    );
    otc_testkit::init(&a, "Alice");
    otc_testkit::init(&b, "Bob");
    std::fs::create_dir(&stick).expect("stick dir");
    // Pulled after the export's second MiB of four.
    let alice = Dev::start_with(&a, "Alice", limits(), pull_options(&stick, &aside, 2));
    let bob = Dev::start_with(&b, "Bob", limits(), pull_options(&stick, &aside, 0));
    alice.tap("New contact");
    type_and_done(&alice, "Name", "bob");
    on(&alice, "new-contact-size");
    tap_starting(&alice, BIG_LABEL);
    on(&alice, "new-contact-make");
    alice.tap("Make");
    on(&alice, "new-contact-export");
    alice.tap("Export");
    let t = on(&alice, "new-contact-error");
    assert!(t.has_text("The export failed"), "{}", t.to_json());
    assert!(t.has_text(STICK_PULLED_EXPORT), "{}", t.to_json());
    assert!(t.button("Try again").is_some(), "{}", t.to_json());
    assert!(!stick.exists(), "the stick is out");
    // What the stick took away: nothing an import lists (at most the
    // temporary file of the write cut short).
    let left = names(&aside);
    assert!(
        left.iter().all(|n| n.ends_with(".otcpad.tmp")),
        "the pulled stick holds {left:?}"
    );
    // The pad stays while a new try is offered; the endpoint is still busy.
    assert_eq!(
        alice
            .running()
            .service()
            .expect("the device is unlocked")
            .store()
            .contacts()
            .len(),
        1
    );
    let status = alice.get(otc_proto::routes::STATUS);
    assert_eq!(status.json()["busy"], true, "{}", status.body);

    // Back in, and again: the export replaces what the cut write left.
    std::fs::rename(&aside, &stick).expect("insert the stick again");
    alice.tap("Try again");
    on(&alice, "new-contact-export");
    alice.tap("Export");
    let t = on(&alice, "new-contact-code");
    let code = code_of(&t);
    let file = export_file(&stick);
    let t = import(&bob, &file, &code, "alice");
    assert_eq!(t.screen, "import-done", "{}", t.to_json());
    let bob_fp = t.texts[3].clone();
    bob.tap("Done");
    alice.tap("Partner has imported it");
    let t = on(&alice, "new-contact-done");
    assert!(t.has_text(&bob_fp), "{} vs {bob_fp}", t.to_json());
    alice.tap("Done");
    on(&alice, "home");
    on(&bob, "home");
    seal_and_open(&alice, "bob", &bob, "alice", "the stick came back");
}

#[test]
fn a_stick_pulled_out_mid_import_says_so_writes_nothing_and_a_new_try_works() {
    let root = tempfile::tempdir().expect("tempdir");
    let (a, b, stick, aside) = (
        root.path().join("alice"),
        root.path().join("bob"),
        root.path().join("stick"),
        root.path().join("stick-pulled"),
    );
    otc_testkit::init(&a, "Alice");
    otc_testkit::init(&b, "Bob");
    std::fs::create_dir(&stick).expect("stick dir");
    let alice = Dev::start_with(&a, "Alice", limits(), pull_options(&stick, &aside, 0));
    // Pulled after the import's second MiB of four.
    let bob = Dev::start_with(&b, "Bob", limits(), pull_options(&stick, &aside, 2));
    let code = make_and_export_sized(&alice, "bob", BIG_LABEL);
    let file = export_file(&stick);
    let export_bytes = std::fs::read(stick.join(&file)).expect("the export");
    let before: Vec<PathBuf> = common::tree(&bob.dir).into_iter().map(|(p, _)| p).collect();

    let t = import(&bob, &file, &code, "alice");
    assert_eq!(t.screen, "import-error", "{}", t.to_json());
    assert!(t.has_text("The USB stick was removed"), "{}", t.to_json());
    assert!(t.has_text(STICK_PULLED_IMPORT), "{}", t.to_json());
    assert!(!stick.exists(), "the stick is out");
    // Nothing half-made on the importer: no contact, no pad, no temporary
    // file, no file that was not there before.
    assert!(
        bob.running()
            .service()
            .expect("the device is unlocked")
            .store()
            .contacts()
            .is_empty()
    );
    assert!(common::pad_files(&bob.dir).is_empty());
    let after: Vec<PathBuf> = common::tree(&bob.dir).into_iter().map(|(p, _)| p).collect();
    assert_eq!(after, before, "files of the importer's data directory");
    assert!(!bob.audit_kinds().iter().any(|k| k == "pad_imported"));
    // The stick still holds the export as it was (it was only read).
    assert_eq!(
        std::fs::read(aside.join(&file)).expect("the export on the pulled stick"),
        export_bytes
    );
    let status = bob.get(otc_proto::routes::STATUS);
    assert_eq!(status.json()["busy"], false, "{}", status.body);
    bob.tap("Back");
    on(&bob, "home");

    // Back in, and again: the same code imports it.
    std::fs::rename(&aside, &stick).expect("insert the stick again");
    let t = import(&bob, &file, &code, "alice");
    assert_eq!(t.screen, "import-done", "{}", t.to_json());
    let bob_fp = t.texts[3].clone();
    bob.tap("Done");
    alice.tap("Partner has imported it");
    let t = on(&alice, "new-contact-done");
    assert!(t.has_text(&bob_fp), "{} vs {bob_fp}", t.to_json());
    alice.tap("Done");
    on(&bob, "home");
    seal_and_open(&bob, "alice", &alice, "bob", "the stick came back");
}
