//! End to end with real parts: real devices (otc-testkit, the owner's
//! thumb approving), the real otc-relay on 127.0.0.1, and the real `otc`
//! binary for every one-shot command.

mod common;

use common::{World, assert_exit, stderr, stdout};
use std::time::Duration;

#[test]
fn alice_to_bob_then_bob_to_alice() {
    let w = World::new(&["alice", "bob"], false);
    let first = w.next_ref();
    let o = w.otc(
        "alice",
        &["send", "bob", "hello", "bob"],
        "alice's send to bob",
    );
    assert_exit(&o, 0);
    assert!(
        stdout(&o).contains(&format!("sent to bob (ref {first}")),
        "{}",
        stdout(&o)
    );
    assert!(
        stderr(&o).contains("approve on the device"),
        "{}",
        stderr(&o)
    );
    assert_eq!(w.cursor("bob"), 0);
    let o = w.otc("bob", &["recv"], "bob's recv");
    assert_exit(&o, 0);
    assert_eq!(stdout(&o), "alice: hello bob\n");
    // The read position moved past it, on bob's device.
    assert_eq!(w.cursor("bob"), first + 1);
    let o = w.otc("bob", &["recv"], "bob's second recv");
    assert_exit(&o, 0);
    assert_eq!(stdout(&o), "", "nothing new: nothing printed");

    let o = w.otc(
        "bob",
        &["send", "alice", "hi alice, got it"],
        "bob's send to alice",
    );
    assert_exit(&o, 0);
    let o = w.otc("alice", &["recv", "--json"], "alice's recv --json");
    assert_exit(&o, 0);
    let line: serde_json::Value = serde_json::from_str(stdout(&o).trim()).expect("one JSON line");
    assert_eq!(line["from"], "bob");
    assert_eq!(line["text"], "hi alice, got it");
    assert_eq!(line["ref"], first + 1);
    assert_eq!(line["warnings"], serde_json::json!([]));
    // Each side's pad was used once each way.
    assert!(w.contact("alice", "bob").send_left < common::PAD);
    assert!(w.contact("bob", "alice").send_left < common::PAD);
}

#[test]
fn a_group_send_reaches_everyone() {
    let w = World::new(&["alice", "bob", "carol"], false);
    let cfg = w.root.path().join("otc.toml");
    std::fs::write(&cfg, "[groups]\nfriends = [\"bob\", \"carol\"]\n").expect("config");
    let flags = w.flags("alice");
    let mut args: Vec<&str> = flags.iter().map(String::as_str).collect();
    let cfg_s = cfg.to_str().expect("utf-8 path");
    args.extend_from_slice(&["--config", cfg_s, "send", "friends", "party", "at", "eight"]);
    let o = common::otc(
        &args,
        std::time::Duration::from_secs(60),
        "alice's group send",
    );
    assert_exit(&o, 0);
    assert!(
        stdout(&o).contains("sent to bob") && stdout(&o).contains("sent to carol"),
        "{}",
        stdout(&o)
    );
    for who in ["bob", "carol"] {
        let o = w.otc(who, &["recv"], "a group member's recv");
        assert_exit(&o, 0);
        assert_eq!(stdout(&o), "alice: party at eight\n", "{who}");
    }
    // ms-style A,B works too, and the library's group is what `gs` uses.
    let o = w.otc("bob", &["send", "alice,carol", "ok!"], "bob's multi-send");
    assert_exit(&o, 0);
    let carol = w.chat("carol");
    carol.set_group("pals", vec!["alice".into(), "bob".into()]);
    for m in carol.group("pals").expect("group") {
        carol.send(&m, "me too", &|_| {}).expect("group send");
    }
    let o = w.otc("alice", &["recv"], "alice's recv");
    assert_eq!(stdout(&o), "bob: ok!\ncarol: me too\n");
    let o = w.otc("bob", &["recv"], "bob's recv");
    assert_eq!(stdout(&o), "carol: me too\n");
}

#[test]
fn contacts_lists_pad_left() {
    let w = World::new(&["alice", "bob"], false);
    let o = w.otc("alice", &["contacts"], "contacts");
    assert_exit(&o, 0);
    let out = stdout(&o);
    assert!(out.contains("bob") && out.contains("send left"), "{out}");
    let o = w.otc("alice", &["contacts", "--json"], "contacts --json");
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("json");
    assert_eq!(v[0]["name"], "bob");
    assert_eq!(v[0]["send_left"], w.contact("alice", "bob").send_left);
}

#[test]
fn recv_follow_prints_messages_as_they_come() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    use std::sync::mpsc;
    use std::time::Duration;
    let w = World::new(&["alice", "bob"], false);
    let mut child = Command::new(env!("CARGO_BIN_EXE_otc"))
        .args(w.flags("bob"))
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
    for text in ["first", "second"] {
        assert_exit(&w.otc("alice", &["send", "bob", text], "alice's send"), 0);
        let line = rx.recv_timeout(Duration::from_secs(30));
        if line.is_err() {
            let _ = child.kill();
        }
        assert_eq!(
            line.expect("recv --follow printed nothing within 30 s"),
            format!("alice: {text}")
        );
    }
    child.kill().expect("stop recv --follow");
    let _ = child.wait();
    assert_eq!(w.cursor("bob"), w.next_ref());
}

#[test]
fn two_clients_on_one_device_share_the_read_position() {
    let w = World::new(&["alice", "bob"], false);
    // An interactive client that has already read the position...
    let first = w.chat("bob");
    assert_eq!(first.fetch(&|_| {}).expect("fetch").opened, 0);
    assert_exit(&w.otc("alice", &["send", "bob", "once"], "alice's send"), 0);
    // ...and a one-shot recv that opens the message meanwhile.
    let o = w.otc("bob", &["recv"], "bob's one-shot recv");
    assert_eq!(stdout(&o), "alice: once\n");
    // The first client does not try to open it again (which the device
    // would refuse as a replay).
    let f = first.fetch(&|_| {}).expect("fetch again");
    assert_eq!((f.opened, f.refused, f.held), (0, 0, None));
    assert_eq!(f.cursor, w.cursor("bob"));
}

/// Issue 15, defect 4: `--user Alice` on alice's device printed "sent to
/// bob", spent pad, and bob's device could not open it (no pad for
/// "Alice"). The client compares --user with the device's owner
/// (`/v1/status`) before sealing and refuses a mismatch: nothing sealed,
/// no pad spent, nothing on the relay.
#[test]
fn a_user_name_that_is_not_the_devices_owner_is_refused_before_sealing() {
    let w = World::new(&["alice", "bob"], false);
    let before = w.contact("alice", "bob");
    let next = w.next_ref();
    let mut flags = w.flags("alice");
    let at = flags.iter().position(|f| f == "--user").expect("--user") + 1;
    flags[at] = "Alice".into();
    let mut args: Vec<&str> = flags.iter().map(String::as_str).collect();
    args.extend(["send", "bob", "hello"]);
    let o = common::otc(&args, Duration::from_secs(60), "a send as Alice");
    assert_exit(&o, 2);
    assert!(!stdout(&o).contains("sent to"), "{}", stdout(&o));
    let err = stderr(&o);
    assert!(
        err.contains(r#"you are --user "Alice" but this device belongs to "alice""#)
            && err.contains("Nothing was sealed")
            && err.contains(r#"--user "alice""#),
        "{err}"
    );
    assert_eq!(
        w.contact("alice", "bob").send_left,
        before.send_left,
        "no pad spent"
    );
    assert_eq!(w.next_ref(), next, "nothing on the relay");
    // The right name works.
    let o = w.otc("alice", &["send", "bob", "hello"], "a send as alice");
    assert_exit(&o, 0);
}
