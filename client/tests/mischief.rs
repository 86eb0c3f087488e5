//! The relay's `--mischief` against real devices and the real `otc`
//! binary: a dropped message shows a skipped warning; a replayed one is
//! refused with a replay warning and spends no pad (also when the client
//! that meets it never opened the first copy); a corrupted one is
//! rejected and a later genuine one still opens; a reordered pair both
//! open.

mod common;

use common::{World, assert_exit, stderr, stdout};

fn send(w: &World, text: &str) {
    assert_exit(&w.otc("alice", &["send", "bob", text], "alice's send"), 0);
}

#[test]
fn dropped_shows_a_skipped_warning() {
    let w = World::new(&["alice", "bob"], true);
    send(&w, "first");
    assert_eq!(stdout(&w.otc("bob", &["recv"], "recv")), "alice: first\n");
    w.relay.mischief("bob", "drop");
    send(&w, "dropped by the relay");
    send(&w, "after the gap");
    let o = w.otc("bob", &["recv"], "recv after a drop");
    assert_exit(&o, 0);
    assert_eq!(stdout(&o), "alice: after the gap\n");
    assert!(
        stderr(&o).contains("WARNING skipped: messages from alice"),
        "{}",
        stderr(&o)
    );
    let o = w.otc("bob", &["recv", "--json"], "nothing more");
    assert_eq!(stdout(&o), "");
}

#[test]
fn replayed_is_refused_with_a_warning_and_spends_no_pad() {
    let w = World::new(&["alice", "bob"], true);
    w.relay.mischief("bob", "replay");
    send(&w, "only once");
    let full = w.contact("bob", "alice").receive_left;
    let o = w.otc("bob", &["recv", "--json"], "recv of a replayed message");
    assert_exit(&o, 0);
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 2, "{}", stdout(&o));
    assert_eq!(lines[0]["text"], "only once");
    assert_eq!(lines[1]["refused"], "replay");
    assert!(stderr(&o).contains("WARNING replay"), "{}", stderr(&o));
    // The copy spent nothing: exactly one message's pad is gone.
    let cost = otc_proto::Format::V3.pad_cost("only once".len()) as u64;
    assert_eq!(w.contact("bob", "alice").receive_left, full - cost);
    // And the read position is past both copies.
    assert_eq!(w.cursor("bob"), w.next_ref());
}

#[test]
fn a_replay_reaching_a_fresh_process_is_still_a_replay() {
    // The device, not the client's memory, says what a replay is: a
    // one-shot `otc recv` that never saw the first copy (the read position
    // was rolled back, as a restored laptop or a second client would
    // have it) still warns of a replay, not of an integrity failure.
    let w = World::new(&["alice", "bob"], false);
    send(&w, "read once");
    assert_eq!(
        stdout(&w.otc("bob", &["recv"], "the first recv")),
        "alice: read once
"
    );
    let left = w.contact("bob", "alice").receive_left;
    let name = otc_rpc_client::relay::RelayClient::from_addr(w.relay.addr()).cursor_name();
    w.dev("bob")
        .client()
        .set_cursor(&name, 0)
        .expect("roll the read position back");
    let o = w.otc("bob", &["recv", "--json"], "a recv that meets a replay");
    assert_exit(&o, 0);
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 1, "{}", stdout(&o));
    assert_eq!(lines[0]["refused"], "replay", "{}", stdout(&o));
    assert!(stderr(&o).contains("WARNING replay"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("integrity"), "{}", stderr(&o));
    assert_eq!(w.contact("bob", "alice").receive_left, left, "no pad spent");
    // Settled for good: the read position is past it again.
    assert_eq!(w.cursor("bob"), w.next_ref());
}

#[test]
fn corrupted_is_rejected_and_a_later_genuine_message_opens() {
    let w = World::new(&["alice", "bob"], true);
    w.relay.mischief("bob", "corrupt");
    send(&w, "tampered with");
    send(&w, "genuine");
    let o = w.otc(
        "bob",
        &["recv"],
        "recv of a corrupted then a genuine message",
    );
    assert_exit(&o, 0);
    assert_eq!(stdout(&o), "alice: genuine\n");
    assert!(stderr(&o).contains("WARNING integrity"), "{}", stderr(&o));
    assert_eq!(w.cursor("bob"), w.next_ref());
}

#[test]
fn a_reordered_pair_both_open() {
    let w = World::new(&["alice", "bob"], true);
    w.relay.mischief("bob", "reorder");
    send(&w, "one");
    send(&w, "two");
    let o = w.otc("bob", &["recv"], "recv of a reordered pair");
    assert_exit(&o, 0);
    assert_eq!(stdout(&o), "alice: two\nalice: one\n");
    assert!(
        !stderr(&o).contains("WARNING replay") && !stderr(&o).contains("integrity"),
        "{}",
        stderr(&o)
    );
}
