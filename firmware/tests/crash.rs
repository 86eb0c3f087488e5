//! The crash test: a child process (the real `otc-device` binary, hidden
//! `debug seal-loop` command, the real store code) seals messages in a loop
//! and prints each package the moment it has it. We SIGKILL it at random
//! moments, many times, restarting it each time, and check that
//!
//! * no pad offset was ever handed out twice (across all runs), and
//! * after each restart, every byte of the send region up to the durable
//!   reserved bound — used, or skipped by the crash — is zero on disk,
//!   while the bytes past it are still the pad;
//! * the packages are real: each opens with the original pad bytes, and
//!   the partner's store opens a sample of them.

// The child is the hidden `debug seal-loop` command, which exists only in
// debug builds or with the `debug-cli` feature.
#![cfg(any(debug_assertions, feature = "debug-cli"))]

mod common;

use common::*;
use otc_device::pad::export;
use otc_device::pad::{PadStore, Range};
use otc_proto::{Format, v3};
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::Duration;

const KILLS: usize = 55;

struct Handed {
    run: usize,
    index: u64,
    cost: u64,
    package: Vec<u8>,
}

fn crash_loop(format: Format, block: u64, size: u64) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("alice");
    let (export_path, pad) = {
        let s = PadStore::open_dir(&data).unwrap();
        let r = make_pad(&s, dir.path(), "bob", size, format);
        s.close().unwrap();
        r
    };
    let bin = env!("CARGO_BIN_EXE_otc-device");
    let mut rng = Rng::from_entropy();
    let seed = rng.0;
    let mut handed: Vec<Handed> = Vec::new();
    let mut kills = 0;
    let mut run = 0;
    while kills < KILLS {
        run += 1;
        let msg_len = 1 + rng.below(200);
        let mut child = Command::new(bin)
            .arg("--data")
            .arg(&data)
            .args(["debug", "seal-loop", "--contact", "bob"])
            .arg("--message-len")
            .arg(msg_len.to_string())
            .arg("--reserve-block")
            .arg(block.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn otc-device");
        let stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let err_reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
            s
        });
        // Every complete line goes to the channel as it arrives.
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            loop {
                let mut buf = Vec::new();
                match r.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        // only complete lines count as "handed out"
                        if buf.last() == Some(&b'\n')
                            && tx
                                .send(String::from_utf8_lossy(&buf).trim().to_string())
                                .is_err()
                        {
                            break;
                        }
                    }
                }
            }
        });
        // The kill moment is tied to the child's progress, not to the
        // clock, so the pad a run uses is bounded however fast the machine
        // is (a timed kill let a fast, idle machine run the pad out): kill
        // after `k` packages (k = 0: sometimes before the store is even
        // open), plus a random sub-millisecond jitter so the kill lands at
        // varying points inside a seal. The child is at most a pipe buffer
        // ahead of what we have read.
        let k = rng.below(100);
        let mut lines = Vec::new();
        if k == 0 {
            std::thread::sleep(Duration::from_micros(rng.below(5_000)));
        } else {
            while (lines.len() as u64) < k {
                match rx.recv_timeout(Duration::from_secs(60)) {
                    Ok(l) => lines.push(l),
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                        let _ = child.kill();
                        panic!(
                            "run {run}: waited 60 s for package {} of {k} from the seal-loop child",
                            lines.len() + 1
                        );
                    }
                }
            }
            std::thread::sleep(Duration::from_micros(rng.below(300)));
        }
        let _ = child.kill(); // SIGKILL
        let status = child.wait().unwrap();
        // After the kill the pipe ends, so the reader stops at EOF.
        loop {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(l) => lines.push(l),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    panic!("run {run}: the killed child's output did not end within 60 s")
                }
            }
        }
        reader.join().unwrap();
        let errors = err_reader.join().unwrap();
        match status.signal() {
            Some(9) => kills += 1,
            _ => assert!(
                status.success() && errors.is_empty(),
                "run {run}: the child failed on its own ({status}): {errors}"
            ),
        }
        let mut exhausted = false;
        for l in lines {
            if l == "exhausted" {
                exhausted = true;
                continue;
            }
            let mut it = l.split(' ');
            let index: u64 = it.next().unwrap().parse().unwrap();
            let cost: u64 = it.next().unwrap().parse().unwrap();
            let package = hex_decode(it.next().unwrap());
            handed.push(Handed {
                run,
                index,
                cost,
                package,
            });
        }
        assert!(!exhausted, "pad ran out; seed {seed:#x}");

        // "The next start": open the store, which finishes interrupted
        // erases, then check the disk.
        let store = PadStore::open_dir(&data).unwrap();
        let m = store.meta("bob").unwrap();
        assert_eq!(m.erased, m.reserved, "seed {seed:#x}");
        let erased = m.count_range(m.side, 0, m.reserved);
        let disk = read_disk(&store, "bob", erased);
        assert!(
            is_zero(&disk),
            "run {run}: bytes below the reserved bound are not all zero (seed {seed:#x})"
        );
        let beyond = Range {
            lo: erased.hi,
            hi: (erased.hi + 256).min(size / 2),
        };
        assert_eq!(
            read_disk(&store, "bob", beyond),
            &pad[beyond.lo as usize..beyond.hi as usize],
            "run {run}: pad past the reserved bound was touched (seed {seed:#x})"
        );
        if let Some(masks) = m.slots_range(m.side, 0, m.slots_reserved) {
            assert_eq!(m.slots_erased, m.slots_reserved, "seed {seed:#x}");
            assert!(
                is_zero(&read_disk(&store, "bob", masks)),
                "run {run}: tag masks of reserved slots are not all zero (seed {seed:#x})"
            );
        }
        drop(store);
        assert!(run < KILLS * 4, "the child keeps exiting on its own");
    }

    // No offset handed out twice (v3: no text byte and no slot).
    // v3: the cost is the text mask and one slot's 16-byte s_k.
    let text_len = |h: &Handed| match format {
        Format::V3 => h.cost - 16,
        Format::V1 => h.cost,
    };
    let mut ranges: Vec<(u64, u64, usize)> = handed
        .iter()
        .map(|h| (h.index, h.index + text_len(h), h.run))
        .collect();
    if format == Format::V3 {
        let mut slots: Vec<u32> = handed
            .iter()
            .map(|h| v3::parse(&h.package).unwrap().head.slot)
            .collect();
        slots.sort();
        let n = slots.len();
        slots.dedup();
        assert_eq!(
            slots.len(),
            n,
            "a slot was handed out twice; seed {seed:#x}"
        );
    }
    ranges.sort();
    for w in ranges.windows(2) {
        assert!(
            w[0].1 <= w[1].0,
            "pad reused: {:?} (run {}) overlaps {:?} (run {}); seed {seed:#x}",
            (w[0].0, w[0].1),
            w[0].2,
            (w[1].0, w[1].1),
            w[1].2
        );
    }
    let skipped: u64 = ranges.windows(2).map(|w| w[1].0 - w[0].1).sum::<u64>();
    eprintln!(
        "{format}: {kills} kills in {run} runs, {} packages, {skipped} bytes skipped by crashes",
        handed.len()
    );

    // The packages are real: each opens with the original pad bytes at its
    // index (side A consumes ascending in both formats), none fails.
    for h in &handed {
        let opened = match format {
            Format::V3 => {
                let g = v3::Region::new(0, size / 2).unwrap();
                let key = |at: u64| -> [u8; 16] {
                    pad[at as usize..at as usize + 16].try_into().unwrap()
                };
                let slot = v3::parse(&h.package).unwrap().head.slot;
                let text = &pad[h.index as usize..(h.index + text_len(h)) as usize];
                v3::open(
                    &h.package,
                    text,
                    &key(g.key_span().lo),
                    &key(g.slot_span(slot).unwrap().lo),
                )
            }
            Format::V1 => {
                let slice = &pad[h.index as usize..(h.index + h.cost) as usize];
                otc_proto::v1::open(&h.package, slice)
            }
        };
        let m = opened.unwrap_or_else(|e| {
            panic!(
                "package at {} from run {} does not open: {e}",
                h.index, h.run
            )
        });
        assert!(m.iter().all(|&b| b == 0x42));
    }
    // And through bob's store, end to end, for a sample (every store open
    // costs four fsyncs, so not all of them).
    let bob = PadStore::open_dir(dir.path().join("bob")).unwrap();
    export::import(&bob, &export_path, "alice", &mut |_, _| {}).unwrap();
    let step = (handed.len() / 100).max(1);
    for h in handed.iter().step_by(step) {
        let o = bob.open("alice", &h.package).unwrap_or_else(|e| {
            panic!(
                "package at {} from run {} does not open: {e}",
                h.index, h.run
            )
        });
        assert!(o.message.iter().all(|&b| b == 0x42));
    }
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

#[test]
fn sigkill_never_reuses_pad_v3() {
    crash_loop(Format::V3, 4096, 16 << 20);
}

#[test]
fn sigkill_never_reuses_pad_v1_default_block() {
    crash_loop(
        Format::V1,
        otc_device::pad::store::DEFAULT_RESERVE_BLOCK,
        32 << 20,
    );
}
