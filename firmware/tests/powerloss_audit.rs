//! The audit log (`DIR/audit.log` and its head `DIR/audit.head`,
//! `otc_device::audit`) under power loss, in the pad crate's simulator
//! (`otc_pad::vfs::SimFs`): the power is cut between appends and flushes
//! and inside them (after a random number of file operations), with none,
//! half or all of the unsynced writes kept (a kept write may be torn).
//! After every reboot:
//!
//! - the log checks clean: a power cut is not tampering, so it never
//!   raises a tamper alert or an integrity finding (what the owner would
//!   see on the alerts screen), whether the log is opened in full or
//!   quickly with the chain checked afterwards, as the device does;
//! - every entry that was durable survives: a severe entry once its
//!   `append` returned, a routine one once a `flush` returned;
//! - what is there is exactly a prefix of what was appended: nothing
//!   invented, reordered or changed;
//! - the log goes on: the next entry chains to the last one kept.
//!
//! A third of the entries are held (`AuditLog::hold`: their line waits in
//! memory for the next append or flush), the rest appended.
//!
//! Plain and sealed (encrypted data directory) logs alike.
//!
//! `OTC_POWERLOSS_CRASHES` sets the number of power cuts under a plain
//! log (default 1000; a third as many under a sealed one),
//! `OTC_POWERLOSS_SEED` replays a run.

mod common;

use common::Rng;
use otc_device::audit::{self, AuditLog, Event, Files, Opened};
use otc_device::pad::vault::{self, KdfParams, MasterKey};
use otc_pad::vfs::{CrashRng, SimFs, Vfs};
use std::path::Path;
use std::sync::Arc;

impl CrashRng for Rng {
    fn below(&mut self, n: u64) -> u64 {
        Rng::below(self, n)
    }
}

#[derive(Debug, Default)]
struct Stats {
    crashes: u64,
    /// Cuts inside an open, append or flush.
    inside: u64,
    appended: u64,
    /// Of them, held ([`AuditLog::hold`]) rather than written at once.
    held: u64,
    severe: u64,
    flushes: u64,
    /// Routine entries a cut took (never flushed: allowed).
    lost_routine: u64,
    /// Reboots that found more than the durable entries (unsynced writes
    /// that reached the disk anyway).
    kept_unsynced: u64,
    quick_opens: u64,
}

/// An event of the device's: routine or severe, of several kinds.
fn event(rng: &mut Rng, n: u64) -> Event {
    let contact = format!("c{}", rng.below(5));
    match rng.below(6) {
        0 => Event::Approved {
            action: "seal".into(),
            contact,
        },
        1 | 2 => Event::Sealed {
            contact,
            index: n * 64,
            bytes: 100 + rng.below(400),
            cost: 164,
        },
        3 => Event::Opened {
            contact,
            index: n * 64,
            bytes: rng.below(1000),
            cost: 164,
        },
        4 => Event::Replay { contact, index: n },
        _ => Event::LimitHit {
            limit: "rate".into(),
            detail: format!("{} requests", rng.below(100)),
        },
    }
}

fn crashes() -> u64 {
    std::env::var("OTC_POWERLOSS_CRASHES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000)
}

fn seeded() -> Rng {
    match std::env::var("OTC_POWERLOSS_SEED") {
        Ok(s) => Rng(u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap() | 1),
        Err(_) => Rng::from_entropy(),
    }
}

/// Cut the power again and again under a log in `/data` (sealed under
/// `key` if given) and check the promises above after every reboot.
/// Every `CARD_LIFE` cuts the test starts again on a new card, so the log
/// stays short enough to check in full after every cut.
const CARD_LIFE: u64 = 40;

fn run(
    what: &str,
    crashes: u64,
    new_card: &dyn Fn() -> (SimFs, Option<MasterKey>),
    rng: &mut Rng,
) -> Stats {
    let seed = rng.0;
    eprintln!("audit power-loss test ({what}): seed {seed:#x} (OTC_POWERLOSS_SEED to replay)");
    let dir = Path::new("/data");
    let (mut fs, mut key) = new_card();
    // Every entry appended, in order, that may still be on the disk; the
    // first `durable` of them must be.
    let mut appended: Vec<Event> = Vec::new();
    let mut durable = 0usize;
    let mut stats = Stats::default();
    let clock = || Box::new(|| 1_800_000_000u64) as Box<dyn Fn() -> u64 + Send + Sync>;

    while stats.crashes < crashes {
        if stats.crashes > 0 && stats.crashes % CARD_LIFE == 0 {
            (fs, key) = new_card();
            appended.clear();
            durable = 0;
        }
        let life = |what: &str, stats: &Stats| {
            format!("{what} (seed {seed:#x}, after {} cuts)", stats.crashes)
        };
        let files = Files::new(Arc::new(fs.clone()), dir, key.as_ref());

        // Open as the device does (quickly, chain checked after) or in
        // full; the power may go inside the open (it writes when it cuts
        // off what a cut tore, or makes a new head).
        if rng.below(2) == 0 {
            fs.die_after(rng.below(30));
        }
        let opened = if rng.below(2) == 0 {
            stats.quick_opens += 1;
            AuditLog::open_quick_in(files.clone(), clock()).map(|(log, how)| {
                let problems = match how {
                    Opened::Checked(p) => p,
                    Opened::Deferred(d) => {
                        d.check(&|| true).map(|s| s.problems).unwrap_or_default()
                    }
                };
                (log, problems)
            })
        } else {
            AuditLog::open_in(files.clone(), clock())
        };
        match opened {
            // The power went in the deferred check, after the open.
            Ok(_) if fs.is_dead() => {
                stats.inside += 1;
                let keep = [0, 50, 100][rng.below(3) as usize];
                fs = fs.crash(rng, keep);
            }
            Ok((mut log, problems)) => {
                assert!(
                    problems.is_empty(),
                    "{}",
                    life(&format!("a power cut read as damage: {problems:?}"), &stats)
                );
                // What the disk holds now, read with the power held on.
                fs.die_after(u64::MAX);
                let checked = audit::check_in(&files).expect("read the log");
                assert!(
                    checked.problems.is_empty(),
                    "{}",
                    life(
                        &format!("the opened log does not check: {:?}", checked.problems),
                        &stats
                    )
                );
                let found: Vec<&Event> = checked.entries.iter().map(|e| &e.event).collect();
                assert!(
                    found.len() >= durable,
                    "{}",
                    life(
                        &format!(
                            "durable entries lost: {} found, {durable} were durable",
                            found.len()
                        ),
                        &stats
                    )
                );
                assert!(
                    found.len() <= appended.len()
                        && found.iter().zip(&appended).all(|(f, a)| *f == a),
                    "{}",
                    life("the log is not a prefix of what was appended", &stats)
                );
                stats.lost_routine += (appended.len() - found.len()) as u64;
                if found.len() > durable {
                    stats.kept_unsynced += 1;
                }
                appended.truncate(found.len());
                durable = appended.len();
                assert_eq!(
                    log.len() as usize,
                    appended.len(),
                    "{}",
                    life("log length", &stats)
                );
                if rng.below(2) == 0 {
                    fs.die_after(rng.below(40));
                }
                for _ in 0..=rng.below(12) {
                    let ev = event(rng, stats.appended);
                    let severe = ev.is_severe();
                    // Held or written at once, as the endpoint does (an
                    // approval waits for its request's next entry).
                    let appended_or_held = if rng.below(3) == 0 {
                        stats.held += 1;
                        log.hold(ev.clone())
                    } else {
                        log.append(ev.clone())
                    };
                    match appended_or_held {
                        Ok(entry) => {
                            assert_eq!(entry.seq as usize, appended.len());
                            appended.push(ev);
                            stats.appended += 1;
                            if severe {
                                stats.severe += 1;
                                durable = appended.len();
                            }
                        }
                        Err(e) => {
                            assert!(fs.is_dead(), "{}", life(&format!("append: {e}"), &stats));
                            // Written or not: it may be on the disk.
                            appended.push(ev);
                            break;
                        }
                    }
                    if rng.below(4) == 0 {
                        // A flush begun under the lock and completed
                        // outside it, as the device's flusher does.
                        match log.begin_flush().map(|f| f.complete()) {
                            Some(Ok(())) => {
                                stats.flushes += 1;
                                durable = appended.len();
                            }
                            Some(Err(e)) => {
                                assert!(fs.is_dead(), "{}", life(&format!("flush: {e}"), &stats));
                                break;
                            }
                            None => {}
                        }
                    }
                }
                if fs.is_dead() {
                    stats.inside += 1;
                }
                // The power goes with the log still open (its drop's
                // flush finds the disk gone).
                let keep = [0, 50, 100][rng.below(3) as usize];
                let after = fs.crash(rng, keep);
                drop(log);
                fs = after;
            }
            Err(e) => {
                assert!(fs.is_dead(), "{}", life(&format!("open: {e}"), &stats));
                stats.inside += 1;
                let keep = [0, 50, 100][rng.below(3) as usize];
                fs = fs.crash(rng, keep);
            }
        }
        stats.crashes += 1;
    }
    eprintln!("audit power-loss test ({what}): {stats:?}");
    assert!(stats.appended > crashes, "{stats:?}");
    assert!(stats.held > 0, "{stats:?}");
    assert!(stats.inside > crashes / 8, "cuts inside: {stats:?}");
    assert!(
        stats.lost_routine > 0 && stats.kept_unsynced > 0 && stats.flushes > 0,
        "cuts must sometimes take unflushed entries and sometimes keep them: {stats:?}"
    );
    stats
}

fn new_fs() -> SimFs {
    let fs = SimFs::new();
    fs.create_dir(Path::new("/data")).unwrap();
    fs.sync_dir(Path::new("/")).unwrap();
    fs
}

#[test]
fn the_audit_log_and_its_head_survive_power_loss() {
    let mut rng = seeded();
    run("plain", crashes(), &|| (new_fs(), None), &mut rng);
}

#[test]
fn a_sealed_audit_log_and_its_head_survive_power_loss() {
    let mut rng = seeded();
    let sealed = || {
        let fs = new_fs();
        let key = vault::create(&fs, Path::new("/data"), b"passphrase", &KdfParams::TEST)
            .expect("a key file");
        (fs, Some(key))
    };
    // A third as many: a sealed line's AEAD is slow in a test build.
    run("sealed", crashes() / 3, &sealed, &mut rng);
}
