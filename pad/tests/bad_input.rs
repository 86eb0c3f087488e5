//! Issue #2 section 4: every kind of bad input is its own error, with a
//! clear message, consumes nothing and leaves nothing half-written.

mod common;

use common::*;
use otc_pad::Error;
use otc_pad::export::{self, HEADER_LEN};
use otc_pad::generate::{NewPad, create_pad};
use otc_pad::legacy::import_legacy;
use otc_pad::{PadStore, Side};
use otc_proto::Format;
use std::collections::HashSet;
use std::path::Path;

fn codes_seen() -> &'static std::sync::Mutex<HashSet<&'static str>> {
    static S: std::sync::OnceLock<std::sync::Mutex<HashSet<&'static str>>> =
        std::sync::OnceLock::new();
    S.get_or_init(Default::default)
}

fn expect_code<T: std::fmt::Debug>(r: Result<T, Error>, code: &'static str) -> Error {
    match r {
        Ok(v) => panic!("expected error {code}, got Ok({v:?})"),
        Err(e) => {
            assert_eq!(e.code(), code, "wrong error: {e}");
            // messages are sentences that say what to do, without pad bytes
            let msg = e.to_string();
            assert!(msg.len() > 20, "{msg}");
            codes_seen().lock().unwrap().insert(code);
            e
        }
    }
}

#[test]
fn unknown_contact() {
    let p = pair(Format::V3, 4096);
    let before = tree(p.dir.path());
    expect_code(p.alice.seal("carol", b"x"), "unknown_contact");
    expect_code(p.alice.quote("carol", 1), "unknown_contact");
    expect_code(p.alice.open("carol", &[0u8; 40]), "unknown_contact");
    expect_code(p.alice.check_open("carol", &[0u8; 40]), "unknown_contact");
    expect_code(p.alice.contact("carol"), "unknown_contact");
    expect_code(p.alice.remove("carol", &mut |_, _| {}), "unknown_contact");
    assert_eq!(tree(p.dir.path()), before);
}

#[test]
fn pad_exhausted_and_too_large() {
    let p = pair(Format::V1, 256);
    // side A has 128 bytes; v1 costs 2n+48: a 40-byte message costs exactly 128
    let before = p.alice.meta("bob").unwrap();
    let e = expect_code(p.alice.seal("bob", &[0u8; 41]), "too_large");
    assert!(e.to_string().contains("130"), "{e}");
    assert_eq!(p.alice.meta("bob").unwrap(), before);
    p.alice.seal("bob", &[0u8; 40]).unwrap();
    let used = p.alice.meta("bob").unwrap();
    expect_code(p.alice.seal("bob", b""), "pad_exhausted");
    expect_code(p.alice.quote("bob", 0), "pad_exhausted");
    assert_eq!(p.alice.meta("bob").unwrap(), used);
}

#[test]
fn data_dir_not_ours() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("someone-elses");
    std::fs::create_dir(&d).unwrap();
    std::fs::write(d.join("notes.txt"), b"important").unwrap();
    expect_code(PadStore::open_dir(&d), "data_dir_not_ours");
    // untouched
    assert_eq!(tree(&d), vec![(d.join("notes.txt"), 9)]);
    // a file, not a directory
    expect_code(PadStore::open_dir(d.join("notes.txt")), "data_dir_not_ours");
    // a marker with the wrong contents
    let m = dir.path().join("fake");
    std::fs::create_dir(&m).unwrap();
    std::fs::write(m.join("otc-device.data"), b"something else\n").unwrap();
    expect_code(PadStore::open_dir(&m), "data_dir_not_ours");
    // empty and missing directories are initialised
    let e = dir.path().join("empty");
    std::fs::create_dir(&e).unwrap();
    PadStore::open_dir(&e).unwrap();
    PadStore::open_dir(dir.path().join("new/nested")).unwrap();
    // a directory holding only the appliance's otc.toml (image/init writes
    // it before the first boot makes the store) is initialised, the file kept
    let s = dir.path().join("settings-only");
    std::fs::create_dir(&s).unwrap();
    std::fs::write(s.join("otc.toml"), b"[rpc]\nport = 9051\n").unwrap();
    PadStore::open_dir(&s).unwrap();
    assert_eq!(
        std::fs::read(s.join("otc.toml")).unwrap(),
        b"[rpc]\nport = 9051\n"
    );
    // ... but otc.toml beside anything else is still not ours
    std::fs::write(d.join("otc.toml"), b"").unwrap();
    expect_code(PadStore::open_dir(&d), "data_dir_not_ours");
}

#[test]
fn data_dir_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let _a = PadStore::open_dir(dir.path().join("d")).unwrap();
    expect_code(PadStore::open_dir(dir.path().join("d")), "data_dir_locked");
}

fn alice_with_export(
    format: Format,
    size: u64,
) -> (tempfile::TempDir, PadStore, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let alice = PadStore::open_dir(dir.path().join("alice")).unwrap();
    let (export, _) = make_pad(&alice, dir.path(), "bob", size, format);
    (dir, alice, export)
}

fn assert_nothing_imported(bob: &PadStore) {
    assert!(bob.list().is_empty());
    assert!(
        pad_files(bob.dir()).is_empty(),
        "{:?}",
        pad_files(bob.dir())
    );
}

#[test]
fn truncated_export() {
    let (dir, _alice, export) = alice_with_export(Format::V3, 8192);
    let bob = PadStore::open_dir(dir.path().join("bob")).unwrap();
    let bytes = std::fs::read(&export).unwrap();
    for cut in [bytes.len() - 1, bytes.len() - 32, 4096, 100, 50, 10] {
        let t = dir.path().join(format!("cut{cut}"));
        std::fs::write(&t, &bytes[..cut]).unwrap();
        expect_code(
            export::import(&bob, &t, "alice", &mut |_, _| {}),
            "export_truncated",
        );
        assert_nothing_imported(&bob);
    }
    // extra bytes at the end are also the wrong length
    let t = dir.path().join("long");
    let mut long = bytes.clone();
    long.push(0);
    std::fs::write(&t, &long).unwrap();
    expect_code(
        export::import(&bob, &t, "alice", &mut |_, _| {}),
        "export_truncated",
    );
    assert_nothing_imported(&bob);
}

#[test]
fn corrupt_export() {
    let (dir, _alice, export) = alice_with_export(Format::V3, 8192);
    let bob = PadStore::open_dir(dir.path().join("bob")).unwrap();
    let bytes = std::fs::read(&export).unwrap();
    let flips = [
        0usize,                  // magic
        9,                       // size (header checksum)
        70,                      // header checksum itself
        40,                      // pad id
        HEADER_LEN as usize + 5, // pad byte
        bytes.len() - 1,         // trailer
    ];
    for at in flips {
        let t = dir.path().join(format!("flip{at}"));
        let mut b = bytes.clone();
        b[at] ^= 0x01;
        std::fs::write(&t, &b).unwrap();
        expect_code(
            export::import(&bob, &t, "alice", &mut |_, _| {}),
            "export_corrupt",
        );
        assert_nothing_imported(&bob);
    }
    // not an export at all
    let t = dir.path().join("random");
    std::fs::write(&t, vec![7u8; 1000]).unwrap();
    expect_code(
        export::import(&bob, &t, "alice", &mut |_, _| {}),
        "export_corrupt",
    );
    let t = dir.path().join("tiny");
    std::fs::write(&t, b"hello").unwrap();
    expect_code(
        export::import(&bob, &t, "alice", &mut |_, _| {}),
        "export_corrupt",
    );
    assert_nothing_imported(&bob);
    // and the genuine file still imports
    export::import(&bob, &export, "alice", &mut |_, _| {}).unwrap();
    assert_eq!(bob.contact("alice").unwrap().side, Side::B);
}

#[test]
fn contact_exists_and_pad_already_stored() {
    let p = pair(Format::V3, 4096);
    let before = tree(p.dir.path());
    // same name again
    expect_code(
        export::import(&p.bob, &p.export, "alice", &mut |_, _| {}),
        "contact_exists",
    );
    // same pad, other name
    expect_code(
        export::import(&p.bob, &p.export, "alice2", &mut |_, _| {}),
        "pad_already_stored",
    );
    let export2 = p.dir.path().join("again.otcpad");
    expect_code(
        new_pad(&p.alice, "bob", 4096, Format::V3, &export2),
        "contact_exists",
    );
    assert!(!export2.exists());
    expect_code(
        export::import(&p.bob, &p.export, "../evil", &mut |_, _| {}),
        "bad_contact_name",
    );
    assert_eq!(tree(p.dir.path()), before);
}

#[test]
fn creation_failures_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let alice = PadStore::open_dir(dir.path().join("alice")).unwrap();
    let req = |source: Option<&Path>, size: u64, export: &str| NewPad {
        contact: "bob".into(),
        size,
        split: None,
        format: Format::V3,
        source: source.map(Path::to_path_buf),
        export: dir.path().join(export),
    };
    // stuck source fails the repetition count test
    let e = expect_code(
        create_pad(
            &alice,
            &req(Some(Path::new("/dev/zero")), 1 << 20, "a"),
            &mut |_, _, _| {},
        ),
        "health_test_failed",
    );
    assert!(e.to_string().contains("repetition"), "{e}");
    // a source that fails only the adaptive proportion test, late in the pad
    let mut biased = vec![0u8; 3 << 20];
    getrandom::fill(&mut biased).unwrap();
    for (i, b) in biased.iter_mut().enumerate().skip(2 << 20) {
        if i % 2 == 0 {
            *b = 0xAA;
        }
    }
    let src = dir.path().join("biased.bin");
    std::fs::write(&src, &biased).unwrap();
    let e = expect_code(
        create_pad(&alice, &req(Some(&src), 3 << 20, "b"), &mut |_, _, _| {}),
        "health_test_failed",
    );
    assert!(e.to_string().contains("adaptive"), "{e}");
    // a source shorter than the pad
    let short = dir.path().join("short.bin");
    std::fs::write(&short, &biased[..1000]).unwrap();
    expect_code(
        create_pad(&alice, &req(Some(&short), 4096, "c"), &mut |_, _, _| {}),
        "source_too_short",
    );
    // bad geometry
    expect_code(
        create_pad(&alice, &req(None, 10, "d"), &mut |_, _, _| {}),
        "size_out_of_range",
    );
    let mut r = req(None, 4096, "e");
    r.split = Some(4096);
    expect_code(create_pad(&alice, &r, &mut |_, _, _| {}), "bad_split");
    // export path already there
    std::fs::write(dir.path().join("f"), b"keep me").unwrap();
    expect_code(
        create_pad(&alice, &req(None, 4096, "f"), &mut |_, _, _| {}),
        "output_exists",
    );
    assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), b"keep me");

    // nothing half-made anywhere
    assert!(alice.list().is_empty());
    assert!(pad_files(alice.dir()).is_empty());
    for name in ["a", "b", "c", "d", "e"] {
        assert!(!dir.path().join(name).exists(), "{name}");
        assert!(
            !dir.path().join(format!("{name}.tmp")).exists(),
            "{name}.tmp"
        );
    }
    // and a good one afterwards works, from a healthy source
    let good = dir.path().join("good.bin");
    std::fs::write(&good, &biased[..1 << 20]).unwrap();
    create_pad(&alice, &req(Some(&good), 1 << 20, "ok"), &mut |_, _, _| {}).unwrap();
    assert_eq!(alice.list().len(), 1);
}

fn legacy_files(root: &Path, n: usize, md: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let store = root.join("alice.bob.random.store");
    let meta = root.join("alice.bob.random.metadata");
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).unwrap();
    std::fs::write(&store, &b).unwrap();
    std::fs::write(&meta, md).unwrap();
    (store, meta)
}

#[test]
fn legacy_wrong_size_store() {
    let dir = tempfile::tempdir().unwrap();
    let s = PadStore::open_dir(dir.path().join("d")).unwrap();
    let (store, meta) = legacy_files(
        dir.path(),
        9999,
        r#"{"direction": 1, "split_index": 5000, "encrypt_index": 0, "n_bytes": 10000, "checksum": "abc"}"#,
    );
    let e = expect_code(
        import_legacy(&s, &store, &meta, "bob", &mut |_, _| {}),
        "legacy_wrong_size",
    );
    assert!(e.to_string().contains("9999"));
    assert!(s.list().is_empty());
    assert!(pad_files(s.dir()).is_empty());
}

#[test]
fn legacy_metadata_disagrees() {
    let dir = tempfile::tempdir().unwrap();
    let s = PadStore::open_dir(dir.path().join("d")).unwrap();
    for md in [
        r#"{"direction": 0, "split_index": 5000, "encrypt_index": 0, "n_bytes": 10000}"#,
        r#"{"direction": 1, "split_index": 10001, "encrypt_index": 0, "n_bytes": 10000}"#,
        r#"{"direction": 1, "split_index": 5000, "encrypt_index": 6000, "n_bytes": 10000}"#,
        r#"{"direction": -1, "split_index": 5000, "encrypt_index": 100, "n_bytes": 10000}"#,
        r#"{"direction": 1, "split_index": 5000, "encrypt_index": -3, "n_bytes": 10000}"#,
        r#"{"split_index": 5000, "encrypt_index": 0, "n_bytes": 10000}"#,
        r#"{"direction": 1, "#,
    ] {
        let (store, meta) = legacy_files(dir.path(), 10000, md);
        expect_code(
            import_legacy(&s, &store, &meta, "bob", &mut |_, _| {}),
            "legacy_metadata",
        );
        assert!(s.list().is_empty());
        assert!(pad_files(s.dir()).is_empty());
    }
}

#[test]
fn bad_sizes() {
    for s in ["", "12Q", "-5", "1.5G", "0"] {
        expect_code(otc_pad::size::parse_size(s), "bad_size");
    }
}

/// Runs last by name order is not guaranteed, so this test checks the
/// distinctness of the codes directly.
#[test]
fn section_4_errors_are_distinct() {
    let codes = [
        "unknown_contact",
        "pad_exhausted",
        "too_large",
        "export_corrupt",
        "export_truncated",
        "legacy_wrong_size",
        "legacy_metadata",
        "data_dir_not_ours",
    ];
    let set: HashSet<_> = codes.iter().collect();
    assert_eq!(set.len(), codes.len());
    let _ = codes_seen();
}

#[test]
fn missing_pad_file_is_reported_and_removable() {
    let p = pair(Format::V3, 4096);
    let path = pad_file(&p.alice, "bob");
    let dir = p.alice.dir().to_path_buf();
    drop(p.alice);
    std::fs::remove_file(&path).unwrap();
    let alice = PadStore::open_dir(&dir).unwrap();
    assert_eq!(alice.list().len(), 1);
    expect_code(alice.seal("bob", b"x"), "pad_file_missing");
    let pkg = p.bob.seal("alice", b"y").unwrap().package;
    expect_code(alice.open("bob", &pkg), "pad_file_missing");
    alice.remove("bob", &mut |_, _| {}).unwrap();
    assert!(alice.list().is_empty());
}

/// `pad new --export F` with something already at `F.tmp` (here a symbolic
/// link to a file someone cares about) is refused; nothing is touched.
#[test]
fn export_temp_in_the_way_is_refused_and_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let alice = PadStore::open_dir(dir.path().join("alice")).unwrap();
    let victim = dir.path().join("victim.txt");
    std::fs::write(&victim, b"precious").unwrap();
    let export = dir.path().join("bob.otcpad");
    let tmp = dir.path().join("bob.otcpad.tmp");
    std::os::unix::fs::symlink(&victim, &tmp).unwrap();
    let r = new_pad(&alice, "bob", 8192, Format::V3, &export);
    let e = expect_code(r, "output_exists");
    assert!(e.to_string().contains("bob.otcpad.tmp"), "{e}");
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert!(
        std::fs::symlink_metadata(&tmp)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(!export.exists());
    assert_nothing_imported(&alice);
    // A plain leftover file is refused the same way, and kept.
    std::fs::remove_file(&tmp).unwrap();
    std::fs::write(&tmp, b"leftover").unwrap();
    let r = new_pad(&alice, "bob", 8192, Format::V3, &export);
    expect_code(r, "output_exists");
    assert_eq!(std::fs::read(&tmp).unwrap(), b"leftover");
}
