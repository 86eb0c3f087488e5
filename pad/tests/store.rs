//! The pad store end to end on real files: sealing and opening both ways in
//! both formats, consumption order, erase after use, the received-range log,
//! burning, durable cursors across restarts.

mod common;

use common::*;
use otc_pad::Error;
use otc_pad::meta::Range;
use otc_pad::{OpenWarning, PadStore, StoreOptions};
use otc_proto::{Format, v3};

/// 16 pad bytes at `at` (a v3 `r` or `s_k`).
fn key(pad: &[u8], at: usize) -> [u8; 16] {
    pad[at..at + 16].try_into().unwrap()
}

#[test]
fn round_trip_both_ways_both_formats() {
    for format in [Format::V3, Format::V1] {
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

/// The store hands proto the pad bytes the spec names: check against the
/// original pad bytes directly.
#[test]
fn consumption_order_matches_spec() {
    for format in [Format::V3, Format::V1] {
        let p = pair(format, 8192);
        let msg = b"order";
        let cost = format.pad_cost(msg.len()) as u64;

        let s = p.alice.seal("bob", msg).unwrap();
        assert_eq!(s.index, 0);
        let b = p.bob.seal("alice", msg).unwrap();
        match format {
            Format::V3 => {
                // Side A: text from 0, s_0 below r at the top of [0, 4096).
                let (r, s0) = (key(&p.pad, 4096 - 16), key(&p.pad, 4096 - 32));
                assert_eq!(s.slot, Some(0));
                let text = &p.pad[0..msg.len()];
                assert_eq!(v3::open(&s.package, text, &r, &s0).unwrap(), msg);
                // Side B: text from the split, r and s_0 at the pad's end.
                assert_eq!(b.index, 4096);
                let (r, s0) = (key(&p.pad, 8192 - 16), key(&p.pad, 8192 - 32));
                let text = &p.pad[4096..4096 + msg.len()];
                assert_eq!(v3::open(&b.package, text, &r, &s0).unwrap(), msg);
            }
            Format::V1 => {
                let pad = &p.pad[0..cost as usize];
                assert_eq!(otc_proto::v1::open(&s.package, pad).unwrap(), msg);
                // offsets N-1, N-2, ... ; index = highest offset used
                assert_eq!(b.index, 8192 - 1);
                let mut pad = p.pad[(8192 - cost) as usize..8192].to_vec();
                pad.reverse();
                assert_eq!(otc_proto::v1::open(&b.package, &pad).unwrap(), msg);
            }
        }
    }
}

#[test]
fn used_bytes_are_erased_on_disk_both_sides() {
    for format in [Format::V3, Format::V1] {
        let p = pair(format, 8192);
        let s = p.alice.seal("bob", b"secret").unwrap();
        // v3: the text mask and s_0 are spent, r stays.
        let (used, next) = match format {
            Format::V3 => (
                vec![Range { lo: 0, hi: 6 }, Range { lo: 4064, hi: 4080 }],
                Range { lo: 6, hi: 70 },
            ),
            Format::V1 => (
                vec![Range { lo: 0, hi: s.cost }],
                Range {
                    lo: s.cost,
                    hi: s.cost + 64,
                },
            ),
        };
        for &r in &used {
            assert!(is_zero(&read_disk(&p.alice, "bob", r)), "sender erased");
            assert!(!is_zero(&read_disk(&p.bob, "alice", r)), "receiver not yet");
        }
        p.bob.open("alice", &s.package).unwrap();
        for &r in &used {
            assert!(is_zero(&read_disk(&p.bob, "alice", r)), "receiver erased");
        }
        if format == Format::V3 {
            let r = Range { lo: 4080, hi: 4096 };
            assert_eq!(
                read_disk(&p.alice, "bob", r),
                &p.pad[4080..4096],
                "r is kept"
            );
            assert_eq!(
                read_disk(&p.bob, "alice", r),
                &p.pad[4080..4096],
                "r is kept"
            );
        }
        // Next bytes untouched.
        assert_eq!(
            read_disk(&p.alice, "bob", next),
            &p.pad[next.lo as usize..next.hi as usize]
        );
    }
}

#[test]
fn quote_has_no_side_effects_and_matches_seal() {
    let p = pair(Format::V3, 4096);
    let before = p.alice.contact("bob").unwrap();
    let q = p.alice.quote("bob", 100).unwrap();
    let q2 = p.alice.quote("bob", 100).unwrap();
    assert_eq!(q, q2);
    // n + 16; the side's 2048 bytes less its 16-byte r.
    assert_eq!(q.cost, 116);
    assert_eq!(q.pad_left, 2032);
    assert_eq!(q.pad_left_after, 2032 - 116);
    assert_eq!(p.alice.contact("bob").unwrap(), before);
    let s = p.alice.seal("bob", &[0u8; 100]).unwrap();
    assert_eq!(s.cost, q.cost);
    assert_eq!(s.pad_left, q.pad_left_after);
    assert_eq!(s.index, 0);
}

#[test]
fn replay_is_refused_by_check_open_and_open_without_counting_a_failure() {
    let p = pair(Format::V3, 4096);
    let s = p.alice.seal("bob", b"once").unwrap();
    p.bob.open("alice", &s.package).unwrap();
    match p.bob.check_open("alice", &s.package) {
        Err(Error::Replay { index }) => assert_eq!(index, s.index),
        other => panic!("expected replay, got {other:?}"),
    }
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
    for format in [Format::V3, Format::V1] {
        let p = pair(format, 8192);
        let a = p.alice.seal("bob", b"first").unwrap();
        let b = p.alice.seal("bob", b"second").unwrap();
        let c = p.alice.seal("bob", b"third").unwrap();
        // bob gets the third first: the first two were skipped
        let chk = p.bob.check_open("alice", &c.package).unwrap();
        let skipped = |bytes: u64, messages: u64| match format {
            // v3: the spec's slot count.
            Format::V3 => OpenWarning::Skipped { messages, bytes: 0 },
            Format::V1 => OpenWarning::Skipped {
                messages: bytes.div_ceil(248),
                bytes,
            },
        };
        assert_eq!(chk.warnings, vec![skipped(a.cost + b.cost, 2)]);
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
        assert_eq!(chk.warnings, vec![skipped(x.cost, 1)]);
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
    for format in [Format::V3, Format::V1] {
        let p = pair(format, 64 * 1024);
        let s = p.alice.seal("bob", b"real message").unwrap();
        let r = p.alice.meta("bob").unwrap().send_range(0, s.cost);
        let before = p.bob.meta("alice").unwrap();
        let head = if format == Format::V3 { 11 } else { 8 };
        let forge = |i: usize| {
            let mut f = s.package.clone();
            let k = head + (i % (f.len() - head)); // past the head
            f[k] ^= 1 << (i % 8);
            f
        };
        for i in 0..5 {
            match p.bob.check_open("alice", &forge(i)) {
                Err(Error::VerifyFailed {}) => {}
                other => panic!("{format}: check_open: expected bad tag, got {other:?}"),
            }
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
    for format in [Format::V3, Format::V1] {
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
        let off = if format == Format::V3 { 1 } else { 0 };
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
        assert_eq!(p.bob.meta("alice").unwrap().rx, Default::default());
        assert!(p.bob.meta("alice").unwrap().failures.is_empty());
    }
}

#[test]
fn malformed_packages_are_bad_package() {
    let p = pair(Format::V3, 4096);
    for pkg in [vec![], vec![2u8; 5], vec![1u8; 40]] {
        let e = p.bob.open("alice", &pkg).unwrap_err();
        assert_eq!(e.code(), "bad_package", "{pkg:?}: {e}");
    }
    assert!(p.bob.meta("alice").unwrap().failures.is_empty());
}

#[test]
fn cursor_survives_restart_and_clean_close_skips_nothing() {
    let p = pair(Format::V3, 1 << 20);
    let a1 = p.alice.seal("bob", b"one").unwrap();
    let dir = p.alice.dir().to_path_buf();
    p.alice.close().unwrap();
    let alice = PadStore::open_dir(&dir).unwrap();
    let a2 = alice.seal("bob", b"two").unwrap();
    assert_eq!(a2.index, a1.index + 3, "clean close gives the block back");
    assert_eq!(a2.slot, Some(1), "and the slots");
    assert_eq!(p.bob.open("alice", &a2.package).unwrap().message, b"two");
}

#[test]
fn reservation_moves_in_blocks() {
    let opts = StoreOptions {
        reserve_block: 1000,
        ..StoreOptions::default()
    };
    // 1 MiB pad: the send side (512 KiB) / 256 = 2 KiB, more than the block.
    let p = pair_with(Format::V1, 1 << 20, opts);
    let s = p.alice.seal("bob", &[1u8; 10]).unwrap();
    let m = p.alice.meta("bob").unwrap();
    assert_eq!(m.reserved, 1000);
    assert_eq!(m.erased, 0);
    for _ in 0..30 {
        p.alice.seal("bob", &[1u8; 10]).unwrap();
    }
    // 31 * 68 = 2108 bytes used: the bound moved twice more, at the crossings
    let m = p.alice.meta("bob").unwrap();
    assert_eq!(m.reserved, 28 * 68 + 1000);
    assert_eq!(m.erased, 28 * 68);
    // a message bigger than a block reserves at least its own cost
    let big = p.alice.seal("bob", &[1u8; 3000]).unwrap();
    let m = p.alice.meta("bob").unwrap();
    assert!(m.reserved >= 31 * 68 + big.cost);
    let _ = s;
}

/// v3: the text offset and the slot counter are reserved ahead together,
/// in one record write, whichever crosses its bound first (the slot block
/// is 1/64 of the text block).
#[test]
fn v3_reserves_text_and_slots_in_blocks() {
    let opts = StoreOptions {
        reserve_block: 1000,
        ..StoreOptions::default()
    };
    let p = pair_with(Format::V3, 1 << 20, opts);
    p.alice.seal("bob", &[1u8; 10]).unwrap();
    let m = p.alice.meta("bob").unwrap();
    assert_eq!((m.reserved, m.slots_reserved), (1000, 15));
    assert_eq!((m.erased, m.slots_erased), (0, 0));
    for _ in 0..30 {
        p.alice.seal("bob", &[1u8; 10]).unwrap();
    }
    // The slots crossed at messages 15 and 30 (0-based): both bounds moved.
    let m = p.alice.meta("bob").unwrap();
    assert_eq!((m.reserved, m.slots_reserved), (300 + 1000, 45));
    assert_eq!((m.erased, m.slots_erased), (300, 30));
    // A message bigger than the block reserves its whole text.
    let big = p.alice.seal("bob", &[1u8; 3000]).unwrap();
    let m = p.alice.meta("bob").unwrap();
    assert!(m.reserved >= big.index + 3000);
    assert_eq!(big.slot, Some(31));
}

#[test]
fn exhaustion_and_too_large_consume_nothing() {
    let p = pair(Format::V3, 512);
    // 256 bytes to send with, less r: 240; a 100-byte message costs 116
    p.alice.seal("bob", &[0u8; 100]).unwrap();
    let before = p.alice.contact("bob").unwrap();
    assert_eq!(before.send_left, 124);
    match p.alice.seal("bob", &[0u8; 109]) {
        Err(Error::TooLarge { need, left, .. }) => {
            assert_eq!((need, left), (125, 124));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(p.alice.quote("bob", 109).unwrap_err().code(), "too_large");
    assert_eq!(p.alice.contact("bob").unwrap(), before);
    // fill up exactly (the text meets slot 1's mask), then nothing fits
    p.alice.seal("bob", &[0u8; 108]).unwrap();
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
    let p = pair(Format::V3, 1 << 16);
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
    let p = pair(Format::V3, 4096);
    let s = p.alice.seal("bob", b"pending").unwrap();
    p.bob.open("alice", &s.package).unwrap();
    // The text mask and s_0.
    let spent = [Range { lo: 0, hi: 7 }, Range { lo: 2016, hi: 2032 }];
    // write the pad bytes back, as if the erase never reached the disk
    let path = pad_file(&p.bob, "alice");
    for r in spent {
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
    for r in spent {
        assert!(is_zero(&read_disk(&bob, "alice", r)), "{r:?}");
    }
    // r is kept, and the replay is refused from the record.
    assert_eq!(
        read_disk(&bob, "alice", Range { lo: 2032, hi: 2048 }),
        &p.pad[2032..2048]
    );
    assert_eq!(bob.open("alice", &s.package).unwrap_err().code(), "replay");
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
    let p = pair(Format::V3, 1 << 20);
    let alice = std::sync::Arc::new(p.alice);
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let a = alice.clone();
            std::thread::spawn(move || {
                (0..200)
                    .map(|i| {
                        let s = a.seal("bob", format!("t{t} m{i}").as_bytes()).unwrap();
                        // v3: the text mask is the cost less s_k.
                        (s.index, s.cost - 16)
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
    for format in [Format::V3, Format::V1] {
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
        // v3 also skips the slot block (128 / 64 = 2 slots: s_0 and s_1),
        // and never counts r.
        let left = match format {
            Format::V3 => 32 * 1024 - 16 - 128 - 2 * 16,
            Format::V1 => 32 * 1024 - 128,
        };
        assert_eq!(c.send_left, left, "{format}");
        // A message larger than the block still reserves its whole cost.
        let big = alice.seal("bob", &[7u8; 500]).unwrap();
        let m = alice.meta("bob").unwrap();
        let text = match format {
            Format::V3 => 500,
            Format::V1 => big.cost,
        };
        assert!(m.reserved >= 128 + text, "{format}");
        let _ = s;
    }
}

/// `release()` gives the unused reservation back durably: a crash right
/// after it skips nothing.
#[test]
fn release_gives_the_reservation_back_durably() {
    let p = pair(Format::V3, 1 << 20);
    let a = p.alice.seal("bob", b"one").unwrap();
    let m = p.alice.meta("bob").unwrap();
    assert!(m.reserved > 3 && m.slots_reserved > 1);
    p.alice.release().unwrap();
    let m = p.alice.meta("bob").unwrap();
    assert_eq!((m.reserved, m.slots_reserved), (3, 1));
    let dir = p.alice.dir().to_path_buf();
    std::mem::forget(p.alice); // a crash after the release
    let alice = open_after_crash(&dir);
    let b = alice.seal("bob", b"two").unwrap();
    assert_eq!((b.index, b.slot), (a.index + 3, Some(1)), "nothing skipped");
}

/// Issue 7 item 2: import, seal, remove, import the same export again:
/// refused, so the pad is not used twice.
#[test]
fn reimporting_a_removed_pad_is_refused() {
    let p = pair(Format::V3, 8192);
    let s1 = p.bob.seal("alice", b"attack at dawn").unwrap();
    p.bob.remove("alice", &mut |_, _| {}).unwrap();
    let e = otc_pad::export::import(&p.bob, &p.export, "alice", &mut |_, _| {}).unwrap_err();
    assert_eq!(e.code(), "pad_used_before", "{e}");
    assert!(e.to_string().contains("pad new"), "{e}");
    // Also under another name, and after a restart.
    let dir = p.bob.dir().to_path_buf();
    drop(p.bob);
    let bob = PadStore::open_dir(&dir).unwrap();
    let e = otc_pad::export::import(&bob, &p.export, "alice2", &mut |_, _| {}).unwrap_err();
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
    let (export, _) = make_pad(&alice, dir.path(), "bob", 8192, Format::V3);
    let e = otc_pad::export::import(&alice, &export, "bob2", &mut |_, _| {}).unwrap_err();
    assert_eq!(e.code(), "pad_already_stored");
    alice.seal("bob", b"hello").unwrap();
    alice.remove("bob", &mut |_, _| {}).unwrap();
    let e = otc_pad::export::import(&alice, &export, "bob", &mut |_, _| {}).unwrap_err();
    assert_eq!(e.code(), "pad_used_before", "{e}");
    assert!(alice.list().is_empty());
}

/// The data directory and every file in it are private, also when the
/// directory was made (or restored) with looser modes.
#[test]
fn data_directory_is_private_and_modes_are_fixed_on_open() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let p = pair(Format::V3, 8192);
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

/// An export file with these header fields and pad bytes (checksums
/// right), as `pad new` would write it.
fn export_file(
    path: &std::path::Path,
    pad: &[u8],
    split: u64,
    side: otc_pad::Side,
    format_byte: u8,
) {
    use otc_pad::export::ExportHeader;
    use sha2::{Digest, Sha256};
    let mut head = ExportHeader {
        size: pad.len() as u64,
        split,
        side,
        format: Format::V3,
        pad_id: Sha256::digest(pad).into(),
    }
    .encode();
    head[25] = format_byte;
    let sum = Sha256::digest(&head[0..64]);
    head[64..96].copy_from_slice(&sum);
    let mut file = head.to_vec();
    file.extend_from_slice(pad);
    let trailer = Sha256::digest(&file);
    file.extend_from_slice(&trailer);
    std::fs::write(path, file).unwrap();
}

/// Issue 22: a v2 export file is refused with a plain sentence, and
/// nothing is kept.
#[test]
fn a_v2_export_is_refused_as_withdrawn() {
    let dir = tempfile::tempdir().unwrap();
    let bob = PadStore::open_dir(dir.path().join("bob")).unwrap();
    let pad: Vec<u8> = (0..4096u32).map(|i| (i * 7 + 1) as u8).collect();
    let path = dir.path().join("v2.otcpad");
    export_file(&path, &pad, 2048, otc_pad::Side::B, 2);
    let e = otc_pad::export::import(&bob, &path, "alice", &mut |_, _| {}).unwrap_err();
    assert_eq!(e.code(), "format_withdrawn", "{e}");
    let text = e.to_string();
    assert!(text.contains("v2, which is withdrawn"), "{text}");
    assert!(text.contains("can forge another"), "{text}");
    assert!(text.contains("pad new"), "{text}");
    assert!(bob.list().is_empty());
    assert!(pad_files(bob.dir()).is_empty());
    // The same pad as v3 imports (the refusal was about the format).
    export_file(&path, &pad, 2048, otc_pad::Side::B, 3);
    otc_pad::export::import(&bob, &path, "alice", &mut |_, _| {}).unwrap();
}

/// Issue 22: a v3 pad whose r (either side's) is zero after clamping is
/// refused at import with `weak_key`, and nothing is kept.
#[test]
fn a_pad_with_a_weak_key_is_refused_at_import() {
    let dir = tempfile::tempdir().unwrap();
    let bob = PadStore::open_dir(dir.path().join("bob")).unwrap();
    for (lo, side) in [(2048 - 16, "A"), (4096 - 16, "B")] {
        let mut pad: Vec<u8> = (0..4096u32).map(|i| (i * 13 + 5) as u8).collect();
        // Only bits the clamp clears stay set: r is zero after clamping.
        pad[lo..lo + 16].fill(0);
        pad[lo + 3] = 0xf0;
        let path = dir.path().join(format!("weak-{side}.otcpad"));
        export_file(&path, &pad, 2048, otc_pad::Side::B, 3);
        let e = otc_pad::export::import(&bob, &path, "alice", &mut |_, _| {}).unwrap_err();
        assert_eq!(e.code(), "weak_key", "side {side}: {e}");
        assert!(e.to_string().contains(&format!("side {side}")), "{e}");
        assert!(e.to_string().contains("anyone could forge"), "{e}");
        assert!(bob.list().is_empty());
        assert!(
            pad_files(bob.dir()).is_empty(),
            "{:?}",
            pad_files(bob.dir())
        );
    }
}

/// Issue 22: a data directory whose record names format v2 still opens;
/// that contact is withdrawn: not listed as usable, refused with the
/// plain sentence, and removable (its pad is erased, and it stays
/// refused for import).
#[test]
fn a_v2_contact_is_withdrawn_and_can_only_be_removed() {
    let p = pair(Format::V3, 8192);
    let dir = p.alice.dir().to_path_buf();
    let pad_path = pad_file(&p.alice, "bob");
    drop(p.alice);
    // What an earlier build wrote for a v2 pad (record layout 1).
    let record = dir.join("contacts").join("bob.json");
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
    v["format"] = "v2".into();
    v["version"] = 1.into();
    std::fs::write(&record, serde_json::to_vec(&v).unwrap()).unwrap();
    let alice = PadStore::open_dir(&dir).unwrap();
    assert!(alice.list().is_empty(), "a withdrawn contact is not usable");
    assert_eq!(alice.withdrawn().len(), 1);
    assert!(pad_path.exists(), "its pad is kept until removed");
    for e in [
        alice.seal("bob", b"x").unwrap_err(),
        alice.contact("bob").unwrap_err(),
        alice.check_open("bob", &[3; 40]).unwrap_err(),
    ] {
        assert_eq!(e.code(), "format_withdrawn", "{e}");
        assert!(e.to_string().contains("pad remove bob"), "{e}");
    }
    alice.remove("bob", &mut |_, _| {}).unwrap();
    assert!(!pad_path.exists());
    assert!(alice.withdrawn().is_empty());
    drop(alice);
    let alice = PadStore::open_dir(&dir).unwrap();
    assert!(alice.list().is_empty() && alice.withdrawn().is_empty());
    let e = otc_pad::export::import(&alice, &p.export, "bob2", &mut |_, _| {}).unwrap_err();
    assert_eq!(e.code(), "pad_used_before", "{e}");
}

/// An opened message's debug form names its size, never its text: a
/// `{:?}` in a log line or a panic message must not carry the plaintext
/// (nor its bytes as a list of numbers).
#[test]
fn an_opened_message_never_prints_its_plaintext() {
    let p = pair(Format::V3, 64 * 1024);
    let text = b"meet at the north gate";
    let s = p.alice.seal("bob", text).unwrap();
    let o = p.bob.open("alice", &s.package).unwrap();
    assert_eq!(o.message, text);
    let shown = format!("{o:?} {o:#?}");
    assert!(!shown.contains("north gate"), "{shown}");
    let as_numbers = format!("{:?}", &text[..4]);
    let as_numbers = as_numbers.trim_matches(|c| c == '[' || c == ']');
    assert!(!shown.contains(as_numbers), "{shown}");
    assert!(shown.contains(&format!("{} bytes", text.len())), "{shown}");
}

/// Issue 23 part 7: a file of the data directory is never followed
/// elsewhere. Someone who held the card for a minute replaces Alice's pad
/// file with a symbolic link (or a second hard link) to a file outside the
/// data directory; the store, run as root on the image, then read and
/// erased that file. Now it is refused with an error naming the file, and
/// the outside file is untouched.
#[test]
fn a_pad_file_planted_as_a_link_is_refused_and_its_target_untouched() {
    for how in ["symlink", "hard link"] {
        let p = pair(Format::V3, 64 * 1024);
        let file = pad_file(&p.alice, "bob");
        let alice_dir = p.alice.dir().to_path_buf();
        drop(p.alice);
        let outside = p.dir.path().join("outside.bin");
        std::fs::copy(&file, &outside).unwrap();
        let before = std::fs::read(&outside).unwrap();
        std::fs::remove_file(&file).unwrap();
        match how {
            "symlink" => std::os::unix::fs::symlink(&outside, &file).unwrap(),
            _ => std::fs::hard_link(&outside, &file).unwrap(),
        }
        let shown = match PadStore::open_dir(&alice_dir) {
            Err(e) => e.to_string(),
            Ok(alice) => match alice.seal("bob", b"goes nowhere") {
                Err(e) => e.to_string(),
                Ok(s) => panic!("{how}: sealed through the planted pad file: {}", s.index),
            },
        };
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        assert!(
            shown.contains(&name),
            "{how}: the error names the file: {shown}"
        );
        assert!(
            shown.contains(if how == "symlink" {
                "symbolic link"
            } else {
                "hard links"
            }),
            "{how}: the error says why: {shown}"
        );
        assert_eq!(
            std::fs::read(&outside).unwrap(),
            before,
            "{how}: target untouched"
        );
    }
}
