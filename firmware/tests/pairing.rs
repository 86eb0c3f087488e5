//! Issue 17, the pad-side core: the pairing code, the sealed export and
//! its import, the fingerprint, and making a pad from a hardware source.
//!
//! On main the export was the pad in clear with unkeyed checksums: its
//! side byte (offset 24) could be flipped to `A`, the checksums
//! recomputed, and the partner's device imported it as side A, so both
//! devices sent from offset 0. Here every byte of the sealed file is
//! authenticated under a key from the pairing code.

use otc_device::Error;
use otc_device::pad::pairing::{
    self, CODE_SYMBOLS, ExportKind, PairingCode, SEAL_CHUNK, SEALED_HEADER_LEN, TAG_LEN,
};
use otc_device::pad::{PadStore, Side};
use otc_proto::Format;
use std::path::{Path, PathBuf};

struct Pair {
    _tmp: tempfile::TempDir,
    alice: PadStore,
    bob: PadStore,
    bob_dir: PathBuf,
    export: PathBuf,
    code: PairingCode,
}

/// Alice makes a pad for bob (kernel RNG ⊕ /dev/urandom as the "hardware"
/// source) and writes the sealed export; bob has an empty store.
fn pair(size: u64) -> Pair {
    let tmp = tempfile::tempdir().unwrap();
    let alice = PadStore::open_dir(tmp.path().join("alice")).unwrap();
    let bob_dir = tmp.path().join("bob");
    let bob = PadStore::open_dir(&bob_dir).unwrap();
    let made = pairing::make_pad(
        &alice,
        "bob",
        size,
        Some(Path::new("/dev/urandom")),
        &mut |_, _| true,
    )
    .unwrap();
    assert_eq!(made.size, size);
    let code = PairingCode::generate().unwrap();
    let export = tmp.path().join("bob.otcpad");
    let s = pairing::export_sealed(&alice, "bob", &export, &code).unwrap();
    assert_eq!(s.fingerprint, made.fingerprint);
    assert_eq!(
        std::fs::metadata(&export).unwrap().len(),
        s.file_len,
        "the file is as long as the summary says"
    );
    Pair {
        _tmp: tmp,
        alice,
        bob,
        bob_dir,
        export,
        code,
    }
}

/// Nothing of a failed import is left in bob's store: no contact, no pad
/// file, no used-pad mark.
fn nothing_written(bob: &PadStore, dir: &Path) {
    assert!(bob.contacts().is_empty(), "{:?}", bob.contacts());
    for sub in ["pads", "used", "contacts"] {
        let n = std::fs::read_dir(dir.join(sub)).unwrap().count();
        assert_eq!(n, 0, "{sub}/ of the importer must stay empty");
    }
}

fn import(p: &Pair, file: &Path) -> otc_device::Result<pairing::ImportSummary> {
    pairing::import_sealed(&p.bob, file, &p.code, "alice")
}

fn changed(p: &Pair, f: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let mut bytes = std::fs::read(&p.export).unwrap();
    f(&mut bytes);
    let path = p.export.with_extension("changed");
    let _ = std::fs::remove_file(&path);
    std::fs::write(&path, &bytes).unwrap();
    path
}

/// The attack of the issue, on the sealed file: the side byte flipped
/// from B to A. It must fail, and bob's store must stay empty.
#[test]
fn the_side_byte_flip_fails() {
    let p = pair(64 * 1024);
    let bytes = std::fs::read(&p.export).unwrap();
    assert_eq!(bytes[24], b'B', "the side byte of the sealed header");
    let flipped = changed(&p, |b| b[24] = b'A');
    let e = import(&p, &flipped).unwrap_err();
    assert_eq!(e.code(), "export_corrupt", "{e}");
    assert!(e.to_string().contains("changed"), "{e}");
    nothing_written(&p.bob, &p.bob_dir);
    // The untouched file imports as side B.
    let s = import(&p, &p.export).unwrap();
    assert_eq!(s.side, Side::B);
    assert_eq!(p.bob.contact("alice").unwrap().side, Side::B);
}

#[test]
fn a_wrong_code_is_refused_and_writes_nothing() {
    let p = pair(4096);
    let other = PairingCode::generate().unwrap();
    let e = pairing::import_sealed(&p.bob, &p.export, &other, "alice").unwrap_err();
    assert_eq!(e.code(), "wrong_pairing_code", "{e}");
    assert!(e.to_string().contains("pairing code"), "{e}");
    nothing_written(&p.bob, &p.bob_dir);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
    /// Any single changed byte, anywhere in the file, fails the import and
    /// writes nothing.
    #[test]
    fn any_changed_byte_fails(pos in 0usize..(SEALED_HEADER_LEN + 4096 + TAG_LEN), x in 1u8..=255) {
        let p = pair(4096);
        let path = changed(&p, |b| b[pos] ^= x);
        let e = import(&p, &path).unwrap_err();
        proptest::prop_assert!(
            ["export_corrupt", "wrong_pairing_code", "export_truncated"].contains(&e.code()),
            "byte {} ^ {:#x}: {}", pos, x, e
        );
        nothing_written(&p.bob, &p.bob_dir);
    }
}

/// A pad of several chunks: a file cut anywhere (also exactly at a chunk's
/// end, dropping the last chunk), one byte longer, or with two chunks
/// swapped, fails.
#[test]
fn truncated_extended_and_reordered_files_fail() {
    let size = 2 * SEAL_CHUNK as u64 + 4096;
    let p = pair(size);
    let len = std::fs::metadata(&p.export).unwrap().len() as usize;
    assert_eq!(
        len,
        SEALED_HEADER_LEN + size as usize + 3 * TAG_LEN,
        "three chunks"
    );
    let chunk = SEAL_CHUNK + TAG_LEN;
    for cut in [1, 4096 + TAG_LEN, len - SEALED_HEADER_LEN, len - 10] {
        let path = changed(&p, |b| b.truncate(len - cut));
        let e = import(&p, &path).unwrap_err();
        assert!(
            ["export_truncated", "export_corrupt"].contains(&e.code()),
            "cut {cut}: {e}"
        );
        nothing_written(&p.bob, &p.bob_dir);
    }
    let path = changed(&p, |b| b.push(0));
    assert_eq!(import(&p, &path).unwrap_err().code(), "export_truncated");
    // The first two (full) chunks swapped: same length, wrong order.
    let path = changed(&p, |b| {
        let h = SEALED_HEADER_LEN;
        let first = b[h..h + chunk].to_vec();
        b.copy_within(h + chunk..h + 2 * chunk, h);
        b[h + chunk..h + 2 * chunk].copy_from_slice(&first);
    });
    assert_eq!(import(&p, &path).unwrap_err().code(), "export_corrupt");
    // A file whose header claims only the first two chunks' worth of pad,
    // cut to match: the second chunk is not marked last, so it fails.
    let path = changed(&p, |b| {
        b[8..16].copy_from_slice(&(2 * SEAL_CHUNK as u64).to_le_bytes());
        b.truncate(SEALED_HEADER_LEN + 2 * chunk);
    });
    assert_eq!(import(&p, &path).unwrap_err().code(), "export_corrupt");
    nothing_written(&p.bob, &p.bob_dir);
    import(&p, &p.export).unwrap();
}

/// Sealed on one store after a sealed export and import, opened on the
/// other, both ways; the fingerprints agree on both devices.
#[test]
fn seal_on_one_open_on_the_other_and_fingerprints_agree() {
    let p = pair(64 * 1024);
    let s = import(&p, &p.export).unwrap();
    let a = p.alice.contact("bob").unwrap();
    let b = p.bob.contact("alice").unwrap();
    assert_eq!(a.fingerprint, b.fingerprint);
    assert_eq!(a.fingerprint, s.fingerprint);
    assert_eq!(a.pad_id, b.pad_id);
    assert_eq!((a.side, b.side), (Side::A, Side::B));
    let fp = &a.fingerprint;
    assert_eq!(fp.len(), 19, "{fp}");
    assert!(
        fp.split('-')
            .all(|g| g.len() == 4 && g.bytes().all(|c| c.is_ascii_hexdigit())),
        "{fp}"
    );
    // Another pad has another fingerprint.
    let q = pair(64 * 1024);
    assert_ne!(q.alice.contact("bob").unwrap().fingerprint, *fp);

    let sealed = p.alice.seal("bob", b"attack at dawn").unwrap();
    let opened = p.bob.open("alice", &sealed.package).unwrap();
    assert_eq!(opened.message, b"attack at dawn");
    let back = p.bob.seal("alice", b"retreat at ten").unwrap();
    assert_ne!(
        back.index, sealed.index,
        "the two sides send from different regions"
    );
    let opened = p.alice.open("bob", &back.package).unwrap();
    assert_eq!(opened.message, b"retreat at ten");
}

/// The fingerprint is of (pad id, size, split, format): each matters.
#[test]
fn the_fingerprint_depends_on_every_fact() {
    let id = "ab".repeat(32);
    let f = pairing::fingerprint(&id, 4096, 2048, Format::V3);
    assert_eq!(
        f,
        pairing::fingerprint(&id.to_uppercase(), 4096, 2048, Format::V3)
    );
    for other in [
        pairing::fingerprint(&"ac".repeat(32), 4096, 2048, Format::V3),
        pairing::fingerprint(&id, 8192, 2048, Format::V3),
        pairing::fingerprint(&id, 4096, 2047, Format::V3),
        pairing::fingerprint(&id, 4096, 2048, Format::V1),
    ] {
        assert_ne!(f, other);
    }
}

#[test]
fn codes_parse_as_people_type_them() {
    let c = PairingCode::generate().unwrap();
    let g = c.groups();
    assert_eq!(g.len(), CODE_SYMBOLS + 6, "{g}");
    assert!(
        g.bytes()
            .all(|b| b == b'-' || pairing::ALPHABET.contains(&b)),
        "{g}"
    );
    for typed in [
        g.clone(),
        g.to_lowercase(),
        g.replace('-', " "),
        g.replace('-', ""),
        format!("  {}  ", g.replace('-', " - ")),
    ] {
        assert_eq!(PairingCode::parse(&typed).unwrap(), c, "{typed:?}");
    }
    // Crockford's aliases: O is 0, I and L are 1.
    let zeros_ones = g.replace('0', "o").replace('1', "L");
    assert_eq!(PairingCode::parse(&zeros_ones).unwrap(), c);

    let bad = |s: &str| {
        let e = PairingCode::parse(s).unwrap_err();
        assert_eq!(e.code(), "bad_pairing_code", "{s:?}: {e}");
        e.to_string()
    };
    let plain = g.replace('-', "");
    assert!(bad(&plain[..27]).contains("27 characters"));
    assert!(bad(&format!("{plain}7")).contains("29 characters"));
    assert!(bad("").contains("0 characters"));
    assert!(bad(&format!("{}U", &plain[..27])).contains("'U'"));
    assert!(bad(&format!("{}!", &plain[..27])).contains("'!'"));
    assert!(bad(&format!("{}é", &plain[..27])).contains("'é'"));

    // Every single mistyped character and every swap of two different
    // neighbours is caught as a typo, not taken as another code.
    let chars: Vec<u8> = plain.bytes().collect();
    for i in 0..chars.len() {
        for &a in pairing::ALPHABET {
            if a == chars[i] {
                continue;
            }
            let mut t = chars.clone();
            t[i] = a;
            let s = String::from_utf8(t).unwrap();
            assert!(bad(&s).contains("typo"), "{s}");
        }
        if i + 1 < chars.len() && chars[i] != chars[i + 1] {
            let mut t = chars.clone();
            t.swap(i, i + 1);
            let s = String::from_utf8(t).unwrap();
            assert!(bad(&s).contains("typo"), "{s}");
        }
    }
    // The code never shows in a debug print.
    assert!(!format!("{c:?}").contains(&g[..4]));
}

/// Making: every byte is hw ⊕ kernel; a missing source is refused; a
/// source that is stuck fails the health test; one that ends early is
/// refused; Cancel erases everything half-made. Nothing is left of a
/// failed make.
#[test]
fn making_a_pad_from_a_hardware_source() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let store = PadStore::open_dir(&dir).unwrap();
    let empty = |store: &PadStore| {
        assert!(store.contacts().is_empty());
        assert_eq!(std::fs::read_dir(dir.join("pads")).unwrap().count(), 0);
    };
    let missing = tmp.path().join("no-hwrng");
    let e =
        pairing::make_pad(&store, "bob", 1 << 20, Some(&missing), &mut |_, _| true).unwrap_err();
    assert_eq!(e.code(), "no_hardware_rng", "{e}");
    assert!(e.to_string().contains("no-hwrng"), "{e}");
    empty(&store);

    let zeros = tmp.path().join("zeros");
    std::fs::write(&zeros, vec![0u8; 1 << 20]).unwrap();
    let e = pairing::make_pad(&store, "bob", 1 << 20, Some(&zeros), &mut |_, _| true).unwrap_err();
    assert_eq!(e.code(), "health_test_failed", "{e}");
    empty(&store);

    let short = tmp.path().join("short");
    let mut r = vec![0u8; 100_000];
    getrandom::fill(&mut r).unwrap();
    std::fs::write(&short, &r).unwrap();
    let e = pairing::make_pad(&store, "bob", 1 << 20, Some(&short), &mut |_, _| true).unwrap_err();
    assert_eq!(e.code(), "source_too_short", "{e}");
    empty(&store);

    // Cancel after the second step.
    let mut calls = Vec::new();
    let e = pairing::make_pad(
        &store,
        "bob",
        4 << 20,
        Some(Path::new("/dev/urandom")),
        &mut |d, t| {
            calls.push((d, t));
            calls.len() < 2
        },
    )
    .unwrap_err();
    assert_eq!(e.code(), "cancelled", "{e}");
    assert_eq!(calls.len(), 2, "stopped at the first `false`");
    assert_eq!(calls[0], (pairing::MAKE_CHUNK as u64, 4 << 20));
    empty(&store);

    // A whole make reports progress up to the total.
    let mut last = (0, 0);
    let made = pairing::make_pad(
        &store,
        "bob",
        (1 << 20) + 5,
        Some(Path::new("/dev/urandom")),
        &mut |d, t| {
            assert!(d > last.0 && d <= t);
            last = (d, t);
            true
        },
    )
    .unwrap();
    assert_eq!(last, ((1 << 20) + 5, (1 << 20) + 5));
    assert_eq!(made.split, ((1 << 20) + 5) / 2);
    let c = store.contact("bob").unwrap();
    assert_eq!(c.side, Side::A);
    assert_eq!(c.fingerprint, made.fingerprint);
    // The same source byte stream twice would make the same pad if the
    // kernel RNG were not mixed in: two pads from one file differ.
    let src = tmp.path().join("src");
    let mut r = vec![0u8; 8192];
    getrandom::fill(&mut r).unwrap();
    std::fs::write(&src, &r).unwrap();
    let a = pairing::make_pad(&store, "c1", 8192, Some(&src), &mut |_, _| true).unwrap();
    let b = pairing::make_pad(&store, "c2", 8192, Some(&src), &mut |_, _| true).unwrap();
    assert_ne!(a.pad_id, b.pad_id);
}

/// Only the maker exports, and only a pad nothing has used; an existing
/// file is never overwritten.
#[test]
fn what_may_be_exported() {
    let p = pair(64 * 1024);
    let code = PairingCode::generate().unwrap();
    let e = pairing::export_sealed(&p.alice, "bob", &p.export, &code).unwrap_err();
    assert_eq!(e.code(), "output_exists");
    // A second export of the same unused pad is allowed (a retry).
    let again = p.export.with_extension("again");
    pairing::export_sealed(&p.alice, "bob", &again, &code).unwrap();
    import(&p, &p.export).unwrap();
    let back = p.export.with_extension("back");
    let e = pairing::export_sealed(&p.bob, "alice", &back, &code).unwrap_err();
    assert_eq!(e.code(), "not_exportable", "{e}");
    p.alice.seal("bob", b"hi").unwrap();
    let used = p.export.with_extension("used");
    let e = pairing::export_sealed(&p.alice, "bob", &used, &code).unwrap_err();
    assert_eq!(e.code(), "not_exportable", "{e}");
    assert!(!used.exists() && !PathBuf::from(format!("{}.tmp", used.display())).exists());
    // Importing the same pad again (the retry's file) is refused.
    let e = pairing::import_sealed(&p.bob, &again, &code, "alice2").unwrap_err();
    assert!(
        ["pad_already_stored", "wrong_pairing_code"].contains(&e.code()),
        "{e}"
    );
}

/// The plain export of earlier versions is refused by name.
#[test]
fn a_plain_export_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let alice = PadStore::open_dir(tmp.path().join("a")).unwrap();
    let bob = PadStore::open_dir(tmp.path().join("b")).unwrap();
    let plain = tmp.path().join("plain.otcpad");
    otc_device::pad::generate::create_pad(
        &alice,
        &otc_device::pad::generate::NewPad {
            contact: "bob".into(),
            size: 4096,
            split: None,
            format: Format::V3,
            source: None,
            export: plain.clone(),
        },
        &mut |_, _, _| {},
    )
    .unwrap();
    assert_eq!(pairing::probe(&plain).unwrap(), ExportKind::Plain);
    let code = PairingCode::generate().unwrap();
    let e = pairing::import_sealed(&bob, &plain, &code, "alice").unwrap_err();
    assert!(matches!(e, Error::PlainExport { .. }), "{e}");
    assert!(e.to_string().contains("--code-file"), "{e}");
    assert!(bob.contacts().is_empty());
}

/// `pad import` on the command line names the plain file's problem and the
/// new way.
#[test]
fn the_command_line_refuses_a_plain_export() {
    let tmp = tempfile::tempdir().unwrap();
    let alice = PadStore::open_dir(tmp.path().join("a")).unwrap();
    let plain = tmp.path().join("plain.otcpad");
    otc_device::pad::generate::create_pad(
        &alice,
        &otc_device::pad::generate::NewPad {
            contact: "bob".into(),
            size: 4096,
            split: None,
            format: Format::V3,
            source: None,
            export: plain.clone(),
        },
        &mut |_, _, _| {},
    )
    .unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_otc-device"))
        .arg("--data")
        .arg(tmp.path().join("b"))
        .args(["pad", "import"])
        .arg(&plain)
        .args(["--contact", "alice"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("error[plain_export]"), "{err}");
    assert!(
        err.contains("pad new") && err.contains("--code-file"),
        "{err}"
    );
}
