//! The client's read positions (`DIR/cursors.json`, `rpc::ReadRefs`) under
//! power loss, in the pad crate's simulator (`otc_pad::vfs::SimFs`): the
//! power is cut between saves and inside them (after a random number of
//! file operations), with none, half or all of the unsynced writes kept.
//! After every reboot the file must load (never torn), hold every position
//! whose save returned `Ok`, and for a save the cut interrupted, the old
//! position or the new one.
//!
//! `OTC_POWERLOSS_CRASHES` sets the number of power cuts (default 2000),
//! `OTC_POWERLOSS_SEED` replays a run.

mod common;

use common::Rng;
use otc_device::rpc::ReadRefs;
use otc_pad::vfs::{CrashRng, SimFs, Vfs};
use std::collections::BTreeMap;
use std::path::Path;

impl CrashRng for Rng {
    fn below(&mut self, n: u64) -> u64 {
        Rng::below(self, n)
    }
}

#[derive(Debug, Default)]
struct Stats {
    crashes: u64,
    inside: u64,
    saves: u64,
    cut_saves_old: u64,
    cut_saves_new: u64,
}

#[test]
fn read_positions_survive_power_loss() {
    let crashes: u64 = std::env::var("OTC_POWERLOSS_CRASHES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let mut rng = match std::env::var("OTC_POWERLOSS_SEED") {
        Ok(s) => Rng(u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap() | 1),
        Err(_) => Rng::from_entropy(),
    };
    let seed = rng.0;
    eprintln!("read-position power-loss test: seed {seed:#x} (OTC_POWERLOSS_SEED to replay)");
    let dir = Path::new("/data");
    let mut fs = SimFs::new();
    fs.create_dir(dir).unwrap();
    fs.sync_dir(Path::new("/")).unwrap();

    let relays = ["relay-a", "relay-b:8080", "r.example", "x", "y_z"];
    // What saves that returned Ok promised, and the save a cut interrupted.
    let mut durable: BTreeMap<String, u64> = BTreeMap::new();
    let mut cut: Option<(String, u64)> = None;
    let mut next_value = 1u64;
    let mut stats = Stats::default();

    while stats.crashes < crashes {
        let inside = rng.below(2) == 0;
        if inside {
            fs.die_after(rng.below(14));
        }
        let life = |what: &str| format!("{what} (seed {seed:#x}, after {} cuts)", stats.crashes);
        match ReadRefs::load(&fs, dir) {
            Ok(refs) => {
                let mut expected = durable.clone();
                if let Some((relay, new)) = cut.take() {
                    let got = refs.get(&relay);
                    if got == Some(new) {
                        stats.cut_saves_new += 1;
                        expected.insert(relay, new);
                    } else {
                        assert_eq!(
                            got,
                            durable.get(&relay).copied(),
                            "{}",
                            life(&format!("{relay}: neither the old nor the new position"))
                        );
                        stats.cut_saves_old += 1;
                    }
                }
                for relay in relays {
                    assert_eq!(
                        refs.get(relay),
                        expected.get(relay).copied(),
                        "{}",
                        life(&format!("{relay}: a saved position was lost or changed"))
                    );
                }
                durable = expected;
                let mut refs = refs;
                for _ in 0..=rng.below(4) {
                    let relay = relays[rng.below(relays.len() as u64) as usize];
                    let value = next_value;
                    next_value += 1 + rng.below(1000);
                    match refs.set(&fs, relay, value) {
                        Ok(()) => {
                            stats.saves += 1;
                            durable.insert(relay.to_string(), value);
                        }
                        Err(e) => {
                            assert!(fs.is_dead(), "{}", life(&format!("save failed: {e}")));
                            cut = Some((relay.to_string(), value));
                            break;
                        }
                    }
                }
            }
            Err(e) => assert!(
                fs.is_dead(),
                "{}",
                life(&format!("cursors.json did not load after a power cut: {e}"))
            ),
        }
        if fs.is_dead() {
            stats.inside += 1;
        }
        let keep = [0, 50, 100][rng.below(3) as usize];
        fs = fs.crash(&mut rng, keep);
        stats.crashes += 1;
    }
    eprintln!("read-position power-loss test: {stats:?}");
    assert!(stats.saves > crashes, "{stats:?}");
    assert!(
        stats.inside > crashes / 4,
        "cuts inside a load or save: {stats:?}"
    );
    assert!(
        stats.cut_saves_old > 0 && stats.cut_saves_new > 0,
        "a cut save must sometimes keep the old position and sometimes the new: {stats:?}"
    );
}
