//! Issue 15, defect 1: one send reached the partner twice and the
//! partner's device raised a false replay alarm. A send and a retry of the
//! outbox (the interactive client's background thread, or another `otc`
//! of the same user) both handed the same sealed package to a slow relay.
//! Now an outbox entry has one sender at a time (a claim: an OS file lock
//! per entry), and the relay answers a resend with the ref it gave. Real
//! parts: testkit devices, the real relay behind a proxy that holds every
//! `/send`, a real outbox file, the real `otc` binary.

mod common;

use common::{SlowSend, World, assert_exit, stderr, stdout};
use otc_client::chat::{Chat, Event, Notice};
use otc_client::outbox::Outbox;
use otc_rpc_client::relay::RelayClient;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The package waiting in `outbox` for `user`, once one is there (bounded:
/// `what` says what was awaited).
fn wait_for_entry(outbox: &Outbox, user: &str, relay: &str, what: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(e) = outbox
            .pending(user, relay)
            .expect("read the outbox")
            .into_iter()
            .next()
        {
            return e.package;
        }
        assert!(
            Instant::now() < deadline,
            "no outbox entry within 30 s: {what}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn a_send_racing_the_outbox_retry_makes_one_ref_and_no_replay_50_runs() {
    let w = World::new(&["alice", "bob"], false);
    let slow = SlowSend::start(w.relay.addr(), Duration::from_millis(300));
    let relay = RelayClient::new(&slow.url()).expect("the proxy's URL");
    let cursor_name = relay.cursor_name();
    let alice = Chat::new(w.dev("alice").client(), relay, "alice")
        .with_outbox(Outbox::file(w.outbox("alice")));
    // Another handle on the same file, as the background thread reads it.
    let outbox = Outbox::file(w.outbox("alice"));
    let bob = w.chat("bob");
    for run in 0..50 {
        let before = w.next_ref();
        let text = format!("run {run}");
        let (sent, flushed, package) = std::thread::scope(|sc| {
            let sender = sc.spawn(|| alice.send("bob", &text, &|_| {}));
            // While the relay holds the send: the retry the interactive
            // client's poll loop makes when the outbox is not empty.
            let package = wait_for_entry(&outbox, "alice", &cursor_name, "the send's entry");
            let flushed = alice.flush_outbox(&|_| {});
            (sender.join().expect("the sending thread"), flushed, package)
        });
        let sent = sent.unwrap_or_else(|e| panic!("run {run}: the send failed: {e}"));
        assert_eq!(
            w.next_ref(),
            before + 1,
            "run {run}: exactly one ref on the relay (sent as ref {}, retry {flushed:?})",
            sent.msg_ref
        );
        assert_eq!(
            slow.sends_of(&package),
            1,
            "run {run}: one /send of the package; retry {flushed:?}"
        );
        assert_eq!(flushed.sent, 0, "run {run}: the retry skipped it");
        assert_eq!(alice.outbox_len(), 0, "run {run}: the outbox is empty");
        let events = Mutex::new(Vec::new());
        let f = bob
            .fetch(&|e: &Event| events.lock().expect("events").push(e.clone()))
            .expect("bob's fetch");
        let events = events.into_inner().expect("events");
        let texts: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                Event::Message(m) => m.text.clone(),
                _ => None,
            })
            .collect();
        assert_eq!(texts, vec![text.clone()], "run {run}: bob reads it once");
        let warnings: Vec<&Notice> = events
            .iter()
            .filter_map(|e| match e {
                Event::Notice(n) => Some(n),
                _ => None,
            })
            .collect();
        assert!(warnings.is_empty(), "run {run}: {warnings:?}");
        assert_eq!((f.opened, f.refused), (1, 0), "run {run}");
    }
}

#[test]
fn two_otc_processes_sharing_one_outbox_send_a_package_once() {
    let w = World::new(&["alice", "bob"], false);
    let slow = SlowSend::start(w.relay.addr(), Duration::from_secs(3));
    let flags = w.flags_with_relay("alice", &slow.url());
    let flag_refs: Vec<&str> = flags.iter().map(String::as_str).collect();
    let before = w.next_ref();
    let mut args = flag_refs.clone();
    args.extend(["send", "bob", "only once"]);
    let first = common::command(&args).spawn().expect("start the first otc");
    let outbox = Outbox::file(w.outbox("alice"));
    let cursor_name = RelayClient::new(&slow.url())
        .expect("the proxy's URL")
        .cursor_name();
    let package = wait_for_entry(&outbox, "alice", &cursor_name, "the first otc's send");
    // A second otc of the same user starts while the relay holds the
    // first one's send: it retries the outbox first.
    let mut args = flag_refs.clone();
    args.push("recv");
    let second = common::otc(&args, Duration::from_secs(60), "the second otc's recv");
    let first = common::finish(
        first,
        &flag_refs,
        Duration::from_secs(60),
        "the first otc's send",
    );
    assert_exit(&first, 0);
    assert!(stdout(&first).contains("sent to bob"), "{}", stdout(&first));
    assert_exit(&second, 0);
    assert!(
        !stderr(&second).contains("delivered to bob"),
        "the second otc did not send it: {}",
        stderr(&second)
    );
    assert_eq!(slow.sends_of(&package), 1, "one /send of the package");
    assert_eq!(w.next_ref(), before + 1, "one ref on the relay");
    let o = w.otc("bob", &["recv"], "bob's recv");
    assert_exit(&o, 0);
    assert_eq!(stdout(&o), "alice: only once\n");
    assert!(!stderr(&o).contains("WARNING"), "{}", stderr(&o));
}
