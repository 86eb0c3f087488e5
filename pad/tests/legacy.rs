//! Importing the original One Time Chat's pads and using them (format v1).

mod common;

use common::*;
use otc_pad::legacy::import_legacy;
use otc_pad::{Origin, PadStore, Range, Side};
use otc_proto::Format;

fn write_legacy(
    root: &std::path::Path,
    name: &str,
    pad: &[u8],
    md: String,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let s = root.join(format!("{name}.random.store"));
    let m = root.join(format!("{name}.random.metadata"));
    std::fs::write(&s, pad).unwrap();
    std::fs::write(&m, md).unwrap();
    (s, m)
}

#[test]
fn legacy_pair_talks_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let n = 20_000usize;
    let split = 12_000usize;
    let mut pad = vec![0u8; n];
    getrandom::fill(&mut pad).unwrap();
    // Alice already sent 300 bytes' worth; Bob already sent from the top
    // down to offset 19_499 (next to read), i.e. 500 bytes used.
    let (sa, ma) = write_legacy(
        dir.path(),
        "alice.bob",
        &pad,
        format!(
            r#"{{"direction": 1, "split_index": {split}, "encrypt_index": 300, "n_bytes": {n}, "checksum": "ignored"}}"#
        ),
    );
    let (sb, mb) = write_legacy(
        dir.path(),
        "bob.alice",
        &pad,
        format!(
            r#"{{"direction": -1, "split_index": {split}, "encrypt_index": 19499, "n_bytes": {n}, "checksum": 12345}}"#
        ),
    );
    let alice = PadStore::open_dir(dir.path().join("alice")).unwrap();
    let bob = PadStore::open_dir(dir.path().join("bob")).unwrap();
    let ia = import_legacy(&alice, &sa, &ma, "bob", &mut |_, _| {}).unwrap();
    let ib = import_legacy(&bob, &sb, &mb, "alice", &mut |_, _| {}).unwrap();
    assert_eq!(ia.already_used, 300);
    assert_eq!(ib.already_used, 500);
    assert_eq!(ia.pad_id, ib.pad_id);
    let m = alice.meta("bob").unwrap();
    assert_eq!(
        (m.side, m.format, m.origin),
        (Side::A, Format::V1, Origin::Legacy)
    );
    assert_eq!(alice.contact("bob").unwrap().send_left, split as u64 - 300);
    assert_eq!(
        bob.contact("alice").unwrap().send_left,
        (n - split) as u64 - 500
    );

    // already-used bytes are zero in our copies, the rest is the pad
    assert!(is_zero(&read_disk(&alice, "bob", Range { lo: 0, hi: 300 })));
    assert!(is_zero(&read_disk(
        &bob,
        "alice",
        Range {
            lo: 19_500,
            hi: n as u64
        }
    )));
    assert_eq!(
        read_disk(&alice, "bob", Range { lo: 300, hi: 400 }),
        &pad[300..400]
    );

    // Alice sends at 300 upward
    let s = alice.seal("bob", b"hello from alice").unwrap();
    assert_eq!(s.index, 300);
    assert_eq!(
        bob.open("alice", &s.package).unwrap().message,
        b"hello from alice"
    );
    // Bob sends from 19_499 downward
    let s = bob.seal("alice", b"hello from bob").unwrap();
    assert_eq!(s.index, 19_499);
    let cost = Format::V1.pad_cost(14);
    let mut bytes = pad[19_500 - cost..19_500].to_vec();
    bytes.reverse();
    assert_eq!(
        otc_proto::v1::open(&s.package, &bytes).unwrap(),
        b"hello from bob"
    );
    let o = alice.open("bob", &s.package).unwrap();
    assert_eq!(o.message, b"hello from bob");
    // the original tool never told us where the partner was: bob's first
    // package shows as having skipped the 500 bytes he had already used
    assert!(!o.warnings.is_empty());

    // the original files are untouched
    assert_eq!(std::fs::read(&sa).unwrap(), pad);
}

#[test]
fn legacy_exhausted_pad_imports_but_cannot_send() {
    let dir = tempfile::tempdir().unwrap();
    let mut pad = vec![0u8; 1000];
    getrandom::fill(&mut pad).unwrap();
    let (s, m) = write_legacy(
        dir.path(),
        "x",
        &pad,
        r#"{"direction": -1, "split_index": 500, "encrypt_index": 499, "n_bytes": 1000}"#.into(),
    );
    let st = PadStore::open_dir(dir.path().join("d")).unwrap();
    import_legacy(&st, &s, &m, "bob", &mut |_, _| {}).unwrap();
    assert_eq!(st.seal("bob", b"").unwrap_err().code(), "pad_exhausted");
}

/// Issue 7 item 2, legacy path: a legacy pad imported, used and removed
/// cannot be imported again (its cursors would restart).
#[test]
fn legacy_reimport_after_remove_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut pad = vec![0u8; 20_000];
    getrandom::fill(&mut pad).unwrap();
    let (s, m) = write_legacy(
        dir.path(),
        "x",
        &pad,
        r#"{"direction": 1, "split_index": 10000, "encrypt_index": 0, "n_bytes": 20000}"#.into(),
    );
    let st = PadStore::open_dir(dir.path().join("d")).unwrap();
    import_legacy(&st, &s, &m, "bob", &mut |_, _| {}).unwrap();
    let first = st.seal("bob", b"attack at dawn").unwrap();
    st.remove("bob", &mut |_, _| {}).unwrap();
    let e = import_legacy(&st, &s, &m, "bob", &mut |_, _| {}).unwrap_err();
    assert_eq!(e.code(), "pad_used_before", "{e}");
    assert!(st.list().is_empty());
    assert!(pad_files(st.dir()).is_empty());
    let _ = first;
}
