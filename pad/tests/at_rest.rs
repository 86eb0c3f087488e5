//! Encryption at rest (issue 18) on real files: a stolen card shows no
//! pad bytes, no contact name and no message; replay refusal does not
//! rely on erased pad reading as zeros; the device's own pairing path
//! (make, sealed export, sealed import) writes encrypted pads too.

mod common;

use otc_pad::pairing::{self, PairingCode};
use otc_pad::vault::{self, KdfParams, MasterKey};
use otc_pad::vfs::RealFs;
use otc_pad::{Error, PadStore, Range, StoreOptions};
use otc_proto::Format;
use std::collections::HashSet;
use std::path::Path;

/// A new encrypted data directory at `dir` and its store.
fn encrypted(dir: &Path) -> (PadStore, MasterKey) {
    std::fs::create_dir(dir).unwrap();
    let key = vault::create(&RealFs, dir, b"tulip 4817 Gravel sonar", &KdfParams::TEST).unwrap();
    let store = PadStore::open_dir_keyed(dir, StoreOptions::default(), Some(key.clone())).unwrap();
    (store, key)
}

/// Every file under `dir`: (path relative to `dir`, contents).
fn every_file(dir: &Path) -> Vec<(String, Vec<u8>)> {
    common::tree(dir)
        .into_iter()
        .map(|(p, _)| {
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            (rel, std::fs::read(&p).unwrap())
        })
        .collect()
}

/// Whether any 16-byte window of `hay` is one of `windows`.
fn holds_any(hay: &[u8], windows: &HashSet<[u8; 16]>) -> bool {
    hay.windows(16)
        .any(|w| windows.contains(<&[u8; 16]>::try_from(w).unwrap()))
}

#[test]
fn a_stolen_card_shows_no_pad_bytes_no_names_and_no_messages() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("alice");
    let (alice, _key) = encrypted(&dir);
    let contact = "zebedee-the-partner";
    // A pad made from the kernel RNG with a plain export, and one made the
    // device's way (hardware source path, sealed export, sealed import).
    let (export, pad) = common::make_pad(&alice, tmp.path(), contact, 1 << 16, Format::V3);
    let bob = PadStore::open_dir(tmp.path().join("bob")).unwrap();
    otc_pad::export::import(&bob, &export, "alice", &mut |_, _| {}).unwrap();
    let other = "quentin-second";
    pairing::make_pad(&alice, other, 1 << 16, None, &mut |_, _| true).unwrap();
    let code = PairingCode::generate().unwrap();
    let sealed = tmp.path().join("q.otcsealed");
    pairing::export_sealed(&alice, other, &sealed, &code).unwrap();
    let (carol, _) = encrypted(&tmp.path().join("carol"));
    pairing::import_sealed(&carol, &sealed, &code, "alice-imported").unwrap();

    let secret_msgs: [&[u8]; 2] = [
        b"meet at the old mill at nine",
        b"the password is swordfish",
    ];
    for m in secret_msgs {
        let s = alice.seal(contact, m).unwrap();
        assert_eq!(bob.open("alice", &s.package).unwrap().message, m);
        let r = bob.seal("alice", m).unwrap();
        assert_eq!(alice.open(contact, &r.package).unwrap().message, m);
    }
    // One sealed but not yet opened by alice: its pad is still on the card.
    let pending = bob.seal("alice", b"unread reply").unwrap();

    // The pad bytes, the way the partner holds them: every 16-byte window
    // that is not all zeros (erased ranges are zeros everywhere).
    let mut windows = HashSet::new();
    for w in pad.windows(16) {
        if w.iter().any(|b| *b != 0) {
            windows.insert(<[u8; 16]>::try_from(w).unwrap());
        }
    }
    // The second pad's bytes, from its (decrypted) copy in carol.
    let q = carol.meta("alice-imported").unwrap();
    let qbytes = carol
        .debug_read_pad(&q.pad_id, Range { lo: 0, hi: q.size })
        .unwrap();
    for w in qbytes.windows(16) {
        if w.iter().any(|b| *b != 0) {
            windows.insert(<[u8; 16]>::try_from(w).unwrap());
        }
    }
    assert!(windows.len() > 100_000);
    drop(alice);
    drop(carol);

    for root in [dir.clone(), tmp.path().join("carol")] {
        let files = every_file(&root);
        assert!(files.len() >= 5, "{files:?}");
        for (name, bytes) in &files {
            assert!(
                !holds_any(bytes, &windows),
                "{name} holds 16 pad bytes in clear"
            );
            for needle in [
                contact.as_bytes(),
                other.as_bytes(),
                b"alice-imported",
                b"old mill",
                b"swordfish",
                b"unread reply",
                b"\"reserved\"",
            ] {
                assert!(
                    !name.as_bytes().windows(needle.len()).any(|w| w == needle)
                        && !bytes.windows(needle.len()).any(|w| w == needle),
                    "{name} shows {:?}",
                    String::from_utf8_lossy(needle)
                );
            }
        }
    }
    // The check can fail: the plain partner's directory shows both.
    let plain = every_file(&tmp.path().join("bob"));
    assert!(plain.iter().any(|(_, b)| holds_any(b, &windows)));
    assert!(plain.iter().any(|(n, _)| n.contains("alice")));

    // And the card still works with the key.
    let key = vault::unlock(&RealFs, &dir, b"tulip 4817 Gravel sonar", 10).unwrap();
    let alice = PadStore::open_dir_keyed(&dir, StoreOptions::default(), Some(key)).unwrap();
    assert_eq!(
        alice.open(contact, &pending.package).unwrap().message,
        b"unread reply"
    );
}

#[test]
fn an_encrypted_directory_needs_its_key_and_a_plain_one_refuses_a_key() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("enc");
    let (s, key) = encrypted(&dir);
    drop(s);
    let e = PadStore::open_dir(&dir).unwrap_err();
    assert!(matches!(e, Error::PassphraseNeeded(_)), "{e}");
    let plain = tmp.path().join("plain");
    drop(PadStore::open_dir(&plain).unwrap());
    let e = PadStore::open_dir_keyed(&plain, StoreOptions::default(), Some(key)).unwrap_err();
    assert!(matches!(e, Error::NotEncrypted(_)), "{e}");
    // Another device's key does not open the records.
    let (s2, other) = encrypted(&tmp.path().join("other"));
    drop(s2);
    let e2 = {
        let key = vault::unlock(&RealFs, &dir, b"tulip 4817 Gravel sonar", 10).unwrap();
        let st = PadStore::open_dir_keyed(&dir, StoreOptions::default(), Some(key)).unwrap();
        common::make_pad(&st, tmp.path(), "bob", 4096, Format::V3);
        drop(st);
        PadStore::open_dir_keyed(&dir, StoreOptions::default(), Some(other)).unwrap_err()
    };
    assert_eq!(e2.code(), "corrupt_metadata", "{e2}");
}

/// Replay refusal comes from the record's ranges, checked before any pad
/// byte is read: on the encrypted store an erased range reads back as
/// keystream, not zeros, and the replay is still refused, also after a
/// restart.
#[test]
fn replay_is_refused_on_the_encrypted_store_though_erased_pad_reads_as_keystream() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("alice");
    let (alice, key) = encrypted(&dir);
    for format in [Format::V3, Format::V1] {
        let name = format!("bob-{format:?}");
        let (export, _) = common::make_pad(&alice, tmp.path(), &name, 8192, format);
        let bob = PadStore::open_dir(tmp.path().join(format!("b{format:?}"))).unwrap();
        otc_pad::export::import(&bob, &export, "alice", &mut |_, _| {}).unwrap();
        let s = bob.seal("alice", b"once only").unwrap();
        assert_eq!(alice.open(&name, &s.package).unwrap().message, b"once only");
        // The used range: raw zeros on disk, keystream through the cipher.
        let m = alice.meta(&name).unwrap();
        let used = match format {
            Format::V3 => Range {
                lo: s.index,
                hi: s.index + 9,
            },
            Format::V1 => Range {
                lo: s.index + 1 - s.cost,
                hi: s.index + 1,
            },
        };
        let raw = common::read_disk_path(&alice.pad_path(&m.pad_id), used);
        assert!(common::is_zero(&raw), "{format:?}: not erased raw");
        let through = alice.debug_read_pad(&m.pad_id, used).unwrap();
        assert!(!common::is_zero(&through), "{format:?}: reads as zeros");
        for e in [
            alice.check_open(&name, &s.package).unwrap_err(),
            alice.open(&name, &s.package).unwrap_err(),
        ] {
            assert!(matches!(e, Error::Replay { .. }), "{format:?}: {e}");
        }
    }
    drop(alice);
    let alice = PadStore::open_dir_keyed(&dir, StoreOptions::default(), Some(key)).unwrap();
    assert_eq!(alice.contacts().len(), 2);
}
