//! The pad store end to end on real files: sealing and opening both ways in
//! both formats, consumption order, erase after use, the received-range log,
//! burning, durable cursors across restarts.

mod common;

use common::*;
use otc_device::Error;
use otc_device::pad::meta::Range;
use otc_device::pad::{OpenWarning, PadStore, StoreOptions};
use otc_proto::Format;

#[test]
fn round_trip_both_ways_both_formats() {
    for format in [Format::V2, Format::V1] {
        let p = pair(format, 64 * 1024);
        for i in 0..20u32 {
            let msg = format!("hello bob #{i} {}", "x".repeat(i as usize * 7));
            let s = p.alice.seal("bob", msg.as_bytes()).unwrap();
            assert_eq!(s.cost as usize, format.pad_cost(msg.len()));
            let c = p.bob.check_open("alice", &s.package).unwrap();
            assert_eq!(c.index, s.index);
            assert!(c.warnings.is_empty(), "{:?}", c.warnings);
            let o = p.bob.open("alice", &s.package).unwrap();
            assert_eq!(o.message, msg.as_bytes());

            let reply = format!("hi alice #{i}");
            let s = p.bob.seal("alice", reply.as_bytes()).unwrap();
            let o = p.alice.open("bob", &s.package).unwrap();
            assert_eq!(o.message, reply.as_bytes());
            assert!(o.warnings.is_empty());
        }
    }
}

/// The store hands proto the pad bytes in the spec's consumption order:
/// check against the original pad bytes directly.
#[test]
fn consumption_order_matches_spec() {
    for format in [Format::V2, Format::V1] {
        let p = pair(format, 8192);
        let n = 4096u64;
        let msg = b"order";
        let cost = format.pad_cost(msg.len()) as u64;

        // Side A: ascending from 0, index = lowest offset.
        let s = p.alice.seal("bob", msg).unwrap();
        assert_eq!(s.index, 0);
        let pad = &p.pad[0..cost as usize];
        assert_eq!(format.open(&s.package, pad).unwrap(), msg);

        // Side B.
        let s = p.bob.seal("alice", msg).unwrap();
        match format {
            Format::V2 => {
                // [N - cost, N), ascending, index = lowest offset
                assert_eq!(s.index, 8192 - cost);
                let pad = &p.pad[s.index as usize..8192];
                assert_eq!(format.open(&s.package, pad).unwrap(), msg);
            }
            Format::V1 => {
                // offsets N-1, N-2, ... ; index = highest offset used
                assert_eq!(s.index, 8192 - 1);
                let mut pad = p.pad[(8192 - cost) as usize..8192].to_vec();
                pad.reverse();
                assert_eq!(format.open(&s.package, &pad).unwrap(), msg);
            }
        }
        let _ = n;
    }
}

#[test]
fn used_bytes_are_erased_on_disk_both_sides() {
    for format in [Format::V2, Format::V1] {
        let p = pair(format, 8192);
        let s = p.alice.seal("bob", b"secret").unwrap();
        let r = Range { lo: 0, hi: s.cost };
        assert!(is_zero(&read_disk(&p.alice, "bob", r)), "sender erased");
        assert!(!is_zero(&read_disk(&p.bob, "alice", r)), "receiver not yet");
        p.bob.open("alice", &s.package).unwrap();
        assert!(is_zero(&read_disk(&p.bob, "alice", r)), "receiver erased");
        // Next bytes untouched.
        let next = Range {
            lo: s.cost,
            hi: s.cost + 64,
        };
        assert_eq!(
            read_disk(&p.alice, "bob", next),
            &p.pad[next.lo as usize..next.hi as usize]
        );
    }
}

#[test]
fn quote_has_no_side_effects_and_matches_seal() {
    let p = pair(Format::V2, 4096);
    let before = p.alice.contact("bob").unwrap();
    let q = p.alice.quote("bob", 100).unwrap();
    let q2 = p.alice.quote("bob", 100).unwrap();
    assert_eq!(q, q2);
    assert_eq!(q.cost, 132);
    assert_eq!(q.pad_left, 2048);
    assert_eq!(q.pad_left_after, 2048 - 132);
    assert_eq!(p.alice.contact("bob").unwrap(), before);
    let s = p.alice.seal("bob", &[0u8; 100]).unwrap();
    assert_eq!(s.cost, q.cost);
    assert_eq!(s.pad_left, q.pad_left_after);
    assert_eq!(s.index, 0);
}

#[test]
fn replay_is_flagged_and_refused_without_counting_a_failure() {
    let p = pair(Format::V2, 4096);
    let s = p.alice.seal("bob", b"once").unwrap();
    p.bob.open("alice", &s.package).unwrap();
    let c = p.bob.check_open("alice", &s.package).unwrap();
    assert_eq!(c.warnings, vec![OpenWarning::Replay]);
    for _ in 0..5 {
        match p.bob.open("alice", &s.package) {
            Err(Error::Replay { index }) => assert_eq!(index, s.index),
            other => panic!("expected replay, got {other:?}"),
        }
    }
    let m = p.bob.meta("alice").unwrap();
    assert!(m.failures.is_empty());
    assert!(m.burned.is_empty());
}

#[test]
fn skipped_ranges_are_warned_and_out_of_order_works() {
    for format in [Format::V2, Format::V1] {
        let p = pair(format, 8192);
        let a = p.alice.seal("bob", b"first").unwrap();
        let b = p.alice.seal("bob", b"second").unwrap();
        let c = p.alice.seal("bob", b"third").unwrap();
        // bob gets the third first: the first two were skipped
        let chk = p.bob.check_open("alice", &c.package).unwrap();
        assert_eq!(
            chk.warnings,
            vec![OpenWarning::Skipped {
                bytes: a.cost + b.cost
            }]
        );
        let o = p.bob.open("alice", &c.package).unwrap();
        assert_eq!(o.message, b"third");
        // late arrivals still open, without a skip warning
        let o = p.bob.open("alice", &a.package).unwrap();
        assert_eq!(o.message, b"first");
        assert!(o.warnings.is_empty());
        let o = p.bob.open("alice", &b.package).unwrap();
        assert_eq!(o.message, b"second");
        // and in the other direction (side B sender, descending)
        let x = p.bob.seal("alice", b"x1").unwrap();
        let y = p.bob.seal("alice", b"x2").unwrap();
        let chk = p.alice.check_open("bob", &y.package).unwrap();
        assert_eq!(chk.warnings, vec![OpenWarning::Skipped { bytes: x.cost }]);
        p.alice.open("bob", &y.package).unwrap();
        p.alice.open("bob", &x.package).unwrap();
    }
}

/// Issue 7 item 4: forgeries never burn pad. (Replaces the test that
/// asserted burning after three failures: that burn was a lever for the
/// relay, so it is gone.) Several forged packages at the index of a future
/// genuine message, across a restart, then the genuine one opens; no pad
/// byte was erased by the forgeries and nothing was recorded.
#[test]
fn forged_packages_never_burn_the_genuine_message() {
    for format in [Format::V2, Format::V1] {
        let p = pair(format, 64 * 1024);
        let s = p.alice.seal("bob", b"real message").unwrap();
        let r = p.alice.meta("bob").unwrap().send_range(0, s.cost);
        let before = p.bob.meta("alice").unwrap();
        let forge = |i: usize| {
            let mut f = s.package.clone();
            let k = 8 + (i % (f.len() - 8)); // past the marker and index
            f[k] ^= 1 << (i % 8);
            f
        };
        for i in 0..5 {
            match p.bob.open("alice", &forge(i)) {
                Err(Error::VerifyFailed {}) => {}
                other => panic!("{format}: expected bad tag, got {other:?}"),
            }
            assert_eq!(
                read_disk(&p.bob, "alice", r),
                &p.pad[r.lo as usize..r.hi as usize],
                "{format}: a forgery erased pad"
            );
            assert_eq!(p.bob.meta("alice").unwrap(), before, "{format}");
        }
        // Across a restart too.
        let bob_dir = p.bob.dir().to_path_buf();
        drop(p.bob);
        let bob = PadStore::open_dir(&bob_dir).unwrap();
        for i in 5..10 {
            assert_eq!(
                bob.open("alice", &forge(i)).unwrap_err().code(),
                "bad_tag",
                "{format}"
            );
        }
        let m = bob.meta("alice").unwrap();
        assert!(m.burned.is_empty() && m.failures.is_empty(), "{format}");
        assert_eq!(bob.contact("alice").unwrap().burned, 0);
        assert_eq!(
            bob.open("alice", &s.package).unwrap().message,
            b"real message"
        );
    }
}

#[test]
fn a_good_package_resets_nothing_it_should_not() {
    // A forgery on one range and the real package on it: the real one opens
    // after fewer than three failures.
    let p = pair(Format::V1, 4096);
    let s = p.alice.seal("bob", b"m").unwrap();
    let mut forged = s.package.clone();
    let last = forged.len() - 1;
    forged[last] ^= 0x80;
    assert_eq!(p.bob.open("alice", &forged).unwrap_err().code(), "bad_tag");
    assert_eq!(p.bob.open("alice", &forged).unwrap_err().code(), "bad_tag");
    assert_eq!(p.bob.open("alice", &s.package).unwrap().message, b"m");
    assert!(p.bob.meta("alice").unwrap().failures.is_empty());
}

#[test]
fn out_of_region_packages_are_refused_and_consume_nothing() {
    for format in [Format::V2, Format::V1] {
        let p = pair(format, 4096);
        // A package that claims to come from side A's region, sent to alice
        // (who expects side B's region): alice's own seal.
        let own = p.alice.seal("bob", b"mine").unwrap();
        let before = p.alice.meta("bob").unwrap();
        let e = p.alice.open("bob", &own.package).unwrap_err();
        assert_eq!(e.code(), "out_of_region", "{e}");
        assert_eq!(p.alice.meta("bob").unwrap(), before);
        // Index past the end of the pad.
        let mut far = own.package.clone();
        let off = if format == Format::V2 { 1 } else { 0 };
        far[off..off + 6].copy_from_slice(&[0xff, 0xff, 0, 0, 0, 0]);
        assert_eq!(
            p.bob.check_open("alice", &far).unwrap_err().code(),
            "out_of_region"
        );
        assert_eq!(
            p.bob.open("alice", &far).unwrap_err().code(),
            "out_of_region"
        );
        // Straddling the split.
        let mut straddle = own.package.clone();
        let idx = (2048 - 4u64).to_le_bytes();
        straddle[off..off + 6].copy_from_slice(&idx[..6]);
        assert_eq!(
            p.bob.open("alice", &straddle).unwrap_err().code(),
            "out_of_region"
        );
        assert!(p.bob.meta("alice").unwrap().received.is_empty());
        assert!(p.bob.meta("alice").unwrap().failures.is_empty());
    }
}

#[test]
fn malformed_packages_are_bad_package() {
    let p = pair(Format::V2, 4096);
    for pkg in [vec![], vec![2u8; 5], vec![1u8; 40]] {
        let e = p.bob.open("alice", &pkg).unwrap_err();
        assert_eq!(e.code(), "bad_package", "{pkg:?}: {e}");
    }
    assert!(p.bob.meta("alice").unwrap().failures.is_empty());
}

#[test]
fn cursor_survives_restart_and_clean_close_skips_nothing() {
    let p = pair(Format::V2, 1 << 20);
    let a1 = p.alice.seal("bob", b"one").unwrap();
    let dir = p.alice.dir().to_path_buf();
    p.alice.close().unwrap();
    let alice = PadStore::open_dir(&dir).unwrap();
    let a2 = alice.seal("bob", b"two").unwrap();
    assert_eq!(
        a2.index,
        a1.index + a1.cost,
        "clean close gives the block back"
    );
    assert_eq!(p.bob.open("alice", &a2.package).unwrap().message, b"two");
}

#[test]
fn reservation_moves_in_blocks() {
    let opts = StoreOptions {
        reserve_block: 1000,
    };
    // 1 MiB pad: the send side (512 KiB) / 256 = 2 KiB, more than the block.
    let p = pair_with(Format::V2, 1 << 20, opts);
    let s = p.alice.seal("bob", &[1u8; 10]).unwrap();
    let m = p.alice.meta("bob").unwrap();
    assert_eq!(m.reserved, 1000);
    assert_eq!(m.erased, 0);
    for _ in 0..30 {
        p.alice.seal("bob", &[1u8; 10]).unwrap();
    }
    // 31 * 42 = 1302 bytes used: the bound moved once more, at the crossing
    let m = p.alice.meta("bob").unwrap();
    assert_eq!(m.reserved, 23 * 42 + 1000);
    assert_eq!(m.erased, 23 * 42);
    // a message bigger than a block reserves at least its own cost
    let big = p.alice.seal("bob", &[1u8; 3000]).unwrap();
    let m = p.alice.meta("bob").unwrap();
    assert!(m.reserved >= 31 * 42 + big.cost);
    let _ = s;
}

#[test]
fn exhaustion_and_too_large_consume_nothing() {
    let p = pair(Format::V2, 512);
    // 256 bytes to send: 100-byte messages cost 132
    p.alice.seal("bob", &[0u8; 100]).unwrap();
    let before = p.alice.contact("bob").unwrap();
    assert_eq!(before.send_left, 124);
    match p.alice.seal("bob", &[0u8; 100]) {
        Err(Error::TooLarge { need, left, .. }) => {
            assert_eq!((need, left), (132, 124));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(p.alice.quote("bob", 100).unwrap_err().code(), "too_large");
    assert_eq!(p.alice.contact("bob").unwrap(), before);
    // fill up exactly, then nothing fits
    p.alice.seal("bob", &[0u8; 92]).unwrap();
    assert_eq!(p.alice.contact("bob").unwrap().send_left, 0);
    assert_eq!(
        p.alice.seal("bob", b"").unwrap_err().code(),
        "pad_exhausted"
    );
    assert_eq!(p.alice.quote("bob", 0).unwrap_err().code(), "pad_exhausted");
    // huge lengths do not overflow
    assert_eq!(
        p.bob.quote("alice", usize::MAX).unwrap_err().code(),
        "too_large"
    );
}

#[test]
fn list_counts_messages_left() {
    let p = pair(Format::V1, 1 << 20);
    let l = p.alice.list();
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].name, "bob");
    assert_eq!(l[0].send_left, 1 << 19);
    assert_eq!(l[0].send_messages_left, (1 << 19) / 248);
    assert_eq!(l[0].receive_left, 1 << 19);
    let s = p.bob.seal("alice", &[0u8; 100]).unwrap();
    p.alice.open("bob", &s.package).unwrap();
    assert_eq!(
        p.alice.contact("bob").unwrap().receive_left,
        (1 << 19) - 248
    );
}

#[test]
fn remove_erases_the_pad_and_metadata() {
    let p = pair(Format::V2, 1 << 16);
    let path = pad_file(&p.alice, "bob");
    assert!(path.exists());
    p.alice.remove("bob", &mut |_, _| {}).unwrap();
    assert!(!path.exists());
    assert_eq!(
        p.alice.seal("bob", b"x").unwrap_err().code(),
        "unknown_contact"
    );
    let dir = p.alice.dir().to_path_buf();
    drop(p.alice);
    let alice = PadStore::open_dir(&dir).unwrap();
    assert!(alice.list().is_empty());
    assert!(pad_files(&dir).is_empty());
}

#[test]
fn interrupted_receive_erase_is_finished_on_start() {
    // Simulate a crash between "recorded as opened" and the on-disk erase:
    // put a pending erase in the record by hand via a restart in between.
    let p = pair(Format::V2, 4096);
    let s = p.alice.seal("bob", b"pending").unwrap();
    p.bob.open("alice", &s.package).unwrap();
    let r = Range {
        lo: s.index,
        hi: s.index + s.cost,
    };
    // write the pad bytes back, as if the erase never reached the disk
    let path = pad_file(&p.bob, "alice");
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&p.pad[r.lo as usize..r.hi as usize], r.lo)
            .unwrap();
    }
    // the record says pending? It was cleared in memory only, so the
    // durable record still lists it until the next write.
    let dir = p.bob.dir().to_path_buf();
    std::mem::forget(p.bob); // no clean close: like a crash
    let bob = open_after_crash(&dir);
    assert!(is_zero(&read_disk(&bob, "alice", r)));
}

/// Open a store whose previous owner "crashed" in this process: the lock
/// of a leaked store is still held by this process's open file, so
/// re-opening from the same process is allowed by flock only on a new open
/// file description; sled's own lock is per process too. We therefore copy
/// the directory and open the copy.
fn open_after_crash(dir: &std::path::Path) -> PadStore {
    let copy = dir.with_extension("copy");
    copy_dir(dir, &copy);
    PadStore::open_dir(&copy).unwrap()
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        let t = to.join(e.file_name());
        if p.is_dir() {
            copy_dir(&p, &t);
        } else {
            std::fs::copy(&p, &t).unwrap();
        }
    }
}

#[test]
fn store_is_shareable_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<PadStore>();
    let p = pair(Format::V2, 1 << 20);
    let alice = std::sync::Arc::new(p.alice);
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let a = alice.clone();
            std::thread::spawn(move || {
                (0..200)
                    .map(|i| {
                        let s = a.seal("bob", format!("t{t} m{i}").as_bytes()).unwrap();
                        (s.index, s.cost)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut all: Vec<(u64, u64)> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    all.sort();
    for w in all.windows(2) {
        assert!(w[0].0 + w[0].1 <= w[1].0, "overlap {w:?}");
    }
}

/// Issue 7 item 3: the reservation block is at most 1/256 of the send
/// side, so a 64 KiB pad does not lose its send side to one reservation.
#[test]
fn reservation_block_is_bounded_by_the_pad() {
    for format in [Format::V2, Format::V1] {
        let p = pair(format, 64 * 1024);
        // Side A sends with 32 KiB: block = 32 KiB / 256 = 128 bytes.
        let s = p.alice.seal("bob", b"x").unwrap();
        let m = p.alice.meta("bob").unwrap();
        assert_eq!(m.reserved, 128, "{format}");
        assert_eq!(p.alice.reserve_block_for(&m), 128);
        // A crash now skips at most the rest of the block.
        let dir = p.alice.dir().to_path_buf();
        std::mem::forget(p.alice);
        let alice = open_after_crash(&dir);
        let c = alice.contact("bob").unwrap();
        assert_eq!(c.send_left, 32 * 1024 - 128, "{format}");
        // A message larger than the block still reserves its whole cost.
        let big = alice.seal("bob", &[7u8; 500]).unwrap();
        let m = alice.meta("bob").unwrap();
        assert!(m.reserved >= 128 + big.cost);
        let _ = s;
    }
}

/// `release()` gives the unused reservation back durably: a crash right
/// after it skips nothing.
#[test]
fn release_gives_the_reservation_back_durably() {
    let p = pair(Format::V2, 1 << 20);
    let a = p.alice.seal("bob", b"one").unwrap();
    assert!(p.alice.meta("bob").unwrap().reserved > a.cost);
    p.alice.release().unwrap();
    assert_eq!(p.alice.meta("bob").unwrap().reserved, a.cost);
    let dir = p.alice.dir().to_path_buf();
    std::mem::forget(p.alice); // a crash after the release
    let alice = open_after_crash(&dir);
    let b = alice.seal("bob", b"two").unwrap();
    assert_eq!(b.index, a.cost, "nothing skipped");
}

/// Issue 7 item 2: import, seal, remove, import the same export again:
/// refused, so the pad is not used twice.
#[test]
fn reimporting_a_removed_pad_is_refused() {
    let p = pair(Format::V2, 8192);
    let s1 = p.bob.seal("alice", b"attack at dawn").unwrap();
    p.bob.remove("alice", &mut |_, _| {}).unwrap();
    let e =
        otc_device::pad::export::import(&p.bob, &p.export, "alice", &mut |_, _| {}).unwrap_err();
    assert_eq!(e.code(), "pad_used_before", "{e}");
    assert!(e.to_string().contains("pad new"), "{e}");
    // Also under another name, and after a restart.
    let dir = p.bob.dir().to_path_buf();
    drop(p.bob);
    let bob = PadStore::open_dir(&dir).unwrap();
    let e = otc_device::pad::export::import(&bob, &p.export, "alice2", &mut |_, _| {}).unwrap_err();
    assert_eq!(e.code(), "pad_used_before");
    assert!(bob.list().is_empty());
    assert!(pad_files(&dir).is_empty(), "{:?}", pad_files(&dir));
    let _ = s1;
}

/// Issue 7 item 2: the device that made a pad cannot import its own
/// export after removing the pad (it would then send from the partner's
/// region), nor while it still holds it.
#[test]
fn importing_our_own_export_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let alice = PadStore::open_dir(dir.path().join("alice")).unwrap();
    let (export, _) = make_pad(&alice, dir.path(), "bob", 8192, Format::V2);
    let e = otc_device::pad::export::import(&alice, &export, "bob2", &mut |_, _| {}).unwrap_err();
    assert_eq!(e.code(), "pad_already_stored");
    alice.seal("bob", b"hello").unwrap();
    alice.remove("bob", &mut |_, _| {}).unwrap();
    let e = otc_device::pad::export::import(&alice, &export, "bob", &mut |_, _| {}).unwrap_err();
    assert_eq!(e.code(), "pad_used_before", "{e}");
    assert!(alice.list().is_empty());
}

/// The data directory and every file in it are private, also when the
/// directory was made (or restored) with looser modes.
#[test]
fn data_directory_is_private_and_modes_are_fixed_on_open() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let p = pair(Format::V2, 8192);
    let dir = p.alice.dir().to_path_buf();
    let check = |dir: &std::path::Path| {
        assert_eq!(mode(dir), 0o700, "{}", dir.display());
        for (f, _) in tree(dir) {
            assert_eq!(mode(&f), 0o600, "{}", f.display());
            assert_eq!(mode(f.parent().unwrap()), 0o700, "{}", f.display());
        }
    };
    check(&dir);
    drop(p.alice);
    // Loosen everything, as a restore or a careless umask would.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    for (f, _) in tree(&dir) {
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::set_permissions(f.parent().unwrap(), std::fs::Permissions::from_mode(0o755))
            .unwrap();
    }
    assert_eq!(mode(&dir), 0o755);
    let alice = PadStore::open_dir(&dir).unwrap();
    check(&dir);
    drop(alice);
    // A pre-existing empty directory with loose modes is tightened too.
    let e = p.dir.path().join("loose");
    std::fs::create_dir(&e).unwrap();
    std::fs::set_permissions(&e, std::fs::Permissions::from_mode(0o777)).unwrap();
    let s = PadStore::open_dir(&e).unwrap();
    check(&e);
    drop(s);
}

/// A layout-1 directory (metadata in sled) is refused with a clear error
/// and left untouched.
#[test]
fn layout_1_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("old");
    std::fs::create_dir_all(d.join("meta.sled")).unwrap();
    std::fs::write(
        d.join("otc-device.data"),
        "otc-device data directory, layout 1\n",
    )
    .unwrap();
    let before = tree(&d);
    let e = PadStore::open_dir(&d).unwrap_err();
    assert_eq!(e.code(), "data_dir_old_layout");
    assert!(e.to_string().contains("empty one"), "{e}");
    assert_eq!(tree(&d), before);
}
