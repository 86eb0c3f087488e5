//! Our `otc` against the original One Time Chat relay's API (the stand-in
//! in otc-testkit, written from the report's API table: form-encoded
//! sends, one global ref, no long poll), with real devices.

mod common;

use common::{World, assert_exit, stdout};
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

fn flags(w: &World, who: &str, relay: &otc_testkit::original::Relay) -> Vec<String> {
    w.flags_with_relay(who, &relay.url())
}

fn run(
    w: &World,
    who: &str,
    relay: &otc_testkit::original::Relay,
    args: &[&str],
) -> std::process::Output {
    let f = flags(w, who, relay);
    let mut all: Vec<&str> = f.iter().map(String::as_str).collect();
    all.extend_from_slice(args);
    common::otc(
        &all,
        Duration::from_secs(60),
        "otc against the original relay",
    )
}

#[test]
fn otc_talks_to_the_original_relay() {
    let w = World::new(&["alice", "bob"], false);
    let orig = otc_testkit::original::Relay::start();
    assert_exit(
        &run(&w, "alice", &orig, &["send", "bob", "hello, original"]),
        0,
    );
    assert_exit(
        &run(&w, "bob", &orig, &["send", "alice", "noise for alice"]),
        0,
    );
    assert_exit(&run(&w, "alice", &orig, &["send", "bob", "second"]), 0);
    let o = run(&w, "bob", &orig, &["recv"]);
    assert_exit(&o, 0);
    assert_eq!(stdout(&o), "alice: hello, original\nalice: second\n");
    let o = run(&w, "alice", &orig, &["recv"]);
    assert_eq!(stdout(&o), "bob: noise for alice\n");
    let stored = orig.messages();
    assert_eq!(stored.len(), 3);
    assert!(
        orig.requests().iter().any(|r| r == "POST /send"),
        "{:?}",
        orig.requests()
    );
}

#[test]
fn follow_against_a_relay_without_long_poll_does_not_spin() {
    let w = World::new(&["alice", "bob"], false);
    let orig = otc_testkit::original::Relay::start();
    let mut child = Command::new(env!("CARGO_BIN_EXE_otc"))
        .args(flags(&w, "bob", &orig))
        .args(["recv", "--follow"])
        .env("NO_COLOR", "1")
        .env("OTC_CONFIG", "/dev/null")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start otc recv --follow");
    let out = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    assert_exit(&run(&w, "alice", &orig, &["send", "bob", "polled"]), 0);
    let line = rx.recv_timeout(Duration::from_secs(30));
    if line.is_err() {
        let _ = child.kill();
    }
    assert_eq!(line.expect("no message within 30 s"), "alice: polled");
    // The original answers at once: without pacing the client would ask
    // thousands of times in two seconds.
    let before = orig.requests().len();
    std::thread::sleep(Duration::from_secs(2));
    let asked = orig.requests().len() - before;
    child.kill().expect("stop otc");
    let _ = child.wait();
    assert!(asked < 50, "{asked} requests in 2 s: the client spins");
}
