//! Issue 19, part 5: the chat client and the two ways a text stays on the
//! device. **Read here** (the owner reads a message on the device's screen:
//! the open comes back `read_on_device`) and **Write here** (`otc send
//! --on-device`: the owner writes the message on the device's keyboard and
//! taps Seal; `/v1/compose`). Real parts: testkit devices whose screens
//! the test taps, the real relay, the real `otc` binary.

mod common;

use common::{World, assert_exit, stderr, stdout, type_message};
use otc_testkit::Thumb;
use std::time::Duration;

/// The otc command of `owner` in `w` with `args` after the flags.
fn otc_command(w: &World, owner: &str, args: &[&str]) -> (std::process::Command, Vec<String>) {
    let mut all = w.flags(owner);
    all.extend(args.iter().map(|a| a.to_string()));
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    (common::command(&refs), all)
}

#[test]
fn a_message_read_on_the_device_is_shown_as_such_and_moves_the_read_position() {
    let w = World::new(&["alice", "bob"], false);
    let first = w.next_ref();
    let o = w.otc(
        "alice",
        &["send", "bob", "fq2x for your eyes"],
        "alice's send",
    );
    assert_exit(&o, 0);
    w.dev("bob").set_thumb(Thumb::ReadHere);
    let o = w.otc("bob", &["recv"], "bob's recv, read on the device");
    assert_exit(&o, 0);
    assert_eq!(stdout(&o), "alice: (read on the device)\n");
    assert!(!stderr(&o).contains("fq2x"), "{}", stderr(&o));
    assert_eq!(
        w.cursor("bob"),
        first + 1,
        "the read position moved past it"
    );
    // The text is on bob's device, and only there.
    w.dev("bob")
        .wait_screen("the message on bob's screen", |t| {
            t.screen == "read-here" && t.texts.iter().any(|l| l.contains("fq2x"))
        });

    // --json: the same, as a line that says so and has no text.
    let o = w.otc(
        "alice",
        &["send", "bob", "zt9k also private"],
        "alice's send",
    );
    assert_exit(&o, 0);
    let o = w.otc("bob", &["recv", "--json"], "bob's recv --json");
    assert_exit(&o, 0);
    assert!(!stdout(&o).contains("zt9k"), "{}", stdout(&o));
    let line: serde_json::Value = serde_json::from_str(stdout(&o).trim()).expect("one JSON line");
    assert_eq!(
        line,
        serde_json::json!({"ref": first + 1, "from": "alice", "text": null, "text_b64": null,
            "warnings": [], "read_on_device": true})
    );
    assert_eq!(w.cursor("bob"), first + 2);

    // Opened for the laptop: the text, and read_on_device false.
    w.dev("bob").set_thumb(Thumb::Approve);
    let o = w.otc("alice", &["send", "bob", "for the laptop"], "alice's send");
    assert_exit(&o, 0);
    let o = w.otc("bob", &["recv", "--json"], "bob's recv --json");
    assert_exit(&o, 0);
    let line: serde_json::Value = serde_json::from_str(stdout(&o).trim()).expect("one JSON line");
    assert_eq!(line["text"], "for the laptop");
    assert_eq!(line["read_on_device"], false);
    assert_eq!(line["text_b64"], "Zm9yIHRoZSBsYXB0b3A=");
}

#[test]
fn send_on_device_seals_what_the_owner_typed_and_sends_it() {
    let w = World::new(&["alice", "bob"], false);
    let first = w.next_ref();
    let left = w.contact("alice", "bob").send_left;
    let (mut cmd, args) = otc_command(&w, "alice", &["send", "--on-device", "bob"]);
    let child = cmd.spawn().expect("start otc send --on-device");
    type_message(w.dev("alice"), "bob", "hi there");
    w.dev("alice").tap("kb-done");
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = common::finish(child, &refs, Duration::from_secs(60), "the send to finish");
    assert_exit(&o, 0);
    let pad_left = w.contact("alice", "bob").send_left;
    assert!(pad_left < left, "pad spent");
    assert_eq!(
        stdout(&o),
        format!("sent to bob (ref {first}, {pad_left} pad bytes left)\n")
    );
    assert!(
        stderr(&o).contains("write the message to bob on the device"),
        "{}",
        stderr(&o)
    );
    assert!(
        !std::fs::read_to_string(w.outbox("alice"))
            .unwrap_or_default()
            .contains("bob"),
        "the outbox is empty again"
    );
    let o = w.otc("bob", &["recv"], "bob's recv");
    assert_exit(&o, 0);
    assert_eq!(stdout(&o), "alice: hi there\n");
}

#[test]
fn send_on_device_cancelled_on_the_device_sends_nothing() {
    let w = World::new(&["alice", "bob"], false);
    let before = w.next_ref();
    let left = w.contact("alice", "bob").send_left;
    let (mut cmd, args) = otc_command(&w, "alice", &["send", "--on-device", "bob"]);
    let child = cmd.spawn().expect("start otc send --on-device");
    type_message(w.dev("alice"), "bob", "never mind");
    w.dev("alice").tap("kb-cancel");
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = common::finish(child, &refs, Duration::from_secs(60), "the send to finish");
    assert_exit(&o, 1);
    assert_eq!(stdout(&o), "", "nothing shown as sent");
    assert!(stderr(&o).contains("rejected"), "{}", stderr(&o));
    assert_eq!(w.next_ref(), before, "nothing reached the relay");
    assert_eq!(w.contact("alice", "bob").send_left, left, "no pad spent");
}

#[test]
fn send_on_device_with_a_text_is_a_usage_error() {
    let w = World::new(&["alice", "bob"], false);
    let before = w.next_ref();
    let o = w.otc(
        "alice",
        &["send", "--on-device", "bob", "hello"],
        "a refused command line",
    );
    assert_exit(&o, 2);
    // Refused as a conflict, not as an unknown flag.
    assert!(
        stderr(&o).contains("'--on-device' cannot be used with '[TEXT]...'"),
        "{}",
        stderr(&o)
    );
    assert_eq!(w.next_ref(), before, "nothing sent");
    assert_eq!(w.dev("alice").prompts_answered(), 0, "nothing asked");
}

/// Every file under `dir`, read raw.
fn all_bytes_under(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).expect("read the relay's directory") {
            let p = e.expect("an entry").path();
            if p.is_dir() {
                todo.push(p);
            } else if let Ok(b) = std::fs::read(&p) {
                out.push((p, b));
            }
        }
    }
    out
}

/// Issue 19, end to end with two devices and the relay: alice writes on
/// her device (`send --on-device`), bob reads on his (Read here). The text
/// is never in either `otc` process's output, nor anywhere in the relay's
/// data (its database, WAL and all, read raw); only the two screens show
/// it.
#[test]
fn written_on_one_device_and_read_on_the_other_the_text_crosses_nothing_in_clear() {
    let w = World::new(&["alice", "bob"], false);
    // Runs no English, JSON or base64 of a package holds by chance.
    let text = "zq7vkxw pjw93lmq";
    let words = ["zq7vkxw", "pjw93lmq"];
    let (mut cmd, args) = otc_command(&w, "alice", &["send", "--on-device", "bob"]);
    let child = cmd.spawn().expect("start otc send --on-device");
    type_message(w.dev("alice"), "bob", text);
    w.dev("alice").tap("kb-done");
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let sent = common::finish(child, &refs, Duration::from_secs(60), "the send to finish");
    assert_exit(&sent, 0);
    w.dev("bob").set_thumb(Thumb::ReadHere);
    let read = w.otc("bob", &["recv"], "bob's recv, read on the device");
    assert_exit(&read, 0);
    assert_eq!(stdout(&read), "alice: (read on the device)\n");
    for o in [&sent, &read] {
        for word in words {
            assert!(!stdout(o).contains(word), "{}", stdout(o));
            assert!(!stderr(o).contains(word), "{}", stderr(o));
        }
    }
    w.dev("bob")
        .wait_screen("the message on bob's screen", |t| {
            t.screen == "read-here" && t.texts.iter().any(|l| l.contains("zq7vkxw"))
        });
    let files = all_bytes_under(w.relay.dir.path());
    assert!(
        !files.is_empty(),
        "the relay keeps its data under its directory"
    );
    for (path, bytes) in files {
        for word in words {
            assert!(
                !bytes.windows(word.len()).any(|x| x == word.as_bytes()),
                "{} holds {word:?}",
                path.display()
            );
        }
    }
}
